"""Input checks every `VectorIndex` backend makes on the vectors and ids it is given."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt


def check_vectors(vectors: np.ndarray, dim: int) -> np.ndarray:
    """Rows of `dim` finite float32 values (a single vector becomes one row).

    Raises:
        ValueError: another shape, NaN or infinity.
    """
    v = np.asarray(vectors)
    if v.ndim == 1:
        v = v[None, :]
    if v.ndim != 2 or v.shape[1] != dim:
        raise ValueError(f"vectors must have shape [n, {dim}], got {np.shape(vectors)}")
    v = np.ascontiguousarray(v, dtype=np.float32)
    if not np.isfinite(v).all():
        raise ValueError("vectors contain NaN or infinity")
    return v


def check_ids(ids: npt.ArrayLike) -> np.ndarray:
    """Non-negative integer ids as a flat int64 array.

    Raises:
        ValueError: not integers, or negative.
    """
    arr = np.asarray(ids)
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"ids must be integers, got dtype {arr.dtype}")
    arr = arr.astype(np.int64, copy=False).reshape(-1)
    if arr.size and arr.min() < 0:
        raise ValueError("ids must be >= 0 (-1 marks an empty result slot)")
    return arr
