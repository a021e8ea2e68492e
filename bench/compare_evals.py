"""Compare two `anirec eval --json` files query by query: which answers changed.

`python -m bench.compare_evals BEFORE.json AFTER.json [--out DIFF.json]` prints, per system,
how many queries got a different answer (rank, series, episode, time, status) and the largest
score difference, and exits 1 when any answer differs. Dates, wall time and latency are not
compared: they are measurements of the machine, not answers.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ANSWER_KEYS = ("rank", "series", "episode", "time", "status", "answer_t")


def compare(before: dict, after: dict) -> dict:
    """The per-system differences between two eval results with the same queries."""
    qa = {q["id"]: q for q in before["per_query"]}
    qb = {q["id"]: q for q in after["per_query"]}
    if qa.keys() != qb.keys():
        raise SystemExit("the two files hold different query sets")
    systems = [k for k in before["per_query"][0] if isinstance(before["per_query"][0][k], dict)]
    out: dict = {"queries": len(qa), "systems": {}}
    for sysname in systems:
        changed, max_score = [], 0.0
        for qid, a in qa.items():
            x, y = a.get(sysname) or {}, qb[qid].get(sysname) or {}
            if any(x.get(k) != y.get(k) for k in ANSWER_KEYS):
                changed.append({"id": qid, "before": x, "after": y})
            if x.get("score") is not None and y.get("score") is not None:
                max_score = max(max_score, abs(float(x["score"]) - float(y["score"])))
        out["systems"][sysname] = {"changed": len(changed), "max_score_diff": round(max_score, 6),
                                   "changed_queries": changed}
    keys = ("categories", "ratios_vs_colorlayout", "calibration", "splits", "queries")
    out["same_metrics"] = {k: before.get(k) == after.get(k) for k in keys}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("before")
    ap.add_argument("after")
    ap.add_argument("--out", default=None, help="write the differences as JSON")
    args = ap.parse_args(argv)
    diff = compare(json.loads(Path(args.before).read_text()), json.loads(Path(args.after).read_text()))
    diff["before"], diff["after"] = args.before, args.after
    for name, d in diff["systems"].items():
        print(f"{name:14} {d['changed']:5d} of {diff['queries']} answers differ; "
              f"largest score difference {d['max_score_diff']}")
    print("metrics equal: " + ", ".join(f"{k} {v}" for k, v in diff["same_metrics"].items()))
    if args.out:
        Path(args.out).write_text(json.dumps(diff, indent=1) + "\n")
    return 1 if any(d["changed"] for d in diff["systems"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
