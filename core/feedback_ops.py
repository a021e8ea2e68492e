"""The operator's side of the feedback store: labels from the command line, the wrong-answers
queue's "resolved", forgetting a person, the JSONL export, vote statistics, the image
retention purge's companion, and the labelled queries retraining reads.

Everything here goes through a `FeedbackStore` (the only writer of `queries`/`feedback`).
"""

from __future__ import annotations

import base64
import collections
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import delete, select, update

from core.db.models import Feedback, Query, utcnow
from core.errors import AniRecError, NotFound
from core.feedback import TRUTH, FeedbackStore
from core.types import Source, Verdict

#: Who the operator is when labelling from the CLI (hashed like everyone else).
CLI_OPERATOR = Source(platform="cli", chat_id="operator", user_id="operator")


class ExportError(AniRecError):
    """The export file cannot be written (nothing was written)."""


@dataclass(frozen=True)
class Vote:
    """One active vote as retraining reads it."""

    user: str  # user hash
    platform: str
    verdict: str  # correct / wrong / pick / truth
    rank: int | None
    truth: dict[str, Any] | None  # {episode_id, t} for a truth


@dataclass(frozen=True)
class LabelledQuery:
    """A stored answer with its kept vectors and its active votes."""

    id: str
    vectors: np.ndarray  # float32 [n, dim]
    trace: dict[str, Any]
    top5: list[dict[str, Any]]
    status: str
    confidence: float
    votes: tuple[Vote, ...]
    created_at: str


def record_truth(store: FeedbackStore, query_id: str, source: Source, *, episode_id: int,
                 t: float) -> None:
    """An operator's corrected label (the footage is at `episode_id`, `t`), replacing their
    earlier vote on the answer."""
    if t < 0:
        raise ValueError("seconds must be >= 0")
    user = store.hash_id(source.platform, source.user_id)
    with store.sessions() as s:
        if s.get(Query, query_id) is None:
            raise NotFound(f"No stored answer has the id {query_id!r}.")
        now = utcnow()
        s.execute(update(Feedback).where(Feedback.query_id == query_id, Feedback.user_hash == user,
                                         Feedback.active.is_(True)).values(active=False, withdrawn_at=now))
        s.add(Feedback(query_id=query_id, user_hash=user, platform=source.platform, verdict=TRUTH,
                       rank=None, truth={"episode_id": int(episode_id), "t": float(t)},
                       active=True, created_at=now))
        s.commit()


def resolve(store: FeedbackStore, query_id: str, resolved: bool = True) -> None:
    """Mark a wrong answer resolved (it leaves the queue; its votes stay for retraining)."""
    with store.sessions() as s:
        q = s.get(Query, query_id)
        if q is None:
            raise NotFound(f"No stored answer has the id {query_id!r}.")
        q.resolved_at = utcnow() if resolved else None
        s.commit()


def forget(store: FeedbackStore, platform: str, raw_user_id: str) -> tuple[int, int]:
    """Delete one person's votes and the answers they asked for (with the votes on those
    and any stored picture). Returns (queries deleted, own votes deleted)."""
    user = store.hash_id(platform, raw_user_id)
    with store.sessions() as s:
        qs = s.scalars(select(Query).where(Query.user_hash == user, Query.platform == platform)).all()
        for q in qs:
            if q.image_path:
                others = s.scalar(select(Query.id).where(Query.image_path == q.image_path,
                                                         Query.user_hash != user).limit(1))
                if others is None:
                    Path(q.image_path).unlink(missing_ok=True)
        res = s.execute(delete(Feedback).where(Feedback.user_hash == user,
                                               Feedback.platform == platform))
        votes: int = getattr(res, "rowcount", 0) or 0
        ids = [q.id for q in qs]
        if ids:
            s.execute(delete(Feedback).where(Feedback.query_id.in_(ids)))
            s.execute(delete(Query).where(Query.id.in_(ids)))
        s.commit()
    return len(ids), votes


def _votes(s: Any, ids: list[str]) -> dict[str, list[Vote]]:
    out: dict[str, list[Vote]] = collections.defaultdict(list)
    for f in s.scalars(select(Feedback).where(Feedback.query_id.in_(ids), Feedback.active.is_(True))
                       .order_by(Feedback.id)):
        out[f.query_id].append(Vote(f.user_hash, f.platform, f.verdict, f.rank, f.truth))
    return out


def labelled(store: FeedbackStore) -> list[LabelledQuery]:
    """Every stored answer with kept vectors and at least one active vote, oldest first."""
    with store.sessions() as s:
        voted = select(Feedback.query_id).where(Feedback.active.is_(True)).distinct()
        qs = s.scalars(select(Query).where(Query.id.in_(voted), Query.vectors.is_not(None))
                       .order_by(Query.created_at, Query.id)).all()
        votes = _votes(s, [q.id for q in qs])
        out = []
        for q in qs:
            trace = dict(q.trace or {})
            d = trace.get("dim")
            dim = d if isinstance(d, int) else 0
            raw = q.vectors or b""
            if not dim or len(raw) % (2 * dim):
                continue
            vec = np.frombuffer(raw, np.float16).reshape(-1, dim).astype(np.float32)
            out.append(LabelledQuery(q.id, vec, trace, list(q.top5 or []), q.status, q.confidence,
                                     tuple(votes.get(q.id, ())), q.created_at.isoformat()))
        return out


def export_jsonl(store: FeedbackStore, path: Path, *, with_vectors: bool = True) -> int:
    """Write every stored answer and its votes as JSON lines (hashed ids only; vectors as
    base64 float16). Written to a temporary file and renamed; nothing is left on failure."""
    path = Path(path)
    if path.exists() and path.is_dir():
        raise ExportError(f"{path} is a folder; give a file name.")
    tmp = path.with_name(f".{path.name}.tmp")
    n = 0
    try:
        with open(tmp, "w", encoding="utf-8") as fh, store.sessions() as s:
            qs = s.scalars(select(Query).order_by(Query.created_at, Query.id)).all()
            votes = _votes(s, [q.id for q in qs])
            for q in qs:
                row: dict[str, Any] = {
                    "id": q.id, "platform": q.platform, "user": q.user_hash, "chat": q.chat_hash,
                    "created_at": q.created_at.isoformat(), "status": q.status,
                    "confidence": q.confidence, "model_version": q.model_version,
                    "index_version": q.index_version, "top5": q.top5, "trace": q.trace,
                    "image_kept": q.image_path is not None, "resolved": q.resolved_at is not None,
                    "votes": [{"user": v.user, "platform": v.platform, "verdict": v.verdict,
                               "rank": v.rank, "truth": v.truth} for v in votes.get(q.id, [])]}
                if with_vectors and q.vectors:
                    row["vectors_f16"] = base64.b64encode(q.vectors).decode()
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
                n += 1
            fh.flush()
            os.fsync(fh.fileno())
        tmp.replace(path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise ExportError(f"cannot write the export to {path}: {exc.strerror or exc}") from exc
    return n


def _label(v: Vote) -> str:
    if v.verdict == Verdict.CORRECT.value:
        return "pick1"
    if v.verdict == Verdict.PICK.value:
        return f"pick{v.rank}"
    if v.verdict == TRUTH and v.truth:
        return f"truth:{v.truth.get('episode_id')}:{round(float(v.truth.get('t', 0)))}"
    return v.verdict


def vote_stats(store: FeedbackStore, top: int = 10) -> dict[str, Any]:
    """Votes by kind and platform, how often voters of one answer disagree, and the answers
    most voted wrong."""
    with store.sessions() as s:
        rows = s.execute(select(Feedback.query_id, Feedback.user_hash, Feedback.platform,
                                Feedback.verdict, Feedback.rank, Feedback.truth)
                         .where(Feedback.active.is_(True))).all()
        queries = s.scalar(select(Query.id).limit(1)) is not None
        kept = s.execute(select(Query.id, Query.vectors.is_not(None), Query.image_path.is_not(None))).all()
    by_kind: collections.Counter[str] = collections.Counter()
    by_platform: collections.Counter[str] = collections.Counter()
    per_query: dict[str, list[str]] = collections.defaultdict(list)
    wrong: collections.Counter[str] = collections.Counter()
    for qid, user, platform, verdict, rank, truth in rows:
        kind = f"pick{rank}" if verdict == Verdict.PICK.value else verdict
        by_kind[kind] += 1
        by_platform[platform] += 1
        per_query[qid].append(_label(Vote(user, platform, verdict, rank, truth)))
        if verdict in (Verdict.WRONG.value, TRUTH) or (verdict == Verdict.PICK.value and rank != 1):
            wrong[qid] += 1
    multi = [labels for labels in per_query.values() if len(labels) >= 2]
    split = sum(1 for labels in multi if len(set(labels)) > 1)
    return {
        "votes": sum(by_kind.values()), "by_kind": dict(sorted(by_kind.items())),
        "by_platform": dict(sorted(by_platform.items())), "voted_queries": len(per_query),
        "queries": len(kept) if queries else 0,
        "queries_with_vectors": sum(1 for _, v, _ in kept if v),
        "images_kept": sum(1 for _, _, i in kept if i),
        "multi_voted": len(multi), "disagreed": split,
        "disagreement": round(split / len(multi), 4) if multi else 0.0,
        "most_wrong": [{"query_id": q, "wrong_votes": n} for q, n in wrong.most_common(top)],
    }


def find_episode(store: FeedbackStore, series: str, episode: str) -> int:
    """The indexed episode `episode` (number or label) of `series` (title, any stored title,
    or id). NotFound with the choices when there is none."""
    from core.db.models import Episode, Series

    with store.sessions() as s:
        rows = s.scalars(select(Series)).all()
        key = series.strip().casefold()
        match = [r for r in rows if str(r.id) == key or r.title.casefold() == key
                 or key in {str(t).casefold() for t in (r.titles or {}).values()}]
        if not match:
            names = ", ".join(sorted(r.title for r in rows)[:10]) or "none indexed"
            raise NotFound(f"No series {series!r} (known: {names}).")
        eps = s.scalars(select(Episode).where(Episode.series_id == match[0].id,
                                              Episode.status == "indexed")).all()
        for e in eps:
            num = None if e.number is None else f"{e.number:g}"
            if episode in {num, e.label, (e.label or "").lstrip("0") or None}:
                return e.id
        known = ", ".join(sorted(e.label or f"{e.number:g}" for e in eps)) or "none indexed"
        raise NotFound(f"{match[0].title} has no indexed episode {episode!r} (known: {known}).")
