"""Fixtures and helpers shared by the Discord adapter tests (the fake Discord, a running bot,
waiting for and reading its replies).
"""

from __future__ import annotations

import asyncio
import io
import json
import re
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from sqlalchemy import select

from bot.discord_adapter import AniRecBot, build_discord_bot, run_discord
from core.db.models import Feedback
from tests.fakes.discord_server import FakeDiscord, RecordedRequest

HEARTBEAT_MS = 200
MESSAGES = r"^/channels/\d+/messages$"


@pytest.fixture(autouse=True)
def _no_unexpected_errors(no_logged_errors: Any) -> None:
    """No handler may fail unexpectedly."""


@pytest.fixture
async def dc() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord(heartbeat_interval_ms=HEARTBEAT_MS) as fake:
        yield fake
        assert not fake.errors, f"the fake itself failed: {fake.errors!r}"
        assert not fake.unknown_requests, fake.unknown_requests


@asynccontextmanager
async def running(dc: FakeDiscord, service: Any, **kwargs: Any) -> AsyncIterator[AniRecBot]:
    """The bot as the runner runs it: `run_discord(bot, token, stop)` as a task on this loop.
    The fake's #general is an auto channel; #after-dark (NSFW) is not."""
    kwargs.setdefault("auto_channels", [int(dc.text_channel["id"])])
    kwargs.setdefault("owner_ids", [int(dc.users[0]["id"])])
    bot = build_discord_bot(service, guild_ready_timeout=0.05, sync_commands=True,
                            allow_private_urls=True, **kwargs)
    stop = asyncio.Event()
    task = asyncio.create_task(run_discord(bot, dc.token, stop))
    await asyncio.sleep(0)
    ready = asyncio.create_task(bot.wait_until_ready())
    done, _ = await asyncio.wait({task, ready}, timeout=10, return_when=asyncio.FIRST_COMPLETED)
    if ready not in done:
        ready.cancel()
        if task.done():
            task.result()
        raise AssertionError("bot did not become ready")
    try:
        yield bot
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def eventually(condition: Callable[[], object], timeout: float = 10.0,
                     what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def replies(dc: FakeDiscord, message: dict[str, Any]) -> list[RecordedRequest]:
    """Completed message POSTs that reply to `message`."""
    return [r for r in dc.requests_matching("POST", MESSAGES)
            if r.completed and isinstance(r.json, dict)
            and str((r.json.get("message_reference") or {}).get("message_id")) == message["id"]]


async def answer_to(dc: FakeDiscord, message: dict[str, Any], n: int = 1,
                    timeout: float = 20.0) -> list[RecordedRequest]:
    await eventually(lambda: len(replies(dc, message)) >= n, timeout,
                     f"{n} replies to {message['content']!r}")
    return replies(dc, message)[:n]


def embed_of(req: RecordedRequest) -> dict[str, Any]:
    [embed] = req.json["embeds"]
    return embed


def qid_of(req: RecordedRequest) -> str:
    """The query id an answer's buttons carry (custom ids "fb:<qid>:…" / "cl:<qid>")."""
    for row in req.json.get("components") or []:
        for c in row.get("components") or []:
            cid = str(c.get("custom_id") or "")
            if cid.startswith(("fb:", "cl:")):
                return cid.split(":")[1]
    raise AssertionError("the answer has no buttons with a query id")


def buttons_of(req: RecordedRequest | dict[str, Any]) -> list[list[str]]:
    """The rows of buttons a person sees under a message (emoji, else label)."""
    body = req.json if isinstance(req, RecordedRequest) else req
    return [[(c.get("emoji") or {}).get("name") or c.get("label") or "" for c in row["components"]]
            for row in body.get("components") or []]


def sent_message_id(req: RecordedRequest) -> str:
    return str(req.response["id"])


def feedback_rows(indexed_home: Any, qid: str) -> list[Feedback]:
    with indexed_home.app.sessions() as s:
        return list(s.scalars(select(Feedback).where(Feedback.query_id == qid)
                              .order_by(Feedback.id)).all())


def dispatch_time(dc: FakeDiscord, message: dict[str, Any]) -> float:
    return next(t for ev, data, t in dc.dispatched
                if ev == "MESSAGE_CREATE" and data.get("id") == message["id"])


def png_attachment(dc: FakeDiscord, data: bytes, name: str = "frame.png", **kw: Any
                   ) -> dict[str, Any]:
    return dc.add_attachment(data, name, "image/png", **kw)


def adult_episode(indexed_home: Any) -> int:
    for i, ep in enumerate(indexed_home.ground_truth["episodes"]):
        meta = indexed_home.library / Path(ep["path"]).parent / "series.json"
        if meta.exists() and json.loads(meta.read_text()).get("is_adult"):
            return i
    pytest.skip("the sample library has no adult series")


def gif_of(frames: Sequence[bytes]) -> bytes:
    from PIL import Image

    imgs = [Image.open(io.BytesIO(f)).convert("RGB") for f in frames]
    out = io.BytesIO()
    imgs[0].save(out, format="GIF", save_all=True, append_images=imgs[1:], duration=250, loop=0)
    return out.getvalue()





def transcript(dc: FakeDiscord, since: float, until: float) -> list[str]:
    """What the fake received in [since, until): method, path and the key payload fields."""
    lines = []
    for r in dc.requests:
        if not since <= r.time < until:
            continue
        line = f"{r.method} {r.path} -> {r.status}"
        if isinstance(r.json, dict) and r.json.get("embeds"):
            e = r.json["embeds"][0]
            names = [f["name"] for f in e.get("fields", [])]
            line += (f" | embed.title={e.get('title')!r} fields={names}"
                     f" footer={e.get('footer', {}).get('text')!r}"
                     f" reply_to={(r.json.get('message_reference') or {}).get('message_id')}")
        elif isinstance(r.json, dict) and r.json.get("content"):
            line += f" | content={r.json['content']!r}"
        if r.files:
            line += f" | files={[(f.filename, f.size) for f in r.files]}"
        lines.append(line)
    return lines


# -- a tiny local web server: links and the sticker CDN -------------------------------------------

@pytest.fixture
async def web_server(indexed_home: Any) -> AsyncIterator[str]:
    png = indexed_home.frame_png(0, 6.0)

    async def image(_: web.Request) -> web.Response:
        return web.Response(body=png, content_type="image/png")

    async def page(_: web.Request) -> web.Response:
        return web.Response(text="<html></html>", content_type="text/html")

    async def to_file(_: web.Request) -> web.Response:
        raise web.HTTPFound("file:///etc/passwd")

    async def to_image(_: web.Request) -> web.Response:
        raise web.HTTPFound("/image.png")

    async def endless(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "image/png"})
        await resp.prepare(request)
        for _ in range(64):
            await resp.write(b"\0" * 65536)
        return resp

    async def slow(_: web.Request) -> web.Response:
        await asyncio.sleep(1.0)
        return web.Response(body=png, content_type="image/png")

    async def sticker(_: web.Request) -> web.Response:
        from PIL import Image

        out = io.BytesIO()
        Image.open(io.BytesIO(png)).convert("RGBA").save(out, format="PNG")
        return web.Response(body=out.getvalue(), content_type="image/png")

    app = web.Application()
    app.router.add_get("/stickers/{name}", sticker)
    app.router.add_get("/image.png", image)
    app.router.add_get("/page.png", page)
    app.router.add_get("/to-file.png", to_file)
    app.router.add_get("/to-image.png", to_image)
    app.router.add_get("/endless.png", endless)
    app.router.add_get("/slow.png", slow)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()

def preview_edits(dc: FakeDiscord, answer: RecordedRequest) -> list[RecordedRequest]:
    """Completed edits of the message `answer` created (channel messages and follow-ups)."""
    mid = sent_message_id(answer)
    return [r for r in dc.requests if r.method == "PATCH" and r.completed
            and re.search(rf"/messages/{mid}$", r.path)]


async def preview_of(dc: FakeDiscord, answer: RecordedRequest, timeout: float = 20.0
                     ) -> RecordedRequest:
    """The edit that attached the preview to `answer`, which went out before it, without it."""
    await eventually(lambda: preview_edits(dc, answer), timeout, "the preview edit")
    [edit] = preview_edits(dc, answer)
    assert not answer.files, "the answer waited for its clip"
    assert edit.time > answer.time and edit.files
    return edit
