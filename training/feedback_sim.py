"""Simulated users for the learning loop (the test and `bench/bench_learning.py`).

People send screenshots of a kind the current model gets wrong or hedges on (`HARD_KINDS`:
which of them is hard is measured, not assumed), the bot answers through the real service
(so every answer is a stored query with its vectors), and they vote as people do: mostly
right (✅ when the top answer is right, the right candidate's number when it is among the
five, ❌ otherwise), some noise, and one abusive voter who votes the opposite of the truth.
"""

from __future__ import annotations

import colorsys
import io
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image, ImageDraw

from core.catalog import Catalog
from core.types import Recognition
from data.perturb import crop, font, jpeg
from training.eval.judging import Guess, Judge
from training.eval.queries import PNG, Draw, render_draws
from training.eval.queries import Query as EvalQuery
from training.eval.truth import Truth, TruthEpisode, places_of, segment_at

if TYPE_CHECKING:
    from core.service import RecognitionService

Perturb = Callable[[Image.Image, random.Random], Image.Image]


def strong_tint(img: Image.Image, rng: random.Random) -> Image.Image:
    """A heavy colour filter (night mode, a cheap screen, an Instagram filter): 40-55% of a
    saturated colour over the picture."""
    tint = tuple(int(255 * c) for c in colorsys.hsv_to_rgb(rng.random(), 0.9, 1.0))
    return Image.blend(img.convert("RGB"), Image.new("RGB", img.size, tint), rng.uniform(0.4, 0.55))


def busy_ui(img: Image.Image, rng: random.Random, share: tuple[float, float] = (0.28, 0.36)
            ) -> Image.Image:
    """The picture small inside a busy desktop: coloured panels, buttons and text around it."""
    w, h = 960, 600
    canvas = Image.new("RGB", (w, h), tuple(rng.randint(0, 255) for _ in range(3)))
    d = ImageDraw.Draw(canvas)
    for _ in range(40):
        x, y = rng.randint(0, w - 40), rng.randint(0, h - 20)
        d.rectangle((x, y, x + rng.randint(20, 200), y + rng.randint(10, 90)),
                    fill=tuple(rng.randint(0, 255) for _ in range(3)))
    for _ in range(25):
        d.text((rng.randint(0, w - 100), rng.randint(0, h - 20)), "chat · reply · like",
               font=font(rng.randint(12, 22)), fill=tuple(rng.randint(0, 255) for _ in range(3)))
    pw = int(w * rng.uniform(*share))
    ph = int(pw * img.height / img.width)
    canvas.paste(img.resize((pw, ph), Image.Resampling.BILINEAR),
                 (rng.randint(0, w - pw), rng.randint(0, h - ph)))
    return canvas


def heavy_tint(img: Image.Image, rng: random.Random) -> Image.Image:
    """A very heavy colour filter: 65-75% of a saturated colour over the picture."""
    tint = tuple(int(255 * c) for c in colorsys.hsv_to_rgb(rng.random(), 0.9, 1.0))
    return Image.blend(img.convert("RGB"), Image.new("RGB", img.size, tint), rng.uniform(0.65, 0.75))


def night_mode(img: Image.Image, rng: random.Random) -> Image.Image:
    """A dark, low-contrast, warm screen (night mode, brightness down): JPEG-compressed."""
    from PIL import ImageEnhance

    img = ImageEnhance.Brightness(img.convert("RGB")).enhance(rng.uniform(0.25, 0.35))
    img = ImageEnhance.Contrast(img).enhance(rng.uniform(0.5, 0.7))
    img = Image.blend(img, Image.new("RGB", img.size, (255, 140, 40)), 0.25)
    return _jpeg(img, rng)


def sideways(img: Image.Image, rng: random.Random) -> Image.Image:
    """A sideways phone picture: the frame turned a quarter (clockwise), JPEG-compressed."""
    return _jpeg(img.convert("RGB").transpose(Image.Transpose.ROTATE_270), rng)


def _busy_big(img: Image.Image, rng: random.Random) -> Image.Image:
    return busy_ui(img, rng, share=(0.5, 0.6))


_crop15 = crop(0.12, 0.18)
_jpeg = jpeg(40, 80)


def tight_crop(img: Image.Image, rng: random.Random) -> Image.Image:
    """A tight crop (12-18% of the frame), JPEG-compressed."""
    return _jpeg(_crop15(img, rng), rng)


HARD_KINDS: dict[str, Perturb] = {"strong_tint": strong_tint, "busy_ui": busy_ui,
                                  "crop15": tight_crop, "heavy_tint": heavy_tint,
                                  "night_mode": night_mode, "busy_ui_big": _busy_big,
                                  "sideways": sideways}


@dataclass(frozen=True)
class SimQuery:
    """One simulated screenshot and where its footage really is (every place showing it: an
    opening, a recap), as the evaluation judges it."""

    data: bytes = field(repr=False)
    kind: str
    truth: EvalQuery


def make_queries(truth: Truth, kinds: Sequence[str], n_per_kind: int, seed: int
                 ) -> list[SimQuery]:
    """`n_per_kind` screenshots of each kind at random times of random episodes."""
    rng = random.Random(f"anirec-sim:{seed}")
    draws: list[Draw] = []
    meta: list[tuple[str, TruthEpisode, float]] = []
    for kind in kinds:
        for _ in range(n_per_kind):
            ep = rng.choice(truth.episodes)
            t = rng.uniform(0.5, max(0.6, float(ep["duration"]) - 0.5))
            draws.append(Draw(len(draws), ep, Path(ep["abs"]), t, PNG))
            meta.append((kind, ep, t))
    clean = render_draws(draws)
    out = []
    for d, (kind, ep, t) in zip(draws, meta, strict=True):
        img = Image.open(io.BytesIO(clean[d.index])).convert("RGB")
        img = HARD_KINDS[kind](img, random.Random(f"{seed}:{d.index}"))
        buf = io.BytesIO()
        img.save(buf, format="PNG", compress_level=1)
        out.append(SimQuery(buf.getvalue(), kind, EvalQuery(
            qid=f"sim{d.index}", category=kind, perturbation=kind, data=b"", episode=ep["path"],
            series=ep["series"], t=t, segment=segment_at(ep, t), places=places_of(ep, t, truth))))
    return out


@dataclass(frozen=True)
class Voter:
    """A simulated person: how often they vote at all, how often they slip."""

    user_id: str
    turnout: float = 0.7  # share of answers they vote on
    noise: float = 0.08  # share of their votes that are random
    abusive: bool = False  # votes the opposite of the truth


def default_voters(n: int = 6) -> list[Voter]:
    """`n` ordinary people and one abusive voter."""
    return [Voter(f"user{i}") for i in range(n)] + [Voter("troll", turnout=0.9, abusive=True)]


def vote_for(right_rank: int, n_cands: int, voter: Voter, rng: random.Random
             ) -> tuple[str, int | None] | None:
    """What `voter` says about an answer whose right candidate is `right_rank` (1-based, 0:
    none of them): ("correct"|"wrong"|"pick", rank) or None (no vote)."""
    if rng.random() > voter.turnout:
        return None
    if voter.abusive:  # always contradicts: ❌ on a right answer, ✅ on a wrong one
        return ("wrong", None) if right_rank == 1 else ("correct", None)
    if rng.random() < voter.noise:
        choice = rng.choice(["correct", "wrong", "pick"])
        return (choice, rng.randint(1, max(1, n_cands)) if choice == "pick" else None)
    if right_rank == 1:
        return ("correct", None)
    if right_rank > 1:
        return ("pick", right_rank)
    return ("wrong", None)


def right_rank(rec: Recognition, q: SimQuery, judge: Judge) -> int:
    """1-based rank of the first candidate at a place showing the query's footage, with the
    time right (as the evaluation's `time_2s`); 0: none of them."""
    for i, c in enumerate(rec.candidates[:5], 1):
        if judge(q.truth, [Guess(c.episode_id, c.time, c.score, c.is_opening_or_ending)]).time_2s:
            return i
    return 0


@dataclass
class KindScore:
    """How one recogniser does on one kind of screenshot."""

    n: int = 0
    right: int = 0  # top answer at the right place
    right_match: int = 0  # ... and said as "match"
    wrong_match: int = 0  # a wrong top answer said as "match"

    def as_dict(self) -> dict[str, float | int]:
        n = self.n or 1
        return {"n": self.n, "accuracy": round(self.right / n, 4),
                "right_as_match": round(self.right_match / n, 4),
                "wrong_as_match": round(self.wrong_match / n, 4)}


def score(recognize: Callable[[bytes], Recognition], queries: Sequence[SimQuery], cat: Catalog
          ) -> dict[str, KindScore]:
    """Per kind: accuracy of the top answer and how often a right answer is a "match"."""
    out: dict[str, KindScore] = {}
    judge = Judge(cat)
    for q in queries:
        rec = recognize(q.data)
        k = out.setdefault(q.kind, KindScore())
        ok = right_rank(rec, q, judge) == 1
        k.n += 1
        k.right += ok
        k.right_match += ok and rec.status == "match"
        k.wrong_match += (not ok) and rec.status == "match"
    return out


@dataclass
class VoteLog:
    """What the simulated people did."""

    answers: int = 0
    votes: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)
    abusive_votes: int = 0


async def send_and_vote(service: RecognitionService, queries: Sequence[SimQuery],
                        voters: Sequence[Voter], seed: int, platform: str = "telegram",
                        operator_share: float = 0.5) -> VoteLog:
    """Every query sent through the service (stored with its vectors) by a rotating sender,
    then voted on by the simulated people; the operator labels `operator_share` of the
    answers that got a ❌ with the truth, as from the wrong-answers queue."""
    from core.feedback_ops import CLI_OPERATOR, record_truth
    from core.types import Source, Verdict

    rng = random.Random(f"anirec-votes:{seed}")
    log = VoteLog()
    assert service.recognizer is not None, "start the service first"
    judge = Judge(service.recognizer.catalog)
    episode_ids = {em.path: em.id for em in service.recognizer.catalog.episodes.values()}
    for i, q in enumerate(queries):
        sender = Source(platform=platform, chat_id="sim-chat", user_id=f"sender{i % 5}")  # type: ignore[arg-type]
        rec = await service.recognize(q.data, source=sender, with_preview=False)
        if rec.query_id is None:
            continue
        log.answers += 1
        rank = right_rank(rec, q, judge)
        for v in voters:
            said = vote_for(rank, len(rec.candidates), v, rng)
            if said is None or not rec.candidates:
                continue
            verdict, pick = said
            who = Source(platform=platform, chat_id="sim-chat", user_id=v.user_id)  # type: ignore[arg-type]
            await service.record_feedback(rec.query_id, Verdict(verdict), source=who, rank=pick)
            log.votes += 1
            log.by_kind[verdict] = log.by_kind.get(verdict, 0) + 1
            log.abusive_votes += v.abusive
        if rank != 1 and rng.random() < operator_share:
            place = q.truth.places[0] if q.truth.places else None
            ep = episode_ids.get(place.path) if place is not None else None
            if place is not None and ep is not None:
                record_truth(service.store, rec.query_id, CLI_OPERATOR, episode_id=ep, t=place.t)
                log.votes += 1
                log.by_kind["truth"] = log.by_kind.get("truth", 0) + 1
    return log
