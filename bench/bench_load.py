"""A bounded burst against the web chat: N requests from U users (each its own signed
cookie; all from 127.0.0.1, so the per-address limit is lifted), all sent at once over real
HTTP to a real `RecognitionService` on a small synthetic library. Measures throughput, latency percentiles, answered vs
deferred (busy / rate-limited, each with Retry-After), whether anything was dropped, the
event loop's heartbeat and peak memory.

    python -m bench.bench_load [--requests 200] [--users 50]

Writes bench/results/load.json. Modest by design: the library is 2 series × 2 episodes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np


async def _burst(base: str, pngs: list[bytes], n: int, users: int) -> dict[str, Any]:
    jars = [aiohttp.CookieJar(unsafe=True) for _ in range(users)]
    sessions = [aiohttp.ClientSession(cookie_jar=j) for j in jars]
    try:
        for s in sessions:  # each user gets their identity first
            async with s.get(f"{base}api/status") as r:
                await r.read()
        ticks = 0
        done = asyncio.Event()

        async def heartbeat() -> None:
            nonlocal ticks
            while not done.is_set():
                ticks += 1
                await asyncio.sleep(0.05)

        async def one(i: int) -> tuple[int, float, bool]:
            s = sessions[i % users]
            form = aiohttp.FormData()
            form.add_field("file", pngs[i % len(pngs)], filename="shot.png", content_type="image/png")
            t0 = time.perf_counter()
            async with s.post(f"{base}api/identify", data=form) as r:
                await r.read()
                return r.status, (time.perf_counter() - t0) * 1000, "Retry-After" in r.headers

        hb = asyncio.create_task(heartbeat())
        t0 = time.perf_counter()
        results = await asyncio.gather(*(one(i) for i in range(n)), return_exceptions=True)
        wall = time.perf_counter() - t0
        done.set()
        await hb
    finally:
        for s in sessions:
            await s.close()
    ok = [r for r in results if isinstance(r, tuple)]
    by_status: dict[str, int] = {}
    for st, _, _ in ok:
        by_status[str(st)] = by_status.get(str(st), 0) + 1
    answered = [ms for st, ms, _ in ok if st == 200]
    deferred = [r for r in ok if r[0] in (429, 503)]
    return {
        "requests": n, "users": users, "wall_seconds": round(wall, 2),
        "by_status": by_status, "answered": len(answered), "deferred": len(deferred),
        "deferred_with_retry_after": sum(1 for r in deferred if r[2]),
        "dropped_or_failed": n - len(ok) + sum(1 for r in ok if r[0] not in (200, 429, 503)),
        "answered_per_second": round(len(answered) / wall, 2) if wall else None,
        "latency_ms_answered": {p: round(float(np.percentile(answered, q)), 1) for p, q in
                                (("p50", 50), ("p90", 90), ("p99", 99), ("max", 100))} if answered else {},
        "latency_ms_all": {p: round(float(np.percentile([r[1] for r in ok], q)), 1)
                           for p, q in (("p50", 50), ("p99", 99))} if ok else {},
        "heartbeats": ticks, "heartbeats_expected": round(wall / 0.05),
    }


async def run(n: int, users: int, home: Path) -> dict[str, Any]:
    from aiohttp import web

    from bot.app import App
    from bot.web import build_web_app
    from core.config import Settings
    from data.synth import generate_library

    lib = home / "library"
    generate_library(lib, series=2, episodes=2, seconds=12.0, seed=5)
    app = App.from_settings(Settings(_env_file=None, home=home / "home"))  # type: ignore[call-arg]
    app.indexer().run(lib)
    # every bench user comes from 127.0.0.1, so the per-address (chat) limit is lifted here to
    # show the per-user limit and the queue; the user limit is the default (10 a minute)
    svc = app.service(chat_rate=1_000_000)
    await svc.start()
    gt = json.loads((lib / "ground_truth.json").read_text())
    from PIL import Image

    from data.video import read_frames_at
    pngs = []
    for ep in gt["episodes"][:4]:
        import io
        buf = io.BytesIO()
        Image.fromarray(read_frames_at(lib / ep["path"], [5.0])[0]).save(buf, format="PNG")
        pngs.append(buf.getvalue())
    st = app.settings
    wapp = build_web_app(svc, sessions=app.sessions, index_dir=st.index_dir, framestore_dir=st.framestore_dir,
                         secret=b"bench" * 8)
    runner = web.AppRunner(wapp)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        out = await _burst(f"http://127.0.0.1:{port}/", pngs, n, users)
    finally:
        await runner.cleanup()
        await svc.close()
    out["limits"] = {"queue_size": svc.queue_size, "user_rate_per_minute": svc._user_rate.per_minute,
                     "chat_rate_per_minute": svc._chat_rate.per_minute}
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return out


def main() -> None:
    from core.sysinfo import machine_info

    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--users", type=int, default=50)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "load.json")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        res = asyncio.run(run(a.requests, a.users, Path(tmp)))
    res = {"benchmark": "web chat burst", "date": datetime.now(UTC).isoformat(timespec="seconds"),
           "machine": machine_info(), **res}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
