"""Indexing benchmark: decode, sample+store, embed, index add, end-to-end speed, bytes per frame.

On the default sample library and (with --long) on one generated 20-minute 720p episode.
Each stage is timed on its own over the same files, then the real indexer runs end to end.

Run:
    python -m bench.bench_indexing            # sample library  -> bench/results/indexing.json
    python -m bench.bench_indexing --long     # + 20 min 720p episode (generation takes ~10 min)
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import av
import numpy as np

from core.config import Settings
from core.descriptors import tiny_descriptor
from core.framestore import encode_jpeg
from core.index import HnswIndex
from core.models.embedder import EmbedderSpec, build_embedder, default_embedder
from core.sysinfo import machine_info
from data.video import EpisodeDecoder

ROOT = Path(__file__).resolve().parent.parent


def decode_only(paths: list[Path]) -> dict[str, float]:
    n, t0 = 0, time.perf_counter()
    for p in paths:
        with av.open(str(p)) as c:
            s = c.streams.video[0]
            s.thread_type = "AUTO"
            for _ in c.decode(s):
                n += 1
    dt = time.perf_counter() - t0
    return {"frames": n, "seconds": round(dt, 2), "frames_per_s": round(n / dt, 1)}


def sample_store(paths: list[Path], fps: float) -> tuple[dict[str, float], list[np.ndarray]]:
    kept: list[np.ndarray] = []
    decoded, t0 = 0, time.perf_counter()
    for p in paths:
        dec = EpisodeDecoder(p, fps=fps)
        for fr in dec:
            encode_jpeg(fr.rgb)
            tiny_descriptor(fr.rgb)
            kept.append(fr.rgb)
        decoded += dec.decoded
    dt = time.perf_counter() - t0
    return {"decoded_frames": decoded, "kept_frames": len(kept), "seconds": round(dt, 2),
            "decoded_per_s": round(decoded / dt, 1), "kept_per_s": round(len(kept) / dt, 1)}, kept


def embed_rate(frames: list[np.ndarray], arch: str) -> tuple[dict[str, float], np.ndarray]:
    emb = default_embedder() if arch == "tiny" else build_embedder(EmbedderSpec(arch=arch))
    arr = np.stack(frames)
    emb.embed_arrays(arr[:8])
    t0 = time.perf_counter()
    vecs = emb.embed_arrays(arr, batch_size=32)
    dt = time.perf_counter() - t0
    return {"arch": arch, "frames": len(frames), "seconds": round(dt, 2),
            "frames_per_s": round(len(frames) / dt, 1)}, vecs


def add_rate(vecs: np.ndarray) -> dict[str, float]:
    idx = HnswIndex(vecs.shape[1], embedder_name="bench", embedder_version="1", num_threads=1)
    t0 = time.perf_counter()
    idx.add(np.arange(len(vecs), dtype=np.int64), vecs)
    dt = time.perf_counter() - t0
    return {"vectors": len(vecs), "seconds": round(dt, 3), "vectors_per_s": round(len(vecs) / dt, 1)}


def end_to_end(library: Path, home: Path, fps: float) -> dict[str, Any]:
    from bot.app import App

    app = App.from_settings(Settings(_env_file=None, home=home))  # type: ignore[call-arg]
    ix = app.indexer(fps=fps)
    rep = ix.run(library)
    index_bytes = sum(p.stat().st_size for p in app.settings.index_dir.iterdir())
    store_bytes = app.framestore().size_bytes()
    n = max(1, rep.index_count)
    again = ix.run(library)
    return {"episodes": len(rep.added), "video_seconds": round(rep.video_seconds, 1),
            "wall_seconds": round(rep.wall_seconds, 2), "x_real_time": round(rep.speed, 1),
            "frames": rep.index_count, "index_bytes_per_frame": round(index_bytes / n),
            "store_bytes_per_frame": round(store_bytes / n),
            "total_bytes_per_frame": round((index_bytes + store_bytes) / n),
            "rerun_wall_seconds": round(again.wall_seconds, 2), "rerun_embedded": again.frames_embedded}


def measure(library: Path, fps: float) -> dict[str, Any]:
    paths = sorted(library.rglob("*.mp4"))
    out: dict[str, Any] = {"files": len(paths)}
    out["decode_only"] = decode_only(paths)
    out["decode_sample_store"], frames = sample_store(paths, fps)
    out["embed_default_tiny"], vecs = embed_rate(frames, "tiny")
    out["embed_mobilenet_v3_small"], _ = embed_rate(frames[:512], "mobilenet_v3_small")
    out["index_add"] = add_rate(vecs)
    with tempfile.TemporaryDirectory() as home:
        out["end_to_end"] = end_to_end(library, Path(home), fps)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--fps", type=float, default=2.0)
    ap.add_argument("--long", action="store_true", help="also a 20-minute 720p episode")
    ap.add_argument("--long-seconds", type=float, default=1200.0)
    ap.add_argument("--work", default=str(ROOT / "bench" / "work"))
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "indexing.json"))
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(2)
    from data.synth import generate_library

    work = Path(args.work)
    result: dict[str, Any] = {"benchmark": "indexing", "date": datetime.now(UTC).isoformat(timespec="seconds"),
                              "machine": machine_info(), "fps": args.fps}
    sample = work / "sample-default"
    generate_library(sample)  # the default sample library
    result["sample_library"] = measure(sample, args.fps)
    print(json.dumps(result["sample_library"], indent=1))
    if args.long:
        long_lib = work / "long-720p"
        t0 = time.perf_counter()
        generate_library(long_lib, series=1, episodes=1, seconds=args.long_seconds, width=1280,
                         height=720, fps=24)
        result["long_episode_generation_seconds"] = round(time.perf_counter() - t0, 1)
        result["long_720p_episode"] = measure(long_lib, args.fps)
        print(json.dumps(result["long_720p_episode"], indent=1))
    targets = {"x_real_time>=10": None, "index_bytes_per_frame<=2048": None}
    e2e = (result.get("long_720p_episode") or result["sample_library"])["end_to_end"]
    targets["x_real_time>=10"] = e2e["x_real_time"] >= 10
    targets["index_bytes_per_frame<=2048"] = e2e["index_bytes_per_frame"] <= 2048
    result["targets_met"] = targets
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
