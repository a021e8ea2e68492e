"""Vote writes from several bot processes at once: SQLite (WAL, the default catalog) against a
real PostgreSQL that this benchmark starts itself (core/db/pg_local.py).

Each writer is its own OS process (`python -m bench.bench_votes worker ...`, the same
`FeedbackStore.record` the bots call); they start together and write `--votes` votes each
on a shared set of answers, one user shared by all writers included (its votes race on the
same answer). Afterwards every vote must be in the database and every (answer, person) must
have at most one active vote; the run fails otherwise.

    python -m bench.bench_votes                      # 2 processes x 300 votes, both engines
    python -m bench.bench_votes --processes 2 --votes 1000 --out bench/results/votes.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

ROOT = Path(__file__).resolve().parents[1]
SHARED_USER = "shared"


def _store(url: str, salt: bytes) -> Any:
    from core.db import open_database
    from core.feedback import FeedbackStore

    _, sessions = open_database(url)
    return FeedbackStore(sessions, salt)


def _source(user: str) -> Any:
    from core.types import Source

    return Source(platform="cli", chat_id="c", user_id=user)


def prepare(url: str, salt: bytes, n_queries: int) -> list[str]:
    """Migrate the catalog and record `n_queries` answers to vote on."""
    from core.types import Candidate, Recognition, SeriesInfo

    store = _store(url, salt)
    series = SeriesInfo(id=1, title="Show")
    cands = tuple(Candidate(series=series, episode_id=i, season=1, episode=i, episode_label=f"{i:02d}",
                            time=10.0 * i, time_from=10.0 * i, time_to=10.0 * i + 1, score=0.9 - i / 10)
                  for i in range(1, 6))
    rec = Recognition(status="match", confidence=0.9, candidates=cands)
    return [store.record_query(rec, _source("asker"), image_sha256="0" * 64, latency_ms=1.0)
            for _ in range(n_queries)]


def worker(url: str, salt: bytes, qids: list[str], wid: int, votes: int) -> dict[str, Any]:
    """Connect, say "ready", wait for "go" on stdin, then write `votes` votes (own users,
    every 4th by the shared user) and report the time."""
    from core.db.retry import STATS
    from core.types import Verdict

    store = _store(url, salt)
    store.tally(qids[0])  # connected
    verdicts = [Verdict.CORRECT, Verdict.WRONG, Verdict.PICK]
    print("ready", flush=True)
    sys.stdin.readline()
    began = time.time()
    for i in range(votes):
        user = SHARED_USER if i % 4 == 0 else f"w{wid}-u{i % 7}"
        verdict = verdicts[(i + wid) % 3]
        store.record(qids[i % len(qids)], _source(user), verdict,
                     rank=2 if verdict is Verdict.PICK else None)
    return {"worker": wid, "votes": votes, "began": began, "ended": time.time(),
            "retries": STATS.retries}


def run_writers(url: str, salt: bytes, qids: list[str], *, processes: int, votes: int
                ) -> dict[str, Any]:
    """Start `processes` writer processes together; wait for all; return their reports."""
    args = [sys.executable, "-m", "bench.bench_votes", "worker", "--url", url,
            "--salt", salt.hex(), "--qids=" + ",".join(qids), "--votes", str(votes)]  # (ids may start with -)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    procs = [subprocess.Popen([*args, "--wid", str(w)], cwd=ROOT, env=env, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for w in range(processes)]
    for p in procs:  # all connected before any writes
        assert p.stdout is not None
        if p.stdout.readline().strip() != "ready":
            p.wait(timeout=60)
            raise RuntimeError(f"a writer failed to start: {p.stderr.read() if p.stderr else ''}")
    for p in procs:
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    reports = []
    for p in procs:
        out, err = p.communicate(timeout=600)
        if p.returncode:
            raise RuntimeError(f"a writer failed ({p.returncode}): {err.strip()[-3000:]}")
        reports.append(json.loads(out.strip().splitlines()[-1]))
    wall = max(max(r["ended"] for r in reports) - min(r["began"] for r in reports), 1e-9)
    return {"writers": reports, "wall_s": wall, "votes_per_s": processes * votes / wall}


def check(url: str, *, expected: int) -> dict[str, Any]:
    """Every vote stored; at most one active vote per (answer, person)."""
    from core.db import create_db_engine
    from core.db.models import Feedback

    engine = create_db_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(func.count(Feedback.id))).scalar_one()
            doubled = conn.execute(
                select(Feedback.query_id, Feedback.user_hash).where(Feedback.active.is_(True))
                .group_by(Feedback.query_id, Feedback.user_hash).having(func.count() > 1)).all()
    finally:
        engine.dispose()
    return {"rows": rows, "expected": expected, "lost": expected - rows,
            "double_active": len(doubled)}


def measure(url: str, *, processes: int, votes: int, queries: int) -> dict[str, Any]:
    salt = os.urandom(32)
    qids = prepare(url, salt, queries)
    out = run_writers(url, salt, qids, processes=processes, votes=votes)
    out["check"] = check(url, expected=processes * votes)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd")
    w = sub.add_parser("worker", help="one writer process (started by the benchmark and the tests)")
    w.add_argument("--url", required=True)
    w.add_argument("--salt", required=True)
    w.add_argument("--qids", required=True)
    w.add_argument("--wid", type=int, required=True)
    w.add_argument("--votes", type=int, required=True)
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--votes", type=int, default=300, help="votes per process")
    ap.add_argument("--queries", type=int, default=20)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "votes.json")
    a = ap.parse_args(argv)
    if a.cmd == "worker":
        print(json.dumps(worker(a.url, bytes.fromhex(a.salt), a.qids.split(","), a.wid, a.votes)))
        return 0

    from core.db.pg_local import LocalPostgres
    from core.sysinfo import machine_info

    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        results["sqlite"] = measure(f"sqlite:///{Path(tmp) / 'catalog.db'}", processes=a.processes,
                                    votes=a.votes, queries=a.queries)
    with LocalPostgres(fsync=True) as pg:  # durable commits, as a real server has
        results["postgresql"] = measure(pg.create_database("bench"), processes=a.processes,
                                        votes=a.votes, queries=a.queries)
    bad = {k: v["check"] for k, v in results.items()
           if v["check"]["lost"] or v["check"]["double_active"]}
    report = {
        "benchmark": "bench.bench_votes",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "contention": "shared with other jobs",
        "processes": a.processes, "votes_per_process": a.votes, "queries": a.queries,
        "settings": {"sqlite": "WAL, synchronous=NORMAL (core/db/__init__.py)",
                     "postgresql": "PostgreSQL 15 defaults (fsync on, synchronous_commit on), "
                                   "127.0.0.1 TCP, psycopg 3"},
        "results": results,
        "postgresql_vs_sqlite_votes_per_s": results["postgresql"]["votes_per_s"]
        / results["sqlite"]["votes_per_s"],
        "ok": not bad,
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(report, indent=2) + "\n")
    for k, v in results.items():
        print(f"{k:10s} {v['votes_per_s']:8.1f} votes/s  wall {v['wall_s']:.2f}s  {v['check']}")
    print(f"wrote {a.out}")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
