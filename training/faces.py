"""Train and evaluate the face (head box) detector on labelled library frames.

Each step draws B labelled frames, damages each one at random (scale, crop/translate,
letterbox, mirror, colour, occluders, subtitles, blur, downscale, JPEG) into a fixed-size
crop, and fits the CenterNet heads: focal loss on the centre heatmap, L1 on log box size and
on the sub-cell centre offset. Faces cut by the crop edge below `min_visible` of their area
are ignored (neither positive nor negative).

Flat and readable on purpose (nanoGPT style): `get_lr`, an evaluation and a checkpoint every
`eval_interval` steps, `resume=True` continues from the last one. The score threshold is
tuned on the validation frames to maximise F1.
"""

from __future__ import annotations

import io
import logging
import math
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import ArrayLike
from PIL import Image, ImageDraw, ImageFilter

from core.models.faces import FaceDetector, FaceNet, FaceNetSpec, build_face_detector, weights_digest
from data import perturb
from training.facedata import FaceFrame
from training.schedule import get_lr
from training.styles import stylise

logger = logging.getLogger(__name__)

SMALL = 32  # faces lower than this (pixels, in the evaluated frame) count as small


@dataclass(frozen=True)
class TrainConfig:
    widths: tuple[int, ...] = (16, 24, 48, 96, 128)
    depths: tuple[int, ...] = (1, 1, 2, 2, 2)
    fpn: int = 32
    head: int = 32
    input_long: int = 480
    steps: int = 800
    batch: int = 16
    crop: tuple[int, int] = (256, 320)  # (height, width) of a training sample
    lr: float = 4e-3
    min_lr: float = 1e-4
    warmup: int = 40
    weight_decay: float = 0.01
    grad_clip: float = 5.0
    size_weight: float = 1.0
    offset_weight: float = 1.0
    min_visible: float = 0.45  # a face cut by the crop keeps its label above this visible area
    style: float = 0.0  # share of training crops redrawn in a random drawing style (training.styles)
    eval_interval: int = 150
    eval_frames: int = 120  # validation frames evaluated at each interval
    seed: int = 0

    def spec(self) -> FaceNetSpec:
        return FaceNetSpec(widths=tuple(self.widths), depths=tuple(self.depths), fpn=self.fpn,
                           head=self.head, input_long=self.input_long)




# ----------------------------------------------------------------------------- augmentation

@dataclass
class Sample:
    rgb: np.ndarray  # uint8 [H, W, 3]
    boxes: np.ndarray  # float32 [N, 4] x0, y0, x1, y1
    ignore: np.ndarray  # float32 [K, 4] boxes neither positive nor negative


def _frame_boxes(frame: FaceFrame) -> np.ndarray:
    return np.array([f.box for f in frame.faces], np.float32).reshape(-1, 4)


def _occlude(canvas: Image.Image, boxes_out: np.ndarray, ignore: np.ndarray, rng: random.Random,
             cw: int, ch: int) -> tuple[np.ndarray, np.ndarray]:
    """Random blocks drawn on `canvas`, some over a face; a face more than half hidden is
    moved from the labels to the ignored boxes. Returns (boxes, ignored)."""
    d = ImageDraw.Draw(canvas)
    rects: list[tuple[float, float, float, float]] = []
    for _ in range(rng.randint(1, 3)):
        colour = tuple(rng.randrange(256) for _ in range(3))
        if len(boxes_out) and rng.random() < 0.5:
            x0, y0, x1, y1 = boxes_out[rng.randrange(len(boxes_out))].tolist()
            fw, fh = x1 - x0, y1 - y0
            side = rng.randrange(4)  # cover up to ~40% from one side
            f = rng.uniform(0.15, 0.4)
            r = [(x0 - fw, y0 - fh, x0 + f * fw, y1 + fh), (x1 - f * fw, y0 - fh, x1 + fw, y1 + fh),
                 (x0 - fw, y1 - f * fh, x1 + fw, y1 + fh), (x0 - fw, y0 - fh, x1 + fw, y0 + f * fh)][side]
        else:
            rw, rh = rng.uniform(0.05, 0.35) * cw, rng.uniform(0.05, 0.35) * ch
            rx, ry = rng.uniform(0, cw - rw), rng.uniform(0, ch - rh)
            r = (rx, ry, rx + rw, ry + rh)
        d.rectangle(r, fill=colour)
        rects.append(r)
    if len(boxes_out):  # a face more than half hidden is no longer a label
        hidden = np.zeros(len(boxes_out))
        for r in rects:
            ix = (np.minimum(boxes_out[:, 2], r[2]) - np.maximum(boxes_out[:, 0], r[0])).clip(0)
            iy = (np.minimum(boxes_out[:, 3], r[3]) - np.maximum(boxes_out[:, 1], r[1])).clip(0)
            hidden += ix * iy
        area = (boxes_out[:, 2] - boxes_out[:, 0]) * (boxes_out[:, 3] - boxes_out[:, 1])
        gone = hidden > 0.5 * area
        ignore = np.concatenate([ignore, boxes_out[gone]])
        boxes_out = boxes_out[~gone]
    return boxes_out, ignore


def augment(rgb: np.ndarray, boxes: np.ndarray, rng: random.Random, crop: tuple[int, int],
            min_visible: float = 0.45, style: float = 0.0) -> Sample:
    """A randomly damaged `crop`-sized view of a labelled frame, with its boxes moved along;
    with probability `style` also redrawn in a random drawing style (training.styles)."""
    ch, cw = crop
    h, w = rgb.shape[:2]
    img = Image.fromarray(rgb)
    # scale: mostly near the deployed scale (long side = input_long), sometimes far from it
    if rng.random() < 0.15:  # letterboxed / pillarboxed / shrunk screenshot
        s = min(cw / w, ch / h) * rng.uniform(0.55, 1.0)
    elif rng.random() < 0.45:
        s = rng.uniform(0.8, 1.25)
    else:
        s = math.exp(rng.uniform(math.log(0.5), math.log(2.2)))
    sw, sh = w * s, h * s
    lo_x, hi_x = min(0.0, sw - cw), max(0.0, sw - cw)
    lo_y, hi_y = min(0.0, sh - ch), max(0.0, sh - ch)
    if len(boxes) and rng.random() < 0.7:  # keep one face in view
        b = boxes[rng.randrange(len(boxes))] * s
        ox = (b[0] + b[2]) / 2 - rng.uniform(0.1, 0.9) * cw
        oy = (b[1] + b[3]) / 2 - rng.uniform(0.1, 0.9) * ch
    else:
        ox, oy = rng.uniform(lo_x, hi_x), rng.uniform(lo_y, hi_y)
    ox, oy = min(max(ox, lo_x), hi_x), min(max(oy, lo_y), hi_y)
    # the part of the source that lands in the canvas
    fill = rng.choice(((0, 0, 0), (0, 0, 0), (255, 255, 255), (30, 30, 30),
                       tuple(rng.randrange(256) for _ in range(3))))
    canvas = Image.new("RGB", (cw, ch), fill)
    dx0, dy0 = max(0, math.ceil(-ox)), max(0, math.ceil(-oy))
    dx1, dy1 = min(cw, math.floor(sw - ox)), min(ch, math.floor(sh - oy))
    if dx1 - dx0 >= 1 and dy1 - dy0 >= 1:
        src = ((dx0 + ox) / s, (dy0 + oy) / s, (dx1 + ox) / s, (dy1 + oy) / s)
        part = img.resize((dx1 - dx0, dy1 - dy0), Image.Resampling.BILINEAR, box=src)
        canvas.paste(part, (dx0, dy0))
    b = boxes * s - np.array([ox, oy, ox, oy], np.float32)
    clipped = b.copy()
    clipped[:, [0, 2]] = clipped[:, [0, 2]].clip(dx0, dx1)
    clipped[:, [1, 3]] = clipped[:, [1, 3]].clip(dy0, dy1)
    area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    vis = (clipped[:, 2] - clipped[:, 0]).clip(0) * (clipped[:, 3] - clipped[:, 1]).clip(0)
    keep = (vis >= min_visible * np.maximum(area, 1e-6)) & (clipped[:, 3] - clipped[:, 1] >= 6) \
        & (clipped[:, 2] - clipped[:, 0] >= 4)
    ignore = clipped[~keep & (vis > 0)]
    boxes_out = clipped[keep]
    if rng.random() < 0.5:  # mirror
        canvas = canvas.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        boxes_out = boxes_out[:, [2, 1, 0, 3]] * np.array([-1, 1, -1, 1], np.float32) + \
            np.array([cw, 0, cw, 0], np.float32)
        ignore = ignore[:, [2, 1, 0, 3]] * np.array([-1, 1, -1, 1], np.float32) + \
            np.array([cw, 0, cw, 0], np.float32)
    if style and rng.random() < style:
        canvas = stylise(canvas, rng, boxes_out)
    if rng.random() < 0.2:
        canvas = perturb.subtitles(canvas, rng)
    if rng.random() < 0.35:  # occluders: random blocks, some over a face
        boxes_out, ignore = _occlude(canvas, boxes_out, ignore, rng, cw, ch)
    if rng.random() < 0.15:
        canvas = canvas.filter(ImageFilter.GaussianBlur(rng.uniform(0.4, 1.4)))
    if rng.random() < 0.2:
        f = rng.uniform(0.4, 0.8)
        canvas = canvas.resize((max(1, int(cw * f)), max(1, int(ch * f))), Image.Resampling.BILINEAR) \
            .resize((cw, ch), Image.Resampling.BILINEAR)
    if rng.random() < 0.4:
        buf = io.BytesIO()
        canvas.save(buf, format="JPEG", quality=rng.randint(25, 90))
        buf.seek(0)
        canvas = Image.open(buf).convert("RGB")
    arr = np.asarray(canvas, dtype=np.float32)
    if rng.random() < 0.6:  # colour: contrast, brightness, saturation, channel order, gamma
        grey = arr.mean(axis=2, keepdims=True)
        arr = grey + (arr - grey) * rng.uniform(0.4, 1.5)
        arr = (arr - 128.0) * rng.uniform(0.6, 1.3) + 128.0 + rng.uniform(-40, 40)
        arr = arr + np.array([rng.uniform(-15, 15) for _ in range(3)], np.float32)
        if rng.random() < 0.25:
            arr = arr[:, :, rng.sample(range(3), 3)]
        arr = arr.clip(0, 255)
        if rng.random() < 0.3:
            arr = 255.0 * (arr / 255.0) ** rng.uniform(0.6, 1.6)
    return Sample(arr.clip(0, 255).astype(np.uint8), boxes_out.astype(np.float32), ignore.astype(np.float32))


# ----------------------------------------------------------------------------- targets and loss

def make_targets(boxes: np.ndarray, ignore: np.ndarray, hw: tuple[int, int], stride: int = FaceNet.stride
                 ) -> tuple[np.ndarray, ...]:
    """Boxes in input pixels → heat [H, W], size [2, H, W], offset [2, H, W], regression weight
    [H, W], negative weight [H, W].

    The heatmap is an elliptic gaussian per face (TTFNet-style, peak 1 at the centre cell).
    The size is supervised over the gaussian's core, not only at the centre cell (denser
    supervision, faster training; each face's weights sum to 1, smaller faces are written
    last so they win where faces overlap); the offset only at the centre cell."""
    H, W = hw[0] // stride, hw[1] // stride
    heat = np.zeros((H, W), np.float32)
    size = np.zeros((2, H, W), np.float32)
    offset = np.zeros((2, H, W), np.float32)
    regw = np.zeros((H, W), np.float32)
    negw = np.ones((H, W), np.float32)
    for x0, y0, x1, y1 in (ignore / stride).tolist():
        negw[max(0, int(y0)):min(H, math.ceil(y1)), max(0, int(x0)):min(W, math.ceil(x1))] = 0.0
    ys, xs = np.arange(H, dtype=np.float32)[:, None], np.arange(W, dtype=np.float32)[None, :]
    cells = boxes / stride
    order = np.argsort(-(cells[:, 2] - cells[:, 0]) * (cells[:, 3] - cells[:, 1]), kind="stable")
    for x0, y0, x1, y1 in cells[order].tolist():
        bw, bh = max(x1 - x0, 0.25), max(y1 - y0, 0.25)
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        ix, iy = min(W - 1, max(0, int(cx))), min(H - 1, max(0, int(cy)))
        sx, sy = max(0.5, 0.54 * bw / 3), max(0.5, 0.54 * bh / 3)
        g = np.exp(-((xs - ix) ** 2) / (2 * sx * sx) - ((ys - iy) ** 2) / (2 * sy * sy))
        np.maximum(heat, g, out=heat)
        heat[iy, ix] = 1.0
        core = g >= 0.5
        w = np.where(core, g, 0.0)
        w /= w.sum()
        regw[core] = w[core]
        size[0][core], size[1][core] = math.log(bw), math.log(bh)
        offset[:, iy, ix] = (cx - ix, cy - iy)
        negw[iy, ix] = 1.0
    return heat, size, offset, regw, negw


def focal_loss(logits: torch.Tensor, target: torch.Tensor, negw: torch.Tensor) -> torch.Tensor:
    """CenterNet's penalty-reduced pixel-wise focal loss (alpha 2, beta 4), per positive."""
    p = torch.sigmoid(logits).clamp(1e-4, 1 - 1e-4)
    pos = target.eq(1).float()
    logp = torch.nn.functional.logsigmoid(logits)
    log1mp = torch.nn.functional.logsigmoid(-logits)
    pos_loss = -(1 - p) ** 2 * logp * pos
    neg_loss = -(1 - target) ** 4 * p ** 2 * log1mp * (1 - pos) * negw
    return (pos_loss.sum() + neg_loss.sum()) / pos.sum().clamp(min=1.0)


def detection_loss(out: tuple[torch.Tensor, torch.Tensor, torch.Tensor], tg: dict[str, torch.Tensor],
                   cfg: TrainConfig) -> tuple[torch.Tensor, dict[str, float]]:
    heat, size, offset = out
    hm = focal_loss(heat[:, 0], tg["heat"], tg["negw"])
    m = tg["regw"].unsqueeze(1)
    n = tg["heat"].eq(1).sum().clamp(min=1.0)  # faces
    sz = (torch.nn.functional.l1_loss(size, tg["size"], reduction="none") * m).sum() / n
    c = tg["heat"].eq(1).float().unsqueeze(1)
    off = (torch.nn.functional.l1_loss(offset, tg["offset"], reduction="none") * c).sum() / n
    loss = hm + cfg.size_weight * sz + cfg.offset_weight * off
    return loss, {"heat": hm.item(), "size": sz.item(), "offset": off.item()}


@dataclass
class FramePool:
    """Training frames held in memory: pixels and boxes."""

    rgb: list[np.ndarray]
    boxes: list[np.ndarray]

    @classmethod
    def build(cls, frames: Iterable[FaceFrame]) -> FramePool:
        rgb, boxes = [], []
        for f in frames:
            rgb.append(f.rgb)
            boxes.append(_frame_boxes(f))
        return cls(rgb, boxes)

    def batch(self, detector: FaceDetector, cfg: TrainConfig, rng: random.Random
              ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        samples = []
        with_faces = [i for i, b in enumerate(self.boxes) if len(b)]
        crop_h, crop_w = cfg.crop
        for _ in range(cfg.batch):
            pool = with_faces if with_faces and rng.random() < 0.85 else range(len(self.rgb))
            i = rng.choice(pool)
            samples.append(augment(self.rgb[i], self.boxes[i], rng, (crop_h, crop_w), cfg.min_visible, cfg.style))
        x = detector.to_tensor(np.stack([s.rgb for s in samples]))
        hw = (x.shape[-2], x.shape[-1])
        parts = [make_targets(s.boxes, s.ignore, hw) for s in samples]
        names = ("heat", "size", "offset", "regw", "negw")
        tg = {n: torch.from_numpy(np.stack([p[k] for p in parts])) for k, n in enumerate(names)}
        return x, tg


# ----------------------------------------------------------------------------- evaluation

def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix [len(a), len(b)] of x0, y0, x1, y1 boxes (x1/y1 exclusive)."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    ix = (np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])).clip(0)
    iy = (np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])).clip(0)
    inter = ix * iy
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def match_detections(boxes: ArrayLike, scores: ArrayLike, gt: ArrayLike, iou: float = 0.5
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Greedy matching, best score first (VOC rule): each ground-truth box matches at most
    one detection. Returns (matched gt index per detection or -1, in the given order;
    score of the detection that matched each gt box or -1)."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    scores = np.asarray(scores, np.float64).reshape(-1)
    gt = np.asarray(gt, np.float64).reshape(-1, 4)
    det_gt = np.full(len(boxes), -1, np.int64)
    gt_score = np.full(len(gt), -1.0)
    if not len(boxes) or not len(gt):
        return det_gt, gt_score
    ious = box_iou(boxes, gt)
    for d in np.argsort(-scores, kind="stable"):
        cand = np.where(gt_score < 0, ious[d], -1.0)
        g = int(cand.argmax())
        if cand[g] >= iou:
            det_gt[d] = g
            gt_score[g] = scores[d]
    return det_gt, gt_score


@dataclass
class Matches:
    """Every detection (score, true positive?) and every ground-truth face (matched score, kind)."""

    det_scores: np.ndarray
    det_tp: np.ndarray
    gt_scores: np.ndarray
    gt_small: np.ndarray
    gt_profile: np.ndarray
    gt_occluded: np.ndarray

    def at(self, threshold: float) -> dict[str, float]:
        keep = self.det_scores >= threshold
        tp = int((self.det_tp & keep).sum())
        fp = int((~self.det_tp & keep).sum())
        found = self.gt_scores >= threshold
        n = len(self.gt_scores)
        p = tp / (tp + fp) if tp + fp else 1.0
        r = int(found.sum()) / n if n else 1.0
        f1 = 2 * p * r / (p + r) if p + r else 0.0
        return {"threshold": float(threshold), "precision": p, "recall": r, "f1": f1,
                "tp": tp, "fp": fp, "fn": n - int(found.sum())}

    def category_recall(self, threshold: float) -> dict[str, float | None]:
        found = self.gt_scores >= threshold
        out: dict[str, float | None] = {}
        for name, m in (("small", self.gt_small), ("profile", self.gt_profile), ("occluded", self.gt_occluded)):
            out[name] = float(found[m].mean()) if m.any() else None
            out[f"{name}_count"] = int(m.sum())
        return out

    def average_precision(self) -> float:
        """Area under the interpolated precision-recall curve (VOC all-point)."""
        n = len(self.gt_scores)
        if n == 0:
            return 1.0 if not len(self.det_scores) else 0.0
        order = np.argsort(-self.det_scores, kind="stable")
        tp = np.cumsum(self.det_tp[order])
        fp = np.cumsum(~self.det_tp[order])
        rec = np.concatenate([[0.0], tp / n, [tp[-1] / n if len(tp) else 0.0]])
        prec = np.concatenate([[1.0], tp / np.maximum(tp + fp, 1), [0.0]])
        prec = np.maximum.accumulate(prec[::-1])[::-1]
        return float(np.sum((rec[1:] - rec[:-1]) * prec[1:]))


def collect_matches(detector: FaceDetector, frames: Iterable[FaceFrame], iou: float = 0.5,
                    floor: float = 0.02) -> Matches:
    """Run the detector (through `detect`, as deployed) on every frame and match."""
    ds, dt, gs, small, prof, occ = [], [], [], [], [], []
    for f in frames:
        faces = detector.detect(f.image, threshold=floor)
        boxes = np.array([x.box for x in faces], np.float64).reshape(-1, 4)
        scores = np.array([x.score for x in faces], np.float64)
        gt = _frame_boxes(f)
        det_gt, gt_score = match_detections(boxes, scores, gt, iou)
        ds.append(scores)
        dt.append(det_gt >= 0)
        gs.append(gt_score)
        small.append((gt[:, 3] - gt[:, 1]) < SMALL)
        prof.append(np.array([x.profile for x in f.faces], bool))
        occ.append(np.array([x.occluded for x in f.faces], bool))

    def cat(xs: list[np.ndarray], dtype: Any) -> np.ndarray:
        return np.concatenate(xs).astype(dtype) if xs else np.zeros(0, dtype)

    return Matches(cat(ds, np.float64), cat(dt, bool), cat(gs, np.float64), cat(small, bool),
                   cat(prof, bool), cat(occ, bool))


def tune_threshold(detector: FaceDetector, frames: Iterable[FaceFrame], iou: float = 0.5, *,
                   matches: Matches | None = None) -> float:
    """The score threshold that maximises F1 on `frames` (ties: the lower threshold)."""
    m = matches or collect_matches(detector, frames, iou)
    cands = np.unique(np.round(m.det_scores, 4))
    if not len(cands):
        return detector.threshold
    best = max((m.at(t)["f1"], -t) for t in cands.tolist())
    return float(-best[1])


def latency(detector: FaceDetector, frames: list[FaceFrame], width: int = 640, samples: int = 30
            ) -> dict[str, float]:
    """detect() wall time on frames resized to `width` pixels wide (current torch threads)."""
    imgs = []
    for f in frames[:samples]:
        im = f.image
        imgs.append(im.resize((width, max(1, round(im.height * width / im.width))), Image.Resampling.BILINEAR))
    if not imgs:
        return {"p50_ms": 0.0, "p95_ms": 0.0, "images": 0, "width": width}
    detector.detect(imgs[0])
    ts = []
    for im in imgs:
        t0 = time.perf_counter()
        detector.detect(im)
        ts.append((time.perf_counter() - t0) * 1000)
    return {"p50_ms": round(float(np.percentile(ts, 50)), 2), "p95_ms": round(float(np.percentile(ts, 95)), 2),
            "images": len(ts), "width": width, "torch_threads": torch.get_num_threads()}


def evaluate_detector(detector: FaceDetector, frames: Iterable[FaceFrame], iou: float = 0.5, *,
                      latency_samples: int = 30) -> dict[str, Any]:
    """Precision, recall and F1 at the detector's threshold, AP, per-category recall,
    latency p50/p95 at 640 px wide and a precision-recall sweep."""
    frames = list(frames)
    m = collect_matches(detector, frames, iou)
    out: dict[str, Any] = {"iou": iou, "frames": len(frames), "faces": len(m.gt_scores),
                           **m.at(detector.threshold), "ap": m.average_precision(),
                           "recall_by_kind": m.category_recall(detector.threshold)}
    out["sweep"] = [m.at(t) for t in np.round(np.arange(0.05, 1.0, 0.05), 2).tolist()]
    if latency_samples:
        out["latency"] = latency(detector, frames, samples=latency_samples)
    return out


# ----------------------------------------------------------------------------- training

def train_face_detector(train_frames: Iterable[FaceFrame], val_frames: Iterable[FaceFrame], cfg: TrainConfig,
                        out_dir: Path, *, resume: bool = False,
                        progress: Callable[[int, float, dict[str, Any]], None] | None = None
                        ) -> tuple[FaceDetector, dict[str, Any]]:
    """Train, tune the threshold on `val_frames`, return the detector and its metrics.
    Checkpoints go to `out_dir/ckpt.pt` every `eval_interval` steps."""
    torch.manual_seed(cfg.seed)
    pool = FramePool.build(train_frames)
    if not any(len(b) for b in pool.boxes):
        raise ValueError("no labelled faces in the training frames")
    val = list(val_frames)
    rng_val = random.Random(cfg.seed + 1)
    val_probe = rng_val.sample(val, min(cfg.eval_frames, len(val))) if val else []
    det = build_face_detector(cfg.spec(), seed=cfg.seed)
    net = det.net
    net.train()
    decay = [p for p in net.parameters() if p.ndim >= 2]
    no_decay = [p for p in net.parameters() if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = out_dir / "ckpt.pt"
    step, seconds = 0, 0.0
    history: list[dict[str, Any]] = []
    if resume and ckpt_path.exists():
        ck = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        if ck["config"] == asdict(cfg):
            net.load_state_dict(ck["model"])
            opt.load_state_dict(ck["optimizer"])
            step, history, seconds = ck["step"], ck["history"], ck.get("seconds", 0.0)
            logger.info("resumed face detector training at step %d", step)
        else:
            logger.warning("checkpoint config differs; starting over")
    rng = random.Random(cfg.seed * 1_000_003 + step)  # a resumed run draws fresh batches
    t0 = time.perf_counter() - seconds
    loss_ema: float | None = None
    while step < cfg.steps:
        x, tg = pool.batch(det, cfg, rng)
        for g in opt.param_groups:
            g["lr"] = get_lr(step, cfg)
        loss, parts = detection_loss(net(x), tg, cfg)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip)
        opt.step()
        step += 1
        loss_ema = loss.item() if loss_ema is None else 0.9 * loss_ema + 0.1 * loss.item()
        metrics: dict[str, Any] = {}
        if step % cfg.eval_interval == 0 or step == cfg.steps:
            if val_probe:
                net.eval()
                mm = collect_matches(det, val_probe)
                net.train()
                best_t = tune_threshold(det, val_probe, matches=mm)
                metrics = {"ap": mm.average_precision(), **{f"best_{k}": v for k, v in mm.at(best_t).items()}}
            metrics.update({"step": step, "loss": float(loss_ema), **parts,
                            "seconds": round(time.perf_counter() - t0, 1)})
            history.append(metrics)
            tmp = ckpt_path.with_suffix(".tmp")
            torch.save({"model": net.state_dict(), "optimizer": opt.state_dict(), "step": step,
                        "history": history, "config": asdict(cfg), "spec": cfg.spec().to_dict(),
                        "seconds": time.perf_counter() - t0}, tmp)
            tmp.replace(ckpt_path)
        if progress is not None:
            progress(step, float(loss_ema), metrics)
    train_seconds = time.perf_counter() - t0
    net.eval()
    det.version = f"faces-{weights_digest(net)}"
    if val:
        vm = collect_matches(det, val)
        det.threshold = tune_threshold(det, val, matches=vm)
        val_metrics = {**vm.at(det.threshold), "ap": vm.average_precision(), "frames": len(val)}
    else:
        val_metrics = {}
    det.metrics = {"val": val_metrics, "history": history, "steps": step,
                   "train_seconds": round(train_seconds, 1), "train_frames": len(pool.rgb),
                   "train_faces": int(sum(len(b) for b in pool.boxes)), "config": asdict(cfg)}
    return det, det.metrics
