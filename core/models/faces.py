"""Anime face (head box) detector: a small CenterNet-style network trained from scratch.

A depthwise-separable conv backbone (strides 2..32) with a top-down FPN merge back to
stride 4; three heads on the stride-4 map: a centre heatmap (sigmoid, focal loss), the box
size as log(w, h) in output cells, and the sub-cell offset of the centre. Decoding keeps the
3x3 local maxima of the heatmap, then a box NMS.

The checkpoint holds everything needed to rebuild the network and its preprocessing
without the training code: architecture arguments, input size, normalisation, threshold,
version and metrics (plain tensors and Python values, so `weights_only=True` loads it).
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchvision
from PIL import Image
from torch import nn
from torchvision.ops.misc import Conv2dNormActivation

DEFAULT_MEAN = (0.5, 0.5, 0.5)
DEFAULT_STD = (0.25, 0.25, 0.25)
PAD = 32  # the input is padded to a multiple of the coarsest stride


@dataclass(frozen=True)
class Face:
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 in the given image's pixels (x1/y1 exclusive)
    score: float


@dataclass(frozen=True)
class FaceNetSpec:
    """What is needed to rebuild the network and its preprocessing."""

    widths: tuple[int, ...] = (16, 32, 64, 96, 128)  # stages at strides 2, 4, 8, 16, 32
    depths: tuple[int, ...] = (1, 2, 2, 3, 2)  # separable blocks per stage (first one strides)
    fpn: int = 48  # channels of the merged maps
    head: int = 48
    input_long: int = 480  # images are resized so their long side is this
    mean: tuple[float, float, float] = DEFAULT_MEAN
    std: tuple[float, float, float] = DEFAULT_STD
    max_faces: int = 64
    nms_iou: float = 0.45

    def to_dict(self) -> dict[str, object]:
        d = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FaceNetSpec:
        names = set(cls.__dataclass_fields__)
        kwargs: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items() if k in names}
        return cls(**kwargs)


def separable(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    """Depthwise 3x3 (+BN+ReLU) then pointwise 1x1 (+BN+ReLU)."""
    return nn.Sequential(
        Conv2dNormActivation(cin, cin, 3, stride=stride, groups=cin, activation_layer=nn.ReLU),
        Conv2dNormActivation(cin, cout, 1, activation_layer=nn.ReLU))


class Block(nn.Module):
    """A separable conv with a residual connection when shapes allow."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv = separable(cin, cout, stride)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return x + y if self.residual else y


class FaceNet(nn.Module):
    """Backbone (strides 2..32) + top-down merge to stride 4 + CenterNet heads."""

    stride = 4

    def __init__(self, spec: FaceNetSpec) -> None:
        super().__init__()
        w, d = spec.widths, spec.depths
        stages: list[nn.Module] = [nn.Sequential(
            Conv2dNormActivation(3, w[0], 3, stride=2, activation_layer=nn.ReLU),
            *[Block(w[0], w[0]) for _ in range(d[0] - 1)])]
        for i in range(1, len(w)):
            stages.append(nn.Sequential(Block(w[i - 1], w[i], 2), *[Block(w[i], w[i]) for _ in range(d[i] - 1)]))
        self.stages = nn.ModuleList(stages)
        self.lateral = nn.ModuleList([Conv2dNormActivation(c, spec.fpn, 1, activation_layer=None)
                                      for c in w[1:]])  # strides 4..32
        self.smooth = nn.ModuleList([separable(spec.fpn, spec.fpn) for _ in w[1:-1]])

        def head(out: int) -> nn.Sequential:
            return nn.Sequential(Conv2dNormActivation(spec.fpn, spec.fpn, 3, groups=spec.fpn,
                                                      activation_layer=nn.ReLU),
                                 nn.Conv2d(spec.fpn, spec.head, 1), nn.ReLU(inplace=True),
                                 nn.Conv2d(spec.head, out, 1))

        self.heat, self.size, self.offset = head(1), head(2), head(2)
        heat_out = self.heat[-1]
        assert isinstance(heat_out, nn.Conv2d) and heat_out.bias is not None
        nn.init.constant_(heat_out.bias, -2.19)  # prior 0.1 (CenterNet)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        feats = feats[1:]  # strides 4, 8, 16, 32
        y = self.lateral[-1](feats[-1])
        for i in range(len(feats) - 2, -1, -1):
            lat = self.lateral[i](feats[i])
            y = lat + nn.functional.interpolate(y, size=lat.shape[-2:], mode="nearest")
            y = self.smooth[i](y)
        return self.heat(y), self.size(y), self.offset(y)


def decode(heat: torch.Tensor, size: torch.Tensor, offset: torch.Tensor, *, k: int = 64,
           threshold: float = 0.05, nms_iou: float = 0.45, stride: int = 4) -> list[tuple[np.ndarray, np.ndarray]]:
    """Network outputs (logits) → per image (boxes [N, 4] float in input pixels, scores [N])."""
    prob = torch.sigmoid(heat)
    peaks = prob * (nn.functional.max_pool2d(prob, 3, stride=1, padding=1) == prob)
    b, _, h, w = prob.shape
    out = []
    for i in range(b):
        scores, idx = peaks[i, 0].flatten().topk(min(k, h * w))
        keep = scores >= threshold
        scores, idx = scores[keep], idx[keep]
        ys, xs = (idx // w).float(), (idx % w).float()
        off = offset[i].flatten(1)[:, idx]
        wh = size[i].flatten(1)[:, idx].clamp(-4.0, 6.0).exp()
        cx, cy = (xs + off[0]) * stride, (ys + off[1]) * stride
        bw, bh = wh[0] * stride, wh[1] * stride
        boxes = torch.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], dim=1)
        if len(boxes):
            keep_idx = torchvision.ops.nms(boxes, scores, nms_iou)
            boxes, scores = boxes[keep_idx], scores[keep_idx]
        out.append((boxes.numpy(), scores.numpy()))
    return out


@dataclass
class FaceDetector:
    """A trained detector with its preprocessing and tuned score threshold."""

    spec: FaceNetSpec
    net: FaceNet
    version: str = "faces-untrained"
    threshold: float = 0.3
    metrics: dict[str, Any] = field(default_factory=dict)

    def prepare(self, image: Image.Image) -> tuple[np.ndarray, float]:
        """Image → (uint8 [H, W, 3] resized so the long side is `input_long`, scale)."""
        img = image.convert("RGB") if image.mode != "RGB" else image
        w, h = img.size
        scale = self.spec.input_long / max(w, h, 1)
        nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
        if (nw, nh) != (w, h):
            img = img.resize((nw, nh), Image.Resampling.BILINEAR)
        return np.asarray(img, dtype=np.uint8), scale

    def to_tensor(self, arrays: np.ndarray) -> torch.Tensor:
        """uint8 [B, H, W, 3] → normalised float [B, 3, H', W'] padded to a multiple of 32."""
        x = torch.from_numpy(np.require(arrays, np.uint8, ["C", "W"])).permute(0, 3, 1, 2).float().div_(255.0)
        mean = torch.tensor(self.spec.mean).view(1, 3, 1, 1)
        std = torch.tensor(self.spec.std).view(1, 3, 1, 1)
        x = (x - mean) / std
        h, w = x.shape[-2:]
        ph, pw = -h % PAD, -w % PAD
        if ph or pw:
            x = nn.functional.pad(x, (0, pw, 0, ph))
        return x

    @torch.inference_mode()
    def detect_arrays(self, arrays: np.ndarray, threshold: float) -> list[tuple[np.ndarray, np.ndarray]]:
        """Detections on prepared uint8 [B, H, W, 3] images, in their pixels."""
        was = self.net.training
        self.net.eval()
        heat, size, offset = self.net(self.to_tensor(arrays))
        self.net.train(was)
        return decode(heat, size, offset, k=self.spec.max_faces, threshold=threshold,
                      nms_iou=self.spec.nms_iou, stride=FaceNet.stride)

    def detect(self, image: Image.Image, threshold: float | None = None) -> list[Face]:
        """Faces in `image` (any size or mode), best first, boxes in the image's pixels."""
        thr = self.threshold if threshold is None else float(threshold)
        w, h = image.size
        if w < 1 or h < 1:
            return []
        arr, scale = self.prepare(image)
        boxes, scores = self.detect_arrays(arr[None], thr)[0]
        faces = []
        for (x0, y0, x1, y1), s in zip((boxes / scale).tolist(), scores.tolist(), strict=True):
            bx0, by0 = min(max(0, round(x0)), w), min(max(0, round(y0)), h)
            bx1, by1 = min(max(0, round(x1)), w), min(max(0, round(y1)), h)
            if bx1 > bx0 and by1 > by0:
                faces.append(Face((bx0, by0, bx1, by1), float(s)))
        faces.sort(key=lambda f: -f.score)
        return faces

    def save(self, path: Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        torch.save({"kind": "faces", "version": self.version, "spec": self.spec.to_dict(),
                    "threshold": float(self.threshold), "model": self.net.state_dict(),
                    "metrics": _plain(self.metrics)}, tmp)
        tmp.replace(path)


def _plain(x: object) -> object:
    """Metrics as plain Python values (so the checkpoint loads with weights_only=True)."""
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    if x is None or isinstance(x, (bool, int, float, str)):
        return x
    return str(x)


def build_face_detector(spec: FaceNetSpec | None = None, seed: int = 0) -> FaceDetector:
    """An untrained detector (training starts from this)."""
    torch.manual_seed(seed)
    spec = spec or FaceNetSpec()
    return FaceDetector(spec=spec, net=FaceNet(spec).eval())


def weights_digest(net: nn.Module) -> str:
    h = hashlib.sha256()
    for t in net.state_dict().values():
        h.update(t.detach().cpu().numpy().tobytes())
    return h.hexdigest()[:10]


def load_face_detector(path: Path) -> FaceDetector:
    from core.models.checkpoint import load_checkpoint

    ck = load_checkpoint(path, "faces", "face detector")  # weights only; a damaged file is a BadCheckpoint
    spec = FaceNetSpec.from_dict(ck["spec"])
    net = FaceNet(spec)
    net.load_state_dict(ck["model"])
    net.eval()
    return FaceDetector(spec=spec, net=net, version=ck["version"], threshold=float(ck["threshold"]),
                        metrics=dict(ck.get("metrics", {})))
