"""`anirec eval`: our recognizer and three baselines on the same perturbed queries."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any


class StageBars:
    """One tqdm bar (on stderr) per evaluation stage."""

    def __init__(self) -> None:
        from tqdm import tqdm

        self._tqdm = tqdm
        self.stage: str | None = None
        self.bar: Any = None

    def __call__(self, stage: str, done: int, total: int) -> None:
        if stage != self.stage:
            self.close()
            self.stage = stage
            self.bar = self._tqdm(total=total, desc=stage, unit="q" if "queries" not in stage
                                  and "features" not in stage else "it", file=sys.stderr,
                                  leave=False)
        self.bar.total = total
        self.bar.update(done - self.bar.n)  # redraws at most every `mininterval` seconds

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def cmd_eval(app: Any, args: argparse.Namespace) -> int:
    from training.eval import EvalConfig, evaluate, format_table, write_json, write_report

    app.configure_torch(default=1)
    logging.getLogger("matplotlib").setLevel(logging.WARNING)
    st = app.settings
    config = EvalConfig(queries=args.queries, seed=args.seed, calibrate=args.calibrate,
                        calibration_queries=args.calibration_queries,
                        baselines=not args.no_baselines, search_k=st.search_k,
                        match_threshold=st.match_threshold, unsure_threshold=st.unsure_threshold)
    bars = StageBars()
    try:
        result = evaluate(app.sessions, index_dir=st.index_dir, models_dir=st.models_dir,
                          framestore_dir=st.framestore_dir,
                          library=Path(args.library) if args.library else None,
                          config=config, progress=bars)
    finally:
        bars.close()
    result["command"] = " ".join(
        ["anirec", "eval", "--queries", str(args.queries), "--seed", str(args.seed)]
        + (["--calibrate"] if args.calibrate else [])
        + (["--calibration-queries", str(args.calibration_queries)] if args.calibration_queries else [])
        + (["--no-baselines"] if args.no_baselines else []))
    print(format_table(result))
    if args.json:
        write_json(result, Path(args.json))
        print(f"JSON: {args.json}")
    if args.report:
        paths = write_report(result, Path(args.report))
        print(f"Report: {paths[0]}")
    return 0


def register(sub: Any) -> None:
    sp = sub.add_parser("eval", help="evaluate recognition (and baselines) on perturbed queries "
                                     "from the indexed sample library")
    sp.add_argument("--queries", type=int, default=300, help="number of queries (default 300)")
    sp.add_argument("--seed", type=int, default=0, help="seed of the query set (default 0)")
    sp.add_argument("--json", default=None, metavar="FILE", help="write the full results as JSON")
    sp.add_argument("--report", default=None, metavar="DIR",
                    help="write report.md and plots into DIR")
    sp.add_argument("--calibrate", action="store_true",
                    help="fit the confidence calibration on a separate query set, save it to "
                         "the models folder, then evaluate with it")
    sp.add_argument("--calibration-queries", type=int, default=0, metavar="N",
                    help="size of the calibration set (default: same as --queries)")
    sp.add_argument("--no-baselines", action="store_true",
                    help="skip ColorLayout, pHash and the untrained CNN")
    sp.add_argument("--library", default=None, metavar="DIR",
                    help="the sample library (default: the folder that was indexed)")
    sp.set_defaults(func=cmd_eval)
