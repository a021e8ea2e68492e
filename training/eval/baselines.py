"""The three baselines `anirec eval` runs on the same queries as our recognizer: trace.moe's
MPEG-7 ColorLayout (LIRE's exact form, L2), a 64-bit perceptual hash (Hamming) and an
untrained MobileNetV3-Small (cosine), each an exact flat search over every indexed frame's
stored thumbnail with the hits merged per episode within ±5 s, as trace.moe does.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from core.catalog import Catalog
from core.descriptors import phash
from core.framestore import FrameStore
from training.eval.judging import TOLERANCES, Guess
from training.eval.queries import Progress
from training.eval.truth import EvalError

logger = logging.getLogger(__name__)

BASELINES = ("colorlayout", "phash", "untrained_cnn")


@dataclass(frozen=True)
class BaselineParams:
    """How the baselines search and abstain, as trace.moe does."""

    merge_seconds: float = 5.0  # hits of one episode within this many seconds are one scene
    tracemoe_threshold: float = 0.90  # trace.moe: "similarity below 90% is most likely wrong"


BASELINE_PARAMS = BaselineParams()


def _lire_quant_ydc(i: np.ndarray) -> np.ndarray:
    return np.select([i > 192, i > 160, i > 96, i > 64],
                     [112 + ((i - 192) >> 2), 96 + ((i - 160) >> 1), 32 + (i - 96),
                      16 + ((i - 64) >> 1)], i >> 2)


def _lire_quant_cdc(i: np.ndarray) -> np.ndarray:
    return np.select([i > 191, i > 160, i > 144, i > 112, i > 96, i > 64],
                     [np.full_like(i, 63), 56 + ((i - 160) >> 2), 48 + ((i - 144) >> 1),
                      16 + (i - 112), 8 + ((i - 96) >> 1), (i - 64) >> 2], np.zeros_like(i))


def _lire_quant_ac(i: np.ndarray) -> np.ndarray:
    i = np.clip(i, -256, 255)
    a = np.abs(i)
    j = np.select([a > 127, a > 63], [64 + (a >> 2), 32 + (a >> 1)], a)
    return np.where(i < 0, -j, j) + 128


def _dct8() -> np.ndarray:
    k = np.arange(8)[:, None]
    n = np.arange(8)[None, :]
    m = 0.5 * np.cos((2 * n + 1) * k * np.pi / 16)
    m[0] = 1 / (2 * np.sqrt(2))
    return m


_DCT8 = _dct8()
_ZIGZAG = np.array(sorted(range(64), key=lambda z: (z // 8 + z % 8,
                                                    z // 8 if (z // 8 + z % 8) % 2 else z % 8)))


def tracemoe_color_layout(img: Image.Image | np.ndarray, n_y: int = 21, n_c: int = 6) -> np.ndarray:
    """MPEG-7 ColorLayout as trace.moe computes it (LIRE's ColorLayout): 8x8 block means in
    (studio-range) YCbCr, 2-D DCT, zigzag, MPEG-7 quantisation; 21 + 6 + 6 = 33 integers."""
    rgb = np.asarray(img.convert("RGB") if isinstance(img, Image.Image) else img, dtype=np.float64)
    h, w = rgb.shape[:2]
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    yy = (0.299 * r + 0.587 * g + 0.114 * b) / 256.0
    chans = [np.floor(219.0 * yy + 16.5), np.floor(224.0 * 0.564 * (b / 256.0 - yy) + 128.5),
             np.floor(224.0 * 0.713 * (r / 256.0 - yy) + 128.5)]
    cell = ((np.arange(h) * 8) // h)[:, None] * 8 + ((np.arange(w) * 8) // w)[None, :]
    cnt = np.bincount(cell.ravel(), minlength=64)
    out = []
    for c, ch in enumerate(chans):
        sums = np.bincount(cell.ravel(), weights=ch.ravel(), minlength=64)
        block = np.where(cnt > 0, np.floor(sums / np.maximum(cnt, 1)), 0).reshape(8, 8)
        coef = np.floor(_DCT8 @ block @ _DCT8.T + 0.499999).astype(np.int64).ravel()[_ZIGZAG]
        if c == 0:
            dc = _lire_quant_ydc(coef[:1] >> 3) >> 1
            ac = _lire_quant_ac(coef[1:] >> 1) >> 3
            out.append(np.concatenate([dc, ac])[:n_y])
        else:
            dc = _lire_quant_cdc(coef[:1] >> 3)
            ac = _lire_quant_ac(coef[1:]) >> 3
            out.append(np.concatenate([dc, ac])[:n_c])
    return np.concatenate(out).astype(np.float32)


def _phash_vector(img: Image.Image) -> np.ndarray:
    return np.array([phash(img)], dtype=np.uint64)


def _popcount64(x: np.ndarray) -> np.ndarray:
    return np.unpackbits(np.ascontiguousarray(x).view(np.uint8).reshape(-1, 8), axis=1).sum(axis=1)


@dataclass
class FlatSearch:
    """Exact nearest neighbours of one query vector over every indexed frame, with the hits
    merged per episode into scenes within ±5 s (trace.moe's grouping), best first.

    metric: "l2" (similarity (255 - L2)/255, trace.moe's), "cosine" (dot product of unit
    vectors) or "hamming" (64-bit hashes, similarity 1 - d/64).
    """

    name: str
    featurize: Callable[[Image.Image], np.ndarray]
    vectors: np.ndarray  # [N, D] float32, or [N] uint64 for hamming
    episode: np.ndarray  # [N] episode ids
    times: np.ndarray  # [N] seconds
    metric: str

    def distances(self, q: np.ndarray) -> np.ndarray:
        if self.metric == "l2":
            return np.sqrt(((self.vectors - q.reshape(1, -1)) ** 2).sum(axis=1))
        if self.metric == "cosine":
            return 1.0 - self.vectors @ q.reshape(-1)
        if self.metric == "hamming":
            return _popcount64(self.vectors ^ q.reshape(-1)[0]).astype(np.float64)
        raise ValueError(f"unknown metric {self.metric!r}")

    def similarity(self, d: float) -> float:
        if self.metric == "l2":
            return max(0.0, (255.0 - d) / 255.0)
        if self.metric == "cosine":
            return 1.0 - d
        return 1.0 - d / 64.0

    def search(self, img: Image.Image, top: int = TOLERANCES.top_k) -> list[Guess]:
        d = self.distances(self.featurize(img))
        order = np.argsort(d, kind="stable")
        merge = BASELINE_PARAMS.merge_seconds
        groups: list[list[float]] = []  # [episode, from, to, best time, best distance]
        for i in order.tolist():
            e, t = int(self.episode[i]), float(self.times[i])
            for gr in groups:
                if gr[0] == e and (abs(gr[1] - t) < merge or abs(gr[2] - t) < merge):
                    gr[1], gr[2] = min(gr[1], t), max(gr[2], t)
                    break
            else:
                if len(groups) >= top:  # later hits are farther: no new scene can rank higher
                    break
                groups.append([e, t, t, t, float(d[i])])
        return [Guess(int(gr[0]), gr[3], self.similarity(gr[4])) for gr in groups]


def build_baselines(catalog: Catalog, framestore: FrameStore, *,
                    which: Sequence[str] = BASELINES,
                    progress: Progress | None = None) -> list[FlatSearch]:
    """ColorLayout, pHash and untrained-CNN flat searches over the frame store's thumbnails."""
    from core.models.embedder import EmbedderSpec, build_embedder, calibrate_batchnorm

    use_cnn = "untrained_cnn" in which
    cnn = build_embedder(EmbedderSpec(arch="mobilenet_v3_small", name="untrained",
                                      version="untrained-mobilenet_v3_small-seed0", seed=0))
    if use_cnn:
        calibrate_batchnorm(cnn)

    def cnn_vec(img: Image.Image) -> np.ndarray:
        return cnn.embed_arrays(cnn.prepare(img)[None])[0]

    cl, ph, arrays, eps, ts = [], [], [], [], []
    ep_ids = sorted(catalog.episodes)
    for done, eid in enumerate(ep_ids):
        if not framestore.has(eid):
            logger.warning("episode %s has no frame store pack; baselines skip it", eid)
            continue
        ef = framestore.read(eid)
        for i in range(len(ef)):
            img = ef.thumbnail(i)
            if "colorlayout" in which:
                cl.append(tracemoe_color_layout(img))
            if "phash" in which:
                ph.append(phash(img))
            if use_cnn:
                arrays.append(cnn.prepare(img))
            eps.append(eid)
            ts.append(float(ef.times[i]))
        if progress:
            progress("baseline features", done + 1, len(ep_ids) + 1)
    if not eps:
        raise EvalError("The frame store is empty; re-run `anirec index`.")
    ep_arr, t_arr = np.asarray(eps, np.int64), np.asarray(ts, np.float64)
    out = []
    if "colorlayout" in which:
        out.append(FlatSearch("colorlayout", tracemoe_color_layout, np.stack(cl), ep_arr, t_arr, "l2"))
    if "phash" in which:
        out.append(FlatSearch("phash", _phash_vector, np.asarray(ph, np.uint64), ep_arr, t_arr,
                              "hamming"))
    if use_cnn:
        out.append(FlatSearch("untrained_cnn", cnn_vec, cnn.embed_arrays(np.stack(arrays)), ep_arr,
                              t_arr, "cosine"))
    if progress:
        progress("baseline features", len(ep_ids) + 1, len(ep_ids) + 1)
    return out


