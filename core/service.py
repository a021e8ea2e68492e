"""RecognitionService: the one async API both bots and the web chat call.

Inference never runs on the event loop: decode → recognise happens on a single worker
thread, one job at a time; the query row is written on the I/O pool and the answer returned.
The preview (clip, still, named-faces picture) is cut afterwards on its own pool and fetched
with `preview(rec)`: the answer never waits for it, and a preview that fails is only logged.
A bounded queue turns a burst into a polite `Busy` with an estimated wait instead of a
frozen bot; per-user and per-chat sliding-window rate limits turn a flood from one person
into `RateLimited`. `reload()` builds a new recogniser on a side thread and swaps it in;
requests in flight finish on the old one.

Hot swap: a recogniser is one object holding models, calibration, query adapter and index
together, built completely before it replaces the old one in a single assignment. Each
request takes the recogniser once, when its inference starts, and uses that one to the end
(preview included), so a swap never mixes versions within a request and never fails one.
`watch()` polls a cheap probe of what is deployed (promoted model versions, the calibration
file, the index manifest) and reloads when it changes.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

from core.errors import Busy, IndexUnavailable, RateLimited
from core.feedback import FeedbackStats, FeedbackStore
from core.media import Media, MediaLimits, load_media
from core.previews import Preview, PreviewMaker
from core.recognition import Recognizer
from core.types import Candidate, FeedbackTally, Recognition, Source, Verdict

logger = logging.getLogger(__name__)

#: How long `RecognitionService.preview` waits for a clip by default (seconds).
PREVIEW_WAIT_S = 30.0


@dataclass(frozen=True)
class PreviewParts:
    """What the preview of one answer adds to it (paths), and how long it took."""

    clip: str | None
    still: str | None
    annotated: str | None
    timings_ms: dict[str, float]


class ServiceStats(FeedbackStats):
    """The stored answers' counts plus the running service's own state."""

    ready: bool  # a recogniser is loaded
    model_version: str | None
    index_version: str | None
    frames: int
    queue: int  # requests in flight
    served_since_start: int
    uptime_s: int


class SlidingWindow:
    """Sliding one-minute windows of request times per key."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._hits: dict[str, collections.deque[float]] = {}

    def wait(self, key: str, now: float) -> float:
        """0 if one more request of `key` is allowed now, else seconds until it is (nothing counted)."""
        q = self._hits.get(key)
        if not q:
            return 0.0
        while q and now - q[0] >= 60.0:
            q.popleft()
        return 60.0 - (now - q[0]) if len(q) >= self.per_minute else 0.0

    def count(self, key: str, now: float) -> None:
        """Use up one request of `key`'s allowance."""
        self._hits.setdefault(key, collections.deque()).append(now)
        if len(self._hits) > 10_000:  # forget idle keys
            for k in [k for k, v in self._hits.items() if not v or now - v[-1] > 60]:
                self._hits.pop(k, None)

    def check(self, key: str, now: float) -> float:
        """0 if allowed (and counted), else seconds until the next request is allowed."""
        wait = self.wait(key, now)
        if not wait:
            self.count(key, now)
        return wait


class RecognitionService:
    """Async façade over the recogniser, the preview maker and the feedback store."""

    def __init__(self, recognizer_factory: Callable[[], Recognizer], store: FeedbackStore, *,
                 limits: MediaLimits | None = None, previews: PreviewMaker | None = None,
                 queue_size: int = 16, user_rate_per_minute: int = 10,
                 chat_rate_per_minute: int = 30, images_dir: Path | None = None,
                 deployed: Callable[[], str] | None = None, answer_cache: int = 256) -> None:
        self._factory = recognizer_factory
        self._deployed = deployed  # what is deployed now (a key that changes on a promotion)
        self._deployed_key: str | None = None
        self._reload_lock: asyncio.Lock | None = None
        self.reloads = 0
        self.store = store
        self.limits = limits or MediaLimits()
        self.previews = previews
        self.queue_size = queue_size
        self.images_dir = images_dir
        self._user_rate = SlidingWindow(user_rate_per_minute)
        self._chat_rate = SlidingWindow(chat_rate_per_minute)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="anirec-infer")
        self._io = ThreadPoolExecutor(max_workers=2, thread_name_prefix="anirec-io")
        # Previews (clips, stills, named faces) are cut here, off the answer's path.
        self._preview_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="anirec-preview")
        self._pending: collections.OrderedDict[str, asyncio.Future[PreviewParts | None]] = \
            collections.OrderedDict()
        self.pending_size = 512  # answers whose preview is remembered (made or being made)
        self._recognizer: Recognizer | None = None
        self._load_error: Exception | None = None
        self._inflight = 0
        self._latency_ms = collections.deque([400.0], maxlen=50)
        self.started_at = time.time()
        self.served = 0
        # the same picture sent again (a re-post, a forward, the same sticker) is answered
        # from here: sha256 of the bytes and the sticker flag → the recogniser that answered
        # and its answer. Only that recogniser's answers count (a swap starts afresh); each
        # request is still admitted, previewed and recorded as its own query.
        self.answer_cache = answer_cache
        self._answers: collections.OrderedDict[tuple[str, bool], tuple[Recognizer, Recognition]] = (
            collections.OrderedDict())
        self.cache_hits = 0

    # -- lifecycle -------------------------------------------------------------------------------
    async def start(self) -> None:
        """Load models and index (off the loop). A missing index is not fatal: queries then
        get a clear "not ready" message until `reload()` succeeds."""
        loop = asyncio.get_running_loop()
        try:
            self._deployed_key = await loop.run_in_executor(self._io, self._probe)
            self._recognizer = await loop.run_in_executor(self._io, self._factory)
            self._load_error = None
        except IndexUnavailable as exc:
            self._load_error = exc
            logger.warning("recogniser not ready: %s", exc)

    def _probe(self) -> str | None:
        return self._deployed() if self._deployed is not None else None

    async def reload(self) -> str:
        """Build a fresh recogniser (models, calibration, adapter, index) and swap it in
        atomically: requests in flight finish on the old one, none fail. When the build
        fails the old recogniser keeps serving and the error is raised."""
        if self._reload_lock is None:
            self._reload_lock = asyncio.Lock()
        loop = asyncio.get_running_loop()
        async with self._reload_lock:  # one build at a time
            key = await loop.run_in_executor(self._io, self._probe)
            new = await loop.run_in_executor(self._io, self._factory)
            self._recognizer, self._load_error = new, None  # the swap: one assignment
            self._answers.clear()  # the old recogniser's answers
            self._deployed_key = key
            self.reloads += 1
        logger.info("reloaded: model %s, index %s", new.model_version, new.index_version)
        return f"model {new.model_version}, index {new.index_version}"

    async def check_deployed(self) -> bool:
        """Reload if what is deployed changed since the last load; True when it reloaded."""
        if self._deployed is None:
            return False
        key = await asyncio.get_running_loop().run_in_executor(self._io, self._probe)
        if key == self._deployed_key:
            return False
        try:
            await self.reload()
        except Exception as exc:  # a broken promotion must not stop the bot: keep serving
            logger.error("a new version was promoted but could not be loaded (%s); still "
                         "serving %s", exc, self.model_version)
            self._deployed_key = key  # do not retry the same broken state every poll
            return False
        return True

    async def watch(self, stop: asyncio.Event, interval: float = 30.0) -> None:
        """Poll what is deployed every `interval` seconds until `stop`; reload on a change."""
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), timeout=interval)
                return
            except TimeoutError:
                pass
            await self.check_deployed()

    @property
    def recognizer(self) -> Recognizer | None:
        """The recogniser serving now (new requests take it; a reload replaces it)."""
        return self._recognizer

    @property
    def model_version(self) -> str | None:
        eng = self._recognizer
        return eng.model_version if eng is not None else None

    async def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
        self._io.shutdown(wait=True, cancel_futures=True)
        self._preview_pool.shutdown(wait=True, cancel_futures=True)

    @property
    def ready(self) -> bool:
        return self._recognizer is not None

    @property
    def indexed_frames(self) -> int:
        """Frames of indexed episodes the loaded recogniser searches (0: nothing indexed)."""
        eng = self._recognizer
        return len(eng.catalog) if eng is not None else 0

    # -- recognition -------------------------------------------------------------------------------
    def _admit(self, source: Source, counted: bool = True) -> None:
        """Rate limits first, then the queue; a request turned away (rate-limited or busy)
        uses up none of its sender's allowance: only admitted requests are counted. An
        uncounted request (`counted=False`) only meets the queue."""
        now = time.monotonic()
        user_key = f"{source.platform}:{source.user_id}"
        chat_key = f"{source.platform}:c:{source.chat_id}"
        wait = max(self._user_rate.wait(user_key, now), self._chat_rate.wait(chat_key, now)) \
            if counted else 0.0
        if wait:
            raise RateLimited(wait)
        if self._inflight >= self.queue_size:
            avg = sum(self._latency_ms) / len(self._latency_ms) / 1000.0
            raise Busy(avg * self._inflight + 1.0)
        if counted:
            self._user_rate.count(user_key, now)
            self._chat_rate.count(chat_key, now)

    async def recognize(self, data: bytes, *, source: Source, sticker: bool = False,
                        with_preview: bool = True, counted: bool = True) -> Recognition:
        """Recognise one upload. Raises InvalidMedia, RateLimited, Busy or IndexUnavailable.

        The answer comes back as soon as it is known and its query row is written: no clip,
        still or named-faces picture yet. With `with_preview` (and a match to show), they are
        made afterwards on the preview pool; `preview(rec)` waits for them. `with_preview=False`
        makes none at all.

        `counted=False`: outside the per-user and per-chat rate limits (the caller bounds it
        itself, e.g. the web chat's examples); the queue still applies."""
        self._admit(source, counted)
        self._inflight += 1
        loop = asyncio.get_running_loop()
        try:
            engine, rec, t0, media, sha = await loop.run_in_executor(self._executor, self._infer, data, sticker)
        finally:
            self._inflight -= 1
        # The single inference worker is free again. The preview is cut on its own pool, at the
        # same time as the query row is written on the I/O pool: neither waits for the other,
        # and a slow cut never holds up the next answer's row.
        pending: asyncio.Future[PreviewParts | None] | None = None
        to_show = rec.characters or (rec.candidates and rec.status != "no_match")
        if with_preview and self.previews is not None and to_show:
            pending = loop.run_in_executor(self._preview_pool, self._make_preview, engine, rec,
                                           media, sha)
        rec = await loop.run_in_executor(self._io, self._finish, rec, data, sha, source, t0)
        if pending is not None and rec.query_id:
            self._pending[rec.query_id] = pending
            while len(self._pending) > self.pending_size:
                self._pending.popitem(last=False)
        self.served += 1
        return rec

    def preview_pending(self, query_id: str | None) -> bool:
        """Whether a preview was started for this answer (made, being made, or failed)."""
        return query_id is not None and query_id in self._pending

    def preview_ready(self, query_id: str | None) -> bool:
        """Whether the preview started for this answer is finished (made or failed)."""
        fut = self._pending.get(query_id) if query_id is not None else None
        return fut is not None and fut.done()

    async def preview(self, rec: Recognition, timeout: float | None = PREVIEW_WAIT_S) -> Recognition | None:
        """`rec` with its preview clip and still (best candidate) and named-faces picture,
        once they are made; None when there is nothing to add: previews off, nothing to show,
        the cut failed (logged for the operator), or not ready within `timeout` seconds.
        Never raises for the preview's sake, and never cancels the cut."""
        fut = self._pending.get(rec.query_id) if rec.query_id else None
        if fut is None:
            return None
        if not fut.done():
            await asyncio.wait({fut}, timeout=timeout)
        if not fut.done() or fut.cancelled():
            return None
        parts = fut.result()
        if parts is None:
            return None
        timings = {**rec.timings_ms, **parts.timings_ms}
        cands = rec.candidates
        if cands and (parts.clip or parts.still):
            cands = (replace(cands[0], preview=parts.clip, still=parts.still),) + cands[1:]
        if cands is rec.candidates and parts.annotated is None:
            return None
        return replace(rec, candidates=cands, annotated=parts.annotated or rec.annotated,
                       timings_ms=timings)

    def _infer(self, data: bytes, sticker: bool
               ) -> tuple[Recognizer, Recognition, float, Media | None, str]:
        """On the inference worker: the answer (from the cache when the same bytes were just
        answered), and the bytes' SHA-256 (hashed here once, off the event loop)."""
        t0 = time.perf_counter()
        engine = self._recognizer
        if engine is None:
            raise self._load_error or IndexUnavailable()
        sha = hashlib.sha256(data).hexdigest()
        key = (sha, sticker)
        known = self._answers.get(key)
        if known is not None and known[0] is engine:
            self._answers.move_to_end(key)
            self.cache_hits += 1
            rec = known[1]
            # the faces are boxed on the picture itself (`_make_preview`), so only then is it decoded
            media = load_media(data, self.limits, sticker=sticker) if rec.characters else None
            return engine, replace(rec, timings_ms={"cached": (time.perf_counter() - t0) * 1000}), t0, media, sha
        media = load_media(data, self.limits, sticker=sticker)
        t1 = time.perf_counter()
        rec = engine.recognize(media)
        rec.timings_ms["decode"] = (t1 - t0) * 1000
        if self.answer_cache > 0 and engine is self._recognizer:
            self._answers[key] = (engine, replace(rec, timings_ms=dict(rec.timings_ms)))
            while len(self._answers) > self.answer_cache:
                self._answers.popitem(last=False)
        return engine, rec, t0, media, sha

    def _finish(self, rec: Recognition, data: bytes, sha: str, source: Source, t0: float) -> Recognition:
        """Write the query row: the answer is then complete (its latency is the time to it)."""
        timings = dict(rec.timings_ms)
        latency = (time.perf_counter() - t0) * 1000
        timings["total"] = latency
        image_path = self._keep_image(sha, data) if self.images_dir is not None else None
        qid = self.store.record_query(rec, source, image_sha256=sha, latency_ms=latency,
                                      image_path=image_path)
        self._latency_ms.append(latency)
        return replace(rec, query_id=qid, timings_ms=timings)

    def _make_preview(self, engine: Recognizer, rec: Recognition, media: Media | None, sha: str
                      ) -> PreviewParts | None:
        """The preview of one answer (on the preview pool). Whatever goes wrong — a full disk,
        a video that no longer decodes — is logged and gives None: the answer is already out."""
        try:
            timings: dict[str, float] = {}
            annotated = clip = still = None
            if rec.characters and self.previews is not None and media is not None:
                ta = time.perf_counter()
                annotated = self._annotated(sha, media, rec)
                timings["annotate"] = (time.perf_counter() - ta) * 1000
            if rec.candidates and rec.status != "no_match":  # a no-match shows no scene
                tp = time.perf_counter()
                cand = self._with_preview(engine, rec.candidates[0])
                clip, still = cand.preview, cand.still
                timings["preview"] = (time.perf_counter() - tp) * 1000
        except Exception:
            logger.exception("the preview of an answer failed; the answer went without it")
            return None
        if not (annotated or clip or still):
            return None
        return PreviewParts(clip, still, annotated, timings)

    def _annotated(self, sha: str, media: Media, rec: Recognition) -> str | None:
        """The query image with the faces boxed and named (a JPEG in the previews folder)."""
        from core.characters import annotate

        assert self.previews is not None
        folder = self.previews.cache_dir / "annotated"
        key = hashlib.sha256((sha + repr([(h.name, h.box) for h in rec.characters])).encode()).hexdigest()[:24]
        path = folder / f"{key}.jpg"
        if not path.exists():
            try:
                folder.mkdir(parents=True, exist_ok=True)
                tmp = path.with_name(path.name + ".tmp")
                annotate(media.first, rec.characters).save(tmp, format="JPEG", quality=85)
                tmp.replace(path)
            except OSError as exc:  # a full disk must not lose the answer
                logger.warning("could not write the annotated still: %s", exc)
                return None
        return str(path)

    def _with_preview(self, engine: Recognizer, cand: Candidate) -> Candidate:
        if self.previews is None:
            return cand
        pv = self.preview_for(engine, cand)
        return replace(cand, preview=str(pv.clip) if pv.clip else None,
                       still=str(pv.still) if pv.still else None)

    def preview_for(self, engine: Recognizer, cand: Candidate) -> Preview:
        assert self.previews is not None
        em = engine.catalog.episodes.get(cand.episode_id)
        if em is None:
            return Preview(None, None)
        sl = engine.catalog.window(cand.episode_id, cand.time - 0.6, cand.time + 0.6)
        shot = engine.catalog.shot_bounds(sl.start) if sl.stop > sl.start else None
        return self.previews.make(Path(em.path), cand.time, shot)

    def _keep_image(self, sha: str, data: bytes) -> str:
        assert self.images_dir is not None
        self.images_dir.mkdir(parents=True, exist_ok=True)
        p = self.images_dir / sha
        if not p.exists():
            tmp = p.with_suffix(".tmp")
            tmp.write_bytes(data)
            tmp.replace(p)
        return str(p)

    def media_only(self, data: bytes, sticker: bool = False) -> Media:
        """Decode with the service's limits (used by adapters to validate early)."""
        return load_media(data, self.limits, sticker=sticker)

    # -- feedback ----------------------------------------------------------------------------------
    async def record_feedback(self, query_id: str, verdict: Verdict, *, source: Source,
                              rank: int | None = None) -> FeedbackTally:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._io, self.store.record, query_id, source,
                                          Verdict(verdict), rank)

    async def withdraw_feedback(self, query_id: str, *, source: Source,
                                verdict: Verdict | None = None, rank: int | None = None) -> FeedbackTally:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._io, self.store.withdraw, query_id, source,
                                          verdict, rank)

    async def tally(self, query_id: str) -> FeedbackTally:
        return await asyncio.get_running_loop().run_in_executor(self._io, self.store.tally, query_id)

    # -- operator ----------------------------------------------------------------------------------
    async def stats(self) -> ServiceStats:
        st = await asyncio.get_running_loop().run_in_executor(self._io, self.store.stats)
        eng = self._recognizer
        return ServiceStats(
            **st,
            ready=eng is not None,
            model_version=eng.model_version if eng else None,
            index_version=eng.index_version if eng else None,
            frames=len(eng.catalog) if eng else 0,
            queue=self._inflight,
            served_since_start=self.served,
            uptime_s=round(time.time() - self.started_at),
        )
