"""Evaluation harness: perturbed queries at random times of the indexed library, our recognizer
and three baselines on the same queries, metrics per perturbation, calibration, and a report.

The numbers we steer by (DESIGN.md, "Evaluation"). One run:

1. builds N seeded queries from the library's own videos at random timestamps that are never a
   stored (indexed) frame: single frames under every perturbation of `data.perturb.SUITE`
   (each alone and the combinations, cycled so each gets ≈ N/|SUITE| queries), several-frame
   GIF clips (category "clip"), and ~10% out-of-library stills that should get "not sure";
2. answers each with (a) our `Recognizer`, (b) trace.moe's method (MPEG-7 ColorLayout of every
   indexed frame, exact L2 neighbours of the query's first frame, hits merged per episode within
   ±5 s, similarity (255 - L2)/255), (c) a 64-bit pHash (Hamming), (d) an untrained
   MobileNetV3-Small (cosine). The baselines share one `FlatSearch`;
3. judges every answer against the sample library's `ground_truth.json`. Identical footage
   counts as the same place: a shot of the series' opening/ending is right in every episode of
   the series, and recap footage is right in its source episode (and the other way round). An
   answer flagged as opening/ending with the right series is right for a query inside the
   opening/ending;
4. reports series/episode top-1/top-5, timestamp within ±2 s, MRR, abstention precision/recall,
   a coverage-vs-accuracy curve, latency percentiles, expected calibration error, and, when the
   scene model lists its training episodes, held-out vs training episodes separately.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from core.catalog import Catalog
from core.db.models import Episode
from core.descriptors import phash
from core.errors import AniRecError
from core.framestore import FrameStore
from core.media import Media, load_media
from core.recognition import Calibration, Recognizer, build_recognizer, features_of
from core.types import Recognition
from data.perturb import SUITE, apply
from data.synth import render_out_of_library
from data.video import read_frames_at

logger = logging.getLogger(__name__)

SCHEMA = "anirec-eval/1"
CLIP = "clip"
OOL = "out_of_library"
TOP_K = 5  # candidates judged (top-5 metrics, MRR over the top 5)
TIME_TOLERANCE = 2.0  # seconds: "timestamp right" (top-1)
STILL_SLACK = 0.5  # seconds around a still shot inside which any answered time is right
MERGE_SECONDS = 5.0  # baselines merge hits of one episode within ±5 s (as trace.moe does)
OOL_FRACTION = 0.10  # share of out-of-library queries
CLIP_SPAN = 2.0  # seconds a clip spans
CLIP_PERTURBATIONS = ("clean", "crop50", "mirror", "color", "subtitles", "borders", "downscale360")
CLIP_WIDTHS = (320, 400, 480)
STILL_KINDS = ("static", "title")  # ground-truth shot kinds whose frames barely change
COVERAGES = tuple(range(10, 101, 10))  # percent
ECE_BINS = 10
TRACEMOE_THRESHOLD = 0.90  # trace.moe: "similarity below 90% is most likely wrong"
CALIBRATION_SEED_OFFSET = 7919  # the calibration set's seed differs from the evaluation's

SYSTEMS = ("ours", "colorlayout", "phash", "untrained_cnn")
SYSTEM_LABELS = {
    "ours": "AniRec",
    "colorlayout": "trace.moe ColorLayout",
    "phash": "pHash",
    "untrained_cnn": "untrained MobileNetV3-S",
}
METRICS = ("series_top1", "series_top5", "episode_top1", "episode_top5", "time_2s",
           "time_2s_strict", "mrr")

Progress = Callable[[str, int, int], None]


class EvalError(AniRecError):
    """The evaluation cannot run (no ground truth for the indexed library, nothing indexed)."""


def categories() -> list[str]:
    """In-library query categories in report order: every suite perturbation, then clips."""
    return [*SUITE, CLIP]


# ----------------------------------------------------------------------------------------------
# configuration and value types
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class EvalConfig:
    """What one `anirec eval` run does."""

    queries: int = 1200  # evaluation queries, out-of-library ones included (300 are too noisy)
    seed: int = 0  # everything (times, perturbations, out-of-library stills) follows from it
    calibrate: bool = False  # fit the calibration on a separate query set first, and save it
    calibration_queries: int = 0  # size of that set; 0: the same as `queries`
    baselines: bool = True  # run ColorLayout, pHash and the untrained CNN on the same queries
    search_k: int = 200
    match_threshold: float = 0.80
    unsure_threshold: float = 0.35
    subcrops: bool | None = None  # search the query's sub-crops (None: as the embedder says)

    def __post_init__(self) -> None:
        if self.queries < 1:
            raise ValueError(f"queries must be >= 1, got {self.queries}")
        if self.calibration_queries < 0:
            raise ValueError(f"calibration_queries must be >= 0, got {self.calibration_queries}")


@dataclass(frozen=True)
class Place:
    """Where a query's footage is in the library: an episode file and a time (seconds)."""

    path: str  # absolute posix path, as the catalog stores it
    t: float
    still: tuple[float, float] | None = None  # a still shot around t: any time inside is right


@dataclass
class Query:
    """One evaluation query: the file a user would send, and the truth about it."""

    qid: str
    category: str  # a SUITE name, "clip" or "out_of_library"
    perturbation: str  # what was applied ("clip:<name>" for clips)
    data: bytes = field(repr=False)
    episode: str | None = None  # ground-truth path of the episode (relative to the library)
    series: str | None = None
    t: float | None = None  # time of the (first) frame in that episode
    segment: str = "main"  # opening / ending / recap / title / main
    places: tuple[Place, ...] = ()  # every place showing this footage (the first is the primary)

    @property
    def in_library(self) -> bool:
        return self.category != OOL


@dataclass(frozen=True)
class Guess:
    """One ranked answer of a system."""

    episode_id: int
    time: float
    score: float
    oped: bool = False  # the system says "this is the opening/ending"


@dataclass(frozen=True)
class Judgement:
    """How right a ranked answer list was for one query."""

    series_top1: bool = False
    series_top5: bool = False
    episode_top1: bool = False
    episode_top5: bool = False
    time_2s: bool = False
    time_2s_strict: bool = False
    rank: int = 0  # 1-based rank of the first right episode; 0: none in the top 5

    @property
    def rr(self) -> float:
        return 1.0 / self.rank if self.rank else 0.0


@dataclass
class SystemRun:
    """A system's answers to all queries (aligned with the query list)."""

    name: str
    guesses: list[list[Guess]] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)  # the top-1 score/confidence
    latency_ms: list[float] = field(default_factory=list)
    status: list[str] = field(default_factory=list)  # ours only
    features: list[tuple[float, ...]] = field(default_factory=list)  # ours only


# ----------------------------------------------------------------------------------------------
# ground truth
# ----------------------------------------------------------------------------------------------
@dataclass
class Truth:
    """The ground truth of the indexed part of the library."""

    episodes: list[dict[str, Any]]  # ground-truth episode entries (indexed ones), plus "abs"
    params: dict[str, Any]
    roots: list[str]
    seed: int | None

    def by_abs(self) -> dict[str, dict[str, Any]]:
        return {e["abs"]: e for e in self.episodes}


def load_truth(sessions: sessionmaker[Session], catalog: Catalog, library: Path | None = None) -> Truth:
    """Read `ground_truth.json` of the library the catalog was indexed from (or of `library`).

    Raises:
        EvalError: no ground truth found, or none of its episodes is indexed.
    """
    if library is not None:
        roots = [Path(library)]
    else:
        with sessions() as s:
            roots = [Path(r) for r in s.scalars(select(Episode.library_root)
                                                .where(Episode.status == "indexed").distinct())]
    indexed = {em.path for em in catalog.episodes.values()}
    episodes: list[dict[str, Any]] = []
    params: dict[str, Any] = {}
    used, seed = [], None
    for root in roots:
        gt_path = root / "ground_truth.json"
        if not gt_path.is_file():
            continue
        data = json.loads(gt_path.read_text(encoding="utf-8"))
        params = dict(data.get("params") or {})
        seed = data.get("seed", seed)
        used.append(root.resolve().as_posix())
        for e in data.get("episodes", []):
            ab = (root / e["path"]).resolve().as_posix()
            if ab in indexed:
                episodes.append({**{k: v for k, v in e.items() if k != "frames_gt"}, "abs": ab})
    if not used:
        where = ", ".join(str(r) for r in roots) or "(nothing indexed)"
        raise EvalError(f"No ground_truth.json in the indexed library folder(s): {where}. "
                        "`anirec eval` needs a library written by `anirec sample-library` "
                        "(or pass --library).")
    if not episodes:
        raise EvalError("None of the ground-truth episodes is indexed; run `anirec index` first.")
    episodes.sort(key=lambda e: e["abs"])
    return Truth(episodes=episodes, params=params, roots=used, seed=seed)


def _segment(ep: dict[str, Any], t: float) -> str:
    for name in ("opening", "ending"):
        r = ep.get(name)
        if r and r[0] <= t < r[1]:
            return name
    for r in ep.get("recap") or ():
        if r["from"] <= t < r["to"]:
            return "recap"
    for s in ep.get("shots") or ():
        if s["start"] <= t < s["end"]:
            return str(s.get("segment", "main"))
    return "main"


def _still_offsets(ep: dict[str, Any], t: float) -> tuple[float, float] | None:
    """The still shot around t as offsets from t, if the shot at t is still."""
    for s in ep.get("shots") or ():
        if s["start"] <= t < s["end"]:
            if s.get("kind") in STILL_KINDS:
                return (float(s["start"]) - t, float(s["end"]) - t)
            return None
    return None


def places_of(ep: dict[str, Any], t: float, truth: Truth) -> tuple[Place, ...]:
    """Every (episode, time) that shows the footage of `ep` at `t`; the primary one first."""
    off = _still_offsets(ep, t)

    def place(path: str, tp: float) -> Place:
        return Place(path, tp, (tp + off[0], tp + off[1]) if off else None)

    out = [place(ep["abs"], t)]
    seg = _segment(ep, t)
    if seg in ("opening", "ending"):  # identical in every episode of the series
        a = ep[seg][0]
        for other in truth.episodes:
            r = other.get(seg)
            if other is not ep and other["series"] == ep["series"] and r:
                tp = r[0] + (t - a)
                if tp < r[1]:
                    out.append(place(other["abs"], tp))
    root_of = {e["path"]: e["abs"] for e in truth.episodes}
    for r in ep.get("recap") or ():  # recap → its source
        if r["from"] <= t < r["to"] and r["source_path"] in root_of:
            out.append(place(root_of[r["source_path"]], r["source_time"] + (t - r["from"])))
    for other in truth.episodes:  # source → the recaps that re-use it
        for r in other.get("recap") or ():
            if r["source_path"] == ep["path"]:
                a = r["source_time"]
                if a <= t < a + (r["to"] - r["from"]):
                    out.append(place(other["abs"], r["from"] + (t - a)))
    return tuple(out)


# ----------------------------------------------------------------------------------------------
# queries
# ----------------------------------------------------------------------------------------------
def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def _gif(frames: Sequence[Image.Image], duration_ms: int) -> bytes:
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=list(frames[1:]),
                   duration=duration_ms, loop=0)
    return buf.getvalue()


def stored_frame_numbers(catalog: Catalog, truth: Truth) -> dict[str, set[int]]:
    """Per episode path: the video frame numbers of the stored (indexed) frames."""
    fps_of = {e["abs"]: float(e["fps"]) for e in truth.episodes}
    out: dict[str, set[int]] = {p: set() for p in fps_of}
    path_of = {eid: em.path for eid, em in catalog.episodes.items()}
    for e in np.unique(catalog.ep).tolist():
        path = path_of.get(int(e))
        if path is None or path not in fps_of:
            continue
        ts = catalog.t[catalog.ep == e].astype(np.float64)
        out[path] = set(np.rint(ts * fps_of[path]).astype(np.int64).tolist())
    return out


def build_queries(truth: Truth, stored: dict[str, set[int]], *, n: int, seed: int,
                  progress: Progress | None = None) -> list[Query]:
    """N seeded queries: perturbed stills, GIF clips and out-of-library stills.

    In-library queries are drawn at uniformly random times of uniformly random indexed
    episodes, rejecting any time whose video frame is a stored frame (for clips: any of its
    frames). Each episode is decoded once for all its queries.
    """
    n_ool = round(n * OOL_FRACTION) if n >= 10 else min(1, n - 1)
    n_in = n - n_ool
    cats = categories()
    plan: list[dict[str, Any]] = []
    for i in range(n_in):
        # each query draws from its own stream: another index (other stored frames to avoid)
        # changes only the queries that hit one of them, so index changes compare fairly
        rng = random.Random(f"anirec-eval:{seed}:{i}")
        cat = cats[i % len(cats)]
        ep = rng.choice(truth.episodes)
        fps, dur = float(ep["fps"]), float(ep["duration"])
        if cat == CLIP:
            nf = rng.choice((3, 4))
            offsets = [CLIP_SPAN * j / (nf - 1) for j in range(nf)]
            pert = rng.choice(CLIP_PERTURBATIONS)
        else:
            offsets, pert = [0.0], cat
        hi = max(0.3, dur - 0.25 - offsets[-1])
        frames_stored = stored.get(ep["abs"], set())
        for _ in range(200):
            t = rng.uniform(0.25, hi)
            if all(round((t + o) * fps) not in frames_stored for o in offsets):
                break
        plan.append({"i": i, "cat": cat, "ep": ep, "t": t, "offsets": offsets, "pert": pert,
                     "width": rng.choice(CLIP_WIDTHS), "pseed": seed * 100_003 + i})
    by_ep: dict[str, list[dict[str, Any]]] = {}
    for p in plan:
        by_ep.setdefault(p["ep"]["abs"], []).append(p)
    queries: dict[int, Query] = {}
    total = len(by_ep) + (1 if n_ool else 0)
    for done, (path, items) in enumerate(sorted(by_ep.items())):
        times = [p["t"] + o for p in items for o in p["offsets"]]
        frames = read_frames_at(Path(path), times)
        k = 0
        for p in items:
            imgs = [Image.fromarray(f) for f in frames[k:k + len(p["offsets"])]]
            k += len(p["offsets"])
            ep = p["ep"]
            if p["cat"] == CLIP:
                w = p["width"]
                imgs = [apply(p["pert"], im, p["pseed"]) for im in imgs]
                imgs = [im.resize((w, max(16, round(im.height * w / im.width))), Image.BILINEAR)
                        for im in imgs]
                step = CLIP_SPAN / (len(imgs) - 1)
                data, pert = _gif(imgs, round(step * 100) * 10), f"clip:{p['pert']}"
            else:
                data, pert = _png(apply(p["cat"], imgs[0], p["pseed"])), p["cat"]
            queries[p["i"]] = Query(
                qid=f"q{p['i']:04d}", category=p["cat"], perturbation=pert, data=data,
                episode=ep["path"], series=ep["series"], t=float(p["t"]),
                segment=_segment(ep, p["t"]), places=places_of(ep, p["t"], truth))
        if progress:
            progress("building queries", done + 1, total)
    out = [queries[i] for i in range(n_in)]
    if n_ool:
        w = int(truth.params.get("width", 480))
        h = int(truth.params.get("height", 270))
        singles = list(SUITE)
        for j, img in enumerate(render_out_of_library(n_ool, seed=seed, width=w, height=h)):
            name = singles[j % len(singles)]  # perturbed like the rest: no shortcut to abstain
            out.append(Query(qid=f"q{n_in + j:04d}", category=OOL, perturbation=name,
                             data=_png(apply(name, img, seed * 100_003 + n_in + j))))
        if progress:
            progress("building queries", total, total)
    return out


# ----------------------------------------------------------------------------------------------
# judging
# ----------------------------------------------------------------------------------------------
class Judge:
    """Judges ranked guesses against a query's places."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.series_of_path = {em.path: em.series_id for em in catalog.episodes.values()}

    def __call__(self, q: Query, guesses: Sequence[Guess]) -> Judgement:
        if not q.in_library or not q.places:
            return Judgement()
        want_series = self.series_of_path.get(q.places[0].path)
        rows = []
        for g in guesses[:TOP_K]:
            em = self.catalog.episodes.get(g.episode_id)
            s_ok = em is not None and em.series_id == want_series
            e_ok = t_ok = strict = False
            if s_ok and g.oped and q.segment in ("opening", "ending"):
                e_ok = t_ok = strict = True  # "the opening of <series>" is the right answer
            elif em is not None:
                for p in q.places:
                    if p.path != em.path:
                        continue
                    e_ok = True
                    if abs(g.time - p.t) <= TIME_TOLERANCE:
                        t_ok = strict = True
                    elif p.still and p.still[0] - STILL_SLACK <= g.time <= p.still[1] + STILL_SLACK:
                        t_ok = True
            rows.append((s_ok, e_ok, t_ok, strict))
        if not rows:
            return Judgement()
        rank = next((i + 1 for i, r in enumerate(rows) if r[1]), 0)
        return Judgement(series_top1=rows[0][0], series_top5=any(r[0] for r in rows),
                         episode_top1=rows[0][1], episode_top5=rank > 0, time_2s=rows[0][2],
                         time_2s_strict=rows[0][3], rank=rank)


# ----------------------------------------------------------------------------------------------
# baselines
# ----------------------------------------------------------------------------------------------
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

    def search(self, img: Image.Image, top: int = TOP_K) -> list[Guess]:
        d = self.distances(self.featurize(img))
        order = np.argsort(d, kind="stable")
        groups: list[list[float]] = []  # [episode, from, to, best time, best distance]
        for i in order.tolist():
            e, t = int(self.episode[i]), float(self.times[i])
            for gr in groups:
                if gr[0] == e and (abs(gr[1] - t) < MERGE_SECONDS or abs(gr[2] - t) < MERGE_SECONDS):
                    gr[1], gr[2] = min(gr[1], t), max(gr[2], t)
                    break
            else:
                if len(groups) >= top:  # later hits are farther: no new scene can rank higher
                    break
                groups.append([e, t, t, t, float(d[i])])
        return [Guess(int(gr[0]), gr[3], self.similarity(gr[4])) for gr in groups]


def build_baselines(catalog: Catalog, framestore: FrameStore, *,
                    which: Sequence[str] = ("colorlayout", "phash", "untrained_cnn"),
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


# ----------------------------------------------------------------------------------------------
# ours
# ----------------------------------------------------------------------------------------------
def _guesses_of(rec: Recognition) -> list[Guess]:
    return [Guess(c.episode_id, c.time, c.score, c.is_opening_or_ending) for c in rec.candidates]


def run_ours(recognizer: Recognizer, medias: Sequence[Media],
             progress: Progress | None = None, stage: str = "recognizing") -> SystemRun:
    run = SystemRun("ours")
    if medias:  # warm-up: first-call allocations are not a query's latency
        recognizer.recognize(medias[0])
    for i, media in enumerate(medias):
        t0 = time.perf_counter()
        rec = recognizer.recognize(media)
        run.latency_ms.append((time.perf_counter() - t0) * 1000)
        run.guesses.append(_guesses_of(rec))
        run.scores.append(float(rec.confidence))
        run.status.append(rec.status)
        run.features.append(features_of(rec))
        if progress:
            progress(stage, i + 1, len(medias))
    return run


def fit_calibration(features: Sequence[tuple[float, ...]], right: Sequence[bool],
                    *, name: str) -> Calibration:
    """Fit `Calibration` (logistic regression on [1, score, margin, agree, check, detail]) to
    right/wrong labels.

    Frame agreement is a feature only when the set lets it be one: when it never varies (no
    clip disagreed) it is collinear with the bias, and a fitted weight saying "disagreeing
    frames make an answer more likely right" is noise; both cases refit without it (weight 0).
    The same holds for the colour and detail checks: a better fit must never lower the
    confidence.
    """
    x = np.asarray([Calibration().features(*f) for f in features], np.float64)
    y = np.asarray(right, np.float64)
    cal = Calibration.fit(x, y, l2=1e-2, name=name)
    for col, weight in ((3, "w_frames"), (4, "w_check"), (5, "w_detail")):
        if np.ptp(x[:, col]) < 1e-9 or getattr(cal, weight) < 0:
            x[:, col] = 0.0  # its weight then stays 0 (only the ridge term acts on it)
            cal = Calibration.fit(x, y, l2=1e-2, name=name)
    return cal


# ----------------------------------------------------------------------------------------------
# metrics
# ----------------------------------------------------------------------------------------------
def _r(x: float | None, nd: int = 4) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else round(float(x), nd)


def summarize(js: Sequence[Judgement]) -> dict[str, Any]:
    """Mean of each metric over `js` (an empty list gives None values)."""
    n = len(js)
    out: dict[str, Any] = {"n": n}
    for m in METRICS:
        if n == 0:
            out[m] = None
        elif m == "mrr":
            out[m] = _r(sum(j.rr for j in js) / n)
        else:
            out[m] = _r(sum(bool(getattr(j, m)) for j in js) / n)
    return out


def expected_calibration_error(conf: Sequence[float], correct: Sequence[bool],
                               bins: int = ECE_BINS) -> float:
    """ECE with `bins` equal-width confidence bins: Σ |accuracy - mean confidence| · share."""
    c = np.asarray(conf, np.float64)
    y = np.asarray(correct, np.float64)
    if c.size == 0:
        return 0.0
    idx = np.minimum((c * bins).astype(int), bins - 1)
    ece = 0.0
    for b in range(bins):
        m = idx == b
        if m.any():
            ece += abs(y[m].mean() - c[m].mean()) * m.sum() / c.size
    return float(ece)


def reliability(conf: Sequence[float], correct: Sequence[bool], bins: int = ECE_BINS
                ) -> list[dict[str, Any]]:
    c = np.asarray(conf, np.float64)
    y = np.asarray(correct, np.float64)
    idx = np.minimum((c * bins).astype(int), bins - 1) if c.size else c.astype(int)
    out = []
    for b in range(bins):
        m = idx == b
        out.append({"bin": [b / bins, (b + 1) / bins], "n": int(m.sum()),
                    "confidence": _r(c[m].mean()) if m.any() else None,
                    "accuracy": _r(y[m].mean()) if m.any() else None})
    return out


def coverage_curve(scores: Sequence[float], correct: Sequence[bool]) -> list[dict[str, Any]]:
    """Accuracy of the most confident c% of queries, for c = 10, 20, ..., 100."""
    s = np.asarray(scores, np.float64)
    y = np.asarray(correct, np.float64)
    if s.size == 0:
        return []
    order = np.argsort(-s, kind="stable")
    out = []
    for c in COVERAGES:
        k = max(1, math.ceil(s.size * c / 100))
        out.append({"coverage": c / 100, "accuracy": _r(y[order[:k]].mean()),
                    "min_score": _r(s[order[k - 1]])})
    return out


def abstention(abstained: Sequence[bool], queries: Sequence[Query], right: Sequence[bool]
               ) -> dict[str, Any]:
    """precision = P(out-of-library or top-1 wrong | abstained); recall = P(abstained | OOL)."""
    ab = np.asarray(abstained, bool)
    ool = np.asarray([not q.in_library for q in queries], bool)
    ok = np.asarray(right, bool)
    should = ool | ~ok
    n_ab = int(ab.sum())
    inl = ~ool
    answered_in = inl & ~ab
    return {
        "abstained": n_ab,
        "precision": _r(float((ab & should).sum()) / n_ab) if n_ab else None,
        "recall": _r(float((ab & ool).sum()) / ool.sum()) if ool.any() else None,
        "recall_wrong_in_library": _r(float((ab & inl & ~ok).sum()) / (inl & ~ok).sum())
        if (inl & ~ok).any() else None,
        "in_library_abstain_rate": _r(float((ab & inl).sum()) / inl.sum()) if inl.any() else None,
        "right_but_abstained": int((ab & inl & ok).sum()),
        "answered_accuracy": _r(float((answered_in & ok).sum()) / (~ab).sum()) if (~ab).any() else None,
        "ool_answered": int((ool & ~ab).sum()),
    }


def _percentiles(xs: Sequence[float]) -> dict[str, float | None]:
    if not xs:
        return {"p50": None, "p95": None, "p99": None, "mean": None}
    p = np.percentile(np.asarray(xs, np.float64), [50, 95, 99])
    return {"p50": _r(p[0], 2), "p95": _r(p[1], 2), "p99": _r(p[2], 2),
            "mean": _r(float(np.mean(xs)), 2)}


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return _r(a / b, 3)


# ----------------------------------------------------------------------------------------------
# the run
# ----------------------------------------------------------------------------------------------
def _machine() -> dict[str, Any]:
    import torch

    from core.sysinfo import machine_info

    info = machine_info()
    return {**info, "cpu": info["cpu_model"], "torch_threads": torch.get_num_threads()}


def _load_all(queries: Sequence[Query]) -> tuple[list[Media], list[float]]:
    medias, ms = [], []
    for q in queries:
        t0 = time.perf_counter()
        medias.append(load_media(q.data))
        ms.append((time.perf_counter() - t0) * 1000)
    return medias, ms


def _split_of(truth: Truth, train_episodes: Sequence[str] | None) -> dict[str, str] | None:
    """episode ground-truth path → "train" / "held_out", when the model lists its training set."""
    if not train_episodes:
        return None
    names = {str(p).replace("\\", "/") for p in train_episodes}
    out = {}
    for e in truth.episodes:
        hit = e["path"] in names or e["abs"] in names or any(e["abs"].endswith("/" + n) for n in names)
        out[e["path"]] = "train" if hit else "held_out"
    return out


def evaluate(sessions: sessionmaker[Session], *, index_dir: Path, models_dir: Path,
             framestore_dir: Path, library: Path | None = None,
             config: EvalConfig = EvalConfig(), progress: Progress | None = None,
             calibration_path: Path | None = None) -> dict[str, Any]:
    """Run the whole evaluation and return the result dictionary (see `write_report`).

    Args:
        sessions: the catalog database.
        index_dir, models_dir, framestore_dir: the home folder's parts.
        library: the sample library (default: the folder the catalog was indexed from).
        config: sizes, seed, calibration and baseline switches.
        progress: called as progress(stage, done, total).
        calibration_path: where `--calibrate` saves the fit (default
            `<models_dir>/calibration.json`, which the bot loads).

    Raises:
        EvalError: no ground truth / nothing indexed.
        IndexUnavailable: no index yet.
    """
    t_start = time.perf_counter()
    rec = build_recognizer(sessions, index_dir=index_dir, models_dir=models_dir,
                           search_k=config.search_k, match_threshold=config.match_threshold,
                           unsure_threshold=config.unsure_threshold, num_threads=1,
                           subcrops=config.subcrops)
    catalog = rec.catalog
    truth = load_truth(sessions, catalog, library)
    stored = stored_frame_numbers(catalog, truth)
    judge = Judge(catalog)
    cal_before = rec.calibration
    cal_report: dict[str, Any] = {"calibrated": False, "before": dict(cal_before.__dict__)}

    # 1. calibration on its own query set (another seed), saved before the evaluation runs
    if config.calibrate:
        cal_seed = config.seed + CALIBRATION_SEED_OFFSET
        cal_n = config.calibration_queries or config.queries
        cal_q = build_queries(truth, stored, n=cal_n, seed=cal_seed,
                              progress=_stage(progress, "calibration queries"))
        cal_media, _ = _load_all(cal_q)
        cal_run = run_ours(rec, cal_media, progress, "calibration set")
        del cal_media
        labels = [judge(q, g).episode_top1 for q, g in zip(cal_q, cal_run.guesses)]
        name = f"eval seed={cal_seed} n={cal_n} {dt.date.today().isoformat()}"
        fitted = fit_calibration(cal_run.features, labels, name=name)
        path = Path(calibration_path or Path(models_dir) / "calibration.json")
        fitted.save(path)
        rec.calibration = fitted
        cal_report.update({"calibrated": True, "after": dict(fitted.__dict__), "path": str(path),
                           "set": {"n": cal_n, "seed": cal_seed,
                                   "right": int(sum(labels)), "wrong": int(len(labels) - sum(labels))}})

    # 2. the evaluation queries
    queries = build_queries(truth, stored, n=config.queries, seed=config.seed,
                            progress=_stage(progress, "building queries"))
    medias, load_ms = _load_all(queries)
    runs: dict[str, SystemRun] = {"ours": run_ours(rec, medias, progress, "recognizing")}
    for i, ms in enumerate(load_ms):  # latency of ours: decoding the file + recognition
        runs["ours"].latency_ms[i] += ms
    if config.baselines:
        for fs in build_baselines(catalog, FrameStore(framestore_dir), progress=progress):
            run = SystemRun(fs.name)
            for i, m in enumerate(medias):
                t0 = time.perf_counter()
                gs = fs.search(m.first)  # the first frame only, as trace.moe does
                run.latency_ms.append((time.perf_counter() - t0) * 1000)
                run.guesses.append(gs)
                run.scores.append(gs[0].score if gs else 0.0)
                if progress:
                    progress(f"baseline {fs.name}", i + 1, len(medias))
            runs[fs.name] = run

    # 3. judge and summarize
    judged = {name: [judge(q, g) for q, g in zip(queries, run.guesses)] for name, run in runs.items()}
    inl = [i for i, q in enumerate(queries) if q.in_library]
    cats = categories()
    systems: dict[str, Any] = {}
    for name, run in runs.items():
        js = judged[name]
        per_cat = {c: summarize([js[i] for i in inl if queries[i].category == c]) for c in cats}
        right = [js[i].episode_top1 for i in inl]
        entry: dict[str, Any] = {
            "label": SYSTEM_LABELS[name],
            "overall": summarize([js[i] for i in inl]),
            "per_category": per_cat,
            "coverage_accuracy": coverage_curve([run.scores[i] for i in inl], right),
            "latency_ms": _percentiles(run.latency_ms),
        }
        if name == "colorlayout":
            entry["abstention_at_0.90"] = abstention(
                [s < TRACEMOE_THRESHOLD for s in run.scores], queries, [j.episode_top1 for j in js])
        systems[name] = entry

    ours = runs["ours"]
    ours_js = judged["ours"]
    right_all = [j.episode_top1 for j in ours_js]
    ab = [s != "match" for s in ours.status]
    systems["ours"]["abstention"] = abstention(ab, queries, right_all)
    systems["ours"]["status_counts"] = {s: ours.status.count(s) for s in ("match", "unsure", "no_match")}
    systems["ours"]["load_ms"] = _percentiles(load_ms)
    for c in cats + [OOL]:
        idx = [i for i, q in enumerate(queries) if q.category == c]
        pc = systems["ours"]["per_category"].setdefault(c, {"n": len(idx)})
        pc["abstain_rate"] = _r(sum(ab[i] for i in idx) / len(idx)) if idx else None
        matched = [i for i in idx if not ab[i]]
        pc["matched_accuracy"] = _r(sum(right_all[i] for i in matched) / len(matched)) if matched else None

    conf_after = list(ours.scores)
    conf_before = [cal_before(*f) if ours.guesses[i] else 0.0 for i, f in enumerate(ours.features)]
    cal_report["ece_before"] = _r(expected_calibration_error(conf_before, right_all))
    cal_report["ece"] = _r(expected_calibration_error(conf_after, right_all))
    if config.calibrate:
        cal_report["ece_after"] = cal_report["ece"]
        ab_before = [c < config.match_threshold for c in conf_before]
        systems["ours"]["abstention_before_calibration"] = abstention(ab_before, queries, right_all)
    cal_report["reliability"] = reliability(conf_after, right_all)
    cal_report["reliability_before"] = reliability(conf_before, right_all)
    cal_report["confidence_range"] = [_r(min(conf_after)), _r(max(conf_after))] if conf_after else None

    ratios = {}
    if "colorlayout" in systems:
        for c in cats + ["overall"]:
            a = systems["ours"]["overall"] if c == "overall" else systems["ours"]["per_category"][c]
            b = systems["colorlayout"]["overall"] if c == "overall" else systems["colorlayout"]["per_category"][c]
            ratios[c] = {m: _ratio(a.get(m), b.get(m)) for m in ("series_top1", "episode_top1", "time_2s")}

    # 4. held-out honesty
    emb = rec.embedder
    train_eps = (getattr(emb, "metrics", {}) or {}).get("train_episodes")
    split = _split_of(truth, train_eps)
    if split is None:
        splits: dict[str, Any] = {"setting": "per-library setting (model not trained on a split)"}
    else:
        splits = {"setting": "held-out split (the scene model lists its training episodes)",
                  "episodes": {k: sum(1 for v in split.values() if v == k) for k in ("train", "held_out")}}
        for part in ("held_out", "train"):
            ids = [i for i in inl if split.get(queries[i].episode or "") == part]
            splits[part] = {name: summarize([judged[name][i] for i in ids]) for name in runs}

    n_series = len({e["series"] for e in truth.episodes})
    per_query = []
    for i, q in enumerate(queries):
        row: dict[str, Any] = {"id": q.qid, "category": q.category, "perturbation": q.perturbation,
                               "episode": q.episode, "t": _r(q.t, 3), "segment": q.segment}
        for name, run in runs.items():
            j = judged[name][i]
            top = run.guesses[i][0] if run.guesses[i] else None
            row[name] = {"rank": j.rank, "series": j.series_top1, "episode": j.episode_top1,
                         "time": j.time_2s, "score": _r(run.scores[i]),
                         "answer_t": _r(top.time, 2) if top else None}
            if name == "ours":
                row[name]["status"] = run.status[i]
                # what the confidence was computed from: score, margin, agreement, check, detail
                row[name]["evidence"] = [_r(x) for x in run.features[i]]
        per_query.append(row)

    counts = {c: sum(1 for q in queries if q.category == c) for c in cats + [OOL]}
    return {
        "schema": SCHEMA,
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": _machine(),
        "library": {"roots": truth.roots, "params": truth.params, "seed": truth.seed,
                    "series": n_series, "episodes": len(truth.episodes),
                    "video_seconds": _r(sum(float(e["duration"]) for e in truth.episodes), 1),
                    "indexed_frames": len(catalog)},
        "model": {"version": rec.model_version, "embedder": emb.spec.to_dict(),
                  "trained_on_split": split is not None,
                  "metrics": {k: v for k, v in (getattr(emb, "metrics", {}) or {}).items()
                              if k != "train_episodes" and isinstance(v, (int, float, str, bool))}},
        "index": {"version": rec.index_version, "vectors": len(rec.index),
                  "region_vectors": len(getattr(rec.index, "regions", None) or ())},
        "config": {"queries": config.queries, "seed": config.seed, "calibrate": config.calibrate,
                   "baselines": config.baselines, "search_k": config.search_k,
                   "match_threshold": config.match_threshold,
                   "unsure_threshold": config.unsure_threshold,
                   "subcrops": rec.subcrops,
                   "time_tolerance_s": TIME_TOLERANCE, "merge_window_s": MERGE_SECONDS},
        "queries": {"n": len(queries), "in_library": len(inl), "out_of_library": counts[OOL],
                    "per_category": counts},
        "categories": cats,
        "systems": systems,
        "ratios_vs_colorlayout": ratios,
        "calibration": cal_report,
        "splits": splits,
        "wall_seconds": _r(time.perf_counter() - t_start, 1),
        "per_query": per_query,
    }


def _stage(progress: Progress | None, name: str) -> Progress | None:
    if progress is None:
        return None
    return lambda _stage_name, done, total: progress(name, done, total)


# ----------------------------------------------------------------------------------------------
# output
# ----------------------------------------------------------------------------------------------
def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.0f}%"


def _x(x: float | None) -> str:
    return "–" if x is None else f"{x:.2f}×"


def format_table(result: dict[str, Any]) -> str:
    """A compact plain-text table: episode top-1 per category for every system."""
    systems = [s for s in SYSTEMS if s in result["systems"]]
    short = {"ours": "AniRec", "colorlayout": "ColorLay", "phash": "pHash", "untrained_cnn": "CNN-0"}
    head = f"{'category':22}{'n':>4}" + "".join(f"{short[s]:>10}" for s in systems)
    if "colorlayout" in systems:
        head += f"{'ours/CL':>9}"
    lines = ["episode top-1 per perturbation", head, "-" * len(head)]
    ratios = result.get("ratios_vs_colorlayout", {})
    for c in result["categories"] + ["overall"]:
        row = result["systems"]["ours"]["overall" if c == "overall" else "per_category"]
        row = row if c == "overall" else row[c]
        line = f"{c:22}{row['n']:>4}"
        for s in systems:
            m = result["systems"][s]["overall"] if c == "overall" else result["systems"][s]["per_category"][c]
            line += f"{_pct(m['episode_top1']):>10}"
        if "colorlayout" in systems:
            line += f"{_x(ratios.get(c, {}).get('episode_top1')):>9}"
        lines.append(line)
    o = result["systems"]["ours"]
    ab, lat, cal = o["abstention"], o["latency_ms"], result["calibration"]
    lines.append("")
    lines.append(f"ours overall: series@1 {_pct(o['overall']['series_top1'])} · episode@5 "
                 f"{_pct(o['overall']['episode_top5'])} · time ±2 s {_pct(o['overall']['time_2s'])} "
                 f"· MRR {o['overall']['mrr'] or 0:.3f}")
    lines.append(f"abstention: precision {_pct(ab['precision'])}, recall on out-of-library "
                 f"{_pct(ab['recall'])} ({result['queries']['out_of_library']} queries) · "
                 f"latency p50 {lat['p50']} ms, p95 {lat['p95']} ms, p99 {lat['p99']} ms")
    ece = f"ECE {cal['ece']:.3f}"
    if cal.get("calibrated"):
        ece = f"ECE {cal['ece_before']:.3f} → {cal['ece_after']:.3f} (calibration saved to {cal['path']})"
    lines.append(f"{ece} · {result['splits']['setting']}")
    return "\n".join(lines)


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def _plots(result: dict[str, Any], out_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    systems = [s for s in SYSTEMS if s in result["systems"]]
    colours = {"ours": "#d62728", "colorlayout": "#1f77b4", "phash": "#7f7f7f",
               "untrained_cnn": "#2ca02c"}
    cats = result["categories"] + ["overall"]
    written = []

    fig = Figure(figsize=(13, 7.5), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2, sharey=True)
    y = np.arange(len(cats))
    h = 0.8 / len(systems)
    for ax, metric, title in ((axes[0], "episode_top1", "episode top-1"),
                              (axes[1], "series_top1", "series top-1")):
        for k, s in enumerate(systems):
            vals = [(result["systems"][s]["overall"] if c == "overall" else
                     result["systems"][s]["per_category"][c])[metric] or 0.0 for c in cats]
            ax.barh(y + (k - (len(systems) - 1) / 2) * h, vals, height=h, color=colours[s],
                    label=SYSTEM_LABELS[s])
        ax.set_xlim(0, 1)
        ax.set_title(title)
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(y, cats)
    axes[0].invert_yaxis()
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=len(systems), fontsize=9)
    fig.suptitle(f"Accuracy per perturbation (N={result['queries']['n']}, "
                 f"{result['model']['version']})")
    p = out_dir / "accuracy_per_perturbation.png"
    fig.savefig(p, dpi=110)
    written.append(p)

    fig = Figure(figsize=(6.5, 4.5), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    for s in systems:
        curve = result["systems"][s]["coverage_accuracy"]
        ax.plot([c["coverage"] for c in curve], [c["accuracy"] for c in curve], marker="o",
                color=colours[s], label=SYSTEM_LABELS[s])
    ax.set_xlabel("coverage (share of in-library queries answered, most confident first)")
    ax.set_ylabel("episode top-1 accuracy")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("Coverage vs accuracy")
    p = out_dir / "coverage_accuracy.png"
    fig.savefig(p, dpi=110)
    written.append(p)

    cal = result["calibration"]
    fig = Figure(figsize=(5, 4.5), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], color="black", lw=0.8, ls="--")
    series = [("reliability", "in use" if not cal.get("calibrated") else "after", "#d62728")]
    if cal.get("calibrated"):
        series.append(("reliability_before", "before", "#7f7f7f"))
    for key, label, colour in series:
        pts = [b for b in cal[key] if b["n"]]
        ax.plot([b["confidence"] for b in pts], [b["accuracy"] for b in pts], marker="o",
                color=colour, label=label)
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy (episode top-1)")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend()
    ax.set_title("Calibration (reliability)")
    p = out_dir / "calibration.png"
    fig.savefig(p, dpi=110)
    written.append(p)
    return written


def write_report(result: dict[str, Any], out_dir: Path) -> list[Path]:
    """Write `report.md` and its PNG plots into `out_dir`; return the written paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = _plots(result, out_dir)
    systems = [s for s in SYSTEMS if s in result["systems"]]
    cats = result["categories"]
    o = result["systems"]["ours"]
    q = result["queries"]
    lib = result["library"]
    md: list[str] = []
    md.append(f"# AniRec evaluation — {result['date'][:10]}\n")
    md.append(f"- **Queries**: {q['n']} (seed {result['config']['seed']}): {q['in_library']} "
              f"in-library ({q['per_category'].get(CLIP, 0)} of them GIF clips), "
              f"{q['out_of_library']} out-of-library. Random timestamps, never an indexed frame.")
    params = lib.get("params") or {}
    md.append(f"- **Library**: {lib['series']} series, {lib['episodes']} episodes, "
              f"{lib['video_seconds']} s of video, {lib['indexed_frames']} indexed frames "
              f"(synthetic sample library, seed {lib.get('seed')}, "
              f"{params.get('width')}x{params.get('height')} @ {params.get('fps')} fps).")
    regions = result["index"].get("region_vectors") or 0
    md.append(f"- **Model**: `{result['model']['version']}` · **index** `{result['index']['version']}`"
              + (f" ({result['index']['vectors']} frame vectors + {regions} region vectors)"
                 if regions else ""))
    md.append(f"- **Setting**: {result['splits']['setting']}")
    if result.get("command"):
        md.append(f"- **Command**: `{result['command']}`")
    m = result["machine"]
    md.append(f"- **Machine**: {m['cpu']} ({m['cpu_count']} cores), torch {m['torch']} with "
              f"{m['torch_threads']} thread(s), {m['platform']}; run took {result['wall_seconds']} s.\n")

    md.append("## Episode top-1 per perturbation\n")
    header = ["category", "n"] + [SYSTEM_LABELS[s] for s in systems]
    if "colorlayout" in systems:
        header.append("AniRec / ColorLayout")
    rows = []
    ratios = result.get("ratios_vs_colorlayout", {})
    for c in cats + ["overall"]:
        n = o["overall"]["n"] if c == "overall" else o["per_category"][c]["n"]
        row = [f"**{c}**" if c == "overall" else c, str(n)]
        for s in systems:
            mm = result["systems"][s]["overall"] if c == "overall" else result["systems"][s]["per_category"][c]
            row.append(_pct(mm["episode_top1"]))
        if "colorlayout" in systems:
            row.append(_x(ratios.get(c, {}).get("episode_top1")))
        rows.append(row)
    md.append(_md_table(header, rows))
    md.append("\n![accuracy per perturbation](accuracy_per_perturbation.png)\n")

    md.append("## All metrics, in-library queries\n")
    rows = []
    for s in systems:
        ov = result["systems"][s]["overall"]
        lat = result["systems"][s]["latency_ms"]
        rows.append([SYSTEM_LABELS[s]] + [_pct(ov[k]) for k in METRICS[:-1]]
                    + [f"{ov['mrr']:.3f}" if ov["mrr"] is not None else "–", f"{lat['p50']}"])
    md.append(_md_table(["system", "series@1", "series@5", "episode@1", "episode@5", "time ±2 s",
                         "time ±2 s strict", "MRR", "search p50 ms"], rows))
    md.append("\nBaseline latencies are the flat search only (exact, numpy); AniRec's is the "
              "whole query (decoding the file + recognition).\n")

    for s in systems:
        md.append(f"### {SYSTEM_LABELS[s]} per perturbation\n")
        rows = []
        for c in cats:
            pc = result["systems"][s]["per_category"][c]
            row = [c, str(pc["n"])] + [_pct(pc[k]) for k in METRICS[:-1]] + \
                  [f"{pc['mrr']:.3f}" if pc["mrr"] is not None else "–"]
            if s == "ours":
                row += [_pct(pc.get("abstain_rate")), _pct(pc.get("matched_accuracy"))]
            rows.append(row)
        header = ["category", "n", "series@1", "series@5", "episode@1", "episode@5", "time ±2 s",
                  "strict", "MRR"]
        if s == "ours":
            header += ["abstained", "accuracy when matched"]
        md.append(_md_table(header, rows) + "\n")

    ab = o["abstention"]
    md.append("## Abstention (AniRec)\n")
    md.append("An abstention is an answer whose status is not `match` (`unsure` or `no_match`). "
              "Out-of-library queries should abstain; in-library queries should match and be "
              "right.\n")
    rows = [["AniRec (calibration in use)", str(ab["abstained"]), _pct(ab["precision"]),
             _pct(ab["recall"]), _pct(ab["recall_wrong_in_library"]),
             _pct(ab["in_library_abstain_rate"]), _pct(ab["answered_accuracy"])]]
    if "abstention_before_calibration" in o:
        b = o["abstention_before_calibration"]
        rows.append(["AniRec (before calibration)", str(b["abstained"]), _pct(b["precision"]),
                     _pct(b["recall"]), _pct(b["recall_wrong_in_library"]),
                     _pct(b["in_library_abstain_rate"]), _pct(b["answered_accuracy"])])
    if "colorlayout" in result["systems"]:
        b = result["systems"]["colorlayout"]["abstention_at_0.90"]
        rows.append(["ColorLayout, similarity < 0.90", str(b["abstained"]), _pct(b["precision"]),
                     _pct(b["recall"]), _pct(b["recall_wrong_in_library"]),
                     _pct(b["in_library_abstain_rate"]), _pct(b["answered_accuracy"])])
    md.append(_md_table(["", "abstained", "precision", "recall (out-of-library)",
                         "recall (wrong in-library)", "in-library abstain rate",
                         "accuracy of answered"], rows))
    md.append(f"\nprecision = P(out-of-library or top-1 wrong | abstained); recall = "
              f"P(abstained | out-of-library). Status counts: {o['status_counts']}.\n")

    cal = result["calibration"]
    md.append("## Calibration\n")
    if cal.get("calibrated"):
        st = cal["set"]
        md.append(f"Fitted on a separate set of {st['n']} queries (seed {st['seed']}; "
                  f"{st['right']} right, {st['wrong']} wrong) and saved to `{cal['path']}`. "
                  f"Expected calibration error (10 bins) on the evaluation queries: "
                  f"**{cal['ece_before']:.3f} before → {cal['ece_after']:.3f} after**.\n")
        a = cal["after"]
        md.append(f"Fitted: bias {a['bias']:.2f}, score {a['w_score']:.2f}, margin "
                  f"{a['w_margin']:.2f}, frames {a['w_frames']:.2f}, colour check "
                  f"{a.get('w_check', 0.0):.2f}, detail check {a.get('w_detail', 0.0):.2f} "
                  f"(a weight that came out negative is refitted at 0).\n")
    else:
        md.append(f"Calibration in use: `{cal['before'].get('fitted_on')}`; expected calibration "
                  f"error (10 bins): **{cal['ece']:.3f}**. Run with `--calibrate` to fit one.\n")
    md.append("![calibration](calibration.png)\n")

    md.append("## Coverage vs accuracy\n")
    rows = []
    for i, c in enumerate(COVERAGES):
        row = [f"{c}%"]
        for s in systems:
            curve = result["systems"][s]["coverage_accuracy"]
            row.append(_pct(curve[i]["accuracy"]) if i < len(curve) else "–")
        rows.append(row)
    md.append(_md_table(["coverage"] + [SYSTEM_LABELS[s] for s in systems], rows))
    md.append("\nIn-library queries sorted by the system's own top-1 score (AniRec: calibrated "
              "confidence; baselines: similarity), accuracy = episode top-1.\n")
    md.append("![coverage vs accuracy](coverage_accuracy.png)\n")

    lat = o["latency_ms"]
    md.append("## Latency (AniRec, per query, model loaded once)\n")
    md.append(f"p50 {lat['p50']} ms · p95 {lat['p95']} ms · p99 {lat['p99']} ms · mean "
              f"{lat['mean']} ms (file decoding alone: p50 {o['load_ms']['p50']} ms).\n")

    sp = result["splits"]
    md.append("## Held-out episodes\n")
    if "held_out" in sp:
        md.append(f"{sp['setting']}: {sp['episodes']['held_out']} held-out and "
                  f"{sp['episodes']['train']} training episodes.\n")
        rows = []
        for part in ("held_out", "train"):
            for s in systems:
                ov = sp[part][s]
                rows.append([part, SYSTEM_LABELS[s], str(ov["n"]), _pct(ov["series_top1"]),
                             _pct(ov["episode_top1"]), _pct(ov["time_2s"])])
        md.append(_md_table(["split", "system", "n", "series@1", "episode@1", "time ±2 s"], rows) + "\n")
    else:
        md.append(f"{sp['setting']}: every query comes from an indexed episode the model may "
                  f"have seen; there is no held-out split to report.\n")

    md.append("## How the numbers are made\n")
    md.append(
        "- Queries are decoded from the library videos at uniformly random times whose video "
        "frame is never one of the indexed frames; each gets one perturbation of the suite "
        "(cycled so every perturbation, alone and combined, gets the same number). Clips are "
        f"GIFs of 3–4 frames spanning {CLIP_SPAN:.0f} s (resized, sometimes perturbed). "
        "Out-of-library stills come from series that are in no library, perturbed the same way.\n"
        "- Right episode: the top answer is the episode, or another place showing identical "
        "footage (the series' opening/ending in any episode; recap ↔ source episode); an answer "
        "flagged as opening/ending with the right series is right for a query inside it.\n"
        f"- Time ±2 s: the top answer's time within {TIME_TOLERANCE:.0f} s of the truth at that "
        f"place, or inside a still shot (static camera / title card) that contains the truth "
        f"(±{STILL_SLACK} s); *strict* counts only the ±2 s rule.\n"
        "- MRR over the top 5 by episode. OOL queries are excluded from every accuracy figure.\n"
        "- trace.moe ColorLayout: LIRE's MPEG-7 ColorLayout (21 Y + 6 Cb + 6 Cr quantised "
        "coefficients) of every indexed frame's stored thumbnail, exact L2 neighbours of the "
        "query's first frame, hits merged per episode within ±5 s, similarity (255 − L2)/255, "
        "top-5 without a threshold. pHash: 64-bit DCT hash, Hamming distance, same merging. "
        "Untrained CNN: MobileNetV3-Small with seed-0 weights and re-estimated BatchNorm "
        "statistics, cosine similarity, same merging.\n")
    (out_dir / "report.md").write_text("\n".join(md), encoding="utf-8")
    written.insert(0, out_dir / "report.md")
    return written


def write_json(result: dict[str, Any], path: Path) -> None:
    """Write the result atomically (indented, with one line per query)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    body = dict(result)
    rows = body.pop("per_query", None)
    text = json.dumps(body, indent=1, ensure_ascii=False)
    if rows is not None:
        lines = ",\n".join("  " + json.dumps(r, ensure_ascii=False) for r in rows)
        text = text[:-2] + ',\n "per_query": [\n' + lines + "\n ]\n}"
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text + "\n", encoding="utf-8")
    tmp.replace(path)
