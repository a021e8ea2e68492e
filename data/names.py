"""Anime release filenames -> title, season, episode, kind and a display label.

`anitopy` does the heavy lifting; this module fixes what it misses or gets wrong for
libraries: Japanese/Chinese episode markers (``第12話``), type words left in the title
(``Title SP 02``, ``Title - OVA``), type words taken for a release group (``(OVA)``),
scene-style ``-GROUP`` suffixes, ``1920x1080`` resolutions, bare numbers (``03.mkv``) and
names without an episode (a movie or single).
"""

from __future__ import annotations

import logging
import re
import unicodedata
from dataclasses import dataclass
from typing import Literal

import anitopy

logger = logging.getLogger(__name__)

Kind = Literal["episode", "ova", "special", "movie"]

# Type words anitopy reports (upper-cased) -> our kind. TV/web releases are plain episodes.
_TYPE_KIND: dict[str, Kind] = {
    "OVA": "ova", "OAV": "ova", "OAD": "ova", "ONA": "ova",
    "SP": "special", "SPS": "special", "SPECIAL": "special", "SPECIALS": "special",
    "NCOP": "special", "NCED": "special", "OP": "special", "ED": "special",
    "PV": "special", "CM": "special", "PREVIEW": "special", "TRAILER": "special",
    "EXTRA": "special", "EXTRAS": "special", "BONUS": "special", "MENU": "special",
    "MOVIE": "movie", "FILM": "movie", "GEKIJOUBAN": "movie",
}
# Type words stripped from the end of a title even when anitopy did not report them.
# (OP/ED/PV/CM are not: too short to be sure they are not part of a title.)
_TITLE_TYPE_WORDS = ("OVA", "OAV", "OAD", "ONA", "SP", "SPECIAL", "SPECIALS", "MOVIE",
                     "GEKIJOUBAN", "NCOP", "NCED")
_TRAILING_TYPE_RE = re.compile(
    r"(?:^|[\s._\-–—~(\[])(" + "|".join(_TITLE_TYPE_WORDS) + r")\s*(\d{1,3})?\s*[)\]]?\s*$",
    re.IGNORECASE)
# Forms anitopy misreads, rewritten into forms it reads: S01E03E04 -> S01E03-E04 and
# 03.5v3 -> 03.5 v3.
_PRE_FIXES = (
    (re.compile(r"\b(S\d{1,2}E\d{1,4})(E\d{1,4})\b", re.IGNORECASE), r"\1-\2"),
    (re.compile(r"(?<=[\s_\-])(\d{1,4}\.\d)v(\d{1,2})(?=[\s_.\[(]|$)"), r"\1 v\2"),
)
_TRIM_RE = re.compile(r"^[\s._\-–—~:|,;/]+|[\s._\-–—~:|,;/(\[]+$")
_SPACES_RE = re.compile(r"\s+")
# 第12話 / 第12话 / 第12集 / 第12回 (episode), 第2期 / 第2季 (season); digits may be
# full-width or kanji numerals.
_CJK_NUM = r"([0-9０-９]+(?:[.．][0-9０-９]+)?|[〇零一二三四五六七八九十百千]+)"
_CJK_EPISODE_RE = re.compile(r"第\s*" + _CJK_NUM + r"\s*[話话集回]")
_CJK_SEASON_RE = re.compile(r"第\s*" + _CJK_NUM + r"\s*[期季]")
_SCENE_GROUP_RE = re.compile(r"-([A-Za-z0-9]{2,20})$")
_RES_WXH_RE = re.compile(r"^\d{3,4}\s*[xX×]\s*(\d{3,4})$")
_RES_P_RE = re.compile(r"^(\d{3,4})[pPiI]$")
_BARE_NUMBER_RE = re.compile(r"^\d{1,4}(?:\.\d)?$")
_KANJI_DIGITS = {"〇": 0, "零": 0, "一": 1, "二": 2, "三": 3, "四": 4, "五": 5, "六": 6,
                 "七": 7, "八": 8, "九": 9}
_KANJI_UNITS = {"十": 10, "百": 100, "千": 1000}
_MAX_NAME = 1000  # longer input is cut: no real filename is this long


@dataclass(frozen=True)
class ParsedName:
    """What a release filename says about the video in it."""

    title: str  # "" when the name has none (e.g. "03.mkv"); the folder then names the series
    season: int | None
    episode: float | None  # 12.5 exists; None for movies and unnumbered OVAs/specials
    kind: Kind
    label: str  # for display: "03", "12.5", "01-02", "OVA 1", "SP 2", "NCOP 1", "Movie"
    group: str | None = None
    resolution: str | None = None  # normalised to e.g. "1080p" when it can be
    version: int | None = None  # the 2 of "03v2"
    checksum: str | None = None  # CRC32 in brackets, upper case
    year: int | None = None
    episode_end: float | None = None  # last episode of a multi-episode file ("01-02")


def _kanji_to_int(s: str) -> int | None:
    total, current = 0, 0
    for ch in s:
        if ch in _KANJI_DIGITS:
            current = current * 10 + _KANJI_DIGITS[ch]
        elif ch in _KANJI_UNITS:
            total += (current or 1) * _KANJI_UNITS[ch]
            current = 0
        else:
            return None
    return total + current


def _cjk_number(s: str) -> float | None:
    s = unicodedata.normalize("NFKC", s)  # full-width digits and dot
    try:
        return float(s)
    except ValueError:
        n = _kanji_to_int(s)
        return float(n) if n is not None else None


def _first(value: object) -> str | None:
    if isinstance(value, list):
        value = value[0] if value else None
    return str(value) if value not in (None, "") else None


def _as_float(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        x = float(unicodedata.normalize("NFKC", value))
    except ValueError:
        return None
    return x if x >= 0 and x == x and x != float("inf") else None


def _as_int(value: str | None) -> int | None:
    x = _as_float(value)
    return int(x) if x is not None and x.is_integer() else None


def format_number(x: float, *, pad: int = 0) -> str:
    """Format an episode number for display: 3 -> "03" (pad=2), 12.5 -> "12.5".

    Args:
        x: the number.
        pad: minimum digits of a whole number.

    Returns:
        The text.
    """
    if float(x).is_integer():
        return f"{int(x):0{pad}d}"
    return f"{x:g}"


def _normalise_resolution(value: str | None) -> str | None:
    if not value:
        return None
    v = value.strip()
    if m := _RES_WXH_RE.match(v):
        return f"{int(m.group(1))}p"
    if m := _RES_P_RE.match(v):
        return f"{int(m.group(1))}p"
    if v.upper() in ("4K", "UHD"):
        return "2160p"
    return v


def _clean_title(title: str) -> str:
    title = _SPACES_RE.sub(" ", title)
    prev = None
    while prev != title:
        prev = title
        title = _TRIM_RE.sub("", title)
    return title


def _strip_type_words(title: str, found: list[str]) -> tuple[str, float | None]:
    """Remove type words (and a number after one) from the end of `title`.

    The words are appended (upper case) to `found`; the number, if any, is returned.
    """
    number = None
    while True:
        title = _clean_title(title)
        m = _TRAILING_TYPE_RE.search(title)
        if not m:
            return title, number
        found.append(m.group(1).upper())
        if m.group(2) and number is None:
            number = float(m.group(2))
        title = title[:m.start()]


def _safe_anitopy(name: str) -> dict[str, object]:
    """anitopy's fields for `name` (its values are strings or lists of strings)."""
    try:
        result = anitopy.parse(name)
    except Exception:  # noqa: BLE001 - a third-party parser must never break a scan
        logger.debug("anitopy failed on %r", name, exc_info=True)
        return {}
    return result if isinstance(result, dict) else {}


def parse_release_name(filename: str) -> ParsedName:
    """Parse an anime release filename.

    Handles fansub style (``[Group] Title - 03 [1080p].mkv``), SxxEyy and scene style
    (``Title.S01E03.1080p.WEB.x264-GROUP.mkv``), fractional episodes (``12.5``),
    Japanese/Chinese markers (``第12話``), OVAs/specials/movies, versions and CRCs
    (``03v2 [ABCD1234]``). A name without an episode number is taken as a movie/single.

    Args:
        filename: a file name (a path is reduced to its last part).

    Returns:
        The parsed name. Never raises on odd input; the worst case is the whole stem as
        the title.
    """
    name = str(filename).replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch) != "Cc")[:_MAX_NAME].strip()

    # CJK episode/season markers: anitopy leaves them in the title.
    cjk_episode = cjk_season = None
    if m := _CJK_EPISODE_RE.search(name):
        cjk_episode = _cjk_number(m.group(1))
        name = name[:m.start()] + " " + name[m.end():]
    if m := _CJK_SEASON_RE.search(name):
        n = _cjk_number(m.group(1))
        cjk_season = int(n) if n is not None and n.is_integer() else None
        name = name[:m.start()] + " " + name[m.end():]

    for pattern, repl in _PRE_FIXES:
        name = pattern.sub(repl, name)
    info = _safe_anitopy(name)
    stem = name.rsplit(".", 1)[0] if "." in name else name

    types: list[str] = []
    raw_types = info.get("anime_type")
    for t in raw_types if isinstance(raw_types, list) else [raw_types] if raw_types else []:
        types.append(str(t).upper())
    title, type_number = _strip_type_words(str(info.get("anime_title") or ""), types)

    episodes = info.get("episode_number")
    ep_list = episodes if isinstance(episodes, list) else [episodes] if episodes else []
    episode = _as_float(str(ep_list[0])) if ep_list else None
    episode_end = _as_float(str(ep_list[-1])) if len(ep_list) > 1 else None
    if episode is None:
        episode = cjk_episode if cjk_episode is not None else type_number
    season = _as_int(_first(info.get("anime_season")))
    if season is None:
        season = cjk_season

    group = _first(info.get("release_group"))
    if group and group.upper() in _TYPE_KIND:  # "Title - 13 (OVA)": not a group
        types.append(group.upper())
        group = None
    if group is None and " " not in stem and (m := _SCENE_GROUP_RE.search(stem)):
        group = m.group(1)  # scene style: Title.S01E03.1080p.WEB.x264-GROUP

    # A bare number is an episode of the series named by the folder ("Series/03.mkv").
    if episode is None and not types and _BARE_NUMBER_RE.match(title or ""):
        episode, title = float(title), ""
    if not title and episode is None:
        title = _clean_title(stem.replace("_", " "))

    kind: Kind = "episode"
    kind_word = None
    for t in types:
        if t in _TYPE_KIND:
            kind, kind_word = _TYPE_KIND[t], t
            break
    if kind == "episode" and episode is None:
        kind = "movie"  # no episode number: a movie or a single

    if kind == "movie" and episode is not None:
        movie_no: float | None = episode
        episode = episode_end = None
    else:
        movie_no = None
    label = _label(kind, kind_word, episode, episode_end, movie_no)

    version = _as_int(_first(info.get("release_version")))
    checksum = _first(info.get("file_checksum"))
    year = _as_int(_first(info.get("anime_year")))
    return ParsedName(
        title=title, season=season, episode=episode, kind=kind, label=label, group=group,
        resolution=_normalise_resolution(_first(info.get("video_resolution"))),
        version=version, checksum=checksum.upper() if checksum else None, year=year,
        episode_end=episode_end,
    )


def _label(kind: Kind, word: str | None, episode: float | None, episode_end: float | None,
           movie_no: float | None) -> str:
    if kind == "movie":
        return "Movie" if movie_no is None else f"Movie {format_number(movie_no)}"
    if kind == "episode":
        if episode is None:
            return ""
        label = format_number(episode, pad=2)
        if episode_end is not None and episode_end != episode:
            label += "-" + format_number(episode_end, pad=2)
        return label
    if kind == "ova":
        prefix = "OVA"
    elif word in ("NCOP", "NCED", "OP", "ED", "PV", "CM"):
        prefix = word
    else:
        prefix = "SP"
    return prefix if episode is None else f"{prefix} {format_number(episode)}"
