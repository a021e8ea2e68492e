"""Write the synthetic anime library: H.264 MP4 episodes, `series.json` per series, one
reference face per character and the `ground_truth.json` sidecar.

Layout of DIR::

    DIR/ground_truth.json                       everything the generator knows (see below)
    DIR/<Series>/series.json                    titles, ids, genres, is_adult
    DIR/<Series>/[Group] <Series> - 01 [1080p].mp4   (release-style names, vary per series)
    DIR/references/<Series>/<Character>.png     a clean front-view head crop per character

Frames are rendered one at a time and streamed to the encoder, so a 20-minute 720p
episode needs no more memory than a 30-second one. Episodes are rendered in parallel by
worker subprocesses (`data.synth._worker`). libx264 runs with a fixed thread count, so the
same parameters give the same bytes.
"""

from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
from PIL import Image

from data.synth.characters import reference_image
from data.synth.common import rng_for
from data.synth.series import SeriesSpec, build_series
from data.synth.timeline import (
    ShotRenderer,
    describe_segments,
    plan_episode,
    random_shot,
    recap_entries,
    render_plan,
    subtitle_lines,
)

logger = logging.getLogger(__name__)

GENERATOR = "anirec-synth"
GENERATOR_VERSION = 1
CRF = 23
PRESET = "veryfast"
# "hard" (see `DIFFICULTIES`): the video itself is encoded worse, so the indexed frames carry
# compression artefacts of their own, as low-bitrate rips do
HARD_CRF = 32
DIFFICULTIES = {
    "default": "one look-alike pair of series (series 2 is a spin-off twin of series 1)",
    "hard": "every second series is a spin-off twin of the one before it (same drawing "
            "style, near-same palette, two shared backgrounds, a look-alike heroine), more "
            "night scenes, and low-bitrate video (x264 CRF 32 instead of 23)",
}

ProgressFn = Callable[[str, int, int], None]


@dataclass(frozen=True)
class SynthParams:
    """Parameters of a synthetic library (validated on construction)."""

    series: int = 4
    episodes: int = 3
    seconds: float = 30.0
    seed: int = 0
    width: int = 480
    height: int = 270
    fps: int = 12
    difficulty: str = "default"  # see DIFFICULTIES

    def __post_init__(self) -> None:
        for name in ("series", "episodes", "seed", "width", "height", "fps"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                raise TypeError(f"{name} must be an int, got {type(v).__name__}")
        if isinstance(self.seconds, bool) or not isinstance(self.seconds, (int, float)):
            raise TypeError(f"seconds must be a number, got {type(self.seconds).__name__}")
        if not 1 <= self.series <= 200:
            raise ValueError(f"series must be between 1 and 200, got {self.series}")
        if not 1 <= self.episodes <= 99:
            raise ValueError(f"episodes must be between 1 and 99, got {self.episodes}")
        if not (math.isfinite(self.seconds) and 10 <= self.seconds <= 4 * 3600):
            raise ValueError(
                f"seconds must be between 10 and 14400 (an episode needs room for an "
                f"opening, a recap and shots), got {self.seconds}"
            )
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        if not (64 <= self.width <= 3840 and 36 <= self.height <= 2160):
            raise ValueError(
                f"frame size must be between 64x36 and 3840x2160, got {self.width}x{self.height}"
            )
        if self.width % 2 or self.height % 2:
            raise ValueError(
                f"width and height must be even (yuv420p), got {self.width}x{self.height}"
            )
        if not 1 <= self.fps <= 60:
            raise ValueError(f"fps must be between 1 and 60, got {self.fps}")
        if self.difficulty not in DIFFICULTIES:
            raise ValueError(f"difficulty must be one of {', '.join(DIFFICULTIES)}, "
                             f"got {self.difficulty!r}")

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("seed")
        if self.difficulty == "default":  # libraries written before it existed stay valid
            d.pop("difficulty")
        d["seconds"] = float(self.seconds)
        d["generator"] = f"{GENERATOR}/{GENERATOR_VERSION}"
        return d


# ---------------------------------------------------------------------------------------
# encoding


def _open_encoder(path: Path, width: int, height: int, fps: int, crf: int = CRF) -> tuple[Any, Any]:
    container = av.open(str(path), mode="w", format="mp4")
    # One x264 thread for small frames keeps output byte-identical and leaves the cores to
    # the other workers; big frames get two (x264 is deterministic for a fixed thread count).
    threads = 1 if width * height <= 640 * 360 else 2
    stream = container.add_stream(
        "libx264",
        rate=fps,
        options={"crf": str(crf), "preset": PRESET, "x264-params": f"threads={threads}"},
    )
    stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
    stream.time_base = Fraction(1, fps)
    stream.codec_context.thread_count = threads
    # No creation time or encoder-dependent metadata beyond the library version.
    container.metadata["comment"] = "AniRec synthetic sample library"
    return container, stream


def _render_episode(job: dict[str, Any]) -> dict[str, Any]:
    """Render and encode one episode; return its ground-truth entry. Runs in a worker."""
    t0 = time.perf_counter()
    p = SynthParams(**job["params"])
    series: SeriesSpec = build_series(p.seed, p.series, difficulty=p.difficulty)[job["series_index"]]
    ep: int = job["episode"]
    out_dir = Path(job["out_dir"])
    rel = f"{series.folder}/{series.filename(ep)}"
    plan = plan_episode(series, ep, seconds=p.seconds, width=p.width, height=p.height, fps=p.fps)
    path = out_dir / rel
    tmp = path.with_name(path.name + ".part")
    crf = HARD_CRF if p.difficulty == "hard" else CRF
    container, stream = _open_encoder(tmp, p.width, p.height, p.fps, crf)
    frames_gt: list[dict[str, Any]] = []
    n = 0
    try:
        for img, si, faces in render_plan(plan):
            frame = av.VideoFrame.from_ndarray(np.asarray(img), format="rgb24")
            frame.pts = n
            for packet in stream.encode(frame):
                container.mux(packet)
            frames_gt.append({"shot": si, "faces": [f.to_json() for f in faces]})
            n += 1
        for packet in stream.encode():
            container.mux(packet)
    except BaseException:
        container.close()
        tmp.unlink(missing_ok=True)
        raise
    container.close()
    if n != plan.layout.total:  # pragma: no cover - a planning bug
        raise RuntimeError(f"{rel}: rendered {n} frames, planned {plan.layout.total}")
    os.replace(tmp, path)
    lay = plan.layout
    recap = []
    for r in recap_entries(plan):
        src = f"{series.folder}/{series.filename(r['source_episode'])}"
        recap.append(
            {"from": r["from"], "to": r["to"], "source_path": src, "source_time": r["source_time"]}
        )
    shots = describe_segments(plan)
    for s in shots:
        if "source_episode" in s:
            s["source_path"] = f"{series.folder}/{series.filename(s.pop('source_episode'))}"
    entry = {
        "path": rel,
        "series": series.title,
        "season": 1,
        "episode": ep,
        "title": plan.title,
        "fps": p.fps,
        "frames": n,
        "duration": n / p.fps,
        "width": p.width,
        "height": p.height,
        "subtitles": plan.subtitled,
        "opening": [0.0, lay.op / p.fps] if lay.op else None,
        "ending": [(lay.total - lay.ed) / p.fps, lay.total / p.fps] if lay.ed else None,
        "recap": recap,
        "shots": shots,
        "subtitle_lines": subtitle_lines(plan),
        "frames_gt": frames_gt,
    }
    logger.debug("rendered %s (%d frames) in %.1fs", rel, n, time.perf_counter() - t0)
    return entry


# ---------------------------------------------------------------------------------------
# the library


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(
        json.dumps(data, ensure_ascii=False, indent=1 if path.name == "series.json" else None),
        encoding="utf-8",
    )
    os.replace(tmp, path)


def _existing(gt_path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(gt_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("generator") == GENERATOR else None


def _is_complete(data: dict[str, Any], root: Path) -> bool:
    for ep in data.get("episodes", []):
        p = root / ep["path"]
        if not p.is_file() or p.stat().st_size == 0:
            return False
    for s in data.get("series", []):
        if not (root / s["folder"] / "series.json").is_file():
            return False
    return True


def _remove_previous(data: dict[str, Any], root: Path) -> None:
    """Delete the files an older library in `root` wrote (and nothing else)."""
    for ep in data.get("episodes", []):
        (root / ep["path"]).unlink(missing_ok=True)
    for s in data.get("series", []):
        (root / s["folder"] / "series.json").unlink(missing_ok=True)
        for c in s.get("characters", []):
            (root / "references" / s["folder"] / f"{c['name']}.png").unlink(missing_ok=True)
        for d in (root / s["folder"], root / "references" / s["folder"]):
            try:
                d.rmdir()
            except OSError:
                pass


def _run_workers(
    jobs: list[dict[str, Any]], n_workers: int, root: Path, done: Callable[[dict[str, Any]], None]
) -> None:
    """Run jobs in `n_workers` worker subprocesses (`python -m data.synth._worker`).

    Plain subprocesses rather than multiprocessing: no `__main__` guard is needed in the
    caller's script and nothing is forked from a process that may have threads.
    """
    pkg_root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ)
    env["PYTHONPATH"] = pkg_root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    with tempfile.TemporaryDirectory(prefix=".synth-", dir=root) as tmp_dir:
        tmp = Path(tmp_dir)
        results = {k: tmp / f"result{k}.json" for k in range(len(jobs))}
        procs: list[tuple[subprocess.Popen[bytes], Any]] = []
        try:
            for w in range(n_workers):
                mine = [
                    {**job, "result": str(results[k])}
                    for k, job in enumerate(jobs)
                    if k % n_workers == w
                ]
                job_path = tmp / f"jobs{w}.json"
                job_path.write_text(json.dumps(mine), encoding="utf-8")
                err = open(tmp / f"stderr{w}.txt", "w+b")  # noqa: SIM115 - closed in finally
                procs.append(
                    (
                        subprocess.Popen(
                            [sys.executable, "-m", "data.synth._worker", str(job_path)],
                            env=env,
                            stdout=subprocess.DEVNULL,
                            stderr=err,
                        ),
                        err,
                    )
                )
            waiting = dict(results)
            while waiting:
                for k in [k for k, path in waiting.items() if path.exists()]:
                    done(json.loads(waiting.pop(k).read_text(encoding="utf-8")))
                for proc, err in procs:
                    if proc.poll() not in (None, 0):
                        err.seek(0)
                        message = err.read().decode("utf-8", "replace")
                        raise RuntimeError(
                            f"a synthetic-library worker failed (exit {proc.returncode}):"
                            f"\n{message[-3000:]}"
                        )
                if waiting and all(proc.poll() == 0 for proc, _ in procs):
                    missing = [k for k in waiting if not waiting[k].exists()]
                    if missing:
                        raise RuntimeError(f"workers exited without rendering jobs {missing}")
                time.sleep(0.02)
        finally:
            for proc, err in procs:  # only our own children
                if proc.poll() is None:
                    proc.kill()
                proc.wait()
                err.close()


def generate_library(
    out_dir: Path,
    *,
    series: int = 4,
    episodes: int = 3,
    seconds: float = 30.0,
    seed: int = 0,
    width: int = 480,
    height: int = 270,
    fps: int = 12,
    difficulty: str = "default",
    workers: int = 2,
    progress: ProgressFn | None = None,
) -> Path:
    """Write the synthetic library into `out_dir`; return the path of `ground_truth.json`.

    Idempotent: an existing complete library with the same parameters is left alone; one
    with other parameters is replaced (only files the generator wrote are removed).

    Args:
        out_dir: Library folder (created if missing).
        series: Number of series (>= 2 for anything that tests recognition; 1 is accepted
            for throughput benchmarks such as one 20-minute 720p episode).
        episodes: Episodes per series (>= 1).
        seconds: Length of each episode in seconds (>= 10).
        seed: Everything is a deterministic function of the seed and the other parameters.
        width: Frame width in pixels (even).
        height: Frame height in pixels (even).
        fps: Frames per second; characters are animated at 12 drawings a second at most.
        difficulty: "default" or "hard" (`DIFFICULTIES` says what each means).
        workers: Processes that render episodes in parallel (1 = in this process).
        progress: Called as `progress(label, done, total)` whenever an episode is written.

    Returns:
        The path of `out_dir/ground_truth.json`.

    Raises:
        ValueError: A parameter is out of range (the message says which).
        TypeError: A parameter has the wrong type.
    """
    params = SynthParams(
        series=series,
        episodes=episodes,
        seconds=seconds,
        seed=seed,
        width=width,
        height=height,
        fps=fps,
        difficulty=difficulty,
    )
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be an int >= 1, got {workers!r}")
    if series < 2:
        logger.warning(
            "a one-series library can time a pipeline but cannot test series "
            "recognition; use series >= 2 for evaluation"
        )
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    gt_path = root / "ground_truth.json"
    old = _existing(gt_path)
    if old is not None:
        if (
            old.get("params") == params.to_json()
            and old.get("seed") == seed
            and _is_complete(old, root)
        ):
            logger.info("synthetic library in %s is up to date", root)
            return gt_path
        gt_path.unlink()
        _remove_previous(old, root)

    t0 = time.perf_counter()
    specs = build_series(seed, series, difficulty=difficulty)
    for s in specs:
        (root / s.folder).mkdir(parents=True, exist_ok=True)
        _write_json(root / s.folder / "series.json", s.metadata())
        ref_dir = root / "references" / s.folder
        ref_dir.mkdir(parents=True, exist_ok=True)
        for c in s.characters:
            reference_image(c, s.draw_style).save(ref_dir / f"{c.name}.png", optimize=False)

    jobs = [
        {"params": asdict(params), "series_index": s.index, "episode": e, "out_dir": str(root)}
        for s in specs
        for e in range(1, episodes + 1)
    ]
    results: dict[str, dict[str, Any]] = {}
    total = len(jobs)

    def done(entry: dict[str, Any]) -> None:
        results[entry["path"]] = entry
        if progress is not None:
            progress(entry["path"], len(results), total)

    n_workers = min(workers, total)
    if n_workers <= 1:
        for job in jobs:
            done(_render_episode(job))
    else:
        _run_workers(jobs, n_workers, root, done)

    order = [f"{s.folder}/{s.filename(e)}" for s in specs for e in range(1, episodes + 1)]
    data = {
        "version": 1,
        "generator": GENERATOR,
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        "params": params.to_json(),
        "face_box": "head box: top of the hair cap to the chin, outer edges of the hair around "
        "the skull (profile: back of the hair to the nose tip); excludes long hair "
        "below the chin, tails, ahoge, ears and bows; [x0, y0, x1, y1] in pixels, "
        "x1/y1 exclusive, clipped to the frame",
        "occluded": f"at least {0.25:.0%} of the head box hidden by the frame edge, a foreground "
        "object or another character",
        "references": "references/<series folder>/<character>.png",
        "series": [s.to_json() for s in specs],
        "episodes": [results[p] for p in order],
    }
    _write_json(gt_path, data)
    logger.info(
        "wrote synthetic library (%d episodes) to %s in %.1fs",
        total,
        root,
        time.perf_counter() - t0,
    )
    return gt_path


def render_out_of_library(
    n: int, seed: int, width: int = 480, height: int = 270
) -> list[Image.Image]:
    """Stills in the library's general style from series that are *not* in any library.

    They come from a separate seed space ("ool"): other titles, casts, palettes and
    locations, drawn with the same art styles. Use them as "should say not sure" queries.

    Args:
        n: Number of stills.
        seed: Seed of the out-of-library universe (independent of the library seed).
        width: Width of each still.
        height: Height of each still.

    Returns:
        `n` RGB images.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    SynthParams(series=2, episodes=1, seconds=10, seed=seed, width=width, height=height)
    specs = build_series(seed, max(2, min(8, math.ceil(n / 3))), space="ool")
    out = []
    for j in range(n):
        s = specs[j % len(specs)]
        r = rng_for(seed, "ool-still", j)
        for _ in range(5):  # prefer stills with somebody in them, as real queries are
            shot = random_shot(s, r, width=width, height=height)
            if shot.actors:
                break
        rend = ShotRenderer(s, shot, width, height, 12, subtitled=bool(r.random() < 0.3))
        img, _ = rend.render(int(r.integers(shot.frames)))
        out.append(img)
    return out
