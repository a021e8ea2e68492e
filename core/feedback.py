"""Queries and feedback: the only code that writes the `queries` and `feedback` tables.

User and chat ids are stored as salted SHA-256 hashes (the salt lives in the home folder),
so the database says which answers one person judged without saying who they are. Votes are
one per person per answer: a new vote deactivates the earlier one, a withdrawn reaction
deactivates it too; rows are never deleted, so no feedback is ever lost.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import os
import secrets
from pathlib import Path
from typing import TypedDict

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from core.db.models import Feedback, Query, utcnow
from core.db.retry import retry_writes
from core.errors import NotFound
from core.types import FeedbackTally, Recognition, Source, Verdict

#: The verdict of an operator's corrected label (`anirec feedback add --truth`): the footage
#: is at {episode_id, t}, which need not be among the candidates.
TRUTH = "truth"


def load_salt(home: Path) -> bytes:
    """The installation's hashing salt, created on first use (0600)."""
    path = Path(home) / "salt.key"
    if path.exists():
        return path.read_bytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    # written whole under a private name, then linked into place: several bot processes
    # starting on one home at once all end up with the one salt that got there first
    tmp = path.with_name(f".salt.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(secrets.token_bytes(32))
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
    return path.read_bytes()


class QueryView(TypedDict):
    """One stored answer as the operator pages and the feedback flow read it."""

    id: str
    platform: str
    status: str
    confidence: float
    top5: list[dict[str, object]]  # the candidates' `to_json()` plus their episode_id
    model_version: str
    index_version: str
    latency_ms: float
    created_at: str  # ISO 8601
    image_path: str | None
    resolved: bool  # the operator marked it resolved in the wrong-answers queue
    frames: list[int]  # the stored frame behind each candidate (empty for older answers)


class QueryWithTally(QueryView):
    """A stored answer with its feedback tally (`FeedbackTally.as_dict()`)."""

    tally: dict[str, object]


class FeedbackView(TypedDict):
    """One active vote on an answer."""

    verdict: str
    rank: int | None
    user: str  # the first 12 characters of the user's hash
    platform: str


class FeedbackStats(TypedDict):
    """Counts over the stored answers and votes."""

    queries: int
    queries_24h: int
    feedback: int
    marked_wrong: int
    mean_latency_ms: float


def _frames(trace: dict[str, object] | None) -> list[int]:
    frames = (trace or {}).get("frames")
    return [int(f) for f in frames if isinstance(f, int)] if isinstance(frames, list) else []


def new_query_id() -> str:
    """A query's id: 12 URL-safe characters (fits Telegram callback data and Discord custom
    ids), never starting with "-", so `anirec feedback add QUERY_ID` reads it as the id and
    not as an option."""
    while True:
        qid = secrets.token_urlsafe(9)
        if not qid.startswith("-"):
            return qid


class FeedbackStore:
    """Synchronous store; the async service calls it on a worker thread."""

    def __init__(self, sessions: sessionmaker[Session], salt: bytes) -> None:
        self.sessions = sessions
        self._salt = salt

    def hash_id(self, platform: str, raw: str) -> str:
        return hmac.new(self._salt, f"{platform}:{raw}".encode(), hashlib.sha256).hexdigest()

    # -- queries ------------------------------------------------------------------------------
    @retry_writes
    def record_query(self, rec: Recognition, source: Source, *, image_sha256: str,
                     latency_ms: float, image_path: str | None = None) -> str:
        qid = new_query_id()
        with self.sessions() as s:
            s.add(Query(id=qid, platform=source.platform,
                        chat_hash=self.hash_id(source.platform, source.chat_id),
                        user_hash=self.hash_id(source.platform, source.user_id),
                        image_sha256=image_sha256, image_path=image_path,
                        model_version=rec.model_version, index_version=rec.index_version,
                        status=rec.status, confidence=rec.confidence,
                        top5=[c.to_json() | {"episode_id": c.episode_id}
                              for c in rec.candidates[:5]],
                        latency_ms=latency_ms,
                        vectors=rec.trace.vectors if rec.trace is not None else None,
                        trace=(rec.trace.meta() | {"evidence": [round(float(x), 5) for x in rec.evidence]}
                               if rec.trace is not None else None)))
            s.commit()
        return qid

    def get_query(self, query_id: str) -> QueryView:
        with self.sessions() as s:
            q = s.get(Query, query_id)
            if q is None:
                raise NotFound("That answer is no longer known.")
            return self._query_dict(q)

    @staticmethod
    def _query_dict(q: Query) -> QueryView:
        return {"id": q.id, "platform": q.platform, "status": q.status, "confidence": q.confidence,
                "top5": q.top5, "model_version": q.model_version, "index_version": q.index_version,
                "latency_ms": q.latency_ms, "created_at": q.created_at.isoformat(),
                "image_path": q.image_path,
                "resolved": q.resolved_at is not None,
                "frames": _frames(q.trace)}

    # -- feedback -----------------------------------------------------------------------------
    @retry_writes
    def record(self, query_id: str, source: Source, verdict: Verdict, rank: int | None = None
               ) -> FeedbackTally:
        """Record one person's verdict (replacing their earlier one) and return the tally."""
        verdict = Verdict(verdict)
        with self.sessions() as s:
            # the answer's row locked (PostgreSQL; SQLite has one writer anyway): two bot
            # processes recording the same person's votes at once keep one active vote
            q = s.get(Query, query_id, with_for_update=True)
            if q is None:
                raise NotFound("That answer is no longer known.")
            if verdict is Verdict.PICK:
                if rank is None or not 1 <= rank <= max(1, len(q.top5 or [])):
                    raise ValueError(f"rank must be 1..{len(q.top5 or [])} for a pick")
            else:
                rank = None
            user = self.hash_id(source.platform, source.user_id)
            now = utcnow()
            s.execute(update(Feedback).where(Feedback.query_id == query_id, Feedback.user_hash == user,
                                             Feedback.active.is_(True))
                      .values(active=False, withdrawn_at=now))
            s.add(Feedback(query_id=query_id, user_hash=user, platform=source.platform,
                           verdict=verdict.value, rank=rank, active=True, created_at=now))
            s.commit()
        return self.tally(query_id)

    @retry_writes
    def withdraw(self, query_id: str, source: Source, verdict: Verdict | None = None,
                 rank: int | None = None) -> FeedbackTally:
        """Withdraw a person's active vote (only if it is `verdict`/`rank`, when given)."""
        user = self.hash_id(source.platform, source.user_id)
        with self.sessions() as s:
            cond = [Feedback.query_id == query_id, Feedback.user_hash == user, Feedback.active.is_(True)]
            if verdict is not None:
                cond.append(Feedback.verdict == Verdict(verdict).value)
                if Verdict(verdict) is Verdict.PICK and rank is not None:
                    cond.append(Feedback.rank == rank)
            s.execute(update(Feedback).where(*cond).values(active=False, withdrawn_at=utcnow()))
            s.commit()
        return self.tally(query_id)

    def tally(self, query_id: str) -> FeedbackTally:
        with self.sessions() as s:
            rows = s.execute(select(Feedback.verdict, Feedback.rank, func.count())
                             .where(Feedback.query_id == query_id, Feedback.active.is_(True))
                             .group_by(Feedback.verdict, Feedback.rank)).all()
        correct = wrong = 0
        picks = [0, 0, 0, 0, 0]
        for verdict, rank, n in rows:
            if verdict == Verdict.CORRECT.value:
                correct += n
            elif verdict == Verdict.WRONG.value:
                wrong += n
            elif verdict == Verdict.PICK.value and rank and 1 <= rank <= 5:
                picks[rank - 1] += n
        return FeedbackTally(correct=correct, wrong=wrong, picks=tuple(picks))  # type: ignore[arg-type]

    def active_feedback(self, query_id: str) -> list[FeedbackView]:
        with self.sessions() as s:
            rows = s.scalars(select(Feedback).where(Feedback.query_id == query_id,
                                                    Feedback.active.is_(True))).all()
            return [{"verdict": f.verdict, "rank": f.rank, "user": f.user_hash[:12],
                     "platform": f.platform} for f in rows]

    # -- operator views -------------------------------------------------------------------------
    def recent(self, limit: int = 50) -> list[QueryWithTally]:
        with self.sessions() as s:
            qs = s.scalars(select(Query).order_by(Query.created_at.desc()).limit(limit)).all()
            return [QueryWithTally(**self._query_dict(q), tally=self.tally(q.id).as_dict())
                    for q in qs]

    def wrong_answers(self, limit: int = 50, *, include_resolved: bool = False) -> list[QueryWithTally]:
        """Answers someone marked wrong (❌) or corrected (a pick other than 1, a truth),
        not yet marked resolved by the operator (unless `include_resolved`)."""
        with self.sessions() as s:
            stmt = (select(Feedback.query_id).join(Query, Query.id == Feedback.query_id).where(
                Feedback.active.is_(True),
                (Feedback.verdict == Verdict.WRONG.value) | (Feedback.verdict == TRUTH)
                | ((Feedback.verdict == Verdict.PICK.value) & (Feedback.rank != 1))))
            if not include_resolved:
                stmt = stmt.where(Query.resolved_at.is_(None))
            ids = s.scalars(stmt.distinct().limit(limit)).all()
        return [QueryWithTally(**self.get_query(q), tally=self.tally(q).as_dict()) for q in ids]

    def stats(self) -> FeedbackStats:
        with self.sessions() as s:
            since = utcnow() - dt.timedelta(days=1)
            return {
                "queries": s.scalar(select(func.count(Query.id))) or 0,
                "queries_24h": s.scalar(select(func.count(Query.id)).where(Query.created_at >= since)) or 0,
                "feedback": s.scalar(select(func.count(Feedback.id)).where(Feedback.active.is_(True))) or 0,
                "marked_wrong": s.scalar(select(func.count(Feedback.id)).where(
                    Feedback.active.is_(True), Feedback.verdict == Verdict.WRONG.value)) or 0,
                "mean_latency_ms": float(s.scalar(select(func.avg(Query.latency_ms))) or 0.0),
            }

    def purge_images(self, older_than_days: int) -> int:
        """Delete stored query images past the retention period (the rows stay)."""
        cutoff = utcnow() - dt.timedelta(days=older_than_days)
        n = 0
        with self.sessions() as s:
            for q in s.scalars(select(Query).where(Query.created_at < cutoff, Query.image_path.is_not(None))):
                Path(q.image_path or "").unlink(missing_ok=True)
                q.image_path = None
                n += 1
            s.commit()
        return n
