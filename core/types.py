"""Plain value types shared by every layer: what a recognition returns, who asked, feedback."""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Status = Literal["match", "unsure", "no_match"]


class FrameFlag(enum.IntEnum):
    """What a stored frame is part of, found at indexing time (data.oped) and stored per frame."""

    NONE = 0  # the episode itself
    OPENING = 1  # the opening sequence, repeated in the series' episodes
    ENDING = 2  # the ending sequence
    RECAP = 3  # footage of an earlier episode, shown again


@dataclass(frozen=True)
class SeriesInfo:
    """A series as shown to users."""

    id: int
    title: str
    titles: dict[str, str] = field(default_factory=dict)  # language code -> title
    genres: tuple[str, ...] = ()
    is_adult: bool = False
    anilist_id: int | None = None  # from series.json: the AniList / MyAnimeList link buttons
    mal_id: int | None = None
    cover: str | None = None  # an image URL (https) from series.json, shown with the answer
    synopsis: str | None = None  # a short synopsis from series.json

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "title": self.title, "titles": dict(self.titles)}
        if self.anilist_id:
            out["anilist_id"] = self.anilist_id
        if self.mal_id:
            out["mal_id"] = self.mal_id
        return out


@dataclass(frozen=True)
class Candidate:
    """One answer: a place in the library (series, episode, time window) with a score."""

    series: SeriesInfo
    episode_id: int
    season: int | None
    episode: float | None  # 12.5 exists; None for movies
    episode_label: str  # "03", "12.5", "OVA 1", "Movie" - for display
    time: float  # best-matching second
    time_from: float
    time_to: float
    score: float  # 0..1, higher is better; comparable within one recognition
    is_opening_or_ending: bool = False
    preview: str | None = None  # path/URL of the preview clip once made
    still: str | None = None  # path of the preview still once made
    oped_kind: str | None = None  # "opening" or "ending" when is_opening_or_ending

    def to_json(self) -> dict[str, Any]:
        return {
            "series": self.series.to_json(),
            "season": self.season,
            "episode": self.episode,
            "time": round(self.time, 2),
            "time_from": round(self.time_from, 2),
            "time_to": round(self.time_to, 2),
            "score": round(self.score, 4),
            "is_opening_or_ending": self.is_opening_or_ending,
            "preview": self.preview,
        }


@dataclass(frozen=True)
class CharacterHit:
    """A face found in the query, and who it is ("unknown" when nobody in the cast fits)."""

    name: str
    series: str | None
    score: float
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 in query-image pixels

    def to_json(self) -> dict[str, Any]:
        """`name` and `series` are null for an unknown face."""
        known = self.name != "unknown"
        return {"name": self.name if known else None, "series": self.series if known else None,
                "score": round(self.score, 4), "box": list(self.box)}


@dataclass(frozen=True)
class Recognition:
    """Everything AniRec says about one query. "No match" is an empty/low result, not an error."""

    status: Status
    confidence: float
    candidates: tuple[Candidate, ...] = ()
    characters: tuple[CharacterHit, ...] = ()
    genres: tuple[tuple[str, float], ...] = ()  # predicted genres (shown when nothing matched)
    timings_ms: dict[str, float] = field(default_factory=dict)
    model_version: str = ""
    index_version: str = ""
    query_id: str | None = None  # set once stored; feedback refers to it
    frames_used: int = 1
    annotated: str | None = None  # path of the query image with faces boxed and named
    # what `confidence` was computed from: (score, margin, frame agreement, colour check,
    # detail check), see core.recognition.Calibration; empty when nothing was found
    evidence: tuple[float, ...] = ()
    trace: QueryTrace | None = None  # what the query keeps for retraining (not shown)

    @property
    def best(self) -> Candidate | None:
        return self.candidates[0] if self.candidates else None

    def to_json(self, file: str | None = None) -> dict[str, Any]:
        """The `anirec identify --json` contract."""
        out: dict[str, Any] = {}
        if file is not None:
            out["file"] = file
        out.update({
            "status": self.status,
            "confidence": round(self.confidence, 4),
            "candidates": [c.to_json() for c in self.candidates[:5]],
            "characters": [c.to_json() for c in self.characters],
            "annotated": self.annotated,
            "genres": [{"genre": g, "score": round(s, 4)} for g, s in self.genres],
            "timings_ms": {k: round(v, 2) for k, v in self.timings_ms.items()},
            "model_version": self.model_version,
            "index_version": self.index_version,
            "query_id": self.query_id,
        })
        return out


@dataclass(frozen=True)
class QueryTrace:
    """What a query keeps for learning, without the picture: the vector of every view the
    recogniser embedded (float16, view-major, each followed by its mirror), each view's
    frame, framing box and kind, which vector found the top answer, and the stored frame and
    score behind each candidate."""

    vectors: bytes  # float16 [n, dim] row-major
    dim: int
    views: tuple[tuple[int, tuple[int, int, int, int], str], ...]  # (clip frame, box, kind)
    winner: int  # row of `vectors` that fits the top answer's frame best; -1: none
    frames: tuple[int, ...]  # the stored frame id behind each candidate (rank order)
    scores: tuple[float, ...]  # each candidate's score

    def meta(self) -> dict[str, Any]:
        return {"dim": self.dim, "views": [[f, list(b), k] for f, b, k in self.views],
                "winner": self.winner, "frames": list(self.frames),
                "scores": [round(x, 5) for x in self.scores]}


@dataclass(frozen=True)
class Source:
    """Who asked, where. Ids are raw here; the feedback store hashes them before saving."""

    platform: Literal["discord", "telegram", "web", "cli"]
    chat_id: str
    user_id: str
    allow_adult: bool = False  # NSFW channel / chat that allows adult titles


class Verdict(str, enum.Enum):  # noqa: UP042 -- StrEnum would change str() of the members (behaviour)
    """A person's judgement of an answer."""

    CORRECT = "correct"  # ✅ the top answer is right
    WRONG = "wrong"  # ❌ the top answer is wrong
    PICK = "pick"  # 1️⃣-5️⃣ it was this candidate (rank is 1-based)


@dataclass(frozen=True)
class FeedbackTally:
    """Current votes on one answer, one per person (a new vote replaces the old)."""

    correct: int = 0
    wrong: int = 0
    picks: tuple[int, int, int, int, int] = (0, 0, 0, 0, 0)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
