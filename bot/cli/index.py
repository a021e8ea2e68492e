"""`anirec index LIBRARY`: index (or update) a library folder of episodes."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bot.app import App
from core.errors import ConfigError


def cmd_index(app: App, args: argparse.Namespace) -> int:
    from bot.cli.progress import TqdmProgress
    from data.prepare import Progress

    library = Path(args.library).expanduser()
    if not args.reembed:
        if library.is_file():
            print(f"error: {args.library} is a file; give the folder that holds your series "
                  "folders (or episode files).", file=sys.stderr)
            return 2
        if not library.is_dir():
            print(f"error: there is no folder {args.library}.", file=sys.stderr)
            return 2
    app.configure_torch()
    use_ray = args.ray is not None
    try:
        indexer = app.indexer(fps=args.fps, progress=Progress() if args.quiet else TqdmProgress(),
                              ray=use_ray, ray_address=args.ray or None)
    except ConfigError as exc:  # Ray asked for but not installed
        print(f"error: {exc}", file=sys.stderr)
        return 2
    rep = indexer.run(library, reembed=args.reembed)
    print(f"Indexed {args.library}: {len(rep.added)} added, {len(rep.updated)} updated, "
          f"{len(rep.removed)} removed, {rep.unchanged} unchanged, {len(rep.failed)} failed")
    print(f"Frames: +{rep.frames_added} -{rep.frames_removed}, embedded {rep.frames_embedded}; "
          f"index {rep.index_count} vectors"
          + (f" + {rep.region_count} region vectors" if rep.region_count else "")
          + f", version {rep.index_version}")
    if rep.video_seconds:
        print(f"Speed: {rep.video_seconds:.0f} s of video in {rep.wall_seconds:.1f} s "
              f"({rep.speed:.1f}x real time, {indexer.runner.describe()})")
    for path, err in rep.failed:
        print(f"FAILED {path}: {err}")
    for w in rep.warnings:
        print(f"warning: {w}")
    if rep.index_count == 0:
        print(f"error: no episodes indexed: {args.library} holds no video files AniRec can read "
              "(.mkv, .mp4, .webm, .avi, .mov, ...), so the bot is not ready.", file=sys.stderr)
        return 1
    return 1 if rep.failed and not (rep.added or rep.updated or rep.unchanged) else 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sp = sub.add_parser("index", help="index (or update) a library folder of episodes")
    sp.add_argument("library", help="folder of series folders / episode files")
    sp.add_argument("--fps", type=float, default=None, help="frames sampled per second (default 2)")
    sp.add_argument("--reembed", action="store_true",
                    help="rebuild the whole index with the current embedder (from the frame store)")
    sp.add_argument("--quiet", action="store_true", help="no progress bars")
    sp.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                    help="decode and embed episodes in Ray workers: a local Ray with "
                         "ANIREC_INDEX_WORKERS (default: all) CPUs, or the cluster at ADDRESS "
                         "(needs pip install 'anirec[scale]')")
    sp.set_defaults(func=cmd_index)
