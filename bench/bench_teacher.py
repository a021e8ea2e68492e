"""The animeface teacher against the sample library's ground truth, and our detector against it.

On the default sample library (4 series x 3 episodes; episode 3 of each series held out):

1. the box convention: animeface boxes faces (brow to chin), the labels are head boxes; a
   scale/offset mapping (`data.teacher.HeadMapping`) is fitted on teacher boxes matched to
   head boxes in the TRAINING episodes only;
2. on every `--every`-th frame of the held-out episodes: the teacher's precision, recall and
   F1 at IoU 0.5 against the ground truth, with raw and mapped boxes, at a few likelihood
   thresholds, for scales 1 and 1+2 (upscaled run merged), and its latency per image
   (wall time through `AnimeFaceTeacher.detect`, PNG hand-off included);
3. with `--detector PATH`: our detector's precision/recall against the ground truth and
   against the teacher's boxes (mapped and raw) on the same frames.

Run:
    scripts/teacher-venv.sh
    ANIREC_HOME=/tmp/teach/home .venv/bin/anirec sample-library /tmp/teach/lib
    .venv/bin/python -m bench.bench_teacher --library /tmp/teach/lib --detector /tmp/fd/faces.pt
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.sysinfo import machine_info
from data.teacher import (
    DEFAULT_TEACHER_PYTHON,
    HEAD_FROM_FACE,
    RAW,
    AnimeFaceTeacher,
    HeadMapping,
    fit_mapping,
    pair_with_heads,
)
from training.facedata import (
    FaceFrame,
    FaceLabel,
    iter_face_frames,
    library_labels,
    read_labels,
    split_episodes,
)
from training.faces import SMALL, box_iou, evaluate_detector, match_detections

ROOT = Path(__file__).resolve().parent.parent

THRESHOLDS = (0.0, 0.5, 0.8, 0.9)


def prf(pairs: list[tuple[np.ndarray, np.ndarray, np.ndarray]], threshold: float, iou: float = 0.5
        ) -> dict[str, Any]:
    """Precision/recall/F1 over frames of (boxes, scores, gt boxes) at a score threshold."""
    tp = fp = fn = 0
    small_n = small_found = 0
    for boxes, scores, gt in pairs:
        keep = scores >= threshold
        det_gt, gt_score = match_detections(boxes[keep], scores[keep], gt, iou)
        tp += int((det_gt >= 0).sum())
        fp += int((det_gt < 0).sum())
        fn += int((gt_score < 0).sum())
        small = (gt[:, 3] - gt[:, 1]) < SMALL if len(gt) else np.zeros(0, bool)
        small_n += int(small.sum())
        small_found += int((small & (gt_score >= 0)).sum())
    p = tp / (tp + fp) if tp + fp else 1.0
    r = tp / (tp + fn) if tp + fn else 1.0
    return {"threshold": threshold, "precision": round(p, 4), "recall": round(r, 4),
            "f1": round(2 * p * r / (p + r), 4) if p + r else 0.0, "tp": tp, "fp": fp, "fn": fn,
            "small_recall": round(small_found / small_n, 4) if small_n else None}


def run_teacher(teacher: AnimeFaceTeacher, frames: list[FaceFrame]) -> tuple[list[list[Any]], list[float]]:
    faces, ms = [], []
    for f in frames:
        t0 = time.perf_counter()
        faces.append(teacher.detect(f.image))
        ms.append((time.perf_counter() - t0) * 1000)
    return faces, ms


def gt_boxes(f: FaceFrame) -> np.ndarray:
    return np.array([x.box for x in f.faces], np.float64).reshape(-1, 4)


def mapped(faces: list[Any], mapping: HeadMapping, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    boxes = np.array([mapping.apply(x.box, size) for x in faces], np.float64).reshape(-1, 4)
    return boxes, np.array([x.score for x in faces], np.float64)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--library", required=True, help="the generated default sample library")
    ap.add_argument("--teacher-python", default=str(DEFAULT_TEACHER_PYTHON))
    ap.add_argument("--detector", help="a trained face detector checkpoint to compare with the teacher")
    ap.add_argument("--every", type=int, default=9, help="keep every Nth held-out frame (9: 160 frames)")
    ap.add_argument("--fit-every", type=int, default=12, help="keep every Nth training frame for the fit")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "teacher.json"))
    args = ap.parse_args()
    torch.set_num_threads(1)

    lib = Path(args.library)
    labels = read_labels(library_labels(lib))
    train_eps, held_eps = split_episodes(labels, 3)
    fit_frames = list(iter_face_frames(lib, labels, train_eps, every=args.fit_every, with_faces_only=True))
    held = list(iter_face_frames(lib, labels, held_eps, every=args.every))
    result: dict[str, Any] = {
        "benchmark": "teacher", "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "library": {"path": str(lib), "params": labels.get("params"), "train_episodes": len(train_eps),
                    "held_out_episodes": held_eps, "fit_frames": len(fit_frames), "fit_every": args.fit_every,
                    "held_out_frames": len(held), "every": args.every,
                    "held_out_faces": sum(len(f.faces) for f in held)},
        "iou": 0.5, "thresholds": list(THRESHOLDS), "teacher": {}, "shipped_mapping": HEAD_FROM_FACE.to_dict()}

    best: tuple[float, str] = (-1.0, "")
    teacher_boxes: dict[str, list[list[Any]]] = {}
    for scales in ((1.0,), (1.0, 2.0)):
        name = "x".join(f"{s:g}" for s in scales)
        with AnimeFaceTeacher(Path(args.teacher_python), scales=scales) as teacher:
            info = teacher.info
            fit_faces, _ = run_teacher(teacher, fit_frames)
            held_faces, ms = run_teacher(teacher, held)
        pairs = [p for f, tf in zip(fit_frames, fit_faces, strict=True)
                 for p in pair_with_heads(np.array([x.box for x in tf]), gt_boxes(f))]
        fit = fit_mapping(pairs)
        raw_iou = [float(box_iou(np.array([t]), np.array([g]))[0, 0]) for t, g in pairs]
        fit_iou = [float(box_iou(np.array([fit.apply(t)]), np.array([g]))[0, 0]) for t, g in pairs]
        entry: dict[str, Any] = {
            "scales": list(scales), "worker": info,
            "latency_ms": {"p50": round(float(np.percentile(ms, 50)), 1),
                           "p95": round(float(np.percentile(ms, 95)), 1), "images": len(ms),
                           "image_size": list(held[0].image.size) if held else None},
            "fit": {"pairs": len(pairs), "mapping": fit.to_dict(),
                    "train_faces_found": round(len(pairs) / max(1, sum(len(f.faces) for f in fit_frames)), 4),
                    "median_iou_raw": round(float(np.median(raw_iou)), 4) if raw_iou else None,
                    "median_iou_mapped": round(float(np.median(fit_iou)), 4) if fit_iou else None},
            "vs_ground_truth": {}}
        for label, mp in (("raw", RAW), ("fitted", fit), ("shipped", HEAD_FROM_FACE)):
            ev = [(*mapped(tf, mp, f.image.size), gt_boxes(f)) for f, tf in zip(held, held_faces, strict=True)]
            entry["vs_ground_truth"][label] = [prf(ev, t) for t in THRESHOLDS]
            if label == "shipped":
                f1 = max(r["f1"] for r in entry["vs_ground_truth"][label])
                if f1 > best[0]:
                    best = (f1, name)
        result["teacher"][name] = entry
        teacher_boxes[name] = held_faces
        print(json.dumps({name: {"fit": entry["fit"], "latency_ms": entry["latency_ms"],
                                 "vs_gt": {k: v for k, v in entry["vs_ground_truth"].items()}}}, indent=1),
              flush=True)

    if args.detector:
        from core.models.faces import load_face_detector

        det = load_face_detector(Path(args.detector))
        gt_ev = evaluate_detector(det, held, latency_samples=0)
        keys = ("precision", "recall", "f1", "tp", "fp", "fn")
        out: dict[str, Any] = {"checkpoint": args.detector, "version": det.version, "threshold": det.threshold,
                               "vs_ground_truth": {k: gt_ev[k] for k in keys}, "vs_teacher": {}}
        for name, faces in teacher_boxes.items():
            for label, mp in (("mapped", HEAD_FROM_FACE), ("raw", RAW)):
                frames = [replace(f, faces=[FaceLabel("", mp.apply(x.box, f.image.size)) for x in tf])
                          for f, tf in zip(held, faces, strict=True)]
                ev = evaluate_detector(det, frames, latency_samples=0)
                out["vs_teacher"][f"scales_{name}_{label}"] = {k: ev[k] for k in (*keys, "faces")}
        result["detector"] = out
        print(json.dumps(out, indent=1), flush=True)

    result["best_teacher_scales"] = best[1]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
