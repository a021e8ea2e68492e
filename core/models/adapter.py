"""The query-side adapter: a small residual linear map applied to a query's scene vectors
right after embedding, learnt from votes (`training/retrain.py`) without re-embedding the
library. The library's vectors stay as they are; only where a query lands among them moves.

    v' = normalise(v + (M - I) v)      (M starts as the identity: no change)

Saved as one `.npz` (the matrix, the embedder it was learnt on); written to a temporary file
and renamed, so a killed retrain never leaves a half-written adapter behind.
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class QueryAdapter:
    """A learnt d×d map on query vectors (float32)."""

    matrix: np.ndarray
    version: str
    embedder_version: str

    @property
    def dim(self) -> int:
        return int(self.matrix.shape[0])

    def __call__(self, vectors: np.ndarray) -> np.ndarray:
        """Adapted, L2-normalised copies of `vectors` [n, dim]."""
        v = np.asarray(vectors, np.float32)
        out = v @ self.matrix.T
        norm = np.linalg.norm(out, axis=1, keepdims=True)
        return np.ascontiguousarray(out / np.maximum(norm, 1e-8), dtype=np.float32)

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as fh:
            np.savez(fh, matrix=self.matrix.astype(np.float32),
                     version=np.array(self.version), embedder_version=np.array(self.embedder_version))
            fh.flush()
            os.fsync(fh.fileno())
        tmp.replace(path)


def load_adapter(path: Path) -> QueryAdapter:
    """Read an adapter file; ValueError when it is not one (a corrupt file is never used)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            m = np.asarray(z["matrix"], np.float32)
            version, emb = str(z["version"]), str(z["embedder_version"])
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{path.name} is not a query adapter ({exc})") from exc
    if m.ndim != 2 or m.shape[0] != m.shape[1] or not np.isfinite(m).all():
        raise ValueError(f"{path.name} holds no valid square matrix")
    return QueryAdapter(m, version, emb)
