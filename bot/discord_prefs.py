"""Discord: the answer's buttons pressed (votes, "Show closest scenes") and the `/settings`
command (your language and title language; a server manager's private answers).

`PrefsCog` sits next to `RecognitionCog` and shares its service. Button presses come as
component interactions; their custom ids say what they are (`bot.discord_components`), so
a press on an answer from before a restart still counts.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

import discord
from discord import app_commands
from discord.ext import commands

from bot.chat.feedback import feedback_toast, parse_feedback
from bot.chat.i18n import EN, LANG_NAMES, pick_lang, text
from bot.chat.settings import ChatSettings, Prefs
from bot.chat.state import AnswerMemory, UserLocks
from bot.discord_components import CLOSEST_PREFIX, PICK_PREFIX, links_of, ranks_of, vote_view
from bot.discord_reply import Interaction
from core.errors import NotFound
from core.service import RecognitionService
from core.types import Source

logger = logging.getLogger(__name__)

LangChoice = Literal["en", "ja", "zh"]
TitleChoice = Literal["en", "ja", "zh", "ja-Latn", "default"]


@dataclass(frozen=True)
class AnswerPrefs:
    """How to answer this person here."""

    lang: str = "en"
    title_lang: str | None = None
    private: bool = False  # ephemeral answers to /anime and Identify anime (per server)
    preview: bool = True  # with the preview clip


DEFAULT_PREFS = AnswerPrefs()


async def answer_prefs(settings: ChatSettings, user_id: int, guild_id: int | None,
                       locale: object = None) -> AnswerPrefs:
    """Their choice, else the server's, else their Discord locale; private per server."""
    p = await settings.get("discord", user_id=str(user_id),
                           chat_id=str(guild_id) if guild_id else None)
    server = await settings.get("discord", chat_id=str(guild_id)) if guild_id else Prefs()
    lang = p.lang or pick_lang(str(getattr(locale, "value", locale) or "")) or "en"
    return AnswerPrefs(lang, p.title_lang, bool(server.ephemeral), p.with_preview)


class CatalogueTranslator(app_commands.Translator):
    """The slash commands' descriptions (and the "Identify anime" menu name) in Japanese and
    Chinese for people whose Discord is in those languages: every English text of a command
    is a `dc.cmd.*` entry of the catalogue, found by its English wording."""

    def __init__(self) -> None:
        self._keys = {v: k for k, v in EN.items() if k.startswith("dc.cmd.")}

    async def translate(self, string: app_commands.locale_str, locale: discord.Locale,
                        context: app_commands.TranslationContextTypes) -> str | None:
        key = self._keys.get(string.message)
        lang = pick_lang(locale.value)
        if key is None or lang is None or lang == "en":
            return None
        return text(lang, key)


class PrefsCog(commands.Cog):
    """Component presses on answers, and /settings."""

    def __init__(self, service: RecognitionService, settings: ChatSettings,
                 closest: AnswerMemory[str, str],
                 answer_picked: Callable[[Interaction, str, int], Awaitable[None]] | None = None
                 ) -> None:
        self.service = service
        self.settings = settings
        self.closest = closest
        self.answer_picked = answer_picked
        self._locks = UserLocks()

    @commands.Cog.listener()
    async def on_interaction(self, interaction: Interaction) -> None:
        if interaction.type is not discord.InteractionType.component:
            return
        data: dict[str, object] = dict(interaction.data or {})
        custom_id = str(data.get("custom_id", ""))
        try:
            if custom_id.startswith(CLOSEST_PREFIX):
                await self._closest(interaction, custom_id.removeprefix(CLOSEST_PREFIX))
            elif custom_id.startswith("fb:"):
                await self._vote(interaction, custom_id)
            elif custom_id.startswith(PICK_PREFIX) and self.answer_picked is not None:
                values = data.get("values")
                first = str(values[0]) if isinstance(values, list) and values else ""
                await self.answer_picked(interaction, custom_id.removeprefix(PICK_PREFIX),
                                         int(first) if first.isdigit() else -1)
        except discord.HTTPException as exc:
            logger.warning("discord: answering a button press failed: %s", exc)

    async def _lang(self, interaction: Interaction) -> str:
        return (await answer_prefs(self.settings, interaction.user.id, interaction.guild_id,
                                   interaction.locale)).lang

    async def _vote(self, interaction: Interaction, custom_id: str) -> None:
        action = parse_feedback(custom_id)
        if action is None:
            await interaction.response.defer()
            return
        source = Source(platform="discord", chat_id=str(interaction.guild_id or interaction.channel_id),
                        user_id=str(interaction.user.id))
        try:
            async with self._locks(interaction.user.id):
                tally = await self.service.record_feedback(action.query_id, action.verdict,
                                                           source=source, rank=action.rank)
        except (ValueError, NotFound):
            await interaction.response.send_message(text(await self._lang(interaction), "vote.gone"),
                                                    ephemeral=True)
            return
        msg = interaction.message
        view = vote_view(action.query_id, ranks_of(msg) or 1, tally, links_of(msg))
        await interaction.response.edit_message(view=view)
        await interaction.followup.send(
            feedback_toast(action.verdict, action.rank, lang=await self._lang(interaction)),
            ephemeral=True)

    async def _closest(self, interaction: Interaction, query_id: str) -> None:
        shown = self.closest.get(query_id)
        if shown is None:
            await interaction.response.send_message(
                text(await self._lang(interaction), "error.answer_too_old"), ephemeral=True)
            return
        label, body = shown.split("\n", 1)
        msg = interaction.message
        embed = msg.embeds[0].copy() if msg is not None and msg.embeds else discord.Embed()
        embed.description = None
        embed.add_field(name=label, value=body, inline=False)
        await interaction.response.edit_message(embed=embed, view=None)

    @app_commands.command(name="settings", description=text("en", "dc.cmd.settings"))
    @app_commands.describe(language=text("en", "dc.cmd.settings.language"),
                           titles=text("en", "dc.cmd.settings.titles"),
                           preview=text("en", "dc.cmd.settings.preview"),
                           private=text("en", "dc.cmd.settings.private"))
    async def settings_command(self, interaction: Interaction, language: LangChoice | None = None,
                               titles: TitleChoice | None = None, preview: bool | None = None,
                               private: bool | None = None) -> None:
        uid = str(interaction.user.id)
        values: dict[str, object] = {}
        if language is not None:
            values["lang"] = language
        if titles is not None:
            values["title_lang"] = None if titles == "default" else titles
        if preview is not None:
            values["preview"] = preview
        if values:
            await self.settings.set("user", "discord", uid, **values)
        if private is not None:
            perms = getattr(interaction.user, "guild_permissions", None)
            if interaction.guild_id is None or perms is None or not perms.manage_guild:
                await interaction.response.send_message(
                    text(await self._lang(interaction), "settings.private_denied"), ephemeral=True)
                return
            await self.settings.set("chat", "discord", str(interaction.guild_id), ephemeral=private)
        now = await answer_prefs(self.settings, interaction.user.id, interaction.guild_id,
                                 interaction.locale)
        titles_name = LANG_NAMES.get(now.title_lang or now.lang, now.title_lang or now.lang)
        lines = [text(now.lang, "lang.set", titles=titles_name),
                 text(now.lang, "settings.preview_on" if now.preview else "settings.preview_off")]
        if interaction.guild_id is not None:
            lines.append(text(now.lang, "settings.private_on" if now.private
                              else "settings.private_off"))
        await interaction.response.send_message("\n".join(lines), ephemeral=True)
