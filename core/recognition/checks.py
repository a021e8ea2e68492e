"""Checking an answer: the colour check (the query located once more in the answer's stored
thumbnails, at twice the localisation size and in colour, so a look-alike picture from
outside the library, which fits a flat-coloured anime frame somewhere in grey, scores lower
than the real scene), the detail check where it was found (a real copy keeps its line art in
place, a look-alike does not), and near-ties between different episodes settled by it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from core.recognition.candidates import OPED, Hit
from core.recognition.correlation import (
    DetailParams,
    Fit,
    FitParams,
    Sheet,
    TemplateCache,
    check_fit,
    detail_score,
)
from core.recognition.framing import LUMA, View
from core.recognition.thumbnails import Thumbnails
from core.types import Candidate

#: a query's template caches, by the id of the view image they belong to
Templates = dict[int, TemplateCache]


@dataclass(frozen=True)
class CheckParams:
    """The colour check."""

    fit: FitParams = field(default_factory=FitParams)  # the widths it tries
    # a whole-frame hit whose colour check at full width is below this is checked at every
    # width too (a crop the embedder scored like a whole frame)
    whole_fit: float = 0.9
    window: float = 0.75  # seconds either side of the answer whose thumbnails are checked
    rerank: int = 5  # located candidates re-ranked by the colour check
    weight: float = 0.5  # its share in their score


@dataclass(frozen=True)
class TieParams:
    """Near-ties between different episodes, settled by the detail check."""

    score: float = 0.01  # other places scoring this close to the best answer are a near-tie...
    top: int = 5  # ...of which this many (the best answer included) are settled by the detail check
    detail: float = 0.1  # by how much another place's detail must beat the best answer's to win


@dataclass(frozen=True)
class Checked:
    """The checks of one hit: its colour fit (None without thumbnails), where the query was
    found, and the detail check there once made."""

    colour: float | None
    spot: Fit | None = None
    detail: float | None = None
    detailed: bool = False


def colour_check(hit: Hit, views: Sequence[Sequence[View]], thumbs: Thumbnails,
                 templates: Templates, p: CheckParams, gate: float) -> Checked:
    """The colour fit of the query inside the hit's stored thumbnails within ±`p.window` s
    (see `check_fit`), and where it fits (for the detail check). `views`: the views of each
    query frame; `templates`: this query's template caches; `gate`: the whole-frame score
    above which a whole-frame hit is taken for a whole frame (`RegionParams.gate`)."""
    g = thumbs.near(hit.ep, hit.anchor_t, p.window, kind="colour")
    if g is None:
        return Checked(None)
    stack = g.stack.astype(np.float64)
    sheet = Sheet(stack @ LUMA)
    best: float | None = None
    spot: Fit | None = None

    def fit_at(scales: Sequence[float]) -> None:
        nonlocal best, spot
        for v in views[hit.frame]:
            score, fit = check_fit(v.image, stack, sheet, scales,
                                   templates.setdefault(id(v.image), TemplateCache()), p.fit.refine)
            if fit is not None and (best is None or score > best):
                best = score
                spot = replace(fit, frame=int(g.frames[fit.frame]), view=v.image)

    # a whole frame that fitted well is checked whole (its width is refined all the same),
    # unless it does not fit whole: a trained embedder scores a crop that high too. A
    # located candidate may be a crop whatever its score now: every width is tried.
    whole = not hit.region and not hit.located and hit.score >= gate
    fit_at((1.0,) if whole else p.fit.scales)
    if whole and (best is None or best < p.whole_fit):
        fit_at(p.fit.scales)
    return Checked(best if best is not None else 0.0, spot)


def with_check(hit: Hit, views: Sequence[Sequence[View]], thumbs: Thumbnails,
               templates: Templates, p: CheckParams, gate: float) -> Hit:
    """The hit with its colour check, made unless it already has one."""
    if hit.checked is not None:
        return hit
    return replace(hit, checked=colour_check(hit, views, thumbs, templates, p, gate))


def rerank(hits: list[Hit], views: Sequence[Sequence[View]], thumbs: Thumbnails,
           templates: Templates, p: CheckParams, gate: float) -> list[Hit]:
    """The best `p.rerank` located candidates checked in colour at twice the size, which
    settles look-alike places (a twin series' shared background) the grey fit cannot; their
    score takes `p.weight` of the check."""
    top = []
    for h in hits[:p.rerank]:
        c = colour_check(h, views, thumbs, templates, p, gate)
        score = h.score if c.colour is None else (1 - p.weight) * h.score + p.weight * c.colour
        top.append(replace(h, checked=c, score=score))
    return sorted(top, key=lambda h: -h.score) + hits[p.rerank:]


def shot_neighbours(hit: Hit, spot: Fit, thumbs: Thumbnails, p: DetailParams
                    ) -> list[np.ndarray]:
    """In an opening or ending, the stored frames just before and after the one the query
    was found in (`spot`), where they are of its shot ("detail" thumbnails; see
    `detail_score`). There the credits are laid over the picture and change on their own
    (they scroll, fade in and out), so a screenshot a second from the nearest stored frame
    shows other lines. Elsewhere what changes is mostly the characters, and they are what
    tells a look-alike episode (the same café, another character) from the right one."""
    if hit.oped not in OPED or not p.neighbours:
        return []
    ef = thumbs.pack(hit.ep)
    if ef is None:
        return []
    i = spot.frame
    out = []
    for j in (i - 1, i + 1):
        if 0 <= j < len(ef) and ef.shots[j] == ef.shots[i]:
            nb = thumbs.thumb(hit.ep, j, "detail")
            if nb is not None:
                out.append(nb)
    return out


def with_detail(hit: Hit, thumbs: Thumbnails, p: DetailParams) -> tuple[Hit, float | None]:
    """The hit with its detail check where the colour check found the query (see
    `detail_score`), and that check; None when there is nothing to check (no colour check or
    frame store, or a query without texture)."""
    c = hit.checked
    if c is None:
        return hit, None
    if c.detailed:
        return hit, c.detail
    if c.spot is None or c.spot.view is None:
        return hit, None
    full = thumbs.thumb(hit.ep, c.spot.frame, "detail")
    if full is None:
        return hit, None
    d = detail_score(c.spot.view, full.astype(np.float64), c.spot,
                     full.shape[1] / thumbs.params.colour_size[0],
                     shot_neighbours(hit, c.spot, thumbs, p), p)
    return replace(hit, checked=replace(c, detail=d, detailed=True)), d


@dataclass(frozen=True)
class Ranked:
    """The answers in order and the hit behind each."""

    answers: list[Candidate]
    hits: list[Hit]


def settle_ties(ranked: Ranked, views: Sequence[Sequence[View]], thumbs: Thumbnails,
                templates: Templates, check: CheckParams, detail: DetailParams,
                p: TieParams, gate: float) -> tuple[Ranked, bool]:
    """Near-ties between different episodes (title cards that differ only in their text,
    stills of a look-alike place): the best of them by the detail check goes first when it
    beats the best answer's detail by `p.detail`. The hits checked on the way keep their
    checks; True when the answer changed."""
    out, picked = list(ranked.answers), list(ranked.hits)
    tied = [i for i in range(1, len(out)) if out[i].episode_id != out[0].episode_id
            and out[i].score >= out[0].score - p.score][:p.top - 1]
    if not tied or thumbs.framestore is None:
        return ranked, False

    def detail_of(i: int) -> float:
        h = with_check(picked[i], views, thumbs, templates, check, gate)
        picked[i], d = with_detail(h, thumbs, detail)
        return -1.0 if d is None else d

    best, best_d = 0, detail_of(0)
    for i in tied:
        d = detail_of(i)
        if d > best_d + p.detail:
            best, best_d = i, d
    if best:
        out.insert(0, out.pop(best))
        picked.insert(0, picked.pop(best))
    return Ranked(out, picked), bool(best)
