"""A bounded burst against `anirec run` with every surface at once: the web chat (real HTTP,
each user its own signed cookie), the fake Telegram Bot API (the real python-telegram-bot
polling it) and the fake Discord (the real discord.py on its gateway and REST), all served by
`bot.cli.run.serve` — the code `anirec run --web` runs — on one event loop and one
`RecognitionService`, over a small synthetic library.

N requests from U users, split over the three surfaces, all sent at once. Measured: every
request's reply (an answer, or "busy"/"rate-limited" with a retry time; nothing dropped, no
duplicate replies), throughput and latency percentiles per surface, per-user answers against
the per-user limit, the event loop's heartbeat, the Discord gateway heartbeat and Telegram's
long poll during the burst, `/api/status` latency during the burst, and memory.

    python -m bench.bench_load [--requests 200] [--users 50]

Writes bench/results/load.json. Every user comes from 127.0.0.1 on the web chat, so the
per-chat (per-address) limit is lifted; the per-user limit is the default (10 a minute).
`tests/test_load_surfaces.py` runs the same burst, small, in the default test run.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import re
import resource
import socket
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

RETRY = re.compile(r"try again in (\d+) s")
TG_TOKEN = "777:LOADBENCH"


@dataclass
class Outcome:
    surface: str
    user: str
    sent: float  # monotonic
    replies: list[tuple[float, str, str]] = field(default_factory=list)  # (time, kind, text)

    @property
    def kind(self) -> str:
        return self.replies[0][1] if self.replies else "dropped"

    @property
    def latency_ms(self) -> float | None:
        return (self.replies[0][0] - self.sent) * 1000 if self.replies else None


def classify(text: str) -> str:
    """'busy', 'rate_limited' (each only with a retry time), or 'answer'."""
    m = RETRY.search(text)
    if m and int(m.group(1)) >= 1:
        return "busy" if "busy" in text else "rate_limited"
    if "try again" in text.lower():
        return "deferred_without_time"
    return "answer"


def _pct(xs: list[float]) -> dict[str, float]:
    if not xs:
        return {}
    return {p: round(float(np.percentile(xs, q)), 1) for p, q in
            (("p50", 50), ("p90", 90), ("p99", 99), ("max", 100))}


def _gaps(stamps: list[float], t0: float, t1: float) -> float | None:
    inside = sorted(s for s in stamps if t0 <= s <= t1)
    pts = [t0, *inside, t1]
    return round(max(b - a for a, b in zip(pts, pts[1:], strict=False)), 2) if len(pts) > 1 else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def frame_pngs(library: Path, n: int = 4) -> list[bytes]:
    from PIL import Image

    from data.video import read_frames_at

    gt = json.loads((library / "ground_truth.json").read_text())
    out = []
    for ep in gt["episodes"][:n]:
        buf = io.BytesIO()
        Image.fromarray(read_frames_at(library / ep["path"], [5.0])[0]).save(buf, format="PNG")
        out.append(buf.getvalue())
    return out


async def burst(home: Path, pngs: list[bytes], *, split: dict[str, tuple[int, int]],
                settings_overrides: dict[str, Any] | None = None, deadline_s: float = 300.0,
                heartbeat_ms: int = 1000, secrets: list[str] | None = None) -> dict[str, Any]:
    """Run `serve()` with the web chat and both fake platforms, send the burst, wait for every
    reply (or the deadline), stop cleanly. `split`: surface -> (requests, users). `secrets`, when
    given, receives both bot tokens (for a test to look for them in logs and files)."""
    from bot.app import App
    from bot.cli.run import serve
    from core.config import Settings
    from tests.fakes.discord_server import FakeDiscord
    from tests.fakes.telegram_server import FakeTelegram

    out: dict[str, Any] = {}
    async with FakeDiscord(heartbeat_interval_ms=heartbeat_ms) as dc, \
            FakeTelegram(token=TG_TOKEN, bot_username="anirec_load_bot") as tg:
        if secrets is not None:
            secrets.extend([dc.token, TG_TOKEN])
        settings = Settings(_env_file=None, home=home, discord_token=dc.token,  # type: ignore[call-arg]
                            telegram_token=TG_TOKEN, telegram_api_url=tg.base_url,
                            telegram_file_url=tg.base_file_url,
                            discord_auto_channels=[int(dc.text_channel["id"])],
                            web_port=free_port(), chat_rate_per_minute=1_000_000,
                            reload_poll_seconds=0, **(settings_overrides or {}))
        stop = asyncio.Event()
        info: dict[str, Any] = {}
        task = asyncio.create_task(serve(App.from_settings(settings), web=True, stop=stop, ready=info.update))
        try:
            out = await _drive(dc, tg, info, task, pngs, split, deadline_s, settings)
        finally:
            stop.set()
            out["clean_stop"] = (await asyncio.wait_for(task, 60)) == 0
        out["discord_gateway_reconnects"] = max(0, len(dc.gateway_connections) - 1)
        out["fake_errors"] = [repr(e) for e in dc.errors]
    return out


async def _drive(dc: Any, tg: Any, info: dict[str, Any], task: asyncio.Task[int], pngs: list[bytes],
                 split: dict[str, tuple[int, int]], deadline_s: float, settings: Any) -> dict[str, Any]:
    import aiohttp

    for _ in range(600):  # every front end up: the web chat answers, Telegram polls, Discord is READY
        if info and dc.identifies and tg.calls("getUpdates") and task.done() is False:
            break
        await asyncio.sleep(0.05)
    base = str(info["web"])
    if not base.endswith("/"):
        base += "/"
    n_web, u_web = split.get("web", (0, 1))
    n_tg, u_tg = split.get("telegram", (0, 1))
    n_dc, u_dc = split.get("discord", (0, 1))
    sessions = [aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) for _ in range(u_web)]
    tg_users = [tg.user(50_000 + i, f"User{i}", f"user{i}") for i in range(u_tg)]
    dc_users = [dc.add_user(f"loaduser{i}") for i in range(u_dc)]
    status_ms: list[float] = []
    outcomes: list[Outcome] = []
    ticks: list[float] = []
    rss: list[float] = []
    try:
        for s in sessions:  # each browser gets its identity first
            for _ in range(100):
                try:
                    async with s.get(f"{base}api/status") as r:
                        await r.read()
                    break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.05)
        rss_before = _rss_mb()
        done = asyncio.Event()

        async def heartbeat() -> None:
            while not done.is_set():
                ticks.append(time.monotonic())
                rss.append(_rss_mb())
                await asyncio.sleep(0.05)

        async def status_poll() -> None:
            async with aiohttp.ClientSession() as s:
                while not done.is_set():
                    t = time.perf_counter()
                    async with s.get(f"{base}api/status") as r:
                        await r.read()
                        if r.status == 200:
                            status_ms.append((time.perf_counter() - t) * 1000)
                    await asyncio.sleep(0.25)

        async def web_one(o: Outcome, i: int) -> None:
            form = aiohttp.FormData()
            form.add_field("file", pngs[i % len(pngs)], filename="shot.png", content_type="image/png")
            try:
                async with sessions[i % u_web].post(f"{base}api/identify", data=form) as r:
                    body = await r.text()
                    if r.status == 200:
                        kind = "answer"
                    elif r.status in (429, 503) and (r.headers.get("Retry-After") or "0").isdigit() \
                            and int(r.headers["Retry-After"]) >= 1:
                        kind = "busy" if r.status == 503 else "rate_limited"
                    else:
                        kind = f"http_{r.status}"
                    o.replies.append((time.monotonic(), kind, body[:200]))
            except aiohttp.ClientError as exc:
                o.replies.append((time.monotonic(), "connection_error", repr(exc)))

        hb = asyncio.create_task(heartbeat())
        sp = asyncio.create_task(status_poll())
        t0 = time.monotonic()
        tg_mark, dc_mark = len(tg.requests), len(dc.requests)
        tg_msgs: dict[int, Outcome] = {}
        dc_msgs: dict[str, Outcome] = {}
        web_tasks = []
        order = [("web", i) for i in range(n_web)] + [("telegram", i) for i in range(n_tg)] \
            + [("discord", i) for i in range(n_dc)]
        order.sort(key=lambda x: (x[1], x[0]))  # interleave the surfaces
        for surface, i in order:
            png = pngs[i % len(pngs)]
            if surface == "web":
                o = Outcome("web", f"w{i % u_web}", time.monotonic())
                web_tasks.append(asyncio.create_task(web_one(o, i)))
            elif surface == "telegram":
                user = tg_users[i % u_tg]
                o = Outcome("telegram", f"t{i % u_tg}", time.monotonic())
                upd = tg.photo_message(tg.private_chat(user), user, png)
                tg.push_update(upd)
                tg_msgs[int(upd["message"]["message_id"])] = o
            else:
                user = dc_users[i % u_dc]
                o = Outcome("discord", f"d{i % u_dc}", time.monotonic())
                att = dc.add_attachment(png, "frame.png", "image/png")
                msg = dc.message_create(dc.text_channel, user, "", attachments=[att])
                dc_msgs[str(msg["id"])] = o
            outcomes.append(o)
        seen_tg: set[int] = set()
        seen_dc: set[int] = set()
        end = t0 + deadline_s
        while time.monotonic() < end:
            _collect(tg, dc, tg_msgs, dc_msgs, tg_mark, dc_mark, seen_tg, seen_dc)
            if all(o.replies for o in outcomes):
                break
            await asyncio.sleep(0.05)
        await asyncio.gather(*web_tasks)
        t1 = time.monotonic()
        await asyncio.sleep(1.0)  # late duplicates would show up here
        _collect(tg, dc, tg_msgs, dc_msgs, tg_mark, dc_mark, seen_tg, seen_dc)
        done.set()
        await hb
        await sp
    finally:
        for s in sessions:
            await s.close()
    return _report(outcomes, t0, t1, ticks, status_ms, rss_before, rss, dc, tg, settings)


def _collect(tg: Any, dc: Any, tg_msgs: dict[int, Outcome], dc_msgs: dict[str, Outcome],
             tg_mark: int, dc_mark: int, seen_tg: set[int], seen_dc: set[int]) -> None:
    for k, c in enumerate(tg.requests[tg_mark:], tg_mark):
        if k in seen_tg or not c.ok or c.method.lower() not in ("sendmessage", "sendphoto", "sendvideo"):
            continue
        rp = c.params.get("reply_parameters")
        if isinstance(rp, dict) and rp.get("message_id") in tg_msgs:
            seen_tg.add(k)
            text = str(c.params.get("text") or c.params.get("caption") or "")
            tg_msgs[rp["message_id"]].replies.append((c.time if hasattr(c, "time") else time.monotonic(),
                                                      classify(text), text[:200]))
    for k, r in enumerate(dc.requests[dc_mark:], dc_mark):
        if k in seen_dc or r.status is None or r.method != "POST" or not re.match(r"^/channels/\d+/messages$", r.path):
            continue
        ref = (r.json or {}).get("message_reference") or {}
        mid = str(ref.get("message_id"))
        if mid in dc_msgs:
            seen_dc.add(k)
            j = r.json or {}
            text = " ".join([str(j.get("content") or "")] + [f"{e.get('title', '')} {e.get('description', '')}"
                                                              for e in j.get("embeds") or []])
            dc_msgs[mid].replies.append((r.time, classify(text) if not j.get("embeds") else "answer", text[:200]))


def _rss_mb() -> float:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize() / 2**20
    except OSError:
        return 0.0


def _report(outcomes: list[Outcome], t0: float, t1: float, ticks: list[float], status_ms: list[float],
            rss_before: float, rss: list[float], dc: Any, tg: Any, settings: Any) -> dict[str, Any]:
    wall = t1 - t0
    per_surface: dict[str, Any] = {}
    for surface in ("web", "telegram", "discord"):
        os_ = [o for o in outcomes if o.surface == surface]
        if not os_:
            continue
        kinds = Counter(o.kind for o in os_)
        lat = [o.latency_ms for o in os_ if o.kind == "answer" and o.latency_ms is not None]
        per_surface[surface] = {
            "requests": len(os_), "users": len({o.user for o in os_}), "by_kind": dict(kinds),
            "answered_per_second": round(kinds["answer"] / wall, 2) if wall else None,
            "latency_ms_answered": _pct(lat),
            "latency_ms_deferred": _pct([o.latency_ms for o in os_ if o.kind in ("busy", "rate_limited")
                                         and o.latency_ms is not None]),
        }
    per_user: dict[str, int] = defaultdict(int)
    for o in outcomes:
        if o.kind == "answer":
            per_user[o.user] += 1
    kinds = Counter(o.kind for o in outcomes)
    ok = {"answer", "busy", "rate_limited"}
    hb_dc = [h for h in dc.heartbeats if t0 <= h <= t1]
    polls = [c.time for c in tg.requests if c.method.lower() == "getupdates" and hasattr(c, "time")]
    return {
        "requests": len(outcomes), "users": len({o.user for o in outcomes}),
        "wall_seconds": round(wall, 2), "by_kind": dict(kinds),
        "answered": kinds["answer"], "deferred": kinds["busy"] + kinds["rate_limited"],
        "dropped": kinds["dropped"],
        "failed_or_deferred_without_retry_time": sum(n for k, n in kinds.items() if k not in ok | {"dropped"}),
        "duplicate_replies": sum(max(0, len(o.replies) - 1) for o in outcomes),
        "answered_per_second": round(kinds["answer"] / wall, 2) if wall else None,
        "latency_ms_answered": _pct([o.latency_ms for o in outcomes if o.kind == "answer" and o.latency_ms]),
        "per_surface": per_surface,
        "most_answers_for_one_user": max(per_user.values(), default=0),
        "user_rate_per_minute": settings.user_rate_per_minute, "queue_size": settings.queue_size,
        "loop_heartbeat": {"ticks": len([t for t in ticks if t0 <= t <= t1]), "expected": round(wall / 0.05),
                           "longest_gap_s": _gaps(ticks, t0, t1)},
        "discord_gateway_heartbeat": {"interval_s": dc.heartbeat_interval_ms / 1000, "during_burst": len(hb_dc),
                                      "longest_gap_s": _gaps(dc.heartbeats, t0, t1)},
        "telegram_long_poll": {"polls_during_burst": len([p for p in polls if t0 <= p <= t1]),
                               "longest_gap_s": _gaps(polls, t0, t1) if polls else None},
        "status_during_burst_ms": {"answered": len(status_ms), **_pct(status_ms)},
        "rss_mb": {"before": round(rss_before, 1), "peak": round(max(rss, default=rss_before), 1),
                   "after": round(rss[-1] if rss else rss_before, 1)},
    }


def main() -> None:
    from core.sysinfo import machine_info

    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--users", type=int, default=50)
    ap.add_argument("--deadline", type=float, default=600.0, help="seconds to wait for every reply")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "load.json")
    a = ap.parse_args()
    # the split: 40 % web, 30 % Telegram, 30 % Discord (requests and users alike)
    def part(n: int) -> tuple[int, int, int]:
        w, t = round(n * 0.4), round(n * 0.3)
        return w, t, n - w - t
    (rw, rt, rd), (uw, ut, ud) = part(a.requests), part(a.users)
    with tempfile.TemporaryDirectory() as tmp:
        from bot.app import App
        from core.config import Settings
        from data.synth import generate_library

        lib, home = Path(tmp) / "library", Path(tmp) / "home"
        generate_library(lib, series=2, episodes=2, seconds=12.0, seed=5)
        App.from_settings(Settings(_env_file=None, home=home)).indexer().run(lib)  # type: ignore[call-arg]
        res = asyncio.run(burst(home, frame_pngs(lib), split={"web": (rw, uw), "telegram": (rt, ut),
                                                              "discord": (rd, ud)}, deadline_s=a.deadline))
    res = {"benchmark": "burst across the web chat, fake Telegram and fake Discord (anirec run --web)",
           "date": datetime.now(UTC).isoformat(timespec="seconds"), "machine": machine_info(),
           "contention": "shared with other jobs", "load_average_at_end": list(os.getloadavg()),
           "deadline_s": a.deadline, "peak_rss_mb_process": round(
               resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
           "library": "synthetic, 2 series x 2 episodes x 12 s", **res}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
