"""Backgrounds for the synthetic library: location panoramas, props, foreground occluders,
special backgrounds (speed lines, title cards) and text overlays (titles, subtitles, credits).

A location is painted once as a panorama larger than the frame; shots show different
windows of it (pans and zooms crop it), so backgrounds recur across shots while every
shot still gets its own props, framing and characters.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw

from data.synth.common import (
    RGB,
    font,
    gradient,
    hue_shift,
    jitter,
    mix,
    outline_of,
    rng_for,
    shade,
    to_rgb,
)

LOCATION_KINDS = (
    "street",
    "classroom",
    "park",
    "bedroom",
    "rooftop",
    "cafe",
    "corridor",
    "shrine",
    "night_city",
)
TIMES_OF_DAY = ("day", "sunset", "night")

Palette = dict[str, RGB]

BASE_PALETTES: dict[str, Palette] = {
    "pastel": {
        "sky_top": (120, 178, 238),
        "sky_bottom": (204, 230, 250),
        "cloud": (255, 255, 255),
        "wall": (236, 226, 206),
        "wall2": (198, 214, 226),
        "floor": (192, 160, 122),
        "wood": (172, 122, 82),
        "building": (226, 206, 198),
        "building2": (198, 210, 232),
        "foliage": (112, 184, 112),
        "foliage_dark": (70, 140, 92),
        "ground": (152, 202, 122),
        "accent": (240, 122, 142),
        "accent2": (112, 150, 232),
    },
    "fantasy": {
        "sky_top": (72, 92, 152),
        "sky_bottom": (192, 172, 192),
        "cloud": (236, 226, 236),
        "wall": (152, 132, 120),
        "wall2": (122, 110, 100),
        "floor": (112, 92, 72),
        "wood": (122, 72, 52),
        "building": (142, 122, 112),
        "building2": (122, 112, 124),
        "foliage": (62, 112, 72),
        "foliage_dark": (32, 72, 52),
        "ground": (92, 122, 72),
        "accent": (202, 52, 62),
        "accent2": (232, 182, 82),
    },
    "scifi": {
        "sky_top": (22, 32, 72),
        "sky_bottom": (82, 112, 172),
        "cloud": (150, 170, 210),
        "wall": (172, 186, 202),
        "wall2": (92, 102, 122),
        "floor": (72, 82, 96),
        "wood": (102, 112, 132),
        "building": (62, 72, 102),
        "building2": (82, 92, 122),
        "foliage": (62, 162, 152),
        "foliage_dark": (32, 92, 102),
        "ground": (62, 72, 82),
        "accent": (0, 222, 242),
        "accent2": (242, 82, 202),
    },
    "warm": {
        "sky_top": (242, 172, 112),
        "sky_bottom": (255, 222, 172),
        "cloud": (255, 244, 230),
        "wall": (242, 216, 182),
        "wall2": (212, 172, 132),
        "floor": (162, 112, 72),
        "wood": (142, 92, 52),
        "building": (232, 192, 152),
        "building2": (212, 162, 132),
        "foliage": (142, 172, 82),
        "foliage_dark": (92, 122, 52),
        "ground": (172, 172, 92),
        "accent": (222, 92, 62),
        "accent2": (92, 142, 122),
    },
}


def series_palette(style: str, rng: np.random.Generator, spread: float) -> Palette:
    """A series palette: the style's base palette with a random hue/value shift.

    `spread` scales the shift; series that share a style get a small spread on purpose
    (they should look alike).
    """
    base = BASE_PALETTES[style]
    dh = float(rng.uniform(-0.06, 0.06)) * spread
    dv = float(rng.uniform(-0.06, 0.06)) * spread
    return {k: jitter(hue_shift(v, dh, 0.0, dv), rng, 10 * spread) for k, v in base.items()}


@dataclass(frozen=True)
class LocationSpec:
    """A recurring place of a series, painted identically whenever it is used."""

    kind: str
    seed: int
    tod: str
    palette: dict[str, RGB] = field(hash=False, compare=False)

    @property
    def name(self) -> str:
        return f"{self.kind}-{self.seed % 1000:03d}-{self.tod}"


@dataclass
class Panorama:
    """A painted location: the image and where its floor/ground starts (pixels)."""

    image: Image.Image
    floor_y: int
    wall_top: int


# ---------------------------------------------------------------------------------------
# primitives


def _lw(h: int, f: float = 1.0) -> int:
    return max(1, round(h / 220 * f))


def _sky(img: Image.Image, pal: Palette, tod: str, rng: np.random.Generator, bottom: int) -> None:
    w = img.size[0]
    if tod == "day":
        top, bot = pal["sky_top"], pal["sky_bottom"]
    elif tod == "sunset":
        top, bot = (
            mix((92, 84, 162), pal["sky_top"], 0.2),
            mix((252, 168, 118), pal["sky_bottom"], 0.2),
        )
    else:
        top, bot = mix((10, 14, 40), pal["sky_top"], 0.1), mix((44, 52, 96), pal["sky_bottom"], 0.1)
    img.paste(gradient(w, max(bottom, 1), top, bot), (0, 0))
    d = ImageDraw.Draw(img)
    h = img.size[1]
    if tod == "night":
        for _ in range(int(w * bottom / 900)):
            x, y = rng.uniform(0, w), rng.uniform(0, bottom)
            r = rng.uniform(0.4, 1.4) * h / 300
            d.ellipse((x - r, y - r, x + r, y + r), fill=(255, 255, 230))
        mx, my, mr = rng.uniform(0.1, 0.9) * w, rng.uniform(0.1, 0.35) * bottom, h * 0.05
        d.ellipse((mx - mr, my - mr, mx + mr, my + mr), fill=(250, 246, 220))
        d.ellipse((mx - mr * 0.5, my - mr * 1.1, mx + mr * 1.4, my + mr * 0.8), fill=top)
        return
    cloud = pal["cloud"] if tod == "day" else mix(pal["cloud"], (255, 180, 160), 0.5)
    for _ in range(int(rng.integers(3, 8))):
        _cloud(
            d,
            rng.uniform(0, w),
            rng.uniform(0.08, 0.75) * bottom,
            rng.uniform(0.04, 0.11) * h,
            cloud,
            rng,
        )
    if tod == "sunset":
        sx, sy, sr = rng.uniform(0.1, 0.9) * w, bottom * 0.8, h * 0.08
        d.ellipse((sx - sr, sy - sr, sx + sr, sy + sr), fill=(255, 226, 170))


def _cloud(
    d: ImageDraw.ImageDraw, x: float, y: float, s: float, col: RGB, rng: np.random.Generator
) -> None:
    shadow = shade(col, 0.9)
    puffs = [
        (rng.uniform(-2.2, 2.2) * s, rng.uniform(-0.8, 0.3) * s, rng.uniform(0.6, 1.3) * s)
        for _ in range(int(rng.integers(4, 8)))
    ]
    for dx, dy, r in puffs:
        d.ellipse(
            (x + dx - r, y + dy - r * 0.8 + s * 0.15, x + dx + r, y + dy + r * 0.8 + s * 0.15),
            fill=shadow,
        )
    for dx, dy, r in puffs:
        d.ellipse((x + dx - r, y + dy - r * 0.8, x + dx + r, y + dy + r * 0.7), fill=col)


def _tree(
    d: ImageDraw.ImageDraw,
    x: float,
    base: float,
    h: float,
    pal: Palette,
    rng: np.random.Generator,
    lw: int,
) -> None:
    tw = h * 0.07
    trunk = shade(pal["wood"], 0.8)
    d.polygon(
        [
            (x - tw, base),
            (x + tw, base),
            (x + tw * 0.6, base - h * 0.55),
            (x - tw * 0.6, base - h * 0.55),
        ],
        fill=trunk,
        outline=outline_of(trunk),
        width=lw,
    )
    cy = base - h * 0.68
    dark, light = pal["foliage_dark"], pal["foliage"]
    blobs = [
        (rng.uniform(-0.3, 0.3) * h, rng.uniform(-0.3, 0.15) * h, rng.uniform(0.16, 0.28) * h)
        for _ in range(int(rng.integers(5, 9)))
    ]
    for dx, dy, r in blobs:
        d.ellipse(
            (x + dx - r, cy + dy - r, x + dx + r, cy + dy + r),
            fill=dark,
            outline=outline_of(dark),
            width=lw,
        )
    for dx, dy, r in blobs[: len(blobs) // 2 + 1]:
        r2 = r * 0.7
        d.ellipse(
            (
                x + dx - r2 - r * 0.15,
                cy + dy - r2 - r * 0.2,
                x + dx + r2 - r * 0.15,
                cy + dy + r2 - r * 0.2,
            ),
            fill=light,
        )


def _windows(
    d: ImageDraw.ImageDraw,
    x0: float,
    y0: float,
    x1: float,
    y1: float,
    rows: int,
    cols: int,
    frame: RGB,
    glass: RGB,
    lit: RGB,
    p_lit: float,
    rng: np.random.Generator,
) -> None:
    cw, rh = (x1 - x0) / cols, (y1 - y0) / rows
    for r in range(rows):
        for c in range(cols):
            wx0, wy0 = x0 + c * cw + cw * 0.18, y0 + r * rh + rh * 0.2
            wx1, wy1 = x0 + (c + 1) * cw - cw * 0.18, y0 + (r + 1) * rh - rh * 0.15
            if wx1 - wx0 < 1 or wy1 - wy0 < 1:
                continue
            col = lit if rng.random() < p_lit else glass
            d.rectangle((wx0, wy0, wx1, wy1), fill=col, outline=frame)
            if wx1 - wx0 > 5:
                d.line((wx0, wy0 + (wy1 - wy0) * 0.3, wx1, wy0 + (wy1 - wy0) * 0.3), fill=frame)


def _building(
    d: ImageDraw.ImageDraw,
    x0: float,
    x1: float,
    top: float,
    base: float,
    col: RGB,
    rng: np.random.Generator,
    night: bool,
    lw: int,
) -> None:
    d.rectangle((x0, top, x1, base), fill=col, outline=outline_of(col), width=lw)
    d.rectangle(
        (x0 - (x1 - x0) * 0.03, top - lw * 3, x1 + (x1 - x0) * 0.03, top), fill=shade(col, 0.8)
    )
    w, h = x1 - x0, base - top
    rows, cols = max(1, int(h / (w / 3.2 + 1e-6))), int(rng.integers(2, 6))
    rows = max(1, min(rows, int(h / 12) or 1))
    glass = (180, 210, 235) if not night else (40, 50, 80)
    lit = (255, 232, 150) if night else (210, 232, 250)
    _windows(
        d,
        x0 + w * 0.06,
        top + h * 0.06,
        x1 - w * 0.06,
        base - h * 0.12,
        rows,
        cols,
        shade(col, 0.65),
        glass,
        lit,
        0.55 if night else 0.15,
        rng,
    )
    if rng.random() < 0.5:  # a shop sign or a water tank on the roof
        sx = x0 + w * rng.uniform(0.1, 0.5)
        sc = to_rgb(rng.uniform(60, 250, 3))
        d.rectangle(
            (sx, base - h * 0.11, sx + w * 0.4, base - h * 0.03), fill=sc, outline=shade(sc, 0.5)
        )
    if rng.random() < 0.4:
        tx = x0 + w * rng.uniform(0.2, 0.7)
        d.rectangle(
            (tx, top - h * 0.08, tx + w * 0.18, top), fill=(200, 200, 205), outline=(90, 90, 100)
        )


# ---------------------------------------------------------------------------------------
# locations (each paints the whole panorama; returns floor y and wall top as fractions)


def _street(
    img: Image.Image, pal: Palette, tod: str, r: np.random.Generator
) -> tuple[float, float]:
    w, h = img.size
    lw = _lw(h)
    horizon = int(h * r.uniform(0.55, 0.66))
    _sky(img, pal, tod, r, horizon)
    d = ImageDraw.Draw(img)
    night = tod == "night"
    far = mix(pal["building2"], pal["sky_bottom"], 0.5)
    x = 0.0
    while x < w:  # distant skyline
        bw = r.uniform(0.04, 0.1) * w
        d.rectangle((x, horizon - r.uniform(0.15, 0.35) * h, x + bw, horizon), fill=far)
        x += bw
    x = -r.uniform(0, 0.05) * w
    while x < w:
        bw = r.uniform(0.08, 0.2) * w
        top = horizon - r.uniform(0.2, 0.5) * h
        if r.random() < 0.2:
            _tree(d, x + bw / 2, horizon, r.uniform(0.22, 0.35) * h, pal, r, lw)
        else:
            col = pal["building"] if r.random() < 0.5 else pal["building2"]
            _building(d, x, x + bw, top, horizon, jitter(col, r, 18), r, night, lw)
        x += bw + r.uniform(0, 0.02) * w
    side = horizon + h * 0.07
    d.rectangle(
        (0, horizon, w, side), fill=shade(pal["wall2"], 0.95), outline=outline_of(pal["wall2"])
    )
    for xx in np.arange(0, w, h * 0.08):
        d.line((xx, horizon, xx - h * 0.02, side), fill=shade(pal["wall2"], 0.75))
    road = (112, 112, 122) if not night else (52, 52, 66)
    d.rectangle((0, side, w, h), fill=road)
    d.rectangle((0, side, w, side + lw * 3), fill=(214, 214, 214))
    ly = side + (h - side) * 0.55
    for xx in np.arange(r.uniform(0, 40), w, h * 0.25):
        d.rectangle((xx, ly, xx + h * 0.12, ly + lw * 2), fill=(240, 240, 240))
    poles = np.arange(r.uniform(0.05, 0.2) * w, w, r.uniform(0.25, 0.4) * w)
    tops = []
    for px in poles:  # utility poles and sagging wires: very anime
        pt = horizon - r.uniform(0.45, 0.55) * h
        d.rectangle((px - lw * 2, pt, px + lw * 2, side), fill=(90, 86, 90))
        d.rectangle(
            (px - h * 0.05, pt + h * 0.03, px + h * 0.05, pt + h * 0.03 + lw * 2), fill=(80, 76, 80)
        )
        tops.append((px, pt + h * 0.035))
    for (ax, ay), (bx, by) in itertools.pairwise(tops):
        for k in (-1, 0, 1):
            pts = [
                (
                    ax + (bx - ax) * t + k * h * 0.04,
                    ay + (by - ay) * t + h * 0.05 * math.sin(math.pi * t),
                )
                for t in np.linspace(0, 1, 12)
            ]
            d.line(pts, fill=(60, 60, 70), width=1)
    return side / h, horizon / h * 0.4


def _classroom(
    img: Image.Image, pal: Palette, tod: str, r: np.random.Generator
) -> tuple[float, float]:
    w, h = img.size
    lw = _lw(h)
    d = ImageDraw.Draw(img)
    floor = int(h * r.uniform(0.68, 0.76))
    wall = pal["wall"]
    d.rectangle((0, 0, w, floor), fill=wall)
    d.rectangle((0, 0, w, h * 0.06), fill=shade(wall, 0.85))
    d.rectangle((0, floor - h * 0.05, w, floor), fill=shade(pal["wood"], 1.1))
    # windows with sky behind
    wx = r.uniform(0.0, 0.1) * w
    nwin = int(r.integers(2, 4))
    sky = Image.new("RGB", (w, floor))
    _sky(sky, pal, tod, r, floor)
    for i in range(nwin):
        x0, x1 = wx + i * w * 0.19, wx + i * w * 0.19 + w * 0.16
        y0, y1 = h * 0.12, floor - h * 0.18
        img.paste(sky.crop((int(x0), int(y0), int(x1), int(y1))), (int(x0), int(y0)))
        d.rectangle((x0, y0, x1, y1), outline=(235, 235, 240), width=lw * 3)
        d.line(((x0 + x1) / 2, y0, (x0 + x1) / 2, y1), fill=(235, 235, 240), width=lw * 2)
        d.line((x0, (y0 + y1) / 2, x1, (y0 + y1) / 2), fill=(235, 235, 240), width=lw * 2)
        cc = jitter(mix(pal["wall2"], (255, 255, 255), 0.4), r, 8)  # curtains
        d.rectangle(
            (x0 - w * 0.015, y0 - h * 0.02, x0 + w * 0.02, y1 + h * 0.03),
            fill=cc,
            outline=outline_of(cc),
        )
    bx0 = wx + nwin * w * 0.19 + r.uniform(0.02, 0.08) * w
    bx1 = min(w * 0.97, bx0 + r.uniform(0.35, 0.5) * w)
    by0, by1 = h * 0.18, floor - h * 0.22
    board = (46, 92, 66) if r.random() < 0.7 else (40, 60, 60)
    d.rectangle((bx0, by0, bx1, by1), fill=board, outline=pal["wood"], width=lw * 4)
    for _ in range(int(r.integers(4, 10))):  # chalk scribbles
        sx, sy = r.uniform(bx0 + 8, bx1 - 40), r.uniform(by0 + 6, by1 - 10)
        pts = [(sx + k * h * 0.02, sy + r.uniform(-2, 2)) for k in range(int(r.integers(3, 9)))]
        d.line(pts, fill=(230, 235, 225), width=lw)
    cx, cy, cr = r.uniform(bx0, bx1), h * 0.09, h * 0.04  # clock
    d.ellipse(
        (cx - cr, cy - cr, cx + cr, cy + cr), fill=(250, 250, 250), outline=(60, 60, 60), width=lw
    )
    d.line((cx, cy, cx, cy - cr * 0.7), fill=(30, 30, 30), width=lw)
    d.line((cx, cy, cx + cr * 0.5, cy + cr * 0.2), fill=(30, 30, 30), width=lw)
    # floor boards and rows of desks
    d.rectangle((0, floor, w, h), fill=pal["floor"])
    for yy in np.geomspace(1, h - floor, 7):
        d.line((0, floor + yy, w, floor + yy), fill=shade(pal["floor"], 0.85), width=1)
    for row in range(2):
        y = floor + (h - floor) * (0.25 + 0.5 * row)
        s = h * (0.08 + 0.05 * row)
        for x in np.arange(r.uniform(0, s * 2), w, s * r.uniform(3.2, 4.2)):
            desk = pal["wood"]
            d.rectangle((x - s * 0.05, y, x + s * 0.05, y + s * 1.0), fill=(120, 120, 125))
            d.rectangle((x + s * 1.55, y, x + s * 1.65, y + s * 1.0), fill=(120, 120, 125))
            d.polygon(
                [
                    (x - s * 0.2, y),
                    (x + s * 1.8, y),
                    (x + s * 1.7, y - s * 0.35),
                    (x - s * 0.1, y - s * 0.35),
                ],
                fill=desk,
                outline=outline_of(desk),
                width=lw,
            )
    return floor / h, 0.1


def _park(img: Image.Image, pal: Palette, tod: str, r: np.random.Generator) -> tuple[float, float]:
    w, h = img.size
    lw = _lw(h)
    horizon = int(h * r.uniform(0.5, 0.62))
    _sky(img, pal, tod, r, horizon + 2)
    d = ImageDraw.Draw(img)
    hill = mix(pal["foliage_dark"], pal["sky_bottom"], 0.45)
    ph = [r.uniform(0, 6.28) for _ in range(3)]
    pts = [
        (
            x,
            horizon
            - h * (0.08 + 0.05 * math.sin(x / w * 6 + ph[0]) + 0.03 * math.sin(x / w * 17 + ph[1])),
        )
        for x in np.linspace(0, w, 40)
    ]
    d.polygon(pts + [(w, horizon), (0, horizon)], fill=hill)
    ground = pal["ground"] if tod != "night" else shade(pal["ground"], 0.5)
    d.rectangle((0, horizon, w, h), fill=ground)
    for _ in range(int(w * (h - horizon) / 600)):  # grass tufts
        x, y = r.uniform(0, w), r.uniform(horizon, h)
        s = (y - horizon) / h * 0.05 * h + 1
        d.line((x, y, x - s * 0.3, y - s), fill=shade(ground, 0.8))
        d.line((x, y, x + s * 0.3, y - s), fill=shade(ground, 0.8))
    # a path curving to the horizon
    px = r.uniform(0.3, 0.7) * w
    path = mix(pal["floor"], (240, 230, 210), 0.4)
    d.polygon(
        [
            (px - w * 0.01, horizon),
            (px + w * 0.01, horizon),
            (px + w * 0.25, h),
            (px - w * 0.15, h),
        ],
        fill=path,
        outline=shade(path, 0.8),
    )
    for x in sorted(r.uniform(0, w, int(r.integers(4, 9)))):
        _tree(d, x, horizon + r.uniform(0.0, 0.08) * h, r.uniform(0.3, 0.55) * h, pal, r, lw)
    for _ in range(int(r.integers(10, 30))):  # flowers
        x, y, s = r.uniform(0, w), r.uniform(horizon + 0.05 * h, h), h * 0.008
        d.ellipse((x - s, y - s, x + s, y + s), fill=to_rgb(r.uniform(150, 255, 3)))
    if r.random() < 0.6:  # a pond
        cx, cy = r.uniform(0.2, 0.8) * w, horizon + (h - horizon) * 0.35
        d.ellipse(
            (cx - w * 0.12, cy - h * 0.04, cx + w * 0.12, cy + h * 0.04),
            fill=mix(pal["sky_top"], (80, 140, 200), 0.5),
            outline=shade(ground, 0.7),
            width=lw,
        )
    return (horizon + (h - horizon) * 0.3) / h, 0.3


def _bedroom(
    img: Image.Image, pal: Palette, tod: str, r: np.random.Generator
) -> tuple[float, float]:
    w, h = img.size
    lw = _lw(h)
    d = ImageDraw.Draw(img)
    floor = int(h * r.uniform(0.68, 0.78))
    wall = pal["wall2"] if r.random() < 0.5 else pal["wall"]
    d.rectangle((0, 0, w, floor), fill=wall)
    pattern = int(r.integers(3))
    step = h * 0.06
    for i, x in enumerate(np.arange(0, w, step)):  # wallpaper
        if pattern == 0:
            d.rectangle((x, 0, x + step * 0.3, floor), fill=shade(wall, 0.95))
        elif pattern == 1:
            for y in np.arange((i % 2) * step / 2, floor, step):
                d.ellipse((x - 2, y - 2, x + 2, y + 2), fill=shade(wall, 0.9))
    d.rectangle((0, floor - h * 0.03, w, floor), fill=(245, 245, 245))
    wx0 = r.uniform(0.05, 0.6) * w
    wx1, wy0, wy1 = wx0 + w * 0.2, h * 0.12, h * 0.5
    sky = Image.new("RGB", (int(wx1 - wx0), int(wy1 - wy0)))
    _sky(sky, pal, tod, r, sky.size[1])
    img.paste(sky, (int(wx0), int(wy0)))
    d.rectangle((wx0, wy0, wx1, wy1), outline=(250, 250, 250), width=lw * 3)
    d.line(((wx0 + wx1) / 2, wy0, (wx0 + wx1) / 2, wy1), fill=(250, 250, 250), width=lw * 2)
    cur = jitter(pal["accent"], r, 20)
    for cx in (wx0, wx1):
        d.polygon(
            [
                (cx - w * 0.03, wy0 - h * 0.03),
                (cx + w * 0.03, wy0 - h * 0.03),
                (cx + w * 0.015, wy1 + h * 0.05),
                (cx - w * 0.035, wy1 + h * 0.05),
            ],
            fill=cur,
            outline=outline_of(cur),
            width=lw,
        )
    # bookshelf
    sx = (wx1 + w * 0.1) % (w * 0.8)
    sw, st = w * 0.12, h * 0.15
    d.rectangle(
        (sx, st, sx + sw, floor), fill=pal["wood"], outline=outline_of(pal["wood"]), width=lw
    )
    for yy in np.linspace(st + h * 0.02, floor - h * 0.04, 4)[:-1]:
        bx = sx + sw * 0.05
        shelf_h = (floor - st) / 4
        while bx < sx + sw * 0.92:
            bwid = r.uniform(0.04, 0.1) * sw
            bh = r.uniform(0.6, 0.9) * shelf_h
            col = to_rgb(r.uniform(40, 230, 3))
            d.rectangle(
                (bx, yy + shelf_h - bh, bx + bwid, yy + shelf_h), fill=col, outline=shade(col, 0.6)
            )
            bx += bwid + 1
        d.line(
            (sx, yy + shelf_h, sx + sw, yy + shelf_h), fill=shade(pal["wood"], 0.7), width=lw * 2
        )
    # poster
    px, py = r.uniform(0, 0.85) * w, h * 0.1
    pc = to_rgb(r.uniform(80, 250, 3))
    d.rectangle((px, py, px + w * 0.07, py + h * 0.22), fill=pc, outline=(250, 250, 250), width=lw)
    d.ellipse((px + w * 0.015, py + h * 0.04, px + w * 0.055, py + h * 0.11), fill=shade(pc, 0.6))
    d.rectangle((0, floor, w, h), fill=pal["floor"])
    for x in np.arange(0, w, h * 0.12):
        d.line((x, floor, x - (x - w / 2) * 0.3, h), fill=shade(pal["floor"], 0.85))
    bx = r.uniform(0.0, 0.7) * w  # bed
    bed = jitter(pal["accent2"], r, 20)
    d.rectangle(
        (bx, floor - h * 0.14, bx + w * 0.3, floor + h * 0.06),
        fill=(250, 250, 250),
        outline=(120, 120, 130),
        width=lw,
    )
    d.rectangle(
        (bx + w * 0.06, floor - h * 0.16, bx + w * 0.3, floor + h * 0.07),
        fill=bed,
        outline=outline_of(bed),
        width=lw,
    )
    for k in range(3):
        xx = bx + w * (0.1 + 0.06 * k)
        d.line(
            (xx, floor - h * 0.15, xx + w * 0.02, floor + h * 0.06), fill=shade(bed, 0.8), width=lw
        )
    d.ellipse(
        (bx + w * 0.005, floor - h * 0.2, bx + w * 0.07, floor - h * 0.12),
        fill=(255, 255, 255),
        outline=(150, 150, 160),
        width=lw,
    )
    rx = r.uniform(0.2, 0.8) * w  # rug
    rug = jitter(pal["accent"], r, 30)
    d.ellipse(
        (rx - w * 0.12, floor + h * 0.1, rx + w * 0.12, floor + h * 0.2),
        fill=rug,
        outline=shade(rug, 0.7),
        width=lw,
    )
    return floor / h, 0.1


def _rooftop(
    img: Image.Image, pal: Palette, tod: str, r: np.random.Generator
) -> tuple[float, float]:
    w, h = img.size
    lw = _lw(h)
    horizon = int(h * r.uniform(0.58, 0.66))
    _sky(img, pal, tod, r, horizon + 2)
    d = ImageDraw.Draw(img)
    far = mix(pal["building2"], pal["sky_bottom"], 0.35)
    x = 0.0
    while x < w:
        bw = r.uniform(0.03, 0.08) * w
        top = horizon - r.uniform(0.05, 0.2) * h
        d.rectangle((x, top, x + bw, horizon), fill=jitter(far, r, 10))
        for wy in np.arange(top + 4, horizon - 2, 6):
            d.line((x + 2, wy, x + bw - 2, wy), fill=shade(far, 0.85))
        x += bw
    conc = mix(pal["wall2"], (170, 170, 170), 0.6)
    d.rectangle((0, horizon, w, h), fill=conc)
    for yy in np.geomspace(2, h - horizon, 6):
        d.line((0, horizon + yy, w, horizon + yy), fill=shade(conc, 0.85))
    for x in np.arange(r.uniform(0, 30), w, h * 0.15):
        d.line((x, horizon, x + (x - w / 2) * 0.4, h), fill=shade(conc, 0.85))
    fence_top, fence_bot = horizon - h * 0.2, horizon + h * 0.02
    fc = (110, 120, 115) if r.random() < 0.5 else (60, 120, 90)
    step = h * 0.025
    for x in np.arange(-h * 0.3, w + h * 0.3, step):  # chain link
        d.line((x, fence_top, x + (fence_bot - fence_top), fence_bot), fill=fc)
        d.line((x, fence_bot, x + (fence_bot - fence_top), fence_top), fill=fc)
    for x in np.arange(0, w, h * 0.3):
        d.rectangle((x - lw * 2, fence_top - h * 0.02, x + lw * 2, fence_bot), fill=shade(fc, 0.7))
    d.rectangle((0, fence_top - h * 0.02, w, fence_top + lw), fill=shade(fc, 0.7))
    if r.random() < 0.7:  # stairwell hut with a door
        hx = r.uniform(0.0, 0.75) * w
        hut = pal["wall"]
        d.rectangle(
            (hx, horizon - h * 0.35, hx + w * 0.18, horizon + h * 0.08),
            fill=hut,
            outline=outline_of(hut),
            width=lw,
        )
        d.rectangle(
            (hx + w * 0.05, horizon - h * 0.2, hx + w * 0.11, horizon + h * 0.08),
            fill=(120, 130, 150),
            outline=(60, 60, 70),
            width=lw,
        )
    tx = r.uniform(0.0, 0.85) * w  # water tank
    d.rectangle(
        (tx, horizon - h * 0.3, tx + w * 0.06, horizon - h * 0.17),
        fill=(220, 220, 225),
        outline=(100, 100, 110),
        width=lw,
    )
    return (horizon + (h - horizon) * 0.3) / h, 0.2


def _cafe(img: Image.Image, pal: Palette, tod: str, r: np.random.Generator) -> tuple[float, float]:
    w, h = img.size
    lw = _lw(h)
    d = ImageDraw.Draw(img)
    floor = int(h * r.uniform(0.7, 0.78))
    wall = mix(pal["wall"], (240, 210, 170), 0.3)
    d.rectangle((0, 0, w, floor), fill=wall)
    for x in np.arange(0, w, h * 0.05):  # wainscot
        d.line((x, floor - h * 0.25, x, floor), fill=shade(pal["wood"], 0.8))
    d.rectangle((0, floor - h * 0.25, w, floor), outline=shade(pal["wood"], 0.7), width=lw * 2)
    for _ in range(int(r.integers(2, 4))):  # shelves with cups and jars
        sx, sy = r.uniform(0, 0.8) * w, r.uniform(0.15, 0.4) * h
        sw = r.uniform(0.15, 0.25) * w
        d.rectangle((sx, sy, sx + sw, sy + lw * 3), fill=pal["wood"])
        x = sx + 4
        while x < sx + sw - 8:
            cw = r.uniform(0.01, 0.025) * w
            ch = r.uniform(0.03, 0.07) * h
            col = (
                jitter((240, 240, 235), r, 30)
                if r.random() < 0.6
                else to_rgb(r.uniform(80, 230, 3))
            )
            d.rectangle((x, sy - ch, x + cw, sy), fill=col, outline=shade(col, 0.6))
            x += cw + r.uniform(2, 6)
    mx = r.uniform(0.05, 0.75) * w  # menu board
    d.rectangle(
        (mx, h * 0.1, mx + w * 0.13, h * 0.38), fill=(40, 44, 40), outline=pal["wood"], width=lw * 3
    )
    for k in range(6):
        y = h * 0.14 + k * h * 0.035
        d.line(
            (mx + w * 0.01, y, mx + w * r.uniform(0.06, 0.11), y), fill=(230, 230, 220), width=lw
        )
    for x in np.arange(r.uniform(0.05, 0.2) * w, w, r.uniform(0.2, 0.3) * w):  # hanging lamps
        ly = r.uniform(0.12, 0.22) * h
        d.line((x, 0, x, ly), fill=(50, 50, 50), width=lw)
        lamp = jitter(pal["accent2"], r, 20)
        d.polygon(
            [
                (x - h * 0.04, ly + h * 0.05),
                (x + h * 0.04, ly + h * 0.05),
                (x + h * 0.015, ly),
                (x - h * 0.015, ly),
            ],
            fill=lamp,
            outline=outline_of(lamp),
        )
        d.ellipse(
            (x - h * 0.015, ly + h * 0.04, x + h * 0.015, ly + h * 0.07), fill=(255, 240, 190)
        )
    # checkered floor
    d.rectangle((0, floor, w, h), fill=(230, 222, 210))
    t = h * 0.06
    for i, y in enumerate(np.arange(floor, h, t)):
        for j, x in enumerate(np.arange(0, w, t)):
            if (i + j) % 2:
                d.rectangle((x, y, x + t, y + t), fill=shade(pal["floor"], 0.95))
    cx = r.uniform(0.1, 0.6) * w  # counter
    d.rectangle(
        (cx, floor - h * 0.22, cx + w * 0.35, floor + h * 0.03),
        fill=pal["wood"],
        outline=outline_of(pal["wood"]),
        width=lw,
    )
    d.rectangle(
        (cx - w * 0.01, floor - h * 0.24, cx + w * 0.36, floor - h * 0.21),
        fill=shade(pal["wood"], 1.2),
    )
    for _ in range(int(r.integers(2, 5))):
        tx = r.uniform(0, 0.9) * w
        ty = floor + r.uniform(0.08, 0.2) * h
        d.rectangle((tx + w * 0.035, ty, tx + w * 0.045, ty + h * 0.12), fill=(80, 70, 60))
        d.ellipse(
            (tx, ty - h * 0.02, tx + w * 0.08, ty + h * 0.02),
            fill=(250, 250, 250),
            outline=(120, 120, 120),
            width=lw,
        )
    return floor / h, 0.1


def _corridor(
    img: Image.Image, pal: Palette, tod: str, r: np.random.Generator
) -> tuple[float, float]:
    w, h = img.size
    lw = _lw(h)
    d = ImageDraw.Draw(img)
    wall, dark, glow = pal["wall"], pal["wall2"], pal["accent"]
    d.rectangle((0, 0, w, h), fill=shade(wall, 0.9))
    nvp = int(r.integers(1, 3))
    for k in range(nvp):  # one or two vanishing points across the panorama
        vx = w * (k + 0.5) / nvp + r.uniform(-0.1, 0.1) * w / nvp
        vy = h * r.uniform(0.38, 0.48)
        x0, x1 = w * k / nvp, w * (k + 1) / nvp
        bw, bh = (x1 - x0) * 0.18, h * 0.16
        d.polygon([(x0, h), (x1, h), (vx + bw, vy + bh), (vx - bw, vy + bh)], fill=pal["floor"])
        d.polygon([(x0, 0), (x1, 0), (vx + bw, vy - bh), (vx - bw, vy - bh)], fill=dark)
        d.rectangle(
            (vx - bw, vy - bh, vx + bw, vy + bh), fill=shade(dark, 0.6), outline=glow, width=lw
        )
        for t in np.linspace(0, 1, 9)[1:-1]:  # wall panel seams converge
            yb = h + (vy + bh - h) * t
            xl = x0 + (vx - bw - x0) * t
            xr = x1 + (vx + bw - x1) * t
            d.line((xl, yb, xr, yb), fill=shade(pal["floor"], 0.8))
            d.line((xl, yb, xl, (vy - bh) * t), fill=shade(wall, 0.75))
            d.line((xr, yb, xr, (vy - bh) * t), fill=shade(wall, 0.75))
        for sx in (0.25, 0.5, 0.75):  # light strips
            px = x0 + (x1 - x0) * sx
            d.line(
                (px, 0, vx + (px - vx) * 0.2, vy - bh),
                fill=mix(glow, (255, 255, 255), 0.5),
                width=lw * 2,
            )
        for _ in range(int(r.integers(1, 3))):  # doors and screens
            t = r.uniform(0.15, 0.6)
            side = -1 if r.random() < 0.5 else 1
            xe = (x0 if side < 0 else x1) + ((vx - bw * side) - (x0 if side < 0 else x1)) * t
            dw = (x1 - x0) * 0.08 * (1 - t)
            top, bot = (vy - bh) * t + h * 0.05 * (1 - t), h + (vy + bh - h) * t
            d.rectangle((xe - dw, top, xe + dw, bot), fill=shade(dark, 0.8), outline=glow, width=lw)
            if r.random() < 0.6:
                sc = jitter(pal["accent2"], r, 30)
                d.rectangle(
                    (
                        xe - dw * 0.7,
                        top + (bot - top) * 0.2,
                        xe + dw * 0.7,
                        top + (bot - top) * 0.4,
                    ),
                    fill=shade(sc, 0.5),
                    outline=sc,
                )
                pts = [
                    (xe - dw * 0.6 + i * dw * 0.2, top + (bot - top) * (0.35 - 0.1 * r.random()))
                    for i in range(7)
                ]
                d.line(pts, fill=sc, width=1)
    return 0.8, 0.1


def _shrine(
    img: Image.Image, pal: Palette, tod: str, r: np.random.Generator
) -> tuple[float, float]:
    w, h = img.size
    lw = _lw(h)
    horizon = int(h * r.uniform(0.5, 0.6))
    _sky(img, pal, tod, r, horizon + 2)
    d = ImageDraw.Draw(img)
    for layer, f in ((0, 0.55), (1, 0.8)):  # forest masses
        col = shade(pal["foliage_dark"], f if tod != "night" else f * 0.5)
        for x in np.arange(-20, w + 20, h * 0.08):
            rr = r.uniform(0.08, 0.16) * h
            cy = horizon - r.uniform(0.05, 0.25) * h + layer * h * 0.05
            d.ellipse((x - rr, cy - rr, x + rr, cy + rr + h * 0.3), fill=col)
    ground = mix(pal["ground"], (170, 160, 140), 0.5)
    d.rectangle((0, horizon, w, h), fill=ground)
    for y in np.linspace(horizon, h, 8):  # stone steps
        d.line((0, y, w, y), fill=shade(ground, 0.8), width=lw)
    for x in sorted(r.uniform(0, w, int(r.integers(1, 3)))):  # torii gates
        gh, gw = r.uniform(0.45, 0.6) * h, r.uniform(0.18, 0.25) * w
        red = mix(pal["accent"], (210, 50, 40), 0.6)
        base = horizon + h * 0.05
        for px in (x - gw * 0.4, x + gw * 0.4):
            d.rectangle(
                (px - h * 0.015, base - gh, px + h * 0.015, base), fill=red, outline=outline_of(red)
            )
        d.polygon(
            [
                (x - gw * 0.6, base - gh - h * 0.03),
                (x + gw * 0.6, base - gh - h * 0.03),
                (x + gw * 0.5, base - gh + h * 0.015),
                (x - gw * 0.5, base - gh + h * 0.015),
            ],
            fill=(40, 30, 30),
        )
        d.rectangle(
            (x - gw * 0.48, base - gh + h * 0.05, x + gw * 0.48, base - gh + h * 0.075), fill=red
        )
    for x in r.uniform(0, w, int(r.integers(2, 5))):  # stone lanterns
        by = horizon + r.uniform(0.05, 0.3) * h
        s = h * 0.05 * (by / horizon)
        st = (170, 170, 160)
        d.rectangle((x - s * 0.3, by - s * 2, x + s * 0.3, by), fill=st, outline=shade(st, 0.6))
        d.rectangle(
            (x - s * 0.6, by - s * 2.8, x + s * 0.6, by - s * 2),
            fill=(255, 220, 150) if tod == "night" else st,
            outline=shade(st, 0.6),
        )
        d.polygon(
            [(x - s, by - s * 2.8), (x + s, by - s * 2.8), (x, by - s * 3.5)],
            fill=shade(st, 0.9),
            outline=shade(st, 0.6),
        )
    for _ in range(int(r.integers(15, 40))):  # falling petals / leaves
        x, y, s = r.uniform(0, w), r.uniform(0, h), h * 0.006
        d.ellipse((x - s * 1.5, y - s, x + s * 1.5, y + s), fill=(250, 190, 210))
    return (horizon + (h - horizon) * 0.3) / h, 0.2


def _night_city(
    img: Image.Image, pal: Palette, tod: str, r: np.random.Generator
) -> tuple[float, float]:
    w, h = img.size
    lw = _lw(h)
    horizon = int(h * r.uniform(0.6, 0.7))
    _sky(img, pal, "night", r, horizon + 2)
    d = ImageDraw.Draw(img)
    x = 0.0
    while x < w:
        bw = r.uniform(0.05, 0.14) * w
        top = horizon - r.uniform(0.25, 0.6) * h
        col = jitter(shade(pal["building"], 0.45), r, 10)
        _building(d, x, x + bw, top, horizon, col, r, True, lw)
        if r.random() < 0.5:  # neon sign
            nc = pal["accent"] if r.random() < 0.5 else pal["accent2"]
            nx, ny = x + bw * 0.2, top + (horizon - top) * r.uniform(0.2, 0.6)
            d.rectangle(
                (nx - 3, ny - 3, nx + bw * 0.25 + 3, ny + h * 0.12 + 3), fill=shade(nc, 0.4)
            )
            d.rectangle(
                (nx, ny, nx + bw * 0.25, ny + h * 0.12),
                fill=mix(nc, (255, 255, 255), 0.3),
                outline=nc,
                width=lw,
            )
        x += bw + r.uniform(0, 0.01) * w
    road = (36, 36, 52)
    d.rectangle((0, horizon, w, h), fill=road)
    for x in np.arange(0, w, h * 0.2):  # reflections
        d.rectangle((x, horizon + h * 0.05, x + h * 0.02, h), fill=(60, 56, 80))
    for x in np.arange(r.uniform(0, 50), w, r.uniform(0.2, 0.3) * w):  # street lights
        d.rectangle((x - lw, horizon - h * 0.35, x + lw, horizon + h * 0.05), fill=(80, 80, 90))
        d.ellipse(
            (x - h * 0.04, horizon - h * 0.39, x + h * 0.04, horizon - h * 0.33),
            fill=(255, 240, 190),
        )
    return (horizon + (h - horizon) * 0.2) / h, 0.3


_PAINTERS: dict[
    str, Callable[[Image.Image, Palette, str, np.random.Generator], tuple[float, float]]
] = {
    "street": _street,
    "classroom": _classroom,
    "park": _park,
    "bedroom": _bedroom,
    "rooftop": _rooftop,
    "cafe": _cafe,
    "corridor": _corridor,
    "shrine": _shrine,
    "night_city": _night_city,
}


def paint_location(loc: LocationSpec, width: int, height: int) -> Panorama:
    """Paint a location panorama of `width` x `height` pixels (deterministic per spec)."""
    img = Image.new("RGB", (width, height), loc.palette["wall"])
    floor, wall_top = _PAINTERS[loc.kind](img, loc.palette, loc.tod, rng_for(loc.seed, loc.kind))
    return Panorama(img, int(floor * height), int(wall_top * height))


# ---------------------------------------------------------------------------------------
# props (shot-specific details painted onto a copy of the panorama)

PROP_KINDS = (
    "plant",
    "box",
    "sign",
    "lamp",
    "bin",
    "cone",
    "bicycle",
    "vending",
    "poster",
    "clock",
    "balloons",
    "birds",
    "chair",
    "umbrella",
)


def paint_prop(
    d: ImageDraw.ImageDraw,
    kind: str,
    x: float,
    y: float,
    s: float,
    rng: np.random.Generator,
    pal: Palette,
) -> None:
    """Paint one prop standing at (x, y) (its foot) with size `s` (about its height)."""
    lw = max(1, round(s / 40))
    col = to_rgb(rng.uniform(50, 240, 3))
    oc = outline_of(col)
    if kind == "plant":
        pot = jitter(pal["wood"], rng, 30)
        d.polygon(
            [
                (x - s * 0.18, y - s * 0.3),
                (x + s * 0.18, y - s * 0.3),
                (x + s * 0.13, y),
                (x - s * 0.13, y),
            ],
            fill=pot,
            outline=outline_of(pot),
            width=lw,
        )
        for k in range(7):
            a = math.pi * (0.15 + 0.7 * k / 6)
            lx, ly = x + math.cos(a) * s * 0.45, y - s * 0.3 - math.sin(a) * s * 0.6
            d.ellipse(
                (lx - s * 0.12, ly - s * 0.06, lx + s * 0.12, ly + s * 0.06),
                fill=pal["foliage"],
                outline=outline_of(pal["foliage"]),
                width=lw,
            )
    elif kind == "box":
        c = mix(col, (200, 160, 110), 0.6)
        d.rectangle(
            (x - s * 0.3, y - s * 0.45, x + s * 0.3, y), fill=c, outline=outline_of(c), width=lw
        )
        d.line((x - s * 0.3, y - s * 0.35, x + s * 0.3, y - s * 0.35), fill=outline_of(c), width=lw)
        d.rectangle(
            (x - s * 0.2, y - s * 0.8, x + s * 0.15, y - s * 0.45),
            fill=shade(c, 0.9),
            outline=outline_of(c),
            width=lw,
        )
    elif kind == "sign":
        d.rectangle((x - lw, y - s, x + lw, y), fill=(120, 120, 130))
        d.rectangle(
            (x - s * 0.3, y - s * 1.1, x + s * 0.3, y - s * 0.7), fill=col, outline=oc, width=lw
        )
        for k in range(3):
            yy = y - s * (1.02 - 0.1 * k)
            d.line(
                (x - s * 0.22, yy, x + s * rng.uniform(0.0, 0.22), yy),
                fill=(250, 250, 250),
                width=lw,
            )
    elif kind == "lamp":
        d.rectangle((x - lw * 1.5, y - s * 1.4, x + lw * 1.5, y), fill=(70, 70, 80))
        d.ellipse(
            (x - s * 0.12, y - s * 1.55, x + s * 0.12, y - s * 1.35),
            fill=(255, 240, 180),
            outline=(90, 90, 90),
            width=lw,
        )
    elif kind == "bin":
        d.rectangle((x - s * 0.18, y - s * 0.45, x + s * 0.18, y), fill=col, outline=oc, width=lw)
        d.rectangle((x - s * 0.2, y - s * 0.5, x + s * 0.2, y - s * 0.44), fill=shade(col, 0.8))
    elif kind == "cone":
        d.polygon(
            [(x - s * 0.18, y), (x + s * 0.18, y), (x, y - s * 0.5)],
            fill=(245, 120, 40),
            outline=(120, 50, 20),
            width=lw,
        )
        d.line(
            (x - s * 0.1, y - s * 0.22, x + s * 0.1, y - s * 0.22),
            fill=(250, 250, 250),
            width=lw * 2,
        )
    elif kind == "bicycle":
        for wx in (x - s * 0.35, x + s * 0.35):
            d.ellipse(
                (wx - s * 0.22, y - s * 0.44, wx + s * 0.22, y), outline=(40, 40, 40), width=lw * 2
            )
        d.line(
            [
                (x - s * 0.35, y - s * 0.22),
                (x - s * 0.05, y - s * 0.55),
                (x + s * 0.25, y - s * 0.55),
                (x + s * 0.35, y - s * 0.22),
                (x, y - s * 0.22),
                (x - s * 0.05, y - s * 0.55),
            ],
            fill=col,
            width=lw * 2,
        )
    elif kind == "vending":
        d.rectangle((x - s * 0.3, y - s * 1.2, x + s * 0.3, y), fill=col, outline=oc, width=lw)
        d.rectangle(
            (x - s * 0.24, y - s * 1.1, x + s * 0.24, y - s * 0.6),
            fill=(230, 240, 250),
            outline=oc,
            width=lw,
        )
        for i in range(3):
            for j in range(4):
                cx, cy = x - s * 0.18 + j * s * 0.12, y - s * 1.0 + i * s * 0.14
                d.rectangle(
                    (cx - s * 0.03, cy - s * 0.05, cx + s * 0.03, cy + s * 0.05),
                    fill=to_rgb(rng.uniform(60, 250, 3)),
                )
        d.rectangle((x - s * 0.2, y - s * 0.3, x + s * 0.1, y - s * 0.2), fill=(40, 40, 40))
    elif kind == "poster":
        yy = y - s * 1.6
        d.rectangle(
            (x - s * 0.25, yy, x + s * 0.25, yy + s * 0.7),
            fill=col,
            outline=(250, 250, 250),
            width=lw,
        )
        d.polygon(
            [(x - s * 0.15, yy + s * 0.55), (x, yy + s * 0.15), (x + s * 0.15, yy + s * 0.55)],
            fill=shade(col, 0.6),
        )
    elif kind == "clock":
        yy = y - s * 1.8
        d.ellipse(
            (x - s * 0.2, yy - s * 0.2, x + s * 0.2, yy + s * 0.2),
            fill=(250, 250, 250),
            outline=oc,
            width=lw * 2,
        )
        a = rng.uniform(0, 6.28)
        d.line(
            (x, yy, x + math.cos(a) * s * 0.15, yy + math.sin(a) * s * 0.15),
            fill=(30, 30, 30),
            width=lw,
        )
    elif kind == "balloons":
        for k in range(3):
            bx, by = x + (k - 1) * s * 0.25, y - s * (1.5 + 0.15 * (k % 2))
            c = to_rgb(rng.uniform(80, 255, 3))
            d.line((bx, by + s * 0.15, x, y - s * 0.5), fill=(80, 80, 80), width=1)
            d.ellipse(
                (bx - s * 0.13, by - s * 0.17, bx + s * 0.13, by + s * 0.17),
                fill=c,
                outline=outline_of(c),
                width=lw,
            )
    elif kind == "birds":
        for _ in range(int(rng.integers(3, 7))):
            bx, by = x + rng.uniform(-1, 1) * s, y - s * rng.uniform(2.0, 3.0)
            d.line(
                [(bx - s * 0.08, by - s * 0.04), (bx, by), (bx + s * 0.08, by - s * 0.04)],
                fill=(40, 40, 50),
                width=lw,
            )
    elif kind == "chair":
        c = jitter(pal["wood"], rng, 30)
        d.rectangle(
            (x - s * 0.2, y - s * 0.4, x + s * 0.2, y - s * 0.35), fill=c, outline=outline_of(c)
        )
        d.rectangle((x + s * 0.15, y - s * 0.85, x + s * 0.2, y), fill=c)
        d.rectangle((x - s * 0.2, y - s * 0.4, x - s * 0.16, y), fill=c)
    elif kind == "umbrella":
        d.line((x, y, x, y - s * 0.9), fill=(60, 60, 60), width=lw * 2)
        d.pieslice(
            (x - s * 0.45, y - s * 1.2, x + s * 0.45, y - s * 0.6),
            180,
            360,
            fill=col,
            outline=oc,
            width=lw,
        )


# ---------------------------------------------------------------------------------------
# foreground occluders (RGBA, drawn over the characters)

FOREGROUND_KINDS = ("foliage", "pole", "railing", "plant")


def paint_foreground(
    kind: str,
    width: int,
    height: int,
    rng: np.random.Generator,
    pal: Palette,
    target_x: float | None = None,
) -> Image.Image:
    """An RGBA layer the size of the panorama with a foreground object; `target_x` puts a
    pole in front of a character on purpose (partly hidden faces exist in real anime)."""
    img = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    d = ImageDraw.Draw(img)
    lw = _lw(height)
    if kind == "foliage":
        corner = rng.integers(2)
        cx = 0 if corner == 0 else width
        col, dark = pal["foliage"], pal["foliage_dark"]
        for _ in range(int(rng.integers(14, 26))):
            x = cx + (1 if corner == 0 else -1) * rng.uniform(0, 0.28) * width
            y = rng.uniform(0, 0.35) * height
            rx, ry = rng.uniform(0.02, 0.05) * width, rng.uniform(0.015, 0.03) * width
            c = dark if rng.random() < 0.4 else col
            d.ellipse(
                (x - rx, y - ry, x + rx, y + ry),
                fill=c + (255,),
                outline=outline_of(c) + (255,),
                width=lw,
            )
    elif kind == "pole":
        x = target_x if target_x is not None else rng.uniform(0.2, 0.8) * width
        pw = height * rng.uniform(0.035, 0.06)
        col = (96, 92, 100) if rng.random() < 0.5 else shade(pal["accent"], 0.7)
        d.rectangle(
            (x - pw / 2, 0, x + pw / 2, height),
            fill=col + (255,),
            outline=outline_of(col) + (255,),
            width=lw,
        )
        d.rectangle(
            (x - pw / 2 + pw * 0.15, 0, x - pw / 2 + pw * 0.3, height),
            fill=shade(col, 1.3) + (255,),
        )
    elif kind == "railing":
        y0 = height * rng.uniform(0.72, 0.82)
        col = (230, 230, 235) if rng.random() < 0.5 else pal["wood"]
        for y in (y0, y0 + height * 0.06):
            d.rectangle(
                (0, y, width, y + height * 0.018),
                fill=col + (255,),
                outline=outline_of(col) + (255,),
            )
        for x in np.arange(rng.uniform(0, 30), width, height * 0.12):
            d.rectangle(
                (x, y0, x + height * 0.015, height),
                fill=col + (255,),
                outline=outline_of(col) + (255,),
            )
    elif kind == "plant":
        x = rng.choice([0.03, 0.97]) * width
        base = height
        col = pal["foliage"]
        for k in range(11):
            a = math.pi * (0.1 + 0.8 * k / 10)
            lx, ly = (
                x + math.cos(a) * height * 0.22,
                base - height * 0.15 - math.sin(a) * height * 0.3,
            )
            d.polygon(
                [
                    (x, base - height * 0.12),
                    (lx - height * 0.03, ly),
                    (lx, ly - height * 0.05),
                    (lx + height * 0.03, ly),
                ],
                fill=col + (255,),
                outline=outline_of(col) + (255,),
            )
        pot = pal["wood"]
        d.rectangle(
            (x - height * 0.08, base - height * 0.14, x + height * 0.08, base),
            fill=pot + (255,),
            outline=outline_of(pot) + (255,),
            width=lw,
        )
    return img


# ---------------------------------------------------------------------------------------
# special backgrounds and overlays


def speed_lines(
    width: int, height: int, rng: np.random.Generator, base: RGB, line: RGB
) -> Image.Image:
    """A radial speed-line background (action beats, OP cuts)."""
    img = Image.new("RGB", (width, height), base)
    d = ImageDraw.Draw(img)
    cx, cy = width * rng.uniform(0.35, 0.65), height * rng.uniform(0.35, 0.65)
    rmax = math.hypot(width, height)
    for a in np.sort(rng.uniform(0, 2 * math.pi, 90)):
        da = rng.uniform(0.004, 0.02)
        r0 = rng.uniform(0.15, 0.4) * height
        d.polygon(
            [
                (cx + math.cos(a) * r0, cy + math.sin(a) * r0),
                (cx + math.cos(a - da) * rmax, cy + math.sin(a - da) * rmax),
                (cx + math.cos(a + da) * rmax, cy + math.sin(a + da) * rmax),
            ],
            fill=line,
        )
    return img


def title_card(width: int, height: int, rng: np.random.Generator, pal: Palette) -> Image.Image:
    """A decorated background for an episode title card (text added separately)."""
    a, b = pal["accent"], pal["accent2"]
    img = gradient(width, height, shade(a, 1.25), shade(b, 1.15))
    d = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(8, 20))):
        x, y, s = rng.uniform(0, width), rng.uniform(0, height), rng.uniform(0.02, 0.12) * height
        c = mix((255, 255, 255), a if rng.random() < 0.5 else b, rng.uniform(0.1, 0.5))
        if rng.random() < 0.5:
            d.ellipse((x - s, y - s, x + s, y + s), outline=c, width=max(1, round(s / 6)))
        else:
            pts = [
                (
                    x + math.cos(k * math.pi / 5 - math.pi / 2) * s * (1 if k % 2 == 0 else 0.45),
                    y + math.sin(k * math.pi / 5 - math.pi / 2) * s * (1 if k % 2 == 0 else 0.45),
                )
                for k in range(10)
            ]
            d.polygon(pts, fill=c)
    d.rectangle((0, height * 0.38, width, height * 0.62), fill=mix((255, 255, 255), a, 0.15))
    return img


def text_sprite(
    text: str,
    size: int,
    fill: RGB = (255, 255, 255),
    stroke: RGB = (20, 20, 30),
    stroke_width: int | None = None,
    max_width: int | None = None,
) -> Image.Image:
    """Render (possibly wrapped, centred) outlined text into a tight RGBA image."""
    f = font(size)
    sw = max(1, size // 9) if stroke_width is None else stroke_width
    lines = [text]
    if max_width:
        words, lines, cur = text.split(), [], ""
        for wd in words:
            trial = (cur + " " + wd).strip()
            if cur and f.getlength(trial) + 2 * sw > max_width:
                lines.append(cur)
                cur = wd
            else:
                cur = trial
        lines.append(cur)
    lh = int(size * 1.25)
    w = int(max(f.getlength(line) for line in lines) + 4 * sw + 4)
    img = Image.new("RGBA", (w, lh * len(lines) + 2 * sw + 4), (0, 0, 0, 0))
    d = ImageDraw.Draw(img)
    for i, line in enumerate(lines):
        x = (w - f.getlength(line)) / 2
        d.text(
            (x, sw + 2 + i * lh),
            line,
            font=f,
            fill=fill + (255,),
            stroke_width=sw,
            stroke_fill=stroke + (255,),
        )
    return img


def credits_sprite(lines: list[str], width: int, size: int) -> Image.Image:
    """A tall RGBA strip of credit lines for the scrolling ending."""
    f = font(size)
    lh = int(size * 1.9)
    img = Image.new("RGBA", (width, lh * len(lines) + size), (0, 0, 0, 0))
    d = ImageDraw.Draw(img)
    for i, line in enumerate(lines):
        x = (width - f.getlength(line)) / 2
        d.text(
            (x, i * lh),
            line,
            font=f,
            fill=(255, 255, 255, 255),
            stroke_width=max(1, size // 10),
            stroke_fill=(30, 30, 50, 255),
        )
    return img
