"""Preparing one episode: decode and sample it, make its thumbnails, descriptors, vectors and
region vectors; nothing is written (`data.indexer.Indexer` writes). `EpisodeRunner`s prepare
the to-do episodes and hand them over in order: `SerialRunner` here, `data.parallel.RayRunner`
in Ray workers.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Generator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from core.descriptors import tiny_descriptor
from core.framestore import decode_jpeg, encode_jpeg
from core.index import RegionSpec
from core.models.embedder import SceneEmbedder
from data.video import EpisodeDecoder, SampledFrame, VideoError, assign_shots

#: What the decoding thread hands over: a batch of frames, its error, or None at the end.
_Batch = list[SampledFrame] | BaseException | None


@dataclass
class PreparedEpisode:
    """One episode decoded and embedded, not yet written anywhere."""

    times: list[float]
    vectors: np.ndarray
    jpegs: list[bytes]
    descs: list[bytes]
    shots: list[tuple[float, float]]
    shot_idx: np.ndarray
    duration: float
    #: the region vectors of the keyframes: the keyframes' positions in `times`, and their
    #: windows' vectors (`RegionSpec.region_ids` order); None when regions are off
    region_keys: np.ndarray | None = None
    region_vectors: np.ndarray | None = None


@dataclass(frozen=True)
class PrepareParams:
    """What preparing an episode needs besides the file and the embedder (sent to workers)."""

    fps: float = 2.0
    max_fps: float = 6.0
    batch_size: int = 32
    regions: RegionSpec | None = None
    decode: str = "all"  # EpisodeDecoder's: "all" frames, or only the reference ("ref")


class Progress:
    """Progress callbacks; the CLI passes a tqdm-backed one, tests pass nothing."""

    def start(self, total_seconds: float, episodes: int) -> None: ...
    def episode(self, name: str, duration: float) -> None: ...
    def frames(self, n: int, t: float) -> None: ...
    def episode_done(self, duration: float) -> None: ...
    def close(self) -> None: ...


#: What a runner hands over for one episode: the prepared episode, or why it cannot be decoded.
Prepared = PreparedEpisode | VideoError


class EpisodeRunner:
    """Prepares episodes (`prepare_episode`) and yields the results in the order given.

    A runner only decodes and embeds; it never writes. Closing the iterator early (an error
    while writing, Ctrl-C) drops what was not handed over yet."""

    def run(self, paths: list[Path], embedder: SceneEmbedder, params: PrepareParams,
            progress: Progress) -> Generator[Prepared, None, None]:
        raise NotImplementedError

    def describe(self) -> str:
        return type(self).__name__


class SerialRunner(EpisodeRunner):
    """In this process: the next episode is decoded and embedded in a thread while the driver
    writes the current one (at most one episode waits, prepared, in memory)."""

    def run(self, paths: list[Path], embedder: SceneEmbedder, params: PrepareParams,
            progress: Progress) -> Generator[Prepared, None, None]:
        def job(path: Path) -> Prepared:
            try:
                return prepare_episode(path, embedder, params, progress)
            except VideoError as exc:
                return exc

        pool = ThreadPoolExecutor(1, thread_name_prefix="prepare")
        try:
            ahead: Future[Prepared] | None = pool.submit(job, paths[0]) if paths else None
            for i in range(len(paths)):
                assert ahead is not None
                current = ahead
                ahead = pool.submit(job, paths[i + 1]) if i + 1 < len(paths) else None
                yield current.result()
        finally:
            pool.shutdown(wait=False, cancel_futures=True)

    def describe(self) -> str:
        return "serial"


def _decode_thread(dec: EpisodeDecoder, out: queue.Queue[_Batch], batch_size: int,
                   stop: threading.Event) -> None:
    """The producer: the decoder's sampled frames in batches into `out` (bounded), then None,
    or the error; stops early when the consumer sets `stop`."""
    try:
        batch: list[SampledFrame] = []
        for fr in dec:
            batch.append(fr)
            if len(batch) >= batch_size:
                _put(out, batch, stop)
                batch = []
            if stop.is_set():
                return
        if batch:
            _put(out, batch, stop)
        _put(out, None, stop)
    except BaseException as exc:  # handed to the consumer
        _put(out, exc, stop)


def _put(out: queue.Queue[_Batch], item: _Batch, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            out.put(item, timeout=0.5)
            return
        except queue.Full:
            continue


def prepare_episode(path: Path, embedder: SceneEmbedder, params: PrepareParams,
                    progress: Progress | None = None) -> PreparedEpisode:
    """Decode and sample one episode and embed it (frames, then the region windows of its
    keyframes); nothing is written. Decoding runs in a thread ahead of the embedding (a queue
    of a few batches). Raises VideoError when the file cannot be decoded."""
    h, w = embedder.input_size
    dec = EpisodeDecoder(path, fps=params.fps, size=(h, w), max_fps=params.max_fps, decode=params.decode)
    q: queue.Queue[_Batch] = queue.Queue(maxsize=4)
    stop = threading.Event()
    th = threading.Thread(target=_decode_thread, args=(dec, q, params.batch_size, stop), daemon=True,
                          name=f"decode-{path.name[:20]}")
    th.start()
    times: list[float] = []
    vecs: list[np.ndarray] = []
    jpegs: list[bytes] = []
    descs: list[bytes] = []
    try:
        while True:
            item = q.get()
            if item is None:
                break
            if isinstance(item, BaseException):
                raise item
            arrays = np.stack([f.rgb for f in item])
            vecs.append(embedder.embed_arrays(arrays, batch_size=params.batch_size))
            for f in item:
                times.append(f.t)
                jpegs.append(encode_jpeg(f.rgb))
                descs.append(tiny_descriptor(f.rgb))
            if progress is not None:
                progress.frames(len(item), item[-1].t)
    finally:
        stop.set()
        th.join(timeout=30)
    if not times:
        raise VideoError(f"{path.name}: no frames")
    info = dec.info
    assert info is not None
    duration = max(info.duration, dec.last_time)
    shots, shot_idx = assign_shots(times, dec.cuts, duration)
    out = PreparedEpisode(times, np.concatenate(vecs).astype(np.float32), jpegs, descs, shots,
                          shot_idx, duration)
    if params.regions is not None:
        out.region_keys, out.region_vectors = region_vectors(
            embedder, params.regions, np.asarray(times), shot_idx, jpegs.__getitem__, params.batch_size)
    return out


def region_vectors(embedder: SceneEmbedder, spec: RegionSpec, times: np.ndarray, shots: np.ndarray,
                   jpeg: Callable[[int], bytes], batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """The keyframes of an episode (positions in `times`) and the vectors of their region
    windows, made from the stored (JPEG) thumbnails so indexing and re-embedding agree."""
    keys = spec.keyframes(times, shots)
    if not len(keys):
        return keys, np.zeros((0, embedder.dim), np.float32)
    h, w = embedder.input_size
    arrays: list[np.ndarray] = []
    for i in keys.tolist():
        arrays.extend(region_arrays(decode_jpeg(jpeg(i)), spec, (h, w)))
    return keys, embedder.embed_arrays(np.stack(arrays), batch_size=batch_size)


def region_arrays(frame: np.ndarray, spec: RegionSpec, size: tuple[int, int]) -> list[np.ndarray]:
    """The region windows of a frame, each resized to the embedder's (height, width)."""
    h, w = size
    img = Image.fromarray(frame)
    return [np.asarray(img.crop(b).resize((w, h), Image.Resampling.BILINEAR), dtype=np.uint8)
            for b in spec.boxes(img.width, img.height)]
