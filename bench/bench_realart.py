"""Faces and names on human-drawn art: the composed Ren'Py set (`data.realart`).

Detection P/R at IoU 0.5 (at the detector's threshold, and at a threshold tuned on the
tuning backgrounds only), naming top-1 with 5 references, named-right and confident-wrong
rates (closed and open set) on the held-apart backgrounds, for the models of an AniRec home
(or checkpoint files), next to the untrained network. The sample library's numbers for the
same models: `anirec eval characters --json` (`--sample-eval` runs it here too).

Run:
    apt-get download renpy-thequestion renpy-demo
    mkdir -p /work/wt/renpy && for d in renpy-*.deb; do dpkg-deb -x $d /work/wt/renpy; done
    python -m bench.bench_realart --renpy /work/wt/renpy --home HOME --label baseline
    python -m bench.bench_realart --detector faces.pt --embedder characters.pt --label X
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser()
    ap.add_argument("--renpy", default=os.environ.get("ANIREC_RENPY", "/work/wt/renpy"),
                    help="where the two .deb packages were extracted")
    ap.add_argument("--home", help="an AniRec home: its promoted face detector and character embedder")
    ap.add_argument("--detector", help="a face-detector checkpoint (instead of --home's)")
    ap.add_argument("--embedder", help="a character-embedder checkpoint (instead of --home's)")
    ap.add_argument("--pictures", type=int, default=150)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--label", default="baseline", help="the name of this run (the route step measured)")
    ap.add_argument("--save-set", help="also write the composed pictures and labels.json here")
    ap.add_argument("--no-distractors", action="store_true",
                    help="leave the home's sample-library cast out of the gallery")
    ap.add_argument("--teacher", action="store_true", help="also measure the animeface teacher's detection")
    ap.add_argument("--sample-eval", action="store_true", help="also run `anirec eval characters` on --home")
    ap.add_argument("--cache", help="a pickle of the composed set and the distractor faces (written if missing)")
    ap.add_argument("--naming-only", action="store_true", help="skip detection (and the teacher)")
    ap.add_argument("--no-bot", action="store_true",
                    help="skip the end to end through the bot's code (bench.realart_bot)")
    ap.add_argument("--out", default=None, help="default: bench/results/realart/LABEL.json")
    return ap.parse_args(argv)


def load_models(args: argparse.Namespace) -> tuple[Any, Any, Any, Path | None]:
    """(detector, embedder, app or None, models dir or None)."""
    from core.models.characters import load_character_embedder
    from core.models.faces import load_face_detector

    app, models = None, None
    det = load_face_detector(Path(args.detector)) if args.detector else None
    emb = load_character_embedder(Path(args.embedder)) if args.embedder else None
    if args.home:
        from bot.app import App
        from core.config import Settings
        from core.models import registry

        app = App.from_settings(Settings(_env_file=None, home=Path(args.home)))  # type: ignore[call-arg]
        models = app.settings.models_dir
        det = det or registry.load_face_detector(app.sessions, models)
        emb = emb or registry.load_character_embedder(app.sessions, models)
    if det is None or emb is None:
        raise SystemExit("bench_realart: give --home with trained models, or --detector and --embedder")
    return det, emb, app, models


def vectorisers(embedder: Any) -> dict[str, Any]:
    """The face descriptors compared: the embedder, the untrained network, the colour
    descriptor (no learning) and the embedder fused with it."""
    from core.models import characters as cm
    from core.models.colours import FusedEmbedder, colour_descriptors, naming_embedder

    return {"embedder": embedder.embed_faces,
            "untrained_network": cm.new_embedder(embedder.spec).embed_faces,
            "colour": colour_descriptors,
            **{f"fused_w{w}": FusedEmbedder(embedder, w / 100).embed_faces for w in WEIGHTS},
            "naming": naming_embedder(embedder).embed_faces}


WEIGHTS = (10, 20, 30, 40, 50, 70)  # the embedder's share (%) of the fused score, chosen on the tuning split


class TeacherDetector:
    """The animeface teacher as a detector: its boxes mapped to head boxes, its likelihoods as scores."""

    threshold = 0.0
    version = "animeface"

    def __init__(self, teacher: Any) -> None:
        self.teacher = teacher

    def detect(self, image: Any, threshold: float | None = None) -> list[Any]:
        from core.models.faces import Face
        from data.teacher import HEAD_FROM_FACE

        faces = [Face(HEAD_FROM_FACE.apply(f.box, image.size), float(f.score)) for f in self.teacher.detect(image)]
        return [f for f in faces if f.score >= (threshold or 0.0)]


FLOORS = {"untrained_network": 0.55}  # the shipped default floor; the others: see the code


def other_series_faces(home: str, per_character: int = 5) -> list[tuple[str, Any, Any]]:
    """(character, frame, head box): `per_character` faces of each character of the home's
    labelled library (the sample library), so that a real-art face can be named wrongly as
    one of them, as it can in a bot whose every cast is matched."""
    from bot.app import App
    from core.config import Settings
    from training.facedata import iter_face_frames, read_labels
    from training.promote import labels_path

    app = App.from_settings(Settings(_env_file=None, home=Path(home)))  # type: ignore[call-arg]
    try:
        lf = labels_path(app.sessions, None)
    except Exception:  # noqa: BLE001 - a home without labels: no distractors
        return []
    labels = read_labels(lf)
    out: list[tuple[str, Any, Any]] = []
    count: dict[str, int] = {}
    for fr in iter_face_frames(lf.parent, labels, None, every=9, with_faces_only=True):
        for face in fr.faces:
            who = f"{fr.series}::{face.character}"
            if count.get(who, 0) < per_character and not face.occluded:
                count[who] = count.get(who, 0) + 1
                out.append((who, fr.image, face.box))
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import numpy as np
    import torch

    torch.set_num_threads(1)
    from core.characters import DEFAULT_FLOOR, Floor, load_floor
    from core.sysinfo import machine_info
    from data.realart import compose_set, games_dir, save_set
    from training import eval_realart as ev

    det, emb, app, models = load_models(args)
    floor = (load_floor(models, emb) if models is not None else
             Floor.of(emb.metrics.get("floors", emb.metrics.get("floor", DEFAULT_FLOOR)))).at(5)
    from core.models.colours import naming_embedder

    naming_floor = Floor.of(naming_embedder(emb).metrics.get("floors", DEFAULT_FLOOR)).at(5)
    t0 = time.perf_counter()
    cache = Path(args.cache) if args.cache else None
    if cache is not None and cache.exists():
        import pickle

        with cache.open("rb") as fh:
            items, others = pickle.load(fh)  # noqa: S301 - our own file from an earlier run
    else:
        items = compose_set(games_dir(Path(args.renpy)), n=args.pictures, seed=args.seed)
        others = other_series_faces(args.home) if args.home and not args.no_distractors else []
        if cache is not None:
            import pickle

            with cache.open("wb") as fh:
                pickle.dump((items, others), fh)
    if args.no_distractors:
        others = []
    compose_s = time.perf_counter() - t0
    if args.save_set:
        save_set(items, Path(args.save_set))
    result: dict[str, Any] = {
        "benchmark": "real art (composed Ren'Py screenshots)", "label": args.label,
        "date": datetime.now(UTC).isoformat(timespec="seconds"), "machine": machine_info(),
        "contention": "shared with other jobs", "torch_threads": 1,
        "set": {"pictures": len(items), "seed": args.seed, "compose_seconds": round(compose_s, 1),
                "faces": sum(len(it.faces) for it in items),
                "faces_per_split": {s: sum(len(it.faces) for it in items if it.split == s)
                                    for s in ("tuning", "held_apart")},
                "characters": sorted({f.character for it in items for f in it.faces})},
        "detector": {"version": det.version, "threshold": det.threshold},
        "embedder": {"version": emb.version, "floor_5": floor, "naming_floor_5": naming_floor},
        "load_average": list(os.getloadavg()),
    }
    from bench.realart_bot import colour_similarity

    result["colour_similarity_held_apart"] = colour_similarity([it for it in items if it.split == "held_apart"])
    t0 = time.perf_counter()
    if not args.naming_only:
        result["detection"] = ev.detection(det, items)
        result["detection"]["seconds"] = round(time.perf_counter() - t0, 1)
    if args.teacher and not args.naming_only:
        from data.teacher import DEFAULT_TEACHER_PYTHON, AnimeFaceTeacher

        with AnimeFaceTeacher(DEFAULT_TEACHER_PYTHON) as teacher:
            result["teacher_detection"] = ev.detection(TeacherDetector(teacher), items)
    result["set"]["distractor_characters"] = len({n for n, _, _ in others})
    naming: dict[str, Any] = {}
    casts = {}
    for name, fn in vectorisers(emb).items():
        vecs, names, splits, pics = ev.face_table(items, fn)
        refs = ev.pick_references(names, splits, pics, shots=5, seed=args.seed)
        cast = ev.reference_vectors(vecs, refs)
        for who, img, box in others:  # the sample library's cast: other series' characters
            v = fn(img, [box])
            cast[who] = np.vstack([cast[who], v]) if who in cast else v
        held = [i for i, s in enumerate(splits) if s == "held_apart"]
        tune = [i for i, s in enumerate(splits) if s == "tuning" and all(i not in r for r in refs.values())]
        f = floor if name == "embedder" else naming_floor if name == "naming" else FLOORS.get(name, floor)
        r = {"held_apart": ev.naming(vecs, names, cast, held, f), "tuning": ev.naming(vecs, names, cast, tune, f)}
        tuned = ev.floor_for(vecs, names, cast, tune)
        r["floor_tuned_on_tuning"] = tuned
        r["held_apart_at_tuned_floor"] = ev.naming(vecs, names, cast, held, tuned)
        gal = ev.calibrated_floor(cast)
        r["floor_calibrated_on_gallery"] = gal
        if gal is not None:
            r["held_apart_at_gallery_floor"] = ev.naming(vecs, names, cast, held, gal)
        naming[name] = r
        casts[name] = (cast, fn, f)
    result["naming"] = naming
    cast, fn, f = casts["embedder"]
    held_items = [it for it in items if it.split == "held_apart"]
    if not args.naming_only:
        result["end_to_end_held_apart"] = ev.end_to_end(det, fn, held_items, cast, f)
    if not args.naming_only and not args.no_bot:
        from bench.realart_bot import bot_end_to_end

        t0 = time.perf_counter()
        result["bot_end_to_end_held_apart"] = bot_end_to_end(det, emb, items, others, seed=args.seed)
        result["bot_end_to_end_held_apart"]["seconds"] = round(time.perf_counter() - t0, 1)
    if args.sample_eval and app is not None:
        import argparse as _a

        from bot.cli.eval import cmd_eval_characters

        tmp = ROOT / "bench" / "work" / f"realart-sample-{args.label}.json"
        tmp.parent.mkdir(parents=True, exist_ok=True)
        cmd_eval_characters(app, _a.Namespace(labels=None, json=str(tmp), report=None))
        se = json.loads(tmp.read_text())
        result["sample_library"] = {"detection": {k: se["detection"][k] for k in ("precision", "recall", "f1")},
                                    "identification_5": se["identification"]["shots_5"],
                                    "end_to_end": se.get("end_to_end")}
    out = Path(args.out) if args.out else ROOT / "bench" / "results" / "realart" / f"{args.label}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, ensure_ascii=False, default=lambda o: o.item()
                              if isinstance(o, np.generic) else str(o)) + "\n")
    d = result.get("detection", {})
    print(json.dumps({"detection_held_apart": {k: round(d["held_apart"][k], 3) for k in ("precision", "recall")}
                      if d else None,
                      "detection_tuned": d.get("tuned_on_tuning", {}).get("held_apart"),
                      "naming": {k: {x: round(v["held_apart"][x], 3) for x in
                                     ("top1", "named_right", "confident_wrong", "open_set_confident_wrong")}
                                 for k, v in naming.items()},
                      "tuning_top1": {k: round(v["tuning"]["top1"], 3) for k, v in naming.items()},
                      "end_to_end": result.get("end_to_end_held_apart"),
                      "bot": result.get("bot_end_to_end_held_apart")}, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
