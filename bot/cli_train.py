"""`anirec train scene`: train the scene embedder on the indexed library, gate, promote, re-embed."""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from sqlalchemy import select

from core.db.models import Episode


def _split(app: Any, holdout_every: int) -> tuple[list[int], list[int], list[str]]:
    """Training and held-out episode ids: every Nth episode of each series is held out."""
    with app.sessions() as s:
        rows = s.execute(select(Episode.id, Episode.series_id, Episode.path, Episode.library_root)
                         .where(Episode.status == "indexed")
                         .order_by(Episode.series_id, Episode.season, Episode.number, Episode.id)).all()
    train, held, names = [], [], []
    count: dict[int, int] = {}
    for eid, sid, path, root in rows:
        k = count.get(sid, 0)
        count[sid] = k + 1
        if holdout_every and k % holdout_every == holdout_every - 1:
            held.append(eid)
        else:
            train.append(eid)
            try:
                names.append(Path(path).relative_to(root).as_posix())
            except ValueError:
                names.append(Path(path).name)
    return train, held, names


def train_scene_command(app: Any, *, steps: int, holdout_every: int, resume: bool, arch: str,
                        weights: str | None, force_promote: bool = False, quiet: bool = False) -> dict[str, Any]:
    """Train, compare with the current model on the same check, promote if better, re-embed."""
    from tqdm import tqdm

    from core.models.registry import register_model
    from data.indexer import Indexer
    from training.scene import FrameTable, SceneTrainConfig, evaluate, train_scene

    st = app.settings
    train_ids, held_ids, train_names = _split(app, holdout_every)
    if not train_ids:
        raise SystemExit("anirec: nothing to train on; run `anirec index LIBRARY` first")
    cfg = SceneTrainConfig(steps=steps, holdout_every=holdout_every, arch=arch, weights=weights)
    bar = tqdm(total=steps, desc="training scene embedder", unit="step", disable=quiet)

    def progress(step: int, loss: float, metrics: dict[str, float]) -> None:
        bar.n = step
        bar.set_postfix(loss=f"{loss:.3f}", **({"val_top1": f"{metrics['top1']:.2f}"} if metrics else {}))
        bar.refresh()

    store = app.framestore()
    model, metrics = train_scene(store, train_ids, cfg, st.models_dir / "train-scene", resume=resume,
                                 progress=progress)
    bar.close()
    # the promotion gate: new vs current model on the same damaged queries (held-out if any)
    check_ids = held_ids or train_ids
    table = FrameTable.build(store, check_ids)
    import random

    rng = random.Random(4242)
    qidx = rng.sample(range(len(table.episodes)), min(200, len(table.episodes)))
    current = app.embedder()
    new_score = evaluate(model, table, qidx, seed=99)["top1"]
    old_score = evaluate(current, table, qidx, seed=99)["top1"]
    metrics.update({"gate_new_top1": new_score, "gate_current_top1": old_score,
                    "gate_current_version": current.version,
                    "gate_on": "held-out episodes" if held_ids else "training episodes",
                    "train_episodes": train_names})
    promote = force_promote or new_score > old_score
    path = st.models_dir / f"{model.version}.pt"
    model.metrics = metrics
    model.save(path)
    register_model(app.sessions, kind="scene", version=model.version, path=path.relative_to(st.models_dir),
                   metrics={k: v for k, v in metrics.items() if k != "history"}, promote=promote)
    result = {"version": model.version, "promoted": promote, "new_top1": new_score,
              "current_top1": old_score, "current": current.version,
              "train_seconds": metrics["train_seconds"], "steps": metrics["steps"]}
    if promote:
        stale = st.models_dir / "calibration.json"
        if stale.exists():  # fitted for the previous model's scores
            stale.replace(st.models_dir / f"calibration-{current.version}.json")
            result["calibration"] = "moved aside (it was fitted for the previous model); run `anirec eval --calibrate`"
        t0 = time.perf_counter()
        rep = Indexer(sessions=app.sessions, embedder=model, index_dir=st.index_dir,
                      framestore=store, batch_size=st.embed_batch).reembed()
        result.update({"reembedded_frames": rep.frames_embedded, "index_version": rep.index_version,
                       "reembed_seconds": round(time.perf_counter() - t0, 1)})
    return result


def train_series_command(app: Any) -> dict[str, Any]:
    """Train the series/genre head on the current embedder; promote unless it is worse."""
    from core.db.models import Series
    from core.models.registry import load_series_head, register_model
    from training.series import train_series_head

    st = app.settings
    emb = app.embedder()
    with app.sessions() as s:
        episodes = [(e, sid) for e, sid in s.execute(
            select(Episode.id, Episode.series_id).where(Episode.status == "indexed")
            .order_by(Episode.series_id, Episode.season, Episode.number, Episode.id))]
        genres = {r.id: list(r.genres or []) for r in s.scalars(select(Series))}
    head = train_series_head(emb, app.framestore(), episodes, genres)
    current = load_series_head(app.sessions, st.models_dir)
    promote = (current is None or current.embedder_version != emb.version
               or head.metrics["series_top1"] >= current.metrics.get("series_top1", 0.0))
    path = st.models_dir / f"{head.version}.pt"
    head.save(path)
    register_model(app.sessions, kind="series", version=head.version,
                   path=path.relative_to(st.models_dir), metrics=head.metrics, promote=promote)
    return {"version": head.version, "promoted": promote, "embedder": emb.version, **head.metrics}


def labels_path(app: Any, given: str | None) -> Path:
    """The face-label file: --labels, else the indexed library folder's ground_truth.json."""
    from training.facedata import library_labels

    if given:
        return Path(given)
    with app.sessions() as s:
        roots = list(s.scalars(select(Episode.library_root).where(Episode.status == "indexed").distinct()))
    for r in roots:
        if library_labels(Path(r)).is_file():
            return library_labels(Path(r))
    raise SystemExit("anirec: no face labels found: the indexed library has no ground_truth.json "
                     "(the sample library writes one); pass --labels FILE in the same format")


def _face_split(app: Any, labels_file: Path, holdout_every: int) -> tuple[Path, dict[str, Any], list[str], list[str]]:
    from training.facedata import read_labels, split_episodes

    labels = read_labels(labels_file)
    train, held = split_episodes(labels, holdout_every)
    if not train:
        raise SystemExit("anirec: no labelled episodes to train on")
    return labels_file.parent, labels, train, held


def train_faces_command(app: Any, *, labels_file: Path, steps: int | None, holdout_every: int,
                        resume: bool, quiet: bool = False) -> dict[str, Any]:
    """Train the face detector on labelled frames; promote it unless it is worse than the current one."""
    from tqdm import tqdm

    from core.models.registry import load_face_detector, register_model
    from training.facedata import iter_face_frames
    from training.faces import TrainConfig, evaluate_detector, train_face_detector

    root, labels, train, held = _face_split(app, labels_file, holdout_every)
    cfg = TrainConfig() if steps is None else replace(TrainConfig(), steps=steps)
    frames = list(tqdm(iter_face_frames(root, labels, train, every=3),
                       desc="reading labelled frames", unit="frame", disable=quiet, file=sys.stderr))
    # every 5th shot of the training episodes tunes the score threshold (validation)
    val = [f for f in frames if f.shot % 5 == 4] or frames[::10]
    train_frames = [f for f in frames if f.shot % 5 != 4] or frames
    bar = tqdm(total=cfg.steps, desc="training face detector", unit="step", disable=quiet, file=sys.stderr)

    def progress(step: int, loss: float, metrics: dict[str, float]) -> None:
        bar.n = step
        bar.set_postfix(loss=f"{loss:.3f}")
        bar.refresh()

    det, metrics = train_face_detector(train_frames, val, cfg, app.settings.models_dir / "train-faces",
                                       resume=resume, progress=progress)
    bar.close()
    check = list(iter_face_frames(root, labels, held, every=6)) if held else val
    new = evaluate_detector(det, check, latency_samples=0)
    current = load_face_detector(app.sessions, app.settings.models_dir)
    old = evaluate_detector(current, check, latency_samples=0) if current is not None else None
    promote = old is None or new["f1"] >= old["f1"]
    path = app.settings.models_dir / f"{det.version}.pt"
    det.metrics = {**det.metrics, "check": {k: v for k, v in new.items() if k != "sweep"},
                   "train_episodes": train}
    det.save(path)
    register_model(app.sessions, kind="faces", version=det.version, path=path.relative_to(app.settings.models_dir),
                   metrics={"precision": new["precision"], "recall": new["recall"], "f1": new["f1"],
                            "train_episodes": train}, promote=promote)
    return {"version": det.version, "promoted": promote, "precision": new["precision"],
            "recall": new["recall"], "f1": new["f1"], "checked_on": "held-out episodes" if held else "validation frames",
            "current_f1": old["f1"] if old else None, "train_seconds": metrics.get("train_seconds")}


def train_characters_command(app: Any, *, labels_file: Path, steps: int, holdout_every: int, resume: bool,
                             supervision: str, quiet: bool = False) -> dict[str, Any]:
    """Train the character embedder on labelled face crops; promote it; references are
    re-embedded with it when the recognizer next loads."""
    from tqdm import tqdm

    from core.models.registry import register_model
    from training.characters import CharacterTrainConfig, FaceSet, train_characters, training_floors
    from training.facedata import iter_face_frames

    root, labels, train, held = _face_split(app, labels_file, holdout_every)
    faces = FaceSet.from_frames(tqdm(iter_face_frames(root, labels, train, every=2, with_faces_only=True),
                                     desc="reading labelled faces", unit="frame", disable=quiet, file=sys.stderr))
    cfg = CharacterTrainConfig(steps=steps, supervision=supervision)
    bar = tqdm(total=steps, desc="training character embedder", unit="step", disable=quiet, file=sys.stderr)

    def progress(step: int, loss: float) -> None:
        bar.n = step
        bar.set_postfix(loss=f"{loss:.3f}")
        bar.refresh()

    faces, val = faces.split_by_shot(5)  # every 5th shot measures the unknown-face floors
    emb, metrics = train_characters(faces, cfg, app.settings.models_dir / "train-characters",
                                    resume=resume, progress=progress)
    bar.close()
    emb.metrics["floors"] = training_floors(emb, faces, val)
    emb.metrics["train_episodes"] = train
    path = app.settings.models_dir / f"{emb.version}.pt"
    emb.save(path)
    register_model(app.sessions, kind="characters", version=emb.version,
                   path=path.relative_to(app.settings.models_dir),
                   metrics={k: v for k, v in emb.metrics.items()}, promote=True)
    return {"version": emb.version, "promoted": True, "faces": len(faces), "floors": emb.metrics["floors"],
            "train_seconds": metrics["train_seconds"], "steps": steps, "supervision": supervision}


def cmd_train(app: Any, args: argparse.Namespace) -> int:
    app.configure_torch(default=0)
    args.steps_given = args.steps is not None
    if args.steps is None:
        args.steps = 300
    if args.what == "scene":
        res = train_scene_command(app, steps=args.steps, holdout_every=args.holdout_every,
                                  resume=args.resume, arch=args.arch, weights=args.weights,
                                  force_promote=args.promote)
        print(json.dumps(res, indent=2))
        if res["promoted"]:
            print(f"Promoted {res['version']} (check top-1 {res['new_top1']:.2f} vs "
                  f"{res['current_top1']:.2f}); index re-embedded ({res.get('reembedded_frames')} frames).")
        else:
            print(f"Not promoted: {res['new_top1']:.2f} is not better than the current "
                  f"{res['current_top1']:.2f}. The checkpoint is kept in the models folder.")
        return 0
    if args.what == "series":
        res = train_series_command(app)
        print(json.dumps(res, indent=2, ensure_ascii=False))
        print(f"Series head {res['version']}: series top-1 {res['series_top1']:.2f} on "
              f"{res['validated_on']}; " + ("promoted." if res["promoted"] else "not promoted (worse)."))
        return 0
    if args.what == "faces":
        res = train_faces_command(app, labels_file=labels_path(app, args.labels),
                                  steps=args.steps if args.steps_given else None,
                                  holdout_every=args.holdout_every if args.holdout_every else 3,
                                  resume=args.resume)
        print(json.dumps(res, indent=2))
        print(f"Face detector {res['version']}: precision {res['precision']:.2f}, recall {res['recall']:.2f} "
              f"on {res['checked_on']}; " + ("promoted." if res["promoted"] else "not promoted (worse)."))
        return 0
    if args.what == "characters":
        res = train_characters_command(app, labels_file=labels_path(app, args.labels),
                                       steps=args.steps if args.steps_given else 400,
                                       holdout_every=args.holdout_every if args.holdout_every else 3,
                                       resume=args.resume, supervision=args.supervision)
        print(json.dumps(res, indent=2))
        print(f"Character embedder {res['version']} promoted (unknown-face floors {res['floors']}). "
              "Next: `anirec characters add` / `discover`, then `anirec eval characters`.")
        return 0
    raise SystemExit(f"anirec: unknown model kind {args.what}")


def demo_train(app: Any, args: argparse.Namespace) -> str:
    """The demo's training step: train a small scene model once (skipped when one exists)."""
    from core.models.registry import promoted

    mv = promoted(app.sessions, "scene")
    if mv is not None:
        return f"using trained scene model {mv.version}"
    steps = getattr(args, "train_steps", 0)
    if steps <= 0:
        return "training skipped (--train-steps 0); using the default embedder"
    res = train_scene_command(app, steps=steps, holdout_every=0, resume=True,
                              arch="hybrid-mobilenet_v3_small", weights=None)
    state = "promoted" if res["promoted"] else "kept the default (not better)"
    return (f"trained {res['version']} in {res['train_seconds']:.0f} s: check top-1 "
            f"{res['new_top1']:.2f} vs default {res['current_top1']:.2f} → {state}")


def register(sub: Any) -> None:
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
