"""`anirec eval characters`: face detection and character identification on held-out episodes.

Held-out honesty: the episodes evaluated are the labelled episodes that neither the face
detector nor the character embedder was trained on (their checkpoints list their training
episodes). References: the operator's one image per character (the generator's reference
face), then faces of the training episodes for 5 and "all" references.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from core.models.characters import CharacterEmbedder
from core.models.colours import FusedEmbedder
from core.models.faces import FaceDetector
from core.recognition import CharacterRecognizer
from training.characters import FaceSet, evaluate_identification
from training.facedata import FaceFrame, iter_face_frames, references

Progress = Callable[[str, int, int], None]


def end_to_end(recognizer: CharacterRecognizer, frames: list[FaceFrame], series_ids: dict[str, int],
               titles: dict[int, str]) -> dict[str, Any]:
    """The whole step 9 on held-out frames with the true series as the closed set: detected
    faces matched to ground truth (IoU ≥ 0.5) and named correctly; added latency per frame."""
    from training.faces import match_detections

    lat, named_ok, matched, gt_total, unknown_said = [], 0, 0, 0, 0
    for fr in frames:
        img = fr.image
        t0 = time.perf_counter()
        hits = recognizer.recognize(img, [series_ids[fr.series]], titles)
        lat.append((time.perf_counter() - t0) * 1000)
        gt_total += len(fr.faces)
        det_gt, _ = match_detections([h.box for h in hits], [h.score for h in hits],
                                     [f.box for f in fr.faces])
        for h, g in zip(hits, det_gt, strict=True):
            if g < 0:
                continue
            matched += 1
            named_ok += h.name == fr.faces[g].character
            unknown_said += h.name == "unknown"
    lat_a = np.asarray(lat) if lat else np.zeros(1)
    return {"frames": len(frames), "faces": gt_total, "detected": matched / max(1, gt_total),
            "named_correctly": named_ok / max(1, gt_total),
            "named_correctly_of_detected": named_ok / max(1, matched),
            "said_unknown_of_detected": unknown_said / max(1, matched),
            "latency_ms": {"p50": float(np.percentile(lat_a, 50)), "p95": float(np.percentile(lat_a, 95)),
                           "mean": float(lat_a.mean())}}


def evaluate_characters(root: Path, labels: dict[str, Any], *, detector: FaceDetector,
                        embedder: CharacterEmbedder | FusedEmbedder, recognizer: CharacterRecognizer | None,
                        series_ids: dict[str, int], titles: dict[int, str],
                        every: int = 6, progress: Progress | None = None) -> dict[str, Any]:
    """Detection P/R per series, identification top-1 with 1/5/all references, unknown-face
    rejection, and step 9 end to end (with its added latency)."""
    from training.faces import evaluate_detector

    trained_on = set(detector.metrics.get("train_episodes", [])) | set(embedder.metrics.get("train_episodes", []))
    all_eps = [e["path"] for e in labels["episodes"]]
    held = [p for p in all_eps if p not in trained_on]
    train = [p for p in all_eps if p in set(embedder.metrics.get("train_episodes", []))]
    if not held:
        raise ValueError("every labelled episode was used for training; train with --holdout-every N")
    if progress:
        progress("reading held-out frames", 0, len(held))
    frames = list(iter_face_frames(root, labels, held, every=every))
    det = evaluate_detector(detector, frames)
    per_series = {}
    for s in sorted({f.series for f in frames}):
        sub = [f for f in frames if f.series == s]
        r = evaluate_detector(detector, sub)
        per_series[s] = {k: r[k] for k in ("precision", "recall", "f1")}
    if progress:
        progress("identification", 1, 3)
    train_faces = FaceSet.from_frames(iter_face_frames(root, labels, train or None, every=2,
                                                       with_faces_only=True))
    held_faces = FaceSet.from_frames(f for f in frames if f.faces)
    floor = recognizer.floor if recognizer is not None else None
    ident = evaluate_identification(embedder, train_faces, held_faces, references(root, labels), floor=floor)
    from core.models.characters import new_embedder

    untrained = evaluate_identification(new_embedder(embedder.spec), train_faces, held_faces,
                                        references(root, labels))
    result: dict[str, Any] = {
        "held_out_episodes": held, "frames": len(frames),
        "detector": detector.version, "embedder": embedder.version,
        "detection": {k: v for k, v in det.items() if k != "sweep"},
        "detection_sweep": det.get("sweep"),
        "detection_per_series": per_series,
        "identification": ident,
        "identification_untrained_baseline": {k: v["top1"] for k, v in untrained.items() if k.startswith("shots")},
    }
    if recognizer is not None:
        if progress:
            progress("end to end", 2, 3)
        result["end_to_end"] = end_to_end(recognizer, [f for f in frames if f.faces], series_ids, titles)
    return result


def format_table(r: dict[str, Any]) -> str:
    d, i = r["detection"], r["identification"]
    lines = [f"Characters on {len(r['held_out_episodes'])} held-out episodes ({r['frames']} frames)",
             "", "| detection (IoU 0.5) | precision | recall | F1 |", "|---|---|---|---|",
             f"| all | {d['precision']:.3f} | {d['recall']:.3f} | {d['f1']:.3f} |"]
    for s, v in r["detection_per_series"].items():
        lines.append(f"| {s} | {v['precision']:.3f} | {v['recall']:.3f} | {v['f1']:.3f} |")
    lines += ["", "| identification (cast of the true series) | top-1 | untrained net | unknown rejected "
                  "| known kept |", "|---|---|---|---|---|"]
    for k, label in (("shots_1", "1 reference"), ("shots_5", "5 references"), ("shots_all", "all references")):
        lines.append(f"| {label} | {i[k]['top1']:.3f} | {r['identification_untrained_baseline'][k]:.3f} | "
                     f"{i[k]['unknown_rejected']:.3f} | {i[k]['known_accepted']:.3f} |")
    lines += ["", "| per series (5 references) | top-1 |", "|---|---|"]
    for s, v in i["shots_5"]["per_series"].items():
        lines.append(f"| {s} | {v:.3f} |")
    if "end_to_end" in r:
        e = r["end_to_end"]
        lines += ["", f"End to end (detect → identify, gallery in the catalog): {e['named_correctly']:.3f} of "
                      f"faces named correctly ({e['named_correctly_of_detected']:.3f} of detected ones); "
                      f"added latency p50 {e['latency_ms']['p50']:.1f} ms, p95 {e['latency_ms']['p95']:.1f} ms"]
    return "\n".join(lines)
