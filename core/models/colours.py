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

`naming_embedder` is what the bot names faces with (`core.recognition.characters`, the
`anirec characters` commands, `anirec eval characters`): the promoted embedder fused with the
colour descriptor at `NAMING_WEIGHT` (measured by `bench/bench_realart.py` on the real-art
tuning backgrounds and by `anirec eval characters` on the sample library); its floors are the
embedder's mapped onto the fused score (`FusedEmbedder.map_floor`) until `anirec characters
calibrate` measures them.
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
# the embedder's share of the bot's naming score: on the real-art tuning split 0.2-0.7 tie and
# 0.1 is one face better, but 0.1 and 0.2 turned away known faces of the sample library (docs/characters.md)
NAMING_WEIGHT = 0.3
# the colour similarity the embedder's floor is mapped around (`FusedEmbedder.map_floor`): set so
# that the sample-library embedder's floor (0.80 at 5 references) maps onto the floor tuned on
# the real-art tuning split at w 0.3 (0.90: the lowest with ≤ 5% wrong names, closed and open
# set; bench/results/realart/naming-fused.json). Faces of one character on annotated boxes score
# ~0.99 (detected boxes, less well placed, lower), of different characters ~0.47.
COLOUR_ANCHOR = 0.94
REFERENCE_MARGIN = 0.15  # stored reference crops hold the head box grown by this on every side (data.cast)


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


def reference_head_box(image: Image.Image, margin: float = REFERENCE_MARGIN) -> tuple[float, float, float, float]:
    """The head box inside a stored reference crop: its central square shrunk by the crop margin
    (`data.cast` stores the head box grown by `margin` on every side), so that a reference's
    colours are measured on the same part of the head as a query face's."""
    x0, y0, x1, y1 = whole_image_box(image)
    inset = (x1 - x0) * margin / (1 + 2 * margin)
    return (x0 + inset, y0 + inset, x1 - inset, y1 - inset)


@dataclass
class FusedEmbedder:
    """The character embedder's vector and the colour descriptor, weighted and concatenated."""

    embedder: Any  # core.models.characters.CharacterEmbedder
    weight: float = 0.5  # share of the embedder's cosine in the fused similarity
    metrics: dict[str, Any] = field(default_factory=dict)
    reference_margin: float = 0.0  # the crop margin of reference images (0: the central square is the head)

    @property
    def version(self) -> str:
        return f"{self.embedder.version}+{COLOUR_VERSION}w{round(self.weight * 100)}"

    @property
    def spec(self) -> Any:
        return self.embedder.spec

    @property
    def dim(self) -> int:
        return int(self.embedder.dim) + DIM

    def fuse(self, emb: np.ndarray, col: np.ndarray) -> np.ndarray:
        """[N, embedder dim] and [N, DIM] unit vectors → the fused vectors."""
        a, b = np.sqrt(self.weight), np.sqrt(1.0 - self.weight)
        return np.concatenate([a * emb, b * col], 1).astype(np.float32)

    def embed_faces(self, image: Image.Image, boxes: Sequence[Sequence[float]]) -> np.ndarray:
        return self.fuse(self.embedder.embed_faces(image, boxes), colour_descriptors(image, boxes))

    def embed_reference(self, image: Image.Image) -> np.ndarray:
        emb = self.embedder.embed_reference(image)[None]
        box = reference_head_box(image, self.reference_margin)
        return self.fuse(emb, colour_descriptors(image, [box]))[0]

    def split(self, vecs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Fused vectors back into (embedder vectors, colour descriptors), each unit length."""
        d = int(self.embedder.dim)
        return vecs[:, :d] / np.sqrt(self.weight), vecs[:, d:] / np.sqrt(1.0 - self.weight)

    def map_floor(self, floor: float) -> float:
        """An embedder-alone floor on the fused score: a face the embedder put at `floor` that
        matches its references' colours as well as a face of the right character usually does."""
        return self.weight * float(floor) + (1.0 - self.weight) * COLOUR_ANCHOR


def naming_embedder(embedder: Any, weight: float = NAMING_WEIGHT) -> FusedEmbedder:
    """What the bot names faces with: the embedder fused with the colour descriptor, reading
    the stored reference crops' head box (`REFERENCE_MARGIN`), with the embedder's floors
    (held-out shots at training time) mapped onto the fused score."""
    if isinstance(embedder, FusedEmbedder):
        return embedder
    fused = FusedEmbedder(embedder, weight, reference_margin=REFERENCE_MARGIN)
    from core.characters import DEFAULT_FLOOR, Floor

    metrics = dict(embedder.metrics)
    f = Floor.of(metrics.pop("floors", metrics.pop("floor", DEFAULT_FLOOR)))
    metrics["floors"] = {"1": round(fused.map_floor(f.one), 4), "5": round(fused.map_floor(f.five), 4)}
    fused.metrics = metrics
    return fused
