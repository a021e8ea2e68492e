"""Telegram: a message with several pictures. An album (photos sent together arrive as
separate messages sharing a `media_group_id`) or a text with several picture links is
answered once, for its first picture, followed by a picker: one button per other picture
("Picture 2", "Picture 3", …). Pressing one answers that picture like the first, and the
button goes away.

Album items are collected for `ALBUM_WAIT_S` after the first one arrives (Telegram delivers
them together); in a group the album is answered when one of its items addresses the bot
(the caption with /anime or a mention sits on one item only) or the group has auto-answer on.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Message, Update
from telegram.error import BadRequest

from bot.chat.i18n import text
from bot.chat.state import AnswerMemory
from bot.telegram_io import reply_to
from bot.telegram_prefs import lang_for, prefs_of

if TYPE_CHECKING:
    from bot.telegram_adapter import CustomContext

logger = logging.getLogger(__name__)

#: Seconds to wait for an album's other items after its first one.
ALBUM_WAIT_S = 1.0
#: Pictures a picker offers (Telegram albums hold up to 10).
MAX_PICKS = 10
PICK_PREFIX = "pk:"


@dataclass
class Pending:
    """The pictures of one message not answered yet, and the message to answer."""

    request: Message
    items: list[Message | str]  # album items (messages) or picture links


def picker_memory(size: int = 1024) -> AnswerMemory[str, Pending]:
    return AnswerMemory(size)


def album_memory(size: int = 256) -> AnswerMemory[str, list[Message]]:
    return AnswerMemory(size)


def picker_keyboard(token: str, indexes: list[int], lang: str) -> InlineKeyboardMarkup:
    """"Picture 2", "Picture 3", …: five buttons a row; the payload says which item."""
    buttons = [InlineKeyboardButton(text(lang, "picker.item", n=i + 2),
                                    callback_data=f"{PICK_PREFIX}{token}:{i}") for i in indexes]
    return InlineKeyboardMarkup([buttons[k:k + 5] for k in range(0, len(buttons), 5)])


async def offer_others(context: CustomContext, request: Message, others: list[Message | str]
                       ) -> None:
    """After the first picture's answer: the picker for the others (nothing when none)."""
    others = others[:MAX_PICKS]
    if not others:
        return
    token = secrets.token_urlsafe(6)
    context.state.pending.put(token, Pending(request, others))
    lang = await lang_for(context, request)
    await request.reply_text(text(lang, "picker.prompt", n=len(others)),
                             reply_markup=picker_keyboard(token, list(range(len(others))), lang),
                             reply_parameters=reply_to(request))


async def collect_album(context: CustomContext, msg: Message) -> list[Message] | None:
    """Gather an album: the first item's handler waits for the others and gets them all (in
    order); the other items' handlers get None (their picture is in the first's list)."""
    gid = str(msg.media_group_id)
    albums = context.state.albums
    group = albums.get(gid)
    if group is not None:
        group.append(msg)
        return None
    group = [msg]
    albums.put(gid, group)
    await asyncio.sleep(ALBUM_WAIT_S)
    return sorted(group, key=lambda m: m.message_id)


async def on_pick(update: Update, context: CustomContext) -> None:
    """A picker button: answer that picture (as a reply to the message that asked)."""
    from bot.telegram_adapter import recognize_and_reply
    from bot.telegram_links import answer_link

    query = update.callback_query
    if query is None or not isinstance(query.data, str):
        return
    token, _, index = query.data.removeprefix(PICK_PREFIX).partition(":")
    pending = context.state.pending.get(token)
    i = int(index) if index.isdigit() else -1
    if pending is None or not 0 <= i < len(pending.items):
        prefs = await prefs_of(context, query.from_user,
                               query.message.chat.id if query.message else None)
        await query.answer(text(prefs.lang, "picker.gone"))
        return
    await query.answer()
    left = [k for k in range(len(pending.items)) if k != i and f"{token}:{k}" in _buttons(query)]
    msg = query.message if isinstance(query.message, Message) else None
    if msg is not None:
        try:
            lang = await lang_for(context, pending.request)
            await msg.edit_reply_markup(picker_keyboard(token, left, lang) if left else None)
        except BadRequest as exc:
            logger.info("could not update the picker: %s", exc)
    item = pending.items[i]
    if isinstance(item, str):
        await answer_link(context, item, pending.request)
    else:
        await recognize_and_reply(context, item, pending.request, explicit=True)


def _buttons(query: object) -> set[str]:
    """The picker payloads still on the pressed message ("<token>:<i>")."""
    markup = getattr(getattr(query, "message", None), "reply_markup", None)
    rows = getattr(markup, "inline_keyboard", ()) or ()
    return {str(b.callback_data).removeprefix(PICK_PREFIX) for row in rows for b in row
            if isinstance(b.callback_data, str)}
