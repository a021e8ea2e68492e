"""A small real-art check: screenshots composed from human-drawn Ren'Py sprites.

Debian's `renpy-thequestion` and `renpy-demo` packages (Expat licence, (c) Tom Rothamel)
hold anime-style sprites of three characters (Sylvie, Eileen, Lucy) in several expressions,
and photo backgrounds. `compose_set` puts one to three sprites on a background (scaled,
placed side by side, partly overlapping, sometimes mirrored), crops the picture, resizes it
and re-encodes it (JPEG or WebP at a random quality), and keeps each face's head box and name
as ground truth. The head boxes are annotated by hand once per sprite file
(`bench/realart/sprites.json`); the composition moves them with the sprite.

Nothing here is trained on: the set measures how the models carry over to art they were not
made from. Backgrounds are split into a tuning part and a held-apart part
(`sprites.json`'s "backgrounds"); thresholds may be tuned on the former only.

    apt-get download renpy-thequestion renpy-demo
    dpkg-deb -x renpy-thequestion_*.deb DIR && dpkg-deb -x renpy-demo_*.deb DIR
    python -m bench.bench_realart --renpy DIR
"""

from __future__ import annotations

import io
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageFilter

from core.errors import AniRecError

SPRITES_JSON = Path(__file__).resolve().parent.parent / "bench" / "realart" / "sprites.json"
GAMES = "usr/share/games/renpy"  # where dpkg-deb -x puts the games
CANVAS = (1280, 720)


class RealArtError(AniRecError):
    """The Ren'Py art is missing or does not match the sprite annotations."""


@dataclass(frozen=True)
class Sprite:
    file: str  # relative to the games directory
    character: str
    series: str
    box: tuple[int, int, int, int]  # head box in the sprite's pixels
    image: Image.Image = field(repr=False, compare=False)


@dataclass
class RealFace:
    character: str
    series: str
    sprite: str
    box: tuple[int, int, int, int]  # in the composed picture's pixels


@dataclass
class Composed:
    name: str
    background: str
    split: str  # "tuning" or "held_apart"
    image: Image.Image = field(repr=False)
    faces: list[RealFace] = field(default_factory=list)
    encoding: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "background": self.background, "split": self.split,
                "size": list(self.image.size), "encoding": self.encoding,
                "faces": [{"character": f.character, "series": f.series, "sprite": f.sprite,
                           "box": list(f.box)} for f in self.faces]}


def games_dir(root: Path) -> Path:
    """The directory holding `the_question/` and `demo/`: `root` itself or `root/usr/share/games/renpy`."""
    root = Path(root)
    for cand in (root, root / GAMES):
        if (cand / "the_question").is_dir() or (cand / "demo").is_dir():
            return cand
    raise RealArtError(f"no Ren'Py games under {root} (expected {GAMES}/the_question and demo; "
                       "apt-get download renpy-thequestion renpy-demo, then dpkg-deb -x each into it)")


def read_spec(path: Path = SPRITES_JSON) -> dict[str, Any]:
    return json.loads(Path(path).read_text())


def load_sprites(games: Path, spec: dict[str, Any] | None = None) -> list[Sprite]:
    """The annotated sprites that exist under `games` (RGBA)."""
    spec = spec or read_spec()
    out = []
    for s in spec["sprites"]:
        p = games / s["file"]
        if not p.exists():
            continue
        with Image.open(p) as im:
            out.append(Sprite(s["file"], s["character"], s["series"], tuple(s["box"]), im.convert("RGBA")))
    if not out:
        raise RealArtError(f"none of the annotated sprites is under {games}")
    return out


def load_backgrounds(games: Path, spec: dict[str, Any] | None = None) -> dict[str, list[tuple[str, Image.Image]]]:
    """{"tuning": [(file, RGB image)], "held_apart": [...]}: the backgrounds that exist."""
    spec = spec or read_spec()
    out: dict[str, list[tuple[str, Image.Image]]] = {}
    for split, files in spec["backgrounds"].items():
        for f in files:
            p = games / f
            if p.exists():
                with Image.open(p) as im:
                    out.setdefault(split, []).append((f, im.convert("RGB")))
    return out


def _background(bg: Image.Image, rng: random.Random) -> Image.Image:
    """A 1280x720 window of the background, zoomed in by up to 1.6x."""
    w, h = CANVAS
    zoom = rng.uniform(1.0, 1.6)
    scale = max(w / bg.width, h / bg.height) * zoom
    big = bg.resize((max(w, round(bg.width * scale)), max(h, round(bg.height * scale))), Image.Resampling.BILINEAR)
    x0, y0 = rng.randint(0, big.width - w), rng.randint(0, big.height - h)
    return big.crop((x0, y0, x0 + w, y0 + h))


def _covered(alpha_layers: list[tuple[Image.Image, tuple[int, int]]], box: tuple[float, ...]) -> float:
    """The share of `box` covered (alpha > 128) by the given placed alpha masks."""
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    area = max(1, (x1 - x0) * (y1 - y0))
    mask = Image.new("L", (max(1, x1 - x0), max(1, y1 - y0)), 0)
    for a, (ox, oy) in alpha_layers:
        mask.paste(255, (ox - x0, oy - y0), a.point(lambda v: 255 if v > 128 else 0))
    return float((np.asarray(mask) > 0).sum()) / area


Placed = tuple[Sprite, tuple[float, ...], Image.Image, tuple[int, int]]  # sprite, head box, image, offset


def _place(sprites: list[Sprite], rng: random.Random) -> list[Placed] | None:
    """One to three sprites, scaled, placed left to right (back to front); None when the
    layout hides a face (more than 15% covered by a sprite in front of it) or cuts it."""
    w, h = CANVAS
    k = rng.choices((1, 2, 3), weights=(0.3, 0.4, 0.3))[0]
    chosen = [rng.choice(sprites) for _ in range(k)]
    placed: list[tuple[Sprite, tuple[float, ...], Image.Image, tuple[int, int]]] = []
    slots = sorted(rng.uniform(0.12, 0.88) for _ in range(k))
    for spr, xc in zip(chosen, slots, strict=True):
        s = rng.uniform(0.3, 1.2) * h / spr.image.height
        img = spr.image.resize((max(1, round(spr.image.width * s)), max(1, round(spr.image.height * s))),
                               Image.Resampling.LANCZOS)
        bx0, by0, bx1, by1 = (v * s for v in spr.box)
        if rng.random() < 0.5:
            img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            bx0, bx1 = img.width - bx1, img.width - bx0
        ox = round(xc * w - (bx0 + bx1) / 2)
        oy = round(h - img.height + rng.uniform(0, 0.35) * img.height)  # standing on the bottom edge or cut by it
        oy = max(oy, -round(by0))  # the head stays in the picture
        placed.append((spr, (bx0 + ox, by0 + oy, bx1 + ox, by1 + oy), img, (ox, oy)))
    for i, (_, box, _, _) in enumerate(placed):
        if box[3] > h or box[0] < 0 or box[2] > w:
            return None
        front = [(p[2].getchannel("A"), p[3]) for p in placed[i + 1:]]
        if front and _covered(front, box) > 0.15:
            return None
    return placed


def _finish(canvas: Image.Image, faces: list[tuple[Sprite, tuple[float, ...]]], rng: random.Random
            ) -> tuple[Image.Image, list[tuple[Sprite, tuple[int, int, int, int]]], str] | None:
    """Crop (every face stays at least 90% inside), resize, blur now and then, re-encode."""
    w, h = canvas.size
    cw, ch = round(w * rng.uniform(0.65, 1.0)), round(h * rng.uniform(0.65, 1.0))
    x0, y0 = rng.randint(0, w - cw), rng.randint(0, h - ch)
    out_faces = []
    for spr, (a, b, c, d) in faces:
        cx0, cy0, cx1, cy1 = max(a, x0), max(b, y0), min(c, x0 + cw), min(d, y0 + ch)
        if cx1 <= cx0 or cy1 <= cy0 or (cx1 - cx0) * (cy1 - cy0) < 0.9 * (c - a) * (d - b):
            return None
        out_faces.append((spr, (cx0 - x0, cy0 - y0, cx1 - x0, cy1 - y0)))
    img = canvas.crop((x0, y0, x0 + cw, y0 + ch))
    width = rng.choice((640, 854, 960, 1280))
    f = width / cw
    img = img.resize((width, max(1, round(ch * f))), Image.Resampling.BILINEAR)
    if rng.random() < 0.2:
        img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 1.5)))
    buf = io.BytesIO()
    if rng.random() < 0.3:
        q = rng.randint(40, 90)
        img.save(buf, format="WEBP", quality=q)
        enc = f"webp q{q}"
    else:
        q = rng.randint(35, 95)
        img.save(buf, format="JPEG", quality=q)
        enc = f"jpeg q{q}"
    buf.seek(0)
    with Image.open(buf) as im:
        img = im.convert("RGB")
    boxes = [(spr, (int(round(a * f)), int(round(b * f)), int(round(c * f)), int(round(d * f))))
             for spr, (a, b, c, d) in out_faces]
    return img, boxes, enc


def compose_set(games: Path, n: int = 160, seed: int = 0, spec: dict[str, Any] | None = None) -> list[Composed]:
    """`n` composed screenshots, alternating between the tuning and held-apart backgrounds
    (one in three tuning). Deterministic for a given seed and art."""
    spec = spec or read_spec()
    sprites = load_sprites(games, spec)
    bgs = load_backgrounds(games, spec)
    if not bgs.get("held_apart") or not bgs.get("tuning"):
        raise RealArtError(f"the backgrounds of {SPRITES_JSON.name} are not under {games}")
    rng = random.Random(seed)
    out: list[Composed] = []
    while len(out) < n:
        split = "tuning" if len(out) % 3 == 0 else "held_apart"
        bg_file, bg = rng.choice(bgs[split])
        placed = _place(sprites, rng)
        if placed is None:
            continue
        canvas = _background(bg, rng)
        for _, _, img, off in placed:
            canvas.paste(img, off, img)  # alpha-blended over what is already there
        faces = [(p[0], p[1]) for p in placed]
        done = _finish(canvas, faces, rng)
        if done is None:
            continue
        img, boxes, enc = done
        out.append(Composed(name=f"realart-{len(out):04d}", background=bg_file, split=split, image=img,
                            encoding=enc, faces=[RealFace(s.character, s.series, s.file, b) for s, b in boxes]))
    return out


def save_set(items: list[Composed], out_dir: Path) -> Path:
    """The pictures (PNG of the re-encoded picture, so nothing is lost twice) and `labels.json`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for it in items:
        it.image.save(out_dir / f"{it.name}.png")
    p = out_dir / "labels.json"
    p.write_text(json.dumps({"images": [dict(it.to_json(), file=f"{it.name}.png") for it in items]}, indent=1))
    return p
