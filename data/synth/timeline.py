"""Episode planning and frame rendering for the synthetic library.

An episode is: the series' opening (identical footage in every episode), for episode 2+
a recap (footage copied frame for frame from the previous episode's main part), an
episode title card, the main part (shots: static, pans, zooms, with characters who move,
blink and talk), and the series' ending (identical in every episode) when it has one.

Planning is cheap and deterministic (numbers only); rendering turns a planned shot and a
frame index into a PIL image plus the ground truth of the faces in it. The same shot
plan rendered twice gives the same pixels, which is how openings, endings and recaps
repeat footage exactly.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from data.synth.characters import Sprite, render_character
from data.synth.common import DRAWING_RATE, clamp, mix, rng_for, shade, smoothstep, sub_seed
from data.synth.scenes import (
    FOREGROUND_KINDS,
    PROP_KINDS,
    Panorama,
    credits_sprite,
    paint_foreground,
    paint_location,
    paint_prop,
    speed_lines,
    text_sprite,
    title_card,
)
from data.synth.series import SeriesSpec, build_series

# Panoramas are larger than the frame so shots can pan and pick different windows.
PANO_W, PANO_H = 1.7, 1.3
OCCLUDED_AT = 0.25  # a face with at least this fraction hidden is "occluded"
MIN_VISIBLE = 0.15  # faces with less than this fraction visible are left out of the ground truth

LINES = (
    "Wait for me!",
    "Did you finish the homework?",
    "I won't lose this time.",
    "That's not what I meant...",
    "Let's go together.",
    "You're late again!",
    "Is that really true?",
    "I've been looking everywhere for you.",
    "Hmph. Whatever.",
    "Thank you... for everything.",
    "Something feels wrong here.",
    "We have to hurry!",
    "I promise I'll come back.",
    "Don't tell anyone, okay?",
    "Look, over there!",
    "Why are you always like this?",
    "It's a secret.",
    "I can still do it!",
    "The signal is getting stronger.",
    "Did you hear that?",
    "Good morning!",
    "This is our last chance.",
    "I don't remember you at all.",
    "Leave it to me!",
    "You saw it too, didn't you?",
    "Let's meet after school.",
    "It's beautiful...",
    "I'm not crying!",
    "Who are you?",
    "We'll be together forever, right?",
)
CREDIT_ROLES = (
    "Original Story",
    "Director",
    "Series Composition",
    "Character Design",
    "Art Director",
    "Color Design",
    "Music",
    "Sound Director",
    "Animation Director",
    "Theme Song",
    "Producer",
    "Animation Production",
)


@dataclass(frozen=True)
class Actor:
    """A character placed in a shot (world coordinates of the shot's panorama)."""

    char: int  # index into the series' characters
    x: float  # head centre at t=0
    y: float
    u: float  # head unit in world pixels
    view: str
    vx: float = 0.0  # world pixels per second (walking)
    bob: float = 0.0  # walking bob amplitude, world pixels
    blinks: tuple[float, ...] = ()  # shot-local seconds at which blinks start
    talk: tuple[float, float] | None = None  # shot-local seconds of speech
    talk_seed: int = 0


@dataclass(frozen=True)
class Shot:
    """One planned shot; render it with `ShotRenderer`."""

    kind: str  # static | pan | zoom_in | zoom_out | title | credits
    frames: int
    seed: int
    bg: str  # location | speedlines | titlecard
    location: int | None
    cam0: tuple[float, float, float]  # view centre x, y and zoom at the first frame
    cam1: tuple[float, float, float]  # ... and at the last frame
    ease: str = "linear"  # linear | smooth
    actors: tuple[Actor, ...] = ()
    props: int = 0
    fg: str | None = None
    fg_x: float | None = None
    speaker: int | None = None  # index into actors
    line: str | None = None
    text: tuple[str, ...] = ()  # title overlay lines
    credits: tuple[str, ...] = ()
    credits_span: tuple[float, float] = (0.0, 1.0)


@dataclass(frozen=True)
class Layout:
    """Frame counts of the parts of one episode."""

    op: int
    recap: int
    title: int
    main: int
    ed: int

    @property
    def total(self) -> int:
        return self.op + self.recap + self.title + self.main + self.ed

    @property
    def main_start(self) -> int:
        return self.op + self.recap + self.title


@dataclass
class Segment:
    """A run of frames of one shot: the whole shot, or a piece of one (recaps)."""

    shot: Shot
    first: int  # first local frame of the shot
    count: int
    part: str  # opening | recap | title | main | ending
    source: tuple[int, float] | None = None  # recap: (source episode, source time)


def episode_layout(series: SeriesSpec, episode: int, seconds: float, fps: int) -> Layout:
    """How many frames each part of an episode gets (deterministic from the parameters)."""
    total = round(seconds * fps)
    op = round(clamp(0.16 * seconds, 2.0, 90.0) * fps)
    ed = (
        round(clamp(0.1 * seconds, 2.0, 90.0) * fps) if (series.has_ending and seconds >= 20) else 0
    )
    recap = round(clamp(0.1 * seconds, 1.5, 30.0) * fps) if episode >= 2 else 0
    title = round((1.0 if seconds < 60 else 2.0) * fps)
    return Layout(op, recap, title, total - op - recap - title - ed, ed)


# ---------------------------------------------------------------------------------------
# planning


Cam = tuple[float, float, float]


def _lerp(a: Cam, b: Cam, t: float) -> Cam:
    """Interpolate two cameras (view centre x, y and zoom)."""
    return (a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t, a[2] + (b[2] - a[2]) * t)


class _Planner:
    """Random shot planning for one series at one frame size."""

    def __init__(self, series: SeriesSpec, width: int, height: int, fps: int) -> None:
        self.s, self.W, self.H, self.fps = series, width, height, fps
        self.PW, self.PH = round(width * PANO_W), round(height * PANO_H)

    # -- cameras ------------------------------------------------------------------------
    def _centre(self, r: np.random.Generator, z: float, pw: int, ph: int) -> tuple[float, float]:
        hw, hh = self.W / (2 * z), self.H / (2 * z)
        return float(r.uniform(hw, max(hw, pw - hw))), float(r.uniform(hh, max(hh, ph - hh)))

    def _fit(self, cx: float, cy: float, z: float, pw: int, ph: int) -> tuple[float, float, float]:
        hw, hh = self.W / (2 * z), self.H / (2 * z)
        return (clamp(cx, hw, pw - hw), clamp(cy, hh, ph - hh), z)

    def camera(
        self, r: np.random.Generator, kind: str, pw: int, ph: int, dur: float
    ) -> tuple[tuple[float, float, float], tuple[float, float, float], str]:
        if kind == "pan":
            z = float(r.uniform(1.0, 1.15))
            cx, cy = self._centre(r, z, pw, ph)
            hw, hh = self.W / (2 * z), self.H / (2 * z)
            if r.random() < 0.8 and pw - 2 * hw > 8:
                dist = float(r.uniform(0.12, 0.4)) * self.W / z * min(1.0, dur / 2.5 + 0.3)
                lo, hi = hw, pw - hw
                d = dist if (r.random() < 0.5 and cx + dist <= hi) or cx - dist < lo else -dist
                c0, c1 = (cx, cy, z), self._fit(cx + d, cy, z, pw, ph)
            else:
                dist = float(r.uniform(0.1, 0.25)) * self.H / z
                lo, hi = hh, ph - hh
                d = dist if cy + dist <= hi else -dist
                c0, c1 = (cx, cy, z), self._fit(cx, cy + d, z, pw, ph)
            return c0, c1, "linear"
        if kind in ("zoom_in", "zoom_out"):
            z0 = float(r.uniform(1.0, 1.1))
            z1 = z0 + float(r.uniform(0.25, 0.5))
            cx, cy = self._centre(r, z0, pw, ph)
            tx, ty = self._centre(r, z1, pw, ph)
            a, b = (cx, cy, z0), self._fit(cx + (tx - cx) * 0.3, cy + (ty - cy) * 0.3, z1, pw, ph)
            return (a, b, "smooth") if kind == "zoom_in" else (b, a, "smooth")
        z = float(r.uniform(1.0, 1.3))
        cx, cy = self._centre(r, z, pw, ph)
        return (cx, cy, z), (cx, cy, z), "linear"

    # -- actors -------------------------------------------------------------------------
    def _blinks(self, r: np.random.Generator, dur: float) -> tuple[float, ...]:
        out, t = [], float(r.uniform(0.2, 2.0))
        while t < dur:
            out.append(round(t * DRAWING_RATE) / DRAWING_RATE)
            t += float(r.uniform(1.4, 3.8))
        return tuple(out)

    def actors(
        self,
        r: np.random.Generator,
        content: str,
        ref: tuple[float, float, float],
        dur: float,
        walk: float = 0.0,
        x_range: tuple[float, float] = (0.22, 0.78),
    ) -> list[Actor]:
        W, H = self.W, self.H
        n_chars = len(self.s.characters)
        if content == "group":
            n = min(n_chars, int(r.integers(3, 5)))
        elif content == "two":
            n = 2
        elif content in ("single", "closeup"):
            n = 1
        else:
            return []
        who = [int(i) for i in r.choice(n_chars, size=n, replace=False)]
        specs: list[tuple[float, float, float, str]] = []  # fx, fy, uF, view
        if content == "closeup":
            view = "front" if r.random() < 0.65 else str(r.choice(["left", "right"]))
            specs.append(
                (
                    float(r.uniform(0.3, 0.7)) * W,
                    float(r.uniform(0.4, 0.52)) * H,
                    float(r.uniform(0.28, 0.38)) * H,
                    view,
                )
            )
        elif content == "single":
            view = "front" if r.random() < 0.7 else str(r.choice(["left", "right"]))
            specs.append(
                (
                    float(r.uniform(*x_range)) * W,
                    float(r.uniform(0.33, 0.48)) * H,
                    float(r.uniform(0.15, 0.22)) * H,
                    view,
                )
            )
        elif content == "two":
            u = float(r.uniform(0.12, 0.17)) * H
            x1 = float(r.uniform(0.18, 0.4)) * W
            x2 = min(0.86 * W, x1 + float(r.uniform(0.3, 0.45)) * W)
            y = float(r.uniform(0.34, 0.48)) * H
            mode = r.random()
            views = (
                ("front", "front")
                if mode < 0.4
                else ("right", "left")
                if mode < 0.75
                else (("front", "left") if r.random() < 0.5 else ("right", "front"))
            )
            specs.append(
                (
                    x1,
                    y + float(r.uniform(-0.03, 0.03)) * H,
                    u * float(r.uniform(0.95, 1.05)),
                    views[0],
                )
            )
            specs.append(
                (
                    x2,
                    y + float(r.uniform(-0.03, 0.03)) * H,
                    u * float(r.uniform(0.95, 1.05)),
                    views[1],
                )
            )
        else:
            u = float(r.uniform(0.07, 0.1)) * H
            xs = np.linspace(0.15, 0.85, n) * W + r.uniform(-0.04, 0.04, n) * W
            y = float(r.uniform(0.38, 0.52)) * H
            for x in xs:
                specs.append(
                    (
                        float(x),
                        y + float(r.uniform(-0.03, 0.03)) * H,
                        u * float(r.uniform(0.93, 1.07)),
                        "front" if r.random() < 0.8 else str(r.choice(["left", "right"])),
                    )
                )
        cx, cy, z = ref
        out = []
        for ci, (fx, fy, uf, view) in zip(who, specs, strict=True):
            if walk and view != "front":
                view = "right" if walk > 0 else "left"
            u = uf / z
            out.append(
                Actor(
                    char=ci,
                    x=cx + (fx - W / 2) / z,
                    y=cy + (fy - H / 2) / z,
                    u=u,
                    view=view,
                    vx=walk,
                    bob=0.05 * u if walk else 0.0,
                    blinks=self._blinks(r, dur),
                    talk_seed=sub_seed(r),
                )
            )
        return out

    def _with_speaker(
        self, r: np.random.Generator, actors: list[Actor], dur: float, p: float = 0.75
    ) -> tuple[list[Actor], int | None, str | None]:
        if not actors or dur < 0.8 or r.random() > p:
            return actors, None, None
        k = int(r.integers(len(actors)))
        t0 = round(0.15 * DRAWING_RATE) / DRAWING_RATE
        a = actors[k]
        actors[k] = Actor(
            a.char, a.x, a.y, a.u, a.view, a.vx, a.bob, a.blinks, (t0, dur - 0.15), a.talk_seed
        )
        line = str(r.choice(LINES))
        if len(actors) > 1 and r.random() < 0.3:
            other = self.s.characters[actors[(k + 1) % len(actors)].char].name.split()[0]
            line = f"{other}, {line[0].lower()}{line[1:]}"
        return actors, k, line

    # -- shots --------------------------------------------------------------------------
    def main_shot(self, r: np.random.Generator, frames: int) -> Shot:
        dur = frames / self.fps
        n_chars = len(self.s.characters)
        contents = ["establishing", "closeup", "single", "two", "group"]
        p = [0.12, 0.2, 0.26, 0.27, 0.15]
        if n_chars < 3:
            p = [0.12, 0.22, 0.28, 0.38, 0.0]
        content = str(r.choice(contents, p=p))
        kinds = ["static", "pan", "zoom_in", "zoom_out"]
        kp = [0.25, 0.25, 0.35, 0.15] if content == "closeup" else [0.4, 0.33, 0.15, 0.12]
        kind = str(r.choice(kinds, p=kp))
        loc = int(r.integers(len(self.s.locations)))
        c0, c1, ease = self.camera(r, kind, self.PW, self.PH, dur)
        ref = c0 if kind != "pan" else _lerp(c0, c1, 0.5)
        walk = 0.0
        if kind == "pan" and content in ("single", "group") and c0[1] == c1[1] and r.random() < 0.6:
            walk = (c1[0] - c0[0]) / max(dur, 1e-6)  # walkers the camera follows
            ref = c0
        acts = self.actors(r, content, ref, dur, walk)
        acts, speaker, line = self._with_speaker(r, acts, dur, 0.0 if content == "group" else 0.75)
        fg, fg_x = None, None
        if acts and r.random() < 0.22:
            fg = str(r.choice(FOREGROUND_KINDS))
            if fg == "pole" and r.random() < 0.6:
                a = acts[int(r.integers(len(acts)))]
                fg_x = a.x + float(r.uniform(-0.45, 0.45)) * a.u
        return Shot(
            kind=kind,
            frames=frames,
            seed=sub_seed(r),
            bg="location",
            location=loc,
            cam0=c0,
            cam1=c1,
            ease=ease,
            actors=tuple(acts),
            props=int(r.integers(2, 6)),
            fg=fg,
            fg_x=fg_x,
            speaker=speaker,
            line=line,
        )

    def _durations(self, r: np.random.Generator, total: int, lo: float, hi: float) -> list[int]:
        out, left = [], total
        min_f = max(1, round(0.5 * self.fps))
        while left > 0:
            f = max(1, round(float(r.uniform(lo, hi)) * self.fps))
            if left - f < min_f:
                f = left
            out.append(f)
            left -= f
        return out

    def main(self, episode: int, frames: int) -> list[Shot]:
        r = rng_for(self.s.seed, "main", episode, frames, self.W, self.H, self.fps)
        return [self.main_shot(r, f) for f in self._durations(r, frames, 1.5, 4.0)]

    def opening(self, frames: int) -> list[Shot]:
        r = rng_for(self.s.seed, "op", frames, self.W, self.H, self.fps)
        shots = []
        templates = ("logo", "lineup", "action", "scenery", "duo", "closeup")
        durs = self._durations(r, frames, 1.0, 1.8)
        for i, f in enumerate(durs):
            t = (
                templates[i % len(templates)]
                if i < len(templates)
                else str(r.choice(templates[1:]))
            )
            dur = f / self.fps
            loc = int(r.integers(len(self.s.locations)))
            if t == "logo":
                c0, c1, ease = self.camera(r, "zoom_out", self.PW, self.PH, dur)
                shots.append(
                    Shot(
                        "title", f, sub_seed(r), "location", loc, c0, c1, ease, text=(self.s.title,)
                    )
                )
            elif t == "action":
                c = (self.W / 2, self.H / 2, 1.0)
                c1 = (self.W / 2, self.H / 2, float(r.uniform(1.15, 1.3)))
                acts = self.actors(r, "closeup", c, dur)
                shots.append(
                    Shot(
                        "zoom_in", f, sub_seed(r), "speedlines", None, c, c1, "smooth", tuple(acts)
                    )
                )
            else:
                content = {
                    "lineup": "group" if len(self.s.characters) > 2 else "two",
                    "scenery": "establishing",
                    "duo": "two",
                    "closeup": "closeup",
                }[t]
                kind = "pan" if t in ("lineup", "scenery") else str(r.choice(["static", "zoom_in"]))
                c0, c1, ease = self.camera(r, kind, self.PW, self.PH, dur)
                ref = c0 if kind != "pan" else _lerp(c0, c1, 0.5)
                acts = self.actors(r, content, ref, dur)
                shots.append(
                    Shot(
                        kind,
                        f,
                        sub_seed(r),
                        "location",
                        loc,
                        c0,
                        c1,
                        ease,
                        tuple(acts),
                        props=int(r.integers(1, 4)),
                    )
                )
        return shots

    def ending(self, frames: int) -> list[Shot]:
        r = rng_for(self.s.seed, "ed", frames, self.W, self.H, self.fps)
        names = [c.name for c in self.s.characters]
        people = build_series(self.s.seed, 1, space="staff")[0].characters
        credits = [self.s.titles["ja"], self.s.title, ""]
        for k, role in enumerate(CREDIT_ROLES):
            credits += [
                role,
                people[k % len(people)].name if k % 3 else f"Studio {self.s.title.split()[0]}",
                "",
            ]
        credits += ["Cast", *names]
        shots, done = [], 0
        for f in self._durations(r, frames, 3.0, 6.0):
            dur = f / self.fps
            kind = "pan" if r.random() < 0.5 else "static"
            c0, c1, ease = self.camera(r, kind, self.PW, self.PH, dur)
            ref = c0 if kind != "pan" else _lerp(c0, c1, 0.5)
            # the credits roll over a band on the right; the character stays left of it
            acts = self.actors(r, "single", ref, dur, x_range=(0.18, 0.4))
            shots.append(
                Shot(
                    "credits",
                    f,
                    sub_seed(r),
                    "location",
                    int(r.integers(len(self.s.locations))),
                    c0,
                    c1,
                    ease,
                    tuple(acts),
                    credits=tuple(credits),
                    credits_span=(done / frames, (done + f) / frames),
                )
            )
            done += f
        return shots

    def title(self, episode: int, frames: int) -> Shot:
        r = rng_for(self.s.seed, "title", episode)
        name = self.s.episode_titles[(episode - 1) % len(self.s.episode_titles)]
        c = (self.W / 2, self.H / 2, 1.0)
        return Shot(
            "title", frames, sub_seed(r), "titlecard", None, c, c, text=(f"Episode {episode}", name)
        )


@dataclass
class EpisodePlan:
    """Everything about one episode except pixels."""

    series: SeriesSpec
    episode: int
    layout: Layout
    segments: list[Segment]
    subtitled: bool
    title: str
    width: int
    height: int
    fps: int


def plan_episode(
    series: SeriesSpec, episode: int, *, seconds: float, width: int, height: int, fps: int
) -> EpisodePlan:
    """Plan one episode: which shot (and which frames of it) fill each part."""
    lay = episode_layout(series, episode, seconds, fps)
    pl = _Planner(series, width, height, fps)
    segs = [Segment(s, 0, s.frames, "opening") for s in pl.opening(lay.op)]
    if lay.recap:
        prev_lay = episode_layout(series, episode - 1, seconds, fps)
        prev_main = pl.main(episode - 1, prev_lay.main)
        starts = np.cumsum([0] + [s.frames for s in prev_main])
        r = rng_for(series.seed, "recap", episode, fps)
        pieces = max(1, min(4, round(lay.recap / fps / 2.5)))
        sizes = [lay.recap // pieces + (1 if k < lay.recap % pieces else 0) for k in range(pieces)]
        for size in sizes:
            src = int(r.integers(0, max(1, prev_lay.main - size)))
            left, pos = size, src
            while left > 0:
                j = int(np.searchsorted(starts, pos, side="right") - 1)
                off = pos - int(starts[j])
                n = min(left, prev_main[j].frames - off)
                segs.append(
                    Segment(
                        prev_main[j],
                        off,
                        n,
                        "recap",
                        (episode - 1, (prev_lay.main_start + pos) / fps),
                    )
                )
                left -= n
                pos += n
    segs.append(Segment(pl.title(episode, lay.title), 0, lay.title, "title"))
    segs += [Segment(s, 0, s.frames, "main") for s in pl.main(episode, lay.main)]
    if lay.ed:
        segs += [Segment(s, 0, s.frames, "ending") for s in pl.ending(lay.ed)]
    name = series.episode_titles[(episode - 1) % len(series.episode_titles)]
    return EpisodePlan(
        series, episode, lay, segs, series.subtitled(episode), name, width, height, fps
    )


def random_shot(
    series: SeriesSpec, rng: np.random.Generator, *, width: int, height: int, fps: int = 12
) -> Shot:
    """One random main-part shot (used for out-of-library stills)."""
    return _Planner(series, width, height, fps).main_shot(rng, max(1, 2 * fps))


# ---------------------------------------------------------------------------------------
# rendering

_PANORAMAS: OrderedDict[tuple[Any, ...], Panorama] = OrderedDict()


def _panorama(series: SeriesSpec, loc: int, w: int, h: int) -> Panorama:
    spec = series.locations[loc]
    key = (spec.kind, spec.seed, spec.tod, tuple(sorted(spec.palette.items())), w, h)
    if key in _PANORAMAS:
        _PANORAMAS.move_to_end(key)
        return _PANORAMAS[key]
    pano = paint_location(series.locations[loc], w, h)
    _PANORAMAS[key] = pano
    while len(_PANORAMAS) > 8:
        _PANORAMAS.popitem(last=False)
    return pano


@dataclass
class FaceTruth:
    """Ground truth of one visible face in a frame."""

    character: str
    box: tuple[int, int, int, int]
    profile: bool
    occluded: bool
    visible: float

    def to_json(self) -> dict[str, Any]:
        return {
            "character": self.character,
            "box": list(self.box),
            "profile": self.profile,
            "occluded": self.occluded,
            "visible": round(self.visible, 3),
        }


@dataclass
class _Overlay:
    image: Image.Image
    pos: tuple[int, int]


class ShotRenderer:
    """Renders the frames of one shot. Build once per shot, call `render(i)` per frame."""

    def __init__(
        self, series: SeriesSpec, shot: Shot, width: int, height: int, fps: int, subtitled: bool
    ) -> None:
        self.s, self.shot, self.W, self.H, self.fps = series, shot, width, height, fps
        self.subtitled = subtitled
        r = rng_for(shot.seed, "render")
        pw, ph = round(width * PANO_W), round(height * PANO_H)
        if shot.bg == "location":
            assert shot.location is not None
            pano = _panorama(series, shot.location, pw, ph)
            img = pano.image.copy()
            d = ImageDraw.Draw(img)
            cx = shot.cam0[0]
            for _ in range(shot.props):
                kind = str(r.choice(PROP_KINDS))
                x = cx + float(r.uniform(-0.55, 0.55)) * width
                y = pano.floor_y + float(r.uniform(0.0, 0.6)) * (ph - pano.floor_y)
                s = ph * float(r.uniform(0.1, 0.2)) * (0.5 + y / ph)
                paint_prop(d, kind, x, y, s, r, series.palette)
            self.bg = img
        elif shot.bg == "speedlines":
            pal = series.palette
            self.bg = speed_lines(
                width,
                height,
                r,
                mix(pal["accent2"], (255, 255, 255), 0.75),
                shade(pal["accent"], 0.9),
            )
        else:
            self.bg = title_card(width, height, r, series.palette)
        self.fg = None
        if shot.fg:
            self.fg = paint_foreground(
                shot.fg, self.bg.size[0], self.bg.size[1], r, series.palette, shot.fg_x
            )
        self.static = shot.cam0 == shot.cam1
        self.pan = not self.static and shot.cam0[2] == shot.cam1[2]
        self.zoom = shot.cam0[2] != shot.cam1[2]
        self._held: tuple[int, Image.Image, list[FaceTruth]] | None = None
        self._zoomed: tuple[Image.Image, Image.Image | None] | None = None
        self._bg_cache: tuple[Image.Image, np.ndarray | None, Image.Image | None] | None = None
        self._fg_frame: Image.Image | None = None
        self._sprites: dict[tuple[Any, ...], Sprite] = {}
        self._mouths: dict[int, np.ndarray] = {}
        self._overlays = self._make_overlays()
        self._subtitle: _Overlay | None = None
        if subtitled and shot.line:
            size = max(8, round(height * 0.058))
            spr = text_sprite(shot.line, size, max_width=int(width * 0.9))
            self._subtitle = _Overlay(
                spr, ((width - spr.size[0]) // 2, height - spr.size[1] - round(height * 0.03))
            )
        self._credits: Image.Image | None = None
        if shot.credits:
            self._credits = credits_sprite(
                list(shot.credits), int(width * 0.42), max(7, round(height * 0.045))
            )
            band = Image.new("RGBA", (int(width * 0.46), height), (10, 10, 30, 110))
            self._overlays.append(_Overlay(band, (width - band.size[0], 0)))
        self._bottom = self._sprite_bottoms()

    def _make_overlays(self) -> list[_Overlay]:
        shot, W, H = self.shot, self.W, self.H
        out: list[_Overlay] = []
        if not shot.text:
            return out
        if shot.bg == "titlecard":
            a = text_sprite(
                shot.text[0],
                max(8, round(H * 0.07)),
                fill=(255, 255, 255),
                stroke=shade(self.s.palette["accent"], 0.5),
            )
            b = text_sprite(
                shot.text[1],
                max(8, round(H * 0.085)),
                fill=(40, 30, 50),
                stroke=(255, 255, 255),
                max_width=int(W * 0.9),
            )
            out.append(_Overlay(a, ((W - a.size[0]) // 2, round(H * 0.2))))
            out.append(_Overlay(b, ((W - b.size[0]) // 2, round(H * 0.5 - b.size[1] / 2))))
        else:  # series logo
            logo = text_sprite(
                shot.text[0],
                max(10, round(H * 0.13)),
                fill=self.s.palette["accent"],
                stroke=(255, 255, 255),
                stroke_width=max(2, round(H * 0.012)),
                max_width=int(W * 0.9),
            )
            out.append(
                _Overlay(logo, ((W - logo.size[0]) // 2, round(H * 0.38 - logo.size[1] / 2)))
            )
        return out

    # -- geometry -----------------------------------------------------------------------
    def camera(self, i: int) -> tuple[float, float, float]:
        sh = self.shot
        t = i / (sh.frames - 1) if sh.frames > 1 else 0.0
        if sh.ease == "smooth":
            t = smoothstep(t)
        return _lerp(sh.cam0, sh.cam1, t)

    def _box(self, cam: tuple[float, float, float]) -> tuple[float, float, float, float]:
        cx, cy, z = cam
        pw, ph = self.bg.size
        hw, hh = self.W / (2 * z), self.H / (2 * z)
        cx, cy = clamp(cx, hw, pw - hw), clamp(cy, hh, ph - hh)
        return (cx - hw, cy - hh, cx + hw, cy + hh)

    def _sprite_bottoms(self) -> list[float]:
        out = []
        for a in self.shot.actors:
            need = 0.8
            for i in (0, self.shot.frames - 1):
                bottom = self._box(self.camera(i))[3]
                need = max(need, (bottom - a.y) / a.u + 0.4)
            out.append(min(6.3, need))
        return out

    # -- poses --------------------------------------------------------------------------
    @staticmethod
    def _eyes(a: Actor, tp: float) -> str:
        for b in a.blinks:
            d = (tp - b) * DRAWING_RATE
            if -1e-6 <= d < 3 - 1e-6:
                return "closed" if 1 - 1e-6 <= d < 2 - 1e-6 else "half"
        return "open"

    def _mouth(self, k: int, a: Actor, tp: float) -> str:
        if a.talk is None or not (a.talk[0] - 1e-6 <= tp < a.talk[1]):
            return "closed"
        if k not in self._mouths:
            n = int(self.shot.frames / self.fps * DRAWING_RATE) + 2
            self._mouths[k] = rng_for(a.talk_seed, "mouth").choice(3, size=n, p=[0.3, 0.35, 0.35])
        m = self._mouths[k]
        return ("closed", "half", "open")[int(m[min(len(m) - 1, round(tp * DRAWING_RATE))])]

    def _sprite(self, k: int, a: Actor, eyes: str, mouth: str, u: float, zooming: bool) -> Sprite:
        if zooming:
            umax = a.u * max(self.shot.cam0[2], self.shot.cam1[2])
            key = (k, eyes, mouth, round(umax, 2))
            if key not in self._sprites:
                self._sprites[key] = render_character(
                    self.s.characters[a.char],
                    self.s.draw_style,
                    u=umax,
                    view=a.view,
                    eyes=eyes,
                    mouth=mouth,
                    bottom=self._bottom[k],
                )
            return self._sprites[key].scaled(u / umax)
        key = (k, eyes, mouth, round(u, 2))
        if key not in self._sprites:
            self._sprites[key] = render_character(
                self.s.characters[a.char],
                self.s.draw_style,
                u=u,
                view=a.view,
                eyes=eyes,
                mouth=mouth,
                bottom=self._bottom[k],
            )
        return self._sprites[key]

    # -- frames -------------------------------------------------------------------------
    def _background(self, i: int) -> tuple[Image.Image, np.ndarray | None, tuple[float, ...]]:
        """The frame's background, the foreground alpha in frame pixels and the view box
        (world coordinates) the frame actually shows."""
        box = self._box(self.camera(i))
        if self.static and self._bg_cache is not None:
            bg, fga, _ = self._bg_cache
            return bg.copy(), fga, box
        if self.pan:
            # Pans keep their zoom: scale the panorama once and crop whole pixels per frame
            # (anime pans move in pixel steps too); far cheaper than resampling every frame.
            if self._zoomed is None:
                z = self.shot.cam0[2]
                size = (round(self.bg.size[0] * z), round(self.bg.size[1] * z))
                self._zoomed = (
                    self.bg.resize(size, Image.Resampling.BILINEAR),
                    self.fg.resize(size, Image.Resampling.BILINEAR) if self.fg else None,
                )
            zb, zf = self._zoomed
            zz = zb.size[0] / self.bg.size[0]
            x0 = int(clamp(round(box[0] * zz), 0, zb.size[0] - self.W))
            y0 = int(clamp(round(box[1] * zz), 0, zb.size[1] - self.H))
            crop = (x0, y0, x0 + self.W, y0 + self.H)
            bg = zb.crop(crop)
            fgi = zf.crop(crop) if zf is not None else None
            box = (x0 / zz, y0 / zz, (x0 + self.W) / zz, (y0 + self.H) / zz)
        else:
            bg = self.bg.resize((self.W, self.H), Image.Resampling.BILINEAR, box=box)
            fgi = (
                self.fg.resize((self.W, self.H), Image.Resampling.BILINEAR, box=box)
                if self.fg is not None
                else None
            )
        fga = np.asarray(fgi.getchannel("A")) if fgi is not None else None
        self._fg_frame = fgi
        if self.static:
            self._bg_cache = (bg, fga, fgi)
            return bg.copy(), fga, box
        return bg, fga, box

    def render(self, i: int) -> tuple[Image.Image, list[FaceTruth]]:
        """Frame `i` of the shot (0-based) and the faces visible in it."""
        if self.zoom and self.fps > DRAWING_RATE:
            # Zooms are animated on twos like the characters: above 12 fps a drawing is
            # held for several frames (and costs one render).
            i = min(self.shot.frames - 1, round(_pose_time(i, self.fps) * self.fps))
            if self._held is not None and self._held[0] == i:
                return self._held[1].copy(), list(self._held[2])
            img, faces = self._render(i)
            self._held = (i, img.copy(), faces)
            return img, faces
        return self._render(i)

    def _render(self, i: int) -> tuple[Image.Image, list[FaceTruth]]:
        W, H = self.W, self.H
        frame, fg_alpha, box = self._background(i)
        z = W / (box[2] - box[0])
        tp = _pose_time(i, self.fps)
        zooming = self.zoom
        placed: list[tuple[int, int, int, Sprite, Actor]] = []
        order = sorted(
            range(len(self.shot.actors)),
            key=lambda k: (self.shot.actors[k].u, self.shot.actors[k].y),
        )
        for k in order:
            a = self.shot.actors[k]
            wx = a.x + a.vx * tp
            wy = a.y - (abs(math.sin(math.pi * 2.0 * tp)) * a.bob if a.bob else 0.0)
            fx, fy = (wx - box[0]) * z, (wy - box[1]) * z
            spr = self._sprite(k, a, self._eyes(a, tp), self._mouth(k, a, tp), a.u * z, zooming)
            x, y = round(fx - spr.anchor[0]), round(fy - spr.anchor[1])
            if x >= W or y >= H or x + spr.image.size[0] <= 0 or y + spr.image.size[1] <= 0:
                continue
            frame.paste(spr.image, (x, y), spr.image)
            placed.append((k, x, y, spr, a))
        if self.fg is not None and self._fg_frame is not None:
            frame.paste(self._fg_frame, (0, 0), self._fg_frame)
        for ov in self._overlays:
            frame.paste(ov.image, ov.pos, ov.image)
        if self._credits is not None:
            t0, t1 = self.shot.credits_span
            prog = t0 + (t1 - t0) * (i / max(1, self.shot.frames))
            ch = self._credits.size[1]
            y = round(H - prog * (H + ch))
            frame.paste(self._credits, (W - round(W * 0.44), y), self._credits)
        if self._subtitle is not None and self.shot.speaker is not None:
            talk = self.shot.actors[self.shot.speaker].talk
            if talk is not None and talk[0] - 1e-6 <= tp < talk[1]:
                frame.paste(self._subtitle.image, self._subtitle.pos, self._subtitle.image)
        return frame, self._faces(placed, fg_alpha)

    def _faces(
        self, placed: list[tuple[int, int, int, Sprite, Actor]], fg_alpha: np.ndarray | None
    ) -> list[FaceTruth]:
        W, H = self.W, self.H
        out: list[tuple[int, FaceTruth]] = []
        for n, (k, x, y, spr, a) in enumerate(placed):
            ax, ay = spr.anchor
            bx0, by0 = x + ax + spr.head_box[0], y + ay + spr.head_box[1]
            bx1, by1 = x + ax + spr.head_box[2], y + ay + spr.head_box[3]
            full = max(1e-6, (bx1 - bx0) * (by1 - by0))
            ix0, iy0 = max(0, math.floor(bx0)), max(0, math.floor(by0))
            ix1, iy1 = min(W, math.ceil(bx1)), min(H, math.ceil(by1))
            if ix1 - ix0 < 2 or iy1 - iy0 < 2:
                continue
            cover = np.zeros((iy1 - iy0, ix1 - ix0), bool)
            for _, ox, oy, ospr, _ in placed[n + 1 :]:  # characters in front of this one
                oh, ow = ospr.alpha.shape
                sx0, sy0 = max(ix0, ox), max(iy0, oy)
                sx1, sy1 = min(ix1, ox + ow), min(iy1, oy + oh)
                if sx1 > sx0 and sy1 > sy0:
                    cover[sy0 - iy0 : sy1 - iy0, sx0 - ix0 : sx1 - ix0] |= (
                        ospr.alpha[sy0 - oy : sy1 - oy, sx0 - ox : sx1 - ox] > 127
                    )
            if fg_alpha is not None:
                cover |= fg_alpha[iy0:iy1, ix0:ix1] > 127
            inside = (min(bx1, W) - max(bx0, 0)) * (min(by1, H) - max(by0, 0))
            covered = float(cover.mean()) * inside
            visible = clamp((inside - covered) / full, 0.0, 1.0)
            if visible < MIN_VISIBLE:
                continue
            ch = self.s.characters[a.char]
            out.append(
                (
                    k,
                    FaceTruth(
                        ch.name,
                        (ix0, iy0, ix1, iy1),
                        a.view != "front",
                        visible < 1.0 - OCCLUDED_AT,
                        visible,
                    ),
                )
            )
        out.sort(key=lambda kv: kv[0])
        return [f for _, f in out]


def render_plan(plan: EpisodePlan) -> Iterator[tuple[Image.Image, int, list[FaceTruth]]]:
    """Yield (frame, segment index, faces) for every frame of an episode, in order."""
    for si, seg in enumerate(plan.segments):
        r = ShotRenderer(plan.series, seg.shot, plan.width, plan.height, plan.fps, plan.subtitled)
        for i in range(seg.first, seg.first + seg.count):
            img, faces = r.render(i)
            yield img, si, faces


def describe_segments(plan: EpisodePlan) -> list[dict[str, Any]]:
    """The `shots` list of the ground truth (one entry per segment)."""
    out, start = [], 0
    for seg in plan.segments:
        entry: dict[str, Any] = {
            "start": start / plan.fps,
            "end": (start + seg.count) / plan.fps,
            "kind": seg.shot.kind,
            "segment": seg.part,
            "location": (
                plan.series.locations[seg.shot.location].name
                if seg.shot.location is not None
                else seg.shot.bg
            ),
            "characters": [plan.series.characters[a.char].name for a in seg.shot.actors],
        }
        if seg.source is not None:
            entry["source_episode"], entry["source_time"] = seg.source
        out.append(entry)
        start += seg.count
    return out


def subtitle_lines(plan: EpisodePlan) -> list[dict[str, Any]]:
    """Burned-in subtitle lines with their times (empty for unsubtitled episodes)."""
    if not plan.subtitled:
        return []
    out, start = [], 0
    for seg in plan.segments:
        sh = seg.shot
        if sh.line and sh.speaker is not None:
            talk = sh.actors[sh.speaker].talk
            assert talk is not None
            # frames whose pose time falls inside the talk interval
            idx = [
                i
                for i in range(seg.first, seg.first + seg.count)
                if talk[0] - 1e-6 <= _pose_time(i, plan.fps) < talk[1]
            ]
            if idx:
                a = start + idx[0] - seg.first
                b = start + idx[-1] - seg.first + 1
                out.append({"start": a / plan.fps, "end": b / plan.fps, "text": sh.line})
        start += seg.count
    return out


def _pose_time(i: int, fps: int) -> float:
    t = i / fps
    if fps > DRAWING_RATE:
        t = math.floor(t * DRAWING_RATE + 1e-9) / DRAWING_RATE
    return t


def recap_entries(plan: EpisodePlan) -> list[dict[str, Any]]:
    """Merge consecutive recap segments into `{from, to, source_episode, source_time}`."""
    out: list[dict[str, Any]] = []
    start = 0
    for seg in plan.segments:
        if seg.part == "recap" and seg.source is not None:
            t0, t1 = start / plan.fps, (start + seg.count) / plan.fps
            src_ep, src_t = seg.source
            if (
                out
                and abs(out[-1]["to"] - t0) < 1e-9
                and abs(out[-1]["source_time"] + (t0 - out[-1]["from"]) - src_t) < 1e-6
            ):
                out[-1]["to"] = t1
            else:
                out.append({"from": t0, "to": t1, "source_episode": src_ep, "source_time": src_t})
        start += seg.count
    return out
