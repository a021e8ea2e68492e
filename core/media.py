"""Load a query: still image, animation (GIF/WebP), short clip (MP4/WebM) or sticker.

Hard limits on bytes, pixels, frames and seconds are checked before anything large is
decoded (image headers are read first; videos are probed). Anything wrong raises one typed
error (`InvalidMedia` and subclasses) whose message a chat user can read.
"""

from __future__ import annotations

import io
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image, ImageOps

from core.errors import InvalidMedia, MediaTooLarge, UnsupportedMedia

logger = logging.getLogger(__name__)

MediaKind = Literal["image", "animation", "video", "sticker"]
ImageInput = bytes | bytearray | memoryview | Path | Image.Image


@dataclass(frozen=True)
class MediaLimits:
    max_bytes: int = 20_000_000
    max_pixels: int = 40_000_000
    max_frames: int = 8  # frames used from an animation or clip
    max_seconds: float = 60.0
    max_animation_frames: int = 5000  # frames an animation may declare


@dataclass(frozen=True)
class Media:
    """Decoded query frames (RGB) with their times in seconds from the start of the clip."""

    kind: MediaKind
    frames: tuple[Image.Image, ...]
    times: tuple[float, ...]
    duration: float = 0.0
    format: str = ""

    @property
    def first(self) -> Image.Image:
        return self.frames[0]


def sniff(data: bytes) -> str:
    """The container format from magic bytes: jpeg png gif webp bmp mp4 webm tgs, or ''."""
    head = data[:64]
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[:2] == b"BM":
        return "bmp"
    if head[4:8] == b"ftyp":
        return "mp4"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "webm"
    if head[:2] == b"\x1f\x8b":
        return "tgs"  # gzip: Telegram's animated (Lottie) stickers
    return ""


def _flatten(img: Image.Image) -> Image.Image:
    """RGB; transparency (stickers, PNGs) composited on white."""
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        bg = Image.new("RGB", rgba.size, (255, 255, 255))
        bg.paste(rgba, mask=rgba.getchannel("A"))
        return bg
    return img.convert("RGB")


def _check_pixels(w: int, h: int, limits: MediaLimits) -> None:
    if w <= 0 or h <= 0:
        raise InvalidMedia("That image has no pixels.")
    if w * h > limits.max_pixels:
        raise MediaTooLarge(f"That image is too large ({w}x{h} pixels; the limit is "
                            f"{limits.max_pixels / 1e6:.0f} megapixels).")
    if w < 16 or h < 16:
        raise InvalidMedia(f"That image is too small to recognise ({w}x{h} pixels).")


def _spread(n: int, k: int) -> list[int]:
    """k indices spread evenly over range(n) (all of them when n <= k)."""
    if n <= k:
        return list(range(n))
    return sorted({int(round(i * (n - 1) / (k - 1))) for i in range(k)}) if k > 1 else [n // 2]


def _load_image(data: bytes, fmt: str, limits: MediaLimits, sticker: bool) -> Media:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img: Image.Image = Image.open(io.BytesIO(data))
            _check_pixels(img.width, img.height, limits)
            n = int(getattr(img, "n_frames", 1) or 1)
            if n > limits.max_animation_frames:
                raise MediaTooLarge(f"That animation has too many frames ({n}).")
            if n <= 1:
                img.load()
                if fmt == "jpeg":
                    img = ImageOps.exif_transpose(img) or img
                frame = _flatten(img)
                return Media(kind="sticker" if sticker else "image", frames=(frame,), times=(0.0,),
                             format=fmt)
            # animation: walk every frame in order (GIF frames depend on the previous ones)
            durations: list[float] = []
            for i in range(n):
                img.seek(i)
                durations.append(max(float(img.info.get("duration", 100) or 100), 20.0) / 1000.0)
            total = float(sum(durations))
            if total > limits.max_seconds * 4:
                raise MediaTooLarge(f"That animation is too long ({total:.0f} s).")
            wanted = set(_spread(n, limits.max_frames))
            frames, times, t = [], [], 0.0
            for i in range(n):
                img.seek(i)
                if i in wanted:
                    img.load()
                    frames.append(_flatten(img.copy()))
                    times.append(t)
                t += durations[i]
            return Media(kind="sticker" if sticker else "animation", frames=tuple(frames),
                         times=tuple(times), duration=total, format=fmt)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise MediaTooLarge("That image is too large to decode safely.") from None
    except InvalidMedia:
        raise
    except (OSError, ValueError, SyntaxError, EOFError, IndexError, MemoryError) as exc:
        logger.info("unreadable %s image: %s", fmt, exc)
        raise InvalidMedia(f"I could not read that {fmt.upper()} image (it looks damaged).") from None


def _load_video(data: bytes, fmt: str, limits: MediaLimits) -> Media:
    import av

    try:
        with av.open(io.BytesIO(data), mode="r", metadata_errors="ignore") as c:
            if not c.streams.video:
                raise UnsupportedMedia("That file has no video in it.")
            s = c.streams.video[0]
            _check_pixels(s.codec_context.width, s.codec_context.height, limits)
            if s.duration is not None and s.time_base is not None:
                duration = float(s.duration * s.time_base)
            elif c.duration is not None:
                duration = c.duration / 1_000_000
            else:
                duration = 0.0
            if duration > limits.max_seconds:
                raise MediaTooLarge(f"That clip is too long ({duration:.0f} s; the limit is "
                                    f"{limits.max_seconds:.0f} s).")
            fps = float(s.average_rate or 25)
            est_frames = max(1, int(round(duration * fps))) if duration > 0 else 0
            s.thread_type = "AUTO"
            if est_frames:
                targets = [duration * (i + 0.5) / limits.max_frames for i in range(limits.max_frames)] \
                    if est_frames > limits.max_frames else None
            else:
                targets = None
            frames: list[Image.Image] = []
            times: list[float] = []
            cap = int((limits.max_seconds + 1) * max(fps, 1) * 1.5) + 10
            all_frames: list[tuple[float, Image.Image]] = []
            ti = 0
            for i, fr in enumerate(c.decode(s)):
                if i > cap:
                    raise MediaTooLarge("That clip has too many frames.")
                t = float(fr.time) if fr.time is not None else i / fps
                if targets is None:
                    all_frames.append((t, fr.to_image()))
                    continue
                while ti < len(targets) and t + 0.5 / fps >= targets[ti]:
                    frames.append(fr.to_image())
                    times.append(t)
                    ti += 1
                if ti >= len(targets):
                    break
            if targets is None:
                keep = _spread(len(all_frames), limits.max_frames)
                frames = [all_frames[i][1] for i in keep]
                times = [all_frames[i][0] for i in keep]
            if not frames:
                raise InvalidMedia("I could not decode any frame of that clip.")
            # de-duplicate identical times (a target list denser than the clip's frames)
            uniq: dict[float, Image.Image] = {}
            for t, f in zip(times, frames, strict=True):
                uniq.setdefault(round(t, 3), f)
            t0 = min(uniq)
            return Media(kind="video", frames=tuple(f.convert("RGB") for f in uniq.values()),
                         times=tuple(t - t0 for t in uniq), duration=duration, format=fmt)
    except InvalidMedia:
        raise
    except (av.error.FFmpegError, OSError, ValueError, IndexError, MemoryError) as exc:
        logger.info("unreadable clip: %s", exc)
        raise InvalidMedia("I could not read that clip (it looks damaged or is not a video).") from None


def load_media(source: ImageInput, limits: MediaLimits | None = None, *, sticker: bool = False
               ) -> Media:
    """Decode a query into RGB frames, enforcing `limits`.

    Args:
        source: the file's bytes, a path, or an already-open PIL image.
        limits: byte/pixel/frame/second limits.
        sticker: the input came as a sticker (kind is reported as "sticker").

    Raises:
        UnsupportedMedia: not an image, animation or clip.
        MediaTooLarge: over a limit.
        InvalidMedia: damaged or empty.
        TypeError: `source` is of another type.
    """
    limits = limits or MediaLimits()
    if isinstance(source, Image.Image):
        _check_pixels(source.width, source.height, limits)
        return Media(kind="image", frames=(_flatten(source),), times=(0.0,), format="pil")
    if isinstance(source, Path):
        try:
            size = source.stat().st_size
        except OSError:
            raise InvalidMedia("That file does not exist or cannot be read.") from None
        if size > limits.max_bytes:
            raise MediaTooLarge(f"That file is too large ({size / 1e6:.1f} MB; the limit is "
                                f"{limits.max_bytes / 1e6:.0f} MB).")
        source = source.read_bytes()
    if not isinstance(source, (bytes, bytearray, memoryview)):
        raise TypeError(f"load_media takes bytes, a Path or a PIL image, not {type(source).__name__}")
    data = bytes(source)
    if len(data) == 0:
        raise InvalidMedia("That file is empty.")
    if len(data) > limits.max_bytes:
        raise MediaTooLarge(f"That file is too large ({len(data) / 1e6:.1f} MB; the limit is "
                            f"{limits.max_bytes / 1e6:.0f} MB).")
    fmt = sniff(data)
    if fmt in ("jpeg", "png", "gif", "webp", "bmp"):
        return _load_image(data, fmt, limits, sticker)
    if fmt in ("mp4", "webm"):
        return _load_video(data, fmt, limits)
    if fmt == "tgs":
        raise UnsupportedMedia("Animated (Lottie) stickers can't be read; send a static sticker, "
                               "a video sticker or a screenshot instead.")
    raise UnsupportedMedia()


def to_array(img: Image.Image) -> np.ndarray:
    return np.asarray(img.convert("RGB"), dtype=np.uint8)
