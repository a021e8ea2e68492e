"""`identify` latency on real-size pictures, per stage, before and after, in one run.

Real-size queries (`bench.realsize`: the sample library rendered at 1080p; whole frames at
480p/720p/1080p, crops, 1170x2532 phone screenshots, GIFs) are identified by two versions of
the code in turn, each in its own process over the same index padded to `--frames`
whole-frame vectors: BEFORE (a git revision, `--before`, extracted under the work folder)
and AFTER (this tree). Region vectors: AFTER pads its compact region index to
`--region-vectors`; BEFORE keeps its hnswlib region index at the library's size unless
`--before-region-vectors` is given (an hnswlib index of 3-4M region vectors takes ~40 min to
build here; `bench/results/identify_latency.json` found its search cost flat from 3k to 1M).
Each version is timed with every torch thread count of `--threads`. Characters are off.

Run (the whole benchmark, ~30-60 min on 2 cores):
    python -m bench.bench_latency                    # -> bench/results/latency/identify_realsize.json
    python -m bench.bench_latency --frames 0 --region-vectors 0 --per-case 4   # quick look
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
STAGES = ("decode", "embed", "search", "group", "verify", "regions", "rank", "check", "detail",
          "total")
PAD_BASE = 10**9  # padded frame ids: far above any real frame's, never in the catalog


def percentiles(values: list[float]) -> dict[str, float]:
    a = np.asarray(values, np.float64)
    return {"p50": round(float(np.percentile(a, 50)), 2),
            "p95": round(float(np.percentile(a, 95)), 2), "n": len(values)}


def centres(seed: int, dim: int, n: int = 20000) -> np.ndarray:
    """The padding's cluster centres (unit vectors)."""
    c = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return c / np.linalg.norm(c, axis=1, keepdims=True)


def clustered(rng: np.random.Generator, centres: np.ndarray, n: int) -> np.ndarray:
    """Unit vectors around random centres (like `bench.bench_identify.pad_index`)."""
    dim = centres.shape[1]
    v = centres[rng.integers(0, len(centres), n)] + 0.25 * rng.standard_normal((n, dim)) / np.sqrt(dim)
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def padded_frames(work: Path, n: int, dim: int, threads: int = 2, ef_construction: int = 200
                  ) -> Path:
    """An hnswlib file of `n` padded whole-frame vectors (ids PAD_BASE + i), built once (a
    lower `ef_construction` builds it faster, for a graph as deep but a little less exact)."""
    import hnswlib

    path = work / f"pad-frames-{n}-{dim}-ef{ef_construction}.hnsw"
    if path.exists():
        return path
    rng, cs = np.random.default_rng(0), centres(0, dim)
    idx = hnswlib.Index(space="ip", dim=dim)
    idx.init_index(max_elements=n + 100_000, M=16, ef_construction=ef_construction, random_seed=100,
                   allow_replace_deleted=True)
    idx.set_num_threads(threads)
    t0 = time.perf_counter()
    for i in range(0, n, 50_000):
        m = min(50_000, n - i)
        idx.add_items(clustered(rng, cs, m), np.arange(PAD_BASE + i, PAD_BASE + i + m))
        print(f"  padded frames {i + m}/{n} ({time.perf_counter() - t0:.0f} s)", flush=True)
    tmp = path.with_suffix(".tmp")
    idx.save_index(str(tmp))
    tmp.replace(path)
    return path


def padded_regions(work: Path, n: int, dim: int) -> Path:
    """A float32 .npy of `n` padded region vectors (memory-mapped by the worker), made once."""
    path = work / f"pad-regions-{n}-{dim}.npy"
    if path.exists():
        return path
    rng, cs = np.random.default_rng(1), centres(1, dim)
    tmp = path.with_suffix(".tmp.npy")
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(n, dim))
    for i in range(0, n, 200_000):
        out[i:i + 200_000] = clustered(rng, cs, min(200_000, n - i))
    out.flush()
    del out
    tmp.replace(path)
    return path


# ---------------------------------------------------------------------------------- worker
def _pad_whole(index: Any, pad_file: Path | None, n: int) -> None:
    """Swap the index's hnswlib graph for the padded one, with the real vectors added."""
    if pad_file is None:
        return
    import hnswlib

    real = index.ids()
    vecs = index.vectors(real)
    idx = hnswlib.Index(space="ip", dim=index.dim)
    idx.load_index(str(pad_file), max_elements=n + len(real) + 10, allow_replace_deleted=True)
    idx.set_num_threads(2)
    idx.add_items(vecs, real)
    idx.set_num_threads(1)
    index._index = idx
    index._labels = set(real.tolist()) | set(range(PAD_BASE, PAD_BASE + n))
    index._gate = type(index._gate)()


def _pad_regions(rec: Any, pad_file: Path | None, work: Path) -> dict[str, Any]:
    """The region index padded: a compact one rebuilt over real + padded rows (AFTER), or
    the hnswlib one with the padded vectors added (BEFORE with --before-region-vectors)."""
    regions = getattr(rec.index, "regions", None)
    if regions is None or pad_file is None:
        return {"region_vectors": len(regions) if regions is not None else 0}
    from core.index.regions import REGION_SLOTS

    pad = np.load(pad_file, mmap_mode="r")
    real = regions.ids() if hasattr(regions, "ids") else regions._ids[regions._alive]
    t0 = time.perf_counter()
    pad_ids = PAD_BASE * REGION_SLOTS + np.arange(len(pad), dtype=np.int64)
    if hasattr(regions, "_index"):  # hnswlib (BEFORE)
        regions._index.resize_index(len(real) + len(pad) + 10)
        regions._index.set_num_threads(2)
        for i in range(0, len(pad), 50_000):
            regions.add(pad_ids[i:i + 50_000], np.asarray(pad[i:i + 50_000]))
        regions._index.set_num_threads(1)
        out = {"region_vectors": len(regions), "region_backend": "hnswlib"}
    else:
        from core.index.compact import CompactIndex

        rows = work / f"regions-{len(real)}-{len(pad)}.npy"
        allv = np.lib.format.open_memmap(rows, mode="w+", dtype=np.float32,
                                         shape=(len(real) + len(pad), pad.shape[1]))
        allv[:len(real)] = regions.vectors(real)
        for i in range(0, len(pad), 200_000):
            allv[len(real) + i:len(real) + i + 200_000] = pad[i:i + 200_000]
        allv.flush()
        del allv
        vecs = np.load(rows, mmap_mode="r")
        new = CompactIndex.from_rows(np.concatenate([real, pad_ids]), vecs,
                                     embedder_name=regions.embedder_name,
                                     embedder_version=regions.embedder_version)
        rec.index.regions = new
        out = {"region_vectors": len(new), "region_backend": "faiss-ivfpq",
               "region_memory_bytes_per_vector": round(new.memory_bytes() / len(new), 1),
               "nlist": int(new._codes.nlist), "nprobe": new.nprobe, "pq_bytes": new.pq_m,
               "rerank": new.rerank}
    out["region_pad_seconds"] = round(time.perf_counter() - t0, 1)
    return out


def worker(args: argparse.Namespace) -> int:
    """One version of the code: index the library, pad, time every case at every thread
    count; results as JSON to `args.out`."""
    import torch

    from bench.realsize import real_queries
    from bot.app import App
    from core.config import Settings
    from core.media import load_media

    torch.set_num_threads(1)
    home = Path(args.home)
    settings = Settings(_env_file=None, home=home)  # type: ignore[call-arg]
    app = App.from_settings(settings)
    if not (settings.index_dir / "manifest.json").exists():
        app.indexer().run(Path(args.library))
    rec = app.recognizer()
    info: dict[str, Any] = {"embedder": rec.model_version, "library_frames": len(rec.index)}
    t0 = time.perf_counter()
    _pad_whole(rec.index, Path(args.pad_frames) if args.pad_frames else None, args.frames)
    info["frames"] = len(rec.index)
    info["frames_pad_load_seconds"] = round(time.perf_counter() - t0, 1)
    info.update(_pad_regions(rec, Path(args.pad_regions) if args.pad_regions else None,
                             Path(args.work)))
    queries = real_queries(Path(args.library), args.per_case)
    out: dict[str, Any] = {"info": info, "threads": {}}
    for threads in args.threads:
        torch.set_num_threads(threads)
        for q in queries[:3]:
            rec.recognize(load_media(q.data))  # warm-up
        per: dict[str, dict[str, list[float]]] = {}
        for q in queries:
            t_0 = time.perf_counter()
            media = load_media(q.data)
            t_1 = time.perf_counter()
            r = rec.recognize(media)
            d = per.setdefault(f"{q.kind}@{q.size}", {s: [] for s in STAGES})
            d["decode"].append((t_1 - t_0) * 1000)
            for s in STAGES[1:-1]:
                d[s].append(r.timings_ms.get(s, 0.0))
            d["total"].append((time.perf_counter() - t_0) * 1000)
        out["threads"][str(threads)] = {case: {s: percentiles(v) for s, v in d.items()}
                                        for case, d in per.items()}
        print(json.dumps({c: v["total"] for c, v in out["threads"][str(threads)].items()}),
              flush=True)
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    return 0


# ---------------------------------------------------------------------------------- driver
def extract(rev: str, work: Path) -> Path:
    """The tree of git revision `rev` under `work` (extracted once)."""
    sha = subprocess.run(["git", "rev-parse", rev], cwd=ROOT, check=True, capture_output=True,
                         text=True).stdout.strip()
    dest = work / f"tree-{sha[:12]}"
    if not (dest / "core").is_dir():
        dest.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile() as f:
            subprocess.run(["git", "archive", sha], cwd=ROOT, check=True, stdout=f)
            f.seek(0)
            with tarfile.open(fileobj=f) as t:
                t.extractall(dest, filter="data")
    # the query builder and this worker, whatever the old tree had
    for name in ("realsize.py", "bench_latency.py"):
        (dest / "bench" / name).write_text((ROOT / "bench" / name).read_text())
    return dest


def run_side(tree: Path, name: str, args: argparse.Namespace, library: Path, pad_frames: Path | None,
             pad_regions: Path | None, work: Path) -> dict[str, Any]:
    out = work / f"result-{name}.json"
    cmd = [sys.executable, "-m", "bench.bench_latency", "--worker", "--home", str(work / f"home-{name}"),
           "--library", str(library), "--out", str(out), "--work", str(work),
           "--per-case", str(args.per_case), "--frames", str(args.frames),
           "--threads", ",".join(str(t) for t in args.threads)]
    if pad_frames is not None:
        cmd += ["--pad-frames", str(pad_frames)]
    if pad_regions is not None:
        cmd += ["--pad-regions", str(pad_regions)]
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1"}
    print(f"== {name}: {tree}", flush=True)
    subprocess.run(cmd, cwd=tree, env=env, check=True)
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=1_000_000, help="whole-frame vectors (0: the library's)")
    ap.add_argument("--region-vectors", type=int, default=3_800_000, help="AFTER's region vectors (0: the library's)")
    ap.add_argument("--before-region-vectors", type=int, default=0,
                    help="BEFORE's hnswlib region vectors (0: the library's)")
    ap.add_argument("--before", default="bbfb893", help="the git revision timed as BEFORE")
    ap.add_argument("--per-case", type=int, default=12)
    ap.add_argument("--pad-ef-construction", type=int, default=200,
                    help="the padded whole-frame graph's build beam (the index's own: 200)")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--work", default=str(ROOT / "bench" / "work" / "latency"))
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "latency" / "identify_realsize.json"))
    # worker mode (run by the driver in each tree)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--home", help=argparse.SUPPRESS)
    ap.add_argument("--library", help=argparse.SUPPRESS)
    ap.add_argument("--pad-frames", help=argparse.SUPPRESS)
    ap.add_argument("--pad-regions", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    args.threads = [int(t) for t in str(args.threads).split(",")]
    if args.worker:
        return worker(args)
    from bench.realsize import library_1080p
    from core.models.embedder import default_embedder
    from core.sysinfo import machine_info

    work = Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    library = library_1080p(work.parent)
    dim = default_embedder().dim
    pad_frames = (padded_frames(work, args.frames, dim, ef_construction=args.pad_ef_construction)
                  if args.frames else None)
    result: dict[str, Any] = {
        "benchmark": "identify latency (ms) per stage on real-size pictures, before vs after",
        "date": datetime.now(UTC).isoformat(timespec="seconds"), "machine": machine_info(),
        "contention": "shared with other jobs" if os.getloadavg()[0] > 1.5 else "alone",
        "command": "python -m bench.bench_latency " + " ".join(argv if argv is not None else sys.argv[1:]),
        "library": "sample library (4 series x 2 episodes x 20 s) rendered at 1920x1080",
        "cases": "whole frames at 480p/720p/1080p, crops (25-60% of the area) of 720p/1080p frames, "
                 "1170x2532 phone screenshots, 640x360 8-frame GIFs; JPEG q90 (phone q85)",
        "per_case": args.per_case, "frames_padded_to": args.frames,
        "pad_ef_construction": args.pad_ef_construction,
        "region_vectors_after": args.region_vectors,
        "region_vectors_before": args.before_region_vectors or "the library's",
        "before": {"revision": args.before}, "after": {"revision": "working tree"},
    }
    before_regions = padded_regions(work, args.before_region_vectors, dim) if args.before_region_vectors else None
    result["before"].update(run_side(extract(args.before, work), "before", args, library,
                                     pad_frames, before_regions, work))
    after_regions = padded_regions(work, args.region_vectors, dim) if args.region_vectors else None
    result["after"].update(run_side(ROOT, "after", args, library, pad_frames, after_regions, work))
    ratios: dict[str, dict[str, float]] = {}
    for t in map(str, args.threads):
        for case, stages in result["after"]["threads"][t].items():
            b = result["before"]["threads"][t][case]["total"]
            ratios.setdefault(t, {})[case] = round(stages["total"]["p50"] / max(b["p50"], 1e-9), 3)
    result["ratio_after_vs_before_p50_total"] = ratios
    one = result["after"]["threads"].get("1", {}).get("whole@1080p", {}).get("total")
    if one:
        result["targets"] = {"1080p p50<=100ms (1 thread)": one["p50"] <= 100,
                             "1080p p95<=300ms (1 thread)": one["p95"] <= 300,
                             "measured alone": result["contention"] == "alone"}
    result["load_average_after"] = list(os.getloadavg())
    result["wall_seconds"] = round(time.perf_counter() - t_start, 1)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
