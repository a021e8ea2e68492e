"""The platform connection dropped while answers are being worked on: the Discord gateway
closed by the server mid-burst (discord.py reconnects and resumes; messages posted while it
was away are replayed) and the reply POST failing with a 502 once (retried). Every message
gets exactly one reply: none lost, none doubled."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from tests import discord_helpers
from tests.discord_helpers import answer_to, png_attachment, replies, running
from tests.fakes.discord_server import FakeDiscord

dc = discord_helpers.dc
_no_unexpected_errors = discord_helpers._no_unexpected_errors
pytestmark = pytest.mark.timeout(300)


async def test_gateway_dropped_mid_reply_loses_and_doubles_nothing(
        dc: FakeDiscord, make_service: Callable[..., Any], indexed_home: Any) -> None:
    service = await make_service()
    n_eps = len(indexed_home.ground_truth["episodes"])
    pngs = [indexed_home.frame_png(i % n_eps, 3.0 + 0.7 * i) for i in range(8)]
    people = [dc.add_user(f"drop{i}") for i in range(8)]
    async with running(dc, service):
        await dc.wait_heartbeats(1)
        connections = len(dc.gateway_connections)
        dc.fail_next("POST", r"^/channels/\d+/messages$", status=502)  # the first reply: a bad gateway
        first = [dc.message_create(dc.text_channel, p, "", attachments=[png_attachment(dc, png)])
                 for p, png in zip(people[:4], pngs[:4], strict=True)]
        await asyncio.sleep(0.05)
        await dc.disconnect(4000)  # the gateway drops while those are being answered
        later = [dc.message_create(dc.text_channel, p, "", attachments=[png_attachment(dc, png)])
                 for p, png in zip(people[4:], pngs[4:], strict=True)]  # sent while it was away
        for m in first + later:
            await answer_to(dc, m, timeout=120)
        await asyncio.sleep(1.0)  # a duplicate would arrive by now
        assert len(dc.gateway_connections) > connections and dc.resumes  # reconnected and resumed
    counts = [len([r for r in replies(dc, m) if not r.injected]) for m in first + later]
    assert counts == [1] * 8, counts  # one delivered reply each (the 502'd one was retried)
    assert len([r for r in dc.requests if r.injected]) == 1


# -- Telegram: the connection reset while the answer is being sent --------------------------

async def test_telegram_connection_reset_mid_reply(indexed_home: Any, make_service: Callable[..., Any],
                                                   no_proxy: None) -> None:
    from tests.fakes.telegram_server import DROP, FakeTelegram
    from tests.telegram_helpers import BOT, TOKEN, replies_to
    from tests.telegram_helpers import running as tg_running

    service = await make_service()
    async with FakeTelegram(token=TOKEN, bot_username=BOT) as tg:
        alice = tg.user(1001, "Alice", "alice")
        async with tg_running(tg, service):
            tg.fail_next("sendVideo", status=DROP)  # the preview upload's connection is reset
            upd = tg.photo_message(tg.private_chat(alice), alice, indexed_home.frame_png(0, 6.0))
            tg.push_update(upd)
            mid = upd["message"]["message_id"]
            for _ in range(600):
                if [c for c in replies_to(tg, mid) if c.ok]:
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(1.0)  # a duplicate would arrive by now
            delivered = [c for c in replies_to(tg, mid) if c.ok]
            # the answer still reaches the user (as text after the failed preview), once
            assert len(delivered) == 1, [(c.method, c.status) for c in replies_to(tg, mid)]
            assert indexed_home.series_title(0) in str(delivered[0].params.get("text")
                                                       or delivered[0].params.get("caption"))
            # and the bot keeps polling and answering
            upd2 = tg.photo_message(tg.private_chat(alice), alice, indexed_home.frame_png(1, 6.0))
            tg.push_update(upd2)
            for _ in range(600):
                if [c for c in replies_to(tg, upd2["message"]["message_id"]) if c.ok]:
                    break
                await asyncio.sleep(0.05)
            assert [c for c in replies_to(tg, upd2["message"]["message_id"]) if c.ok]
