"""`anirec eval [scene|characters]`: our recognizer and three baselines on the same perturbed
queries, or face detection and character identification on the held-out labelled episodes."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from bot.app import App


def cmd_eval_characters(app: App, args: argparse.Namespace) -> int:
    """Face detection and character identification on the held-out labelled episodes."""
    import numpy as np
    from PIL import Image

    from bot.cli.progress import StageBars
    from core.characters import CastMember, Gallery, load_floor
    from core.models.colours import naming_embedder
    from core.models.registry import load_character_embedder, load_face_detector
    from core.recognition import CharacterRecognizer
    from training.characters import FaceSet, embed_faceset
    from training.eval import write_json
    from training.eval_characters import evaluate_characters, format_table
    from training.facedata import iter_face_frames, read_labels, references
    from training.promote import labels_path

    st = app.settings
    detector = load_face_detector(app.sessions, st.models_dir)
    base = load_character_embedder(app.sessions, st.models_dir)
    if detector is None or base is None:
        raise SystemExit("anirec: train the models first: `anirec train faces` and `anirec train characters`")
    embedder = naming_embedder(base)  # what the bot names faces with (embedder + colour)
    lf = Path(args.labels) if args.labels else labels_path(app.sessions, None)
    root, labels = lf.parent, read_labels(lf)
    refs = references(root, labels)
    # the gallery of the end-to-end check: each character's reference image + 4 training faces
    train_eps = embedder.metrics.get("train_episodes") or None
    faces = FaceSet.from_frames(iter_face_frames(root, labels, train_eps, every=2, with_faces_only=True))
    vecs = embed_faceset(embedder, faces)
    series_ids = {name: k + 1 for k, name in enumerate(sorted(refs))}
    gal = Gallery(embedder_version=embedder.version)
    cid = 0
    for series, cast in refs.items():
        for name, path in cast.items():
            idx = [i for i, n in enumerate(faces.names) if n == f"{series}::{name}"][:4]
            with Image.open(path) as im:
                v = np.vstack([embedder.embed_reference(im)[None], vecs[idx]])
            cid += 1
            gal.by_series.setdefault(series_ids[series], []).append(CastMember(cid, name, series_ids[series], v))
    recognizer = CharacterRecognizer(detector, embedder, gal, floor=load_floor(st.models_dir, embedder))
    bars = StageBars()
    try:
        result = evaluate_characters(root, labels, detector=detector, embedder=embedder, recognizer=recognizer,
                                     series_ids=series_ids, titles={v: k for k, v in series_ids.items()},
                                     progress=bars)
    finally:
        bars.close()
    result["command"] = "anirec eval characters"
    print(format_table(result))
    if args.json:
        write_json(result, Path(args.json))
        print(f"JSON: {args.json}")
    if args.report:
        out = Path(args.report)
        out.mkdir(parents=True, exist_ok=True)
        (out / "characters.md").write_text(format_table(result) + "\n", encoding="utf-8")
        print(f"Report: {out / 'characters.md'}")
    return 0


def cmd_eval(app: App, args: argparse.Namespace) -> int:
    if args.what == "characters":
        app.configure_torch(default=1)
        return cmd_eval_characters(app, args)
    from bot.cli.progress import StageBars
    from training.eval import EvalConfig, evaluate, format_table, require_plotting, write_json, write_report

    if args.report:
        require_plotting()  # refused before the run rather than after it
    app.configure_torch(default=1)
    logging.getLogger("matplotlib").setLevel(logging.WARNING)
    st = app.settings
    try:  # bad sizes are refused before anything runs
        config = EvalConfig(queries=args.queries, seed=args.seed, calibrate=args.calibrate,
                            calibration_queries=args.calibration_queries,
                            baselines=not args.no_baselines, search_k=st.search_k,
                            match_threshold=st.match_threshold,
                            unsure_threshold=st.unsure_threshold, subcrops=st.subcrops)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    bars = StageBars()
    try:
        result = evaluate(app.sessions, index_dir=st.index_dir, models_dir=st.models_dir,
                          framestore_dir=st.framestore_dir,
                          library=Path(args.library) if args.library else None,
                          config=config, progress=bars, milvus=app.milvus_config())
    finally:
        bars.close()
    result = result.with_command(" ".join(
        ["anirec", "eval", "--queries", str(args.queries), "--seed", str(args.seed)]
        + (["--calibrate"] if args.calibrate else [])
        + (["--calibration-queries", str(args.calibration_queries)] if args.calibration_queries else [])
        + (["--no-baselines"] if args.no_baselines else [])))
    print(format_table(result))
    if args.json:
        write_json(result, Path(args.json))
        print(f"JSON: {args.json}")
    if args.report:
        paths = write_report(result, Path(args.report))
        print(f"Report: {paths[0]}")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sp = sub.add_parser("eval", help="evaluate recognition (and baselines) on perturbed queries "
                                     "from the indexed sample library")
    sp.add_argument("what", nargs="?", choices=["scene", "characters"], default="scene",
                    help="scene (default): recognition vs baselines; characters: faces and names")
    sp.add_argument("--labels", default=None, metavar="FILE",
                    help="characters: face-label file (default: the library's ground_truth.json)")
    sp.add_argument("--queries", type=int, default=1200,
                    help="number of queries (default 1200; fewer are noisy)")
    sp.add_argument("--seed", type=int, default=0, help="seed of the query set (default 0)")
    sp.add_argument("--json", default=None, metavar="FILE", help="write the full results as JSON")
    sp.add_argument("--report", default=None, metavar="DIR",
                    help="write report.md and plots into DIR")
    sp.add_argument("--calibrate", action="store_true",
                    help="fit the confidence calibration on a separate query set, save it to "
                         "the models folder, then evaluate with it")
    sp.add_argument("--calibration-queries", type=int, default=0, metavar="N",
                    help="size of the calibration set (default: same as --queries)")
    sp.add_argument("--no-baselines", action="store_true",
                    help="skip ColorLayout, pHash and the untrained CNN")
    sp.add_argument("--library", default=None, metavar="DIR",
                    help="the sample library (default: the folder that was indexed)")
    sp.set_defaults(func=cmd_eval)
