"""Find the picture inside the picture.

1. `trim_borders`: strip solid or near-solid borders (black bars, letterboxing, pillarboxing,
   white padding) from every side.
2. `find_frame`: find a video frame pasted into a larger image (a phone screenshot with
   status bar and comments, a meme with caption bars): the largest rectangle bounded by
   long straight edges whose shape is that of a video frame.
`query_views` returns the crops worth embedding: the trimmed image and, when one is found,
the inner frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

Box = tuple[int, int, int, int]  # x0, y0, x1, y1

# video frame shapes, and how much less likely each is than 16:9 (TV anime is 16:9, older
# series 4:3; the film formats are rare), in units of the box's share of the picture
VIDEO_ASPECTS = {16 / 9: 0.0, 4 / 3: 0.02, 1.85: 0.05, 2.39: 0.05, 21 / 9: 0.05}


@dataclass(frozen=True)
class View:
    """A crop of the query to embed, and where it came from."""

    image: Image.Image
    box: Box
    kind: str  # "full", "trimmed", "frame"


def _grey(img: Image.Image, max_side: int = 512) -> tuple[np.ndarray, float]:
    scale = min(1.0, max_side / max(img.size))
    small = img.convert("L")
    if scale < 1.0:
        small = small.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))),
                             Image.BOX)
    return np.asarray(small, dtype=np.float32), scale


def _flat(line: np.ndarray, ref: float, tol: float = 18.0, frac: float = 0.97) -> bool:
    return float(np.mean(np.abs(line - ref) <= tol)) >= frac


def trim_borders(img: Image.Image, *, tol: float = 18.0, max_trim: float = 0.45) -> Box:
    """The box left after removing solid borders from each side."""
    g, scale = _grey(img)
    h, w = g.shape
    top, bottom, left, right = 0, h, 0, w
    ref_top = float(np.median(g[0]))
    while top < h * max_trim and _flat(g[top, left:right], ref_top, tol):
        top += 1
    ref_bot = float(np.median(g[h - 1]))
    while h - bottom < h * max_trim and _flat(g[bottom - 1, left:right], ref_bot, tol):
        bottom -= 1
    ref_l = float(np.median(g[top:bottom, 0])) if bottom > top else 0.0
    while left < w * max_trim and bottom > top and _flat(g[top:bottom, left], ref_l, tol):
        left += 1
    ref_r = float(np.median(g[top:bottom, w - 1])) if bottom > top else 0.0
    while w - right < w * max_trim and bottom > top and _flat(g[top:bottom, right - 1], ref_r, tol):
        right -= 1
    if bottom - top < h * 0.1 or right - left < w * 0.1:  # a nearly blank image: keep it all
        return (0, 0, img.width, img.height)
    inv = 1.0 / scale
    return (int(left * inv), int(top * inv), min(img.width, int(round(right * inv))),
            min(img.height, int(round(bottom * inv))))


MAX_LINES = 12  # strongest edge lines kept per direction: bounds the search on noisy pictures
WEAK_EDGE = 8.0  # grey-level step of a weak edge line (a strong one: 24)
WEAK_COST = 0.03  # what using a weak line as a box's edge costs (in shares of the picture)


def _edge_lines(g: np.ndarray, axis: int, thr: float = 24.0, min_frac: float = 0.55) -> list[int]:
    """Positions of the strongest long straight edges (at most MAX_LINES): rows (axis=0) or
    columns (axis=1) where most of the line differs strongly from its neighbour."""
    d = np.abs(np.diff(g, axis=axis))
    frac = (d > thr).mean(axis=1 - axis)
    idx = np.nonzero(frac >= min_frac)[0]
    picked: list[int] = []
    for i in sorted(idx.tolist(), key=lambda k: -frac[k]):  # strongest first, no near-duplicates
        if all(abs(i - j) > 2 for j in picked):
            picked.append(i)
            if len(picked) >= MAX_LINES:
                break
    return sorted(i + 1 for i in picked)


def _rect_std(s1: np.ndarray, s2: np.ndarray, y0: int, y1: int, x0: int, x1: int) -> float:
    """Standard deviation of a rectangle from summed-area tables (O(1))."""
    n = (y1 - y0) * (x1 - x0)
    a = s1[y1, x1] - s1[y0, x1] - s1[y1, x0] + s1[y0, x0]
    b = s2[y1, x1] - s2[y0, x1] - s2[y1, x0] + s2[y0, x0]
    return float(np.sqrt(max(b / n - (a / n) ** 2, 0.0)))


def find_frame(img: Image.Image, *, min_area: float = 0.12) -> Box | None:
    """The video frame inside a screenshot/meme, or None when the image is the frame itself."""
    g, scale = _grey(img)
    h, w = g.shape
    s1 = np.pad(g.astype(np.float64).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    s2 = np.pad((g.astype(np.float64) ** 2).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    # strong edges, and weak ones too (a dark phone UI around a night scene): a weak edge
    # only makes a box when the box has a video frame's shape, and the largest wins
    strong = set(_edge_lines(g, 0))
    rows = sorted({0, h, *strong, *_edge_lines(g, 0, thr=WEAK_EDGE)})
    # a box's edge that is only a weak line costs this much of its score (a line inside the
    # picture is weak too, so a strong line, or the image's own edge, wins a tie)
    weak = {y: (0.0 if y in strong or y in (0, h) else WEAK_COST) for y in rows}
    best: tuple[float, Box] | None = None
    for i, y0 in enumerate(rows):
        for y1 in rows[i + 1:]:
            bh = y1 - y0
            if bh < h * 0.15 or (y0 == 0 and y1 == h):
                continue
            band = g[y0:y1]
            cols = [0] + _edge_lines(band, 1, min_frac=0.6) + [w]
            for j, x0 in enumerate(cols):
                for x1 in cols[j + 1:]:
                    bw = x1 - x0
                    area = bw * bh / (w * h)
                    if area < min_area or area > 0.97:
                        continue
                    aspect = bw / bh
                    err, prior = min((abs(np.log(aspect / a)), p) for a, p in VIDEO_ASPECTS.items())
                    if err > 0.06:
                        continue
                    if _rect_std(s1, s2, y0, y1, x0, x1) < 12.0:  # flat region: not a picture
                        continue
                    score = area - 8.0 * err - prior - weak[y0] - weak[y1]
                    if best is None or score > best[0]:
                        best = (score, (x0, y0, x1, y1))
    if best is None:
        return None
    inv = 1.0 / scale
    x0, y0, x1, y1 = best[1]
    return (int(x0 * inv), int(y0 * inv), min(img.width, int(round(x1 * inv))),
            min(img.height, int(round(y1 * inv))))


def query_views(img: Image.Image) -> list[View]:
    """The crops of a query worth embedding (1–2): trimmed image, plus an inner frame if found."""
    box = trim_borders(img)
    trimmed = img.crop(box) if box != (0, 0, img.width, img.height) else img
    views = [View(trimmed, box, "trimmed" if trimmed is not img else "full")]
    inner = find_frame(trimmed)
    if inner is not None:
        ib = (box[0] + inner[0], box[1] + inner[1], box[0] + inner[2], box[1] + inner[3])
        views.append(View(img.crop(ib), ib, "frame"))
    return views
