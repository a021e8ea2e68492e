"""Find the picture inside the picture: the views of a query worth embedding.

1. `trim_borders`: strip solid or near-solid borders (black bars, letterboxing, pillarboxing,
   white padding) from every side.
2. `find_frame`: find a video frame pasted into a larger image (a phone screenshot with
   status bar and comments, a meme with caption bars): a rectangle of a video frame's shape,
   bounded by long straight edges or by rows where flat UI meets picture, with flat UI (not
   picture) just outside it and few flat rows inside it; the largest such.
`query_views` returns the crops worth embedding: the trimmed image and, when one is found
(in the whole image, not the trimmed one), the inner frame. `clip_views` does it once for
all the frames of a GIF or clip.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

Box = tuple[int, int, int, int]  # x0, y0, x1, y1
LUMA = np.array([0.299, 0.587, 0.114])  # ITU-R 601, as PIL's "L" conversion

# video frame shapes, and how much less likely each is than 16:9 (TV anime is 16:9, older
# series 4:3; the film formats are rare), in units of the box's share of the picture: a 4:3
# box of picture and player UI below it must not beat the 16:9 picture by its size
VIDEO_ASPECTS = {16 / 9: 0.0, 4 / 3: 0.08, 1.85: 0.1, 2.39: 0.1, 21 / 9: 0.1}


@dataclass(frozen=True)
class View:
    """A crop of the query to embed, and where it came from."""

    image: Image.Image
    box: Box
    kind: str  # "full", "trimmed", "frame"


def _grey(img: Image.Image, max_side: int = 512, mode: str = "L") -> tuple[np.ndarray, float]:
    """The picture at most `max_side` px on its longer side, as float32 ("L": grey [h, w];
    "RGB": [h, w, 3]), and the scale it was shrunk by."""
    scale = min(1.0, max_side / max(img.size))
    small = img.convert(mode)
    if scale < 1.0:
        small = small.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))),
                             Image.Resampling.BOX)
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


def _edge_diff(g: np.ndarray, axis: int) -> np.ndarray:
    """|difference| between neighbouring rows (axis=0) or columns (axis=1); for RGB [h, w, 3]
    the largest channel's (a white caption bar over a pale blue sky is the same grey)."""
    d = np.abs(np.diff(g, axis=axis))
    if d.ndim == 3:
        d = np.maximum(np.maximum(d[..., 0], d[..., 1]), d[..., 2])
    return d


def _pick_lines(frac: np.ndarray, min_frac: float) -> list[int]:
    """The strongest lines (at most MAX_LINES, no near-duplicates) whose share of changing
    pixels reaches `min_frac`; positions of the first pixel after the edge."""
    idx = np.nonzero(frac >= min_frac)[0]
    picked: list[int] = []
    for i in sorted(idx.tolist(), key=lambda k: -frac[k]):  # strongest first
        if all(abs(i - j) > 2 for j in picked):
            picked.append(i)
            if len(picked) >= MAX_LINES:
                break
    return sorted(i + 1 for i in picked)


def _edge_lines(g: np.ndarray, axis: int, thr: float = 24.0, min_frac: float = 0.55) -> list[int]:
    """Positions of the strongest long straight edges (at most MAX_LINES): rows (axis=0) or
    columns (axis=1) where most of the line differs strongly from its neighbour. `g`: grey
    [h, w] or RGB [h, w, 3] (see `_edge_diff`)."""
    return _pick_lines((_edge_diff(g, axis) > thr).mean(axis=1 - axis), min_frac)


def _rect_std(s1: np.ndarray, s2: np.ndarray, y0: int, y1: int, x0: int, x1: int) -> float:
    """Standard deviation of a rectangle from summed-area tables (O(1))."""
    n = (y1 - y0) * (x1 - x0)
    a = s1[y1, x1] - s1[y0, x1] - s1[y1, x0] + s1[y0, x0]
    b = s2[y1, x1] - s2[y0, x1] - s2[y1, x0] + s2[y0, x0]
    return float(np.sqrt(max(b / n - (a / n) ** 2, 0.0)))


FLAT_STD = 8.0  # grey-level std under which a row (or column) of a box is flat: UI, not picture
OUTSIDE = 0.02  # share of the picture's side looked at just outside a box's edge
OUTSIDE_COST = 0.15  # a box's edge whose outside is picture, not flat UI, costs this much
MAX_OUTSIDE = 0.5  # more than this (in edges) of picture outside: not a frame (boxes inside a
# clean frame have 1 or more; a phone's or meme's frame at most 0.2)
FLAT_COST = 0.5  # the share of flat rows inside a box costs this much (a list, a caption bar)


class _Lines:
    """Per-row and per-column running sums of a grey picture: the standard deviation of any
    row segment or column segment, for many rows at once, in O(1) each."""

    def __init__(self, g: np.ndarray) -> None:
        h, w = g.shape
        g64 = g.astype(np.float64)
        sq = g64 * g64
        self.r1, self.r2 = np.zeros((h, w + 1)), np.zeros((h, w + 1))
        np.cumsum(g64, 1, out=self.r1[:, 1:])
        np.cumsum(sq, 1, out=self.r2[:, 1:])
        self.c1, self.c2 = np.zeros((h + 1, w)), np.zeros((h + 1, w))
        np.cumsum(g64, 0, out=self.c1[1:])
        np.cumsum(sq, 0, out=self.c2[1:])
        # and the summed-area tables of the whole picture, from the row sums
        self.s1, self.s2 = np.zeros((h + 1, w + 1)), np.zeros((h + 1, w + 1))
        np.cumsum(self.r1, 0, out=self.s1[1:])
        np.cumsum(self.r2, 0, out=self.s2[1:])

    def rect_std(self, y0: int, y1: int, x0: int, x1: int) -> float:
        """Standard deviation of a rectangle (O(1))."""
        return _rect_std(self.s1, self.s2, y0, y1, x0, x1)

    def row_flat(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """Whether each row y0..y1 is flat between x0 and x1."""
        n = max(1, x1 - x0)
        m = (self.r1[y0:y1, x1] - self.r1[y0:y1, x0]) / n
        return (self.r2[y0:y1, x1] - self.r2[y0:y1, x0]) / n - m * m < FLAT_STD ** 2

    def flat_rows(self, y0: int, y1: int, x0: int, x1: int) -> float:
        """Share of the rows y0..y1 that are flat between x0 and x1 (0 when there are none)."""
        if y1 <= y0 or x1 <= x0:
            return 0.0
        return float(np.mean(self.row_flat(y0, y1, x0, x1)))

    def flat_cols(self, x0: int, x1: int, y0: int, y1: int) -> float:
        """Share of the columns x0..x1 that are flat between y0 and y1."""
        if x1 <= x0 or y1 <= y0:
            return 0.0
        n = y1 - y0
        m = (self.c1[y1, x0:x1] - self.c1[y0, x0:x1]) / n
        v = (self.c2[y1, x0:x1] - self.c2[y0, x0:x1]) / n - m * m
        return float(np.mean(v < FLAT_STD ** 2))


def _ui_rows(lines: _Lines, h: int, w: int) -> list[int]:
    """Rows where flat UI (a caption's margin, a phone's background) meets picture: a few
    flat rows on one side, and on the other a run as tall as the smallest frame that is
    mostly not flat. The picture's edge is found there even when no strong line marks it (a
    white caption bar over a pale sky and white window frames)."""
    flat = lines.row_flat(0, h, 0, w).astype(np.int32)
    k, span = max(2, round(0.01 * h)), max(4, round(0.15 * h))
    c = np.concatenate([[0], np.cumsum(flat)])

    def count(y0: int, y1: int) -> int:
        return int(c[max(0, min(h, y1))] - c[max(0, min(h, y0))])

    textured = np.flatnonzero(flat == 0)
    out: list[tuple[int, int]] = []  # (length of the flat run beside it, row)
    for y in range(k, h - k + 1):
        if flat[y - 1] == flat[y]:
            continue
        j = int(np.searchsorted(textured, y))  # textured[j]: the first textured row from y on
        if flat[y - 1]:  # flat above: a top edge, picture below
            if count(y - k, y) == k and y + span <= h and count(y, y + span) <= 0.2 * span:
                out.append((y - (int(textured[j - 1]) + 1 if j > 0 else 0), y))
        elif count(y, y + k) == k and y - span >= 0 and count(y - span, y) <= 0.2 * span:
            out.append(((int(textured[j]) if j < len(textured) else h) - y, y))  # a bottom edge
    # the widest margins first, at most MAX_LINES (flat and textured bands over and over
    # must not make the box search quadratic in them)
    return sorted(y for _, y in sorted(out, reverse=True)[:MAX_LINES])


def find_frame(img: Image.Image, *, min_area: float = 0.12) -> Box | None:
    """The video frame inside a screenshot/meme, or None when the image is the frame itself.

    Candidate boxes are bounded by long straight edges, by rows where flat UI meets picture,
    or by the image's edges, and have a video frame's shape. Of those, the largest wins, less
    what speaks against it being the frame: an edge that is only a weak line; an edge whose
    outside is picture rather than flat UI (a line inside the picture: the horizon, a wall),
    or whose inside is flat (a caption's margin); flat rows inside (a comment list is not a
    picture)."""
    small, scale = _grey(img, mode="RGB")
    rgb = small.astype(np.int16)
    g = small @ LUMA.astype(np.float32)
    h, w = g.shape
    lines = _Lines(g)
    oy, ox = max(2, round(OUTSIDE * h)), max(2, round(OUTSIDE * w))
    # strong edges, weak ones (a dark phone UI around a night scene) and UI boundaries: the
    # costs below let a weak one make a box only when nothing better does
    strong = set(_edge_lines(rgb, 0))
    rows = {0, h, *strong, *_edge_lines(rgb, 0, thr=WEAK_EDGE)}
    rows |= {y for y in _ui_rows(lines, h, w) if all(abs(y - r) > 2 for r in rows)}
    rows_sorted = sorted(rows)
    weak = {y: (0.0 if y in strong or y in (0, h) else WEAK_COST) for y in rows_sorted}
    # the column edges of any band of rows, from running counts of strong column changes
    col_hits = np.zeros((h + 1, w - 1), np.int32)
    np.cumsum(_edge_diff(rgb, 1) > 24.0, 0, out=col_hits[1:])
    best: tuple[float, Box] | None = None
    for i, y0 in enumerate(rows_sorted):
        for y1 in rows_sorted[i + 1:]:
            bh = y1 - y0
            if bh < h * 0.15 or (y0 == 0 and y1 == h):
                continue
            cols = [0] + _pick_lines((col_hits[y1] - col_hits[y0]) / bh, 0.6) + [w]
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
                    score = area - 8.0 * err - prior - weak[y0] - weak[y1]
                    if best is not None and score <= best[0]:
                        continue  # what follows only takes away
                    if lines.rect_std(y0, y1, x0, x1) < 12.0:  # flat region: not a picture
                        continue
                    # just outside each edge that is not the image's own: flat UI, not picture
                    # (half the strip flat is enough: a progress bar, a caption's text)
                    out = []
                    if y0 > 0:
                        out.append(lines.flat_rows(max(0, y0 - oy), y0, x0, x1))
                    if y1 < h:
                        out.append(lines.flat_rows(y1, min(h, y1 + oy), x0, x1))
                    if x0 > 0:
                        out.append(lines.flat_cols(max(0, x0 - ox), x0, y0, y1))
                    if x1 < w:
                        out.append(lines.flat_cols(x1, min(w, x1 + ox), y0, y1))
                    outside = sum(1.0 - min(1.0, 2.0 * f) for f in out)
                    if outside > MAX_OUTSIDE:  # a box inside the picture (a clean frame's)
                        continue
                    # a top or bottom edge on the image's own edge cannot be told by its
                    # outside: its first rows must be picture, not a caption's margin (the
                    # sides are not asked: a picture's side is often a flat wall)
                    inside = ((lines.flat_rows(0, oy, x0, x1) if y0 == 0 else 0.0)
                              + (lines.flat_rows(h - oy, h, x0, x1) if y1 == h else 0.0))
                    score -= (OUTSIDE_COST * (outside + inside)
                              + FLAT_COST * lines.flat_rows(y0, y1, x0, x1))
                    if best is None or score > best[0]:
                        best = (score, (x0, y0, x1, y1))
    if best is None:
        return None
    inv = 1.0 / scale
    x0, y0, x1, y1 = best[1]
    return (int(x0 * inv), int(y0 * inv), min(img.width, int(round(x1 * inv))),
            min(img.height, int(round(y1 * inv))))


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes."""
    x0, y0, x1, y1 = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    inter = max(0, x1 - x0) * max(0, y1 - y0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def query_views(img: Image.Image) -> list[View]:
    """The crops of a query worth embedding (1–2): trimmed image, plus an inner frame if found.

    The frame is looked for in the whole image, not the trimmed one: trimming stops at a
    caption's text, and it eats a flat floor or road at the bottom of a meme's picture."""
    box = trim_borders(img)
    trimmed = img.crop(box) if box != (0, 0, img.width, img.height) else img
    views = [View(trimmed, box, "trimmed" if trimmed is not img else "full")]
    inner = find_frame(img)
    if inner is not None and iou(inner, box) < 0.95:  # else the same crop: no new view
        views.append(View(img.crop(inner), inner, "frame"))
    return views


def clip_views(frames: Sequence[Image.Image]) -> list[list[View]]:
    """`query_views` of every frame of a GIF or clip. Its frames share one layout (a meme's
    caption bars, a phone's UI), so the boxes found in the first frame are cut from every
    frame of the same size: the same crop in each, found once."""
    if not frames:
        return []
    first = query_views(frames[0])
    out = [first]
    for f in frames[1:]:
        if f.size != frames[0].size:
            out.append(query_views(f))
            continue
        out.append([View(f if v.box == (0, 0, f.width, f.height) else f.crop(v.box), v.box, v.kind)
                    for v in first])
    return out
