"""Fixtures and helpers shared by the Telegram adapter tests (the fake Bot API, a running
application, waiting for and reading its answers, media builders).
"""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from bot.chat.feedback import parse_feedback
from bot.telegram_adapter import build_telegram_application, run_telegram
from core.db.models import Feedback
from tests.fakes.telegram_server import FakeTelegram, RecordedCall

TOKEN = "123:ABC"
BOT = "anirec_test_bot"
OWNER = 4242
ANSWER_METHODS = ("sendVideo", "sendPhoto", "sendMessage")


@pytest.fixture(autouse=True)
def _no_proxy(no_proxy: None) -> None:
    """Talk straight to the fake."""


@pytest.fixture(autouse=True)
def _no_handler_errors(no_logged_errors: Any) -> None:
    """No handler may fail unexpectedly."""


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram(token=TOKEN, bot_username=BOT) as fake:
        yield fake


@asynccontextmanager
async def running(tg: FakeTelegram, service: Any, state_file: Path | None = None,
                  **build: Any) -> AsyncIterator[Any]:
    """The bot as the runner runs it: `run_telegram(app, stop)` as a task on this loop
    (`build`: more `build_telegram_application` arguments)."""
    app = build_telegram_application(TOKEN, service, owner_ids=[OWNER], base_url=tg.base_url,
                                     base_file_url=tg.base_file_url, state_file=state_file,
                                     **build)
    stop = asyncio.Event()
    mark = len(tg.requests)
    task = asyncio.create_task(run_telegram(app, stop, poll_timeout=1))
    try:
        await tg.wait_for("getUpdates", since=mark, timeout=15)
        yield app
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)


async def answer_to(tg: FakeTelegram, message_id: int, timeout: float = 30.0,
                    methods: Sequence[str] = ANSWER_METHODS) -> RecordedCall:
    """The first successful send that replies to `message_id`."""
    wanted = {m.lower() for m in methods}
    deadline = time.monotonic() + timeout
    while True:
        for c in tg.requests:
            rp = c.params.get("reply_parameters")
            if (c.method.lower() in wanted and c.ok and isinstance(rp, dict)
                    and rp.get("message_id") == message_id):
                return c
        if time.monotonic() > deadline:
            raise TimeoutError(f"no answer to message {message_id}; calls: "
                               f"{[c.method for c in tg.requests]}")
        await asyncio.sleep(0.01)


def replies_to(tg: FakeTelegram, message_id: int) -> list[RecordedCall]:
    return [c for c in tg.requests if isinstance(c.params.get("reply_parameters"), dict)
            and c.params["reply_parameters"].get("message_id") == message_id]


def shown(call: RecordedCall) -> str:
    """What the user sees (tags stripped by the fake): caption or text."""
    res = call.result or {}
    return str(res.get("caption") or res.get("text") or "")


def keyboard(call_or_msg: Any) -> list[list[str]]:
    markup = (call_or_msg.params.get("reply_markup") if isinstance(call_or_msg, RecordedCall)
              else call_or_msg.get("reply_markup"))
    return [[b["text"] for b in row] for row in (markup or {}).get("inline_keyboard", [])]


def query_id_of(call: RecordedCall) -> str:
    data = call.params["reply_markup"]["inline_keyboard"][0][0]["callback_data"]
    action = parse_feedback(data)
    assert action is not None
    return action.query_id


def feedback_rows(indexed_home: Any, qid: str) -> list[Feedback]:
    with indexed_home.app.sessions() as s:
        return list(s.scalars(select(Feedback).where(Feedback.query_id == qid)
                              .order_by(Feedback.id)).all())


async def settle(tg: FakeTelegram, update_id: int, seconds: float = 0.5) -> None:
    """Wait until the bot fetched `update_id`, then a little longer, for "nothing was
    answered" checks (an answer would take a recognition, i.e. well under this)."""
    assert await tg.wait_confirmed(update_id)
    await asyncio.sleep(seconds)


# -- media builders --------------------------------------------------------------------------------

def gif_of(frames: Sequence[bytes]) -> bytes:
    from PIL import Image

    imgs = [Image.open(io.BytesIO(f)).convert("RGB") for f in frames]
    out = io.BytesIO()
    imgs[0].save(out, format="GIF", save_all=True, append_images=imgs[1:], duration=250, loop=0)
    return out.getvalue()


def webp_sticker(frame: bytes) -> bytes:
    from PIL import Image

    im = Image.open(io.BytesIO(frame)).convert("RGBA")
    im = im.resize((512, max(16, round(im.height * 512 / im.width))))
    out = io.BytesIO()
    im.save(out, format="WEBP", quality=90)
    return out.getvalue()


async def preview_reply(tg: FakeTelegram, answer: RecordedCall, timeout: float = 30.0
                        ) -> RecordedCall:
    """The preview clip (or still) that replied to the answer `answer` sent, after it."""
    clip = await answer_to(tg, int((answer.result or {})["message_id"]), timeout,
                           methods=("sendVideo", "sendPhoto"))
    assert answer.method == "sendMessage", "the answer waited for its clip"
    assert clip.time > answer.time
    return clip
