"""The vector index: one `VectorIndex` protocol, an hnswlib backend and a versioned manifest.

`protocol.py` is the interface the indexer, the recogniser and the service use;
`hnsw.py` the hnswlib backend (`HnswIndex`); `manifest.py` the manifest and the crash-safe
writes (data files under fresh names, the manifest last, so a crash leaves the previous
version readable and a damaged file is caught by its recorded size and sha256); `regions.py`
the region vectors' settings and ids; `compact.py` the compact (IVF-PQ, exactly re-ranked)
index the region vectors are kept in; `gate.py` the reader/writer gate around hnswlib.
`open_index` here picks the backend and opens (or starts) an index folder.
"""

from __future__ import annotations

import logging
from pathlib import Path
from types import EllipsisType
from typing import TypedDict, Unpack

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
    **options: Unpack[HnswOptions],
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
            ef_search, num_threads, seed); options fixed by an existing index are ignored.

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
    index = HnswIndex.load(folder, embedder_name=embedder_name, regions=regions,
                           embedder_version=embedder_version, dim=dim,
                           ef_search=options.get("ef_search", 128),
                           num_threads=options.get("num_threads", 1))
    if index.compact_regions():  # saved before compact region codes: converted once, here
        index.save(folder)
    return index
