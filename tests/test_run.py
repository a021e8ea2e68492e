"""`anirec run`: both bots in one process on one event loop, sharing one service, against
the fake Discord and the fake Telegram Bot API; a clean stop."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.fakes.discord_server import FakeDiscord
from tests.fakes.telegram_server import FakeTelegram

TOKEN = "777:RUNTEST"


@pytest.fixture(autouse=True)
def _no_proxy(no_proxy: None) -> None:
    """Talk straight to the fakes."""


@pytest.mark.timeout(120)
async def test_both_bots_on_one_loop(indexed_home: Any) -> None:
    from bot.app import App
    from bot.cli.run import serve
    from core.config import Settings

    async with FakeDiscord() as dc, FakeTelegram(token=TOKEN, bot_username="anirec_run_bot") as tg:
        settings = Settings(_env_file=None, home=indexed_home.settings.home,  # type: ignore[call-arg]
                            discord_token=dc.token, telegram_token=TOKEN,
                            telegram_api_url=tg.base_url, telegram_file_url=tg.base_file_url,
                            discord_auto_channels=[int(dc.text_channel["id"])])
        stop = asyncio.Event()
        started: dict[str, Any] = {}
        task = asyncio.create_task(serve(App.from_settings(settings), stop=stop, ready=started.update))
        await tg.wait_for("getUpdates", timeout=30)
        assert started["platforms"] == ["discord", "telegram"]
        png = indexed_home.frame_png(0, 6.0)
        # Telegram: a photo in a private chat
        alice = tg.user(1001, "Alice", "alice")
        tg.push_update(tg.photo_message(tg.private_chat(alice), alice, png))
        sent = await tg.wait_for("sendVideo", timeout=30)
        assert indexed_home.series_title(0) in sent.params["caption"]
        # Discord: an image in an auto-answer channel, on the same loop
        for _ in range(100):
            if dc.identifies:
                break
            await asyncio.sleep(0.1)
        att = dc.add_attachment(png, "frame.png", "image/png")
        dc.message_create(dc.text_channel, dc.users[0], "", attachments=[att])
        post = await dc.wait_for("POST", r"^/channels/\d+/messages$", timeout=30)
        assert post.json["embeds"][0]["title"] == indexed_home.series_title(0)
        stop.set()
        assert await asyncio.wait_for(task, 30) == 0


@pytest.mark.timeout(60)
async def test_no_token_serves_the_web_chat(indexed_home: Any) -> None:
    import socket

    import aiohttp

    from bot.app import App
    from bot.cli.run import serve
    from core.config import Settings

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = Settings(_env_file=None, home=indexed_home.settings.home, web_port=port)  # type: ignore[call-arg]
    stop = asyncio.Event()
    started: dict[str, Any] = {}
    task = asyncio.create_task(serve(App.from_settings(settings), stop=stop, ready=started.update))
    for _ in range(100):
        if started:
            break
        await asyncio.sleep(0.05)
    assert started["platforms"] == ["web"]
    async with aiohttp.ClientSession() as http:
        for _ in range(100):
            try:
                async with http.get(started["web"]) as r:
                    assert r.status == 200 and "AniRec" in await r.text()
                    break
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.05)
        else:
            raise AssertionError("the web chat never came up")
    stop.set()
    assert await asyncio.wait_for(task, 30) == 0
