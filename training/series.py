"""Train the series classifier and the multi-label genre head on the scene embedding.

Features are the current scene embedder's vectors of frame-store thumbnails, clean and
damaged like screenshots. Every third episode of each series (when it has three or more) is
held out: the series accuracy is measured there and each genre's threshold is tuned there
for the best F1, then reported with its precision and recall.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from core.framestore import FrameStore
from core.models.embedder import SceneEmbedder
from core.models.series import SeriesHead, SeriesHeadNet
from training.augment import heavy


@dataclass(frozen=True)
class SeriesTrainConfig:
    views: int = 2  # damaged copies per frame, besides the clean one
    iters: int = 400
    lr: float = 0.05
    weight_decay: float = 1e-4
    seed: int = 0


def _features(emb: SceneEmbedder, store: FrameStore, episode_ids: list[int], views: int,
              rng: random.Random) -> tuple[np.ndarray, np.ndarray]:
    arrays, owner = [], []
    for eid in episode_ids:
        ef = store.read(eid)
        for i in range(len(ef)):
            img = ef.thumbnail(i)
            arrays.append(emb.prepare(img))
            owner.append(eid)
            for _ in range(views):
                arrays.append(emb.prepare(heavy(img, rng)))
                owner.append(eid)
    if not arrays:
        return np.zeros((0, emb.dim), np.float32), np.zeros(0, np.int64)
    return emb.embed_arrays(np.stack(arrays), batch_size=64), np.asarray(owner)


def _best_threshold(p: np.ndarray, y: np.ndarray) -> tuple[float, dict[str, float]]:
    best = (0.5, {"precision": 0.0, "recall": 0.0, "f1": 0.0})
    for t in np.linspace(0.05, 0.95, 19):
        pred = p >= t
        tp = float((pred & y).sum())
        prec = tp / max(1.0, float(pred.sum()))
        rec = tp / max(1.0, float(y.sum()))
        f1 = 2 * prec * rec / max(1e-9, prec + rec)
        if f1 > best[1]["f1"]:
            best = (float(t), {"precision": round(prec, 3), "recall": round(rec, 3), "f1": round(f1, 3)})
    return best


def train_series_head(emb: SceneEmbedder, store: FrameStore, episodes: list[tuple[int, int]],
                      series_genres: dict[int, list[str]], cfg: SeriesTrainConfig = SeriesTrainConfig()
                      ) -> SeriesHead:
    """Train on `episodes` [(episode_id, series_id)] in episode order."""
    rng = random.Random(cfg.seed)
    torch.manual_seed(cfg.seed)
    series_ids = sorted({s for _, s in episodes})
    if len(series_ids) < 2:
        raise ValueError("a series classifier needs at least two series")
    genre_names = sorted({g for s in series_ids for g in series_genres.get(s, [])})
    per_series: dict[int, list[int]] = {}
    for eid, sid in episodes:
        per_series.setdefault(sid, []).append(eid)
    held = {e for eps in per_series.values() if len(eps) >= 3 for k, e in enumerate(eps) if k % 3 == 2}
    train_ids = [e for e, _ in episodes if e not in held]
    val_ids = [e for e, _ in episodes if e in held] or train_ids
    ep_series = dict(episodes)
    t0 = time.perf_counter()
    xt, ot = _features(emb, store, train_ids, cfg.views, rng)
    xv, ov = _features(emb, store, val_ids, cfg.views, rng)
    s_index = {s: i for i, s in enumerate(series_ids)}

    def labels(owner: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        ys = torch.tensor([s_index[ep_series[int(e)]] for e in owner])
        yg = torch.zeros(len(owner), max(1, len(genre_names)))
        for row, e in enumerate(owner):
            for g in series_genres.get(ep_series[int(e)], []):
                yg[row, genre_names.index(g)] = 1.0
        return ys, yg

    ys, yg = labels(ot)
    net = SeriesHeadNet(emb.dim, len(series_ids), len(genre_names))
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    x = torch.from_numpy(xt)
    for _ in range(cfg.iters):
        s_logits, g_logits = net(x)
        loss = nn.functional.cross_entropy(s_logits, ys)
        if genre_names:
            loss = loss + nn.functional.binary_cross_entropy_with_logits(g_logits, yg)
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    with torch.no_grad():
        sv, gv = net(torch.from_numpy(xv))
    ysv, ygv = labels(ov)
    series_acc = float((sv.argmax(1) == ysv).float().mean())
    probs = torch.sigmoid(gv).numpy()
    thresholds, per_genre = [], {}
    for j, g in enumerate(genre_names):
        t, m = _best_threshold(probs[:, j], ygv[:, j].numpy().astype(bool))
        thresholds.append(t)
        per_genre[g] = {"threshold": round(t, 2), **m}
    version = f"series-{time.strftime('%Y%m%d%H%M%S')}-{len(series_ids)}s"
    metrics: dict[str, Any] = {
        "series_top1": round(series_acc, 4), "genres": per_genre,
        "validated_on": "held-out episodes" if held else "training episodes (too few episodes to hold out)",
        "train_vectors": int(len(ot)), "validation_vectors": int(len(ov)),
        "seconds": round(time.perf_counter() - t0, 1),
    }
    return SeriesHead(version=version, embedder_version=emb.version, series_ids=series_ids,
                      genre_names=genre_names, thresholds=thresholds, net=net, metrics=metrics)
