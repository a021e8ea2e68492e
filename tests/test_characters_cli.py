"""Characters through the real CLI, on a copy of the indexed test library: train the face
detector and the character embedder briefly, build a cast (add, discover, name), identify a
screenshot (characters in the JSON, an annotated still), evaluate."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from sqlalchemy import func, select

from core.db.models import Appearance, Character, CharacterReference, ModelVersion

# Training both models is most of this module's time (~3 min on 2 idle cores); the fixture's
# set-up counts toward the first test's timeout.
pytestmark = pytest.mark.timeout(900)

FACE_STEPS = 160  # enough for the small test library's faces to be found (the bench trains fully)
CHAR_STEPS = 40


@pytest.fixture(scope="module")
def cast_home(indexed_home: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    from bot.app import App
    from bot.cli import main
    from core.config import Settings

    home = tmp_path_factory.mktemp("cast") / "home"
    shutil.copytree(indexed_home.settings.home, home)  # never touch the shared home
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ANIREC_HOME", str(home))
        assert main(["train", "faces", "--steps", str(FACE_STEPS), "--holdout-every", "2"]) == 0
        assert main(["train", "characters", "--steps", str(CHAR_STEPS), "--holdout-every", "2"]) == 0
        app = App.from_settings(Settings(_env_file=None, home=home))  # type: ignore[call-arg]
        yield {"home": home, "app": app, "library": indexed_home.library, "gt": indexed_home.ground_truth,
               "indexed": indexed_home}


def _cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    from bot.cli import main

    capsys.readouterr()
    rc = main(args)
    return rc, capsys.readouterr().out


def _fails(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run a command that must fail cleanly; its error text."""
    from bot.cli import main

    capsys.readouterr()
    try:
        rc = main(args)
    except SystemExit as exc:
        rc, msg = exc.code, str(exc.code)
        assert rc not in (0, None), msg
        return msg
    err = capsys.readouterr().err
    assert rc != 0 and err.startswith("anirec: "), err
    return err


def _count(app: Any, model: Any, *where: Any) -> int:
    with app.sessions() as s:
        return int(s.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def _first_series(gt: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    s = gt["series"][0]
    return s["name"], s


def test_models_are_registered_and_load_without_training_code(cast_home: dict[str, Any]) -> None:
    from core.models.characters import load_character_embedder
    from core.models.faces import load_face_detector

    app = cast_home["app"]
    with app.sessions() as s:
        kinds = {mv.kind: mv for mv in s.scalars(select(ModelVersion).where(ModelVersion.promoted.is_(True)))}
    assert {"faces", "characters"} <= set(kinds)
    det = load_face_detector(app.settings.models_dir / kinds["faces"].path)
    emb = load_character_embedder(app.settings.models_dir / kinds["characters"].path)
    assert det.version == kinds["faces"].version and emb.version == kinds["characters"].version
    assert emb.metrics["train_episodes"] and all(0 <= f <= 1 for f in emb.metrics["floors"].values())


def test_add_references_one_shot(cast_home: dict[str, Any], monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    monkeypatch.setenv("ANIREC_HOME", str(cast_home["home"]))
    app, lib = cast_home["app"], cast_home["library"]
    series, spec = _first_series(cast_home["gt"])
    who = spec["characters"][0]["name"]
    ref = lib / "references" / spec["folder"] / f"{who}.png"
    rc, out = _cli(["characters", "add", series, who, str(ref)], capsys)
    assert rc == 0 and f"{who} ({series}): 1 reference image(s) added" in out
    before = _count(app, CharacterReference)
    # bad input changes nothing: a corrupt file, then a hostile name with a good image
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    assert "image" in _fails(["characters", "add", series, "Someone", str(bad)], capsys).lower()
    assert _count(app, CharacterReference) == before
    assert _count(app, Character, Character.name == "Someone") == 0
    rc, out = _cli(["characters", "add", series, "../../escape", str(ref)], capsys)
    assert rc == 0
    stored = [Path(r.image_path) for r in _refs(app)]
    assert all(not p.is_absolute() and ".." not in p.parts for p in stored)
    assert all((cast_home["home"] / p).resolve().is_relative_to(cast_home["home"].resolve()) for p in stored)
    assert "no series called 'No Such Show'" in _fails(["characters", "add", "No Such Show", who, str(ref)], capsys)
    rc, out = _cli(["characters", "list", "--json"], capsys)
    rows = json.loads(out)
    assert any(r["name"] == who and r["series"] == series and r["references"] == 1 for r in rows)


def _refs(app: Any) -> list[CharacterReference]:
    with app.sessions() as s:
        return list(s.scalars(select(CharacterReference)))


def test_discover_then_name_a_cluster(cast_home: dict[str, Any], monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("ANIREC_HOME", str(cast_home["home"]))
    app, home = cast_home["app"], cast_home["home"]
    series, spec = _first_series(cast_home["gt"])
    rc, out = _cli(["characters", "discover", series], capsys)
    assert rc == 0 and "clusters" in out, out
    n_faces = _count(app, Appearance)
    assert n_faces > 0, out
    sheets = sorted(p.name for p in (home / "contact-sheets").iterdir())
    assert any(n.endswith(".png") for n in sheets) and any(n.endswith(".html") for n in sheets)
    page = next((home / "contact-sheets").glob("*.html")).read_text()
    assert "cluster" in page and "data:image/png;base64," in page and str(home) not in page
    # a re-run replaces the unnamed faces instead of piling them up
    assert _cli(["characters", "discover", series], capsys)[0] == 0
    assert _count(app, Appearance) == n_faces
    with app.sessions() as s:
        biggest = s.execute(select(Appearance.cluster, func.count()).group_by(Appearance.cluster)
                            .order_by(func.count().desc())).first()
    assert biggest is not None
    cluster, size = biggest
    rc, out = _cli(["characters", "name", str(cluster), "Cluster Person"], capsys)
    assert rc == 0 and f"Cluster {cluster} is Cluster Person ({series}): {size} appearances" in out
    with app.sessions() as s:
        ch = s.scalar(select(Character).where(Character.name == "Cluster Person"))
        assert ch is not None and 1 <= len(ch.references) <= 5
        assert all(r.source == "cluster" and r.embedding is not None for r in ch.references)
    assert _count(app, Appearance, Appearance.character_id.is_not(None)) == size
    assert "no cluster 999999" in _fails(["characters", "name", "999999", "Nobody"], capsys)


def test_identify_lists_characters_and_writes_the_annotated_still(
        cast_home: dict[str, Any], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        tmp_path: Path) -> None:
    monkeypatch.setenv("ANIREC_HOME", str(cast_home["home"]))
    gt = cast_home["gt"]
    # a frame with faces, from the first series' episodes
    ep_i, t = next((i, k / e["fps"]) for i, e in enumerate(gt["episodes"]) if e["series"] == gt["series"][0]["name"]
                   for k, f in enumerate(e["frames_gt"]) if len(f["faces"]) >= 1 and k > 24)
    shot = tmp_path / "shot.png"
    shot.write_bytes(cast_home["indexed"].frame_png(ep_i, t))
    rc, out = _cli(["identify", "--json", str(shot)], capsys)
    assert rc == 0
    d = json.loads(out.strip().splitlines()[-1])
    assert d["characters"], d
    for c in d["characters"]:
        assert set(c) == {"name", "series", "score", "box"} and len(c["box"]) == 4
        x0, y0, x1, y1 = c["box"]
        assert 0 <= x0 < x1 <= 480 and 0 <= y0 < y1 <= 270 and 0 <= c["score"] <= 1
        assert c["name"] is None or c["series"] == gt["series"][0]["name"]
    assert "characters" in d["timings_ms"] and "+characters:" in d["model_version"]
    annotated = Path(d["annotated"])
    assert annotated.exists()
    with Image.open(annotated) as im:
        assert im.format == "JPEG" and im.size == (480, 270)


def test_eval_characters_json(cast_home: dict[str, Any], monkeypatch: pytest.MonkeyPatch,
                              capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    monkeypatch.setenv("ANIREC_HOME", str(cast_home["home"]))
    out_json = tmp_path / "chars.json"
    rc, out = _cli(["eval", "characters", "--json", str(out_json), "--report", str(tmp_path / "r")], capsys)
    assert rc == 0 and "| 5 references |" in out
    r = json.loads(out_json.read_text())
    from core.models.registry import load_character_embedder

    trained = set(load_character_embedder(cast_home["app"].sessions, cast_home["app"].settings.models_dir)
                  .metrics["train_episodes"])
    assert r["held_out_episodes"] and not set(r["held_out_episodes"]) & trained
    for k in ("precision", "recall", "f1"):
        assert 0 <= r["detection"][k] <= 1
    for k in ("shots_1", "shots_5", "shots_all"):
        assert 0 <= r["identification"][k]["top1"] <= 1 and r["identification"][k]["per_series"]
    assert r["end_to_end"]["latency_ms"]["p50"] > 0
    assert (tmp_path / "r" / "characters.md").exists()


def test_faces_detect_and_characters_who_json(cast_home: dict[str, Any], monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    monkeypatch.setenv("ANIREC_HOME", str(cast_home["home"]))
    gt = cast_home["gt"]
    ep_i, k = next((i, k) for i, e in enumerate(gt["episodes"]) for k, f in enumerate(e["frames_gt"])
                   if len(f["faces"]) >= 1 and k > 30)
    e = gt["episodes"][ep_i]
    shot = tmp_path / "shot.png"
    shot.write_bytes(cast_home["indexed"].frame_png(ep_i, k / e["fps"]))
    bad = tmp_path / "notes.txt"
    bad.write_text("not a picture")
    rc, out = _cli(["faces", "detect", "--json", str(shot), str(bad)], capsys)
    assert rc == 1  # one file could not be read
    good, err = (json.loads(x) for x in out.strip().splitlines())
    assert set(good) == {"file", "faces"} and good["file"] == str(shot)
    assert good["faces"] and all(set(f) == {"box", "score"} and 0 <= f["score"] <= 1 for f in good["faces"])
    with Image.open(shot) as im:
        w, h = im.size
    assert all(0 <= f["box"][0] < f["box"][2] <= w and 0 <= f["box"][1] < f["box"][3] <= h for f in good["faces"])
    assert err["file"] == str(bad) and "error" in err and str(tmp_path) not in err["error"]

    series, _ = _first_series(gt)
    for args in (["characters", "who", "--json", str(shot)], ["characters", "who", "--json", "--series", series,
                                                               str(shot)]):
        rc, out = _cli(args, capsys)
        assert rc == 0
        d = json.loads(out.strip())
        assert set(d) == {"file", "characters"} and len(d["characters"]) == len(good["faces"][:8])
        cast_names = {(c["series"], c["name"]) for c in json.loads(_cli(["characters", "list", "--json"],
                                                                         capsys)[1])}
        for c in d["characters"]:
            assert set(c) == {"name", "series", "score", "box"}
            assert (c["name"] is None and c["series"] is None) or (c["series"], c["name"]) in cast_names
            if args[3] == "--series":
                assert c["name"] is None or c["series"] == series
    assert "no series called" in _fails(["characters", "who", "--series", "Nope Such", str(shot)], capsys)
