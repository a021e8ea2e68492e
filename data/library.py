"""Scan an anime library folder into series and episodes, with optional per-series metadata.

Layout understood::

    root/
      Series Title/                    one series per first-level folder
        series.json                    optional metadata (see `load_series_metadata`)
        [Group] Series Title - 01.mkv
        Season 2/                      "Season 2", "Season 02", "S2", "S02" set the season
          Series Title S02E01.mkv
        Specials/                      "Specials", "Extras", "SPs": specials
        references/                    never scanned (character reference images live here)
      Loose Movie (2019).mkv           a file in root: series named from the filename

Hidden files and folders are skipped, and so are symlinks that point outside the root.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from data.names import Kind, ParsedName, format_number, parse_release_name

logger = logging.getLogger(__name__)

VIDEO_EXTENSIONS = frozenset({".mp4", ".mkv", ".webm", ".avi"})
METADATA_FILE = "series.json"
SKIPPED_FOLDERS = frozenset({"references"})  # compared case-insensitively
_SEASON_DIR_RE = re.compile(
    r"^(?:season|s)[\s._-]*(\d{1,3})$|^(\d{1,3})(?:st|nd|rd|th)[\s._-]*season$", re.IGNORECASE)
_SPECIALS_DIR_RE = re.compile(r"^(?:specials?|sps?|extras?|bonus)$", re.IGNORECASE)
_BRACKET_TAG_RE = re.compile(r"\[[^\]]*\]|【[^】]*】")
_KIND_ORDER: dict[str, int] = {"episode": 0, "ova": 1, "special": 2, "movie": 3}
_KEY_CHUNK = 1 << 20  # 1 MiB from each end for content_key


@dataclass(frozen=True)
class EpisodeEntry:
    """One video file of a series."""

    path: Path  # absolute
    relpath: str  # posix, relative to the library root; stable key in the catalog
    parsed: ParsedName
    season: int | None  # from a season folder, else from the filename
    episode: float | None
    label: str
    size: int
    mtime_ns: int

    @property
    def kind(self) -> Kind:
        """"episode", "ova", "special" or "movie"."""
        return self.parsed.kind


@dataclass(frozen=True)
class SeriesEntry:
    """One series: its metadata and its video files, sorted."""

    title: str
    folder: Path | None  # None for files lying directly in the root
    titles: dict[str, str] = field(default_factory=dict)  # language code -> title
    anilist_id: int | None = None
    mal_id: int | None = None
    genres: tuple[str, ...] = ()
    is_adult: bool = False
    cover: str | None = None
    synopsis: str | None = None
    episodes: list[EpisodeEntry] = field(default_factory=list)
    #: Problems found with this series' metadata file (already logged); empty when fine.
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class SeriesMetadata:
    """The validated contents of a `series.json`."""

    title: str | None = None
    titles: dict[str, str] = field(default_factory=dict)
    anilist_id: int | None = None
    mal_id: int | None = None
    genres: tuple[str, ...] = ()
    is_adult: bool = False
    cover: str | None = None  # an https:// image URL
    synopsis: str | None = None


#: A synopsis longer than this is cut (an answer must stay short).
MAX_SYNOPSIS = 1000


class MetadataError(ValueError):
    """A `series.json` file cannot be used; the message says why."""


_METADATA_KEYS = frozenset({"title", "titles", "anilist_id", "mal_id", "genres", "is_adult",
                            "cover", "synopsis"})


def parse_series_metadata(data: object) -> tuple[SeriesMetadata, list[str]]:
    """Validate the JSON value of a `series.json`.

    Schema: ``{"title": str, "titles": {lang: str}, "anilist_id": int, "mal_id": int,
    "genres": [str], "is_adult": bool, "cover": "https://…", "synopsis": str}``, every key
    optional.

    Args:
        data: the decoded JSON.

    Returns:
        The metadata, and warnings for unknown keys (which are ignored).

    Raises:
        MetadataError: a known key has the wrong type or value.
    """
    if not isinstance(data, dict):
        raise MetadataError("must be a JSON object")
    warnings = [f"unknown key {k!r} ignored" for k in sorted(set(data) - _METADATA_KEYS)]

    title = data.get("title")
    if title is not None and (not isinstance(title, str) or not title.strip()):
        raise MetadataError("'title' must be a non-empty string")
    titles = data.get("titles", {})
    if titles is None:
        titles = {}
    if not isinstance(titles, dict) or not all(
            isinstance(k, str) and k and isinstance(v, str) and v.strip()
            for k, v in titles.items()):
        raise MetadataError("'titles' must map language codes to non-empty strings")
    ids: dict[str, int | None] = {}
    for key in ("anilist_id", "mal_id"):
        value = data.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or value <= 0):
            raise MetadataError(f"'{key}' must be a positive integer")
        ids[key] = value
    genres = data.get("genres", [])
    if genres is None:
        genres = []
    if not isinstance(genres, list) or not all(isinstance(g, str) and g.strip() for g in genres):
        raise MetadataError("'genres' must be a list of strings")
    is_adult = data.get("is_adult", False)
    if not isinstance(is_adult, bool):
        raise MetadataError("'is_adult' must be true or false")
    cover = data.get("cover")
    if cover is not None and (not isinstance(cover, str) or not cover.startswith("https://")
                              or len(cover) > 2000 or any(ch.isspace() for ch in cover)):
        raise MetadataError("'cover' must be an https:// image URL")
    synopsis = data.get("synopsis")
    if synopsis is not None and not isinstance(synopsis, str):
        raise MetadataError("'synopsis' must be a string")
    synopsis = (synopsis.strip()[:MAX_SYNOPSIS] or None) if synopsis else None
    meta = SeriesMetadata(
        title=title.strip() if title else None,
        titles={k: v.strip() for k, v in titles.items()},
        anilist_id=ids["anilist_id"], mal_id=ids["mal_id"],
        genres=tuple(dict.fromkeys(g.strip() for g in genres)),  # dedupe, keep order
        is_adult=is_adult, cover=cover, synopsis=synopsis,
    )
    return meta, warnings


def load_series_metadata(folder: Path) -> tuple[SeriesMetadata | None, list[str]]:
    """Read and validate `folder/series.json`, never raising.

    Args:
        folder: a series folder.

    Returns:
        (metadata or None when missing/unusable, warnings). A broken file gives None and a
        warning saying what is wrong; the caller falls back to folder-derived metadata.
    """
    path = folder / METADATA_FILE
    if not path.is_file():
        return None, []
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
        meta, warnings = parse_series_metadata(data)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, MetadataError) as exc:
        return None, [f"{path}: ignored ({exc}); using the folder name instead"]
    return meta, [f"{path}: {w}" for w in warnings]


def content_key(path: Path) -> str:
    """A cheap change-detection fingerprint of a file, for incremental indexing.

    sha256 over the size (8 bytes, little endian), the first 1 MiB and the last 1 MiB
    (the whole file when it is at most 2 MiB). It is a fingerprint, not a full hash: an
    edit that keeps the size and touches only the middle of a large file goes unnoticed,
    which is fine for video files (re-encodes and replacements change size or ends), and
    it costs two small reads instead of reading gigabytes.

    Args:
        path: the file.

    Returns:
        64 hex digits.

    Raises:
        OSError: the file cannot be read.
    """
    h = hashlib.sha256()
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        h.update(size.to_bytes(8, "little"))
        if size <= 2 * _KEY_CHUNK:
            h.update(f.read())
        else:
            h.update(f.read(_KEY_CHUNK))
            f.seek(size - _KEY_CHUNK)
            h.update(f.read(_KEY_CHUNK))
    return h.hexdigest()


def season_from_folder(name: str) -> int | None:
    """The season a folder name stands for: "Season 2", "S02", "2nd Season" -> 2.

    Args:
        name: a folder name.

    Returns:
        The season number, or None when the name is not a season folder.
    """
    m = _SEASON_DIR_RE.match(name.strip())
    if not m:
        return None
    return int(m.group(1) or m.group(2))


def _series_title_from_folder(name: str) -> str:
    # "[Group] Title [BD 1080p]" -> "Title"; plain names are kept as they are.
    cleaned = " ".join(_BRACKET_TAG_RE.sub(" ", name).split())
    return cleaned or name.strip()


def _is_hidden(name: str) -> bool:
    return name.startswith(".")


def _walk_videos(root: Path) -> Iterator[tuple[Path, os.stat_result]]:
    """Yield (path as seen under root, stat of the target) for every video file, sorted."""
    seen_dirs: set[tuple[int, int]] = set()

    def inside_root(p: Path) -> bool:
        try:
            return p.resolve().is_relative_to(root)
        except (OSError, RuntimeError):  # symlink loop
            return False

    def walk(folder: Path) -> Iterator[tuple[Path, os.stat_result]]:
        try:
            st = folder.stat()
        except OSError as exc:
            logger.warning("cannot read folder %s: %s", folder, exc)
            return
        if (st.st_dev, st.st_ino) in seen_dirs:  # symlinked twice or a loop
            return
        seen_dirs.add((st.st_dev, st.st_ino))
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            logger.warning("cannot list folder %s: %s", folder, exc)
            return
        for entry in entries:
            if _is_hidden(entry.name):
                continue
            path = Path(entry.path)
            try:
                is_link = entry.is_symlink()
                if is_link and not inside_root(path):
                    logger.warning("skipping %s: symlink points outside the library", path)
                    continue
                if entry.is_dir():  # follows symlinks (inside root only, checked above)
                    if entry.name.casefold() in SKIPPED_FOLDERS:
                        continue
                    yield from walk(path)
                elif entry.is_file() and path.suffix.lower() in VIDEO_EXTENSIONS:
                    yield path, entry.stat()
            except OSError as exc:  # broken symlink, permission, vanished file
                logger.warning("skipping %s: %s", path, exc)

    yield from walk(root)


def _episode_sort_key(e: EpisodeEntry) -> tuple[int, int, float, str]:
    return (_KIND_ORDER.get(e.kind, 9), e.season if e.season is not None else 1,
            e.episode if e.episode is not None else float("inf"), e.relpath)


def scan_library(root: Path) -> list[SeriesEntry]:
    """Walk a library folder and group its video files into series.

    A file inside a first-level folder belongs to the series named by that folder; a file
    lying in `root` itself belongs to the series named by its parsed title. A
    ``Season 2``/``S2`` folder (at any depth below the series folder) sets the season of
    the files in it; a ``Specials``/``Extras`` folder marks plain episodes as specials.
    A ``series.json`` in a series folder supplies titles, ids, genres and the adult flag;
    when it is broken the series is still scanned with folder-derived metadata and the
    problem is logged and listed in `SeriesEntry.warnings`.

    Args:
        root: the library folder.

    Returns:
        Series sorted by title (case-insensitively), each with its episodes sorted by kind,
        season and number.

    Raises:
        NotADirectoryError: `root` is not a folder.
    """
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise NotADirectoryError(f"library folder not found: {root}")

    groups: dict[str, tuple[str, Path | None, list[EpisodeEntry]]] = {}
    for path, st in _walk_videos(root):
        rel = path.relative_to(root)
        parsed = parse_release_name(path.name)
        season, specials = parsed.season, False
        for part in rel.parts[1:-1]:  # folders between the series folder and the file
            if (s := season_from_folder(part)) is not None:
                season = s
            elif _SPECIALS_DIR_RE.match(part):
                specials = True
        if specials and parsed.kind == "episode":
            parsed = _as_special(parsed)
        episode = EpisodeEntry(
            path=path, relpath=rel.as_posix(), parsed=parsed, season=season,
            episode=parsed.episode, label=parsed.label, size=st.st_size,
            mtime_ns=st.st_mtime_ns,
        )
        if len(rel.parts) > 1:
            series_dir = root / rel.parts[0]
            key = "dir:" + rel.parts[0]
            title, series_folder = _series_title_from_folder(rel.parts[0]), series_dir
        else:
            title = parsed.title or path.stem
            key = "file:" + " ".join(title.casefold().split())
            series_folder = None
        groups.setdefault(key, (title, series_folder, []))[2].append(episode)

    series: list[SeriesEntry] = []
    for title, folder, episodes in groups.values():
        episodes.sort(key=_episode_sort_key)
        meta, warnings = (load_series_metadata(folder) if folder is not None else (None, []))
        for w in warnings:
            logger.warning("%s", w)
        if meta is None:
            meta = SeriesMetadata()
        series.append(SeriesEntry(
            title=meta.title or title, folder=folder, titles=dict(meta.titles),
            anilist_id=meta.anilist_id, mal_id=meta.mal_id, genres=meta.genres,
            cover=meta.cover, synopsis=meta.synopsis,
            is_adult=meta.is_adult, episodes=episodes, warnings=tuple(warnings),
        ))
    series.sort(key=lambda s: (s.title.casefold(), str(s.folder)))
    logger.info("scanned %s: %d series, %d video files", root, len(series),
                sum(len(s.episodes) for s in series))
    return series


def _as_special(parsed: ParsedName) -> ParsedName:
    label = "SP" if parsed.episode is None else f"SP {format_number(parsed.episode)}"
    return replace(parsed, kind="special", label=label)
