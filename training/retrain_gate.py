"""The gate and the promotion of a version learnt from votes (`anirec retrain`).

A candidate (query adapter + refitted calibration, `training/retrain.py`) is compared with
the current recogniser on a held-out part of the feedback (the nearest stored frame of each
held-out query, through each version's adapter) and on the fixed evaluation suite (the whole
pipeline on seeded queries from the library). It is promoted only if it is better on the
feedback and not worse on the suite (`RetrainGate`'s margins). Every candidate becomes a
`model_versions` row of kind "adapter" with the gate's numbers, promoted or not; its files
are written under a temporary name and renamed when complete.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session, sessionmaker

from core.errors import NothingToTrain

if TYPE_CHECKING:
    from core.feedback import FeedbackStore
    from core.feedback_ops import LabelledQuery
    from core.media import Media
    from core.models.adapter import QueryAdapter
    from core.recognition import Calibration, Recognizer
    from training.eval.judging import Judge
    from training.eval.queries import Query as EvalQuery
    from training.retrain import RetrainParams, Signal


@dataclass(frozen=True)
class RetrainGate:
    """When a version learnt from votes replaces the current one: better on the held-out
    votes by more than `feedback_margin`, and at most `suite_margin` worse on the suite."""

    holdout: float = 0.25  # share of voted answers held out (by their id's hash)
    feedback_margin: float = 0.0
    suite_margin: float = 0.01
    suite_queries: int = 120  # 0: no suite
    suite_seed: int = 0


@dataclass
class RetrainResult:
    """What `retrain_from_feedback` did."""

    version: str
    promoted: bool
    reason: str
    learnt: dict[str, object]  # how many votes / answers, of which kind, what was fitted
    metrics: dict[str, object]  # the gate's numbers
    path: str

    def to_json(self) -> dict[str, object]:
        return {"version": self.version, "promoted": self.promoted, "reason": self.reason,
                "learnt": self.learnt, "metrics": self.metrics, "path": self.path}


def suite_metrics(rec: Recognizer, medias: Sequence[Media], queries: Sequence[EvalQuery],
                  judge: Judge) -> dict[str, float]:
    """Episode top-1, right answers given as "match", false matches out of the library."""
    from training.eval.judging import guesses_of

    n_in = right = right_match = ool = false_match = 0
    for q, m in zip(queries, medias, strict=True):
        r = rec.recognize(m)
        if not q.in_library:
            ool += 1
            false_match += r.status == "match"
            continue
        n_in += 1
        ok = judge(q, guesses_of(r)).episode_top1
        right += ok
        right_match += ok and r.status == "match"
    return {"episode_top1": right / n_in if n_in else 0.0,
            "right_as_match": right_match / n_in if n_in else 0.0,
            "false_match_ool": false_match / ool if ool else 0.0, "n": float(n_in + ool)}


def _suite(current: Recognizer, candidate: Recognizer, sessions: sessionmaker[Session],
           gate: RetrainGate) -> dict[str, object]:
    """Both recognisers on the fixed evaluation suite (or, without ground truth, on stored
    frames: each must still find itself)."""
    from core.media import load_media
    from training.eval.judging import Judge
    from training.eval.queries import build_queries
    from training.eval.truth import EvalError, load_truth, stored_frame_numbers

    try:
        truth = load_truth(sessions, current.catalog)
    except EvalError:
        return _stored_frame_suite(current, candidate, gate)
    stored = stored_frame_numbers(current.catalog, truth)
    queries = build_queries(truth, stored, n=gate.suite_queries, seed=gate.suite_seed)
    medias = [load_media(q.data) for q in queries]
    judge = Judge(current.catalog)
    return {"kind": "eval suite", "seed": gate.suite_seed,
            "current": suite_metrics(current, medias, queries, judge),
            "candidate": suite_metrics(candidate, medias, queries, judge)}


def _stored_frame_suite(current: Recognizer, candidate: Recognizer, gate: RetrainGate
                        ) -> dict[str, object]:
    import numpy as np

    from training.retrain import stored

    ids = stored(current.index).ids()
    pick = np.random.default_rng(gate.suite_seed).choice(ids, size=min(gate.suite_queries, len(ids)),
                                                         replace=False)
    vecs = current.index.vectors(np.sort(pick))

    def top1(rec: Recognizer) -> float:
        v = rec.adapter(vecs) if rec.adapter is not None else vecs
        found, _ = rec.index.search(v, 1)
        return float((found[:, 0] == np.sort(pick)).mean()) if len(pick) else 0.0

    return {"kind": "stored frames (no ground truth)",
            "current": {"episode_top1": top1(current), "n": float(len(pick))},
            "candidate": {"episode_top1": top1(candidate), "n": float(len(pick))}}


def _decide(fb_old: float, fb_new: float, fb_n: int, suite: dict[str, object] | None,
            gate: RetrainGate) -> tuple[bool, str]:
    if fb_n == 0:
        return False, "no held-out votes to judge it on (collect more votes)"
    if fb_new <= fb_old + gate.feedback_margin:
        return False, (f"not better on the held-out votes ({fb_new:.3f} vs {fb_old:.3f}, "
                       f"margin {gate.feedback_margin})")
    if suite is not None:
        cur, cand = suite["current"], suite["candidate"]
        assert isinstance(cur, dict) and isinstance(cand, dict)
        for key in ("episode_top1", "right_as_match"):
            if key in cur and cand[key] < cur[key] - gate.suite_margin:
                return False, (f"worse on the suite: {key} {cand[key]:.3f} vs {cur[key]:.3f} "
                               f"(margin {gate.suite_margin})")
        if "false_match_ool" in cur and cand["false_match_ool"] > cur["false_match_ool"] + gate.suite_margin:
            return False, "more false matches on out-of-library queries of the suite"
    return True, f"better on the held-out votes ({fb_new:.3f} vs {fb_old:.3f}), not worse on the suite"


def _write_bundle(models_dir: Path, version: str, adapter: QueryAdapter,
                  calibration: Calibration | None, metrics: dict[str, object]) -> Path:
    """Write the version's folder under a temporary name and rename it when complete, so a
    killed retrain leaves nothing a recogniser would load."""
    import json
    import shutil

    root = models_dir / "retrain"
    root.mkdir(parents=True, exist_ok=True)
    for stale in root.glob(".*.tmp"):  # an earlier retrain killed midway
        shutil.rmtree(stale, ignore_errors=True)
    tmp, final = root / f".{version}.tmp", root / version
    tmp.mkdir()
    try:
        adapter.save(tmp / "adapter.npz")
        if calibration is not None:
            calibration.save(tmp / "calibration.json")
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2, default=str))
        tmp.replace(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def retrain_from_feedback(sessions: sessionmaker[Session], store: FeedbackStore, models_dir: Path,
                          recognizer: Callable[[], Recognizer], *, gate: RetrainGate = RetrainGate(),
                          params: RetrainParams | None = None, trusted: Sequence[str] = (),
                          log: Callable[[str], None] = lambda _m: None) -> RetrainResult:
    """Votes → signal → query adapter + calibration → gate → a `model_versions` row
    (promoted when the gate passes). Raises NothingToTrain without usable votes."""
    import datetime as dt

    from core.feedback_ops import labelled
    from core.models.registry import ADAPTER_KIND, register_model
    from training import retrain as rt

    params = params or rt.RetrainParams()
    current = recognizer()
    voted = labelled(store)
    votes = sum(len(q.votes) for q in voted)
    signals, dropped = rt.build_signals(voted, current.catalog, params, trusted)
    train = [s for s in signals if not rt.held_out(s.query_id, gate.holdout)]
    held = [s for s in signals if rt.held_out(s.query_id, gate.holdout)]
    if not any(s.pos is not None or s.negs for s in train):
        raise NothingToTrain(f"No usable votes to learn from: {votes} active vote(s) on {len(voted)} "
                             f"answer(s) with stored vectors; {len(signals)} usable, {len(train)} "
                             f"outside the held-out part. Nothing was changed.")
    kinds = collections.Counter(s.kind for s in signals)
    log(f"learning from {votes} votes on {len(voted)} answers: {len(train)} to train, "
        f"{len(held)} held out")
    version = "adapter-" + dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S-%f")
    emb = current.embedder
    adapter, how = _fit(train, current, version, params)
    cal = rt.refit_calibration(current.calibration, train, params, f"votes: {len(train)} answers")
    if cal is not None and held and rt.calibration_loss(cal, held) > rt.calibration_loss(current.calibration, held):
        cal = None  # the refit does not generalise: keep the current calibration
    fb_old, fb_n = rt.preference_accuracy(held, rt.stored(current.index), current.adapter)
    fb_new, _ = rt.preference_accuracy(held, rt.stored(current.index), adapter)
    nn_old, nn_n = rt.retrieval_accuracy(held, current.index, current.catalog, current.adapter)
    nn_new, _ = rt.retrieval_accuracy(held, current.index, current.catalog, adapter)
    candidate = replace(current, adapter=adapter, calibration=cal or current.calibration)
    suite = _suite(current, candidate, sessions, gate) if gate.suite_queries else None
    ok, reason = _decide(fb_old, fb_new, fb_n, suite, gate)
    learnt: dict[str, object] = {
        "votes": votes, "answers_voted": len(voted), "answers_used": len(signals),
        "by_kind": dict(kinds), "dropped": dropped, "trained_on": len(train), "held_out": len(held),
        "down_weighted_voters": sum(1 for w in _voter_weights(voted, current, params, trusted).values()
                                    if w < 1.0),
        "adapter": f"{emb.dim}x{emb.dim} map on query vectors ({how})",
        "calibration": "refitted" if cal is not None else "kept (too few voted answers or no gain)"}
    metrics: dict[str, object] = {
        # held-out votes: the voted frame preferred over the other candidates' (the gate) ...
        "feedback": {"current": round(fb_old, 4), "candidate": round(fb_new, 4), "judged": fb_n},
        # ... and the nearest stored frame at the voted place (reported)
        "feedback_nearest": {"current": round(nn_old, 4), "candidate": round(nn_new, 4), "judged": nn_n},
        "suite": suite, "learnt": learnt, "gate": {"promoted": ok, "reason": reason,
                                                    "margins": [gate.feedback_margin, gate.suite_margin]}}
    path = _write_bundle(models_dir, version, adapter, cal, metrics)
    register_model(sessions, kind=ADAPTER_KIND, version=version, path=path.relative_to(models_dir),
                   metrics=metrics, promote=ok)
    return RetrainResult(version, ok, reason, learnt, metrics, str(path.relative_to(models_dir)))


def _fit(train: Sequence[Signal], current: Recognizer, version: str, params: RetrainParams
         ) -> tuple[QueryAdapter, str]:
    """Three ways to learn the map; the best on a validation part of the training votes
    (every 5th answer; ties go to the earlier one), refitted on all of them: the closed-form
    ridge map, the contrastive residual map, the closed-form nuisance shrinkage."""
    from training import retrain as rt

    emb, index = current.embedder.version, rt.stored(current.index)
    fit_on = [s for i, s in enumerate(train) if i % 5 != 4] if len(train) >= 10 else list(train)
    val = [s for i, s in enumerate(train) if i % 5 == 4] if len(train) >= 10 else list(train)
    ways = {
        "ridge": lambda sig: rt.fit_ridge_adapter(sig, index, version=version, embedder_version=emb),
        "contrastive": lambda sig: rt.fit_adapter(sig, index, version=version, embedder_version=emb,
                                                  params=params),
        "nuisance shrinkage": lambda sig: rt.fit_nuisance_adapter(sig, index, version=version,
                                                                  embedder_version=emb)[0],
    }
    scores = {name: rt.preference_accuracy(val, index, fit(fit_on))[0] for name, fit in ways.items()}
    best = max(scores, key=lambda k: scores[k])  # the first of equals
    note = ", ".join(f"{k} {v:.3f}" for k, v in scores.items())
    return ways[best](list(train)), f"{best}; validation: {note}"


def _voter_weights(voted: Sequence[LabelledQuery], current: Recognizer, params: RetrainParams,
                   trusted: Sequence[str]) -> dict[str, float]:
    from training import retrain as rt

    labels: dict[str, list[rt._Label]] = {}
    for q in voted:
        ls = [lb for v in q.votes if (lb := rt._label(q, v, current.catalog)) is not None]
        if ls:
            labels[q.id] = ls
    return rt.voter_weights(labels, {q.id: rt._cand_place(q, 1) for q in voted}, params, trusted)


