"""The hostile-input corpus, generated (never downloaded): every file an attacker or a bad
day sends, as bytes, with a name. Small on disk; some are bombs that would cost gigabytes or
minutes if decoded naively.

`corpus()` yields (name, bytes, expect) where expect is "answer" (a usable picture) or
"refuse" (a clear sentence). Generators are plain functions so a test can build one alone.
"""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from collections.abc import Iterator
from fractions import Fraction

import av
import numpy as np
from PIL import Image

# -- helpers ---------------------------------------------------------------------------------


def picture(w: int = 320, h: int = 180, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    arr = (rng.random((max(1, h // 10), max(1, w // 10), 3)) * 255).astype(np.uint8)
    return Image.fromarray(arr).resize((w, h), Image.NEAREST)


def encode(img: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _riff_chunk(kind: bytes, data: bytes) -> bytes:
    pad = b"\0" if len(data) % 2 else b""
    return kind + struct.pack("<I", len(data)) + data + pad


def _u24(v: int) -> bytes:
    return struct.pack("<I", v)[:3]


# -- image bombs -----------------------------------------------------------------------------


def gif_canvas_bomb(canvas: int = 4000, frames: int = 4999) -> bytes:
    """A GIF whose logical screen is canvas² while each frame is one pixel: ~115 KB that a
    naive decoder turns into frames × canvas² pixels."""
    out = bytearray(b"GIF89a" + struct.pack("<HH", canvas, canvas) + bytes([0xF0, 0, 0]))
    out += bytes([0, 0, 0, 255, 255, 255])  # global colour table (2 colours)
    out += b"\x21\xff\x0bNETSCAPE2.0\x03\x01\x00\x00\x00"
    for i in range(frames):
        out += b"\x21\xf9\x04\x00" + struct.pack("<H", 2) + b"\x00\x00"  # 20 ms per frame
        out += b"\x2c" + struct.pack("<HHHH", i % canvas, 0, 1, 1) + b"\x00"
        out += b"\x02\x02\x44\x01\x00"  # LZW min code 2, one pixel
    out += b"\x3b"
    return bytes(out)


def _vp8l_1x1() -> bytes:
    data = encode(Image.new("RGBA", (1, 1), (200, 10, 10, 255)), "WEBP", lossless=True)
    i = data.index(b"VP8L")
    size = struct.unpack("<I", data[i + 4:i + 8])[0]
    return data[i + 8:i + 8 + size]


def webp_anim_bomb(canvas: int = 6000, frames: int = 300, duration_ms: int = 40) -> bytes:
    """An animated WebP with a canvas² canvas and `frames` one-pixel frames: ~15 KB."""
    vp8l = _vp8l_1x1()
    body = _riff_chunk(b"VP8X", bytes([0x12, 0, 0, 0]) + _u24(canvas - 1) + _u24(canvas - 1))
    body += _riff_chunk(b"ANIM", b"\xff\xff\xff\xff" + struct.pack("<H", 0))
    for i in range(frames):
        head = _u24(0) + _u24(0) + _u24(0) + _u24(0) + _u24(duration_ms) + bytes([0x02])
        body += _riff_chunk(b"ANMF", head + _riff_chunk(b"VP8L", vp8l))
        del i
    return b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WEBP" + body


def png_declared_huge(w: int = 100_000, h: int = 100_000) -> bytes:
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(b"\0" * 64)) \
        + _png_chunk(b"IEND", b"")


def apng_bomb(size: int = 5000, frames: int = 3000) -> bytes:
    """An APNG declaring `frames` frames of size² (one tiny IDAT each)."""
    ihdr = struct.pack(">IIBBBBB", size, size, 8, 0, 0, 0, 0)
    out = b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr)
    out += _png_chunk(b"acTL", struct.pack(">II", frames, 0))
    row = zlib.compress(b"\0" * (size + 1) * 4)
    seq = 0
    for i in range(frames):
        out += _png_chunk(b"fcTL", struct.pack(">IIIIIHHBB", seq, 1, 1, 0, 0, 1, 25, 0, 0))
        seq += 1
        if i == 0:
            out += _png_chunk(b"IDAT", row)
        else:
            out += _png_chunk(b"fdAT", struct.pack(">I", seq) + zlib.compress(b"\0\0"))
            seq += 1
    return out + _png_chunk(b"IEND", b"")


def grey16_png(w: int = 320, h: int = 180) -> bytes:
    ramp = (np.linspace(0, 65535, w)[None, :].repeat(h, 0)).astype(np.uint16)
    return encode(Image.fromarray(ramp), "PNG")


def exif_rotated(fmt: str = "PNG", w: int = 320, h: int = 180) -> bytes:
    """A w×h picture whose EXIF says 'rotate 90°' (orientation 6): shown h×w."""
    img = picture(w, h)
    exif = Image.Exif()
    exif[0x0112] = 6
    return encode(img, fmt, exif=exif.tobytes())


# -- clip bombs ------------------------------------------------------------------------------


def clip(w: int = 160, h: int = 96, frames: int = 30, fps: int = 10, fmt: str = "mp4",
         codec: str = "libx264") -> bytes:
    buf = io.BytesIO()
    with av.open(buf, mode="w", format=fmt) as out:
        s = out.add_stream(codec, rate=fps)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        for i in range(frames):
            arr = np.full((h, w, 3), (i * 8) % 255, np.uint8)
            arr[:, : (i * 5) % w] = 255
            fr = av.VideoFrame.from_ndarray(arr, format="rgb24")
            fr.pts, fr.time_base = i, Fraction(1, fps)
            for p in s.encode(fr):
                out.mux(p)
        for p in s.encode(None):
            out.mux(p)
    return buf.getvalue()


def zero_duration_mp4(w: int = 320, h: int = 180, frames: int = 400, fps: int = 25) -> bytes:
    """An MP4 whose mvhd/mdhd/tkhd durations are zeroed: the header says 0 s."""
    data = bytearray(clip(w, h, frames, fps))
    for box, off32, off64 in ((b"mvhd", 16, 24), (b"mdhd", 16, 24), (b"tkhd", 20, 28)):
        start = 0
        while (i := data.find(box, start)) >= 0:
            version = data[i + 4]
            off = i + 4 + (off64 if version == 1 else off32)
            width = 8 if version == 1 else 4
            data[off:off + width] = b"\0" * width
            start = i + 4
    return bytes(data)


def audio_only_mp4() -> bytes:
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4") as out:
        s = out.add_stream("aac", rate=8000)
        s.layout = "mono"
        for i in range(8):
            fr = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            fr.sample_rate, fr.pts = 8000, i * 1024
            for p in s.encode(fr):
                out.mux(p)
        for p in s.encode(None):
            out.mux(p)
    return buf.getvalue()


def webm_size_change(small: tuple[int, int] = (320, 180), big: tuple[int, int] = (3000, 3000),
                     frames: int = 6) -> bytes:
    """A VP8 WebM whose header says `small` but whose later keyframes are `big`."""
    def packets(w: int, h: int) -> list[av.Packet]:
        enc = av.CodecContext.create("libvpx", "w")
        enc.width, enc.height, enc.pix_fmt = w, h, "yuv420p"
        enc.time_base = Fraction(1, 10)
        enc.options = {"deadline": "realtime", "cpu-used": "8"}
        out: list[av.Packet] = []
        for i in range(frames):
            fr = av.VideoFrame.from_ndarray(np.full((h, w, 3), 40 * i % 255, np.uint8), format="rgb24")
            fr.pts = i
            out += enc.encode(fr.reformat(format="yuv420p"))
        out += enc.encode(None)
        return out
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="webm") as out:
        s = out.add_stream("libvpx", rate=10)
        s.width, s.height, s.pix_fmt = small[0], small[1], "yuv420p"
        pts = 0
        for p in packets(*small) + packets(*big):
            p.stream, p.pts, p.dts, p.time_base = s, pts, pts, Fraction(1, 10)
            pts += 1
            out.mux(p)
    return buf.getvalue()


# -- disguises and damage --------------------------------------------------------------------


def zip_bytes() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("a.txt", "hello" * 100)
    return buf.getvalue()


def polyglot_gif_zip() -> bytes:
    """A GIF with a ZIP appended (opens as both)."""
    return encode(picture(), "GIF") + zip_bytes()


def cmyk_jpeg() -> bytes:
    return encode(picture().convert("CMYK"), "JPEG")


def palette_alpha_png() -> bytes:
    img = picture().convert("P", palette=Image.ADAPTIVE, colors=16)
    img.info["transparency"] = 0
    return encode(img, "PNG", transparency=0)


def long_gif(frames: int = 1500) -> bytes:
    """A very long (but small) GIF: 1,500 frames of 64×64 at 20 ms."""
    base = [picture(64, 64, seed=i) for i in range(6)]
    seq = [base[i % 6] for i in range(frames)]
    return encode(seq[0], "GIF", save_all=True, append_images=seq[1:], duration=20, loop=0)


HOSTILE_NAMES = [
    "../../etc/passwd.png",
    "a\x00b\x07c\x1b[31m.png",
    "\u202egnp.exe",  # RTL override
    "x" * 500 + ".png",
    "..\\..\\windows\\win.ini.jpg",
    "\r\nSet-Cookie: a=b.png",
]


def corpus() -> Iterator[tuple[str, bytes, str]]:
    """(name, bytes, expect): expect 'answer' (a usable picture) or 'refuse' (a sentence)."""
    pic = picture()
    jpeg, png, gif = encode(pic, "JPEG"), encode(pic, "PNG"), encode(pic, "GIF")
    webp = encode(pic, "WEBP")
    mp4 = clip()
    yield "zero-bytes", b"", "refuse"
    yield "truncated-jpeg", jpeg[: len(jpeg) // 3], "refuse"
    yield "truncated-png", png[: len(png) // 2], "refuse"
    yield "truncated-gif", gif[:40], "refuse"
    yield "truncated-webp", webp[:30], "refuse"
    yield "truncated-mp4", mp4[: len(mp4) // 4], "refuse"
    yield "corrupt-jpeg", jpeg[:200] + bytes(range(256)) * 8, "refuse"
    yield "corrupt-png", png[:40] + b"\xff" * 300, "refuse"
    yield "png-declares-100000x100000", png_declared_huge(), "refuse"
    yield "gif-canvas-4000-4999-frames", gif_canvas_bomb(), "refuse"
    yield "webp-anim-6000", webp_anim_bomb(), "refuse"
    yield "apng-5000-3000-frames", apng_bomb(), "refuse"
    yield "mp4-zero-duration", zero_duration_mp4(), "answer"
    yield "mp4-audio-only", audio_only_mp4(), "refuse"
    yield "html-as-png", b"<!doctype html><html><script>alert(1)</script></html>", "refuse"
    yield "zip-as-png", zip_bytes(), "refuse"
    yield "svg-as-png", b'<svg xmlns="http://www.w3.org/2000/svg" width="9e9" height="9e9"/>', "refuse"
    yield "polyglot-gif-zip", polyglot_gif_zip(), "answer"
    yield "cmyk-jpeg", cmyk_jpeg(), "answer"
    yield "grey16-png", grey16_png(), "answer"
    yield "palette-alpha-png", palette_alpha_png(), "answer"
    yield "one-pixel-png", encode(Image.new("RGB", (1, 1)), "PNG"), "refuse"
    yield "exif-rotated-png", exif_rotated("PNG"), "answer"
    yield "exif-rotated-jpeg", exif_rotated("JPEG"), "answer"
    yield "long-gif-1500-frames", long_gif(), "answer"
