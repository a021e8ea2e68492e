"""Detection and naming on the composed real-art set (`data.realart`).

Detection: precision / recall at IoU 0.5 at the detector's own threshold, on the tuning and
the held-apart backgrounds, and at the threshold that maximises F1 on the tuning part (applied
to the held-apart part). Naming, on the ground-truth head boxes (so it is measured apart from
detection): 5 references per character taken from tuning-background pictures, every
held-apart face a query. A face is named when its best similarity clears the floor;
"confident wrong" is a name given that is not the right one, counted both with the whole cast
(closed set) and with the face's own character left out of the cast (open set: every name
given is wrong). End to end: detected faces, named.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from PIL import Image

from data.realart import Composed
from training.facedata import FaceFrame, FaceLabel

# a face vectoriser: (picture, head boxes) → L2-normalised vectors [N, d]
Vectorise = Callable[[Image.Image, Sequence[Sequence[float]]], np.ndarray]


def as_frames(items: Sequence[Composed]) -> list[FaceFrame]:
    """The composed pictures as labelled frames (the detector evaluation's input)."""
    return [FaceFrame(series="realart", episode=it.name, number=0, index=k, shot=k,
                      rgb=np.asarray(it.image.convert("RGB")),
                      faces=[FaceLabel(f.character, f.box) for f in it.faces])
            for k, it in enumerate(items)]


def detection(detector: Any, items: Sequence[Composed], iou: float = 0.5) -> dict[str, Any]:
    """P/R at the detector's threshold per split, and at the F1-best threshold of the tuning split."""
    from training.faces import collect_matches

    out: dict[str, Any] = {"iou": iou, "threshold": float(detector.threshold)}
    matches = {}
    for split in ("tuning", "held_apart"):
        sub = [it for it in items if it.split == split]
        matches[split] = m = collect_matches(detector, as_frames(sub), iou)
        out[split] = {"pictures": len(sub), "faces": int(len(m.gt_scores)), **m.at(detector.threshold),
                      "ap": m.average_precision()}
    m = matches["tuning"]
    cands = np.unique(np.round(m.det_scores, 4))
    if len(cands):
        best = max((m.at(t)["f1"], -t) for t in cands.tolist())
        t_best = float(-best[1])
        out["tuned_on_tuning"] = {"threshold": t_best, "tuning": m.at(t_best),
                                  "held_apart": matches["held_apart"].at(t_best)}
    return out


def face_table(items: Sequence[Composed], vectorise: Vectorise) -> tuple[np.ndarray, list[str], list[str], list[int]]:
    """Every ground-truth face: (vectors, names, splits, picture index)."""
    vecs, names, splits, pics = [], [], [], []
    for k, it in enumerate(items):
        if not it.faces:
            continue
        vecs.append(vectorise(it.image, [f.box for f in it.faces]))
        for f in it.faces:
            names.append(f.character)
            splits.append(it.split)
            pics.append(k)
    return np.concatenate(vecs).astype(np.float32), names, splits, pics


def pick_references(names: Sequence[str], splits: Sequence[str], pics: Sequence[int], shots: int = 5,
                    seed: int = 0) -> dict[str, list[int]]:
    """`shots` tuning-split faces per character, from different pictures where possible."""
    rng = random.Random(seed)
    out: dict[str, list[int]] = {}
    for name in sorted(set(names)):
        idx = [i for i, (n, s) in enumerate(zip(names, splits, strict=True)) if n == name and s == "tuning"]
        rng.shuffle(idx)
        chosen: list[int] = []
        seen: set[int] = set()
        for i in idx:  # one per picture first
            if pics[i] not in seen:
                chosen.append(i)
                seen.add(pics[i])
            if len(chosen) == shots:
                break
        chosen += [i for i in idx if i not in chosen][: shots - len(chosen)]
        out[name] = chosen
    return out


def reference_vectors(vecs: np.ndarray, refs: dict[str, list[int]]) -> dict[str, np.ndarray]:
    return {c: vecs[ix] for c, ix in refs.items()}


def similarities(vecs: np.ndarray, cast: dict[str, np.ndarray], queries: Sequence[int]
                 ) -> tuple[list[str], np.ndarray]:
    """(cast names, [len(queries), len(cast)] best similarity to each character's references)."""
    names = sorted(cast)
    q = vecs[list(queries)]
    sims = np.stack([(q @ cast[c].T).max(1) for c in names], 1) if len(q) else np.zeros((0, len(names)))
    return names, sims


def naming(vecs: np.ndarray, names: Sequence[str], cast: dict[str, np.ndarray], queries: Sequence[int],
           floor: float) -> dict[str, Any]:
    """Top-1, named right, confident wrong (closed set, and with the face's own character left
    out of the cast). `cast` may hold characters no query is (other series: distractors)."""
    cast_names, sims = similarities(vecs, cast, queries)
    truth = [names[i] for i in queries]
    n = len(truth)
    best = sims.argmax(1) if n else np.zeros(0, np.int64)
    top1 = [cast_names[b] == t for b, t in zip(best, truth, strict=True)]
    named = sims.max(1) >= floor if n else np.zeros(0, bool)
    right = sum(bool(a and b) for a, b in zip(named, top1, strict=True))
    wrong = sum(bool(a and not b) for a, b in zip(named, top1, strict=True))
    # open set: the face's own character is not in the cast; any name is wrong
    open_named = 0
    for r, t in enumerate(truth):
        others = [j for j, c in enumerate(cast_names) if c != t]
        open_named += bool(others) and bool(sims[r, others].max() >= floor)
    per = {c: float(np.mean([ok for ok, t in zip(top1, truth, strict=True) if t == c]))
           for c in sorted(set(truth))}
    return {"queries": n, "cast": len(cast_names), "floor": floor, "top1": float(np.mean(top1)) if n else 0.0,
            "named_right": right / max(1, n), "confident_wrong": wrong / max(1, n),
            "said_unknown": 1 - float(named.mean()) if n else 0.0,
            "open_set_confident_wrong": open_named / max(1, n),
            "top1_per_character": per}


def floor_for(vecs: np.ndarray, names: Sequence[str], cast: dict[str, np.ndarray], queries: Sequence[int],
              max_wrong: float = 0.05) -> float:
    """The lowest floor at which both confident-wrong rates (closed and open set) are ≤ max_wrong."""
    for f in np.round(np.arange(-0.2, 1.001, 0.01), 2).tolist():
        r = naming(vecs, names, cast, queries, f)
        if r["confident_wrong"] <= max_wrong and r["open_set_confident_wrong"] <= max_wrong:
            return float(f)
    return 1.0


def calibrated_floor(cast: dict[str, np.ndarray]) -> float | None:
    """The floor `anirec characters calibrate` would set from this gallery alone."""
    from core.characters import calibrate_floor

    return calibrate_floor(cast)


def end_to_end(detector: Any, vectorise: Vectorise, items: Sequence[Composed], ref_vecs: dict[str, np.ndarray],
               floor: float, iou: float = 0.5) -> dict[str, Any]:
    """Detected (at the detector's threshold) and named: share of ground-truth faces named right,
    share of detections given a wrong name."""
    from training.faces import match_detections

    gt_n = right = wrong = dets = 0
    cast = sorted(ref_vecs)
    for it in items:
        faces = detector.detect(it.image)
        gt_n += len(it.faces)
        dets += len(faces)
        if not faces:
            continue
        det_gt, _ = match_detections([f.box for f in faces], [f.score for f in faces], [f.box for f in it.faces], iou)
        v = vectorise(it.image, [f.box for f in faces])
        for row, g in zip(v, det_gt, strict=True):
            s = np.array([(ref_vecs[c] @ row).max() for c in cast])
            if s.max() < floor:
                continue
            if g >= 0 and cast[int(s.argmax())] == it.faces[g].character:
                right += 1
            else:
                wrong += 1
    return {"faces": gt_n, "detections": dets, "named_right": right / max(1, gt_n),
            "named_wrong_of_detections": wrong / max(1, dets)}
