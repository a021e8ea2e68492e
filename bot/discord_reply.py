"""Where a Discord answer goes: a reply to the message that asked, or an interaction's
follow-ups; and the typing indicator shown while recognising."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any, TypeAlias

import discord

logger = logging.getLogger(__name__)

#: Interactions of the bot (discord.py's `Cog` hooks take any client type).
Interaction: TypeAlias = discord.Interaction[Any]


class Replier:
    """Where answers go: a reply to a message, or an interaction's follow-ups."""

    async def send(self, *, content: str | None = None, embed: discord.Embed | None = None,
                   files: Sequence[discord.File] = (), view: discord.ui.View | None = None
                   ) -> discord.Message | None:
        raise NotImplementedError

    def working(self) -> contextlib.AbstractAsyncContextManager[None]:
        """Shown while recognising (typing indicator; interactions show "thinking")."""
        return contextlib.nullcontext()


def _message_kwargs(embed: discord.Embed | None, files: Sequence[discord.File],
                    view: discord.ui.View | None = None) -> dict[str, Any]:
    """Only the parts that are there (discord.py treats an explicit None differently). The
    values go to discord.py's overloaded `send`, which a narrower type cannot pick."""
    kwargs: dict[str, Any] = {}
    if embed is not None:
        kwargs["embed"] = embed
    if files:
        kwargs["files"] = list(files)
    if view is not None:
        kwargs["view"] = view
    return kwargs


class MessageReplier(Replier):
    def __init__(self, message: discord.Message) -> None:
        self.message = message

    async def send(self, *, content: str | None = None, embed: discord.Embed | None = None,
                   files: Sequence[discord.File] = (), view: discord.ui.View | None = None
                   ) -> discord.Message | None:
        return await self.message.channel.send(
            content, reference=self.message.to_reference(fail_if_not_exists=False),
            mention_author=False, **_message_kwargs(embed, files, view))

    def working(self) -> contextlib.AbstractAsyncContextManager[None]:
        return typing_in(self.message.channel)


class InteractionReplier(Replier):
    """Follow-ups of an interaction; `ephemeral`: only the person who asked sees them (the
    server's private-answers setting; the deferral must have been ephemeral too)."""

    def __init__(self, interaction: Interaction, *, ephemeral: bool = False) -> None:
        self.interaction = interaction
        self.ephemeral = ephemeral

    async def send(self, *, content: str | None = None, embed: discord.Embed | None = None,
                   files: Sequence[discord.File] = (), view: discord.ui.View | None = None
                   ) -> discord.Message | None:
        kwargs = _message_kwargs(embed, files, view)
        if content is not None:
            kwargs["content"] = content
        response = self.interaction.response
        if not response.is_done():
            # Nothing deferred yet (an error before any work): tell only the person who asked.
            await response.send_message(ephemeral=embed is None, **kwargs)
            return await self.interaction.original_response()
        return await self.interaction.followup.send(wait=True, ephemeral=self.ephemeral, **kwargs)


@contextlib.asynccontextmanager
async def typing_in(channel: discord.abc.Messageable) -> AsyncIterator[None]:
    """``async with channel.typing()`` that never fails the answer over a cosmetic call."""
    cm = channel.typing()
    try:
        await cm.__aenter__()
    except discord.HTTPException as exc:
        logger.info("typing indicator failed: %s", exc)
        yield
        return
    try:
        yield
    finally:
        await cm.__aexit__(None, None, None)


# -- state -----------------------------------------------------------------------------------------
