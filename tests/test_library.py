"""Tests for data.library: scanning a library folder tree built from dummy files."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest

from data.library import (
    MetadataError,
    SeriesEntry,
    content_key,
    parse_series_metadata,
    scan_library,
    season_from_folder,
)


def touch(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def by_title(series: list[SeriesEntry]) -> dict[str, SeriesEntry]:
    return {s.title: s for s in series}


@pytest.fixture()
def library(tmp_path: Path) -> Path:
    root = tmp_path / "lib"
    a = root / "Alpha Show"
    touch(a / "[Grp] Alpha Show - 01 [1080p].mkv")
    touch(a / "[Grp] Alpha Show - 02 [1080p].MKV")  # extension case does not matter
    touch(a / "Alpha Show - 12.5.mp4")
    touch(a / "Season 2" / "Alpha Show S02E01.webm")
    touch(a / "S3" / "Alpha Show - 04.avi")  # season from the folder, not the filename
    touch(a / "Specials" / "Alpha Show - 01.mkv")
    touch(a / "Alpha Show OVA 2.mkv")
    touch(a / "notes.txt")
    touch(a / "cover.jpg")
    touch(a / ".hidden.mkv")
    touch(a / ".trash" / "Alpha Show - 03.mkv")
    touch(a / "references" / "clip.mp4")
    (a / "series.json").write_text(json.dumps({
        "title": "Alpha!", "titles": {"ja": "アルファ", "en": "Alpha!"}, "anilist_id": 42,
        "mal_id": 7, "genres": ["Action", "Comedy", "Action"], "is_adult": False,
    }), encoding="utf-8")
    touch(root / "Beta" / "03.mkv")
    touch(root / "Beta" / "sub" / "deeper" / "04.mkv")
    touch(root / "Gamma Movie (2019) [BD 1080p].mkv")
    touch(root / "Delta - 01.mkv")
    touch(root / "Delta - 02.mkv")
    touch(root / ".hidden_dir" / "Secret - 01.mkv")
    touch(root / "references" / "Ref - 01.mkv")
    return root


def test_series_and_episodes(library: Path) -> None:
    series = by_title(scan_library(library))
    assert sorted(series) == ["Alpha!", "Beta", "Delta", "Gamma"]
    alpha = series["Alpha!"]
    assert alpha.folder == library / "Alpha Show"
    rel = [e.relpath for e in alpha.episodes]  # posix, relative to the library root
    assert rel == [f"Alpha Show/{p}" for p in (
        "[Grp] Alpha Show - 01 [1080p].mkv",
        "[Grp] Alpha Show - 02 [1080p].MKV",
        "Alpha Show - 12.5.mp4",
        "Season 2/Alpha Show S02E01.webm",
        "S3/Alpha Show - 04.avi",
        "Alpha Show OVA 2.mkv",
        "Specials/Alpha Show - 01.mkv",
    )]
    ep = {e.relpath.removeprefix("Alpha Show/"): e for e in alpha.episodes}
    assert ep["Season 2/Alpha Show S02E01.webm"].season == 2
    assert ep["S3/Alpha Show - 04.avi"].season == 3
    assert ep["Alpha Show - 12.5.mp4"].season is None
    assert ep["Alpha Show - 12.5.mp4"].episode == 12.5
    assert ep["Alpha Show - 12.5.mp4"].label == "12.5"
    assert ep["Alpha Show OVA 2.mkv"].kind == "ova"
    assert ep["Specials/Alpha Show - 01.mkv"].kind == "special"
    assert ep["Specials/Alpha Show - 01.mkv"].label == "SP 1"
    first = alpha.episodes[0]
    assert first.path == library / "Alpha Show" / "[Grp] Alpha Show - 01 [1080p].mkv"
    assert first.size == 1 and first.mtime_ns == first.path.stat().st_mtime_ns
    assert first.parsed.group == "Grp"


def test_metadata_is_used(library: Path) -> None:
    alpha = by_title(scan_library(library))["Alpha!"]
    assert alpha.titles == {"ja": "アルファ", "en": "Alpha!"}
    assert (alpha.anilist_id, alpha.mal_id, alpha.is_adult) == (42, 7, False)
    assert alpha.genres == ("Action", "Comedy")
    assert alpha.warnings == ()


def test_folders_without_title_files(library: Path) -> None:
    beta = by_title(scan_library(library))["Beta"]
    assert [e.relpath for e in beta.episodes] == ["Beta/03.mkv", "Beta/sub/deeper/04.mkv"]
    assert [e.episode for e in beta.episodes] == [3.0, 4.0]
    assert beta.folder == library / "Beta" and beta.anilist_id is None


def test_loose_files_group_by_parsed_title(library: Path) -> None:
    series = by_title(scan_library(library))
    delta = series["Delta"]
    assert delta.folder is None
    assert [e.label for e in delta.episodes] == ["01", "02"]
    gamma = series["Gamma"]  # "Gamma Movie (2019)": the movie of Gamma
    assert gamma.episodes[0].kind == "movie" and gamma.episodes[0].label == "Movie"


def test_hidden_and_references_are_skipped(library: Path) -> None:
    paths = [e.relpath for s in scan_library(library) for e in s.episodes]
    assert not any("hidden" in p or "trash" in p or "references" in p or "Secret" in p
                   for p in paths)
    assert not any(p.endswith((".txt", ".jpg")) for p in paths)


@pytest.mark.parametrize("content,message", [
    ("{broken json", "ignored"),
    ('["not", "an", "object"]', "JSON object"),
    ('{"anilist_id": "42"}', "anilist_id"),
    ('{"mal_id": true}', "mal_id"),
    ('{"genres": "Action"}', "genres"),
    ('{"is_adult": "no"}', "is_adult"),
    ('{"title": ""}', "title"),
    ('{"titles": {"en": 5}}', "titles"),
])
def test_broken_metadata_falls_back(tmp_path: Path, content: str, message: str,
                                    caplog: pytest.LogCaptureFixture) -> None:
    touch(tmp_path / "Show" / "Show - 01.mkv")
    (tmp_path / "Show" / "series.json").write_text(content, encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="data.library"):
        (show,) = scan_library(tmp_path)
    assert show.title == "Show" and show.anilist_id is None and show.genres == ()
    assert len(show.episodes) == 1
    assert len(show.warnings) == 1 and message in show.warnings[0]
    assert "series.json" in show.warnings[0]
    assert any("series.json" in r.getMessage() for r in caplog.records)


def test_unknown_metadata_key_is_a_warning_only(tmp_path: Path) -> None:
    touch(tmp_path / "Show" / "Show - 01.mkv")
    (tmp_path / "Show" / "series.json").write_text('{"title": "Real", "genre": ["x"]}')
    (show,) = scan_library(tmp_path)
    assert show.title == "Real"
    assert len(show.warnings) == 1 and "'genre'" in show.warnings[0]


def test_parse_series_metadata_rejects_bool_id() -> None:
    with pytest.raises(MetadataError):
        parse_series_metadata({"anilist_id": True})
    meta, warnings = parse_series_metadata({})
    assert meta.title is None and warnings == []


def test_bracket_tags_are_removed_from_folder_titles(tmp_path: Path) -> None:
    touch(tmp_path / "[Grp] Show Name [BD 1080p]" / "01.mkv")
    (show,) = scan_library(tmp_path)
    assert show.title == "Show Name"


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="needs symlinks")
def test_symlinks_outside_root_are_skipped(tmp_path: Path) -> None:
    root, outside = tmp_path / "lib", tmp_path / "outside"
    touch(outside / "Evil - 01.mkv")
    touch(root / "Show" / "Show - 01.mkv")
    try:
        (root / "Show" / "Evil - 01.mkv").symlink_to(outside / "Evil - 01.mkv")
        (root / "Linked").symlink_to(outside, target_is_directory=True)
        (root / "Show" / "Inside - 02.mkv").symlink_to(root / "Show" / "Show - 01.mkv")
        (root / "Show" / "loop").symlink_to(root / "Show", target_is_directory=True)
        (root / "Show" / "dangling.mkv").symlink_to(tmp_path / "nowhere.mkv")
    except OSError:
        pytest.skip("cannot create symlinks here")
    series = scan_library(root)
    assert [s.title for s in series] == ["Show"]
    assert [e.relpath for e in series[0].episodes] == ["Show/Show - 01.mkv",
                                                          "Show/Inside - 02.mkv"]


def test_missing_root(tmp_path: Path) -> None:
    with pytest.raises(NotADirectoryError):
        scan_library(tmp_path / "nope")
    assert scan_library(tmp_path) == []


@pytest.mark.parametrize("name,season", [("Season 2", 2), ("season_02", 2), ("S3", 3),
                                         ("S03", 3), ("2nd Season", 2), ("Specials", None),
                                         ("Sub", None), ("Season", None)])
def test_season_from_folder(name: str, season: int | None) -> None:
    assert season_from_folder(name) == season


def test_content_key(tmp_path: Path) -> None:
    mib = 1 << 20
    small = touch(tmp_path / "small.bin", b"abc")
    assert len(content_key(small)) == 64
    assert content_key(small) != content_key(touch(tmp_path / "s2.bin", b"abd"))
    big = bytearray(os.urandom(3 * mib))
    path = touch(tmp_path / "big.bin", bytes(big))
    key = content_key(path)
    big[-1] ^= 0xFF  # a change in the tail is seen
    assert content_key(touch(path, bytes(big))) != key
    key = content_key(path)
    big[int(1.5 * mib)] ^= 0xFF  # the middle is not read: a fingerprint, not a full hash
    assert content_key(touch(path, bytes(big))) == key
    assert content_key(touch(path, bytes(big) + b"!")) != key  # the size is in the key
