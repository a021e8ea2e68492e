"""Telegram: pictures by link. A private message (or `/anime <link>`, or a reply with /anime to
a message) holding an image or clip URL — in the text, behind a text link, or as the chosen
link preview — is downloaded through the same safe fetcher as Discord's links
(`bot.chat.fetch.LinkFetcher`: public addresses only, a size cap, a timeout) and answered
like a photo."""

from __future__ import annotations

from typing import TYPE_CHECKING

from telegram import Message, MessageEntity, Update
from telegram.constants import ChatAction

from bot.chat.answer import answer_text
from bot.chat.i18n import text
from bot.discord_media import links_in, media_link
from bot.telegram_io import chat_action, ignored, reply_to, source_of
from bot.telegram_picker import offer_others
from bot.telegram_prefs import lang_for, prefs_for
from bot.telegram_render import closest_html

if TYPE_CHECKING:
    from bot.telegram_adapter import CustomContext


def message_links(msg: Message | None) -> list[str]:
    """Image/clip links of a message: its text and caption, text links, the link preview."""
    if msg is None:
        return []
    body = " ".join(t for t in (msg.text, msg.caption) if t)
    urls = links_in(body)
    for ent in (*(msg.entities or ()), *(msg.caption_entities or ())):
        if ent.type == MessageEntity.TEXT_LINK and ent.url and media_link(ent.url):
            urls.append(ent.url)
    preview = msg.link_preview_options.url if msg.link_preview_options else None
    if isinstance(preview, str) and media_link(preview):
        urls.append(preview)
    return list(dict.fromkeys(urls))


async def answer_link(context: CustomContext, url: str, request: Message) -> None:
    """Download `url` (safely), recognise it, and answer `request` as for a photo."""
    from bot.telegram_adapter import TELEGRAM_DOWNLOAD_LIMIT
    from bot.telegram_io import answer_then_preview

    service = context.service
    limit = min(TELEGRAM_DOWNLOAD_LIMIT, int(service.limits.max_bytes))
    source = source_of(request)
    prefs = await prefs_for(context, request)
    async with chat_action(context.bot, request.chat_id, ChatAction.TYPING):
        data = await context.state.links.fetch(url, limit)
        rec = await service.recognize(data, source=source, with_preview=prefs.with_preview)
    lang = prefs.lang or "en"
    if rec.query_id and rec.status == "no_match" and rec.candidates:
        a = answer_text(rec, lang=lang, title_lang=prefs.title_lang)
        context.state.closest.put(rec.query_id, closest_html(a, adult_ok=source.allow_adult))
    await answer_then_preview(service, context.bot, context.state.answers, request, rec,
                              adult_ok=source.allow_adult, lang=lang, title_lang=prefs.title_lang)


async def on_private_text(update: Update, context: CustomContext) -> None:
    """Plain text in a private chat: a link to a picture is answered; else say what to send."""
    msg = update.message
    if msg is None or ignored(msg, context.bot.id):
        return
    urls = message_links(msg)
    if urls:
        try:
            await answer_link(context, urls[0], msg)
        finally:
            await offer_others(context, msg, list(urls[1:]))
        return
    await msg.reply_text(text(await lang_for(context, msg), "tg.send_me"),
                         reply_parameters=reply_to(msg))
