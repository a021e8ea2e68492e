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

Feedback: the keyboard (✅ ❌ 1–5, payload `fb:<query_id>:<code>` from `bot.chat.feedback`) and
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
import datetime as dt
import hashlib
import hmac
import importlib.util
import logging
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeAlias
from urllib.parse import urlsplit

from pydantic import SecretStr
from telegram import (
    BotCommand,
    Message,
    MessageEntity,
    Update,
)
from telegram.constants import ChatAction, ChatType, ParseMode
from telegram.error import TelegramError
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

from bot.chat.adapter import Launch
from bot.chat.answer import answer_text
from bot.chat.fetch import PLATFORM_MEDIA_HOSTS, LinkFetcher
from bot.chat.i18n import LANGS, text
from bot.chat.settings import ChatSettings
from bot.chat.state import AnswerMemory, AutoAnswerChats, Owners, UserLocks, chat_token
from bot.chat.texts import user_error_text
from bot.logsafe import redact_in_logs
from bot.telegram_feedback import on_feedback_button, on_reaction
from bot.telegram_io import (
    Answers,
    addressed,
    answer_memory,
    answer_then_preview,
    chat_action,
    download,
    has_media,
    ignored,
    media_ref,
    reply_to,
    source_of,
)
from bot.telegram_links import answer_link, message_links, on_private_text
from bot.telegram_picker import (
    Pending,
    album_memory,
    collect_album,
    offer_others,
    on_pick,
    picker_memory,
)
from bot.telegram_prefs import (
    closest_memory,
    is_group_admin,
    lang_for,
    on_closest,
    on_lang,
    on_preview,
    prefs_for,
)
from bot.telegram_render import (
    closest_html,
    help_text,
    render_stats,
)
from core.errors import AniRecError, Busy, ConfigError, InvalidMedia, RateLimited
from core.feedback import load_salt
from core.service import RecognitionService

logger = logging.getLogger(__name__)

#: Bots may download files up to 20 MB through the Bot API (getFile refuses bigger ones).
TELEGRAM_DOWNLOAD_LIMIT = 20 * 1024 * 1024
#: Update types the bot needs; `message_reaction` is only delivered when asked for.
ALLOWED_UPDATES: tuple[str, ...] = ("message", "callback_query", "message_reaction")
#: Remembered answers for reactions (chat id, message id) → query id.
ANSWER_MAP_SIZE = 10_000
#: Updates handled at the same time (the service bounds the actual inference).
CONCURRENT_UPDATES = 32

_STATE_KEY = "anirec"

#: The commands in Telegram's "/" menu (their descriptions: `tg.cmd.<name>` in the catalogue).
COMMANDS = ("anime", "help", "autoanswer", "lang", "preview")


def bot_commands(lang: str = "en") -> list[BotCommand]:
    """The "/" menu in `lang`."""
    return [BotCommand(c, text(lang, f"tg.cmd.{c}")) for c in COMMANDS]



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

@dataclass
class BotState:
    """Everything the handlers need, stored in `application.bot_data["anirec"]`."""

    service: RecognitionService
    owners: Owners
    answers: Answers
    auto: AutoAnswerChats
    #: Serialises one person's feedback, so add-then-remove reactions keep their order even
    #: though updates are handled concurrently.
    user_lock: UserLocks = field(default_factory=UserLocks)
    settings: ChatSettings = field(default_factory=lambda: ChatSettings(None, lambda p, r: r))
    closest: AnswerMemory[str, str] = field(default_factory=closest_memory)
    links: LinkFetcher = field(default_factory=LinkFetcher)
    #: Pictures of a message not answered yet, behind a picker (bot/telegram_picker.py).
    pending: AnswerMemory[str, Pending] = field(default_factory=picker_memory)
    albums: AnswerMemory[str, list[Message]] = field(default_factory=album_memory)


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


# -- helpers ---------------------------------------------------------------------------------------

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
        prefs = await prefs_for(context, request)
        async with chat_action(context.bot, request.chat_id, ChatAction.TYPING):
            data = await download(context.bot, ref, limit)
            rec = await service.recognize(data, source=source, sticker=ref.sticker,
                                          with_preview=prefs.with_preview)
    except (InvalidMedia, RateLimited, Busy) as exc:
        if explicit:
            raise
        logger.info("auto-answer in chat %s skipped: %s",
                    chat_token(context.state.answers.key, request.chat_id), exc)
        return
    if not explicit and rec.status == "no_match":
        return
    lang = prefs.lang or "en"
    if rec.query_id and rec.status == "no_match" and rec.candidates:
        a = answer_text(rec, lang=lang, title_lang=prefs.title_lang)
        context.state.closest.put(rec.query_id, closest_html(a, adult_ok=source.allow_adult))
    await answer_then_preview(service, context.bot, context.state.answers, request, rec,
                              adult_ok=source.allow_adult, lang=lang, title_lang=prefs.title_lang)


# -- handlers --------------------------------------------------------------------------------------

async def on_media(update: Update, context: CustomContext) -> None:
    """A picture/GIF/clip/sticker/file: answer in private chats, when addressed in the
    caption, or in auto-answer groups."""
    msg = update.message
    if msg is None or ignored(msg, context.bot.id):
        return
    private = msg.chat.type == ChatType.PRIVATE
    if msg.media_group_id:
        await on_album(context, msg, private)
        return
    explicit = private or addressed(msg, context.bot.username, context.bot.id)
    if not explicit:
        if not context.state.auto.enabled(msg.chat_id):
            return
        if msg.sticker or msg.video_note:  # chat stickers and round selfies: not screenshots
            return
    await recognize_and_reply(context, msg, msg, explicit=explicit)


async def on_album(context: CustomContext, msg: Message, private: bool) -> None:
    """Several photos sent together: the first is answered, a picker offers the others."""
    group = await collect_album(context, msg)
    if group is None:
        return  # collected by the album's first item
    asked = [m for m in group if private or addressed(m, context.bot.username, context.bot.id)]
    if not asked and not context.state.auto.enabled(msg.chat_id):
        return
    request = asked[0] if asked else group[0]
    try:
        await recognize_and_reply(context, group[0], request, explicit=bool(asked))
    finally:
        if asked:
            await offer_others(context, request, list(group[1:]))


async def on_anime_command(update: Update, context: CustomContext) -> None:
    """/anime or /anime@bot as a reply to a picture."""
    msg = update.message
    if msg is None or ignored(msg, context.bot.id):
        return
    target = msg.reply_to_message
    urls = message_links(msg) or (message_links(target) if not has_media(target) else [])
    if urls:
        try:
            await answer_link(context, urls[0], msg)
        finally:
            await offer_others(context, msg, list(urls[1:]))
        return
    if not has_media(target):
        key = "tg.anime_usage_private" if msg.chat.type == ChatType.PRIVATE else "tg.anime_usage"
        await msg.reply_text(text(await lang_for(context, msg), key), reply_parameters=reply_to(msg))
        return
    assert target is not None
    await recognize_and_reply(context, target, msg, explicit=True)


async def on_mention_reply(update: Update, context: CustomContext) -> None:
    """A text reply that mentions the bot, to a picture."""
    msg = update.message
    if msg is None or ignored(msg, context.bot.id):
        return
    if not addressed(msg, context.bot.username, context.bot.id):
        return
    target = msg.reply_to_message
    if has_media(target):
        assert target is not None
        await recognize_and_reply(context, target, msg, explicit=True)


async def on_help(update: Update, context: CustomContext) -> None:
    if update.message is not None:
        lang = await lang_for(context, update.message)
        await update.message.reply_text(help_text(context.bot.username, lang),
                                        parse_mode=ParseMode.HTML)


async def on_autoanswer(update: Update, context: CustomContext) -> None:
    """/autoanswer on|off (group admins): answer every picture in this group."""
    msg = update.message
    if msg is None or ignored(msg, context.bot.id):
        return
    lang = await lang_for(context, msg)
    if msg.chat.type == ChatType.PRIVATE:
        await msg.reply_text(text(lang, "tg.auto.private"))
        return
    auto = context.state.auto
    arg = (context.args[0].lower() if context.args else "")
    if arg not in ("on", "off"):
        key = "tg.auto.is_on" if auto.enabled(msg.chat_id) else "tg.auto.is_off"
        await msg.reply_text(text(lang, key), reply_parameters=reply_to(msg))
        return
    if not await is_group_admin(context, msg):
        await msg.reply_text(text(lang, "tg.auto.admins"), reply_parameters=reply_to(msg))
        return
    auto.set(msg.chat_id, arg == "on")
    await msg.reply_text(text(lang, f"tg.auto.{arg}"), reply_parameters=reply_to(msg))


def _is_owner(update: Update, context: CustomContext) -> bool:
    u = update.effective_user
    return context.state.owners.allows(u.id if u is not None else None)


async def on_stats(update: Update, context: CustomContext) -> None:
    """/stats (owners only)."""
    msg = update.message
    if msg is None:
        return
    if not _is_owner(update, context):
        await msg.reply_text(text(await lang_for(context, msg), "error.owner_only"))
        return
    stats = await context.service.stats()
    stats["answers_remembered"] = len(context.state.answers)
    await msg.reply_text(render_stats(stats), parse_mode=ParseMode.HTML)


async def on_reload(update: Update, context: CustomContext) -> None:
    """/reload (owners only): load the current models and index without a restart."""
    msg = update.message
    if msg is None:
        return
    lang = await lang_for(context, msg)
    if not _is_owner(update, context):
        await msg.reply_text(text(lang, "error.owner_only"))
        return
    async with chat_action(context.bot, msg.chat_id, ChatAction.TYPING):
        what = await context.service.reload()
    await msg.reply_text(text(lang, "reloaded", what=what))


async def on_error(update: object, context: CustomContext) -> None:
    """The one place errors become user text: log first, then tell the person (if a message
    asked), using `bot.chat.texts.user_error_text`."""
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
            lang = await lang_for(context, update.message)
            await update.message.reply_text(user_error_text(err, lang),
                                            reply_parameters=reply_to(update.message))
        except TelegramError as exc:
            logger.info("could not send the error text: %s", exc)


async def publish_commands(app: TelegramApp) -> None:
    """Publish the command list shown in Telegram's "/" menu (best effort): in English for
    everyone, and in Japanese and Chinese for people whose Telegram is in those languages."""
    try:
        await app.bot.set_my_commands(bot_commands())
        for lang in LANGS:
            if lang != "en":
                await app.bot.set_my_commands(bot_commands(lang), language_code=lang)
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
    allow_private_urls: bool = False,
    any_link_host: bool = False,
    concurrent_updates: int = CONCURRENT_UPDATES,
    answer_map_size: int = ANSWER_MAP_SIZE,
    salt: bytes | None = None,
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
        allow_private_urls: let picture links point at private addresses (tests).
        concurrent_updates: updates handled at once (the service bounds inference).
        answer_map_size: answers remembered for reactions (in memory, LRU).
    """
    raw = token.get_secret_value() if isinstance(token, SecretStr) else token
    if not raw:
        raise ConfigError("TELEGRAM_TOKEN is empty.")
    # The token is part of every request URL: httpx logs URLs at INFO, PTB logs
    # "Set Bot API URL: …/bot<token>" at DEBUG. Every log record is scrubbed of it.
    redact_in_logs(raw)
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
    journal = state_file.with_name(state_file.stem + "-answers.jsonl") if state_file else None
    if salt is None:  # the install's salt next to the state file, else one for this process
        salt = load_salt(state_file.parent) if state_file is not None else secrets.token_bytes(32)
    key = hmac.new(salt, b"telegram-chat-ids", hashlib.sha256).digest()  # files hold hashed chat ids
    app.bot_data[_STATE_KEY] = BotState(service=service, owners=Owners(owner_ids),
                                        answers=answer_memory(answer_map_size, journal, key),
                                        auto=AutoAnswerChats(state_file, key),
                                        settings=ChatSettings.of(service),
                                        links=LinkFetcher(allow_private=allow_private_urls,
                                                          hosts=None if any_link_host else PLATFORM_MEDIA_HOSTS))
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
    app.add_handler(CommandHandler("lang", on_lang, filters=new))
    app.add_handler(CommandHandler("preview", on_preview, filters=new))
    app.add_handler(CallbackQueryHandler(on_feedback_button, pattern=r"^fb:"))
    app.add_handler(CallbackQueryHandler(on_closest, pattern=r"^cl:"))
    app.add_handler(CallbackQueryHandler(on_pick, pattern=r"^pk:"))
    app.add_handler(MessageReactionHandler(on_reaction))
    app.add_error_handler(on_error)
    return app


def webhook_secret(token: str) -> str:
    """A stable secret for the X-Telegram-Bot-Api-Secret-Token header, derived from the
    token (so restarts keep it and nothing else has to be configured)."""
    return hashlib.sha256(b"anirec-webhook:" + token.encode()).hexdigest()


async def run_telegram(app: TelegramApp, stop: asyncio.Event, *, webhook_url: str | None = None,
                       port: int = 8443, listen: str = "127.0.0.1", poll_timeout: int = 10,
                       drop_pending_updates: bool = False, secret_token: str | None = None) -> None:
    """Run the bot until `stop` is set, inside the caller's event loop.

    Polling by default; with `webhook_url` (the public HTTPS URL a reverse proxy forwards to
    `listen:port`), a webhook whose path is the URL's path. Both ask for ALLOWED_UPDATES.
    Several webhook workers may sit behind one URL (docs/deploy.md): each registers the same
    URL, update types and secret (`secret_token`, else `webhook_secret(token)`), so whichever
    starts last changes nothing, and each answers the updates the proxy hands it.
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
                    secret_token=secret_token or webhook_secret(app.bot.token),
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
            await app.bot_data[_STATE_KEY].links.close()


class TelegramAdapter:
    """The Telegram platform for `anirec run` (see `bot.chat.adapter.PlatformAdapter`)."""

    name = "telegram"
    url: str | None = None

    def __init__(self, app: TelegramApp, *, webhook_url: str | None = None,
                 port: int = 8443, listen: str = "127.0.0.1", secret_token: str | None = None) -> None:
        self.app = app
        self.webhook_url = webhook_url
        self.port = port
        self.listen = listen
        self.secret_token = secret_token

    @classmethod
    def from_launch(cls, launch: Launch) -> TelegramAdapter:
        """The application from the settings (its auto-answer flags and answer journal kept
        in the home folder)."""
        st = launch.settings
        assert st.telegram_token is not None
        app = build_telegram_application(
            st.telegram_token, launch.service, owner_ids=st.telegram_owner_ids,
            state_file=st.home / "telegram.json", base_url=st.telegram_api_url,
            base_file_url=st.telegram_file_url, any_link_host=st.allow_link_downloads)
        secret = st.telegram_webhook_secret.get_secret_value() if st.telegram_webhook_secret else None
        return cls(app, webhook_url=st.telegram_webhook_url, port=st.telegram_webhook_port,
                   listen=st.telegram_webhook_listen, secret_token=secret)

    async def run(self, stop: asyncio.Event) -> None:
        await run_telegram(self.app, stop, webhook_url=self.webhook_url, port=self.port,
                           listen=self.listen, secret_token=self.secret_token)
