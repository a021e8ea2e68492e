"""The real-art check through the bot's own code: a throw-away home whose cast is built with
`data.cast.add_references` (what `anirec characters add` runs) from tuning-background faces,
the recognizer `anirec characters who` / `identify` build (`character_recognizer`), its
shipped floor and the floor `anirec characters calibrate` sets (`gallery_floor`), then every
held-apart picture through `CharacterRecognizer.recognize` against every cast (open set, as
when no scene matched). Used by `bench.bench_realart`."""

from __future__ import annotations

import random
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
REALART_SERIES = "Ren'Py (real art)"


def _head_crop(image: Image.Image, box: Sequence[float]) -> Image.Image:
    """The head box grown by the reference margin: what `characters add` keeps of a screenshot."""
    from core.models.characters import crop_face
    from data.cast import REF_SPEC

    return Image.fromarray(crop_face(image, box, REF_SPEC))


def build_home(items: Sequence[Any], others: Sequence[tuple[str, Any, Any]], shots: int = 5, seed: int = 0
               ) -> tuple[Any, Path]:
    """A home with a series for the real-art characters and one for each distractor series,
    and `shots` stored reference crops per character (no vectors yet: the recognizer embeds
    them on load, as it does an old gallery)."""
    from sqlalchemy import select

    from bot.app import App
    from core.config import Settings
    from core.db.models import Series
    from data import cast

    work = ROOT / "bench" / "work"
    work.mkdir(parents=True, exist_ok=True)
    home = Path(tempfile.mkdtemp(prefix="realart-home-", dir=work))
    app = App.from_settings(Settings(_env_file=None, home=home))  # type: ignore[call-arg]
    series = {REALART_SERIES} | {who.split("::", 1)[0] for who, _, _ in others}
    with app.sessions() as s:
        have = set(s.scalars(select(Series.title)))
        for t in sorted(series - have):
            s.add(Series(title=t, folder=None))
        s.commit()
    rng = random.Random(seed)
    by_char: dict[str, list[tuple[int, int]]] = {}
    for k, it in enumerate(items):
        if it.split == "tuning":
            for j, f in enumerate(it.faces):
                by_char.setdefault(f.character, []).append((k, j))
    for who, faces in sorted(by_char.items()):
        rng.shuffle(faces)
        seen: set[int] = set()
        chosen = [kj for kj in faces if not (kj[0] in seen or seen.add(kj[0]))][:shots]  # one per picture
        imgs = [(f"{who}-{k}-{j}.png", _head_crop(items[k].image, items[k].faces[j].box)) for k, j in chosen]
        cast.add_references(app.sessions, home, REALART_SERIES, who, imgs, detector=None, embedder=None)
    per: dict[str, list[tuple[str, Image.Image]]] = {}
    for n, (who, img, box) in enumerate(others):
        per.setdefault(who, []).append((f"{n}.png", _head_crop(img, box)))
    for who, imgs in per.items():
        title, name = who.split("::", 1)
        cast.add_references(app.sessions, home, title, name, imgs, detector=None, embedder=None)
    return app, home


def measure(rec: Any, items: Sequence[Any], iou: float = 0.5) -> dict[str, Any]:
    """Held-apart pictures through `recognize` against every cast: of the ground-truth faces,
    named right; of the detections, named wrong; of the detected faces of a character, named
    anything when that character is left out of the cast (its references removed)."""
    from core.characters import Gallery
    from training.faces import match_detections

    titles = {sid: f"series {sid}" for sid in rec.gallery.all_series()}
    all_series = rec.gallery.all_series()
    gt_n = dets = right = wrong = unknown = 0
    left_out_faces = left_out_named = 0
    full = rec.gallery
    for it in items:
        hits = rec.recognize(it.image, all_series, titles)
        gt_n += len(it.faces)
        dets += len(hits)
        if not hits:
            continue
        det_gt, _ = match_detections([h.box for h in hits], [1.0] * len(hits), [f.box for f in it.faces], iou)
        for h, g in zip(hits, det_gt, strict=True):
            if h.name == "unknown":
                unknown += 1
            elif g >= 0 and h.name == it.faces[g].character:
                right += 1
            else:
                wrong += 1
        for who in sorted({f.character for f in it.faces}):
            rec.gallery = Gallery(full.embedder_version,
                                  {sid: [m for m in ms if m.name != who] for sid, ms in full.by_series.items()},
                                  full.shot_cast)
            try:
                again = rec.recognize(it.image, all_series, titles)
            finally:
                rec.gallery = full
            dg, _ = match_detections([h.box for h in again], [1.0] * len(again), [f.box for f in it.faces], iou)
            for h, g in zip(again, dg, strict=True):
                if g >= 0 and it.faces[g].character == who:
                    left_out_faces += 1
                    left_out_named += h.name != "unknown"
    return {"faces": gt_n, "detections": dets, "floor_5": rec.floor.at(5),
            "named_right": right / max(1, gt_n), "named_right_of_detections": right / max(1, dets),
            "confident_wrong_of_detections": wrong / max(1, dets), "unknown_of_detections": unknown / max(1, dets),
            "left_out_detected_faces": left_out_faces,
            "left_out_named": left_out_named / max(1, left_out_faces)}


def bot_end_to_end(detector: Any, embedder: Any, items: Sequence[Any], others: Sequence[tuple[str, Any, Any]],
                   seed: int = 0, keep: bool = False) -> dict[str, Any]:
    """Before (the embedder alone, as the bot named faces until 2026-12-03) and after (the
    naming descriptor), each at its shipped floor and at the floor `characters calibrate` sets."""
    from core.characters import write_floor
    from core.recognition.characters import character_recognizer
    from training.bootstrap import gallery_floor

    out: dict[str, Any] = {"references_per_character": 5, "cast": "real-art characters + the sample library's",
                           "path": "data.cast.add_references → character_recognizer → CharacterRecognizer.recognize"}
    held = [it for it in items if it.split == "held_apart"]
    for label, naming in (("before_embedder_alone", False), ("after_naming_descriptor", True)):
        app, home = build_home(items, others, seed=seed)
        models = app.settings.models_dir
        try:
            rec = character_recognizer(app.sessions, models, detector, embedder, naming=naming)
            assert rec is not None
            r = {"embedder": rec.embedder.version, "shipped_floor": measure(rec, held)}
            floor, ids, n = gallery_floor(app.sessions, models, rec.embedder, home=home)
            if floor is not None:
                write_floor(models, rec.embedder.version, floor, identities=ids, faces=n)
                rec = character_recognizer(app.sessions, models, detector, embedder, naming=naming)
                assert rec is not None
                r["calibrated_floor"] = measure(rec, held)
            out[label] = r
        finally:
            if not keep:
                shutil.rmtree(home, ignore_errors=True)
    return out


def colour_similarity(items: Sequence[Any]) -> dict[str, float]:
    """Median colour similarity of faces of one character and of different characters (the
    anchor `FusedEmbedder.map_floor` maps floors around)."""
    from core.models.colours import colour_descriptors

    vecs, names = [], []
    for it in items:
        if it.faces:
            vecs.append(colour_descriptors(it.image, [f.box for f in it.faces]))
            names += [f.character for f in it.faces]
    v = np.concatenate(vecs)
    sim = v @ v.T
    same = np.array([[a == b for b in names] for a in names])
    off = ~np.eye(len(names), dtype=bool)
    return {"same_character_median": float(np.median(sim[same & off])),
            "other_character_median": float(np.median(sim[~same]))}
