"""Scene embedder: a torchvision backbone + projection to a small L2-normalised vector.

The same class and preprocessing embed library frames (indexing) and query images (bots),
so the two always agree. A checkpoint holds everything needed to rebuild the model and its
preprocessing without the training code: architecture arguments, input size, normalisation,
name, version and metrics.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchvision
from PIL import Image
from torch import nn

logger = logging.getLogger(__name__)

# Frames and queries are resized to this (height, width) before embedding; 16:9 like TV.
DEFAULT_INPUT_SIZE = (144, 256)
DEFAULT_MEAN = (0.485, 0.456, 0.406)
DEFAULT_STD = (0.229, 0.224, 0.225)
ARCHS = ("tiny", "resnet18", "resnet34", "mobilenet_v3_small", "mobilenet_v3_large",
         "efficientnet_b0")


class TinyFeatures(nn.Module):
    """Model-free features: a contrast-normalised 9x16 grey layout plus a 4x7 chroma layout.

    The default until a CNN is trained: deterministic, ~0.1 ms a frame, strong for
    near-duplicates (re-encodes, tints, subtitles), weak for heavy crops.
    """

    width = 9 * 16 + 3 * 4 * 7
    mean: torch.Tensor  # buffers, registered in __init__
    std: torch.Tensor

    def __init__(self, mean: tuple[float, ...] = DEFAULT_MEAN, std: tuple[float, ...] = DEFAULT_STD) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # pooling a channels-last batch is ~3x slower than this copy and a plain layout
        x = x.contiguous()
        rgb = x * self.std + self.mean  # back to 0..1
        grey = rgb.mean(dim=1, keepdim=True)
        g = nn.functional.adaptive_avg_pool2d(grey, (9, 16)).flatten(1)
        g = g - g.mean(dim=1, keepdim=True)
        g = g / (g.norm(dim=1, keepdim=True) + 1e-3)
        chroma = nn.functional.adaptive_avg_pool2d(rgb - grey, (4, 7)).flatten(1)
        chroma = chroma / (chroma.norm(dim=1, keepdim=True) + 0.05)
        return torch.cat([g, 0.5 * chroma], dim=1)


@dataclass(frozen=True)
class EmbedderSpec:
    """What is needed to rebuild the network and its preprocessing."""

    arch: str = "mobilenet_v3_small"
    dim: int = 256
    input_size: tuple[int, int] = DEFAULT_INPUT_SIZE  # (height, width)
    mean: tuple[float, float, float] = DEFAULT_MEAN
    std: tuple[float, float, float] = DEFAULT_STD
    name: str = "anirec-scene"
    version: str = "default-seed0"
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:  # torch.load gives it back untyped
        d = asdict(self)
        d["input_size"] = list(self.input_size)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EmbedderSpec:
        d = dict(d)
        d["input_size"] = tuple(d["input_size"])
        d["mean"], d["std"] = tuple(d["mean"]), tuple(d["std"])
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


def _backbone(arch: str) -> tuple[nn.Module, int]:
    """A torchvision backbone without its classifier, and its feature width. No download."""
    if arch not in ARCHS:
        raise ValueError(f"unknown backbone {arch!r}; choose one of {', '.join(ARCHS)} "
                         "(or hybrid-<backbone>)")
    if arch == "tiny":
        return TinyFeatures(), TinyFeatures.width
    net = getattr(torchvision.models, arch)(weights=None)
    if arch.startswith("resnet"):
        width = net.fc.in_features
        net.fc = nn.Identity()
    elif arch.startswith("mobilenet"):
        width = net.classifier[0].in_features
        net.classifier = nn.Identity()
    else:  # efficientnet
        width = net.classifier[1].in_features
        net.classifier = nn.Identity()
    return net, width


class SceneNet(nn.Module):
    """Backbone → projection → L2 normalisation.

    `hybrid-<cnn>` concatenates the fixed tiny layout features (half the dimensions, never
    trained) with a trained CNN branch: near-duplicates stay exact while the CNN learns
    what the layout cannot see (crops, mirrored and re-framed screenshots).
    """

    def __init__(self, arch: str = "resnet18", dim: int = 256) -> None:
        super().__init__()
        self.tiny: SceneNet | None = None
        if arch.startswith("hybrid-"):
            self.tiny = SceneNet("tiny", dim // 2)
            self.tiny.requires_grad_(False)
            arch, dim = arch[len("hybrid-"):], dim - dim // 2
        self.backbone, width = _backbone(arch)
        if arch == "tiny":  # a fixed random projection (Johnson-Lindenstrauss) to `dim`
            linear = nn.Linear(width, dim, bias=False)
            nn.init.normal_(linear.weight, std=width ** -0.5)
            self.proj = nn.Sequential(linear)
        else:
            self.proj = nn.Sequential(nn.Linear(width, 512), nn.ReLU(inplace=True), nn.Linear(512, dim))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = nn.functional.normalize(self.proj(self.backbone(x)), dim=-1)
        if self.tiny is not None:
            z = torch.cat([self.tiny(x), z], dim=-1) * (0.5 ** 0.5)
        return z


@dataclass
class SceneEmbedder:
    """A ready-to-use embedder: network in eval mode + its preprocessing."""

    spec: EmbedderSpec
    net: SceneNet
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def version(self) -> str:
        return self.spec.version

    @property
    def dim(self) -> int:
        return self.spec.dim

    @property
    def input_size(self) -> tuple[int, int]:
        return self.spec.input_size

    # -- preprocessing -------------------------------------------------------------------------
    def prepare(self, image: Image.Image) -> np.ndarray:
        """Resize a PIL image to the input size: uint8 HxWx3 (what the frame store keeps)."""
        h, w = self.spec.input_size
        img = image.convert("RGB")
        if img.size != (w, h):
            img = img.resize((w, h), Image.Resampling.BOX if img.width >= w else Image.Resampling.BILINEAR)
        return np.asarray(img, dtype=np.uint8)

    def to_tensor(self, arrays: Sequence[np.ndarray] | np.ndarray) -> torch.Tensor:
        """uint8 [N,H,W,3] arrays (already at input size) → normalised float tensor."""
        batch = np.require(np.stack(list(arrays)) if not isinstance(arrays, np.ndarray) else arrays,
                           requirements=["C", "W"])
        x = torch.from_numpy(batch).permute(0, 3, 1, 2).float().div_(255.0)
        mean = torch.tensor(self.spec.mean).view(1, 3, 1, 1)
        std = torch.tensor(self.spec.std).view(1, 3, 1, 1)
        # channels-last speeds CNNs up; the model-free layout pools a plain layout faster
        fmt = torch.contiguous_format if self.spec.arch == "tiny" else torch.channels_last
        return ((x - mean) / std).contiguous(memory_format=fmt)

    # -- inference ---------------------------------------------------------------------------------
    @torch.inference_mode()
    def embed_arrays(self, arrays: Sequence[np.ndarray] | np.ndarray, batch_size: int = 32) -> np.ndarray:
        """Embed uint8 HxWx3 arrays at input size → float32 [N, dim], L2-normalised."""
        n = len(arrays)
        out = np.empty((n, self.spec.dim), dtype=np.float32)
        for i in range(0, n, batch_size):
            chunk = arrays[i:i + batch_size]
            out[i:i + len(chunk)] = self.net(self.to_tensor(chunk)).numpy()
        return out

    def embed_images(self, images: Sequence[Image.Image], batch_size: int = 32) -> np.ndarray:
        return self.embed_arrays([self.prepare(im) for im in images], batch_size=batch_size)

    # -- persistence -------------------------------------------------------------------------------
    def save(self, path: Path, *, extra: dict[str, object] | None = None) -> None:
        """Write a self-contained checkpoint (atomically)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        torch.save({"kind": "scene", "spec": self.spec.to_dict(), "model": self.net.state_dict(),
                    "metrics": self.metrics, **(extra or {})}, tmp)
        tmp.replace(path)


def build_embedder(spec: EmbedderSpec) -> SceneEmbedder:
    """A fresh network for `spec`, deterministically initialised from `spec.seed`."""
    gen_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(spec.seed)
        net = SceneNet(spec.arch, spec.dim)
    finally:
        torch.random.set_rng_state(gen_state)
    net.eval()
    net.to(memory_format=torch.channels_last)
    return SceneEmbedder(spec=spec, net=net)


def _calibration_images(n: int, size: tuple[int, int], seed: int) -> torch.Tensor:
    """Deterministic picture-like inputs (smooth colour fields, edges, shapes) in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    h, w = size
    low = torch.rand(n, 3, 6, 10, generator=g)
    x = nn.functional.interpolate(low, size=(h, w), mode="bilinear", align_corners=False)
    blocks = torch.rand(n, 3, 12, 20, generator=g)
    x = 0.6 * x + 0.4 * nn.functional.interpolate(blocks, size=(h, w), mode="nearest")
    return x.clamp(0, 1)


@torch.no_grad()
def calibrate_batchnorm(emb: SceneEmbedder, n: int = 96, seed: int = 1234) -> None:
    """Set BatchNorm running statistics of an untrained network from deterministic inputs.

    A randomly initialised network in eval mode uses BN statistics of mean 0 / variance 1,
    which makes every embedding nearly identical; re-estimating them makes the random
    features informative enough for near-duplicate search until a trained model exists.
    """
    mean = torch.tensor(emb.spec.mean).view(1, 3, 1, 1)
    std = torch.tensor(emb.spec.std).view(1, 3, 1, 1)
    x = ((_calibration_images(n, emb.spec.input_size, seed) - mean) / std).contiguous(
        memory_format=torch.channels_last)
    for m in emb.net.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the calibration batches
    emb.net.train()
    for i in range(0, n, 32):
        emb.net(x[i:i + 32])
    emb.net.eval()


def default_embedder(arch: str = "tiny") -> SceneEmbedder:
    """The untrained, fixed-seed embedder used until `anirec train scene` has produced one."""
    emb = build_embedder(EmbedderSpec(arch=arch, version=f"default-seed0-{arch}"))
    if arch != "tiny":
        calibrate_batchnorm(emb)
    return emb


def load_embedder(path: Path | None, *, weights: Path | None = None) -> SceneEmbedder:
    """Load a checkpoint written by `SceneEmbedder.save`, or the default embedder if `path` is None.

    Args:
        path: a checkpoint file, or None for the default model.
        weights: optional local backbone weights (a torchvision state dict) for the default model.
    """
    if path is None:
        emb = default_embedder()
        if weights is not None:
            state = torch.load(weights, map_location="cpu", weights_only=True)
            missing, _ = emb.net.backbone.load_state_dict(state, strict=False)
            digest = hashlib.sha256(Path(weights).read_bytes()).hexdigest()[:8]
            emb = SceneEmbedder(spec=EmbedderSpec(arch=emb.spec.arch, version=f"weights-{digest}"),
                                net=emb.net)
            logger.info("loaded backbone weights %s (%d missing keys)", weights.name, len(missing))
        return emb
    from core.models.checkpoint import load_checkpoint

    ckpt = load_checkpoint(path, "scene", "scene embedder")  # weights only: no pickled code runs
    spec = EmbedderSpec.from_dict(ckpt["spec"])
    emb = build_embedder(spec)
    emb.net.load_state_dict(ckpt["model"])
    emb.net.eval()
    emb.metrics = dict(ckpt.get("metrics", {}))
    return emb
