"""Crops: when no whole frame fits well, the region vectors of keyframes are searched too (a
quarter of a frame finds the window it came from; so do nine sub-crops of the query, one of
which lines up with a stored window better than the whole query), and whole-frame and region
candidates are re-ranked by locating the query inside the stored thumbnails around each hit
(normalised cross-correlation over positions, scales and mirroring), which also pins the time
within the shot; the best few are then re-ranked by the colour check.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from PIL import Image

from core.catalog import Catalog
from core.index import VectorIndex, region_frame_ids
from core.media import Media
from core.models.embedder import SceneEmbedder
from core.recognition.candidates import GroupParams, Hit, Neighbours, group
from core.recognition.checks import CheckParams, Templates, colour_check, rerank
from core.recognition.correlation import LOCATE_SCALES, Sheet, locate_scores
from core.recognition.framing import View
from core.recognition.thumbnails import Thumbnails
from core.types import FrameFlag


@dataclass(frozen=True)
class RegionParams:
    """The region search and the localisation in thumbnails."""

    gate: float = 0.90  # below this whole-frame score the query may be a crop: regions are searched
    top: int = 16  # candidates of each kind (whole-frame, region) located in the thumbnails
    # seconds either side of a hit whose thumbnails are searched (a crop's hit is often a few
    # seconds off: its group spans ±5 s, and its best whole frame may be another)
    window: float = 2.0
    same: float = 1.0  # s: a candidate this close to one already located (same episode) is the same
    # the query's sub-crops searched among region vectors: this share of its width and height,
    # at `subgrid` x `subgrid` positions (corners, edges' middles, centre). A stored window is
    # half the frame on a quarter-frame grid, and a crop of a quarter of the frame can sit an
    # eighth of the frame off it; some sub-crop is much closer to it.
    subcrop: float = 0.8
    subgrid: int = 3
    subcrop_k: int = 50  # neighbours searched for each sub-crop (the query's own: search_k)
    scales: tuple[float, ...] = LOCATE_SCALES  # query width as a share of the frame width
    locate_weight: float = 0.8  # share of the localisation score in a located candidate's score
    margin: float = 0.04  # handicap of a located score against a whole-frame similarity
    # the early exit (`whole_frame`): the best whole-frame hit is located and colour-checked
    # first, as the full stage would; when the query fits it whole (at the full width) this
    # well, in colour this well, and no other place came this close before, the query is that
    # frame and the region search (sub-crops, region vectors, locating their hits) does not
    # change the answer (`bench/bench_gate.py`)
    early: bool = True
    early_fit: float = 0.95  # its localisation at the full width (grey correlation, best place)
    # its whole-frame similarity at least this: below, a region vector of the same shot can
    # score higher and win the located score at the same fit (pinning another time)
    early_score: float = 0.75
    early_check: float = 0.90  # its colour check
    early_margin: float = 0.05  # its whole-frame score above the best other place's


def embed_subcrops(embedder: SceneEmbedder, views: Sequence[Sequence[View]], p: RegionParams
                   ) -> tuple[np.ndarray, list[int]]:
    """Vectors of the `p.subgrid`² sub-crops (`p.subcrop` of the width and height) of every
    view of every frame, and of their mirror images; the frame each came from. A view is
    resized to the input size once and cut there (each sub-crop stretched back to the input
    size)."""
    e = embedder
    h, w = e.input_size
    ch, cw = round(h * p.subcrop), round(w * p.subcrop)
    ys = np.linspace(0, h - ch, p.subgrid).round().astype(int).tolist()
    xs = np.linspace(0, w - cw, p.subgrid).round().astype(int).tolist()
    arrays, owner = [], []
    for fi, frame_views in enumerate(views):
        for v in frame_views:
            img = Image.fromarray(e.prepare(v.image))
            for y in ys:
                for x in xs:
                    a = np.asarray(img.crop((x, y, x + cw, y + ch)).resize((w, h), Image.Resampling.BILINEAR))
                    arrays += [a, np.ascontiguousarray(a[:, ::-1])]
                    owner += [fi, fi]
    if not arrays:
        return np.zeros((0, e.dim), np.float32), []
    return e.embed_arrays(np.stack(arrays)), owner


def search_regions(regions: VectorIndex, embedder: SceneEmbedder, cat: Catalog, media: Media,
                   views: Sequence[Sequence[View]], vecs: np.ndarray, owner: Sequence[int],
                   k: int, subcrops: bool, p: RegionParams, grouping: GroupParams) -> list[Hit]:
    """Places found through region vectors: the query's own vectors (`k` neighbours each)
    and, when `subcrops`, its sub-crops' (only their best hits count: fewer neighbours each,
    a cheaper search)."""
    k = min(k, len(regions))
    rids, rsims = regions.search(vecs, k)
    sub, sub_owner = embed_subcrops(embedder, views, p) if subcrops else (vecs[:0], [])
    if len(sub):
        sids, ssims = regions.search(sub, min(k, p.subcrop_k))
        pad = ((0, 0), (0, k - sids.shape[1]))
        rids = np.concatenate([rids, np.pad(sids, pad, constant_values=-1)])
        rsims = np.concatenate([rsims, np.pad(ssims, pad, constant_values=-1.0)])
    return group(cat, media, Neighbours(region_frame_ids(rids), rsims),
                 list(owner) + sub_owner, grouping, region=True)


def _located(h: Hit, ts: np.ndarray, sc: np.ndarray, cat: Catalog, p: RegionParams) -> Hit:
    """A hit scored by where the query fits best in its thumbnails (times `ts`, scores
    `sc`), that place's time pinned unless the time pinned so far fits as well."""
    j = int(np.argmax(sc))
    own = int(np.argmin(np.abs(ts - h.anchor_t)))
    # the evidence so far (whole-frame or region similarity) and the localisation both count:
    # neither a weak embedding hit nor a lucky correlation wins alone. A located score is
    # handicapped by `p.margin` (a picture from outside the library fits somewhere too, a
    # little); a whole-frame hit keeps at least its own score, so full frames are answered as
    # before
    prior = h.score
    score = p.locate_weight * float(sc[j]) + (1 - p.locate_weight) * prior - p.margin
    if not h.region:
        score = max(score, prior)
    h = replace(h, located=True, score=score)
    if sc[own] >= sc[j] - 0.02:  # the time pinned so far fits as well: keep it
        return h
    t = float(ts[j])
    sl = cat.window(h.ep, t - 1e-3, t + 1e-3)
    if sl.stop > sl.start:
        h = replace(h, row=sl.start, oped=FrameFlag(int(cat.oped[sl.start])))
    return replace(h, start=h.start + (t - h.anchor_t), anchor_t=t, t_from=t, t_to=t)


def locate(hits: list[Hit], views: Sequence[Sequence[View]], cat: Catalog, thumbs: Thumbnails,
           p: RegionParams) -> list[Hit]:
    """Score each hit by how well the query fits somewhere inside the stored thumbnails
    within ±`p.window` s of it; the best frame pins the time. Best first."""
    todo: list[tuple[Hit, np.ndarray, np.ndarray]] = []  # hit, times, thumbnails
    seen: list[tuple[int, float]] = []
    # of two candidates at one place (a whole-frame and a region hit), the better one is
    # located: its evidence so far counts in the located score
    for h in sorted(hits, key=lambda h: -h.score):
        if any(e == h.ep and abs(t - h.anchor_t) <= p.same for e, t in seen):
            continue
        seen.append((h.ep, h.anchor_t))
        near = thumbs.near(h.ep, h.anchor_t, p.window)
        if near is not None:
            todo.append((h, near.times, near.stack))
    out: list[Hit] = []
    for fi in sorted({h.frame for h, _, _ in todo}):  # one batch per query frame
        batch = [x for x in todo if x[0].frame == fi]
        stack = np.concatenate([g for _, _, g in batch]).astype(np.float32)
        # every view: a meme's or phone shot's inner frame too
        sheet = Sheet(stack)
        scores = np.max([locate_scores(v.image, sheet, p.scales) for v in views[fi]], axis=0)
        at = 0
        for h, ts, g in batch:
            out.append(_located(h, ts, scores[at:at + len(g)], cat, p))
            at += len(g)
    out.sort(key=lambda h: -h.score)
    return out


def whole_frame(hit: Hit, views: Sequence[Sequence[View]], cat: Catalog, thumbs: Thumbnails,
                templates: Templates, p: RegionParams, check: CheckParams, min_fit: float = -1.0
                ) -> tuple[Hit, float] | None:
    """A whole-frame hit located in its thumbnails and colour-checked exactly as the full
    stage locates and re-ranks it (`locate`, `rerank`: one hit's scores do not depend on the
    others'), and how well the query fits there *whole* (the best correlation at the full
    width). The other widths and the colour check only when that fit is at least `min_fit`
    (otherwise the hit is returned as it was). None without thumbnails."""
    near = thumbs.near(hit.ep, hit.anchor_t, p.window)
    if near is None:
        return None
    sheet = Sheet(near.stack.astype(np.float32))
    full = [s for s in p.scales if s >= 1.0] or [1.0]
    whole = np.max([locate_scores(v.image, sheet, full) for v in views[hit.frame]], axis=0)
    fit = float(whole.max())
    if fit < min_fit:
        return hit, fit
    rest = [s for s in p.scales if s < 1.0]
    sc = np.max([whole] + [locate_scores(v.image, sheet, rest) for v in views[hit.frame]], axis=0) if rest else whole
    h = _located(hit, near.times, sc, cat, p)
    c = colour_check(h, views, thumbs, templates, check, p.gate)
    score = h.score if c.colour is None else (1 - check.weight) * h.score + check.weight * c.colour
    return replace(h, checked=c, score=score), fit


def _shot_mates(top: Hit, hits: list[Hit], views: Sequence[Sequence[View]], cat: Catalog,
                thumbs: Thumbnails, templates: Templates, p: RegionParams, check: CheckParams
                ) -> list[Hit]:
    """The early exit's answer: the best whole-frame hit located and checked (`top`), and the
    whole-frame hits of its episode within 2 x `p.window` s located and checked too, as the
    full stage does (in a still shot one of them may fit a little better and pin the time);
    the other hits as they were."""
    done, seen = [top], [(hits[0].ep, hits[0].anchor_t)]
    rest = []
    for h in hits[1:]:
        if (h.region or h.ep != top.ep or abs(h.anchor_t - hits[0].anchor_t) > 2 * p.window
                or len(done) >= p.top):
            rest.append(h)
            continue
        if any(e == h.ep and abs(t - h.anchor_t) <= p.same for e, t in seen):
            continue  # the full stage locates one candidate a place
        seen.append((h.ep, h.anchor_t))
        got = whole_frame(h, views, cat, thumbs, templates, p, check)
        done.append(got[0] if got is not None else h)
    return sorted(done + rest, key=lambda h: -h.score)


def _margin(hits: list[Hit], p: RegionParams) -> float:
    """The best whole-frame score above the best one at another place."""
    h = hits[0]
    other = next((x.score for x in hits[1:] if x.ep != h.ep or abs(x.anchor_t - h.anchor_t) > p.same),
                 0.0)
    return h.score - other


def crops(hits: list[Hit], regions: VectorIndex | None, embedder: SceneEmbedder, cat: Catalog,
          media: Media, views: Sequence[Sequence[View]], vecs: np.ndarray, owner: Sequence[int],
          k: int, subcrops: bool, thumbs: Thumbnails, templates: Templates, p: RegionParams,
          grouping: GroupParams, check: CheckParams, timings: dict[str, float] | None = None
          ) -> list[Hit] | None:
    """The whole-frame hits merged with the region hits and re-ranked, or None when the
    regions are not searched (no region vectors, or a whole frame fits: full frames are
    answered as they are). When the best whole-frame hit is located in its thumbnails as a
    whole frame (`whole_frame`, `RegionParams.early`), it is answered from there: that hit and
    its shot's (`_shot_mates`) located and checked, the others as they were. `timings`: gets
    "crop_search", the ms of the region search and the re-ranking, when they run."""
    if regions is None or len(regions) == 0:
        return None
    if hits and hits[0].score >= p.gate:
        return None
    # the early exit: the cheapest evidence first (the margin is known, one hit's
    # localisation is a fraction of the stage, its colour check is needed by the answer anyway)
    if (p.early and thumbs.framestore is not None and hits and not hits[0].region
            and hits[0].score >= p.early_score and _margin(hits, p) >= p.early_margin):
        got = whole_frame(hits[0], views, cat, thumbs, templates, p, check, p.early_fit)
        if got is not None and got[1] >= p.early_fit and got[0].checked is not None:
            colour = got[0].checked.colour
            if colour is not None and colour >= p.early_check:
                return _shot_mates(got[0], hits, views, cat, thumbs, templates, p, check)
    t0 = time.perf_counter()
    out = _search_and_rank(hits, regions, embedder, cat, media, views, vecs, owner, k, subcrops,
                           thumbs, templates, p, grouping, check)
    if timings is not None:
        timings["crop_search"] = (time.perf_counter() - t0) * 1000
    return out


def _search_and_rank(hits: list[Hit], regions: VectorIndex, embedder: SceneEmbedder, cat: Catalog,
                     media: Media, views: Sequence[Sequence[View]], vecs: np.ndarray,
                     owner: Sequence[int], k: int, subcrops: bool, thumbs: Thumbnails,
                     templates: Templates, p: RegionParams, grouping: GroupParams,
                     check: CheckParams) -> list[Hit]:
    """The region search, locating the best candidates of each kind, the colour re-rank."""
    found = search_regions(regions, embedder, cat, media, views, vecs, owner, k, subcrops, p,
                           grouping)
    if thumbs.framestore is None:  # nothing to locate the crop in: merge on similarity
        return sorted(hits + found, key=lambda h: -h.score)
    # the best of each kind are located in the thumbnails around them; the rest rank below
    # those
    located = locate(hits[:p.top] + found[:p.top], views, cat, thumbs, p)
    floor = min((h.score for h in located), default=0.0)
    rest = [replace(h, score=min(h.score, floor - 0.01)) for h in hits[p.top:] + found[p.top:]]
    merged = located + sorted(rest, key=lambda h: -h.score)
    return rerank(merged, views, thumbs, templates, check, p.gate)
