"""Face detector benchmark: train on the default sample library, evaluate on held-out episodes.

Training uses episodes 1-2 of each series (`split_episodes(labels, 3)[0]`); within them every
5th shot is kept aside to tune the score threshold (validation). The evaluation runs on the
held-out episode 3 of each series: precision, recall, F1 and AP at IoU 0.5, recall of small
(< 32 px high), profile and occluded faces, and detect() latency on 640-px-wide frames with
one torch thread.

Run:
    python -m bench.bench_faces                          # generate the library, train, evaluate
    python -m bench.bench_faces --library /tmp/fd/lib --save /tmp/fd/faces.pt
    python -m bench.bench_faces --library /tmp/fd/lib --checkpoint /tmp/fd/faces.pt   # evaluate only
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import asdict, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from core.models.faces import load_face_detector
from core.sysinfo import machine_info
from training.facedata import iter_face_frames, library_labels, read_labels, split_episodes
from training.faces import TrainConfig, evaluate_detector, train_face_detector

ROOT = Path(__file__).resolve().parent.parent

VAL_EVERY_SHOT = 5  # every 5th shot of the training episodes tunes the threshold


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--library", help="a generated sample library (default: generate one)")
    ap.add_argument("--checkpoint", help="evaluate this detector instead of training one")
    ap.add_argument("--save", default="/tmp/fd/faces.pt", help="where the trained detector goes")
    ap.add_argument("--work", default=str(ROOT / "bench" / "work" / "faces"))
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--every", type=int, default=3, help="keep every Nth training frame")
    ap.add_argument("--style", type=float, default=None, help="share of crops redrawn in a random style")
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "faces.json"))
    args = ap.parse_args()
    torch.set_num_threads(1)

    if args.library:
        lib = Path(args.library)
    else:
        from data.synth import generate_library

        lib = Path(tempfile.mkdtemp(prefix="anirec-faces-")) / "library"
        generate_library(lib)  # the default sample library
    labels = read_labels(library_labels(lib))
    train_eps, held_eps = split_episodes(labels, 3)
    result: dict[str, Any] = {"benchmark": "faces", "date": datetime.now(UTC).isoformat(timespec="seconds"),
                              "machine": machine_info(), "library": {
                                  "series": len({e["series"] for e in labels["episodes"]}),
                                  "episodes": len(labels["episodes"]),
                                  "train_episodes": len(train_eps), "held_out_episodes": len(held_eps),
                                  "params": labels.get("params")}}

    if args.checkpoint:
        det = load_face_detector(Path(args.checkpoint))
        result["training"] = {k: det.metrics.get(k) for k in ("steps", "train_seconds", "train_frames",
                                                               "train_faces", "config", "val")}
    else:
        t0 = time.perf_counter()
        frames = list(iter_face_frames(lib, labels, train_eps, every=args.every))
        train = [f for f in frames if f.shot % VAL_EVERY_SHOT != VAL_EVERY_SHOT - 1]
        val = [f for f in frames if f.shot % VAL_EVERY_SHOT == VAL_EVERY_SHOT - 1]
        decode_s = time.perf_counter() - t0
        cfg = TrainConfig() if args.steps is None else replace(TrainConfig(), steps=args.steps)
        if args.style is not None:
            cfg = replace(cfg, style=args.style)

        def progress(step: int, loss: float, metrics: dict[str, Any]) -> None:
            if metrics:
                print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in metrics.items()}),
                      flush=True)

        det, metrics = train_face_detector(train, val, cfg, Path(args.work), resume=args.resume,
                                           progress=progress)
        det.save(Path(args.save))
        result["training"] = {"steps": metrics["steps"], "train_seconds": metrics["train_seconds"],
                              "decode_seconds": round(decode_s, 1), "train_frames": len(train),
                              "val_frames": len(val), "train_faces": metrics["train_faces"],
                              "config": asdict(cfg), "val": metrics["val"], "history": metrics["history"],
                              "checkpoint": str(args.save)}
    held = list(iter_face_frames(lib, labels, held_eps, every=2))
    ev = evaluate_detector(det, held, iou=0.5)
    result["detector"] = {"version": det.version, "threshold": det.threshold,
                          "params": sum(p.numel() for p in det.net.parameters()),
                          "input_long": det.spec.input_long}
    result["held_out"] = ev
    summary = {k: ev[k] for k in ("precision", "recall", "f1", "ap", "tp", "fp", "fn")}
    print(json.dumps({"summary": summary, "recall_by_kind": ev["recall_by_kind"],
                      "latency": ev["latency"]}, indent=1))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
