"""Small shared helpers for the synthetic library: seeding, colours, fonts, curves."""

from __future__ import annotations

import colorsys
import zlib
from functools import lru_cache

import numpy as np
from PIL import Image, ImageFont, features

RGB = tuple[int, int, int]

# Anime is drawn "on twos": characters change pose at most 12 times a second,
# whatever the encoding frame rate.
DRAWING_RATE = 12


def rng_for(*keys: int | str) -> np.random.Generator:
    """A numpy Generator seeded from a tuple of ints/strings (stable across processes).

    Python's `hash()` is salted per process, so strings go through crc32 instead.
    """
    ints = [k if isinstance(k, int) else zlib.crc32(k.encode("utf-8")) for k in keys]
    return np.random.default_rng(np.random.SeedSequence([abs(i) for i in ints]))


def sub_seed(rng: np.random.Generator) -> int:
    """Draw a 31-bit seed from `rng` for a child generator."""
    return int(rng.integers(0, 2**31 - 1))


def clamp(v: float, lo: float, hi: float) -> float:
    return lo if v < lo else min(v, hi)


def to_rgb(c: tuple[float, ...] | np.ndarray) -> RGB:
    """Round and clip a colour to 0..255 ints."""
    return (
        int(clamp(round(c[0]), 0, 255)),
        int(clamp(round(c[1]), 0, 255)),
        int(clamp(round(c[2]), 0, 255)),
    )


def mix(a: RGB, b: RGB, t: float) -> RGB:
    """Linear blend from `a` (t=0) to `b` (t=1)."""
    return to_rgb(tuple(a[i] + (b[i] - a[i]) * t for i in range(3)))


def shade(c: RGB, f: float) -> RGB:
    """Scale brightness (f < 1 darker, f > 1 lighter towards white)."""
    if f <= 1.0:
        return to_rgb(tuple(v * f for v in c))
    return mix(c, (255, 255, 255), min(1.0, f - 1.0))


def jitter(c: RGB, rng: np.random.Generator, amount: float = 12.0) -> RGB:
    """Add uniform noise of +-amount to each channel."""
    d = rng.uniform(-amount, amount, 3)
    return to_rgb((c[0] + d[0], c[1] + d[1], c[2] + d[2]))


def hue_shift(c: RGB, dh: float, ds: float = 0.0, dv: float = 0.0) -> RGB:
    """Shift hue (in turns), saturation and value of a colour."""
    h, s, v = colorsys.rgb_to_hsv(c[0] / 255, c[1] / 255, c[2] / 255)
    r, g, b = colorsys.hsv_to_rgb((h + dh) % 1.0, clamp(s + ds, 0, 1), clamp(v + dv, 0, 1))
    return to_rgb((r * 255, g * 255, b * 255))


def outline_of(c: RGB) -> RGB:
    """The line colour anime cel art uses for a fill: a dark, slightly saturated version."""
    return hue_shift(shade(c, 0.42), 0.0, 0.15)


def gradient(w: int, h: int, top: RGB, bottom: RGB) -> Image.Image:
    """A vertical linear gradient image (fast, numpy)."""
    t = np.linspace(0.0, 1.0, max(h, 1), dtype=np.float32)[:, None]
    col = (
        np.asarray(top, np.float32)[None, :] * (1 - t) + np.asarray(bottom, np.float32)[None, :] * t
    )
    arr = np.broadcast_to(col[:, None, :], (h, w, 3)).round().astype(np.uint8)
    return Image.fromarray(np.ascontiguousarray(arr), "RGB")


@lru_cache(maxsize=64)
def font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """Pillow's bundled font at `size` px (the same on every machine; no system fonts)."""
    size = max(6, int(size))
    if features.check("freetype2"):
        return ImageFont.load_default(size=size)
    return ImageFont.load_default()  # pragma: no cover - bitmap fallback without FreeType


def catmull_rom(
    points: list[tuple[float, float]], samples: int = 6, closed: bool = True
) -> list[tuple[float, float]]:
    """Smooth a polyline through `points` (Catmull-Rom), for hair and face outlines."""
    n = len(points)
    if n < 3:
        return list(points)
    out: list[tuple[float, float]] = []
    last = n if closed else n - 1
    for i in range(last):
        p0 = points[(i - 1) % n] if closed or i > 0 else points[0]
        p1 = points[i]
        p2 = points[(i + 1) % n]
        p3 = points[(i + 2) % n] if closed or i + 2 < n else points[-1]
        for s in range(samples):
            t = s / samples
            t2, t3 = t * t, t * t * t
            x = 0.5 * (
                (2 * p1[0])
                + (-p0[0] + p2[0]) * t
                + (2 * p0[0] - 5 * p1[0] + 4 * p2[0] - p3[0]) * t2
                + (-p0[0] + 3 * p1[0] - 3 * p2[0] + p3[0]) * t3
            )
            y = 0.5 * (
                (2 * p1[1])
                + (-p0[1] + p2[1]) * t
                + (2 * p0[1] - 5 * p1[1] + 4 * p2[1] - p3[1]) * t2
                + (-p0[1] + 3 * p1[1] - 3 * p2[1] + p3[1]) * t3
            )
            out.append((x, y))
    if not closed:
        out.append(points[-1])
    return out


def smoothstep(t: float) -> float:
    t = clamp(t, 0.0, 1.0)
    return t * t * (3 - 2 * t)
