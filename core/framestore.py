"""Frame store: per indexed frame, a small JPEG thumbnail and the tiny verification descriptor.

One file per episode (`ep<id>.npz`), written atomically, so training, re-embedding,
verification and OP/ED detection never need to decode video again.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from core.descriptors import TINY_BYTES

JPEG_QUALITY = 88


@dataclass(frozen=True)
class EpisodeFrames:
    """The stored frames of one episode, in time order."""

    episode_id: int
    frame_ids: np.ndarray  # int64 [N]
    times: np.ndarray  # float32 [N]
    shots: np.ndarray  # int32 [N], shot index within the episode
    descriptors: np.ndarray  # uint8 [N, 432]
    _blob: np.ndarray  # uint8, concatenated JPEGs
    _offsets: np.ndarray  # int64 [N+1]

    def __len__(self) -> int:
        return int(self.frame_ids.shape[0])

    def jpeg(self, i: int) -> bytes:
        return self._blob[self._offsets[i]:self._offsets[i + 1]].tobytes()

    def thumbnail(self, i: int) -> Image.Image:
        img = Image.open(io.BytesIO(self.jpeg(i)))
        img.load()
        return img.convert("RGB")

    def thumbnail_array(self, i: int) -> np.ndarray:
        return np.asarray(self.thumbnail(i), dtype=np.uint8)

    def index_of(self, frame_id: int) -> int:
        hit = np.nonzero(self.frame_ids == frame_id)[0]
        if hit.size == 0:
            raise KeyError(frame_id)
        return int(hit[0])


def encode_jpeg(arr: np.ndarray, quality: int = JPEG_QUALITY) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=quality, optimize=False)
    return buf.getvalue()


class FrameStore:
    """Folder of per-episode frame packs."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, episode_id: int) -> Path:
        return self.root / f"ep{int(episode_id)}.npz"

    def write(self, episode_id: int, frame_ids: Sequence[int], times: Sequence[float],
              shots: Sequence[int], jpegs: Sequence[bytes], descriptors: Sequence[bytes]) -> None:
        """Write (or replace) one episode's pack atomically."""
        n = len(frame_ids)
        if not (len(times) == len(shots) == len(jpegs) == len(descriptors) == n):
            raise ValueError("frame store columns differ in length")
        self.root.mkdir(parents=True, exist_ok=True)
        offsets = np.zeros(n + 1, dtype=np.int64)
        offsets[1:] = np.cumsum([len(j) for j in jpegs])
        blob = np.frombuffer(b"".join(jpegs), dtype=np.uint8)
        desc = np.frombuffer(b"".join(descriptors), dtype=np.uint8).reshape(n, TINY_BYTES) \
            if n else np.zeros((0, TINY_BYTES), np.uint8)
        final = self.path(episode_id)
        tmp = final.with_name(final.name + ".tmp")
        with open(tmp, "wb") as fh:
            np.savez(fh, frame_ids=np.asarray(frame_ids, np.int64), times=np.asarray(times, np.float32),
                     shots=np.asarray(shots, np.int32), descriptors=desc, blob=blob, offsets=offsets)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, final)

    def read(self, episode_id: int) -> EpisodeFrames:
        with np.load(self.path(episode_id)) as z:
            return EpisodeFrames(int(episode_id), z["frame_ids"], z["times"], z["shots"],
                                 z["descriptors"], z["blob"], z["offsets"])

    def has(self, episode_id: int) -> bool:
        return self.path(episode_id).exists()

    def delete(self, episode_id: int) -> None:
        self.path(episode_id).unlink(missing_ok=True)

    def episode_ids(self) -> list[int]:
        if not self.root.exists():
            return []
        return sorted(int(p.stem[2:]) for p in self.root.glob("ep*.npz") if p.stem[2:].isdigit())

    def iter_episodes(self) -> Iterator[EpisodeFrames]:
        for eid in self.episode_ids():
            yield self.read(eid)

    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.root.glob("ep*.npz")) if self.root.exists() else 0
