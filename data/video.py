"""Video decoding (PyAV): probe, decode in order, sample at a fixed rate, find shot cuts.

Sampling decodes every frame in order and drops what it does not need (seeking is ~7x
slower). Shot cuts are found on a tiny grey copy of every decoded frame, so a cut between
two sampled frames is still seen. The two scalers (the tiny grey copy of every frame, the RGB
thumbnail of a kept one) are made once per video and reused: PyAV's `frame.to_ndarray(width=…)`
builds a new swscale context for every frame, which cost more than decoding a 720p frame
(the pixels are the same either way: tests/test_sampling.py). Near-duplicate samples (a still scene) are dropped, but a
frame is always kept at least every `max_gap` seconds and right after a cut.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from core.errors import AniRecError

logger = logging.getLogger(__name__)

CUT_SIZE = (32, 18)
#: EpisodeDecoder's `decode`: every frame, or only the reference frames
DECODE_MODES = ("all", "ref")


class VideoError(AniRecError):
    """A video file cannot be decoded (corrupt, truncated, no video stream)."""


@dataclass(frozen=True)
class VideoInfo:
    duration: float
    fps: float
    width: int
    height: int
    frames: int | None
    codec: str


@dataclass(frozen=True)
class SampledFrame:
    t: float  # seconds
    rgb: np.ndarray  # uint8 [H, W, 3] at the requested size
    cut_before: bool  # a shot cut happened since the previous kept sample


def probe_video(path: Path) -> VideoInfo:
    """Read the container header. Raises VideoError on anything unreadable."""
    try:
        with av.open(str(path), metadata_errors="ignore") as c:
            if not c.streams.video:
                raise VideoError(f"{path.name}: no video stream")
            s = c.streams.video[0]
            fps = float(s.average_rate or s.guessed_rate or 0) or 24.0
            if s.duration is not None and s.time_base is not None:
                duration = float(s.duration * s.time_base)
            elif c.duration is not None:
                duration = c.duration / av.time_base
            else:
                duration = 0.0
            return VideoInfo(duration=duration, fps=fps, width=s.codec_context.width,
                             height=s.codec_context.height, frames=s.frames or None,
                             codec=s.codec_context.name)
    except VideoError:
        raise
    except (av.error.FFmpegError, OSError, ValueError, IndexError) as exc:
        raise VideoError(f"{path.name}: cannot open video ({type(exc).__name__}: {exc})") from None


@dataclass
class EpisodeDecoder:
    """Iterate over the sampled frames of one video; `cuts` is complete after iteration.

    Args:
        path: the video file.
        fps: samples per second to keep.
        size: (height, width) of the kept RGB frames.
        dedup_threshold: mean absolute difference (0..1) under which a sample counts as a
            near-duplicate of the last kept one and is dropped.
        max_gap: keep a sample at least this often (seconds), duplicate or not.
        motion_threshold: between the regular samples, a frame that differs from the last
            kept one by more than this (mean absolute difference, 0..1) is kept too, and so
            is the first frame after a cut: fast pans, zooms and action (openings) get
            denser samples, so a screenshot taken between two regular samples still has a
            stored frame close to it. 0 turns it off.
        max_fps: the densest sampling that motion can cause; at or below `fps`, none.
        decode: "all" decodes every frame; "ref" only the reference frames (FFmpeg's
            `skip_frame=NONREF`: the non-reference B-frames of x264/x265 are not decoded, ~43%
            of an x264 episode's frames). Cuts and motion are then found on the decoded frames
            (a cut to within a frame or two; the frame kept after it is the first decoded one),
            and every sample is at a decoded frame's own time. A stream without non-reference
            frames (no B-frames, intra-only) is decoded whole either way.
    """

    path: Path
    fps: float = 2.0
    size: tuple[int, int] = (144, 256)
    dedup_threshold: float = 0.006
    max_gap: float = 2.0
    cut_threshold: float = 0.10
    motion_threshold: float = 0.04
    max_fps: float = 6.0
    info: VideoInfo | None = None
    cuts: list[float] = field(default_factory=list)
    decoded: int = 0
    kept: int = 0
    dropped_duplicates: int = 0
    motion_kept: int = 0  # frames kept between the regular samples (motion, cuts)
    last_time: float = 0.0
    decode: str = "all"

    def __post_init__(self) -> None:
        if self.decode not in DECODE_MODES:
            raise ValueError(f"decode must be one of {', '.join(DECODE_MODES)}, not {self.decode!r}")

    def __iter__(self) -> Iterator[SampledFrame]:
        self.info = probe_video(self.path)
        h, w = self.size
        step = 1.0 / self.fps
        min_gap = 1.0 / max(self.max_fps, self.fps)
        motion = self.motion_threshold > 0 and self.max_fps > self.fps
        next_t = 0.0
        prev_small: np.ndarray | None = None
        prev_t = 0.0
        fps = self.info.fps
        recent: list[float] = []
        last_kept_small: np.ndarray | None = None
        last_kept_t = -1e9
        cut_pending = True
        grey_scaler, rgb_scaler = VideoReformatter(), VideoReformatter()
        try:
            with av.open(str(self.path), metadata_errors="ignore") as c:
                stream = c.streams.video[0]
                stream.thread_type = "AUTO"
                ref = self.decode == "ref"
                if ref:
                    stream.codec_context.skip_frame = "NONREF"
                for i, frame in enumerate(c.decode(stream)):
                    t = float(frame.time) if frame.time is not None else i / self.info.fps
                    self.decoded += 1
                    self.last_time = t
                    small = grey_scaler.reformat(frame, format="gray", width=CUT_SIZE[0],
                                                 height=CUT_SIZE[1]).to_ndarray().astype(np.float32) / 255.0
                    if prev_small is not None:
                        d = float(np.abs(small - prev_small).mean())
                        # frames since the previous decoded one: 1, or with `ref` up to ~3 (the
                        # skipped B-frames); motion between them adds up, a cut does not
                        gap = max(1, round((t - prev_t) * fps)) if ref else 1
                        base = (sum(recent) / len(recent)) if recent else 0.0
                        if d > self.cut_threshold and d > 3.0 * base * gap + 0.02:
                            if not self.cuts or t - self.cuts[-1] > 0.25:
                                self.cuts.append(t)
                                cut_pending = True
                        recent.append(d / gap)  # the change per frame
                        if len(recent) > 12:
                            recent.pop(0)
                    prev_small, prev_t = small, t
                    if t + 1e-6 < next_t:
                        # between regular samples: keep a frame where the picture moved on
                        if not (motion and last_kept_small is not None
                                and t - last_kept_t >= min_gap - 1e-6
                                and (cut_pending or float(np.abs(small - last_kept_small).mean())
                                     > self.motion_threshold)):
                            continue
                        self.motion_kept += 1
                    else:
                        next_t += step
                        if next_t < t:  # variable frame rate or a gap: resynchronise
                            next_t = t + step
                    if (not cut_pending and last_kept_small is not None
                            and t - last_kept_t < self.max_gap
                            and float(np.abs(small - last_kept_small).mean()) < self.dedup_threshold):
                        self.dropped_duplicates += 1
                        continue
                    rgb = rgb_scaler.reformat(frame, format="rgb24", width=w, height=h,
                                              interpolation="AREA").to_ndarray()
                    self.kept += 1
                    yield SampledFrame(t=t, rgb=rgb, cut_before=cut_pending)
                    cut_pending = False
                    last_kept_small, last_kept_t = small, t
        except (av.error.FFmpegError, OSError) as exc:
            raise VideoError(f"{self.path.name}: decoding failed at {self.last_time:.1f} s "
                             f"({type(exc).__name__})") from None
        if self.decoded == 0:
            raise VideoError(f"{self.path.name}: no frames could be decoded")
        dur = self.info.duration
        if dur > 0 and self.last_time + 2.0 / max(self.info.fps, 1) + 1.0 < 0.97 * dur:
            raise VideoError(f"{self.path.name}: truncated (decoded {self.last_time:.1f} s of "
                             f"{dur:.1f} s)")


def assign_shots(times: list[float] | np.ndarray, cuts: list[float], duration: float
                 ) -> tuple[list[tuple[float, float]], np.ndarray]:
    """Shots as (start, end) from cut times, and each sample's shot index."""
    last = max(duration, float(np.max(times)) if len(times) else 0.0)
    bounds = [0.0] + [c for c in cuts if 0.0 < c < duration] + [last]
    shots = [(bounds[i], bounds[i + 1]) for i in range(len(bounds) - 1) if bounds[i + 1] > bounds[i]]
    starts = np.asarray([s for s, _ in shots], dtype=np.float64)
    idx = np.searchsorted(starts, np.asarray(times, dtype=np.float64) + 1e-6, side="right") - 1
    return shots, np.clip(idx, 0, max(len(shots) - 1, 0)).astype(np.int32)


def read_frames_at(path: Path, times: list[float]) -> list[np.ndarray]:
    """RGB frames (full size) nearest to each of `times`, decoding once in order."""
    want = sorted(range(len(times)), key=lambda i: times[i])
    out: list[np.ndarray | None] = [None] * len(times)
    k = 0
    prev: av.VideoFrame | None = None
    prev_t = -1e9
    try:
        with av.open(str(path), metadata_errors="ignore") as c:
            s = c.streams.video[0]
            s.thread_type = "AUTO"
            for frame in c.decode(s):
                t = float(frame.time) if frame.time is not None else 0.0
                while k < len(want) and t >= times[want[k]]:
                    j = want[k]
                    use_prev = prev is not None and abs(prev_t - times[j]) < abs(t - times[j])
                    src = prev if use_prev and prev is not None else frame
                    out[j] = src.to_ndarray(format="rgb24")
                    k += 1
                if k >= len(want):
                    break
                prev, prev_t = frame, t
    except (av.error.FFmpegError, OSError) as exc:
        raise VideoError(f"{Path(path).name}: decoding failed ({type(exc).__name__})") from None
    while k < len(want) and prev is not None:  # times past the end: the last frame
        out[want[k]] = prev.to_ndarray(format="rgb24")
        k += 1
    if any(o is None for o in out):
        raise VideoError(f"{Path(path).name}: no frames")
    return [o for o in out if o is not None]
