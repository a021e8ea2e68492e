"""Drawing-style randomisation for training pictures: the synthetic library has one clean
cel-shaded style, real anime has many. Applied to a training crop (labels unchanged, the
geometry does not move):

- colour: a hue rotation of the whole picture (hair and eye colours the generator never
  drew), posterisation (flat cel colour), greyscale (manga);
- lines: heavier (a minimum filter darkens and thickens dark strokes), thinner (a maximum
  filter), or drawn again in another colour from the edges;
- shading and texture: a soft light gradient multiplied in, a screen-tone dot pattern, film
  grain, a painterly mode / median filter, sharpening;
- clutter: a patch of smooth painted noise (a "painted background") away from the faces.

Never uses the real-art check's pictures (data.realart): that set stays held apart.
"""

from __future__ import annotations

import random

import numpy as np
from PIL import Image, ImageChops, ImageFilter, ImageOps


def _hue_rotate(img: Image.Image, rng: random.Random) -> Image.Image:
    h, s, v = img.convert("HSV").split()
    shift = rng.randrange(20, 236)
    h = h.point(lambda x: (x + shift) % 256)
    return Image.merge("HSV", (h, s, v)).convert("RGB")


def _lines(img: Image.Image, rng: random.Random) -> Image.Image:
    kind = rng.random()
    if kind < 0.4:
        return img.filter(ImageFilter.MinFilter(3))  # heavier dark strokes
    if kind < 0.6:
        return img.filter(ImageFilter.MaxFilter(3))  # thinner strokes
    edges = ImageOps.autocontrast(img.convert("L").filter(ImageFilter.FIND_EDGES))
    mask = edges.point(lambda x: 255 if x > rng.randint(60, 140) else 0)
    if rng.random() < 0.5:
        mask = mask.filter(ImageFilter.MaxFilter(3))
    colour = rng.choice(((0, 0, 0), (40, 20, 20), (20, 20, 60))) if rng.random() < 0.7 else \
        tuple(rng.randrange(256) for _ in range(3))
    out = img.copy()
    out.paste(Image.new("RGB", img.size, colour), (0, 0), mask)
    return out


def _gradient(img: Image.Image, rng: random.Random) -> Image.Image:
    w, h = img.size
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    a = rng.uniform(0, 2 * np.pi)
    t = (xs * np.cos(a) + ys * np.sin(a)) / max(w, h)
    t = (t - t.min()) / max(1e-6, t.max() - t.min())
    lo = rng.uniform(0.55, 0.9)
    tint = np.array([rng.uniform(0.85, 1.1) for _ in range(3)], np.float32)
    f = (lo + (1 - lo) * t)[..., None] * tint
    return Image.fromarray((np.asarray(img, np.float32) * f).clip(0, 255).astype(np.uint8))


def _screen_tone(img: Image.Image, rng: random.Random) -> Image.Image:
    w, h = img.size
    period = rng.randint(3, 6)
    ys, xs = np.mgrid[0:h, 0:w]
    dots = (((xs % period) - period / 2) ** 2 + ((ys % period) - period / 2) ** 2) < (period / 3.2) ** 2
    grey = np.asarray(img.convert("L"), np.float32)
    dark = grey < rng.uniform(90, 170)  # tone the mid and dark areas only
    arr = np.asarray(img, np.float32).copy()
    arr[dots & dark] *= rng.uniform(0.45, 0.8)
    return Image.fromarray(arr.clip(0, 255).astype(np.uint8))


def _grain(img: Image.Image, rng: random.Random) -> Image.Image:
    arr = np.asarray(img, np.float32)
    nrng = np.random.default_rng(rng.randrange(1 << 30))
    noise = nrng.normal(0, rng.uniform(3, 14), arr.shape[:2])[..., None]
    return Image.fromarray((arr + noise).clip(0, 255).astype(np.uint8))


def _clutter(img: Image.Image, rng: random.Random, boxes: np.ndarray) -> Image.Image:
    """A patch of smooth painted noise where it covers no face."""
    w, h = img.size
    for _ in range(6):
        pw, ph = int(w * rng.uniform(0.15, 0.5)), int(h * rng.uniform(0.15, 0.5))
        x, y = rng.randint(0, max(0, w - pw)), rng.randint(0, max(0, h - ph))
        if len(boxes) and ((boxes[:, 0] < x + pw) & (boxes[:, 2] > x) & (boxes[:, 1] < y + ph)
                           & (boxes[:, 3] > y)).any():
            continue
        nrng = np.random.default_rng(rng.randrange(1 << 30))
        small = Image.fromarray(nrng.integers(0, 256, (rng.randint(3, 8), rng.randint(3, 8), 3), dtype=np.uint8))
        patch = small.resize((max(1, pw), max(1, ph)), Image.Resampling.BICUBIC)
        patch = patch.filter(ImageFilter.GaussianBlur(rng.uniform(1, 4)))
        out = img.copy()
        out.paste(patch, (x, y))
        return out
    return img


def stylise(img: Image.Image, rng: random.Random, boxes: np.ndarray | None = None) -> Image.Image:
    """`img` (RGB) redrawn in a random style; `boxes` (faces) are kept clear of clutter."""
    boxes = np.zeros((0, 4), np.float32) if boxes is None else boxes
    if rng.random() < 0.3:
        img = _hue_rotate(img, rng)
    if rng.random() < 0.5:
        img = _lines(img, rng)
    if rng.random() < 0.25:
        img = ImageOps.posterize(img, rng.randint(2, 4))
    if rng.random() < 0.3:
        img = _gradient(img, rng)
    if rng.random() < 0.15:
        img = _screen_tone(img, rng)
    if rng.random() < 0.2:
        img = img.filter(ImageFilter.ModeFilter(3) if rng.random() < 0.5 else ImageFilter.MedianFilter(3))
    if rng.random() < 0.15:
        img = img.filter(ImageFilter.UnsharpMask(radius=2, percent=rng.randint(80, 200)))
    if rng.random() < 0.3:
        img = _clutter(img, rng, boxes)
    if rng.random() < 0.3:
        img = _grain(img, rng)
    if rng.random() < 0.08:
        img = ImageChops.multiply(img.convert("L").convert("RGB"), Image.new("RGB", img.size, (255, 255, 255)))
    return img
