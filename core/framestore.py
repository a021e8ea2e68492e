"""Frame store: per indexed frame, a small JPEG thumbnail and the tiny verification descriptor.

One file per episode (`ep<id>.npz`), written atomically, so training, re-embedding,
verification and OP/ED detection never need to decode video again.
"""

from __future__ import annotations

import io
import logging
import os
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from core.descriptors import TINY_BYTES

logger = logging.getLogger(__name__)

JPEG_QUALITY = 88
_MEMBERS = ("frame_ids", "times", "shots", "descriptors", "blob", "offsets")


class DamagedPack(ValueError):
    """An episode's frame pack is truncated or corrupt; `anirec index` writes it again."""


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
        return decode_jpeg(self.jpeg(i))

    def index_of(self, frame_id: int) -> int:
        hit = np.nonzero(self.frame_ids == frame_id)[0]
        if hit.size == 0:
            raise KeyError(frame_id)
        return int(hit[0])


def decode_jpeg(jpeg: bytes) -> np.ndarray:
    """A stored JPEG thumbnail as uint8 HxWx3 RGB."""
    with Image.open(io.BytesIO(jpeg)) as img:
        return np.asarray(img.convert("RGB"), dtype=np.uint8)


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
        try:
            with open(tmp, "wb") as fh:
                np.savez(fh, frame_ids=np.asarray(frame_ids, np.int64), times=np.asarray(times, np.float32),
                         shots=np.asarray(shots, np.int32), descriptors=desc, blob=blob, offsets=offsets)
                fh.flush()
                os.fsync(fh.fileno())
            self._check_file(tmp, episode_id)  # a short write (full disk) is never committed
            os.replace(tmp, final)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def read(self, episode_id: int) -> EpisodeFrames:
        """The episode's pack. Raises FileNotFoundError when there is none and DamagedPack
        when it is truncated or corrupt (the zip's CRCs catch a same-size corruption)."""
        path = self.path(episode_id)
        try:
            with np.load(path, allow_pickle=False) as z:
                ef = EpisodeFrames(int(episode_id), z["frame_ids"], z["times"], z["shots"],
                                   z["descriptors"], z["blob"], z["offsets"])
        except FileNotFoundError:
            raise
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
            logger.warning("frame pack of episode %s is damaged: %s", episode_id, exc)
            raise DamagedPack(f"the stored frames of episode {episode_id} are damaged; "
                              "run `anirec index` to write them again") from None
        n = len(ef)
        if not (ef.times.shape[0] == ef.shots.shape[0] == ef.descriptors.shape[0] == n
                and ef._offsets.shape[0] == n + 1 and (n == 0 or int(ef._offsets[-1]) == ef._blob.shape[0])):
            raise DamagedPack(f"the stored frames of episode {episode_id} are inconsistent; "
                              "run `anirec index` to write them again")
        return ef

    @staticmethod
    def _check_file(path: Path, episode_id: int) -> None:
        """Cheap structural check: the zip directory is readable and names every column."""
        try:
            with zipfile.ZipFile(path) as z:
                names = {n.removesuffix(".npy") for n in z.namelist()}
        except (OSError, zipfile.BadZipFile, ValueError) as exc:
            raise DamagedPack(f"the stored frames of episode {episode_id} are damaged ({exc})") from None
        if not set(_MEMBERS) <= names:
            raise DamagedPack(f"the stored frames of episode {episode_id} are incomplete")

    def intact(self, episode_id: int) -> bool:
        """The pack exists and its zip directory is whole (truncation is caught; a corrupt
        byte inside is caught when the pack is read)."""
        path = self.path(episode_id)
        if not path.exists():
            return False
        try:
            self._check_file(path, episode_id)
        except DamagedPack:
            return False
        return True

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
