"""Candidates from the nearest-neighbour search: hits grouped into places (episode, time
window), the frames of a clip voting with temporal consistency (each frame must hit the same
episode at the right offset), the best places verified against every stored frame around the
hit to pin the timestamp, and the final ranking into distinct answers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from core.catalog import Catalog
from core.descriptors import tiny_array, tiny_similarity
from core.index import VectorIndex
from core.media import Media
from core.types import Candidate, FrameFlag

if TYPE_CHECKING:
    from core.recognition.checks import Checked

#: the frame flags of footage repeated in every episode of a series
OPED = (FrameFlag.OPENING, FrameFlag.ENDING)


@dataclass(frozen=True)
class GroupParams:
    """Grouping hits into places and the frames' vote."""

    seconds: float = 5.0  # hits of one episode within ±5 s are one scene (as trace.moe merges)
    consistency: float = 2.0  # a clip's frames must agree on the start within ±2 s


@dataclass(frozen=True)
class VerifyParams:
    """Pinning the timestamp of the best places."""

    top: int = 12  # candidates verified exactly
    window: float = 6.0  # seconds either side searched when pinning the timestamp


@dataclass(frozen=True)
class RankParams:
    """The final ranking's adjustments."""

    # identical footage: the original scene beats its re-use in a recap by this much
    recap_penalty: float = 0.03
    # the series classifier's probability, times this, is added to its series' candidates
    series_weight: float = 0.05


@dataclass(frozen=True)
class Neighbours:
    """What a search found: ids int64 [n, k] (-1 padded) and similarities [n, k]."""

    ids: np.ndarray
    sims: np.ndarray


@dataclass(frozen=True)
class Hit:
    """A place in the library the query may come from, as the stages see it."""

    ep: int  # episode id
    start: float  # implied library time of the clip's first frame
    anchor_t: float  # the best-fitting library time
    score: float
    row: int  # the catalog row of the best-fitting stored frame
    agree: float = 1.0  # share of the clip's frames that hit it at the right offset
    frame: int = 0  # the query frame that found it
    oped: FrameFlag = FrameFlag.NONE
    t_from: float = 0.0  # the stored frames that fit about as well: from..to
    t_to: float = 0.0
    region: bool = False  # found through a region vector (a crop's window), not a whole frame
    located: bool = False  # scored by locating the query in thumbnails (it may be a crop)
    checked: Checked | None = None  # the colour and detail checks, once made


def search(index: VectorIndex, vectors: np.ndarray, k: int) -> Neighbours:
    """The `k` nearest stored vectors of each query vector."""
    ids, sims = index.search(vectors, k)
    return Neighbours(ids, sims)


PerEpisode = dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]]  # episode → (times, sims, rows)


def _hits_per_frame(cat: Catalog, found: Neighbours, owner: Sequence[int], nf: int
                    ) -> tuple[list[PerEpisode], np.ndarray]:
    """Per query frame: episode → (times, sims, rows) of its hits (views/mirrors merged, the
    best similarity per stored frame); and each frame's lowest similarity found."""
    hits: list[PerEpisode] = []
    floor = np.zeros(nf, np.float32)
    for fi in range(nf):
        sel = [i for i, o in enumerate(owner) if o == fi]
        fid = found.ids[sel].reshape(-1)
        fs = found.sims[sel].reshape(-1)
        rows = cat.rows(fid)
        ok = (rows >= 0) & (fid >= 0)
        rows, fs = rows[ok], fs[ok]
        floor[fi] = float(fs.min()) if fs.size else 0.0
        # best similarity per row
        order = np.lexsort((-fs, rows))
        rows, fs = rows[order], fs[order]
        first = np.concatenate([[True], rows[1:] != rows[:-1]]) if rows.size else rows.astype(bool)
        rows, fs = rows[first], fs[first]
        per: PerEpisode = {}
        eps = cat.ep[rows]
        for e in np.unique(eps).tolist():
            m = eps == e
            r = rows[m]
            per[e] = (cat.t[r].astype(np.float64), fs[m].astype(np.float64), r)
        hits.append(per)
    return hits, floor


def _peaks(cat: Catalog, hits: list[PerEpisode], qt: np.ndarray, p: GroupParams,
           region: bool) -> list[Hit]:
    """Up to four places per query frame and episode: its strongest hits at least
    `p.seconds` apart."""
    out: list[Hit] = []
    for fi, per in enumerate(hits):
        for e, (ts, ss, rs) in per.items():
            order = np.argsort(-ss)
            peaks: list[int] = []
            for j in order.tolist():
                if all(abs(ts[j] - ts[k]) > p.seconds for k in peaks):
                    peaks.append(j)
                    if len(peaks) >= 4:
                        break
            for k in peaks:
                near = np.abs(ts - ts[k]) <= p.seconds
                strong = near & (ss >= ss[k] - 0.02)
                out.append(Hit(ep=e, start=float(ts[k] - qt[fi]), anchor_t=float(ts[k]),
                               score=float(ss[k]), row=int(rs[k]), frame=fi,
                               oped=FrameFlag(int(cat.oped[rs[k]])),
                               t_from=float(ts[strong].min()), t_to=float(ts[strong].max()),
                               region=region))
    return out


def _vote(h: Hit, hits: list[PerEpisode], floor: np.ndarray, qt: np.ndarray,
          p: GroupParams) -> Hit:
    """Temporal consistency: every query frame votes at its own offset (its best similarity
    there, or its floor)."""
    votes, agree = [], 0
    for fj, per in enumerate(hits):
        found = per.get(h.ep)
        best = floor[fj]
        if found is not None:
            exp = h.start + qt[fj]
            m = np.abs(found[0] - exp) <= p.consistency
            if m.any():
                best = max(best, float(found[1][m].max()))
                agree += 1
        votes.append(best)
    return replace(h, score=float(np.mean(votes)), agree=agree / len(hits))


def group(cat: Catalog, media: Media, found: Neighbours, owner: Sequence[int],
          p: GroupParams, *, region: bool = False) -> list[Hit]:
    """Hits grouped into places, best first, one per (episode, start) neighbourhood (at most
    60). `owner`: the query frame of each searched vector; `region`: they are region hits."""
    nf = len(media.frames)
    hits, floor = _hits_per_frame(cat, found, owner, nf)
    qt = np.asarray(media.times, np.float64)
    made = _peaks(cat, hits, qt, p, region)
    if nf > 1:
        made = [_vote(h, hits, floor, qt, p) for h in made]
    made.sort(key=lambda h: -h.score)
    kept: list[Hit] = []
    for h in made:
        if all(not (k.ep == h.ep and abs(k.start - h.start) <= p.seconds) for k in kept):
            kept.append(h)
        if len(kept) >= 60:
            break
    return kept


def _pin(h: Hit, cat: Catalog, index: VectorIndex, vecs: np.ndarray, sel: list[int],
         tq: np.ndarray, qt: np.ndarray, nf: int, p: VerifyParams) -> Hit:
    """One place verified against every stored frame within ±`p.window` s of it."""
    sl = cat.window(h.ep, h.anchor_t - p.window, h.anchor_t + p.window)
    if sl.stop <= sl.start:
        return h
    fids = cat.ids[sl]
    try:
        fv = index.vectors(fids)
    except (KeyError, RuntimeError, ValueError):
        return h
    emb = (vecs[sel] @ fv.T).max(axis=0)  # best view/mirror per library frame
    tiny = tiny_similarity(tq[sel], cat.descriptors[sl].astype(np.float32) / 255.0).max(axis=0)
    combined = emb + 0.05 * tiny
    j = int(np.argmax(combined))
    ts = cat.t[sl].astype(np.float64)
    best = float(emb[j])
    close = emb >= best - 0.01
    lo, hi = j, j  # the contiguous run of frames that fit as well as the best one
    while lo > 0 and emb[lo - 1] >= best - 0.002:
        lo -= 1
    while hi < len(ts) - 1 and emb[hi + 1] >= best - 0.002:
        hi += 1
    if ts[hi] - ts[lo] > 2.0:
        # a still shot: every frame fits, so answer the middle of the run
        anchor_t = float((ts[lo] + ts[hi]) / 2)
    else:
        # sub-sample time: similarity-weighted mean of the best frame and its neighbours
        nb = [x for x in (j - 1, j, j + 1) if 0 <= x < len(ts) and close[x]]
        w = np.maximum(emb[nb] - (best - 0.02), 1e-6)
        anchor_t = float((ts[nb] * w).sum() / w.sum())
    strong = emb >= best - 0.02
    row = sl.start + j
    return replace(h, anchor_t=anchor_t, t_from=float(ts[strong].min()),
                   t_to=float(ts[strong].max()), start=anchor_t - qt[h.frame], row=row,
                   oped=FrameFlag(int(cat.oped[row])),
                   score=max(h.score, best) if nf == 1 else h.score)


def verify(hits: list[Hit], cat: Catalog, index: VectorIndex, vecs: np.ndarray,
           owner: Sequence[int], tinies: list[bytes], media: Media, p: VerifyParams
           ) -> list[Hit]:
    """Pin the timestamp of the best `p.top` places against every stored frame nearby (exact
    embedding similarity plus the tiny colour descriptor); best first."""
    tq = tiny_array(tinies)
    qt = np.asarray(media.times, np.float64)
    nf = len(media.frames)
    out = [_pin(h, cat, index, vecs, [i for i, o in enumerate(owner) if o == h.frame], tq, qt,
                nf, p) for h in hits[:p.top]] + hits[p.top:]
    out.sort(key=lambda h: -h.score)
    return out


def adjust(hits: list[Hit], cat: Catalog, series_p: dict[int, float], p: RankParams
           ) -> list[Hit]:
    """The last nudges, best first: recap footage loses to the original scene, and the series
    classifier (when loaded) lifts the candidates of the series it believes in."""
    out = [replace(h, score=h.score - p.recap_penalty) if h.oped == FrameFlag.RECAP else h
           for h in hits]
    if series_p:
        out = [replace(h, score=h.score + p.series_weight
                       * series_p.get(cat.episodes[h.ep].series_id, 0.0)) for h in out]
    out.sort(key=lambda h: -h.score)
    return out


def answers(hits: list[Hit], cat: Catalog, p: GroupParams, n: int = 5
            ) -> tuple[list[Candidate], list[Hit]]:
    """The best `n` distinct answers and the hit behind each. Openings/endings found in
    several episodes collapse into one answer per series; places of one episode closer than
    `p.seconds` are one."""
    out: list[Candidate] = []
    picked: list[Hit] = []
    seen_oped: set[tuple[int, int]] = set()
    seen_ep_start: list[tuple[int, float]] = []
    for h in hits:
        em = cat.episodes.get(h.ep)
        if em is None:
            continue
        if h.oped in OPED:
            key = (em.series_id, int(h.oped))
            if key in seen_oped:
                continue
            seen_oped.add(key)
        if any(e == h.ep and abs(s - h.start) <= p.seconds for e, s in seen_ep_start):
            continue
        seen_ep_start.append((h.ep, h.start))
        t = h.anchor_t
        out.append(Candidate(
            series=cat.series[em.series_id], episode_id=em.id, season=em.season,
            episode=em.number, episode_label=em.label, time=t,
            time_from=min(h.t_from, t), time_to=max(h.t_to, t),
            score=float(max(0.0, min(1.0, h.score))), is_opening_or_ending=h.oped in OPED,
            oped_kind=("opening" if h.oped == FrameFlag.OPENING else "ending") if h.oped in OPED else None))
        picked.append(h)
        if len(out) >= n:
            break
    return out, picked
