"""The capacity model of docs/capacity.md, computed from the measurements at 1M.

`python -m bench.capacity [--milvus bench/results/milvus_1m.json] [--hnsw bench/results/hnsw_1m.json]`
prints the markdown table of docs/capacity.md and writes bench/results/capacity.json. The
model (docs/capacity.md says why):

- bytes per frame are the measured bytes per vector at 1M (they do not depend on the count);
  Milvus' memory per frame is its index plus the scalar fields (id, series, episode: 8 B
  each; time: 4 B), its disk per frame the index plus the raw rows (binlogs);
- build time: hnswlib inserts cost ~log N each (one graph), so T(N) = N / rate(1M) *
  log N / log 1M; Milvus builds one index per sealed segment (~512 MB of rows), so its build
  time is linear, T(N) = N / rate(1M), divided among its index nodes;
- query latency: hnswlib p50(N) = p50(1M) * log N / log 1M (a single graph), while it fits in
  one machine's memory; Milvus searches every segment and merges, so on one query node its
  p50 grows linearly: p50(N) = a + b * N through the p50s measured at 1M and at a smaller
  count (`--small`; a is the fixed cost of a request), the N part divided among query nodes.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SIZES = (1_000_000, 10_000_000, 100_000_000, 1_000_000_000)
SCALAR_BYTES = 8 + 8 + 8 + 4  # id, series, episode (INT64), time (FLOAT)
NODE_MEMORY = 24e9 * 0.75  # this machine's 24 GB, a quarter kept for the rest
TARGET_S = 0.1  # trace.moe's search time


def _human(n: float) -> str:
    for unit, div in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= div:
            return f"{n / div:g}{unit}"
    return f"{n:g}"


def _bytes(n: float) -> str:
    for unit, div in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n >= div:
            return f"{n / div:.3g} {unit}"
    return f"{n:.0f} B"


def _secs(s: float) -> str:
    if s >= 86400:
        return f"{s / 86400:.3g} d"
    if s >= 3600:
        return f"{s / 3600:.3g} h"
    if s >= 60:
        return f"{s / 60:.3g} min"
    return f"{s:.3g} s"


def _ms(ms: float) -> str:
    return f"{ms / 1000:.3g} s" if ms >= 1000 else f"{ms:.3g} ms"


def _fit(milvus: dict[str, Any], small: dict[str, Any] | None, index_type: str
         ) -> tuple[float, float]:
    """Milvus p50 = a + b * N (ms): through the two sizes measured, or through 0 with one."""
    n0 = int(milvus["config"]["count"])
    p0 = next(r["search"][0]["p50_ms"] for r in milvus["results"]
              if r["backend"] == "milvus" and r["index_type"] == index_type)
    if small is not None:
        n1 = int(small["config"]["count"])
        p1 = next((r["search"][0]["p50_ms"] for r in small["results"]
                   if r["backend"] == "milvus" and r["index_type"] == index_type), None)
        if p1 is not None and n1 != n0 and p0 > p1:
            b = (p0 - p1) / (n0 - n1)
            return p0 - b * n0, b
    return 0.0, p0 / n0


def model(milvus: dict[str, Any], hnsw: dict[str, Any] | None,
          small: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """One row per backend, index type and size."""
    n0 = int(milvus["config"]["count"])
    rows = []
    backends: list[dict[str, Any]] = []
    for r in milvus["results"]:
        s10 = r["search"][0]
        if r["backend"] == "hnswlib":
            backends.append({"backend": "hnswlib", "index_type": "HNSW", "mem": r["bytes_per_vector"],
                             "disk": r["bytes_per_vector"], "rate": r["ingest_vectors_per_s"],
                             "p50": s10["p50_ms"], "recall": s10["recall@10"], "run": "same run"})
        else:
            idx = r["index_bytes_per_vector"]
            backends.append({"backend": "milvus", "index_type": r["index_type"],
                             "mem": idx + SCALAR_BYTES,
                             "disk": idx + r["raw_binlog_bytes_per_vector"],
                             "rate": n0 / (r["ingest_s"] + r["index_build_s"]),
                             "p50": s10["p50_ms"], "recall": s10["recall@10"], "run": "same run"})
    if hnsw is not None and not any(b["backend"] == "hnswlib" for b in backends):
        s = next(x for x in hnsw["search"] if x["k"] == 10 and x["ef_search"] == 128)
        backends.insert(0, {"backend": "hnswlib", "index_type": "HNSW",
                            "mem": hnsw["size"]["bytes_per_vector"],
                            "disk": hnsw["size"]["bytes_per_vector"],
                            "rate": hnsw["build"]["vectors_per_s"], "p50": s["p50_ms"],
                            "recall": s["recall@10"], "run": f"bench_hnsw {hnsw['date'][:10]}"})
    for b in backends:
        for n in SIZES:
            grow = math.log(n) / math.log(n0)
            if b["backend"] == "hnswlib":
                build = n / b["rate"] * grow
                p50 = b["p50"] * grow
                nodes = math.ceil(n * b["mem"] / NODE_MEMORY)
                note = "one process" if nodes == 1 else f"does not fit one machine ({nodes}× its memory)"
            else:
                build = n / b["rate"]
                a, slope = _fit(milvus, small, b["index_type"])
                p50 = a + slope * n
                nodes = max(math.ceil(n * b["mem"] / NODE_MEMORY),
                            math.ceil(slope * n / max(1e-9, TARGET_S * 1e3 - a)))
                note = f"{nodes} query node{'s' if nodes > 1 else ''} of 2 cores / 24 GB for ≤ 0.1 s"
            rows.append({"backend": b["backend"], "index_type": b["index_type"], "frames": n,
                         "bytes_per_frame_memory": round(b["mem"], 1),
                         "bytes_per_frame_disk": round(b["disk"], 1),
                         "memory_bytes": n * b["mem"], "disk_bytes": n * b["disk"],
                         "build_s_one_machine": build, "p50_ms_one_node": p50,
                         "recall@10_at_1M": b["recall"], "nodes": nodes, "note": note,
                         "measured": b["run"]})
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    out = ["| backend | index | frames | memory (B/frame → total) | disk | build, 1 machine | "
           "p50 search, 1 node | recall@10 (measured) | what it takes |",
           "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r['backend']} | {r['index_type']} | {_human(r['frames'])} | "
                   f"{r['bytes_per_frame_memory']:.0f} → {_bytes(r['memory_bytes'])} | "
                   f"{_bytes(r['disk_bytes'])} | {_secs(r['build_s_one_machine'])} | "
                   f"{_ms(r['p50_ms_one_node'])} | {r['recall@10_at_1M']:.3f} | {r['note']} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--milvus", type=Path, default=ROOT / "bench" / "results" / "milvus_1m.json")
    p.add_argument("--hnsw", type=Path, default=ROOT / "bench" / "results" / "hnsw_1m.json")
    p.add_argument("--small", type=Path, default=ROOT / "bench" / "results" / "milvus_200k.json",
                   help="a smaller run of bench_milvus, for the latency's fixed part")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "capacity.json")
    a = p.parse_args(argv)
    milvus = json.loads(a.milvus.read_text())
    hnsw = json.loads(a.hnsw.read_text()) if a.hnsw.exists() else None
    small = json.loads(a.small.read_text()) if a.small.exists() else None
    rows = model(milvus, hnsw, small)
    a.out.write_text(json.dumps({"from": [a.milvus.name, a.hnsw.name, a.small.name],
                                 "model": __doc__, "rows": rows}, indent=2) + "\n")
    print(markdown(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
