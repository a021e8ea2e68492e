"""`anirec sample-library DIR`: write the synthetic sample library."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from bot.app import App

DEFAULT_SIZES = {"series": 4, "episodes": 3, "seconds": 30.0}
HARD_SIZES = {"series": 8, "episodes": 3, "seconds": 60.0}


def cmd_sample_library(app: App, args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from data.synth import SynthParams, generate_library

    out = Path(args.dir)
    sizes = HARD_SIZES if args.difficulty == "hard" else DEFAULT_SIZES
    for name, value in sizes.items():  # what was not given follows the difficulty
        if getattr(args, name) is None:
            setattr(args, name, value)
    try:  # bad sizes are refused before anything is shown or written
        SynthParams(series=args.series, episodes=args.episodes, seconds=args.seconds,
                    seed=args.seed, difficulty=args.difficulty)
    except (ValueError, TypeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    bar = tqdm(total=args.series * args.episodes, unit="episode", desc="writing sample library")

    def progress(label: str, done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.set_postfix_str(label[-40:])
        bar.refresh()

    t0 = time.perf_counter()
    try:
        gt = generate_library(out, series=args.series, episodes=args.episodes,
                              seconds=args.seconds, seed=args.seed, difficulty=args.difficulty,
                              progress=progress)
    except (ValueError, TypeError) as e:
        bar.close()
        print(f"error: {e}", file=sys.stderr)
        return 2
    bar.close()
    data = json.loads(Path(gt).read_text())
    n_eps = len(data["episodes"])
    secs = sum(e["duration"] for e in data["episodes"])
    print(f"Wrote {len(data['series'])} series, {n_eps} episodes ({secs:.0f} s of video) to {out} "
          f"in {time.perf_counter() - t0:.1f} s")
    print(f"Ground truth: {gt}")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sp = sub.add_parser("sample-library", help="write the synthetic sample library")
    sp.add_argument("dir", help="output folder")
    sp.add_argument("--series", type=int, default=None, help="default 4 (hard: 8)")
    sp.add_argument("--episodes", type=int, default=None, help="default 3")
    sp.add_argument("--seconds", type=float, default=None, help="default 30 (hard: 60)")
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--difficulty", choices=("default", "hard"), default="default",
                    help="hard: twice the series, each second one a look-alike spin-off of "
                         "the one before, longer episodes, more night scenes, low-bitrate "
                         "video (README: Evaluation)")
    sp.set_defaults(func=cmd_sample_library)
