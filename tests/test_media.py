"""Query media loading: formats, several frames from animations/clips, limits, hostile input."""

from __future__ import annotations

import io
import struct
import zlib
from fractions import Fraction

import av
import numpy as np
import pytest
from PIL import Image

from core.errors import InvalidMedia, MediaTooLarge, UnsupportedMedia
from core.media import MediaLimits, load_media, sniff


def picture(w: int = 320, h: int = 180, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    arr = (rng.random((h // 10, w // 10, 3)) * 255).astype(np.uint8)
    return Image.fromarray(arr).resize((w, h), Image.NEAREST)


def encode(img: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def clip_bytes(fmt: str = "mp4", codec: str = "libx264", seconds: float = 3.0, fps: int = 10) -> bytes:
    buf = io.BytesIO()
    with av.open(buf, mode="w", format=fmt) as out:
        s = out.add_stream(codec, rate=fps)
        s.width, s.height, s.pix_fmt = 160, 96, "yuv420p"
        for i in range(int(seconds * fps)):
            arr = np.full((96, 160, 3), (i * 8) % 255, np.uint8)
            arr[:, : (i * 5) % 160] = 255
            fr = av.VideoFrame.from_ndarray(arr, format="rgb24")
            fr.pts, fr.time_base = i, Fraction(1, fps)
            for p in s.encode(fr):
                out.mux(p)
        for p in s.encode(None):
            out.mux(p)
    return buf.getvalue()


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "BMP"])
def test_still_formats(fmt: str) -> None:
    m = load_media(encode(picture(), fmt))
    assert m.kind == "image" and len(m.frames) == 1 and m.first.size == (320, 180)
    assert m.first.mode == "RGB"


def test_gif_uses_several_frames_not_only_the_first() -> None:
    frames = [picture(seed=i) for i in range(20)]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    m = load_media(data, MediaLimits(max_frames=5))
    assert m.kind == "animation" and len(m.frames) == 5
    assert m.times[0] == 0.0 and m.times[-1] == pytest.approx(1.9)
    assert not np.array_equal(np.asarray(m.frames[0]), np.asarray(m.frames[-1]))


def test_animated_webp() -> None:
    frames = [picture(seed=i) for i in range(6)]
    data = encode(frames[0], "WEBP", save_all=True, append_images=frames[1:], duration=200)
    m = load_media(data, MediaLimits(max_frames=3))
    assert m.kind == "animation" and len(m.frames) == 3


def test_transparent_sticker_on_white() -> None:
    img = Image.new("RGBA", (200, 200), (0, 0, 0, 0))
    img.paste((255, 0, 0, 255), (50, 50, 150, 150))
    m = load_media(encode(img, "WEBP"), sticker=True)
    assert m.kind == "sticker"
    assert m.first.getpixel((5, 5)) == (255, 255, 255)
    assert m.first.getpixel((100, 100))[0] > 200


@pytest.mark.parametrize("fmt,codec", [("mp4", "libx264"), ("webm", "libvpx-vp9")])
def test_clip_frames_spread_over_the_clip(fmt: str, codec: str) -> None:
    m = load_media(clip_bytes(fmt, codec), MediaLimits(max_frames=4))
    assert m.kind == "video" and len(m.frames) == 4
    assert m.times[0] == 0.0 and m.times[-1] > 1.5


def test_clip_too_long() -> None:
    with pytest.raises(MediaTooLarge, match="too long"):
        load_media(clip_bytes(seconds=4), MediaLimits(max_seconds=2))


def test_too_many_bytes() -> None:
    with pytest.raises(MediaTooLarge, match="too large"):
        load_media(encode(picture(), "PNG"), MediaLimits(max_bytes=100))


def _png_header_only(w: int, h: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 100)) \
        + chunk(b"IEND", b"")


def test_decompression_bomb_refused_before_decoding() -> None:
    with pytest.raises(MediaTooLarge):
        load_media(_png_header_only(60000, 60000))


@pytest.mark.parametrize("data,err", [
    (b"", InvalidMedia),
    (b"hello, this is text and not a picture at all", UnsupportedMedia),
    (b"%PDF-1.7\n...", UnsupportedMedia),
    (b"\x1f\x8b\x08\x00lottie", UnsupportedMedia),  # TGS animated sticker
])
def test_wrong_type(data: bytes, err: type) -> None:
    with pytest.raises(err) as e:
        load_media(data)
    assert str(e.value)  # a message a user can read


def test_truncated_image_is_invalid_media() -> None:
    data = encode(picture(640, 360), "PNG")
    with pytest.raises(InvalidMedia, match="damaged"):
        load_media(data[: len(data) // 3])


def test_garbage_clip_is_invalid_media() -> None:
    data = clip_bytes()
    with pytest.raises(InvalidMedia):
        load_media(data[:64] + b"\x00" * 2000)


def test_tiny_image_refused() -> None:
    with pytest.raises(InvalidMedia, match="too small"):
        load_media(encode(picture(8, 8), "PNG"))


def test_wrong_python_type() -> None:
    with pytest.raises(TypeError):
        load_media(12345)  # type: ignore[arg-type]


def test_sniff() -> None:
    assert sniff(encode(picture(), "JPEG")) == "jpeg"
    assert sniff(clip_bytes()) == "mp4"
