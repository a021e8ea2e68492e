"""Indexing speed as × real time on 720p and 1080p episodes: decode alone (every frame, the
reference frames only, keyframes only), the indexer before this change (a `git archive` of
--before), the indexer now decoding every frame (`ANIREC_INDEX_DECODE=all`) and only the
reference frames (`ref`), and the indexer on Ray (2 local workers), all in one run so the
ratios share the machine's load. Checks that the indexers stored the same frames (same times,
same vectors) as well, and how close `ref`'s frames are to `all`'s.

Run (re-runnable alone; the synthetic episodes are generated once into --work):
    python -m bench.bench_index_speed                  # -> bench/results/indexing_speed.json
    python -m bench.bench_index_speed --seconds 60 --sizes 720p --no-before   # a quick look
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import av
import numpy as np

from core.sysinfo import machine_info
from data.video import probe_video

ROOT = Path(__file__).resolve().parent.parent
#: width, height and episodes (Ray runs where there are several) of each size
SIZES = {"480p": (854, 480, 2), "720p": (1280, 720, 2), "1080p": (1920, 1080, 1)}
SPEED = re.compile(r"Speed: ([\d.]+) s of video in ([\d.]+) s")


def decode(paths: list[Path], skip: str | None = None) -> dict[str, float]:
    """Decode every frame (PyAV, frame threads), or only the ones `skip_frame` leaves."""
    n, t0 = 0, time.perf_counter()
    for p in paths:
        with av.open(str(p)) as c:
            s = c.streams.video[0]
            s.thread_type = "AUTO"
            if skip:
                s.codec_context.skip_frame = skip
            for _ in c.decode(s):
                n += 1
    return {"frames": n, "seconds": round(time.perf_counter() - t0, 2)}


def run_index(code: Path, library: Path, home: Path, *, ray: bool = False,
              decode: str | None = None) -> dict[str, Any]:
    """`anirec index LIBRARY` of the code under `code`, in a fresh home; its reported speed.
    `decode`: ANIREC_INDEX_DECODE (None: not set, for code from before the setting)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANIREC_")}
    env.update({"PYTHONPATH": str(code), "ANIREC_HOME": str(home), "OMP_NUM_THREADS": "1",
                "ANIREC_TORCH_THREADS": "1"})
    if decode is not None:
        env["ANIREC_INDEX_DECODE"] = decode
    if ray:
        env["ANIREC_INDEX_WORKERS"] = "2"
    cmd = [sys.executable, "-m", "bot.cli", "index", str(library), "--quiet"] + (["--ray"] if ray else [])
    t0 = time.perf_counter()
    out = subprocess.run(cmd, env=env, cwd=code, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    m = SPEED.search(out.stdout)
    if out.returncode != 0 or m is None:
        raise SystemExit(f"{' '.join(cmd)} failed ({out.returncode}):\n{out.stdout}\n{out.stderr[-3000:]}")
    video, secs = float(m.group(1)), float(m.group(2))
    return {"video_seconds": video, "index_seconds": secs, "x_real_time": round(video / secs, 1),
            "process_wall_seconds": round(wall, 1)}


def stored(code: Path, home: Path) -> dict[str, Any]:
    """What an indexed home holds: per episode file, its frame times and vectors."""
    script = (
        "import json, sys, numpy as np\n"
        "from bot.app import App\nfrom core.config import Settings\n"
        "from sqlalchemy import select\nfrom core.db.models import Episode, Frame\n"
        "from core.index import HnswIndex\n"
        "app = App.from_settings(Settings(_env_file=None, home=sys.argv[1]))\n"
        "e = app.embedder()\n"
        "ix = HnswIndex.load(app.settings.index_dir, embedder_name=e.name, embedder_version=e.version, dim=e.dim)\n"
        "out = {}\n"
        "with app.sessions() as s:\n"
        "    for path, fid, t in s.execute(select(Episode.path, Frame.id, Frame.t).join(Frame)"
        ".order_by(Episode.path, Frame.t)):\n"
        "        out.setdefault(path, []).append((fid, t))\n"
        "res = {p: {'t': [t for _, t in v], 'v': ix.vectors(np.array([f for f, _ in v])).round(6).tolist()}"
        " for p, v in out.items()}\n"
        "print(json.dumps(res))\n")
    env = {**os.environ, "PYTHONPATH": str(code), "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", script, str(home)], env=env, cwd=code,
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return a.keys() == b.keys() and all(
        a[k]["t"] == b[k]["t"] and np.allclose(a[k]["v"], b[k]["v"], atol=1e-5) for k in a)


def near(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """How close the frames of index `b` are to `a`'s: frames in each, the share of `a`'s frame
    times that `b` has too (exactly, and within 2 frames at 24 fps), and the largest distance
    from one of `a`'s frame times to the nearest of `b`'s."""
    n_a = sum(len(v["t"]) for v in a.values())
    n_b = sum(len(v["t"]) for v in b.values())
    exact = close = 0
    worst = 0.0
    for k, v in a.items():
        tb = np.asarray(b.get(k, {"t": []})["t"], dtype=np.float64)
        for t in v["t"]:
            d = float(np.min(np.abs(tb - t))) if len(tb) else float("inf")
            exact += d < 1e-6
            close += d <= 2 / 24 + 1e-6
            worst = max(worst, d)
    return {"frames_all": n_a, "frames_ref": n_b, "share_same_time": round(exact / max(n_a, 1), 3),
            "share_within_2_frames": round(close / max(n_a, 1), 3), "max_distance_s": round(worst, 3)}


def archive(commit: str, dst: Path) -> Path:
    """The tree of `commit` (the indexer before) unpacked into `dst`."""
    data = subprocess.run(["git", "archive", commit], cwd=ROOT, capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(dst, filter="data")
    return dst


def xrt(video_seconds: float, seconds: float) -> float:
    return round(video_seconds / seconds, 1) if seconds > 0 else 0.0


def measure(library: Path, before: Path | None, work: Path, ray: bool) -> dict[str, Any]:
    paths = sorted(library.rglob("*.mp4"))
    video_seconds = sum(probe_video(p).duration for p in paths)
    out: dict[str, Any] = {"files": len(paths), "video_seconds": round(video_seconds, 1)}
    for name, skip in (("decode_only", None), ("decode_only_nonref", "NONREF"),
                       ("decode_only_keyframes", "NONKEY")):
        d = decode(paths, skip)
        out[name] = {**d, "x_real_time": xrt(video_seconds, d["seconds"])}
    homes: dict[str, Path] = {}
    # (name, code, Ray, ANIREC_INDEX_DECODE): "after" decodes every frame, "after_ref" only the
    # reference frames; Ray runs with every frame, as "after" (its index is compared with it)
    runs: list[tuple[str, Path, bool, str | None]] = [("after", ROOT, False, "all"), ("after_ref", ROOT, False, "ref")]
    runs += [("before", before, False, None)] if before else []
    ray = ray and len(paths) > 1
    runs += [("after_ray_2_workers", ROOT, True, "all")] if ray else []
    for name, code, use_ray, mode in runs:
        home = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=work))
        homes[name] = home
        out[name] = run_index(code, library, home, ray=use_ray, decode=mode)
        print(f"  {name}: {out[name]['x_real_time']}x real time", flush=True)
    ref = stored(ROOT, homes["after"])
    out["frames"] = sum(len(v["t"]) for v in ref.values())
    out["ref_vs_all_frames"] = near(ref, stored(ROOT, homes["after_ref"]))
    out["after_ref_vs_after"] = round(out["after_ref"]["x_real_time"] / out["after"]["x_real_time"], 2)
    out["after_ref_vs_decode_only_nonref"] = round(
        out["after_ref"]["x_real_time"] / out["decode_only_nonref"]["x_real_time"], 2)
    if before:
        out["same_frames_and_vectors_as_before"] = same(ref, stored(before, homes["before"]))
        out["after_vs_before"] = round(out["after"]["x_real_time"] / out["before"]["x_real_time"], 2)
    if ray:
        out["same_frames_and_vectors_ray_vs_serial"] = same(ref, stored(ROOT, homes["after_ray_2_workers"]))
        out["ray_2_workers_vs_serial"] = round(
            out["after_ray_2_workers"]["x_real_time"] / out["after"]["x_real_time"], 2)
    out["after_vs_decode_only"] = round(out["after"]["x_real_time"] / out["decode_only"]["x_real_time"], 2)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="720p,1080p", help="comma-separated: " + ", ".join(SIZES))
    ap.add_argument("--seconds", type=float, default=180.0, help="length of each episode")
    ap.add_argument("--fps", type=int, default=24)
    ap.add_argument("--before", default="c54f89b",
                    help="commit of the indexer to compare with (default: the one before ANIREC_INDEX_DECODE)")
    ap.add_argument("--no-before", action="store_true")
    ap.add_argument("--no-ray", action="store_true")
    ap.add_argument("--keep-sizes", action="store_true",
                    help="keep the sizes of an existing --out that this run does not measure")
    ap.add_argument("--work", default=str(ROOT / "bench" / "work"))
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "indexing_speed.json"))
    args = ap.parse_args(argv)
    from data.synth import generate_library

    work = Path(args.work).resolve()  # the indexers run with their own code folder as cwd
    work.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {
        "benchmark": "indexing_speed", "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine_info(), "contention": "shared with other jobs",
        "command": "python -m bench.bench_index_speed " + " ".join(argv if argv is not None else sys.argv[1:]),
        "library": f"synthetic (data/synth), 1 series, episodes of {args.seconds:.0f} s at {args.fps} fps, "
                   "x264 CRF 23 veryfast (720p: 2 episodes, Ray measured on them; 1080p: 1)",
        "sampling": "ANIREC_INDEX_FPS 2, ANIREC_INDEX_MAX_FPS 6, region vectors on, default embedder, "
                    "1 torch thread; after: ANIREC_INDEX_DECODE=all, after_ref: ref",
        "before_commit": None if args.no_before else args.before, "sizes": {}}
    with tempfile.TemporaryDirectory(dir=work) as tmp:
        before = None if args.no_before else archive(args.before, Path(tmp) / "before")
        for size in [s.strip() for s in args.sizes.split(",") if s.strip()]:
            w, h, episodes = SIZES[size]
            lib = work / f"speed-{size}-{episodes}x{args.seconds:.0f}s"
            t0 = time.perf_counter()
            generate_library(lib, series=1, episodes=episodes, seconds=args.seconds, width=w,
                             height=h, fps=args.fps)
            print(f"{size}: library ready in {time.perf_counter() - t0:.0f} s", flush=True)
            result["sizes"][size] = {"date": datetime.now(UTC).isoformat(timespec="seconds"),
                                     "load_average": list(os.getloadavg()),
                                     **measure(lib, before, Path(tmp), not args.no_ray)}
            print(json.dumps(result["sizes"][size], indent=1), flush=True)
    result["load_average_after"] = list(os.getloadavg())
    out = Path(args.out)
    if args.keep_sizes and out.exists():  # sizes measured by an earlier run stay (each has its date)
        result["sizes"] = {**json.loads(out.read_text()).get("sizes", {}), **result["sizes"]}
    s720 = result["sizes"].get("720p")
    if s720:
        result["targets"] = {"x_real_time_720p>=20": s720["after"]["x_real_time"] >= 20,
                             "x_real_time_720p_ref>=20": s720["after_ref"]["x_real_time"] >= 20}
        if "ray_2_workers_vs_serial" in s720:
            result["targets"]["ray_2_workers>=1.5x_serial"] = s720["ray_2_workers_vs_serial"] >= 1.5
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
