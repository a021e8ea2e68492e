"""Getting Telegram media in and answers out: which file a message carries (checked against
the byte and length limits before any download), whether it is addressed to the bot and who
asked, the download, the chat action shown while working, and sending an answer (preview clip,
still or text, with the feedback keyboard) followed by the named-faces photo."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import hmac
import json
import logging
import secrets
import warnings
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

from telegram import Bot, LinkPreviewOptions, Message, MessageEntity, ReplyParameters
from telegram.constants import ChatAction, ChatType, ParseMode
from telegram.error import BadRequest, NetworkError, TelegramError

from bot.chat.answer import AnswerText, answer_text
from bot.chat.media import MEDIA_FORMATS, media_kind
from bot.chat.preview import follow_up
from bot.chat.state import AnswerMemory, JournalCodec, chat_token
from bot.chat.texts import said, too_large, too_long
from bot.telegram_render import (
    MAX_CAPTION,
    answer_keyboard,
    answer_needs_spoiler,
    characters_caption,
    render_answer,
    render_short_caption,
    visible_length,
)
from core.errors import UnsupportedMedia
from core.feedback import load_salt
from core.types import Recognition, Source

logger = logging.getLogger(__name__)

#: A chat action shows for ~5 s; refresh it while recognising takes longer.
CHAT_ACTION_REFRESH_S = 4.5
#: Animated (.tgs) stickers sent as files.
TG_STICKER_MIME = "application/x-tgsticker"


# -- answer memory --------------------------------------------------------------------------------

@dataclass(frozen=True)
class AnswerRef:
    """What a sent answer refers to: the query, how many candidates, where its keyboard is."""

    query_id: str
    n_candidates: int
    keyboard_message_id: int | None


def _encode(key: tuple[str, int], ref: AnswerRef) -> list[object]:
    return [key[0], key[1], ref.query_id, ref.n_candidates, ref.keyboard_message_id]


def _decode(row: list[object]) -> tuple[tuple[str, int], AnswerRef]:
    c, m, q, n, k = row
    if not isinstance(c, str):
        raise TypeError("a raw chat id (older journal line)")
    keyboard = int(str(k)) if k is not None else None
    return (c, int(str(m))), AnswerRef(str(q), int(str(n)), keyboard)


#: The journal line of one answer: [chat token, message id, query id, candidates, keyboard id]
#: (the chat as a keyed hash: the journal never holds a raw chat id).
ANSWER_CODEC: JournalCodec[tuple[str, int], AnswerRef] = JournalCodec(_encode, _decode)


class Answers:
    """Sent answers: (chat id, message id) → what they answered, remembered (and journaled)
    under the chat's keyed hash."""

    def __init__(self, size: int, journal: Path | None, key: bytes) -> None:
        self.key = key
        if journal is not None and journal.exists():
            _upgrade_journal(journal, key)
        self._memory: AnswerMemory[tuple[str, int], AnswerRef] = AnswerMemory(size, journal, ANSWER_CODEC)

    def _k(self, key: tuple[int, int]) -> tuple[str, int]:
        return chat_token(self.key, key[0]), int(key[1])

    def put(self, key: tuple[int, int], ref: AnswerRef) -> None:
        self._memory.put(self._k(key), ref)

    def get(self, key: tuple[int, int]) -> AnswerRef | None:
        return self._memory.get(self._k(key))

    def pop(self, key: tuple[int, int]) -> None:
        self._memory.pop(self._k(key))

    def __contains__(self, key: object) -> bool:
        return isinstance(key, tuple) and len(key) == 2 and self._k(key) in self._memory  # type: ignore[arg-type]

    def __len__(self) -> int:
        return len(self._memory)


def _upgrade_journal(journal: Path, key: bytes) -> None:
    """Rewrite a journal an older version wrote with raw chat ids, hashing them."""
    try:
        lines = journal.read_text(encoding="utf-8").splitlines()
    except OSError:
        return
    out, changed = [], False
    for line in lines:
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, list) and row and isinstance(row[0], int):
            row[0], changed = chat_token(key, row[0]), True
        out.append(json.dumps(row))
    if changed:
        tmp = journal.with_suffix(".tmp")
        tmp.write_text("".join(x + "\n" for x in out), encoding="utf-8")
        tmp.replace(journal)


def answer_memory(size: int, journal: Path | None = None, key: bytes | None = None) -> Answers:
    """The answer memory, journaled to `journal` when given (so it survives a restart). The
    chat ids are hashed with `key` (default: from the install's salt next to the journal)."""
    if key is None:
        key = (hmac.new(load_salt(journal.parent), b"telegram-chat-ids", hashlib.sha256).digest()
               if journal is not None else secrets.token_bytes(32))
    return Answers(size, journal, key)


class _Common(TypedDict):
    parse_mode: str
    reply_parameters: ReplyParameters


# -- which media, and is it small enough -----------------------------------------------------------

@dataclass(frozen=True)
class MediaRef:
    """A file to download: its id, declared size and kind."""

    file_id: str
    file_size: int | None
    kind: str  # photo, animation, video, video_note, sticker, document
    sticker: bool = False


def _seconds(value: dt.timedelta | float | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    return float(value)


def _duration(obj: object) -> float | None:
    """A media object's duration in seconds, with or without PTB_TIMEDELTA."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _seconds(getattr(obj, "duration", None))


def _check(size: int | None, limit: int, duration: float | None = None,
           max_seconds: float | None = None) -> None:
    if size is not None and size > limit:
        raise too_large(size, limit)
    if duration is not None and max_seconds is not None and duration > max_seconds:
        raise too_long(duration, max_seconds)


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
        raise too_large(min(p.file_size or 0 for p in sizes), limit)
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
        kind = media_kind(d.mime_type, d.file_name or "", svg=True)
        if kind is None and (d.mime_type or "").lower() != TG_STICKER_MIME:
            raise said(UnsupportedMedia, "error.not_media", formats=MEDIA_FORMATS)
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


def ignored(msg: Message, bot_id: int) -> bool:
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


# -- sending

@contextlib.asynccontextmanager
async def chat_action(bot: Bot, chat_id: int, action: str) -> AsyncIterator[None]:
    """Show `action` ("typing", ...) in the chat until the block ends (refreshed every 4.5 s)."""

    async def keep() -> None:
        while True:
            await show_action(bot, chat_id, action)
            await asyncio.sleep(CHAT_ACTION_REFRESH_S)

    task = asyncio.create_task(keep())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def show_action(bot: Bot, chat_id: int, action: str) -> None:
    """One chat action, best effort (it is cosmetic)."""
    try:
        await bot.send_chat_action(chat_id, action)
    except TelegramError as exc:
        logger.debug("send_chat_action failed: %s", exc)


async def download(bot: Bot, ref: MediaRef, limit: int) -> bytes:
    try:
        f = await bot.get_file(ref.file_id)
    except BadRequest as exc:
        if "too big" in str(exc).lower():
            raise too_large(ref.file_size or limit + 1, limit) from None
        raise
    _check(f.file_size, limit)
    return bytes(await f.download_as_bytearray())


def reply_to(msg: Message) -> ReplyParameters:
    return ReplyParameters(message_id=msg.message_id, allow_sending_without_reply=True)


async def send_answer(bot: Bot, answers: Answers, request: Message, rec: Recognition, *,
                      adult_ok: bool, lang: str = "en", title_lang: str | None = None
                      ) -> list[Message]:
    """Reply with the preview clip (or still, or text) captioned with the answer, plus the
    keyboard; the answer goes in its own message when it is too long for a caption. Then,
    when characters were named, the named-faces photo (`send_characters`).

    A no-match goes as text only: no preview, no votes, the closest guesses behind a
    "Show closest scenes" button."""
    a = answer_text(rec, lang=lang, title_lang=title_lang)
    text = render_answer(a, adult_ok=adult_ok)
    markup = answer_keyboard(a, rec.query_id)
    n = a.votes
    best = rec.best if a.preview else None
    spoiler = answer_needs_spoiler(rec, adult_ok=adult_ok)
    clip = Path(best.preview) if best and best.preview else None
    still = Path(best.still) if best and best.still else None
    fits = visible_length(text) <= MAX_CAPTION
    caption = text if fits else render_short_caption(a, adult_ok=adult_ok)
    common = _Common(parse_mode=ParseMode.HTML, reply_parameters=reply_to(request))
    sent: list[Message] = []
    media_msg: Message | None = None
    try:
        if clip is not None and clip.is_file():
            await show_action(bot, request.chat_id, ChatAction.UPLOAD_VIDEO)
            media_msg = await request.reply_video(
                video=clip, caption=caption, supports_streaming=True, has_spoiler=spoiler,
                reply_markup=markup if fits else None, **common)
        elif still is not None and still.is_file():
            await show_action(bot, request.chat_id, ChatAction.UPLOAD_PHOTO)
            media_msg = await request.reply_photo(
                photo=still, caption=caption, has_spoiler=spoiler,
                reply_markup=markup if fits else None, **common)
    except NetworkError as exc:  # the preview could not be processed (BadRequest), or the
        # connection died while it was sent: the text answer still goes, on a new connection
        logger.warning("sending the preview failed (%s); answering with text", exc)
        media_msg = None
    if media_msg is not None:
        sent.append(media_msg)
    if media_msg is None or not fits:
        preview = cover_preview(a, adult_ok) if media_msg is None else None
        sent.append(await request.reply_text(text, reply_markup=markup,
                                             link_preview_options=preview, **common))
    if rec.query_id and n:
        keyboard_id = sent[-1].message_id
        for m in sent:
            answers.put((m.chat_id, m.message_id), AnswerRef(rec.query_id, n, keyboard_id))
    if a.title is not None:
        await send_characters(sent[-1], rec, adult_ok=adult_ok, spoiler=spoiler, lang=lang)
    return sent


async def answer_then_preview(service: Any, bot: Bot, answers: Answers, request: Message,
                              rec: Recognition, *, adult_ok: bool, lang: str = "en",
                              title_lang: str | None = None) -> list[Message]:
    """The answer first (`send_answer`: text and keyboard, as soon as it is known), then its
    preview once cut (`send_preview`: the clip replying to the answer, then the named faces).
    A no-match, previews off or a failed cut: the answer alone."""
    sent = await send_answer(bot, answers, request, rec, adult_ok=adult_ok, lang=lang,
                             title_lang=title_lang)
    best = rec.best
    if sent and not (best is not None and (best.preview or best.still)):
        pending = asyncio.ensure_future(follow_up(service, rec))
        if best is not None and rec.status != "no_match" and service.preview_pending(rec.query_id):
            # "sending video…" while the clip is cut, not after: no extra wait for it
            await show_action(bot, request.chat_id, ChatAction.UPLOAD_VIDEO)
        full = await pending
        if full is not None:
            sent += await send_preview(bot, answers, sent[-1], full, adult_ok=adult_ok, lang=lang,
                                       title_lang=title_lang)
    return sent


async def send_preview(bot: Bot, answers: Answers, answer: Message, rec: Recognition, *,
                       adult_ok: bool, lang: str = "en", title_lang: str | None = None
                       ) -> list[Message]:
    """After an answer that went out (text and keyboard): the preview clip (or still) as a
    reply to it, captioned with the short answer, then the named-faces photo. Reactions on
    the clip count as votes on the answer. Best effort: a clip Telegram refuses is logged and
    the answer stands as it is."""
    a = answer_text(rec, lang=lang, title_lang=title_lang)
    best = rec.best if a.preview and a.title is not None else None
    if best is None:
        return []
    spoiler = answer_needs_spoiler(rec, adult_ok=adult_ok)
    clip = Path(best.preview) if best.preview else None
    still = Path(best.still) if best.still else None
    common = _Common(parse_mode=ParseMode.HTML, reply_parameters=reply_to(answer))
    caption = render_short_caption(a, adult_ok=adult_ok)
    sent: list[Message] = []
    try:
        if clip is not None and clip.is_file():  # ("sending video…" was shown while it was cut)
            sent.append(await answer.reply_video(video=clip, caption=caption, supports_streaming=True,
                                                 has_spoiler=spoiler, **common))
        elif still is not None and still.is_file():
            await show_action(bot, answer.chat_id, ChatAction.UPLOAD_PHOTO)
            sent.append(await answer.reply_photo(photo=still, caption=caption, has_spoiler=spoiler,
                                                 **common))
    except (TelegramError, OSError) as exc:
        logger.warning("sending the preview failed (%s); the answer stays without it", exc)
    if rec.query_id and a.votes:
        for m in sent:
            answers.put((m.chat_id, m.message_id), AnswerRef(rec.query_id, a.votes, answer.message_id))
    faces = await send_characters(answer, rec, adult_ok=adult_ok, spoiler=spoiler, lang=lang)
    return sent + ([faces] if faces is not None else [])


def cover_preview(a: AnswerText, adult_ok: bool) -> LinkPreviewOptions | None:
    """A text answer (no preview clip or still) shows the series' cover from series.json as
    its link preview: small, under the text. None when there is no cover or the series is
    withheld here."""
    if not a.cover or a.title is None or (a.adult and not adult_ok):
        return None
    return LinkPreviewOptions(url=a.cover, prefer_small_media=True, show_above_text=False)


async def send_characters(answer: Message, rec: Recognition, *, adult_ok: bool,
                          spoiler: bool, lang: str = "en") -> Message | None:
    """After an answer that went out: the query picture with the faces boxed and named, as a
    photo replying to `answer` (only when someone was recognised). Best effort: a missing
    file or a failed call is logged and the answer stands as it is."""
    if not rec.annotated:
        return None
    caption = characters_caption(rec, adult_ok=adult_ok, lang=lang)
    if caption is None:
        return None
    path = Path(rec.annotated)
    try:
        if not path.is_file():
            logger.info("the named-faces picture is gone; not sending it")
            return None
        return await answer.reply_photo(
            photo=path, caption=caption, parse_mode=ParseMode.HTML, has_spoiler=spoiler,
            reply_parameters=reply_to(answer))
    except (TelegramError, OSError) as exc:
        logger.warning("sending the named-faces picture failed: %s", exc)
        return None
