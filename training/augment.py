"""Training augmentations: turn a clean library frame into something a person would send.

Built from the same perturbations the evaluation uses (data/perturb.py), composed at random,
then passed through the query pipeline's picture-in-picture step, so the model learns on
exactly what it will see at query time.
"""

from __future__ import annotations

import random

from PIL import Image

from core.recognition import query_views
from data import perturb


def heavy(img: Image.Image, rng: random.Random) -> Image.Image:
    """A random composition of screenshot damage (crop, mirror, colour, text, frames, codecs)."""
    if rng.random() < 0.6:
        img = perturb.crop(0.25, 1.0)(img, rng)
    if rng.random() < 0.5:
        img = perturb.mirror(img, rng)
    if rng.random() < 0.5:
        img = perturb.color_shift(img, rng)
    if rng.random() < 0.25:
        img = perturb.subtitles(img, rng)
    r = rng.random()
    if r < 0.12:
        img = perturb.phone_screenshot(img, rng)
    elif r < 0.22:
        img = perturb.meme_caption(img, rng)
    elif r < 0.32:
        img = perturb.borders(img, rng)
    if rng.random() < 0.15:
        img = perturb.gif_palette(img, rng)
    if rng.random() < 0.15:
        img = perturb.blur(img, rng)
    if rng.random() < 0.25:
        img = perturb.downscale(img, rng)
    if rng.random() < 0.6:
        img = perturb.jpeg(30, 90)(img, rng)
    views = query_views(img)
    return views[-1].image  # the inner frame when one was found, else the trimmed image


def light(img: Image.Image, rng: random.Random) -> Image.Image:
    """The library side of a pair: nearly clean (re-encoding noise only)."""
    if rng.random() < 0.5:
        img = perturb.jpeg(70, 95)(img, rng)
    return img
