"""Tests of the synthetic sample library generator (data.synth): real MP4 files are written,
decoded with PyAV and checked against the ground-truth sidecar."""

from __future__ import annotations

import functools
import itertools
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from PIL import Image

from data.synth import SynthParams, generate_library, render_out_of_library
from data.synth.series import GENRES, build_series

SERIES, EPISODES, SECONDS = 2, 2, 20.0
WIDTH, HEIGHT = 320, 180


def _decode(path: Path) -> tuple[np.ndarray, dict[str, Any]]:
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        assert s.duration is not None and s.time_base is not None and s.average_rate is not None
        info = {
            "duration": float(s.duration * s.time_base),
            "width": s.codec_context.width,
            "height": s.codec_context.height,
            "codec": s.codec_context.name,
            "fps": float(s.average_rate),
        }
        frames = np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])
    return frames, info


def _diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("synth")
    calls: list[tuple[str, int, int]] = []
    gt_path = generate_library(
        root,
        series=SERIES,
        episodes=EPISODES,
        seconds=SECONDS,
        seed=7,
        width=WIDTH,
        height=HEIGHT,
        progress=lambda label, done, total: calls.append((label, done, total)),
    )
    gt = json.loads(gt_path.read_text(encoding="utf-8"))
    decode = functools.lru_cache(maxsize=3)(lambda rel: _decode(root / rel))  # bounded memory
    lib = {"root": root, "gt_path": gt_path, "gt": gt, "decoded": decode, "progress": calls}
    yield lib
    decode.cache_clear()


def _episodes(lib: dict[str, Any], series_index: int) -> list[dict[str, Any]]:
    name = lib["gt"]["series"][series_index]["name"]
    return sorted(
        (e for e in lib["gt"]["episodes"] if e["series"] == name), key=lambda e: e["episode"]
    )


def _frames(lib: dict[str, Any], ep: dict[str, Any]) -> np.ndarray:
    return lib["decoded"](ep["path"])[0]


def test_layout_names_and_metadata(library: dict[str, Any]) -> None:
    root: Path = library["root"]
    gt = library["gt"]
    assert library["gt_path"] == root / "ground_truth.json"
    assert gt["version"] == 1 and gt["seed"] == 7
    assert gt["params"]["series"] == SERIES and gt["params"]["seconds"] == SECONDS
    assert gt["params"]["width"] == WIDTH and gt["params"]["height"] == HEIGHT
    assert len(gt["series"]) == SERIES and len(gt["episodes"]) == SERIES * EPISODES
    assert [c[1] for c in library["progress"]] == list(range(1, SERIES * EPISODES + 1))
    assert {c[2] for c in library["progress"]} == {SERIES * EPISODES}
    adult = []
    for s in gt["series"]:
        meta = json.loads((root / s["folder"] / "series.json").read_text(encoding="utf-8"))
        assert set(meta) == {"title", "titles", "anilist_id", "mal_id", "genres", "is_adult"}
        assert meta["title"] == s["name"] and set(meta["titles"]) == {"en", "ja", "ja-Latn"}
        assert isinstance(meta["anilist_id"], int) and isinstance(meta["mal_id"], int)
        assert meta["genres"] and set(meta["genres"]) <= set(GENRES)
        adult.append(meta["is_adult"])
        assert 2 <= len(s["characters"]) <= 4
        for c in s["characters"]:
            ref = root / "references" / s["folder"] / f"{c['name']}.png"
            with Image.open(ref) as im:
                assert im.size == (128, 128)
    assert adult.count(True) == 1
    names = [Path(e["path"]).name for e in gt["episodes"]]
    assert all(n.endswith(".mp4") for n in names)
    assert any(re.search(r"^\[[^]]+\] .+ - 0\d ", n) for n in names)  # fansub style
    assert any(re.search(r" S01E0\d\.mp4$", n) for n in names)  # scene style
    assert all(Path(e["path"]).parent.name == e["series"] for e in gt["episodes"])
    # two series share an art style and some characters look alike across series
    assert gt["series"][0]["style"] == gt["series"][1]["style"]
    assert (
        gt["series"][1]["characters"][0]["lookalike_of"] == gt["series"][0]["characters"][0]["name"]
    )
    assert gt["series"][1]["characters"][0]["hair"] == gt["series"][0]["characters"][0]["hair"]


def test_videos_match_sidecar(library: dict[str, Any]) -> None:
    for ep in library["gt"]["episodes"]:
        frames, info = library["decoded"](ep["path"])
        assert info["codec"] == "h264"
        assert frames.shape == (ep["frames"], ep["height"], ep["width"], 3)
        assert (info["width"], info["height"]) == (WIDTH, HEIGHT) and info["fps"] == ep["fps"]
        assert ep["frames"] == round(SECONDS * ep["fps"]) == len(ep["frames_gt"])
        assert info["duration"] == pytest.approx(ep["duration"], abs=1e-6)
        assert ep["duration"] == pytest.approx(SECONDS)
        shots = ep["shots"]
        assert shots[0]["start"] == 0 and shots[-1]["end"] == pytest.approx(ep["duration"])
        for a, b in itertools.pairwise(shots):
            assert a["end"] == pytest.approx(b["start"]) and a["end"] > a["start"]
        for i, fg in enumerate(ep["frames_gt"]):
            s = shots[fg["shot"]]
            assert s["start"] - 1e-9 <= i / ep["fps"] < s["end"] + 1e-9
        op, ed = ep["opening"], ep["ending"]
        assert op is not None and op[0] == 0 and 2.0 <= op[1] <= 6.0
        if ed is not None:  # not every series has an ending sequence
            assert ed[1] == pytest.approx(ep["duration"]) and ed[0] > op[1]
            assert {s["segment"] for s in shots if s["start"] >= ed[0] - 1e-9} == {"ending"}
        assert {s["segment"] for s in shots if s["end"] <= op[1] + 1e-9} == {"opening"}
    assert any(e["ending"] for e in library["gt"]["episodes"])


def _box_fits(frame: np.ndarray, box: list[int], char: dict[str, Any], profile: bool) -> bool:
    """Is `box` where this character's head is? The top of the hair must be at the top of
    the box, and (front views) the skin below the eyes centred in it."""
    x0, y0, x1, y1 = box
    h, w = y1 - y0, x1 - x0
    W = frame.shape[1]
    hair, skin = np.array(char["hair_rgb"]), np.array(char["skin_rgb"])
    ya = max(0, y0 - h // 2)
    cols = frame[ya:y1, x0:x1].astype(int)
    rows = (np.abs(cols - hair).max(axis=2) < 30).mean(axis=1) > 0.2  # rows mostly of hair
    if not rows.any():
        return False
    top = ya + int(np.argmax(rows))
    xa, xb = max(0, x0 - w // 2), min(W, x1 + w // 2)
    low = np.abs(frame[y0 + h // 2 : y1, xa:xb].astype(int) - skin).max(axis=2) < 28
    if low.sum() < 3:
        return False
    cx = xa + float(np.nonzero(low)[1].mean())
    return abs(top - y0) <= h / 6 and (profile or abs(cx - (x0 + x1) / 2) <= w / 6)


def test_face_boxes_inside_frame_and_on_faces(library: dict[str, Any]) -> None:
    chars = {c["name"]: c for s in library["gt"]["series"] for c in s["characters"]}
    n_faces = n_profile = n_occluded = 0
    fits: list[bool] = []
    for ep in library["gt"]["episodes"]:
        frames = _frames(library, ep)
        for i, fg in enumerate(ep["frames_gt"]):
            for f in fg["faces"]:
                n_faces += 1
                n_profile += f["profile"]
                n_occluded += f["occluded"]
                x0, y0, x1, y1 = f["box"]
                assert 0 <= x0 < x1 <= ep["width"] and 0 <= y0 < y1 <= ep["height"], f
                assert f["character"] in chars and 0 < f["visible"] <= 1
                if not f["occluded"] and y1 - y0 >= 16 and i % 3 == 0:
                    fits.append(_box_fits(frames[i], f["box"], chars[f["character"]], f["profile"]))
    assert n_faces > 200 and n_profile > 0
    # Most boxes sit on the head (a box shifted by a third of its size passes ~20-35%).
    assert len(fits) > 50 and np.mean(fits) > 0.7, np.mean(fits)


def test_opening_and_ending_repeat_but_shots_differ(library: dict[str, Any]) -> None:
    for si in range(SERIES):
        e1, e2 = _episodes(library, si)[:2]
        f1, f2 = _frames(library, e1), _frames(library, e2)
        n = round(e1["opening"][1] * e1["fps"])
        assert n == round(e2["opening"][1] * e2["fps"])
        assert _diff(f1[:n], f2[:n]) < 1.5  # same footage, different encodes
        assert _diff(f1[n : n + 12], f2[n : n + 12]) > 10  # right after the OP they part ways
        if e1["ending"]:
            m1, m2 = round(e1["ending"][0] * e1["fps"]), round(e2["ending"][0] * e2["fps"])
            assert _diff(f1[m1:], f2[m2:]) < 1.5
        # every main shot is distinct from every other (mid frames, above the subtitles)
        mids = []
        for ep, fr in ((e1, f1), (e2, f2)):
            h = int(ep["height"] * 0.8)
            mids += [
                fr[int((s["start"] + s["end"]) / 2 * ep["fps"]), :h]
                for s in ep["shots"]
                if s["segment"] == "main"
            ]
        assert len(mids) >= 6
        worst = min(_diff(a, b) for k, a in enumerate(mids) for b in mids[k + 1 :])
        assert worst > 8, worst


def test_recap_reuses_previous_episode(library: dict[str, Any]) -> None:
    root_eps = {e["path"]: e for e in library["gt"]["episodes"]}
    for si in range(SERIES):
        e1, e2 = _episodes(library, si)[:2]
        assert e1["recap"] == []
        assert e2["recap"], "episode 2 must start with a recap"
        fr2 = _frames(library, e2)
        for r in e2["recap"]:
            assert r["source_path"] == e1["path"] and r["source_path"] in root_eps
            assert r["from"] == pytest.approx(e2["opening"][1]) or r["from"] > e2["opening"][1]
            src = _frames(library, e1)
            a, b = round(r["from"] * e2["fps"]), round(r["to"] * e2["fps"])
            s0 = round(r["source_time"] * e1["fps"])
            h = int(e2["height"] * 0.8)  # subtitles may differ between the two episodes
            # the source lies in episode 1's own footage, not its opening
            assert r["source_time"] >= e1["opening"][1]
            assert _diff(fr2[a:b, :h], src[s0 : s0 + b - a, :h]) < 2.5
            assert _diff(fr2[a:b, :h], src[s0 + 30 : s0 + 30 + b - a, :h]) > 4


def test_subtitles_are_recorded(library: dict[str, Any]) -> None:
    eps = library["gt"]["episodes"]
    assert any(e["subtitles"] for e in eps) and not all(e["subtitles"] for e in eps)
    for ep in eps:
        if not ep["subtitles"]:
            assert ep["subtitle_lines"] == []
            continue
        assert ep["subtitle_lines"]
        fr = _frames(library, ep)
        for line in ep["subtitle_lines"]:
            assert 0 <= line["start"] < line["end"] <= ep["duration"] and line["text"]
            # white text with a dark outline appears in the bottom band while the line is shown
            i = round((line["start"] + line["end"]) / 2 * ep["fps"])
            band = fr[i, int(ep["height"] * 0.85) :].astype(int)
            assert (band.min(axis=2) > 225).mean() > 0.004


def test_second_call_is_a_no_op(library: dict[str, Any]) -> None:
    root: Path = library["root"]
    before = {p: p.stat().st_mtime_ns for p in root.rglob("*.mp4")}
    again = generate_library(
        root, series=SERIES, episodes=EPISODES, seconds=SECONDS, seed=7, width=WIDTH, height=HEIGHT
    )
    assert again == library["gt_path"]
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*.mp4")} == before


TINY: dict[str, Any] = {
    "series": 2,
    "episodes": 1,
    "seconds": 10.0,
    "width": 128,
    "height": 72,
    "fps": 24,
}


def _all_frames(root: Path) -> dict[str, np.ndarray]:
    gt = json.loads((root / "ground_truth.json").read_text(encoding="utf-8"))
    return {e["path"]: _decode(root / e["path"])[0] for e in gt["episodes"]}


def test_deterministic_and_seed_dependent(tmp_path: Path) -> None:
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    generate_library(a, seed=3, workers=1, **TINY)
    generate_library(b, seed=3, workers=2, **TINY)  # in-process and worker processes agree
    generate_library(c, seed=4, workers=2, **TINY)
    fa, fb, fc = _all_frames(a), _all_frames(b), _all_frames(c)
    assert fa.keys() == fb.keys()
    for k in fa:
        assert np.array_equal(fa[k], fb[k]), k
        assert (a / k).read_bytes() == (b / k).read_bytes(), k
        assert len(fa[k]) == 240
    ga = json.loads((a / "ground_truth.json").read_text(encoding="utf-8"))
    gb = json.loads((b / "ground_truth.json").read_text(encoding="utf-8"))
    assert ga == gb
    va, vc = list(fa.values()), list(fc.values())
    assert all(_diff(x, y) > 10 for x, y in zip(va, vc, strict=False))


def test_other_parameters_replace_the_old_library(tmp_path: Path) -> None:
    generate_library(tmp_path, seed=3, **TINY)
    old = json.loads((tmp_path / "ground_truth.json").read_text(encoding="utf-8"))
    generate_library(tmp_path, seed=5, **TINY)
    new = json.loads((tmp_path / "ground_truth.json").read_text(encoding="utf-8"))
    assert new["seed"] == 5
    videos = {str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*.mp4")}
    assert videos == {e["path"] for e in new["episodes"]}
    assert {e["path"] for e in old["episodes"]} != videos  # the names carry a per-seed CRC or title
    assert not list(tmp_path.rglob("*.part")) and not list(tmp_path.glob(".synth-*"))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"series": 0}, "series"),
        ({"episodes": 0}, "episodes"),
        ({"seconds": 9.5}, "seconds"),
        ({"width": 481}, "even"),
        ({"fps": 0}, "fps"),
        ({"seed": -1}, "seed"),
        ({"workers": 0}, "workers"),
        ({"difficulty": "brutal"}, "difficulty"),
    ],
)
def test_bad_arguments(tmp_path: Path, kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        generate_library(tmp_path, **kwargs)
    assert not (tmp_path / "ground_truth.json").exists()


def test_bad_argument_types(tmp_path: Path) -> None:
    with pytest.raises(TypeError):
        generate_library(tmp_path, series="2")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        SynthParams(seconds=float("nan"))


def test_out_of_library_stills() -> None:
    a = render_out_of_library(4, seed=1, width=160, height=90)
    b = render_out_of_library(4, seed=1, width=160, height=90)
    c = render_out_of_library(4, seed=2, width=160, height=90)
    assert len(a) == 4 and all(im.size == (160, 90) and im.mode == "RGB" for im in a)
    arr = [np.asarray(im) for im in a]
    assert all(np.array_equal(x, np.asarray(y)) for x, y in zip(arr, b, strict=True))
    assert all(_diff(x, np.asarray(y)) > 5 for x, y in zip(arr, c, strict=True))
    assert min(_diff(x, y) for k, x in enumerate(arr) for y in arr[k + 1 :]) > 5


def test_hard_difficulty_twins_every_second_series(tmp_path: Path) -> None:
    """--difficulty hard: each odd series is a spin-off twin of the one before it (same drawing,
    near-same palette, shared backgrounds, a look-alike heroine), night scenes are more common,
    and the video is encoded at a lower bitrate; the default library is unchanged by it."""
    default = build_series(0, 6)
    hard = build_series(0, 6, difficulty="hard")
    for i in (1, 3, 5):
        twin, base = hard[i], hard[i - 1]
        assert twin.draw_style == base.draw_style
        assert twin.locations[:2] == base.locations[:2]
        gaps = [abs(a - b) for k in base.palette for a, b in zip(twin.palette[k], base.palette[k], strict=True)]
        assert max(gaps) <= 12
    assert default[3].locations[:2] != default[2].locations[:2]  # by default only series 1
    nights = sum(loc.tod == "night" for s in hard for loc in s.locations)
    assert nights > sum(loc.tod == "night" for s in default for loc in s.locations)
    easy, rough = tmp_path / "easy", tmp_path / "hard"
    generate_library(easy, seed=3, workers=1, **{**TINY, "series": 2, "episodes": 1})
    generate_library(rough, seed=3, workers=1, difficulty="hard", **{**TINY, "series": 2, "episodes": 1})
    ge = json.loads((easy / "ground_truth.json").read_text(encoding="utf-8"))
    gh = json.loads((rough / "ground_truth.json").read_text(encoding="utf-8"))
    assert "difficulty" not in ge["params"] and gh["params"]["difficulty"] == "hard"
    size = {p.name: p.stat().st_size for p in easy.rglob("*.mp4")}
    assert sum(p.stat().st_size for p in rough.rglob("*.mp4")) < 0.8 * sum(size.values())


def test_cli_sample_library_hard(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    """`anirec sample-library DIR --difficulty hard` writes the hard library (sizes given here
    stay as given); an unknown difficulty is refused by the parser and writes nothing."""
    from bot.cli import main

    monkeypatch.setenv("ANIREC_HOME", str(tmp_path / "home"))
    out = tmp_path / "lib"
    assert main(["sample-library", str(out), "--difficulty", "hard", "--series", "2",
                 "--episodes", "1", "--seconds", "10"]) == 0
    gt = json.loads((out / "ground_truth.json").read_text(encoding="utf-8"))
    assert gt["params"]["difficulty"] == "hard" and len(gt["episodes"]) == 2
    assert "Wrote 2 series, 2 episodes" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["sample-library", str(tmp_path / "other"), "--difficulty", "brutal"])
    assert not (tmp_path / "other").exists()
