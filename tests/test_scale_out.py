"""Several bot processes: Discord sharding (two AniRecShardedBots, shards 0 and 1 of 2, on
the fake gateway, which routes a guild's events to its shard as Discord does) and Telegram
webhook workers (two real python-telegram-bot webhook servers on 127.0.0.1 behind one URL,
sharing one home: an answer one worker sent gets its reaction vote on the other)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import AsyncExitStack
from typing import Any

import pytest

from bot.discord_adapter import AniRecShardedBot, build_discord_bot
from core.config import Settings
from tests import discord_helpers
from tests.discord_helpers import answer_to, png_attachment, replies, running, sent_message_id
from tests.fakes.discord_server import FakeDiscord

dc = discord_helpers.dc
_no_unexpected_errors = discord_helpers._no_unexpected_errors


def test_shard_settings_pick_the_sharded_bot() -> None:
    plain = build_discord_bot(None, shard_count=None, shard_ids=None)  # type: ignore[arg-type]
    assert not isinstance(plain, AniRecShardedBot)
    bot = build_discord_bot(None, shard_count=4, shard_ids=[2, 3])  # type: ignore[arg-type]
    assert isinstance(bot, AniRecShardedBot) and bot.shard_ids == [2, 3] and bot.shard_count == 4
    with pytest.raises(ValueError, match="below"):
        Settings(_env_file=None, discord_shard_count=2, discord_shard_ids="1,2")  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="needs ANIREC_DISCORD_SHARD_COUNT"):
        Settings(_env_file=None, discord_shard_ids="0")  # type: ignore[call-arg]


async def test_two_shard_processes_split_the_guilds(dc: FakeDiscord, make_service: Callable[..., Any],
                                                    indexed_home: Any) -> None:
    """Shards 0 and 1 of 2 as two bots (as two processes would run them): only the guild's
    shard sees the guild and answers its picture, once."""
    service = await make_service()
    owner = (int(dc.guild["id"]) >> 22) % 2
    async with AsyncExitStack() as stack:
        bots = [await stack.enter_async_context(running(dc, service, shard_count=2, shard_ids=[i]))
                for i in (0, 1)]
        assert all(isinstance(b, AniRecShardedBot) for b in bots)
        assert sorted(tuple(s.get("shard") or ()) for s in dc.identifies) == [(0, 2), (1, 2)]
        assert [b.get_guild(int(dc.guild["id"])) is not None for b in bots] == [i == owner for i in (0, 1)]
        msg = dc.message_create(dc.text_channel, dc.users[0], "what anime?",
                                attachments=[png_attachment(dc, indexed_home.frame_png(0, 6.0))])
        [post] = await answer_to(dc, msg)
        await asyncio.sleep(0.5)
        assert len(replies(dc, msg)) == 1  # not answered twice
        mid = int(sent_message_id(post))
        assert [b.cog.answers.get(mid) is not None for b in bots] == [i == owner for i in (0, 1)]


async def _post_until_up(http: Any, url: str, body: dict[str, Any], secret: str) -> int:
    import aiohttp

    for _ in range(200):  # each listener starts right after its setWebhook
        try:
            async with http.post(url, json=body,
                                 headers={"X-Telegram-Bot-Api-Secret-Token": secret}) as r:
                return int(r.status)
        except aiohttp.ClientConnectionError:
            await asyncio.sleep(0.05)
    raise AssertionError(f"{url} never came up")


async def test_two_telegram_webhook_workers_share_one_home(
        make_service: Callable[..., Any], indexed_home: Any, tmp_path: Any) -> None:
    """Two webhook workers behind one URL with one secret (ANIREC_TELEGRAM_WEBHOOK_SECRET),
    sharing the home: worker A answers a picture, the reaction on that answer reaches
    worker B, which finds the answer in the shared journal and records the vote."""
    import socket

    import aiohttp
    from sqlalchemy import select

    from bot.telegram_adapter import build_telegram_application, run_telegram
    from core.db.models import Feedback
    from tests.fakes.telegram_server import FakeTelegram
    from tests.telegram_helpers import BOT, TOKEN, answer_to, query_id_of

    pytest.importorskip("tornado", reason="webhook mode needs python-telegram-bot[webhooks]")
    service = await make_service()
    secret = "s3cret-Shared_by-all-workers"
    url = "https://bot.example.org/tg/hook"
    ports = []
    for _ in range(2):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            ports.append(sock.getsockname()[1])
    state = tmp_path / "home" / "telegram.json"
    async with FakeTelegram(token=TOKEN, bot_username=BOT) as tg, aiohttp.ClientSession() as http:
        stop = asyncio.Event()
        apps = [build_telegram_application(TOKEN, service, base_url=tg.base_url,
                                           base_file_url=tg.base_file_url, state_file=state)
                for _ in ports]
        tasks = [asyncio.create_task(run_telegram(a, stop, webhook_url=url, port=p, secret_token=secret))
                 for a, p in zip(apps, ports, strict=True)]
        try:
            alice, bob = tg.user(1001, "Alice", "alice"), tg.user(1002, "Bob", "bob")
            group = tg.group_chat(-1001234567890)
            upd = tg.photo_message(group, alice, indexed_home.frame_png(0, 6.0), caption="/anime")
            a_url, b_url = (f"http://127.0.0.1:{p}/tg/hook" for p in ports)
            assert await _post_until_up(http, a_url, {"update_id": 1, **upd}, "wrong") == 403
            assert await _post_until_up(http, a_url, {"update_id": 2, **upd}, secret) == 200
            ans = await answer_to(tg, upd["message"]["message_id"])
            qid = query_id_of(ans)
            hooks = tg.calls("setWebhook")
            assert len(hooks) == 2 and {h.params["url"] for h in hooks} == {url}
            assert {h.params["secret_token"] for h in hooks} == {secret}
            reaction = tg.message_reaction(group, ans.result["message_id"], bob, old=[], new=["👎"])
            mark = len(tg.requests)
            assert await _post_until_up(http, b_url, {"update_id": 3, **reaction}, secret) == 200
            await tg.wait_for("editMessageReplyMarkup", since=mark, timeout=15)
        finally:
            stop.set()
            await asyncio.wait_for(asyncio.gather(*tasks), 20)
    with indexed_home.app.sessions() as s:
        votes = s.scalars(select(Feedback).where(Feedback.query_id == qid)).all()
    assert [(v.verdict, v.active, v.platform) for v in votes] == [("wrong", True, "telegram")]
