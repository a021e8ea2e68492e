"""Screenshot perturbations: what happens to a frame between a TV and a chat.

Used three ways: the evaluation suite (fixed, seeded), the demo, and training augmentation.
Each perturbation is a function `(image, rng) -> image`; `SUITE` names the evaluation's
single perturbations and realistic combinations.
"""

from __future__ import annotations

import colorsys
import io
import random
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageFont, ImageOps

Perturb = Callable[[Image.Image, random.Random], Image.Image]

_FONT_CANDIDATES = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
)

SUBTITLES = (
    "I told you, we're not going back there!",
    "Wait... is that really you?",
    "Ты опять опоздал на поезд.",
    "Πού είναι το κλειδί;",
    "もう一度だけ、信じてみる。",
    "¿Por qué siempre llueve aquí?",
    "Ich habe keine Zeit dafür!",
    "Je ne sais pas quoi dire.",
)
CAPTIONS = ("WHEN THE WIFI DROPS", "me at 3am", "POV: you forgot the homework", "nobody:",
            "THIS IS FINE", "when mom says we have anime at home")


@lru_cache(maxsize=32)
def font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    for path in _FONT_CANDIDATES:
        if Path(path).exists():
            return ImageFont.truetype(path, size)
    return ImageFont.load_default(size=size)


def crop(min_area: float = 0.25, max_area: float = 1.0) -> Perturb:
    """A random crop keeping min_area..max_area of the picture, aspect jittered."""
    def f(img: Image.Image, rng: random.Random) -> Image.Image:
        area = rng.uniform(min_area, max_area)
        aspect = rng.uniform(0.75, 1.33)
        w = min(img.width, max(16, int(img.width * np.sqrt(area * aspect))))
        h = min(img.height, max(16, int(img.height * np.sqrt(area / aspect))))
        x = rng.randint(0, img.width - w)
        y = rng.randint(0, img.height - h)
        return img.crop((x, y, x + w, y + h))
    return f


def mirror(img: Image.Image, rng: random.Random) -> Image.Image:
    return ImageOps.mirror(img)


def color_shift(img: Image.Image, rng: random.Random) -> Image.Image:
    """Brightness, contrast, saturation changes and a colour tint (filters, bad screens)."""
    img = ImageEnhance.Brightness(img).enhance(rng.uniform(0.7, 1.3))
    img = ImageEnhance.Contrast(img).enhance(rng.uniform(0.7, 1.3))
    img = ImageEnhance.Color(img).enhance(rng.uniform(0.5, 1.4))
    h = rng.random()
    tint = tuple(int(255 * c) for c in colorsys.hsv_to_rgb(h, 0.6, 1.0))
    return Image.blend(img, Image.new("RGB", img.size, tint), rng.uniform(0.08, 0.22))


def jpeg(lo: int = 30, hi: int = 90) -> Perturb:
    def f(img: Image.Image, rng: random.Random) -> Image.Image:
        buf = io.BytesIO()
        img.convert("RGB").save(buf, format="JPEG", quality=rng.randint(lo, hi))
        buf.seek(0)
        out = Image.open(buf)
        out.load()
        return out.convert("RGB")
    return f


def downscale(img: Image.Image, rng: random.Random) -> Image.Image:
    """Down to 360p or below (thumbnails, re-uploads)."""
    target = rng.choice((360, 270, 200))
    if img.height <= target:
        target = max(90, img.height // 2)
    w = max(16, round(img.width * target / img.height))
    return img.resize((w, target), Image.Resampling.BILINEAR)


def subtitles(img: Image.Image, rng: random.Random) -> Image.Image:
    """Burned-in subtitles in one of several scripts, white with a dark outline."""
    img = img.copy()
    d = ImageDraw.Draw(img)
    size = max(10, img.height // 14)
    text = rng.choice(SUBTITLES)
    fnt = font(size)
    bbox = d.textbbox((0, 0), text, font=fnt, stroke_width=2)
    tw = bbox[2] - bbox[0]
    x = max(2, (img.width - tw) // 2)
    y = img.height - size * 2 - rng.randint(0, size)
    d.text((x, y), text, font=fnt, fill=(255, 255, 255), stroke_width=max(1, size // 10),
           stroke_fill=(0, 0, 0))
    return img


def borders(img: Image.Image, rng: random.Random) -> Image.Image:
    """Letterbox/pillarbox bars or a solid border."""
    kind = rng.choice(("letterbox", "pillarbox", "frame"))
    colour = rng.choice(((0, 0, 0), (0, 0, 0), (255, 255, 255), (30, 30, 30)))
    w, h = img.size
    if kind == "letterbox":
        bar = int(h * rng.uniform(0.1, 0.25))
        canvas = Image.new("RGB", (w, h + 2 * bar), colour)
        canvas.paste(img, (0, bar))
    elif kind == "pillarbox":
        bar = int(w * rng.uniform(0.1, 0.3))
        canvas = Image.new("RGB", (w + 2 * bar, h), colour)
        canvas.paste(img, (bar, 0))
    else:
        b = int(min(w, h) * rng.uniform(0.04, 0.12))
        canvas = Image.new("RGB", (w + 2 * b, h + 2 * b), colour)
        canvas.paste(img, (b, b))
    return canvas


def phone_screenshot(img: Image.Image, rng: random.Random, *,
                     placed: list[tuple[int, int, int, int]] | None = None) -> Image.Image:
    """The frame inside a portrait phone screenshot: status bar, player, title, comments.
    `placed`: when given, the frame's box (x0, y0, x1, y1) in the screenshot is appended."""
    W = 540
    H = int(W * rng.uniform(2.0, 2.2))
    dark = rng.random() < 0.5
    bg = (18, 18, 18) if dark else (250, 250, 250)
    fg = (230, 230, 230) if dark else (20, 20, 20)
    canvas = Image.new("RGB", (W, H), bg)
    d = ImageDraw.Draw(canvas)
    # status bar
    d.rectangle((0, 0, W, 34), fill=(0, 0, 0) if dark else (235, 235, 235))
    d.text((16, 8), f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}", font=font(16), fill=fg)
    d.rectangle((W - 60, 12, W - 20, 24), outline=fg)
    top = 34 + rng.randint(0, 60)
    fh = int(W * img.height / img.width)
    canvas.paste(img.resize((W, fh), Image.Resampling.BILINEAR), (0, top))
    if placed is not None:
        placed.append((0, top, W, top + fh))
    # player progress bar, title, buttons, comments
    y = top + fh
    d.rectangle((0, y, int(W * rng.uniform(0.1, 0.9)), y + 3), fill=(230, 30, 30))
    y += 18
    d.text((16, y), rng.choice(("Episode highlights", "best scene ever", "клип", "名シーン")),
           font=font(22), fill=fg)
    y += 40
    for i in range(4):
        d.ellipse((16 + i * 90, y, 56 + i * 90, y + 40), fill=(90, 90, 90) if dark else (200, 200, 200))
    y += 70
    while y < H - 60:
        d.ellipse((16, y, 52, y + 36), fill=tuple(rng.randint(60, 220) for _ in range(3)))
        d.text((64, y), rng.choice(CAPTIONS), font=font(15), fill=fg)
        d.text((64, y + 20), "lol " * rng.randint(1, 8), font=font(13), fill=(128, 128, 128))
        y += 62
    return canvas


def meme_caption(img: Image.Image, rng: random.Random, *,
                 placed: list[tuple[int, int, int, int]] | None = None) -> Image.Image:
    """White caption bar(s) with black text above (and sometimes below) the frame.
    `placed`: when given, the frame's box (x0, y0, x1, y1) in the meme is appended."""
    w, h = img.size
    bar = int(h * rng.uniform(0.18, 0.35))
    both = rng.random() < 0.4
    canvas = Image.new("RGB", (w, h + bar * (2 if both else 1)), (255, 255, 255))
    canvas.paste(img, (0, bar))
    if placed is not None:
        placed.append((0, bar, w, bar + h))
    d = ImageDraw.Draw(canvas)
    size = max(12, bar // 3)
    d.text((w // 20, bar // 3), rng.choice(CAPTIONS), font=font(size), fill=(0, 0, 0))
    if both:
        d.text((w // 20, h + bar + bar // 3), rng.choice(CAPTIONS), font=font(size), fill=(0, 0, 0))
    return canvas


def gif_palette(img: Image.Image, rng: random.Random) -> Image.Image:
    """GIF-style palette quantisation (64–128 colours, dithered)."""
    colours = rng.choice((64, 96, 128))
    return img.convert("RGB").quantize(colors=colours, dither=Image.Dither.FLOYDSTEINBERG).convert("RGB")


def blur(img: Image.Image, rng: random.Random) -> Image.Image:
    return img.filter(ImageFilter.GaussianBlur(rng.uniform(0.8, 2.0)))


def chain(*fs: Perturb) -> Perturb:
    def f(img: Image.Image, rng: random.Random) -> Image.Image:
        for g in fs:
            img = g(img, rng)
        return img
    return f


def identity(img: Image.Image, rng: random.Random) -> Image.Image:
    return img


# The evaluation suite: each perturbation alone, then realistic combinations.
SUITE: dict[str, Perturb] = {
    "clean": identity,
    "crop50": crop(0.5, 0.7),
    "crop25": crop(0.25, 0.3),
    "mirror": mirror,
    "color": color_shift,
    "jpeg": jpeg(30, 90),
    "downscale360": downscale,
    "subtitles": subtitles,
    "borders": borders,
    "phone": phone_screenshot,
    "meme": meme_caption,
    "gif": gif_palette,
    "blur": blur,
    "mirror+crop+jpeg": chain(crop(0.4, 0.8), mirror, jpeg(40, 80)),
    "phone+jpeg": chain(phone_screenshot, jpeg(40, 80)),
    "subs+downscale+jpeg": chain(subtitles, downscale, jpeg(30, 70)),
    "meme+color": chain(meme_caption, color_shift, jpeg(50, 90)),
}


def apply(name: str, img: Image.Image, seed: int) -> Image.Image:
    """Apply suite perturbation `name` with its own deterministic RNG."""
    return SUITE[name](img.convert("RGB"), random.Random(seed)).convert("RGB")
