"""The correlation maths the regions and checks stages use: locating a query picture in a stack
of stored thumbnails (normalised cross-correlation over positions, widths and mirroring, with
FFTs), its colour fit there, and the detail check (16-px cells that may each move a little).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image

from core.recognition.framing import LUMA


@dataclass
class TemplateCache:
    """One query image's templates, resized and transformed once however many sheets of the
    same size it is correlated with (`Sheet.correlate`, `check_fit`)."""

    # the query in RGB, shrunk to at most twice a sheet's width once, by that width
    shrunk: dict[int, Image.Image] = field(default_factory=dict)
    # the query resized to a template's (width, height), RGB float64
    resized: dict[tuple[int, int], np.ndarray] = field(default_factory=dict)
    # by (sheet height, sheet width, template width, height, mirrored): the (mirrored) RGB
    # template and the conjugate spectrum of its normalised grey
    spectra: dict[tuple[int, int, int, int, bool], tuple[np.ndarray, np.ndarray]] = field(
        default_factory=dict)
    mirrored: Image.Image | None = None  # the query mirrored (`check_fit`'s refinement)
    refine: dict[bool, TemplateCache] = field(default_factory=dict)  # by mirrored or not


@dataclass(frozen=True)
class FitParams:
    """How `check_fit` searches for the query's colour fit."""

    # query width / frame width
    scales: tuple[float, ...] = tuple(float(x) for x in np.linspace(0.4, 1.0, 7))
    # then around the best width, in its thumbnail
    refine: tuple[float, ...] = (-0.05, -0.025, 0.025, 0.05)


@dataclass(frozen=True)
class DetailParams:
    """The detail check (`detail_score`)."""

    cell: int = 16  # px: the answer's detail check compares cells of this size at the stored size
    shift: int = 6  # px each cell may move on its own (characters move between stored frames)
    texture: float = 6.0  # grey-level std below which a cell is flat and says nothing
    fit: float = 0.8  # a cell's correlation that counts as "this detail is there"
    # in an opening or ending, leave out the cells that move between the shot's stored frames
    # (the credits)...
    neighbours: bool = True
    still_cells: int = 4  # ...unless fewer cells than this are left...
    still_min: float = 0.3  # ...or less than this share of them (a pan: everything moves)
    same: float = 3.0  # mean grey-level difference below which a cell has not moved (JPEG noise)


#: query widths (a share of the frame width) a crop is located at (see `RegionParams.scales`)
LOCATE_SCALES = (0.45, 0.55, 0.65, 0.8, 1.0)


def _box_sums(c: np.ndarray, th: int, tw: int) -> np.ndarray:
    """The sums over every th x tw window, from running sums `c` [N, h + 1, w + 1]."""
    oh, ow = c.shape[1] - th, c.shape[2] - tw
    return (c[:, th:th + oh, tw:tw + ow] - c[:, :oh, tw:tw + ow]
            - c[:, th:th + oh, :ow] + c[:, :oh, :ow])


class Sheet:
    """Grey thumbnails [N, h, w] prepared once for correlating any number of queries with them
    (their spectra and the running sums of values and squares)."""

    def __init__(self, grey: np.ndarray) -> None:
        g64 = np.asarray(grey, np.float64)
        self.n, self.h, self.w = g64.shape
        # single precision: twice as fast, and the correlations differ by ~1e-5
        self.spectrum = np.fft.rfft2(g64.astype(np.float32))
        self.c1 = np.zeros((self.n, self.h + 1, self.w + 1))
        self.c1[:, 1:, 1:] = g64.cumsum(1).cumsum(2)
        self.c2 = np.zeros((self.n, self.h + 1, self.w + 1))
        self.c2[:, 1:, 1:] = (g64 * g64).cumsum(1).cumsum(2)

    def frame(self, i: int) -> Sheet:
        """The sheet of thumbnail `i` alone (views of this one's arrays, nothing recomputed)."""
        one = object.__new__(Sheet)
        one.n, one.h, one.w = 1, self.h, self.w
        one.spectrum, one.c1, one.c2 = self.spectrum[i:i + 1], self.c1[i:i + 1], self.c2[i:i + 1]
        return one

    def correlate(self, query: Image.Image, scales: Sequence[float], *, mirror: bool = True,
                  templates: TemplateCache | None = None
                  ) -> Iterator[tuple[np.ndarray, int, int, np.ndarray, bool]]:
        """Normalised cross-correlation of `query` (a PIL image) with every thumbnail at every
        position, for each query width in `scales` (a share of the thumbnail width, aspect
        kept), and mirrored, with FFTs. Yields (correlation [N, oh, ow], template height,
        width, the resized RGB template as float64, whether it was mirrored).

        `templates`: the caches kept for one query image, so correlating it with several sheets of
        the same size resizes and transforms each template once."""
        gh, gw = self.h, self.w
        cache = TemplateCache() if templates is None else templates
        q = cache.shrunk.get(gw)
        if q is None:
            q = query.convert("RGB")
            if q.width > 2 * gw:  # shrink once; each width below is then a cheap resize
                q = q.resize((2 * gw, max(1, round(q.height * 2 * gw / q.width))), Image.Resampling.BOX)
            cache.shrunk[gw] = q
        for s in scales:
            tw = round(gw * s)
            th = round(tw * q.height / max(1, q.width))
            if th > gh:
                th, tw = gh, round(gh * q.width / max(1, q.height))
            if th < 4 or tw < 4 or tw > gw:
                continue
            oh, ow = gh - th + 1, gw - tw + 1
            s1, s2 = _box_sums(self.c1, th, tw), _box_sums(self.c2, th, tw)
            sd = np.sqrt(np.maximum(s2 - s1 * s1 / (th * tw), th * tw * 1.0))
            for flipped in ((False, True) if mirror else (False,)):
                key = (gh, gw, tw, th, flipped)
                hit = cache.spectra.get(key)
                if hit is None:
                    rgb = cache.resized.get((tw, th))
                    if rgb is None:
                        rgb = cache.resized[(tw, th)] = np.asarray(q.resize((tw, th), Image.Resampling.BOX), np.float64)
                    tt = rgb[:, ::-1] if flipped else rgb
                    tz = tt @ LUMA
                    tz -= tz.mean()
                    tz /= np.linalg.norm(tz) + 1e-6
                    hit = cache.spectra[key] = (tt, np.conj(np.fft.rfft2(tz.astype(np.float32), s=(gh, gw))))
                tt, tspec = hit
                corr = np.fft.irfft2(self.spectrum * tspec, s=(gh, gw))[:, :oh, :ow] / sd
                yield corr, th, tw, tt, flipped


def locate_scores(query: Image.Image, grey: np.ndarray | Sheet,
                  scales: Sequence[float] = LOCATE_SCALES) -> np.ndarray:
    """How well `query` (a PIL image) fits somewhere in each grey thumbnail [N, h, w]: the best
    normalised cross-correlation over positions, query widths and mirroring. 1.0: an exact
    (affine-brightness) copy of a window."""
    sheet = grey if isinstance(grey, Sheet) else Sheet(grey)
    best = np.full(sheet.n, -1.0)
    for corr, *_ in sheet.correlate(query, scales):
        best = np.maximum(best, corr.reshape(sheet.n, -1).max(axis=1))
    return best


@dataclass(frozen=True)
class Fit:
    """Where a query was found in a stack of thumbnails: thumbnail `frame`, top-left (y, x) and
    size (th, tw) in its pixels, mirrored or not; `view`: the query picture that fitted."""

    frame: int
    y: int
    x: int
    th: int
    tw: int
    flipped: bool
    view: Image.Image | None = None


def check_fit(query: Image.Image, rgb: np.ndarray, sheet: Sheet | None = None,
              scales: Sequence[float] = FitParams.scales, templates: TemplateCache | None = None,
              refine: Sequence[float] = FitParams.refine) -> tuple[float, Fit | None]:
    """The colour fit of `query` (a PIL image) in RGB thumbnails [N, h, w, 3] (float), and
    where it is: where its grey correlation is best (over thumbnails, positions, widths and
    mirroring; the best width is then refined by `refine` in its thumbnail), the mean over
    R, G and B of the per-channel correlation. Each channel is normalised on its own, so a
    tint, brightness or contrast change keeps the fit; other colours in similar shapes (a
    look-alike picture from another series) lower it. `sheet`: `Sheet(rgb @ LUMA)`, when
    already made; `templates`: the caches kept for `query` across calls (see `Sheet.correlate`)."""
    sheet = sheet or Sheet(rgb @ LUMA)
    templates = TemplateCache() if templates is None else templates
    best, spot = -2.0, None
    flipped = False
    for corr, th, tw, tt, fl in sheet.correlate(query, scales, templates=templates):
        k = int(np.argmax(corr))
        if corr.flat[k] > best:
            fi, fy, fx = np.unravel_index(k, corr.shape)
            best, spot, flipped = float(corr.flat[k]), (int(fi), int(fy), int(fx), th, tw, tt), fl
    if spot is None:
        return 0.0, None
    i, tw0 = spot[0], spot[4]
    if flipped:  # the refinement correlates the mirrored query as it is
        q = templates.mirrored
        if q is None:
            q = templates.mirrored = query.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    else:
        q = query
    one = sheet.frame(i)
    for corr, th, tw, tt, _ in one.correlate(q, [tw0 / sheet.w + d for d in refine],
                                             mirror=False,
                                             templates=templates.refine.setdefault(flipped, TemplateCache())):
        k = int(np.argmax(corr))
        if corr.flat[k] > best:
            _, ry, rx = np.unravel_index(k, corr.shape)
            best, spot = float(corr.flat[k]), (i, int(ry), int(rx), th, tw, tt)
    i, y, x, th, tw, tt = spot
    patch = rgb[i, y:y + th, x:x + tw].reshape(-1, 3)
    a = patch - patch.mean(axis=0)
    b = tt.reshape(-1, 3) - tt.reshape(-1, 3).mean(axis=0)
    den = np.linalg.norm(a, axis=0) * np.linalg.norm(b, axis=0)
    # a flat channel (no variation) says nothing: it counts as the grey fit
    per = np.where(den > 1e-3 * th * tw, (a * b).sum(axis=0) / np.maximum(den, 1e-9), best)
    return float(per.mean()), Fit(frame=i, y=y, x=x, th=th, tw=tw, flipped=flipped)


def check_score(query: Image.Image, rgb: np.ndarray, sheet: Sheet | None = None,
                scales: Sequence[float] = FitParams.scales, templates: TemplateCache | None = None
                ) -> float:
    """The colour fit of `check_fit` alone."""
    return check_fit(query, rgb, sheet, scales, templates)[0]


def _cell_grid(t: np.ndarray, p: DetailParams) -> tuple[np.ndarray, np.ndarray, int, int, int]:
    """A grey picture [th, tw] cut into `p.cell`-pixel cells, centred: (cells [ny*nx, c, c],
    the indices of the cells that are not flat, nx, oy, ox)."""
    cell = p.cell
    th, tw = t.shape
    ny, nx = th // cell, tw // cell
    oy, ox = (th - ny * cell) // 2, (tw - nx * cell) // 2
    blocks = t[oy:oy + ny * cell, ox:ox + nx * cell].reshape(ny, cell, nx, cell).swapaxes(1, 2)
    cells = blocks.reshape(ny * nx, cell, cell)
    return cells, np.flatnonzero(cells.std(axis=(1, 2)) >= p.texture), nx, oy, ox


def _cell_fits(cells: np.ndarray, keep: np.ndarray, nx: int, grey: np.ndarray,
               y0: int, x0: int, p: DetailParams) -> np.ndarray:
    """For each of `cells[keep]` (laid out `nx` to a row, the grid's first cell at y0, x0 of
    `grey` [H, W]), its best normalised correlation with `grey` within `p.shift` pixels of
    its place (-1 where every such window is flat or leaves the frame)."""
    cell, shift = p.cell, p.shift
    pz = cells[keep] - cells[keep].mean(axis=(1, 2), keepdims=True)
    pz /= np.linalg.norm(pz, axis=(1, 2), keepdims=True)
    # the area each cell may move in, from the frame padded so that every area is inside it
    side, pad = cell + 2 * shift, cell + shift
    g = np.pad(grey.astype(np.float64), pad)
    a, b = np.divmod(keep, nx)
    ys = y0 + a * cell + pad - shift
    xs = x0 + b * cell + pad - shift
    rows = ys[:, None, None] + np.arange(side)[None, :, None]
    cols = xs[:, None, None] + np.arange(side)[None, None, :]
    area = g[rows, cols]  # [k, side, side]
    # correlation of each cell with every window of its area: one grouped convolution in
    # single precision, on the area less its mean (which the zero-mean cell ignores); several
    # times faster than FFTs in numpy
    n = 2 * shift + 1
    area -= area.mean(axis=(1, 2), keepdims=True)
    with torch.no_grad():
        num = torch.nn.functional.conv2d(torch.from_numpy(area.astype(np.float32))[None],
                                         torch.from_numpy(pz.astype(np.float32))[:, None],
                                         groups=len(keep))[0].numpy().astype(np.float64)
    # the windows' norms, from their sums: band.T @ area @ band (cumulative sums are slower)
    band = np.arange(side)[:, None] - np.arange(n)[None, :]
    band = ((band >= 0) & (band < cell)).astype(np.float64)  # [side, n]
    s1, s2 = band.T @ np.stack([area, area * area]) @ band
    sd = np.sqrt(np.maximum(s2 - s1 * s1 / (cell * cell), 0.0))
    # the windows wholly inside the frame, by their top-left corner
    h, w = grey.shape
    top, left = ys[:, None] + np.arange(n), xs[:, None] + np.arange(n)
    inside = (((top >= pad) & (top + cell <= pad + h))[:, :, None]
              & ((left >= pad) & (left + cell <= pad + w))[:, None, :])
    ok = inside & (sd > 1e-3 * cell * cell)  # not flat
    r = np.where(ok, num / np.maximum(sd, 1e-9), -1.0)
    return r.reshape(len(keep), -1).max(axis=1)


def detail_score(query: Image.Image, grey: np.ndarray, fit: Fit, scale: float = 1.0,
                 neighbours: Sequence[np.ndarray] = (), p: DetailParams = DetailParams()
                 ) -> float | None:
    """How much of the query's detail is in a stored frame where it was found: the query
    (a PIL image, mirrored when `fit` says so) is laid over `grey` [H, W] (the stored frame
    at its stored size; `fit` is in pixels `scale` times smaller) and cut into
    `p.cell`-pixel cells; each cell that is not flat may move by `p.shift` pixels on its own
    (characters move between stored frames) and counts when its normalised correlation
    reaches `p.fit`. The share of cells that count: a real copy, even
    re-encoded, tinted or partly covered by text, keeps most of its line art in place; a
    look-alike picture that fits a flat-coloured frame somewhere as a whole does not. None
    when no cell has texture.

    `neighbours`: the stored frames of the same shot next to `grey` (same size). Where the
    stored picture itself changes between them (scrolling credits, a character walking
    past, falling petals), the query, taken at another moment, need not fit, and a cell
    that does fit may be chance: only the cells that stay as they are count, unless fewer
    than `p.still_cells`, or `p.still_min` of them, would be left (a pan). The checks pass
    them in openings and endings only (see `core.recognition.checks.shot_neighbours`)."""
    q = query.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if fit.flipped else query
    h, w = grey.shape
    th, tw = min(h, round(fit.th * scale)), min(w, round(fit.tw * scale))
    y0, x0 = round(fit.y * scale), round(fit.x * scale)
    if th < p.cell or tw < p.cell:
        return None
    t = np.asarray(q.convert("L").resize((tw, th), Image.Resampling.BOX), np.float64)
    cells, keep, nx, oy, ox = _cell_grid(t, p)
    if not keep.size:
        return None
    y0, x0 = y0 + oy, x0 + ox
    fits = _cell_fits(cells, keep, nx, grey, y0, x0, p) >= p.fit
    if neighbours:
        y0, x0 = min(y0, h - th + oy), min(x0, w - tw + ox)  # the grid inside the frame
        still = _stills(grey.astype(np.float64), neighbours, keep, nx, y0, x0,
                        cells.shape[0] // nx, p)
        if still.sum() >= max(p.still_cells, p.still_min * keep.size):
            return float((fits & still).sum() / still.sum())
    return float(fits.mean())


def _stills(grey: np.ndarray, neighbours: Sequence[np.ndarray], keep: np.ndarray, nx: int,
            y0: int, x0: int, ny: int, p: DetailParams) -> np.ndarray:
    """Which of the grid's cells `keep` (nx by ny cells from y0, x0 of `grey`) stay as they
    are in every neighbouring stored frame: the same but for JPEG noise, both flat, or each
    finding the other within `p.shift` pixels."""
    box = (slice(y0, y0 + ny * p.cell), slice(x0, x0 + nx * p.cell))

    def grid(g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # its cells, and which have texture
        cells, textured = _cell_grid(g[box], p)[:2]
        tex = np.zeros(len(cells), bool)
        tex[textured] = True
        return cells, tex

    here = grid(grey)
    still = np.ones(keep.size, bool)
    for nb in neighbours:
        nb = nb.astype(np.float64)
        there = grid(nb)
        same = np.abs(here[0][keep] - there[0][keep]).mean(axis=(1, 2)) <= p.same
        todo = np.flatnonzero(still & ~same)  # the rest are correlated, both ways
        for (a, tex_a), (_, tex_b), g in ((here, there, nb), (there, here, grey)):
            if not todo.size:
                break
            idx = keep[todo]
            tex = tex_a[idx]
            ok = ~tex_b[idx]  # a flat cell stays when the other one is flat too
            if tex.any():
                ok[tex] = _cell_fits(a, idx[tex], nx, g, y0, x0, p) >= p.fit
            still[todo[~ok]] = False
            todo = todo[ok]
    return still
