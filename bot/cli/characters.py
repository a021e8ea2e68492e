"""`anirec characters add|discover|name|list`: build each series' cast; `anirec characters
who FILE... [--series S] [--json]`: who is in pictures, against one cast or every cast (open
set: a face below the floor is listed with name null), one object a line:
`{"file", "characters": [{"name", "series", "score", "box"}]}` (the shape of `identify --json`)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from bot.app import App

if TYPE_CHECKING:
    from PIL import Image

    from core.models.colours import FusedEmbedder
    from core.models.faces import FaceDetector

MAX_REFERENCE_IMAGES = 20


def _models(app: App, *, need_detector: bool
            ) -> tuple[FaceDetector | None, FusedEmbedder | None]:
    """The face detector and the naming descriptor (the embedder fused with the colour
    descriptor, as the bot matches faces: references are stored for it)."""
    from core.models.colours import naming_embedder
    from core.models.registry import load_character_embedder, load_face_detector

    detector = load_face_detector(app.sessions, app.settings.models_dir)
    base = load_character_embedder(app.sessions, app.settings.models_dir)
    embedder = naming_embedder(base) if base is not None else None
    if need_detector and (detector is None or embedder is None):
        missing = " and ".join(n for n, m in (("a face detector", detector), ("a character embedder", embedder))
                               if m is None)
        raise SystemExit(f"anirec: {missing} must be trained first: `anirec train faces` and "
                         "`anirec train characters` (see README, Characters)")
    return detector, embedder


def _read_images(paths: list[str]) -> list[tuple[str, Image.Image]]:
    from core.media import MediaLimits, load_media

    if len(paths) > MAX_REFERENCE_IMAGES:
        raise SystemExit(f"anirec: at most {MAX_REFERENCE_IMAGES} images at a time")
    out = []
    for p in paths:
        try:
            data = Path(p).read_bytes()
        except OSError as exc:
            raise SystemExit(f"anirec: cannot read {p}: {exc.strerror}") from None
        media = load_media(data, MediaLimits(max_frames=1))  # typed error on bad input
        out.append((Path(p).name, media.first))
    return out


def cmd_characters(app: App, args: argparse.Namespace) -> int:
    app.configure_torch(default=0)
    return ACTIONS[args.action](app, args, app.settings.home.resolve())


def _add(app: App, args: argparse.Namespace, home: Path) -> int:
    from data import cast

    detector, embedder = _models(app, need_detector=False)
    res = cast.add_references(app.sessions, home, args.series, args.name, _read_images(args.images),
                              detector=detector, embedder=embedder)
    print(f"{res.name} ({res.series}): {res.added} reference image(s) added")
    for note in res.faces_found:
        print("  " + note)
    if embedder is None:
        print("  (no character embedder yet: the references are embedded after "
              "`anirec train characters`)")
    return 0


def _discover(app: App, args: argparse.Namespace, home: Path) -> int:
    from bot.cli.progress import CountBar
    from data import cast

    detector, embedder = _models(app, need_detector=True)
    with CountBar("finding faces") as progress:
        res = cast.discover(app.sessions, home, args.series, detector=detector, embedder=embedder,
                            per_shot=args.per_shot, threshold=args.threshold, progress=progress)
    print(f"{res.series}: {res.faces} faces in {res.frames} frames → {len(res.clusters)} clusters")
    for c in res.clusters:
        print(f"  cluster {c['id']:>5}: {c['size']} faces")
    if res.sheet_png:
        print(f"Contact sheet: {res.sheet_html} (and {res.sheet_png.name}); the web chat's "
              "operator page shows it too.")
        print("Name a cluster: anirec characters name CLUSTER \"Character Name\"")
    return 0


def _name(app: App, args: argparse.Namespace, home: Path) -> int:
    from data import cast

    _, embedder = _models(app, need_detector=False)
    res = cast.name_cluster(app.sessions, home, args.cluster, args.name, embedder=embedder)
    print(f"Cluster {args.cluster} is {res.name} ({res.series}): {res.faces} appearances labelled, "
          f"{res.references} reference faces added")
    return 0


def _list(app: App, args: argparse.Namespace, home: Path) -> int:
    from data import cast

    rows = cast.list_cast(app.sessions, args.series)
    if args.json:
        print(json.dumps(rows, ensure_ascii=False, indent=2))
    elif not rows:
        print("No characters yet: `anirec characters add SERIES NAME IMAGES...` or "
              "`anirec characters discover SERIES`.")
    else:
        for r in rows:
            print(f"{r['series']}: {r['name']} — {r['references']} references, "
                  f"{r['appearances']} appearances")
    return 0


def _who(app: App, args: argparse.Namespace, home: Path) -> int:
    from sqlalchemy import select

    from bot.cli.faces import read_picture
    from core.db.models import Series
    from core.recognition.characters import build_character_recognizer
    from data import cast

    app.configure_torch(default=1)
    rec = build_character_recognizer(app.sessions, app.settings.models_dir)
    if rec is None:
        raise SystemExit("anirec: characters need a face detector, a character embedder and a cast: "
                         "`anirec characters bootstrap` (or train faces / characters, then add or discover)")
    with app.sessions() as s:
        titles = {int(sid): str(t) for sid, t in s.execute(select(Series.id, Series.title))}
    series_ids = [cast.find_series(app.sessions, args.series)[0]] if args.series else rec.gallery.all_series()
    rc = 0
    for name in args.files:
        image, err = read_picture(name)
        if err is not None or image is None:
            rc = 1
            print(json.dumps({"file": name, "error": err}) if args.json else f"{name}: {err}")
            continue
        hits = rec.recognize(image, series_ids, titles)
        if args.json:
            print(json.dumps({"file": name, "characters": [h.to_json() for h in hits]}, ensure_ascii=False))
        else:
            print(f"{name}: " + (", ".join(f"{h.name if h.name != 'unknown' else '?'} ({h.score:.2f})"
                                           for h in hits) or "no faces"))
    return rc


def _bar(desc: str) -> Callable[[int, int], None]:
    """A progress callback drawing one tqdm bar on stderr (closed when it reaches its total)."""
    from tqdm import tqdm

    state: dict[str, tqdm] = {}  # type: ignore[type-arg]

    def update(done: int, total: int) -> None:
        bar = state.get("bar")
        if bar is None:
            bar = state["bar"] = tqdm(total=total, desc=desc, unit="frame", leave=False)
        bar.n = done
        bar.refresh()
        if done >= total:
            bar.close()

    return update


def _bootstrap(app: App, args: argparse.Namespace, home: Path) -> int:
    from data.teacher import DEFAULT_TEACHER_PYTHON
    from training.bootstrap import bootstrap

    python = Path(args.teacher_python) if args.teacher_python else DEFAULT_TEACHER_PYTHON
    if not python.exists():
        raise SystemExit("anirec: the animeface teacher is not installed: run scripts/teacher-venv.sh "
                         "(or give --teacher-python)")
    app.configure_torch(default=1)
    res = bootstrap(app.sessions, home, app.settings.models_dir, series=args.series or None,
                    teacher_python=python, rounds=args.rounds, per_shot=args.per_shot,
                    face_steps=args.face_steps, char_steps=args.char_steps,
                    report=lambda line: print(line, flush=True), progress_factory=_bar)
    if args.json:
        print(json.dumps(res.to_json(), indent=2, ensure_ascii=False))
    print("Next: open each contact sheet, `anirec characters name CLUSTER \"Name\"` for the clusters you "
          "know, then `anirec characters calibrate`.")
    return 0


def _calibrate(app: App, args: argparse.Namespace, home: Path) -> int:
    from core.characters import FLOOR_FILE, write_floor
    from training.bootstrap import gallery_floor

    _, embedder = _models(app, need_detector=True)
    assert embedder is not None
    floor, identities, vectors = gallery_floor(app.sessions, app.settings.models_dir, embedder, home=home,
                                               max_wrong=args.max_wrong)
    if floor is None:
        print(f"Not enough to calibrate on ({identities} identities, {vectors} faces): name at least two "
              "characters or run `anirec characters discover` first; the floor stays as it is.")
        return 1
    write_floor(app.settings.models_dir, embedder.version, floor, identities=identities, faces=vectors,
                max_wrong=args.max_wrong)
    print(f"Unknown floor {floor:.3f}: at most {args.max_wrong:.0%} of the faces of someone else in your "
          f"library ({identities} characters and unnamed clusters, {vectors} faces) would get a name "
          f"(models/{FLOOR_FILE}).")
    return 0


ACTIONS: dict[str, Callable[[App, argparse.Namespace, Path], int]] = {
    "add": _add, "discover": _discover, "name": _name, "list": _list, "who": _who,
    "bootstrap": _bootstrap, "calibrate": _calibrate}


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sp = sub.add_parser("characters", help="each series' cast: bootstrap, add, discover, name, list; who")
    acts = sp.add_subparsers(dest="action", metavar="ACTION", required=True)
    a = acts.add_parser("add", help="add a character from 1–5 reference images (one-shot)")
    a.add_argument("series", help="series title, folder name or id")
    a.add_argument("name", help="the character's name")
    a.add_argument("images", nargs="+", help="reference images (a head crop or a screenshot)")
    d = acts.add_parser("discover", help="cluster the faces found in a series and write a contact sheet")
    d.add_argument("series")
    d.add_argument("--per-shot", type=int, default=3, help="frames read per shot (default 3)")
    d.add_argument("--threshold", type=float, default=0.75,
                   help="cosine similarity to merge clusters (default 0.75; higher: more, purer clusters)")
    n = acts.add_parser("name", help="name a discovered cluster")
    n.add_argument("cluster", type=int, help="the cluster number from the contact sheet")
    n.add_argument("name")
    lst = acts.add_parser("list", help="the characters of every (or one) series")
    lst.add_argument("series", nargs="?", default=None)
    lst.add_argument("--json", action="store_true")
    b = acts.add_parser("bootstrap", help="characters from the indexed library with no labels: teacher → "
                                          "detector (self-trained) → embedder (tracks) → discover")
    b.add_argument("series", nargs="*", help="series to train on and discover (default: all indexed)")
    b.add_argument("--rounds", type=int, default=1, help="self-training rounds of the detector (default 1)")
    b.add_argument("--per-shot", type=int, default=2, help="frames the teacher labels per shot (default 2)")
    b.add_argument("--face-steps", type=int, default=None, help="detector training steps a round")
    b.add_argument("--char-steps", type=int, default=400, help="embedder training steps (default 400)")
    b.add_argument("--teacher-python", default=None, help="the teacher interpreter (default .venv-teacher)")
    b.add_argument("--json", action="store_true", help="also print the whole result as JSON")
    c = acts.add_parser("calibrate", help="set the unknown floor from your own gallery and discovered clusters")
    c.add_argument("--max-wrong", type=float, default=0.05,
                   help="share of someone else's faces that may still get a name (default 0.05)")
    w = acts.add_parser("who", help="the characters in picture files (against every cast, or one)")
    w.add_argument("files", nargs="+", help="picture, GIF or clip files (the first frame)")
    w.add_argument("--series", default=None, help="match against this series' cast only")
    w.add_argument("--json", action="store_true", help="one JSON object per file, per line")
    sp.set_defaults(func=cmd_characters)
