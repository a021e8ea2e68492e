"""`MilvusIndex`: the Milvus backend of `VectorIndex` (ANIREC_VECTOR_BACKEND=milvus).

The vectors live in a Milvus collection (a standalone or distributed server at
``ANIREC_MILVUS_URI``, or a Milvus Lite local file when the URI is a path); the index folder
keeps only the manifest (what built it, the live count, the version answers report) and
``milvus-<version>.json`` (the collection names and index settings), so the indexer's crash-safe order
stays the same: vectors written, then the manifest, then the episodes marked indexed.

Each row holds the frame id (primary key), its series, episode and time as scalar fields,
so a search can be restricted to some series (`search_in_series`, for the closed-set steps)
and an episode's vectors can be deleted by a filter (`remove_episode`). Region vectors of
keyframes (`RegionSpec`) go to a second collection, ``<collection>_regions``, whose rows
also hold their frame id.

pymilvus is an optional extra (``pip install 'anirec[milvus]'``); this module imports it
only when a `MilvusIndex` is made.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import EllipsisType
from typing import TYPE_CHECKING, Any

import numpy as np

from core.errors import IndexMismatch, IndexUnavailable, MissingExtra
from core.index.checks import check_ids, check_vectors
from core.index.manifest import (
    FORMAT_VERSION,
    MANIFEST_NAME,
    IndexManifest,
    ManifestRegions,
    commit_temp,
    read_manifest,
    temp_path,
    utcnow,
    verify_file,
    write_manifest,
)
from core.index.regions import RegionSpec, region_frame_ids

if TYPE_CHECKING:
    from pymilvus import MilvusClient
    from sqlalchemy.orm import Session, sessionmaker

logger = logging.getLogger("core.index")

BACKEND = "milvus"
#: index types this backend builds; the default was chosen by bench/bench_milvus.py
INDEX_TYPES = ("HNSW", "IVF_SQ8", "IVF_PQ", "IVF_FLAT", "FLAT")
_CHUNK = 5000  # rows per insert/delete/get request (well under gRPC's message limit)

#: frame ids -> (series ids, episode ids, times), for the scalar fields; -1 / -1.0 unknown
FrameFields = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]


def no_fields(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scalar fields for frames nobody describes (benchmarks): all unknown."""
    n = len(ids)
    return np.full(n, -1, np.int64), np.full(n, -1, np.int64), np.full(n, -1.0, np.float32)


def catalog_fields(sessions: sessionmaker[Session]) -> FrameFields:
    """The scalar fields of frame ids, read from the catalog (frames → episodes)."""

    def fields(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        from sqlalchemy import select

        from core.db.models import Episode, Frame

        series, episode, t = no_fields(ids)
        pos = {int(i): j for j, i in enumerate(np.asarray(ids).tolist())}
        with sessions() as s:
            for lo in range(0, len(ids), 900):
                part = [int(i) for i in ids[lo:lo + 900]]
                q = (select(Frame.id, Episode.series_id, Frame.episode_id, Frame.t)
                     .join(Episode, Episode.id == Frame.episode_id).where(Frame.id.in_(part)))
                for fid, sid, eid, ft in s.execute(q):
                    j = pos[int(fid)]
                    series[j], episode[j], t[j] = sid, eid, ft
        return series, episode, t

    return fields


@dataclass(frozen=True)
class MilvusConfig:
    """Where and how the Milvus backend stores vectors (from the settings).

    Args:
        uri: ``http://host:19530`` for a server, or a file path for Milvus Lite.
        collection: the prefix of the collections' names: an index is ``<name>_g<id>``
            (whole frames) and ``<name>_g<id>_regions``, a new <id> at every rebuild.
        index_type: one of `INDEX_TYPES`.
        token: the server's ``user:password`` or API key (never logged).
        M, ef_construction, ef_search: HNSW's build and search settings.
        nlist, nprobe, pq_m: the IVF types' settings (pq_m: bytes per vector for IVF_PQ).
        timeout_s: how long connecting may take.
        frame_fields: how the series/episode/time of frame ids are looked up.
    """

    uri: str
    collection: str = "anirec_frames"
    index_type: str = "HNSW"
    token: str = field(default="", repr=False)
    M: int = 16
    ef_construction: int = 200
    ef_search: int = 128
    nlist: int = 1024
    nprobe: int = 32
    pq_m: int = 32
    timeout_s: float = 10.0
    frame_fields: FrameFields = field(default=no_fields, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.index_type not in INDEX_TYPES:
            raise ValueError(f"Milvus index type must be one of {INDEX_TYPES}, "
                             f"got {self.index_type!r}")
        if not self.uri:
            raise ValueError("the Milvus URI is empty (ANIREC_MILVUS_URI)")
        if not self.collection.replace("_", "").isalnum() or self.collection[0].isdigit():
            raise ValueError(f"bad Milvus collection name {self.collection!r} "
                             "(letters, digits and _, not starting with a digit)")

    def index_params(self) -> dict[str, int]:
        if self.index_type == "HNSW":
            return {"M": self.M, "efConstruction": self.ef_construction}
        if self.index_type == "IVF_PQ":
            return {"nlist": self.nlist, "m": self.pq_m, "nbits": 8}
        if self.index_type in ("IVF_SQ8", "IVF_FLAT"):
            return {"nlist": self.nlist}
        return {}

    def search_params(self, k: int) -> dict[str, int]:
        if self.index_type == "HNSW":
            return {"ef": max(self.ef_search, k)}
        if self.index_type.startswith("IVF"):
            return {"nprobe": min(self.nprobe, self.nlist)}
        return {}

    @property
    def is_lite(self) -> bool:
        """A Milvus Lite local file rather than a server."""
        return "://" not in self.uri


def connect(cfg: MilvusConfig) -> MilvusClient:
    """A client for `cfg.uri`; IndexUnavailable (saying why) when Milvus cannot be reached."""
    try:
        from pymilvus import MilvusClient
    except ImportError:
        raise MissingExtra("The Milvus vector backend (ANIREC_VECTOR_BACKEND=milvus)",
                           "pymilvus", "milvus") from None
    uri = cfg.uri
    if cfg.is_lite:
        Path(uri).parent.mkdir(parents=True, exist_ok=True)
    try:
        return MilvusClient(uri=uri, token=cfg.token, timeout=cfg.timeout_s)
    except Exception as exc:  # pymilvus raises MilvusException or gRPC errors
        raise IndexUnavailable(f"Cannot reach Milvus at {_safe(uri)}: {exc}") from None


def _safe(uri: str) -> str:
    """The URI without any user:password part."""
    if "://" in uri and "@" in uri:
        scheme, rest = uri.split("://", 1)
        return f"{scheme}://{rest.split('@', 1)[1]}"
    return uri


class MilvusIndex:
    """A Milvus collection implementing `VectorIndex` (and region vectors, like HnswIndex).

    Writes are visible to this process's own reads at once (a read after a write waits for
    it); other processes read with bounded staleness, and a bot reloads when the manifest's
    version changes. Vectors are L2-normalised by the caller; similarity is inner product.

    Args:
        dim: vector dimension.
        cfg: the server, collection and index settings.
        embedder_name, embedder_version: what made the vectors (checked on load).
        client: an existing client (default: one for `cfg.uri`).
        collection: the collection's full name (default `cfg.collection`).
        regions_of: for a region collection: rows also hold their frame id.
    """

    def __init__(self, dim: int, cfg: MilvusConfig, *, embedder_name: str,
                 embedder_version: str, client: MilvusClient | None = None,
                 collection: str | None = None, regions_of: bool = False) -> None:
        if int(dim) <= 0:
            raise ValueError(f"dim must be positive, got {dim}")
        if not embedder_name or not embedder_version:
            raise ValueError("embedder_name and embedder_version are required")
        self.dim = int(dim)
        self.cfg = cfg
        self.embedder_name, self.embedder_version = str(embedder_name), str(embedder_version)
        self.collection = collection or cfg.collection
        self._region_rows = regions_of
        self._client = client if client is not None else connect(cfg)
        self._count: int | None = None
        self._dirty = True  # a write not yet seen by a read: the next read waits for it
        #: region vectors of keyframes, in their own collection; None: none kept.
        self.regions: MilvusIndex | None = None
        self.region_spec: RegionSpec | None = None
        now = utcnow()
        self._manifest = IndexManifest(
            format_version=FORMAT_VERSION, backend=BACKEND, space="ip", dim=self.dim,
            M=cfg.M if cfg.index_type == "HNSW" else 0,
            ef_construction=cfg.ef_construction if cfg.index_type == "HNSW" else 0,
            embedder_name=self.embedder_name, embedder_version=self.embedder_version,
            count=0, created_at=now, updated_at=now,
            version=f"{self.embedder_version}-0-unsaved")

    # ------------------------------------------------------------------ collections
    def create(self, *, drop: bool = False) -> None:
        """Create the (empty) collection; `drop` replaces one that exists."""
        from pymilvus import DataType

        c = self._client
        if c.has_collection(self.collection):
            if not drop:
                raise IndexMismatch(f"Milvus collection {self.collection} already exists; "
                                    "run `anirec index --reembed` to rebuild it.")
            c.drop_collection(self.collection)
        schema = c.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("series", DataType.INT64)
        schema.add_field("episode", DataType.INT64)
        schema.add_field("t", DataType.FLOAT)
        if self._region_rows:
            schema.add_field("frame", DataType.INT64)
        schema.add_field("vec", DataType.FLOAT_VECTOR, dim=self.dim)
        ip = c.prepare_index_params()
        ip.add_index(field_name="vec", index_type=self.cfg.index_type, metric_type="IP",
                     params=self.cfg.index_params())
        c.create_collection(self.collection, schema=schema, index_params=ip,
                            consistency_level="Bounded")
        c.load_collection(self.collection)
        self._count, self._dirty = 0, False
        logger.info("created Milvus collection %s (%s, dim %d) at %s", self.collection,
                    self.cfg.index_type, self.dim, _safe(self.cfg.uri))

    def enable_regions(self, spec: RegionSpec) -> None:
        """Start an (empty) region collection with the given settings."""
        self.region_spec = spec
        self.regions = MilvusIndex(self.dim, self.cfg, embedder_name=self.embedder_name,
                                   embedder_version=self.embedder_version, client=self._client,
                                   collection=f"{self.collection}_regions", regions_of=True)
        self.regions.create(drop=True)

    def _level(self) -> str:
        """Strong after this process wrote (it reads its writes), else Bounded (fast)."""
        return "Strong" if self._dirty else "Bounded"

    def _read_done(self) -> None:
        self._dirty = False

    def _wrote(self) -> None:
        self._dirty, self._count = True, None

    # ------------------------------------------------------------------ properties
    def __len__(self) -> int:
        if self._count is None:
            res = self._client.query(self.collection, filter="", output_fields=["count(*)"],
                                     consistency_level=self._level())
            self._count = int(res[0]["count(*)"])
            self._read_done()
        return self._count

    def __repr__(self) -> str:
        return (f"MilvusIndex(dim={self.dim}, collection={self.collection!r}, "
                f"type={self.cfg.index_type}, embedder={self.embedder_name!r} "
                f"v{self.embedder_version})")

    @property
    def manifest(self) -> IndexManifest:
        return replace(self._manifest, count=len(self))

    @property
    def version(self) -> str:
        return self._manifest.version

    def ids(self) -> np.ndarray:
        """All live ids, sorted (int64)."""
        if self.cfg.is_lite:  # Milvus Lite answers a whole query (and has no iterator timestamps)
            rows = self._client.query(self.collection, filter="id >= 0", output_fields=["id"],
                                      consistency_level=self._level())
            self._read_done()
            return np.array(sorted(int(r["id"]) for r in rows), dtype=np.int64)
        if self._dirty:  # the iterator reads at its own timestamp: wait for our writes first
            self._count = None
            len(self)
        it = self._client.query_iterator(self.collection, batch_size=10_000, filter="",
                                         output_fields=["id"],
                                         consistency_level=self._level())
        out: list[int] = []
        try:
            while batch := it.next():
                out.extend(int(r["id"]) for r in batch)
        finally:
            it.close()
        self._read_done()
        return np.array(sorted(out), dtype=np.int64)

    # ------------------------------------------------------------------ validation
    def _check_vectors(self, vectors: np.ndarray) -> np.ndarray:
        return check_vectors(vectors, self.dim)

    _check_ids = staticmethod(check_ids)

    # ------------------------------------------------------------------ writes
    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add vectors (upsert: an id already present gets the new vector and fields)."""
        id_arr = self._check_ids(ids)
        vecs = self._check_vectors(vectors)
        if len(id_arr) != len(vecs):
            raise ValueError(f"{len(id_arr)} ids for {len(vecs)} vectors")
        if not len(id_arr):
            return
        _, last = np.unique(id_arr[::-1], return_index=True)  # the last of a repeated id wins
        if len(last) != len(id_arr):
            keep = np.sort(len(id_arr) - 1 - last)
            id_arr, vecs = id_arr[keep], vecs[keep]
        frames = region_frame_ids(id_arr) if self._region_rows else id_arr
        series, episode, t = self.cfg.frame_fields(frames)
        for lo in range(0, len(id_arr), _CHUNK):
            sl = slice(lo, lo + _CHUNK)
            rows: list[dict[str, Any]] = [
                {"id": i, "series": s, "episode": e, "t": tt, "vec": v}
                for i, s, e, tt, v in zip(id_arr[sl].tolist(), series[sl].tolist(),
                                          episode[sl].tolist(), t[sl].tolist(), vecs[sl],
                                          strict=True)]
            if self._region_rows:
                for r, f in zip(rows, frames[sl].tolist(), strict=True):
                    r["frame"] = f
            self._client.upsert(self.collection, rows)
        self._wrote()
        logger.debug("upserted %d vectors into %s", len(id_arr), self.collection)

    def remove(self, ids: Iterable[int]) -> None:
        """Remove ids (and their region vectors); unknown ids are ignored."""
        id_arr = np.unique(self._check_ids(np.fromiter((int(i) for i in ids), dtype=np.int64)))
        if not id_arr.size:
            return
        if self.regions is not None:
            self.regions._delete_where("frame", id_arr)
        for lo in range(0, len(id_arr), _CHUNK):
            self._client.delete(self.collection, ids=id_arr[lo:lo + _CHUNK].tolist())
        self._wrote()

    def remove_episode(self, episode_id: int) -> None:
        """Remove every vector of an episode (and its region vectors) by its scalar field."""
        self._delete_where("episode", np.array([int(episode_id)]))
        if self.regions is not None:
            self.regions._delete_where("episode", np.array([int(episode_id)]))

    def _delete_where(self, fname: str, values: np.ndarray) -> None:
        for lo in range(0, len(values), _CHUNK):
            part = ",".join(str(int(v)) for v in values[lo:lo + _CHUNK])
            self._client.delete(self.collection, filter=f"{fname} in [{part}]")
        self._wrote()

    # ------------------------------------------------------------------ search
    def search(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The k nearest stored vectors of each row (ids -1 / similarity -1.0 padded)."""
        return self._search(vectors, k, "")

    def search_in_series(self, vectors: np.ndarray, k: int,
                         series: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """Like `search`, among the vectors of the given series only (a closed set)."""
        wanted = sorted({int(s) for s in series})
        if not wanted:
            raise ValueError("search_in_series needs at least one series id")
        return self._search(vectors, k, f"series in [{','.join(map(str, wanted))}]")

    def _search(self, vectors: np.ndarray, k: int, expr: str) -> tuple[np.ndarray, np.ndarray]:
        if int(k) < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        k = int(k)
        q = self._check_vectors(vectors)
        n = len(q)
        out_ids = np.full((n, k), -1, dtype=np.int64)
        out_sim = np.full((n, k), -1.0, dtype=np.float32)
        if n == 0:
            return out_ids, out_sim
        try:
            res = self._client.search(
                self.collection, data=[row for row in q], limit=min(k, 16384), filter=expr,
                output_fields=[], search_params={"metric_type": "IP",
                                                 "params": self.cfg.search_params(k)},
                consistency_level=self._level())
        except Exception as exc:  # the server went away or refused: the index is not ready
            raise IndexUnavailable(f"Milvus at {_safe(self.cfg.uri)} did not answer a search "
                                   f"of {self.collection}: {exc}") from None
        self._read_done()
        for r, hits in enumerate(res):
            m = min(k, len(hits))
            if m:
                out_ids[r, :m] = [int(h["id"]) for h in hits[:m]]
                out_sim[r, :m] = [float(h["distance"]) for h in hits[:m]]
        return out_ids, out_sim

    def vectors(self, ids: np.ndarray) -> np.ndarray:
        """The stored vectors of `ids` (float32 [n, dim]); KeyError for an unknown id."""
        arr = self._check_ids(ids)
        if arr.size == 0:
            return np.zeros((0, self.dim), np.float32)
        got: dict[int, Any] = {}
        uniq = np.unique(arr)
        for lo in range(0, len(uniq), _CHUNK):
            for r in self._client.get(self.collection, ids=uniq[lo:lo + _CHUNK].tolist(),
                                      output_fields=["vec"], consistency_level=self._level()):
                got[int(r["id"])] = r["vec"]
        self._read_done()
        missing = [int(i) for i in arr if int(i) not in got]
        if missing:
            raise KeyError(f"ids not in the index: {missing[:5]}")
        return np.asarray([got[int(i)] for i in arr], dtype=np.float32).reshape(-1, self.dim)

    def fields(self, ids: np.ndarray) -> dict[int, tuple[int, int, float]]:
        """id → (series, episode, time) as stored (the scalar fields)."""
        arr = np.unique(self._check_ids(ids))
        out: dict[int, tuple[int, int, float]] = {}
        for lo in range(0, len(arr), _CHUNK):
            for r in self._client.get(self.collection, ids=arr[lo:lo + _CHUNK].tolist(),
                                      output_fields=["series", "episode", "t"],
                                      consistency_level=self._level()):
                out[int(r["id"])] = (int(r["series"]), int(r["episode"]), float(r["t"]))
        self._read_done()
        return out

    # ------------------------------------------------------------------ persistence
    def flush(self) -> None:
        """Make the writes durable in Milvus (sealed segments, indexed in the background)."""
        self._client.flush(self.collection)

    def save(self, folder: Path) -> None:
        """Flush the collections, then write `milvus.json` and the manifest to `folder`."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        regions: ManifestRegions | None = None
        self.flush()
        if self.regions is not None and self.region_spec is not None:
            self.regions.flush()
            regions = {**self.region_spec.to_json(),
                       "version": f"{self.collection}_regions", "count": len(self.regions)}
        count = len(self)
        version = f"{self.embedder_version}-{count}-{uuid.uuid4().hex[:8]}"
        side = {"collection": self.collection,
                "regions_collection": (self.regions.collection if self.regions is not None
                                       else None),
                "index_type": self.cfg.index_type, "index_params": self.cfg.index_params(),
                "dim": self.dim}
        previous = _named_collection(folder)  # kept: a running bot may still read it
        with temp_path(folder, ".json") as tmp:
            tmp.write_text(json.dumps(side, indent=2) + "\n", encoding="utf-8")
            sidecar = commit_temp(tmp, folder / f"milvus-{version}.json")
        manifest = replace(self._manifest, count=count, updated_at=utcnow(), version=version,
                           files={"milvus": sidecar}, regions=regions)
        write_manifest(folder, manifest)
        self._manifest = manifest
        for p in folder.glob("milvus-*.json"):  # earlier versions' sidecars
            if p.name != sidecar.name:
                p.unlink(missing_ok=True)
        self._drop_stale({self.collection, previous or self.collection})
        logger.info("saved Milvus index %s (%d vectors in %s) to %s", version, count,
                    self.collection, folder)

    @classmethod
    def new(cls, dim: int, cfg: MilvusConfig, *, embedder_name: str, embedder_version: str,
            regions: RegionSpec | None = None) -> MilvusIndex:
        """An empty index in new collections ``<collection>_g<random>`` (and ``…_regions``).

        The collections a saved manifest names stay until the new index is saved (a rebuild
        that dies leaves the previous index as it was), and a running bot keeps reading the
        previous one until it reloads; older ones are dropped by `save`.
        """
        index = cls(dim, cfg, embedder_name=embedder_name, embedder_version=embedder_version,
                    collection=f"{cfg.collection}_g{uuid.uuid4().hex[:8]}")
        index.create(drop=True)
        if regions is not None:
            index.enable_regions(regions)
        return index

    @classmethod
    def load(cls, folder: Path, cfg: MilvusConfig, *, embedder_name: str,
             embedder_version: str, dim: int,
             regions: RegionSpec | None | EllipsisType = ...) -> MilvusIndex:
        """The index a folder's manifest describes, its collections checked in Milvus.

        Raises:
            IndexUnavailable: no manifest, Milvus unreachable, or a collection is missing.
            IndexMismatch: another backend, embedder, collection or region setting.
        """
        from core.index.hnsw import _check_regions

        folder = Path(folder)
        m = read_manifest(folder)
        if m.backend != BACKEND or m.format_version != FORMAT_VERSION:
            raise IndexMismatch(
                f"The index in {folder} is a {m.backend} index of format {m.format_version}, "
                f"but ANIREC_VECTOR_BACKEND is milvus. Run `anirec index --reembed` to rebuild "
                "it in Milvus (or set ANIREC_VECTOR_BACKEND back).")
        if (m.embedder_name, m.embedder_version, m.dim) != (embedder_name, str(embedder_version),
                                                            int(dim)):
            raise IndexMismatch(
                f"The index in {folder} was built by embedder {m.describe_embedder()} "
                f"(dim {m.dim}), but the current embedder is {embedder_name} "
                f"v{embedder_version} (dim {dim}). Run `anirec index --reembed` to rebuild it.")
        have = _check_regions(folder, m, regions)
        side_file = m.files.get("milvus")
        if side_file is None:
            raise IndexUnavailable(f"The index manifest in {folder} names no Milvus collection. "
                                   "Rebuild with `anirec index --reembed`.")
        side = json.loads(verify_file(folder, side_file).read_text(encoding="utf-8"))
        if not str(side["collection"]).startswith(f"{cfg.collection}_g") \
                or side["index_type"] != cfg.index_type:
            raise IndexMismatch(
                f"The index in {folder} is Milvus collection {side['collection']} "
                f"({side['index_type']}), but the settings ask for {cfg.collection} "
                f"({cfg.index_type}). Run `anirec index --reembed` to rebuild it.")
        index = cls(m.dim, cfg, embedder_name=m.embedder_name,
                    embedder_version=m.embedder_version, collection=str(side["collection"]))
        index._open_collection()
        if have is not None:
            index.region_spec = have
            index.regions = cls(m.dim, cfg, embedder_name=m.embedder_name,
                                embedder_version=m.embedder_version, client=index._client,
                                collection=str(side["regions_collection"]), regions_of=True)
            index.regions._open_collection()
        index._manifest = m
        if len(index) != m.count:  # written after the last save (a crash, or an indexer at work)
            logger.warning("Milvus collection %s holds %d vectors, the manifest says %d",
                           index.collection, len(index), m.count)
        logger.info("loaded Milvus index %s (%d vectors, %s) from %s", m.version, m.count,
                    m.describe_embedder(), folder)
        return index

    def _drop_stale(self, keep: set[str]) -> None:
        """Drop earlier generations of this index's collections (best effort)."""
        prefix = f"{self.cfg.collection}_g"
        keep = keep | {f"{k}_regions" for k in keep}
        try:
            for name in self._client.list_collections():
                if name.startswith(prefix) and name not in keep:
                    logger.info("dropping stale Milvus collection %s", name)
                    self._client.drop_collection(name)
        except Exception as exc:  # a leftover collection wastes space, nothing more
            logger.warning("could not drop stale Milvus collections: %s", exc)

    def _open_collection(self) -> None:
        if not self._client.has_collection(self.collection):
            raise IndexUnavailable(
                f"Milvus at {_safe(self.cfg.uri)} has no collection {self.collection}. "
                "Rebuild with `anirec index --reembed`.")
        self._client.load_collection(self.collection)

    def wait_indexed(self, timeout_s: float = 3600.0) -> float:
        """Wait until Milvus has built the index over every flushed row; seconds waited."""
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < timeout_s:
            d = self._client.describe_index(self.collection, "vec")
            if int(d.get("pending_index_rows", 0)) == 0 and \
                    int(d.get("indexed_rows", 0)) >= int(d.get("total_rows", 0)):
                return time.perf_counter() - t0
            time.sleep(0.5)
        raise TimeoutError(f"Milvus did not finish indexing {self.collection} in {timeout_s} s")


def _named_collection(folder: Path) -> str | None:
    """The collection the folder's current manifest names (None: none, or not Milvus)."""
    try:
        m = read_manifest(folder)
        f = m.files.get("milvus")
        if m.backend != BACKEND or f is None:
            return None
        return str(json.loads((Path(folder) / f.name).read_text(encoding="utf-8"))["collection"])
    except (IndexUnavailable, OSError, ValueError, KeyError, TypeError):
        return None


def open_milvus(folder: Path, cfg: MilvusConfig, *, embedder_name: str, embedder_version: str,
                dim: int, create: bool = True,
                regions: RegionSpec | None | EllipsisType = ...) -> MilvusIndex:
    """`open_index` for Milvus: the folder's index, or a new empty one when it has none."""
    if create and not (Path(folder) / MANIFEST_NAME).exists():
        logger.info("no index in %s; starting an empty Milvus collection %s", folder,
                    cfg.collection)
        return MilvusIndex.new(dim, cfg, embedder_name=embedder_name,
                               embedder_version=embedder_version,
                               regions=regions if isinstance(regions, RegionSpec) else None)
    return MilvusIndex.load(folder, cfg, embedder_name=embedder_name,
                            embedder_version=embedder_version, dim=dim, regions=regions)
