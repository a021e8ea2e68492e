"""The Discord bot's recognition cog (discord.py 2.7): a thin layer over `RecognitionService`.

Flow: event → which media, and should we answer? → size check → download → bytes + `Source`
→ `service.recognize` → `discord_render` → reply (embed, buttons) → edit it to attach the
preview clip once cut (`bot.chat.preview`). Every
decision about pictures lives in core; this module only translates.

When it answers:
- image attachments (PNG/JPEG/WebP/GIF/BMP), clips (MP4/WebM/MOV), stickers (PNG/APNG/GIF;
  Lottie stickers get a friendly refusal) and image links (http(s) URLs ending in an image or
  clip extension, or Discord CDN attachment links) in the operator's auto channels (and
  threads under them);
- anywhere: a message that mentions the bot and has media, or that mentions the bot in a
  reply to a message with media (the referenced message is fetched when not resolved);
- the slash command ``/anime`` (``image`` attachment or ``url``), the message context-menu
  command "Identify anime", and direct messages (always).
Up to `max_images` media per message are answered, one reply each; a picker (select menu)
offers the others. Links and pictures inside embeds (Tenor clips) count. Bots are ignored.
Downloads: an attachment's declared size is checked against the service's byte limit BEFORE
it is downloaded; links go through `bot.chat.fetch.LinkFetcher` (public addresses only).
Which media a message carries is `bot.discord_media`; where replies go, `bot.discord_reply`.

Feedback: buttons ✅ ❌ 1–n under each answer (`bot.discord_components`, handled by
`bot.discord_prefs.PrefsCog`); people's own ✅ ❌ 1️⃣–5️⃣ reactions still count (raw events, so
uncached messages work; a removed reaction withdraws the vote). An unknown message is fetched
and its buttons' custom ids read, so reactions keep working after a restart. `/settings`:
language, title language, and (server managers) private answers to /anime.
Adult series: shown plainly only in NSFW channels; elsewhere, including DMs, they are
spoilered (see `bot.discord_render`).

Errors become user text in one place, `RecognitionCog.report` (logged first). The client
that carries this cog, and its lifecycle, are `bot.discord_adapter`.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import aiohttp
import discord
from discord import app_commands
from discord.ext import commands

from bot.chat.feedback import emoji_feedback
from bot.chat.fetch import PLATFORM_MEDIA_HOSTS, DownloadFailed, LinkFetcher
from bot.chat.i18n import text
from bot.chat.preview import follow_up
from bot.chat.settings import ChatSettings
from bot.chat.state import AnswerMemory, Owners, UserLocks
from bot.chat.texts import said, too_large, user_error_text
from bot.discord_components import picker_view
from bot.discord_media import (
    Found,
    MediaRef,
    find_media,
    is_media_attachment,
    not_media,
)
from bot.discord_prefs import DEFAULT_PREFS, AnswerPrefs, answer_prefs
from bot.discord_render import (
    help_text,
    query_id_from_message,
    render_answer,
    render_stats,
    skipped_text,
)
from bot.discord_reply import Interaction, InteractionReplier, MessageReplier, Replier
from core.errors import AniRecError, Busy, NotFound, RateLimited
from core.service import RecognitionService
from core.types import Recognition, Source

logger = logging.getLogger(__name__)

CONTEXT_MENU_NAME = text("en", "dc.cmd.identify")



@dataclass(frozen=True)
class DiscordParams:
    """Sizes and time limits of the Discord bot."""

    #: Answers remembered for reactions (message id → query id).
    answer_memory: int = 10_000
    #: Message ids known not to be answers (so a reaction there does not fetch it again).
    not_ours_memory: int = 10_000
    #: Seconds for an attachment or sticker download from Discord's CDN.
    attachment_timeout_s: float = 30.0
    #: Media answered per message (more are skipped with a note).
    max_images: int = 4


DEFAULTS = DiscordParams()


# -- where and who ----------------------------------------------------------------------------

def _nsfw(channel: object) -> bool:
    """NSFW channels (and threads in them) allow adult titles; DMs do not."""
    check = getattr(channel, "is_nsfw", None)
    try:
        return bool(check()) if callable(check) else False
    except Exception:  # a partial channel without the flag
        return False


def source_of(user_id: int, guild_id: int | None, channel_id: int | None, channel: object) -> Source:
    """Per-user and per-guild (per-DM) limits come from the service."""
    return Source(platform="discord", chat_id=str(guild_id or channel_id or 0),
                  user_id=str(user_id), allow_adult=_nsfw(channel))


# -- the cog -------------------------------------------------------------------------------------

class RecognitionCog(commands.Cog):
    """Answers pictures, reads feedback reactions, and has the owner commands."""

    anirec = app_commands.Group(name="anirec", description=text("en", "dc.cmd.anirec"))

    def __init__(self, bot: commands.Bot, service: RecognitionService, *,
                 owner_ids: Iterable[int] = (), auto_channels: Iterable[int] = (),
                 max_images: int = DEFAULTS.max_images, allow_private_urls: bool = False,
                 answer_map_size: int = DEFAULTS.answer_memory, any_link_host: bool = False) -> None:
        if max_images < 1:
            raise ValueError("max_images must be at least 1")
        self.bot = bot
        self.service = service
        self.owners = Owners(owner_ids)
        self.auto_channels = frozenset(int(x) for x in auto_channels)
        self.max_images = max_images
        self.answers: AnswerMemory[int, str] = AnswerMemory(answer_map_size)
        self._not_ours: AnswerMemory[int, str] = AnswerMemory(DEFAULTS.not_ours_memory)
        self.links = LinkFetcher(allow_private=allow_private_urls,
                                 hosts=None if any_link_host else PLATFORM_MEDIA_HOSTS)
        self._locks = UserLocks()
        self.settings = ChatSettings.of(service)
        self.closest: AnswerMemory[str, str] = AnswerMemory(answer_map_size)
        self.pending: AnswerMemory[str, tuple[list[MediaRef], Source]] = AnswerMemory(1024)
        self.ctx_menu = app_commands.ContextMenu(name=CONTEXT_MENU_NAME,
                                                 callback=self.identify_message)
        self.ctx_menu.error(self._context_menu_error)

    async def cog_load(self) -> None:
        self.bot.tree.add_command(self.ctx_menu)

    async def cog_unload(self) -> None:
        self.bot.tree.remove_command(self.ctx_menu.name, type=self.ctx_menu.type)
        await self.links.close()

    # -- the one place errors become user text ---------------------------------------------------

    async def report(self, error: BaseException, reply: Replier | None,
                     lang: str | None = None) -> None:
        """Log `error`, then tell the person (when there is someone to tell), in `lang`."""
        if isinstance(error, (app_commands.CommandInvokeError, commands.CommandInvokeError)):
            error = error.original
        if isinstance(error, AniRecError):
            logger.info("discord: %s: %s", type(error).__name__, error)
        elif isinstance(error, discord.HTTPException):
            logger.warning("discord: API call failed: %s: %s", type(error).__name__, error)
        else:
            logger.error("discord: error while answering", exc_info=error)
        if reply is None:
            return
        if isinstance(error, discord.Forbidden):
            return  # no permission to post here: replying would fail the same way
        try:
            await reply.send(content=user_error_text(error, lang))
        except discord.HTTPException as exc:
            logger.info("could not send the error text: %s", exc)

    async def prefs(self, interaction: Interaction) -> AnswerPrefs:
        """How to answer the person behind `interaction` (their choice, else their locale)."""
        return await answer_prefs(self.settings, interaction.user.id, interaction.guild_id,
                                  interaction.locale)

    async def cog_app_command_error(self, interaction: Interaction,
                                    error: app_commands.AppCommandError) -> None:
        await self.report(error, InteractionReplier(interaction), (await self.prefs(interaction)).lang)

    async def _context_menu_error(self, interaction: Interaction,
                                  error: app_commands.AppCommandError) -> None:
        await self.report(error, InteractionReplier(interaction), (await self.prefs(interaction)).lang)

    async def cog_command_error(self, ctx: commands.Context[Any], error: Exception) -> None:
        await self.report(error, None)

    # -- recognise and answer ----------------------------------------------------------------------

    def _limit(self) -> int:
        return int(self.service.limits.max_bytes)

    async def download(self, ref: MediaRef) -> bytes:
        """The bytes of one media item; sizes are checked before and while downloading."""
        limit = self._limit()
        if ref.size is not None and ref.size > limit:
            raise too_large(ref.size, limit)
        try:
            if ref.attachment is not None:
                async with asyncio.timeout(DEFAULTS.attachment_timeout_s):
                    data = await ref.attachment.read()
            elif ref.sticker is not None:
                async with asyncio.timeout(DEFAULTS.attachment_timeout_s):
                    data = await ref.sticker.read()
            elif ref.url is not None:
                data = await self.links.fetch(ref.url, limit)
            else:
                raise DownloadFailed()
        except TimeoutError:
            raise said(DownloadFailed, "error.download_slow") from None
        except (discord.HTTPException, aiohttp.ClientError) as exc:
            logger.info("download of %s failed: %s", ref.kind, exc)
            raise DownloadFailed() from None
        if len(data) > limit:
            raise too_large(len(data), limit)
        return data

    async def answer_one(self, ref: MediaRef, source: Source, reply: Replier,
                         prefs: AnswerPrefs = DEFAULT_PREFS,
                         follow: list[asyncio.Task[None]] | None = None) -> Recognition:
        """Download, recognise, reply with the embed and its buttons (votes, links; a
        no-match's "Show closest scenes"), then edit the reply to attach the preview clip and
        still once they are cut (`add_preview`). With `follow`, that edit runs as a task
        appended to it (the caller awaits it; the next picture need not wait); else here."""
        data = await self.download(ref)
        rec = await self.service.recognize(data, source=source, sticker=ref.is_sticker,
                                           with_preview=prefs.preview)
        rendered = render_answer(rec, adult_ok=source.allow_adult, lang=prefs.lang,
                                 title_lang=prefs.title_lang)
        try:
            sent = await reply.send(embed=rendered.embed, files=rendered.files(), view=rendered.view)
        except discord.HTTPException as exc:
            if not rendered.attachments or exc.status not in (400, 413):
                raise
            logger.warning("sending the preview failed (%s); answering without it", exc)
            rendered.embed.set_image(url=None).set_thumbnail(url=None)
            sent = await reply.send(embed=rendered.embed, view=rendered.view)
        if rec.query_id and rendered.closest:
            self.closest.put(rec.query_id, f"{rendered.closest_label}\n{rendered.closest}")
        if sent is not None and rec.query_id and rendered.n_candidates:
            self.answers.put(sent.id, rec.query_id)
        if sent is not None and not rendered.attachments:
            job = self.add_preview(sent, rec, source, prefs)
            if follow is None:
                await job
            else:
                follow.append(asyncio.create_task(job))
        return rec

    async def add_preview(self, sent: discord.Message, rec: Recognition, source: Source,
                          prefs: AnswerPrefs = DEFAULT_PREFS) -> None:
        """Edit an answer that went out to attach its preview clip, still and named-faces
        picture, once made. Nothing to add (previews off, a no-match, a failed cut) leaves the
        answer as it is; so does a failed edit (logged, never shown)."""
        full = await follow_up(self.service, rec)
        if full is None:
            return
        rendered = render_answer(full, adult_ok=source.allow_adult, lang=prefs.lang,
                                 title_lang=prefs.title_lang)
        files = rendered.files()
        if not files:
            return
        try:
            await sent.edit(embed=rendered.embed, attachments=files)
        except discord.HTTPException as exc:
            logger.warning("attaching the preview failed (%s); the answer stays without it", exc)

    async def answer_all(self, found: Found, source: Source, reply: Replier,
                         prefs: AnswerPrefs = DEFAULT_PREFS) -> None:
        """Answer each media item (up to max_images), then say if some were skipped. Each
        answer goes out as soon as it is known; the previews follow (edits) as they are cut."""
        refs = found.refs[: self.max_images]
        follow: list[asyncio.Task[None]] = []
        try:
            async with reply.working():
                for ref in refs:
                    try:
                        await self.answer_one(ref, source, reply, prefs, follow)
                    except (Busy, RateLimited) as exc:  # the rest would get the same answer
                        await self.report(exc, reply, prefs.lang)
                        return
                    except Exception as exc:  # one bad picture must not stop the others
                        await self.report(exc, reply, prefs.lang)
                rest = found.refs[self.max_images:]
                if rest:  # a picker for the others: the person chooses which to look at next
                    token = secrets.token_urlsafe(9)
                    self.pending.put(token, (rest, source))
                    await reply.send(content=skipped_text(len(refs), len(rest), prefs.lang),
                                     view=picker_view(token, [r.name for r in rest], prefs.lang))
        finally:
            for result in await asyncio.gather(*follow, return_exceptions=True):
                if isinstance(result, Exception):
                    logger.warning("adding a preview failed: %s", result)

    async def answer_picked(self, interaction: Interaction, token: str, index: int) -> None:
        """A picture chosen in the picker: answered like the first ones (as a follow-up)."""
        pending = self.pending.get(token)
        prefs = await self.prefs(interaction)
        if pending is None or not 0 <= index < len(pending[0]):
            await interaction.response.send_message(text(prefs.lang, "picker.gone"), ephemeral=True)
            return
        await interaction.response.defer(thinking=True)
        await self.answer_all(Found([pending[0][index]]), pending[1],
                              InteractionReplier(interaction), prefs)

    # -- messages ----------------------------------------------------------------------------------

    def _is_auto(self, channel: object) -> bool:
        ids = {getattr(channel, "id", None), getattr(channel, "parent_id", None)}
        return bool(ids & self.auto_channels)

    async def _referenced(self, message: discord.Message) -> discord.Message | None:
        ref = message.reference
        if ref is None or ref.message_id is None:
            return None
        if isinstance(ref.resolved, discord.Message):
            return ref.resolved
        try:
            channel = self.bot.get_partial_messageable(ref.channel_id or message.channel.id)
            return await channel.fetch_message(ref.message_id)
        except discord.HTTPException as exc:
            logger.info("could not fetch the referenced message: %s", exc)
            return None

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        """Pictures in auto channels and DMs; mentions with (or replying to) a picture."""
        me = self.bot.user
        if me is None or message.author.bot or message.author.id == me.id:
            return  # our own echoes, other bots, webhooks
        if message.type not in (discord.MessageType.default, discord.MessageType.reply):
            return
        dm = message.guild is None
        mentioned = me.id in message.raw_mentions
        if not (dm or mentioned or self._is_auto(message.channel)):
            return
        reply = MessageReplier(message)
        gid = message.guild.id if message.guild else None
        prefs = DEFAULT_PREFS
        try:
            prefs = await answer_prefs(self.settings, message.author.id, gid,
                                       message.guild.preferred_locale if message.guild else None)
            found = find_media(message)
            if (not found.refs and found.problem is None and message.reference is not None
                    and (mentioned or dm)):
                target = await self._referenced(message)
                if target is not None and target.author.id == me.id:
                    return  # a reply to one of our answers ("thanks!"): nothing to look at
                if target is not None:
                    found = find_media(target)
            if not found.refs:
                if found.problem is not None:
                    raise found.problem
                if dm or mentioned:
                    await reply.send(content=help_text(prefs.lang) if dm
                                     else text(prefs.lang, "dc.mention_hint"))
                return
            source = source_of(message.author.id, gid, message.channel.id, message.channel)
            await self.answer_all(found, source, reply, prefs)
        except Exception as exc:
            await self.report(exc, reply, prefs.lang)

    # -- app commands ------------------------------------------------------------------------------

    def _interaction_source(self, interaction: Interaction) -> Source:
        return source_of(interaction.user.id, interaction.guild_id, interaction.channel_id,
                         interaction.channel)

    @app_commands.command(name="anime", description=text("en", "dc.cmd.anime"))
    @app_commands.describe(image=text("en", "dc.cmd.anime.image"), url=text("en", "dc.cmd.anime.url"))
    async def anime(self, interaction: Interaction,
                    image: discord.Attachment | None = None, url: str | None = None) -> None:
        """/anime image:<file> or url:<link>."""
        refs: list[MediaRef] = []
        if image is not None:
            if not is_media_attachment(image):
                raise not_media()
            refs.append(MediaRef("attachment", image.filename, size=image.size,
                                 attachment=image))
        if url:
            url = url.strip().strip("<>")
            if not url.lower().startswith(("http://", "https://")):
                raise said(DownloadFailed, "error.not_http")
            refs.append(MediaRef("link", url.rsplit("/", 1)[-1][:64], url=url))
        if not refs:
            await interaction.response.send_message(
                text((await self.prefs(interaction)).lang, "dc.slash_hint"), ephemeral=True)
            return
        await self._answer_interaction(interaction, Found(refs))

    async def _answer_interaction(self, interaction: Interaction, found: Found) -> None:
        """/anime and Identify anime: private (ephemeral) when the server asks for it."""
        prefs = await self.prefs(interaction)
        await interaction.response.defer(thinking=True, ephemeral=prefs.private)
        await self.answer_all(found, self._interaction_source(interaction),
                              InteractionReplier(interaction, ephemeral=prefs.private), prefs)

    async def identify_message(self, interaction: Interaction,
                               message: discord.Message) -> None:
        """Message context menu → Apps → "Identify anime"."""
        me = self.bot.user
        # Our own answers carry our preview, not the person's picture.
        found = Found([]) if me is not None and message.author.id == me.id else find_media(message)
        if not found.refs:
            if found.problem is not None:
                raise found.problem
            await interaction.response.send_message(
                text((await self.prefs(interaction)).lang, "dc.no_media"), ephemeral=True)
            return
        await self._answer_interaction(interaction, found)

    async def _owner(self, interaction: Interaction) -> bool:
        if self.owners.allows(interaction.user.id):
            return True
        await interaction.response.send_message(
            text((await self.prefs(interaction)).lang, "error.owner_only"), ephemeral=True)
        return False

    @anirec.command(name="stats", description=text("en", "dc.cmd.anirec.stats"))
    async def stats(self, interaction: Interaction) -> None:
        if not await self._owner(interaction):
            return
        stats = await self.service.stats()
        stats["answers_remembered"] = len(self.answers)
        stats["guilds"] = len(self.bot.guilds)
        await interaction.response.send_message(render_stats(stats), ephemeral=True)

    @anirec.command(name="reload", description=text("en", "dc.cmd.anirec.reload"))
    async def reload(self, interaction: Interaction) -> None:
        if not await self._owner(interaction):
            return
        await interaction.response.defer(ephemeral=True, thinking=True)
        what = await self.service.reload()
        await interaction.followup.send(text((await self.prefs(interaction)).lang, "reloaded", what=what),
                                        ephemeral=True)

    # -- feedback reactions ------------------------------------------------------------------------

    async def query_for(self, channel_id: int, message_id: int) -> str | None:
        """The query an answer message belongs to: the LRU, else the message's footer."""
        qid = self.answers.get(message_id)
        if qid is not None or message_id in self._not_ours:
            return qid
        me = self.bot.user
        try:
            msg = await self.bot.get_partial_messageable(channel_id).fetch_message(message_id)
        except discord.HTTPException as exc:
            logger.info("could not fetch message %s for a reaction: %s", message_id, exc)
            return None
        qid = query_id_from_message(msg) if me is not None and msg.author.id == me.id else None
        if qid is None:
            self._not_ours.put(message_id, "")
        else:
            self.answers.put(message_id, qid)
        return qid

    def _is_bot(self, payload: discord.RawReactionActionEvent) -> bool:
        if payload.member is not None:
            return payload.member.bot
        user = self.bot.get_user(payload.user_id)
        return bool(user is not None and user.bot)

    async def _on_reaction(self, payload: discord.RawReactionActionEvent, added: bool) -> None:
        me = self.bot.user
        if me is None or payload.user_id == me.id:
            return  # our own ✅ ❌ 1️⃣ echoes
        if payload.emoji.id is not None:
            return  # custom emoji are never votes
        vote = emoji_feedback(payload.emoji.name or "")
        if vote is None:
            return
        if payload.message_author_id is not None and payload.message_author_id != me.id:
            return
        if self._is_bot(payload):
            return
        verdict, rank = vote
        source = Source(platform="discord",
                        chat_id=str(payload.guild_id or payload.channel_id),
                        user_id=str(payload.user_id))
        try:
            async with self._locks(payload.user_id):
                qid = await self.query_for(payload.channel_id, payload.message_id)
                if qid is None:
                    return
                if added:
                    await self.service.record_feedback(qid, verdict, source=source, rank=rank)
                else:
                    await self.service.withdraw_feedback(qid, source=source, verdict=verdict,
                                                         rank=rank)
        except (ValueError, NotFound) as exc:  # a number beyond the candidates; an old answer
            logger.info("reaction on %s ignored: %s", payload.message_id, exc)
        except Exception as exc:
            await self.report(exc, None)

    @commands.Cog.listener()
    async def on_raw_reaction_add(self, payload: discord.RawReactionActionEvent) -> None:
        """✅ → right, ❌ → wrong, 1️⃣–5️⃣ → it was that candidate (replaces the earlier vote)."""
        await self._on_reaction(payload, added=True)

    @commands.Cog.listener()
    async def on_raw_reaction_remove(self, payload: discord.RawReactionActionEvent) -> None:
        """A removed reaction withdraws that vote (if it is still the person's vote)."""
        await self._on_reaction(payload, added=False)


__all__ = ["CONTEXT_MENU_NAME", "DEFAULTS", "DiscordParams", "RecognitionCog", "source_of"]
