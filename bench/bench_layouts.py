"""Pictures inside user interfaces: is the frame found, and is the screenshot recognised?

Frames of an indexed sample library (outside openings, endings and recaps, which several
episodes share) are laid out by `data.layouts` in the tuning families and in the held-apart
families (other page kinds, themes, margins and damage, never tuned on). A layout counts as
framed when one of its views (`core.recognition.framing.query_views`) covers the main picture
with an intersection over union of at least 0.9; the first frame view's IoU is reported too.
Optionally (`--renpy DIR`) the held-apart layouts are also made around human-drawn
backgrounds (Debian's renpy-thequestion, Expat licence) instead of library frames.

Recognition: held-apart layout screenshots are identified with the indexed library's
recogniser, and so are the same frames alone (unframed); the episode top-1 of both, in the
same run.

Run (the home must hold the index of the library):
    ANIREC_HOME=HOME python -m bench.bench_layouts --library LIB [--renpy /work/wt/renpy]
        # -> bench/results/framing/layouts.json
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from core.recognition.framing_pages import iou, query_views
from core.sysinfo import machine_info
from data.layouts import SPLITS, Layout, layouts
from data.video import read_frames_at

ROOT = Path(__file__).resolve().parent.parent
HIT_IOU = 0.9


def plain_frames(library: Path, n: int, seed: int) -> list[tuple[Image.Image, str]]:
    """`n` frames (and their episode's path) at seeded random times of the library's episodes,
    away from openings, endings and recaps."""
    gt = json.loads((library / "ground_truth.json").read_text())
    eps = gt["episodes"]
    rng = random.Random(seed)
    want: dict[int, list[float]] = {}
    got = 0
    while got < n:
        i = rng.randrange(len(eps))
        ep = eps[i]
        t = rng.uniform(0.3, float(ep["duration"]) - 0.3)
        shared = [ep.get("opening") or [], ep.get("ending") or [], *(ep.get("recap") or [])]
        if any(len(s) == 2 and s[0] - 0.5 <= t <= s[1] + 0.5 for s in shared):
            continue
        want.setdefault(i, []).append(t)
        got += 1
    out = []
    for i, times in sorted(want.items()):
        out += [(Image.fromarray(a), eps[i]["path"]) for a in read_frames_at(library / eps[i]["path"], sorted(times))]
    return out


def framing_stats(items: Sequence[Layout]) -> dict[str, Any]:
    """IoU of the best view and of the first frame view with the main picture, per family."""
    per: dict[str, dict[str, list[float]]] = {}
    t = 0.0
    for lay in items:
        t0 = time.perf_counter()
        views = query_views(lay.image)
        t += time.perf_counter() - t0
        best = max(iou(v.box, lay.box) for v in views)
        first = next((iou(v.box, lay.box) for v in views if v.kind == "frame"), iou(views[0].box, lay.box))
        f = per.setdefault(lay.family, {"best": [], "first": [], "views": []})
        f["best"].append(best)
        f["first"].append(first)
        f["views"].append(len(views))

    def summary(best: list[float], first: list[float], views: list[float]) -> dict[str, Any]:
        b = np.array(best)
        return {"n": len(b), "framed": round(float(np.mean(b >= HIT_IOU)), 4),
                "first_view_framed": round(float(np.mean(np.array(first) >= HIT_IOU)), 4),
                "iou_p10": round(float(np.percentile(b, 10)), 4),
                "iou_median": round(float(np.median(b)), 4),
                "views_per_query": round(float(np.mean(views)), 3)}

    allb = [x for f in per.values() for x in f["best"]]
    allf = [x for f in per.values() for x in f["first"]]
    allv = [x for f in per.values() for x in f["views"]]
    return {**summary(allb, allf, allv), "ms_per_image": round(t * 1000 / max(1, len(items)), 2),
            "iou_histogram": np.histogram(allb, bins=[0, 0.5, 0.7, 0.8, 0.9, 0.95, 1.0001])[0].tolist(),
            "per_family": {k: summary(v["best"], v["first"], v["views"]) for k, v in sorted(per.items())}}


def recognition(home_recognizer: Any, pairs: Sequence[tuple[Image.Image, Image.Image, str, str]]
                ) -> dict[str, Any]:
    """Episode top-1 of each layout screenshot and of its frame alone."""
    from core.media import load_media

    eps = home_recognizer.catalog.episodes

    def right(img: Image.Image, path: str) -> bool:
        import io

        buf = io.BytesIO()
        img.convert("RGB").save(buf, format="PNG")
        rec = home_recognizer.recognize(load_media(buf.getvalue()))
        if rec.best is None:
            return False
        em = eps.get(rec.best.episode_id)
        return em is not None and (em.path == path or em.path.endswith(path))

    framed = unframed = 0
    per: dict[str, list[int]] = {}
    for lay_img, frame, path, fam in pairs:
        a, b = right(lay_img, path), right(frame, path)
        framed += a
        unframed += b
        per.setdefault(fam, [0, 0, 0])
        per[fam][0] += a
        per[fam][1] += b
        per[fam][2] += 1
    n = max(1, len(pairs))
    return {"n": len(pairs), "episode_top1_layouts": round(framed / n, 4),
            "episode_top1_unframed": round(unframed / n, 4),
            "gap_points": round(100 * (unframed - framed) / n, 2),
            "per_family": {k: {"n": v[2], "layouts": round(v[0] / v[2], 4), "unframed": round(v[1] / v[2], 4)}
                           for k, v in sorted(per.items())}}


def renpy_pictures(root: Path) -> list[Image.Image]:
    """The human-drawn backgrounds of renpy-thequestion, resized to a 16:9 frame, with a sprite
    standing on each (as a visual novel's screen)."""
    game = root / "usr/share/games/renpy/the_question/game/images"
    bgs = sorted(game.glob("bg *.jpg"))
    sprites = sorted(game.glob("sylvie *.png"))
    if not bgs:
        raise SystemExit(f"no renpy backgrounds under {game}")
    out: list[Image.Image] = []
    for k, b in enumerate(bgs):
        chosen: list[Path | None] = [*sprites[k::len(bgs)][:3]] or [None]
        for s in chosen:
            img = Image.open(b).convert("RGB").resize((800, 450), Image.Resampling.BILINEAR)
            if s is not None:
                sp = Image.open(s).convert("RGBA")
                sp = sp.resize((round(sp.width * 400 / sp.height), 400), Image.Resampling.BILINEAR)
                img.paste(sp, (100 + 150 * (len(out) % 3), 50), sp)
            out.append(img)
    return out


def run(library: Path, n: int, n_rec: int, seed: int, renpy: Path | None) -> dict[str, Any]:
    from bot.app import App
    from core.config import Settings

    frames = plain_frames(library, n, seed)
    pics = [f for f, _ in frames]
    result: dict[str, Any] = {"framing": {}}
    for split in SPLITS:
        items = list(layouts(split, pics, n, seed=seed))
        result["framing"][split] = framing_stats(items)
        r = result["framing"][split]
        print(f"{split:5s} framed {r['framed']:.1%} (first view {r['first_view_framed']:.1%}) · "
              f"IoU p10 {r['iou_p10']} · {r['ms_per_image']} ms/image · "
              + " ".join(f"{k} {v['framed']:.0%}" for k, v in r["per_family"].items()))
    if renpy is not None:
        rp = renpy_pictures(renpy)
        items = list(layouts("held", rp, max(n // 2, len(rp)), seed=seed + 1))
        result["framing"]["held_renpy"] = framing_stats(items)
        r = result["framing"]["held_renpy"]
        print(f"held (renpy art) framed {r['framed']:.1%} · " + " ".join(
            f"{k} {v['framed']:.0%}" for k, v in r["per_family"].items()))
    # recognition: held-apart layouts vs the same frames alone
    app = App.from_settings(Settings())  # type: ignore[call-arg]
    rec = app.recognizer()
    held = list(layouts("held", pics[:n_rec], n_rec, seed=seed + 2))
    pairs = [(lay.image, frames[k % n_rec][0], frames[k % n_rec][1], lay.family) for k, lay in enumerate(held)]
    t0 = time.perf_counter()
    result["recognition_held"] = recognition(rec, pairs)
    result["recognition_held"]["seconds"] = round(time.perf_counter() - t0, 1)
    r = result["recognition_held"]
    print(f"recognition (held-apart layouts): episode top-1 {r['episode_top1_layouts']:.1%} vs "
          f"{r['episode_top1_unframed']:.1%} unframed (gap {r['gap_points']} points)")
    return {
        "schema": "anirec.bench.layouts/1",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "contention": "shared with other jobs",
        "library": str(library), "layouts_per_split": n, "recognition_queries": n_rec,
        "seed": seed, "hit_iou": HIT_IOU,
        **result,
        "command": "python -m bench.bench_layouts " + " ".join(sys.argv[1:]),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--library", type=Path, required=True, help="the indexed sample library")
    ap.add_argument("--layouts", type=int, default=200, help="layouts per split")
    ap.add_argument("--recognition", type=int, default=100, help="held-apart layouts identified")
    ap.add_argument("--renpy", type=Path, help="extracted renpy-thequestion package (dpkg-deb -x)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "framing" / "layouts.json")
    args = ap.parse_args(argv)
    if args.layouts <= 0 or args.recognition <= 0 or args.recognition > args.layouts:
        ap.error("--layouts must be positive, --recognition between 1 and --layouts")
    result = run(args.library, args.layouts, args.recognition, args.seed, args.renpy)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(f"-> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
