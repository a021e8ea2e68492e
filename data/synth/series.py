"""Series of the synthetic library: titles, metadata, art style, palette, cast, locations
and release-style file names.

The library is hard on purpose: the first two series share an art style, a palette, their
kinds of locations and two identical backgrounds; some characters copy the hair colour and
face shape (and sometimes the hair style) of a character from an earlier series.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from data.synth.characters import FAMILY, GIVEN_F, GIVEN_M, CharacterSpec, DrawStyle, make_character
from data.synth.common import RGB, jitter, rng_for, sub_seed
from data.synth.scenes import LocationSpec, series_palette

GENRES = ("Action", "Comedy", "Drama", "Romance", "Fantasy", "Slice of Life", "Sci-Fi", "Mystery")

_ADJ = (
    ("Starlight", "星明かりの", "Hoshiakari no"),
    ("Crimson", "紅の", "Kurenai no"),
    ("Silent", "静かな", "Shizuka na"),
    ("Endless", "終わらない", "Owaranai"),
    ("Moonlit", "月夜の", "Tsukiyo no"),
    ("Clockwork", "歯車の", "Haguruma no"),
    ("Summer", "夏の", "Natsu no"),
    ("Azure", "蒼の", "Ao no"),
    ("Hidden", "隠された", "Kakusareta"),
    ("Neon", "ネオンの", "Neon no"),
    ("Paper", "紙の", "Kami no"),
    ("Wandering", "さまよう", "Samayou"),
)
_NOUN = (
    ("Academy", "学園", "Gakuen"),
    ("Blade", "剣", "Tsurugi"),
    ("Garden", "庭園", "Teien"),
    ("Courier", "運び屋", "Hakobiya"),
    ("Shrine", "神社", "Jinja"),
    ("Diary", "日記", "Nikki"),
    ("Frontier", "辺境", "Henkyou"),
    ("Melody", "旋律", "Senritsu"),
    ("Cafe", "喫茶店", "Kissaten"),
    ("Witch", "魔女", "Majo"),
    ("Signal", "信号", "Shingou"),
    ("Horizon", "地平線", "Chiheisen"),
)

STYLE_ORDER = ("pastel", "pastel", "fantasy", "scifi", "warm")
DRAW_STYLES: dict[str, DrawStyle] = {
    "pastel": DrawStyle(line=0.02, eye_w=0.21, eye_h=0.27, lash=0.045, highlights=3, shading=True),
    "fantasy": DrawStyle(line=0.03, eye_w=0.2, eye_h=0.21, lash=0.05, highlights=2, shading=True),
    "scifi": DrawStyle(
        line=0.018, eye_w=0.2, eye_h=0.23, lash=0.04, highlights=2, shading=True, line_tint=0.6
    ),
    "warm": DrawStyle(line=0.026, eye_w=0.22, eye_h=0.28, lash=0.05, highlights=3, shading=False),
}
STYLE_LOCATIONS: dict[str, tuple[str, ...]] = {
    "pastel": ("classroom", "street", "park", "bedroom", "rooftop", "cafe"),
    "fantasy": ("shrine", "park", "night_city", "street", "rooftop"),
    "scifi": ("corridor", "night_city", "rooftop", "bedroom", "street"),
    "warm": ("cafe", "bedroom", "street", "park", "classroom"),
}
STYLE_GENRES: dict[str, tuple[str, ...]] = {
    "pastel": ("Comedy", "Romance", "Slice of Life"),
    "fantasy": ("Action", "Fantasy", "Drama"),
    "scifi": ("Sci-Fi", "Action", "Mystery"),
    "warm": ("Slice of Life", "Comedy", "Drama"),
}
# (file name pattern, release group, which episodes have burned-in subtitles)
RELEASES: tuple[tuple[str, str | None, str], ...] = (
    ("[{group}] {title} - {ep:02d} [1080p].mp4", "SynthSubs", "all"),
    ("{title} S{season:02d}E{ep:02d}.mp4", None, "none"),
    ("[{group}] {title} - {ep:02d} (720p) [{crc}].mp4", "Kumo Fansub", "odd"),
    ("[{group}] {title} - {ep:02d} [WEB 1080p x264].mp4", "NoriSubs", "all"),
    ("[{group}] {title} - {ep:02d} [BD 720p].mp4", "Hoshi-Raws", "none"),
)
EPISODE_TITLES = (
    "The Day It Rained",
    "A Promise Under the Stars",
    "Transfer Student",
    "The Festival Begins",
    "Lost and Found",
    "Beyond the Fence",
    "Summer Homework",
    "Secrets of the Old Library",
    "The Last Train Home",
    "A Letter Never Sent",
    "Storm Warning",
    "Midnight Signal",
    "Training Camp",
    "Glass Slippers",
    "The Rival Appears",
    "Moonlight Melody",
    "An Ordinary Morning",
    "The Broken Clock",
    "Fireworks",
    "Goodbye, Yesterday",
)


@dataclass(frozen=True)
class SeriesSpec:
    """One synthetic series: everything needed to plan and draw its episodes."""

    index: int
    seed: int
    title: str
    titles: dict[str, str] = field(hash=False)
    anilist_id: int
    mal_id: int
    genres: tuple[str, ...]
    is_adult: bool
    style: str
    draw_style: DrawStyle
    palette: dict[str, RGB] = field(hash=False)
    characters: tuple[CharacterSpec, ...]
    locations: tuple[LocationSpec, ...]
    release: tuple[str, str | None, str]
    has_ending: bool
    episode_titles: tuple[str, ...]

    @property
    def folder(self) -> str:
        return self.title

    def filename(self, episode: int, season: int = 1) -> str:
        pattern, group, _ = self.release
        crc = f"{zlib.crc32(f'{self.seed}-{episode}'.encode()):08X}"
        return pattern.format(group=group, title=self.title, ep=episode, season=season, crc=crc)

    def subtitled(self, episode: int) -> bool:
        mode = self.release[2]
        return mode == "all" or (mode == "odd" and episode % 2 == 1)

    def metadata(self) -> dict[str, Any]:
        """The contents of the series folder's `series.json`."""
        return {
            "title": self.title,
            "titles": dict(self.titles),
            "anilist_id": self.anilist_id,
            "mal_id": self.mal_id,
            "genres": list(self.genres),
            "is_adult": self.is_adult,
        }

    def to_json(self) -> dict[str, Any]:
        """The series entry of the ground-truth sidecar."""
        return {
            "name": self.title,
            "folder": self.folder,
            "style": self.style,
            "metadata": self.metadata(),
            "locations": [loc.name for loc in self.locations],
            "characters": [c.to_json() for c in self.characters],
        }


class _Names:
    """Hands out character names that are unique within one library."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.used: set[str] = set()

    def take(self, sex: str) -> str:
        pool = GIVEN_F if sex == "f" else GIVEN_M
        for _ in range(1000):
            name = f"{self.rng.choice(pool)} {self.rng.choice(FAMILY)}"
            if name not in self.used:
                self.used.add(name)
                return name
        raise RuntimeError("ran out of character names")  # pragma: no cover


def build_series(seed: int, count: int, *, space: str = "library",
                 difficulty: str = "default") -> list[SeriesSpec]:
    """Build `count` series deterministically from `seed`.

    `space` separates independent universes: "library" for the generated library, another
    value (e.g. "ool") for out-of-library series that must not resemble it too closely.
    `difficulty` "hard" makes every second series the twin of the one before it (by default
    only series 1 is, of series 0) and night scenes more common.
    """
    hard = difficulty == "hard"
    top = rng_for(seed, space, "series")
    pairs = [(a, n) for a in range(len(_ADJ)) for n in range(len(_NOUN))]
    order = top.permutation(len(pairs))
    names = _Names(rng_for(seed, space, "names"))
    adult_index = min(2, count - 1) if (space == "library" and count > 1) else -1
    out: list[SeriesSpec] = []
    for i in range(count):
        r = rng_for(seed, space, "series", i)
        a, n = pairs[int(order[i % len(order)])]
        suffix = "" if i < len(order) else f" {i // len(order) + 1}"
        title = f"{_ADJ[a][0]} {_NOUN[n][0]}{suffix}"
        titles = {
            "en": title,
            "ja": _ADJ[a][1] + _NOUN[n][1] + suffix,
            "ja-Latn": f"{_ADJ[a][2]} {_NOUN[n][2]}{suffix}",
        }
        style = STYLE_ORDER[i] if i < len(STYLE_ORDER) else str(r.choice(sorted(DRAW_STYLES)))
        # Series 1 is the deliberate twin of series 0: same drawing style, near-same palette
        # (hard: every odd series is the twin of the one before it).
        twin = out[i - 1] if (i == 1 or (hard and i % 2 == 1)) else None
        if twin is not None:
            palette = {k: jitter(v, r, 6) for k, v in twin.palette.items()}
            draw_style = twin.draw_style
        else:
            palette = series_palette(style, r, 1.0)
            draw_style = DRAW_STYLES[style]
        genres = list(r.choice(STYLE_GENRES[style], size=2, replace=False))
        if r.random() < 0.5:
            extra = str(r.choice([g for g in GENRES if g not in genres]))
            genres.append(extra)
        is_adult = i == adult_index
        if is_adult and "Romance" not in genres:
            genres[-1] = "Romance"
        n_chars = int(r.integers(2, 5))
        chars: list[CharacterSpec] = []
        for k in range(n_chars):
            sex = "f" if (k == 0 or r.random() < 0.55) else "m"
            like = None
            copy_style = False
            if k == 0 and i % 2 == 1 and out:  # heroine looks like the previous series' heroine
                like, copy_style = out[-1].characters[0], twin is not None
                sex = like.sex
            elif k == 1 and i >= 2 and len(out[i - 2].characters) > 1:
                like = out[i - 2].characters[1]
                sex = like.sex
            chars.append(
                make_character(r, name=names.take(sex), sex=sex, like=like, copy_style=copy_style)
            )
        kinds = list(STYLE_LOCATIONS[style])
        n_locs = int(r.integers(4, 6))
        picked = [kinds[j] for j in r.permutation(len(kinds))[:n_locs]]
        locs: list[LocationSpec] = []
        if twin is not None:
            # The twin is like a spin-off: two of its locations are the very same
            # backgrounds (so only the cast, props and framing tell the series apart there).
            locs += list(twin.locations[:2])
            picked = picked[2:]
        for kind in picked:
            tod = (
                "night"
                if kind == "night_city"
                else str(r.choice(["day", "sunset", "night"],
                                  p=[0.45, 0.25, 0.30] if hard else [0.65, 0.22, 0.13]))
            )
            locs.append(
                LocationSpec(
                    kind, sub_seed(r), tod, {k: jitter(v, r, 8) for k, v in palette.items()}
                )
            )
        release = RELEASES[i % len(RELEASES)]
        ep_titles = tuple(EPISODE_TITLES[j] for j in r.permutation(len(EPISODE_TITLES)))
        base = int(rng_for(seed, space, "ids").integers(10_000, 90_000))
        out.append(
            SeriesSpec(
                index=i,
                seed=sub_seed(r),
                title=title,
                titles=titles,
                anilist_id=900_000 + base + 7 * i,
                mal_id=90_000 + (base + 13 * i) % 9_000,
                genres=tuple(genres),
                is_adult=is_adult,
                style=style,
                draw_style=draw_style,
                palette=palette,
                characters=tuple(chars),
                locations=tuple(locs),
                release=release,
                has_ending=(i % len(RELEASES)) != 1,
                episode_titles=ep_titles,
            )
        )
    return out
