"""Votes arriving on Telegram: the ✅ ❌ 1–5 keyboard under an answer, and 👍/👎 reactions on
it (added or withdrawn), recorded through the service; the keyboard shows the new tally."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from telegram import (
    CallbackQuery,
    InlineKeyboardMarkup,
    Message,
    ReactionType,
    ReactionTypeEmoji,
    Update,
)
from telegram.error import BadRequest

from bot.chat.feedback import emoji_feedback, feedback_toast, parse_feedback
from bot.chat.i18n import text
from bot.chat.texts import user_error_text
from bot.telegram_io import AnswerRef
from bot.telegram_prefs import prefs_of
from bot.telegram_render import feedback_keyboard, link_buttons, rank_buttons
from core.types import Source, Verdict

if TYPE_CHECKING:
    from bot.telegram_adapter import CustomContext

logger = logging.getLogger(__name__)


def not_modified(exc: BadRequest) -> bool:
    """Telegram's answer to an edit that changes nothing (the same tally)."""
    return "not modified" in str(exc).lower()


async def _lang(context: CustomContext, query: CallbackQuery) -> str:
    """The UI language of the person who pressed a button."""
    chat_id = query.message.chat.id if query.message is not None else None
    return (await prefs_of(context, query.from_user, chat_id)).lang or "en"


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
        await query.answer(text(await _lang(context, query), "vote.bad_rank"))
        return
    except Exception as exc:
        await query.answer(user_error_text(exc, await _lang(context, query))[:200])
        raise
    await query.answer(feedback_toast(action.verdict, action.rank,
                                      lang=await _lang(context, query)))
    if msg is None:
        return
    markup = msg.reply_markup if isinstance(msg.reply_markup, InlineKeyboardMarkup) else None
    n = rank_buttons(markup)
    context.state.answers.put((chat_id, msg.message_id),
                              AnswerRef(action.query_id, n, msg.message_id))
    try:
        await query.edit_message_reply_markup(
            feedback_keyboard(action.query_id, n, tally, links=link_buttons(markup)))
    except BadRequest as exc:  # "not modified" (same tally), or a message too old to edit
        if not not_modified(exc):
            logger.info("could not update the tally on %s: %s", msg.message_id, exc)


def reaction_votes(reactions: Sequence[ReactionType]) -> set[tuple[Verdict, int | None]]:
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
    ref = context.state.answers.get((r.chat.id, r.message_id))
    if ref is None:
        return
    old, new = reaction_votes(r.old_reaction), reaction_votes(r.new_reaction)
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
            if not not_modified(exc):
                logger.info("could not update the tally on %s: %s", ref.keyboard_message_id, exc)
