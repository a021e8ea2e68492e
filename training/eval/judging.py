"""Judging: is a ranked answer list right for a query (series, episode, time within the
tolerance), and at which rank is the first right episode.

An answer is right at any place showing the query's footage (`Query.places`); an answer
flagged as opening/ending with the right series is right for a query inside the
opening/ending.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from core.catalog import Catalog
from core.types import Recognition
from training.eval.queries import Query


@dataclass(frozen=True)
class Tolerances:
    """What counts as right."""

    top_k: int = 5  # candidates judged (top-5 metrics, MRR over the top 5)
    time: float = 2.0  # seconds: "timestamp right" (top-1)
    still_slack: float = 0.5  # seconds around a still shot inside which any answered time is right


TOLERANCES = Tolerances()


@dataclass(frozen=True)
class Guess:
    """One ranked answer of a system."""

    episode_id: int
    time: float
    score: float
    oped: bool = False  # the system says "this is the opening/ending"


def guesses_of(rec: Recognition) -> list[Guess]:
    """A recognition's candidates as ranked guesses."""
    return [Guess(c.episode_id, c.time, c.score, c.is_opening_or_ending) for c in rec.candidates]


@dataclass(frozen=True)
class Judgement:
    """How right a ranked answer list was for one query."""

    series_top1: bool = False
    series_top5: bool = False
    episode_top1: bool = False
    episode_top5: bool = False
    time_2s: bool = False
    time_2s_strict: bool = False
    rank: int = 0  # 1-based rank of the first right episode; 0: none in the top 5

    @property
    def rr(self) -> float:
        return 1.0 / self.rank if self.rank else 0.0


class Judge:
    """Judges ranked guesses against a query's places."""

    def __init__(self, catalog: Catalog, tolerances: Tolerances = TOLERANCES) -> None:
        self.catalog = catalog
        self.tol = tolerances
        self.series_of_path = {em.path: em.series_id for em in catalog.episodes.values()}

    def _row(self, q: Query, g: Guess, want_series: int | None) -> tuple[bool, bool, bool, bool]:
        """(series, episode, time, strict time) of one guess."""
        em = self.catalog.episodes.get(g.episode_id)
        s_ok = em is not None and em.series_id == want_series
        e_ok = t_ok = strict = False
        if s_ok and g.oped and q.segment in ("opening", "ending"):
            e_ok = t_ok = strict = True  # "the opening of <series>" is the right answer
        elif em is not None:
            for p in q.places:
                if p.path != em.path:
                    continue
                e_ok = True
                if abs(g.time - p.t) <= self.tol.time:
                    t_ok = strict = True
                elif p.still and p.still[0] - self.tol.still_slack <= g.time <= p.still[1] + self.tol.still_slack:
                    t_ok = True
        return s_ok, e_ok, t_ok, strict

    def __call__(self, q: Query, guesses: Sequence[Guess]) -> Judgement:
        if not q.in_library or not q.places:
            return Judgement()
        want_series = self.series_of_path.get(q.places[0].path)
        rows = [self._row(q, g, want_series) for g in guesses[:self.tol.top_k]]
        if not rows:
            return Judgement()
        rank = next((i + 1 for i, r in enumerate(rows) if r[1]), 0)
        return Judgement(series_top1=rows[0][0], series_top5=any(r[0] for r in rows),
                         episode_top1=rows[0][1], episode_top5=rank > 0, time_2s=rows[0][2],
                         time_2s_strict=rows[0][3], rank=rank)
