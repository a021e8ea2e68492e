"""The vector index: one `VectorIndex` protocol, an hnswlib backend and a versioned manifest.

`protocol.py` is the interface the indexer, the recogniser and the service use;
`hnsw.py` the hnswlib backend (`HnswIndex`); `manifest.py` the manifest and the crash-safe
writes (data files under fresh names, the manifest last, so a crash leaves the previous
version readable and a damaged file is caught by its recorded size and sha256); `regions.py`
the region vectors' settings and ids; `compact.py` the compact (IVF-PQ, exactly re-ranked)
index the region vectors are kept in; `gate.py` the reader/writer gate around hnswlib;
`milvus.py` the Milvus backend (`MilvusIndex`, chosen with a `MilvusConfig`).
`open_index` and `load_index` here pick the backend and open (or start) an index folder.
"""

from __future__ import annotations

import logging
from pathlib import Path
from types import EllipsisType
from typing import TYPE_CHECKING, TypedDict, Unpack

from core.index.compact import COMPACT_BACKEND, CompactIndex
from core.index.hnsw import SPACES, HnswIndex, Space
from core.index.manifest import (
    BACKEND,
    FORMAT_VERSION,
    MANIFEST_NAME,
    DataFile,
    IndexManifest,
    ManifestRegions,
    read_manifest,
)
from core.index.protocol import VectorIndex
from core.index.regions import REGION_SLOTS, REGIONS_DIR, RegionSpec, region_frame_ids

if TYPE_CHECKING:
    from core.index.milvus import MilvusConfig, MilvusIndex

__all__ = [
    "BACKEND",
    "COMPACT_BACKEND",
    "CompactIndex",
    "FORMAT_VERSION",
    "MANIFEST_NAME",
    "REGIONS_DIR",
    "REGION_SLOTS",
    "SPACES",
    "DataFile",
    "HnswIndex",
    "HnswOptions",
    "IndexManifest",
    "ManifestRegions",
    "RegionSpec",
    "Space",
    "VectorIndex",
    "load_index",
    "new_index",
    "open_index",
    "read_manifest",
    "region_frame_ids",
]

logger = logging.getLogger(__name__)


class HnswOptions(TypedDict, total=False):
    """Build and search options of a new `HnswIndex` (see its docstring)."""

    space: Space
    M: int
    ef_construction: int
    initial_capacity: int
    ef_search: int
    num_threads: int
    seed: int


def open_index(
    folder: Path,
    *,
    embedder_name: str,
    embedder_version: str,
    dim: int,
    create: bool = True,
    regions: RegionSpec | None | EllipsisType = ...,
    milvus: MilvusConfig | None = None,
    **options: Unpack[HnswOptions],
) -> HnswIndex | MilvusIndex:
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
        milvus: use the Milvus backend with these settings (None: hnswlib).
        **options: passed to `HnswIndex` (space, M, ef_construction, initial_capacity,
            ef_search, num_threads, seed); options fixed by an existing index are ignored.

    Returns:
        The loaded or new index.

    Raises:
        IndexUnavailable: the index is damaged, or missing and `create` is false.
        IndexMismatch: the index was built by another embedder.
    """
    folder = Path(folder)
    if milvus is not None:
        from core.index.milvus import open_milvus

        return open_milvus(folder, milvus, embedder_name=embedder_name,
                           embedder_version=embedder_version, dim=dim, create=create,
                           regions=regions)
    if create and not (folder / MANIFEST_NAME).exists():
        logger.info("no index in %s; starting an empty one", folder)
        index = HnswIndex(dim, embedder_name=embedder_name, embedder_version=embedder_version,
                          **options)
        if isinstance(regions, RegionSpec):
            index.enable_regions(regions)
        return index
    index = HnswIndex.load(folder, embedder_name=embedder_name, regions=regions,
                           embedder_version=embedder_version, dim=dim,
                           ef_search=options.get("ef_search", 128),
                           num_threads=options.get("num_threads", 1))
    if index.compact_regions():  # saved before compact region codes: converted once, here
        index.save(folder)
    return index


def new_index(dim: int, *, embedder_name: str, embedder_version: str,
              regions: RegionSpec | None = None, milvus: MilvusConfig | None = None,
              **options: Unpack[HnswOptions]) -> HnswIndex | MilvusIndex:
    """A new empty index of the chosen backend (Milvus: its collections are recreated)."""
    if milvus is not None:
        from core.index.milvus import MilvusIndex

        return MilvusIndex.new(dim, milvus, embedder_name=embedder_name,
                               embedder_version=embedder_version, regions=regions)
    index = HnswIndex(dim, embedder_name=embedder_name, embedder_version=embedder_version,
                      **options)
    if regions is not None:
        index.enable_regions(regions)
    return index


def load_index(folder: Path, *, embedder_name: str, embedder_version: str, dim: int,
               num_threads: int = 1, verify: bool = True,
               milvus: MilvusConfig | None = None) -> HnswIndex | MilvusIndex:
    """The saved index in `folder` for searching, of the chosen backend (None: hnswlib).

    Raises:
        IndexUnavailable: no index, a damaged one, or Milvus cannot be reached.
        IndexMismatch: built by another embedder or backend.
    """
    if milvus is not None:
        from core.index.milvus import MilvusIndex

        return MilvusIndex.load(folder, milvus, embedder_name=embedder_name,
                                embedder_version=embedder_version, dim=dim)
    return HnswIndex.load(folder, embedder_name=embedder_name, embedder_version=embedder_version,
                          dim=dim, num_threads=num_threads, verify=verify)
