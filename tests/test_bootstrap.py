"""`anirec characters bootstrap`'s stages (training/bootstrap.py): tracks linked through a shot,
the student's confident detections added as labels, the time estimate; and the whole chain
through the CLI on a copy of the indexed test library (slow; needs the animeface teacher)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from data.teacher import DEFAULT_TEACHER_PYTHON
from training.bootstrap import Estimate, link_tracks, only_series, self_label


def _labels(faces_per_frame: list[tuple[int, list[list[int]]]]) -> dict[str, Any]:
    return {"episodes": [{"series": "S", "path": "x.mp4", "fps": 24.0,
                          "frames_gt": [None if boxes is None else {"shot": shot, "faces": [
                              {"character": "", "box": b} for b in boxes]} for shot, boxes in faces_per_frame]}]}


def test_tracks_follow_a_face_through_its_shot_and_stop_at_the_cut() -> None:
    a, b = [10, 10, 60, 70], [200, 20, 250, 80]
    data = _labels([(0, [a, b]), (0, [[14, 12, 64, 72], b]), (0, [b]), (1, [a])])
    data["episodes"][0]["frames_gt"].insert(1, None)  # an unlabelled frame in between changes nothing
    assert link_tracks(data) == 3
    ids = [[f["character"] for f in g["faces"]] for g in data["episodes"][0]["frames_gt"] if g]
    assert ids[0][0] == ids[1][0] and ids[0][1] == ids[1][1] == ids[2][0]  # moved a little: same track
    assert ids[0][0] != ids[0][1]
    assert ids[3][0] not in (ids[0][0], ids[0][1])  # the next shot starts new tracks
    assert only_series(data, {"Other"})["episodes"] == [] and only_series(data, None) is data


def test_student_labels_only_what_the_teacher_missed(indexed_home: Any) -> None:
    from core.models.faces import build_face_detector

    lib = indexed_home.library
    gt = indexed_home.ground_truth
    e = gt["episodes"][0]
    keep = {i for i, f in enumerate(e["frames_gt"]) if f["faces"]}
    keep = set(sorted(keep)[:4])
    frames_gt = [({"shot": f["shot"], "faces": [{"character": "", "box": x["box"]} for x in f["faces"][:1]]}
                  if i in keep else None) for i, f in enumerate(e["frames_gt"])]
    data = {"episodes": [{"series": e["series"], "path": str(lib / e["path"]), "fps": e["fps"],
                          "frames_gt": frames_gt}]}
    before = json.dumps(data)
    det = build_face_detector(seed=0)  # untrained: scores near its prior, so a low floor admits boxes
    out, added = self_label(data, det, min_score=0.0)
    assert json.dumps(data) == before  # the input is not changed
    from training.faces import box_iou

    got = 0
    for g0, g1 in zip(data["episodes"][0]["frames_gt"], out["episodes"][0]["frames_gt"], strict=True):
        if g0 is None:
            assert g1 is None
            continue
        assert g1["faces"][: len(g0["faces"])] == g0["faces"]
        new = [f for f in g1["faces"] if f.get("source") == "student"]
        got += len(new)
        boxes = np.array([f["box"] for f in g1["faces"]], float)
        ious = box_iou(boxes, boxes)
        np.fill_diagonal(ious, 0)
        assert (ious < 0.3).all()  # nothing labelled twice
    assert got == added > 0
    _, none = self_label(data, det, min_score=1.01)
    assert none == 0


def test_estimate_rescales_by_the_stages_done() -> None:
    est = Estimate({"a": 10.0, "b": 20.0, "c": 30.0})
    assert est.left() == 60.0
    est.finish("a", 20.0)  # twice as slow as thought
    assert est.left() == pytest.approx(100.0)


@pytest.mark.slow
@pytest.mark.timeout(1800)
@pytest.mark.skipif(not DEFAULT_TEACHER_PYTHON.exists(), reason="no animeface teacher: scripts/teacher-venv.sh")
def test_bootstrap_chain_through_the_cli(indexed_home: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    from sqlalchemy import func, select

    from bot.cli import main
    from core.db.models import Appearance, ModelVersion

    home = tmp_path / "home"
    shutil.copytree(indexed_home.settings.home, home)
    monkeypatch.setenv("ANIREC_HOME", str(home))
    rc = main(["characters", "bootstrap", "--face-steps", "120", "--char-steps", "30", "--rounds", "1", "--json"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "estimated" in out and "left" in out and "the student added" in out
    res = json.loads(out[out.index("{"):out.rindex("}") + 1])
    assert len(res["labels"]) == 2 and len(res["faces"]) == 2 and res["tracks"] > 0
    assert all(Path(p).exists() for p in res["labels"])
    from bot.app import App
    from core.config import Settings

    app = App.from_settings(Settings(_env_file=None, home=home))  # type: ignore[call-arg]
    with app.sessions() as s:
        kinds = set(s.scalars(select(ModelVersion.kind).where(ModelVersion.promoted.is_(True))))
        assert {"faces", "characters"} <= kinds
        assert (s.scalar(select(func.count()).select_from(Appearance)) or 0) > 0
    assert res["discovered"] and all(d["clusters"] >= 1 for d in res["discovered"])
    rc = main(["characters", "calibrate"])
    out = capsys.readouterr().out
    assert rc == 0 and "Unknown floor" in out and (home / "models" / "characters-floor.json").exists()
