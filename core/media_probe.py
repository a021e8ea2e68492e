"""Read an animation's frame count and frame times from its container without decoding a
single frame (GIF blocks, WebP ANMF chunks, APNG fcTL chunks).

A decoder that seeks to every frame to read its delay composites every frame at the full
canvas size; these readers walk the bytes instead, so a bomb costs nothing to measure.
Each returns None when the bytes do not parse; the caller then falls back to 100 ms frames.
"""

from __future__ import annotations

import struct

DEFAULT_MS = 100.0


def _gif_durations(data: bytes) -> list[float] | None:
    if len(data) < 13:
        return None
    pos = 13
    flags = data[10]
    if flags & 0x80:
        pos += 3 * (2 ** ((flags & 7) + 1))
    out: list[float] = []
    delay: float | None = None
    n = len(data)
    while pos < n:
        b = data[pos]
        if b == 0x3B:  # trailer
            break
        if b == 0x21:  # extension
            if pos + 2 > n:
                return out or None
            label = data[pos + 1]
            pos += 2
            if label == 0xF9 and pos + 5 <= n and data[pos] >= 4:
                delay = struct.unpack("<H", data[pos + 2:pos + 4])[0] * 10.0
            while pos < n and data[pos]:
                pos += data[pos] + 1
            pos += 1
        elif b == 0x2C:  # image descriptor
            if pos + 10 > n:
                break
            pflags = data[pos + 9]
            pos += 10
            if pflags & 0x80:
                pos += 3 * (2 ** ((pflags & 7) + 1))
            pos += 1  # LZW minimum code size
            while pos < n and data[pos]:
                pos += data[pos] + 1
            pos += 1
            out.append(delay if delay else DEFAULT_MS)
            delay = None
        else:
            break
    return out or None


def _webp_durations(data: bytes) -> list[float] | None:
    pos, n, out = 12, len(data), []
    while pos + 8 <= n:
        kind = data[pos:pos + 4]
        size = struct.unpack("<I", data[pos + 4:pos + 8])[0]
        if kind == b"ANMF" and pos + 8 + 16 <= n:
            ms = int.from_bytes(data[pos + 8 + 12:pos + 8 + 15], "little")
            out.append(float(ms) if ms else DEFAULT_MS)
        pos += 8 + size + (size & 1)
    return out or None


def _png_durations(data: bytes) -> list[float] | None:
    pos, n, out = 8, len(data), []
    while pos + 8 <= n:
        size = struct.unpack(">I", data[pos:pos + 4])[0]
        kind = data[pos + 4:pos + 8]
        if kind == b"fcTL" and pos + 8 + 26 <= n:
            num, den = struct.unpack(">HH", data[pos + 8 + 20:pos + 8 + 24])
            ms = 1000.0 * num / (den or 100)
            out.append(ms if ms else DEFAULT_MS)
        if kind == b"IEND":
            break
        pos += 12 + size
    return out or None


def frame_durations(data: bytes, fmt: str, n_frames: int) -> list[float]:
    """Each frame's display time in seconds (at least 20 ms, as browsers show them)."""
    reader = {"gif": _gif_durations, "webp": _webp_durations, "png": _png_durations}.get(fmt)
    got = reader(data) if reader else None
    ms = list(got or [])[:n_frames]
    ms += [DEFAULT_MS] * (n_frames - len(ms))
    return [max(m, 20.0) / 1000.0 for m in ms]
