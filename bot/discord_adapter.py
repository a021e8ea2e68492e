"""The Discord platform (discord.py 2.7): the client that carries `RecognitionCog`
(`bot.discord_cog`) and `PrefsCog`, its intents, and running it until a stop event inside the
caller's loop; `DiscordAdapter` is its registration for `anirec run`.

Lifecycle: `build_discord_bot()` then `run_discord(bot, token, stop)` inside a running loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import discord
from discord.ext import commands
from pydantic import SecretStr

from bot.chat.adapter import Launch
from bot.discord_cog import DEFAULTS, RecognitionCog
from bot.discord_prefs import CatalogueTranslator, PrefsCog
from core.errors import ConfigError
from core.service import RecognitionService

logger = logging.getLogger(__name__)


def intents() -> discord.Intents:
    """guilds, guild and DM messages, MESSAGE CONTENT (privileged), reactions."""
    i = discord.Intents.none()
    i.guilds = True
    i.guild_messages = True
    i.dm_messages = True
    i.message_content = True
    i.reactions = True  # guild and DM reactions
    return i


class AniRecBot(commands.Bot):
    """A `commands.Bot` whose `setup_hook` loads `RecognitionCog` (and syncs app commands only
    when asked: syncing is rate-limited, so the operator does it on deploys)."""

    def __init__(self, service: RecognitionService, *, owner_ids: Iterable[int] = (),
                 auto_channels: Iterable[int] = (), max_images: int = DEFAULTS.max_images,
                 sync_commands: bool = False, allow_private_urls: bool = False,
                 any_link_host: bool = False, **client_kwargs: Any) -> None:
        client_kwargs.setdefault("intents", intents())
        client_kwargs.setdefault("help_command", None)
        client_kwargs.setdefault("allowed_mentions", discord.AllowedMentions.none())
        super().__init__(command_prefix=commands.when_mentioned, **client_kwargs)
        self.service = service
        self.sync_commands = sync_commands
        # (not `owner_ids`: commands.Bot has its own, for its prefix-command owner checks)
        self._cog_owner_ids = tuple(owner_ids)
        self._cog_auto_channels = tuple(auto_channels)
        self._cog_max_images = max_images
        self._cog_allow_private_urls = allow_private_urls
        self._cog_any_link_host = any_link_host
        #: Written only after a successful sync (a failed start must not mark them synced).
        self.sync_marker: Path | None = None

    async def setup_hook(self) -> None:
        cog = RecognitionCog(
            self, self.service, owner_ids=self._cog_owner_ids,
            auto_channels=self._cog_auto_channels, max_images=self._cog_max_images,
            allow_private_urls=self._cog_allow_private_urls, any_link_host=self._cog_any_link_host)
        await self.tree.set_translator(CatalogueTranslator())
        await self.add_cog(cog)
        await self.add_cog(PrefsCog(self.service, cog.settings, cog.closest, cog.answer_picked))
        if self.sync_commands:
            synced = await self.tree.sync()
            logger.info("discord: synced %d application commands", len(synced))
            if self.sync_marker is not None:
                self.sync_marker.parent.mkdir(parents=True, exist_ok=True)
                self.sync_marker.write_text("slash commands synced; delete this file or use "
                                            "--sync-commands to sync again\n")

    @property
    def cog(self) -> RecognitionCog:
        cog = self.get_cog("RecognitionCog")
        assert isinstance(cog, RecognitionCog)
        return cog

    async def on_message(self, message: discord.Message, /) -> None:
        """No prefix commands: the cog's listener handles messages."""
        return None


class AniRecShardedBot(AniRecBot, commands.AutoShardedBot):
    """`AniRecBot` over several gateway shards (discord.py's `AutoShardedClient`): with
    `shard_count` and `shard_ids`, this process runs those shards of `shard_count`, so
    several processes (sharing the catalog and the vector index) split the guilds; Discord
    sends a guild's events to shard `(guild_id >> 22) % shard_count`, DMs to shard 0."""


def build_discord_bot(service: RecognitionService, *, owner_ids: Iterable[int] = (),
                      auto_channels: Iterable[int] = (), max_images: int = DEFAULTS.max_images,
                      **client_kwargs: Any) -> AniRecBot:
    """The Discord bot, ready for `run_discord`.

    Args:
        service: a started (or starting) RecognitionService.
        owner_ids: Discord user ids allowed to run /anirec stats and /anirec reload.
        auto_channels: channel ids where every picture is answered (threads under them too).
        max_images: media answered per message.
        **client_kwargs: `sync_commands=True` to sync the command tree in setup_hook;
            `allow_private_urls=True` to let links point at private addresses (tests);
            `any_link_host=True` to follow links to any public host, not only Discord's CDN;
            `shard_count=N` (and `shard_ids=[...]`, the shards this process runs) for an
            `AniRecShardedBot`;
            anything else goes to `commands.Bot` (e.g. `guild_ready_timeout`).
    """
    for key in ("shard_count", "shard_ids"):
        if not client_kwargs.get(key):
            client_kwargs.pop(key, None)  # (no shard_ids: all shards in this process)
    cls = AniRecShardedBot if "shard_count" in client_kwargs else AniRecBot
    return cls(service, owner_ids=owner_ids, auto_channels=auto_channels,
               max_images=max_images, **client_kwargs)


async def run_discord(bot: commands.Bot, token: str | SecretStr, stop: asyncio.Event) -> None:
    """Run the bot until `stop` is set (or it fails), inside the caller's event loop."""
    raw = token.get_secret_value() if isinstance(token, SecretStr) else token
    if not raw:
        raise ConfigError("DISCORD_TOKEN is empty.")
    async with bot:
        runner = asyncio.create_task(bot.start(raw), name="discord-bot")
        stopper = asyncio.create_task(stop.wait(), name="discord-stop")
        try:
            await asyncio.wait({runner, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()
            stopping = not runner.done()
            if stopping:
                await bot.close()
            try:
                await runner  # re-raises a failed login/connection
            except asyncio.CancelledError:
                pass
            except Exception as exc:
                if not stopping:
                    raise
                # closed while still connecting: the half-open connection fails as it goes
                logger.info("discord: stopped while connecting (%s)", type(exc).__name__)



class DiscordAdapter:
    """The Discord platform for `anirec run` (see `bot.chat.adapter.PlatformAdapter`)."""

    name = "discord"
    url: str | None = None

    def __init__(self, bot: AniRecBot, token: SecretStr | str) -> None:
        self.bot = bot
        self.token = token

    @classmethod
    def from_launch(cls, launch: Launch) -> DiscordAdapter:
        """The bot from the settings; slash commands are synced on the first start (syncing
        is rate-limited), or when `launch.sync_commands` asks for it."""
        st = launch.settings
        assert st.discord_token is not None
        marker: Path = st.home / "discord-commands.synced"
        sync = launch.sync_commands or not marker.exists()
        bot = build_discord_bot(launch.service, owner_ids=st.discord_owner_ids,
                                auto_channels=st.discord_auto_channels, sync_commands=sync,
                                any_link_host=st.allow_link_downloads,
                                shard_count=st.discord_shard_count,
                                shard_ids=list(st.discord_shard_ids) or None)
        if st.discord_shard_count is not None:
            logger.info("discord: shards %s of %d in this process",
                        st.discord_shard_ids or "all", st.discord_shard_count)
        bot.sync_marker = marker
        return cls(bot, st.discord_token)

    async def run(self, stop: asyncio.Event) -> None:
        await run_discord(self.bot, self.token, stop)


__all__ = ["AniRecBot", "AniRecShardedBot", "DiscordAdapter", "build_discord_bot", "intents", "run_discord"]
