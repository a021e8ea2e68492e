"""`anirec faces harvest`: face pseudo-labels for a real library from the animeface teacher;
`anirec faces detect FILE...`: the promoted detector's faces in pictures (`--json`: one
object a line, `{"file", "faces": [{"box": [x0, y0, x1, y1], "score"}]}` in the file's pixels).

The teacher runs in its own interpreter (`scripts/teacher-venv.sh` creates `.venv-teacher`
with animeface and Pillow < 12); the labels it writes train the detector with
`anirec train faces --labels FILE`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from bot.app import App

if TYPE_CHECKING:
    from PIL import Image

DEFAULT_OUT = "teacher-labels.json"  # under ANIREC_HOME


def cmd_faces(app: App, args: argparse.Namespace) -> int:
    return _detect(app, args) if args.action == "detect" else _harvest(app, args)


def read_picture(name: str) -> tuple[Image.Image | None, str | None]:
    """(the first frame of a picture / GIF / clip file as RGB, None) or (None, a clear error)."""
    from core.errors import AniRecError
    from core.media import MediaLimits, load_media

    try:
        data = Path(name).read_bytes()
    except OSError as exc:
        return None, f"cannot read: {exc.strerror or exc.__class__.__name__}"
    try:
        return load_media(data, MediaLimits(max_frames=1)).first, None
    except AniRecError as exc:
        return None, str(exc)


def _detect(app: App, args: argparse.Namespace) -> int:
    from core.models.registry import load_face_detector

    app.configure_torch(default=1)
    detector = load_face_detector(app.sessions, app.settings.models_dir)
    if detector is None:
        raise SystemExit("anirec: no face detector yet: `anirec train faces` (or `anirec characters bootstrap`)")
    rc = 0
    for name in args.files:
        image, err = read_picture(name)
        if err is not None:
            rc = 1
            print(json.dumps({"file": name, "error": err}) if args.json else f"{name}: {err}")
            continue
        assert image is not None
        faces = detector.detect(image, threshold=args.threshold)
        if args.json:
            print(json.dumps({"file": name, "faces": [{"box": list(f.box), "score": round(f.score, 4)}
                                                      for f in faces]}))
        else:
            print(f"{name}: {len(faces)} face(s)" + "".join(
                f"\n   {list(f.box)} {f.score:.2f}" for f in faces))
        sys.stdout.flush()
    return rc


def _harvest(app: App, args: argparse.Namespace) -> int:
    from bot.cli.progress import CountBar
    from data.teacher import DEFAULT_TEACHER_PYTHON, AnimeFaceTeacher, harvest_labels

    out = Path(args.out) if args.out else app.settings.home / DEFAULT_OUT
    python = Path(args.teacher_python) if args.teacher_python else DEFAULT_TEACHER_PYTHON
    scales = tuple(float(s) for s in args.scales.split(",") if s.strip())
    with AnimeFaceTeacher(python, scales=scales, min_score=args.min_score) as teacher:
        with CountBar("harvesting faces", disable=args.quiet) as progress:
            res = harvest_labels(app.sessions, teacher, out, per_shot=args.per_shot, progress=progress,
                                 keep_empty=args.keep_empty)
    if not res.episodes:
        print("No indexed episodes: run `anirec index LIBRARY` first.")
        return 1
    print(f"{res.labelled} labelled frames, {res.faces} faces in {res.episodes} episodes "
          f"({res.frames} frames looked at in {res.seconds:.0f} s"
          + (f"; {res.skipped_episodes} episodes kept from the previous run" if res.skipped_episodes else "")
          + f") → {res.out}")
    print(f"Train the detector on them: anirec train faces --labels {res.out}")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sp = sub.add_parser("faces", help="faces: detect them in pictures; harvest pseudo-labels with the teacher")
    acts = sp.add_subparsers(dest="action", metavar="ACTION", required=True)
    dt = acts.add_parser("detect", help="the face detector's boxes in picture files")
    dt.add_argument("files", nargs="+", help="picture, GIF or clip files (the first frame)")
    dt.add_argument("--json", action="store_true", help="one JSON object per file, per line")
    dt.add_argument("--threshold", type=float, default=None, help="score threshold (default: the detector's)")
    h = acts.add_parser("harvest", help="run the animeface teacher over indexed frames and write a label file")
    h.add_argument("--teacher-python", default=None,
                   help="the teacher interpreter (default: .venv-teacher/bin/python; "
                        "scripts/teacher-venv.sh creates it and prints its path)")
    h.add_argument("--out", default=None, help=f"label file to write (default: ANIREC_HOME/{DEFAULT_OUT})")
    h.add_argument("--per-shot", type=int, default=2, help="frames labelled per shot (default 2)")
    h.add_argument("--scales", default="1", help="image scales the teacher runs at, e.g. 1,2 (default 1)")
    h.add_argument("--min-score", type=float, default=0.0, help="drop teacher faces below this likelihood")
    h.add_argument("--keep-empty", action="store_true",
                   help="write frames where the teacher found no face as negatives (default: unlabelled)")
    h.add_argument("--quiet", action="store_true", help="no progress bar")
    sp.set_defaults(func=cmd_faces)
