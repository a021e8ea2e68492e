"""Train the character embedder (metric learning on face crops) and measure identification.

Supervision: faces are grouped either by **name** (the label file's character names, or
clusters an operator has named) or by **track** (one character within one shot, which a
detector + tracker gives on any library without labels). The loss is a supervised
contrastive loss over two augmented views: faces of the same group attract, everything else
in the batch repels. Augmentations imitate how faces show up in screenshots: off-centre and
loose boxes, small faces (downscale), mirror, brightness and contrast (hue is left alone:
hair and eye colour are identity), blur, JPEG and partial occlusion.

Identification is a closed-set nearest-neighbour match against a gallery of reference
vectors per character, with a similarity floor below which the face is "unknown".
"""

from __future__ import annotations

import io
import logging
import math
import random
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageFilter

from core.characters import Floor
from core.models.characters import CharacterEmbedder, CharacterSpec, crop_face, new_embedder, version_of
from core.models.colours import DIM as COLOUR_DIM
from core.models.colours import FusedEmbedder, colour_descriptor
from training.facedata import FaceFrame
from training.schedule import get_lr

logger = logging.getLogger(__name__)

CONTEXT = 0.6  # stored crops keep this much extra around the box, for jitter at train time
CONTEXT_SIZE = 96


@dataclass
class CharacterTrainConfig:
    steps: int = 400
    batch: int = 96
    lr: float = 2e-3
    min_lr: float = 1e-4
    warmup: int = 30
    weight_decay: float = 0.05
    temperature: float = 0.1
    supervision: str = "names"  # names | tracks
    seed: int = 0
    checkpoint_every: int = 100
    spec: dict[str, Any] = field(default_factory=lambda: CharacterSpec().to_dict())


@dataclass
class FaceSet:
    """Face crops with context (uint8 [N, 96, 96, 3]) and who/where each one is."""

    crops: np.ndarray
    names: list[str]  # "series::character"
    tracks: list[str]
    series: list[str]

    def __len__(self) -> int:
        return len(self.names)

    @classmethod
    def from_frames(cls, frames: Iterable[FaceFrame], *, min_side: int = 8) -> FaceSet:
        crops, names, tracks, series = [], [], [], []
        ctx = CharacterSpec(size=CONTEXT_SIZE, margin=CONTEXT)
        for fr in frames:
            img = fr.image
            for f in fr.faces:
                x0, y0, x1, y1 = f.box
                if min(x1 - x0, y1 - y0) < min_side:
                    continue
                crops.append(crop_face(img, f.box, ctx))
                names.append(f"{fr.series}::{f.character}")
                tracks.append(fr.track(f))
                series.append(fr.series)
        arr = np.stack(crops) if crops else np.zeros((0, CONTEXT_SIZE, CONTEXT_SIZE, 3), np.uint8)
        return cls(arr, names, tracks, series)

    def subset(self, keep: Sequence[bool] | np.ndarray) -> FaceSet:
        idx = np.flatnonzero(np.asarray(keep, bool))
        return FaceSet(self.crops[idx], [self.names[i] for i in idx], [self.tracks[i] for i in idx],
                       [self.series[i] for i in idx])

    def split_by_shot(self, every: int = 5) -> tuple[FaceSet, FaceSet]:
        """(training, validation): the faces of every `every`-th shot are kept aside."""
        val = np.array([int(t.split("#")[1]) % every == every - 1 for t in self.tracks], bool)
        if val.all() or not val.any():
            return self, self.subset(np.zeros(len(self), bool))
        return self.subset(~val), self.subset(val)

    def groups(self, supervision: str) -> np.ndarray:
        keys = self.names if supervision == "names" else self.tracks
        index: dict[str, int] = {}
        return np.array([index.setdefault(k, len(index)) for k in keys], np.int64)


def inner_crop(context_crop: np.ndarray, spec: CharacterSpec, rng: random.Random | None = None) -> np.ndarray:
    """The model's crop out of a context crop: centred, or jittered in place and scale."""
    n = context_crop.shape[0]
    box_side = n / (1 + 2 * CONTEXT)  # the head box's side inside the context crop
    cx = cy = n / 2
    side = box_side
    if rng is not None:
        side *= rng.uniform(0.85, 1.2)
        cx += rng.uniform(-0.12, 0.12) * box_side
        cy += rng.uniform(-0.12, 0.12) * box_side
    img = Image.fromarray(context_crop)
    box = (cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2)
    return crop_face(img, box, spec)


def augment(crop: np.ndarray, rng: random.Random) -> np.ndarray:
    """Screenshot-like damage that keeps hue (identity) intact."""
    img = Image.fromarray(crop)
    n = img.width
    if rng.random() < 0.5:
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    if rng.random() < 0.5:  # a small face: down to 12–40 px and back up
        s = rng.randint(12, 40)
        img = img.resize((s, s), Image.Resampling.BILINEAR).resize((n, n), Image.Resampling.BILINEAR)
    if rng.random() < 0.3:
        img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.2)))
    a = np.asarray(img, dtype=np.float32)
    if rng.random() < 0.8:  # brightness, contrast, a slight tint
        a = (a - 128) * rng.uniform(0.7, 1.3) + 128 + rng.uniform(-30, 30)
        a = a * np.array([rng.uniform(0.92, 1.08) for _ in range(3)], np.float32)
    if rng.random() < 0.25:  # something in front of part of the face
        w, h = rng.randint(n // 5, n // 2), rng.randint(n // 5, n // 2)
        x, y = rng.randint(0, n - w), rng.randint(0, n - h)
        a[y:y + h, x:x + w] = np.array([rng.randint(0, 255) for _ in range(3)], np.float32)
    out = np.clip(a, 0, 255).astype(np.uint8)
    if rng.random() < 0.3:
        buf = io.BytesIO()
        Image.fromarray(out).save(buf, "JPEG", quality=rng.randint(30, 90))
        out = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
    return out


def supcon(z: torch.Tensor, groups: torch.Tensor, temperature: float) -> torch.Tensor:
    """Supervised contrastive loss (Khosla et al.): every same-group pair is a positive."""
    sim = z @ z.t() / temperature
    n = z.shape[0]
    eye = torch.eye(n, dtype=torch.bool)
    sim = sim.masked_fill(eye, -1e9)
    pos = (groups[:, None] == groups[None, :]) & ~eye
    logp = sim - torch.logsumexp(sim, dim=1, keepdim=True)
    npos = pos.sum(1).clamp(min=1)
    return -(logp * pos).sum(1).div(npos).mean()




def _batch(faces: FaceSet, groups: np.ndarray, by_group: dict[int, np.ndarray], cfg: CharacterTrainConfig,
           spec: CharacterSpec, rng: random.Random) -> tuple[np.ndarray, np.ndarray]:
    """cfg.batch/2 groups, two faces (or two views of one) from each."""
    keys = list(by_group)
    chosen = rng.sample(keys, min(len(keys), cfg.batch // 2))
    crops, labels = [], []
    for g in chosen:
        members = by_group[g]
        for _ in range(2):
            i = int(members[rng.randrange(len(members))])
            crops.append(augment(inner_crop(faces.crops[i], spec, rng), rng))
            labels.append(g)
    return np.stack(crops), np.array(labels, np.int64)


def train_characters(faces: FaceSet, cfg: CharacterTrainConfig, out_dir: Path, *, resume: bool = False,
                     progress: Callable[[int, float], None] | None = None) -> tuple[CharacterEmbedder, dict[str, Any]]:
    """Train from scratch (or resume from out_dir/last.pt); returns the embedder and metrics."""
    if len(faces) < 4:
        raise ValueError(f"need at least 4 labelled faces to train on, got {len(faces)}")
    spec = CharacterSpec.from_dict(cfg.spec)
    emb = new_embedder(spec, seed=cfg.seed)
    net = emb.net
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    groups = faces.groups(cfg.supervision)
    by_group = {int(g): np.flatnonzero(groups == g) for g in np.unique(groups)}
    if len(by_group) < 2:
        raise ValueError("need faces of at least two different characters/tracks to train on")
    start, history, seconds = 0, [], 0.0
    ck_path = out_dir / "last.pt"
    if resume and ck_path.exists():
        ck = torch.load(ck_path, map_location="cpu", weights_only=True)
        net.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optim"])
        start, history, seconds = int(ck["step"]), list(ck["history"]), float(ck["seconds"])
        logger.info("resuming character training at step %d", start)
    rng = random.Random(cfg.seed * 1000 + start)
    net.train()
    t0 = time.perf_counter()
    loss_ema = None
    for it in range(start, cfg.steps):
        for gparam in opt.param_groups:
            gparam["lr"] = get_lr(it, cfg)
        crops, labels = _batch(faces, groups, by_group, cfg, spec, rng)
        z = net(emb.to_tensor(crops))
        loss = supcon(z, torch.from_numpy(labels), cfg.temperature)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        lv = loss.item()
        loss_ema = lv if loss_ema is None else 0.9 * loss_ema + 0.1 * lv
        history.append(round(lv, 4))
        if progress:
            progress(it + 1, loss_ema)
        if (it + 1) % cfg.checkpoint_every == 0 or it + 1 == cfg.steps:
            out_dir.mkdir(parents=True, exist_ok=True)
            tmp = ck_path.with_name("last.pt.tmp")
            torch.save({"model": net.state_dict(), "optim": opt.state_dict(), "step": it + 1,
                        "history": history, "seconds": seconds + time.perf_counter() - t0,
                        "config": asdict(cfg)}, tmp)
            tmp.replace(ck_path)
    net.eval()
    emb = CharacterEmbedder(net, spec, version=version_of(net, spec))
    metrics = {"steps": cfg.steps, "train_seconds": round(seconds + time.perf_counter() - t0, 1),
               "faces": len(faces), "groups": len(by_group), "supervision": cfg.supervision,
               "final_loss": loss_ema, "history": history}
    emb.metrics = {k: v for k, v in metrics.items() if k != "history"}
    return emb, metrics


# ----------------------------------------------------------------------------------------------
# identification
# ----------------------------------------------------------------------------------------------
def identify(vectors: np.ndarray, gallery: dict[str, np.ndarray], floor: float) -> list[tuple[str, float]]:
    """Nearest character for each vector: (name, similarity), or ("unknown", sim) below the floor.

    A character's score is the best similarity to any of its references (max over refs)."""
    names = list(gallery)
    if not names or len(vectors) == 0:
        return [("unknown", 0.0) for _ in range(len(vectors))]
    sims = np.stack([(vectors @ gallery[n].T).max(1) for n in names], 1)
    out = []
    for row in sims:
        j = int(row.argmax())
        out.append((names[j] if row[j] >= floor else "unknown", float(row[j])))
    return out


def embed_faceset(emb: CharacterEmbedder | FusedEmbedder, faces: FaceSet) -> np.ndarray:
    """The vectors of a face set's faces (the naming descriptor: the embedder's and the colour
    descriptor of the head box inside each context crop, fused)."""
    if isinstance(emb, FusedEmbedder):
        n = faces.crops.shape[1] if len(faces) else CONTEXT_SIZE
        inset = (n - n / (1 + 2 * CONTEXT)) / 2  # the head box inside the context crop
        box = (inset, inset, n - inset, n - inset)
        col = (np.stack([colour_descriptor(Image.fromarray(c), box) for c in faces.crops]) if len(faces)
               else np.zeros((0, COLOUR_DIM), np.float32))
        return emb.fuse(embed_faceset(emb.embedder, faces), col)
    crops = np.stack([inner_crop(c, emb.spec) for c in faces.crops]) if len(faces) else np.zeros(
        (0, emb.spec.size, emb.spec.size, 3), np.uint8)
    return emb.embed_crops(crops)


def tune_floor(pos_sims: Sequence[float], unknown_sims: Sequence[float], min_accept: float = 0.9) -> float:
    """The similarity floor that rejects the most unknown faces while accepting at least
    `min_accept` of the faces whose character is in the gallery."""
    pos = np.sort(np.asarray(pos_sims, np.float64))
    if len(pos) == 0:
        return 0.5
    floor = float(pos[int(math.floor((1 - min_accept) * (len(pos) - 1)))])
    return floor


def _galleries(emb: CharacterEmbedder | FusedEmbedder, train: FaceSet, train_vecs: np.ndarray,
               refs: dict[str, dict[str, Path]], shots: int | None, seed: int) -> dict[str, dict[str, np.ndarray]]:
    """series → character name → reference vectors, for `shots` references per character:
    the operator's reference image first, then faces from the training episodes."""
    rng = random.Random(seed)
    out: dict[str, dict[str, np.ndarray]] = {}
    by_name: dict[str, list[int]] = {}
    for i, n in enumerate(train.names):
        by_name.setdefault(n, []).append(i)
    for series, cast in refs.items():
        for name, path in cast.items():
            vecs = [emb.embed_reference(Image.open(path))]
            idx = by_name.get(f"{series}::{name}", [])
            if shots is None:
                vecs += [train_vecs[i] for i in idx]
            elif shots > 1 and idx:
                vecs += [train_vecs[i] for i in rng.sample(idx, min(len(idx), shots - 1))]
            out.setdefault(series, {})[name] = np.stack(vecs)
    return out


def evaluate_identification(emb: CharacterEmbedder | FusedEmbedder, train: FaceSet, held: FaceSet,
                            refs: dict[str, dict[str, Path]], *,
                            floor: Floor | float | dict[str, float] | None = None,
                            seed: int = 0) -> dict[str, Any]:
    """Top-1 identification of held-out faces against their series' cast (the closed set when
    the scene is recognised), with 1, 5 and all references per character, and the rate at
    which faces of a character missing from the gallery come back "unknown"."""
    train_vecs = embed_faceset(emb, train)
    held_vecs = embed_faceset(emb, held)
    result: dict[str, Any] = {"faces": len(held), "characters": sum(len(c) for c in refs.values())}
    floor_used = floor
    for label, shots in (("1", 1), ("5", 5), ("all", None)):
        gal = _galleries(emb, train, train_vecs, refs, shots, seed)
        correct, sims_ok = 0, []
        per_series: dict[str, list[int]] = {}
        for i, n in enumerate(held.names):
            series, name = n.split("::", 1)
            cast = gal.get(series, {})
            (pred, sim), = identify(held_vecs[i:i + 1], cast, floor=-1.0)
            ok = pred == name
            correct += ok
            s = per_series.setdefault(series, [0, 0])
            s[0] += ok
            s[1] += 1
            if ok:
                sims_ok.append(sim)
        entry: dict[str, Any] = {"top1": correct / max(1, len(held)),
                                 "per_series": {k: v[0] / v[1] for k, v in sorted(per_series.items())}}
        # unknown faces: each character in turn is left out of its series' gallery
        unk_sims = []
        for i, n in enumerate(held.names):
            series, name = n.split("::", 1)
            cast = {k: v for k, v in gal.get(series, {}).items() if k != name}
            if cast:
                unk_sims.append(identify(held_vecs[i:i + 1], cast, floor=-1.0)[0][1])
        if floor_used is None:
            f = tune_floor(sims_ok, unk_sims)
        else:
            f = Floor.of(floor_used).at(shots or 5)
        accepted = [s >= f for s in sims_ok]
        entry.update({"floor": f, "known_accepted": float(np.mean(accepted)) if accepted else 0.0,
                      "unknown_rejected": float(np.mean([s < f for s in unk_sims])) if unk_sims else 0.0,
                      "top1_with_floor": correct / max(1, len(held)) * (float(np.mean(accepted)) if accepted else 0)})
        result[f"shots_{label}"] = entry
    return result


def training_floors(emb: CharacterEmbedder, train: FaceSet, val: FaceSet, seed: int = 0) -> dict[str, float]:
    """Unknown-face floors measured on validation shots the embedder did not train on:
    galleries of 1 and of 5 training faces per character, the validation faces as queries;
    each floor keeps 95% of the correct matches. Returns {"1": floor, "5": floor}."""
    if not len(val):
        return {"1": 0.5, "5": 0.5}
    tv, vv = embed_faceset(emb, train), embed_faceset(emb, val)
    rng = random.Random(seed)
    by_name: dict[str, list[int]] = {}
    for i, n in enumerate(train.names):
        by_name.setdefault(n, []).append(i)
    out = {}
    for k in (1, 5):
        by_series: dict[str, dict[str, np.ndarray]] = {}
        for n, idx in by_name.items():
            series, name = n.split("::", 1)
            by_series.setdefault(series, {})[name] = tv[rng.sample(idx, min(k, len(idx)))]
        ok = []
        for i, n in enumerate(val.names):
            series, name = n.split("::", 1)
            if series in by_series:
                pred, sim = identify(vv[i:i + 1], by_series[series], floor=-1.0)[0]
                if pred == name:
                    ok.append(sim)
        out[str(k)] = round(tune_floor(ok, [], min_accept=0.95), 4)
    return out
