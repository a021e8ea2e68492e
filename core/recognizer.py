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
    quarter of a frame finds the window it came from), and re-rank whole-frame and region
    candidates by locating the query inside the stored thumbnails around each hit
    (normalised cross-correlation over positions, scales and mirroring), which also pins
    the time within the shot;
 7. fuse with the series classifier when one is loaded;
 8. calibrated confidence → status match / unsure / no_match.
Openings/endings found in several episodes collapse into one "opening of <series>" answer.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from sqlalchemy.orm import Session, sessionmaker

from core.catalog import Catalog
from core.descriptors import tiny_array, tiny_descriptor, tiny_similarity
from core.framing import query_views
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
REGION_TOP = 8  # candidates of each kind (whole-frame, region) located in the thumbnails
REGION_WINDOW = 1.0  # seconds either side of a hit whose thumbnails are searched
REGION_SCALES = (0.45, 0.55, 0.65, 0.8, 1.0)  # query width as a share of the frame width
NCC_SIZE = (64, 36)  # (width, height) of the grey thumbnails the query is located in
GREY_CACHE = 16  # episodes whose grey thumbnails stay in memory
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
    sample library with the default embedder (300 separate queries, seed 7919): expected
    calibration error 0.137 → 0.027 on the evaluation queries.
    """

    bias: float = -9.4301
    w_score: float = 12.8565
    w_margin: float = 7.2055
    w_frames: float = 0.0
    fitted_on: str = "default sample library, default embedder, eval seed 7919, n=300"

    def features(self, score: float, margin: float, agree: float) -> np.ndarray:
        return np.array([1.0, score, margin, agree], dtype=np.float64)

    def __call__(self, score: float, margin: float, agree: float) -> float:
        w = np.array([self.bias, self.w_score, self.w_margin, self.w_frames])
        z = float(w @ self.features(score, margin, agree))
        return 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, z))))

    @classmethod
    def fit(cls, feats: np.ndarray, labels: np.ndarray, *, l2: float = 1e-3, iters: int = 200,
            name: str = "eval") -> Calibration:
        """Logistic regression by Newton's method on rows [1, score, margin, agree]."""
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
                   w_frames=float(w[3]), fitted_on=name)

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.__dict__, indent=2))
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> Calibration:
        if not path.exists():
            return cls()
        return cls(**{k: v for k, v in json.loads(path.read_text()).items()
                      if k in cls.__dataclass_fields__})


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
    _grey_cache: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict, repr=False)

    @property
    def model_version(self) -> str:
        v = f"{self.embedder.name}:{self.embedder.version}"
        if self.series_head is not None:
            v += f"+series:{self.series_head.version}"
        if self.characters is not None:
            v += f"+characters:{self.characters.version}"
        return v

    # ------------------------------------------------------------------------------------------
    def embed_views(self, media: Media) -> tuple[np.ndarray, list[int], list[bytes]]:
        """Vectors for every view (and mirror) of every frame; the frame each came from; the
        tiny descriptors of each view/mirror."""
        arrays, owner, tinies = [], [], []
        for fi, frame in enumerate(media.frames):
            for v in query_views(frame):
                a = self.embedder.prepare(v.image)
                for arr in (a, np.ascontiguousarray(a[:, ::-1])):
                    arrays.append(arr)
                    owner.append(fi)
                    tinies.append(tiny_descriptor(arr))
        return self.embedder.embed_arrays(np.stack(arrays)), owner, tinies

    def recognize(self, media: Media) -> Recognition:
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        vecs, owner, tinies = self.embed_views(media)
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
        clusters = self._regions(clusters, vecs, owner, media, timings)
        rec = self._finish(clusters, vecs, media, timings)
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
                 media: Media, timings: dict[str, float]) -> list[_Cluster]:
        """Step 6b: region vectors and localisation, only when no whole frame fits well."""
        regions = getattr(self.index, "regions", None)
        if regions is None or len(regions) == 0:
            return clusters
        if clusters and clusters[0].score >= REGION_GATE:
            return clusters  # a whole frame fits: full frames are answered as before
        t0 = time.perf_counter()
        k = min(self.search_k, len(regions))
        rids, rsims = regions.search(vecs, k)
        found = self._group(media, region_frame_ids(rids), rsims, owner)
        for c in found:
            c.region = True
        if self.framestore is None:  # nothing to locate the crop in: merge on similarity
            merged = clusters + found
            merged.sort(key=lambda c: -c.score)
        else:
            # the best of each kind are located in the thumbnails around them; the rest rank
            # below those
            located = self._locate(clusters[:REGION_TOP] + found[:REGION_TOP], media)
            floor = min((c.score for c in located), default=0.0)
            rest = clusters[REGION_TOP:] + found[REGION_TOP:]
            for c in rest:
                c.score = min(c.score, floor - 0.01)
            merged = located + sorted(rest, key=lambda c: -c.score)
        timings["regions"] = (time.perf_counter() - t0) * 1000
        return merged

    def _grey(self, episode_id: int) -> tuple[np.ndarray, np.ndarray] | None:
        """(times, grey thumbnails uint8 [N, h, w]) of an episode; the last GREY_CACHE
        episodes are kept (2.3 KB a frame: ~5.5 MB for a 20-minute episode at 2 frames/s)."""
        hit = self._grey_cache.get(episode_id)
        if hit is not None:
            return hit
        try:
            ef = self.framestore.read(episode_id)
        except (OSError, KeyError, ValueError):
            return None
        import io

        from PIL import Image

        w, h = NCC_SIZE
        grey = np.empty((len(ef), h, w), np.uint8)
        for i in range(len(ef)):
            img = Image.open(io.BytesIO(ef.jpeg(i)))
            img.draft("L", (w, h))
            grey[i] = np.asarray(img.convert("L").resize((w, h), Image.BOX), np.uint8)
        if len(self._grey_cache) >= GREY_CACHE:
            self._grey_cache.pop(next(iter(self._grey_cache)))
        self._grey_cache[episode_id] = (ef.times.astype(np.float64), grey)
        return self._grey_cache[episode_id]

    def _locate(self, cands: list[_Cluster], media: Media) -> list[_Cluster]:
        """Score each candidate by how well the query fits somewhere inside the stored
        thumbnails within ±REGION_WINDOW s of it; the best frame pins the time."""
        cat = self.catalog
        todo: list[tuple[_Cluster, np.ndarray, np.ndarray]] = []  # candidate, times, thumbnails
        seen: list[tuple[int, float]] = []
        for c in cands:
            if any(e == c.ep and abs(t - c.anchor_t) <= 1.0 for e, t in seen):
                continue
            seen.append((c.ep, c.anchor_t))
            g = self._grey(c.ep)
            if g is None:
                continue
            ts, grey = g
            sel = np.flatnonzero(np.abs(ts - c.anchor_t) <= REGION_WINDOW)
            if sel.size:
                todo.append((c, ts[sel], grey[sel]))
        out: list[_Cluster] = []
        for fi in sorted({c.frame for c, _, _ in todo}):  # one batch per query frame
            group = [x for x in todo if x[0].frame == fi]
            stack = np.concatenate([g for _, _, g in group]).astype(np.float32)
            # every view: a meme's or phone shot's inner frame too
            scores = np.max([locate_scores(v.image, stack) for v in query_views(media.frames[fi])],
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
                timings: dict[str, float]) -> Recognition:
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
            t = c.anchor_t
            out.append(Candidate(
                series=cat.series[em.series_id], episode_id=em.id, season=em.season,
                episode=em.number, episode_label=em.label, time=t,
                time_from=min(c.t_from, t), time_to=max(c.t_to, t),
                score=float(max(0.0, min(1.0, c.score))), is_opening_or_ending=c.oped in (OPENING, ENDING)))
            if len(out) >= 5:
                break
        score = out[0].score if out else 0.0
        # margin against the best answer that is a different place (another episode/series)
        second = 0.0
        if out:
            for c in out[1:]:
                if c.series.id != out[0].series.id or c.episode_id != out[0].episode_id:
                    second = c.score
                    break
        agree = clusters[0].agree if clusters else 0.0
        conf = self.calibration(score, score - second, agree) if out else 0.0
        status = ("match" if conf >= self.match_threshold else
                  "unsure" if conf >= self.unsure_threshold else "no_match")
        if status != "match" and self.series_head is not None:
            genres = self.series_head.genres(vecs)
        timings["rank"] = (time.perf_counter() - t0) * 1000
        return Recognition(status=status, confidence=conf, candidates=tuple(out),
                           genres=tuple(genres), timings_ms=timings,
                           model_version=self.model_version, index_version=self.index_version,
                           frames_used=len(media.frames))

    def _empty(self, timings: dict[str, float], vecs: np.ndarray, t0: float, media: Media) -> Recognition:
        genres = self.series_head.genres(vecs) if self.series_head is not None else []
        timings["total"] = (time.perf_counter() - t0) * 1000
        return Recognition(status="no_match", confidence=0.0, genres=tuple(genres),
                           timings_ms=timings, model_version=self.model_version,
                           index_version=self.index_version, frames_used=len(media.frames))


def locate_scores(query: Any, grey: np.ndarray, scales: tuple[float, ...] = REGION_SCALES) -> np.ndarray:
    """How well `query` (a PIL image) fits somewhere in each grey thumbnail [N, h, w]: the best
    normalised cross-correlation over positions, query widths (`scales` of the thumbnail
    width, aspect kept) and mirroring, computed with FFTs. 1.0: an exact (affine-brightness)
    copy of a window."""
    from PIL import Image

    q = query.convert("L")
    n, gh, gw = grey.shape
    f = np.fft.rfft2(grey, s=(gh, gw))
    g64 = grey.astype(np.float64)
    c1 = np.zeros((n, gh + 1, gw + 1))
    c1[:, 1:, 1:] = g64.cumsum(1).cumsum(2)
    c2 = np.zeros((n, gh + 1, gw + 1))
    c2[:, 1:, 1:] = (g64 * g64).cumsum(1).cumsum(2)
    best = np.full(n, -1.0)
    for s in scales:
        tw = round(gw * s)
        th = round(tw * q.height / max(1, q.width))
        if th > gh:
            th, tw = gh, round(gh * q.width / max(1, q.height))
        if th < 4 or tw < 4 or tw > gw:
            continue
        t = np.asarray(q.resize((tw, th), Image.BOX), np.float64)
        oh, ow = gh - th + 1, gw - tw + 1

        def box(c: np.ndarray) -> np.ndarray:
            return c[:, th:th + oh, tw:tw + ow] - c[:, :oh, tw:tw + ow] - c[:, th:th + oh, :ow] + c[:, :oh, :ow]

        s1, s2 = box(c1), box(c2)
        sd = np.sqrt(np.maximum(s2 - s1 * s1 / (th * tw), th * tw * 1.0))
        for tt in (t, t[:, ::-1]):
            tz = tt - tt.mean()
            tz /= np.linalg.norm(tz) + 1e-6
            corr = np.fft.irfft2(f * np.conj(np.fft.rfft2(tz, s=(gh, gw))), s=(gh, gw))[:, :oh, :ow]
            best = np.maximum(best, (corr / sd).reshape(n, -1).max(axis=1))
    return best


def features_of(rec: Recognition, agree: float = 1.0) -> tuple[float, float, float]:
    """The calibration features of a finished recognition (for fitting)."""
    if not rec.candidates:
        return 0.0, 0.0, 0.0
    top = rec.candidates[0]
    second = next((c.score for c in rec.candidates[1:]
                   if c.series.id != top.series.id or c.episode_id != top.episode_id), 0.0)
    return top.score, top.score - second, agree



def build_recognizer(sessions: sessionmaker[Session], *, index_dir: Path, models_dir: Path,
                     search_k: int = 200, match_threshold: float = 0.80,
                     unsure_threshold: float = 0.35, num_threads: int = 1,
                     framestore_dir: Path | None = None) -> Recognizer:
    """Load the promoted embedder, the index (refusing one built by another embedder), the
    catalog and the calibration. Raises IndexUnavailable/IndexMismatch when not ready.

    `framestore_dir` (default: `framestore/` next to the index folder) holds the thumbnails
    crops are located in when the index has region vectors."""
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
