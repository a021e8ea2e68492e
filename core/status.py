"""Library status for `anirec status` and the operator pages."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from core.db.models import Appearance, Character, CharacterReference, Episode, Frame, ModelVersion, Series
from core.errors import IndexUnavailable
from core.framestore import FrameStore
from core.index import read_manifest


def library_status(sessions: sessionmaker[Session], index_dir: Path, framestore_dir: Path
                   ) -> dict[str, Any]:
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
        cast = {"characters": s.scalar(select(func.count(Character.id))) or 0,
                "references": s.scalar(select(func.count(CharacterReference.id))) or 0,
                "faces_found": s.scalar(select(func.count(Appearance.id))) or 0,
                "faces_named": s.scalar(select(func.count(Appearance.id))
                                        .where(Appearance.character_id.is_not(None))) or 0}
        models = {mv.kind: mv.version for mv in s.scalars(
            select(ModelVersion).where(ModelVersion.promoted.is_(True)))}
    index: dict[str, Any] | None
    try:
        m = read_manifest(index_dir)
        size = sum(p.stat().st_size for p in Path(index_dir).rglob("*") if p.is_file())
        index = {"count": m.count, "version": m.version, "embedder": m.describe_embedder(),
                 "dim": m.dim, "bytes": size, "updated_at": m.updated_at,
                 "region_vectors": int((m.regions or {}).get("count", 0))}
    except (IndexUnavailable, FileNotFoundError, OSError):
        index = None
    models.setdefault("scene", (index or {}).get("embedder", "default (untrained)"))
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
