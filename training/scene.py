"""Train the scene embedder contrastively on the frame store (no video decoding).

Each step samples B shots, one frame from each; its two views are the frame itself (light
noise) and a nearby frame of the same shot damaged like a real screenshot (heavy). An
in-batch symmetric InfoNCE loss pulls the pair together and pushes the other shots away.
Frames of one shot are never negatives of each other (one frame per shot per batch), and
pairs whose stored frames are near-identical (openings, recaps, recurring stills) are masked.

Flat and readable on purpose (nanoGPT style): `get_lr`, `evaluate`, a checkpoint every
`eval_interval` steps, `--resume` continues from the last one.
"""

from __future__ import annotations

import hashlib
import logging
import math
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, IterableDataset

from core.descriptors import tiny_array
from core.framestore import FrameStore
from core.models.embedder import EmbedderSpec, SceneEmbedder, build_embedder
from training.augment import heavy, light
from training.schedule import get_lr

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SceneTrainConfig:
    arch: str = "hybrid-mobilenet_v3_small"  # fixed layout half + trained CNN half
    dim: int = 256
    input_size: tuple[int, int] = (144, 256)
    steps: int = 300
    batch: int = 32  # pairs per step (64 images)
    lr: float = 3e-3
    min_lr: float = 1e-4
    warmup: int = 20
    weight_decay: float = 0.05
    temperature: float = 0.07
    eval_interval: int = 100
    eval_queries: int = 128
    seed: int = 0
    workers: int = 1  # augmentation processes (the model trains in the main process)
    pair_window: float = 1.0  # the positive is a frame of the same shot within ±this many s
    same_rms: float = 0.035  # stored frames closer than this are not negatives of each other
    holdout_every: int = 0  # hold out every Nth episode of each series (0: train on all)
    weights: str | None = None  # optional local backbone weights (torchvision state dict)


@dataclass
class FrameTable:
    """Every stored frame: where it is, its shot, its tiny descriptor."""

    episodes: list[int]  # episode id per frame
    rows: list[int]  # row within the episode's pack
    times: np.ndarray
    groups: list[list[int]]  # frame indices per (episode, shot)
    group_of: np.ndarray
    tiny: np.ndarray  # float32 [N, 432]
    packs: dict[int, Any] = field(default_factory=dict)

    @classmethod
    def build(cls, store: FrameStore, episode_ids: list[int]) -> FrameTable:
        eps: list[int] = []
        rows: list[int] = []
        times: list[float] = []
        tiny: list[np.ndarray] = []
        group_of: list[int] = []
        groups: list[list[int]] = []
        packs = {}
        for eid in episode_ids:
            ef = store.read(eid)
            packs[eid] = ef
            keys: dict[int, int] = {}
            for i in range(len(ef)):
                sh = int(ef.shots[i])
                if sh not in keys:
                    keys[sh] = len(groups)
                    groups.append([])
                g = keys[sh]
                groups[g].append(len(eps))
                group_of.append(g)
                eps.append(eid)
                rows.append(i)
                times.append(float(ef.times[i]))
            tiny.append(ef.descriptors)
        return cls(eps, rows, np.asarray(times), groups, np.asarray(group_of),
                   tiny_array([bytes(d) for d in np.concatenate(tiny)]) if tiny else np.zeros((0, 432)),
                   packs)

    def image(self, i: int) -> Any:
        return self.packs[self.episodes[i]].thumbnail(self.rows[i])


class PairStream(IterableDataset):
    """Endless batches of (light views, heavy views, frame indices), seeded per worker."""

    def __init__(self, table: FrameTable, embedder: SceneEmbedder, cfg: SceneTrainConfig) -> None:
        self.table, self.embedder, self.cfg = table, embedder, cfg

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        info = torch.utils.data.get_worker_info()
        rng = random.Random(self.cfg.seed * 1000 + (info.id if info else 0) + int(time.time() * 1e3) % 997)
        t = self.table
        n_groups = len(t.groups)
        while True:
            gs = rng.sample(range(n_groups), min(self.cfg.batch, n_groups))
            a_imgs, b_imgs, idx = [], [], []
            for g in gs:
                members = t.groups[g]
                i = rng.choice(members)
                near = [j for j in members if abs(t.times[j] - t.times[i]) <= self.cfg.pair_window]
                j = rng.choice(near)
                a_imgs.append(self.embedder.prepare(light(t.image(i), rng)))
                b_imgs.append(self.embedder.prepare(heavy(t.image(j), rng)))
                idx.append(i)
            yield (self.embedder.to_tensor(np.stack(a_imgs)), self.embedder.to_tensor(np.stack(b_imgs)),
                   torch.tensor(idx))




def info_nce(a: torch.Tensor, b: torch.Tensor, not_negative: torch.Tensor, temperature: float
             ) -> torch.Tensor:
    """Symmetric InfoNCE; `not_negative[i, j]` masks pairs that must not push apart."""
    logits = a @ b.T / temperature
    eye = torch.eye(len(a), dtype=torch.bool)
    logits = logits.masked_fill(not_negative & ~eye, float("-inf"))
    target = torch.arange(len(a))
    return 0.5 * (nn.functional.cross_entropy(logits, target)
                  + nn.functional.cross_entropy(logits.T, target))


@torch.no_grad()
def evaluate(embedder: SceneEmbedder, table: FrameTable, query_idx: list[int], seed: int) -> dict[str, float]:
    """Retrieval check: heavily damaged frames vs every stored frame; the top-1 must be the
    same episode within ±2 s (or a near-identical stored frame)."""
    was_training = embedder.net.training
    embedder.net.eval()
    gallery = embedder.embed_arrays(np.stack([np.asarray(table.image(i)) for i in range(len(table.episodes))]),
                                    batch_size=64)
    rng = random.Random(seed)
    queries = [embedder.prepare(heavy(table.image(i), rng)) for i in query_idx]
    qv = embedder.embed_arrays(np.stack(queries), batch_size=64)
    top = (qv @ gallery.T).argmax(axis=1)
    ok = 0
    for qi, gi in zip(query_idx, top.tolist(), strict=True):
        same = table.episodes[gi] == table.episodes[qi] and abs(table.times[gi] - table.times[qi]) <= 2.0
        twin = float(np.sqrt(((table.tiny[gi] - table.tiny[qi]) ** 2).mean())) < 0.035
        ok += same or twin
    embedder.net.train(was_training)
    return {"top1": float(ok) / max(1, len(query_idx))}


def train_scene(store: FrameStore, episode_ids: list[int], cfg: SceneTrainConfig, out_dir: Path, *,
                resume: bool = False, progress: Callable[[int, float, dict[str, float]], None] | None = None
                ) -> tuple[SceneEmbedder, dict[str, Any]]:
    """Train and return the embedder with its metrics. Checkpoints go to `out_dir/ckpt.pt`."""
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    table = FrameTable.build(store, episode_ids)
    if len(table.groups) < 4:
        raise ValueError("too few shots in the frame store to train on; index a library first")
    in_h, in_w = cfg.input_size
    spec = EmbedderSpec(arch=cfg.arch, dim=cfg.dim, input_size=(in_h, in_w), seed=cfg.seed,
                        version="training")
    emb = build_embedder(spec)
    if cfg.weights:
        state = torch.load(cfg.weights, map_location="cpu", weights_only=True)
        emb.net.backbone.load_state_dict(state, strict=False)
    net = emb.net
    net.train()
    decay = [p for n, p in net.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in net.named_parameters() if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr)
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = out_dir / "ckpt.pt"
    step, best = 0, -1.0
    history: list[dict[str, float]] = []
    if resume and ckpt_path.exists():
        ck = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        if ck["config"] == asdict(cfg):
            net.load_state_dict(ck["model"])
            opt.load_state_dict(ck["optimizer"])
            step, best, history = ck["step"], ck["best"], ck["history"]
            logger.info("resumed scene training at step %d", step)
        else:
            logger.warning("checkpoint config differs; starting over")
    rng = random.Random(cfg.seed + 17)
    val_idx = rng.sample(range(len(table.episodes)), min(cfg.eval_queries, len(table.episodes)))
    loader = DataLoader(PairStream(table, emb, cfg), batch_size=None, num_workers=cfg.workers,
                        persistent_workers=cfg.workers > 0, prefetch_factor=2 if cfg.workers else None)
    t0 = time.perf_counter()
    loss_ema = None
    it = iter(loader)
    while step < cfg.steps:
        a, b, idx = next(it)
        for g in opt.param_groups:
            g["lr"] = get_lr(step, cfg)
        za, zb = net(a), net(b)
        tiny = torch.from_numpy(table.tiny[idx.numpy()])
        rms = torch.cdist(tiny, tiny) / math.sqrt(tiny.shape[1])
        loss = info_nce(za, zb, rms < cfg.same_rms, cfg.temperature)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        loss_ema = loss.item() if loss_ema is None else 0.9 * loss_ema + 0.1 * loss.item()
        metrics: dict[str, float] = {}
        if step % cfg.eval_interval == 0 or step == cfg.steps:
            metrics = evaluate(emb, table, val_idx, cfg.seed)
            metrics["loss"] = float(loss_ema)
            metrics["step"] = step
            history.append(metrics)
            best = max(best, metrics["top1"])
            torch.save({"model": net.state_dict(), "optimizer": opt.state_dict(), "step": step,
                        "best": best, "history": history, "config": asdict(cfg),
                        "spec": spec.to_dict()}, ckpt_path.with_suffix(".tmp"))
            ckpt_path.with_suffix(".tmp").replace(ckpt_path)
        if progress is not None:
            progress(step, float(loss_ema), metrics)
    net.eval()
    digest = hashlib.sha256(b"".join(p.detach().numpy().tobytes()[:4096] for p in net.parameters())).hexdigest()[:8]
    version = f"scene-{cfg.arch}-{time.strftime('%Y%m%d%H%M%S')}-{digest}"
    final = SceneEmbedder(spec=EmbedderSpec(**{**spec.to_dict(), "input_size": tuple(spec.input_size),
                                               "mean": tuple(spec.mean), "std": tuple(spec.std),
                                               "version": version}), net=net)
    final.metrics = {"val_top1": history[-1]["top1"] if history else None, "history": history,
                     "steps": step, "train_seconds": round(time.perf_counter() - t0, 1),
                     "frames": len(table.episodes), "shots": len(table.groups),
                     "config": asdict(cfg)}
    return final, final.metrics
