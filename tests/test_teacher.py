"""The animeface teacher (a subprocess under its own interpreter), harvesting pseudo-labels,
and unlabelled (`null`) frames in face-label files.

Tests that need the real teacher run only when `.venv-teacher` exists
(`scripts/teacher-venv.sh`); the error paths use the application's own interpreter, which
has no animeface."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from PIL import Image

from data.teacher import (
    ALIGN,
    DEFAULT_TEACHER_PYTHON,
    WORKER,
    AnimeFaceTeacher,
    HeadMapping,
    TeacherError,
    count_labels,
    fit_mapping,
    harvest_labels,
    pair_with_heads,
)
from training.facedata import iter_face_frames, read_labels

HAVE_TEACHER = DEFAULT_TEACHER_PYTHON.exists()
needs_teacher = pytest.mark.skipif(
    not HAVE_TEACHER, reason=f"no teacher interpreter at {DEFAULT_TEACHER_PYTHON}: run scripts/teacher-venv.sh")


def _probe_image() -> Image.Image:
    """A front-view synthetic head animeface finds (seed 1 of the teacher's own probes)."""
    from data.synth.characters import DrawStyle, make_character, reference_image

    return reference_image(make_character(np.random.default_rng(1), name="probe", sex="m"), DrawStyle(), size=192)


# ----------------------------------------------------------------------------- error paths

def test_missing_interpreter_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(TeacherError, match="does not exist.*teacher-venv.sh"):
        AnimeFaceTeacher(tmp_path / "nope" / "python")
    with pytest.raises(TeacherError, match="not an executable"):
        AnimeFaceTeacher(tmp_path)


def test_an_interpreter_without_animeface_is_a_clear_error() -> None:
    # the application's own interpreter: current Pillow, no animeface
    with pytest.raises(TeacherError, match="animeface is not available"):
        AnimeFaceTeacher(Path(sys.executable))


def test_worker_imports_nothing_from_the_project() -> None:
    import ast

    tree = ast.parse(WORKER.read_text())
    names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert names <= {"__future__", "json", "platform", "sys", "time", "importlib", "PIL", "animeface"}, names


def test_worker_reports_missing_animeface_on_its_first_line() -> None:
    p = subprocess.run([sys.executable, "-I", str(WORKER)], input="", capture_output=True, text=True, timeout=60)
    hello = json.loads(p.stdout.splitlines()[0])
    assert p.returncode == 3 and hello["ready"] is False and "animeface is not available" in hello["error"]


# ----------------------------------------------------------------------------- box convention

def test_head_mapping_and_fit() -> None:
    m = HeadMapping(sx=2.0, sy=1.5, dx=0.0, dy=-0.25)
    assert m.apply((10, 20, 30, 40)) == (0, 10, 40, 40)
    assert m.apply((0, 0, 20, 20), size=(30, 30)) == (0, 0, 30, 20)  # clipped to the image
    teacher = [(10, 20, 30, 40), (100, 100, 140, 160)]
    heads = [m.apply(b) for b in teacher]
    fit = fit_mapping(pair_with_heads(np.array(teacher), np.array(heads), min_cover=0.5))
    assert fit.to_dict() == pytest.approx(m.to_dict(), abs=1e-3)
    assert pair_with_heads(np.zeros((0, 4)), np.array(heads)) == []


# ----------------------------------------------------------------------------- unlabelled frames

def _tiny_video(path: Path, n: int = 12, size: tuple[int, int] = (64, 48)) -> None:
    with av.open(str(path), "w") as c:
        s = c.add_stream("mpeg4", rate=12)
        s.width, s.height, s.pix_fmt = size[0], size[1], "yuv420p"
        for i in range(n):
            arr = np.full((size[1], size[0], 3), i * 20, np.uint8)
            for pkt in s.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")):
                c.mux(pkt)
        for pkt in s.encode():
            c.mux(pkt)


def test_null_frames_are_unlabelled_and_empty_frames_stay_negatives(tmp_path: Path) -> None:
    _tiny_video(tmp_path / "ep.mp4")
    face = {"character": "A", "box": [1, 2, 11, 12], "profile": False, "occluded": False, "visible": 1.0}
    gt: list[Any] = [None] * 12
    gt[0] = {"shot": 0, "faces": [face]}
    gt[4] = {"shot": 1, "faces": []}  # labelled, no face: a negative
    gt[6] = {"shot": 1, "faces": [face]}
    labels = {"episodes": [{"series": "S", "episode": 1, "path": "ep.mp4", "frames_gt": gt}]}
    (tmp_path / "labels.json").write_text(json.dumps(labels))
    labels = read_labels(tmp_path / "labels.json")
    got = [(f.index, len(f.faces)) for f in iter_face_frames(tmp_path, labels, every=2)]
    assert got == [(0, 1), (4, 0), (6, 1)]
    assert [f.index for f in iter_face_frames(tmp_path, labels, every=2, with_faces_only=True)] == [0, 6]
    assert [f.index for f in iter_face_frames(tmp_path, labels, every=3)] == [0, 6]
    # a fully labelled file reads as before: every `every`-th frame
    labels["episodes"][0]["frames_gt"] = [{"shot": 0, "faces": []}] * 12
    assert [f.index for f in iter_face_frames(tmp_path, labels, every=4)] == [0, 4, 8]


# ----------------------------------------------------------------------------- with the real teacher

@needs_teacher
def test_teacher_finds_a_known_face_and_survives_a_bad_file(tmp_path: Path) -> None:
    with AnimeFaceTeacher(DEFAULT_TEACHER_PYTHON, timeout=60) as teacher:  # self-check included
        assert teacher.info["pillow"].split(".")[0] in {str(v) for v in range(12)}
        faces = teacher.detect(_probe_image())
        assert faces and all(0 <= f.box[0] < f.box[2] <= 192 and 0 <= f.box[1] < f.box[3] <= 192 for f in faces)
        assert 0.0 <= faces[0].score <= 1.0
        (tmp_path / "bad.png").write_bytes(b"not a png")
        with pytest.raises(TeacherError, match="could not read bad.png"):
            teacher.detect_path(tmp_path / "bad.png")
        assert teacher.detect(Image.new("RGB", (64, 48), (200, 200, 200))) == []  # still answering
        up = AnimeFaceTeacher(DEFAULT_TEACHER_PYTHON, scales=(1.0, 2.0), self_check=False)
        try:
            assert up.detect(_probe_image())
        finally:
            up.close()


@needs_teacher
def test_teacher_timeout_stops_and_restarts_the_worker() -> None:
    with AnimeFaceTeacher(DEFAULT_TEACHER_PYTHON, self_check=False, timeout=60) as teacher:
        teacher.timeout = 0.001
        with pytest.raises(TeacherError, match="took more than"):
            teacher.detect(Image.new("RGB", (1200, 800), (90, 90, 90)))
        teacher.timeout = 60
        assert teacher.detect(_probe_image())  # a fresh worker


@needs_teacher
def test_harvest_writes_a_readable_label_file(sample_library: Path, tmp_path: Path) -> None:
    from core.db import open_database
    from core.db.models import Episode, Frame, Series, Shot

    gt = json.loads((sample_library / "ground_truth.json").read_text())
    ep = gt["episodes"][0]
    _, sessions = open_database(f"sqlite:///{tmp_path / 'catalog.db'}")
    with sessions() as s:
        series = Series(title=ep["series"], folder=ep["series"])
        s.add(series)
        s.flush()
        e = Episode(series_id=series.id, path=str((sample_library / ep["path"]).resolve()),
                    library_root=str(sample_library), season=1, number=1, fps=ep["fps"],
                    duration=ep["duration"], status="indexed")
        s.add(e)
        s.flush()
        for k, sh in enumerate(ep["shots"][:6]):  # a few shots keep the test fast
            shot = Shot(episode_id=e.id, idx=k, start=sh["start"], end=sh["end"])
            s.add(shot)
            s.flush()
            t = sh["start"]
            while t < sh["end"]:
                s.add(Frame(episode_id=e.id, shot_id=shot.id, t=t))
                t += 0.5
        s.commit()
    out = tmp_path / "labels.json"
    seen: list[tuple[int, int]] = []
    with AnimeFaceTeacher(DEFAULT_TEACHER_PYTHON, timeout=60) as teacher:
        res = harvest_labels(sessions, teacher, out, per_shot=2, progress=lambda d, n: seen.append((d, n)),
                             keep_empty=True)
        assert res.episodes == 1 and res.frames == seen[-1][0] == seen[-1][1] and 0 < res.frames <= 12
        labels = read_labels(out)
        gts = labels["episodes"][0]["frames_gt"]
        labelled = [i for i, g in enumerate(gts) if g is not None]
        assert labelled and all(i % ALIGN == 0 for i in labelled)
        assert count_labels(labels) == (res.labelled, res.faces) and res.labelled == res.frames  # keep_empty
        frames = list(iter_face_frames(Path("/"), labels, every=ALIGN))  # absolute episode paths
        assert [f.index for f in frames] == labelled
        for f in frames:  # each labelled frame lies in its shot
            sh = ep["shots"][gts[f.index]["shot"]]
            assert sh["start"] - 1 / ep["fps"] <= f.index / ep["fps"] < sh["end"]
        # a re-run with the same settings resumes: nothing left to do
        again = harvest_labels(sessions, teacher, out, per_shot=2, keep_empty=True)
        assert again.skipped_episodes == 1 and again.frames == 0 and read_labels(out) == labels
