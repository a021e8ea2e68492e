"""Library status for `anirec status` and the operator pages."""

from __future__ import annotations

from pathlib import Path
from typing import TypedDict

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from core.db.models import (
    Appearance,
    Character,
    CharacterReference,
    Episode,
    Frame,
    ModelVersion,
    Series,
)
from core.errors import IndexUnavailable
from core.framestore import FrameStore
from core.index import read_manifest


class IndexStatus(TypedDict):
    """The index as its manifest describes it."""

    count: int
    version: str
    embedder: str  # e.g. "anirec-scene v3"
    dim: int
    bytes: int  # the index folder's size on disk
    updated_at: str
    region_vectors: int


class CastStatus(TypedDict):
    """How far the cast (characters and their faces) has been built."""

    characters: int
    references: int
    faces_found: int
    faces_named: int


class LibraryStatus(TypedDict):
    """What `library_status` reports."""

    series: int
    episodes: int
    episodes_failed: int
    episodes_pending: int
    episode_errors: list[dict[str, str | None]]  # path, error
    frames: int
    video_hours: float
    index: IndexStatus | None  # None: no readable index
    framestore_bytes: int
    models: dict[str, str]  # kind -> promoted version
    cast: CastStatus
    series_list: list[dict[str, str | int]]  # title, episodes, frames


def library_status(sessions: sessionmaker[Session], index_dir: Path, framestore_dir: Path
                   ) -> LibraryStatus:
    """Counts of the catalog, the index and the frame store, for `anirec status`."""
    with sessions() as s:
        n_series = s.scalar(select(func.count(Series.id))) or 0
        by_status = dict(s.execute(select(Episode.status, func.count(Episode.id))
                                   .group_by(Episode.status)).all())
        n_frames = s.scalar(select(func.count(Frame.id))) or 0
        errors = [(p, e) for p, e in s.execute(select(Episode.path, Episode.error)
                                               .where(Episode.error.is_not(None)))]
        hours = (s.scalar(select(func.sum(Episode.duration)).where(Episode.status == "indexed"))
                 or 0.0) / 3600
        per_series = s.execute(
            select(Series.title, func.count(func.distinct(Episode.id)), func.count(Frame.id))
            .join(Episode, Episode.series_id == Series.id, isouter=True)
            .join(Frame, Frame.episode_id == Episode.id, isouter=True)
            .group_by(Series.id).order_by(Series.title)).all()
        cast: CastStatus = {"characters": s.scalar(select(func.count(Character.id))) or 0,
                "references": s.scalar(select(func.count(CharacterReference.id))) or 0,
                "faces_found": s.scalar(select(func.count(Appearance.id))) or 0,
                "faces_named": s.scalar(select(func.count(Appearance.id))
                                        .where(Appearance.character_id.is_not(None))) or 0}
        models = {mv.kind: mv.version for mv in s.scalars(
            select(ModelVersion).where(ModelVersion.promoted.is_(True)))}
    index: IndexStatus | None
    try:
        m = read_manifest(index_dir)
        size = sum(p.stat().st_size for p in Path(index_dir).rglob("*") if p.is_file())
        index = {"count": m.count, "version": m.version, "embedder": m.describe_embedder(),
                 "dim": m.dim, "bytes": size, "updated_at": m.updated_at,
                 "region_vectors": int(m.regions.get("count", 0)) if m.regions else 0}
    except (IndexUnavailable, FileNotFoundError, OSError):
        index = None
    models.setdefault("scene", index["embedder"] if index is not None else "default (untrained)")
    return {
        "series": n_series,
        "episodes": by_status.get("indexed", 0),
        "episodes_failed": by_status.get("failed", 0),
        "episodes_pending": by_status.get("pending", 0),
        "episode_errors": [{"path": p, "error": e} for p, e in errors],
        "frames": n_frames,
        "video_hours": hours,
        "index": index,
        "framestore_bytes": FrameStore(framestore_dir).size_bytes(),
        "models": models,
        "cast": cast,
        "series_list": [{"title": t, "episodes": e, "frames": f} for t, e, f in per_series],
    }
