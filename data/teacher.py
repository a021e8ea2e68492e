"""An offline face teacher (`animeface`) and harvesting face pseudo-labels from a library.

`animeface` needs Pillow < 12 (with Pillow >= 12 it silently finds no faces) and AniRec does
not hold the application to an old Pillow, so the teacher runs in its own interpreter
(`scripts/teacher-venv.sh` → `.venv-teacher`) as a subprocess: `data/teacher_worker.py`
reads image paths and answers face boxes, one JSON document a line. Only the worker file is
taken from this project (the interpreter runs isolated, `-I`: nothing else is importable).

animeface boxes faces (brow to chin); AniRec's labels are head boxes (hair cap to chin).
`HeadMapping` turns a teacher box into a head box (a scale and an offset of the centre, in
units of the teacher box); `HEAD_FROM_FACE` was fitted on the training episodes of the
default sample library (`bench/bench_teacher.py`).

`harvest_labels` runs the teacher over indexed frames (up to `per_shot` a shot) and writes a
label file in the synthetic generator's format that `anirec train faces --labels FILE`
reads. Unlabelled frames are `null`.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import queue
import subprocess
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TypedDict, cast

import numpy as np
from PIL import Image

from core.errors import AniRecError
from core.models.faces import Face

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
WORKER = Path(__file__).resolve().parent / "teacher_worker.py"
DEFAULT_TEACHER_PYTHON = ROOT / ".venv-teacher" / "bin" / "python"
ALIGN = 6  # harvested frame indices are multiples of this, so readers keeping every 2nd, 3rd or 6th frame see them
PROBE_SEEDS = (1, 5, 7, 8, 9)  # synthetic characters whose front view animeface finds (likelihood ≥ 0.96)


class TeacherError(AniRecError):
    """The teacher interpreter is missing, broken, too slow or finds nothing where it must."""


# ----------------------------------------------------------------------------- box convention

@dataclass(frozen=True)
class HeadMapping:
    """Teacher face box → head box: the centre moves by (dx, dy) teacher-box widths/heights,
    the size is scaled by (sx, sy)."""

    sx: float = 1.0
    sy: float = 1.0
    dx: float = 0.0
    dy: float = 0.0

    def apply(self, box: Iterable[float], size: tuple[int, int] | None = None) -> tuple[int, int, int, int]:
        x0, y0, x1, y1 = (float(v) for v in box)
        w, h = x1 - x0, y1 - y0
        cx, cy = (x0 + x1) / 2 + self.dx * w, (y0 + y1) / 2 + self.dy * h
        hw, hh = self.sx * w / 2, self.sy * h / 2
        out = [cx - hw, cy - hh, cx + hw, cy + hh]
        if size is not None:
            lims = (size[0], size[1], size[0], size[1])
            out = [min(max(v, 0.0), float(lim)) for v, lim in zip(out, lims, strict=True)]
        return tuple(int(round(v)) for v in out)  # type: ignore[return-value]

    def to_dict(self) -> dict[str, float]:
        return {k: round(v, 4) for k, v in asdict(self).items()}


RAW = HeadMapping()
# Fitted on the training episodes of the default sample library (bench/bench_teacher.py,
# scale 1): medians over 72 teacher boxes matched to a ground-truth head box. Median IoU with
# the head box: 0.48 raw, 0.82 mapped.
HEAD_FROM_FACE = HeadMapping(sx=1.2135, sy=1.3625, dx=0.0, dy=-0.316)


def fit_mapping(pairs: list[tuple[tuple[float, ...], tuple[float, ...]]]) -> HeadMapping:
    """The median scale/offset taking teacher boxes to their matched head boxes."""
    if not pairs:
        return RAW
    t = np.array([p[0] for p in pairs], np.float64)
    g = np.array([p[1] for p in pairs], np.float64)
    tw, th = t[:, 2] - t[:, 0], t[:, 3] - t[:, 1]
    gw, gh = g[:, 2] - g[:, 0], g[:, 3] - g[:, 1]
    dx = ((g[:, 0] + g[:, 2]) - (t[:, 0] + t[:, 2])) / 2 / tw
    dy = ((g[:, 1] + g[:, 3]) - (t[:, 1] + t[:, 3])) / 2 / th
    return HeadMapping(float(np.median(gw / tw)), float(np.median(gh / th)), float(np.median(dx)),
                       float(np.median(dy)))


def pair_with_heads(teacher: np.ndarray, heads: np.ndarray, min_cover: float = 0.6
                    ) -> list[tuple[tuple[float, ...], tuple[float, ...]]]:
    """(teacher box, head box) pairs: each teacher box with the head box that contains most of
    it (≥ min_cover of its area), one to one, largest overlap first."""
    teacher = np.asarray(teacher, np.float64).reshape(-1, 4)
    heads = np.asarray(heads, np.float64).reshape(-1, 4)
    if not len(teacher) or not len(heads):
        return []
    t, h = teacher[:, None], heads[None, :]
    ix = (np.minimum(t[..., 2], h[..., 2]) - np.maximum(t[..., 0], h[..., 0])).clip(0)
    iy = (np.minimum(t[..., 3], h[..., 3]) - np.maximum(t[..., 1], h[..., 1])).clip(0)
    area = ((teacher[:, 2] - teacher[:, 0]) * (teacher[:, 3] - teacher[:, 1]))[:, None]
    cover = ix * iy / np.maximum(area, 1e-9)
    out, used_t, used_h = [], set(), set()
    for k in np.argsort(-cover, axis=None):
        i, j = divmod(int(k), cover.shape[1])
        if cover[i, j] < min_cover:
            break
        if i in used_t or j in used_h:
            continue
        used_t.add(i)
        used_h.add(j)
        out.append((tuple(teacher[i]), tuple(heads[j])))
    return out


# ----------------------------------------------------------------------------- the teacher process

class _WorkerFace(TypedDict):
    box: list[int]  # x0, y0, x1, y1
    score: float


class _WorkerMessage(TypedDict, total=False):
    """A line from teacher_worker.py: its greeting or the answer to one request."""

    ready: bool  # the greeting: the worker loaded animeface (plus its version fields)
    error: str
    id: int  # the request answered
    faces: list[_WorkerFace]
    pillow: str


class AnimeFaceTeacher:
    """The animeface detector, run by `python` (an interpreter with animeface and Pillow < 12).

    Args:
        python: the teacher interpreter (`scripts/teacher-venv.sh` prints it).
        scales: image scales to run (animeface misses faces below ~60 px; 2.0 finds smaller
            ones at 2-3x the time); boxes of several scales are merged by NMS.
        timeout: seconds to wait for one image (the worker is restarted after a timeout).
        self_check: on start, check that it finds a face in a known-face image (catches an
            animeface that silently finds nothing, as it does with Pillow >= 12).
        min_score: drop faces of lower animeface likelihood.
    """

    def __init__(self, python: Path = DEFAULT_TEACHER_PYTHON, *, scales: tuple[float, ...] = (1.0,),
                 timeout: float = 30.0, self_check: bool = True, min_score: float = 0.0) -> None:
        self.python = Path(os.path.abspath(python))  # not resolve(): a venv python is a symlink
        self.scales = tuple(float(s) for s in scales)
        self.timeout = float(timeout)
        self.min_score = float(min_score)
        self.info: dict[str, object] = {}  # the worker's greeting: versions of what it runs
        self._proc: subprocess.Popen[str] | None = None
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._stderr: deque[str] = deque(maxlen=20)
        self._tmp = tempfile.TemporaryDirectory(prefix="anirec-teacher-")
        self._next_id = 0
        self._start()
        if self_check:
            self.check()

    # -- process management
    def _start(self) -> None:
        if not self.python.exists():
            raise TeacherError(f"teacher interpreter {self.python} does not exist; create it with "
                               "scripts/teacher-venv.sh (it prints the path to pass)")
        if not os.access(self.python, os.X_OK) or self.python.is_dir():
            raise TeacherError(f"teacher interpreter {self.python} is not an executable file")
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
        env.update(OMP_NUM_THREADS="1", PYTHONIOENCODING="utf-8")
        try:
            # -I: isolated (no PYTHONPATH, no script folder, no user site): only the worker file
            # itself comes from this project.
            self._proc = subprocess.Popen([str(self.python), "-I", str(WORKER)], stdin=subprocess.PIPE,
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                          encoding="utf-8", bufsize=1, env=env, cwd=self._tmp.name)
        except OSError as exc:
            raise TeacherError(f"cannot run teacher interpreter {self.python}: {exc.strerror or exc}") from None
        self._lines = queue.Queue()
        threading.Thread(target=self._pump, args=(self._proc.stdout, self._lines), daemon=True).start()
        threading.Thread(target=self._drain, args=(self._proc.stderr,), daemon=True).start()
        hello = self._read(self.timeout, "starting")
        if not hello.get("ready"):
            err = hello.get("error") or "the teacher worker did not start"
            self._kill()
            raise TeacherError(err)
        self.info = {k: v for k, v in hello.items() if k != "ready"}

    @staticmethod
    def _pump(stream: IO[str], q: queue.Queue[str | None]) -> None:
        for line in stream:
            q.put(line)
        q.put(None)

    def _drain(self, stream: IO[str]) -> None:
        for line in stream:
            self._stderr.append(line.rstrip())

    def _read(self, timeout: float, what: str) -> _WorkerMessage:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            self._kill()
            raise TeacherError(f"the teacher took more than {timeout:g} s {what}; it was stopped "
                               "(the next call starts it again)") from None
        if line is None:
            code = self._proc.wait(timeout=5) if self._proc else None
            time.sleep(0.05)  # let the stderr reader catch up
            tail = "; ".join(list(self._stderr)[-3:])
            self._proc = None
            raise TeacherError(f"the teacher worker ({self.python}) exited (status {code}) {what}"
                               + (f": {tail}" if tail else ""))
        try:
            return cast(_WorkerMessage, json.loads(line))
        except json.JSONDecodeError:
            raise TeacherError(f"the teacher worker wrote something unexpected: {line[:200]!r}") from None

    def _kill(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
            self._proc = None

    def close(self) -> None:
        if self._proc is not None:
            try:
                if self._proc.stdin:
                    self._proc.stdin.close()
                self._proc.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                self._kill()
            self._proc = None
        self._tmp.cleanup()

    def __enter__(self) -> AnimeFaceTeacher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:  # pragma: no cover - best effort
        try:
            self._kill()
        except Exception:  # noqa: BLE001
            pass

    # -- detection
    def detect_path(self, path: Path) -> list[Face]:
        """Faces animeface finds in an image file (teacher face boxes, not head boxes)."""
        if self._proc is None:
            self._start()
        assert self._proc is not None and self._proc.stdin is not None
        self._next_id += 1
        req = {"id": self._next_id, "path": str(Path(path).resolve()), "scales": list(self.scales)}
        try:
            self._proc.stdin.write(json.dumps(req) + "\n")
            self._proc.stdin.flush()
        except OSError:
            pass  # the worker is gone: _read reports it with its stderr
        resp = self._read(self.timeout, f"on {Path(path).name}")
        if resp.get("id") != self._next_id:
            self._kill()
            raise TeacherError("the teacher worker answered out of order; it was stopped")
        if "error" in resp:
            raise TeacherError(f"the teacher could not read {Path(path).name}: {resp['error']}")
        faces = [Face(tuple(int(v) for v in f["box"]), float(f["score"])) for f in resp.get("faces", [])]
        return [f for f in faces if f.score >= self.min_score]

    def detect(self, image: Image.Image) -> list[Face]:
        """Faces animeface finds in a PIL image (written to a temporary PNG for the worker)."""
        path = Path(self._tmp.name) / "image.png"
        image.convert("RGB").save(path, format="PNG", compress_level=1)
        return self.detect_path(path)

    def check(self) -> None:
        """Raise TeacherError unless animeface finds a face in a known-face image."""
        from data.synth.characters import DrawStyle, make_character, reference_image

        for seed in PROBE_SEEDS:
            ch = make_character(np.random.default_rng(seed), name="probe", sex="f" if seed % 2 == 0 else "m")
            if self.detect(reference_image(ch, DrawStyle(), size=192)):
                return
        raise TeacherError(f"animeface in {self.python} (Pillow {self.info.get('pillow', '?')}) found no face in "
                           "known-face images; with Pillow >= 12 it silently finds nothing: use "
                           "scripts/teacher-venv.sh (Pillow<12)")


# ----------------------------------------------------------------------------- harvesting

@dataclass
class HarvestResult:
    out: Path
    episodes: int
    frames: int  # frames the teacher looked at
    labelled: int  # frames written as labelled (with faces, or empty with keep_empty)
    faces: int
    skipped_episodes: int  # already in `out` from an earlier run
    seconds: float


def _aligned_index(times: list[float], fps: float, start: float, end: float, taken: set[int]) -> int | None:
    """A frame index that is a multiple of ALIGN, inside [start, end) seconds and near the
    first of `times` that yields one not already `taken`."""
    for t in times:
        base = int(round(t * fps))
        for cand in sorted({base - base % ALIGN, base - base % ALIGN + ALIGN}, key=lambda i: abs(i - base)):
            ct = cand / fps
            if start - 0.5 / fps <= ct < end - 0.5 / fps and cand not in taken:
                return cand
    return None


class _PlanEntry(TypedDict):
    """One indexed episode to label and the frames picked from it."""

    path: str
    series: str
    folder: str
    season: int
    episode: float
    fps: float
    duration: float | None
    frames: list[tuple[int, int]]  # (frame index, shot idx or -1)


def _plan(sessions: sessionmaker[Session], per_shot: int) -> list[_PlanEntry]:
    """Per indexed episode: its metadata and the frame indices to label [(index, shot idx)]."""
    from sqlalchemy import select

    from core.db.models import Episode, Frame, Series, Shot

    with sessions() as s:
        eps = s.execute(select(Episode, Series.title, Series.folder).join(Series, Series.id == Episode.series_id)
                        .where(Episode.status == "indexed").order_by(Series.title, Episode.season,
                                                                     Episode.number, Episode.path)).all()
        plan: list[_PlanEntry] = []
        for ep, title, folder in eps:
            fps = float(ep.fps or 0) or 24.0
            shots = {sh.id: sh for sh in s.scalars(select(Shot).where(Shot.episode_id == ep.id))}
            rows = s.execute(select(Frame.shot_id, Frame.t).where(Frame.episode_id == ep.id, Frame.oped == 0)
                             .order_by(Frame.t)).all()
            by_shot: dict[int | None, list[float]] = {}
            for shot_id, t in rows:
                by_shot.setdefault(shot_id, []).append(float(t))
            picks: dict[int, int] = {}
            for shot_id, ts in by_shot.items():
                sh = shots.get(shot_id) if shot_id is not None else None
                start, end = (sh.start, sh.end) if sh is not None else (ts[0], ts[-1] + 1.0 / fps)
                k = min(per_shot, len(ts))
                spread = [ts[int(i)] for i in np.unique(np.linspace(0, len(ts) - 1, k).round().astype(int))]
                for t in spread:
                    # try this frame's time first, then the shot's other frames
                    idx = _aligned_index([t] + ts, fps, start, end, set(picks))
                    if idx is not None:
                        picks[idx] = sh.idx if sh is not None else -1
            if picks:
                plan.append({"path": ep.path, "series": title, "folder": folder or title,
                             "season": ep.season or 1, "episode": ep.number or 0, "fps": fps,
                             "duration": ep.duration, "frames": sorted(picks.items())})
    return plan


def _write_atomic(path: Path, data: object) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def harvest_labels(sessions: sessionmaker[Session], teacher: AnimeFaceTeacher, out: Path, per_shot: int = 2,
                   progress: Callable[[int, int], None] | None = None, *,
                   mapping: HeadMapping = HEAD_FROM_FACE, keep_empty: bool = False) -> HarvestResult:
    """Run the teacher over up to `per_shot` indexed frames a shot and write a face-label file.

    The file has the synthetic generator's format (`training/facedata.py` reads it): per
    episode `frames_gt[i]` is `{"shot", "faces": [{"character": "", "box", "teacher_box",
    "score", ...}]}` for a labelled frame and `null` otherwise. Boxes are the teacher's
    boxes mapped to head boxes by `mapping`. Frames where the teacher finds nothing stay
    unlabelled unless `keep_empty` (animeface misses many faces, so its silence is weak
    evidence of "no face"). Frame indices are multiples of ALIGN. Episode paths are absolute.
    Nothing is written when there are no indexed episodes.

    The file is rewritten after every episode; a re-run with the same settings skips the
    episodes already in it (resume)."""
    from data.video import VideoError, read_frames_at

    out = Path(out)
    settings = {"per_shot": per_shot, "scales": list(teacher.scales), "min_score": teacher.min_score,
                "mapping": mapping.to_dict(), "keep_empty": keep_empty, "align": ALIGN}
    data: dict[str, Any] = {"source": "animeface", "teacher": teacher.info, "harvest": settings,
                            "series": [], "episodes": []}
    if out.exists():
        try:
            old = json.loads(out.read_text(encoding="utf-8"))
            if isinstance(old, dict) and old.get("harvest") == settings:
                data["episodes"] = [e for e in old.get("episodes", []) if isinstance(e, dict)]
        except (OSError, json.JSONDecodeError):
            pass
    done_paths = {e["path"] for e in data["episodes"]}
    plan = _plan(sessions, per_shot)
    todo = [p for p in plan if p["path"] not in done_paths]
    series = {p["series"]: p["folder"] for p in plan}
    data["series"] = [{"name": n, "folder": f, "characters": []} for n, f in sorted(series.items())]
    total = sum(len(p["frames"]) for p in todo)
    n_frames = n_labelled = n_faces = 0
    t0 = time.perf_counter()
    out.parent.mkdir(parents=True, exist_ok=True)
    for p in todo:
        idxs = [i for i, _ in p["frames"]]
        try:
            rgbs = read_frames_at(Path(p["path"]), [i / p["fps"] for i in idxs])
        except VideoError as exc:
            logger.warning("harvest: skipping %s: %s", p["path"], exc)
            n_frames += len(idxs)
            if progress:
                progress(n_frames, total)
            continue
        gt: list[dict[str, Any] | None] = [None] * (max(idxs) + 1)
        for (i, shot), rgb in zip(p["frames"], rgbs, strict=True):
            img = Image.fromarray(rgb)
            faces = teacher.detect(img)
            n_frames += 1
            if faces or keep_empty:
                gt[i] = {"shot": shot, "faces": [
                    {"character": "", "box": list(mapping.apply(f.box, img.size)), "teacher_box": list(f.box),
                     "score": round(f.score, 4), "profile": False, "occluded": False, "visible": 1.0}
                    for f in faces]}
                n_labelled += 1
                n_faces += len(faces)
            if progress:
                progress(n_frames, total)
        data["episodes"].append({"series": p["series"], "season": p["season"], "episode": p["episode"],
                                 "path": p["path"], "fps": p["fps"], "duration": p["duration"],
                                 "frames_gt": gt})
        data["created"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        _write_atomic(out, data)
    return HarvestResult(out, len(data["episodes"]), n_frames, n_labelled, n_faces,
                         len(plan) - len(todo), round(time.perf_counter() - t0, 1))


def count_labels(data: dict[str, Any]) -> tuple[int, int]:
    """(labelled frames, faces) in a label file's data."""
    frames = faces = 0
    for e in data.get("episodes", []):
        for g in e.get("frames_gt", []):
            if g is not None:
                frames += 1
                faces += len(g.get("faces", []))
    return frames, faces
