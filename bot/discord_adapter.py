"""The Discord bot (discord.py 2.7): a thin adapter over `RecognitionService`.

Flow: event → which media, and should we answer? → size check → download → bytes + `Source`
→ `service.recognize` → `discord_render` → reply (embed + preview file) → feedback reactions.
Every decision about pictures lives in core; this module only translates.

When it answers:
- image attachments (PNG/JPEG/WebP/GIF/BMP), clips (MP4/WebM/MOV), stickers (PNG/APNG/GIF;
  Lottie stickers get a friendly refusal) and image links (http(s) URLs ending in an image or
  clip extension, or Discord CDN attachment links) in the operator's auto channels (and
  threads under them);
- anywhere: a message that mentions the bot and has media, or that mentions the bot in a
  reply to a message with media (the referenced message is fetched when not resolved);
- the slash command ``/anime`` (``image`` attachment or ``url``), the message context-menu
  command "Identify anime", and direct messages (always).
Up to `max_images` media per message are answered, one reply each; the person is told when
more were skipped. The bot ignores its own messages and every other bot's.

Downloads: an attachment's declared size is checked against the service's byte limit BEFORE
it is downloaded; links are fetched with aiohttp (10 s total, a streamed size cap, the
content type checked, redirects followed by hand and only to http(s), and by default only to
public addresses).

Feedback: the bot adds ✅ ❌ 1️⃣–n️⃣ to each answer; raw reaction events (so uncached messages
work) from people become `service.record_feedback` rows (a new vote replaces the person's
earlier one) and a removed reaction `service.withdraw_feedback`. Answers are remembered in a
bounded LRU (message id → query id); an unknown message is fetched and its embed footer
("id: <query_id>") read, so reactions keep working after a restart.

Adult series: shown plainly only in NSFW channels; elsewhere, including DMs, they are
spoilered (see `bot.discord_render`).

Errors become user text in one place, `RecognitionCog.report` (logged first), used by
`on_message`, the app-command error handlers and the context menu.

Lifecycle: `build_discord_bot()` then `run_discord(bot, token, stop)` inside a running loop,
so the runner can host Discord, Telegram and the web chat on one loop.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ipaddress
import logging
import re
import socket
from collections.abc import AsyncIterator, Coroutine, Iterable, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import unquote

import aiohttp
import discord
import yarl
from aiohttp.abc import AbstractResolver, ResolveResult
from discord import app_commands
from discord.ext import commands
from pydantic import SecretStr

from bot.common import emoji_feedback, user_error_text
from bot.discord_render import (
    HELP_TEXT,
    MENTION_HINT,
    NO_MEDIA_IN_TARGET,
    OWNER_ONLY,
    SLASH_HINT,
    RenderedAnswer,
    query_id_from_message,
    render_answer,
    render_stats,
    skipped_text,
)
from core.errors import (
    AniRecError,
    Busy,
    ConfigError,
    MediaTooLarge,
    NotFound,
    RateLimited,
    UnsupportedMedia,
)
from core.service import RecognitionService
from core.types import Recognition, Source

logger = logging.getLogger(__name__)

#: Answers remembered for reactions (message id → query id).
ANSWER_MAP_SIZE = 10_000
#: Message ids known not to be answers (so a reaction there does not fetch it again).
NOT_OURS_SIZE = 10_000
#: Link downloads: total time, redirects followed.
LINK_TIMEOUT_S = 10.0
MAX_REDIRECTS = 3
#: Attachment and sticker downloads from Discord's CDN (files can be up to the byte limit).
ATTACHMENT_TIMEOUT_S = 30.0
#: Media answered per message (more are skipped with a note).
MAX_IMAGES = 4
CONTEXT_MENU_NAME = "Identify anime"

IMAGE_EXTS = frozenset({".png", ".jpg", ".jpeg", ".jfif", ".gif", ".webp", ".bmp"})
CLIP_EXTS = frozenset({".mp4", ".webm", ".mov", ".m4v"})
_CLIP_TYPES = frozenset({"video/mp4", "video/webm", "video/quicktime", "video/x-m4v"})
_BINARY_TYPES = frozenset({"application/octet-stream", "binary/octet-stream", ""})
DISCORD_CDN_HOSTS = frozenset({"cdn.discordapp.com", "media.discordapp.net"})
_URL = re.compile(r"https?://[^\s<>|\"']+", re.IGNORECASE)
_REDIRECTS = frozenset({301, 302, 303, 307, 308})

UNSUPPORTED_FILE = ("That file isn't a picture or a clip. Send a screenshot, GIF, sticker or "
                    "short video (PNG, JPEG, WebP, GIF, MP4 or WebM).")
LOTTIE_STICKER = ("That's an animated (Lottie) sticker; I can only read picture stickers. "
                  "Send a screenshot of it instead.")


class DownloadFailed(AniRecError):
    """The file or link could not be fetched (timeout, HTTP error, not an image)."""

    user_message = "I couldn't download that picture. Try again, or attach the file itself."


# -- which media -------------------------------------------------------------------------------

@dataclass(frozen=True)
class MediaRef:
    """One thing to recognise: an attachment, a sticker or a link."""

    kind: str  # "attachment", "sticker", "link"
    name: str
    size: int | None = None  # declared bytes (attachments)
    attachment: discord.Attachment | None = None
    sticker: discord.StickerItem | None = None
    url: str | None = None

    @property
    def is_sticker(self) -> bool:
        return self.kind == "sticker"


@dataclass
class Found:
    """The media in one message, and the first thing that could not be used."""

    refs: list[MediaRef]
    problem: AniRecError | None = None


def _ext(name: str) -> str:
    return PurePosixPath(name.lower()).suffix


def is_media_attachment(att: discord.Attachment) -> bool:
    """Images and clips, by content type, else by file name."""
    ctype = (att.content_type or "").split(";")[0].strip().lower()
    if ctype.startswith("image/") or ctype in _CLIP_TYPES:
        return ctype != "image/svg+xml"
    ext = _ext(att.filename)
    return ctype in _BINARY_TYPES and ext in IMAGE_EXTS | CLIP_EXTS


def media_link(url: str) -> bool:
    """An http(s) URL whose path ends in an image/clip extension, or a Discord CDN
    attachment link."""
    try:
        u = yarl.URL(url)
    except ValueError:
        return False
    if u.scheme not in ("http", "https") or not u.host:
        return False
    if _ext(unquote(u.path)) in IMAGE_EXTS | CLIP_EXTS:
        return True
    return u.host.lower() in DISCORD_CDN_HOSTS and u.path.startswith(
        ("/attachments/", "/ephemeral-attachments/"))


def links_in(text: str) -> list[str]:
    """Media links in a message's text, in order, without duplicates."""
    out: list[str] = []
    for m in _URL.finditer(text or ""):
        url = m.group(0).rstrip(".,;:!?)]}>*_~")
        if media_link(url) and url not in out:
            out.append(url)
    return out


def find_media(message: discord.Message) -> Found:
    """Attachments, stickers and links in `message` that AniRec can look at."""
    refs: list[MediaRef] = []
    problem: AniRecError | None = None
    for att in message.attachments:
        if is_media_attachment(att):
            refs.append(MediaRef("attachment", att.filename, size=att.size, attachment=att))
        elif problem is None:
            problem = UnsupportedMedia(UNSUPPORTED_FILE)
    for st in message.stickers:
        if st.format is discord.StickerFormatType.lottie:
            problem = problem or UnsupportedMedia(LOTTIE_STICKER)
        else:
            refs.append(MediaRef("sticker", st.name, sticker=st))
    for url in links_in(message.content):
        refs.append(MediaRef("link", url.rsplit("/", 1)[-1][:64], url=url))
    return Found(refs, problem)


def too_large(size: int, limit: int) -> MediaTooLarge:
    return MediaTooLarge(f"That file is too large ({size / 1e6:.1f} MB); I can read files up to "
                         f"{limit / 1e6:.0f} MB.")


# -- link downloads ------------------------------------------------------------------------------

def _public(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_global
    except ValueError:
        return False


class PublicResolver(AbstractResolver):
    """A resolver that only returns public addresses, so a posted link cannot make the bot
    fetch from the operator's own network (checked on the addresses actually connected to,
    so DNS rebinding does not get around it)."""

    def __init__(self) -> None:
        self._inner = aiohttp.ThreadedResolver()

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        found = await self._inner.resolve(host, port, family)
        ok = [r for r in found if _public(r["host"])]
        if not ok:
            raise OSError(f"{host} does not resolve to a public address")
        return ok

    async def close(self) -> None:
        await self._inner.close()


class LinkFetcher:
    """Downloads media links: http(s) only, a total timeout, a streamed size cap."""

    def __init__(self, *, timeout: float = LINK_TIMEOUT_S, allow_private: bool = False,
                 max_redirects: int = MAX_REDIRECTS) -> None:
        self.timeout = timeout
        self.allow_private = allow_private
        self.max_redirects = max_redirects
        self._session: aiohttp.ClientSession | None = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=16, resolver=None if self.allow_private else PublicResolver())
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=aiohttp.ClientTimeout(total=self.timeout),
                headers={"User-Agent": "AniRec (self-hosted anime recognition bot)"})
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def check_url(self, url: yarl.URL) -> None:
        """Only http(s) URLs with a host; literal IPs must be public (unless allowed)."""
        if url.scheme not in ("http", "https") or not url.host:
            raise DownloadFailed("I only follow http(s) links to pictures.")
        if not self.allow_private:
            host = url.host.strip("[]")
            try:
                ipaddress.ip_address(host.split("%", 1)[0])
            except ValueError:
                return  # a name: PublicResolver checks what it resolves to
            if not _public(host):
                raise DownloadFailed("I can't fetch pictures from that address.")

    async def fetch(self, url: str, limit: int) -> bytes:
        """The bytes at `url` (at most `limit`), following up to `max_redirects` redirects.

        Raises:
            DownloadFailed: bad scheme or address, HTTP error, timeout, a web page.
            MediaTooLarge: more than `limit` bytes (declared or streamed).
        """
        try:
            async with asyncio.timeout(self.timeout):
                return await self._fetch(yarl.URL(url), limit)
        except TimeoutError:
            raise DownloadFailed("That link took too long to download.") from None
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            logger.info("link download failed: %s: %s", type(exc).__name__, exc)
            raise DownloadFailed() from None

    async def _fetch(self, url: yarl.URL, limit: int) -> bytes:
        session = self._get_session()
        for _ in range(self.max_redirects + 1):
            self.check_url(url)
            async with session.get(url, allow_redirects=False) as resp:
                if resp.status in _REDIRECTS:
                    location = resp.headers.get("Location")
                    if not location:
                        raise DownloadFailed()
                    url = url.join(yarl.URL(location))
                    continue
                if resp.status != 200:
                    raise DownloadFailed(f"That link answered with an error ({resp.status}).")
                ctype = (resp.content_type or "").lower()
                if not (ctype.startswith("image/") or ctype in _CLIP_TYPES
                        or ctype in _BINARY_TYPES):
                    raise UnsupportedMedia("That link is not a picture or a clip "
                                           f"({ctype or 'unknown type'}).")
                if resp.content_length is not None and resp.content_length > limit:
                    raise too_large(resp.content_length, limit)
                buf = bytearray()
                async for chunk in resp.content.iter_chunked(64 * 1024):
                    buf += chunk
                    if len(buf) > limit:
                        raise too_large(len(buf), limit)
                return bytes(buf)
        raise DownloadFailed("That link redirects too many times.")


# -- replies ---------------------------------------------------------------------------------------

class Replier:
    """Where answers go: a reply to a message, or an interaction's follow-ups."""

    async def send(self, *, content: str | None = None, embed: discord.Embed | None = None,
                   files: Sequence[discord.File] = ()) -> discord.Message | None:
        raise NotImplementedError

    def working(self) -> contextlib.AbstractAsyncContextManager[None]:
        """Shown while recognising (typing indicator; interactions show "thinking")."""
        return contextlib.nullcontext()


def _message_kwargs(embed: discord.Embed | None, files: Sequence[discord.File]) -> dict[str, Any]:
    """Only the parts that are there (discord.py treats an explicit None differently)."""
    kwargs: dict[str, Any] = {}
    if embed is not None:
        kwargs["embed"] = embed
    if files:
        kwargs["files"] = list(files)
    return kwargs


class MessageReplier(Replier):
    def __init__(self, message: discord.Message) -> None:
        self.message = message

    async def send(self, *, content: str | None = None, embed: discord.Embed | None = None,
                   files: Sequence[discord.File] = ()) -> discord.Message | None:
        return await self.message.channel.send(
            content, reference=self.message.to_reference(fail_if_not_exists=False),
            mention_author=False, **_message_kwargs(embed, files))

    def working(self) -> contextlib.AbstractAsyncContextManager[None]:
        return typing_in(self.message.channel)


class InteractionReplier(Replier):
    def __init__(self, interaction: discord.Interaction[Any]) -> None:
        self.interaction = interaction

    async def send(self, *, content: str | None = None, embed: discord.Embed | None = None,
                   files: Sequence[discord.File] = ()) -> discord.Message | None:
        kwargs = _message_kwargs(embed, files)
        if content is not None:
            kwargs["content"] = content
        response = self.interaction.response
        if not response.is_done():
            # Nothing deferred yet (an error before any work): tell only the person who asked.
            await response.send_message(ephemeral=embed is None, **kwargs)
            return await self.interaction.original_response()
        return await self.interaction.followup.send(wait=True, **kwargs)


@contextlib.asynccontextmanager
async def typing_in(channel: Any) -> AsyncIterator[None]:
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

class LRU:
    """A bounded LRU map int → str (message id → query id)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._d: collections.OrderedDict[int, str] = collections.OrderedDict()

    def put(self, key: int, value: str) -> None:
        self._d[key] = value
        self._d.move_to_end(key)
        while len(self._d) > self.size:
            self._d.popitem(last=False)

    def get(self, key: int) -> str | None:
        v = self._d.get(key)
        if v is not None:
            self._d.move_to_end(key)
        return v

    def pop(self, key: int) -> None:
        self._d.pop(key, None)

    def __contains__(self, key: object) -> bool:
        return key in self._d

    def __len__(self) -> int:
        return len(self._d)


def _nsfw(channel: Any) -> bool:
    """NSFW channels (and threads in them) allow adult titles; DMs do not."""
    check = getattr(channel, "is_nsfw", None)
    try:
        return bool(check()) if callable(check) else False
    except Exception:  # a partial channel without the flag
        return False


def source_of(user_id: int, guild_id: int | None, channel_id: int | None, channel: Any) -> Source:
    """Per-user and per-guild (per-DM) limits come from the service."""
    return Source(platform="discord", chat_id=str(guild_id or channel_id or 0),
                  user_id=str(user_id), allow_adult=_nsfw(channel))


# -- the cog -------------------------------------------------------------------------------------

class RecognitionCog(commands.Cog):
    """Answers pictures, reads feedback reactions, and has the owner commands."""

    anirec = app_commands.Group(name="anirec", description="AniRec operator commands")

    def __init__(self, bot: commands.Bot, service: RecognitionService, *,
                 owner_ids: Iterable[int] = (), auto_channels: Iterable[int] = (),
                 max_images: int = MAX_IMAGES, allow_private_urls: bool = False,
                 answer_map_size: int = ANSWER_MAP_SIZE) -> None:
        if max_images < 1:
            raise ValueError("max_images must be at least 1")
        self.bot = bot
        self.service = service
        self.owner_ids = frozenset(int(x) for x in owner_ids)
        self.auto_channels = frozenset(int(x) for x in auto_channels)
        self.max_images = max_images
        self.answers = LRU(answer_map_size)
        self._not_ours = LRU(NOT_OURS_SIZE)
        self.links = LinkFetcher(allow_private=allow_private_urls)
        self._locks: dict[int, asyncio.Lock] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self.ctx_menu = app_commands.ContextMenu(name=CONTEXT_MENU_NAME,
                                                 callback=self.identify_message)
        self.ctx_menu.error(self._context_menu_error)

    async def cog_load(self) -> None:
        self.bot.tree.add_command(self.ctx_menu)

    async def cog_unload(self) -> None:
        self.bot.tree.remove_command(self.ctx_menu.name, type=self.ctx_menu.type)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.links.close()

    # -- the one place errors become user text ---------------------------------------------------

    async def report(self, error: BaseException, reply: Replier | None) -> None:
        """Log `error`, then tell the person (when there is someone to tell)."""
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
            await reply.send(content=user_error_text(error))
        except discord.HTTPException as exc:
            logger.info("could not send the error text: %s", exc)

    async def cog_app_command_error(self, interaction: discord.Interaction[Any],
                                    error: app_commands.AppCommandError) -> None:
        await self.report(error, InteractionReplier(interaction))

    async def _context_menu_error(self, interaction: discord.Interaction[Any],
                                  error: app_commands.AppCommandError) -> None:
        await self.report(error, InteractionReplier(interaction))

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
                async with asyncio.timeout(ATTACHMENT_TIMEOUT_S):
                    data = await ref.attachment.read()
            elif ref.sticker is not None:
                async with asyncio.timeout(ATTACHMENT_TIMEOUT_S):
                    data = await ref.sticker.read()
            elif ref.url is not None:
                data = await self.links.fetch(ref.url, limit)
            else:
                raise DownloadFailed()
        except TimeoutError:
            raise DownloadFailed("That file took too long to download.") from None
        except (discord.HTTPException, aiohttp.ClientError) as exc:
            logger.info("download of %s failed: %s", ref.kind, exc)
            raise DownloadFailed() from None
        if len(data) > limit:
            raise too_large(len(data), limit)
        return data

    async def answer_one(self, ref: MediaRef, source: Source, reply: Replier) -> Recognition:
        """Download, recognise, reply with the embed, then add the feedback reactions."""
        data = await self.download(ref)
        rec = await self.service.recognize(data, source=source, sticker=ref.is_sticker)
        rendered = render_answer(rec, adult_ok=source.allow_adult)
        try:
            sent = await reply.send(embed=rendered.embed, files=rendered.files())
        except discord.HTTPException as exc:
            if not rendered.attachments or exc.status not in (400, 413):
                raise
            logger.warning("sending the preview failed (%s); answering without it", exc)
            rendered.embed.set_image(url=None).set_thumbnail(url=None)
            sent = await reply.send(embed=rendered.embed)
        if sent is not None and rec.query_id:
            self.answers.put(sent.id, rec.query_id)
            self._spawn(self._add_reactions(sent.channel.id, sent.id, rendered))
        return rec

    async def answer_all(self, found: Found, source: Source, reply: Replier) -> None:
        """Answer each media item (up to max_images), then say if some were skipped."""
        refs = found.refs[: self.max_images]
        async with reply.working():
            for ref in refs:
                try:
                    await self.answer_one(ref, source, reply)
                except (Busy, RateLimited) as exc:  # the rest would get the same answer
                    await self.report(exc, reply)
                    return
                except Exception as exc:  # one bad picture must not stop the others
                    await self.report(exc, reply)
        skipped = len(found.refs) - len(refs)
        if skipped > 0:
            await reply.send(content=skipped_text(len(refs), skipped))

    async def _add_reactions(self, channel_id: int, message_id: int,
                             rendered: RenderedAnswer) -> None:
        target = self.bot.get_partial_messageable(channel_id).get_partial_message(message_id)
        for emoji in rendered.rank_emoji:
            await target.add_reaction(emoji)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if isinstance(exc, discord.HTTPException):
            logger.warning("adding feedback reactions failed: %s", exc)
        elif exc is not None:
            logger.error("background task failed", exc_info=exc)

    # -- messages ----------------------------------------------------------------------------------

    def _is_auto(self, channel: Any) -> bool:
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
        try:
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
                    await reply.send(content=HELP_TEXT if dm else MENTION_HINT)
                return
            source = source_of(message.author.id, message.guild.id if message.guild else None,
                               message.channel.id, message.channel)
            await self.answer_all(found, source, reply)
        except Exception as exc:
            await self.report(exc, reply)

    # -- app commands ------------------------------------------------------------------------------

    def _interaction_source(self, interaction: discord.Interaction[Any]) -> Source:
        return source_of(interaction.user.id, interaction.guild_id, interaction.channel_id,
                         interaction.channel)

    @app_commands.command(name="anime", description="Find the anime, episode and moment of a "
                                                     "picture, GIF or clip")
    @app_commands.describe(image="A screenshot, GIF or short clip",
                           url="A link to a picture, GIF or clip")
    async def anime(self, interaction: discord.Interaction[Any],
                    image: discord.Attachment | None = None, url: str | None = None) -> None:
        """/anime image:<file> or url:<link>."""
        refs: list[MediaRef] = []
        if image is not None:
            if not is_media_attachment(image):
                raise UnsupportedMedia(UNSUPPORTED_FILE)
            refs.append(MediaRef("attachment", image.filename, size=image.size,
                                 attachment=image))
        if url:
            url = url.strip().strip("<>")
            if not url.lower().startswith(("http://", "https://")):
                raise DownloadFailed("That isn't an http(s) link to a picture.")
            refs.append(MediaRef("link", url.rsplit("/", 1)[-1][:64], url=url))
        if not refs:
            await interaction.response.send_message(SLASH_HINT, ephemeral=True)
            return
        await interaction.response.defer(thinking=True)
        await self.answer_all(Found(refs), self._interaction_source(interaction),
                              InteractionReplier(interaction))

    async def identify_message(self, interaction: discord.Interaction[Any],
                               message: discord.Message) -> None:
        """Message context menu → Apps → "Identify anime"."""
        me = self.bot.user
        # Our own answers carry our preview, not the person's picture.
        found = Found([]) if me is not None and message.author.id == me.id else find_media(message)
        if not found.refs:
            if found.problem is not None:
                raise found.problem
            await interaction.response.send_message(NO_MEDIA_IN_TARGET, ephemeral=True)
            return
        await interaction.response.defer(thinking=True)
        await self.answer_all(found, self._interaction_source(interaction),
                              InteractionReplier(interaction))

    async def _owner(self, interaction: discord.Interaction[Any]) -> bool:
        if interaction.user.id in self.owner_ids:
            return True
        await interaction.response.send_message(OWNER_ONLY, ephemeral=True)
        return False

    @anirec.command(name="stats", description="Operator: service and feedback numbers")
    async def stats(self, interaction: discord.Interaction[Any]) -> None:
        if not await self._owner(interaction):
            return
        stats = await self.service.stats()
        stats["answers_remembered"] = len(self.answers)
        stats["guilds"] = len(self.bot.guilds)
        await interaction.response.send_message(render_stats(stats), ephemeral=True)

    @anirec.command(name="reload", description="Operator: load the current models and index")
    async def reload(self, interaction: discord.Interaction[Any]) -> None:
        if not await self._owner(interaction):
            return
        await interaction.response.defer(ephemeral=True, thinking=True)
        what = await self.service.reload()
        await interaction.followup.send(f"Reloaded: {what}", ephemeral=True)

    # -- feedback reactions ------------------------------------------------------------------------

    def _user_lock(self, user_id: int) -> asyncio.Lock:
        """Serialises one person's votes so add-then-remove keeps its order."""
        if len(self._locks) > 10_000:
            for k in [k for k, v in self._locks.items() if not v.locked()]:
                del self._locks[k]
        return self._locks.setdefault(user_id, asyncio.Lock())

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
            async with self._user_lock(payload.user_id):
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


# -- the bot -------------------------------------------------------------------------------------

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
                 auto_channels: Iterable[int] = (), max_images: int = MAX_IMAGES,
                 sync_commands: bool = False, allow_private_urls: bool = False,
                 **client_kwargs: Any) -> None:
        client_kwargs.setdefault("intents", intents())
        client_kwargs.setdefault("help_command", None)
        client_kwargs.setdefault("allowed_mentions", discord.AllowedMentions.none())
        super().__init__(command_prefix=commands.when_mentioned, **client_kwargs)
        self.service = service
        self.sync_commands = sync_commands
        self._cog_args: dict[str, Any] = dict(owner_ids=owner_ids, auto_channels=auto_channels,
                                              max_images=max_images,
                                              allow_private_urls=allow_private_urls)

    async def setup_hook(self) -> None:
        await self.add_cog(RecognitionCog(self, self.service, **self._cog_args))
        if self.sync_commands:
            synced = await self.tree.sync()
            logger.info("discord: synced %d application commands", len(synced))

    @property
    def cog(self) -> RecognitionCog:
        cog = self.get_cog("RecognitionCog")
        assert isinstance(cog, RecognitionCog)
        return cog

    async def on_message(self, message: discord.Message, /) -> None:
        """No prefix commands: the cog's listener handles messages."""
        return None


def build_discord_bot(service: RecognitionService, *, owner_ids: Iterable[int] = (),
                      auto_channels: Iterable[int] = (), max_images: int = MAX_IMAGES,
                      **client_kwargs: Any) -> AniRecBot:
    """The Discord bot, ready for `run_discord`.

    Args:
        service: a started (or starting) RecognitionService.
        owner_ids: Discord user ids allowed to run /anirec stats and /anirec reload.
        auto_channels: channel ids where every picture is answered (threads under them too).
        max_images: media answered per message.
        **client_kwargs: `sync_commands=True` to sync the command tree in setup_hook;
            `allow_private_urls=True` to let links point at private addresses (tests);
            anything else goes to `commands.Bot` (e.g. `guild_ready_timeout`).
    """
    return AniRecBot(service, owner_ids=owner_ids, auto_channels=auto_channels,
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
            if not runner.done():
                await bot.close()
            with contextlib.suppress(asyncio.CancelledError):
                await runner  # re-raises a failed login/connection


__all__ = [
    "AniRecBot",
    "DownloadFailed",
    "LinkFetcher",
    "MediaRef",
    "RecognitionCog",
    "build_discord_bot",
    "find_media",
    "intents",
    "links_in",
    "media_link",
    "run_discord",
]
