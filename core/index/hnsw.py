"""`HnswIndex`: the in-process hnswlib backend of `VectorIndex`, with optional region vectors.

On disk an index is a folder holding::

    manifest.json                 what built it, how, and which data files belong to it
    vectors-<version>.hnsw        the hnswlib graph and vectors
    deleted-<version>.npy         ids removed with mark_deleted (hnswlib keeps their slots)
    regions/                      optional second index of region vectors (same layout):
                                  windows of keyframes, so a crop of a frame finds its shot

The main manifest records the region settings; the regions are saved before it.
"""

from __future__ import annotations

import errno
import logging
import uuid
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from types import EllipsisType
from typing import Literal

import hnswlib
import numpy as np
import numpy.typing as npt

from core.errors import IndexMismatch, IndexUnavailable
from core.index.checks import check_ids, check_vectors
from core.index.compact import COMPACT_BACKEND, CompactIndex
from core.index.gate import SearchGate
from core.index.manifest import (
    BACKEND,
    FORMAT_VERSION,
    DataFile,
    IndexManifest,
    ManifestRegions,
    check_embedder,
    commit_temp,
    read_manifest,
    remove_stale_files,
    temp_path,
    utcnow,
    verify_file,
    write_manifest,
)
from core.index.regions import REGIONS_DIR, RegionSpec

logger = logging.getLogger("core.index")  # the package's logger, whichever backend logs

Space = Literal["ip", "cosine", "l2"]
SPACES: tuple[str, ...] = ("ip", "cosine", "l2")

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
        if space not in SPACES:
            raise ValueError(f"space must be one of {SPACES}, got {space!r}")
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
        self._gate = SearchGate()
        self._index = hnswlib.Index(space=space, dim=self.dim)
        self._index.init_index(max_elements=max(1, int(initial_capacity)), M=self.M,
                               ef_construction=self.ef_construction, random_seed=seed,
                               allow_replace_deleted=True)
        self._index.set_num_threads(self.num_threads)
        self._labels: set[int] = set()  # every id hnswlib holds, deleted ones included
        self._deleted: set[int] = set()
        self._reusable = 0  # deleted slots hnswlib can hand to new ids
        #: region vectors of keyframes (`RegionSpec`), in their own index (compact codes;
        #: an index saved before them holds an `HnswIndex` until `anirec index` converts
        #: it, see `compact_regions`); None: none kept.
        self.regions: CompactIndex | HnswIndex | None = None
        self.region_spec: RegionSpec | None = None
        now = utcnow()
        self._manifest = IndexManifest(
            format_version=FORMAT_VERSION, backend=BACKEND, space=space, dim=self.dim, M=self.M,
            ef_construction=self.ef_construction, embedder_name=self.embedder_name,
            embedder_version=self.embedder_version, count=0, created_at=now, updated_at=now,
            version=f"{self.embedder_version}-0-unsaved",
        )

    def enable_regions(self, spec: RegionSpec) -> None:
        """Start an (empty) region index with the given settings (compact codes)."""
        self.region_spec = spec
        self.regions = CompactIndex(self.dim, embedder_name=self.embedder_name,
                                    embedder_version=self.embedder_version,
                                    num_threads=self.num_threads)

    def compact_regions(self) -> bool:
        """Convert region vectors kept in full (an `HnswIndex`, as saved before compact
        codes) into a `CompactIndex` holding the same vectors; True when converted. The
        caller saves the index afterwards."""
        old = self.regions
        if not isinstance(old, HnswIndex):
            return False
        new = CompactIndex(self.dim, embedder_name=self.embedder_name,
                           embedder_version=self.embedder_version, num_threads=self.num_threads)
        ids = old.ids()
        for i in range(0, len(ids), 100_000):
            new.add(ids[i:i + 100_000], old.vectors(ids[i:i + 100_000]))
        self.regions = new
        logger.warning("converted %d region vectors from full hnswlib vectors to compact %s "
                       "(the full vectors move to disk once saved)", len(ids),
                       f"codes of {new.pq_m} bytes" if new.quantised else "rows, searched exactly")
        return True

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
        return check_vectors(vectors, self.dim)

    @staticmethod
    def _check_ids(ids: npt.ArrayLike) -> np.ndarray:
        return check_ids(ids)

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
        regions: ManifestRegions | None = None
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
            files = self._write_data_files(folder, version)
            manifest = replace(self._manifest, count=count, updated_at=utcnow(),
                               version=version, files=files, regions=regions)
            write_manifest(folder, manifest)
            self._manifest = manifest
            remove_stale_files(folder, keep={f.name for f in files.values()})
        logger.info("saved index %s (%d vectors) to %s", version, count, folder)

    def _write_data_files(self, folder: Path, version: str) -> dict[str, DataFile]:
        """The graph and the removed ids under this version's names (caller holds the gate)."""
        files: dict[str, DataFile] = {}
        with temp_path(folder, ".hnsw") as tmp:
            self._index.save_index(str(tmp))
            # hnswlib's writer does not report a failed write: a full disk or a file-size
            # limit leaves a short file that would be committed with its own checksum.
            expected, written = int(self._index.index_file_size()), tmp.stat().st_size
            if written != expected:
                raise OSError(errno.ENOSPC, f"the index file was written short ({written} of {expected} "
                              "bytes): the disk is full or a file-size limit was hit; the previous "
                              "index is unchanged")
            files["vectors"] = commit_temp(tmp, folder / f"vectors-{version}.hnsw")
        with temp_path(folder, ".npy") as tmp:
            with open(tmp, "wb") as f:
                np.save(f, np.array(sorted(self._deleted), dtype=np.int64))
            files["deleted"] = commit_temp(tmp, folder / f"deleted-{version}.npy")
        return files

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
        regions: RegionSpec | None | EllipsisType = ...,
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
        _check_builder(folder, m, embedder_name, str(embedder_version), int(dim))
        have = _check_regions(folder, m, regions)
        index = cls._load_data(folder, m, ef_search=ef_search, num_threads=num_threads,
                               verify=verify)
        if have is not None:
            index.region_spec = have
            index.regions = _load_regions(folder / REGIONS_DIR, embedder_name=embedder_name,
                                          embedder_version=embedder_version, dim=dim,
                                          ef_search=ef_search, num_threads=num_threads,
                                          verify=verify)
            named = m.regions.get("version") if m.regions is not None else None
            if index.regions.version != named:
                # saved after the regions and before this manifest: a crash in between. The
                # regions are then the newer save; the indexer's clean-up reconciles them.
                logger.warning("region index %s is not the one the manifest names (%s)",
                               index.regions.version, named)
        logger.info("loaded index %s (%d vectors, %s%s) from %s", m.version, m.count,
                    m.describe_embedder(),
                    f", {len(index.regions)} region vectors" if index.regions is not None else "",
                    folder)
        return index

    @classmethod
    def _load_data(cls, folder: Path, m: IndexManifest, *, ef_search: int, num_threads: int,
                   verify: bool) -> HnswIndex:
        """The index (without regions) from the data files `m` names, checked against it."""
        vec_file, del_file = m.files.get("vectors"), m.files.get("deleted")
        if vec_file is None or del_file is None:
            raise IndexUnavailable(f"The index manifest in {folder} lists no data files. "
                                   "Rebuild with `anirec index`.")
        vec_path = verify_file(folder, vec_file, checksum=verify)
        del_path = verify_file(folder, del_file, checksum=verify)
        space: Space = m.space  # type: ignore[assignment]  # checked against SPACES before
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
        return index


def _load_regions(folder: Path, *, embedder_name: str, embedder_version: str, dim: int,
                  ef_search: int, num_threads: int, verify: bool) -> CompactIndex | HnswIndex:
    """The region index in `folder`: compact codes, or (saved before them) a full hnswlib
    index, loaded as it is with a note that `anirec index` converts it."""
    backend = read_manifest(folder).backend
    if backend == COMPACT_BACKEND:
        return CompactIndex.load(folder, embedder_name=embedder_name,
                                 embedder_version=embedder_version, dim=dim,
                                 num_threads=num_threads, verify=verify)
    old = HnswIndex.load(folder, embedder_name=embedder_name, embedder_version=embedder_version,
                         dim=dim, ef_search=ef_search, num_threads=num_threads, verify=verify)
    logger.warning("the region vectors in %s are kept in full (%d of them, ~1.2 KB each in "
                   "memory); the next `anirec index` converts them to compact codes (~60 B)",
                   folder, len(old))
    return old


def _check_builder(folder: Path, m: IndexManifest, embedder_name: str, embedder_version: str,
                   dim: int) -> None:
    """Refuse an index of another backend, format, embedder or space."""
    if m.backend != BACKEND or m.format_version != FORMAT_VERSION:
        raise IndexMismatch(
            f"The index in {folder} is a {m.backend} index of format {m.format_version}; "
            f"this AniRec reads {BACKEND} format {FORMAT_VERSION}. "
            "Run `anirec index --reembed` to rebuild it.")
    check_embedder(folder, m, embedder_name, embedder_version, dim)
    if m.space not in SPACES:
        raise IndexUnavailable(f"The index manifest in {folder} names an unknown space "
                               f"{m.space!r}.")


def _check_regions(folder: Path, m: IndexManifest,
                   wanted: RegionSpec | None | EllipsisType) -> RegionSpec | None:
    """The manifest's region settings, refused when they are not the `wanted` ones."""
    try:
        have = m.region_spec
    except (KeyError, TypeError, ValueError) as exc:
        raise IndexUnavailable(f"The index manifest in {folder} has bad region settings "
                               f"({exc}). Rebuild with `anirec index --reembed`.") from None
    if wanted is not ... and have != wanted:
        def say(r: RegionSpec | None | EllipsisType) -> str:
            return (f"region vectors ({r.describe()})" if isinstance(r, RegionSpec)
                    else "no region vectors")
        raise IndexMismatch(
            f"The index in {folder} was built with {say(have)}, but the settings ask for "
            f"{say(wanted)} (ANIREC_INDEX_REGIONS). Run `anirec index --reembed` to "
            "rebuild it with the current settings.")
    return have
