"""Previews of a matched scene: a short muted MP4 within the shot's bounds, and a still.

Made from the library's video on demand (seek to the keyframe before the window, decode
forward) and cached under `previews/` by episode and half-second, so a popular scene is cut
once. Small on purpose: 320 px wide, at most a few seconds.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import threading
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
from PIL import Image

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Preview:
    clip: Path | None
    still: Path | None


class PreviewMaker:
    """Cut and cache previews. Thread-safe; one cut per key at a time."""

    def __init__(self, cache_dir: Path, *, width: int = 320, still_width: int = 640,
                 before: float = 1.5, after: float = 2.5, max_len: float = 4.0) -> None:
        self.cache_dir = Path(cache_dir)
        self.width, self.still_width = width, still_width
        self.before, self.after, self.max_len = before, after, max_len
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def _key(self, video: Path, t: float) -> str:
        raw = f"{Path(video).resolve().as_posix()}|{round(t * 2) / 2:.1f}"
        return hashlib.sha256(raw.encode()).hexdigest()[:24]

    def _lock(self, key: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())

    def make(self, video: Path, t: float, shot: tuple[float, float] | None = None) -> Preview:
        """The preview of `video` around second `t`, kept within `shot` when given."""
        key = self._key(video, t)
        clip = self.cache_dir / f"{key}.mp4"
        still = self.cache_dir / f"{key}.jpg"
        with self._lock(key):
            if clip.exists() and still.exists():
                return Preview(clip, still)
            lo, hi = t - self.before, t + self.after
            if shot is not None:
                lo, hi = max(lo, shot[0]), min(hi, shot[1])
            if hi - lo < 1.0:  # a very short shot: show a second around t anyway
                lo, hi = t - 0.5, t + 0.5
            lo = max(0.0, lo)
            hi = min(hi, lo + self.max_len)
            try:
                self.cache_dir.mkdir(parents=True, exist_ok=True)
                self._cut(Path(video), lo, hi, t, clip, still)
            except (av.error.FFmpegError, OSError, ValueError) as exc:
                logger.warning("preview of %s at %.1f s failed: %s", Path(video).name, t, exc)
                for p in (clip, still):
                    with contextlib.suppress(OSError):  # (the folder itself may be the problem)
                        p.unlink(missing_ok=True)
                return Preview(None, None)
            return Preview(clip if clip.exists() else None, still if still.exists() else None)

    def _cut(self, video: Path, lo: float, hi: float, t: float, clip: Path, still: Path) -> None:
        tmp_clip = clip.with_name(clip.stem + f".{os.getpid()}.{threading.get_ident()}.tmp.mp4")
        best_still: Image.Image | None = None
        best_dt = 1e9
        with av.open(str(video)) as src:
            vs = src.streams.video[0]
            vs.thread_type = "AUTO"
            fps = float(vs.average_rate or 24)
            w = self.width
            h = max(2, int(round(vs.codec_context.height * w / vs.codec_context.width / 2)) * 2)
            if vs.time_base is not None:
                src.seek(int(max(0.0, lo - 0.1) / vs.time_base), stream=vs, backward=True)
            with av.open(str(tmp_clip), mode="w", format="mp4") as out:
                rate = Fraction(fps).limit_denominator(1001)
                os_ = out.add_stream("libx264", rate=rate)
                os_.width, os_.height, os_.pix_fmt = w, h, "yuv420p"
                os_.options = {"crf": "30", "preset": "veryfast", "movflags": "+faststart"}
                n = 0
                for frame in src.decode(vs):
                    ft = float(frame.time) if frame.time is not None else 0.0
                    if ft < lo - 1e-3:
                        continue
                    if ft > hi:
                        break
                    dt = abs(ft - t)
                    if dt < best_dt:
                        best_dt = dt
                        best_still = frame.to_image()
                    small = frame.reformat(width=w, height=h, format="yuv420p")
                    small.pts = n
                    small.time_base = 1 / rate
                    for pkt in os_.encode(small):
                        out.mux(pkt)
                    n += 1
                for pkt in os_.encode(None):
                    out.mux(pkt)
            if n == 0:
                raise ValueError("no frames in the preview window")
        os.replace(tmp_clip, clip)
        if best_still is not None:
            sw = min(self.still_width, best_still.width)
            img = best_still.resize((sw, max(1, round(best_still.height * sw / best_still.width))),
                                    Image.Resampling.BILINEAR)
            tmp = still.with_name(still.stem + ".tmp.jpg")
            img.save(tmp, format="JPEG", quality=85)
            os.replace(tmp, still)
