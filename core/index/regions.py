"""Region vectors: which sub-windows of a keyframe an index embeds, and how their ids map.

Region ids are ``frame_id * REGION_SLOTS + r`` in the regions' own index, so a region hit
maps back to (frame, window) without a table and the frames' ids stay as they are.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypedDict

import numpy as np

#: Region ids are frame_id * REGION_SLOTS + window number (window number < REGION_SLOTS).
REGION_SLOTS = 32
#: The sub-folder of an index folder that holds the region index.
REGIONS_DIR = "regions"


class RegionSpecJson(TypedDict):
    """`RegionSpec` as stored in the index manifest."""

    grid: int
    window: float
    every_s: float
    outer: float


def _as_int(x: object) -> int:
    if isinstance(x, (int, float, str)):
        return int(x)
    raise TypeError(f"expected a number, got {type(x).__name__}")


def _as_float(x: object) -> float:
    if isinstance(x, (int, float, str)):
        return float(x)
    raise TypeError(f"expected a number, got {type(x).__name__}")


@dataclass(frozen=True)
class RegionSpec:
    """Which region vectors an index holds.

    A `grid` x `grid` layout of windows `window` x `window` of the frame's width and height
    (grid 3, window 0.5: half-width x half-height windows at a stride of a quarter), for
    keyframes spaced about `every_s` seconds apart inside each shot (a shot shorter than that
    gets one, at its middle).
    """

    grid: int = 3
    window: float = 0.5
    every_s: float = 2.0
    outer: float = 0.75  # > 0: also the four corner windows and the centre window of this size

    def __post_init__(self) -> None:
        if not (2 <= self.grid and self.grid * self.grid + (5 if self.outer else 0) <= REGION_SLOTS):
            raise ValueError(f"region grid must be 2..{int(REGION_SLOTS ** 0.5)}, got {self.grid}")
        if not 0.1 <= self.window < 1.0 or self.every_s <= 0 or not 0.0 <= self.outer < 1.0:
            raise ValueError("region windows must be in [0.1, 1) and every_s > 0")

    @property
    def n_windows(self) -> int:
        return self.grid * self.grid + (5 if self.outer else 0)

    def to_json(self) -> RegionSpecJson:
        return {"grid": self.grid, "window": self.window, "every_s": self.every_s, "outer": self.outer}

    @classmethod
    def from_json(cls, d: Mapping[str, object]) -> RegionSpec:
        return cls(grid=_as_int(d["grid"]), window=_as_float(d["window"]),
                   every_s=_as_float(d["every_s"]), outer=_as_float(d.get("outer", 0.0)))

    def describe(self) -> str:
        return (f"{self.grid}x{self.grid} windows of {self.window:g} of the frame"
                + (f" and 5 of {self.outer:g}" if self.outer else "")
                + f", a keyframe every {self.every_s:g} s of each shot")

    def boxes(self, width: int, height: int) -> list[tuple[int, int, int, int]]:
        """The windows (x0, y0, x1, y1) of a width x height frame, row by row."""
        ww, wh = max(1, round(width * self.window)), max(1, round(height * self.window))
        out = []
        for gy in range(self.grid):
            for gx in range(self.grid):
                x = round((width - ww) * gx / (self.grid - 1))
                y = round((height - wh) * gy / (self.grid - 1))
                out.append((x, y, x + ww, y + wh))
        if self.outer:  # bigger windows for bigger crops: the four corners and the centre
            ow, oh = max(1, round(width * self.outer)), max(1, round(height * self.outer))
            for x, y in ((0, 0), (width - ow, 0), (0, height - oh), (width - ow, height - oh),
                         ((width - ow) // 2, (height - oh) // 2)):
                out.append((x, y, x + ow, y + oh))
        return out

    def keyframes(self, times: np.ndarray, shots: np.ndarray) -> np.ndarray:
        """Positions (into `times`) of the keyframes: per shot, one frame per `every_s`
        seconds, each the frame nearest the middle of its part of the shot."""
        times = np.asarray(times, np.float64)
        shots = np.asarray(shots)
        picked: list[int] = []
        for sh in np.unique(shots):
            idx = np.flatnonzero(shots == sh)
            t0, t1 = float(times[idx].min()), float(times[idx].max())
            k = max(1, int(np.ceil((t1 - t0) / self.every_s - 1e-6)))
            span = (t1 - t0) / k
            for j in range(k):
                mid = t0 + span * (j + 0.5)
                picked.append(int(idx[np.argmin(np.abs(times[idx] - mid))]))
        return np.array(sorted(set(picked)), dtype=np.int64)

    def region_ids(self, frame_ids: np.ndarray) -> np.ndarray:
        """Every region id of `frame_ids` (frame-major)."""
        f = np.asarray(frame_ids, np.int64).reshape(-1, 1)
        return (f * REGION_SLOTS + np.arange(self.n_windows, dtype=np.int64)[None, :]).reshape(-1)


def region_frame_ids(region_ids: np.ndarray) -> np.ndarray:
    """The frame id of each region id (-1 stays -1)."""
    r = np.asarray(region_ids, np.int64)
    return np.where(r >= 0, r // REGION_SLOTS, -1)
