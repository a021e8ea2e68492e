"""Metrics over judged answers: top-1/top-5, time, MRR, the coverage-vs-accuracy curve,
abstention precision/recall and latency percentiles, each a small frozen record whose
`to_json()` is its part of the result JSON."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from training.eval.judging import Judgement
from training.eval.queries import Query

METRICS = ("series_top1", "series_top5", "episode_top1", "episode_top5", "time_2s",
           "time_2s_strict", "mrr")
COVERAGES = tuple(range(10, 101, 10))  # percent

JSONObject = dict[str, object]


def rnd(x: float | None, nd: int = 4) -> float | None:
    """`x` rounded to `nd` digits; None for None and NaN."""
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else round(float(x), nd)


@dataclass(frozen=True)
class Summary:
    """The mean of each metric over some queries (None when there are none)."""

    n: int
    series_top1: float | None = None
    series_top5: float | None = None
    episode_top1: float | None = None
    episode_top5: float | None = None
    time_2s: float | None = None
    time_2s_strict: float | None = None
    mrr: float | None = None

    def to_json(self) -> JSONObject:
        return asdict(self)


def summarize(js: Sequence[Judgement]) -> Summary:
    """Mean of each metric over `js` (an empty list gives None values)."""
    n = len(js)
    if n == 0:
        return Summary(0)
    means = {m: rnd(sum(bool(getattr(j, m)) for j in js) / n) for m in METRICS if m != "mrr"}
    return Summary(n, mrr=rnd(sum(j.rr for j in js) / n), **means)


@dataclass(frozen=True)
class Abstaining:
    """How often one category's queries abstained, and how right the matched ones were."""

    abstain_rate: float | None
    matched_accuracy: float | None


@dataclass(frozen=True)
class CategoryMetrics:
    """One category of a system: its summary (None for out-of-library queries, which have
    no accuracy) and, for our recognizer, its abstention."""

    n: int
    summary: Summary | None
    abstaining: Abstaining | None = None

    def to_json(self) -> JSONObject:
        out: JSONObject = self.summary.to_json() if self.summary is not None else {"n": self.n}
        if self.abstaining is not None:
            out.update(asdict(self.abstaining))
        return out


@dataclass(frozen=True)
class CoveragePoint:
    coverage: float  # share of queries answered, most confident first
    accuracy: float | None
    min_score: float | None  # the lowest score answered


def coverage_curve(scores: Sequence[float], correct: Sequence[bool]) -> list[CoveragePoint]:
    """Accuracy of the most confident c% of queries, for c = 10, 20, ..., 100."""
    s = np.asarray(scores, np.float64)
    y = np.asarray(correct, np.float64)
    if s.size == 0:
        return []
    order = np.argsort(-s, kind="stable")
    out = []
    for c in COVERAGES:
        k = max(1, math.ceil(s.size * c / 100))
        out.append(CoveragePoint(c / 100, rnd(y[order[:k]].mean()), rnd(s[order[k - 1]])))
    return out


@dataclass(frozen=True)
class AbstentionStats:
    """precision = P(out-of-library or top-1 wrong | abstained); recall = P(abstained | OOL)."""

    abstained: int
    precision: float | None
    recall: float | None
    recall_wrong_in_library: float | None
    in_library_abstain_rate: float | None
    right_but_abstained: int
    answered_accuracy: float | None
    ool_answered: int

    def to_json(self) -> JSONObject:
        return asdict(self)


def abstention(abstained: Sequence[bool], queries: Sequence[Query], right: Sequence[bool]
               ) -> AbstentionStats:
    """precision = P(out-of-library or top-1 wrong | abstained); recall = P(abstained | OOL)."""
    ab = np.asarray(abstained, bool)
    ool = np.asarray([not q.in_library for q in queries], bool)
    ok = np.asarray(right, bool)
    should = ool | ~ok
    n_ab = int(ab.sum())
    inl = ~ool
    answered_in = inl & ~ab
    return AbstentionStats(
        abstained=n_ab,
        precision=rnd(float((ab & should).sum()) / n_ab) if n_ab else None,
        recall=rnd(float((ab & ool).sum()) / ool.sum()) if ool.any() else None,
        recall_wrong_in_library=rnd(float((ab & inl & ~ok).sum()) / (inl & ~ok).sum())
        if (inl & ~ok).any() else None,
        in_library_abstain_rate=rnd(float((ab & inl).sum()) / inl.sum()) if inl.any() else None,
        right_but_abstained=int((ab & inl & ok).sum()),
        answered_accuracy=rnd(float((answered_in & ok).sum()) / (~ab).sum()) if (~ab).any() else None,
        ool_answered=int((ool & ~ab).sum()),
    )


@dataclass(frozen=True)
class Percentiles:
    p50: float | None
    p95: float | None
    p99: float | None
    mean: float | None

    def to_json(self) -> JSONObject:
        return asdict(self)


def percentiles(xs: Sequence[float]) -> Percentiles:
    """p50/p95/p99 and mean of `xs` (milliseconds, 2 digits)."""
    if not xs:
        return Percentiles(None, None, None, None)
    p = np.percentile(np.asarray(xs, np.float64), [50, 95, 99])
    return Percentiles(rnd(p[0], 2), rnd(p[1], 2), rnd(p[2], 2), rnd(float(np.mean(xs)), 2))


def ratio(a: float | None, b: float | None) -> float | None:
    """a / b to 3 digits; None when either is missing or b is 0."""
    if a is None or b is None or b == 0:
        return None
    return rnd(a / b, 3)
