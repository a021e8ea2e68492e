"""Anime-style characters for the synthetic library: random casts and sprite drawing.

A character is drawn with PIL as cel-shaded shapes: back hair, full body (legs, skirt or
trousers, torso with an outfit, arms), face (round / oval / pointed chin), large eyes
with a dark lash line, a two-tone iris, a pupil and white highlights, eyebrows, a small
nose, a mouth (closed / half open / open), blush, front hair (hair cap, bangs, side
locks, a highlight band, an optional ahoge) and accessories. Views are ``front``,
``right`` (profile facing right) and ``left`` (the mirror image).

Geometry is in head units ``u``: the head centre is (0, 0), the chin is near y = +0.5,
the top of the hair near y = -0.7. Sprites are rendered at 2x and box-filtered down.

**Face box convention** (ground truth): the head box spans the hair cap (top of the hair
to the chin, left to right edge of the hair around the skull; in profile from the back
of the hair to the nose tip). It excludes long hair, twin tails and ponytails below the
chin, ahoge, cat ears and bows.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from data.synth.common import RGB, catmull_rom, mix, outline_of, rng_for, shade, sub_seed, to_rgb

HAIR_COLOURS: dict[str, RGB] = {
    "pink": (244, 150, 190),
    "black": (52, 46, 64),
    "blonde": (246, 214, 120),
    "silver": (210, 212, 228),
    "blue": (84, 128, 218),
    "brown": (128, 84, 56),
    "red": (206, 62, 64),
    "green": (96, 176, 120),
    "purple": (150, 104, 198),
    "orange": (242, 148, 64),
    "navy": (56, 66, 128),
    "white": (238, 238, 244),
}
EYE_COLOURS: dict[str, RGB] = {
    "blue": (60, 120, 220),
    "green": (50, 160, 90),
    "red": (200, 40, 50),
    "amber": (220, 150, 40),
    "purple": (140, 80, 200),
    "brown": (130, 80, 40),
    "grey": (120, 130, 140),
    "pink": (230, 90, 150),
    "teal": (30, 160, 160),
    "gold": (230, 190, 60),
}
SKIN_TONES: list[RGB] = [(255, 233, 216), (252, 222, 199), (244, 208, 182), (214, 170, 132)]
HAIR_STYLES_F = ("long", "twintails", "ponytail", "bob", "bun", "short")
HAIR_STYLES_M = ("short", "spiky", "messy", "long")
FACE_SHAPES = ("round", "oval", "pointed")
OUTFITS = ("sailor", "blazer", "hoodie", "armor", "jumpsuit", "dress")
ACCESSORIES = ("none", "ribbon", "clip", "glasses", "headband", "cat_ears")
GIVEN_F = (
    "Aoi",
    "Hana",
    "Yui",
    "Mio",
    "Rin",
    "Sakura",
    "Hinata",
    "Mei",
    "Nanami",
    "Kaede",
    "Airi",
    "Chika",
    "Emi",
    "Haruka",
    "Kanon",
    "Misaki",
    "Nozomi",
    "Riko",
    "Shiori",
    "Tsubasa",
)
GIVEN_M = (
    "Haruto",
    "Ren",
    "Sora",
    "Yuto",
    "Kaito",
    "Riku",
    "Daiki",
    "Takumi",
    "Shun",
    "Kenji",
    "Itsuki",
    "Hayato",
    "Souta",
    "Akira",
    "Makoto",
    "Ryo",
)
FAMILY = (
    "Tachibana",
    "Kisaragi",
    "Amano",
    "Shirogane",
    "Hoshino",
    "Takanashi",
    "Minase",
    "Kurosawa",
    "Aizawa",
    "Fujimiya",
    "Sakuraba",
    "Hayase",
    "Kiryu",
    "Mochizuki",
    "Nanase",
    "Otonashi",
    "Sagara",
    "Tsukishiro",
    "Yukimura",
    "Kamiya",
    "Asahina",
    "Izumi",
)

VIEWS = ("front", "right", "left")
EYE_STATES = ("open", "half", "closed")
MOUTH_STATES = ("closed", "half", "open")


@dataclass(frozen=True)
class DrawStyle:
    """How a series draws its characters (shared by every character of the series)."""

    line: float = 0.022  # outline width in head units
    eye_w: float = 0.21  # eye width in head units
    eye_h: float = 0.25  # eye height in head units (female; male eyes are 75% of it)
    lash: float = 0.045  # thickness of the upper lash line
    highlights: int = 2  # white highlights per eye
    shading: bool = True  # cel shadow under the bangs and chin
    line_tint: float = 0.0  # 0 = dark lines, 1 = lines tinted like the fill


@dataclass(frozen=True)
class CharacterSpec:
    """Everything needed to draw one character identically in every shot."""

    name: str
    sex: str  # "f" | "m"
    hair: str
    hair_rgb: RGB
    hair_style: str
    eyes: str
    eye_rgb: RGB
    skin_rgb: RGB
    face_shape: str
    face_width: float
    hair_volume: float
    outfit: str
    outfit_rgb: RGB
    accent_rgb: RGB
    accessory: str
    ahoge: bool
    blush: bool
    eye_scale: float
    bangs: int
    seed: int
    lookalike_of: str | None = None

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("hair_rgb", "eye_rgb", "skin_rgb", "outfit_rgb", "accent_rgb"):
            d[k] = list(d[k])
        return d


@dataclass
class Sprite:
    """A rendered character pose: RGBA image, head-centre anchor and head box (pixels)."""

    image: Image.Image
    anchor: tuple[float, float]
    head_box: tuple[float, float, float, float]  # relative to the anchor
    _alpha: np.ndarray | None = None

    @property
    def alpha(self) -> np.ndarray:
        if self._alpha is None:
            self._alpha = np.asarray(self.image.getchannel("A"))
        return self._alpha

    def scaled(self, f: float) -> Sprite:
        """A resized copy (for zoom shots); anchor and box scale with it."""
        w, h = self.image.size
        nw, nh = max(1, round(w * f)), max(1, round(h * f))
        fx, fy = nw / w, nh / h
        img = self.image.resize((nw, nh), Image.Resampling.BILINEAR)
        x0, y0, x1, y1 = self.head_box
        return Sprite(
            img, (self.anchor[0] * fx, self.anchor[1] * fy), (x0 * fx, y0 * fy, x1 * fx, y1 * fy)
        )


def make_character(
    rng: np.random.Generator,
    *,
    name: str,
    sex: str,
    like: CharacterSpec | None = None,
    copy_style: bool = False,
) -> CharacterSpec:
    """Draw a random character. With `like`, copy its hair colour, face shape and skin
    (a look-alike from another series), and with `copy_style` its hair style too."""
    hair = str(rng.choice(sorted(HAIR_COLOURS)))
    styles = HAIR_STYLES_F if sex == "f" else HAIR_STYLES_M
    hair_style = str(rng.choice(styles))
    eyes = str(rng.choice(sorted(EYE_COLOURS)))
    skin = SKIN_TONES[int(rng.choice(len(SKIN_TONES), p=[0.35, 0.35, 0.2, 0.1]))]
    face = str(rng.choice(FACE_SHAPES))
    face_width = float(rng.uniform(0.93, 1.07))
    outfit = str(rng.choice(OUTFITS if sex == "f" else ("blazer", "hoodie", "armor", "jumpsuit")))
    outfit_rgb = to_rgb(rng.uniform(40, 235, 3))
    accent_rgb = to_rgb(rng.uniform(30, 240, 3))
    acc_p = [0.3, 0.16, 0.14, 0.14, 0.13, 0.13] if sex == "f" else [0.6, 0.0, 0.0, 0.25, 0.15, 0.0]
    accessory = str(rng.choice(ACCESSORIES, p=acc_p))
    lookalike = None
    if like is not None:
        hair, face, skin = like.hair, like.face_shape, like.skin_rgb
        face_width = like.face_width
        if copy_style and like.sex == sex:
            hair_style = like.hair_style
        lookalike = like.name
    return CharacterSpec(
        name=name,
        sex=sex,
        hair=hair,
        hair_rgb=HAIR_COLOURS[hair],
        hair_style=hair_style,
        eyes=eyes,
        eye_rgb=EYE_COLOURS[eyes],
        skin_rgb=skin,
        face_shape=face,
        face_width=face_width,
        hair_volume=float(rng.uniform(1.0, 1.14)),
        outfit=outfit,
        outfit_rgb=outfit_rgb,
        accent_rgb=accent_rgb,
        accessory=accessory,
        ahoge=bool(rng.random() < 0.3),
        blush=bool(rng.random() < (0.6 if sex == "f" else 0.2)),
        eye_scale=float(rng.uniform(0.92, 1.1) if sex == "f" else rng.uniform(0.85, 1.0)),
        bangs=int(rng.integers(4, 8)),
        seed=sub_seed(rng),
        lookalike_of=lookalike,
    )


# ---------------------------------------------------------------------------------------
# drawing


class _Pen:
    """Maps head units to sprite pixels and draws outlined shapes."""

    def __init__(self, img: Image.Image, ox: float, oy: float, s: float, st: DrawStyle) -> None:
        self.d = ImageDraw.Draw(img)
        self.ox, self.oy, self.s, self.st = ox, oy, s, st
        self.lw = max(1, round(st.line * s))

    def p(self, x: float, y: float) -> tuple[float, float]:
        return (self.ox + x * self.s, self.oy + y * self.s)

    def line_col(self, fill: RGB) -> RGB:
        return mix(outline_of(fill), shade(fill, 0.7), self.st.line_tint)

    def poly(
        self,
        pts: list[tuple[float, float]],
        fill: RGB | None,
        outline: bool = True,
        smooth: int = 0,
        closed: bool = True,
        col: RGB | None = None,
    ) -> None:
        if smooth:
            pts = catmull_rom(pts, smooth, closed=closed)
        xy = [self.p(x, y) for x, y in pts]
        oc = col if col is not None else (self.line_col(fill) if fill else (40, 30, 40))
        self.d.polygon(
            xy, fill=fill, outline=oc if outline else None, width=self.lw if outline else 1
        )

    def ellipse(
        self,
        cx: float,
        cy: float,
        rx: float,
        ry: float,
        fill: RGB | None,
        outline: bool = True,
        col: RGB | None = None,
        width: float | None = None,
    ) -> None:
        x0, y0 = self.p(cx - rx, cy - ry)
        x1, y1 = self.p(cx + rx, cy + ry)
        if x1 - x0 < 1 or y1 - y0 < 1:
            return
        oc = col if col is not None else (self.line_col(fill) if fill else (40, 30, 40))
        w = self.lw if width is None else max(1, round(width * self.s))
        self.d.ellipse(
            (x0, y0, x1, y1), fill=fill, outline=oc if outline else None, width=w if outline else 1
        )

    def line(self, pts: list[tuple[float, float]], col: RGB, width: float, smooth: int = 0) -> None:
        if smooth:
            pts = catmull_rom(pts, smooth, closed=False)
        self.d.line(
            [self.p(x, y) for x, y in pts],
            fill=col,
            width=max(1, round(width * self.s)),
            joint="curve",
        )


def _face_points(ch: CharacterSpec) -> tuple[list[tuple[float, float]], float]:
    """Front face outline (closed) and the chin y."""
    fw = ch.face_width
    cheek, jaw, chin, chin_w = {
        "round": ((0.43, 0.12), (0.35, 0.35), 0.48, 0.12),
        "oval": ((0.42, 0.10), (0.31, 0.37), 0.51, 0.08),
        "pointed": ((0.41, 0.08), (0.26, 0.38), 0.55, 0.03),
    }[ch.face_shape]
    right = [(0.30, -0.47), (0.42, -0.2), cheek, jaw, (chin_w, chin - 0.015)]
    pts: list[tuple[float, float]] = [(0.0, -0.55)]
    pts += [(x * fw, y) for x, y in right]
    pts += [(0.0, chin)]
    pts += [(-x * fw, y) for x, y in reversed(right)]
    return pts, chin


def _bang_points(ch: CharacterSpec) -> list[tuple[float, float]]:
    """Zigzag lower edge of the bangs from the right temple to the left temple."""
    r = rng_for(ch.seed, "bangs")
    hv = ch.hair_volume
    n = ch.bangs
    spiky = ch.hair_style in ("spiky", "messy")
    xs = np.linspace(0.44 * hv, -0.44 * hv, 2 * n + 1)
    pts: list[tuple[float, float]] = [(0.50 * hv, 0.04)]
    for i, x in enumerate(xs):
        if i % 2 == 1:  # tip
            centre = 1.0 - abs(x) / (0.5 * hv)
            y = -0.13 + 0.06 * centre + float(r.uniform(-0.03, 0.03)) + (0.03 if spiky else 0.0)
            pts.append((float(x) + float(r.uniform(-0.03, 0.03)), y))
        else:  # notch
            pts.append((float(x), -0.30 + float(r.uniform(-0.04, 0.03))))
    pts.append((-0.50 * hv, 0.04))
    return pts


def head_box_units(ch: CharacterSpec, view: str) -> tuple[float, float, float, float]:
    """The ground-truth head box in head units for a view (see the module docstring)."""
    hv = ch.hair_volume
    top = -0.15 - 0.56 * hv
    if view == "front":
        _, chin = _face_points(ch)
        half = max(0.52 * hv, 0.44 * ch.face_width)
        return (-half, top, half, chin)
    box = (-0.05 - 0.56 * hv, top, 0.48, 0.48)
    if view == "left":
        return (-box[2], box[1], -box[0], box[3])
    return box


def _back_hair(pen: _Pen, ch: CharacterSpec, profile: bool) -> None:
    hv = ch.hair_volume
    col = shade(ch.hair_rgb, 0.84)
    st = ch.hair_style
    top = -0.15 - 0.56 * hv
    if profile:
        if st in ("long", "twintails"):
            pen.poly(
                [
                    (0.1, top),
                    (-0.45 * hv, -0.5),
                    (-0.62 * hv, 0.0),
                    (-0.62, 0.8),
                    (-0.55, 1.35),
                    (-0.35, 1.15),
                    (-0.2, 1.3),
                    (-0.12, 0.7),
                    (0.0, 0.3),
                ],
                col,
                smooth=4,
            )
        elif st == "ponytail":
            pen.poly(
                [
                    (-0.35, -0.45),
                    (-0.7, -0.3),
                    (-0.95, 0.3),
                    (-0.85, 1.05),
                    (-0.7, 0.5),
                    (-0.45, 0.0),
                ],
                col,
                smooth=4,
            )
        elif st in ("bob", "bun", "short"):
            pen.poly(
                [
                    (0.1, top),
                    (-0.5 * hv, -0.45),
                    (-0.6 * hv, 0.0),
                    (-0.48, 0.45 if st == "bob" else 0.25),
                    (-0.1, 0.25),
                ],
                col,
                smooth=4,
            )
        else:  # spiky / messy
            pts = []
            for i in range(9):
                a = math.pi * (0.5 + i / 8)
                r = (0.72 if i % 2 == 0 else 0.55) * hv
                pts.append((-0.05 + r * math.cos(a), -0.15 - r * math.sin(a) * 0.95))
            pts.append((-0.05, 0.2))
            pen.poly(pts, col)
        if st == "bun":
            pen.ellipse(-0.2, top - 0.02, 0.2, 0.19, ch.hair_rgb)
        return
    if st == "long":
        pen.poly(
            [
                (0.0, top),
                (0.5 * hv, -0.45),
                (0.6 * hv, 0.2),
                (0.64, 0.9),
                (0.66, 1.35),
                (0.45, 1.22),
                (0.3, 1.4),
                (0.0, 1.25),
                (-0.3, 1.4),
                (-0.45, 1.22),
                (-0.66, 1.35),
                (-0.64, 0.9),
                (-0.6 * hv, 0.2),
                (-0.5 * hv, -0.45),
            ],
            col,
            smooth=4,
        )
    elif st in ("bob", "short", "bun", "messy"):
        low = 0.5 if st == "bob" else 0.22
        pen.poly(
            [
                (0.0, top),
                (0.52 * hv, -0.42),
                (0.6 * hv, 0.05),
                (0.55 * hv, low),
                (0.3, low - 0.08),
                (-0.3, low - 0.08),
                (-0.55 * hv, low),
                (-0.6 * hv, 0.05),
                (-0.52 * hv, -0.42),
            ],
            col,
            smooth=4,
        )
    elif st == "spiky":
        pts = []
        for i in range(15):
            a = math.pi * (-0.1 + 1.2 * i / 14)
            r = (0.74 if i % 2 == 0 else 0.55) * hv
            pts.append((r * math.cos(a), -0.12 - r * math.sin(a)))
        pen.poly(pts + [(-0.3, 0.2), (0.3, 0.2)], col)
    elif st in ("twintails", "ponytail"):
        pen.poly(
            [
                (0.0, top),
                (0.52 * hv, -0.42),
                (0.58 * hv, 0.05),
                (0.5, 0.3),
                (-0.5, 0.3),
                (-0.58 * hv, 0.05),
                (-0.52 * hv, -0.42),
            ],
            col,
            smooth=4,
        )
    if st == "twintails":
        for sgn in (1, -1):
            pen.poly(
                [
                    (sgn * 0.42, -0.5),
                    (sgn * 0.8, -0.35),
                    (sgn * 1.02, 0.2),
                    (sgn * 0.98, 0.9),
                    (sgn * 0.82, 1.5),
                    (sgn * 0.78, 0.95),
                    (sgn * 0.64, 0.35),
                    (sgn * 0.5, -0.25),
                ],
                ch.hair_rgb,
                smooth=4,
            )
            pen.ellipse(sgn * 0.5, -0.45, 0.07, 0.07, ch.accent_rgb)
    if st == "ponytail":
        pen.poly(
            [(0.3, -0.55), (0.72, -0.42), (0.9, 0.1), (0.82, 1.0), (0.7, 0.5), (0.5, -0.1)],
            ch.hair_rgb,
            smooth=4,
        )
        pen.ellipse(0.4, -0.5, 0.07, 0.07, ch.accent_rgb)
    if st == "bun":
        pen.ellipse(0.0, top - 0.08, 0.21, 0.19, ch.hair_rgb)


def _body(pen: _Pen, ch: CharacterSpec, profile: bool, bottom: float) -> None:
    skin, cloth, acc = ch.skin_rgb, ch.outfit_rgb, ch.accent_rgb
    female = ch.sex == "f"
    skirt = female and ch.outfit in ("sailor", "blazer", "dress")
    k = 0.55 if profile else 1.0  # profiles are narrower
    sh = (0.58 if female else 0.7) * k
    pants = shade(acc, 0.6) if not skirt else None
    if bottom > 2.4:
        # legs (behind the skirt), socks and shoes
        top_leg = 3.4 if skirt else 2.6
        leg_col = skin if skirt else pants
        for sgn in (1, -1):
            x = sgn * 0.2 * k
            pen.poly(
                [(x - 0.13, top_leg), (x + 0.13, top_leg), (x + 0.09, 5.9), (x - 0.09, 5.9)],
                leg_col,
            )
            if skirt:
                sock = (245, 245, 245) if ch.seed % 2 else (40, 40, 50)
                pen.poly(
                    [(x - 0.11, 5.0), (x + 0.11, 5.0), (x + 0.09, 5.95), (x - 0.09, 5.95)], sock
                )
            pen.ellipse(x + (0.08 if profile else 0.0), 6.0, 0.16, 0.09, (60, 45, 45))
        if skirt:
            pen.poly(
                [(-0.5 * k, 2.6), (0.5 * k, 2.6), (0.8 * k, 3.6), (-0.8 * k, 3.6)],
                acc if ch.outfit != "dress" else cloth,
            )
            for i in range(1, 6):
                x0 = -0.5 * k + i * k / 6
                pen.line([(x0, 2.65), (x0 * 1.55, 3.55)], outline_of(acc), 0.012)
    # neck with a shadow under the chin
    pen.poly([(-0.1, 0.3), (0.1, 0.3), (0.11, 0.9), (-0.11, 0.9)], skin)
    if pen.st.shading:
        pen.poly(
            [(-0.1, 0.35), (0.1, 0.35), (0.1, 0.55), (-0.1, 0.62)], shade(skin, 0.86), outline=False
        )
    if ch.outfit == "hoodie":
        pen.ellipse(0.0 if not profile else -0.2, 0.8, 0.42 * k + 0.05, 0.16, shade(cloth, 0.85))
    torso = [
        (-sh + 0.1, 0.72),
        (-0.13, 0.7),
        (0.0, 0.96),
        (0.13, 0.7),
        (sh - 0.1, 0.72),
        (sh + 0.05, 0.92),
        (sh - 0.06, 1.6),
        (sh - 0.14 * k, 2.05),
        (sh - 0.06, 2.75),
        (-sh + 0.06, 2.75),
        (-sh + 0.14 * k, 2.05),
        (-sh + 0.06, 1.6),
        (-sh - 0.05, 0.92),
    ]
    pen.poly(torso, cloth)
    for ax in (0.12,) if profile else (sh + 0.05, -(sh + 0.05)):
        sgn = 1 if ax > 0 else -1
        pen.poly(
            [
                (ax - sgn * 0.1, 0.82),
                (ax + sgn * 0.07, 0.88),
                (ax + sgn * 0.13, 2.55),
                (ax - sgn * 0.05, 2.6),
            ],
            shade(cloth, 0.93),
        )
        pen.ellipse(ax + sgn * 0.04, 2.7, 0.09, 0.1, skin)
    o = ch.outfit
    if o == "sailor":
        pen.poly(
            [
                (-sh + 0.05, 0.78),
                (-0.13, 0.75),
                (0.0, 1.2),
                (0.13, 0.75),
                (sh - 0.05, 0.78),
                (sh - 0.02, 1.15),
                (0.0, 1.45),
                (-sh + 0.02, 1.15),
            ],
            shade(acc, 0.5),
        )
        pen.line([(-sh + 0.12, 1.05), (0.0, 1.33), (sh - 0.12, 1.05)], (245, 245, 245), 0.025)
        pen.poly([(0.0, 1.2), (-0.22, 1.1), (-0.2, 1.36)], (210, 40, 60))
        pen.poly([(0.0, 1.2), (0.22, 1.1), (0.2, 1.36)], (210, 40, 60))
    elif o == "blazer":
        pen.poly(
            [(-0.13, 0.75), (0.0, 1.0), (0.13, 0.75), (0.2, 1.4), (0.0, 1.6), (-0.2, 1.4)],
            (246, 246, 246),
        )
        pen.poly([(-0.04, 0.92), (0.04, 0.92), (0.06, 1.55), (0.0, 1.65), (-0.06, 1.55)], acc)
        pen.line([(0.2, 1.4), (0.1, 2.5)], outline_of(cloth), 0.02)
    elif o == "hoodie":
        for sgn in (1, -1):
            pen.line([(sgn * 0.1, 0.95), (sgn * 0.12, 1.5)], (240, 240, 240), 0.02)
        pen.poly(
            [(-0.3 * k, 1.8), (0.3 * k, 1.8), (0.34 * k, 2.2), (-0.34 * k, 2.2)], shade(cloth, 0.9)
        )
    elif o == "armor":
        for sgn in (1, -1) if not profile else (1,):
            pen.ellipse(sgn * (sh - 0.02), 0.92, 0.2, 0.13, mix(acc, (200, 200, 210), 0.5))
        pen.poly(
            [(-0.3 * k, 1.1), (0.3 * k, 1.1), (0.25 * k, 1.7), (-0.25 * k, 1.7)],
            mix(acc, (220, 220, 230), 0.6),
        )
    elif o == "jumpsuit":
        pen.poly([(-0.16, 0.6), (0.16, 0.6), (0.17, 0.85), (-0.17, 0.85)], shade(cloth, 0.8))
        pen.poly([(-sh + 0.05, 1.3), (sh - 0.05, 1.6), (sh - 0.05, 1.72), (-sh + 0.05, 1.42)], acc)
    elif o == "dress":
        for i in range(-3, 4):
            pen.ellipse(i * 0.065, 0.82 + abs(i) * 0.01, 0.05, 0.05, (250, 250, 250))


def _eye(
    pen: _Pen, ch: CharacterSpec, cx: float, cy: float, w: float, h: float, state: str, outer: int
) -> None:
    """One eye; `outer` is +1 if the outer corner is at +x."""
    st = pen.st
    lash_col = mix((30, 20, 30), outline_of(ch.hair_rgb), 0.35)
    lash = st.lash * (1.0 if ch.sex == "f" else 0.7)
    if state == "closed":
        pen.line(
            [(cx - w * 0.55, cy + 0.01), (cx, cy + h * 0.14), (cx + w * 0.55, cy + 0.0)],
            lash_col,
            lash * 0.7,
            smooth=4,
        )
        pen.line(
            [(cx + outer * w * 0.5, cy), (cx + outer * w * 0.68, cy - h * 0.1)],
            lash_col,
            lash * 0.5,
        )
        return
    iris = ch.eye_rgb
    pen.ellipse(cx, cy, w / 2, h / 2, (255, 255, 255), outline=False)
    ix = cx - outer * w * 0.04
    pen.ellipse(ix, cy + h * 0.03, w * 0.39, h * 0.46, shade(iris, 0.5), outline=False)
    pen.ellipse(ix, cy + h * 0.12, w * 0.34, h * 0.36, iris, outline=False)
    pen.ellipse(
        ix, cy + h * 0.3, w * 0.22, h * 0.14, mix(iris, (255, 255, 255), 0.45), outline=False
    )
    pen.ellipse(ix, cy + h * 0.05, w * 0.15, h * 0.2, shade(iris, 0.25), outline=False)
    # highlights: the big one upper-left (light from the top-left), a small one lower-right
    pen.ellipse(ix - w * 0.15, cy - h * 0.16, w * 0.15, w * 0.15, (255, 255, 255), outline=False)
    pen.ellipse(ix + w * 0.14, cy + h * 0.24, w * 0.065, w * 0.065, (255, 255, 255), outline=False)
    if st.highlights > 2:
        pen.ellipse(
            ix + w * 0.02, cy - h * 0.28, w * 0.05, w * 0.05, (255, 255, 255), outline=False
        )
    if state == "half":
        pen.poly(
            [
                (cx - w * 0.62, cy - h * 0.62),
                (cx + w * 0.62, cy - h * 0.62),
                (cx + w * 0.62, cy - h * 0.02),
                (cx - w * 0.62, cy - h * 0.02),
            ],
            ch.skin_rgb,
            outline=False,
        )
        top = cy - h * 0.02
        pen.line(
            [
                (cx - w * 0.58, top + h * 0.04),
                (cx, top - h * 0.03),
                (cx + w * 0.58, top + h * 0.04),
            ],
            lash_col,
            lash,
            smooth=3,
        )
        return
    # thick upper lash line with a flick at the outer corner, thin lower lash
    pen.line(
        [
            (cx - outer * w * 0.55, cy - h * 0.12),
            (cx - outer * w * 0.2, cy - h * 0.5),
            (cx + outer * w * 0.25, cy - h * 0.5),
            (cx + outer * w * 0.58, cy - h * 0.22),
        ],
        lash_col,
        lash,
        smooth=4,
    )
    pen.poly(
        [
            (cx + outer * w * 0.45, cy - h * 0.34),
            (cx + outer * w * 0.74, cy - h * 0.26),
            (cx + outer * w * 0.55, cy - h * 0.12),
        ],
        lash_col,
        outline=False,
    )
    if ch.sex == "f":
        pen.line(
            [(cx - outer * w * 0.1, cy + h * 0.5), (cx + outer * w * 0.38, cy + h * 0.42)],
            lash_col,
            lash * 0.35,
        )


def _mouth(pen: _Pen, x: float, y: float, state: str, scale: float) -> None:
    dark = (150, 48, 62)
    line = (120, 60, 60)
    if state == "closed":
        pen.line(
            [(x - 0.06 * scale, y), (x, y + 0.012), (x + 0.06 * scale, y - 0.004)],
            line,
            0.014,
            smooth=3,
        )
    elif state == "half":
        pen.ellipse(x, y + 0.015, 0.045 * scale, 0.035, dark, col=line, width=0.012)
        pen.ellipse(x, y + 0.035, 0.025 * scale, 0.012, (230, 120, 130), outline=False)
    else:
        pen.poly(
            [(x - 0.075 * scale, y - 0.01), (x + 0.075 * scale, y - 0.01), (x, y + 0.09)],
            dark,
            smooth=3,
            col=line,
        )
        pen.ellipse(x, y + 0.05, 0.035 * scale, 0.018, (232, 120, 130), outline=False)


def _front_hair(pen: _Pen, ch: CharacterSpec, profile: bool) -> None:
    hv = ch.hair_volume
    hair = ch.hair_rgb
    top = -0.15 - 0.56 * hv
    if profile:
        cap = catmull_rom(
            [
                (0.36, -0.05),
                (0.4, -0.38),
                (0.2, top + 0.04),
                (-0.15, top),
                (-0.5 * hv, -0.4),
                (-0.6 * hv, -0.05),
                (-0.4 * hv, 0.2),
            ],
            5,
            closed=False,
        )
        cap += [(-0.16, 0.05), (-0.05, -0.2), (0.1, -0.12), (0.22, -0.27), (0.3, -0.06)]
        if ch.hair_style in ("long", "twintails", "bob"):
            pen.poly(
                [(-0.25, -0.2), (-0.08, -0.2), (-0.05, 0.45), (-0.14, 0.55), (-0.22, 0.3)], hair
            )
        pen.poly(cap, hair)
        if ch.hair_style == "spiky":
            pen.poly([(0.0, top + 0.05), (0.45, -0.55), (0.2, top + 0.2)], hair)
        for i in range(3):
            a = 0.6 + 0.35 * i
            x, y = -0.05 + 0.42 * hv * math.cos(a), -0.15 - 0.46 * hv * math.sin(a)
            pen.poly(
                [
                    (x - 0.03, y - 0.05),
                    (x + 0.03, y - 0.06),
                    (x + 0.02, y + 0.05),
                    (x - 0.03, y + 0.05),
                ],
                mix(hair, (255, 255, 255), 0.5),
                outline=False,
            )
        return
    # side locks over the cheeks
    if ch.hair_style in ("long", "twintails", "ponytail", "bob", "bun"):
        low = 0.55 if ch.hair_style != "bun" else 0.3
        for sgn in (1, -1):
            pen.poly(
                [
                    (sgn * 0.36, -0.2),
                    (sgn * 0.52 * hv, -0.15),
                    (sgn * 0.52, 0.25),
                    (sgn * 0.45, low),
                    (sgn * 0.37, 0.22),
                    (sgn * 0.33, -0.05),
                ],
                hair,
                smooth=3,
            )
    elif ch.hair_style in ("short", "messy", "spiky"):
        for sgn in (1, -1):
            pen.poly(
                [
                    (sgn * 0.38, -0.2),
                    (sgn * 0.5 * hv, -0.15),
                    (sgn * 0.46, 0.2),
                    (sgn * 0.38, 0.05),
                ],
                hair,
            )
    arc = catmull_rom(
        [
            (0.5 * hv, 0.04),
            (0.53 * hv, -0.25),
            (0.42 * hv, -0.52),
            (0.22, top + 0.03),
            (0.0, top),
            (-0.22, top + 0.03),
            (-0.42 * hv, -0.52),
            (-0.53 * hv, -0.25),
            (-0.5 * hv, 0.04),
        ],
        5,
        closed=False,
    )
    pen.poly(arc + list(reversed(_bang_points(ch)))[1:-1], hair)
    # angel-ring highlight
    hl = mix(hair, (255, 255, 255), 0.55)
    for i in range(5):
        a = math.pi * (0.25 + 0.125 * i)
        x, y = 0.4 * hv * math.cos(a), -0.15 - 0.41 * hv * math.sin(a)
        pen.poly(
            [
                (x - 0.05, y - 0.015),
                (x + 0.05, y - 0.03),
                (x + 0.045, y + 0.02),
                (x - 0.045, y + 0.035),
            ],
            hl,
            outline=False,
        )
    if ch.hair_style in ("spiky", "messy"):
        for sgn in (1, -1):
            pen.poly(
                [(sgn * 0.2, top + 0.08), (sgn * 0.62, top - 0.02), (sgn * 0.42, top + 0.25)], hair
            )


def _accessory(pen: _Pen, ch: CharacterSpec, profile: bool, stage: str) -> None:
    hv = ch.hair_volume
    top = -0.15 - 0.56 * hv
    acc = ch.accent_rgb
    a = ch.accessory
    if stage == "before_hair" and a == "cat_ears":
        for sgn in (1, -1) if not profile else (-1,):
            bx = sgn * 0.3 * hv if not profile else -0.2
            pen.poly(
                [(bx - 0.14, top + 0.12), (bx + sgn * 0.14, top - 0.22), (bx + 0.16, top + 0.1)],
                ch.hair_rgb,
            )
            pen.poly(
                [(bx - 0.06, top + 0.08), (bx + sgn * 0.11, top - 0.12), (bx + 0.08, top + 0.08)],
                (245, 170, 190),
                outline=False,
            )
    if stage == "eyes" and a == "glasses":
        col = (60, 50, 70)
        xs = (0.19 * ch.face_width, -0.19 * ch.face_width) if not profile else (0.25,)
        for x in xs:
            pen.poly(
                [(x - 0.14, -0.03), (x + 0.14, -0.03), (x + 0.13, 0.22), (x - 0.13, 0.22)],
                None,
                col=col,
            )
        if not profile:
            pen.line([(-0.05, 0.02), (0.05, 0.02)], col, 0.02)
    if stage == "after_hair":
        if a == "ribbon":
            bx, by = (0.38 * hv, -0.52) if not profile else (-0.25, -0.6)
            pen.poly([(bx, by), (bx - 0.2, by - 0.14), (bx - 0.18, by + 0.12)], acc)
            pen.poly([(bx, by), (bx + 0.2, by - 0.14), (bx + 0.18, by + 0.12)], acc)
            pen.ellipse(bx, by, 0.05, 0.05, shade(acc, 0.85))
        elif a == "clip":
            bx = -0.28 if not profile else 0.1
            pen.poly(
                [(bx - 0.1, -0.26), (bx + 0.1, -0.32), (bx + 0.11, -0.27), (bx - 0.09, -0.21)], acc
            )
        elif a == "headband":
            pts = [
                (0.45 * hv * math.cos(t), -0.2 - 0.5 * hv * math.sin(t))
                for t in np.linspace(0.15, math.pi - 0.15, 9)
            ]
            if profile:
                pts = [(x * 0.8 - 0.05, y) for x, y in pts]
            pen.line(pts, acc, 0.07)
        if ch.ahoge:
            pen.poly(
                [
                    (0.0, top + 0.03),
                    (0.08, top - 0.2),
                    (0.22, top - 0.16),
                    (0.1, top - 0.14),
                    (0.05, top + 0.04),
                ],
                ch.hair_rgb,
                smooth=3,
            )


def _draw(pen: _Pen, ch: CharacterSpec, view: str, eyes: str, mouth: str, bottom: float) -> None:
    st = pen.st
    profile = view != "front"
    skin = ch.skin_rgb
    _back_hair(pen, ch, profile)
    _body(pen, ch, profile, bottom)
    ew, eh = st.eye_w * ch.eye_scale, st.eye_h * ch.eye_scale * (1.0 if ch.sex == "f" else 0.72)
    if not profile:
        pen.ellipse(0.43 * ch.face_width, 0.06, 0.07, 0.11, skin)
        pen.ellipse(-0.43 * ch.face_width, 0.06, 0.07, 0.11, skin)
        pts, chin = _face_points(ch)
        pen.poly(pts, skin, smooth=4)
        if st.shading:  # cel shadow cast by the bangs
            b = [(x, y + 0.07) for x, y in _bang_points(ch)[1:-1]]
            b = [(max(-0.36, min(0.36, x)) * ch.face_width, y) for x, y in b]
            pen.poly(
                b + [(-0.36 * ch.face_width, -0.3), (0.36 * ch.face_width, -0.3)],
                shade(skin, 0.9),
                outline=False,
            )
        if ch.blush:
            for sgn in (1, -1):
                cx = sgn * 0.25 * ch.face_width
                pen.ellipse(cx, 0.27, 0.09, 0.035, mix(skin, (245, 120, 140), 0.35), outline=False)
                for k in (-1, 0, 1):
                    pen.line(
                        [(cx + k * 0.035 - 0.012, 0.29), (cx + k * 0.035 + 0.012, 0.25)],
                        mix(skin, (220, 80, 100), 0.6),
                        0.008,
                    )
        ex = 0.19 * ch.face_width
        for sgn in (1, -1):
            _eye(pen, ch, sgn * ex, 0.1, ew, eh, eyes, sgn)
            brow_y = 0.1 - eh / 2 - 0.075
            pen.line(
                [
                    (sgn * (ex - ew * 0.45), brow_y + 0.02),
                    (sgn * ex, brow_y - 0.005),
                    (sgn * (ex + ew * 0.5), brow_y + 0.015),
                ],
                outline_of(ch.hair_rgb),
                0.016,
                smooth=3,
            )
        pen.line([(0.012, 0.245), (0.0, 0.265)], shade(skin, 0.72), 0.012)
        _mouth(pen, 0.0, 0.37 if chin > 0.5 else 0.35, mouth, 1.0)
    else:
        pen.poly(
            [
                (-0.15, -0.35),
                (0.28, -0.45),
                (0.4, -0.12),
                (0.41, 0.0),
                (0.385, 0.08),
                (0.475, 0.18),
                (0.4, 0.22),
                (0.42, 0.28),
                (0.39, 0.32),
                (0.41, 0.36),
                (0.36, 0.46),
                (0.1, 0.47),
                (-0.12, 0.27),
                (-0.2, 0.0),
            ],
            skin,
        )
        pen.ellipse(-0.07, 0.09, 0.07, 0.11, skin)
        pen.line([(-0.07, 0.04), (-0.1, 0.1), (-0.06, 0.15)], shade(skin, 0.7), 0.012)
        if ch.blush:
            pen.ellipse(0.2, 0.25, 0.07, 0.03, mix(skin, (245, 120, 140), 0.35), outline=False)
        _eye(pen, ch, 0.24, 0.09, ew * 0.62, eh, eyes, -1)
        brow_y = 0.09 - eh / 2 - 0.07
        pen.line(
            [(0.17, brow_y + 0.01), (0.25, brow_y - 0.01), (0.33, brow_y + 0.01)],
            outline_of(ch.hair_rgb),
            0.016,
        )
        m = {"closed": [(0.33, 0.325), (0.395, 0.32)]}.get(mouth)
        if m:
            pen.line(m, (120, 60, 60), 0.014)
        else:
            d = 0.05 if mouth == "half" else 0.085
            pen.poly(
                [(0.4, 0.3), (0.335, 0.31), (0.39, 0.31 + d)], (150, 48, 62), col=(120, 60, 60)
            )
    _accessory(pen, ch, profile, "eyes")
    _accessory(pen, ch, profile, "before_hair")
    _front_hair(pen, ch, profile)
    _accessory(pen, ch, profile, "after_hair")


# Canvas extents in head units around the head centre.
_LEFT, _RIGHT, _TOP = -1.35, 1.35, -1.08


def render_character(
    ch: CharacterSpec,
    style: DrawStyle,
    *,
    u: float,
    view: str = "front",
    eyes: str = "open",
    mouth: str = "closed",
    bottom: float = 6.3,
) -> Sprite:
    """Render one pose of a character as an RGBA sprite.

    Args:
        ch: The character.
        style: The series' drawing style.
        u: Head unit in output pixels (the head is roughly 1.25u tall).
        view: "front", "right" (profile facing right) or "left".
        eyes: "open", "half" or "closed".
        mouth: "closed", "half" or "open".
        bottom: How far below the head centre to draw, in head units (6.3 = feet).

    Returns:
        The sprite; its anchor is the head centre.
    """
    if view not in VIEWS or eyes not in EYE_STATES or mouth not in MOUTH_STATES:
        raise ValueError(f"bad pose {view!r}/{eyes!r}/{mouth!r}")
    bottom = max(0.7, min(bottom, 6.3))
    ss = 2 if u < 140 else 1
    s = u * ss
    w = math.ceil((_RIGHT - _LEFT) * s / ss) * ss
    h = math.ceil((bottom - _TOP) * s / ss) * ss
    img = Image.new("RGBA", (w, h), (0, 0, 0, 0))
    pen = _Pen(img, -_LEFT * s, -_TOP * s, s, style)
    _draw(pen, ch, "front" if view == "front" else "right", eyes, mouth, bottom)
    if ss > 1:
        img = img.reduce(ss)
    if view == "left":
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    ax = (-_LEFT) * u if view != "left" else img.size[0] - (-_LEFT) * u
    ay = -_TOP * u
    bx0, by0, bx1, by1 = head_box_units(ch, view)
    return Sprite(img, (ax, ay), (bx0 * u, by0 * u, bx1 * u, by1 * u))


def reference_image(
    ch: CharacterSpec, style: DrawStyle, size: int = 128, background: RGB = (236, 236, 240)
) -> Image.Image:
    """A clean, centred front-view head crop of a character (for the character gallery)."""
    u = size / 1.5
    spr = render_character(ch, style, u=u, view="front", bottom=1.6)
    canvas = Image.new("RGB", spr.image.size, background)
    canvas.paste(spr.image, (0, 0), spr.image)
    ax, ay = spr.anchor
    x0, y0, x1, y1 = spr.head_box
    cx, cy = ax + (x0 + x1) / 2, ay + (y0 + y1) / 2
    half = max(x1 - x0, y1 - y0) / 2 * 1.18
    return canvas.resize(
        (size, size), Image.Resampling.LANCZOS, box=(cx - half, cy - half, cx + half, cy + half)
    )
