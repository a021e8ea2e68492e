"""Telegram: the /lang command (UI and title language, per user or per chat) and the
"Show closest scenes" button of a no-match answer."""

from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING

from telegram import Message, Update, User
from telegram.constants import ChatMemberStatus, ChatType, ParseMode
from telegram.error import BadRequest

from bot.chat.i18n import LANG_NAMES, LANGS, pick_lang, text
from bot.chat.settings import Prefs
from bot.chat.state import AnswerMemory
from bot.telegram_io import reply_to
from bot.telegram_render import CLOSEST_PREFIX

if TYPE_CHECKING:
    from bot.telegram_adapter import CustomContext

logger = logging.getLogger(__name__)

#: Title languages /lang accepts besides the UI languages ("ja-Latn": romaji in series.json).
TITLE_LANGS = (*LANGS, "ja-latn", "default")


def closest_memory(size: int = 2048) -> AnswerMemory[str, str]:
    """query id → the HTML of a no-match's closest guesses, for its button (bounded LRU)."""
    return AnswerMemory(size)


async def prefs_of(context: CustomContext, user: User | None, chat_id: int | None) -> Prefs:
    """A person's prefs here: their own over their chat's; with no language chosen, the
    language of their Telegram app (`User.language_code`) when it is one of ours."""
    p = await context.state.settings.get(
        "telegram", user_id=str(user.id) if user else None,
        chat_id=str(chat_id) if chat_id is not None else None)
    if p.lang is None and user is not None:
        p = dataclasses.replace(p, lang=pick_lang(user.language_code))
    return p


async def prefs_for(context: CustomContext, msg: Message) -> Prefs:
    """The prefs for an answer to `msg` (its sender's over its chat's)."""
    return await prefs_of(context, msg.from_user, msg.chat_id)


async def lang_for(context: CustomContext, msg: Message | None) -> str:
    """The UI language to answer `msg` in."""
    if msg is None:
        return "en"
    return (await prefs_for(context, msg)).lang or "en"


async def is_group_admin(context: CustomContext, msg: Message) -> bool:
    """An owner of the bot, an admin of the group (or an anonymous admin writing as the
    group); in a private chat, the person themselves."""
    if msg.chat.type == ChatType.PRIVATE:
        return True
    if msg.from_user is not None and context.state.owners.allows(msg.from_user.id):
        return True
    if msg.sender_chat is not None and msg.sender_chat.id == msg.chat_id:
        return True
    if msg.from_user is None:
        return False
    member = await context.bot.get_chat_member(msg.chat_id, msg.from_user.id)
    return member.status in (ChatMemberStatus.ADMINISTRATOR, ChatMemberStatus.OWNER)


def _scope_and_args(args: list[str] | None) -> tuple[str, list[str]]:
    """A setting command's words, lower-cased: a leading "chat" sets it for the whole chat."""
    words = [a.lower() for a in (args or [])]
    if words and words[0] == "chat":
        return "chat", words[1:]
    return "user", words


def _subject(msg: Message, scope: str) -> str:
    """Whose setting it is: the sender's (raw id; hashed when stored) or the chat's."""
    assert msg.from_user is not None
    return str(msg.from_user.id) if scope == "user" else str(msg.chat_id)


async def on_lang(update: Update, context: CustomContext) -> None:
    """/lang [chat] <en|ja|zh> [title language]: the reply language and the language of
    series titles, for yourself (or, with "chat", a group admin for the whole group)."""
    msg = update.message
    if msg is None or msg.from_user is None:
        return
    scope, args = _scope_and_args(context.args)
    current = await prefs_for(context, msg)
    if not args or args[0] not in LANGS or (len(args) > 1 and args[1] not in TITLE_LANGS):
        await msg.reply_text(text(current.lang, "lang.usage"), reply_parameters=reply_to(msg))
        return
    if scope == "chat" and not await is_group_admin(context, msg):
        await msg.reply_text(text(current.lang, "admins.lang"), reply_parameters=reply_to(msg))
        return
    lang = args[0]
    title = None if len(args) < 2 or args[1] == "default" else args[1]
    if title == "ja-latn":
        title = "ja-Latn"
    raw = _subject(msg, scope)
    await context.state.settings.set(scope, "telegram", raw, lang=lang, title_lang=title)
    titles = LANG_NAMES.get(title or lang, title or lang)
    await msg.reply_text(text(lang, "lang.set", titles=titles), reply_parameters=reply_to(msg))


async def on_preview(update: Update, context: CustomContext) -> None:
    """/preview on|off: whether your answers come with the preview clip (off: text only,
    faster); "/preview chat off" for a whole group (admins)."""
    msg = update.message
    if msg is None or msg.from_user is None:
        return
    scope, args = _scope_and_args(context.args)
    lang = await lang_for(context, msg)
    if not args or args[0] not in ("on", "off"):
        await msg.reply_text(text(lang, "preview.usage"), reply_parameters=reply_to(msg))
        return
    if scope == "chat" and not await is_group_admin(context, msg):
        await msg.reply_text(text(lang, "admins.change"), reply_parameters=reply_to(msg))
        return
    raw = _subject(msg, scope)
    await context.state.settings.set(scope, "telegram", raw, preview=args[0] == "on")
    await msg.reply_text(text(lang, "preview.on" if args[0] == "on" else "preview.off"),
                         reply_parameters=reply_to(msg))


async def on_closest(update: Update, context: CustomContext) -> None:
    """"Show closest scenes" pressed: the no-match's closest guesses appear under it."""
    query = update.callback_query
    if query is None or not isinstance(query.data, str):
        return
    qid = query.data.removeprefix(CLOSEST_PREFIX)
    html_ = context.state.closest.get(qid)
    msg = query.message if isinstance(query.message, Message) else None
    if html_ is None or msg is None:
        prefs = await prefs_of(context, query.from_user, msg.chat_id if msg else None)
        await query.answer(text(prefs.lang, "error.answer_too_old"))
        return
    await query.answer()
    body = msg.text_html if msg.text else (msg.caption_html or "")
    try:
        await query.edit_message_text(f"{body}\n\n{html_}", parse_mode=ParseMode.HTML,
                                      reply_markup=None)
    except BadRequest as exc:
        logger.info("could not show the closest scenes on %s: %s", msg.message_id, exc)
