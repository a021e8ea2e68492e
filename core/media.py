"""Load a query: still image, animation (GIF/WebP), short clip (MP4/WebM) or sticker.

Hard limits on bytes, pixels, frames and seconds are checked before anything large is
decoded (image headers are read first; videos are probed). Anything wrong raises one typed
error (`InvalidMedia` and subclasses) whose message a chat user can read.
"""

from __future__ import annotations

import io
import logging
import struct
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
from PIL import Image, ImageOps

from core.errors import InvalidMedia, MediaTooLarge, UnsupportedMedia
from core.media_probe import frame_durations

if TYPE_CHECKING:
    import av

logger = logging.getLogger(__name__)

MediaKind = Literal["image", "animation", "video", "sticker"]
ImageInput = bytes | bytearray | memoryview | Path | Image.Image


@dataclass(frozen=True)
class MediaLimits:
    max_bytes: int = 20_000_000
    max_pixels: int = 40_000_000  # a still image
    max_frames: int = 8  # frames used from an animation or clip
    max_seconds: float = 60.0
    max_animation_frames: int = 5000  # frames an animation may declare
    max_frame_pixels: int = 8_300_000  # each frame of an animation or clip (a 4K frame)
    max_decode_pixels: int = 600_000_000  # all frames decoded for one query, together
    max_decode_seconds: float = 20.0  # wall-clock budget of one decode


@dataclass
class DecodeMeter:
    """What one decode cost: frames and pixels decoded, most frames held at once. The budget
    is spent frame by frame, whatever the header claimed."""

    frames: int = 0
    pixels: int = 0
    held: int = 0
    started: float = field(default_factory=time.monotonic)

    def fits(self, w: int, h: int, limits: MediaLimits) -> bool:
        """Whether one more w×h frame fits in the pixel budget."""
        return self.pixels + w * h <= limits.max_decode_pixels

    def spend(self, w: int, h: int, limits: MediaLimits) -> None:
        self.frames += 1
        self.pixels += w * h
        if time.monotonic() - self.started > limits.max_decode_seconds:
            raise MediaTooLarge("That file takes too long to decode.")

    def hold(self, n: int) -> None:
        self.held = max(self.held, n)


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


def _to_8bit(img: Image.Image) -> Image.Image:
    """16-bit and 32-bit grey ("I;16", "I", "F") scaled to 8-bit grey instead of clipped white."""
    arr = np.asarray(img, dtype=np.float64)
    top = 65535.0 if img.mode.startswith("I;16") or (arr.size and arr.max() > 255) else 255.0
    return Image.fromarray(np.clip(arr * (255.0 / top), 0, 255).astype(np.uint8), mode="L")


def _flatten(img: Image.Image) -> Image.Image:
    """RGB; transparency (stickers, PNGs) composited on white; deep grey scaled to 8 bits."""
    if img.mode in ("I", "F") or img.mode.startswith("I;16"):
        img = _to_8bit(img)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        bg = Image.new("RGB", rgba.size, (255, 255, 255))
        bg.paste(rgba, mask=rgba.getchannel("A"))
        return bg
    return img.convert("RGB")


def _check_pixels(w: int, h: int, limits: MediaLimits, *, frames: bool = False) -> None:
    if w <= 0 or h <= 0:
        raise InvalidMedia("That image has no pixels.")
    if w * h > limits.max_pixels:
        raise MediaTooLarge(f"That image is too large ({w}x{h} pixels; the limit is "
                            f"{limits.max_pixels / 1e6:.0f} megapixels).")
    if frames and w * h > limits.max_frame_pixels:
        raise MediaTooLarge(f"The frames of that animation or clip are too large ({w}x{h} pixels; "
                            f"the limit is {limits.max_frame_pixels / 1e6:.1f} megapixels a frame).")
    if w < 16 or h < 16:
        raise InvalidMedia(f"That image is too small to recognise ({w}x{h} pixels).")


def _spread(n: int, k: int) -> list[int]:
    """k indices spread evenly over range(n) (all of them when n <= k)."""
    if n <= k:
        return list(range(n))
    return sorted({int(round(i * (n - 1) / (k - 1))) for i in range(k)}) if k > 1 else [n // 2]


#: a JPEG at least twice this on its longer side is decoded at a reduced scale (1/2, 1/4 or
#: 1/8, in the JPEG decoder itself) that keeps at least this much: recognition works on
#: views at most 640 px wide (core/recognition/resolution.py), and the decode of a 1080p
#: or phone-sized screenshot is then ~3x faster
DRAFT_SIDE = 960


def _still(img: Image.Image, fmt: str, limits: MediaLimits, sticker: bool, meter: DecodeMeter) -> Media:
    big = max(img.size)
    if fmt == "jpeg" and big >= 2 * DRAFT_SIDE:
        img.draft("RGB", (-(-img.width * DRAFT_SIDE // big), -(-img.height * DRAFT_SIDE // big)))
    img.load()
    meter.spend(img.width, img.height, limits)
    img = ImageOps.exif_transpose(img) or img  # EXIF orientation (JPEG, PNG, WebP, TIFF-ish)
    meter.hold(1)
    return Media(kind="sticker" if sticker else "image", frames=(_flatten(img),), times=(0.0,),
                 format=fmt)


def _animation(img: Image.Image, data: bytes, fmt: str, n: int, limits: MediaLimits,
               sticker: bool, meter: DecodeMeter) -> Media:
    """Frames of an animation. Every frame up to the last one used is composited at the canvas
    size, so only the prefix that fits in the pixel budget is walked (its frames spread)."""
    _check_pixels(img.width, img.height, limits, frames=True)
    durations = frame_durations(data, fmt, n)
    total = float(sum(durations))
    if total > limits.max_seconds * 4:
        raise MediaTooLarge(f"That animation is too long ({total:.0f} s).")
    canvas = img.width * img.height
    walk = min(n, max(1, limits.max_decode_pixels // canvas))
    wanted = set(_spread(walk, limits.max_frames))
    frames, times, t = [], [], 0.0
    for i in range(max(wanted) + 1):
        if i:
            img.seek(i)
        meter.spend(img.width, img.height, limits)
        if i in wanted:
            img.load()
            frames.append(_flatten(img.copy()))
            times.append(t)
            meter.hold(len(frames))
        t += durations[i]
    return Media(kind="sticker" if sticker else "animation", frames=tuple(frames),
                 times=tuple(times), duration=total, format=fmt)


def _load_image(data: bytes, fmt: str, limits: MediaLimits, sticker: bool, meter: DecodeMeter) -> Media:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img: Image.Image = Image.open(io.BytesIO(data))
            _check_pixels(img.width, img.height, limits)
            n = int(getattr(img, "n_frames", 1) or 1)
            if n > limits.max_animation_frames:
                raise MediaTooLarge(f"That animation has too many frames ({n}).")
            if n <= 1:
                return _still(img, fmt, limits, sticker, meter)
            return _animation(img, data, fmt, n, limits, sticker, meter)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise MediaTooLarge("That image is too large to decode safely.") from None
    except InvalidMedia:
        raise
    except (OSError, ValueError, SyntaxError, EOFError, IndexError, MemoryError, struct.error) as exc:
        logger.info("unreadable %s image: %s", fmt, exc)
        raise InvalidMedia(f"I could not read that {fmt.upper()} image (it looks damaged).") from None


class _Sampler:
    """Keeps at most 2 × max_frames evenly spaced frames of a clip of unknown length: every
    `stride`-th frame, the stride doubling (and every other kept frame dropped) when full."""

    def __init__(self, k: int) -> None:
        self.k, self.stride = max(1, k), 1
        self.kept: list[tuple[float, Image.Image]] = []

    def wants(self, i: int) -> bool:
        return i % self.stride == 0

    def add(self, t: float, img: Image.Image) -> None:
        self.kept.append((t, img))
        if len(self.kept) >= 2 * self.k:
            self.kept = self.kept[::2]
            self.stride *= 2


def _clip_duration(c: av.container.InputContainer, s: av.video.stream.VideoStream) -> float:
    if s.duration is not None and s.time_base is not None:
        return float(s.duration * s.time_base)
    if c.duration is not None:
        return c.duration / 1_000_000
    return 0.0


def _decode_clip(c: av.container.InputContainer, s: av.video.stream.VideoStream, limits: MediaLimits,
                 meter: DecodeMeter) -> tuple[list[Image.Image], list[float], float]:
    duration = _clip_duration(c, s)
    if duration > limits.max_seconds:
        raise MediaTooLarge(f"That clip is too long ({duration:.0f} s; the limit is "
                            f"{limits.max_seconds:.0f} s).")
    fps = float(s.average_rate or 25)
    est = max(1, int(round(duration * fps))) if duration > 0 else 0
    k = limits.max_frames
    targets = [duration * (i + 0.5) / k for i in range(k)] if est > k else None
    sampler = _Sampler(k)
    frames: list[Image.Image] = []
    times: list[float] = []
    cap = int((limits.max_seconds + 1) * max(fps, 1) * 1.5) + 10
    ti = 0
    for i, fr in enumerate(c.decode(s)):
        if i > cap:
            raise MediaTooLarge("That clip has too many frames.")
        w, h = fr.width, fr.height
        if w * h > limits.max_frame_pixels or w * h > limits.max_pixels:
            raise MediaTooLarge(f"That clip changes to frames that are too large ({w}x{h} pixels).")
        t = float(fr.time) if fr.time is not None else i / fps
        if t > limits.max_seconds:
            raise MediaTooLarge(f"That clip is too long (over {limits.max_seconds:.0f} s).")
        if not meter.fits(w, h, limits) and (frames or sampler.kept):
            break  # the budget is spent: answer on the part decoded so far
        meter.spend(w, h, limits)
        if targets is None:
            if sampler.wants(i):
                sampler.add(t, fr.to_image())
                meter.hold(len(sampler.kept))
            continue
        while ti < len(targets) and t + 0.5 / fps >= targets[ti]:
            frames.append(fr.to_image())
            times.append(t)
            meter.hold(len(frames))
            ti += 1
        if ti >= len(targets):
            break
    if targets is None or not frames:
        kept = sampler.kept if targets is None else []
        keep = _spread(len(kept), k)
        frames, times = [kept[i][1] for i in keep], [kept[i][0] for i in keep]
    return frames, times, duration


def _load_video(data: bytes, fmt: str, limits: MediaLimits, meter: DecodeMeter) -> Media:
    import av

    try:
        with av.open(io.BytesIO(data), mode="r", metadata_errors="ignore") as c:
            if not c.streams.video:
                raise UnsupportedMedia("That file has no video in it.")
            s = c.streams.video[0]
            _check_pixels(s.codec_context.width, s.codec_context.height, limits, frames=True)
            s.thread_type = "AUTO"
            frames, times, duration = _decode_clip(c, s, limits, meter)
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


def load_media(source: ImageInput, limits: MediaLimits | None = None, *, sticker: bool = False,
               meter: DecodeMeter | None = None) -> Media:
    """Decode a query into RGB frames, enforcing `limits`.

    Args:
        source: the file's bytes, a path, or an already-open PIL image.
        limits: byte/pixel/frame/second limits and the decode budget.
        sticker: the input came as a sticker (kind is reported as "sticker").
        meter: filled with what the decode cost (frames, pixels, frames held), if given.

    Raises:
        UnsupportedMedia: not an image, animation or clip.
        MediaTooLarge: over a limit.
        InvalidMedia: damaged or empty.
        TypeError: `source` is of another type.
    """
    limits = limits or MediaLimits()
    meter = meter if meter is not None else DecodeMeter()
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
        return _load_image(data, fmt, limits, sticker, meter)
    if fmt in ("mp4", "webm"):
        return _load_video(data, fmt, limits, meter)
    if fmt == "tgs":
        raise UnsupportedMedia("Animated (Lottie) stickers can't be read; send a static sticker, "
                               "a video sticker or a screenshot instead.")
    raise UnsupportedMedia()


def to_array(img: Image.Image) -> np.ndarray:
    return np.asarray(img.convert("RGB"), dtype=np.uint8)
