"""The learning loop, simulated: do votes make the bot better, and how many does it take?

1. A sample library is generated and indexed (default embedder).
2. Which screenshots the current model gets wrong or hedges on is *measured*: every kind of
   `training.feedback_sim.HARD_KINDS` is sent `--probe` times; the `--kinds` worst by
   accuracy are the ones the simulated users send.
3. For each vote budget (`--answers`, answers per kind), on a fresh copy of the home: the
   users send that many screenshots of each hard kind through the real service (stored
   queries with their vectors), six people vote (mostly right, 8% noise) and one abusive
   voter votes against the truth, the operator labels half of the ❌'d answers with the truth
   (as from the wrong-answers queue), `anirec retrain`'s code runs with the gate (held-out votes
   + the fixed evaluation suite), and a FRESH set of screenshots of the same kinds (another
   seed) is answered by the current and by the candidate version: accuracy and the share
   of right answers given as "match", per kind. The suite numbers come from the gate.

Run:
    python -m bench.bench_learning              # -> bench/results/learning.json
    python -m bench.bench_learning --answers 20 --fresh 20 --series 3   # quick
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from core.config import Settings  # noqa: E402
from core.sysinfo import machine_info  # noqa: E402


def _app(home: Path) -> Any:
    from bot.app import App

    return App.from_settings(Settings(_env_file=None, home=home))  # type: ignore[call-arg]


def _score(rec: Any, queries: list[Any]) -> dict[str, dict[str, float | int]]:
    from core.media import load_media
    from training.feedback_sim import score

    return {k: v.as_dict() for k, v in score(lambda d: rec.recognize(load_media(d)), queries,
                                              rec.catalog).items()}


def probe(home: Path, n: int, seed: int) -> dict[str, dict[str, float | int]]:
    from training.eval.truth import load_truth
    from training.feedback_sim import HARD_KINDS, make_queries

    app = _app(home)
    rec = app.recognizer()
    truth = load_truth(app.sessions, rec.catalog)
    return _score(rec, make_queries(truth, list(HARD_KINDS), n, seed))


async def _send(app: Any, kinds: list[str], n: int, seed: int) -> Any:
    from training.eval.truth import load_truth
    from training.feedback_sim import default_voters, make_queries, send_and_vote

    svc = app.service(user_rate=10**9, chat_rate=10**9)
    svc.queue_size = 10**6
    await svc.start()
    try:
        truth = load_truth(app.sessions, svc.recognizer.catalog)
        return await send_and_vote(svc, make_queries(truth, kinds, n, seed), default_voters(), seed)
    finally:
        await svc.close()


def one_budget(base: Path, work: Path, kinds: list[str], answers: int, fresh: int,
               suite: int) -> dict[str, Any]:
    from core.models.adapter import load_adapter
    from core.recognition.calibration import Calibration
    from training.eval.truth import load_truth
    from training.feedback_sim import make_queries
    from training.retrain_gate import RetrainGate, retrain_from_feedback

    home = work / f"home-{answers}"
    shutil.copytree(base, home)
    app = _app(home)
    t0 = time.perf_counter()
    log = asyncio.run(_send(app, kinds, answers, seed=11))
    t_send = time.perf_counter() - t0
    t0 = time.perf_counter()
    from bot.web_common import OPERATOR
    from core.feedback_ops import CLI_OPERATOR

    store = app.feedback_store()
    trusted = [store.hash_id(s.platform, s.user_id) for s in (CLI_OPERATOR, OPERATOR)]
    res = retrain_from_feedback(app.sessions, store, app.settings.models_dir,
                                app.recognizer, gate=RetrainGate(suite_queries=suite), trusted=trusted)
    t_retrain = time.perf_counter() - t0
    current = app.recognizer() if not res.promoted else None
    if current is None:  # promoted: what served before is the default path (no adapter)
        current = replace(app.recognizer(), adapter=None,
                          calibration=Calibration.load(app.settings.models_dir / "calibration.json"))
    folder = app.settings.models_dir / res.path
    cal = folder / "calibration.json"
    candidate = replace(current, adapter=load_adapter(folder / "adapter.npz"),
                        calibration=Calibration.load(cal) if cal.exists() else current.calibration)
    truth = load_truth(app.sessions, current.catalog)
    fresh_q = make_queries(truth, kinds, fresh, seed=12)  # never voted on
    before, after = _score(current, fresh_q), _score(candidate, fresh_q)
    shutil.rmtree(home, ignore_errors=True)
    return {"answers_per_kind": answers, "votes": log.votes, "votes_by_kind": log.by_kind,
            "abusive_votes": log.abusive_votes, "promoted": res.promoted, "reason": res.reason,
            "learnt": res.learnt, "gate": {k: res.metrics[k] for k in ("feedback", "feedback_nearest", "suite")},
            "fresh": {k: {"current": before[k], "candidate": after[k]} for k in before},
            "seconds": {"send_and_vote": round(t_send, 1), "retrain_and_gate": round(t_retrain, 1)}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--series", type=int, default=4)
    ap.add_argument("--episodes", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--probe", type=int, default=30, help="screenshots per kind to find the hard kinds")
    ap.add_argument("--kinds", type=int, default=3, help="how many of the hardest kinds users send")
    ap.add_argument("--answers", type=int, nargs="+", default=[30, 90, 180],
                    help="vote budgets: answers per hard kind, each voted by the simulated people")
    ap.add_argument("--fresh", type=int, default=50, help="fresh screenshots per kind to judge on")
    ap.add_argument("--suite", type=int, default=120, help="evaluation-suite queries of the gate")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "learning.json"))
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    from data.synth import generate_library

    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="anirec-learning-") as tmp:
        work = Path(tmp)
        lib = work / "library"
        generate_library(lib, series=args.series, episodes=args.episodes, seconds=args.seconds, seed=0)
        base = work / "base"
        _app(base).indexer().run(lib)
        probed = probe(base, args.probe, seed=5)
        hard = sorted(probed, key=lambda k: (probed[k]["accuracy"], probed[k]["right_as_match"]))[:args.kinds]
        print(f"probe: {json.dumps(probed)}\nhard kinds: {hard}", flush=True)
        runs = []
        for n in args.answers:
            r = one_budget(base, work, hard, n, args.fresh, args.suite)
            print(json.dumps({k: r[k] for k in ("answers_per_kind", "votes", "promoted", "reason", "fresh")}),
                  flush=True)
            runs.append(r)
    out = {"benchmark": "learning", "date": datetime.now(UTC).isoformat(timespec="seconds"),
           "machine": machine_info(),
           "library": {"series": args.series, "episodes": args.episodes, "seconds": args.seconds, "seed": 0},
           "probe": {"per_kind": probed, "n_per_kind": args.probe, "hard_kinds": hard},
           "voters": "6 people (70% turnout, 8% random votes) + 1 abusive voter (90% turnout, always "
                     "against the truth) + the operator labelling 50% of the answers not right at "
                     "rank 1 with the truth",
           "fresh_per_kind": args.fresh, "suite_queries": args.suite, "runs": runs,
           "wall_seconds": round(time.perf_counter() - t_start, 1),
           "command": "python -m bench.bench_learning " + " ".join(argv or sys.argv[1:])}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2, default=str))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
