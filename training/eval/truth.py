"""The ground truth of the indexed library: which episodes the sample library's
`ground_truth.json` describes, and every place (episode, time) that shows a given footage.

Identical footage counts as the same place: a shot of the series' opening/ending is in every
episode of the series, and recap footage is in its source episode (and the other way round).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from core.catalog import Catalog
from core.db.models import Episode
from core.errors import AniRecError

# One episode entry of `ground_truth.json` (plus "abs", its absolute posix path): parsed JSON
# as `data.synth` writes it, so its values are whatever that JSON holds.
TruthEpisode = dict[str, Any]

STILL_KINDS = ("static", "title")  # ground-truth shot kinds whose frames barely change


class EvalError(AniRecError):
    """The evaluation cannot run (no ground truth for the indexed library, nothing indexed)."""


@dataclass(frozen=True)
class Place:
    """Where a query's footage is in the library: an episode file and a time (seconds)."""

    path: str  # absolute posix path, as the catalog stores it
    t: float
    still: tuple[float, float] | None = None  # a still shot around t: any time inside is right


@dataclass
class Truth:
    """The ground truth of the indexed part of the library."""

    episodes: list[TruthEpisode]  # ground-truth episode entries (indexed ones), plus "abs"
    params: dict[str, Any]  # the generator's parameters (JSON)
    roots: list[str]
    seed: int | None

    def by_abs(self) -> dict[str, TruthEpisode]:
        return {e["abs"]: e for e in self.episodes}


def _library_roots(sessions: sessionmaker[Session], library: Path | None) -> list[Path]:
    if library is not None:
        return [Path(library)]
    with sessions() as s:
        return [Path(r) for r in s.scalars(select(Episode.library_root)
                                           .where(Episode.status == "indexed").distinct())]


def load_truth(sessions: sessionmaker[Session], catalog: Catalog, library: Path | None = None) -> Truth:
    """Read `ground_truth.json` of the library the catalog was indexed from (or of `library`).

    Raises:
        EvalError: no ground truth found, or none of its episodes is indexed.
    """
    roots = _library_roots(sessions, library)
    indexed = {em.path for em in catalog.episodes.values()}
    episodes: list[TruthEpisode] = []
    params: dict[str, Any] = {}
    used: list[str] = []
    seed = None
    for root in roots:
        gt_path = root / "ground_truth.json"
        if not gt_path.is_file():
            continue
        data = json.loads(gt_path.read_text(encoding="utf-8"))
        params = dict(data.get("params") or {})
        seed = data.get("seed", seed)
        used.append(root.resolve().as_posix())
        for e in data.get("episodes", []):
            ab = (root / e["path"]).resolve().as_posix()
            if ab in indexed:
                episodes.append({**{k: v for k, v in e.items() if k != "frames_gt"}, "abs": ab})
    if not used:
        where = ", ".join(str(r) for r in roots) or "(nothing indexed)"
        raise EvalError(f"No ground_truth.json in the indexed library folder(s): {where}. "
                        "`anirec eval` needs a library written by `anirec sample-library` "
                        "(or pass --library).")
    if not episodes:
        raise EvalError("None of the ground-truth episodes is indexed; run `anirec index` first.")
    episodes.sort(key=lambda e: e["abs"])
    return Truth(episodes=episodes, params=params, roots=used, seed=seed)


def segment_at(ep: TruthEpisode, t: float) -> str:
    """The segment of `ep` at `t`: opening / ending / recap / title / main."""
    for name in ("opening", "ending"):
        r = ep.get(name)
        if r and r[0] <= t < r[1]:
            return name
    for r in ep.get("recap") or ():
        if r["from"] <= t < r["to"]:
            return "recap"
    for s in ep.get("shots") or ():
        if s["start"] <= t < s["end"]:
            return str(s.get("segment", "main"))
    return "main"


def _still_offsets(ep: TruthEpisode, t: float) -> tuple[float, float] | None:
    """The still shot around t as offsets from t, if the shot at t is still."""
    for s in ep.get("shots") or ():
        if s["start"] <= t < s["end"]:
            if s.get("kind") in STILL_KINDS:
                return (float(s["start"]) - t, float(s["end"]) - t)
            return None
    return None


def places_of(ep: TruthEpisode, t: float, truth: Truth) -> tuple[Place, ...]:
    """Every (episode, time) that shows the footage of `ep` at `t`; the primary one first."""
    off = _still_offsets(ep, t)

    def place(path: str, tp: float) -> Place:
        return Place(path, tp, (tp + off[0], tp + off[1]) if off else None)

    out = [place(ep["abs"], t)]
    seg = segment_at(ep, t)
    if seg in ("opening", "ending"):  # identical in every episode of the series
        a = ep[seg][0]
        for other in truth.episodes:
            r = other.get(seg)
            if other is not ep and other["series"] == ep["series"] and r:
                tp = r[0] + (t - a)
                if tp < r[1]:
                    out.append(place(other["abs"], tp))
    root_of = {e["path"]: e["abs"] for e in truth.episodes}
    for r in ep.get("recap") or ():  # recap → its source
        if r["from"] <= t < r["to"] and r["source_path"] in root_of:
            out.append(place(root_of[r["source_path"]], r["source_time"] + (t - r["from"])))
    for other in truth.episodes:  # source → the recaps that re-use it
        for r in other.get("recap") or ():
            if r["source_path"] == ep["path"]:
                a = r["source_time"]
                if a <= t < a + (r["to"] - r["from"]):
                    out.append(place(other["abs"], r["from"] + (t - a)))
    return tuple(out)


def stored_frame_numbers(catalog: Catalog, truth: Truth) -> dict[str, set[int]]:
    """Per episode path: the video frame numbers of the stored (indexed) frames."""
    fps_of = {e["abs"]: float(e["fps"]) for e in truth.episodes}
    out: dict[str, set[int]] = {p: set() for p in fps_of}
    path_of = {eid: em.path for eid, em in catalog.episodes.items()}
    for e in np.unique(catalog.ep).tolist():
        path = path_of.get(int(e))
        if path is None or path not in fps_of:
            continue
        ts = catalog.t[catalog.ep == e].astype(np.float64)
        out[path] = set(np.rint(ts * fps_of[path]).astype(np.int64).tolist())
    return out
