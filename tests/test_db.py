"""Catalog database: migrations from empty to head, models match the migrated schema, pragmas."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, select
from sqlalchemy.exc import IntegrityError

from core.db import alembic_config, create_db_engine, current_revision, open_database
from core.db.models import Base, Episode, Feedback, Query, Series


def test_empty_database_migrates_to_head(db_url: str) -> None:
    engine = create_db_engine(db_url)
    assert current_revision(engine) is None
    engine, _ = open_database(db_url)
    head = ScriptDirectory.from_config(alembic_config(engine)).get_current_head()
    assert current_revision(engine) == head
    tables = set(inspect(engine).get_table_names())
    assert {"series", "episodes", "shots", "frames", "characters", "character_references",
            "appearances", "queries", "feedback", "model_versions"} <= tables


def test_models_match_migrated_schema(db_url: str) -> None:
    engine, _ = open_database(db_url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}),
                                Base.metadata)
    assert diff == [], f"models and migrations differ: {diff}"


def test_upgrade_is_idempotent_and_keeps_data(db_url: str) -> None:
    url = db_url
    _, sessions = open_database(url)
    with sessions() as s:
        s.add(Series(title="Kept"))
        s.commit()
    _, sessions = open_database(url)
    with sessions() as s:
        assert s.scalar(select(Series.title)) == "Kept"


def test_sqlite_wal_and_foreign_keys(tmp_path: Path) -> None:
    engine, sessions = open_database(f"sqlite:///{tmp_path / 'c.db'}")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    with sessions() as s:
        s.add(Feedback(query_id="nope", user_hash="u", platform="cli", verdict="wrong"))
        with pytest.raises(IntegrityError):
            s.commit()


def test_cascade_delete_series_removes_episodes(db_url: str) -> None:
    _, sessions = open_database(db_url)
    with sessions() as s:
        se = Series(title="A")
        s.add(se)
        s.flush()
        s.add(Episode(series_id=se.id, path="/x/a.mp4", library_root="/x"))
        s.add(Query(id="q1", platform="cli", chat_hash="c", user_hash="u", image_sha256="0" * 64,
                    status="match", confidence=0.9))
        s.commit()
        s.delete(se)
        s.commit()
        assert s.scalar(select(Episode)) is None
