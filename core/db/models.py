"""Catalog and feedback tables (SQLAlchemy 2.0 typed mappings).

The schema is owned by the Alembic migrations in `core/db/migrations`; a test checks that
these models and the migrated schema agree.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# Stable constraint names so migrations work the same on every database.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


#: 64-bit integers where PostgreSQL's INTEGER (32-bit) is too small; SQLite's INTEGER is 64-bit.
BigInt = BigInteger().with_variant(Integer(), "sqlite")


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Series(Base):
    __tablename__ = "series"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    title: Mapped[str] = mapped_column(String(512), unique=True)
    folder: Mapped[str | None] = mapped_column(String(1024))  # relative to the library root
    titles: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)  # lang -> title
    anilist_id: Mapped[int | None] = mapped_column(Integer)
    mal_id: Mapped[int | None] = mapped_column(Integer)
    genres: Mapped[list[str]] = mapped_column(JSON, default=list)
    is_adult: Mapped[bool] = mapped_column(Boolean, default=False)
    cover: Mapped[str | None] = mapped_column(String(2048))  # an https image URL (series.json)
    synopsis: Mapped[str | None] = mapped_column(Text)  # a short synopsis (series.json)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)

    episodes: Mapped[list[Episode]] = relationship(
        back_populates="series", cascade="all, delete-orphan", passive_deletes=True
    )
    characters: Mapped[list[Character]] = relationship(
        back_populates="series", cascade="all, delete-orphan", passive_deletes=True
    )


class Episode(Base):
    __tablename__ = "episodes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    series_id: Mapped[int] = mapped_column(ForeignKey("series.id", ondelete="CASCADE"), index=True)
    path: Mapped[str] = mapped_column(String(2048), unique=True)  # absolute posix path of the file
    library_root: Mapped[str] = mapped_column(String(2048))  # absolute root it was indexed from
    season: Mapped[int | None] = mapped_column(Integer)
    number: Mapped[float | None] = mapped_column(Float)
    label: Mapped[str] = mapped_column(String(64), default="")
    kind: Mapped[str] = mapped_column(String(16), default="episode")  # episode/ova/special/movie
    duration: Mapped[float | None] = mapped_column(Float)
    fps: Mapped[float | None] = mapped_column(Float)
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    size: Mapped[int | None] = mapped_column(BigInt)
    mtime_ns: Mapped[int | None] = mapped_column(BigInt)
    content_key: Mapped[str | None] = mapped_column(String(64))  # change-detection fingerprint
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending/indexed/failed
    error: Mapped[str | None] = mapped_column(Text)
    embedder_version: Mapped[str | None] = mapped_column(String(128))
    indexed_at: Mapped[dt.datetime | None] = mapped_column(DateTime)

    series: Mapped[Series] = relationship(back_populates="episodes")
    shots: Mapped[list[Shot]] = relationship(
        back_populates="episode", cascade="all, delete-orphan", passive_deletes=True
    )


class Shot(Base):
    __tablename__ = "shots"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    episode_id: Mapped[int] = mapped_column(ForeignKey("episodes.id", ondelete="CASCADE"), index=True)
    idx: Mapped[int] = mapped_column(Integer)  # 0-based order within the episode
    start: Mapped[float] = mapped_column(Float)
    end: Mapped[float] = mapped_column(Float)

    episode: Mapped[Episode] = relationship(back_populates="shots")


class Frame(Base):
    """A sampled frame. Its id is the label of its vector in the index."""

    __tablename__ = "frames"
    __table_args__ = (Index("ix_frames_episode_t", "episode_id", "t"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    episode_id: Mapped[int] = mapped_column(ForeignKey("episodes.id", ondelete="CASCADE"))
    shot_id: Mapped[int | None] = mapped_column(ForeignKey("shots.id", ondelete="SET NULL"), index=True)
    t: Mapped[float] = mapped_column(Float)  # seconds from the start of the episode
    oped: Mapped[int] = mapped_column(Integer, default=0)  # 0 none, 1 opening, 2 ending, 3 recap
    descriptor: Mapped[bytes | None] = mapped_column(LargeBinary)  # compact verification descriptor


class Character(Base):
    __tablename__ = "characters"
    __table_args__ = (UniqueConstraint("series_id", "name", name="uq_characters_series_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    series_id: Mapped[int] = mapped_column(ForeignKey("series.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(256))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)

    series: Mapped[Series] = relationship(back_populates="characters")
    references: Mapped[list[CharacterReference]] = relationship(
        back_populates="character", cascade="all, delete-orphan", passive_deletes=True
    )


class CharacterReference(Base):
    """A reference face of a character (an operator's image or a named cluster member)."""

    __tablename__ = "character_references"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    character_id: Mapped[int] = mapped_column(ForeignKey("characters.id", ondelete="CASCADE"), index=True)
    source: Mapped[str] = mapped_column(String(32), default="image")  # image / cluster / feedback
    image_path: Mapped[str | None] = mapped_column(String(2048))
    embedding: Mapped[bytes | None] = mapped_column(LargeBinary)  # float32 vector
    embedder_version: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)

    character: Mapped[Character] = relationship(back_populates="references")


class Appearance(Base):
    """A face seen in the library: in which frame/shot, where, and (once known) who."""

    __tablename__ = "appearances"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    character_id: Mapped[int | None] = mapped_column(
        ForeignKey("characters.id", ondelete="SET NULL"), index=True
    )
    frame_id: Mapped[int | None] = mapped_column(ForeignKey("frames.id", ondelete="CASCADE"), index=True)
    shot_id: Mapped[int | None] = mapped_column(ForeignKey("shots.id", ondelete="CASCADE"), index=True)
    x0: Mapped[float] = mapped_column(Float)
    y0: Mapped[float] = mapped_column(Float)
    x1: Mapped[float] = mapped_column(Float)
    y1: Mapped[float] = mapped_column(Float)
    score: Mapped[float] = mapped_column(Float, default=0.0)
    cluster: Mapped[int | None] = mapped_column(Integer)
    embedding: Mapped[bytes | None] = mapped_column(LargeBinary)


class Query(Base):
    """One answer the bot gave. User and chat ids are stored hashed."""

    __tablename__ = "queries"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # short random id
    platform: Mapped[str] = mapped_column(String(16))
    chat_hash: Mapped[str] = mapped_column(String(64))
    user_hash: Mapped[str] = mapped_column(String(64))
    image_sha256: Mapped[str] = mapped_column(String(64))
    image_path: Mapped[str | None] = mapped_column(String(2048))  # only when the operator keeps images
    model_version: Mapped[str] = mapped_column(String(128), default="")
    index_version: Mapped[str] = mapped_column(String(128), default="")
    status: Mapped[str] = mapped_column(String(16))
    confidence: Mapped[float] = mapped_column(Float)
    top5: Mapped[list[dict[str, object]]] = mapped_column(JSON, default=list)  # candidates' JSON
    latency_ms: Mapped[float] = mapped_column(Float, default=0.0)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, index=True)
    # what retraining needs that is not a picture (migration 0003): float16 vectors of every
    # view, and {dim, views, winner, frames, scores, evidence}
    vectors: Mapped[bytes | None] = mapped_column(LargeBinary)
    trace: Mapped[dict[str, object] | None] = mapped_column(JSON)
    resolved_at: Mapped[dt.datetime | None] = mapped_column(DateTime)  # wrong-answers queue

    feedback: Mapped[list[Feedback]] = relationship(
        back_populates="query", cascade="all, delete-orphan", passive_deletes=True
    )


class Feedback(Base):
    """A person's verdict on an answer. Rows are never deleted: a changed mind or a
    withdrawn reaction marks the earlier row inactive, so the history survives."""

    __tablename__ = "feedback"
    __table_args__ = (Index("ix_feedback_query_user", "query_id", "user_hash"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    query_id: Mapped[str] = mapped_column(ForeignKey("queries.id", ondelete="CASCADE"))
    user_hash: Mapped[str] = mapped_column(String(64))
    platform: Mapped[str] = mapped_column(String(16))
    verdict: Mapped[str] = mapped_column(String(16))  # correct / wrong / pick
    rank: Mapped[int | None] = mapped_column(Integer)  # 1..5 for pick
    truth: Mapped[dict[str, object] | None] = mapped_column(JSON)  # verdict "truth": {episode_id, t}
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    withdrawn_at: Mapped[dt.datetime | None] = mapped_column(DateTime)

    query: Mapped[Query] = relationship(back_populates="feedback")


class ModelVersion(Base):
    __tablename__ = "model_versions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32), index=True)  # scene / series / faces / characters
    version: Mapped[str] = mapped_column(String(128), unique=True)
    path: Mapped[str] = mapped_column(String(2048))
    metrics: Mapped[dict[str, object]] = mapped_column(JSON, default=dict)  # the trainer's
    promoted: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class ChatSetting(Base):
    """A person's or a chat's display choices (UI language, title language, private answers).

    `scope` is "user:<hash>" or "chat:<hash>" with the same salted hash as queries use, so no
    raw platform id is stored."""

    __tablename__ = "chat_settings"

    scope: Mapped[str] = mapped_column(String(80), primary_key=True)
    lang: Mapped[str | None] = mapped_column(String(8))  # UI language: en / ja / zh
    title_lang: Mapped[str | None] = mapped_column(String(8))  # which series title to show
    ephemeral: Mapped[bool | None] = mapped_column(Boolean)  # Discord: private answers
    preview: Mapped[bool | None] = mapped_column(Boolean)  # False: skip the preview clip
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)
