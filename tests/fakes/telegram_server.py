"""A fake Telegram Bot API server on 127.0.0.1 for end-to-end tests.

The real python-telegram-bot (PTB) ``Application`` talks to it over HTTP, exactly as it
talks to ``api.telegram.org``; nothing is patched::

    async with FakeTelegram(token="123:ABC") as tg:
        app = tg.application_builder().build()   # or ApplicationBuilder().token(...)
        app.add_handler(...)                      #   .base_url(tg.base_url)
        async with tg.polling(app, allowed_updates=["message", "callback_query"]):
            chat, user = tg.private_chat(1001), tg.user(1001, "Alice", "alice")
            tg.push_update(tg.photo_message(chat, user, png_bytes))
            call = await tg.wait_for("sendMessage")
            assert call.params["reply_markup"]["inline_keyboard"]

What it does, in the order a request meets it:

- ``/bot{token}/{method}`` (GET or POST; query string, JSON, form-urlencoded or multipart
  bodies; uploaded files are kept as bytes with their file name and content type). A
  wrong token answers 401 like Telegram; an unknown method answers 400 ``Bad Request:
  method not found`` (never 404: PTB reads a 404 as an invalid token). Method names are
  case-insensitive, as on Telegram.
- Every call is recorded (``requests``, ``calls()``, ``wait_for()``), then an injected
  failure (``fail_next()``) or the method's handler answers ``{"ok": true, "result": ...}``
  with complete objects (every field PTB 22.8 requires, no field it does not know).
- ``getUpdates`` is a real long poll: it honours ``offset`` (confirming updates),
  ``limit``, ``timeout`` and ``allowed_updates`` (remembered between calls; updates of a
  type that is not allowed are discarded, as Telegram never creates them). A new poll
  releases any older one still waiting, so a poll the client abandoned cannot make
  shutdown hang.
- Files live in memory and download from ``/file/bot{token}/{file_path}``.

Realistic refusals that an adapter should be ready for: ``message is not modified``,
``message to be replied not found``, ``REACTION_INVALID`` (only Telegram's standard
reaction emoji; no ✅/❌/1️⃣), ``REACTIONS_TOO_MANY`` (bots set one reaction), callback
data over 64 bytes, text over 4096 / captions over 1024 characters, ``file is too big``
for downloads over 20 MB, ``IMAGE_PROCESS_FAILED`` when a sent photo is not an image.

Message ids come from one counter for the whole fake, so they are unique across chats
(Telegram numbers them per chat); a bare ``int`` is therefore enough to name a message.
A chat id the test never built is accepted (a private chat if positive, a group if
negative). With ``parse_mode="HTML"`` the echoed text has its tags stripped (no entities
are made); the recorded ``params`` keep what the bot sent.
Pillow is used, when importable, to read image sizes and to make the smaller
``PhotoSize`` entries; the largest ``PhotoSize`` always holds exactly the given bytes.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import html
import inspect
import io
import itertools
import json
import mimetypes
import re
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    from telegram.ext import Application, ApplicationBuilder

__all__ = [
    "ALL_UPDATE_TYPES",
    "DEFAULT_ALLOWED_UPDATES",
    "REACTION_EMOJI",
    "ChatLike",
    "FakeTelegram",
    "RecordedCall",
    "StoredFile",
    "UploadedFile",
    "UserLike",
    "derive_entities",
]

JSON = dict[str, Any]
#: A Chat dict or a chat id.
ChatLike = Mapping[str, Any] | int
#: A User dict or a user id.
UserLike = Mapping[str, Any] | int

#: Every update type of the Bot API (the keys of an ``Update`` besides ``update_id``).
ALL_UPDATE_TYPES: frozenset[str] = frozenset(
    {
        "message",
        "edited_message",
        "channel_post",
        "edited_channel_post",
        "business_connection",
        "business_message",
        "edited_business_message",
        "deleted_business_messages",
        "message_reaction",
        "message_reaction_count",
        "inline_query",
        "chosen_inline_result",
        "callback_query",
        "shipping_query",
        "pre_checkout_query",
        "purchased_paid_media",
        "poll",
        "poll_answer",
        "my_chat_member",
        "chat_member",
        "chat_join_request",
        "chat_boost",
        "removed_chat_boost",
        "managed_bot",
        "guest_message",
    }
)

#: What Telegram delivers when ``allowed_updates`` was never given (or given as ``[]``).
DEFAULT_ALLOWED_UPDATES: frozenset[str] = ALL_UPDATE_TYPES - {
    "chat_member",
    "message_reaction",
    "message_reaction_count",
}

#: The standard reaction emoji (``ReactionTypeEmoji.emoji``); nothing else is accepted.
REACTION_EMOJI: frozenset[str] = frozenset(
    "👍 👎 ❤ 🔥 🥰 👏 😁 🤔 🤯 😱 🤬 😢 🎉 🤩 🤮 💩 🙏 👌 🕊 🤡 🥱 🥴 😍 🐳 ❤️\u200d🔥 🌚 🌭 💯 🤣 ⚡ "
    "🍌 🏆 💔 🤨 😐 🍓 🍾 💋 🖕 😈 😴 😭 🤓 👻 👨\u200d💻 👀 🎃 🙈 😇 😨 🤝 ✍ 🤗 🫡 🎅 🎄 ☃ 💅 🤪 "
    "🗿 🆒 💘 🙉 🦄 😘 💊 🙊 😎 👾 🤷\u200d♂️ 🤷 🤷\u200d♀️ 😡".split()
)

CHAT_ACTIONS: frozenset[str] = frozenset(
    {
        "typing",
        "upload_photo",
        "record_video",
        "upload_video",
        "record_voice",
        "upload_voice",
        "upload_document",
        "choose_sticker",
        "find_location",
        "record_video_note",
        "upload_video_note",
    }
)

MAX_DOWNLOAD_BYTES = 20 * 1024 * 1024  # getFile refuses bigger files ("file is too big")
MAX_UPLOAD_BYTES = 50 * 1024 * 1024  # bigger request bodies answer 413
MAX_TEXT_LENGTH = 4096
MAX_CAPTION_LENGTH = 1024
MAX_CALLBACK_DATA_BYTES = 64
MAX_LONG_POLL_SECONDS = 50.0

# Parameters whose values are plain strings; every other form/query value is JSON-decoded
# when it parses (PTB JSON-encodes everything that is not a str).
_STRING_PARAMS: frozenset[str] = frozenset(
    {
        "text",
        "caption",
        "parse_mode",
        "callback_query_id",
        "inline_message_id",
        "url",
        "secret_token",
        "ip_address",
        "language_code",
        "action",
        "file_id",
        "photo",
        "video",
        "animation",
        "document",
        "sticker",
        "audio",
        "voice",
        "video_note",
        "thumbnail",
        "cover",
        "title",
        "description",
        "short_description",
        "name",
        "emoji",
        "business_connection_id",
        "message_effect_id",
        "query",
        "switch_pm_text",
        "switch_pm_parameter",
        "file_name",
    }
)

_FILE_ID_PREFIX = {
    "photo": "AgAC",
    "video": "BAAC",
    "document": "BQAC",
    "animation": "CgAC",
    "sticker": "CAAC",
    "video_note": "DQAC",
    "audio": "CQAC",
    "voice": "AwAC",
}
_FILE_FOLDER = {
    "photo": "photos",
    "video": "videos",
    "document": "documents",
    "animation": "animations",
    "sticker": "stickers",
    "video_note": "video_notes",
    "audio": "music",
    "voice": "voice",
}
_PHOTO_BOXES = (90, 320, 800, 1280)

_COMMAND_RE = re.compile(r"(?<!\S)/[A-Za-z0-9_]{1,32}(?:@[A-Za-z0-9_]{3,32})?(?![\w/@])")
_MENTION_RE = re.compile(r"(?<![\w@/])@[A-Za-z0-9_]{5,32}(?!\w)")
_HTML_TAG_RE = re.compile(r"<[^>]+>")
_BOT_COMMAND_NAME_RE = re.compile(r"^[a-z0-9_]{1,32}$")


class ApiError(Exception):
    """An error answer of the Bot API: HTTP status, description and optional parameters."""

    def __init__(self, status: int, description: str, parameters: JSON | None = None) -> None:
        super().__init__(description)
        self.status = status
        self.description = description
        self.parameters = parameters

    def payload(self) -> JSON:
        body: JSON = {"ok": False, "error_code": self.status, "description": self.description}
        if self.parameters:
            body["parameters"] = self.parameters
        return body


def _bad_request(text: str) -> ApiError:
    return ApiError(400, f"Bad Request: {text}")


@dataclass(frozen=True)
class UploadedFile:
    """One file part of a multipart request, as the client sent it."""

    data: bytes
    filename: str | None
    content_type: str | None


@dataclass
class StoredFile:
    """A file the fake can serve: its ids, bytes, path and the media object it belongs to."""

    file_id: str
    file_unique_id: str
    data: bytes
    file_path: str
    mime_type: str | None
    file_name: str | None
    kind: str
    media: Any = None  # the PhotoSize list / Video / Document ... dict built for this file

    def file_object(self) -> JSON:
        """The ``File`` object that getFile returns."""
        return {
            "file_id": self.file_id,
            "file_unique_id": self.file_unique_id,
            "file_size": len(self.data),
            "file_path": self.file_path,
        }


@dataclass
class RecordedCall:
    """One Bot API request received by the fake.

    ``params`` are decoded (ints, bools, lists and dicts as the client meant them); ``files``
    maps multipart part names to the uploaded bytes. ``time`` is ``time.monotonic()`` at
    arrival. ``status`` and ``response`` are filled in when the answer is sent (for a long
    poll, when it returns).
    """

    method: str
    params: dict[str, Any]
    files: dict[str, UploadedFile]
    time: float
    http_method: str = "POST"
    status: int | None = None
    response: JSON | None = None
    injected: bool = False

    @property
    def ok(self) -> bool:
        """Whether the answer was ``{"ok": true, ...}``."""
        return bool(self.response and self.response.get("ok"))

    @property
    def result(self) -> Any:
        """The ``result`` of a successful answer (a Message dict for send methods)."""
        return self.response.get("result") if self.response else None


DROP = 0  # fail_next(status=DROP): the connection is reset, no answer at all


@dataclass
class _Failure:
    status: int
    description: str
    parameters: JSON | None
    times: int


@dataclass
class _Waiters:
    """A replaceable asyncio.Event: ``notify()`` wakes everyone waiting on the current one."""

    event: asyncio.Event = field(default_factory=asyncio.Event)

    def notify(self) -> None:
        old, self.event = self.event, asyncio.Event()
        old.set()


def _utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def derive_entities(text: str) -> list[JSON]:
    """``bot_command`` and ``mention`` entities of ``text``, with UTF-16 offsets as Telegram."""
    spans: list[tuple[int, int, str]] = []
    for m in _COMMAND_RE.finditer(text):
        spans.append((m.start(), m.end(), "bot_command"))
    for m in _MENTION_RE.finditer(text):
        if not any(s <= m.start() < e for s, e, _ in spans):
            spans.append((m.start(), m.end(), "mention"))
    spans.sort()
    return [
        {"type": kind, "offset": _utf16_len(text[:start]), "length": _utf16_len(text[start:end])}
        for start, end, kind in spans
    ]


def _coerce(name: str, value: str) -> Any:
    """Decode one form/query value the way the Bot API reads it."""
    if name in _STRING_PARAMS:
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value


def _as_int(value: Any, name: str, default: int | None = None) -> int:
    if value is None or value == "":
        if default is None:
            raise _bad_request(f"{name} is empty")
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        raise _bad_request(f"invalid {name} specified") from None


def _as_bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.lower() in ("true", "1")
    return bool(value)


def _as_json(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            raise _bad_request("can't parse JSON object") from None
    return value


def _image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) when Pillow is importable and ``data`` is an image, else None."""
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow is a project dependency
        return None
    try:
        with Image.open(io.BytesIO(data)) as im:
            return int(im.size[0]), int(im.size[1])
    except Exception:
        return None


def _jpeg_thumbnail(data: bytes, width: int, height: int) -> bytes | None:
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover
        return None
    try:
        with Image.open(io.BytesIO(data)) as im:
            small = im.convert("RGB").resize((width, height))
            out = io.BytesIO()
            small.save(out, format="JPEG", quality=80)
            return out.getvalue()
    except Exception:
        return None


def _pillow_available() -> bool:
    try:
        import PIL  # noqa: F401
    except ImportError:  # pragma: no cover
        return False
    return True


def _strip_markup(text: str, parse_mode: Any) -> str:
    """The text Telegram shows: HTML tags removed for ``parse_mode=HTML`` (best effort)."""
    if isinstance(parse_mode, str) and parse_mode.lower() == "html":
        return html.unescape(_HTML_TAG_RE.sub("", text))
    return text


def _update_kind(update: Mapping[str, Any]) -> str:
    kinds = [k for k in update if k != "update_id"]
    if len(kinds) != 1 or kinds[0] not in ALL_UPDATE_TYPES:
        raise ValueError(
            f"an update needs exactly one update-type key (one of {sorted(ALL_UPDATE_TYPES)}), "
            f"got {sorted(update)}"
        )
    return kinds[0]


def _inline_markup(markup: Any) -> JSON | None:
    """The reply_markup Telegram echoes in a Message: inline keyboards only."""
    markup = _as_json(markup) if markup is not None else None
    if isinstance(markup, Mapping) and "inline_keyboard" in markup:
        rows = markup["inline_keyboard"]
        if not isinstance(rows, list) or not all(isinstance(r, list) for r in rows):
            raise _bad_request(
                'field "inline_keyboard" of the InlineKeyboardMarkup must be an Array of Arrays'
            )
        for row in rows:
            for button in row:
                if not isinstance(button, Mapping) or not button.get("text"):
                    raise _bad_request(
                        "can't parse inline keyboard button: Text buttons are unallowed in the "
                        "inline keyboard"
                    )
                data = button.get("callback_data")
                if data is not None and not 1 <= len(str(data).encode()) <= MAX_CALLBACK_DATA_BYTES:
                    raise _bad_request("BUTTON_DATA_INVALID")
        return copy.deepcopy(dict(markup))
    return None


class FakeTelegram:
    """A fake Telegram Bot API on 127.0.0.1 (random free port) for one bot token.

    Use as ``async with FakeTelegram(token="123:ABC") as tg:``. Point PTB at it with
    ``.base_url(tg.base_url).base_file_url(tg.base_file_url)`` (PTB appends the token).
    """

    def __init__(
        self,
        token: str = "123:ABC",
        *,
        bot_username: str = "anirec_test_bot",
        bot_first_name: str = "AniRec Test",
        can_read_all_group_messages: bool = False,
        host: str = "127.0.0.1",
    ) -> None:
        self.token = token
        self.host = host
        head = token.split(":", 1)[0]
        self.bot_id: int = int(head) if head.isdigit() else 123
        #: The full ``User`` that getMe returns.
        self.bot_user: JSON = {
            "id": self.bot_id,
            "is_bot": True,
            "first_name": bot_first_name,
            "username": bot_username,
            "can_join_groups": True,
            "can_read_all_group_messages": can_read_all_group_messages,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }
        #: Every request received, in order.
        self.requests: list[RecordedCall] = []
        #: Every message the fake knows (incoming and sent), by (chat_id, message_id).
        self.messages: dict[tuple[int, int], JSON] = {}
        #: Files by file_id.
        self.files: dict[str, StoredFile] = {}
        self.chats: dict[int, JSON] = {}
        self.users: dict[int, JSON] = {}
        #: ChatMember dicts set with ``set_member`` (the bot is an administrator of groups).
        self.chat_members: dict[tuple[int, int], JSON] = {}
        #: Commands per scope/language key, as set by setMyCommands.
        self.commands: dict[str, list[JSON]] = {}
        #: Reactions the bot set, by (chat_id, message_id).
        self.reactions: dict[tuple[int, int], list[JSON]] = {}
        self.deleted_messages: list[tuple[int, int]] = []
        #: Callback queries created by ``callback_query``, by id; ``answered_callbacks``
        #: holds the answerCallbackQuery parameters.
        self.callback_queries: dict[str, JSON] = {}
        self.answered_callbacks: dict[str, JSON] = {}
        #: Updates discarded because their type was not in ``allowed_updates``.
        self.dropped_updates: list[JSON] = []
        self.webhook: JSON = {"url": ""}
        #: The update types delivered now (the ``allowed_updates`` Telegram remembers).
        self.allowed_updates: frozenset[str] = DEFAULT_ALLOWED_UPDATES
        self._allowed_updates_param: list[str] | None = None
        self._pending: list[JSON] = []
        self._confirmed_ids: set[int] = set()
        self._dropped_ids: set[int] = set()
        self._sent: list[tuple[int, int]] = []
        self._deleted_copies: dict[tuple[int, int], JSON] = {}
        self._failures: dict[str, list[_Failure]] = {}
        self._update_ids = itertools.count(1)
        self._message_ids = itertools.count(1)
        self._file_numbers = itertools.count(1)
        self._callback_numbers = itertools.count(1)
        self._poll_generation = 0
        self._updates = _Waiters()
        self._calls = _Waiters()
        self._closed = False
        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        self._handlers: dict[str, tuple[str, Callable[[RecordedCall], Any]]] = {}
        for name in (
            "getMe", "getUpdates", "deleteWebhook", "setWebhook", "getWebhookInfo",
            "setMyCommands", "getMyCommands", "deleteMyCommands", "sendMessage", "sendPhoto",
            "sendVideo", "sendAnimation", "sendDocument", "sendMediaGroup", "sendChatAction",
            "answerCallbackQuery", "editMessageReplyMarkup", "editMessageText",
            "editMessageCaption", "deleteMessage", "setMessageReaction", "getChat",
            "getChatMember", "getChatAdministrators", "getChatMemberCount", "getFile",
            "close", "logOut",
        ):  # fmt: skip
            handler = getattr(self, "_api_" + re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower())
            self._handlers[name.lower()] = (name, handler)

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> FakeTelegram:
        """Bind 127.0.0.1 on a free port and start serving."""
        if self._runner is not None:
            return self
        app = web.Application(client_max_size=MAX_UPLOAD_BYTES)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(
            app, access_log=None, handler_cancellation=True, shutdown_timeout=2.0
        )
        await runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, 0))
        self._port = sock.getsockname()[1]
        site = web.SockSite(runner, sock)
        await site.start()
        self._runner = runner
        self._closed = False
        return self

    async def close(self) -> None:
        """Release every waiting long poll and stop the server."""
        self._closed = True
        self._updates.notify()
        self._calls.notify()
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def __aenter__(self) -> FakeTelegram:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"<FakeTelegram {self.url or '(not started)'} bot=@{self.bot_user['username']}>"

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("FakeTelegram is not started")
        return self._port

    @property
    def url(self) -> str | None:
        return f"http://{self.host}:{self._port}" if self._port is not None else None

    @property
    def base_url(self) -> str:
        """For ``ApplicationBuilder().base_url()``: PTB requests ``{base_url}{token}/{method}``."""
        return f"http://{self.host}:{self.port}/bot"

    @property
    def base_file_url(self) -> str:
        """For ``.base_file_url()``: PTB downloads ``{base_file_url}{token}/{file_path}``."""
        return f"http://{self.host}:{self.port}/file/bot"

    @property
    def bot_username(self) -> str:
        return str(self.bot_user["username"])

    def application_builder(self) -> ApplicationBuilder:
        """A PTB ``ApplicationBuilder`` with this fake's token, base_url and base_file_url."""
        from telegram.ext import ApplicationBuilder

        return (
            ApplicationBuilder()
            .token(self.token)
            .base_url(self.base_url)
            .base_file_url(self.base_file_url)
        )

    @asynccontextmanager
    async def polling(
        self,
        application: Application[Any, Any, Any, Any, Any, Any],
        *,
        allowed_updates: Sequence[str] | None = None,
        timeout: int = 1,
        poll_interval: float = 0.0,
        drop_pending_updates: bool | None = None,
    ) -> AsyncIterator[Application[Any, Any, Any, Any, Any, Any]]:
        """Run ``application`` with polling inside the current loop (not ``run_polling``).

        ``initialize()``, ``start()``, ``updater.start_polling()``; waits for the first
        getUpdates so the allowed_updates are known; on exit the matching stops and
        ``shutdown()``.
        """
        mark = len(self.requests)
        await application.initialize()
        try:
            await application.start()
            try:
                assert application.updater is not None, "build the Application with an Updater"
                await application.updater.start_polling(
                    poll_interval=poll_interval,
                    timeout=timeout,
                    allowed_updates=allowed_updates,
                    drop_pending_updates=drop_pending_updates,
                )
                try:
                    await self.wait_for("getUpdates", since=mark)
                    yield application
                finally:
                    if application.updater.running:
                        await application.updater.stop()
            finally:
                if application.running:
                    await application.stop()
        finally:
            await application.shutdown()

    # ------------------------------------------------------------------ test-facing API

    def calls(self, method: str | None = None) -> list[RecordedCall]:
        """Recorded calls, optionally only those of ``method`` (case-insensitive)."""
        if method is None:
            return list(self.requests)
        wanted = method.lower()
        return [c for c in self.requests if c.method.lower() == wanted]

    async def wait_for(
        self,
        method: str,
        predicate: Callable[[RecordedCall], bool] | None = None,
        timeout: float = 10,
        *,
        since: int = 0,
    ) -> RecordedCall:
        """The first call of ``method`` (from index ``since`` of ``requests``, past or
        future) for which ``predicate(call)`` is true; TimeoutError after ``timeout`` s.

        Tip: ``mark = len(tg.requests)`` before an action, then ``wait_for(..., since=mark)``.
        """
        wanted = method.lower()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        index = since
        while True:
            waiter = self._calls.event
            while index < len(self.requests):
                call = self.requests[index]
                index += 1
                if call.method.lower() == wanted and (predicate is None or predicate(call)):
                    return call
            remaining = deadline - loop.time()
            if remaining <= 0 or self._closed:
                seen = [c.method for c in self.requests[since:]]
                raise TimeoutError(
                    f"no matching {method} call within {timeout} s; calls since #{since}: {seen}"
                )
            try:
                await asyncio.wait_for(waiter.wait(), remaining)
            except TimeoutError:
                pass

    def fail_next(
        self,
        method: str,
        status: int = 429,
        retry_after: int = 1,
        times: int = 1,
        description: str | None = None,
    ) -> None:
        """Make the next ``times`` calls of ``method`` fail with ``status``.

        429 answers ``Too Many Requests: retry after N`` with ``parameters.retry_after``
        (PTB raises ``RetryAfter``); other statuses get a Telegram-like description.
        ``status=DROP`` (0) handles nothing and resets the connection instead of answering.
        """
        parameters: JSON | None = None
        if description is None:
            description = {
                429: f"Too Many Requests: retry after {retry_after}",
                400: "Bad Request: injected failure",
                401: "Unauthorized",
                403: "Forbidden: bot was blocked by the user",
                409: "Conflict: terminated by other getUpdates request; make sure that only "
                "one bot instance is running",
                500: "Internal Server Error",
                502: "Bad Gateway",
            }.get(status, f"Error {status}")
        if status == 429:
            parameters = {"retry_after": retry_after}
        self._failures.setdefault(method.lower(), []).append(
            _Failure(status, description, parameters, times)
        )

    def sent_messages(
        self, chat_id: int | None = None, *, include_deleted: bool = False
    ) -> list[JSON]:
        """Messages the bot sent (current version after edits), oldest first."""
        out = []
        for key in self._sent:
            if chat_id is not None and key[0] != chat_id:
                continue
            if key in self.messages:
                out.append(copy.deepcopy(self.messages[key]))
            elif include_deleted and key in self._deleted_copies:
                out.append(copy.deepcopy(self._deleted_copies[key]))
        return out

    def get_message(self, chat_id: int, message_id: int) -> JSON | None:
        msg = self.messages.get((chat_id, message_id))
        return copy.deepcopy(msg) if msg is not None else None

    def file_bytes(self, file_id: str) -> bytes:
        """The bytes stored under ``file_id`` (e.g. a photo the bot uploaded)."""
        return self.files[file_id].data

    def add_file(
        self,
        data: bytes,
        *,
        mime_type: str | None = "application/octet-stream",
        file_name: str | None = None,
        kind: str = "document",
    ) -> tuple[str, str]:
        """Store ``data``; returns ``(file_id, file_unique_id)`` usable with getFile."""
        stored = self._store_file(data, kind=kind, mime_type=mime_type, file_name=file_name)
        return stored.file_id, stored.file_unique_id

    def set_member(self, chat: ChatLike, user: UserLike, status: str = "member") -> JSON:
        """Set what getChatMember(chat, user) answers: creator, administrator, member,
        restricted, left or kicked. Returns the ChatMember dict."""
        chat_id = self._chat_ref(chat)["id"]
        member = self._chat_member(self._user_ref(user), status)
        self.chat_members[(chat_id, member["user"]["id"])] = member
        return copy.deepcopy(member)

    # ---- factories: users and chats

    def user(
        self,
        id: int = 1001,  # noqa: A002 - the Bot API field name
        first_name: str = "Alice",
        username: str | None = "alice",
        *,
        last_name: str | None = None,
        language_code: str | None = "en",
        is_premium: bool | None = None,
        is_bot: bool = False,
    ) -> JSON:
        """A ``User`` dict (registered, so getChatMember knows it)."""
        u: JSON = {"id": id, "is_bot": is_bot, "first_name": first_name}
        if last_name is not None:
            u["last_name"] = last_name
        if username is not None:
            u["username"] = username
        if language_code is not None:
            u["language_code"] = language_code
        if is_premium is not None:
            u["is_premium"] = is_premium
        self.users[id] = u
        return copy.deepcopy(u)

    def private_chat(self, user_id: UserLike) -> JSON:
        """The private ``Chat`` with a user (by id or User dict)."""
        u = self._user_ref(user_id)
        chat: JSON = {"id": u["id"], "type": "private", "first_name": u["first_name"]}
        for key in ("last_name", "username"):
            if key in u:
                chat[key] = u[key]
        self.chats[chat["id"]] = chat
        return copy.deepcopy(chat)

    def group_chat(
        self,
        chat_id: int = -1001234567890,
        title: str = "AniRec testers",
        *,
        type: str | None = None,  # noqa: A002 - the Bot API field name
        username: str | None = None,
        is_forum: bool | None = None,
    ) -> JSON:
        """A group ``Chat``: a supergroup when the id starts with -100, else a basic group."""
        if chat_id >= 0:
            raise ValueError("group chat ids are negative")
        kind = type or ("supergroup" if str(chat_id).startswith("-100") else "group")
        chat: JSON = {"id": chat_id, "type": kind, "title": title}
        if username is not None:
            chat["username"] = username
        if is_forum is not None:
            chat["is_forum"] = is_forum
        self.chats[chat_id] = chat
        return copy.deepcopy(chat)

    # ---- factories: updates (they return update dicts without update_id; see push_update)

    def text_message(
        self,
        chat: ChatLike,
        user: UserLike,
        text: str,
        reply_to: Any = None,
        *,
        entities: list[JSON] | None = None,
    ) -> JSON:
        """``{"message": {...}}`` with ``entities`` derived for /commands and @mentions."""
        msg = self._incoming(chat, user, reply_to)
        msg["text"] = text
        ents = derive_entities(text) if entities is None else entities
        if ents:
            msg["entities"] = ents
        return {"message": self._remember(msg)}

    def photo_message(
        self,
        chat: ChatLike,
        user: UserLike,
        data: bytes,
        caption: str | None = None,
        reply_to: Any = None,
        *,
        width: int | None = None,
        height: int | None = None,
        has_spoiler: bool | None = None,
    ) -> JSON:
        """A photo message: ``data`` is stored and several ``PhotoSize`` entries are made
        (smallest first; the last, largest one downloads exactly ``data``)."""
        msg = self._incoming(chat, user, reply_to)
        msg["photo"] = self._make_photo(data, width=width, height=height)
        self._caption(msg, caption)
        if has_spoiler:
            msg["has_media_spoiler"] = True
        return {"message": self._remember(msg)}

    def document_message(
        self,
        chat: ChatLike,
        user: UserLike,
        data: bytes,
        caption: str | None = None,
        reply_to: Any = None,
        *,
        file_name: str = "image.png",
        mime_type: str | None = None,
    ) -> JSON:
        """A document message (e.g. an image sent "as file")."""
        msg = self._incoming(chat, user, reply_to)
        msg["document"] = self._make_document(data, file_name=file_name, mime_type=mime_type)
        self._caption(msg, caption)
        return {"message": self._remember(msg)}

    def animation_message(
        self,
        chat: ChatLike,
        user: UserLike,
        data: bytes,
        caption: str | None = None,
        reply_to: Any = None,
        *,
        file_name: str = "animation.gif.mp4",
        mime_type: str = "video/mp4",
        width: int | None = None,
        height: int | None = None,
        duration: int = 2,
    ) -> JSON:
        """A GIF as Telegram delivers it: ``animation`` plus, for backward compatibility,
        ``document`` with the same file (Telegram converts GIFs to MP4; pass
        ``mime_type="image/gif"`` to keep a GIF)."""
        msg = self._incoming(chat, user, reply_to)
        anim = self._make_video_like(
            data, "animation", file_name=file_name, mime_type=mime_type,
            width=width, height=height, duration=duration,
        )  # fmt: skip
        msg["animation"] = anim
        msg["document"] = {
            k: anim[k] for k in ("file_id", "file_unique_id", "file_name", "mime_type", "file_size")
        }
        self._caption(msg, caption)
        return {"message": self._remember(msg)}

    def video_message(
        self,
        chat: ChatLike,
        user: UserLike,
        data: bytes,
        caption: str | None = None,
        reply_to: Any = None,
        *,
        file_name: str = "clip.mp4",
        mime_type: str = "video/mp4",
        width: int = 640,
        height: int = 360,
        duration: int = 3,
    ) -> JSON:
        """A video message."""
        msg = self._incoming(chat, user, reply_to)
        msg["video"] = self._make_video_like(
            data, "video", file_name=file_name, mime_type=mime_type,
            width=width, height=height, duration=duration,
        )  # fmt: skip
        self._caption(msg, caption)
        return {"message": self._remember(msg)}

    def video_note_message(
        self,
        chat: ChatLike,
        user: UserLike,
        data: bytes,
        reply_to: Any = None,
        *,
        length: int = 240,
        duration: int = 3,
    ) -> JSON:
        """A round video message (``video_note``; square, no caption)."""
        msg = self._incoming(chat, user, reply_to)
        stored = self._store_file(data, kind="video_note", mime_type="video/mp4")
        note = {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "length": length,
            "duration": duration,
            "file_size": len(data),
        }
        stored.media = note
        msg["video_note"] = note
        return {"message": self._remember(msg)}

    def sticker_message(
        self,
        chat: ChatLike,
        user: UserLike,
        data: bytes,
        reply_to: Any = None,
        *,
        is_animated: bool = False,
        is_video: bool = False,
        emoji: str | None = "😀",
        set_name: str | None = "AniRecTestStickers",
        width: int = 512,
        height: int = 512,
    ) -> JSON:
        """A sticker: static WEBP, animated TGS (``is_animated``) or video WEBM (``is_video``)."""
        msg = self._incoming(chat, user, reply_to)
        if is_animated:
            mime, name = "application/x-tgsticker", "sticker.tgs"
        elif is_video:
            mime, name = "video/webm", "sticker.webm"
        else:
            mime, name = "image/webp", "sticker.webp"
        stored = self._store_file(data, kind="sticker", mime_type=mime, file_name=name)
        sticker: JSON = {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "type": "regular",
            "width": width,
            "height": height,
            "is_animated": is_animated,
            "is_video": is_video,
            "file_size": len(data),
        }
        if emoji is not None:
            sticker["emoji"] = emoji
        if set_name is not None:
            sticker["set_name"] = set_name
        stored.media = sticker
        msg["sticker"] = sticker
        return {"message": self._remember(msg)}

    def callback_query(
        self, from_user: UserLike, message: Any, data: str
    ) -> JSON:
        """``{"callback_query": ...}``: ``from_user`` pressed a button with ``data`` under
        ``message`` (a Message dict, an update dict, a RecordedCall of a send, or an id)."""
        msg = self._message_ref(message)
        qid = str(4_000_000_000_000_000 + next(self._callback_numbers))
        query: JSON = {
            "id": qid,
            "from": self._user_ref(from_user),
            "message": msg,
            "chat_instance": str(abs(hash(("chat_instance", msg["chat"]["id"]))) % 10**18),
            "data": data,
        }
        self.callback_queries[qid] = query
        return {"callback_query": copy.deepcopy(query)}

    def message_reaction(
        self,
        chat: ChatLike,
        message_id: Any,
        user: UserLike,
        old: Iterable[str | Mapping[str, Any]] = (),
        new: Iterable[str | Mapping[str, Any]] = ("👍",),
    ) -> JSON:
        """``{"message_reaction": ...}``: ``user`` changed their reaction from ``old`` to
        ``new`` (emoji strings become ReactionTypeEmoji; only standard reaction emoji)."""
        chat_d = self._chat_ref(chat)
        if isinstance(message_id, int):
            mid = message_id
        else:
            mid = self._message_ref(message_id)["message_id"]
        return {
            "message_reaction": {
                "chat": chat_d,
                "message_id": mid,
                "user": self._user_ref(user),
                "date": int(time.time()),
                "old_reaction": [self._reaction(r) for r in old],
                "new_reaction": [self._reaction(r) for r in new],
            }
        }

    def push_update(self, update: Mapping[str, Any]) -> int:
        """Queue an update (without ``update_id``; one is assigned and returned) and wake
        the long poll. It is delivered only if its type is in the ``allowed_updates`` of the
        poll that would carry it, as on Telegram."""
        body = copy.deepcopy(dict(update))
        body.pop("update_id", None)
        kind = _update_kind(body)
        payload = body[kind]
        if kind in ("message", "edited_message", "channel_post", "edited_channel_post") and (
            isinstance(payload, Mapping) and "message_id" in payload and "chat" in payload
        ):
            self.messages[(payload["chat"]["id"], payload["message_id"])] = copy.deepcopy(payload)
        update_id = next(self._update_ids)
        self._pending.append({"update_id": update_id, **body})
        self._updates.notify()
        return update_id

    async def wait_confirmed(self, update_id: int, timeout: float = 10) -> bool:
        """Wait until ``update_id`` has left the queue: True if the client fetched and
        confirmed it (a later getUpdates offset), False if it was dropped because its type
        was not allowed."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            waiter = self._updates.event
            if update_id in self._dropped_ids:
                return False
            if update_id in self._confirmed_ids:
                return True
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"update {update_id} was not fetched within {timeout} s")
            try:
                await asyncio.wait_for(waiter.wait(), remaining)
            except TimeoutError:
                pass

    @property
    def pending_updates(self) -> list[JSON]:
        """Updates queued and not yet confirmed."""
        return copy.deepcopy(self._pending)

    # ------------------------------------------------------------------ HTTP layer

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        if path.startswith("/file/bot"):
            return self._handle_file(path[len("/file/bot") :])
        if path.startswith("/bot"):
            token, sep, method = path[len("/bot") :].partition("/")
            if sep and method and "/" not in method:
                return await self._handle_api(request, token, method)
        return self._json(ApiError(404, "Not Found").payload(), 404)

    def _handle_file(self, rest: str) -> web.StreamResponse:
        token, _, file_path = rest.partition("/")
        if token != self.token:
            return self._json(ApiError(401, "Unauthorized").payload(), 401)
        for stored in self.files.values():
            if stored.file_path == file_path:
                return web.Response(
                    body=stored.data,
                    content_type=stored.mime_type or "application/octet-stream",
                )
        return self._json(ApiError(404, "Not Found").payload(), 404)

    async def _handle_api(
        self, request: web.Request, token: str, method: str
    ) -> web.StreamResponse:
        canonical, handler = self._handlers.get(method.lower(), (method, None))
        params: dict[str, Any] = {k: _coerce(k, v) for k, v in request.query.items()}
        files: dict[str, UploadedFile] = {}
        try:
            await self._read_body(request, params, files)
        except ApiError as err:
            return self._json(err.payload(), err.status)
        call = RecordedCall(
            method=canonical,
            params=params,
            files=files,
            time=time.monotonic(),
            http_method=request.method,
        )
        self.requests.append(call)
        self._calls.notify()
        status, body = await self._answer(call, token, handler)
        call.status, call.response = status, body
        if status == DROP and request.transport is not None:  # fail_next(status=DROP)
            request.transport.abort()  # the connection dies: the client never gets an answer
        return self._json(body, status or 502)

    async def _read_body(
        self, request: web.Request, params: dict[str, Any], files: dict[str, UploadedFile]
    ) -> None:
        if not request.body_exists:
            return
        ctype = request.content_type
        try:
            if ctype == "application/json":
                body = await request.json()
                if not isinstance(body, dict):
                    raise _bad_request("can't parse JSON object")
                params.update(body)
            elif ctype in ("application/x-www-form-urlencoded", "multipart/form-data"):
                form = await request.post()
                for key, value in form.items():
                    if isinstance(value, web.FileField):
                        files[key] = UploadedFile(
                            data=value.file.read(),
                            filename=value.filename,
                            content_type=value.content_type,
                        )
                    else:
                        params[key] = _coerce(key, str(value))
        except web.HTTPRequestEntityTooLarge:
            raise ApiError(413, "Request Entity Too Large") from None
        except ValueError:
            raise _bad_request("can't parse request body") from None

    async def _answer(
        self, call: RecordedCall, token: str, handler: Callable[[RecordedCall], Any] | None
    ) -> tuple[int, JSON]:
        if token != self.token:
            return 401, ApiError(401, "Unauthorized").payload()
        failures = self._failures.get(call.method.lower())
        if failures:
            failure = failures[0]
            failure.times -= 1
            if failure.times <= 0:
                failures.pop(0)
            call.injected = True
            err = ApiError(failure.status, failure.description, failure.parameters)
            return failure.status, err.payload()
        if handler is None:
            return 400, _bad_request("method not found").payload()
        try:
            result = handler(call)
            if inspect.isawaitable(result):
                result = await result
        except ApiError as err:
            return err.status, err.payload()
        return 200, {"ok": True, "result": result}

    @staticmethod
    def _json(body: JSON, status: int) -> web.Response:
        return web.Response(
            text=json.dumps(body, ensure_ascii=False),
            status=status,
            content_type="application/json",
        )

    # ------------------------------------------------------------------ internals: refs

    def _user_ref(self, user: UserLike) -> JSON:
        if isinstance(user, Mapping):
            u = copy.deepcopy(dict(user))
            self.users.setdefault(u["id"], u)
            return u
        if user in self.users:
            return copy.deepcopy(self.users[user])
        return self.user(user, f"User {user}", None)

    def _chat_ref(self, chat: ChatLike) -> JSON:
        if isinstance(chat, Mapping):
            c = copy.deepcopy(dict(chat))
            self.chats.setdefault(c["id"], c)
            return c
        return self._chat_by_id(chat)

    def _chat_by_id(self, chat_id: Any) -> JSON:
        if isinstance(chat_id, str) and chat_id.startswith("@"):
            for chat in self.chats.values():
                if chat.get("username", "").lower() == chat_id[1:].lower():
                    return copy.deepcopy(chat)
            raise _bad_request("chat not found")
        cid = _as_int(chat_id, "chat_id")
        if cid not in self.chats:
            # Lenient: a chat the test never built is made up on first use.
            if cid > 0:
                return self.private_chat(cid)
            return self.group_chat(cid, f"Chat {cid}")
        return copy.deepcopy(self.chats[cid])

    def _message_ref(self, ref: Any) -> JSON:
        if isinstance(ref, RecordedCall):
            ref = ref.result
        if isinstance(ref, Mapping) and "message_id" not in ref:
            inner = [v for k, v in ref.items() if k != "update_id" and isinstance(v, Mapping)]
            if len(inner) == 1 and "message_id" in inner[0]:
                ref = inner[0]
        if isinstance(ref, Mapping) and "message_id" in ref and "chat" in ref:
            stored = self.messages.get((ref["chat"]["id"], ref["message_id"]))
            return copy.deepcopy(stored if stored is not None else dict(ref))
        if isinstance(ref, int) and not isinstance(ref, bool):
            for (_, mid), msg in self.messages.items():
                if mid == ref:
                    return copy.deepcopy(msg)
            raise KeyError(f"no message with id {ref}")
        raise TypeError(f"cannot find a message in {ref!r}")

    @staticmethod
    def _reaction(r: str | Mapping[str, Any]) -> JSON:
        if isinstance(r, Mapping):
            return dict(r)
        if r not in REACTION_EMOJI:
            raise ValueError(
                f"{r!r} is not a Telegram reaction emoji; users can only react with "
                "REACTION_EMOJI (e.g. 👍 👎 ❤ 🔥 🎉 🤔 💯)"
            )
        return {"type": "emoji", "emoji": r}

    # ------------------------------------------------------------------ internals: messages

    def _bot_from(self) -> JSON:
        return {k: self.bot_user[k] for k in ("id", "is_bot", "first_name", "username")}

    def _incoming(self, chat: ChatLike, user: UserLike, reply_to: Any) -> JSON:
        chat_d = self._chat_ref(chat)
        msg: JSON = {
            "message_id": next(self._message_ids),
            "from": self._user_ref(user),
            "chat": chat_d,
            "date": int(time.time()),
        }
        if reply_to is not None:
            replied = self._message_ref(reply_to)
            replied.pop("reply_to_message", None)
            msg["reply_to_message"] = replied
        return msg

    def _remember(self, msg: JSON) -> JSON:
        self.messages[(msg["chat"]["id"], msg["message_id"])] = copy.deepcopy(msg)
        return msg

    @staticmethod
    def _caption(msg: JSON, caption: str | None) -> None:
        if caption is not None:
            msg["caption"] = caption
            ents = derive_entities(caption)
            if ents:
                msg["caption_entities"] = ents

    def _store_file(
        self,
        data: bytes,
        *,
        kind: str,
        mime_type: str | None = None,
        file_name: str | None = None,
        ext: str | None = None,
    ) -> StoredFile:
        n = next(self._file_numbers)
        if ext is None:
            ext = ""
            if file_name and "." in file_name:
                ext = "." + file_name.rsplit(".", 1)[1].lower()
            elif mime_type:
                ext = mimetypes.guess_extension(mime_type) or ""
        stored = StoredFile(
            file_id=f"{_FILE_ID_PREFIX.get(kind, 'BQAC')}Fake{n:05d}{kind.replace('_', '')}",
            file_unique_id="AQAD" + hashlib.sha256(data).hexdigest()[:12],
            data=bytes(data),
            file_path=f"{_FILE_FOLDER.get(kind, 'documents')}/file_{n}{ext}",
            mime_type=mime_type,
            file_name=file_name,
            kind=kind,
        )
        self.files[stored.file_id] = stored
        return stored

    def _make_photo(
        self, data: bytes, *, width: int | None = None, height: int | None = None
    ) -> list[JSON]:
        """PhotoSize dicts, smallest first; the last one holds exactly ``data``."""
        size = _image_size(data)
        w, h = size if size else (width or 1280, height or 720)
        if width and height:
            w, h = width, height
        longest = max(w, h)
        boxes = [b for b in _PHOTO_BOXES if b < longest] or [max(1, longest // 2)]
        sizes: list[JSON] = []
        for box in boxes:
            scale = box / longest
            tw, th = max(1, round(w * scale)), max(1, round(h * scale))
            thumb = _jpeg_thumbnail(data, tw, th) if size else None
            if thumb is None:
                digest = hashlib.sha256(data).hexdigest().encode()
                thumb = b"FAKE-THUMBNAIL %dx%d of %s" % (tw, th, digest)
            sizes.append(self._photo_size(thumb, tw, th))
        sizes.append(self._photo_size(data, w, h))
        for entry in sizes:
            self.files[entry["file_id"]].media = sizes
        return copy.deepcopy(sizes)

    def _photo_size(self, data: bytes, width: int, height: int) -> JSON:
        stored = self._store_file(data, kind="photo", mime_type="image/jpeg", ext=".jpg")
        return {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "width": width,
            "height": height,
            "file_size": len(data),
        }

    def _make_document(self, data: bytes, *, file_name: str | None, mime_type: str | None) -> JSON:
        if mime_type is None:
            guessed = mimetypes.guess_type(file_name)[0] if file_name else None
            mime_type = guessed or "application/octet-stream"
        stored = self._store_file(data, kind="document", mime_type=mime_type, file_name=file_name)
        doc: JSON = {"file_id": stored.file_id, "file_unique_id": stored.file_unique_id}
        if file_name:
            doc["file_name"] = file_name
        doc["mime_type"] = mime_type
        doc["file_size"] = len(data)
        stored.media = doc
        return copy.deepcopy(doc)

    def _make_video_like(
        self,
        data: bytes,
        kind: str,
        *,
        file_name: str | None,
        mime_type: str | None,
        width: int | None,
        height: int | None,
        duration: int,
    ) -> JSON:
        size = _image_size(data) if (width is None or height is None) else None
        w, h = size if size else (width or 480, height or 270)
        stored = self._store_file(data, kind=kind, mime_type=mime_type, file_name=file_name)
        obj: JSON = {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "width": w,
            "height": h,
            "duration": duration,
        }
        if file_name:
            obj["file_name"] = file_name
        if mime_type:
            obj["mime_type"] = mime_type
        obj["file_size"] = len(data)
        stored.media = obj
        return copy.deepcopy(obj)

    def _reply_target(self, params: Mapping[str, Any], chat: JSON) -> JSON | None:
        raw = params.get("reply_parameters")
        rp: JSON | None = dict(_as_json(raw)) if raw else None
        if rp is None and params.get("reply_to_message_id") is not None:
            rp = {"message_id": params["reply_to_message_id"]}
        if rp is None:
            return None
        target_chat = chat
        if rp.get("chat_id") is not None:
            target_chat = self._chat_by_id(rp["chat_id"])
        mid = _as_int(rp.get("message_id"), "message_id")
        replied = self.messages.get((target_chat["id"], mid))
        if replied is None or target_chat["id"] != chat["id"]:
            if _as_bool(rp.get("allow_sending_without_reply")) or _as_bool(
                params.get("allow_sending_without_reply")
            ):
                return None
            raise _bad_request("message to be replied not found")
        out = copy.deepcopy(replied)
        out.pop("reply_to_message", None)
        return out

    def _bot_message(self, call: RecordedCall, content: JSON) -> JSON:
        chat = self._chat_by_id(call.params.get("chat_id"))
        msg: JSON = {
            "message_id": next(self._message_ids),
            "from": self._bot_from(),
            "chat": chat,
            "date": int(time.time()),
        }
        reply = self._reply_target(call.params, chat)
        if reply is not None:
            msg["reply_to_message"] = reply
        msg.update(content)
        markup = _inline_markup(call.params.get("reply_markup"))
        if markup is not None:
            msg["reply_markup"] = markup
        if _as_bool(call.params.get("has_spoiler")):
            msg["has_media_spoiler"] = True
        if _as_bool(call.params.get("show_caption_above_media")):
            msg["show_caption_above_media"] = True
        key = (chat["id"], msg["message_id"])
        self.messages[key] = msg
        self._sent.append(key)
        return copy.deepcopy(msg)

    def _caption_content(self, params: Mapping[str, Any]) -> JSON:
        caption = params.get("caption")
        if caption is None or caption == "":
            return {}
        shown = _strip_markup(str(caption), params.get("parse_mode"))
        if len(shown) > MAX_CAPTION_LENGTH:
            raise _bad_request("message caption is too long")
        content: JSON = {"caption": shown}
        ents = params.get("caption_entities")
        if ents:
            content["caption_entities"] = _as_json(ents)
        return content

    def _text_content(self, params: Mapping[str, Any]) -> JSON:
        text = params.get("text")
        if text is None or str(text).strip() == "":
            raise _bad_request("message text is empty")
        shown = _strip_markup(str(text), params.get("parse_mode"))
        if not shown.strip():
            raise _bad_request("message text is empty")
        if len(shown) > MAX_TEXT_LENGTH:
            raise _bad_request("message is too long")
        content: JSON = {"text": shown}
        ents = params.get("entities")
        if ents:
            content["entities"] = _as_json(ents)
        lpo = params.get("link_preview_options")
        if lpo:
            content["link_preview_options"] = _as_json(lpo)
        return content

    def _input_file(self, call: RecordedCall, field_name: str) -> UploadedFile | StoredFile:
        """The upload (multipart part, possibly via attach://) or the stored file_id."""
        value = call.params.get(field_name)
        upload = call.files.get(field_name)
        if upload is None and isinstance(value, str) and value.startswith("attach://"):
            upload = call.files.get(value[len("attach://") :])
            if upload is None:
                raise _bad_request(f"can't find attached file \"{value[len('attach://'):]}\"")
        if upload is not None:
            return upload
        if isinstance(value, str) and value:
            if value in self.files:
                return self.files[value]
            if value.startswith(("http://", "https://")):
                raise _bad_request("failed to get HTTP URL content")
            raise _bad_request("wrong file identifier/HTTP URL specified")
        raise _bad_request(f"there is no {field_name} in the request")

    def _target_message(self, params: Mapping[str, Any], action: str) -> JSON:
        chat = self._chat_by_id(params.get("chat_id"))
        mid = _as_int(params.get("message_id"), "message_id")
        msg = self.messages.get((chat["id"], mid))
        if msg is None:
            raise _bad_request(f"message to {action} not found")
        return msg

    def _edited(
        self, msg: JSON, changes: JSON, params: Mapping[str, Any], replace: Sequence[str] = ()
    ) -> JSON:
        """Apply an edit to a stored bot message: the ``replace`` keys are dropped, then
        ``changes`` set; the inline keyboard becomes the one given (none if absent)."""
        if msg.get("from", {}).get("id") != self.bot_id:
            raise _bad_request("message can't be edited")
        markup = _inline_markup(params.get("reply_markup"))
        new = {k: v for k, v in msg.items() if k not in ("reply_markup", "edit_date", *replace)}
        new.update(changes)
        if markup is not None:
            new["reply_markup"] = markup
        if new == {k: v for k, v in msg.items() if k != "edit_date"}:
            raise _bad_request(
                "message is not modified: specified new message content and reply markup are "
                "exactly the same as a current content and reply markup of the message"
            )
        new["edit_date"] = int(time.time())
        msg.clear()
        msg.update(new)
        return copy.deepcopy(msg)

    @staticmethod
    def _chat_member(user: JSON, status: str) -> JSON:
        if status == "creator":
            return {"status": "creator", "user": user, "is_anonymous": False}
        if status == "administrator":
            return {
                "status": "administrator",
                "user": user,
                "can_be_edited": False,
                "is_anonymous": False,
                "can_manage_chat": True,
                "can_delete_messages": True,
                "can_manage_video_chats": True,
                "can_restrict_members": True,
                "can_promote_members": False,
                "can_change_info": True,
                "can_invite_users": True,
                "can_post_stories": False,
                "can_edit_stories": False,
                "can_delete_stories": False,
                "can_pin_messages": True,
                "can_manage_topics": False,
            }
        if status == "member":
            return {"status": "member", "user": user}
        if status == "restricted":
            flags = (
                "can_change_info can_invite_users can_pin_messages can_send_messages "
                "can_send_polls can_send_other_messages can_add_web_page_previews "
                "can_manage_topics can_send_audios can_send_documents can_send_photos "
                "can_send_videos can_send_video_notes can_send_voice_notes can_edit_tag "
                "can_react_to_messages"
            ).split()
            restricted: JSON = {"status": "restricted", "user": user, "is_member": True}
            restricted.update(dict.fromkeys(flags, False))
            restricted["until_date"] = 0
            return restricted
        if status == "left":
            return {"status": "left", "user": user}
        if status == "kicked":
            return {"status": "kicked", "user": user, "until_date": 0}
        raise ValueError(f"unknown chat member status {status!r}")

    def _member_of(self, chat: JSON, user_id: int) -> JSON:
        member = self.chat_members.get((chat["id"], user_id))
        if member is not None:
            return copy.deepcopy(member)
        if user_id == self.bot_id:
            status = "member" if chat["type"] == "private" else "administrator"
            return self._chat_member(self._bot_from(), status)
        if user_id in self.users:
            return self._chat_member(copy.deepcopy(self.users[user_id]), "member")
        raise _bad_request("user not found")

    # ------------------------------------------------------------------ internals: updates

    def _confirm(self, offset: int) -> None:
        if offset == 0 or not self._pending:
            return
        if offset > 0:
            keep = [u for u in self._pending if u["update_id"] >= offset]
        else:
            keep = self._pending[offset:]
        gone = [u for u in self._pending if u not in keep]
        if gone:
            self._confirmed_ids.update(u["update_id"] for u in gone)
            self._pending = keep
            self._updates.notify()

    def _deliverable(self, limit: int) -> list[JSON]:
        keep: list[JSON] = []
        dropped = False
        for upd in self._pending:
            if _update_kind(upd) in self.allowed_updates:
                keep.append(upd)
            else:
                self.dropped_updates.append(upd)
                self._dropped_ids.add(upd["update_id"])
                dropped = True
        if dropped:
            self._pending = keep
            self._updates.notify()
        return copy.deepcopy(keep[:limit])

    def _set_allowed(self, allowed: Any) -> None:
        allowed = _as_json(allowed)
        if not isinstance(allowed, list):
            raise _bad_request("can't parse allowed updates")
        self._allowed_updates_param = [str(a) for a in allowed]
        known = {str(a) for a in allowed} & ALL_UPDATE_TYPES
        self.allowed_updates = frozenset(known) if known else DEFAULT_ALLOWED_UPDATES

    # ------------------------------------------------------------------ Bot API methods

    def _api_get_me(self, call: RecordedCall) -> JSON:
        return copy.deepcopy(self.bot_user)

    async def _api_get_updates(self, call: RecordedCall) -> list[JSON]:
        p = call.params
        if self.webhook.get("url"):
            raise ApiError(
                409,
                "Conflict: can't use getUpdates method while webhook is active; use "
                "deleteWebhook to delete the webhook first",
            )
        offset = _as_int(p.get("offset"), "offset", 0)
        limit = min(100, max(1, _as_int(p.get("limit"), "limit", 100)))
        try:
            timeout = max(0.0, float(p.get("timeout") or 0))
        except (TypeError, ValueError):
            raise _bad_request("invalid timeout specified") from None
        if p.get("allowed_updates") is not None:
            self._set_allowed(p["allowed_updates"])
        # A new poll releases any older one still waiting (e.g. one the client abandoned).
        self._poll_generation += 1
        generation = self._poll_generation
        self._updates.notify()
        self._confirm(offset)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + min(timeout, MAX_LONG_POLL_SECONDS)
        while True:
            waiter = self._updates.event
            if self._closed or generation != self._poll_generation:
                return []
            batch = self._deliverable(limit)
            if batch:
                return batch
            remaining = deadline - loop.time()
            if remaining <= 0:
                return []
            try:
                await asyncio.wait_for(waiter.wait(), remaining)
            except TimeoutError:
                pass

    def _api_delete_webhook(self, call: RecordedCall) -> bool:
        self.webhook = {"url": ""}
        if _as_bool(call.params.get("drop_pending_updates")):
            self._confirmed_ids.update(u["update_id"] for u in self._pending)
            self._pending = []
            self._updates.notify()
        return True

    def _api_set_webhook(self, call: RecordedCall) -> bool:
        p = call.params
        url = p.get("url") or ""
        if url and not str(url).startswith("https://"):
            raise _bad_request("bad webhook: An HTTPS URL must be provided for webhook")
        self.webhook = {"url": url}
        if url:
            connections = _as_int(p.get("max_connections"), "max_connections", 40)
            self.webhook["max_connections"] = connections
        if p.get("allowed_updates") is not None:
            self._set_allowed(p["allowed_updates"])
        if _as_bool(p.get("drop_pending_updates")):
            self._confirmed_ids.update(u["update_id"] for u in self._pending)
            self._pending = []
            self._updates.notify()
        return True

    def _api_get_webhook_info(self, call: RecordedCall) -> JSON:
        info: JSON = {
            "url": self.webhook.get("url", ""),
            "has_custom_certificate": False,
            "pending_update_count": len(self._pending),
        }
        if info["url"]:
            info["max_connections"] = self.webhook.get("max_connections", 40)
            if self._allowed_updates_param is not None:
                info["allowed_updates"] = list(self._allowed_updates_param)
        return info

    @staticmethod
    def _commands_key(params: Mapping[str, Any]) -> str:
        scope = _as_json(params.get("scope")) if params.get("scope") else {"type": "default"}
        return json.dumps([scope, params.get("language_code") or ""], sort_keys=True)

    def _api_set_my_commands(self, call: RecordedCall) -> bool:
        commands = _as_json(call.params.get("commands"))
        if not isinstance(commands, list) or len(commands) > 100:
            raise _bad_request("can't parse commands JSON object")
        cleaned = []
        for cmd in commands:
            name = str(cmd.get("command", "")) if isinstance(cmd, Mapping) else ""
            desc = str(cmd.get("description", "")) if isinstance(cmd, Mapping) else ""
            if not _BOT_COMMAND_NAME_RE.match(name):
                raise _bad_request("BOT_COMMAND_INVALID")
            if not 1 <= len(desc) <= 256:
                raise _bad_request("BOT_COMMAND_DESCRIPTION_INVALID")
            cleaned.append({"command": name, "description": desc})
        self.commands[self._commands_key(call.params)] = cleaned
        return True

    def _api_get_my_commands(self, call: RecordedCall) -> list[JSON]:
        return copy.deepcopy(self.commands.get(self._commands_key(call.params), []))

    def _api_delete_my_commands(self, call: RecordedCall) -> bool:
        self.commands.pop(self._commands_key(call.params), None)
        return True

    def _api_send_message(self, call: RecordedCall) -> JSON:
        return self._bot_message(call, self._text_content(call.params))

    def _api_send_photo(self, call: RecordedCall) -> JSON:
        src = self._input_file(call, "photo")
        if isinstance(src, StoredFile):
            sizes = src.media if src.kind == "photo" and isinstance(src.media, list) else None
            photo = copy.deepcopy(sizes) if sizes else self._make_photo(src.data)
        else:
            if _pillow_available() and _image_size(src.data) is None:
                raise _bad_request("IMAGE_PROCESS_FAILED")
            photo = self._make_photo(src.data)
        return self._bot_message(call, {"photo": photo, **self._caption_content(call.params)})

    def _media_object(self, call: RecordedCall, kind: str, default_mime: str) -> JSON:
        src = self._input_file(call, kind)
        if isinstance(src, StoredFile) and src.kind == kind and isinstance(src.media, dict):
            return copy.deepcopy(src.media)
        p = call.params
        if isinstance(src, StoredFile):
            data, name, mime = src.data, src.file_name, src.mime_type
        else:
            data, name, mime = src.data, src.filename, src.content_type
        if mime in (None, "", "application/octet-stream") and name:
            mime = mimetypes.guess_type(name)[0]
        mime = mime or default_mime
        if kind == "document":
            return self._make_document(data, file_name=name, mime_type=mime)
        return self._make_video_like(
            data,
            kind,
            file_name=name,
            mime_type=mime,
            width=_as_int(p.get("width"), "width", 0) or None,
            height=_as_int(p.get("height"), "height", 0) or None,
            duration=_as_int(p.get("duration"), "duration", 1),
        )

    def _api_send_video(self, call: RecordedCall) -> JSON:
        video = self._media_object(call, "video", "video/mp4")
        return self._bot_message(call, {"video": video, **self._caption_content(call.params)})

    def _api_send_animation(self, call: RecordedCall) -> JSON:
        anim = self._media_object(call, "animation", "video/mp4")
        doc_keys = ("file_id", "file_unique_id", "file_name", "mime_type", "file_size")
        doc = {k: anim[k] for k in doc_keys if k in anim}
        content = {"animation": anim, "document": doc, **self._caption_content(call.params)}
        return self._bot_message(call, content)

    def _api_send_document(self, call: RecordedCall) -> JSON:
        doc = self._media_object(call, "document", "application/octet-stream")
        return self._bot_message(call, {"document": doc, **self._caption_content(call.params)})

    def _api_send_media_group(self, call: RecordedCall) -> list[JSON]:
        media = _as_json(call.params.get("media"))
        if not isinstance(media, list) or not 2 <= len(media) <= 10:
            raise _bad_request("wrong number of media in the album (2-10)")
        group_id = str(10**17 + next(self._callback_numbers))
        out = []
        for item in media:
            if not isinstance(item, Mapping) or item.get("type") not in (
                "photo", "video", "document",
            ):  # fmt: skip
                raise _bad_request("unsupported media type in the album")
            kind = str(item["type"])
            sub = RecordedCall(
                method=call.method,
                params={**call.params, kind: item.get("media"), "caption": item.get("caption"),
                        "parse_mode": item.get("parse_mode"), "reply_markup": None},
                files=call.files,
                time=call.time,
            )  # fmt: skip
            if kind == "photo":
                src = self._input_file(sub, "photo")
                photo = (
                    copy.deepcopy(src.media)
                    if isinstance(src, StoredFile) and isinstance(src.media, list)
                    else self._make_photo(src.data)
                )
                content: JSON = {"photo": photo}
            else:
                content = {kind: self._media_object(sub, kind, "application/octet-stream")}
            content["media_group_id"] = group_id
            content.update(self._caption_content(sub.params))
            out.append(self._bot_message(sub, content))
        return out

    def _api_send_chat_action(self, call: RecordedCall) -> bool:
        self._chat_by_id(call.params.get("chat_id"))
        if call.params.get("action") not in CHAT_ACTIONS:
            raise _bad_request("wrong parameter action in request")
        return True

    def _api_answer_callback_query(self, call: RecordedCall) -> bool:
        qid = str(call.params.get("callback_query_id") or "")
        if qid not in self.callback_queries:
            raise _bad_request(
                "query is too old and response timeout expired or query ID is invalid"
            )
        self.answered_callbacks[qid] = dict(call.params)
        return True

    def _api_edit_message_text(self, call: RecordedCall) -> JSON | bool:
        if call.params.get("inline_message_id"):
            return True
        msg = self._target_message(call.params, "edit")
        if "text" not in msg:
            raise _bad_request("there is no text in the message to edit")
        changes = self._text_content(call.params)
        return self._edited(
            msg, changes, call.params, replace=("text", "entities", "link_preview_options")
        )

    def _api_edit_message_caption(self, call: RecordedCall) -> JSON | bool:
        if call.params.get("inline_message_id"):
            return True
        msg = self._target_message(call.params, "edit")
        if "text" in msg:
            raise _bad_request("there is no caption in the message to edit")
        changes = self._caption_content(call.params)
        return self._edited(msg, changes, call.params, replace=("caption", "caption_entities"))

    def _api_edit_message_reply_markup(self, call: RecordedCall) -> JSON | bool:
        if call.params.get("inline_message_id"):
            return True
        msg = self._target_message(call.params, "edit")
        return self._edited(msg, {}, call.params)

    def _api_delete_message(self, call: RecordedCall) -> bool:
        msg = self._target_message(call.params, "delete")
        key = (msg["chat"]["id"], msg["message_id"])
        self._deleted_copies[key] = copy.deepcopy(msg)
        del self.messages[key]
        self.deleted_messages.append(key)
        return True

    def _api_set_message_reaction(self, call: RecordedCall) -> bool:
        msg = self._target_message(call.params, "react")
        raw = call.params.get("reaction")
        reactions = _as_json(raw) if raw else []
        if not isinstance(reactions, list):
            raise _bad_request("can't parse reaction types JSON object")
        if len(reactions) > 1:
            raise _bad_request("REACTIONS_TOO_MANY")
        for r in reactions:
            if not isinstance(r, Mapping):
                raise _bad_request("REACTION_INVALID")
            kind = r.get("type")
            if kind == "emoji" and r.get("emoji") not in REACTION_EMOJI:
                raise _bad_request("REACTION_INVALID")
            # PTB sends any str that is not a standard reaction emoji (e.g. "✅") as a
            # custom emoji; real custom emoji ids are numeric.
            if kind == "custom_emoji" and not str(r.get("custom_emoji_id", "")).isdigit():
                raise _bad_request("REACTION_INVALID")
            if kind not in ("emoji", "custom_emoji"):
                raise _bad_request("REACTION_INVALID")
        self.reactions[(msg["chat"]["id"], msg["message_id"])] = [dict(r) for r in reactions]
        return True

    def _api_get_chat(self, call: RecordedCall) -> JSON:
        chat = self._chat_by_id(call.params.get("chat_id"))
        full: JSON = {
            **chat,
            "accent_color_id": 0,
            "max_reaction_count": 11,
            "accepted_gift_types": {
                "unlimited_gifts": False,
                "limited_gifts": False,
                "unique_gifts": False,
                "premium_subscription": False,
                "gifts_from_channels": False,
            },
        }
        if chat["type"] != "private":
            full["permissions"] = {
                "can_send_messages": True,
                "can_send_audios": True,
                "can_send_documents": True,
                "can_send_photos": True,
                "can_send_videos": True,
                "can_send_video_notes": True,
                "can_send_voice_notes": True,
                "can_send_polls": True,
                "can_send_other_messages": True,
                "can_add_web_page_previews": True,
                "can_change_info": False,
                "can_invite_users": True,
                "can_pin_messages": False,
                "can_manage_topics": False,
            }
        return full

    def _api_get_chat_member(self, call: RecordedCall) -> JSON:
        chat = self._chat_by_id(call.params.get("chat_id"))
        return self._member_of(chat, _as_int(call.params.get("user_id"), "user_id"))

    def _api_get_chat_administrators(self, call: RecordedCall) -> list[JSON]:
        chat = self._chat_by_id(call.params.get("chat_id"))
        if chat["type"] == "private":
            raise _bad_request("there are no administrators in the private chat")
        admins = [
            copy.deepcopy(m)
            for (cid, _), m in self.chat_members.items()
            if cid == chat["id"] and m["status"] in ("creator", "administrator")
        ]
        if (chat["id"], self.bot_id) not in self.chat_members:
            admins.append(self._member_of(chat, self.bot_id))
        return admins

    def _api_get_chat_member_count(self, call: RecordedCall) -> int:
        chat = self._chat_by_id(call.params.get("chat_id"))
        if chat["type"] == "private":
            return 2
        members = {
            uid
            for (cid, uid), m in self.chat_members.items()
            if cid == chat["id"] and m["status"] not in ("left", "kicked")
        }
        return len(members | {self.bot_id})

    def _api_get_file(self, call: RecordedCall) -> JSON:
        file_id = str(call.params.get("file_id") or "")
        if not file_id:
            raise _bad_request("file_id is empty")
        stored = self.files.get(file_id)
        if stored is None:
            raise _bad_request("invalid file_id")
        if len(stored.data) > MAX_DOWNLOAD_BYTES:
            raise _bad_request("file is too big")
        return stored.file_object()

    def _api_close(self, call: RecordedCall) -> bool:
        return True

    def _api_log_out(self, call: RecordedCall) -> bool:
        return True
