"""`anirec retrain [--json FILE]`: learn from the votes (a query adapter and the confidence
calibration, no re-embedding), gate the result against the current version and promote it
when it is better; a running `anirec run` swaps it in by itself. See docs/feedback.md."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bot.app import App


def cmd_retrain(app: App, args: argparse.Namespace) -> int:
    from bot.web_common import OPERATOR
    from core.feedback_ops import CLI_OPERATOR
    from training.retrain import RetrainParams
    from training.retrain_gate import RetrainGate, retrain_from_feedback

    app.configure_torch(default=0)
    st = app.settings
    store = app.feedback_store()
    trusted = [store.hash_id(s.platform, s.user_id) for s in (CLI_OPERATOR, OPERATOR)]
    gate = RetrainGate(holdout=st.retrain_holdout, feedback_margin=st.retrain_feedback_margin,
                       suite_margin=st.retrain_suite_margin,
                       suite_queries=st.retrain_suite_queries if args.suite is None else args.suite)
    res = retrain_from_feedback(app.sessions, store, st.models_dir, app.recognizer, gate=gate,
                                params=RetrainParams(steps=args.steps), trusted=trusted,
                                log=lambda m: print(m, file=sys.stderr, flush=True))
    out = res.to_json()
    if args.json:
        path = Path(args.json)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(out, indent=2, default=str))
        tmp.replace(path)
    lr = res.learnt
    fb = res.metrics["feedback"]
    assert isinstance(fb, dict)
    print(f"learnt from {lr['votes']} vote(s) on {lr['answers_used']} answer(s) "
          f"({', '.join(f'{n} {k}' for k, n in dict(lr['by_kind']).items())}; "  # type: ignore[call-overload]
          f"{lr['down_weighted_voters']} voter(s) down-weighted): {lr['adapter']}, "
          f"calibration {lr['calibration']}")
    print(f"held-out votes ({fb['judged']}): right frame {fb['current']:.3f} -> {fb['candidate']:.3f}")
    suite = res.metrics.get("suite")
    if isinstance(suite, dict):
        cur, cand = suite["current"], suite["candidate"]
        print(f"suite ({suite['kind']}, {int(cur['n'])} queries): episode top-1 "
              f"{cur['episode_top1']:.3f} -> {cand['episode_top1']:.3f}"
              + (f", right as match {cur['right_as_match']:.3f} -> {cand['right_as_match']:.3f}"
                 if "right_as_match" in cur else ""))
    print(("Promoted " if res.promoted else "Not promoted: ") + f"{res.version} ({res.reason}).")
    if res.promoted:
        print("A running `anirec run` picks it up within ANIREC_RELOAD_POLL_SECONDS (or on /reload); "
              "`anirec models rollback` undoes it.")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sp = sub.add_parser("retrain", help="learn from the votes, gate, promote (no re-embedding)")
    sp.add_argument("--json", metavar="FILE", default=None, help="also write the result as JSON")
    sp.add_argument("--steps", type=int, default=300, help="adapter training steps")
    sp.add_argument("--suite", type=int, default=None, metavar="N",
                    help="evaluation-suite queries of the gate (default ANIREC_RETRAIN_SUITE_QUERIES; "
                         "0 skips the suite)")
    sp.set_defaults(func=cmd_retrain)
