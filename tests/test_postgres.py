"""PostgreSQL as the catalog: 64-bit columns and foreign keys on both engines, a real library
indexed into PostgreSQL gives the same catalog as SQLite, the retry knows PostgreSQL's
transient errors, and two bot processes voting at once lose nothing (on both engines).

The PostgreSQL server is a real one the tests start (conftest.py `pg_server`, from
core/db/pg_local.py); without PostgreSQL's binaries these tests skip and say so."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, OperationalError

from core.db import open_database
from core.db.models import Episode, Feedback, Series
from core.db.retry import is_transient

ROOT = Path(__file__).resolve().parents[1]


def test_64_bit_columns_and_foreign_keys(db_url: str) -> None:
    _, sessions = open_database(db_url)
    mtime_ns, size = 1_764_000_000_123_456_789, 5 * 2**30  # a 2026 mtime, a 5 GiB file
    with sessions() as s:
        se = Series(title="Big", titles={"ja": "ビッグ"}, genres=["Drama"])
        s.add(se)
        s.flush()
        s.add(Episode(series_id=se.id, path="/lib/big.mkv", library_root="/lib", size=size,
                      mtime_ns=mtime_ns))
        s.commit()
    with sessions() as s:
        ep = s.scalars(select(Episode)).one()
        assert (ep.mtime_ns, ep.size) == (mtime_ns, size)
        assert s.scalars(select(Series)).one().titles == {"ja": "ビッグ"}
        s.add(Feedback(query_id="nope", user_hash="u", platform="cli", verdict="wrong"))
        with pytest.raises(IntegrityError):
            s.commit()


def test_postgres_serialization_and_deadlock_are_retried(pg_url: str) -> None:
    """Real errors from the server: a deadlock the server broke is transient, a constraint
    is not."""
    import threading

    from sqlalchemy import text

    engine, sessions = open_database(pg_url)
    with sessions() as s:
        s.add_all([Series(title="A"), Series(title="B")])
        s.commit()
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def cross(first: str, second: str) -> None:
        try:
            with engine.begin() as conn:
                conn.execute(text("SET LOCAL deadlock_timeout = '100ms'"))
                conn.execute(text("UPDATE series SET folder = 'x' WHERE title = :t"), {"t": first})
                barrier.wait(timeout=10)
                conn.execute(text("UPDATE series SET folder = 'y' WHERE title = :t"), {"t": second})
        except OperationalError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=cross, args=ab) for ab in (("A", "B"), ("B", "A"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(errors) == 1 and "deadlock" in str(errors[0]).lower()
    assert is_transient(errors[0])
    with pytest.raises(IntegrityError) as dup, sessions() as s:
        s.add(Series(title="A"))
        s.commit()
    assert not is_transient(dup.value)


@pytest.mark.slow  # indexes the sample library a second time (~40 s on a busy machine)
def test_library_indexed_into_postgres_matches_sqlite(pg_url: str, indexed_home: Any,
                                                      tmp_path: Path) -> None:
    """`anirec index` on a PostgreSQL catalog: the same frames, episodes and series as the
    session's SQLite catalog of the same library."""
    from bot.app import App
    from core.catalog import Catalog
    from core.config import Settings

    settings = Settings(_env_file=None, home=tmp_path / "home", database_url=pg_url)  # type: ignore[call-arg]
    app = App.from_settings(settings)
    app.indexer().run(indexed_home.library)
    pg = Catalog.load(app.sessions)
    lite = Catalog.load(indexed_home.app.sessions)
    assert len(pg) == len(lite) > 0
    assert sorted(s.title for s in pg.series.values()) == sorted(s.title for s in lite.series.values())
    rel = {Path(e.path).relative_to(indexed_home.library).as_posix() for e in lite.episodes.values()}
    assert {Path(e.path).relative_to(indexed_home.library).as_posix()
            for e in pg.episodes.values()} == rel
    assert sorted(pg.t.round(3).tolist()) == sorted(lite.t.round(3).tolist())


def test_two_processes_writing_votes_lose_nothing(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two OS processes (`python -m bench.bench_votes worker`, FeedbackStore.record as the
    bots call it) vote at once on the same answers, one person in both: every vote is
    stored and nobody has two active votes on one answer."""
    monkeypatch.syspath_prepend(str(ROOT))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    from bench.bench_votes import measure

    out = measure(db_url, processes=2, votes=40, queries=5)
    assert out["check"] == {"rows": 80, "expected": 80, "lost": 0, "double_active": 0}
    assert len(out["writers"]) == 2 and sys.executable


def test_processes_starting_on_one_new_database_migrate_once(db_url: str) -> None:
    """Three bot processes starting at once on an empty catalog: all open it, none fails (on
    PostgreSQL the migrations hold an advisory lock; SQLite has one writer)."""
    import subprocess

    from core.db import create_db_engine, current_revision

    code = "import sys; from core.db import open_database; open_database(sys.argv[1]); print('ok')"
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    procs = [subprocess.Popen([sys.executable, "-c", code, db_url], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(3)]
    outs = [p.communicate(timeout=240) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [err[-2000:] for _, err in outs]
    engine = create_db_engine(db_url)
    assert current_revision(engine) is not None
    engine.dispose()


def test_processes_starting_on_one_home_share_one_salt(tmp_path: Path) -> None:
    import threading

    from core.feedback import load_salt

    salts: list[bytes] = []
    threads = [threading.Thread(target=lambda: salts.append(load_salt(tmp_path))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(salts) == 8 and len(set(salts)) == 1 and len(salts[0]) == 32
    assert [p.name for p in tmp_path.iterdir()] == ["salt.key"]
