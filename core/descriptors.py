"""Compact, model-free image descriptors.

- `tiny_descriptor`: a 16x9 colour thumbnail (432 bytes), stored per indexed frame and used to
  verify and pin candidates and to find repeated footage (openings/endings).
- `phash`: a 64-bit DCT perceptual hash, an evaluation baseline. (trace.moe's ColorLayout
  baseline lives with the evaluation, `training/eval/baselines.py`, in LIRE's exact form.)
"""

from __future__ import annotations

import numpy as np
from PIL import Image

TINY_SIZE = (16, 9)  # (width, height)
TINY_BYTES = TINY_SIZE[0] * TINY_SIZE[1] * 3


def _as_image(x: np.ndarray | Image.Image) -> Image.Image:
    return x if isinstance(x, Image.Image) else Image.fromarray(np.asarray(x, dtype=np.uint8))


def tiny_descriptor(x: np.ndarray | Image.Image) -> bytes:
    """16x9 RGB box-filtered thumbnail as 432 raw bytes."""
    img = _as_image(x).convert("RGB").resize(TINY_SIZE, Image.Resampling.BOX)
    return np.asarray(img, dtype=np.uint8).tobytes()


def tiny_array(descriptors: list[bytes] | bytes) -> np.ndarray:
    """Descriptors → float32 [N, 432] in 0..1."""
    if isinstance(descriptors, (bytes, bytearray)):
        descriptors = [bytes(descriptors)]
    buf = np.frombuffer(b"".join(descriptors), dtype=np.uint8).reshape(len(descriptors), TINY_BYTES)
    return buf.astype(np.float32) / 255.0


def tiny_similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Similarity in 0..1 between rows of `a` [N,432] and `b` [M,432]: 1 - mean abs difference,
    after removing each descriptor's mean brightness (robust to global brightness shifts)."""
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    return 1.0 - np.abs(a[:, None, :] - b[None, :, :]).mean(axis=2) * 2.0


def _dct_matrix(n: int) -> np.ndarray:
    k = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    m = np.cos(np.pi * (2 * i + 1) * k / (2 * n)) * np.sqrt(2.0 / n)
    m[0] /= np.sqrt(2.0)
    return m


_D32 = _dct_matrix(32)


def phash(x: np.ndarray | Image.Image) -> int:
    """64-bit DCT perceptual hash (pHash): sign of the low 8x8 DCT block vs its median."""
    img = _as_image(x).convert("L").resize((32, 32), Image.Resampling.BOX)
    coef = _D32 @ np.asarray(img, dtype=np.float32) @ _D32.T
    low = coef[:8, :8].flatten()
    bits = low > np.median(low[1:])
    return int("".join("1" if b else "0" for b in bits), 2)

