"""`VectorIndex`: what the rest of AniRec needs from a nearest-neighbour index.

The indexer, the recogniser and the service use only this protocol, so another backend
(a distributed one, say) can be added without touching them.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from core.index.manifest import IndexManifest


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

    def vectors(self, ids: np.ndarray) -> np.ndarray:
        """The stored vectors of live `ids` (float32 [n, dim]); KeyError for an unknown id."""

    def save(self, folder: Path) -> None:
        """Write the index and its manifest to `folder` atomically."""

    def __len__(self) -> int:
        """Number of live (not removed) vectors."""

    @property
    def manifest(self) -> IndexManifest:
        """Describes the index as it is now (the saved state after `save`/`load`)."""
