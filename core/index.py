"""Vector index: one `VectorIndex` interface, an hnswlib backend, and a versioned manifest.

Callers (the indexer, the recognition service) only use the `VectorIndex` protocol, so a
distributed backend can be added later without touching them.

On disk an index is a folder holding::

    manifest.json                 what built it, how, and which data files belong to it
    vectors-<version>.hnsw        the hnswlib graph and vectors
    deleted-<version>.npy         ids removed with mark_deleted (hnswlib keeps their slots)
    regions/                      optional second index of region vectors (same layout):
                                  windows of keyframes, so a crop of a frame finds its shot

Region vectors (`RegionSpec`) embed a grid of sub-windows of one keyframe per shot (more in
long shots). Their ids are ``frame_id * REGION_SLOTS + r`` in their own index, so a region
hit maps back to (frame, window) without a table and the frames' ids stay as they are.
The main manifest records the region settings; the regions are saved before it.

Every save writes new data files under fresh names (temp file, fsync, `os.replace`) and the
manifest LAST, then deletes the files of the previous version. A crash at any point
leaves the previous complete version readable; a damaged or truncated data file is caught
by the size and sha256 recorded in the manifest.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import tempfile
import threading
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import hnswlib
import numpy as np

from core.errors import IndexMismatch, IndexUnavailable

logger = logging.getLogger(__name__)

Space = Literal["ip", "cosine", "l2"]

#: Bumped when the folder layout or manifest fields change incompatibly.
FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
BACKEND = "hnswlib"
_DATA_FILE_RE = re.compile(r"^(vectors|deleted)-.+\.(hnsw|npy)$")
_HASH_CHUNK = 4 << 20
_SPACES: tuple[str, ...] = ("ip", "cosine", "l2")


#: Region ids are frame_id * REGION_SLOTS + window number (window number < REGION_SLOTS).
REGION_SLOTS = 32
REGIONS_DIR = "regions"


@dataclass(frozen=True)
class RegionSpec:
    """Which region vectors an index holds.

    A `grid` x `grid` layout of windows `window` x `window` of the frame's width and height
    (grid 3, window 0.5: half-width x half-height windows at a stride of a quarter), for
    keyframes spaced about `every_s` seconds apart inside each shot (a shot shorter than that
    gets one, at its middle).
    """

    grid: int = 3
    window: float = 0.5
    every_s: float = 2.0
    outer: float = 0.75  # > 0: also the four corner windows and the centre window of this size

    def __post_init__(self) -> None:
        if not (2 <= self.grid and self.grid * self.grid + (5 if self.outer else 0) <= REGION_SLOTS):
            raise ValueError(f"region grid must be 2..{int(REGION_SLOTS ** 0.5)}, got {self.grid}")
        if not 0.1 <= self.window < 1.0 or self.every_s <= 0 or not 0.0 <= self.outer < 1.0:
            raise ValueError("region windows must be in [0.1, 1) and every_s > 0")

    @property
    def n_windows(self) -> int:
        return self.grid * self.grid + (5 if self.outer else 0)

    def to_json(self) -> dict[str, Any]:
        return {"grid": self.grid, "window": self.window, "every_s": self.every_s, "outer": self.outer}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> RegionSpec:
        return cls(grid=int(d["grid"]), window=float(d["window"]), every_s=float(d["every_s"]),
                   outer=float(d.get("outer", 0.0)))

    def describe(self) -> str:
        return (f"{self.grid}x{self.grid} windows of {self.window:g} of the frame"
                + (f" and 5 of {self.outer:g}" if self.outer else "")
                + f", a keyframe every {self.every_s:g} s of each shot")

    def boxes(self, width: int, height: int) -> list[tuple[int, int, int, int]]:
        """The windows (x0, y0, x1, y1) of a width x height frame, row by row."""
        ww, wh = max(1, round(width * self.window)), max(1, round(height * self.window))
        out = []
        for gy in range(self.grid):
            for gx in range(self.grid):
                x = round((width - ww) * gx / (self.grid - 1))
                y = round((height - wh) * gy / (self.grid - 1))
                out.append((x, y, x + ww, y + wh))
        if self.outer:  # bigger windows for bigger crops: the four corners and the centre
            ow, oh = max(1, round(width * self.outer)), max(1, round(height * self.outer))
            for x, y in ((0, 0), (width - ow, 0), (0, height - oh), (width - ow, height - oh),
                         ((width - ow) // 2, (height - oh) // 2)):
                out.append((x, y, x + ow, y + oh))
        return out

    def keyframes(self, times: np.ndarray, shots: np.ndarray) -> np.ndarray:
        """Positions (into `times`) of the keyframes: per shot, one frame per `every_s`
        seconds, each the frame nearest the middle of its part of the shot."""
        times = np.asarray(times, np.float64)
        shots = np.asarray(shots)
        picked: list[int] = []
        for sh in np.unique(shots):
            idx = np.flatnonzero(shots == sh)
            t0, t1 = float(times[idx].min()), float(times[idx].max())
            k = max(1, int(np.ceil((t1 - t0) / self.every_s - 1e-6)))
            span = (t1 - t0) / k
            for j in range(k):
                mid = t0 + span * (j + 0.5)
                picked.append(int(idx[np.argmin(np.abs(times[idx] - mid))]))
        return np.array(sorted(set(picked)), dtype=np.int64)

    def region_ids(self, frame_ids: np.ndarray) -> np.ndarray:
        """Every region id of `frame_ids` (frame-major)."""
        f = np.asarray(frame_ids, np.int64).reshape(-1, 1)
        return (f * REGION_SLOTS + np.arange(self.n_windows, dtype=np.int64)[None, :]).reshape(-1)


def region_frame_ids(region_ids: np.ndarray) -> np.ndarray:
    """The frame id of each region id (-1 stays -1)."""
    r = np.asarray(region_ids, np.int64)
    return np.where(r >= 0, r // REGION_SLOTS, -1)


@runtime_checkable
class VectorIndex(Protocol):
    """What the rest of AniRec needs from a nearest-neighbour index.

    Vectors are float32 rows, L2-normalised by the caller; ids are non-negative int64
    (the `frames` table's vector ids). Similarities are "higher is better" (inner product /
    cosine for normalised vectors).
    """

    dim: int

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add rows; an id that is already present gets its vector replaced."""

    def remove(self, ids: Iterable[int]) -> None:
        """Remove ids; unknown ids are ignored."""

    def search(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Return (ids int64 [n, k] padded with -1, similarities float32 [n, k] padded -1.0)."""

    def save(self, folder: Path) -> None:
        """Write the index and its manifest to `folder` atomically."""

    def __len__(self) -> int:
        """Number of live (not removed) vectors."""

    @property
    def manifest(self) -> IndexManifest:
        """Describes the index as it is now (the saved state after `save`/`load`)."""


@dataclass(frozen=True)
class DataFile:
    """One file of an index folder, with what is needed to detect damage."""

    name: str
    size: int
    sha256: str


@dataclass(frozen=True)
class IndexManifest:
    """Everything needed to decide whether an index folder can be used, stored as JSON."""

    format_version: int
    backend: str
    space: str
    dim: int
    M: int
    ef_construction: int
    embedder_name: str
    embedder_version: str
    count: int  # live vectors
    created_at: str  # ISO 8601 UTC
    updated_at: str  # ISO 8601 UTC
    #: Changes on every save; reported as `index_version` in answers.
    version: str
    #: role ("vectors", "deleted") -> file; empty until the index is saved.
    files: dict[str, DataFile] = field(default_factory=dict)
    #: region settings plus the version/count of `regions/`; None: no region vectors.
    regions: dict[str, Any] | None = None

    @property
    def region_spec(self) -> RegionSpec | None:
        return RegionSpec.from_json(self.regions) if self.regions else None

    @property
    def data_file(self) -> DataFile | None:
        """The hnswlib data file, once saved."""
        return self.files.get("vectors")

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        out = asdict(self)
        out["files"] = {role: asdict(f) for role, f in self.files.items()}
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> IndexManifest:
        """Parse a manifest dict.

        Raises:
            ValueError: a field is missing or has the wrong type.
        """
        if not isinstance(data, dict):
            raise ValueError("manifest is not a JSON object")
        try:
            files = {str(role): DataFile(name=str(f["name"]), size=int(f["size"]),
                                         sha256=str(f["sha256"]))
                     for role, f in dict(data.get("files") or {}).items()}
            return cls(
                format_version=int(data["format_version"]),
                backend=str(data["backend"]),
                space=str(data["space"]),
                dim=int(data["dim"]),
                M=int(data["M"]),
                ef_construction=int(data["ef_construction"]),
                embedder_name=str(data["embedder_name"]),
                embedder_version=str(data["embedder_version"]),
                count=int(data["count"]),
                created_at=str(data["created_at"]),
                updated_at=str(data["updated_at"]),
                version=str(data["version"]),
                files=files,
                regions=dict(data["regions"]) if data.get("regions") else None,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"bad manifest field: {exc}") from None

    def describe_embedder(self) -> str:
        """E.g. ``"scene-resnet18 v3"``."""
        return f"{self.embedder_name} v{self.embedder_version}"


def _utcnow() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def read_manifest(folder: Path) -> IndexManifest:
    """Read `folder/manifest.json`.

    Args:
        folder: an index folder.

    Returns:
        The parsed manifest.

    Raises:
        IndexUnavailable: there is no manifest, or it cannot be parsed.
    """
    path = Path(folder) / MANIFEST_NAME
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise IndexUnavailable(
            f"No index in {folder} (no {MANIFEST_NAME}). Run `anirec index` first.") from None
    except OSError as exc:
        raise IndexUnavailable(f"Cannot read the index manifest {path}: {exc}") from None
    try:
        return IndexManifest.from_json(json.loads(raw))
    except ValueError as exc:  # json.JSONDecodeError is a ValueError
        raise IndexUnavailable(
            f"The index manifest {path} is corrupt ({exc}). Rebuild with `anirec index`.") from None


def _fsync_dir(folder: Path) -> None:
    # Makes the rename itself durable; not possible on every platform/filesystem.
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _commit_temp(tmp: Path, final: Path) -> DataFile:
    """fsync `tmp`, hash it, and atomically rename it to `final`."""
    h = hashlib.sha256()
    with open(tmp, "rb+") as f:
        while chunk := f.read(_HASH_CHUNK):
            h.update(chunk)
        f.flush()
        os.fsync(f.fileno())
        size = f.tell()
    os.replace(tmp, final)
    return DataFile(name=final.name, size=size, sha256=h.hexdigest())


@contextlib.contextmanager
def _temp_path(folder: Path, suffix: str) -> Iterator[Path]:
    """A fresh temp file name in `folder`, removed if the block fails before renaming it."""
    fd, name = tempfile.mkstemp(prefix=".tmp-", suffix=suffix, dir=folder)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _verify_file(folder: Path, f: DataFile, *, checksum: bool = True) -> Path:
    """Check a data file's size (and sha256 when `checksum`); return its path."""
    path = folder / f.name
    if Path(f.name).name != f.name or f.name in ("", ".", ".."):  # stay inside the folder
        raise IndexUnavailable(f"The index manifest in {folder} names a bad file: {f.name!r}")
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise IndexUnavailable(
            f"The index in {folder} is incomplete: {f.name} is missing. "
            "Rebuild with `anirec index`.") from None
    if size != f.size:
        raise IndexUnavailable(
            f"The index file {path} is damaged or truncated ({size} bytes, expected {f.size}). "
            "Rebuild with `anirec index`.")
    if checksum and _sha256_file(path) != f.sha256:
        raise IndexUnavailable(
            f"The index file {path} is corrupt (checksum mismatch). Rebuild with `anirec index`.")
    return path


class _SearchGate:
    """Reader/writer gate: searches share, writes are exclusive.

    hnswlib's `ef` is one value per index, so concurrent searches must agree on it: a
    search that needs another ef waits until the searches in flight are done.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._reader_ef: int | None = None
        self._writer = False
        self._writers_waiting = 0

    @contextlib.contextmanager
    def read(self, ef: int, set_ef: Any) -> Iterator[None]:
        with self._cond:
            while self._writer or self._writers_waiting or (
                    self._readers and self._reader_ef != ef):
                self._cond.wait()
            if self._readers == 0 and self._reader_ef != ef:
                set_ef(ef)
                self._reader_ef = ef
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if self._readers == 0:
                    self._cond.notify_all()

    @contextlib.contextmanager
    def write(self) -> Iterator[None]:
        with self._cond:
            self._writers_waiting += 1
            try:
                while self._writer or self._readers:
                    self._cond.wait()
            finally:
                self._writers_waiting -= 1
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()


class HnswIndex:
    """In-process HNSW index (hnswlib) implementing `VectorIndex`.

    Capacity grows by doubling. Removal uses hnswlib's `mark_deleted`; the freed slots are
    reused by later adds (`allow_replace_deleted`). Searches may run concurrently with
    each other; `add`, `remove` and `save` take the index exclusively.

    Args:
        dim: vector dimension.
        space: "ip" (default; inner product of normalised vectors = cosine), "cosine" or "l2".
        M: graph degree (memory ~ dim*4 + M*8 bytes per vector).
        ef_construction: build-time beam width (higher = better graph, slower build).
        embedder_name: name of the embedder that made the vectors (checked on load).
        embedder_version: its version (checked on load).
        initial_capacity: slots allocated up front; grows automatically.
        ef_search: query-time beam width; each search uses max(ef_search, k + 1).
        num_threads: threads for add/search (default 1: the bot shares the cores).
        seed: hnswlib random seed (level assignment), for reproducible builds.
    """

    def __init__(
        self,
        dim: int,
        *,
        space: Space = "ip",
        M: int = 16,
        ef_construction: int = 200,
        embedder_name: str,
        embedder_version: str,
        initial_capacity: int = 1024,
        ef_search: int = 128,
        num_threads: int = 1,
        seed: int = 100,
    ) -> None:
        if int(dim) <= 0:
            raise ValueError(f"dim must be positive, got {dim}")
        if space not in _SPACES:
            raise ValueError(f"space must be one of {_SPACES}, got {space!r}")
        if M < 2 or ef_construction < 1 or ef_search < 1 or num_threads < 1:
            raise ValueError("M >= 2, ef_construction >= 1, ef_search >= 1, num_threads >= 1")
        if not embedder_name or not embedder_version:
            raise ValueError("embedder_name and embedder_version are required")
        self.dim = int(dim)
        self.space: Space = space
        self.M = int(M)
        self.ef_construction = int(ef_construction)
        self.ef_search = int(ef_search)
        self.num_threads = int(num_threads)
        self.embedder_name = str(embedder_name)
        self.embedder_version = str(embedder_version)
        self._gate = _SearchGate()
        self._index = hnswlib.Index(space=space, dim=self.dim)
        self._index.init_index(max_elements=max(1, int(initial_capacity)), M=self.M,
                               ef_construction=self.ef_construction, random_seed=seed,
                               allow_replace_deleted=True)
        self._index.set_num_threads(self.num_threads)
        self._labels: set[int] = set()  # every id hnswlib holds, deleted ones included
        self._deleted: set[int] = set()
        self._reusable = 0  # deleted slots hnswlib can hand to new ids
        #: region vectors of keyframes (`RegionSpec`), in their own index; None: none kept.
        self.regions: HnswIndex | None = None
        self.region_spec: RegionSpec | None = None
        now = _utcnow()
        self._manifest = IndexManifest(
            format_version=FORMAT_VERSION, backend=BACKEND, space=space, dim=self.dim, M=self.M,
            ef_construction=self.ef_construction, embedder_name=self.embedder_name,
            embedder_version=self.embedder_version, count=0, created_at=now, updated_at=now,
            version=f"{self.embedder_version}-0-unsaved",
        )

    def enable_regions(self, spec: RegionSpec) -> None:
        """Start an (empty) region index with the given settings."""
        self.region_spec = spec
        self.regions = HnswIndex(self.dim, space=self.space, M=self.M,
                                 ef_construction=self.ef_construction,
                                 embedder_name=self.embedder_name,
                                 embedder_version=self.embedder_version,
                                 ef_search=self.ef_search, num_threads=self.num_threads)

    # ------------------------------------------------------------------ properties
    def __len__(self) -> int:
        return len(self._labels) - len(self._deleted)

    def __contains__(self, id_: object) -> bool:
        return isinstance(id_, (int, np.integer)) and int(id_) in self._labels \
            and int(id_) not in self._deleted

    def __repr__(self) -> str:
        return (f"HnswIndex(dim={self.dim}, space={self.space!r}, count={len(self)}, "
                f"capacity={self.capacity}, embedder={self.embedder_name!r} "
                f"v{self.embedder_version})")

    @property
    def capacity(self) -> int:
        """Allocated slots (live + deleted + free)."""
        return int(self._index.get_max_elements())

    @property
    def manifest(self) -> IndexManifest:
        """The manifest of the last save/load (or of the new index), with the live count."""
        return replace(self._manifest, count=len(self))

    @property
    def version(self) -> str:
        """The `index_version` reported in answers (changes on every save)."""
        return self._manifest.version

    def ids(self) -> np.ndarray:
        """All live ids, sorted (int64)."""
        return np.array(sorted(self._labels - self._deleted), dtype=np.int64)

    def vectors(self, ids: np.ndarray) -> np.ndarray:
        """The stored vectors of live `ids` (float32 [n, dim]); KeyError for an unknown id.

        Used to verify candidates exactly (every frame around a hit, not only the
        neighbours the graph returned).
        """
        arr = self._check_ids(ids)
        missing = [int(i) for i in arr if int(i) not in self._labels or int(i) in self._deleted]
        if missing:
            raise KeyError(f"ids not in the index: {missing[:5]}")
        if arr.size == 0:
            return np.zeros((0, self.dim), np.float32)
        with self._gate.read(self.ef_search, self._index.set_ef):
            out = np.asarray(self._index.get_items(arr.tolist()), dtype=np.float32)
        if self.space == "cosine":
            out /= np.linalg.norm(out, axis=1, keepdims=True) + 1e-12
        return out

    # ------------------------------------------------------------------ validation
    def _check_vectors(self, vectors: np.ndarray) -> np.ndarray:
        v = np.asarray(vectors)
        if v.ndim == 1:
            v = v[None, :]
        if v.ndim != 2 or v.shape[1] != self.dim:
            raise ValueError(f"vectors must have shape [n, {self.dim}], got {np.shape(vectors)}")
        v = np.ascontiguousarray(v, dtype=np.float32)
        if not np.isfinite(v).all():
            raise ValueError("vectors contain NaN or infinity")
        return v

    @staticmethod
    def _check_ids(ids: Any) -> np.ndarray:
        arr = np.asarray(ids)
        if arr.size and not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(f"ids must be integers, got dtype {arr.dtype}")
        arr = arr.astype(np.int64, copy=False).reshape(-1)
        if arr.size and arr.min() < 0:
            raise ValueError("ids must be >= 0 (-1 marks an empty result slot)")
        return arr

    # ------------------------------------------------------------------ writes
    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add vectors; an id that already exists (even a removed one) gets the new vector.

        Args:
            ids: int64 [n], non-negative.
            vectors: float32 [n, dim], L2-normalised by the caller.

        Raises:
            ValueError: shapes, dtypes or values are wrong.
        """
        id_arr = self._check_ids(ids)
        vecs = self._check_vectors(vectors)
        if len(id_arr) != len(vecs):
            raise ValueError(f"{len(id_arr)} ids for {len(vecs)} vectors")
        if not len(id_arr):
            return
        # Within one batch the last vector of a repeated id wins.
        _, last = np.unique(id_arr[::-1], return_index=True)
        if len(last) != len(id_arr):
            keep = np.sort(len(id_arr) - 1 - last)
            id_arr, vecs = id_arr[keep], vecs[keep]
        with self._gate.write():
            present = np.fromiter((int(i) in self._labels for i in id_arr), dtype=bool,
                                  count=len(id_arr))
            # Revive removed ids in place first: hnswlib refuses to update a deleted element
            # when slot reuse is on, and reusing another slot for an id that still has one
            # would leave two entries for it.
            for j in np.flatnonzero(present).tolist():
                i = int(id_arr[j])
                if i in self._deleted:
                    try:
                        self._index.unmark_deleted(i)
                        self._reusable -= 1
                    except RuntimeError:  # its slot was reused by another id: add it anew
                        self._labels.discard(i)
                        present[j] = False
                    self._deleted.discard(i)
            old_ids, old_vecs = id_arr[present], vecs[present]
            new_ids, new_vecs = id_arr[~present], vecs[~present]
            if len(old_ids):
                self._index.add_items(old_vecs, old_ids, num_threads=self.num_threads,
                                      replace_deleted=False)
            if len(new_ids):
                self._reserve(len(new_ids))
                self._index.add_items(new_vecs, new_ids, num_threads=self.num_threads,
                                      replace_deleted=True)
                # The reused slots' old (removed) ids are gone from hnswlib now; which ones
                # is not observable cheaply, so `_deleted` may hold a few stale ids until
                # the next save reconciles it. Counts stay right: stale ids are in both sets.
                self._reusable -= min(len(new_ids), self._reusable)
                self._labels.update(new_ids.tolist())
            logger.debug("added %d vectors (%d replaced); %d live", len(id_arr), len(old_ids),
                         len(self))

    def _reserve(self, n_new: int) -> None:
        # New ids fill deleted slots first (replace_deleted), then fresh ones.
        needed = int(self._index.element_count) + max(0, n_new - self._reusable)
        cap = self.capacity
        if needed > cap:
            new_cap = max(needed, 2 * cap)
            logger.debug("growing index capacity %d -> %d", cap, new_cap)
            self._index.resize_index(new_cap)

    def remove(self, ids: Iterable[int]) -> None:
        """Remove ids; ids that are unknown or already removed are ignored.

        Args:
            ids: the ids to remove.
        """
        id_arr = self._check_ids(np.fromiter((int(i) for i in ids), dtype=np.int64))
        if self.regions is not None and self.region_spec is not None and id_arr.size:
            self.regions.remove(self.region_spec.region_ids(id_arr))  # a frame's regions go too
        with self._gate.write():
            n = 0
            for i in set(id_arr.tolist()):
                if i in self._labels and i not in self._deleted:
                    self._index.mark_deleted(i)
                    self._deleted.add(i)
                    self._reusable += 1
                    n += 1
            logger.debug("removed %d of %d ids; %d live", n, len(id_arr), len(self))

    # ------------------------------------------------------------------ search
    def search(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Find the k nearest stored vectors of each query row.

        Args:
            vectors: float32 [n, dim] (or [dim]), L2-normalised.
            k: neighbours per row (>= 1). More than the live count is allowed; the rest is
                padding.

        Returns:
            ids int64 [n, k] (-1 where there is no neighbour) and similarities float32
            [n, k], best first (-1.0 on padding).

        Raises:
            ValueError: bad shape or k.
        """
        if int(k) < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        k = int(k)
        q = self._check_vectors(vectors)
        n = len(q)
        out_ids = np.full((n, k), -1, dtype=np.int64)
        out_sim = np.full((n, k), -1.0, dtype=np.float32)
        ef = max(self.ef_search, k + 1)
        with self._gate.read(ef, self._index.set_ef):
            live = len(self)
            k_eff = min(k, live)
            if n == 0 or k_eff == 0:
                return out_ids, out_sim
            try:
                labels, dist = self._index.knn_query(q, k=k_eff, num_threads=self.num_threads)
                out_ids[:, :k_eff] = labels.astype(np.int64, copy=False)
                out_sim[:, :k_eff] = self._to_similarity(dist)
            except RuntimeError:
                # hnswlib could not find k_eff live neighbours for some row (small index
                # with many deletions). Fall back row by row with smaller k.
                for r in range(n):
                    self._search_row(q[r:r + 1], k_eff, out_ids[r], out_sim[r])
        return out_ids, out_sim

    def _search_row(self, q: np.ndarray, k: int, ids_row: np.ndarray,
                    sim_row: np.ndarray) -> None:
        while k >= 1:
            try:
                labels, dist = self._index.knn_query(q, k=k, num_threads=1)
            except RuntimeError:
                k //= 2
                continue
            ids_row[:k] = labels[0].astype(np.int64, copy=False)
            sim_row[:k] = self._to_similarity(dist[0])
            return

    def _to_similarity(self, dist: np.ndarray) -> np.ndarray:
        d = np.asarray(dist, dtype=np.float32)
        if self.space == "l2":  # squared L2 of unit vectors = 2 - 2 cos
            return 1.0 - d / 2.0
        return 1.0 - d  # hnswlib's ip/cosine distance is 1 - dot

    # ------------------------------------------------------------------ persistence
    def save(self, folder: Path) -> None:
        """Write the index to `folder` atomically (data files first, manifest last).

        Args:
            folder: the index folder (created if missing).

        Raises:
            OSError: the folder cannot be written (the previous version stays intact).
        """
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        regions: dict[str, Any] | None = None
        if self.regions is not None and self.region_spec is not None:
            self.regions.save(folder / REGIONS_DIR)  # before the manifest that names it
            regions = {**self.region_spec.to_json(), "version": self.regions.version,
                       "count": len(self.regions)}
        with self._gate.write():
            if self._deleted:  # drop removed ids whose slots were reused (see `add`)
                held = set(np.asarray(self._index.get_ids_list(), dtype=np.int64).tolist())
                stale = self._deleted - held
                self._deleted -= stale
                self._labels -= stale
            count = len(self)
            version = f"{self.embedder_version}-{count}-{uuid.uuid4().hex[:8]}"
            files: dict[str, DataFile] = {}
            with _temp_path(folder, ".hnsw") as tmp:
                self._index.save_index(str(tmp))
                files["vectors"] = _commit_temp(tmp, folder / f"vectors-{version}.hnsw")
            with _temp_path(folder, ".npy") as tmp:
                with open(tmp, "wb") as f:
                    np.save(f, np.array(sorted(self._deleted), dtype=np.int64))
                files["deleted"] = _commit_temp(tmp, folder / f"deleted-{version}.npy")
            manifest = replace(self._manifest, count=count, updated_at=_utcnow(),
                               version=version, files=files, regions=regions)
            with _temp_path(folder, ".json") as tmp:
                tmp.write_text(json.dumps(manifest.to_json(), indent=2) + "\n", encoding="utf-8")
                _commit_temp(tmp, folder / MANIFEST_NAME)
            _fsync_dir(folder)
            self._manifest = manifest
            self._remove_stale_files(folder, keep={f.name for f in files.values()})
        logger.info("saved index %s (%d vectors) to %s", version, count, folder)

    @staticmethod
    def _remove_stale_files(folder: Path, keep: set[str]) -> None:
        for p in folder.iterdir():
            stale_data = _DATA_FILE_RE.match(p.name) and p.name not in keep
            if stale_data or p.name.startswith(".tmp-"):
                with contextlib.suppress(OSError):
                    p.unlink()

    @classmethod
    def load(
        cls,
        folder: Path,
        *,
        embedder_name: str,
        embedder_version: str,
        dim: int,
        ef_search: int = 128,
        num_threads: int = 1,
        verify: bool = True,
        regions: RegionSpec | None | Any = ...,
    ) -> HnswIndex:
        """Load an index folder written by `save`, refusing one built by another embedder.

        Args:
            folder: the index folder.
            embedder_name: name of the embedder the caller will query with.
            embedder_version: its version.
            dim: its output dimension.
            ef_search: query-time beam width.
            num_threads: threads for add/search.
            verify: check the data files' sha256 (the size is always checked).
            regions: the region settings the caller expects (None: no regions); a
                different setting in the manifest is refused. Omitted: accept what is there.

        Returns:
            The loaded index.

        Raises:
            IndexUnavailable: no index, or it is incomplete, truncated or corrupt.
            IndexMismatch: built by another embedder/version/dimension, or another backend
                or format; the message says to re-embed.
        """
        folder = Path(folder)
        m = read_manifest(folder)
        if m.backend != BACKEND or m.format_version != FORMAT_VERSION:
            raise IndexMismatch(
                f"The index in {folder} is a {m.backend} index of format {m.format_version}; "
                f"this AniRec reads {BACKEND} format {FORMAT_VERSION}. "
                "Run `anirec index --reembed` to rebuild it.")
        if (m.embedder_name, m.embedder_version, m.dim) != (
                embedder_name, str(embedder_version), int(dim)):
            raise IndexMismatch(
                f"The index in {folder} was built by embedder {m.describe_embedder()} "
                f"(dim {m.dim}), but the current embedder is {embedder_name} "
                f"v{embedder_version} (dim {dim}). Run `anirec index --reembed` to rebuild it.")
        if m.space not in _SPACES:
            raise IndexUnavailable(f"The index manifest in {folder} names an unknown space "
                                   f"{m.space!r}.")
        try:
            have = m.region_spec
        except (KeyError, TypeError, ValueError) as exc:
            raise IndexUnavailable(f"The index manifest in {folder} has bad region settings "
                                   f"({exc}). Rebuild with `anirec index --reembed`.") from None
        if regions is not ... and have != regions:
            def say(r: RegionSpec | None) -> str:
                return f"region vectors ({r.describe()})" if r is not None else "no region vectors"
            raise IndexMismatch(
                f"The index in {folder} was built with {say(have)}, but the settings ask for "
                f"{say(regions)} (ANIREC_INDEX_REGIONS). Run `anirec index --reembed` to "
                "rebuild it with the current settings.")
        vec_file, del_file = m.files.get("vectors"), m.files.get("deleted")
        if vec_file is None or del_file is None:
            raise IndexUnavailable(f"The index manifest in {folder} lists no data files. "
                                   "Rebuild with `anirec index`.")
        vec_path = _verify_file(folder, vec_file, checksum=verify)
        del_path = _verify_file(folder, del_file, checksum=verify)
        space: Space = m.space  # type: ignore[assignment]  # checked against _SPACES above
        index = cls(m.dim, space=space, M=m.M, ef_construction=m.ef_construction,
                   embedder_name=m.embedder_name, embedder_version=m.embedder_version,
                   initial_capacity=1, ef_search=ef_search, num_threads=num_threads)
        try:
            deleted = np.load(del_path, allow_pickle=False)
            idx = hnswlib.Index(space=m.space, dim=m.dim)
            idx.load_index(str(vec_path), allow_replace_deleted=True)
        except (OSError, ValueError, RuntimeError) as exc:
            raise IndexUnavailable(f"Cannot read the index in {folder}: {exc}. "
                                   "Rebuild with `anirec index`.") from None
        idx.set_num_threads(num_threads)
        index._index = idx
        index._labels = set(np.asarray(idx.get_ids_list(), dtype=np.int64).tolist())
        index._deleted = set(np.asarray(deleted, dtype=np.int64).reshape(-1).tolist())
        index._reusable = len(index._deleted)
        if not index._deleted <= index._labels or len(index) != m.count:
            raise IndexUnavailable(
                f"The index in {folder} is inconsistent ({len(index)} live vectors, manifest "
                f"says {m.count}). Rebuild with `anirec index`.")
        index._manifest = m
        if have is not None:
            index.region_spec = have
            index.regions = cls.load(folder / REGIONS_DIR, embedder_name=embedder_name,
                                     embedder_version=embedder_version, dim=dim,
                                     ef_search=ef_search, num_threads=num_threads, verify=verify)
            if index.regions.version != m.regions.get("version"):  # type: ignore[union-attr]
                # saved after the regions and before this manifest: a crash in between. The
                # regions are then the newer save; the indexer's clean-up reconciles them.
                logger.warning("region index %s is not the one the manifest names (%s)",
                               index.regions.version, m.regions.get("version"))  # type: ignore[union-attr]
        logger.info("loaded index %s (%d vectors, %s%s) from %s", m.version, m.count,
                    m.describe_embedder(),
                    f", {len(index.regions)} region vectors" if index.regions is not None else "",
                    folder)
        return index


def open_index(
    folder: Path,
    *,
    embedder_name: str,
    embedder_version: str,
    dim: int,
    create: bool = True,
    regions: RegionSpec | None | Any = ...,
    **options: Any,
) -> HnswIndex:
    """Load the index in `folder`, or start an empty one when the folder has none.

    Meant for the indexer: a damaged or mismatched index is still an error (rebuild on
    purpose with ``--reembed``), only a missing one is created.

    Args:
        folder: the index folder.
        embedder_name: the embedder's name.
        embedder_version: the embedder's version.
        dim: the embedder's output dimension.
        create: return a new empty index when there is none (otherwise raise).
        regions: the region settings wanted (None: none); an existing index built with
            other settings is refused (IndexMismatch). Omitted: whatever the index has.
        **options: passed to `HnswIndex` (space, M, ef_construction, initial_capacity,
            ef_search, num_threads); options fixed by an existing index are ignored.

    Returns:
        The loaded or new index.

    Raises:
        IndexUnavailable: the index is damaged, or missing and `create` is false.
        IndexMismatch: the index was built by another embedder.
    """
    folder = Path(folder)
    if create and not (folder / MANIFEST_NAME).exists():
        logger.info("no index in %s; starting an empty one", folder)
        index = HnswIndex(dim, embedder_name=embedder_name, embedder_version=embedder_version,
                          **options)
        if isinstance(regions, RegionSpec):
            index.enable_regions(regions)
        return index
    load_opts = {k: v for k, v in options.items() if k in ("ef_search", "num_threads")}
    return HnswIndex.load(folder, embedder_name=embedder_name, regions=regions,
                          embedder_version=embedder_version, dim=dim, **load_opts)
