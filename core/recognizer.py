"""The recognition pipeline: one `Media` in, one `Recognition` out (synchronous; the async
service runs it on a worker thread).

Steps (DESIGN.md, "The recognition pipeline"):
 2. views: trimmed borders, and the inner frame of a screenshot/meme when one is found;
 3. embed every view and its mirror image;
 4. search hundreds of neighbours per vector;
 5. group hits into candidates (episode, time window); several query frames vote with
    temporal consistency (each frame must hit the same episode at the right offset);
 6. verify the best candidates against every stored frame around the hit (exact embedding
    similarity plus the tiny colour descriptor) to pin the timestamp;
 6b. crops: when no whole frame fits well, search the region vectors of keyframes too (a
    quarter of a frame finds the window it came from; so do nine sub-crops of the query, one
    of which lines up with a stored window better than the whole query), and re-rank
    whole-frame and region candidates by locating the query inside the stored thumbnails
    around each hit (normalised cross-correlation over positions, scales and mirroring),
    which also pins the time within the shot; the best five are then re-ranked by the colour check of 7b;
 7. fuse with the series classifier when one is loaded;
 7b. check the answer: the query is located once more in the top candidate's stored
    thumbnails, at twice the localisation size and in colour (per-channel correlation where
    the grey correlation fits best), so a look-alike picture from outside the library, which
    fits a flat-coloured anime frame somewhere in grey, scores lower than the real scene;
 7c. check its detail: where 7b found the query, it is laid over that stored frame at the
    stored size, in 16-px cells that may each move a little; the share of textured cells
    that fit (a real copy keeps its line art in place, a look-alike does not). Near-ties
    between different episodes (title cards that differ only in their text) are settled by
    it too;
 8. calibrated confidence (score, margin, frame agreement, the colour and detail checks) →
    status match / unsure / no_match.
Openings/endings found in several episodes collapse into one "opening of <series>" answer.
"""

from __future__ import annotations

import io
import json
import logging
import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol, Sequence

import numpy as np
import torch
from PIL import Image
from sqlalchemy.orm import Session, sessionmaker

from core.catalog import Catalog
from core.descriptors import tiny_array, tiny_descriptor, tiny_similarity
from core.framing import LUMA, View, clip_views
from core.index import region_frame_ids
from core.media import Media
from core.models.embedder import SceneEmbedder
from core.types import Candidate, Recognition

logger = logging.getLogger(__name__)

GROUP_SECONDS = 5.0  # hits of one episode within ±5 s are one scene (as trace.moe merges)
CONSISTENCY_SECONDS = 2.0  # a clip's frames must agree on the start within ±2 s
VERIFY_TOP = 12  # candidates verified exactly
VERIFY_WINDOW = 6.0  # seconds either side searched when pinning the timestamp
REGION_GATE = 0.90  # below this whole-frame score the query may be a crop: regions are searched
REGION_TOP = 16  # candidates of each kind (whole-frame, region) located in the thumbnails
REGION_WINDOW = 2.0  # seconds either side of a hit whose thumbnails are searched (a crop's
# hit is often a few seconds off: its group spans ±5 s, and its best whole frame may be another)
LOCATE_SAME = 1.0  # s: a candidate this close to one already located (same episode) is the same
REGION_SUBCROP = 0.8  # the query's sub-crops searched among region vectors: this share of its
# width and height, at REGION_SUBGRID x REGION_SUBGRID positions (corners, edges' middles,
# centre). A stored window is half the frame on a quarter-frame grid, and a crop of a quarter
# of the frame can sit an eighth of the frame off it; some sub-crop is much closer to it.
REGION_SUBGRID = 3
REGION_SUBCROP_K = 50  # neighbours searched for each sub-crop (the query's own: search_k)
REGION_SCALES = (0.45, 0.55, 0.65, 0.8, 1.0)  # query width as a share of the frame width
NCC_SIZE = (64, 36)  # (width, height) of the grey thumbnails the query is located in
# decoded thumbnails kept: grey (2.3 KB each, 46 MB), colour (110 KB each as float32, 66 MB),
# detail (grey at the stored size, 37 KB each at 256x144, 22 MB)
THUMB_CACHE = {"grey": 20_000, "colour": 600, "detail": 600}
CHECK_SIZE = (128, 72)  # (width, height) the top answer is checked at, in colour
CHECK_SCALES = tuple(float(x) for x in np.linspace(0.4, 1.0, 7))  # query width / frame width
CHECK_REFINE = (-0.05, -0.025, 0.025, 0.05)  # then around the best width, in its thumbnail
CHECK_WHOLE_FIT = 0.9  # a whole-frame hit whose colour check at full width is below this is
# checked at every width too (a crop the embedder scored like a whole frame)
CHECK_WINDOW = 0.75  # seconds either side of the answer whose thumbnails are checked
CHECK_RERANK = 5  # located candidates re-ranked by the colour check
CHECK_WEIGHT = 0.5  # its share in their score
DETAIL_CELL = 16  # px: the answer's detail check compares cells of this size at the stored size
DETAIL_SHIFT = 6  # px each cell may move on its own (characters move between stored frames)
DETAIL_TEXTURE = 6.0  # grey-level std below which a cell is flat and says nothing
DETAIL_FIT = 0.8  # a cell's correlation that counts as "this detail is there"
DETAIL_NEIGHBOURS = True  # in an opening or ending, leave out the cells that move between the
# shot's stored frames (the credits)...
DETAIL_STILL_CELLS = 4  # ...unless fewer cells than this are left...
DETAIL_STILL_MIN = 0.3  # ...or less than this share of them (a pan: everything moves)
DETAIL_SAME = 3.0  # mean grey-level difference below which a cell has not moved (JPEG noise)
TIE_SCORE = 0.01  # other places scoring this close to the best answer are a near-tie...
TIE_TOP = 5  # ...of which this many (the best answer included) are settled by the detail check
TIE_DETAIL = 0.1  # by how much another place's detail must beat the best answer's to win
PACK_CACHE = 8  # episodes whose frame-store packs (JPEG thumbnails) stay in memory
LOCATE_WEIGHT = 0.8  # share of the localisation score in a located candidate's score
REGION_MARGIN = 0.04  # handicap of a located score against a whole-frame similarity
RECAP_PENALTY = 0.03  # frame flags from indexing: 1 opening, 2 ending, 3 recap
OPENING, ENDING, RECAP = 1, 2, 3


class SearchIndex(Protocol):
    def search(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]: ...
    def vectors(self, ids: np.ndarray) -> np.ndarray: ...
    def __len__(self) -> int: ...


class SeriesHead(Protocol):
    """Series classifier over the scene embedding (training issue)."""

    version: str

    def predict(self, vectors: np.ndarray) -> dict[int, float]: ...  # series id → probability

    def genres(self, vectors: np.ndarray) -> list[tuple[str, float]]: ...


@dataclass
class Calibration:
    """Logistic map from match features to a probability that the top answer is right.

    Fitted by the evaluation harness (`anirec eval --calibrate` writes
    `<home>/models/calibration.json`, which wins). The defaults are that fit on the default
    sample library with the default embedder (1,200 separate queries, seed 7919); on the
    evaluation queries it gives an expected calibration error of 0.0082. Frame agreement got
    no weight in that fit (see `training.eval.fit_calibration`).
    """

    bias: float = -16.1379
    w_score: float = 11.3141
    w_margin: float = 12.1473
    w_frames: float = 0.0
    w_check: float = 5.7528  # files fitted before the check existed have none: 0
    w_detail: float = 4.0562  # files fitted before the detail check existed have none: 0
    fitted_on: str = "default sample library, default embedder, eval seed 7919, n=1200"

    def features(self, score: float, margin: float, agree: float, check: float = 0.0,
                 detail: float = 0.0) -> np.ndarray:
        return np.array([1.0, score, margin, agree, check, detail], dtype=np.float64)

    def weights(self) -> np.ndarray:
        return np.array([self.bias, self.w_score, self.w_margin, self.w_frames, self.w_check,
                         self.w_detail])

    def __call__(self, score: float, margin: float, agree: float, check: float = 0.0,
                 detail: float = 0.0) -> float:
        z = float(self.weights() @ self.features(score, margin, agree, check, detail))
        return 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, z))))

    @classmethod
    def fit(cls, feats: np.ndarray, labels: np.ndarray, *, l2: float = 1e-3, iters: int = 200,
            name: str = "eval") -> Calibration:
        """Logistic regression by Newton's method on rows [1, score, margin, agree, check,
        detail]."""
        x = np.asarray(feats, np.float64)
        y = np.asarray(labels, np.float64)
        w = np.zeros(x.shape[1])
        for _ in range(iters):
            p = 1.0 / (1.0 + np.exp(-np.clip(x @ w, -50, 50)))
            g = x.T @ (p - y) + l2 * w
            hess = (x * (p * (1 - p))[:, None]).T @ x + l2 * np.eye(x.shape[1])
            step = np.linalg.solve(hess, g)
            w -= step
            if np.abs(step).max() < 1e-8:
                break
        return cls(bias=float(w[0]), w_score=float(w[1]), w_margin=float(w[2]),
                   w_frames=float(w[3]), w_check=float(w[4]), w_detail=float(w[5]),
                   fitted_on=name)

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.__dict__, indent=2))
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> Calibration:
        if not path.exists():
            return cls()
        data = json.loads(path.read_text())
        data.setdefault("w_check", 0.0)  # fitted before the check existed: it has no say
        data.setdefault("w_detail", 0.0)  # the same for the detail check
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


@dataclass
class _Cluster:
    ep: int
    start: float  # implied library time of the clip's first frame
    anchor_t: float
    score: float
    row: int
    agree: float = 1.0
    frame: int = 0
    oped: int = 0
    t_from: float = 0.0
    t_to: float = 0.0
    region: bool = False  # found through a region vector (a crop's window), not a whole frame
    located: bool = False  # scored by locating the query in thumbnails (it may be a crop)
    check: float | None = None  # step 7b's colour fit (top answer only)
    spot: Fit | None = None  # where the check found the query (for the detail check)
    detail: float | None = None  # the detail check there (once `detailed`)
    detailed: bool = False


@dataclass
class Recognizer:
    """Everything a query needs, loaded once: embedder, index, catalog, calibration."""

    embedder: SceneEmbedder
    index: SearchIndex
    catalog: Catalog
    index_version: str = ""
    search_k: int = 200
    match_threshold: float = 0.80
    unsure_threshold: float = 0.35
    calibration: Calibration = field(default_factory=Calibration)
    series_head: SeriesHead | None = None
    characters: Any = None  # core.characters.CharacterRecognizer, once faces and a cast exist
    framestore: Any = None  # core.framestore.FrameStore: thumbnails to locate crops in
    # the query's sub-crops are searched among region vectors too (`embed_subcrops`): on for
    # the model-free embedder, whose layout a shifted window changes; a trained CNN gains
    # little from them for 2x the cost of a crop query on CPU (see `build_recognizer`)
    subcrops: bool = True
    _thumb_cache: dict[str, dict[tuple[int, int], np.ndarray]] = field(default_factory=dict,
                                                                       repr=False)
    _pack_cache: dict[int, Any] = field(default_factory=dict, repr=False)
    _times: dict[int, np.ndarray] = field(default_factory=dict, repr=False)  # per episode
    _templates: dict[int, dict[Any, Any]] = field(default_factory=dict, repr=False)

    @property
    def model_version(self) -> str:
        v = f"{self.embedder.name}:{self.embedder.version}"
        if self.series_head is not None:
            v += f"+series:{self.series_head.version}"
        if self.characters is not None:
            v += f"+characters:{self.characters.version}"
        return v

    # ------------------------------------------------------------------------------------------
    def embed_views(self, media: Media, views: list[list[View]] | None = None
                    ) -> tuple[np.ndarray, list[int], list[bytes]]:
        """Vectors for every view (and mirror) of every frame; the frame each came from; the
        tiny descriptors of each view/mirror. `views`: `query_views` of each frame, when
        already known."""
        arrays, owner, tinies = [], [], []
        views = views if views is not None else clip_views(media.frames)
        for fi, frame_views in enumerate(views):
            for v in frame_views:
                a = self.embedder.prepare(v.image)
                for arr in (a, np.ascontiguousarray(a[:, ::-1])):
                    arrays.append(arr)
                    owner.append(fi)
                    tinies.append(tiny_descriptor(arr))
        return self.embedder.embed_arrays(np.stack(arrays)), owner, tinies

    def embed_subcrops(self, views: list[list[View]]) -> tuple[np.ndarray, list[int]]:
        """Vectors of the REGION_SUBGRID² sub-crops (REGION_SUBCROP of the width and height)
        of every view of every frame, and of their mirror images; the frame each came from.
        A view is resized to the input size once and cut there (each sub-crop stretched back
        to the input size)."""
        e = self.embedder
        h, w = e.input_size
        ch, cw = round(h * REGION_SUBCROP), round(w * REGION_SUBCROP)
        ys = np.linspace(0, h - ch, REGION_SUBGRID).round().astype(int).tolist()
        xs = np.linspace(0, w - cw, REGION_SUBGRID).round().astype(int).tolist()
        arrays, owner = [], []
        for fi, frame_views in enumerate(views):
            for v in frame_views:
                img = Image.fromarray(e.prepare(v.image))
                for y in ys:
                    for x in xs:
                        a = np.asarray(img.crop((x, y, x + cw, y + ch)).resize((w, h), Image.BILINEAR))
                        arrays += [a, np.ascontiguousarray(a[:, ::-1])]
                        owner += [fi, fi]
        if not arrays:
            return np.zeros((0, e.dim), np.float32), []
        return e.embed_arrays(np.stack(arrays)), owner

    def recognize(self, media: Media) -> Recognition:
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        views = clip_views(media.frames)  # found once, used by every step
        self._templates = {}  # this query's resized/transformed templates (step 7b)
        vecs, owner, tinies = self.embed_views(media, views)
        t1 = time.perf_counter()
        timings["embed"] = (t1 - t0) * 1000
        n = len(self.index)
        if n == 0 or len(self.catalog) == 0:
            return self._empty(timings, vecs, t0, media)
        k = min(self.search_k, n)
        ids, sims = self.index.search(vecs, k)
        t2 = time.perf_counter()
        timings["search"] = (t2 - t1) * 1000
        clusters = self._group(media, ids, sims, owner)
        t3 = time.perf_counter()
        timings["group"] = (t3 - t2) * 1000
        clusters = self._verify(clusters, vecs, owner, tinies, media)
        t4 = time.perf_counter()
        timings["verify"] = (t4 - t3) * 1000
        clusters = self._regions(clusters, vecs, owner, media, views, timings)
        rec = self._finish(clusters, vecs, media, views, timings)
        rec = self._with_characters(rec, media, timings)
        timings["total"] = (time.perf_counter() - t0) * 1000
        return rec

    def _with_characters(self, rec: Recognition, media: Media, timings: dict[str, float]) -> Recognition:
        """Step 9: faces in the (first) query frame, matched against the cast of the matched
        series (or, when unsure, of the top candidates' series, at most three), with a bonus
        for who appears in the matched shot. Nothing matched: the faces are still found, as
        "unknown"."""
        if self.characters is None:
            return rec
        t0 = time.perf_counter()
        cat = self.catalog
        # a confident match: its series' cast only; unsure: the casts of up to three series
        series_ids = list(dict.fromkeys(c.series.id for c in rec.candidates[:5]))[:3]
        if rec.status == "match":
            series_ids = series_ids[:1]
        elif rec.status == "no_match":
            series_ids = []
        shots: list[int] = []
        if rec.candidates and rec.status != "no_match":
            best = rec.candidates[0]
            sl = cat.window(best.episode_id, best.time - 0.5, best.time + 0.5)
            shots = sorted({int(x) for x in cat.shot[sl] if x >= 0})
        titles = {sid: info.title for sid, info in cat.series.items()}
        hits = self.characters.recognize(media.frames[0], series_ids, titles, shots)
        timings["characters"] = (time.perf_counter() - t0) * 1000
        return replace(rec, characters=tuple(hits))

    # ------------------------------------------------------------------------------------------
    def _group(self, media: Media, ids: np.ndarray, sims: np.ndarray, owner: list[int]) -> list[_Cluster]:
        cat = self.catalog
        nf = len(media.frames)
        # per query frame: episode → (times, sims, rows) of its hits (views/mirrors merged)
        hits: list[dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]]] = []
        floor = np.zeros(nf, np.float32)
        for fi in range(nf):
            sel = [i for i, o in enumerate(owner) if o == fi]
            fid = ids[sel].reshape(-1)
            fs = sims[sel].reshape(-1)
            rows = cat.rows(fid)
            ok = (rows >= 0) & (fid >= 0)
            rows, fs = rows[ok], fs[ok]
            floor[fi] = float(fs.min()) if fs.size else 0.0
            # best similarity per row
            order = np.lexsort((-fs, rows))
            rows, fs = rows[order], fs[order]
            first = np.concatenate([[True], rows[1:] != rows[:-1]]) if rows.size else rows.astype(bool)
            rows, fs = rows[first], fs[first]
            per: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
            eps = cat.ep[rows]
            for e in np.unique(eps).tolist():
                m = eps == e
                r = rows[m]
                per[e] = (cat.t[r].astype(np.float64), fs[m].astype(np.float64), r)
            hits.append(per)
        qt = np.asarray(media.times, np.float64)
        clusters: list[_Cluster] = []
        for fi in range(nf):
            for e, (ts, ss, rs) in hits[fi].items():
                order = np.argsort(-ss)
                peaks: list[int] = []
                for j in order.tolist():
                    if all(abs(ts[j] - ts[p]) > GROUP_SECONDS for p in peaks):
                        peaks.append(j)
                        if len(peaks) >= 4:
                            break
                for p in peaks:
                    near = np.abs(ts - ts[p]) <= GROUP_SECONDS
                    strong = near & (ss >= ss[p] - 0.02)
                    clusters.append(_Cluster(ep=e, start=float(ts[p] - qt[fi]), anchor_t=float(ts[p]),
                                             score=float(ss[p]), row=int(rs[p]), frame=fi,
                                             oped=int(cat.oped[rs[p]]),
                                             t_from=float(ts[strong].min()), t_to=float(ts[strong].max())))
        if nf > 1:  # temporal consistency: every frame votes at its own offset
            for c in clusters:
                votes, agree = [], 0
                for fj in range(nf):
                    h = hits[fj].get(c.ep)
                    best = floor[fj]
                    if h is not None:
                        exp = c.start + qt[fj]
                        m = np.abs(h[0] - exp) <= CONSISTENCY_SECONDS
                        if m.any():
                            best = max(best, float(h[1][m].max()))
                            agree += 1
                    votes.append(best)
                c.score = float(np.mean(votes))
                c.agree = agree / nf
        # one cluster per (episode, start) neighbourhood
        clusters.sort(key=lambda c: -c.score)
        kept: list[_Cluster] = []
        for c in clusters:
            if all(not (k.ep == c.ep and abs(k.start - c.start) <= GROUP_SECONDS) for k in kept):
                kept.append(c)
            if len(kept) >= 60:
                break
        return kept

    def _verify(self, clusters: list[_Cluster], vecs: np.ndarray, owner: list[int],
                tinies: list[bytes], media: Media) -> list[_Cluster]:
        """Pin the timestamp of the best candidates against every stored frame nearby."""
        cat = self.catalog
        getter = getattr(self.index, "vectors", None)
        if getter is None:
            return clusters
        tq = tiny_array(tinies)
        qt = np.asarray(media.times, np.float64)
        for c in clusters[:VERIFY_TOP]:
            fi = c.frame
            sl = cat.window(c.ep, c.anchor_t - VERIFY_WINDOW, c.anchor_t + VERIFY_WINDOW)
            if sl.stop <= sl.start:
                continue
            fids = cat.ids[sl]
            try:
                fv = getter(fids)
            except (KeyError, RuntimeError, ValueError):
                continue
            sel = [i for i, o in enumerate(owner) if o == fi]
            emb = (vecs[sel] @ fv.T).max(axis=0)  # best view/mirror per library frame
            tiny = tiny_similarity(tq[sel], cat.descriptors[sl].astype(np.float32) / 255.0).max(axis=0)
            combined = emb + 0.05 * tiny
            j = int(np.argmax(combined))
            ts = cat.t[sl].astype(np.float64)
            best = float(emb[j])
            close = emb >= best - 0.01
            lo, hi = j, j  # the contiguous run of frames that fit as well as the best one
            while lo > 0 and emb[lo - 1] >= best - 0.002:
                lo -= 1
            while hi < len(ts) - 1 and emb[hi + 1] >= best - 0.002:
                hi += 1
            if ts[hi] - ts[lo] > 2.0:
                # a still shot: every frame fits, so answer the middle of the run
                c.anchor_t = float((ts[lo] + ts[hi]) / 2)
            else:
                # sub-sample time: similarity-weighted mean of the best frame and its neighbours
                nb = [x for x in (j - 1, j, j + 1) if 0 <= x < len(ts) and close[x]]
                w = np.maximum(emb[nb] - (best - 0.02), 1e-6)
                c.anchor_t = float((ts[nb] * w).sum() / w.sum())
            strong = emb >= best - 0.02
            c.t_from, c.t_to = float(ts[strong].min()), float(ts[strong].max())
            c.start = c.anchor_t - qt[fi]
            c.row = sl.start + j
            c.oped = int(cat.oped[c.row])
            if len(media.frames) == 1:
                c.score = max(c.score, best)
        clusters.sort(key=lambda c: -c.score)
        return clusters

    def _regions(self, clusters: list[_Cluster], vecs: np.ndarray, owner: list[int],
                 media: Media, views: list[list[View]], timings: dict[str, float]) -> list[_Cluster]:
        """Step 6b: region vectors and localisation, only when no whole frame fits well."""
        regions = getattr(self.index, "regions", None)
        if regions is None or len(regions) == 0:
            return clusters
        if clusters and clusters[0].score >= REGION_GATE:
            return clusters  # a whole frame fits: full frames are answered as before
        t0 = time.perf_counter()
        k = min(self.search_k, len(regions))
        rids, rsims = regions.search(vecs, k)
        sub, sub_owner = self.embed_subcrops(views) if self.subcrops else (vecs[:0], [])
        if len(sub):  # only their best hits count: fewer neighbours each (a cheaper search)
            sids, ssims = regions.search(sub, min(k, REGION_SUBCROP_K))
            pad = ((0, 0), (0, k - sids.shape[1]))
            rids = np.concatenate([rids, np.pad(sids, pad, constant_values=-1)])
            rsims = np.concatenate([rsims, np.pad(ssims, pad, constant_values=-1.0)])
        found = self._group(media, region_frame_ids(rids), rsims, owner + sub_owner)
        for c in found:
            c.region = True
        if self.framestore is None:  # nothing to locate the crop in: merge on similarity
            merged = clusters + found
            merged.sort(key=lambda c: -c.score)
        else:
            # the best of each kind are located in the thumbnails around them; the rest rank
            # below those
            located = self._locate(clusters[:REGION_TOP] + found[:REGION_TOP], views)
            floor = min((c.score for c in located), default=0.0)
            rest = clusters[REGION_TOP:] + found[REGION_TOP:]
            for c in rest:
                c.score = min(c.score, floor - 0.01)
            merged = located + sorted(rest, key=lambda c: -c.score)
            # the best few are checked in colour at twice the size (step 7b), which settles
            # look-alike places (a twin series' shared background) the grey fit cannot
            for c in merged[:CHECK_RERANK]:
                c.check = self._check(c, views)
                if c.check is not None:
                    c.score = (1 - CHECK_WEIGHT) * c.score + CHECK_WEIGHT * c.check
            merged[:CHECK_RERANK] = sorted(merged[:CHECK_RERANK], key=lambda c: -c.score)
        timings["regions"] = (time.perf_counter() - t0) * 1000
        return merged

    def _thumbs(self, episode_id: int, t: float, half: float, *, kind: str = "grey"
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """(times, thumbnails, frame numbers in the episode's pack) of an episode's stored
        frames within ±`half` s of `t` (the nearest one when none is). `kind`: "grey" uint8
        [n, h, w] at NCC_SIZE, "colour" RGB float [n, h, w, 3] at CHECK_SIZE, "detail" grey
        uint8 at the stored size. Decoded frames are kept (THUMB_CACHE of each kind), so a
        query never decodes more than the few frames it looks at, and an episode's pack is
        read only when one of them is not in memory."""
        ts = self._times.get(episode_id)
        if ts is None:
            ef = self._pack(episode_id)
            if ef is None or not len(ef):
                return None
            ts = self._times[episode_id] = ef.times.astype(np.float64)
        sel = np.flatnonzero(np.abs(ts - t) <= half)
        if not sel.size:
            sel = np.array([int(np.argmin(np.abs(ts - t)))])
        out = []
        for i in sel.tolist():
            arr = self._thumb(episode_id, i, kind)
            if arr is None:
                return None
            out.append(arr)
        return ts[sel], np.stack(out), sel

    def _thumb(self, episode_id: int, i: int, kind: str) -> np.ndarray | None:
        """Stored frame `i` of an episode as a `kind` thumbnail (see `_thumbs`), cached."""
        cache = self._thumb_cache.setdefault(kind, {})
        key = (episode_id, i)
        arr = cache.pop(key, None)
        if arr is None:
            ef = self._pack(episode_id)
            if ef is None or i >= len(ef):
                return None
            img = Image.open(io.BytesIO(ef.jpeg(i)))
            mode = "RGB" if kind == "colour" else "L"
            if kind == "detail":
                img = img.convert(mode)
            else:
                w, h = CHECK_SIZE if kind == "colour" else NCC_SIZE
                img.draft(mode, (w, h))
                img = img.convert(mode).resize((w, h), Image.BOX)
            arr = np.asarray(img, np.float32 if kind == "colour" else np.uint8)
            if len(cache) >= THUMB_CACHE[kind]:
                cache.pop(next(iter(cache)))
        cache[key] = arr  # most recently used last
        return arr

    def _pack(self, episode_id: int) -> Any:
        """The episode's frame-store pack (core.framestore.EpisodeFrames), or None; the last
        PACK_CACHE episodes are kept (~6 KB a frame)."""
        ef = self._pack_cache.pop(episode_id, None)
        if ef is None:
            if self.framestore is None:
                return None
            try:
                ef = self.framestore.read(episode_id)
            except (OSError, KeyError, ValueError):
                return None
            if len(self._pack_cache) >= PACK_CACHE:
                self._pack_cache.pop(next(iter(self._pack_cache)))
        self._pack_cache[episode_id] = ef  # most recently used last
        return ef

    def _check(self, c: _Cluster, views: list[list[View]]) -> float | None:
        """Step 7b: the colour fit of the query inside the answer's stored thumbnails within
        ±CHECK_WINDOW s (see `check_fit`); None without a frame store. Where it fits is kept
        in `c.spot` for the detail check."""
        g = self._thumbs(c.ep, c.anchor_t, CHECK_WINDOW, kind="colour")
        if g is None:
            return None
        stack = g[1].astype(np.float64)
        sheet = Sheet(stack @ LUMA)
        best: float | None = None

        def fit_at(scales: Sequence[float]) -> None:
            nonlocal best
            for v in views[c.frame]:
                score, fit = check_fit(v.image, stack, sheet, scales,
                                       self._templates.setdefault(id(v.image), {}))
                if fit is not None and (best is None or score > best):
                    best = score
                    c.spot = replace(fit, frame=int(g[2][fit.frame]), view=v.image)

        # a whole frame that fitted well is checked whole (its width is refined all the same),
        # unless it does not fit whole: a trained embedder scores a crop that high too. A
        # located candidate may be a crop whatever its score now: every width is tried.
        whole = not c.region and not c.located and c.score >= REGION_GATE
        fit_at((1.0,) if whole else CHECK_SCALES)
        if whole and (best is None or best < CHECK_WHOLE_FIT):
            fit_at(CHECK_SCALES)
        return best if best is not None else 0.0

    def _detail(self, c: _Cluster) -> float | None:
        """The detail check of the answer (see `detail_score`) where step 7b found the query;
        None when there is nothing to check (no frame store, or a query without texture)."""
        if c.detailed:
            return c.detail
        if c.spot is None:
            return None
        full = self._thumb(c.ep, c.spot.frame, "detail")
        if full is None:
            return None
        c.detailed = True
        c.detail = detail_score(c.spot.view, full.astype(np.float64), c.spot,
                                full.shape[1] / CHECK_SIZE[0], self._shot_neighbours(c))
        return c.detail

    def _shot_neighbours(self, c: _Cluster) -> list[np.ndarray]:
        """In an opening or ending, the stored frames just before and after the one the query
        was found in, where they are of its shot ("detail" thumbnails; see `detail_score`).
        There the credits are laid over the picture and change on their own (they scroll,
        fade in and out), so a screenshot a second from the nearest stored frame shows other
        lines. Elsewhere what changes is mostly the characters, and they are what tells a
        look-alike episode (the same café, another character) from the right one."""
        if c.oped not in (OPENING, ENDING) or c.spot is None or not DETAIL_NEIGHBOURS:
            return []
        ef = self._pack(c.ep)
        if ef is None:
            return []
        i = c.spot.frame
        out = []
        for j in (i - 1, i + 1):
            if 0 <= j < len(ef) and ef.shots[j] == ef.shots[i]:
                nb = self._thumb(c.ep, j, "detail")
                if nb is not None:
                    out.append(nb)
        return out

    def _settle_ties(self, out: list[Candidate], picked: list[_Cluster],
                     views: list[list[View]]) -> bool:
        """Near-ties between different episodes (title cards that differ only in their text,
        stills of a look-alike place): the best of them by the detail check goes first when
        it beats the best answer's detail by TIE_DETAIL. Reorders `out` and `picked`; True
        when the answer changed."""
        tied = [i for i in range(1, len(out)) if out[i].episode_id != out[0].episode_id
                and out[i].score >= out[0].score - TIE_SCORE][:TIE_TOP - 1]
        if not tied or self.framestore is None:
            return False

        def detail_of(c: _Cluster) -> float:
            if c.check is None:
                c.check = self._check(c, views)
            d = self._detail(c)
            return -1.0 if d is None else d

        best, best_d = 0, detail_of(picked[0])
        for i in tied:
            d = detail_of(picked[i])
            if d > best_d + TIE_DETAIL:
                best, best_d = i, d
        if not best:
            return False
        out.insert(0, out.pop(best))
        picked.insert(0, picked.pop(best))
        return True

    def _locate(self, cands: list[_Cluster], views: list[list[View]]) -> list[_Cluster]:
        """Score each candidate by how well the query fits somewhere inside the stored
        thumbnails within ±REGION_WINDOW s of it; the best frame pins the time."""
        cat = self.catalog
        todo: list[tuple[_Cluster, np.ndarray, np.ndarray]] = []  # candidate, times, thumbnails
        seen: list[tuple[int, float]] = []
        # of two candidates at one place (a whole-frame and a region hit), the better one is
        # located: its evidence so far counts in the located score
        for c in sorted(cands, key=lambda c: -c.score):
            if any(e == c.ep and abs(t - c.anchor_t) <= LOCATE_SAME for e, t in seen):
                continue
            seen.append((c.ep, c.anchor_t))
            g = self._thumbs(c.ep, c.anchor_t, REGION_WINDOW)
            if g is not None:
                todo.append((c, g[0], g[1]))
        out: list[_Cluster] = []
        for fi in sorted({c.frame for c, _, _ in todo}):  # one batch per query frame
            group = [x for x in todo if x[0].frame == fi]
            stack = np.concatenate([g for _, _, g in group]).astype(np.float32)
            # every view: a meme's or phone shot's inner frame too
            sheet = Sheet(stack)
            scores = np.max([locate_scores(v.image, sheet) for v in views[fi]],
                            axis=0)
            at = 0
            for c, ts, g in group:
                sc = scores[at:at + len(g)]
                at += len(g)
                j = int(np.argmax(sc))
                own = int(np.argmin(np.abs(ts - c.anchor_t)))
                # the evidence so far (whole-frame or region similarity) and the localisation
                # both count: neither a weak embedding hit nor a lucky correlation wins alone
                # a located score is handicapped by REGION_MARGIN (a picture from outside the
                # library fits somewhere too, a little); a whole-frame hit keeps at least
                # its own score, so full frames are answered as before
                prior = c.score
                c.located = True
                c.score = LOCATE_WEIGHT * float(sc[j]) + (1 - LOCATE_WEIGHT) * prior - REGION_MARGIN
                if not c.region:
                    c.score = max(c.score, prior)
                out.append(c)
                if sc[own] >= sc[j] - 0.02:  # the time pinned so far fits as well: keep it
                    continue
                t = float(ts[j])
                sl = cat.window(c.ep, t - 1e-3, t + 1e-3)
                if sl.stop > sl.start:
                    c.row = sl.start
                    c.oped = int(cat.oped[c.row])
                c.start += t - c.anchor_t
                c.anchor_t = t
                c.t_from = c.t_to = t
        out.sort(key=lambda c: -c.score)
        return out

    def _finish(self, clusters: list[_Cluster], vecs: np.ndarray, media: Media,
                views: list[list[View]], timings: dict[str, float]) -> Recognition:
        cat = self.catalog
        t0 = time.perf_counter()
        series_p: dict[int, float] = {}
        genres: list[tuple[str, float]] = []
        if self.series_head is not None:
            series_p = self.series_head.predict(vecs)
        for c in clusters:  # identical footage: the original scene beats its re-use in a recap
            if c.oped == RECAP:
                c.score -= RECAP_PENALTY
        if series_p:  # fuse: the classifier nudges candidates of the series it believes in
            for c in clusters:
                sid = cat.episodes[c.ep].series_id
                c.score = c.score + 0.05 * series_p.get(sid, 0.0)
        clusters.sort(key=lambda c: -c.score)
        out: list[Candidate] = []
        picked: list[_Cluster] = []  # the cluster behind each candidate
        top: _Cluster | None = None
        seen_oped: set[tuple[int, int]] = set()
        seen_ep_start: list[tuple[int, float]] = []
        for c in clusters:
            em = cat.episodes.get(c.ep)
            if em is None:
                continue
            if c.oped in (OPENING, ENDING):
                key = (em.series_id, c.oped)
                if key in seen_oped:
                    continue
                seen_oped.add(key)
            if any(e == c.ep and abs(s - c.start) <= GROUP_SECONDS for e, s in seen_ep_start):
                continue
            seen_ep_start.append((c.ep, c.start))
            top = top or c
            t = c.anchor_t
            out.append(Candidate(
                series=cat.series[em.series_id], episode_id=em.id, season=em.season,
                episode=em.number, episode_label=em.label, time=t,
                time_from=min(c.t_from, t), time_to=max(c.t_to, t),
                score=float(max(0.0, min(1.0, c.score))), is_opening_or_ending=c.oped in (OPENING, ENDING)))
            picked.append(c)
            if len(out) >= 5:
                break
        if len(out) > 1:
            t1 = time.perf_counter()
            if self._settle_ties(out, picked, views):
                top = picked[0]
            timings["ties"] = (time.perf_counter() - t1) * 1000
        score = out[0].score if out else 0.0
        # margin against the best answer that is a different place (another episode/series)
        second = 0.0
        if out:
            for c in out[1:]:
                if c.series.id != out[0].series.id or c.episode_id != out[0].episode_id:
                    second = c.score
                    break
        agree = clusters[0].agree if clusters else 0.0
        check = detail = 0.0
        if top is not None:
            t1 = time.perf_counter()
            if top.check is None:  # not already checked among the crop candidates
                top.check = self._check(top, views)
            timings["check"] = (time.perf_counter() - t1) * 1000
            # without a frame store the similarity stands in for the check (both are ~1 for
            # an exact copy)
            check = top.check if top.check is not None else score
            t2 = time.perf_counter()
            d = self._detail(top)
            timings["detail"] = (time.perf_counter() - t2) * 1000
            # nothing to check (a flat picture, no frame store): the colour fit stands in
            detail = d if d is not None else check
        evidence = (score, max(0.0, score - second), agree, check, detail) if out else ()
        conf = self.calibration(*evidence) if out else 0.0
        status = ("match" if conf >= self.match_threshold else
                  "unsure" if conf >= self.unsure_threshold else "no_match")
        if status != "match" and self.series_head is not None:
            genres = self.series_head.genres(vecs)
        timings["rank"] = (time.perf_counter() - t0) * 1000
        return Recognition(status=status, confidence=conf, candidates=tuple(out),
                           genres=tuple(genres), timings_ms=timings,
                           model_version=self.model_version, index_version=self.index_version,
                           frames_used=len(media.frames), evidence=evidence)

    def _empty(self, timings: dict[str, float], vecs: np.ndarray, t0: float, media: Media) -> Recognition:
        genres = self.series_head.genres(vecs) if self.series_head is not None else []
        timings["total"] = (time.perf_counter() - t0) * 1000
        return Recognition(status="no_match", confidence=0.0, genres=tuple(genres),
                           timings_ms=timings, model_version=self.model_version,
                           index_version=self.index_version, frames_used=len(media.frames))


class Sheet:
    """Grey thumbnails [N, h, w] prepared once for correlating any number of queries with them
    (their spectra and the running sums of values and squares)."""

    def __init__(self, grey: np.ndarray) -> None:
        g64 = np.asarray(grey, np.float64)
        self.n, self.h, self.w = g64.shape
        # single precision: twice as fast, and the correlations differ by ~1e-5
        self.spectrum = np.fft.rfft2(g64.astype(np.float32))
        self.c1 = np.zeros((self.n, self.h + 1, self.w + 1))
        self.c1[:, 1:, 1:] = g64.cumsum(1).cumsum(2)
        self.c2 = np.zeros((self.n, self.h + 1, self.w + 1))
        self.c2[:, 1:, 1:] = (g64 * g64).cumsum(1).cumsum(2)

    def frame(self, i: int) -> Sheet:
        """The sheet of thumbnail `i` alone (views of this one's arrays, nothing recomputed)."""
        one = object.__new__(Sheet)
        one.n, one.h, one.w = 1, self.h, self.w
        one.spectrum, one.c1, one.c2 = self.spectrum[i:i + 1], self.c1[i:i + 1], self.c2[i:i + 1]
        return one

    def correlate(self, query: Any, scales: Sequence[float], *, mirror: bool = True,
                  templates: dict[Any, Any] | None = None) -> Any:
        """Normalised cross-correlation of `query` (a PIL image) with every thumbnail at every
        position, for each query width in `scales` (a share of the thumbnail width, aspect
        kept), and mirrored, with FFTs. Yields (correlation [N, oh, ow], template height,
        width, the resized RGB template as float64, whether it was mirrored).

        `templates`: a dict kept for one query image, so correlating it with several sheets of
        the same size resizes and transforms each template once."""
        gh, gw = self.h, self.w
        cache: dict[Any, Any] = {} if templates is None else templates
        q = cache.get(("q", gw))
        if q is None:
            q = query.convert("RGB")
            if q.width > 2 * gw:  # shrink once; each width below is then a cheap resize
                q = q.resize((2 * gw, max(1, round(q.height * 2 * gw / q.width))), Image.BOX)
            cache[("q", gw)] = q
        for s in scales:
            tw = round(gw * s)
            th = round(tw * q.height / max(1, q.width))
            if th > gh:
                th, tw = gh, round(gh * q.width / max(1, q.height))
            if th < 4 or tw < 4 or tw > gw:
                continue
            oh, ow = gh - th + 1, gw - tw + 1

            def box(c: np.ndarray) -> np.ndarray:
                return (c[:, th:th + oh, tw:tw + ow] - c[:, :oh, tw:tw + ow]
                        - c[:, th:th + oh, :ow] + c[:, :oh, :ow])

            s1, s2 = box(self.c1), box(self.c2)
            sd = np.sqrt(np.maximum(s2 - s1 * s1 / (th * tw), th * tw * 1.0))
            for flipped in ((False, True) if mirror else (False,)):
                key = (gh, gw, tw, th, flipped)
                hit = cache.get(key)
                if hit is None:
                    rgb = cache.get((tw, th))
                    if rgb is None:
                        rgb = cache[(tw, th)] = np.asarray(q.resize((tw, th), Image.BOX), np.float64)
                    tt = rgb[:, ::-1] if flipped else rgb
                    tz = tt @ LUMA
                    tz -= tz.mean()
                    tz /= np.linalg.norm(tz) + 1e-6
                    hit = cache[key] = (tt, np.conj(np.fft.rfft2(tz.astype(np.float32), s=(gh, gw))))
                tt, tspec = hit
                corr = np.fft.irfft2(self.spectrum * tspec, s=(gh, gw))[:, :oh, :ow] / sd
                yield corr, th, tw, tt, flipped


def locate_scores(query: Any, grey: np.ndarray | Sheet, scales: Sequence[float] = REGION_SCALES
                  ) -> np.ndarray:
    """How well `query` (a PIL image) fits somewhere in each grey thumbnail [N, h, w]: the best
    normalised cross-correlation over positions, query widths and mirroring. 1.0: an exact
    (affine-brightness) copy of a window."""
    sheet = grey if isinstance(grey, Sheet) else Sheet(grey)
    best = np.full(sheet.n, -1.0)
    for corr, *_ in sheet.correlate(query, scales):
        best = np.maximum(best, corr.reshape(sheet.n, -1).max(axis=1))
    return best


@dataclass(frozen=True)
class Fit:
    """Where a query was found in a stack of thumbnails: thumbnail `frame`, top-left (y, x) and
    size (th, tw) in its pixels, mirrored or not; `view`: the query picture that fitted."""

    frame: int
    y: int
    x: int
    th: int
    tw: int
    flipped: bool
    view: Any = None


def check_fit(query: Any, rgb: np.ndarray, sheet: Sheet | None = None,
              scales: Sequence[float] = CHECK_SCALES, templates: dict[Any, Any] | None = None
              ) -> tuple[float, Fit | None]:
    """The colour fit of `query` (a PIL image) in RGB thumbnails [N, h, w, 3] (float), and
    where it is: where its grey correlation is best (over thumbnails, positions, widths and
    mirroring; the best width is then refined by CHECK_REFINE in its thumbnail), the mean over
    R, G and B of the per-channel correlation. Each channel is normalised on its own, so a
    tint, brightness or contrast change keeps the fit; other colours in similar shapes (a
    look-alike picture from another series) lower it. `sheet`: `Sheet(rgb @ LUMA)`, when
    already made; `templates`: a dict kept for `query` across calls (see `Sheet.correlate`)."""
    sheet = sheet or Sheet(rgb @ LUMA)
    templates = {} if templates is None else templates
    best, spot = -2.0, None
    flipped = False
    for corr, th, tw, tt, fl in sheet.correlate(query, scales, templates=templates):
        k = int(np.argmax(corr))
        if corr.flat[k] > best:
            i, y, x = np.unravel_index(k, corr.shape)
            best, spot, flipped = float(corr.flat[k]), (int(i), int(y), int(x), th, tw, tt), fl
    if spot is None:
        return 0.0, None
    i, tw0 = spot[0], spot[4]
    if flipped:  # the refinement correlates the mirrored query as it is
        q = templates.get("mirrored")
        if q is None:
            q = templates["mirrored"] = query.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    else:
        q = query
    one = sheet.frame(i)
    for corr, th, tw, tt, _ in one.correlate(q, [tw0 / sheet.w + d for d in CHECK_REFINE],
                                             mirror=False,
                                             templates=templates.setdefault(("refine", flipped), {})):
        k = int(np.argmax(corr))
        if corr.flat[k] > best:
            _, y, x = np.unravel_index(k, corr.shape)
            best, spot = float(corr.flat[k]), (i, int(y), int(x), th, tw, tt)
    i, y, x, th, tw, tt = spot
    patch = rgb[i, y:y + th, x:x + tw].reshape(-1, 3)
    a = patch - patch.mean(axis=0)
    b = tt.reshape(-1, 3) - tt.reshape(-1, 3).mean(axis=0)
    den = np.linalg.norm(a, axis=0) * np.linalg.norm(b, axis=0)
    # a flat channel (no variation) says nothing: it counts as the grey fit
    per = np.where(den > 1e-3 * th * tw, (a * b).sum(axis=0) / np.maximum(den, 1e-9), best)
    return float(per.mean()), Fit(frame=i, y=y, x=x, th=th, tw=tw, flipped=flipped)


def check_score(query: Any, rgb: np.ndarray, sheet: Sheet | None = None,
                scales: Sequence[float] = CHECK_SCALES, templates: dict[Any, Any] | None = None
                ) -> float:
    """The colour fit of `check_fit` alone."""
    return check_fit(query, rgb, sheet, scales, templates)[0]


def _cell_grid(t: np.ndarray) -> tuple[np.ndarray, np.ndarray, int, int, int]:
    """A grey picture [th, tw] cut into DETAIL_CELL-pixel cells, centred: (cells [ny*nx, c, c],
    the indices of the cells that are not flat, nx, oy, ox)."""
    cell = DETAIL_CELL
    th, tw = t.shape
    ny, nx = th // cell, tw // cell
    oy, ox = (th - ny * cell) // 2, (tw - nx * cell) // 2
    cells = t[oy:oy + ny * cell, ox:ox + nx * cell].reshape(ny, cell, nx, cell).swapaxes(1, 2)
    cells = cells.reshape(ny * nx, cell, cell)
    return cells, np.flatnonzero(cells.std(axis=(1, 2)) >= DETAIL_TEXTURE), nx, oy, ox


def _cell_fits(cells: np.ndarray, keep: np.ndarray, nx: int, grey: np.ndarray,
               y0: int, x0: int) -> np.ndarray:
    """For each of `cells[keep]` (laid out `nx` to a row, the grid's first cell at y0, x0 of
    `grey` [H, W]), its best normalised correlation with `grey` within DETAIL_SHIFT pixels of
    its place (-1 where every such window is flat or leaves the frame)."""
    cell, shift = DETAIL_CELL, DETAIL_SHIFT
    pz = cells[keep] - cells[keep].mean(axis=(1, 2), keepdims=True)
    pz /= np.linalg.norm(pz, axis=(1, 2), keepdims=True)
    # the area each cell may move in, from the frame padded so that every area is inside it
    side, pad = cell + 2 * shift, cell + shift
    g = np.pad(grey.astype(np.float64), pad)
    a, b = np.divmod(keep, nx)
    ys = y0 + a * cell + pad - shift
    xs = x0 + b * cell + pad - shift
    rows = ys[:, None, None] + np.arange(side)[None, :, None]
    cols = xs[:, None, None] + np.arange(side)[None, None, :]
    area = g[rows, cols]  # [k, side, side]
    # correlation of each cell with every window of its area: one grouped convolution in
    # single precision, on the area less its mean (which the zero-mean cell ignores); several
    # times faster than FFTs in numpy
    n = 2 * shift + 1
    area -= area.mean(axis=(1, 2), keepdims=True)
    with torch.no_grad():
        num = torch.nn.functional.conv2d(torch.from_numpy(area.astype(np.float32))[None],
                                         torch.from_numpy(pz.astype(np.float32))[:, None],
                                         groups=len(keep))[0].numpy().astype(np.float64)
    # the windows' norms, from their sums: band.T @ area @ band (cumulative sums are slower)
    band = np.arange(side)[:, None] - np.arange(n)[None, :]
    band = ((band >= 0) & (band < cell)).astype(np.float64)  # [side, n]
    s1, s2 = band.T @ np.stack([area, area * area]) @ band
    sd = np.sqrt(np.maximum(s2 - s1 * s1 / (cell * cell), 0.0))
    # the windows wholly inside the frame, by their top-left corner
    h, w = grey.shape
    top, left = ys[:, None] + np.arange(n), xs[:, None] + np.arange(n)
    inside = (((top >= pad) & (top + cell <= pad + h))[:, :, None]
              & ((left >= pad) & (left + cell <= pad + w))[:, None, :])
    ok = inside & (sd > 1e-3 * cell * cell)  # not flat
    r = np.where(ok, num / np.maximum(sd, 1e-9), -1.0)
    return r.reshape(len(keep), -1).max(axis=1)


def detail_score(query: Any, grey: np.ndarray, fit: Fit, scale: float = 1.0,
                 neighbours: Sequence[np.ndarray] = ()) -> float | None:
    """How much of the query's detail is in a stored frame where it was found: the query
    (a PIL image, mirrored when `fit` says so) is laid over `grey` [H, W] (the stored frame
    at its stored size; `fit` is in pixels `scale` times smaller) and cut into
    DETAIL_CELL-pixel cells; each cell that is not flat may move by DETAIL_SHIFT pixels on
    its own (characters move between stored frames) and counts when its normalised
    correlation reaches DETAIL_FIT. The share of cells that count: a real copy, even
    re-encoded, tinted or partly covered by text, keeps most of its line art in place; a
    look-alike picture that fits a flat-coloured frame somewhere as a whole does not. None
    when no cell has texture.

    `neighbours`: the stored frames of the same shot next to `grey` (same size). Where the
    stored picture itself changes between them (scrolling credits, a character walking
    past, falling petals), the query, taken at another moment, need not fit, and a cell
    that does fit may be chance: only the cells that stay as they are count, unless fewer
    than DETAIL_STILL_CELLS, or DETAIL_STILL_MIN of them, would be left (a pan). The
    recognizer passes them in openings and endings only (see `Recognizer._shot_neighbours`)."""
    q = query.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if fit.flipped else query
    h, w = grey.shape
    th, tw = min(h, round(fit.th * scale)), min(w, round(fit.tw * scale))
    y0, x0 = round(fit.y * scale), round(fit.x * scale)
    if th < DETAIL_CELL or tw < DETAIL_CELL:
        return None
    t = np.asarray(q.convert("L").resize((tw, th), Image.BOX), np.float64)
    cells, keep, nx, oy, ox = _cell_grid(t)
    if not keep.size:
        return None
    y0, x0 = y0 + oy, x0 + ox
    fits = _cell_fits(cells, keep, nx, grey, y0, x0) >= DETAIL_FIT
    if neighbours:
        y0, x0 = min(y0, h - th + oy), min(x0, w - tw + ox)  # the grid inside the frame
        still = _stills(grey.astype(np.float64), neighbours, keep, nx, y0, x0,
                        cells.shape[0] // nx)
        if still.sum() >= max(DETAIL_STILL_CELLS, DETAIL_STILL_MIN * keep.size):
            return float((fits & still).sum() / still.sum())
    return float(fits.mean())


def _stills(grey: np.ndarray, neighbours: Sequence[np.ndarray], keep: np.ndarray, nx: int,
            y0: int, x0: int, ny: int) -> np.ndarray:
    """Which of the grid's cells `keep` (nx by ny cells from y0, x0 of `grey`) stay as they
    are in every neighbouring stored frame: the same but for JPEG noise, both flat, or each
    finding the other within DETAIL_SHIFT pixels."""
    box = (slice(y0, y0 + ny * DETAIL_CELL), slice(x0, x0 + nx * DETAIL_CELL))

    def grid(g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # its cells, and which have texture
        cells, textured = _cell_grid(g[box])[:2]
        tex = np.zeros(len(cells), bool)
        tex[textured] = True
        return cells, tex

    here = grid(grey)
    still = np.ones(keep.size, bool)
    for nb in neighbours:
        nb = nb.astype(np.float64)
        there = grid(nb)
        same = np.abs(here[0][keep] - there[0][keep]).mean(axis=(1, 2)) <= DETAIL_SAME
        todo = np.flatnonzero(still & ~same)  # the rest are correlated, both ways
        for (a, tex_a), (_, tex_b), g in ((here, there, nb), (there, here, grey)):
            if not todo.size:
                break
            idx = keep[todo]
            tex = tex_a[idx]
            ok = ~tex_b[idx]  # a flat cell stays when the other one is flat too
            if tex.any():
                ok[tex] = _cell_fits(a, idx[tex], nx, g, y0, x0) >= DETAIL_FIT
            still[todo[~ok]] = False
            todo = todo[ok]
    return still


def features_of(rec: Recognition) -> tuple[float, float, float, float, float]:
    """The calibration features behind a recognition's confidence (for fitting): score,
    margin, frame agreement, colour check, detail check."""
    return tuple(rec.evidence) if len(rec.evidence) == 5 else (0.0,) * 5  # type: ignore[return-value]


def build_recognizer(sessions: sessionmaker[Session], *, index_dir: Path, models_dir: Path,
                     search_k: int = 200, match_threshold: float = 0.80,
                     unsure_threshold: float = 0.35, num_threads: int = 1,
                     framestore_dir: Path | None = None, subcrops: bool | None = None
                     ) -> Recognizer:
    """Load the promoted embedder, the index (refusing one built by another embedder), the
    catalog and the calibration. Raises IndexUnavailable/IndexMismatch when not ready.

    `framestore_dir` (default: `framestore/` next to the index folder) holds the thumbnails
    crops are located in when the index has region vectors. `subcrops`: search the query's
    sub-crops among them too; None: only with the model-free embedder (on the hard sample
    library they lift its 25% crops from 71% to 84%, for ~20 ms a crop query; a trained
    CNN gains 1-2% there for ~130 ms)."""
    from core.framestore import FrameStore
    from core.index import HnswIndex
    from core.models.registry import load_scene_embedder, load_series_head

    embedder = load_scene_embedder(sessions, models_dir)
    head = load_series_head(sessions, models_dir)
    characters = build_character_recognizer(sessions, models_dir)
    if head is not None and getattr(head, "embedder_version", None) != embedder.version:
        logger.warning("series head %s was trained on another embedder; ignoring it until "
                       "`anirec train series` is re-run", head.version)
        head = None
    index = HnswIndex.load(index_dir, embedder_name=embedder.name,
                           embedder_version=embedder.version, dim=embedder.dim,
                           num_threads=num_threads, verify=False)
    return Recognizer(embedder=embedder, index=index, catalog=Catalog.load(sessions),
                      index_version=index.version, search_k=search_k,
                      match_threshold=match_threshold, unsure_threshold=unsure_threshold,
                      calibration=Calibration.load(models_dir / "calibration.json"),
                      series_head=head, characters=characters,
                      subcrops=(embedder.spec.arch == "tiny") if subcrops is None else subcrops,
                      framestore=FrameStore(Path(framestore_dir) if framestore_dir is not None
                                            else Path(index_dir).parent / "framestore"))


def build_character_recognizer(sessions: sessionmaker[Session], models_dir: Path) -> Any:
    """Face detector + character embedder + the cast gallery, or None while any is missing
    (characters are then simply left out of answers)."""
    from core.characters import CharacterRecognizer, load_gallery, load_floor
    from core.models.registry import load_character_embedder, load_face_detector

    detector = load_face_detector(sessions, models_dir)
    embedder = load_character_embedder(sessions, models_dir) if detector is not None else None
    if detector is None or embedder is None:
        return None
    gallery = load_gallery(sessions, embedder, home=models_dir.parent)
    if not len(gallery):
        logger.info("characters: no cast yet (`anirec characters add` / `discover`); faces are off")
        return None
    return CharacterRecognizer(detector=detector, embedder=embedder, gallery=gallery,
                               floor=load_floor(models_dir, embedder))
