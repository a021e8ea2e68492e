"""Picture-in-picture benchmark: is the frame view of a phone screenshot or a meme the picture
that was pasted into it?

Frames of the sample library (generated in a temporary folder unless `--library` names one)
are pasted into the evaluation suite's phone screenshots and memes (alone, and with JPEG or a
colour shift, as in `anirec eval`), which record where they put the picture. A query counts
as framed when one of its views (`core.recognition.framing.query_views`) covers the pasted picture with
an intersection over union of at least 0.9. Baselines, in the same run on the same images:
border trimming alone (the trimmed view, no frame search), and the frame search AniRec used
before (`previous_views`: the largest box of a video frame's shape bounded by edge lines,
looked for inside the trimmed image). Time per image is wall time on this machine.

Run:
    python -m bench.bench_framing [--library DIR] [--frames 300]   # -> bench/results/framing.json
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from core.recognition.framing import (
    WEAK_COST,
    WEAK_EDGE,
    Box,
    _edge_lines,
    _grey,
    _rect_std,
    iou,
    query_views,
    trim_borders,
)
from core.sysinfo import machine_info
from data.perturb import color_shift, jpeg, meme_caption, phone_screenshot
from data.video import read_frames_at

ROOT = Path(__file__).resolve().parent.parent

HIT_IOU = 0.9
PREVIOUS_ASPECTS = {16 / 9: 0.0, 4 / 3: 0.02, 1.85: 0.05, 2.39: 0.05, 21 / 9: 0.05}


def previous_views(img: Image.Image) -> list[Box]:
    """The boxes of the views AniRec made before (commit ea86ca3): the trimmed image, and the
    largest box of a video frame's shape bounded by grey edge lines inside it."""
    box = trim_borders(img)
    trimmed = img.crop(box)
    g, scale = _grey(trimmed)
    h, w = g.shape
    s1 = np.pad(g.astype(np.float64).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    s2 = np.pad((g.astype(np.float64) ** 2).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    strong = set(_edge_lines(g, 0))
    rows = sorted({0, h, *strong, *_edge_lines(g, 0, thr=WEAK_EDGE)})
    weak = {y: (0.0 if y in strong or y in (0, h) else WEAK_COST) for y in rows}
    best: tuple[float, Box] | None = None
    for i, y0 in enumerate(rows):
        for y1 in rows[i + 1:]:
            if y1 - y0 < h * 0.15 or (y0 == 0 and y1 == h):
                continue
            cols = [0] + _edge_lines(g[y0:y1], 1, min_frac=0.6) + [w]
            for j, x0 in enumerate(cols):
                for x1 in cols[j + 1:]:
                    area = (x1 - x0) * (y1 - y0) / (w * h)
                    if area < 0.12 or area > 0.97:
                        continue
                    err, prior = min((abs(np.log((x1 - x0) / (y1 - y0) / a)), p)
                                     for a, p in PREVIOUS_ASPECTS.items())
                    if err > 0.06 or _rect_std(s1, s2, y0, y1, x0, x1) < 12.0:
                        continue
                    score = area - 8.0 * err - prior - weak[y0] - weak[y1]
                    if best is None or score > best[0]:
                        best = (score, (x0, y0, x1, y1))
    out = [box]
    if best is not None:
        x0, y0, x1, y1 = (round(v / scale) for v in best[1])
        out.append((box[0] + x0, box[1] + y0, box[0] + x1, box[1] + y1))
    return out


def _placed(make: Callable[..., Image.Image], *after: Callable[[Image.Image, random.Random], Image.Image]
            ) -> Callable[[Image.Image, random.Random], tuple[Image.Image, Box]]:
    """The suite's perturbation (`make`, then `after` with the same generator, as
    `data.perturb.chain`), returning the picture's box too."""
    def f(img: Image.Image, rng: random.Random) -> tuple[Image.Image, Box]:
        boxes: list[Box] = []
        out = make(img, rng, placed=boxes)
        for g in after:
            out = g(out, rng)
        return out.convert("RGB"), boxes[0]
    return f


CASES = {
    "phone": _placed(phone_screenshot),
    "meme": _placed(meme_caption),
    "phone+jpeg": _placed(phone_screenshot, jpeg(40, 80)),
    "meme+color": _placed(meme_caption, color_shift, jpeg(50, 90)),
}


def library_frames(library: Path, n: int, seed: int) -> list[Image.Image]:
    """`n` frames at seeded random times of the library's episodes (ground_truth.json)."""
    gt = json.loads((library / "ground_truth.json").read_text())
    eps = gt["episodes"]
    rng = random.Random(seed)
    want: dict[int, list[float]] = {}
    for _ in range(n):
        i = rng.randrange(len(eps))
        want.setdefault(i, []).append(rng.uniform(0.2, float(eps[i]["duration"]) - 0.2))
    frames = []
    for i, times in sorted(want.items()):
        frames += [Image.fromarray(a) for a in read_frames_at(library / eps[i]["path"], sorted(times))]
    return frames


def run(library: Path, n: int, seed: int) -> dict[str, Any]:
    frames = library_frames(library, n, seed)
    per: dict[str, Any] = {}
    for name, make in CASES.items():
        hits = base_hits = prev_hits = 0
        t_views = t_trim = t_prev = 0.0
        ious = []
        for k, img in enumerate(frames):
            q, truth = make(img, random.Random(seed * 1_000_003 + k))
            t0 = time.perf_counter()
            box = trim_borders(q)
            t1 = time.perf_counter()
            views = query_views(q)
            t2 = time.perf_counter()
            prev = previous_views(q)
            t3 = time.perf_counter()
            t_trim += t1 - t0
            t_views += t2 - t1
            t_prev += t3 - t2
            prev_hits += max(iou(b, truth) for b in prev) >= HIT_IOU
            best = max(iou(v.box, truth) for v in views)
            ious.append(best)
            hits += best >= HIT_IOU
            base_hits += iou(box, truth) >= HIT_IOU
        per[name] = {
            "n": len(frames),
            "framed": round(hits / len(frames), 4),
            "trim_only": round(base_hits / len(frames), 4),
            "previous": round(prev_hits / len(frames), 4),
            "median_iou": round(float(np.median(ious)), 4),
            "ms_per_image": round(t_views * 1000 / len(frames), 2),
            "trim_ms_per_image": round(t_trim * 1000 / len(frames), 2),
            "previous_ms_per_image": round(t_prev * 1000 / len(frames), 2),
        }
        print(f"{name:12s} framed {hits}/{len(frames)} · previous search {prev_hits} · trimming "
              f"alone {base_hits} · {per[name]['ms_per_image']} ms/image (previous "
              f"{per[name]['previous_ms_per_image']}, trimming {per[name]['trim_ms_per_image']})")
    total = sum(p["framed"] * p["n"] for p in per.values())
    total_base = sum(p["trim_only"] * p["n"] for p in per.values())
    total_prev = sum(p["previous"] * p["n"] for p in per.values())
    count = sum(p["n"] for p in per.values())
    return {
        "schema": "anirec.bench.framing/1",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "library": str(library), "frames": len(frames), "seed": seed, "hit_iou": HIT_IOU,
        "per_case": per,
        "overall": {"framed": round(total / count, 4), "previous": round(total_prev / count, 4),
                    "trim_only": round(total_base / count, 4)},
        "command": "python -m bench.bench_framing " + " ".join(sys.argv[1:]),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--library", type=Path, help="a sample library (default: generate one)")
    ap.add_argument("--frames", type=int, default=300, help="library frames per case")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "framing.json")
    args = ap.parse_args(argv)
    if args.frames <= 0:
        ap.error("--frames must be positive")
    if args.library is None:
        from data.synth import generate_library

        with tempfile.TemporaryDirectory() as tmp:
            lib = Path(tmp) / "library"
            generate_library(lib)
            result = run(lib, args.frames, args.seed)
        result["library"] = "default sample library (generated)"
    else:
        result = run(args.library, args.frames, args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    o = result["overall"]
    print(f"overall: framed {o['framed']:.1%} · previous search {o['previous']:.1%} · trimming "
          f"alone {o['trim_only']:.1%} -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
