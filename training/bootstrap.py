"""Characters from the operator's own library, with no labels: `anirec characters bootstrap`.

    faces harvest (the animeface teacher: precise, sparse boxes)
    → train faces on them
    → self-training rounds: the student's confident detections on the labelled frames that
      the teacher missed become labels too, and the detector is trained again (recall grows
      past the teacher's)
    → tracks: faces linked from frame to frame within a shot (box overlap) are one identity
    → train characters --supervision tracks
    → discover (cluster every series' faces, contact sheets) → the operator names clusters
      → `anirec characters calibrate` sets the unknown floor from that gallery.

Each stage is a function here; `bootstrap` chains them with progress and a time estimate.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

logger = logging.getLogger(__name__)

STUDENT_MIN_SCORE = 0.6  # a student detection becomes a label at or above this score
SAME_FACE_IOU = 0.3  # a student box overlapping a label this much is that label
TRACK_IOU = 0.3  # boxes of consecutive labelled frames of a shot overlapping this much: one track

# rough costs a unit on one idle core (the estimate is rescaled as stages finish)
COST = {"harvest": 0.35, "faces_step": 1.2, "self_label": 0.08, "characters_step": 0.6, "discover": 0.06}

Report = Callable[[str], None]


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    from training.faces import box_iou

    return box_iou(a, b)


def link_tracks(data: dict[str, Any]) -> int:
    """Give every labelled face a track id (`character` = "t<N>"): within a shot, a face
    continues the track of the face it overlaps most (IoU ≥ TRACK_IOU) in the shot's previous
    labelled frame, else starts a new one. Returns the number of tracks."""
    n = 0
    for e in data.get("episodes", []):
        prev: dict[Any, tuple[np.ndarray, list[str]]] = {}
        for g in e.get("frames_gt", []):
            if not g or not g.get("faces"):
                continue
            boxes = np.array([f["box"] for f in g["faces"]], np.float64).reshape(-1, 4)
            ids: list[str] = []
            last = prev.get(g.get("shot"))
            taken: set[int] = set()
            ious = _iou(boxes, last[0]) if last is not None and len(last[0]) else None
            for i in range(len(boxes)):
                j = -1
                if ious is not None:
                    row = np.where([k not in taken for k in range(ious.shape[1])], ious[i], -1.0)
                    j = int(row.argmax()) if row.max() >= TRACK_IOU else -1
                if j >= 0 and last is not None:
                    taken.add(j)
                    ids.append(last[1][j])
                else:
                    n += 1
                    ids.append(f"t{n}")
            for f, t in zip(g["faces"], ids, strict=True):
                f["character"] = t
            prev[g.get("shot")] = (boxes, ids)
    return n


def self_label(data: dict[str, Any], detector: Any, *, min_score: float = STUDENT_MIN_SCORE,
               progress: Callable[[int, int], None] | None = None) -> tuple[dict[str, Any], int]:
    """A copy of a label file's data with the student's confident detections added to every
    labelled frame (those not already labelled: IoU < SAME_FACE_IOU with every label).
    Returns (data, faces added)."""
    from data.video import VideoError, read_frames_at

    out = json.loads(json.dumps(data))
    total = sum(1 for e in out.get("episodes", []) for g in e.get("frames_gt", []) if g is not None)
    done = added = 0
    for e in out.get("episodes", []):
        idx = [i for i, g in enumerate(e.get("frames_gt", [])) if g is not None]
        if not idx:
            continue
        try:
            rgbs = read_frames_at(Path(e["path"]), [i / float(e["fps"]) for i in idx])
        except VideoError as exc:
            logger.warning("self-training: skipping %s: %s", e["path"], exc)
            continue
        for i, rgb in zip(idx, rgbs, strict=True):
            g = e["frames_gt"][i]
            have = np.array([f["box"] for f in g["faces"]], np.float64).reshape(-1, 4)
            for face in detector.detect(Image.fromarray(rgb), threshold=min_score):
                b = np.array([face.box], np.float64)
                if len(have) and _iou(b, have).max() >= SAME_FACE_IOU:
                    continue
                g["faces"].append({"character": "", "box": [int(v) for v in face.box], "score": round(face.score, 4),
                                   "source": "student", "profile": False, "occluded": False, "visible": 1.0})
                have = np.vstack([have, b])
                added += 1
            done += 1
            if progress:
                progress(done, total)
    return out, added


def write_labels(path: Path, data: dict[str, Any]) -> Path:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def only_series(data: dict[str, Any], titles: set[str] | None) -> dict[str, Any]:
    """The label file's data restricted to some series (all when `titles` is None)."""
    if titles is None:
        return data
    out = dict(data)
    out["episodes"] = [e for e in data.get("episodes", []) if e.get("series") in titles]
    out["series"] = [s for s in data.get("series", []) if s.get("name") in titles]
    return out


@dataclass
class Estimate:
    """The time left, from rough per-unit costs rescaled by how the finished stages went."""

    planned: dict[str, float]  # stage → estimated seconds
    started: float = field(default_factory=time.perf_counter)
    done: dict[str, tuple[float, float]] = field(default_factory=dict)  # stage → (estimated, actual)

    def finish(self, stage: str, seconds: float) -> None:
        self.done[stage] = (self.planned.get(stage, seconds), seconds)

    def left(self) -> float:
        est = sum(e for e, _ in self.done.values())
        act = sum(a for _, a in self.done.values())
        ratio = act / est if est > 0 else 1.0
        return ratio * sum(v for k, v in self.planned.items() if k not in self.done)


def fmt_seconds(s: float) -> str:
    return f"{s / 60:.0f} min" if s >= 90 else f"{s:.0f} s"


@dataclass
class BootstrapResult:
    labels: list[str]  # the label files written, teacher's first
    faces: list[dict[str, Any]]  # each `train faces` result
    student_faces_added: list[int]
    tracks: int
    characters: dict[str, Any]
    discovered: list[dict[str, Any]]
    seconds: dict[str, float]

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def bootstrap(sessions: Any, home: Path, models_dir: Path, *, series: list[str] | None, teacher_python: Path,
              rounds: int = 1, per_shot: int = 2, face_steps: int | None = None, char_steps: int = 400,
              holdout_every: int = 3, report: Report = print,
              progress_factory: Callable[[str], Any] | None = None) -> BootstrapResult:
    """The whole chain on the indexed library (see the module docstring)."""
    from data import cast
    from data.teacher import AnimeFaceTeacher, _plan, count_labels, harvest_labels
    from training.faces import TrainConfig
    from training.promote import NoProgress, train_characters, train_faces

    titles = {cast.find_series(sessions, s)[1] for s in series} if series else None
    plan = _plan(sessions, per_shot)
    if not plan:
        raise cast.CastError("no indexed episodes: run `anirec index LIBRARY` first")
    frames = sum(len(p["frames"]) for p in plan)
    frames_used = sum(len(p["frames"]) for p in plan if titles is None or p["series"] in titles)
    steps = face_steps or TrainConfig().steps
    est = Estimate({"harvest": frames * COST["harvest"],
                    "train_faces": (1 + rounds) * steps * COST["faces_step"],
                    "self_label": rounds * frames_used * COST["self_label"],
                    "train_characters": char_steps * COST["characters_step"],
                    "discover": frames_used * 1.5 * COST["discover"]})
    report(f"bootstrap: {len(plan)} episodes, {frames} frames to label; {rounds} self-training round(s); "
           f"estimated {fmt_seconds(sum(est.planned.values()))} on one idle core")
    seconds: dict[str, float] = {}
    bar = progress_factory or (lambda _desc: None)

    def stage(name: str, t0: float) -> None:
        seconds[name] = round(seconds.get(name, 0.0) + time.perf_counter() - t0, 1)
        est.finish(name, seconds[name])
        report(f"  {name}: {fmt_seconds(seconds[name])}; about {fmt_seconds(est.left())} left")

    t0 = time.perf_counter()
    teacher_out = home / "teacher-labels.json"
    with AnimeFaceTeacher(teacher_python) as teacher:
        res = harvest_labels(sessions, teacher, teacher_out, per_shot=per_shot, keep_empty=True,
                             progress=bar("harvesting faces (teacher)"))
    data = only_series(json.loads(teacher_out.read_text(encoding="utf-8")), titles)
    labelled, n_faces = count_labels(data)
    report(f"  teacher: {n_faces} faces in {labelled} frames ({res.frames} looked at)")
    if n_faces == 0:
        raise cast.CastError("the teacher found no faces in the library; nothing to train the detector on")
    link_tracks(data)
    labels = [write_labels(home / "bootstrap-labels-0.json", data)]
    stage("harvest", t0)
    faces_results: list[dict[str, Any]] = []
    added: list[int] = []
    for r in range(rounds + 1):
        t0 = time.perf_counter()
        fr = train_faces(sessions, models_dir, labels_file=labels[-1], steps=face_steps,
                         holdout_every=holdout_every, resume=False, progress=NoProgress())
        faces_results.append(fr.to_json())
        report(f"  detector round {r}: precision {fr.precision:.2f}, recall {fr.recall:.2f} on {fr.checked_on} "
               f"({'promoted' if fr.promoted else 'not promoted'})")
        stage("train_faces", t0)
        if r == rounds:
            break
        from core.models.registry import load_face_detector

        t0 = time.perf_counter()
        det = load_face_detector(sessions, models_dir)
        assert det is not None
        data, n_add = self_label(data, det, progress=bar(f"self-training round {r + 1}"))
        added.append(n_add)
        link_tracks(data)
        labels.append(write_labels(home / f"bootstrap-labels-{r + 1}.json", data))
        report(f"  round {r + 1}: the student added {n_add} faces the teacher missed")
        stage("self_label", t0)
    t0 = time.perf_counter()
    n_tracks = link_tracks(data)
    write_labels(labels[-1], data)
    ch = train_characters(sessions, models_dir, labels_file=labels[-1], steps=char_steps,
                          holdout_every=holdout_every, resume=False, supervision="tracks")
    report(f"  character embedder {ch.version}: {ch.faces} faces in {n_tracks} tracks")
    stage("train_characters", t0)
    t0 = time.perf_counter()
    from core.models.colours import naming_embedder
    from core.models.registry import load_character_embedder, load_face_detector

    det = load_face_detector(sessions, models_dir)
    emb = load_character_embedder(sessions, models_dir)
    assert det is not None and emb is not None
    discovered = []
    for title in sorted(titles or {p["series"] for p in plan}):
        d = cast.discover(sessions, home, title, detector=det, embedder=naming_embedder(emb),
                          progress=bar(f"discovering {title}"))
        discovered.append({"series": d.series, "frames": d.frames, "faces": d.faces, "clusters": len(d.clusters),
                           "sheet": str(d.sheet_html) if d.sheet_html else None})
        report(f"  {d.series}: {d.faces} faces → {len(d.clusters)} clusters"
               + (f"; contact sheet {d.sheet_html}" if d.sheet_html else ""))
    stage("discover", t0)
    return BootstrapResult([str(p) for p in labels], faces_results, added, n_tracks, ch.to_json(), discovered,
                           seconds)


def gallery_floor(sessions: Any, models_dir: Path, embedder: Any, *, home: Path | None = None,
                  max_wrong: float | None = None) -> tuple[float | None, int, int]:
    """The unknown floor from the operator's own library: every named character's references
    and every unnamed discovered cluster (other people), across all series, as the measure of
    how someone not in the cast scores. Returns (floor or None, identities, vectors)."""
    from sqlalchemy import select

    from core.characters import MAX_WRONG, bytes_vector, calibrate_floor, load_gallery
    from core.db.models import Appearance

    gal = load_gallery(sessions, embedder, home=home)
    ids: dict[Any, np.ndarray] = {("c", m.character_id): m.vectors for m in gal.cast(gal.all_series())}
    reembed_appearances(sessions, embedder)
    with sessions() as s:
        rows = s.execute(select(Appearance.cluster, Appearance.embedding)
                         .where(Appearance.character_id.is_(None), Appearance.cluster.is_not(None),
                                Appearance.embedding.is_not(None))).all()
    clusters: dict[int, list[np.ndarray]] = {}
    for c, e in rows:
        v = bytes_vector(e)
        if v.shape[0] == embedder.dim:
            clusters.setdefault(int(c), []).append(v)
    for c, vs in clusters.items():
        if len(vs) >= 2:
            ids[("k", c)] = np.stack(vs)
    n = sum(len(v) for v in ids.values())
    return calibrate_floor(ids, MAX_WRONG if max_wrong is None else max_wrong), len(ids), n


def reembed_appearances(sessions: Any, embedder: Any) -> int:
    """Unnamed discovered faces whose stored vector is not of `embedder`'s size (discovered
    before the bot named with the colour descriptor fused in) are embedded again from their
    frame, and stored; returns how many. Faces whose video is gone keep their old vector (and
    are left out of the floor)."""
    from pathlib import Path

    from sqlalchemy import select

    from core.characters import vector_bytes
    from core.db.models import Appearance, Episode, Frame
    from data.video import read_frames_at

    with sessions() as s:
        stale = [a for a in s.scalars(select(Appearance).where(Appearance.character_id.is_(None),
                                                             Appearance.cluster.is_not(None),
                                                             Appearance.embedding.is_not(None)))
                 if len(a.embedding) != 4 * embedder.dim]
        by_ep: dict[str, list[tuple[Appearance, float]]] = {}
        for a in stale:
            fr = s.get(Frame, a.frame_id) if a.frame_id is not None else None
            ep = s.get(Episode, fr.episode_id) if fr is not None else None
            if fr is not None and ep is not None and Path(ep.path).exists():
                by_ep.setdefault(ep.path, []).append((a, fr.t))
        done = 0
        for path, items in by_ep.items():
            rgbs = read_frames_at(Path(path), [t for _, t in items])
            for (a, _), rgb in zip(items, rgbs, strict=True):
                from PIL import Image

                v = embedder.embed_faces(Image.fromarray(rgb), [(a.x0, a.y0, a.x1, a.y1)])[0]
                a.embedding = vector_bytes(v)
                done += 1
        s.commit()
    if done:
        logger.info("characters: %d discovered faces embedded again for the naming descriptor", done)
    return done
