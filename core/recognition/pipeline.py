"""The recognition pipeline: one `Media` in, one `Recognition` out (synchronous; the async
service runs it on a worker thread). `Recognizer.recognize` is the list of steps; each step is
a function of its stage's module, taking and returning plain values.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np
from sqlalchemy.orm import Session, sessionmaker

from core.catalog import Catalog
from core.descriptors import tiny_descriptor
from core.framestore import FrameStore
from core.index import VectorIndex
from core.media import Media
from core.models.adapter import QueryAdapter
from core.models.embedder import SceneEmbedder
from core.recognition import candidates, checks, regions
from core.recognition.calibration import Calibration
from core.recognition.candidates import Hit
from core.recognition.characters import (
    CharacterRecognizer,
    build_character_recognizer,
    with_characters,
)
from core.recognition.checks import Ranked, Templates
from core.recognition.framing import View
from core.recognition.params import RecognitionParams
from core.recognition.resolution import working_views
from core.recognition.thumbnails import Thumbnails
from core.types import QueryTrace, Recognition, Status

if TYPE_CHECKING:
    from core.index.milvus import MilvusConfig

logger = logging.getLogger(__name__)


class SeriesHead(Protocol):
    """Series classifier over the scene embedding (training issue)."""

    version: str

    def predict(self, vectors: np.ndarray) -> dict[int, float]: ...  # series id → probability

    def genres(self, vectors: np.ndarray) -> list[tuple[str, float]]: ...


@dataclass
class Query:
    """One query as the steps see it: its views, their vectors (and mirrors'), the frame each
    vector came from, their tiny descriptors, this query's correlation templates and the
    time each step took."""

    media: Media
    views: list[list[View]]
    vectors: np.ndarray
    owner: list[int]
    tinies: list[bytes]
    timings: dict[str, float]
    started: float
    templates: Templates = field(default_factory=dict)
    raw: np.ndarray | None = None  # the vectors before the query adapter (what a query keeps)

    def lap(self, name: str, since: float) -> float:
        """Record the time since `since` as step `name`; the time now."""
        now = time.perf_counter()
        self.timings[name] = (now - since) * 1000
        return now


@dataclass
class Recognizer:
    """Everything a query needs, loaded once: embedder, index, catalog, calibration. It holds
    no state of any one query (only the thumbnail caches every query shares)."""

    embedder: SceneEmbedder
    index: VectorIndex
    catalog: Catalog
    index_version: str = ""
    search_k: int = 200
    match_threshold: float = 0.80
    unsure_threshold: float = 0.35
    calibration: Calibration = field(default_factory=Calibration)
    series_head: SeriesHead | None = None
    characters: CharacterRecognizer | None = None  # once faces and a cast exist
    framestore: FrameStore | None = None  # thumbnails to locate crops in
    # the query's sub-crops are searched among region vectors too (`regions.embed_subcrops`):
    # on for the model-free embedder, whose layout a shifted window changes; a trained CNN
    # gains little from them for 2x the cost of a crop query on CPU (see `build_recognizer`)
    subcrops: bool = True
    params: RecognitionParams = field(default_factory=RecognitionParams)
    # learnt from votes (`anirec retrain`): the query's vectors mapped by it are searched
    # beside the raw ones (the library's vectors never change); None: the default path
    adapter: QueryAdapter | None = None
    _thumbnails: Thumbnails | None = field(default=None, repr=False)

    @property
    def model_version(self) -> str:
        v = f"{self.embedder.name}:{self.embedder.version}"
        if self.series_head is not None:
            v += f"+series:{self.series_head.version}"
        if self.characters is not None:
            v += f"+characters:{self.characters.version}"
        if self.adapter is not None:
            v += f"+adapter:{self.adapter.version}"
        return v

    @property
    def thumbnails(self) -> Thumbnails:
        """The frame store's decoded thumbnails (cached across queries)."""
        if self._thumbnails is None or self._thumbnails.framestore is not self.framestore:
            self._thumbnails = Thumbnails(self.framestore, self.params.thumbs)
        return self._thumbnails

    def embed_views(self, media: Media, views: list[list[View]] | None = None
                    ) -> tuple[np.ndarray, list[int], list[bytes]]:
        """Vectors for every view (and mirror) of every frame; the frame each came from; the
        tiny descriptors of each view/mirror. `views`: `working_views` of the frames, when
        already known."""
        arrays, owner, tinies = [], [], []
        views = views if views is not None else working_views(media.frames)
        for fi, frame_views in enumerate(views):
            for v in frame_views:
                a = self.embedder.prepare(v.image)
                for arr in (a, np.ascontiguousarray(a[:, ::-1])):
                    arrays.append(arr)
                    owner.append(fi)
                    tinies.append(tiny_descriptor(arr))
        return self.embedder.embed_arrays(np.stack(arrays)), owner, tinies

    def recognize(self, media: Media) -> Recognition:
        """The steps: views (trimmed borders, a screenshot's or meme's inner frame), their
        vectors, the neighbour search, grouping and the frames' vote, verification, crops
        (regions, locating, the colour re-rank), the ranking with the series classifier, the
        near-tie, colour and detail checks, the calibrated confidence, the characters."""
        p = self.params
        t0 = time.perf_counter()
        # found once on a reduced picture, each view at the width the stages need
        views = working_views(media.frames)
        raw, owner, tinies = self.embed_views(media, views)
        vecs = raw
        if self.adapter is not None:  # the adapted vectors searched beside the raw ones
            vecs = np.concatenate([raw, self.adapter(raw)])
            owner, tinies = owner + owner, tinies + tinies
        q = Query(media, views, vecs, owner, tinies, {}, t0, raw=raw)
        t = q.lap("embed", t0)
        n = len(self.index)
        if n == 0 or len(self.catalog) == 0:
            return self._empty(q)
        found = candidates.search(self.index, vecs, min(self.search_k, n))
        t = q.lap("search", t)
        hits = candidates.group(self.catalog, media, found, owner, p.group)
        t = q.lap("group", t)
        hits = candidates.verify(hits, self.catalog, self.index, vecs, owner, tinies, media,
                                 p.verify)
        t = q.lap("verify", t)
        cropped = regions.crops(hits, getattr(self.index, "regions", None), self.embedder,
                                self.catalog, media, views, vecs, owner, self.search_k,
                                self.subcrops, self.thumbnails, q.templates, p.regions,
                                p.group, p.check, q.timings)
        if cropped is not None:
            hits = cropped
            q.lap("regions", t)
        rec = self._answer(q, hits)
        if self.characters is not None:
            rec = with_characters(rec, media, self.catalog, self.characters, q.timings)
        q.lap("total", t0)
        return rec

    def _answer(self, q: Query, hits: list[Hit]) -> Recognition:
        """Rank the hits into answers (the series classifier fused in), settle near-ties,
        check the top answer in colour and detail, and calibrate the confidence."""
        p, cat, thumbs = self.params, self.catalog, self.thumbnails
        t0 = time.perf_counter()
        series_p = self.series_head.predict(q.vectors) if self.series_head is not None else {}
        hits = candidates.adjust(hits, cat, series_p, p.rank)
        ranked = Ranked(*candidates.answers(hits, cat, p.group))
        if len(ranked.answers) > 1:
            t = time.perf_counter()
            ranked, _ = checks.settle_ties(ranked, q.views, thumbs, q.templates, p.check,
                                           p.detail, p.ties, p.regions.gate)
            q.lap("ties", t)
        out = ranked.answers
        score = out[0].score if out else 0.0
        # margin against the best answer that is a different place (another episode/series)
        second = next((c.score for c in out[1:] if c.series.id != out[0].series.id
                       or c.episode_id != out[0].episode_id), 0.0)
        agree = hits[0].agree if hits else 0.0
        check = detail = 0.0
        if ranked.hits:
            t = time.perf_counter()
            # not already checked among the crop candidates or the near-ties
            top = checks.with_check(ranked.hits[0], q.views, thumbs, q.templates, p.check,
                                    p.regions.gate)
            t = q.lap("check", t)
            colour = top.checked.colour if top.checked is not None else None
            # without a frame store the similarity stands in for the check (both are ~1 for
            # an exact copy)
            check = colour if colour is not None else score
            _, d = checks.with_detail(top, thumbs, p.detail)
            q.lap("detail", t)
            # nothing to check (a flat picture, no frame store): the colour fit stands in
            detail = d if d is not None else check
        evidence = (score, max(0.0, score - second), agree, check, detail) if out else ()
        conf = self.calibration(*evidence) if out else 0.0
        status: Status = ("match" if conf >= self.match_threshold else
                  "unsure" if conf >= self.unsure_threshold else "no_match")
        genres = (self.series_head.genres(q.vectors)
                  if status != "match" and self.series_head is not None else [])
        q.lap("rank", t0)
        return Recognition(status=status, confidence=conf, candidates=tuple(out),
                           genres=tuple(genres), timings_ms=q.timings,
                           model_version=self.model_version, index_version=self.index_version,
                           frames_used=len(q.media.frames), evidence=evidence,
                           trace=self._trace(q, ranked.hits))

    def _trace(self, q: Query, hits: list[Hit]) -> QueryTrace:
        """What this query keeps for retraining: its raw vectors and views, the vector that
        fits the top answer's stored frame best, the frame and score behind each answer."""
        raw = q.raw if q.raw is not None else q.vectors
        frames = tuple(int(self.catalog.ids[h.row]) for h in hits)
        winner = -1
        if frames:
            try:
                stored = self.index.vectors(np.array(frames[:1], np.int64))[0]
                sims = q.vectors @ stored
                mask = np.array(q.owner) == hits[0].frame
                sims = np.where(mask, sims, -np.inf) if mask.any() else sims
                winner = int(np.argmax(sims)) % len(raw)  # adapted rows follow the raw ones
            except (KeyError, IndexError, RuntimeError, ValueError):
                winner = -1
        views = tuple((fi, tuple(int(x) for x in v.box), v.kind)
                      for fi, fv in enumerate(q.views) for v in fv)
        return QueryTrace(vectors=np.asarray(raw, np.float16).tobytes(), dim=int(raw.shape[1]),
                          views=views, winner=winner, frames=frames,  # type: ignore[arg-type]
                          scores=tuple(float(h.score) for h in hits))

    def _empty(self, q: Query) -> Recognition:
        genres = self.series_head.genres(q.vectors) if self.series_head is not None else []
        q.lap("total", q.started)
        return Recognition(status="no_match", confidence=0.0, genres=tuple(genres),
                           timings_ms=q.timings, model_version=self.model_version,
                           index_version=self.index_version, frames_used=len(q.media.frames))


def build_recognizer(sessions: sessionmaker[Session], *, index_dir: Path, models_dir: Path,
                     search_k: int = 200, match_threshold: float = 0.80,
                     unsure_threshold: float = 0.35, num_threads: int = 1,
                     framestore_dir: Path | None = None, subcrops: bool | None = None,
                     params: RecognitionParams | None = None,
                     milvus: MilvusConfig | None = None) -> Recognizer:
    """Load the promoted embedder, the index (refusing one built by another embedder), the
    catalog and the calibration. Raises IndexUnavailable/IndexMismatch when not ready.

    `framestore_dir` (default: `framestore/` next to the index folder) holds the thumbnails
    crops are located in when the index has region vectors. `subcrops`: search the query's
    sub-crops among them too; None: only with the model-free embedder (on the hard sample
    library they lift its 25% crops from 71% to 84%, for ~20 ms a crop query; a trained
    CNN gains 1-2% there for ~130 ms). `params`: the stages' tuning (default: the tuned
    values). `milvus`: the index is in Milvus (None: hnswlib files in `index_dir`)."""
    from core.index import load_index
    from core.models.registry import load_query_adapter, load_scene_embedder, load_series_head

    embedder = load_scene_embedder(sessions, models_dir)
    head = load_series_head(sessions, models_dir)
    characters = build_character_recognizer(sessions, models_dir)
    if head is not None and getattr(head, "embedder_version", None) != embedder.version:
        logger.warning("series head %s was trained on another embedder; ignoring it until "
                       "`anirec train series` is re-run", head.version)
        head = None
    adapter, learnt_calibration = load_query_adapter(sessions, models_dir, embedder.version)
    calibration = learnt_calibration or Calibration.load(models_dir / "calibration.json")
    index = load_index(index_dir, embedder_name=embedder.name,
                       embedder_version=embedder.version, dim=embedder.dim,
                       num_threads=num_threads, verify=True,  # a corrupt file refused, never loaded
                       milvus=milvus)
    return Recognizer(embedder=embedder, index=index, catalog=Catalog.load(sessions),
                      index_version=index.version, search_k=search_k,
                      match_threshold=match_threshold, unsure_threshold=unsure_threshold,
                      calibration=calibration, adapter=adapter,
                      series_head=head, characters=characters,
                      subcrops=(embedder.spec.arch == "tiny") if subcrops is None else subcrops,
                      framestore=FrameStore(Path(framestore_dir) if framestore_dir is not None
                                            else Path(index_dir).parent / "framestore"),
                      params=params or RecognitionParams())
