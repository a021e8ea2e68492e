"""Tests for data.names: release filename parsing (one case per supported form)."""

from __future__ import annotations

import pytest

from data.names import ParsedName, format_number, parse_release_name

# filename -> (title, season, episode, kind, label)
CASES: list[tuple[str, tuple[str, int | None, float | None, str, str]]] = [
    ("[Group] Title - 03 [1080p].mkv", ("Title", None, 3.0, "episode", "03")),
    ("Title S02E05.mp4", ("Title", 2, 5.0, "episode", "05")),
    ("Title - S02E05 - Subtitle [720p].mkv", ("Title", 2, 5.0, "episode", "05")),
    ("Title - 12.5.mkv", ("Title", None, 12.5, "episode", "12.5")),
    ("Title 第12話.mp4", ("Title", None, 12.0, "episode", "12")),
    ("Title 第3话.mp4", ("Title", None, 3.0, "episode", "03")),
    ("Title 第十二話.mkv", ("Title", None, 12.0, "episode", "12")),
    ("Title 第１２集.mp4", ("Title", None, 12.0, "episode", "12")),
    ("Title 第2期 第3話.mkv", ("Title", 2, 3.0, "episode", "03")),
    ("[Group] Title OVA.mkv", ("Title", None, None, "ova", "OVA")),
    ("Title OVA 2.mkv", ("Title", None, 2.0, "ova", "OVA 2")),
    ("[Group] Title - OVA 01 [720p].mkv", ("Title", None, 1.0, "ova", "OVA 1")),
    ("Title - 13 (OVA).mkv", ("Title", None, 13.0, "ova", "OVA 13")),
    ("Title OAD.mkv", ("Title", None, None, "ova", "OVA")),
    ("Title - SP1.mkv", ("Title", None, 1.0, "special", "SP 1")),
    ("Title SP 02.mkv", ("Title", None, 2.0, "special", "SP 2")),
    ("Title - SP.mkv", ("Title", None, None, "special", "SP")),
    ("Title Specials - 02.mkv", ("Title", None, 2.0, "special", "SP 2")),
    ("Title NCOP1.mkv", ("Title", None, 1.0, "special", "NCOP 1")),
    ("Title (2019) [BD 1080p].mkv", ("Title", None, None, "movie", "Movie")),
    ("Title - Movie.mkv", ("Title", None, None, "movie", "Movie")),
    ("Title Movie 2.mkv", ("Title", None, None, "movie", "Movie 2")),
    ("Kimi no Na wa.mkv", ("Kimi no Na wa", None, None, "movie", "Movie")),
    ("Title - 03v2 [ABCD1234].mkv", ("Title", None, 3.0, "episode", "03")),
    ("Title.S01E03.1080p.WEB.x264-GROUP.mkv", ("Title", 1, 3.0, "episode", "03")),
    ("Title S01E03E04.mkv", ("Title", 1, 3.0, "episode", "03-04")),
    ("Title - 01-02.mkv", ("Title", None, 1.0, "episode", "01-02")),
    ("Title Season 2 - 07.mkv", ("Title", 2, 7.0, "episode", "07")),
    ("My.Hero.Academia.2nd.Season.-.04.mkv", ("My Hero Academia", 2, 4.0, "episode", "04")),
    ("Title 1x05.mkv", ("Title", 1, 5.0, "episode", "05")),
    ("Title EP04.mkv", ("Title", None, 4.0, "episode", "04")),
    ("Title - 100.mkv", ("Title", None, 100.0, "episode", "100")),
    ("Title_-_03_[1080p].mkv", ("Title", None, 3.0, "episode", "03")),
    ("Title - 03.5v3.mkv", ("Title", None, 3.5, "episode", "3.5")),
    ("03.mkv", ("", None, 3.0, "episode", "03")),
    # unicode / odd titles
    ("進撃の巨人 - 05.mkv", ("進撃の巨人", None, 5.0, "episode", "05")),
    ("【Group】Title 第01話【1080p】.mp4", ("Title", None, 1.0, "episode", "01")),
    ("Steins;Gate 0 - 05.mkv", ("Steins;Gate 0", None, 5.0, "episode", "05")),
    ("Re:Zero - 05.mkv", ("Re:Zero", None, 5.0, "episode", "05")),
    ("86 - 03.mkv", ("86", None, 3.0, "episode", "03")),
    ("🎉 - 01.mkv", ("🎉", None, 1.0, "episode", "01")),
    ("Some.Title.With.Many.Dots.mkv", ("Some Title With Many Dots", None, None, "movie", "Movie")),
    ("/srv/anime/Title/Title - 03.mkv", ("Title", None, 3.0, "episode", "03")),
    ("C:\\anime\\Title - 03.mkv", ("Title", None, 3.0, "episode", "03")),
]


@pytest.mark.parametrize("filename,expected", CASES, ids=[c[0] for c in CASES])
def test_parse_release_name(filename: str,
                            expected: tuple[str, int | None, float | None, str, str]) -> None:
    p = parse_release_name(filename)
    assert isinstance(p, ParsedName)
    assert (p.title, p.season, p.episode, p.kind, p.label) == expected


def test_group_resolution_version_checksum() -> None:
    p = parse_release_name("[SubsPlease] Sousou no Frieren - 12 (1080p) [F02B9CA5].mkv")
    assert (p.group, p.resolution, p.checksum) == ("SubsPlease", "1080p", "F02B9CA5")
    p = parse_release_name("Title - 03v2 [abcd1234].mkv")
    assert (p.version, p.checksum) == (2, "ABCD1234")
    p = parse_release_name("Title.S01E03.1080p.WEB.x264-GROUP.mkv")
    assert (p.group, p.resolution) == ("GROUP", "1080p")
    assert parse_release_name("Title - 03 (BD 1920x1080 HEVC).mkv").resolution == "1080p"
    assert parse_release_name("Title (2019) [BD 1080p].mkv").year == 2019
    # A type word in parentheses is not a release group.
    assert parse_release_name("Title - 13 (OVA).mkv").group is None


@pytest.mark.parametrize("name", [
    "", ".mkv", "....mkv", "-.mkv", "[][][].mkv", "a" * 3000 + ".mkv", "Title\x00\x07 - 01.mkv",
    "[[[[", "]]]] - - - .avi", "\u202eevil - 01.mkv", "Title - 99999999999999999999.mkv",
    "第話.mp4", "第百万話.mp4", "S99E99E99E99.mkv",
])
def test_hostile_names_never_raise(name: str) -> None:
    p = parse_release_name(name)
    assert p.kind in ("episode", "ova", "special", "movie")
    assert isinstance(p.title, str) and isinstance(p.label, str)
    assert len(p.title) <= 1000
    if p.episode is None and p.kind == "episode":
        pytest.fail("an episode needs a number")


def test_no_control_characters_survive() -> None:
    assert parse_release_name("Title\x00\x07 - 01.mkv").title == "Title"


@pytest.mark.parametrize("x,pad,text", [(3, 2, "03"), (12.5, 2, "12.5"), (100, 2, "100"),
                                        (1, 0, "1"), (0, 2, "00")])
def test_format_number(x: float, pad: int, text: str) -> None:
    assert format_number(x, pad=pad) == text
