"""The character embedder: a face crop → a small L2-normalised vector.

Faces of one character land close together whatever the pose, size and lighting, so a
handful of reference faces per character (one is enough to start) make a gallery that new
faces are matched against. Anime identity lives largely in colour (hair, eyes, skin), so the
network sees colour at full resolution and the crop keeps some hair around the head box.

The checkpoint holds everything needed to rebuild the model and its preprocessing: the
architecture arguments, crop size and margin, normalisation, version and metrics.
"""

from __future__ import annotations

import hashlib
import io
import pickle
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.nn import functional as F

MEAN = (0.5, 0.5, 0.5)
STD = (0.25, 0.25, 0.25)


@dataclass(frozen=True)
class CharacterSpec:
    """Architecture and preprocessing of a character embedder."""

    dim: int = 128
    width: int = 32  # channels of the first stage; doubled at each of the 4 stages
    size: int = 64  # crops are resized to size × size
    margin: float = 0.15  # the head box grows by this fraction on every side before cropping
    mean: tuple[float, float, float] = MEAN
    std: tuple[float, float, float] = STD

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CharacterSpec:
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        for k in ("mean", "std"):
            if k in known:
                known[k] = tuple(known[k])
        return cls(**known)


def _block(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
    )


class CharacterNet(nn.Module):
    """Four conv stages (64→32→16→8→4 px), then average + max pooling and a projection.

    Max pooling keeps small, distinctive details (an eye colour, a hair clip) that an average
    over the whole crop would wash out."""

    def __init__(self, spec: CharacterSpec) -> None:
        super().__init__()
        w = spec.width
        self.stages = nn.Sequential(_block(3, w, 1), nn.MaxPool2d(2), _block(w, 2 * w, 1), nn.MaxPool2d(2),
                                    _block(2 * w, 4 * w, 1), nn.MaxPool2d(2), _block(4 * w, 8 * w, 1),
                                    nn.MaxPool2d(2))
        self.proj = nn.Sequential(nn.Linear(16 * w, 8 * w), nn.BatchNorm1d(8 * w), nn.ReLU(inplace=True),
                                  nn.Linear(8 * w, spec.dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.stages(x)
        f = torch.cat([f.mean((2, 3)), f.amax((2, 3))], 1)
        return F.normalize(self.proj(f), dim=1)


def crop_face(image: Image.Image, box: Sequence[float], spec: CharacterSpec) -> np.ndarray:
    """The square crop around a head box (grown by the margin), resized: uint8 [size, size, 3].

    Parts of the crop outside the image are filled with the edge colour's mean grey, so faces
    at the frame edge keep their scale and position."""
    x0, y0, x1, y1 = (float(v) for v in box)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    side = max(x1 - x0, y1 - y0, 2.0) * (1 + 2 * spec.margin)
    left, t = cx - side / 2, cy - side / 2
    img = image.convert("RGB")
    crop = img.crop((round(left), round(t), round(left + side), round(t + side)))  # pads with black
    inside = (max(0, -round(left)), max(0, -round(t)))
    if (round(left) < 0 or round(t) < 0 or round(left + side) > img.width or round(t + side) > img.height):
        bg = Image.new("RGB", crop.size, (128, 128, 128))
        vis = img.crop((max(0, round(left)), max(0, round(t)), min(img.width, round(left + side)),
                        min(img.height, round(t + side))))
        bg.paste(vis, inside)
        crop = bg
    return np.asarray(crop.resize((spec.size, spec.size), Image.Resampling.BILINEAR), dtype=np.uint8)


def whole_image_crop(image: Image.Image, spec: CharacterSpec) -> np.ndarray:
    """A reference image that is already a head crop: pad to a square and resize."""
    img = image.convert("RGB")
    side = max(img.size)
    sq = Image.new("RGB", (side, side), (128, 128, 128))
    sq.paste(img, ((side - img.width) // 2, (side - img.height) // 2))
    return np.asarray(sq.resize((spec.size, spec.size), Image.Resampling.BILINEAR), dtype=np.uint8)


@dataclass
class CharacterEmbedder:
    """A trained (or untrained) character embedder with its preprocessing."""

    net: CharacterNet
    spec: CharacterSpec
    version: str = "characters-untrained"
    metrics: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.net.eval()
        self._mean = torch.tensor(self.spec.mean).view(1, 3, 1, 1)
        self._std = torch.tensor(self.spec.std).view(1, 3, 1, 1)

    @property
    def dim(self) -> int:
        return self.spec.dim

    def to_tensor(self, crops: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(crops)).permute(0, 3, 1, 2).float() / 255.0
        return (x - self._mean) / self._std

    @torch.inference_mode()
    def embed_crops(self, crops: Sequence[np.ndarray] | np.ndarray, batch_size: int = 64) -> np.ndarray:
        """L2-normalised float32 vectors for uint8 [N, size, size, 3] crops."""
        arr = np.asarray(crops, dtype=np.uint8)
        if len(arr) == 0:
            return np.zeros((0, self.dim), np.float32)
        out = [self.net(self.to_tensor(arr[i:i + batch_size])).numpy() for i in range(0, len(arr), batch_size)]
        return np.concatenate(out).astype(np.float32)

    def embed_faces(self, image: Image.Image, boxes: Sequence[Sequence[float]]) -> np.ndarray:
        return self.embed_crops([crop_face(image, b, self.spec) for b in boxes])

    def embed_reference(self, image: Image.Image) -> np.ndarray:
        """One vector for a reference image that is already cropped to a head."""
        return self.embed_crops([whole_image_crop(image, self.spec)])[0]

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        torch.save({"kind": "characters", "spec": self.spec.to_dict(), "version": self.version,
                    "metrics": self.metrics, "state_dict": self.net.state_dict()}, tmp)
        tmp.replace(path)


def new_embedder(spec: CharacterSpec | None = None, seed: int = 0) -> CharacterEmbedder:
    spec = spec or CharacterSpec()
    torch.manual_seed(seed)
    return CharacterEmbedder(CharacterNet(spec), spec)


def load_character_embedder(path: Path) -> CharacterEmbedder:
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as exc:
        raise ValueError(f"{path} is not a readable character-embedder checkpoint ({exc.__class__.__name__})") from None
    if not isinstance(ck, dict) or ck.get("kind") != "characters":
        raise ValueError(f"{path} is not a character-embedder checkpoint")
    spec = CharacterSpec.from_dict(ck["spec"])
    net = CharacterNet(spec)
    net.load_state_dict(ck["state_dict"])
    return CharacterEmbedder(net, spec, version=ck["version"], metrics=ck.get("metrics", {}))


def version_of(net: nn.Module, spec: CharacterSpec) -> str:
    """A content hash of the weights: the same weights always give the same version."""
    h = hashlib.sha256(repr(spec.to_dict()).encode())
    buf = io.BytesIO()
    for k, v in sorted(net.state_dict().items()):
        h.update(k.encode())
        buf.seek(0)
        buf.truncate()
        np.save(buf, v.detach().cpu().numpy())
        h.update(buf.getvalue())
    return f"characters-{h.hexdigest()[:10]}"
