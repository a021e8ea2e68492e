"""Votes and answers under database contention: the catalog locked by another writer for
longer than SQLite's busy timeout; every write is retried and lands once (counted)."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import sessionmaker

from core.db import open_database
from core.db.models import Feedback, Query
from core.db.retry import STATS, is_transient, run_with_retry
from core.feedback import FeedbackStore
from core.types import Recognition, Source, Verdict


def _store(tmp_path: Path) -> tuple[FeedbackStore, Path, sessionmaker]:
    db = tmp_path / "catalog.db"
    engine, sessions = open_database(f"sqlite:///{db}")

    @event.listens_for(engine, "connect")
    def short_busy(conn, _rec):  # noqa: ANN001 - a short busy timeout makes the lock bite at once
        conn.execute("PRAGMA busy_timeout=50")

    engine.dispose()
    return FeedbackStore(sessions, b"salt" * 8), db, sessions


def _hold_lock(db: Path, seconds: float, started: threading.Event) -> None:
    conn = sqlite3.connect(db, timeout=1, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")  # the write lock, held like a long transaction would
    started.set()
    time.sleep(seconds)
    conn.execute("COMMIT")
    conn.close()


def _rec() -> Recognition:
    return Recognition(status="match", confidence=0.9, candidates=(), characters=(),
                       model_version="m", index_version="i")


def test_votes_and_answers_land_after_a_long_lock(tmp_path: Path) -> None:
    store, db, sessions = _store(tmp_path)
    qid = store.record_query(_rec(), Source("web", "c", "owner"), image_sha256="0" * 64, latency_ms=1)
    started = threading.Event()
    locker = threading.Thread(target=_hold_lock, args=(db, 1.5, started))
    locker.start()
    started.wait()
    before = STATS.retries
    errors: list[BaseException] = []
    answers: list[str] = []

    def vote(i: int) -> None:
        try:
            store.record(qid, Source("web", "c", f"user{i}"), Verdict.WRONG if i % 2 else Verdict.CORRECT)
        except BaseException as exc:  # noqa: BLE001 - counted below
            errors.append(exc)

    def answer(i: int) -> None:
        try:
            answers.append(store.record_query(_rec(), Source("web", "c", f"a{i}"), image_sha256="1" * 64,
                                              latency_ms=1))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=vote, args=(i,)) for i in range(30)]
    threads += [threading.Thread(target=answer, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    locker.join()
    assert errors == []
    assert STATS.retries > before  # the lock did bite: writes were retried, not waited out
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(Feedback).where(Feedback.active.is_(True))) == 30
        assert s.scalar(select(func.count()).select_from(Query)) == 3
    t = store.tally(qid)
    assert (t.correct, t.wrong) == (15, 15)


def test_only_transient_errors_are_retried() -> None:
    calls = []

    def constraint() -> None:
        calls.append(1)
        raise IntegrityError("insert", {}, Exception("UNIQUE constraint failed"))

    with pytest.raises(IntegrityError):
        run_with_retry(constraint, sleep=lambda s: None)
    assert len(calls) == 1
    locked = OperationalError("x", {}, sqlite3.OperationalError("database is locked"))
    assert is_transient(locked)
    assert not is_transient(OperationalError("x", {}, sqlite3.OperationalError("no such table: q")))


def test_gives_up_after_the_deadline_and_says_so() -> None:
    locked = OperationalError("x", {}, sqlite3.OperationalError("database is locked"))
    n = []

    def always() -> None:
        n.append(1)
        raise locked

    with pytest.raises(OperationalError):
        run_with_retry(always, deadline_s=0.2, sleep=lambda s: time.sleep(0.01))
    assert len(n) >= 2
