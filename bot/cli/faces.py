"""`anirec faces harvest`: face pseudo-labels for a real library from the animeface teacher.

The teacher runs in its own interpreter (`scripts/teacher-venv.sh` creates `.venv-teacher`
with animeface and Pillow < 12); the labels it writes train the detector with
`anirec train faces --labels FILE`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bot.app import App

DEFAULT_OUT = "teacher-labels.json"  # under ANIREC_HOME


def cmd_faces(app: App, args: argparse.Namespace) -> int:
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
    sp = sub.add_parser("faces", help="face labels: harvest pseudo-labels with the animeface teacher")
    acts = sp.add_subparsers(dest="action", metavar="ACTION", required=True)
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
