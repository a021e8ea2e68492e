"""Index a library: scan → decode & sample → shots → frame store → embed → vector index + catalog.

Incremental and crash-safe:
- unchanged episodes (same size/mtime, or same content fingerprint) are skipped without
  decoding or embedding; deleted files are removed; changed files are re-indexed;
- an episode's catalog rows are written as `pending`, its vectors added to the index, and it
  is marked `indexed` only after the index has been saved atomically. A run that dies leaves
  `pending` episodes, which the next run cleans up and redoes; nothing already indexed is lost;
- a corrupt or truncated video is reported, marked `failed` (retried when the file changes)
  and skipped.
`reembed` rebuilds the whole index from the frame store with the current embedder (after
training a new model), without decoding video.

Region vectors (`core.index.RegionSpec`, on by default): for keyframes (one per shot, more in
long shots) a grid of sub-windows of the stored thumbnail is embedded into the index's second
`regions` index, so a screenshot crop of a quarter of the frame can find its shot. They are
made from the frame-store thumbnails, at indexing and at re-embedding alike.

Decoding and embedding (`data.prepare.prepare_episode`: decode → sample → thumbnails, descriptors, vectors,
region vectors) is separate from writing (catalog rows, index, frame store, all in this
process). An `EpisodeRunner` prepares the to-do episodes and hands them over in order: the
default one (`SerialRunner`) prepares the next episode in a thread while the current one is
written; `data.parallel.RayRunner` prepares them in Ray workers (`anirec index --ray`). The
writes, the `pending` → `indexed` marking and the resumption are the same for both.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session, sessionmaker

from core.db.models import Episode, Frame, Series, Shot, utcnow
from core.errors import IndexMismatch, IndexUnavailable
from core.framestore import DamagedPack, FrameStore
from core.index import HnswIndex, HnswOptions, RegionSpec, new_index, open_index, read_manifest
from core.index.milvus import MilvusConfig, MilvusIndex
from core.models.embedder import SceneEmbedder
from data.library import EpisodeEntry, SeriesEntry, content_key, scan_library
from data.oped import RULES_VERSION, EpisodeSignature, detect_oped, detect_recaps
from data.prepare import (
    EpisodeRunner,
    Prepared,
    PreparedEpisode,
    PrepareParams,
    Progress,
    SerialRunner,
    region_vectors,
)
from data.video import DECODE_MODES, VideoError, probe_video

logger = logging.getLogger(__name__)

#: in the frame store: the RULES_VERSION (data.oped) the stored frame flags were computed with
FLAG_RULES_FILE = "flag-rules.json"
SAVE_EVERY_SECONDS = 120.0  # save the index (and commit finished episodes) at least this often

#: the index being written: hnswlib files or a Milvus collection (the same methods)
Index = HnswIndex | MilvusIndex


@dataclass
class IndexReport:
    """What one `index_library` run did."""

    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    frames_added: int = 0
    frames_removed: int = 0
    frames_embedded: int = 0
    video_seconds: float = 0.0
    wall_seconds: float = 0.0
    index_version: str = ""
    index_count: int = 0
    region_count: int = 0  # region vectors (0: regions off)
    warnings: list[str] = field(default_factory=list)

    @property
    def speed(self) -> float:
        """Indexing speed as a multiple of real time (video seconds per wall second)."""
        return self.video_seconds / self.wall_seconds if self.wall_seconds > 0 else 0.0


@dataclass(frozen=True)
class _Todo:
    """An episode the scan found new or changed, and its catalog row if it has one."""

    series: SeriesEntry
    ep: EpisodeEntry
    existing_id: int | None


@dataclass
class Indexer:
    """Builds and updates the index for one home folder."""

    sessions: sessionmaker[Session]
    embedder: SceneEmbedder
    index_dir: Path
    framestore: FrameStore
    fps: float = 2.0
    #: densest sampling fast motion may add between the regular samples (see EpisodeDecoder)
    max_fps: float = 6.0
    #: frames decoded to sample from: "all", or only the reference frames ("ref"; ANIREC_INDEX_DECODE)
    decode: str = "all"
    batch_size: int = 32
    progress: Progress = field(default_factory=Progress)
    index_options: HnswOptions = field(default_factory=HnswOptions)
    #: region vectors to keep (None: none); an existing index built otherwise is refused
    #: until `--reembed` (ANIREC_INDEX_REGIONS).
    regions: RegionSpec | None = field(default_factory=RegionSpec)
    #: the Milvus backend's settings (None: hnswlib files in `index_dir`; ANIREC_VECTOR_BACKEND)
    milvus: MilvusConfig | None = None
    #: where episodes are decoded and embedded (`data.parallel.RayRunner`: Ray workers)
    runner: EpisodeRunner = field(default_factory=SerialRunner)

    def __post_init__(self) -> None:
        if self.decode not in DECODE_MODES:
            raise ValueError(f"decode must be one of {', '.join(DECODE_MODES)}, not {self.decode!r}")

    # ------------------------------------------------------------------------------------------
    def open(self, *, reembed: bool = False) -> HnswIndex | MilvusIndex:
        """The index to write into: a new empty one for `reembed`, else the one on disk."""
        emb = self.embedder
        if reembed:
            return new_index(emb.dim, embedder_name=emb.name, embedder_version=emb.version,
                             regions=self.regions, milvus=self.milvus, **self.index_options)
        return open_index(self.index_dir, embedder_name=emb.name, embedder_version=emb.version,
                          dim=emb.dim, regions=self.regions, milvus=self.milvus,
                          **self.index_options)

    def run(self, root: Path, *, reembed: bool = False) -> IndexReport:
        """Index (or update) the library under `root`."""
        t_start = time.perf_counter()
        root = Path(root).resolve()
        report = IndexReport()
        if not root.is_dir():
            raise FileNotFoundError(f"library folder not found: {root}")
        try:
            index = self.open(reembed=reembed)  # IndexMismatch propagates: rebuild on purpose
        except IndexMismatch:
            raise
        except IndexUnavailable as exc:  # damaged on disk: rebuilt from the frame store
            logger.warning("the index on disk cannot be used (%s); rebuilding it from the stored frames", exc)
            report.warnings.append(f"the index on disk was damaged ({exc}); rebuilt from the stored frames")
            reembed = True
            index = self.open(reembed=True)
        self._cleanup_pending(index)
        if reembed:
            report.frames_embedded += self._reembed_all(index)
        elif not self._consistent(index):
            report.warnings.append("index and catalog disagreed; repaired (stale vectors removed, "
                                   "episodes with lost vectors re-indexed)")
        todo, touched_series = self._plan(root, index, report)
        pending_done = self._index_episodes(todo, root, index, report, touched_series)
        self._reflag(touched_series, reembed=reembed)
        changed = bool(pending_done or report.removed or report.frames_removed or reembed
                       or report.warnings or not (self.index_dir / "manifest.json").exists())
        if changed:
            self._commit(index, pending_done)
        self.progress.close()
        report.index_version = index.version
        report.index_count = len(index)
        report.region_count = len(index.regions) if index.regions is not None else 0
        report.wall_seconds = time.perf_counter() - t_start
        return report

    def _plan(self, root: Path, index: Index, report: IndexReport
              ) -> tuple[list[_Todo], set[int]]:
        """Scan `root`: the episodes to (re)index, and drop the ones whose files are gone.

        Returns the to-do list and the series whose episodes were removed.
        """
        series_list = scan_library(root)
        touched_series: set[int] = set()
        seen_paths: set[str] = set()
        todo: list[_Todo] = []
        with self.sessions() as s:
            for se in series_list:
                series = self._upsert_series(s, se)
                for ep in se.episodes:
                    path = Path(ep.path).resolve().as_posix()
                    seen_paths.add(path)
                    row = s.scalar(select(Episode).where(Episode.path == path))
                    if row is not None and self._unchanged(row, ep, path):
                        if row.status == "indexed" and self.framestore.intact(row.id):
                            report.unchanged += 1
                            continue
                        if row.status == "indexed":  # its stored frames are damaged: write them again
                            logger.warning("the stored frames of %s are damaged; indexing it again", ep.relpath)
                            report.warnings.append(f"{ep.relpath}: stored frames were damaged, indexed again")
                        if row.status == "failed":
                            report.failed.append((ep.relpath, row.error or "failed earlier"))
                            continue
                    todo.append(_Todo(se, ep, row.id if row is not None else None))
                    if row is not None:
                        row.series_id = series.id
            s.commit()
            # files that are gone
            gone = s.scalars(select(Episode).where(Episode.library_root == root.as_posix())).all()
            for row in gone:
                if row.path not in seen_paths:
                    touched_series.add(row.series_id)
                    report.frames_removed += self._drop_episode(s, index, row)
                    report.removed.append(row.path)
            s.commit()
        return todo, touched_series

    def _index_episodes(self, todo: list[_Todo], root: Path, index: Index,
                        report: IndexReport, touched_series: set[int]) -> list[int]:
        """Decode, embed (in `self.runner`) and write (here) each to-do episode, saving the
        index every `SAVE_EVERY_SECONDS`; returns the episodes written since the last save."""
        durations: list[float] = []
        for item in todo:
            try:
                durations.append(probe_video(Path(item.ep.path)).duration)
            except VideoError:
                durations.append(0.0)
        self.progress.start(sum(durations), len(todo))
        pending_done: list[int] = []
        last_save = time.perf_counter()
        params = PrepareParams(fps=self.fps, max_fps=self.max_fps, batch_size=self.batch_size,
                               regions=index.region_spec, decode=self.decode)
        results = self.runner.run([Path(item.ep.path) for item in todo], self.embedder, params,
                                  self.progress)
        with closing(results):  # an error while writing stops the runner's work too
            for item, dur, prepared in zip(todo, durations, results, strict=True):
                self.progress.episode(item.ep.relpath, dur)
                eid = self._index_episode(item, prepared, root, index, report, touched_series)
                if eid is not None:
                    report.video_seconds += dur
                    pending_done.append(eid)
                self.progress.episode_done(dur)
                if eid is not None and time.perf_counter() - last_save > SAVE_EVERY_SECONDS:
                    self._commit(index, pending_done)
                    pending_done = []
                    last_save = time.perf_counter()
        return pending_done

    def _index_episode(self, item: _Todo, prepared: Prepared, root: Path, index: Index,
                       report: IndexReport, touched_series: set[int]) -> int | None:
        """One prepared episode into the catalog (as `pending`), the index and the frame
        store; its id, or None when it could not be decoded (recorded as failed, nothing else
        written)."""
        se, ep, existing_id = item.series, item.ep, item.existing_id
        rel = ep.relpath
        if isinstance(prepared, VideoError):
            self._record_failure(se, ep, existing_id, root, str(prepared))
            report.failed.append((rel, str(prepared)))
            logger.warning("skipped %s: %s", rel, prepared)
            return None
        with self.sessions() as s:
            row = None
            if existing_id is not None:
                row = s.get(Episode, existing_id)
                assert row is not None
                report.frames_removed += self._clear_episode(s, index, row)
                report.updated.append(rel)
            row = self._episode_row(s, se, ep, row, root)
            s.commit()
            eid = row.id
            touched_series.add(row.series_id)
        n = self._write_episode(eid, prepared, index)
        if existing_id is None:
            report.added.append(rel)
        report.frames_added += n
        report.frames_embedded += n
        return eid

    def _reflag(self, touched_series: set[int], *, reembed: bool) -> None:
        """Flag openings, endings and recaps again where the library changed (everywhere
        after a re-embed or when the flag rules changed)."""
        stale_flags = self._flag_rules() != RULES_VERSION  # flagged by older rules (or never)
        if touched_series or reembed or stale_flags:
            if stale_flags and not touched_series:
                logger.info("the opening/ending/recap rules changed: flagging every series again")
            self._update_oped(None if reembed or stale_flags else touched_series)
            self._save_flag_rules()

    def reembed(self) -> IndexReport:
        """Rebuild the whole index with the current embedder from the frame store (after
        training), without scanning the library or decoding video. The region settings of
        the current index are kept."""
        t0 = time.perf_counter()
        if (self.index_dir / "manifest.json").exists():
            try:
                self.regions = read_manifest(self.index_dir).region_spec
            except Exception:  # unreadable: rebuilt with the settings given
                logger.warning("cannot read the index manifest; re-embedding with %s", self.regions)
        index = self.open(reembed=True)
        self._cleanup_pending(index)
        report = IndexReport(frames_embedded=self._reembed_all(index))
        with self.sessions() as s:
            done = list(s.scalars(select(Episode.id).where(Episode.status == "indexed")))
        self._commit(index, done)
        report.index_version, report.index_count = index.version, len(index)
        report.region_count = len(index.regions) if index.regions is not None else 0
        report.wall_seconds = time.perf_counter() - t0
        return report

    # ------------------------------------------------------------------------------------------
    def _commit(self, index: Index, done: list[int]) -> None:
        """Save the index atomically, then mark the finished episodes indexed."""
        index.save(self.index_dir)
        if done:
            with self.sessions() as s:
                s.execute(update(Episode).where(Episode.id.in_(done)).values(
                    status="indexed", error=None, indexed_at=utcnow(),
                    embedder_version=self.embedder.version))
                s.commit()

    def _unchanged(self, row: Episode, ep: EpisodeEntry, path: str) -> bool:
        if row.size == ep.size and row.mtime_ns == ep.mtime_ns:
            return True
        key = content_key(Path(path))
        if key == row.content_key and row.size == ep.size:
            with self.sessions() as s:  # touched but identical: remember the new mtime
                values: dict[str, int | None] = {"mtime_ns": ep.mtime_ns}
                if row.status == "indexed":
                    values["error"] = None
                s.execute(update(Episode).where(Episode.id == row.id).values(**values))
                s.commit()
            return True
        return False

    def _upsert_series(self, s: Session, se: SeriesEntry) -> Series:
        row = s.scalar(select(Series).where(Series.title == se.title))
        if row is None:
            row = Series(title=se.title)
            s.add(row)
        row.folder = str(se.folder) if se.folder is not None else None
        row.titles = dict(se.titles or {})
        row.anilist_id, row.mal_id = se.anilist_id, se.mal_id
        row.genres = list(se.genres or [])
        row.is_adult = bool(se.is_adult)
        row.cover, row.synopsis = se.cover, se.synopsis
        s.flush()
        return row

    def _episode_row(self, s: Session, se: SeriesEntry, ep: EpisodeEntry, row: Episode | None,
                     root: Path) -> Episode:
        series = s.scalar(select(Series).where(Series.title == se.title))
        assert series is not None
        path = Path(ep.path).resolve()
        if row is None:
            row = Episode(path=path.as_posix(), series_id=series.id, library_root=root.as_posix())
            s.add(row)
        row.series_id = series.id
        row.library_root = root.as_posix()
        row.season, row.number, row.label = ep.season, ep.episode, ep.label
        row.kind = ep.parsed.kind
        row.size, row.mtime_ns = ep.size, ep.mtime_ns
        row.content_key = content_key(path)
        row.status, row.error = "pending", None
        try:
            info = probe_video(path)
            row.duration, row.fps, row.width, row.height = info.duration, info.fps, info.width, info.height
        except VideoError:
            pass
        s.flush()
        return row

    def _clear_episode(self, s: Session, index: Index, row: Episode) -> int:
        """Remove an episode's frames, shots and vectors (the episode row stays)."""
        ids = list(s.scalars(select(Frame.id).where(Frame.episode_id == row.id)))
        if ids:
            index.remove(ids)
        s.execute(delete(Frame).where(Frame.episode_id == row.id))
        s.execute(delete(Shot).where(Shot.episode_id == row.id))
        self.framestore.delete(row.id)
        return len(ids)

    def _drop_episode(self, s: Session, index: Index, row: Episode) -> int:
        n = self._clear_episode(s, index, row)
        s.delete(row)
        return n

    def _cleanup_pending(self, index: Index) -> None:
        """Episodes left `pending` by an interrupted run: drop their partial data."""
        with self.sessions() as s:
            rows = s.scalars(select(Episode).where(Episode.status == "pending")).all()
            for row in rows:
                logger.info("cleaning up interrupted episode %s", row.path)
                self._clear_episode(s, index, row)
                row.size = None  # forces a re-index
            s.commit()

    def _consistent(self, index: Index) -> bool:
        """Remove vectors the catalog does not know (left by a crash); True if none were."""
        with self.sessions() as s:
            known = set(s.scalars(select(Frame.id).join(Episode).where(Episode.status == "indexed")))
        have = set(index.ids().tolist())
        stale = have - known
        if stale:
            index.remove(sorted(stale))
        missing = known - have
        if missing:  # frames whose vectors were lost: re-index those episodes
            with self.sessions() as s:
                eps = set(s.scalars(select(Frame.episode_id).where(Frame.id.in_(list(missing)[:50000]))))
                s.execute(update(Episode).where(Episode.id.in_(eps)).values(size=None, status="pending"))
                s.commit()
            self._cleanup_pending(index)
        return not stale and not missing

    # ------------------------------------------------------------------------------------------
    def _record_failure(self, se: SeriesEntry, ep: EpisodeEntry, existing_id: int | None,
                        root: Path, error: str) -> None:
        """A file that cannot be decoded: a new one is marked failed; an indexed one that
        changed into something unreadable keeps its old frames (retried when it changes)."""
        with self.sessions() as s:
            row = s.get(Episode, existing_id) if existing_id is not None else None
            if row is not None and row.status == "indexed":
                row.error = f"update failed, keeping the earlier index: {error}"
            else:
                row = self._episode_row(s, se, ep, row, root)
                row.status, row.error = "failed", error
            s.commit()

    def _write_episode(self, episode_id: int, p: PreparedEpisode, index: Index) -> int:
        times, vectors, jpegs, descs, shots, shot_idx, duration = (
            p.times, p.vectors, p.jpegs, p.descs, p.shots, p.shot_idx, p.duration)
        with self.sessions() as s:
            shot_rows = [Shot(episode_id=episode_id, idx=i, start=a, end=b) for i, (a, b) in enumerate(shots)]
            s.add_all(shot_rows)
            s.flush()
            frames = [Frame(episode_id=episode_id, shot_id=shot_rows[int(si)].id, t=float(t),
                            oped=0, descriptor=d) for t, si, d in zip(times, shot_idx, descs, strict=True)]
            s.add_all(frames)
            s.flush()
            ids = np.asarray([f.id for f in frames], dtype=np.int64)
            ep = s.get(Episode, episode_id)
            assert ep is not None
            ep.duration = duration
            s.commit()
        index.add(ids, vectors)
        if index.regions is not None and index.region_spec is not None:
            if p.region_keys is None or p.region_vectors is None:  # prepared without regions
                self._add_regions(index, ids, np.asarray(times), np.asarray(shot_idx), jpegs.__getitem__)
            elif len(p.region_keys):
                index.regions.add(index.region_spec.region_ids(ids[p.region_keys]), p.region_vectors)
        self.framestore.write(episode_id, ids.tolist(), times, shot_idx.tolist(), jpegs, descs)
        return len(ids)

    def _add_regions(self, index: Index, ids: np.ndarray, times: np.ndarray,
                     shots: np.ndarray, jpeg: Callable[[int], bytes]) -> int:
        """Embed the region windows of an episode's keyframes into `index.regions`."""
        spec, regions = index.region_spec, index.regions
        if spec is None or regions is None or not len(ids):
            return 0
        keys, vecs = region_vectors(self.embedder, spec, times, shots, jpeg, self.batch_size)
        if len(keys):
            regions.add(spec.region_ids(ids[keys]), vecs)
        return len(keys)

    def _reembed_all(self, index: Index) -> int:
        """Embed every stored frame again (new embedder) into `index`, from the frame store."""
        n = 0
        with self.sessions() as s:
            eids = list(s.scalars(select(Episode.id).where(Episode.status == "indexed")))
        for eid in eids:
            if not self.framestore.has(eid):
                with self.sessions() as s:  # nothing stored: decode it again
                    s.execute(update(Episode).where(Episode.id == eid).values(size=None))
                    s.commit()
                continue
            try:
                ef = self.framestore.read(eid)
            except DamagedPack:  # decoded again by the next `anirec index`
                with self.sessions() as s:
                    s.execute(update(Episode).where(Episode.id == eid).values(size=None))
                    s.commit()
                continue
            arrays = [ef.thumbnail_array(i) for i in range(len(ef))]
            if arrays:
                index.add(ef.frame_ids, self.embedder.embed_arrays(np.stack(arrays), self.batch_size))
                self._add_regions(index, ef.frame_ids, ef.times, ef.shots, ef.jpeg)
            n += len(ef)
        return n

    def _flag_rules(self) -> int | None:
        """The RULES_VERSION the stored opening/ending/recap flags were computed with (None:
        unknown, e.g. flagged before versions were recorded)."""
        try:
            return int(json.loads((self.framestore.root / FLAG_RULES_FILE).read_text())["version"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _save_flag_rules(self) -> None:
        self.framestore.root.mkdir(parents=True, exist_ok=True)
        path = self.framestore.root / FLAG_RULES_FILE
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps({"version": RULES_VERSION}) + "\n")
        tmp.replace(path)

    def _update_oped(self, series_ids: set[int] | None) -> None:
        """Recompute opening/ending flags for the given series (all when None)."""
        with self.sessions() as s:
            q = select(Episode.series_id, Episode.id, Episode.duration).where(Episode.status.in_(
                ["indexed", "pending"])).order_by(Episode.season, Episode.number, Episode.id)
            rows = s.execute(q).all()
            by_series: dict[int, list[tuple[int, float]]] = {}
            for sid, eid, dur in rows:
                if series_ids is None or sid in series_ids:
                    by_series.setdefault(sid, []).append((eid, dur or 0.0))
            for eps in by_series.values():
                sigs = []
                for eid, dur in eps:
                    if self.framestore.has(eid):
                        try:
                            ef = self.framestore.read(eid)
                        except DamagedPack:
                            continue
                        sigs.append((ef, EpisodeSignature(eid, ef.times, ef.descriptors, dur)))
                flags = detect_oped([sig for _, sig in sigs])
                detect_recaps([sig for _, sig in sigs], flags)
                for ef, sig in sigs:
                    f = flags[sig.episode_id]
                    for kind in (0, 1, 2, 3):
                        ids = ef.frame_ids[f == kind].tolist()
                        for i in range(0, len(ids), 900):
                            s.execute(update(Frame).where(Frame.id.in_(ids[i:i + 900])).values(oped=kind))
            s.commit()


ProgressFactory = Callable[[], Progress]
