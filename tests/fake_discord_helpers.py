"""Fixtures and helpers shared by the fake-Discord tests (a bare `commands.Bot` on the fake,
starting and stopping it, waiting for conditions).
"""

from __future__ import annotations

import asyncio
import io
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any

import discord
import discord.gateway
import discord.http
import pytest
from discord.ext import commands
from PIL import Image

from tests.fakes.discord_server import FakeDiscord

HEARTBEAT_MS = 250


def png_bytes(
    width: int = 64, height: int = 48, color: tuple[int, int, int] = (200, 30, 60)
) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buf, format="PNG")
    return buf.getvalue()


class FastReidentifyBot(commands.Bot):
    """discord.py sleeps 5 s before every IDENTIFY but the first (identify rate limit)."""

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        return None


def make_bot(cls: type[commands.Bot] = commands.Bot) -> commands.Bot:
    intents = discord.Intents.none()
    intents.guilds = True
    intents.guild_messages = True
    intents.dm_messages = True
    intents.message_content = True
    intents.reactions = True  # guild and DM reactions
    return cls(command_prefix="!", intents=intents, help_command=None, guild_ready_timeout=0.05)


async def eventually(
    condition: Callable[[], object], timeout: float = 5.0, what: str = "condition"
) -> None:
    """Poll ``condition`` until truthy (the bot handles events on the same loop)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def start_bot(dc: FakeDiscord, bot: commands.Bot) -> asyncio.Task[None]:
    task = asyncio.create_task(bot.start(dc.token), name="bot-under-test")
    ready = asyncio.create_task(bot.wait_until_ready())
    done, _ = await asyncio.wait({task, ready}, timeout=10, return_when=asyncio.FIRST_COMPLETED)
    if ready not in done:
        ready.cancel()
        if task.done():
            task.result()  # surface the start error
        raise AssertionError("bot did not become ready")
    return task


async def stop_bot(bot: commands.Bot, task: asyncio.Task[None]) -> None:
    await bot.close()
    await asyncio.wait_for(task, 5)  # start() returns once closed; re-raises if it failed


@pytest.fixture
async def dc() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord(heartbeat_interval_ms=HEARTBEAT_MS) as fake:
        yield fake
        assert not fake.errors, f"the fake itself failed: {fake.errors!r}"


@pytest.fixture
async def bot(dc: FakeDiscord, caplog: pytest.LogCaptureFixture) -> AsyncIterator[commands.Bot]:
    client = make_bot(FastReidentifyBot)
    task = await start_bot(dc, client)
    try:
        yield client
    finally:
        await stop_bot(client, task)
    # discord.py logs (and swallows) exceptions raised in event handlers: surface them.
    records = [*caplog.get_records("setup"), *caplog.get_records("call"), *caplog.records]
    logged = [r for r in records if r.levelno >= logging.ERROR and r.name.startswith("discord")]
    assert not logged, [r.getMessage() for r in logged]


def own_filter(
    bot: commands.Bot,
    sink: list[discord.Message],
    handler: Callable[[discord.Message], Awaitable[None]],
) -> Callable[[discord.Message], Coroutine[Any, Any, None]]:
    """Wrap an on_message handler so the bot's own echoed messages go to ``sink`` instead."""

    async def on_message(message: discord.Message) -> None:
        if message.author == bot.user:
            sink.append(message)
            return
        await handler(message)

    return on_message
