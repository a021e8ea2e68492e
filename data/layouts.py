"""Pictures inside user interfaces: a varied generator of screenshots that hold a video frame.

Each layout family draws one kind of page around a picture (a social post, a chat bubble, a
player with a side bar, a forum post with two pictures, a browser window, a photo of a
monitor…) and records where the picture went, so that tests and `bench.bench_framing` can
measure whether `core.recognition.framing` finds it.

The families are split in two, and the split is by family *and* by parameter range, not only
by seed:

- `TUNE`: the layouts the framing search may be tuned on;
- `HELD`: other families, with other themes, margins, sizes and damage, that nothing is tuned
  on: the measure of whether the search generalises.

`compose(family, pictures, rng)` makes one layout; `layouts(split, pictures, n, seed)` makes
`n` of a split, cycling through its families. Pictures are PIL RGB images (a video frame of
any size); the second picture is used only by the families that show two.
"""

from __future__ import annotations

import io
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from data.perturb import CAPTIONS, font

Box = tuple[int, int, int, int]
RGB = tuple[int, int, int]

WORDS = ("lol", "this scene", "again", "episode 7", "who is she", "best", "sauce?", "ok",
         "no way", "ahh", "wait", "same", "literally me", "😭", "peak", "10/10", "名作", "опять")


@dataclass
class Layout:
    """A screenshot with a picture in it: the image, the main picture's box (x0, y0, x1, y1,
    in pixels of `image`), every picture's box (the main one first), and its family."""

    image: Image.Image
    box: Box
    family: str
    boxes: list[Box] = field(default_factory=list)


@dataclass(frozen=True)
class Theme:
    page: RGB
    card: RGB
    text: RGB
    muted: RGB
    accent: RGB


LIGHT = Theme((255, 255, 255), (255, 255, 255), (20, 20, 20), (110, 110, 110), (29, 155, 240))
DARK = Theme((0, 0, 0), (22, 24, 28), (231, 233, 234), (113, 118, 123), (29, 155, 240))
DIM = Theme((21, 32, 43), (25, 39, 52), (247, 249, 249), (139, 152, 165), (29, 155, 240))
GREY = Theme((240, 242, 245), (255, 255, 255), (5, 5, 5), (101, 103, 107), (24, 119, 242))
# the held-apart set's own themes: coloured, mid-grey and sepia pages
SEPIA = Theme((244, 236, 216), (250, 244, 230), (60, 45, 30), (130, 110, 90), (170, 90, 40))
MIDGREY = Theme((128, 128, 130), (150, 150, 152), (10, 10, 10), (60, 60, 60), (200, 40, 40))
PURPLE = Theme((49, 51, 56), (43, 45, 49), (219, 222, 225), (148, 155, 164), (88, 101, 242))
MINT = Theme((224, 242, 233), (236, 250, 243), (20, 50, 30), (80, 120, 95), (20, 160, 90))

TUNE_THEMES = (LIGHT, DARK, DIM, GREY)
HELD_THEMES = (SEPIA, MIDGREY, PURPLE, MINT, LIGHT, DARK)


def _fit(img: Image.Image, width: int) -> Image.Image:
    h = max(8, round(img.height * width / img.width))
    return img.convert("RGB").resize((width, h), Image.Resampling.BILINEAR)


def _rounded_mask(size: tuple[int, int], radius: int) -> Image.Image:
    m = Image.new("L", size, 0)
    ImageDraw.Draw(m).rounded_rectangle((0, 0, size[0] - 1, size[1] - 1), radius, fill=255)
    return m


def _paste(canvas: Image.Image, pic: Image.Image, xy: tuple[int, int], *, radius: int = 0,
           shadow: int = 0, shadow_alpha: float = 0.35) -> Box:
    """Paste `pic` at `xy` (rounded corners of `radius`, a drop shadow of `shadow` px blur);
    returns its box."""
    x, y = xy
    w, h = pic.size
    if shadow > 0:
        pad = shadow * 3
        sh = Image.new("L", (w + 2 * pad, h + 2 * pad), 0)
        ImageDraw.Draw(sh).rounded_rectangle((pad, pad + shadow // 2, pad + w, pad + h + shadow // 2),
                                             max(radius, 1), fill=int(255 * shadow_alpha))
        sh = sh.filter(ImageFilter.GaussianBlur(shadow))
        canvas.paste(Image.new("RGB", sh.size, (0, 0, 0)), (x - pad, y - pad), sh)
    if radius > 0:
        canvas.paste(pic, (x, y), _rounded_mask(pic.size, radius))
    else:
        canvas.paste(pic, (x, y))
    return (x, y, x + w, y + h)


def _text_lines(d: ImageDraw.ImageDraw, x: int, y: int, width: int, n: int, size: int,
                colour: RGB, rng: random.Random) -> int:
    """`n` lines of chat-like text from (x, y), at most `width` px wide; returns the y after."""
    fnt = font(size)
    for _ in range(n):
        words, line = rng.randint(2, 9), ""
        for _ in range(words):
            cand = (line + " " + rng.choice(WORDS + CAPTIONS)).strip()
            if d.textlength(cand, font=fnt) > width:
                break
            line = cand
        d.text((x, y), line or "ok", font=fnt, fill=colour)
        y += int(size * 1.45)
    return y


def _avatar_header(d: ImageDraw.ImageDraw, x: int, y: int, size: int, theme: Theme,
                   rng: random.Random) -> int:
    d.ellipse((x, y, x + size, y + size), fill=tuple(rng.randint(40, 220) for _ in range(3)))
    d.text((x + size + size // 3, y + size // 8), rng.choice(("Aiko", "mecha_fan", "Дима", "user2291",
                                                           "anime_daily", "ねこ")),
           font=font(max(10, size // 2)), fill=theme.text)
    d.text((x + size + size // 3, y + size // 2 + 2), f"@{rng.randint(10, 9999)} · {rng.randint(1, 23)}h",
           font=font(max(9, size * 2 // 5)), fill=theme.muted)
    return y + size


def _icons_row(d: ImageDraw.ImageDraw, x: int, y: int, width: int, size: int, theme: Theme) -> int:
    for i in range(4):
        cx = x + i * width // 4
        d.rounded_rectangle((cx, y, cx + size, y + size), size // 3, outline=theme.muted, width=2)
        d.text((cx + size + 6, y), str(1 + i * 37), font=font(max(9, size * 3 // 4)), fill=theme.muted)
    return y + size


def jpeg(img: Image.Image, quality: int) -> Image.Image:
    buf = io.BytesIO()
    img.convert("RGB").save(buf, format="JPEG", quality=quality)
    buf.seek(0)
    out = Image.open(buf)
    out.load()
    return out.convert("RGB")


# ----------------------------------------------------------------------------------------
# Tuning families
# ----------------------------------------------------------------------------------------

def margins(pics: Sequence[Image.Image], rng: random.Random) -> Layout:
    """A picture on a flat canvas, with a margin on any one to four sides (tuning)."""
    pic = pics[0]
    theme = rng.choice(TUNE_THEMES)
    pw = rng.randint(420, 900)
    p = _fit(pic, pw)
    sides = [rng.random() < 0.7 for _ in range(4)]
    if not any(sides):
        sides[rng.randrange(4)] = True
    ml, mt, mr, mb = (int(s * rng.uniform(0.04, 0.18) * pw) for s in sides)
    canvas = Image.new("RGB", (ml + pw + mr, mt + p.height + mb), rng.choice((theme.page, theme.card)))
    box = _paste(canvas, p, (ml, mt))
    return Layout(canvas, box, "margins", [box])


def post(pics: Sequence[Image.Image], rng: random.Random) -> Layout:
    """A social media post in a feed: header, caption above, the picture narrower than the
    page with margins on all four sides (maybe rounded), icons below, more posts around
    (tuning)."""
    theme = rng.choice(TUNE_THEMES)
    W = rng.randint(560, 800)
    mx = int(W * rng.uniform(0.05, 0.14))
    pw = W - 2 * mx - int(W * rng.uniform(0.0, 0.1))
    p = _fit(pics[0], pw)
    av = rng.randint(36, 52)
    H_est = 40 + av + 110 + p.height + 80 + rng.randint(20, 200)
    canvas = Image.new("RGB", (W, H_est), theme.page)
    d = ImageDraw.Draw(canvas)
    y = rng.randint(16, 40)
    d.line((0, y - 8, W, y - 8), fill=theme.muted, width=1)
    y = _avatar_header(d, mx, y, av, theme, rng) + 10
    y = _text_lines(d, mx, y, W - 2 * mx, rng.randint(1, 3), rng.randint(15, 19), theme.text, rng) + 8
    box = _paste(canvas, p, (mx, y), radius=rng.choice((0, 0, 12, 16)))
    y = box[3] + 14
    y = _icons_row(d, mx, y, pw, 20, theme) + 16
    d.line((0, y, W, y), fill=theme.muted, width=1)
    _text_lines(d, mx, y + 12, W - 2 * mx, 4, 16, theme.text, rng)
    return Layout(canvas, box, "post", [box])


def chat_bubble(pics: Sequence[Image.Image], rng: random.Random) -> Layout:
    """A messenger conversation: text bubbles, and one bubble holding the picture with a
    padding and a timestamp (tuning)."""
    theme = rng.choice(TUNE_THEMES)
    W, H = rng.randint(480, 720), rng.randint(800, 1100)
    canvas = Image.new("RGB", (W, H), theme.page)
    d = ImageDraw.Draw(canvas)
    mine = rng.random() < 0.5
    bubble = theme.accent if mine else theme.card if theme.card != theme.page else (233, 233, 235)
    y = 20
    for _ in range(rng.randint(1, 3)):  # text bubbles above
        bw = rng.randint(W // 3, W * 2 // 3)
        bx = W - bw - 16 if rng.random() < 0.5 else 16
        d.rounded_rectangle((bx, y, bx + bw, y + 44), 18, fill=bubble)
        d.text((bx + 14, y + 12), rng.choice(WORDS), font=font(17), fill=theme.text)
        y += 58
    pad = rng.randint(4, 10)
    pw = int(W * rng.uniform(0.55, 0.8))
    p = _fit(pics[0], pw)
    bx = W - pw - 2 * pad - 16 if mine else 16
    d.rounded_rectangle((bx, y, bx + pw + 2 * pad, y + p.height + 2 * pad + 26), 18, fill=bubble)
    box = _paste(canvas, p, (bx + pad, y + pad), radius=rng.choice((0, 10, 14)))
    d.text((bx + pw - 40, box[3] + 5), f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}",
           font=font(13), fill=theme.muted if not mine else (230, 230, 230))
    y = box[3] + pad + 40
    while y < H - 60:
        bw = rng.randint(W // 4, W * 2 // 3)
        bx = W - bw - 16 if rng.random() < 0.5 else 16
        d.rounded_rectangle((bx, y, bx + bw, y + 44), 18, fill=bubble)
        d.text((bx + 14, y + 12), rng.choice(WORDS), font=font(17), fill=theme.text)
        y += 58
    return Layout(canvas, box, "chat_bubble", [box])


def player_sidebar(pics: Sequence[Image.Image], rng: random.Random) -> Layout:
    """A desktop video site: the player on the left, a side bar of recommended videos with
    small thumbnails on the right, a title and comments below (tuning)."""
    theme = rng.choice(TUNE_THEMES)
    W = rng.randint(1000, 1400)
    side = int(W * rng.uniform(0.24, 0.32))
    m = rng.randint(16, 40)
    pw = W - side - 3 * m
    p = _fit(pics[0], pw)
    H = m + 50 + p.height + 200
    canvas = Image.new("RGB", (W, H), theme.page)
    d = ImageDraw.Draw(canvas)
    d.rectangle((0, 0, W, 46), fill=theme.card)
    d.rounded_rectangle((W // 3, 9, W * 2 // 3, 37), 14, outline=theme.muted, width=1)
    d.text((m, 12), "AnimeTube", font=font(20), fill=theme.text)
    box = _paste(canvas, p, (m, 46 + m), radius=rng.choice((0, 0, 10)))
    d.rectangle((box[0], box[3] - 4, box[0] + int(pw * rng.uniform(0.1, 0.9)), box[3] - 1),
                fill=(230, 30, 30))
    _text_lines(d, m, box[3] + 12, pw, 1, 22, theme.text, rng)
    _text_lines(d, m, box[3] + 50, pw, 4, 15, theme.muted, rng)
    # side bar: thumbnails of other videos (crops of the second picture) and titles
    other = pics[1] if len(pics) > 1 else pics[0]
    y, tw = 46 + m, int(side * 0.45)
    while y < H - 80:
        t = _fit(other.crop((rng.randint(0, other.width // 3), 0, other.width, other.height)), tw)
        t = t.crop((0, 0, tw, min(t.height, int(tw * 9 / 16))))
        canvas.paste(t, (W - side - m // 2, y))
        _text_lines(d, W - side - m // 2 + tw + 8, y, side - tw - 12, 2, 13, theme.text, rng)
        y += t.height + 12
    return Layout(canvas, box, "player_sidebar", [box])


def phone_status(pics: Sequence[Image.Image], rng: random.Random) -> Layout:
    """A portrait phone screenshot of a gallery or a story: status bar, the picture centred
    with flat bands above and below (and thin side margins sometimes), a navigation bar
    (tuning)."""
    theme = rng.choice(TUNE_THEMES)
    W = rng.randint(360, 600)
    H = int(W * rng.uniform(1.9, 2.2))
    canvas = Image.new("RGB", (W, H), theme.page)
    d = ImageDraw.Draw(canvas)
    d.text((14, 6), f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}", font=font(15), fill=theme.text)
    d.rectangle((W - 50, 9, W - 18, 20), outline=theme.text)
    mx = rng.choice((0, 0, rng.randint(6, 30)))
    p = _fit(pics[0], W - 2 * mx)
    y = (H - p.height) // 2 + rng.randint(-H // 10, H // 10)
    box = _paste(canvas, p, (mx, y))
    d.text((14, 40), "‹  " + rng.choice(("Photos", "Story", "Media")), font=font(18), fill=theme.text)
    _icons_row(d, 24, H - 70, W - 48, 22, theme)
    d.rounded_rectangle((W // 2 - 60, H - 14, W // 2 + 60, H - 9), 3, fill=theme.text)
    return Layout(canvas, box, "phone_status", [box])


# ----------------------------------------------------------------------------------------
# Held-apart families (never tuned on)
# ----------------------------------------------------------------------------------------

def forum_two(pics: Sequence[Image.Image], rng: random.Random) -> Layout:
    """A forum post with two pictures of different sizes (stacked or side by side), a quote
    box, and captions above and below; the main box is the larger picture (held apart)."""
    theme = rng.choice(HELD_THEMES)
    W = rng.randint(700, 1100)
    m = int(W * rng.uniform(0.03, 0.2))
    big_w = int((W - 2 * m) * rng.uniform(0.7, 1.0))
    second = pics[1] if len(pics) > 1 else pics[0].transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    side_by_side = rng.random() < 0.4
    if side_by_side:
        big_w = int((W - 2 * m) * rng.uniform(0.55, 0.62))
        small_w = int((W - 2 * m - big_w) * rng.uniform(0.75, 0.92))
    else:
        small_w = int(big_w * rng.uniform(0.45, 0.75))
    a, b = _fit(pics[0], big_w), _fit(second, small_w)
    H = 150 + a.height + b.height + 260
    canvas = Image.new("RGB", (W, H), theme.page)
    d = ImageDraw.Draw(canvas)
    d.rectangle((0, 0, W, 34), fill=theme.card)
    d.text((m, 8), "Forum › Anime › Screenshots", font=font(15), fill=theme.muted)
    y = _text_lines(d, m, 50, W - 2 * m, rng.randint(1, 2), 17, theme.text, rng) + 10
    d.rectangle((m, y, W - m, y + 50), fill=theme.card, outline=theme.muted)
    _text_lines(d, m + 12, y + 10, W - 2 * m - 24, 1, 14, theme.muted, rng)
    y += 66
    radius = rng.choice((0, 6, 20))
    if side_by_side:
        bigfirst = rng.random() < 0.5
        xa = m if bigfirst else W - m - big_w
        xb = W - m - small_w if bigfirst else m
        box = _paste(canvas, a, (xa, y), radius=radius)
        box2 = _paste(canvas, b, (xb, y + rng.randint(0, max(1, a.height - b.height))), radius=radius)
        y = max(box[3], box2[3]) + 12
    else:
        if rng.random() < 0.5:
            box = _paste(canvas, a, (m, y), radius=radius)
            box2 = _paste(canvas, b, (m, box[3] + rng.randint(8, 30)), radius=radius)
        else:
            box2 = _paste(canvas, b, (m, y), radius=radius)
            box = _paste(canvas, a, (m, box2[3] + rng.randint(8, 30)), radius=radius)
        y = max(box[3], box2[3]) + 12
    y = _text_lines(d, m, y, W - 2 * m, rng.randint(1, 3), 16, theme.text, rng)
    canvas = canvas.crop((0, 0, W, min(H, y + rng.randint(20, 120))))
    return Layout(canvas, box, "forum_two", [box, box2])


def browser(pics: Sequence[Image.Image], rng: random.Random) -> Layout:
    """A browser window: tab strip, address bar, a page with a left navigation column, the
    picture centred in its article with a drop shadow, a caption above and below (held
    apart)."""
    theme = rng.choice(HELD_THEMES)
    W, H = rng.randint(1100, 1500), rng.randint(760, 1000)
    canvas = Image.new("RGB", (W, H), theme.page)
    d = ImageDraw.Draw(canvas)
    chrome = (53, 54, 58) if sum(theme.page) < 300 else (222, 225, 230)
    d.rectangle((0, 0, W, 82), fill=chrome)
    for i in range(rng.randint(2, 5)):
        d.rounded_rectangle((12 + i * 210, 8, 212 + i * 210, 40), 8,
                            fill=theme.page if i == 0 else chrome, outline=theme.muted)
        d.text((26 + i * 210, 16), rng.choice(("Anime wiki", "Gallery", "Episode 4 – thread", "Search")),
               font=font(13), fill=theme.text)
    d.rounded_rectangle((90, 46, W - 90, 74), 14, fill=theme.card)
    d.text((110, 52), "https://example.org/anime/screenshots/" + str(rng.randint(100, 999)),
           font=font(14), fill=theme.muted)
    nav = int(W * rng.uniform(0.12, 0.22))
    d.rectangle((0, 82, nav, H), fill=theme.card)
    _text_lines(d, 14, 100, nav - 20, 12, 14, theme.muted, rng)
    art_w = W - nav - int(W * rng.uniform(0.05, 0.25))
    pw = int(art_w * rng.uniform(0.45, 0.9))
    p = _fit(pics[0], pw)
    if 82 + 80 + p.height + 80 > H:
        p = _fit(pics[0], int(pw * (H - 82 - 170) / p.height))
    x = nav + (W - nav - p.width) // 2
    y = _text_lines(d, x, 100, p.width, rng.randint(1, 2), 18, theme.text, rng) + 12
    box = _paste(canvas, p, (x, y), radius=rng.choice((0, 8, 14)), shadow=rng.choice((0, 6, 10, 14)))
    _text_lines(d, x, box[3] + 16, p.width, rng.randint(1, 3), 15, theme.muted, rng)
    return Layout(canvas, box, "browser", [box])


def card_shadow(pics: Sequence[Image.Image], rng: random.Random) -> Layout:
    """A card with rounded corners and a soft drop shadow on a gradient background, a
    title above and a caption below the picture, padding inside the card (held apart)."""
    theme = rng.choice(HELD_THEMES)
    pw = rng.randint(380, 820)
    p = _fit(pics[0], pw)
    pad = rng.randint(10, 40)
    W = pw + 2 * pad + 2 * rng.randint(30, 160)
    H = p.height + 2 * pad + 2 * rng.randint(60, 180) + 80
    g = np.linspace(0, 1, H)[:, None, None]
    c0, c1 = np.array(theme.page, float), np.array(theme.card, float) * 0.85 + 20
    bg = (c0 * (1 - g) + np.minimum(c1, 255) * g) * np.ones((1, W, 1))
    canvas = Image.fromarray(bg.astype(np.uint8))
    cx, cy = (W - pw - 2 * pad) // 2, rng.randint(40, H - p.height - 2 * pad - 80)
    card = Image.new("RGB", (pw + 2 * pad, p.height + 2 * pad + 70), theme.card)
    _paste(canvas, card, (cx, cy), radius=18, shadow=rng.randint(8, 20))
    d = ImageDraw.Draw(canvas)
    d.text((cx + pad, cy + 10), rng.choice(CAPTIONS), font=font(18), fill=theme.text)
    box = _paste(canvas, p, (cx + pad, cy + 40), radius=rng.choice((0, 8, 20)))
    _text_lines(d, cx + pad, box[3] + 8, pw, 1, 14, theme.muted, rng)
    return Layout(canvas, box, "card_shadow", [box])


def _perspective_coeffs(src: Sequence[tuple[float, float]], dst: Sequence[tuple[float, float]]
                        ) -> list[float]:
    """PIL's PERSPECTIVE coefficients mapping output points `dst` to input points `src`."""
    a = []
    for (x, y), (u, v) in zip(dst, src, strict=True):
        a.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        a.append([0, 0, 0, x, y, 1, -v * x, -v * y])
    bvec = np.array([c for p in src for c in p], float)
    return np.linalg.solve(np.array(a, float), bvec).tolist()


def screen_photo(pics: Sequence[Image.Image], rng: random.Random) -> Layout:
    """A phone photo of a monitor showing the frame: bezel and desk around it, a slight
    perspective, moiré, a glare, sensor noise and JPEG; the box is the displayed picture's
    bounding box (held apart)."""
    pic = pics[0].convert("RGB")
    pw = rng.randint(520, 900)
    p = _fit(pic, pw)
    bezel = rng.randint(12, 40)
    W, H = int(pw * rng.uniform(1.2, 1.45)), int(p.height * rng.uniform(1.35, 1.7))
    room = np.array([rng.randint(40, 200) for _ in range(3)], float)
    g = np.linspace(0.7, 1.1, H)[:, None, None] * np.linspace(0.9, 1.05, W)[None, :, None]
    canvas = Image.fromarray(np.clip(room * g, 0, 255).astype(np.uint8))
    x0 = (W - pw) // 2 + rng.randint(-W // 20, W // 20)
    y0 = (H - p.height) // 2 + rng.randint(-H // 20, H // 20)
    ImageDraw.Draw(canvas).rounded_rectangle((x0 - bezel, y0 - bezel, x0 + pw + bezel,
                                              y0 + p.height + bezel), 8, fill=(18, 18, 20))
    # the screen: a little darker and bluer than the file, with moiré
    arr = np.asarray(p, np.float32) * rng.uniform(0.8, 1.0) + np.array([0, 2, 10], np.float32)
    yy, xx = np.mgrid[0:p.height, 0:pw]
    f1, f2, ang = rng.uniform(0.25, 0.45), rng.uniform(0.02, 0.06), rng.uniform(-0.4, 0.4)
    moire = np.sin(f1 * (xx * np.cos(ang) + yy * np.sin(ang))) * np.sin(f2 * (yy - xx * ang))
    arr += (moire * rng.uniform(4, 12))[..., None]
    canvas.paste(Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)), (x0, y0))
    # perspective: each corner moved by up to ~3% of the size
    j = rng.uniform(0.01, 0.035)
    corners = [(0, 0), (W, 0), (W, H), (0, H)]
    moved = [(x + rng.uniform(-j, j) * W, y + rng.uniform(-j, j) * H) for x, y in corners]
    coeffs = _perspective_coeffs(corners, moved)
    out = canvas.transform((W, H), Image.Transform.PERSPECTIVE, coeffs, Image.Resampling.BILINEAR)
    # where the picture's corners went (inverse of the mapping: solve the other way round)
    inv = _perspective_coeffs(moved, corners)
    def fwd(x: float, y: float) -> tuple[float, float]:
        a, b, c, d_, e, f, gg, h = inv
        den = gg * x + h * y + 1
        return (a * x + b * y + c) / den, (d_ * x + e * y + f) / den
    pts = [fwd(x, y) for x, y in ((x0, y0), (x0 + pw, y0), (x0 + pw, y0 + p.height), (x0, y0 + p.height))]
    xs, ys = [q[0] for q in pts], [q[1] for q in pts]
    box = (max(0, round(min(xs))), max(0, round(min(ys))), min(W, round(max(xs))), min(H, round(max(ys))))
    # glare and noise
    a = np.asarray(out, np.float32)
    gx, gy, gr = rng.uniform(0.2, 0.8) * W, rng.uniform(0.2, 0.8) * H, rng.uniform(0.1, 0.3) * W
    yy, xx = np.mgrid[0:H, 0:W]
    glare = np.exp(-(((xx - gx) ** 2 + (yy - gy) ** 2) / (2 * gr * gr))) * rng.uniform(30, 80)
    nrng = np.random.default_rng(rng.randrange(1 << 30))
    a = a + glare[..., None] + nrng.normal(0, rng.uniform(2, 6), a.shape)
    img = Image.fromarray(np.clip(a, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(0.6))
    return Layout(jpeg(img, rng.randint(55, 85)), box, "screen_photo", [box])


def blurred_fill(pics: Sequence[Image.Image], rng: random.Random) -> Layout:
    """A portrait story: the picture over a blurred, darkened, enlarged copy of itself, with
    a sticker caption above and a reply bar below (held apart)."""
    pic = pics[0].convert("RGB")
    W = rng.randint(400, 620)
    H = int(W * rng.uniform(1.75, 2.1))
    scale = H / pic.height
    big = pic.resize((int(pic.width * scale), H), Image.Resampling.BILINEAR)
    left = (big.width - W) // 2
    bg = big.crop((left, 0, left + W, H)).filter(ImageFilter.GaussianBlur(rng.uniform(14, 30)))
    bg = Image.fromarray((np.asarray(bg, np.float32) * rng.uniform(0.45, 0.7)).astype(np.uint8))
    mx = rng.choice((0, rng.randint(8, 40)))
    p = _fit(pic, W - 2 * mx)
    y = (H - p.height) // 2 + rng.randint(-H // 12, H // 12)
    box = _paste(bg, p, (mx, y), radius=rng.choice((0, 12)))
    d = ImageDraw.Draw(bg)
    d.rounded_rectangle((W // 6, y - 70, W * 5 // 6, y - 22), 12, fill=(255, 255, 255))
    d.text((W // 6 + 14, y - 60), rng.choice(CAPTIONS)[:22], font=font(18), fill=(0, 0, 0))
    d.rounded_rectangle((14, H - 60, W - 70, H - 18), 20, outline=(230, 230, 230), width=2)
    return Layout(bg, box, "blurred_fill", [box])


Family = Callable[[Sequence[Image.Image], random.Random], Layout]

TUNE: dict[str, Family] = {
    "margins": margins,
    "post": post,
    "chat_bubble": chat_bubble,
    "player_sidebar": player_sidebar,
    "phone_status": phone_status,
}
HELD: dict[str, Family] = {
    "forum_two": forum_two,
    "browser": browser,
    "card_shadow": card_shadow,
    "screen_photo": screen_photo,
    "blurred_fill": blurred_fill,
}
SPLITS = {"tune": TUNE, "held": HELD}


def compose(family: str, pictures: Sequence[Image.Image], rng: random.Random, *,
            quality: tuple[int, int] | None = None) -> Layout:
    """One layout of `family` around `pictures[0]` (and `pictures[1]` where two are shown);
    JPEG at a quality drawn from `quality` when given (the screen photo is always JPEG)."""
    fam = {**TUNE, **HELD}.get(family)
    if fam is None:
        raise ValueError(f"unknown layout family {family!r}; known: {', '.join({**TUNE, **HELD})}")
    out = fam(pictures, rng)
    if quality is not None and family != "screen_photo":
        out.image = jpeg(out.image, rng.randint(*quality))
    return out


def layouts(split: str, pictures: Sequence[Image.Image], n: int, seed: int = 0
            ) -> Iterator[Layout]:
    """`n` layouts of `split` ("tune" or "held"), cycling through its families; picture k is
    `pictures[k % len]`, the second one the next. Half are JPEG-compressed (tuning: quality
    60–90, held apart: 35–80)."""
    fams = SPLITS.get(split)
    if fams is None:
        raise ValueError(f"unknown split {split!r}: 'tune' or 'held'")
    if not pictures:
        raise ValueError("no pictures to lay out")
    names = sorted(fams)
    quality = (60, 90) if split == "tune" else (35, 80)
    for k in range(n):
        rng = random.Random(seed * 1_000_003 + k * 7919 + (0 if split == "tune" else 17))
        pics = [pictures[k % len(pictures)], pictures[(k + 1) % len(pictures)]]
        yield compose(names[k % len(names)], pics, rng,
                      quality=quality if rng.random() < 0.5 else None)
