"""`anirec train scene|series|faces|characters`: train a model on the indexed library; the
gate, promotion and re-embed are `training.promote`'s."""

from __future__ import annotations

import argparse
import json

from bot.app import App

SCENE_STEPS = 300  # `--steps` default for the scene embedder
CHARACTER_STEPS = 400  # `--steps` default for the character embedder
FACE_HOLDOUT = 3  # `--holdout-every` default for faces and characters


def cmd_train(app: App, args: argparse.Namespace) -> int:
    from bot.cli.progress import TrainBars
    from training import promote

    app.configure_torch(default=0)
    st = app.settings
    if args.what == "scene":
        scene = promote.train_scene(app.sessions, app.framestore(), st.models_dir,
                                    lambda model: app.indexer(embedder=model),
                                    steps=args.steps if args.steps is not None else SCENE_STEPS,
                                    holdout_every=args.holdout_every, resume=args.resume,
                                    arch=args.arch, weights=args.weights,
                                    force_promote=args.promote, progress=TrainBars())
        print(json.dumps(scene.to_json(), indent=2))
        frames = scene.reembed.frames_embedded if scene.reembed is not None else None
        if scene.promoted:
            print(f"Promoted {scene.version} (check top-1 {scene.gate.new_top1:.2f} vs "
                  f"{scene.gate.current_top1:.2f}); index re-embedded ({frames} frames).")
        else:
            print(f"Not promoted: {scene.gate.new_top1:.2f} is not better than the current "
                  f"{scene.gate.current_top1:.2f}. The checkpoint is kept in the models folder.")
        return 0
    if args.what == "series":
        series = promote.train_series(app.sessions, app.framestore(), st.models_dir, app.embedder())
        res = series.to_json()
        print(json.dumps(res, indent=2, ensure_ascii=False))
        print(f"Series head {res['version']}: series top-1 {res['series_top1']:.2f} on "
              f"{res['validated_on']}; " + ("promoted." if res["promoted"] else "not promoted (worse)."))
        return 0
    holdout = args.holdout_every or FACE_HOLDOUT
    labels = promote.labels_path(app.sessions, args.labels)
    if args.what == "faces":
        faces = promote.train_faces(app.sessions, st.models_dir, labels_file=labels,
                                    steps=args.steps, holdout_every=holdout, resume=args.resume,
                                    progress=TrainBars())
        print(json.dumps(faces.to_json(), indent=2))
        print(f"Face detector {faces.version}: precision {faces.precision:.2f}, recall "
              f"{faces.recall:.2f} on {faces.checked_on}; "
              + ("promoted." if faces.promoted else "not promoted (worse)."))
        return 0
    chars = promote.train_characters(app.sessions, st.models_dir, labels_file=labels,
                                     steps=args.steps if args.steps is not None else CHARACTER_STEPS,
                                     holdout_every=holdout, resume=args.resume,
                                     supervision=args.supervision, progress=TrainBars())
    print(json.dumps(chars.to_json(), indent=2))
    print(f"Character embedder {chars.version} promoted (unknown-face floors {chars.floors}). "
          "Next: `anirec characters add` / `discover`, then `anirec eval characters`.")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sp = sub.add_parser("train", help="train models on the indexed library")
    sp.add_argument("what", choices=["scene", "series", "faces", "characters"],
                    help="scene: the embedder; series: the series/genre head on it; faces: the face "
                         "detector; characters: the character embedder")
    sp.add_argument("--steps", type=int, default=None,
                    help="training steps (scene default 300; faces and characters have their own)")
    sp.add_argument("--holdout-every", type=int, default=0,
                    help="hold out every Nth episode of each series (honest evaluation; faces and "
                         "characters default to 3)")
    sp.add_argument("--labels", default=None, metavar="FILE",
                    help="faces/characters: face-label file (default: the library's ground_truth.json)")
    sp.add_argument("--supervision", choices=["names", "tracks"], default="names",
                    help="characters: group faces by labelled name, or by track (one character "
                         "within one shot)")
    sp.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    sp.add_argument("--arch", default="hybrid-mobilenet_v3_small",
                    help="backbone: mobilenet_v3_small (measured ~10x faster to train here than "
                         "resnet18), resnet18, ..., or hybrid-<backbone> (default)")
    sp.add_argument("--weights", default=None, help="optional local backbone weights file")
    sp.add_argument("--promote", action="store_true", help="promote even if not better")
    sp.set_defaults(func=cmd_train)
