"""`CompactIndex`: a `VectorIndex` that keeps only product-quantised codes in memory (FAISS
IVF-PQ) and re-ranks its candidates exactly from the full vectors on disk.

Made for the region vectors (3-4 per frame): hnswlib keeps every vector in float32 plus its
graph (~1.2 KB each); the IVF-PQ codes are `pq_m` bytes plus an 8-byte id, and the full
float32 vectors stay in a memory-mapped file that a search reads only for its candidates
(`rerank` x k rows per query vector). A small index (fewer than `train_min` vectors) is not
quantised at all: it is searched exactly, from the same full vectors, until it grows.

On disk (a folder, like `HnswIndex`'s)::

    manifest.json                 backend "faiss-ivfpq", pq_m in M, nlist in ef_construction
    vectors-<version>.npy         float32 [n, dim], rows sorted by id
    ids-<version>.npy             int64 [n], sorted
    codes-<version>.faiss         the trained IVF-PQ index (absent while exact)
"""

from __future__ import annotations

import logging
import math
import os
import uuid
from collections.abc import Iterable
from contextlib import AbstractContextManager
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import IndexMismatch, IndexUnavailable
from core.index.gate import SearchGate
from core.index.manifest import (
    FORMAT_VERSION,
    DataFile,
    IndexManifest,
    check_embedder,
    commit_temp,
    read_manifest,
    remove_stale_files,
    temp_path,
    utcnow,
    verify_file,
    write_manifest,
)

logger = logging.getLogger("core.index")

COMPACT_BACKEND = "faiss-ivfpq"
#: vectors below which a compact index stays exact (no codes); the environment's
#: ANIREC_COMPACT_TRAIN_MIN overrides it (an evaluation quantises the sample library with it)
TRAIN_MIN = 16_384


def train_min_default() -> int:
    """`TRAIN_MIN`, or ANIREC_COMPACT_TRAIN_MIN when set (read when an index is made)."""
    return max(256, int(os.environ.get("ANIREC_COMPACT_TRAIN_MIN", TRAIN_MIN)))


def _faiss() -> Any:
    """faiss, imported on first use (an index without compact vectors never needs it)."""
    try:
        import faiss
    except ImportError:  # pragma: no cover - faiss-cpu is a default dependency
        raise IndexUnavailable("The compact region index needs faiss-cpu "
                               "(`pip install faiss-cpu`).") from None
    return faiss


class CompactIndex:
    """IVF-PQ codes in memory, exact re-ranking from memory-mapped full vectors.

    Args:
        dim: vector dimension (a multiple of `pq_m`).
        embedder_name / embedder_version: what made the vectors (checked on load).
        pq_m: bytes of code per vector (sub-quantisers of 8 bits); None: 32, or the
            largest divisor of a dim it does not divide.
        nprobe: inverted lists searched per query (of nlist = 2 sqrt(n), 64..4096).
        rerank: candidates taken from the codes per neighbour asked, re-ranked exactly.
        train_min: below this many vectors the index is exact (no codes); None:
            `train_min_default()`.
        num_threads: threads for faiss (1: the bot shares the cores).
    """

    def __init__(self, dim: int, *, embedder_name: str, embedder_version: str,
                 pq_m: int | None = None,
                 nprobe: int = 24, rerank: int = 4, train_min: int | None = None,
                 num_threads: int = 1, space: str = "ip") -> None:
        if pq_m is None and dim > 0:  # 32 bytes, or the largest divisor of a smaller dim
            pq_m = next(m for m in range(min(32, dim), 0, -1) if dim % m == 0)
        if pq_m is None or dim <= 0 or pq_m <= 0 or dim % pq_m:
            raise ValueError(f"dim ({dim}) must be a positive multiple of pq_m ({pq_m})")
        train_min = train_min_default() if train_min is None else train_min
        if nprobe < 1 or rerank < 1 or train_min < 256 or num_threads < 1:
            raise ValueError("nprobe >= 1, rerank >= 1, train_min >= 256, num_threads >= 1")
        if space != "ip":
            raise ValueError("the compact index searches inner products only")
        self.dim, self.pq_m, self.nprobe, self.rerank = int(dim), int(pq_m), int(nprobe), int(rerank)
        self.train_min, self.num_threads = int(train_min), int(num_threads)
        self.space = space
        self.embedder_name, self.embedder_version = embedder_name, embedder_version
        self._gate = SearchGate()
        # rows: the saved ones (sorted by id; memory-mapped once saved or loaded), then the
        # ones added since, in a growing buffer found through a dict (only while indexing)
        self._ids = np.zeros(0, np.int64)
        self._vecs: np.ndarray = np.zeros((0, self.dim), np.float32)
        self._alive = np.zeros(0, bool)
        self._add_ids = np.zeros(0, np.int64)
        self._add_vecs = np.zeros((0, self.dim), np.float32)
        self._add_alive = np.zeros(0, bool)
        self._add_n = 0
        self._add_row: dict[int, int] = {}
        self._codes: Any = None  # the faiss IndexIVFPQ once trained
        self._trained_on = 0
        now = utcnow()
        self._manifest = IndexManifest(
            format_version=FORMAT_VERSION, backend=COMPACT_BACKEND, space=space, dim=self.dim,
            M=self.pq_m, ef_construction=0, embedder_name=embedder_name,
            embedder_version=embedder_version, count=0, created_at=now, updated_at=now,
            version=f"{embedder_version}-0-unsaved")

    @classmethod
    def from_rows(cls, ids: np.ndarray, vectors: np.ndarray, **kwargs: Any) -> CompactIndex:
        """An index over `vectors` [n, dim] (a memory-mapped array is read in chunks, never
        copied whole) with strictly increasing `ids`; trained when n >= train_min."""
        ids = np.asarray(ids, np.int64)
        if vectors.ndim != 2 or len(ids) != len(vectors) or (np.diff(ids) <= 0).any():
            raise ValueError("from_rows takes strictly increasing ids, one per vector row")
        index = cls(int(vectors.shape[1]), **kwargs)
        index._ids, index._vecs, index._alive = ids, vectors, np.ones(len(ids), bool)
        if len(ids) >= index.train_min:
            with index._gate.write():
                index._train()
        return index

    # ------------------------------------------------------------------ rows
    def _rows(self, ids: np.ndarray) -> np.ndarray:
        """The live row of each id (-1: none); rows past the saved ones are added ones."""
        ids = np.asarray(ids, np.int64).reshape(-1)
        out = np.full(len(ids), -1, np.int64)
        nb = len(self._ids)
        if nb:
            pos = np.clip(np.searchsorted(self._ids, ids), 0, nb - 1)
            ok = (self._ids[pos] == ids) & self._alive[pos]
            out[ok] = pos[ok]
        if self._add_row:
            for j, i in enumerate(ids.tolist()):
                r = self._add_row.get(i)
                if r is not None:
                    out[j] = nb + r
        return out

    def _rows_ids(self, rows: np.ndarray) -> np.ndarray:
        nb = len(self._ids)
        return np.where(rows < nb, self._ids[np.minimum(rows, max(nb - 1, 0))] if nb else -1,
                        self._add_ids[np.clip(rows - nb, 0, max(self._add_n - 1, 0))]
                        if self._add_n else -1)

    def _rows_vecs(self, rows: np.ndarray) -> np.ndarray:
        """float32 [len(rows), dim] (rows sorted ascending read the file in order)."""
        nb = len(self._ids)
        out = np.empty((len(rows), self.dim), np.float32)
        base = rows < nb
        if base.any():
            out[base] = self._vecs[rows[base]]
        if (~base).any():
            out[~base] = self._add_vecs[rows[~base] - nb]
        return out

    def _live_rows(self) -> np.ndarray:
        nb = len(self._ids)
        return np.concatenate([np.flatnonzero(self._alive),
                               nb + np.flatnonzero(self._add_alive[:self._add_n])])

    def __len__(self) -> int:
        return int(self._alive.sum()) + len(self._add_row)

    def ids(self) -> np.ndarray:
        """All live ids, sorted (int64)."""
        return np.sort(self._rows_ids(self._live_rows()))

    @property
    def manifest(self) -> IndexManifest:
        return replace(self._manifest, count=len(self))

    @property
    def version(self) -> str:
        return self._manifest.version

    @property
    def quantised(self) -> bool:
        """Whether searches go through the codes (False: exact, a small index)."""
        return self._codes is not None

    def memory_bytes(self) -> int:
        """What a search keeps in memory: the codes with their ids, the coarse centroids and
        codebooks, the saved rows' ids and flags (the full vectors are memory-mapped and read
        per candidate; rows added since the last save are in memory until it)."""
        rows = len(self._ids) * (8 + 1) + self._add_n * (8 + 1 + 4 * self.dim + 100)
        if self._codes is None:
            return rows
        return (rows + int(self._codes.ntotal) * (self.pq_m + 8)
                + int(self._codes.nlist) * self.dim * 4 + 256 * self.dim * 4)

    # ------------------------------------------------------------------ writes
    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add rows; an id already present gets its vector replaced."""
        ids = np.asarray(ids, np.int64).reshape(-1)
        v = np.ascontiguousarray(np.asarray(vectors, np.float32))
        if v.ndim != 2 or v.shape != (len(ids), self.dim):
            raise ValueError(f"vectors must have shape [{len(ids)}, {self.dim}], "
                             f"got {np.shape(vectors)}")
        if ids.size and ids.min() < 0:
            raise ValueError("ids must be >= 0 (-1 marks an empty result slot)")
        if not np.isfinite(v).all():
            raise ValueError("vectors contain NaN or infinity")
        if not len(ids):
            return
        _, last = np.unique(ids[::-1], return_index=True)  # the last of a repeated id wins
        if len(last) != len(ids):
            keep = np.sort(len(ids) - 1 - last)
            ids, v = ids[keep], v[keep]
        with self._gate.write():
            self._drop(ids)
            need = self._add_n + len(ids)
            if need > len(self._add_ids):  # grow by doubling
                cap = max(need, 2 * len(self._add_ids), 1024)
                grown = np.empty((cap, self.dim), np.float32)
                grown[:self._add_n] = self._add_vecs[:self._add_n]
                self._add_vecs = grown
                self._add_ids = np.resize(self._add_ids, cap)
                self._add_alive = np.resize(self._add_alive, cap)
            a = self._add_n
            self._add_vecs[a:need] = v
            self._add_ids[a:need] = ids
            self._add_alive[a:need] = True
            self._add_row.update(zip(ids.tolist(), range(a, need), strict=True))
            self._add_n = need
            if self._codes is not None and len(self) < 16 * self._trained_on:
                self._codes.add_with_ids(v, ids)
            elif len(self) >= self.train_min:  # first trained, or grown 16x: (re)trained
                self._train()

    def _drop(self, ids: np.ndarray) -> int:
        """Mark the live rows of `ids` removed (caller holds the gate)."""
        rows = self._rows(ids)
        rows = rows[rows >= 0]
        if not len(rows):
            return 0
        nb = len(self._ids)
        self._alive[rows[rows < nb]] = False
        for r in (rows[rows >= nb] - nb).tolist():
            self._add_alive[r] = False
            self._add_row.pop(int(self._add_ids[r]), None)
        if self._codes is not None:
            self._codes.remove_ids(np.ascontiguousarray(self._rows_ids(rows)))
        return len(rows)

    def remove(self, ids: Iterable[int]) -> None:
        """Remove ids; unknown ids are ignored."""
        arr = np.fromiter((int(i) for i in ids), dtype=np.int64)
        if not arr.size:
            return
        with self._gate.write():
            n = self._drop(arr)
        logger.debug("removed %d of %d ids; %d live", n, len(arr), len(self))

    def _train(self) -> None:
        """Train the IVF-PQ codes on (a sample of) the live vectors and encode them all
        (caller holds the gate)."""
        faiss = _faiss()
        live = self._live_rows()
        n = len(live)
        nlist = int(min(4096, max(64, 2 * math.sqrt(n))))
        nlist = max(1, min(nlist, n // 39))
        quantizer = faiss.IndexFlatIP(self.dim)
        codes = faiss.IndexIVFPQ(quantizer, self.dim, nlist, self.pq_m, 8,
                                 faiss.METRIC_INNER_PRODUCT)
        rng = np.random.default_rng(0)
        sample = live if n <= 40 * nlist else np.sort(rng.choice(live, 40 * nlist, replace=False))
        codes.cp.niter = 12
        faiss.omp_set_num_threads(self.num_threads)
        codes.train(self._rows_vecs(sample))
        for i in range(0, n, 200_000):
            r = live[i:i + 200_000]
            codes.add_with_ids(self._rows_vecs(r), np.ascontiguousarray(self._rows_ids(r)))
        codes.nprobe = self.nprobe
        self._codes, self._quantizer, self._trained_on = codes, quantizer, n
        logger.info("trained compact codes on %d vectors (nlist %d, %d bytes a vector)",
                    n, nlist, self.pq_m)

    # ------------------------------------------------------------------ search
    def _read(self) -> AbstractContextManager[None]:
        return self._gate.read(0, lambda _ef: None)

    def vectors(self, ids: np.ndarray) -> np.ndarray:
        """The stored vectors of live `ids` (float32 [n, dim]); KeyError for an unknown id."""
        arr = np.asarray(ids, np.int64).reshape(-1)
        with self._read():
            rows = self._rows(arr)
            if (rows < 0).any():
                raise KeyError(f"ids not in the index: {arr[rows < 0][:5].tolist()}")
            return self._rows_vecs(rows)

    def search(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The k nearest stored vectors of each row: ids int64 [n, k] (-1 padded) and inner
        products float32 [n, k] (-1.0 padded), best first; exact on the candidates."""
        if int(k) < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        k = int(k)
        q = np.ascontiguousarray(np.asarray(vectors, np.float32).reshape(-1, self.dim))
        n = len(q)
        out_ids = np.full((n, k), -1, np.int64)
        out_sim = np.full((n, k), -1.0, np.float32)
        with self._read():
            if n == 0 or not len(self):
                return out_ids, out_sim
            if self._codes is None:  # small: every live row is a candidate
                live = self._live_rows()
                cands = [live] * n
                sims_all = self._rows_vecs(live) @ q.T
            else:
                _faiss().omp_set_num_threads(self.num_threads)
                _, found = self._codes.search(q, min(self.rerank * k, len(self)))
                rows = self._rows(found.reshape(-1)).reshape(found.shape)
                # every candidate row read once, in file order, for all the query's rows
                uniq, inv = np.unique(rows[rows >= 0], return_inverse=True)
                full = self._rows_vecs(uniq)
                cands = []
                pos = np.full(rows.shape, -1, np.int64)
                pos[rows >= 0] = inv
                for r in range(n):
                    cands.append(uniq[pos[r][pos[r] >= 0]])
            for r in range(n):
                rows_r = cands[r]
                if not len(rows_r):
                    continue
                if self._codes is None:
                    sims = sims_all[:, r]
                else:
                    p = pos[r][pos[r] >= 0]
                    sims = full[p] @ q[r]
                m = min(k, len(rows_r))
                top = np.argpartition(-sims, m - 1)[:m] if m < len(rows_r) else np.arange(m)
                ids_r = self._rows_ids(rows_r[top])
                o = np.lexsort((ids_r, -sims[top]))
                out_ids[r, :m] = ids_r[o]
                out_sim[r, :m] = sims[top][o]
        return out_ids, out_sim

    # ------------------------------------------------------------------ persistence
    def save(self, folder: Path) -> None:
        """Write the index to `folder` atomically (data files first, manifest last); the rows
        are written sorted by id, removed ones dropped, and read back memory-mapped."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        with self._gate.write():
            live = self._live_rows()
            ids = self._rows_ids(live)
            order = np.argsort(ids, kind="stable")
            live, ids = live[order], ids[order]
            version = f"{self.embedder_version}-{len(live)}-{uuid.uuid4().hex[:8]}"
            files: dict[str, DataFile] = {}
            with temp_path(folder, ".npy") as tmp:
                out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32,
                                                shape=(len(live), self.dim))
                for i in range(0, len(live), 100_000):
                    out[i:i + 100_000] = self._rows_vecs(live[i:i + 100_000])
                out.flush()
                del out
                files["vectors"] = commit_temp(tmp, folder / f"vectors-{version}.npy")
            with temp_path(folder, ".npy") as tmp:
                with open(tmp, "wb") as f:
                    np.save(f, ids)
                files["ids"] = commit_temp(tmp, folder / f"ids-{version}.npy")
            if self._codes is not None:
                with temp_path(folder, ".faiss") as tmp:
                    _faiss().write_index(self._codes, str(tmp))
                    files["codes"] = commit_temp(tmp, folder / f"codes-{version}.faiss")
            nlist = int(self._codes.nlist) if self._codes is not None else 0
            manifest = replace(self._manifest, count=len(live), updated_at=utcnow(),
                               version=version, files=files, ef_construction=nlist)
            write_manifest(folder, manifest)
            self._manifest = manifest
            remove_stale_files(folder, keep={f.name for f in files.values()})
            # the rows as saved, read back from the file (no second copy in memory)
            self._vecs = np.load(folder / files["vectors"].name, mmap_mode="r")
            self._ids, self._alive = ids, np.ones(len(ids), bool)
            self._add_ids = np.zeros(0, np.int64)
            self._add_vecs = np.zeros((0, self.dim), np.float32)
            self._add_alive = np.zeros(0, bool)
            self._add_n, self._add_row = 0, {}
        logger.info("saved compact index %s (%d vectors) to %s", version, len(live), folder)

    @classmethod
    def load(cls, folder: Path, *, embedder_name: str, embedder_version: str, dim: int,
             num_threads: int = 1, verify: bool = True, nprobe: int = 24,
             rerank: int = 4) -> CompactIndex:
        """Load a folder written by `save`. Raises IndexUnavailable (missing, damaged) or
        IndexMismatch (another embedder or backend)."""
        folder = Path(folder)
        m = read_manifest(folder)
        if m.backend != COMPACT_BACKEND or m.format_version != FORMAT_VERSION:
            raise IndexMismatch(f"The index in {folder} is a {m.backend} index of format "
                                f"{m.format_version}, not a compact one.")
        check_embedder(folder, m, embedder_name, embedder_version, dim)
        index = cls(m.dim, embedder_name=m.embedder_name, embedder_version=m.embedder_version,
                    pq_m=m.M, num_threads=num_threads, nprobe=nprobe, rerank=rerank)
        try:
            vec_path = verify_file(folder, m.files["vectors"], checksum=verify)
            ids_path = verify_file(folder, m.files["ids"], checksum=verify)
            index._vecs = np.load(vec_path, mmap_mode="r")
            index._ids = np.load(ids_path, allow_pickle=False).astype(np.int64)
            if "codes" in m.files:
                faiss = _faiss()
                index._codes = faiss.read_index(str(verify_file(folder, m.files["codes"],
                                                                checksum=verify)))
                index._codes.nprobe = index.nprobe
                index._trained_on = int(index._codes.ntotal)
        except KeyError:
            raise IndexUnavailable(f"The index manifest in {folder} lists no data files. "
                                   "Rebuild with `anirec index`.") from None
        except (OSError, ValueError, RuntimeError) as exc:
            raise IndexUnavailable(f"Cannot read the index in {folder}: {exc}. "
                                   "Rebuild with `anirec index`.") from None
        index._alive = np.ones(len(index._ids), bool)
        if (index._vecs.shape != (len(index._ids), m.dim) or len(index) != m.count
                or (index._codes is not None and index._codes.ntotal != m.count)
                or (len(index._ids) > 1 and (np.diff(index._ids) <= 0).any())):
            raise IndexUnavailable(f"The index in {folder} is inconsistent. "
                                   "Rebuild with `anirec index`.")
        index._manifest = m
        return index
