"""hnswlib vs Milvus at library scale: ingest, index build, recall@10 vs exact, p50/p95, bytes.

The same synthetic scene-like vectors as bench/bench_hnsw.py (`Generator`: series centres,
shot clusters, low-rank variation, noise; queries are fresh draws), stored once in
`core.index.HnswIndex` (the baseline, measured in the same run) and once in a real Milvus
standalone server started here on 127.0.0.1 (the PyPI `milvus` package, no Docker) through
`core.index.milvus.MilvusIndex`. The Milvus rows are ingested once (ingest rate: upserts +
flush), then each index type is built on them in turn (drop index, create index, wait until
every row is indexed: the build time), loaded, and searched at batch 1 (the bot's case) for
k=10 and k=200.

Bytes per vector: hnswlib's saved file; for Milvus the index files Milvus wrote for that
index type (from its local storage folder) and the raw binlogs of the rows, and the server's
resident memory after loading (RSS of the milvus process, minus before loading).

Run (about 30-40 min on 2 shared cores at 1M):
    nice -n 10 python -m bench.bench_milvus            # 1M x 256 -> bench/results/milvus_1m.json
    python -m bench.bench_milvus --count 20000         # smoke run -> bench/results/milvus_20k.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from bench.bench_hnsw import Generator, exact_topk, recall_at
from bench.bench_hnsw import parse_args as hnsw_args
from core.index import HnswIndex
from core.index.milvus import MilvusConfig, MilvusIndex
from core.index.milvus_local import start_standalone
from core.sysinfo import machine_info

ROOT = Path(__file__).resolve().parent.parent
TARGET_MILVUS_P50_MS = 10.0


def pct(times_ns: list[int]) -> dict[str, float]:
    a = np.asarray(times_ns, dtype=np.float64) / 1e6
    return {"p50_ms": round(float(np.percentile(a, 50)), 3),
            "p95_ms": round(float(np.percentile(a, 95)), 3),
            "p99_ms": round(float(np.percentile(a, 99)), 3)}


def timed_search(search: Any, queries: np.ndarray, truth: np.ndarray, k: int
                 ) -> dict[str, float]:
    for q in queries[:20]:  # warm-up
        search(q[None, :], k)
    found = np.empty((len(queries), k), dtype=np.int64)
    times: list[int] = []
    for i, q in enumerate(queries):
        t = time.perf_counter_ns()
        ids, _ = search(q[None, :], k)
        times.append(time.perf_counter_ns() - t)
        found[i] = ids[0]
    row: dict[str, float] = {"k": k, **pct(times),
                             "recall@10": round(recall_at(found, truth, 10), 4)}
    if k > 10:
        row[f"recall@{k}"] = round(recall_at(found, truth, k), 4)
    return row


def dir_bytes(path: Path, part: str = "") -> int:
    total = 0
    for root, _, files in os.walk(path):
        if part and part not in root:
            continue
        for f in files:
            try:
                total += (Path(root) / f).stat().st_size
            except OSError:
                pass
    return total


def proc_rss_mb(name: str = "milvus") -> float:
    """Resident memory of processes whose command is `name` (the server), in MB."""
    total = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
            if comm != name:
                continue
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return round(total / 1024, 1)


def bench_hnswlib(dim: int, data: np.ndarray, queries: np.ndarray, truth: np.ndarray,
                  ks: list[int], ef: int, threads: int, work: Path) -> dict[str, Any]:
    index = HnswIndex(dim, embedder_name="bench", embedder_version="1", num_threads=threads,
                      initial_capacity=len(data), ef_search=ef)
    ids = np.arange(len(data), dtype=np.int64)
    t0 = time.perf_counter()
    for s in range(0, len(data), 10_000):
        index.add(ids[s:s + 10_000], data[s:s + 10_000])
    build_s = time.perf_counter() - t0
    print(f"hnswlib: built in {build_s:.1f}s", flush=True)
    index.num_threads = 1
    rows = [timed_search(index.search, queries, truth, k) for k in ks]
    folder = work / "hnsw"
    index.save(folder)
    size = sum(f.size for f in index.manifest.files.values())
    del index
    shutil.rmtree(folder, ignore_errors=True)
    print(f"hnswlib: {rows}", flush=True)
    return {"backend": "hnswlib", "index_type": "HNSW", "params": {"M": 16, "ef_construction": 200,
                                                                   "ef_search": ef},
            "build_threads": threads, "ingest_and_build_s": round(build_s, 1),
            "ingest_vectors_per_s": round(len(data) / build_s, 1),
            "bytes_per_vector": round(size / len(data), 1), "search": rows}


def bench_milvus(cfg: MilvusConfig, dim: int, data: np.ndarray, queries: np.ndarray,
                 truth: np.ndarray, ks: list[int], types: list[str], storage: Path,
                 done: Any, attach: tuple[str, float] | None = None) -> list[dict[str, Any]]:
    """Ingest, then build and search each index type. `attach`: (collection, ingest seconds)
    of a collection an earlier run already filled with the same data (then every type is
    built anew on it)."""
    n = len(data)
    if attach is not None:
        index = MilvusIndex(dim, cfg, embedder_name="bench", embedder_version="1",
                            collection=attach[0])
        client, ingest_s, first_wait = index._client, attach[1], 0.0
        assert len(index) == n, f"{attach[0]} holds {len(index)} rows, not {n}"
    else:
        index = MilvusIndex.new(dim, cfg, embedder_name="bench", embedder_version="1")
        client = index._client
        ids = np.arange(n, dtype=np.int64)
        t0 = time.perf_counter()
        for s in range(0, n, 10_000):
            index.add(ids[s:s + 10_000], data[s:s + 10_000])
        ins_s = time.perf_counter() - t0
        index.flush()
        ingest_s = time.perf_counter() - t0
        print(f"milvus: ingested {n:,} in {ingest_s:.1f}s (upserts {ins_s:.1f}s)", flush=True)
        first_wait = index.wait_indexed()
    raw_bytes = dir_bytes(storage, "insert_log")
    out = []
    for it in types:
        tcfg = replace(cfg, index_type=it)
        index.cfg = tcfg
        if it != cfg.index_type or attach is not None:  # attached: build each type anew
            client.release_collection(index.collection)
            with contextlib.suppress(Exception):  # none yet, or the unfinished one
                client.drop_index(index.collection, "vec")
            ip = client.prepare_index_params()
            ip.add_index(field_name="vec", index_type=it, metric_type="IP",
                         params=tcfg.index_params())
            before_idx = dir_bytes(storage, "index_files")
            t1 = time.perf_counter()
            client.create_index(index.collection, ip)
            time.sleep(1.0)
            index.wait_indexed()
            build_s = time.perf_counter() - t1
        else:
            before_idx = 0
            build_s = first_wait  # built in the background while ingesting, then waited for
        idx_bytes = dir_bytes(storage, "index_files") - before_idx
        rss0 = proc_rss_mb()
        t1 = time.perf_counter()
        client.load_collection(index.collection)
        load_s = time.perf_counter() - t1
        rss1 = proc_rss_mb()
        index._dirty = True  # the first read waits for every write
        len(index)
        rows = [timed_search(index.search, queries, truth, k) for k in ks]
        row = {"backend": "milvus", "index_type": it, "params": tcfg.index_params(),
               "search_params": tcfg.search_params(10),
               "index_build_s": round(build_s, 1), "load_s": round(load_s, 1),
               "ingest_s": round(ingest_s, 1), "ingest_vectors_per_s": round(n / ingest_s, 1),
               "index_bytes_per_vector": round(idx_bytes / n, 1),
               "raw_binlog_bytes_per_vector": round(raw_bytes / n, 1),
               "server_rss_mb_after_load": rss1, "server_rss_mb_before_load": rss0,
               "search": rows}
        print(f"milvus {it}: {row}", flush=True)
        out.append(row)
        done(row)
    client.drop_collection(index.collection)
    return out


def _summary(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One line per backend and index type; p50 as a ratio of hnswlib's in the same run."""
    base = next((r["search"][0]["p50_ms"] for r in results if r["backend"] == "hnswlib"), None)
    out = []
    for r in results:
        s10 = r["search"][0]
        out.append({"backend": r["backend"], "index_type": r["index_type"],
                    "recall@10": s10["recall@10"], "p50_ms_k10": s10["p50_ms"],
                    "p95_ms_k10": s10["p95_ms"], "p50_ms_k200": r["search"][1]["p50_ms"],
                    "p95_ms_k200": r["search"][1]["p95_ms"],
                    "ingest_vectors_per_s": r["ingest_vectors_per_s"],
                    "p50_vs_hnswlib": round(s10["p50_ms"] / base, 2) if base else None})
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--count", type=int, default=1_000_000)
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--queries", type=int, default=500)
    p.add_argument("--types", default="HNSW,IVF_SQ8,IVF_PQ",
                   help="Milvus index types, in order (the first is built while ingesting)")
    p.add_argument("--ef", type=int, default=128, help="HNSW ef_search (both backends)")
    p.add_argument("--nprobe", type=int, default=32)
    p.add_argument("--nlist", type=int, default=1024)
    p.add_argument("--pq-m", type=int, default=32)
    p.add_argument("--build-threads", type=int, default=2, help="hnswlib build threads")
    p.add_argument("--skip-hnswlib", action="store_true")
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--attach-storage", default=".", help="with --attach: the server's data folder")
    p.add_argument("--attach", default=None, metavar="URI/COLLECTION/INGEST_S",
                   help="use a running server whose collection a run of the same --count "
                        "already filled (its ingest seconds given) instead of starting one")
    a = p.parse_args(argv)
    human = f"{a.count // 1_000_000}m" if a.count % 1_000_000 == 0 else f"{a.count // 1000}k"
    out = a.out or ROOT / "bench" / "results" / f"milvus_{human}.json"
    hcfg = hnsw_args(["--count", str(a.count), "--dim", str(a.dim), "--queries", str(a.queries)])
    gen = Generator(hcfg)
    rng = np.random.default_rng(hcfg.seed + 1)
    data = np.empty((a.count, a.dim), dtype=np.float32)
    for s in range(0, a.count, 100_000):
        m = min(100_000, a.count - s)
        data[s:s + m] = gen.draw(m, rng)
    queries = gen.draw(a.queries, np.random.default_rng(hcfg.seed + 2))
    ks = [10, 200]
    t0 = time.perf_counter()
    truth = exact_topk(data, queries, max(ks))
    print(f"exact top-{max(ks)} in {time.perf_counter() - t0:.1f}s", flush=True)
    load_before = os.getloadavg()
    work = Path(tempfile.mkdtemp(prefix="bench-milvus-"))
    results: list[dict[str, Any]] = []
    meta: dict[str, Any] = {"milvus_wall_s": None, "server": None}

    def write() -> list[dict[str, Any]]:  # after every stage: a partial run still reports
        summary = _summary(results)
        result = {
            "benchmark": "milvus",
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": machine_info(),
            "milvus_server": meta["server"],
            "contention": "shared with other jobs",
            "complete": len(results) == len(types) + (0 if a.skip_hnswlib else 1),
            "config": {"count": a.count, "dim": a.dim, "queries": a.queries, "ks": ks,
                       "generator": "bench.bench_hnsw.Generator (defaults)", "seed": hcfg.seed,
                       "search_batch": 1, "search_threads_client": 1,
                       "milvus_wall_s": meta["milvus_wall_s"]},
            "summary": summary,
            "results": results,
            "target": {"milvus_p50_ms_at_most": TARGET_MILVUS_P50_MS,
                       "met_by": [r["index_type"] for r in results if r["backend"] == "milvus"
                                  and r["search"][0]["p50_ms"] <= TARGET_MILVUS_P50_MS]},
            "conditions": {"load_average_before": [round(x, 2) for x in load_before],
                           "load_average_after": [round(x, 2) for x in os.getloadavg()]},
        }
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        return summary

    def done(row: dict[str, Any]) -> None:
        results.append(row)
        write()

    types = a.types.split(",")
    attach = None
    if a.attach:
        uri, coll, ingest_s = a.attach.rsplit("/", 2)
        attach, srv, storage = (coll, float(ingest_s)), None, Path(a.attach_storage)
    else:
        srv = start_standalone(work / "server")
        uri, storage = srv.uri, work / "server" / "data"
    meta["server"] = srv.version if srv is not None else "attached"
    try:
        t0 = time.perf_counter()
        cfg = MilvusConfig(uri=uri, collection="bench_frames", index_type=types[0],
                           ef_search=a.ef, nprobe=a.nprobe, nlist=a.nlist, pq_m=a.pq_m)
        bench_milvus(cfg, a.dim, data, queries, truth, ks, types, storage, done, attach)
        meta["milvus_wall_s"] = round(time.perf_counter() - t0, 1)
    finally:
        if srv is not None:
            srv.stop()
    if not a.skip_hnswlib:
        done(bench_hnswlib(a.dim, data, queries, truth, ks, a.ef, a.build_threads, work))
    shutil.rmtree(work, ignore_errors=True)
    summary = write()
    print(json.dumps(summary, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
