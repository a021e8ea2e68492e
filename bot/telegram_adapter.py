"""The Telegram bot (python-telegram-bot 22.8): a thin adapter over `RecognitionService`.

Flow: update → which media, and should we answer? → size checks → download → bytes +
`Source` → `service.recognize` → `telegram_render` → reply (preview clip, still or text) with
an inline feedback keyboard. Every decision about pictures lives in core; this module only
translates.

When it answers:
- private chats: every picture, GIF, clip, video note, sticker or image file;
- groups: a picture whose caption has /anime (or /anime@bot) or mentions the bot; a reply to a
  picture with /anime, /anime@bot or a mention; every picture in groups where an admin turned
  on `/autoanswer on` (the flag is kept in `bot_data` and, when `state_file` is given, in a
  small JSON file so it survives restarts). Auto-answers skip stickers and round video notes,
  and stay silent on "no match", unreadable files, rate limits and "busy" (nobody asked).

Feedback: the keyboard (✅ ❌ 1–5, payload `fb:<query_id>:<code>` from `bot.common`) and
people's own 👍/👎 reactions on an answer (`message_reaction` updates; Telegram delivers them
only when the bot is an admin of the group, and only if `allowed_updates` names them). A
reaction names a message, not a query, so answers are remembered in a bounded LRU map
(chat id, message id) → query id, journaled to `<home>/telegram-answers.jsonl` so that it
survives a restart (buttons need no map: their payload carries the query id).

Characters: when faces were recognised (`Recognition.annotated`, at least one named), the
query picture with every face boxed and named follows the answer as a photo replying to it,
captioned "Characters: <b>Name</b> (Series) · …"; best effort, never at the answer's expense.

Adult series: private chats allow them (the person asked); in groups the title is behind a
spoiler and the preview (and the named-faces photo) is sent with `has_spoiler=True` (see
`bot.telegram_render`).

Lifecycle: `build_telegram_application()` then `run_telegram(app, stop)` inside a running
loop (initialize/start/polling or webhook/stop/shutdown, never `run_polling()`), so the
runner can host Discord, Telegram and the web chat on one loop.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime as dt
import hashlib
import importlib.util
import json
import logging
import os
import warnings
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeAlias
from urllib.parse import urlsplit

from pydantic import SecretStr
from telegram import (
    BotCommand,
    InlineKeyboardMarkup,
    Message,
    MessageEntity,
    ReactionTypeEmoji,
    ReplyParameters,
    Update,
)
from telegram.constants import ChatAction, ChatMemberStatus, ChatType, ParseMode
from telegram.error import BadRequest, TelegramError
from telegram.ext import (
    AIORateLimiter,
    Application,
    ApplicationBuilder,
    BaseRateLimiter,
    CallbackContext,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    ExtBot,
    MessageHandler,
    MessageReactionHandler,
    filters,
)

from bot.common import emoji_feedback, parse_feedback, user_error_text
from bot.telegram_render import (
    MAX_CAPTION,
    answer_needs_spoiler,
    characters_caption,
    feedback_keyboard,
    feedback_toast,
    help_text,
    rank_buttons,
    render_answer,
    render_short_caption,
    render_stats,
    visible_length,
)
from core.errors import (
    AniRecError,
    Busy,
    ConfigError,
    InvalidMedia,
    MediaTooLarge,
    RateLimited,
    UnsupportedMedia,
)
from core.service import RecognitionService
from core.types import Recognition, Source, Verdict

logger = logging.getLogger(__name__)

#: Bots may download files up to 20 MB through the Bot API (getFile refuses bigger ones).
TELEGRAM_DOWNLOAD_LIMIT = 20 * 1024 * 1024
#: Update types the bot needs; `message_reaction` is only delivered when asked for.
ALLOWED_UPDATES: tuple[str, ...] = ("message", "callback_query", "message_reaction")
#: Remembered answers for reactions (chat id, message id) → query id.
ANSWER_MAP_SIZE = 10_000
#: A chat action shows for ~5 s; refresh it while recognising takes longer.
CHAT_ACTION_REFRESH_S = 4.5
#: Updates handled at the same time (the service bounds the actual inference).
CONCURRENT_UPDATES = 32

_STATE_KEY = "anirec"
_IMAGE_EXTS = frozenset({".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp", ".jfif"})
_CLIP_EXTS = frozenset({".mp4", ".webm", ".mov", ".m4v"})
_CLIP_MIMES = frozenset({"video/mp4", "video/webm", "video/quicktime", "video/x-m4v",
                         "application/x-tgsticker"})

BOT_COMMANDS = (
    BotCommand("anime", "Reply to a picture with this to find its anime"),
    BotCommand("help", "How to use AniRec"),
    BotCommand("autoanswer", "Group admins: answer every picture (on/off)"),
)


# -- rate limiting ---------------------------------------------------------------------------------

class AniRecRateLimiter(AIORateLimiter):
    """`AIORateLimiter` whose per-chat and per-group budgets count only what Telegram limits
    (sending and editing messages). Chat actions, file look-ups and callback answers skip
    those budgets, so "typing…" does not eat a group's 20 messages a minute. A 429 with
    `retry_after` is retried (up to `max_retries`) for every method."""

    UNMETERED = frozenset({"sendChatAction", "getFile", "getChatMember", "answerCallbackQuery",
                           "getMe", "setMyCommands", "deleteWebhook", "setWebhook"})

    async def process_request(self, callback: Any, args: Any, kwargs: dict[str, Any],
                              endpoint: str, data: dict[str, Any],
                              rate_limit_args: int | None) -> Any:
        if endpoint in self.UNMETERED:
            data = {k: v for k, v in data.items() if k != "chat_id"}
        return await super().process_request(callback, args, kwargs, endpoint, data,
                                             rate_limit_args)


# -- state kept in bot_data -----------------------------------------------------------------------

@dataclass(frozen=True)
class AnswerRef:
    """What a sent answer refers to: the query, how many candidates, where its keyboard is."""

    query_id: str
    n_candidates: int
    keyboard_message_id: int | None


class AnswerMap:
    """A bounded LRU map (chat id, message id) → AnswerRef.

    With `path`, every entry is also appended to a JSON-lines journal that is read back on
    start (and compacted when it doubles), so reactions on answers sent before a restart
    still count.
    """

    def __init__(self, size: int = ANSWER_MAP_SIZE, path: Path | None = None) -> None:
        self.size = size
        self.path = path
        self._d: collections.OrderedDict[tuple[int, int], AnswerRef] = collections.OrderedDict()
        self._lines = 0
        if path is not None and path.exists():
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    c, m, q, n, k = json.loads(line)
                    self._remember((int(c), int(m)), AnswerRef(str(q), int(n), k))
                    self._lines += 1
                except (ValueError, TypeError):
                    continue  # a torn last line after a crash: skip it

    def _remember(self, key: tuple[int, int], ref: AnswerRef) -> None:
        self._d[key] = ref
        self._d.move_to_end(key)
        while len(self._d) > self.size:
            self._d.popitem(last=False)

    def put(self, chat_id: int, message_id: int, ref: AnswerRef) -> None:
        self._remember((chat_id, message_id), ref)
        if self.path is None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if self._lines >= 2 * self.size:  # compact: rewrite only what is remembered
                tmp = self.path.with_suffix(".tmp")
                tmp.write_text("".join(self._line(k, r) for k, r in self._d.items()), encoding="utf-8")
                tmp.replace(self.path)
                self._lines = len(self._d)
            else:
                with open(self.path, "a", encoding="utf-8") as fh:
                    fh.write(self._line((chat_id, message_id), ref))
                self._lines += 1
        except OSError as exc:
            logger.warning("could not save the answer journal: %s", exc)

    @staticmethod
    def _line(key: tuple[int, int], ref: AnswerRef) -> str:
        return json.dumps([key[0], key[1], ref.query_id, ref.n_candidates,
                           ref.keyboard_message_id]) + "\n"

    def get(self, chat_id: int, message_id: int) -> AnswerRef | None:
        ref = self._d.get((chat_id, message_id))
        if ref is not None:
            self._d.move_to_end((chat_id, message_id))
        return ref

    def __len__(self) -> int:
        return len(self._d)


class AutoAnswerChats:
    """Group chats where every picture is answered; saved to `path` (JSON) when given."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self._ids: set[int] = set()
        if path is not None and path.exists():
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
                self._ids = {int(x) for x in data.get("autoanswer_chats", [])}
            except (OSError, ValueError, TypeError, AttributeError) as exc:
                logger.warning("cannot read %s (%s); auto-answer starts off everywhere", path, exc)

    def enabled(self, chat_id: int) -> bool:
        return chat_id in self._ids

    def set(self, chat_id: int, on: bool) -> None:
        (self._ids.add if on else self._ids.discard)(chat_id)
        self._save()

    def _save(self) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(self.path.suffix + ".tmp")
        tmp.write_text(json.dumps({"autoanswer_chats": sorted(self._ids)}), encoding="utf-8")
        os.replace(tmp, self.path)


@dataclass
class BotState:
    """Everything the handlers need, stored in `application.bot_data["anirec"]`."""

    service: RecognitionService
    owner_ids: frozenset[int]
    answers: AnswerMap
    auto: AutoAnswerChats
    _locks: dict[int, asyncio.Lock] = field(default_factory=dict)

    def user_lock(self, user_id: int) -> asyncio.Lock:
        """Serialises one person's feedback, so add-then-remove reactions keep their order
        even though updates are handled concurrently (asyncio.Lock is FIFO)."""
        if len(self._locks) > 10_000:
            for k in [k for k, v in self._locks.items() if not v.locked()]:
                del self._locks[k]
        return self._locks.setdefault(user_id, asyncio.Lock())


class CustomContext(CallbackContext[ExtBot[None], dict[Any, Any], dict[Any, Any], dict[Any, Any]]):
    """PTB context with typed shortcuts into `bot_data` (PTB `examples/contexttypesbot.py`)."""

    @property
    def state(self) -> BotState:
        return self.bot_data[_STATE_KEY]  # type: ignore[no-any-return]

    @property
    def service(self) -> RecognitionService:
        return self.state.service


TelegramApp: TypeAlias = Application[ExtBot[None], CustomContext, dict[Any, Any],
                                     dict[Any, Any], dict[Any, Any], Any]


# -- which media, and is it small enough ---------------------------------------------------------

@dataclass(frozen=True)
class MediaRef:
    """A file to download: its id, declared size and kind."""

    file_id: str
    file_size: int | None
    kind: str  # photo, animation, video, video_note, sticker, document
    sticker: bool = False


def _seconds(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    return float(value)


def _duration(obj: Any) -> float | None:
    """A media object's duration in seconds, with or without PTB_TIMEDELTA."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _seconds(getattr(obj, "duration", None))


def _too_large(size: int, limit: int) -> MediaTooLarge:
    return MediaTooLarge(f"That file is too large ({size / 1e6:.1f} MB); I can read files up to "
                         f"{limit / 1e6:.0f} MB.")


def _check(size: int | None, limit: int, duration: float | None = None,
           max_seconds: float | None = None) -> None:
    if size is not None and size > limit:
        raise _too_large(size, limit)
    if duration is not None and max_seconds is not None and duration > max_seconds:
        raise MediaTooLarge(f"That clip is too long ({duration:.0f} s); I read clips up to "
                            f"{max_seconds:.0f} s.")


def has_media(msg: Message | None) -> bool:
    """Whether a message carries something AniRec could look at (or a file to refuse)."""
    return msg is not None and bool(msg.photo or msg.animation or msg.video or msg.video_note
                                    or msg.sticker or msg.document)


def media_ref(msg: Message, limit: int, max_seconds: float | None = None) -> MediaRef | None:
    """The file to recognise in `msg`, checked against `limit` bytes BEFORE any download.

    Photos: the largest size whose file fits. Documents: only images and clips (by MIME type,
    else by file name). Returns None when the message has no media at all.

    Raises:
        MediaTooLarge: the file (or every photo size) is over the limit, or a clip is too long.
        UnsupportedMedia: a document that is not an image or clip.
    """
    if msg.photo:
        sizes = sorted(msg.photo, key=lambda p: p.width * p.height, reverse=True)
        for p in sizes:
            if p.file_size is None or p.file_size <= limit:
                return MediaRef(p.file_id, p.file_size, "photo")
        raise _too_large(min(p.file_size or 0 for p in sizes), limit)
    if msg.animation:  # also has .document; check it first
        a = msg.animation
        _check(a.file_size, limit, _duration(a), max_seconds and max_seconds * 4)
        return MediaRef(a.file_id, a.file_size, "animation")
    if msg.video:
        v = msg.video
        _check(v.file_size, limit, _duration(v), max_seconds)
        return MediaRef(v.file_id, v.file_size, "video")
    if msg.video_note:
        vn = msg.video_note
        _check(vn.file_size, limit, _duration(vn), max_seconds)
        return MediaRef(vn.file_id, vn.file_size, "video_note")
    if msg.sticker:
        s = msg.sticker
        _check(s.file_size, limit)
        return MediaRef(s.file_id, s.file_size, "sticker", sticker=True)
    if msg.document:
        d = msg.document
        mime = (d.mime_type or "").lower()
        ext = Path(d.file_name or "").suffix.lower()
        known_mime = mime.startswith("image/") or mime in _CLIP_MIMES
        unknown_mime = mime in ("", "application/octet-stream")
        if not (known_mime or (unknown_mime and ext in _IMAGE_EXTS | _CLIP_EXTS)):
            raise UnsupportedMedia(
                "That file isn't a picture or a clip. Send a screenshot, GIF, sticker or "
                "short video (as a photo, video or image file).")
        _check(d.file_size, limit)
        return MediaRef(d.file_id, d.file_size, "document")
    return None


# -- addressing ------------------------------------------------------------------------------------

def _entities(msg: Message) -> dict[MessageEntity, str]:
    if msg.text is not None:
        return msg.parse_entities()
    if msg.caption is not None:
        return msg.parse_caption_entities()
    return {}


def addressed(msg: Message, bot_username: str | None, bot_id: int) -> bool:
    """True when the text or caption has /anime (or /anime@this_bot) or mentions this bot."""
    me = (bot_username or "").lower()
    for ent, text in _entities(msg).items():
        if ent.type == MessageEntity.BOT_COMMAND:
            name, _, target = text[1:].partition("@")
            if name.lower() == "anime" and (not target or target.lower() == me):
                return True
        elif ent.type == MessageEntity.MENTION and me and text[1:].lower() == me:
            return True
        elif ent.type == MessageEntity.TEXT_MENTION and ent.user is not None:
            if ent.user.id == bot_id:
                return True
    return False


def _ignored(msg: Message, bot_id: int) -> bool:
    """Messages from this bot itself, and from other bots (no bot-to-bot loops). Anonymous
    group admins write as a bot (GroupAnonymousBot) with `sender_chat` set: not ignored."""
    u = msg.from_user
    if u is None:
        return False
    if u.id == bot_id:
        return True
    return u.is_bot and msg.sender_chat is None


def source_of(msg: Message) -> Source:
    """Who asked, where. Private chats allow adult titles; groups get spoilers instead."""
    chat = msg.chat
    if msg.sender_chat is not None:
        user = f"chat:{msg.sender_chat.id}"
    else:
        user = str(msg.from_user.id) if msg.from_user else f"chat:{chat.id}"
    return Source(platform="telegram", chat_id=str(chat.id), user_id=user,
                  allow_adult=chat.type == ChatType.PRIVATE)


# -- helpers ---------------------------------------------------------------------------------------

@contextlib.asynccontextmanager
async def chat_action(bot: Any, chat_id: int, action: str) -> AsyncIterator[None]:
    """Show `action` ("typing", ...) in the chat until the block ends (refreshed every 4.5 s)."""

    async def keep() -> None:
        while True:
            await _show_action(bot, chat_id, action)
            await asyncio.sleep(CHAT_ACTION_REFRESH_S)

    task = asyncio.create_task(keep())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _show_action(bot: Any, chat_id: int, action: str) -> None:
    """One chat action, best effort (it is cosmetic)."""
    try:
        await bot.send_chat_action(chat_id, action)
    except TelegramError as exc:
        logger.debug("send_chat_action failed: %s", exc)


async def _download(bot: Any, ref: MediaRef, limit: int) -> bytes:
    try:
        f = await bot.get_file(ref.file_id)
    except BadRequest as exc:
        if "too big" in str(exc).lower():
            raise _too_large(ref.file_size or limit + 1, limit) from None
        raise
    _check(f.file_size, limit)
    return bytes(await f.download_as_bytearray())


def _not_modified(exc: BadRequest) -> bool:
    return "not modified" in str(exc).lower()


def _reply_to(msg: Message) -> ReplyParameters:
    return ReplyParameters(message_id=msg.message_id, allow_sending_without_reply=True)


def _limit(service: RecognitionService) -> int:
    return min(TELEGRAM_DOWNLOAD_LIMIT, int(service.limits.max_bytes))


# -- recognise and answer --------------------------------------------------------------------------

async def recognize_and_reply(context: CustomContext, media_msg: Message, request: Message,
                              *, explicit: bool) -> None:
    """Recognise the media in `media_msg` and reply to `request` (they differ for /anime
    replies).

    With `explicit` False (auto-answer in a group, nobody asked), the bot stays quiet unless
    it found something: files it cannot read, rate limits, "busy" and "no match" are logged,
    not posted, so a busy group is not flooded with refusals.
    """
    service = context.service
    limit = _limit(service)
    source = source_of(request)
    try:
        ref = media_ref(media_msg, limit, service.limits.max_seconds)
        if ref is None:
            return
        async with chat_action(context.bot, request.chat_id, ChatAction.TYPING):
            data = await _download(context.bot, ref, limit)
            rec = await service.recognize(data, source=source, sticker=ref.sticker)
    except (InvalidMedia, RateLimited, Busy) as exc:
        if explicit:
            raise
        logger.info("auto-answer in %s skipped: %s", request.chat_id, exc)
        return
    if not explicit and rec.status == "no_match":
        return
    await send_answer(context, request, rec, adult_ok=source.allow_adult)


async def send_answer(context: CustomContext, request: Message, rec: Recognition, *,
                      adult_ok: bool) -> list[Message]:
    """Reply with the preview clip (or still, or text) captioned with the answer, plus the
    keyboard; the answer goes in its own message when it is too long for a caption. Then,
    when characters were named, the named-faces photo (`send_characters`)."""
    text = render_answer(rec, adult_ok=adult_ok)
    markup: InlineKeyboardMarkup | None = None
    n = len(rec.candidates[:5])
    if rec.query_id:
        markup = feedback_keyboard(rec.query_id, n)
    best = rec.best
    spoiler = answer_needs_spoiler(rec, adult_ok=adult_ok)
    clip = Path(best.preview) if best and best.preview else None
    still = Path(best.still) if best and best.still else None
    fits = visible_length(text) <= MAX_CAPTION
    caption = text if fits else render_short_caption(rec, adult_ok=adult_ok)
    common: dict[str, Any] = dict(parse_mode=ParseMode.HTML, reply_parameters=_reply_to(request))
    sent: list[Message] = []
    media_msg: Message | None = None
    try:
        if clip is not None and clip.is_file():
            await _show_action(context.bot, request.chat_id, ChatAction.UPLOAD_VIDEO)
            media_msg = await request.reply_video(
                video=clip, caption=caption, supports_streaming=True, has_spoiler=spoiler,
                reply_markup=markup if fits else None, **common)
        elif still is not None and still.is_file():
            await _show_action(context.bot, request.chat_id, ChatAction.UPLOAD_PHOTO)
            media_msg = await request.reply_photo(
                photo=still, caption=caption, has_spoiler=spoiler,
                reply_markup=markup if fits else None, **common)
    except BadRequest as exc:  # e.g. the preview could not be processed: the text still goes
        logger.warning("sending the preview failed (%s); answering with text", exc)
        media_msg = None
    if media_msg is not None:
        sent.append(media_msg)
    if media_msg is None or not fits:
        sent.append(await request.reply_text(text, reply_markup=markup, **common))
    if rec.query_id:
        keyboard_id = sent[-1].message_id
        for m in sent:
            context.state.answers.put(m.chat_id, m.message_id,
                                      AnswerRef(rec.query_id, n, keyboard_id))
    await send_characters(sent[-1], rec, adult_ok=adult_ok, spoiler=spoiler)
    return sent


async def send_characters(answer: Message, rec: Recognition, *, adult_ok: bool,
                          spoiler: bool) -> Message | None:
    """After an answer that went out: the query picture with the faces boxed and named, as a
    photo replying to `answer` (only when someone was recognised). Best effort: a missing
    file or a failed call is logged and the answer stands as it is."""
    if not rec.annotated:
        return None
    caption = characters_caption(rec, adult_ok=adult_ok)
    if caption is None:
        return None
    path = Path(rec.annotated)
    try:
        if not path.is_file():
            logger.info("the named-faces picture is gone; not sending it")
            return None
        return await answer.reply_photo(
            photo=path, caption=caption, parse_mode=ParseMode.HTML, has_spoiler=spoiler,
            reply_parameters=_reply_to(answer))
    except (TelegramError, OSError) as exc:
        logger.warning("sending the named-faces picture failed: %s", exc)
        return None


# -- handlers --------------------------------------------------------------------------------------

async def on_media(update: Update, context: CustomContext) -> None:
    """A picture/GIF/clip/sticker/file: answer in private chats, when addressed in the
    caption, or in auto-answer groups."""
    msg = update.message
    if msg is None or _ignored(msg, context.bot.id):
        return
    private = msg.chat.type == ChatType.PRIVATE
    explicit = private or addressed(msg, context.bot.username, context.bot.id)
    if not explicit:
        if not context.state.auto.enabled(msg.chat_id):
            return
        if msg.sticker or msg.video_note:  # chat stickers and round selfies: not screenshots
            return
    await recognize_and_reply(context, msg, msg, explicit=explicit)


async def on_anime_command(update: Update, context: CustomContext) -> None:
    """/anime or /anime@bot as a reply to a picture."""
    msg = update.message
    if msg is None or _ignored(msg, context.bot.id):
        return
    target = msg.reply_to_message
    if not has_media(target):
        await msg.reply_text(
            "Reply to a picture, GIF, sticker or clip with /anime and I'll look it up"
            + (" — or just send it to me here." if msg.chat.type == ChatType.PRIVATE else "."),
            reply_parameters=_reply_to(msg))
        return
    assert target is not None
    await recognize_and_reply(context, target, msg, explicit=True)


async def on_mention_reply(update: Update, context: CustomContext) -> None:
    """A text reply that mentions the bot, to a picture."""
    msg = update.message
    if msg is None or _ignored(msg, context.bot.id):
        return
    if not addressed(msg, context.bot.username, context.bot.id):
        return
    target = msg.reply_to_message
    if has_media(target):
        assert target is not None
        await recognize_and_reply(context, target, msg, explicit=True)


async def on_private_text(update: Update, context: CustomContext) -> None:
    """Plain text in a private chat: say what to send."""
    msg = update.message
    if msg is None or _ignored(msg, context.bot.id):
        return
    await msg.reply_text("Send me a screenshot, GIF, sticker or short clip and I'll tell you "
                         "which anime it is from. /help explains more.")


async def on_help(update: Update, context: CustomContext) -> None:
    if update.message is not None:
        await update.message.reply_text(help_text(context.bot.username),
                                        parse_mode=ParseMode.HTML)


async def _is_admin(context: CustomContext, msg: Message) -> bool:
    if msg.from_user is not None and msg.from_user.id in context.state.owner_ids:
        return True
    if msg.sender_chat is not None and msg.sender_chat.id == msg.chat_id:
        return True  # an anonymous admin writing as the group
    if msg.from_user is None:
        return False
    member = await context.bot.get_chat_member(msg.chat_id, msg.from_user.id)
    return member.status in (ChatMemberStatus.ADMINISTRATOR, ChatMemberStatus.OWNER)


async def on_autoanswer(update: Update, context: CustomContext) -> None:
    """/autoanswer on|off (group admins): answer every picture in this group."""
    msg = update.message
    if msg is None or _ignored(msg, context.bot.id):
        return
    if msg.chat.type == ChatType.PRIVATE:
        await msg.reply_text("In a private chat I always answer; /autoanswer is for groups.")
        return
    auto = context.state.auto
    arg = (context.args[0].lower() if context.args else "")
    if arg not in ("on", "off"):
        state = "on" if auto.enabled(msg.chat_id) else "off"
        await msg.reply_text(f"Auto-answer is {state} here. Admins: /autoanswer on or "
                             "/autoanswer off.", reply_parameters=_reply_to(msg))
        return
    if not await _is_admin(context, msg):
        await msg.reply_text("Only group admins can change auto-answer.",
                             reply_parameters=_reply_to(msg))
        return
    auto.set(msg.chat_id, arg == "on")
    if arg == "on":
        text = ("Auto-answer is on: I'll answer every picture in this group. (I need to be an "
                "admin here, or have privacy mode off, to see pictures that don't mention me.)")
    else:
        text = "Auto-answer is off: reply to a picture with /anime when you want me."
    await msg.reply_text(text, reply_parameters=_reply_to(msg))


def _is_owner(update: Update, context: CustomContext) -> bool:
    u = update.effective_user
    return u is not None and u.id in context.state.owner_ids


async def on_stats(update: Update, context: CustomContext) -> None:
    """/stats (owners only)."""
    msg = update.message
    if msg is None:
        return
    if not _is_owner(update, context):
        await msg.reply_text("That command is for the bot's operator.")
        return
    stats = await context.service.stats()
    stats["answers_remembered"] = len(context.state.answers)
    await msg.reply_text(render_stats(stats), parse_mode=ParseMode.HTML)


async def on_reload(update: Update, context: CustomContext) -> None:
    """/reload (owners only): load the current models and index without a restart."""
    msg = update.message
    if msg is None:
        return
    if not _is_owner(update, context):
        await msg.reply_text("That command is for the bot's operator.")
        return
    async with chat_action(context.bot, msg.chat_id, ChatAction.TYPING):
        what = await context.service.reload()
    await msg.reply_text(f"Reloaded: {what}")


async def on_feedback_button(update: Update, context: CustomContext) -> None:
    """✅ ❌ 1–5 pressed: record (replacing that person's earlier vote), answer the query,
    show the tally on the keyboard."""
    query = update.callback_query
    if query is None:
        return
    action = parse_feedback(query.data if isinstance(query.data, str) else None)
    if action is None:
        await query.answer()
        return
    msg = query.message if isinstance(query.message, Message) else None  # None: too old
    chat_id = query.message.chat.id if query.message is not None else 0
    source = Source(platform="telegram", chat_id=str(chat_id), user_id=str(query.from_user.id))
    try:
        async with context.state.user_lock(query.from_user.id):
            tally = await context.service.record_feedback(action.query_id, action.verdict,
                                                          source=source, rank=action.rank)
    except ValueError:
        await query.answer("That number isn't one of the answers.")
        return
    except Exception as exc:
        await query.answer(user_error_text(exc)[:200])
        raise
    await query.answer(feedback_toast(action.verdict, action.rank))
    if msg is None:
        return
    n = rank_buttons(msg.reply_markup if isinstance(msg.reply_markup, InlineKeyboardMarkup)
                     else None)
    context.state.answers.put(chat_id, msg.message_id,
                              AnswerRef(action.query_id, n, msg.message_id))
    try:
        await query.edit_message_reply_markup(feedback_keyboard(action.query_id, n, tally))
    except BadRequest as exc:  # "not modified" (same tally), or a message too old to edit
        if not _not_modified(exc):
            logger.info("could not update the tally on %s: %s", msg.message_id, exc)


def _reaction_votes(reactions: Iterable[Any]) -> set[tuple[Verdict, int | None]]:
    out: set[tuple[Verdict, int | None]] = set()
    for r in reactions:
        if isinstance(r, ReactionTypeEmoji):
            v = emoji_feedback(r.emoji)
            if v is not None:
                out.add(v)
    return out


async def on_reaction(update: Update, context: CustomContext) -> None:
    """👍/👎 on an answer → correct/wrong; a removed reaction withdraws it."""
    r = update.message_reaction
    if r is None or r.user is None or r.user.id == context.bot.id:
        return  # anonymous (actor_chat) reactions cannot be one person's vote
    ref = context.state.answers.get(r.chat.id, r.message_id)
    if ref is None:
        return
    old, new = _reaction_votes(r.old_reaction), _reaction_votes(r.new_reaction)
    if old == new:
        return
    source = Source(platform="telegram", chat_id=str(r.chat.id), user_id=str(r.user.id))
    service = context.service
    tally = None
    async with context.state.user_lock(r.user.id):
        for verdict, rank in old - new:
            tally = await service.withdraw_feedback(ref.query_id, source=source, verdict=verdict,
                                                    rank=rank)
        for verdict, rank in new - old:
            tally = await service.record_feedback(ref.query_id, verdict, source=source,
                                                  rank=rank)
    if tally is not None and ref.keyboard_message_id is not None:
        try:
            await context.bot.edit_message_reply_markup(
                r.chat.id, ref.keyboard_message_id,
                reply_markup=feedback_keyboard(ref.query_id, ref.n_candidates, tally))
        except BadRequest as exc:
            if not _not_modified(exc):
                logger.info("could not update the tally on %s: %s", ref.keyboard_message_id, exc)


async def on_error(update: object, context: CustomContext) -> None:
    """The one place errors become user text: log first, then tell the person (if a message
    asked), using `bot.common.user_error_text`."""
    err = context.error
    if isinstance(err, AniRecError):
        logger.info("telegram: %s: %s", type(err).__name__, err)
    elif isinstance(err, TelegramError):  # blocked by the user, gave up after 429s, ...
        logger.warning("telegram: Bot API call failed: %s: %s", type(err).__name__, err)
    else:
        logger.error("telegram: error while handling an update", exc_info=err)
    if err is None or isinstance(err, TelegramError):
        return  # a failed Telegram call: replying would most likely fail the same way
    if isinstance(update, Update) and update.message is not None:
        try:
            await update.message.reply_text(user_error_text(err),
                                            reply_parameters=_reply_to(update.message))
        except TelegramError as exc:
            logger.info("could not send the error text: %s", exc)


async def publish_commands(app: TelegramApp) -> None:
    """Publish the command list shown in Telegram's "/" menu (best effort)."""
    try:
        await app.bot.set_my_commands(list(BOT_COMMANDS))
    except TelegramError as exc:
        logger.info("setMyCommands failed: %s", exc)


# -- building and running --------------------------------------------------------------------------

def build_telegram_application(
    token: str | SecretStr,
    service: RecognitionService,
    *,
    owner_ids: Iterable[int] = (),
    base_url: str | None = None,
    base_file_url: str | None = None,
    rate_limiter: bool | BaseRateLimiter[Any] = True,
    state_file: Path | None = None,
    concurrent_updates: int = CONCURRENT_UPDATES,
    answer_map_size: int = ANSWER_MAP_SIZE,
) -> TelegramApp:
    """The PTB Application with AniRec's handlers, ready for `run_telegram`.

    Args:
        token: the bot token (never logged).
        service: a started (or starting) RecognitionService.
        owner_ids: Telegram user ids allowed to run /stats and /reload.
        base_url, base_file_url: another Bot API server (tests: the fake; or a local
            telegram-bot-api server).
        rate_limiter: True for `AniRecRateLimiter(max_retries=3)` (an AIORateLimiter: 429s
            with retry_after are retried), False for none, or a limiter of your own.
        state_file: JSON file for the per-group auto-answer flag (None: in memory only).
        concurrent_updates: updates handled at once (the service bounds inference).
        answer_map_size: answers remembered for reactions (in memory, LRU).
    """
    raw = token.get_secret_value() if isinstance(token, SecretStr) else token
    if not raw:
        raise ConfigError("TELEGRAM_TOKEN is empty.")
    # The token is part of every request URL; httpx logs URLs at INFO.
    httpx_log = logging.getLogger("httpx")
    if httpx_log.getEffectiveLevel() < logging.WARNING:
        httpx_log.setLevel(logging.WARNING)
    builder = (ApplicationBuilder().token(raw)
               .context_types(ContextTypes(context=CustomContext))
               .concurrent_updates(concurrent_updates))
    if base_url:
        builder = builder.base_url(base_url)
    if base_file_url:
        builder = builder.base_file_url(base_file_url)
    if rate_limiter is True:
        builder = builder.rate_limiter(AniRecRateLimiter(max_retries=3))
    elif isinstance(rate_limiter, BaseRateLimiter):
        builder = builder.rate_limiter(rate_limiter)
    app: TelegramApp = builder.build()  # type: ignore[assignment]
    app.bot_data[_STATE_KEY] = BotState(service=service, owner_ids=frozenset(owner_ids),
                                        answers=AnswerMap(answer_map_size, state_file.with_name(
                                            state_file.stem + "-answers.jsonl") if state_file else None),
                                        auto=AutoAnswerChats(state_file))
    new = filters.UpdateType.MESSAGE
    media = (filters.PHOTO | filters.ANIMATION | filters.VIDEO | filters.VIDEO_NOTE
             | filters.Sticker.ALL | filters.Document.ALL)
    app.add_handler(CommandHandler(("start", "help"), on_help, filters=new))
    app.add_handler(CommandHandler("anime", on_anime_command, filters=new))
    app.add_handler(CommandHandler("autoanswer", on_autoanswer, filters=new))
    app.add_handler(CommandHandler("stats", on_stats, filters=new))
    app.add_handler(CommandHandler("reload", on_reload, filters=new))
    app.add_handler(MessageHandler(new & media, on_media))
    app.add_handler(MessageHandler(
        new & filters.REPLY & (filters.Entity(MessageEntity.MENTION)
                               | filters.Entity(MessageEntity.TEXT_MENTION)), on_mention_reply))
    app.add_handler(MessageHandler(new & filters.ChatType.PRIVATE & filters.TEXT & ~filters.COMMAND,
                                   on_private_text))
    app.add_handler(CallbackQueryHandler(on_feedback_button, pattern=r"^fb:"))
    app.add_handler(MessageReactionHandler(on_reaction))
    app.add_error_handler(on_error)
    return app


def webhook_secret(token: str) -> str:
    """A stable secret for the X-Telegram-Bot-Api-Secret-Token header, derived from the
    token (so restarts keep it and nothing else has to be configured)."""
    return hashlib.sha256(b"anirec-webhook:" + token.encode()).hexdigest()


async def run_telegram(app: TelegramApp, stop: asyncio.Event, *, webhook_url: str | None = None,
                       port: int = 8443, listen: str = "127.0.0.1", poll_timeout: int = 10,
                       drop_pending_updates: bool = False) -> None:
    """Run the bot until `stop` is set, inside the caller's event loop.

    Polling by default; with `webhook_url` (the public HTTPS URL a reverse proxy forwards to
    `listen:port`), a webhook whose path is the URL's path. Both ask for ALLOWED_UPDATES.
    """
    if webhook_url and importlib.util.find_spec("tornado") is None:
        raise ConfigError("Webhook mode needs python-telegram-bot[webhooks] (tornado); install "
                          "it or unset ANIREC_TELEGRAM_WEBHOOK_URL to use polling.")
    updater = app.updater
    if updater is None:
        raise ConfigError("The Telegram application was built without an updater.")
    async with app:  # initialize() ... shutdown()
        await publish_commands(app)  # (post_init only runs under run_polling/run_webhook)
        await app.start()
        try:
            if webhook_url:
                await updater.start_webhook(
                    listen=listen, port=port, url_path=urlsplit(webhook_url).path.lstrip("/"),
                    webhook_url=webhook_url, allowed_updates=list(ALLOWED_UPDATES),
                    secret_token=webhook_secret(app.bot.token),
                    drop_pending_updates=drop_pending_updates)
                logger.info("telegram: webhook on %s:%d for %s", listen, port, webhook_url)
            else:
                await updater.start_polling(timeout=dt.timedelta(seconds=poll_timeout),
                                            allowed_updates=list(ALLOWED_UPDATES),
                                            drop_pending_updates=drop_pending_updates)
                logger.info("telegram: polling as @%s", app.bot.username)
            try:
                await stop.wait()
            finally:
                if updater.running:
                    await updater.stop()
        finally:
            if app.running:
                await app.stop()
