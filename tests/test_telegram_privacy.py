"""Telegram privacy: no raw chat id in telegram-answers.jsonl, telegram.json or INFO logs;
the bot token in no log line at any level (PTB's DEBUG "Set Bot API URL", httpx's URLs)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.logsafe import REDACTED, scrub
from bot.telegram_adapter import build_telegram_application, run_telegram
from tests.fakes.telegram_server import FakeTelegram

LONG_TOKEN = "987654321:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"  # the shape of a real one
CHAT_USER = 55501234


@pytest.fixture(autouse=True)
def _no_proxy(no_proxy: None) -> None:
    """Talk straight to the fake."""


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram(token=LONG_TOKEN, bot_username="anirec_privacy_bot") as fake:
        yield fake


async def test_no_raw_chat_ids_on_disk_or_in_info_logs_and_no_token_anywhere(
        tg: FakeTelegram, make_service: Any, indexed_home: Any, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    service = await make_service()
    state = tmp_path / "telegram.json"
    alice = tg.user(CHAT_USER, "Alice", "alice")
    group = tg.group_chat(-1009876543210, "Group")
    chat = tg.private_chat(alice)
    app = build_telegram_application(LONG_TOKEN, service, base_url=tg.base_url,
                                     base_file_url=tg.base_file_url, state_file=state)
    logging.getLogger("httpx").setLevel(logging.DEBUG)  # even the URL log: scrubbed
    logging.getLogger("httpcore").setLevel(logging.DEBUG)
    stop = asyncio.Event()
    task = asyncio.create_task(run_telegram(app, stop, poll_timeout=1))
    try:
        await tg.wait_for("getUpdates", since=0, timeout=15)
        mark = len(tg.requests)
        tg.push_update(tg.photo_message(chat, alice, indexed_home.frame_png(0, 6.0)))
        ans = await tg.wait_for("sendMessage", since=mark, timeout=30)  # the answer, then its clip
        await tg.wait_for("sendVideo", since=mark, timeout=30)
        tg.push_update(tg.message_reaction(chat, ans.result["message_id"], alice, old=[], new=["👎"]))
        await tg.wait_for("editMessageReplyMarkup", since=mark, timeout=30)
        if group is not None:
            app.bot_data["anirec"].auto.set(group["id"], True)
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)
        logging.getLogger("httpx").setLevel(logging.WARNING)
        logging.getLogger("httpcore").setLevel(logging.WARNING)
    raw_ids = {str(CHAT_USER), str(chat["id"]), "1009876543210"}
    journal = tmp_path / "telegram-answers.jsonl"
    assert journal.exists() and json.loads(journal.read_text().splitlines()[0])[1] == ans.result["message_id"]
    for f in (journal, state):
        if f.exists():
            assert not any(r in f.read_text() for r in raw_ids), f.name
    records = caplog.records
    assert any("Bot API URL" in r.getMessage() or "HTTP Request" in r.getMessage() for r in records)
    for r in records:
        text = r.getMessage() + (r.exc_text or "")
        assert LONG_TOKEN not in text, text
        if r.levelno >= logging.INFO and r.name.startswith(("bot.", "core.")):
            assert not any(i in text for i in raw_ids), text
    assert LONG_TOKEN not in caplog.text
    for f in tmp_path.rglob("*"):
        if f.is_file():
            assert LONG_TOKEN.encode() not in f.read_bytes(), f


def test_legacy_files_with_raw_chat_ids_are_rewritten_hashed(tmp_path: Path) -> None:
    from bot.chat.state import AutoAnswerChats
    from bot.telegram_io import AnswerRef, answer_memory

    journal = tmp_path / "telegram-answers.jsonl"
    journal.write_text(json.dumps([-100555, 7, "qid7", 5, 8]) + "\n")
    state = tmp_path / "telegram.json"
    state.write_text(json.dumps({"autoanswer_chats": [-100555]}))
    m = answer_memory(10, journal, b"k" * 32)
    assert m.get((-100555, 7)) == AnswerRef("qid7", 5, 8)
    assert "100555" not in journal.read_text()
    auto = AutoAnswerChats(state, b"k" * 32)
    assert auto.enabled(-100555) and "100555" not in state.read_text()


def test_scrub_and_record_factory() -> None:
    from bot.logsafe import redact_in_logs

    redact_in_logs("supersecret-value-123")
    assert scrub("url /botsupersecret-value-123/getMe") == f"url /bot{REDACTED}/getMe"
    rec = logging.getLogger("x").makeRecord("x", logging.DEBUG, "f", 1, "Set URL %s", ("b/supersecret-value-123",),
                                            None)
    assert "supersecret" not in rec.getMessage()
