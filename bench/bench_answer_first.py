"""Time to the answer message vs time to the preview clip, before and after #21 item 1.

Through the fakes (tests/fakes: Discord's HTTP API and gateway, Telegram's Bot API) with the
real discord.py / PTB clients and the real service over an indexed library:

- "before": the service as it was at `--base` (its `_finish` cut the preview before the
  answer came back), loaded from git; the adapters then send the answer with the clip
  attached, in one message (today's adapters do that for an answer that carries its clip);
- "after": today's service and adapters: the answer message at once, the clip as an edit
  (Discord) or a reply (Telegram) when it is cut.

Each round gets a fresh preview folder, so every clip is really cut (a popular scene is cut
once and cached, in both versions). Rounds alternate before/after/after/before, so load
drift on a shared machine hits both alike; the ratios within the run are what counts.

    python -m bench.bench_answer_first --home H --library LIB [--queries 6]
    python -m bench.bench_answer_first --realsize        # the sample library rendered at 1080p

JSON: bench/results/answer_first.json (machine, date, load average, per platform and
version: p50 / p95 ms to the answer and to the clip, and after/before ratios).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "results" / "answer_first.json"
BASE = "c54f89b"  # the last commit before the previews left the answer's path


def old_service_class(rev: str) -> type:
    """`RecognitionService` as it was at `rev` (core/service.py read from git)."""
    src = subprocess.check_output(["git", "-C", str(ROOT), "show", f"{rev}:core/service.py"], text=True)
    mod = types.ModuleType("core_service_before")
    mod.__file__ = f"{rev}:core/service.py"
    sys.modules[mod.__name__] = mod
    exec(compile(src, mod.__file__, "exec"), mod.__dict__)
    return mod.RecognitionService  # type: ignore[no-any-return]


def make_service(app: Any, cls: type, previews: Path) -> Any:
    from core.previews import PreviewMaker

    st = app.settings
    return cls(app.recognizer, app.feedback_store(), limits=app.media_limits(),
               previews=PreviewMaker(previews), queue_size=st.queue_size,
               user_rate_per_minute=1_000_000, chat_rate_per_minute=1_000_000)


def frame_jpeg(library: Path, gt: dict[str, Any], episode: int, t: float) -> bytes:
    """A frame of `episode` at second `t` as a chat app would send it (JPEG)."""
    import av

    ep = gt["episodes"][episode]
    with av.open(str(library / ep["path"])) as c:
        s = c.streams.video[0]
        c.seek(int(max(0.0, t - 1.0) / s.time_base), stream=s, backward=True)
        for fr in c.decode(s):
            if fr.time is not None and fr.time >= t:
                img = fr.to_image()
                break
    buf = io.BytesIO()
    img.convert("RGB").save(buf, format="JPEG", quality=90)
    return buf.getvalue()


async def discord_round(service: Any, queries: list[bytes]) -> list[tuple[float, float | None]]:
    """(ms to the answer message, ms to the clip) per query, dispatch to the fake's receipt."""
    from tests.discord_helpers import answer_to, dispatch_time, png_attachment, preview_edits, running
    from tests.fakes.discord_server import FakeDiscord

    out: list[tuple[float, float | None]] = []
    async with FakeDiscord(heartbeat_interval_ms=500) as dc, running(dc, service):
        for data in queries:
            msg = dc.message_create(dc.text_channel, dc.users[0], "?", attachments=[
                png_attachment(dc, data, "shot.jpg")])
            [post] = await answer_to(dc, msg, timeout=120)
            t0 = dispatch_time(dc, msg)
            clip_at: float | None = post.time if post.files else None
            if clip_at is None:  # after: the clip comes as an edit of the answer
                deadline = time.monotonic() + 60
                while not preview_edits(dc, post) and time.monotonic() < deadline:
                    await asyncio.sleep(0.005)
                edits = preview_edits(dc, post)
                clip_at = edits[0].time if edits else None
            out.append(((post.time - t0) * 1000, (clip_at - t0) * 1000 if clip_at else None))
    return out


async def telegram_round(service: Any, queries: list[bytes]) -> list[tuple[float, float | None]]:
    from tests.fakes.telegram_server import FakeTelegram
    from tests.telegram_helpers import BOT, TOKEN, answer_to, running

    out: list[tuple[float, float | None]] = []
    async with FakeTelegram(token=TOKEN, bot_username=BOT) as tg, running(tg, service):
        alice = tg.user(1001, "Alice", "alice")
        chat = tg.private_chat(alice)
        for data in queries:
            upd = tg.photo_message(chat, alice, data)
            t0 = time.monotonic()
            tg.push_update(upd)
            first = await answer_to(tg, upd["message"]["message_id"], timeout=120)
            if first.method in ("sendVideo", "sendPhoto"):  # before: the clip is the answer
                clip_at: float | None = first.time
            else:
                try:
                    clip = await answer_to(tg, int(first.result["message_id"]), timeout=60,
                                           methods=("sendVideo", "sendPhoto"))
                    clip_at = clip.time
                except TimeoutError:
                    clip_at = None
            out.append(((first.time - t0) * 1000, (clip_at - t0) * 1000 if clip_at else None))
    return out


def pct(values: list[float]) -> dict[str, float | int]:
    if not values:
        return {"n": 0}
    v = sorted(values)
    return {"n": len(v), "p50": round(statistics.median(v), 1),
            "p95": round(v[min(len(v) - 1, round(0.95 * (len(v) - 1)))], 1),
            "mean": round(statistics.fmean(v), 1)}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    from bot.app import App
    from core.config import Settings

    app = App.from_settings(Settings(_env_file=None, home=args.home))  # type: ignore[call-arg]
    library = Path(args.library)
    gt = json.loads((library / "ground_truth.json").read_text())
    n_eps = len(gt["episodes"])
    seconds = float(gt["episodes"][0].get("duration", 12.0))
    queries = [frame_jpeg(library, gt, i % n_eps, 2.0 + (i // n_eps) * 3.0 % max(1.0, seconds - 4))
               for i in range(args.queries)]
    classes = {"before": old_service_class(args.base), "after": None}
    from core.service import RecognitionService

    classes["after"] = RecognitionService
    rounds = ["before", "after", "after", "before"]
    got: dict[str, dict[str, list[tuple[float, float | None]]]] = {}
    with tempfile.TemporaryDirectory(prefix="answer-first-") as tmp:
        for platform, fn in (("discord", discord_round), ("telegram", telegram_round)):
            for k, version in enumerate(rounds):
                svc = make_service(app, classes[version], Path(tmp) / f"{platform}-{k}")
                await svc.start()
                try:
                    await svc.recognize(queries[0], source=WARM, with_preview=False)  # warm the models
                    rows = await fn(svc, queries)
                finally:
                    await svc.close()
                got.setdefault(platform, {}).setdefault(version, []).extend(rows)
                print(f"{platform} {version}: answer p50 "
                      f"{statistics.median(r[0] for r in rows):.0f} ms, clip p50 "
                      f"{statistics.median(r[1] for r in rows if r[1]):.0f} ms", flush=True)
    from core.sysinfo import machine_info

    result: dict[str, Any] = {
        "what": "time from the user's message reaching the bot (gateway dispatch / update pushed) "
                "to the fake platform receiving the answer message and the preview clip; "
                "before = the service at " + args.base + " (clip cut before the answer), "
                "after = answer first, clip as an edit (Discord) / reply (Telegram)",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine_info(), "load_average": list(os.getloadavg()),
        "library": str(library), "realsize": args.realsize, "queries_per_round": len(queries),
        "rounds": rounds, "platforms": {}}
    for platform, versions in got.items():
        entry: dict[str, Any] = {}
        for version, rows in versions.items():
            entry[version] = {"answer_ms": pct([r[0] for r in rows]),
                              "clip_ms": pct([r[1] for r in rows if r[1] is not None]),
                              "clips_missing": sum(1 for r in rows if r[1] is None)}
        b, a = entry["before"], entry["after"]
        entry["ratio_after_vs_before"] = {
            "answer_p50": round(a["answer_ms"]["p50"] / b["answer_ms"]["p50"], 3),
            "clip_p50": round(a["clip_ms"]["p50"] / b["clip_ms"]["p50"], 3)}
        result["platforms"][platform] = entry
    return result


WARM: Any = None


def main(argv: list[str] | None = None) -> int:
    global WARM
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--home", type=Path, help="an indexed home (default: built under bench/work/)")
    p.add_argument("--library", type=Path, help="the library indexed in --home")
    p.add_argument("--realsize", action="store_true", help="the sample library rendered at 1080p")
    p.add_argument("--queries", type=int, default=6, help="queries per round (4 rounds a platform)")
    p.add_argument("--base", default=BASE, help="the git revision of the 'before' service")
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args(argv)
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        os.environ.pop(var, None)  # straight to the fakes on 127.0.0.1
    if args.home is None or args.library is None:
        work = ROOT / "bench" / "work" / "answer_first"
        args.library = work / ("library-1080p" if args.realsize else "library")
        args.home = work / ("home-1080p" if args.realsize else "home")
        if not (args.library / "ground_truth.json").exists():
            from data.synth import generate_library

            size = dict(width=1920, height=1080) if args.realsize else {}
            generate_library(args.library, series=3, episodes=2, seconds=12.0, workers=1, **size)
        if not (args.home / "index").exists():
            from bot.app import App
            from core.config import Settings

            App.from_settings(Settings(_env_file=None, home=args.home)).indexer().run(args.library)  # type: ignore[call-arg]
    from core.types import Source

    WARM = Source(platform="cli", chat_id="bench", user_id="bench", allow_adult=True)
    result = asyncio.run(run(args))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(result["platforms"], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
