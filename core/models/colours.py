"""Face colour descriptors that need no learning, and their fusion with the character embedder.

Hair and eye colour are most of what tells anime characters apart, and a colour histogram of
the head box carries over to any drawing style (a network trained on one style does not).
`colour_descriptor` is, for three bands of the head box inside an inscribed ellipse (the hair
cap on top, the eyes in the middle, the whole head), a saturation-weighted hue histogram (18
bins, soft-assigned) and a value histogram of the grey pixels (black, grey and white hair),
square-rooted and L2-normalised: the dot product of two descriptors is their Bhattacharyya
coefficient.

`FusedEmbedder` concatenates the embedder's vector and the descriptor, weighted, so that the
dot product is `w · embedder cosine + (1 - w) · colour similarity`; it has the embedder's
interface (version, embed_faces, embed_reference) and so works wherever an embedder does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

HUE_BINS = 18
VALUE_BINS = 4
SIZE = 40  # the head box is resized to SIZE × SIZE
BANDS = ((0.0, 0.42), (0.38, 0.72), (0.0, 1.0))  # (top, bottom) fractions of the head box height
COLOUR_VERSION = "colour1"
DIM = len(BANDS) * (HUE_BINS + VALUE_BINS)


def _ellipse(n: int) -> np.ndarray:
    y, x = np.mgrid[0:n, 0:n]
    c = (n - 1) / 2
    return ((x - c) / (n / 2)) ** 2 + ((y - c) / (n / 2)) ** 2 <= 1.0


_MASK = _ellipse(SIZE)


def _histogram(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Hue (weighted by saturation, soft-assigned to the two nearest bins) + grey values."""
    chroma = (s > 0.22) & (v > 0.18)
    hue = np.zeros(HUE_BINS, np.float64)
    if chroma.any():
        pos = h[chroma] * HUE_BINS - 0.5
        lo = np.floor(pos).astype(np.int64)
        frac = pos - lo
        wgt = s[chroma]
        np.add.at(hue, lo % HUE_BINS, wgt * (1 - frac))
        np.add.at(hue, (lo + 1) % HUE_BINS, wgt * frac)
    grey = np.zeros(VALUE_BINS, np.float64)
    g = ~chroma
    if g.any():
        np.add.at(grey, np.minimum((v[g] * VALUE_BINS).astype(np.int64), VALUE_BINS - 1), 0.6)
    out = np.concatenate([hue, grey])
    total = out.sum()
    return out / total if total > 0 else out


def colour_descriptor(image: Image.Image, box: Sequence[float]) -> np.ndarray:
    """The descriptor of one head box (float32 [DIM], L2-normalised)."""
    x0, y0, x1, y1 = (float(b) for b in box)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return np.zeros(DIM, np.float32)
    crop = image.convert("RGB").crop((round(x0), round(y0), round(x1), round(y1)))
    hsv = np.asarray(crop.resize((SIZE, SIZE), Image.Resampling.BILINEAR).convert("HSV"), np.float64) / 255.0
    parts = []
    for top, bottom in BANDS:
        rows = slice(int(top * SIZE), max(int(top * SIZE) + 1, int(bottom * SIZE)))
        m = _MASK[rows]
        parts.append(_histogram(hsv[rows, :, 0][m], hsv[rows, :, 1][m], hsv[rows, :, 2][m]))
    d = np.sqrt(np.concatenate(parts))
    n = np.linalg.norm(d)
    return (d / n if n > 0 else d).astype(np.float32)


def colour_descriptors(image: Image.Image, boxes: Sequence[Sequence[float]]) -> np.ndarray:
    return np.stack([colour_descriptor(image, b) for b in boxes]) if len(boxes) else np.zeros((0, DIM), np.float32)


def whole_image_box(image: Image.Image) -> tuple[float, float, float, float]:
    """A reference image that is already a head crop: its central square."""
    w, h = image.size
    side = min(w, h)
    return ((w - side) / 2, (h - side) / 2, (w + side) / 2, (h + side) / 2)


@dataclass
class FusedEmbedder:
    """The character embedder's vector and the colour descriptor, weighted and concatenated."""

    embedder: Any  # core.models.characters.CharacterEmbedder
    weight: float = 0.5  # share of the embedder's cosine in the fused similarity
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def version(self) -> str:
        return f"{self.embedder.version}+{COLOUR_VERSION}w{round(self.weight * 100)}"

    @property
    def spec(self) -> Any:
        return self.embedder.spec

    @property
    def dim(self) -> int:
        return int(self.embedder.dim) + DIM

    def _fuse(self, emb: np.ndarray, col: np.ndarray) -> np.ndarray:
        a, b = np.sqrt(self.weight), np.sqrt(1.0 - self.weight)
        return np.concatenate([a * emb, b * col], 1).astype(np.float32)

    def embed_faces(self, image: Image.Image, boxes: Sequence[Sequence[float]]) -> np.ndarray:
        return self._fuse(self.embedder.embed_faces(image, boxes), colour_descriptors(image, boxes))

    def embed_reference(self, image: Image.Image) -> np.ndarray:
        emb = self.embedder.embed_reference(image)[None]
        return self._fuse(emb, colour_descriptors(image, [whole_image_box(image)]))[0]
