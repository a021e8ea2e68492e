"""Alembic environment: runs migrations on the engine AniRec passes in (or the URL)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, text

from core.db.models import Base

config = context.config
target_metadata = Base.metadata
MIGRATION_LOCK = 0x616E6972  # "anir": the advisory lock key the migrations hold on PostgreSQL


def run_migrations_offline() -> None:
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=target_metadata,
                      literal_binds=True, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = config.attributes.get("engine")
    if not engine:
        url = config.get_main_option("sqlalchemy.url")
        if url is None:
            raise RuntimeError("alembic: no engine given and sqlalchemy.url is not set")
        engine = create_engine(url)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata,
                          render_as_batch=True, compare_type=True)
        with context.begin_transaction():
            if connection.dialect.name == "postgresql":
                # several bot processes starting on one new database: one migrates, the
                # others wait here and then find it at head (PostgreSQL's DDL is transactional)
                connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIGRATION_LOCK})
            context.run_migrations()
        connection.commit()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
