"""Feedback store: hashed ids, one vote per person (replaced, withdrawn), nothing deleted."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from core.db import open_database
from core.db.models import Feedback, Query
from core.errors import NotFound
from core.feedback import FeedbackStore, load_salt
from core.types import Candidate, Recognition, SeriesInfo, Source, Verdict

ALICE = Source("telegram", chat_id="-100", user_id="111")
BOB = Source("telegram", chat_id="-100", user_id="222")


def rec(n: int = 5) -> Recognition:
    s = SeriesInfo(id=1, title="Show")
    cands = tuple(Candidate(series=s, episode_id=i, season=1, episode=i, episode_label=f"{i:02d}",
                            time=10.0 * i, time_from=10.0 * i, time_to=10.0 * i + 1, score=0.9 - i / 10)
                  for i in range(1, n + 1))
    return Recognition(status="match", confidence=0.9, candidates=cands, model_version="m", index_version="i")


@pytest.fixture()
def store(tmp_path: Path, db_url: str) -> FeedbackStore:
    _, sessions = open_database(db_url)
    return FeedbackStore(sessions, load_salt(tmp_path))


def test_query_row_hashes_ids(store: FeedbackStore) -> None:
    qid = store.record_query(rec(), ALICE, image_sha256="a" * 64, latency_ms=12.0)
    assert len(qid) <= 16
    with store.sessions() as s:
        q = s.get(Query, qid)
        assert q is not None and q.user_hash != "111" and "111" not in q.user_hash
        assert len(q.top5) == 5 and q.top5[0]["episode_id"] == 1


def test_one_vote_per_person_and_history_kept(store: FeedbackStore) -> None:
    qid = store.record_query(rec(), ALICE, image_sha256="a" * 64, latency_ms=1)
    assert store.record(qid, ALICE, Verdict.WRONG).wrong == 1
    t = store.record(qid, ALICE, Verdict.PICK, rank=2)  # changed her mind
    assert t.wrong == 0 and t.picks == (0, 1, 0, 0, 0)
    t = store.record(qid, BOB, Verdict.CORRECT)
    assert t.correct == 1 and t.picks[1] == 1
    with store.sessions() as s:
        assert s.scalar(select(func.count(Feedback.id))) == 3  # nothing deleted


def test_withdraw_only_the_matching_vote(store: FeedbackStore) -> None:
    qid = store.record_query(rec(), ALICE, image_sha256="a" * 64, latency_ms=1)
    store.record(qid, ALICE, Verdict.PICK, rank=3)
    assert store.withdraw(qid, ALICE, Verdict.WRONG).picks[2] == 1  # not her current vote
    assert store.withdraw(qid, ALICE, Verdict.PICK, rank=3).picks[2] == 0


def test_bad_feedback(store: FeedbackStore) -> None:
    qid = store.record_query(rec(2), ALICE, image_sha256="a" * 64, latency_ms=1)
    with pytest.raises(NotFound):
        store.record("missing", ALICE, Verdict.CORRECT)
    with pytest.raises(ValueError):
        store.record(qid, ALICE, Verdict.PICK, rank=4)  # only 2 candidates
    with pytest.raises(ValueError):
        store.record(qid, ALICE, "maybe")  # type: ignore[arg-type]


def test_operator_views(store: FeedbackStore) -> None:
    q1 = store.record_query(rec(), ALICE, image_sha256="a" * 64, latency_ms=10)
    q2 = store.record_query(rec(), BOB, image_sha256="b" * 64, latency_ms=30)
    store.record(q1, BOB, Verdict.WRONG)
    store.record(q2, ALICE, Verdict.CORRECT)
    assert [w["id"] for w in store.wrong_answers()] == [q1]
    assert store.stats()["queries"] == 2 and store.stats()["marked_wrong"] == 1
    assert {r["id"] for r in store.recent()} == {q1, q2}


def test_salt_is_stable_and_private(tmp_path: Path) -> None:
    a = load_salt(tmp_path)
    assert load_salt(tmp_path) == a and len(a) == 32
    assert (tmp_path / "salt.key").stat().st_mode & 0o077 == 0


def test_query_ids_never_look_like_an_option() -> None:
    """`anirec feedback add QUERY_ID`: an id starting with "-" would be read as an option."""
    from core.feedback import new_query_id

    ids = [new_query_id() for _ in range(5000)]  # ~1 in 64 raw tokens starts with "-"
    assert not any(i.startswith("-") for i in ids)
    assert all(len(i) == 12 for i in ids) and len(set(ids)) == len(ids)
