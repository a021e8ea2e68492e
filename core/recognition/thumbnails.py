"""The stored thumbnails the regions and checks stages look at: each episode's frame-store pack
(JPEG thumbnails) read on demand, decoded into grey, colour or full-size grey arrays, both
kept in small least-recently-used caches shared by every query.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import Image

from core.framestore import EpisodeFrames, FrameStore

#: "grey": uint8 [h, w] at `ThumbParams.grey_size`; "colour": RGB float32 [h, w, 3] at
#: `ThumbParams.colour_size`; "detail": grey uint8 at the stored size
Kind = Literal["grey", "colour", "detail"]


@dataclass(frozen=True)
class ThumbParams:
    """Thumbnail sizes and how many decoded thumbnails and packs stay in memory."""

    grey_size: tuple[int, int] = (64, 36)  # (width, height) of the grey thumbnails the query is located in
    colour_size: tuple[int, int] = (128, 72)  # (width, height) the top answer is checked at, in colour
    # decoded thumbnails kept: grey (2.3 KB each, 46 MB), colour (110 KB each as float32, 66 MB),
    # detail (grey at the stored size, 37 KB each at 256x144, 22 MB)
    grey_cache: int = 20_000
    colour_cache: int = 600
    detail_cache: int = 600
    packs: int = 8  # episodes whose frame-store packs (JPEG thumbnails) stay in memory

    def cache_size(self, kind: Kind) -> int:
        return {"grey": self.grey_cache, "colour": self.colour_cache,
                "detail": self.detail_cache}[kind]


@dataclass(frozen=True)
class Thumbs:
    """An episode's stored frames near a time: their times, thumbnails and frame numbers in the
    episode's pack."""

    times: np.ndarray
    stack: np.ndarray
    frames: np.ndarray


class Thumbnails:
    """Decoded thumbnails of the frame store, cached (see `ThumbParams`)."""

    def __init__(self, framestore: FrameStore | None, params: ThumbParams = ThumbParams()) -> None:
        self.framestore = framestore
        self.params = params
        self._thumbs: dict[str, dict[tuple[int, int], np.ndarray]] = {}
        self._packs: dict[int, EpisodeFrames] = {}
        self._times: dict[int, np.ndarray] = {}  # per episode

    def near(self, episode_id: int, t: float, half: float, *, kind: Kind = "grey") -> Thumbs | None:
        """An episode's stored frames within ±`half` s of `t` (the nearest one when none is) as
        `kind` thumbnails. Decoded frames are kept, so a query never decodes more than the few
        frames it looks at, and an episode's pack is read only when one of them is not in
        memory."""
        ts = self._times.get(episode_id)
        if ts is None:
            ef = self.pack(episode_id)
            if ef is None or not len(ef):
                return None
            ts = self._times[episode_id] = ef.times.astype(np.float64)
        sel = np.flatnonzero(np.abs(ts - t) <= half)
        if not sel.size:
            sel = np.array([int(np.argmin(np.abs(ts - t)))])
        out = []
        for i in sel.tolist():
            arr = self.thumb(episode_id, i, kind)
            if arr is None:
                return None
            out.append(arr)
        return Thumbs(ts[sel], np.stack(out), sel)

    def thumb(self, episode_id: int, i: int, kind: Kind) -> np.ndarray | None:
        """Stored frame `i` of an episode as a `kind` thumbnail, cached."""
        cache = self._thumbs.setdefault(kind, {})
        key = (episode_id, i)
        arr = cache.pop(key, None)
        if arr is None:
            ef = self.pack(episode_id)
            if ef is None or i >= len(ef):
                return None
            jpeg = Image.open(io.BytesIO(ef.jpeg(i)))
            mode = "RGB" if kind == "colour" else "L"
            if kind == "detail":
                img = jpeg.convert(mode)
            else:
                w, h = self.params.colour_size if kind == "colour" else self.params.grey_size
                jpeg.draft(mode, (w, h))
                img = jpeg.convert(mode).resize((w, h), Image.Resampling.BOX)
            arr = np.asarray(img, np.float32 if kind == "colour" else np.uint8)
            if len(cache) >= self.params.cache_size(kind):
                cache.pop(next(iter(cache)))
        cache[key] = arr  # most recently used last
        return arr

    def pack(self, episode_id: int) -> EpisodeFrames | None:
        """The episode's frame-store pack, or None; the last `params.packs` episodes are kept
        (~6 KB a frame)."""
        ef = self._packs.pop(episode_id, None)
        if ef is None:
            if self.framestore is None:
                return None
            try:
                ef = self.framestore.read(episode_id)
            except (OSError, KeyError, ValueError):
                return None
            if len(self._packs) >= self.params.packs:
                self._packs.pop(next(iter(self._packs)))
        self._packs[episode_id] = ef  # most recently used last
        return ef
