"""Train a model on the library, gate it against the current one, promote it, and (for a new
scene embedder) re-embed the index, rolling the promotion back if the re-embed fails.

Each `train_*` function returns a typed result; missing input raises `NothingToTrain`.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from core.db.models import Episode, ModelVersion, Series
from core.errors import NothingToTrain
from core.framestore import FrameStore

if TYPE_CHECKING:
    from core.models.embedder import SceneEmbedder
    from data.indexer import Indexer, IndexReport

T = TypeVar("T")


class TrainProgress(Protocol):
    """Where training reports progress: one stage (reading, training) at a time."""

    def begin(self, desc: str, total: int | None, unit: str) -> None: ...
    def advance(self, done: int, postfix: dict[str, str] | None = None) -> None: ...
    def end(self) -> None: ...


class NoProgress:
    """Reports nothing."""

    def begin(self, desc: str, total: int | None, unit: str) -> None:
        pass

    def advance(self, done: int, postfix: dict[str, str] | None = None) -> None:
        pass

    def end(self) -> None:
        pass


def _counted(items: Iterable[T], progress: TrainProgress, desc: str) -> Iterator[T]:
    progress.begin(desc, None, "frame")
    try:
        for n, item in enumerate(items, 1):
            progress.advance(n)
            yield item
    finally:
        progress.end()


# ---------------------------------------------------------------------------------- episodes
@dataclass(frozen=True)
class EpisodeSplit:
    """Indexed episodes split for training: every Nth episode of each series is held out."""

    train: list[int]  # episode ids trained on
    held: list[int]  # episode ids held out for the gate
    train_names: list[str]  # the training episodes' paths relative to their library


def _indexed_episodes(s: Session) -> list[tuple[int, int, str, str]]:
    rows = s.execute(select(Episode.id, Episode.series_id, Episode.path, Episode.library_root)
                     .where(Episode.status == "indexed")
                     .order_by(Episode.series_id, Episode.season, Episode.number, Episode.id)).all()
    return [(r[0], r[1], r[2], r[3]) for r in rows]


def split_episodes(sessions: sessionmaker[Session], holdout_every: int) -> EpisodeSplit:
    """Training and held-out episode ids (0: nothing held out)."""
    with sessions() as s:
        rows = _indexed_episodes(s)
    split = EpisodeSplit([], [], [])
    count: dict[int, int] = {}
    for eid, sid, path, root in rows:
        k = count.get(sid, 0)
        count[sid] = k + 1
        if holdout_every and k % holdout_every == holdout_every - 1:
            split.held.append(eid)
            continue
        split.train.append(eid)
        try:
            split.train_names.append(Path(path).relative_to(root).as_posix())
        except ValueError:
            split.train_names.append(Path(path).name)
    return split


# ---------------------------------------------------------------------------- scene embedder
@dataclass(frozen=True)
class GateParams:
    """The scene promotion gate: both models answer the same damaged queries."""

    queries: int = 200  # frames drawn as queries (fewer if the check has fewer)
    query_seed: int = 4242  # which frames are drawn
    damage_seed: int = 99  # the damage applied to them


@dataclass(frozen=True)
class SceneGate:
    """The gate's verdict inputs: top-1 of the new and the current model on the same check."""

    new_top1: float
    current_top1: float
    current_version: str
    checked_on: str  # "held-out episodes" or "training episodes"


@dataclass
class SceneResult:
    """What `train_scene` did."""

    version: str
    promoted: bool
    gate: SceneGate
    train_seconds: float
    steps: int
    calibration: str | None = None  # set when the calibration file was moved aside
    reembed: IndexReport | None = None  # the re-embed after promotion
    reembed_seconds: float = 0.0

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {
            "version": self.version, "promoted": self.promoted, "new_top1": self.gate.new_top1,
            "current_top1": self.gate.current_top1, "current": self.gate.current_version,
            "train_seconds": self.train_seconds, "steps": self.steps}
        if self.calibration is not None:
            out["calibration"] = self.calibration
        if self.reembed is not None:
            out.update({"reembedded_frames": self.reembed.frames_embedded,
                        "index_version": self.reembed.index_version,
                        "reembed_seconds": round(self.reembed_seconds, 1)})
        return out


def gate_scene(model: SceneEmbedder, current: SceneEmbedder, store: FrameStore, split: EpisodeSplit,
               params: GateParams = GateParams()) -> SceneGate:
    """New vs current model on the same damaged queries (held-out episodes if any)."""
    from training.scene import FrameTable, evaluate

    table = FrameTable.build(store, split.held or split.train)
    rng = random.Random(params.query_seed)
    qidx = rng.sample(range(len(table.episodes)), min(params.queries, len(table.episodes)))
    new_score = evaluate(model, table, qidx, seed=params.damage_seed)["top1"]
    old_score = evaluate(current, table, qidx, seed=params.damage_seed)["top1"]
    return SceneGate(new_score, old_score, current.version,
                     "held-out episodes" if split.held else "training episodes")


def train_scene(sessions: sessionmaker[Session], store: FrameStore, models_dir: Path,
                indexer_for: Callable[[SceneEmbedder], Indexer], *, steps: int, holdout_every: int,
                resume: bool, arch: str, weights: str | None, force_promote: bool = False,
                gate: GateParams = GateParams(), progress: TrainProgress | None = None) -> SceneResult:
    """Train, gate against the current model, promote if better (or forced), re-embed.

    `indexer_for(model)` gives the indexer that re-embeds the library with the new model."""
    from core.models.registry import load_scene_embedder, promoted, register_model
    from training.scene import SceneTrainConfig
    from training.scene import train_scene as fit

    progress = progress or NoProgress()
    split = split_episodes(sessions, holdout_every)
    if not split.train:
        raise NothingToTrain("nothing to train on; run `anirec index LIBRARY` first")
    cfg = SceneTrainConfig(steps=steps, holdout_every=holdout_every, arch=arch, weights=weights)
    progress.begin("training scene embedder", steps, "step")

    def on_step(step: int, loss: float, metrics: dict[str, float]) -> None:
        progress.advance(step, {"loss": f"{loss:.3f}",
                                **({"val_top1": f"{metrics['top1']:.2f}"} if metrics else {})})

    try:
        model, metrics = fit(store, split.train, cfg, models_dir / "train-scene", resume=resume,
                             progress=on_step)
    finally:
        progress.end()
    current = load_scene_embedder(sessions, models_dir)
    verdict = gate_scene(model, current, store, split, gate)
    metrics.update({"gate_new_top1": verdict.new_top1, "gate_current_top1": verdict.current_top1,
                    "gate_current_version": verdict.current_version, "gate_on": verdict.checked_on,
                    "train_episodes": split.train_names})
    promote = force_promote or verdict.new_top1 > verdict.current_top1
    previous = promoted(sessions, "scene")
    path = models_dir / f"{model.version}.pt"
    model.metrics = metrics
    model.save(path)
    register_model(sessions, kind="scene", version=model.version, path=path.relative_to(models_dir),
                   models_dir=models_dir,
                   metrics={k: v for k, v in metrics.items() if k != "history"}, promote=promote)
    result = SceneResult(model.version, promote, verdict, metrics["train_seconds"], metrics["steps"])
    if promote:
        _promote_scene(sessions, models_dir, indexer_for(model), result,
                       previous.version if previous is not None else None)
    return result


def _promote_scene(sessions: sessionmaker[Session], models_dir: Path, indexer: Indexer,
                   result: SceneResult, previous: str | None) -> None:
    """After the new model is registered as promoted: move the calibration aside and
    re-embed the index; on failure roll both back and re-raise."""
    stale = models_dir / "calibration.json"
    aside = models_dir / f"calibration-{result.gate.current_version}.json"
    moved = stale.exists()
    if moved:  # fitted for the previous model's scores
        stale.replace(aside)
        result.calibration = ("moved aside (it was fitted for the previous model); "
                              "run `anirec eval --calibrate`")
    t0 = time.perf_counter()
    try:
        result.reembed = indexer.reembed()
    except BaseException:
        rollback(sessions, "scene", to=previous)
        if moved:
            aside.replace(stale)
        raise
    result.reembed_seconds = time.perf_counter() - t0


def rollback(sessions: sessionmaker[Session], kind: str, *, to: str | None) -> None:
    """Promote model version `to` of `kind` again (None: none, i.e. the built-in default)."""
    with sessions() as s:
        for row in s.scalars(select(ModelVersion).where(ModelVersion.kind == kind)):
            row.promoted = row.version == to
        s.commit()


# ------------------------------------------------------------------------------ series head
@dataclass(frozen=True)
class SeriesResult:
    """What `train_series` did; `metrics` are the head's own (series_top1, genres, ...)."""

    version: str
    promoted: bool
    embedder: str
    metrics: dict[str, object]

    def to_json(self) -> dict[str, object]:
        return {"version": self.version, "promoted": self.promoted, "embedder": self.embedder,
                **self.metrics}


def train_series(sessions: sessionmaker[Session], store: FrameStore, models_dir: Path,
                 embedder: SceneEmbedder) -> SeriesResult:
    """Train the series/genre head on `embedder`; promote it unless it is worse."""
    from core.models.registry import load_series_head, register_model
    from training.series import train_series_head

    with sessions() as s:
        episodes = [(eid, sid) for eid, sid, _, _ in _indexed_episodes(s)]
        genres = {r.id: list(r.genres or []) for r in s.scalars(select(Series))}
    head = train_series_head(embedder, store, episodes, genres)
    current = load_series_head(sessions, models_dir)
    promote = (current is None or current.embedder_version != embedder.version
               or head.metrics["series_top1"] >= current.metrics.get("series_top1", 0.0))
    path = models_dir / f"{head.version}.pt"
    head.save(path)
    register_model(sessions, kind="series", version=head.version,
                   path=path.relative_to(models_dir), models_dir=models_dir, metrics=head.metrics, promote=promote)
    return SeriesResult(head.version, promote, embedder.version, dict(head.metrics))


# ------------------------------------------------------------------------ faces & characters
def labels_path(sessions: sessionmaker[Session], given: str | None) -> Path:
    """The face-label file: `given`, else the indexed library folder's ground_truth.json."""
    from training.facedata import library_labels

    if given:
        return Path(given)
    with sessions() as s:
        roots = list(s.scalars(select(Episode.library_root).where(Episode.status == "indexed").distinct()))
    for r in roots:
        if library_labels(Path(r)).is_file():
            return library_labels(Path(r))
    raise NothingToTrain("no face labels found: the indexed library has no ground_truth.json "
                         "(the sample library writes one); pass --labels FILE in the same format")


@dataclass(frozen=True)
class FaceSplit:
    """A face-label file read and split by episode."""

    root: Path  # the library folder the labels' paths are relative to
    labels: dict[str, object]
    train: list[str]  # episode paths trained on
    held: list[str]  # episode paths held out for the check


def _face_split(labels_file: Path, holdout_every: int) -> FaceSplit:
    from training.facedata import read_labels
    from training.facedata import split_episodes as split_labelled

    labels = read_labels(labels_file)
    train, held = split_labelled(labels, holdout_every)
    if not train:
        raise NothingToTrain("no labelled episodes to train on")
    return FaceSplit(labels_file.parent, labels, train, held)


@dataclass(frozen=True)
class FacesResult:
    """What `train_faces` did: the new detector's check, and the current one's F1."""

    version: str
    promoted: bool
    precision: float
    recall: float
    f1: float
    checked_on: str  # "held-out episodes" or "validation frames"
    current_f1: float | None  # None: no detector before
    train_seconds: float | None

    def to_json(self) -> dict[str, object]:
        return dict(self.__dict__)


def train_faces(sessions: sessionmaker[Session], models_dir: Path, *, labels_file: Path,
                steps: int | None, holdout_every: int, resume: bool,
                progress: TrainProgress | None = None) -> FacesResult:
    """Train the face detector on labelled frames; promote it unless it is worse than the current one."""
    from core.models.registry import load_face_detector, register_model
    from training.facedata import iter_face_frames
    from training.faces import TrainConfig, evaluate_detector, train_face_detector

    progress = progress or NoProgress()
    sp = _face_split(labels_file, holdout_every)
    cfg = TrainConfig() if steps is None else replace(TrainConfig(), steps=steps)
    frames = list(_counted(iter_face_frames(sp.root, sp.labels, sp.train, every=3), progress,
                           "reading labelled frames"))
    # every 5th shot of the training episodes tunes the score threshold (validation)
    val = [f for f in frames if f.shot % 5 == 4] or frames[::10]
    train_frames = [f for f in frames if f.shot % 5 != 4] or frames
    progress.begin("training face detector", cfg.steps, "step")
    try:
        det, metrics = train_face_detector(
            train_frames, val, cfg, models_dir / "train-faces", resume=resume,
            progress=lambda step, loss, _m: progress.advance(step, {"loss": f"{loss:.3f}"}))
    finally:
        progress.end()
    check = list(iter_face_frames(sp.root, sp.labels, sp.held, every=6)) if sp.held else val
    new = evaluate_detector(det, check, latency_samples=0)
    current = load_face_detector(sessions, models_dir)
    old = evaluate_detector(current, check, latency_samples=0) if current is not None else None
    promote = old is None or new["f1"] >= old["f1"]
    path = models_dir / f"{det.version}.pt"
    det.metrics = {**det.metrics, "check": {k: v for k, v in new.items() if k != "sweep"},
                   "train_episodes": sp.train}
    det.save(path)
    register_model(sessions, kind="faces", version=det.version, path=path.relative_to(models_dir),
                   models_dir=models_dir,
                   metrics={"precision": new["precision"], "recall": new["recall"], "f1": new["f1"],
                            "train_episodes": sp.train}, promote=promote)
    return FacesResult(det.version, promote, new["precision"], new["recall"], new["f1"],
                       "held-out episodes" if sp.held else "validation frames",
                       old["f1"] if old else None, metrics.get("train_seconds"))


@dataclass(frozen=True)
class CharactersResult:
    """What `train_characters` did (a character embedder is always promoted)."""

    version: str
    promoted: bool
    faces: int  # labelled face crops trained on
    floors: dict[str, float]  # the unknown-face floors the recogniser starts from
    train_seconds: float
    steps: int
    supervision: str  # "names" or "tracks"

    def to_json(self) -> dict[str, object]:
        return dict(self.__dict__)


def train_characters(sessions: sessionmaker[Session], models_dir: Path, *, labels_file: Path,
                     steps: int, holdout_every: int, resume: bool, supervision: str,
                     progress: TrainProgress | None = None) -> CharactersResult:
    """Train the character embedder on labelled face crops and promote it; the references are
    re-embedded with it when the recogniser next loads."""
    from core.models.registry import register_model
    from training.characters import CharacterTrainConfig, FaceSet, training_floors
    from training.characters import train_characters as fit
    from training.facedata import iter_face_frames

    progress = progress or NoProgress()
    sp = _face_split(labels_file, holdout_every)
    faces = FaceSet.from_frames(_counted(
        iter_face_frames(sp.root, sp.labels, sp.train, every=2, with_faces_only=True), progress,
        "reading labelled faces"))
    cfg = CharacterTrainConfig(steps=steps, supervision=supervision)
    faces, val = faces.split_by_shot(5)  # every 5th shot measures the unknown-face floors
    progress.begin("training character embedder", steps, "step")
    try:
        emb, metrics = fit(faces, cfg, models_dir / "train-characters", resume=resume,
                           progress=lambda step, loss: progress.advance(step, {"loss": f"{loss:.3f}"}))
    finally:
        progress.end()
    emb.metrics["floors"] = training_floors(emb, faces, val)
    emb.metrics["train_episodes"] = sp.train
    path = models_dir / f"{emb.version}.pt"
    emb.save(path)
    register_model(sessions, kind="characters", version=emb.version,
                   path=path.relative_to(models_dir), models_dir=models_dir, metrics=dict(emb.metrics), promote=True)
    return CharactersResult(emb.version, True, len(faces), emb.metrics["floors"],
                            metrics["train_seconds"], steps, supervision)


# ------------------------------------------------------------------ retraining from feedback
# (the gate and the promotion of a version learnt from votes: training/retrain_gate.py)
def rollback_target(sessions: sessionmaker[Session], kind: str) -> str | None:
    """The version of `kind` promoted before the current one (None: the built-in default)."""
    with sessions() as s:
        rows = s.scalars(select(ModelVersion).where(ModelVersion.kind == kind)
                         .order_by(ModelVersion.created_at, ModelVersion.id)).all()
    cur = next((i for i in range(len(rows) - 1, -1, -1) if rows[i].promoted), None)
    if cur is None:
        return None
    for r in reversed(rows[:cur]):
        gate = (r.metrics or {}).get("gate")
        if not isinstance(gate, dict) or gate.get("promoted"):
            return r.version
    return None
