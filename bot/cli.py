"""The `anirec` command: the composition root that builds settings, database and models.

Every subcommand applies pending database migrations first, so operators never run SQL.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from core.config import Settings, load_settings
from core.errors import AniRecError

logger = logging.getLogger("anirec")

DEFAULT_SAMPLE_DIR = "sample-library"  # under ANIREC_HOME
DEFAULT_SIZES = {"series": 4, "episodes": 3, "seconds": 30.0}
HARD_SIZES = {"series": 8, "episodes": 3, "seconds": 60.0}


# ----------------------------------------------------------------------------------------------
# shared set-up
# ----------------------------------------------------------------------------------------------
def setup_logging(level: str) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    for noisy in ("httpx", "alembic", "discord.gateway", "discord.client", "PIL"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


class App:
    """Lazily built runtime objects for one command invocation (built once per process)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._sessions: Any = None

    @property
    def sessions(self) -> Any:
        if self._sessions is None:
            from core.db import open_database

            self.settings.home.mkdir(parents=True, exist_ok=True)
            _, self._sessions = open_database(self.settings.db_url)
        return self._sessions

    def configure_torch(self, default: int = 0) -> None:
        """Set torch's CPU threads: ANIREC_TORCH_THREADS if set, else `default` (0: torch's).

        Serving uses 1 thread by default: two torch threads sharing two cores with anything
        else collapse (26 ms → 200+ ms a query here)."""
        import torch

        n = self.settings.torch_threads or default
        if n:
            torch.set_num_threads(n)

    def embedder(self) -> Any:
        from core.models.registry import load_scene_embedder

        return load_scene_embedder(self.sessions, self.settings.models_dir)

    def framestore(self) -> Any:
        from core.framestore import FrameStore

        return FrameStore(self.settings.framestore_dir)


class TqdmProgress:
    """Indexing progress: an overall bar in video seconds (its rate is the multiple of real
    time) and a per-episode bar in frames."""

    def __init__(self) -> None:
        from tqdm import tqdm

        self._tqdm = tqdm
        self.overall: Any = None
        self.current: Any = None

    def start(self, total_seconds: float, episodes: int) -> None:
        self.overall = self._tqdm(total=round(total_seconds, 1), unit="s", unit_scale=False,
                                  desc=f"library ({episodes} episodes)", position=0,
                                  bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s video "
                                             "[{elapsed}<{remaining}, {rate_fmt}]")

    def episode(self, name: str, duration: float) -> None:
        if self.current is not None:
            self.current.close()
        label = name if len(name) <= 48 else "…" + name[-47:]
        self.current = self._tqdm(total=round(duration, 1), desc=label, unit="s", position=1,
                                  leave=False, bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s "
                                                          "[{elapsed}<{remaining}]")

    def frames(self, n: int, t: float) -> None:
        if self.current is not None:
            self.current.n = min(t, self.current.total or t)
            self.current.refresh()

    def episode_done(self, duration: float) -> None:
        if self.overall is not None:
            self.overall.update(round(duration, 1))

    def close(self) -> None:
        for bar in (self.current, self.overall):
            if bar is not None:
                bar.close()


# ----------------------------------------------------------------------------------------------
# commands
# ----------------------------------------------------------------------------------------------
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


def cmd_index(app: App, args: argparse.Namespace) -> int:
    from core.index import RegionSpec
    from data.indexer import Indexer, Progress

    app.configure_torch()
    emb = app.embedder()
    indexer = Indexer(sessions=app.sessions, embedder=emb, index_dir=app.settings.index_dir,
                      framestore=app.framestore(), fps=args.fps or app.settings.index_fps,
                      max_fps=app.settings.index_max_fps,
                      batch_size=app.settings.embed_batch,
                      progress=Progress() if args.quiet else TqdmProgress(),
                      regions=RegionSpec() if app.settings.index_regions else None)
    rep = indexer.run(Path(args.library), reembed=args.reembed)
    print(f"Indexed {args.library}: {len(rep.added)} added, {len(rep.updated)} updated, "
          f"{len(rep.removed)} removed, {rep.unchanged} unchanged, {len(rep.failed)} failed")
    print(f"Frames: +{rep.frames_added} -{rep.frames_removed}, embedded {rep.frames_embedded}; "
          f"index {rep.index_count} vectors"
          + (f" + {rep.region_count} region vectors" if rep.region_count else "")
          + f", version {rep.index_version}")
    if rep.video_seconds:
        print(f"Speed: {rep.video_seconds:.0f} s of video in {rep.wall_seconds:.1f} s "
              f"({rep.speed:.1f}x real time)")
    for path, err in rep.failed:
        print(f"FAILED {path}: {err}")
    for w in rep.warnings:
        print(f"warning: {w}")
    return 1 if rep.failed and not (rep.added or rep.updated or rep.unchanged) else 0


def cmd_status(app: App, args: argparse.Namespace) -> int:
    from core.status import library_status

    st = library_status(app.sessions, app.settings.index_dir, app.settings.framestore_dir)
    if args.json:
        print(json.dumps(st, indent=2, default=str))
        return 0
    print(f"Home: {app.settings.home.resolve()}")
    print(f"Series: {st['series']}   Episodes: {st['episodes']} ({st['episodes_failed']} failed, "
          f"{st['episodes_pending']} pending)   Frames: {st['frames']}   "
          f"Video: {st['video_hours']:.2f} h")
    idx = st["index"]
    if idx:
        regions = f" + {idx['region_vectors']} region vectors" if idx.get("region_vectors") else ""
        print(f"Index: {idx['count']} vectors{regions}, {idx['bytes'] / 1e6:.1f} MB, version {idx['version']}, "
              f"embedder {idx['embedder']}")
    else:
        print("Index: none yet (run `anirec index LIBRARY`)")
    print(f"Frame store: {st['framestore_bytes'] / 1e6:.1f} MB")
    for kind, ver in st["models"].items():
        print(f"Model {kind}: {ver}")
    c = st["cast"]
    print(f"Cast: {c['characters']} characters, {c['references']} reference faces; "
          f"{c['faces_found']} faces found in the library, {c['faces_named']} named")
    for err in st["episode_errors"]:
        print(f"Problem: {err['path']}: {err['error']}")
    for s in st["series_list"]:
        print(f"  {s['title']}: {s['episodes']} episodes, {s['frames']} frames")
    return 0


# ----------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="anirec", description="AniRec: recognise anime scenes, "
                                "series and characters from your own library.")
    p.add_argument("--log-level", default=None, help="override ANIREC_LOG_LEVEL")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

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

    sp = sub.add_parser("index", help="index (or update) a library folder of episodes")
    sp.add_argument("library", help="folder of series folders / episode files")
    sp.add_argument("--fps", type=float, default=None, help="frames sampled per second (default 2)")
    sp.add_argument("--reembed", action="store_true",
                    help="rebuild the whole index with the current embedder (from the frame store)")
    sp.add_argument("--quiet", action="store_true", help="no progress bars")
    sp.set_defaults(func=cmd_index)

    sp = sub.add_parser("status", help="what is indexed: series, episodes, frames, index, models")
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=cmd_status)

    for register in EXTRA_COMMANDS:
        register(sub)
    return p


# Other modules add subcommands here (identify, demo, run, train, eval, ...).
EXTRA_COMMANDS: list[Callable[[Any], None]] = []


def _register_extras() -> None:
    import importlib

    EXTRA_COMMANDS.clear()  # main() may run several times in one process (tests)
    for mod in ("bot.cli_recognize", "bot.cli_train", "bot.cli_eval", "bot.cli_run",
                "bot.cli_characters", "bot.cli_faces"):
        try:
            m = importlib.import_module(mod)
        except ModuleNotFoundError as exc:
            if exc.name != mod:
                raise
            continue
        EXTRA_COMMANDS.append(m.register)


def main(argv: Sequence[str] | None = None) -> int:
    _register_extras()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
    except AniRecError as exc:
        print(f"anirec: {exc}", file=sys.stderr)
        return 2
    setup_logging(args.log_level or settings.log_level)
    app = App(settings)
    try:
        app.sessions  # every command brings the catalog schema up to date first
        return int(args.func(app, args) or 0)
    except KeyboardInterrupt:
        print("anirec: interrupted; re-run the same command to resume.", file=sys.stderr)
        return 130
    except AniRecError as exc:
        print(f"anirec: {exc}", file=sys.stderr)
        return 2
    except FileNotFoundError as exc:
        print(f"anirec: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
