"""Which model version is in use: `model_versions` rows (promoted) → checkpoint files."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from core.db.models import ModelVersion
from core.index.manifest import sha256_file
from core.models.embedder import SceneEmbedder, load_embedder

if TYPE_CHECKING:
    from core.models.adapter import QueryAdapter
    from core.models.characters import CharacterEmbedder
    from core.models.faces import FaceDetector
    from core.models.series import SeriesHead
    from core.recognition.calibration import Calibration

logger = logging.getLogger(__name__)

_M = TypeVar("_M")


def promoted(sessions: sessionmaker[Session], kind: str) -> ModelVersion | None:
    """The newest promoted model of `kind`, if any."""
    with sessions() as s:
        return s.scalar(select(ModelVersion).where(ModelVersion.kind == kind,
                                                   ModelVersion.promoted.is_(True))
                        .order_by(ModelVersion.created_at.desc(), ModelVersion.id.desc()))


def _resolve(models_dir: Path, path: str) -> Path:
    p = Path(path)
    return p if p.is_absolute() else models_dir / p


#: Errors a damaged or foreign model file raises while loading (BadCheckpoint is a ValueError).
_LOAD_ERRORS = (ValueError, RuntimeError, KeyError, OSError, EOFError, TypeError, AttributeError)


def _chain(sessions: sessionmaker[Session], kind: str, depth: int = 5) -> list[ModelVersion]:
    """The promoted model of `kind`, then the ones it replaced (newest first)."""
    out: list[ModelVersion] = []
    mv = promoted(sessions, kind)
    with sessions() as s:
        while mv is not None and len(out) < depth and mv.version not in {m.version for m in out}:
            out.append(mv)
            before = (mv.metrics or {}).get("replaced")
            mv = s.scalar(select(ModelVersion).where(ModelVersion.version == str(before))) if before else None
    return out


def _load_newest(sessions: sessionmaker[Session], models_dir: Path, kind: str,
                 loader: Callable[[Path], _M]) -> _M | None:
    """The promoted model of `kind`, loaded; when its file is missing or damaged it is refused
    (logged with the cause) and the model it replaced is tried, then the one before."""
    for i, mv in enumerate(_chain(sessions, kind)):
        path = _resolve(models_dir, mv.path)
        if not path.exists():
            logger.warning("%s model %s is missing (%s)", kind, mv.version, path)
            continue
        want = (mv.metrics or {}).get("sha256")
        if want and sha256_file(path) != want:
            logger.error("%s model %s refused: %s is corrupt (checksum mismatch)", kind, mv.version, path)
            continue
        try:
            model = loader(path)
        except _LOAD_ERRORS as exc:
            logger.error("%s model %s refused: %s", kind, mv.version, exc)
            continue
        if i:
            logger.warning("using the previous %s model %s until the damaged one is retrained",
                           kind, mv.version)
        return model
    return None


def load_scene_embedder(sessions: sessionmaker[Session], models_dir: Path) -> SceneEmbedder:
    """The promoted scene embedder (or the one it replaced, when its file is damaged), or the
    fixed-seed default when none was trained or none can be read."""
    emb = _load_newest(sessions, models_dir, "scene", load_embedder)
    if emb is None:
        if promoted(sessions, "scene") is not None:
            logger.warning("no promoted scene model can be loaded; using the default")
        return load_embedder(None)
    return emb


def register_model(sessions: sessionmaker[Session], *, kind: str, version: str, path: Path,
                   metrics: dict[str, object], promote: bool, models_dir: Path | None = None) -> None:
    """Record a trained model; promoting it un-promotes earlier ones of the same kind (the
    one it replaces is remembered as `metrics["replaced"]`, the fallback if its file breaks).
    With `models_dir` the file's sha256 is recorded and checked whenever it is loaded."""
    metrics = dict(metrics)
    if models_dir is not None:
        metrics["sha256"] = sha256_file(_resolve(models_dir, str(path)))
    with sessions() as s:
        if promote:
            for old in s.scalars(select(ModelVersion).where(ModelVersion.kind == kind)):
                if old.promoted and old.version != version:
                    metrics["replaced"] = old.version
                old.promoted = False
        row = s.scalar(select(ModelVersion).where(ModelVersion.version == version))
        if row is None:
            row = ModelVersion(kind=kind, version=version, path=str(path))
            s.add(row)
        row.path, row.metrics, row.promoted = str(path), metrics, promote
        s.commit()


def load_series_head(sessions: sessionmaker[Session], models_dir: Path) -> SeriesHead | None:
    """The promoted series/genre head, or None until `anirec train series` has made one."""
    from core.models.series import load_series_head as _load

    return _load_newest(sessions, models_dir, "series", _load)


def _load_promoted(sessions: sessionmaker[Session], models_dir: Path, kind: str,
                   loader: Callable[[Path], _M]) -> _M | None:
    model = _load_newest(sessions, models_dir, kind, loader)
    if model is None and promoted(sessions, kind) is not None:
        logger.warning("no %s model can be loaded; characters are off", kind)
    return model


def load_face_detector(sessions: sessionmaker[Session], models_dir: Path) -> FaceDetector | None:
    """The promoted face detector, or None until `anirec train faces` has made one."""
    from core.models.faces import load_face_detector as load

    return _load_promoted(sessions, models_dir, "faces", load)


def load_character_embedder(sessions: sessionmaker[Session], models_dir: Path
                            ) -> CharacterEmbedder | None:
    """The promoted character embedder, or None until `anirec train characters` has made one."""
    from core.models.characters import load_character_embedder as load

    return _load_promoted(sessions, models_dir, "characters", load)


ADAPTER_KIND = "adapter"  # `anirec retrain`: a folder with adapter.npz and calibration.json


def load_query_adapter(sessions: sessionmaker[Session], models_dir: Path, embedder_version: str
                       ) -> tuple[QueryAdapter | None, Calibration | None]:
    """The promoted query adapter and the calibration refitted with it, or (None, None)
    when none is promoted (the recogniser then runs exactly as without `anirec retrain`),
    when its files are missing or unreadable, or when it was learnt on another embedder."""
    from core.models.adapter import load_adapter
    from core.recognition.calibration import Calibration

    mv = promoted(sessions, ADAPTER_KIND)
    if mv is None:
        return None, None
    folder = _resolve(models_dir, mv.path)
    try:
        adapter = load_adapter(folder / "adapter.npz")
    except (ValueError, FileNotFoundError) as exc:
        logger.warning("promoted query adapter %s is unusable (%s); serving without it", mv.version, exc)
        return None, None
    if adapter.embedder_version != embedder_version:
        logger.warning("query adapter %s was learnt on another embedder; ignoring it", mv.version)
        return None, None
    cal_path = folder / "calibration.json"
    return adapter, (Calibration.load(cal_path) if cal_path.exists() else None)


def deployed_state(sessions: sessionmaker[Session], models_dir: Path, index_dir: Path) -> str:
    """A cheap key of what a recogniser would load now: the promoted model versions, the
    calibration file and the index manifest. It changes on a promotion, a rollback, a refit
    calibration or a new index (a running bot polls it to hot-swap)."""
    with sessions() as s:
        rows = s.execute(select(ModelVersion.kind, ModelVersion.version)
                         .where(ModelVersion.promoted.is_(True))
                         .order_by(ModelVersion.kind, ModelVersion.version)).all()
    parts = [f"{k}={v}" for k, v in rows]
    for f in (Path(models_dir) / "calibration.json", Path(index_dir) / "manifest.json"):
        try:
            st = f.stat()
            parts.append(f"{f.name}:{st.st_mtime_ns}:{st.st_size}")
        except OSError:
            parts.append(f"{f.name}:-")
    return "|".join(parts)
