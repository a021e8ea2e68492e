"""A fake Discord (REST API, gateway websocket and CDN) on 127.0.0.1 for end-to-end tests.

The real discord.py 2.7.1 client talks to it unchanged: :meth:`FakeDiscord.install` points
``discord.http.Route.BASE``, ``discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY`` and
``discord.asset.Asset.BASE`` at the fake (keeping the type found there) and restores them later.

Usage::

    async with FakeDiscord() as dc:                     # starts the server and installs it
        bot = commands.Bot(command_prefix="!", intents=intents, guild_ready_timeout=0.05)
        task = asyncio.create_task(bot.start(dc.token))
        await asyncio.wait_for(bot.wait_until_ready(), 10)
        att = dc.add_attachment(png_bytes, "frame.png", "image/png")
        dc.message_create(dc.text_channel, dc.users[0], "what anime?", attachments=[att])
        post = await dc.wait_for("POST", r"^/channels/\\d+/messages$")
        ...
        await bot.close()
        await task

What it models (the parts a bot needs, with complete payloads for discord.py 2.7.1):

- Gateway: HELLO, IDENTIFY -> READY + GUILD_CREATE, HEARTBEAT -> ACK (every heartbeat is
  recorded with a ``time.monotonic()`` stamp), RESUME -> replay + RESUMED (or INVALID_SESSION),
  REQUEST_GUILD_MEMBERS -> GUILD_MEMBERS_CHUNK; sharding (IDENTIFY's ``shard``: a guild's
  events go only to the session of shard ``(guild_id >> 22) % count``, DMs to shard 0,
  ``recommended_shards`` for GET /gateway/bot); intents filter dispatches and the
  MESSAGE_CONTENT intent blanks content like the real platform does.
- REST under ``/api/v10``: messages (JSON or multipart), edits, deletes, reactions, typing, DMs,
  application commands, interaction callbacks and follow-ups (webhooks). The bot's own messages
  and reactions are echoed back over the gateway, as Discord does.
- Discord's limits and errors that bots trip over: empty message (50006), 2000-char content,
  embed limits, 10 files, upload size (40005), one interaction callback (40060) within
  ``interaction_timeout`` seconds (10062), unknown message/channel/emoji.
- CDN: attachment bytes registered by tests or uploaded by the bot are served at their urls.

Everything the bot sent is kept: :attr:`FakeDiscord.requests` (method, path without the
``/api/v10`` prefix, query, JSON or ``payload_json``, uploaded files as bytes, time, status,
response) and :attr:`FakeDiscord.messages` (the current state of every message).

The server runs on the test's event loop, so call the fake from that loop only. Injecting is
synchronous (``message_create`` etc. queue the dispatch and return the payload); observing is
``await dc.wait_for(...)`` or ``bot.wait_for(...)``. A bug inside the fake lands in
:attr:`FakeDiscord.errors` (REST answers 418 so discord.py fails fast instead of retrying).

discord.py 2.7.1 behaviour worth knowing when writing tests against this fake:

- ``guild_ready_timeout`` (default 2 s) delays ``on_ready`` after the last GUILD_CREATE; pass a
  small one. Without the members intent, people are not cached: ``guild.get_member`` is None
  for them, but ``message.author`` is still a Member (built from the ``member`` field).
- Emojis and stickers are cached only with the ``emojis_and_stickers`` intent.
- Every IDENTIFY but the first waits 5 s in ``Client.before_identify_hook``; override it
  to return at once when a test invalidates the session.
- Uploaded files always arrive as ``application/octet-stream``; the fake sniffs the type.
- ``bot.close()`` asks aiohttp to close with 1000, but the reader task closes first with 4000,
  so the session stays resumable (:attr:`FakeDiscord.gateway_closes` shows the code).
- A 429 is retried only with a ``Via`` header and a JSON ``retry_after``; a 500/502 is
  retried after sleeping 1 + 2n seconds (slow in tests: prefer 429 or 4xx in ``fail_next``).
- Interaction follow-ups use ``?wait=1``; callbacks use ``?with_response=1``. The first
  follow-up after ``defer()`` fills the "thinking" message (as on Discord).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import io
import json
import mimetypes
import re
import secrets
import struct
import time
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import quote, unquote

import yarl
from aiohttp import WSMsgType, web

__all__ = [
    "API_PREFIX",
    "FailureRule",
    "FakeDiscord",
    "Intents",
    "Permissions",
    "RecordedRequest",
    "UploadedFile",
]

API_PREFIX = "/api/v10"
DISCORD_EPOCH_MS = 1420070400000
DEFAULT_UPLOAD_LIMIT = 10 * 1024 * 1024

Json = dict[str, Any]


def _png_1x1() -> bytes:
    """A valid 1x1 transparent PNG (served for default avatars, ``/embed/avatars/N.png``)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", 1, 1, 8, 6, 0, 0, 0)
    pixels = zlib.compress(b"\x00\x00\x00\x00\x00")
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


_TINY_PNG = _png_1x1()


class Intents:
    """Gateway intent bits (the subset the fake filters on)."""

    GUILDS = 1 << 0
    GUILD_MEMBERS = 1 << 1
    GUILD_PRESENCES = 1 << 8
    GUILD_MESSAGES = 1 << 9
    GUILD_MESSAGE_REACTIONS = 1 << 10
    GUILD_MESSAGE_TYPING = 1 << 11
    DIRECT_MESSAGES = 1 << 12
    DIRECT_MESSAGE_REACTIONS = 1 << 13
    MESSAGE_CONTENT = 1 << 15
    PRIVILEGED = GUILD_MEMBERS | GUILD_PRESENCES | MESSAGE_CONTENT


class Permissions:
    """Permission bits used to build roles and ``app_permissions``."""

    CREATE_INSTANT_INVITE = 1 << 0
    ADMINISTRATOR = 1 << 3
    ADD_REACTIONS = 1 << 6
    VIEW_CHANNEL = 1 << 10
    SEND_MESSAGES = 1 << 11
    MANAGE_MESSAGES = 1 << 13
    EMBED_LINKS = 1 << 14
    ATTACH_FILES = 1 << 15
    READ_MESSAGE_HISTORY = 1 << 16
    MENTION_EVERYONE = 1 << 17
    USE_EXTERNAL_EMOJIS = 1 << 18
    CONNECT = 1 << 20
    SPEAK = 1 << 21
    CHANGE_NICKNAME = 1 << 26
    USE_APPLICATION_COMMANDS = 1 << 31
    CREATE_PUBLIC_THREADS = 1 << 35
    USE_EXTERNAL_STICKERS = 1 << 37
    SEND_MESSAGES_IN_THREADS = 1 << 38
    ALL = (1 << 51) - 1

    EVERYONE = (
        CREATE_INSTANT_INVITE
        | ADD_REACTIONS
        | VIEW_CHANNEL
        | SEND_MESSAGES
        | EMBED_LINKS
        | ATTACH_FILES
        | READ_MESSAGE_HISTORY
        | USE_EXTERNAL_EMOJIS
        | CONNECT
        | SPEAK
        | CHANGE_NICKNAME
        | USE_APPLICATION_COMMANDS
        | CREATE_PUBLIC_THREADS
        | USE_EXTERNAL_STICKERS
        | SEND_MESSAGES_IN_THREADS
    )
    BOT = EVERYONE | MANAGE_MESSAGES


# Message flags.
_FLAG_SUPPRESS_EMBEDS = 1 << 2
_FLAG_EPHEMERAL = 1 << 6
_FLAG_LOADING = 1 << 7
_FLAG_SUPPRESS_NOTIFICATIONS = 1 << 12
_FLAG_COMPONENTS_V2 = 1 << 15
_SENDABLE_FLAGS = _FLAG_SUPPRESS_EMBEDS | _FLAG_SUPPRESS_NOTIFICATIONS | _FLAG_COMPONENTS_V2

# Channel types a message can be posted in: text, DM, voice (text chat), news, threads.
_MESSAGEABLE_CHANNEL_TYPES = {0, 1, 2, 3, 5, 10, 11, 12, 13}

_ERROR_MESSAGES = {
    400: "400: Bad Request",
    401: "401: Unauthorized",
    403: "Missing Permissions",
    404: "404: Not Found",
    405: "405: Method Not Allowed",
    413: "Request entity too large",
    500: "500: Internal Server Error",
    502: "502: Bad Gateway",
    503: "503: Service Unavailable",
}


# ---------------------------------------------------------------------------------------------
# Records
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UploadedFile:
    """One file part of a multipart request (``files[n]``)."""

    field_name: str
    filename: str
    content_type: str
    data: bytes

    @property
    def size(self) -> int:
        return len(self.data)


@dataclass
class RecordedRequest:
    """One HTTP request the fake received (REST or CDN), filled in when it completes."""

    method: str
    path: str  # REST paths without the /api/v10 prefix; CDN paths as requested
    query: dict[str, str]
    json: Any  # JSON body, or the parsed ``payload_json`` of a multipart body
    files: list[UploadedFile]
    form: dict[str, str]
    headers: dict[str, str]
    time: float  # time.monotonic() on arrival
    status: int | None = None
    response: Any = None
    unknown: bool = False  # no such route: answered 404
    injected: bool = False  # answered by a fail_next() rule

    @property
    def completed(self) -> bool:
        return self.status is not None

    @property
    def is_multipart(self) -> bool:
        return bool(self.files) or bool(self.form)

    def __repr__(self) -> str:
        return f"<RecordedRequest {self.method} {self.path} -> {self.status}>"


@dataclass
class FailureRule:
    """An injected failure: the next ``count`` matching requests get ``status``."""

    method: str
    pattern: re.Pattern[str]
    status: int
    retry_after: float
    count: int
    is_global: bool
    via: bool
    body: Json | None

    def matches(self, method: str, path: str) -> bool:
        return self.count > 0 and self.method in (method, "*") and bool(self.pattern.search(path))


@dataclass
class _Reply:
    status: int
    body: Any = None  # JSON-able object, bytes, or None
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"

    def to_response(self) -> web.Response:
        if self.status == 204 or (self.body is None and self.status < 300):
            return web.Response(status=self.status, headers=self.headers)
        if isinstance(self.body, bytes):
            data = self.body
        else:
            data = json.dumps(self.body, separators=(",", ":")).encode()
        # discord.py only parses JSON when Content-Type is exactly "application/json".
        headers = {"Content-Type": self.content_type, **self.headers}
        return web.Response(status=self.status, body=data, headers=headers)


def _error(
    status: int, message: str | None = None, code: int = 0, errors: Json | None = None
) -> _Reply:
    body: Json = {"message": message or _ERROR_MESSAGES.get(status, f"{status}"), "code": code}
    if errors:
        body["errors"] = errors
    return _Reply(status, body)


def _form_error(field_path: str, message: str, code: str = "BASE_TYPE_BAD_VALUE") -> _Reply:
    """Discord's 50035 "Invalid Form Body" with one nested field error."""
    errors: Json = {"_errors": [{"code": code, "message": message}]}
    for part in reversed(field_path.split(".")):
        errors = {part: errors}
    return _error(400, "Invalid Form Body", 50035, errors)


@dataclass
class _Blob:
    data: bytes
    content_type: str
    filename: str


@dataclass
class _Interaction:
    payload: Json
    created: float
    command_type: int | None  # 1 slash, 2 user, 3 message; None for components
    acknowledged: bool = False
    response_type: int | None = None
    original_id: str | None = None
    loading: bool = False  # deferred "thinking" message not yet filled
    followup_ids: list[str] = field(default_factory=list)
    callbacks: list[Json] = field(default_factory=list)


class _Connection:
    """One gateway websocket; frames go out through a queue so their order is kept."""

    def __init__(self, ws: web.WebSocketResponse, path: str) -> None:
        self.ws = ws
        self.path = path
        self.queue: asyncio.Queue[str | None] = asyncio.Queue()
        self.session: _Session | None = None
        self.writer: asyncio.Task[None] | None = None
        self.opened = time.monotonic()
        self.server_closed = False  # closed by the fake (disconnect / error), not by the bot
        self.server_close_code: int | None = None

    def send(self, frame: Json) -> None:
        self.queue.put_nowait(json.dumps(frame, separators=(",", ":")))

    async def write_loop(self) -> None:
        while True:
            frame = await self.queue.get()
            if frame is None or self.ws.closed:
                return
            try:
                await self.ws.send_str(frame)
            except (ConnectionError, RuntimeError):
                return


class _Session:
    """An identified gateway session: survives reconnects when it is resumed."""

    def __init__(self, session_id: str, identify: Json) -> None:
        self.session_id = session_id
        self.identify = identify
        self.intents: int = int(identify.get("intents") or 0)
        self.shard: list[int] | None = identify.get("shard")
        self.seq = 0
        self.conn: _Connection | None = None
        self.buffer: deque[tuple[int, str]] = deque(maxlen=2000)
        self.resumable = True

    def dispatch(self, event: str, data: Json) -> int:
        self.seq += 1
        frame = json.dumps({"op": 0, "t": event, "s": self.seq, "d": data}, separators=(",", ":"))
        self.buffer.append((self.seq, frame))
        if self.conn is not None:
            self.conn.queue.put_nowait(frame)
        return self.seq


# ---------------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------------


def _now_iso() -> str:
    return datetime.now(UTC).isoformat()


def _sid(obj: Any) -> str:
    """The snowflake of a payload dict, int or str, as Discord's string form."""
    if isinstance(obj, Mapping):
        return str(obj["id"])
    return str(obj)


def _image_size(data: bytes) -> tuple[int, int] | None:
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow is a project dependency
        return None
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.size
    except Exception:
        return None


def _sniff_content_type(data: bytes, filename: str) -> str:
    signatures = {
        b"\x89PNG\r\n\x1a\n": "image/png",
        b"\xff\xd8\xff": "image/jpeg",
        b"GIF87a": "image/gif",
        b"GIF89a": "image/gif",
    }
    for magic, ctype in signatures.items():
        if data.startswith(magic):
            return ctype
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[4:8] == b"ftyp":
        return "video/mp4"
    guessed = mimetypes.guess_type(filename)[0]
    return guessed or "application/octet-stream"


def _public_user(user: Json) -> Json:
    keys = (
        "id",
        "username",
        "discriminator",
        "global_name",
        "avatar",
        "banner",
        "accent_color",
        "public_flags",
        "bot",
        "system",
        "avatar_decoration_data",
        "primary_guild",
        "collectibles",
    )
    return {k: user[k] for k in keys if k in user}


_MENTION_RE = re.compile(r"<@!?(\d+)>")
_ROLE_MENTION_RE = re.compile(r"<@&(\d+)>")


# ---------------------------------------------------------------------------------------------
# The fake
# ---------------------------------------------------------------------------------------------


class FakeDiscord:
    """Fake Discord REST + gateway + CDN on 127.0.0.1 (random port), for real discord.py.

    Test-facing API (all payloads are Discord JSON dicts with string snowflakes; wherever a
    user, channel or message is asked for, a dict, an int or a str id is accepted):

    - world: :attr:`bot_user`, :attr:`application`, :attr:`guild`, :attr:`text_channel`,
      :attr:`nsfw_channel`, :attr:`voice_channel`, :attr:`users` (two people, ``users[0]`` owns
      the guild), :attr:`members`, :attr:`channels`, :meth:`dm_channel`, :attr:`token`;
    - inject: :meth:`add_attachment`, :meth:`message_create`, :meth:`message_update`,
      :meth:`message_delete`, :meth:`reaction_add`, :meth:`reaction_remove`,
      :meth:`interaction_slash`, :meth:`interaction_message_context`,
      :meth:`interaction_user_context`, :meth:`interaction_component`;
    - observe: :attr:`requests`, :meth:`wait_for`, :attr:`heartbeats`, :meth:`wait_heartbeats`,
      :attr:`messages`, :meth:`sent_messages`, :meth:`original_response`, :meth:`followups`,
      :meth:`interaction_callbacks`, :attr:`typing`, :attr:`dispatched`, :attr:`commands`,
      :attr:`guild_commands`, :attr:`identifies`, :attr:`unknown_requests`, :attr:`errors`;
    - misbehave: :meth:`fail_next`, :meth:`request_reconnect`, :meth:`invalidate_sessions`,
      :meth:`disconnect`, :attr:`resume_behaviour`, :attr:`ack_heartbeats`.
    """

    def __init__(
        self,
        *,
        heartbeat_interval_ms: int = 1000,
        interaction_timeout: float = 3.0,
        upload_limit: int = DEFAULT_UPLOAD_LIMIT,
        privileged_intents_enabled: bool = True,
        resume_behaviour: Literal["resume", "invalidate"] = "resume",
        bot_name: str = "AniRec",
    ) -> None:
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.interaction_timeout = interaction_timeout
        self.upload_limit = upload_limit
        self.privileged_intents_enabled = privileged_intents_enabled
        self.resume_behaviour: Literal["resume", "invalidate"] = resume_behaviour
        self.ack_heartbeats = True
        #: what GET /gateway/bot recommends (AutoShardedClient without a shard_count uses it)
        self.recommended_shards = 1

        self.token = "FAKE." + secrets.token_urlsafe(12) + "." + secrets.token_urlsafe(27)
        self._last_snowflake = 0
        self._component_ids = 0

        # Observations.
        self.requests: list[RecordedRequest] = []
        self.heartbeats: list[float] = []
        self.heartbeat_sequences: list[int | None] = []
        self.identifies: list[Json] = []
        self.resumes: list[Json] = []
        self.gateway_connections: list[tuple[str, float]] = []
        self.gateway_closes: list[int | None] = []  # close code of each ended connection
        self.dispatched: list[tuple[str, Json, float]] = []
        self.presence_updates: list[Json] = []
        self.typing: list[tuple[str, float]] = []
        self.errors: list[BaseException] = []
        self._consumed: set[int] = set()
        self._changed = asyncio.Event()
        self._failures: list[FailureRule] = []

        # State.
        self.messages: dict[str, Json] = {}
        self.deleted_messages: dict[str, Json] = {}
        self.attachments: dict[str, Json] = {}
        self._blobs: dict[str, _Blob] = {}
        self._reactions: dict[str, dict[str, tuple[Json, list[str]]]] = {}
        self.commands: list[Json] = []
        #: user id -> the Discord client language its interactions carry (default "en-US").
        self.locales: dict[str, str] = {}
        self.guild_commands: dict[str, list[Json]] = {}
        self.interactions: dict[str, _Interaction] = {}
        self._interactions_by_token: dict[str, _Interaction] = {}
        self._sessions: dict[str, _Session] = {}
        self._conns: set[_Connection] = set()

        # Server.
        self._runner: web.AppRunner | None = None
        self.port = 0
        self._saved: tuple[Any, Any, Any] | None = None

        self._build_world(bot_name)
        self._routes = self._build_routes()

    # -- lifecycle ------------------------------------------------------------------------------

    async def __aenter__(self) -> FakeDiscord:
        await self.start()
        self.install()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.uninstall()
        await self.stop()

    async def start(self) -> None:
        """Start the server on 127.0.0.1 with a random free port."""
        app = web.Application(client_max_size=256 * 1024 * 1024)
        app.router.add_route("GET", "/", self._gateway_handler)
        app.router.add_route("GET", "/resume/", self._gateway_handler)
        app.router.add_route("*", "/{tail:.+}", self._http_handler)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        """Close every gateway connection and stop the server."""
        for conn in list(self._conns):
            conn.queue.put_nowait(None)
            if not conn.ws.closed:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(conn.ws.close(code=1001), 2.0)
        for conn in list(self._conns):
            if conn.writer is not None:
                conn.writer.cancel()
                with contextlib.suppress(BaseException):
                    await conn.writer
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_base(self) -> str:
        return self.base_url + API_PREFIX

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"

    @property
    def resume_gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/resume/"

    def install(self) -> FakeDiscord:
        """Point discord.py's REST base, gateway and CDN at this fake (idempotent)."""
        import discord.asset
        import discord.gateway
        import discord.http

        if self._saved is not None:
            return self
        route_cls = discord.http.Route
        ws_cls = discord.gateway.DiscordWebSocket
        asset_cls = discord.asset.Asset
        self._saved = (route_cls.BASE, ws_cls.DEFAULT_GATEWAY, asset_cls.BASE)
        route_cls.BASE = self._same_type(route_cls.BASE, self.api_base)
        ws_cls.DEFAULT_GATEWAY = self._same_type(ws_cls.DEFAULT_GATEWAY, self.gateway_url)
        asset_cls.BASE = self._same_type(asset_cls.BASE, self.base_url)
        return self

    def uninstall(self) -> None:
        """Restore what :meth:`install` replaced."""
        import discord.asset
        import discord.gateway
        import discord.http

        if self._saved is None:
            return
        route_base, gateway, asset_base = self._saved
        discord.http.Route.BASE = route_base
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = gateway
        discord.asset.Asset.BASE = asset_base
        self._saved = None

    @contextlib.contextmanager
    def installed(self) -> Iterator[FakeDiscord]:
        """``with dc.installed():`` — :meth:`install` for the block only."""
        self.install()
        try:
            yield self
        finally:
            self.uninstall()

    @staticmethod
    def _same_type(found: Any, url: str) -> Any:
        return yarl.URL(url) if isinstance(found, yarl.URL) else url

    # -- the world ------------------------------------------------------------------------------

    def _snowflake(self) -> str:
        value = (int(time.time() * 1000) - DISCORD_EPOCH_MS) << 22
        if value <= self._last_snowflake:
            value = self._last_snowflake + 1
        self._last_snowflake = value
        return str(value)

    @staticmethod
    def _make_user(
        uid: str,
        username: str,
        *,
        bot: bool = False,
        global_name: str | None = None,
        discriminator: str = "0",
    ) -> Json:
        return {
            "id": uid,
            "username": username,
            "discriminator": discriminator,
            "global_name": global_name,
            "avatar": None,
            "banner": None,
            "accent_color": None,
            "public_flags": 0,
            "flags": 0,
            "bot": bot,
            "system": False,
            "avatar_decoration_data": None,
            "primary_guild": None,
            "collectibles": None,
        }

    def _make_member(self, user: Json, roles: list[str]) -> Json:
        return {
            "user": user,
            "nick": None,
            "avatar": None,
            "banner": None,
            "roles": roles,
            "joined_at": _now_iso(),
            "premium_since": None,
            "deaf": False,
            "mute": False,
            "flags": 0,
            "pending": False,
            "communication_disabled_until": None,
            "avatar_decoration_data": None,
        }

    def _build_world(self, bot_name: str) -> None:
        app_id = self._snowflake()
        self.bot_user: Json = self._make_user(app_id, bot_name, bot=True, discriminator="4242")
        alice = self._make_user(self._snowflake(), "alice", global_name="Alice")
        bob = self._make_user(self._snowflake(), "bob", global_name="Bob")
        self.users: list[Json] = [alice, bob]
        self.application: Json = {
            "id": app_id,
            "name": bot_name,
            "icon": None,
            "description": "AniRec test application",
            "summary": "",
            "type": None,
            "hook": True,
            "bot_public": True,
            "bot_require_code_grant": False,
            "verify_key": secrets.token_hex(32),
            "owner": _public_user(alice),
            "team": None,
            "flags": (1 << 19) | (1 << 23),  # message content (limited) + command badge
            "tags": [],
            "redirect_uris": [],
            "interactions_endpoint_url": None,  # non-None makes discord.py warn and skip commands
            "role_connections_verification_url": None,
            "install_params": {
                "scopes": ["bot", "applications.commands"],
                "permissions": str(Permissions.BOT),
            },
            "integration_types_config": {"0": {}},
            "approximate_guild_count": 1,
            "approximate_user_install_count": 0,
            "is_monetized": False,
            "bot": _public_user(self.bot_user),
        }

        gid = self._snowflake()
        category_id, text_id, nsfw_id, voice_id = (self._snowflake() for _ in range(4))
        bot_role_id, mod_role_id = self._snowflake(), self._snowflake()
        self.roles: list[Json] = [
            self._make_role(gid, "@everyone", Permissions.EVERYONE, 0),
            self._make_role(
                bot_role_id, bot_name, Permissions.BOT, 2, managed=True, tags={"bot_id": app_id}
            ),
            self._make_role(
                mod_role_id,
                "Moderator",
                Permissions.EVERYONE | Permissions.MANAGE_MESSAGES,
                1,
                hoist=True,
                color=0x3498DB,
            ),
        ]
        self.category_channel: Json = {
            "id": category_id,
            "type": 4,
            "guild_id": gid,
            "name": "Text Channels",
            "position": 0,
            "permission_overwrites": [],
            "nsfw": False,
            "parent_id": None,
            "flags": 0,
        }
        self.text_channel: Json = self._make_text_channel(
            text_id, gid, "general", 0, category_id, nsfw=False, topic="Ask the bot about anime"
        )
        self.nsfw_channel: Json = self._make_text_channel(
            nsfw_id, gid, "after-dark", 1, category_id, nsfw=True, topic="Age-restricted channel"
        )
        self.voice_channel: Json = {
            "id": voice_id,
            "type": 2,
            "guild_id": gid,
            "name": "Lounge",
            "position": 2,
            "permission_overwrites": [],
            "nsfw": False,
            "parent_id": None,
            "flags": 0,
            "bitrate": 64000,
            "user_limit": 0,
            "rtc_region": None,
            "video_quality_mode": 1,
            "rate_limit_per_user": 0,
            "last_message_id": None,
        }
        self.members: dict[str, Json] = {
            app_id: self._make_member(_public_user(self.bot_user), [bot_role_id]),
            alice["id"]: self._make_member(_public_user(alice), [mod_role_id]),
            bob["id"]: self._make_member(_public_user(bob), []),
        }
        self.emojis: list[Json] = [
            {
                "id": self._snowflake(),
                "name": "anirec_ok",
                "roles": [],
                "require_colons": True,
                "managed": False,
                "animated": False,
                "available": True,
            }
        ]
        self.stickers: list[Json] = [
            {
                "id": self._snowflake(),
                "name": "wave",
                "tags": "wave",
                "type": 2,
                "format_type": 1,
                "description": "A waving sticker",
                "available": True,
                "guild_id": gid,
            }
        ]
        guild_channels = [
            self.category_channel,
            self.text_channel,
            self.nsfw_channel,
            self.voice_channel,
        ]
        self.guild: Json = {
            "id": gid,
            "name": "AniRec Test Server",
            "icon": None,
            "icon_hash": None,
            "splash": None,
            "discovery_splash": None,
            "banner": None,
            "description": None,
            "owner_id": alice["id"],
            "afk_channel_id": None,
            "afk_timeout": 300,
            "widget_enabled": False,
            "widget_channel_id": None,
            "verification_level": 0,
            "default_message_notifications": 1,
            "explicit_content_filter": 0,
            "features": [],
            "mfa_level": 0,
            "application_id": None,
            "system_channel_id": text_id,
            "system_channel_flags": 0,
            "rules_channel_id": None,
            "public_updates_channel_id": None,
            "safety_alerts_channel_id": None,
            "max_presences": None,
            "max_members": 500000,
            "max_video_channel_users": 25,
            "max_stage_video_channel_users": 50,
            "vanity_url_code": None,
            "premium_tier": 0,
            "premium_subscription_count": 0,
            "premium_progress_bar_enabled": False,
            "preferred_locale": "en-US",
            "nsfw_level": 0,
            "nsfw": False,
            "hub_type": None,
            "incidents_data": None,
            "latest_onboarding_question_id": None,
            "roles": self.roles,
            "emojis": self.emojis,
            "stickers": self.stickers,
            "channels": guild_channels,
            "threads": [],
            "members": list(self.members.values()),
            "member_count": len(self.members),
            "presences": [],
            "voice_states": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "soundboard_sounds": [],
            "embedded_activities": [],
            "joined_at": _now_iso(),
            "large": False,
            "lazy": True,
            "unavailable": False,
        }
        self.channels: dict[str, Json] = {c["id"]: c for c in guild_channels}

    @staticmethod
    def _make_role(
        rid: str,
        name: str,
        permissions: int,
        position: int,
        *,
        managed: bool = False,
        hoist: bool = False,
        color: int = 0,
        tags: Json | None = None,
    ) -> Json:
        role: Json = {
            "id": rid,
            "name": name,
            "permissions": str(permissions),
            "position": position,
            "color": color,
            "colors": {"primary_color": color, "secondary_color": None, "tertiary_color": None},
            "hoist": hoist,
            "icon": None,
            "unicode_emoji": None,
            "managed": managed,
            "mentionable": False,
            "flags": 0,
        }
        if tags is not None:
            role["tags"] = tags
        return role

    @staticmethod
    def _make_text_channel(
        cid: str, gid: str, name: str, position: int, parent_id: str, *, nsfw: bool, topic: str
    ) -> Json:
        return {
            "id": cid,
            "type": 0,
            "guild_id": gid,
            "name": name,
            "position": position,
            "permission_overwrites": [],
            "nsfw": nsfw,
            "topic": topic,
            "parent_id": parent_id,
            "last_message_id": None,
            "rate_limit_per_user": 0,
            "flags": 0,
            "default_auto_archive_duration": 1440,
            "default_thread_rate_limit_per_user": 0,
            "last_pin_timestamp": None,
        }

    def dm_channel(self, user: Json | int | str) -> Json:
        """The DM channel between the bot and ``user`` (created on first use)."""
        uid = _sid(user)
        for channel in self.channels.values():
            if channel["type"] == 1 and channel["recipients"][0]["id"] == uid:
                return channel
        recipient = self._user(uid)
        channel = {
            "id": self._snowflake(),
            "type": 1,
            "last_message_id": None,
            "flags": 0,
            "recipients": [_public_user(recipient)],
        }
        self.channels[channel["id"]] = channel
        return channel

    def _user(self, user: Json | int | str) -> Json:
        uid = _sid(user)
        if uid == self.bot_user["id"]:
            return self.bot_user
        for candidate in self.users:
            if candidate["id"] == uid:
                return candidate
        if isinstance(user, Mapping):
            return dict(user)
        raise KeyError(f"unknown user {uid}")

    def _channel(self, channel: Json | int | str) -> Json:
        cid = _sid(channel)
        try:
            return self.channels[cid]
        except KeyError:
            raise KeyError(f"unknown channel {cid}") from None

    def _message(self, message: Json | int | str) -> Json:
        mid = _sid(message)
        try:
            return self.messages[mid]
        except KeyError:
            raise KeyError(f"unknown message {mid}") from None

    def add_user(self, username: str, *, bot: bool = False, join_guild: bool = True) -> Json:
        """Add another person (or bot) to the world; joins the guild unless told not to."""
        user = self._make_user(self._snowflake(), username, bot=bot, global_name=username.title())
        self.users.append(user)
        if join_guild:
            member = self._make_member(_public_user(user), [])
            self.members[user["id"]] = member
            self.guild["members"].append(member)
            self.guild["member_count"] = len(self.members)
            self.dispatch(
                "GUILD_MEMBER_ADD",
                {**member, "guild_id": self.guild["id"]},
                intent=Intents.GUILD_MEMBERS,
            )
        return user

    def _member_permissions(self, uid: str) -> int:
        if uid == self.guild["owner_id"]:
            return Permissions.ALL
        member = self.members.get(uid)
        role_ids = {self.guild["id"], *(member["roles"] if member else [])}
        perms = 0
        for role in self.roles:
            if role["id"] in role_ids:
                perms |= int(role["permissions"])
        return Permissions.ALL if perms & Permissions.ADMINISTRATOR else perms

    def _member_view(self, uid: str) -> Json | None:
        """A member payload without ``user`` (as in MESSAGE_CREATE / reactions)."""
        member = self.members.get(uid)
        if member is None:
            return None
        return {k: v for k, v in member.items() if k != "user"}

    # -- attachments and CDN -------------------------------------------------------------------

    def add_attachment(
        self,
        data: bytes,
        filename: str,
        content_type: str | None = None,
        *,
        channel: Json | int | str | None = None,
        description: str | None = None,
        ephemeral: bool = False,
    ) -> Json:
        """Register bytes on the fake CDN and return a complete attachment payload.

        The ``url``/``proxy_url`` are signed-looking CDN urls served by this fake, so
        ``Attachment.read()`` (or a plain aiohttp GET) downloads exactly ``data``.
        """
        cid = _sid(channel) if channel is not None else self.text_channel["id"]
        return self._make_attachment(
            data, filename, content_type, cid, description=description, ephemeral=ephemeral
        )

    def _make_attachment(
        self,
        data: bytes,
        filename: str,
        content_type: str | None,
        channel_id: str,
        *,
        description: str | None = None,
        ephemeral: bool = False,
    ) -> Json:
        aid = self._snowflake()
        filename = re.sub(r"\s+", "_", filename) or "unknown"
        if not content_type or content_type == "application/octet-stream":
            content_type = _sniff_content_type(data, filename)
        prefix = "ephemeral-attachments" if ephemeral else "attachments"
        path = f"/{prefix}/{channel_id}/{aid}/{quote(filename)}"
        now = int(time.time())
        signature = f"?ex={now + 86400:x}&is={now:x}&hm={secrets.token_hex(32)}&"
        attachment: Json = {
            "id": aid,
            "filename": filename,
            "size": len(data),
            "url": f"{self.base_url}{path}{signature}",
            "proxy_url": f"{self.base_url}/media{path}{signature}",
            "content_type": content_type,
            "flags": 0,
        }
        if content_type.startswith("image/"):
            size = _image_size(data)
            if size is not None:
                attachment["width"], attachment["height"] = size
                attachment["placeholder"] = "AAAAAAAAAAAAAAAAAAAAAAAAAAAA"
                attachment["placeholder_version"] = 1
        if description:
            attachment["description"] = description
        if ephemeral:
            attachment["ephemeral"] = True
        self._blobs[aid] = _Blob(data, content_type, filename)
        self.attachments[aid] = attachment
        return attachment

    def attachment_bytes(self, attachment: Json | int | str) -> bytes:
        """The bytes behind an attachment (one a test added or the bot uploaded)."""
        return self._blobs[_sid(attachment)].data

    # -- observation --------------------------------------------------------------------------

    @property
    def unknown_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.unknown]

    def requests_matching(self, method: str, path_regex: str) -> list[RecordedRequest]:
        pattern = re.compile(path_regex)
        return [r for r in self.requests if r.method == method.upper() and pattern.search(r.path)]

    async def wait_for(
        self,
        method: str,
        path_regex: str,
        predicate: Callable[[RecordedRequest], bool] | None = None,
        timeout: float = 10.0,
    ) -> RecordedRequest:
        """Wait for a completed request; returns the oldest match not returned before.

        ``path_regex`` is searched (``re.search``) in the path without ``/api/v10``. Each
        request is handed out once, so two calls return the first and the second match.
        """
        pattern = re.compile(path_regex)
        method = method.upper()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            for index, rec in enumerate(self.requests):
                if (
                    index not in self._consumed
                    and rec.completed
                    and rec.method == method
                    and pattern.search(rec.path)
                    and (predicate is None or predicate(rec))
                ):
                    self._consumed.add(index)
                    return rec
            remaining = deadline - loop.time()
            if remaining <= 0:
                seen = "\n  ".join(
                    f"{r.method} {r.path} -> {r.status}" for r in self.requests[-15:]
                )
                raise TimeoutError(
                    f"no {method} {path_regex} within {timeout}s; last requests:\n  {seen}"
                )
            changed = self._changed
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), remaining)

    async def wait_heartbeats(self, count: int, timeout: float = 10.0) -> list[float]:
        """Wait until at least ``count`` heartbeats were received in total."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(self.heartbeats) < count:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"{len(self.heartbeats)} heartbeats < {count} after {timeout}s")
            changed = self._changed
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), remaining)
        return list(self.heartbeats)

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def sent_messages(self, channel: Json | int | str | None = None) -> list[Json]:
        """Current state of the messages the bot created (REST or interactions), oldest first.

        With ``channel``: only that channel. Deleted messages are not included.
        """
        cid = _sid(channel) if channel is not None else None
        bot_id = self.bot_user["id"]
        out = [
            m
            for m in self.messages.values()
            if m["author"]["id"] == bot_id and (cid is None or m["channel_id"] == cid)
        ]
        return sorted(out, key=lambda m: int(m["id"]))

    def fail_next(
        self,
        method: str,
        path_regex: str,
        status: int = 429,
        retry_after: float = 0.1,
        *,
        count: int = 1,
        is_global: bool = False,
        via: bool = True,
        body: Json | None = None,
    ) -> FailureRule:
        """Answer the next ``count`` matching requests with ``status`` instead of handling them.

        A 429 carries ``Via`` (unless ``via=False``, which discord.py treats as a Cloudflare ban),
        ``Retry-After`` and a JSON ``retry_after``, so discord.py sleeps and retries. Use
        ``method="*"`` for any method. Other statuses get Discord's error shape (or ``body``).
        """
        rule = FailureRule(
            method.upper(), re.compile(path_regex), status, retry_after, count, is_global, via, body
        )
        self._failures.append(rule)
        return rule

    def _failure_reply(self, rule: FailureRule) -> _Reply:
        rule.count -= 1
        if rule.status == 429:
            headers = {
                "Retry-After": str(max(1, int(rule.retry_after + 0.999))),
                "X-RateLimit-Scope": "global" if rule.is_global else "user",
            }
            if rule.is_global:
                headers["X-RateLimit-Global"] = "true"
            if rule.via:
                headers["Via"] = "1.1 google"
            body = rule.body or {
                "message": "You are being rate limited.",
                "retry_after": rule.retry_after,
                "global": rule.is_global,
            }
            return _Reply(429, body, headers)
        if rule.body is not None:
            return _Reply(rule.status, rule.body)
        return _error(rule.status)

    # -- gateway -------------------------------------------------------------------------------

    @property
    def sessions(self) -> list[_Session]:
        """Gateway sessions that can still be resumed (a clean 1000/1001 close ends one)."""
        return list(self._sessions.values())

    @property
    def open_connections(self) -> int:
        """Gateway websockets currently open."""
        return len(self._conns)

    def dispatch(
        self, event: str, data: Json, *, intent: int | None = None, message: Json | None = None
    ) -> None:
        """Send a DISPATCH to every identified session whose intents include ``intent``.

        ``message`` (the stored message) enables MESSAGE_CONTENT gating of ``data``.
        """
        self.dispatched.append((event, data, time.monotonic()))
        guild_id = self._event_guild(event, data)
        for session in self._sessions.values():
            if not session.resumable:
                continue
            if not self._shard_owns(session, guild_id):
                continue  # as Discord does: a guild's events go to its shard, DMs to shard 0
            if intent is not None and not session.intents & intent:
                continue
            payload = data
            if message is not None and not self._content_visible(session, message):
                payload = {**data, "content": "", "embeds": [], "attachments": [], "components": []}
                payload.pop("poll", None)
            session.dispatch(event, payload)

    def _event_guild(self, event: str, data: Json) -> str | None:
        """The guild an event belongs to (None: a DM or not guild-bound)."""
        if data.get("guild_id"):
            return str(data["guild_id"])
        if event.startswith("GUILD_") and "id" in data:
            return str(data["id"])
        channel = data.get("channel_id") or (data.get("channel") or {}).get("id")
        return self._guild_id_of(str(channel)) if channel else None

    @staticmethod
    def _shard_owns(session: _Session, guild_id: str | None) -> bool:
        """Discord's rule: shard_id = (guild_id >> 22) % num_shards; DMs on shard 0."""
        if session.shard is None:
            return True
        shard_id, count = session.shard
        return (int(guild_id) >> 22) % count == shard_id if guild_id else shard_id == 0

    def _content_visible(self, session: _Session, message: Json) -> bool:
        if session.intents & Intents.MESSAGE_CONTENT:
            return True
        channel = self.channels.get(message["channel_id"])
        if channel is None or "guild_id" not in channel:
            return True  # DMs always carry content
        bot_id = self.bot_user["id"]
        return message["author"]["id"] == bot_id or any(
            m["id"] == bot_id for m in message["mentions"]
        )

    async def _gateway_handler(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(timeout=2.0, max_msg_size=0, compress=False)
        await ws.prepare(request)
        conn = _Connection(ws, request.path)
        self._conns.add(conn)
        self.gateway_connections.append((request.path_qs, time.monotonic()))
        conn.writer = asyncio.create_task(conn.write_loop(), name="fake-discord-gateway-writer")
        conn.send(
            {
                "op": 10,
                "d": {
                    "heartbeat_interval": self.heartbeat_interval_ms,
                    "_trace": ['["fake-gateway",{"micros":0}]'],
                },
            }
        )
        try:
            async for msg in ws:
                if msg.type is WSMsgType.TEXT:
                    try:
                        await self._on_gateway_frame(conn, json.loads(msg.data))
                    except Exception as exc:  # a bug in the fake: keep it visible to tests
                        self.errors.append(exc)
                        await ws.close(code=4000, message=b"fake gateway error")
                elif msg.type is WSMsgType.BINARY:
                    await ws.close(code=4002, message=b"Error while decoding payload.")
                elif msg.type is WSMsgType.ERROR:
                    break
        finally:
            self._conns.discard(conn)
            code = conn.server_close_code if conn.server_closed else ws.close_code
            self.gateway_closes.append(None if code is None else int(code))
            session = conn.session
            if session is not None and session.conn is conn:
                session.conn = None
                if ws.close_code in (1000, 1001) and not conn.server_closed:
                    # A clean client close ends the session for good, as on Discord.
                    session.resumable = False
                    self._sessions.pop(session.session_id, None)
            conn.queue.put_nowait(None)
            self._notify()
        return ws

    async def _on_gateway_frame(self, conn: _Connection, frame: Json) -> None:
        op = frame.get("op")
        data = frame.get("d")
        if op == 1:  # HEARTBEAT
            self.heartbeats.append(time.monotonic())
            self.heartbeat_sequences.append(data)
            if self.ack_heartbeats:
                conn.send({"op": 11})
            self._notify()
        elif op == 2:  # IDENTIFY
            await self._identify(conn, data or {})
        elif op == 6:  # RESUME
            await self._resume(conn, data or {})
        elif op == 8:  # REQUEST_GUILD_MEMBERS
            if conn.session is None:
                await self._server_close(conn, 4003, "Not authenticated.")
                return
            self._members_chunk(conn.session, data or {})
        elif op in (3, 4):  # PRESENCE_UPDATE, VOICE_STATE_UPDATE: accepted, not acted on
            self.presence_updates.append({"op": op, "d": data})
        else:
            await self._server_close(conn, 4001, "Unknown opcode.")

    async def _server_close(self, conn: _Connection, code: int, reason: str) -> None:
        conn.server_closed = True
        conn.server_close_code = code
        conn.queue.put_nowait(None)
        await conn.ws.close(code=code, message=reason.encode())

    async def _identify(self, conn: _Connection, data: Json) -> None:
        if conn.session is not None:
            await self._server_close(conn, 4005, "Already authenticated.")
            return
        self.identifies.append(data)
        self._notify()
        if data.get("token") != self.token:
            await self._server_close(conn, 4004, "Authentication failed.")
            return
        intents = int(data.get("intents") or 0)
        if intents & Intents.PRIVILEGED and not self.privileged_intents_enabled:
            await self._server_close(conn, 4014, "Disallowed intent(s).")
            return
        session = _Session(secrets.token_hex(16), data)
        session.conn = conn
        conn.session = session
        self._sessions[session.session_id] = session
        me = {
            **self.bot_user,
            "verified": True,
            "mfa_enabled": False,
            "email": None,
            "locale": "en-US",
            "premium_type": 0,
        }
        ready: Json = {
            "v": 10,
            "user": me,
            "user_settings": {},
            "guilds": [{"id": self.guild["id"], "unavailable": True}]
            if self._shard_owns(session, str(self.guild["id"])) else [],  # the shard's guilds
            "session_id": session.session_id,
            "session_type": "normal",
            "resume_gateway_url": self.resume_gateway_url,
            "application": {"id": self.application["id"], "flags": self.application["flags"]},
            "private_channels": [],
            "relationships": [],
            "presences": [],
            "guild_join_requests": [],
            "geo_ordered_rtc_regions": ["local"],
            "auth": {},
            "_trace": ['["fake-gateway-prd",{"micros":0}]'],
        }
        if session.shard is not None:
            ready["shard"] = session.shard
        session.dispatch("READY", ready)
        if self._shard_owns(session, str(self.guild["id"])):
            session.dispatch("GUILD_CREATE", copy.deepcopy(self.guild))

    async def _resume(self, conn: _Connection, data: Json) -> None:
        self.resumes.append(data)
        session = self._sessions.get(str(data.get("session_id")))
        ok = (
            self.resume_behaviour == "resume"
            and session is not None
            and session.resumable
            and data.get("token") == self.token
        )
        if not ok or session is None:
            conn.send({"op": 9, "d": False})
            return
        if session.conn is not None and session.conn is not conn:
            old = session.conn
            session.conn = None
            old.queue.put_nowait(None)
        session.conn = conn
        conn.session = session
        last_seen = int(data.get("seq") or 0)
        for seq, frame in session.buffer:
            if seq > last_seen:
                conn.queue.put_nowait(frame)
        session.dispatch("RESUMED", {"_trace": ['["fake-gateway-prd",{"micros":0}]']})
        self._notify()

    def _members_chunk(self, session: _Session, data: Json) -> None:
        guild_ids = data.get("guild_id")
        if not isinstance(guild_ids, list):
            guild_ids = [guild_ids]
        for gid in map(str, guild_ids):
            if gid != self.guild["id"]:
                continue
            members = list(self.members.values())
            not_found: list[str] = []
            if data.get("user_ids"):
                wanted = [str(u) for u in data["user_ids"]]
                members = [m for m in members if m["user"]["id"] in wanted]
                not_found = [u for u in wanted if u not in self.members]
            else:
                query = (data.get("query") or "").lower()
                members = [m for m in members if m["user"]["username"].lower().startswith(query)]
                limit = int(data.get("limit") or 0)
                if limit:
                    members = members[:limit]
            chunk: Json = {
                "guild_id": gid,
                "members": members,
                "chunk_index": 0,
                "chunk_count": 1,
                "not_found": not_found,
            }
            if data.get("presences"):
                chunk["presences"] = []
            if data.get("nonce") is not None:
                chunk["nonce"] = data["nonce"]
            session.dispatch("GUILD_MEMBERS_CHUNK", chunk)

    async def request_reconnect(self) -> None:
        """Send op 7 RECONNECT on every connection (discord.py reconnects and RESUMEs)."""
        for conn in list(self._conns):
            if conn.session is not None:
                conn.send({"op": 7, "d": None})

    async def invalidate_sessions(self, resumable: bool = False) -> None:
        """Send op 9 INVALID_SESSION on every identified connection."""
        for conn in list(self._conns):
            if conn.session is not None:
                if not resumable:
                    conn.session.resumable = False
                    self._sessions.pop(conn.session.session_id, None)
                conn.send({"op": 9, "d": resumable})

    async def disconnect(self, code: int = 4000) -> None:
        """Close every gateway connection from the server side with ``code``."""
        for conn in list(self._conns):
            conn.server_closed = True
            conn.server_close_code = code
            conn.queue.put_nowait(None)
            await conn.ws.close(code=code, message=b"fake disconnect")

    # -- message payloads ----------------------------------------------------------------------

    def _guild_id_of(self, channel_id: str) -> str | None:
        channel = self.channels.get(channel_id)
        return channel.get("guild_id") if channel else None

    def _mentions(self, content: str, extra: Iterable[Json | int | str] = ()) -> list[Json]:
        ids: list[str] = []
        for uid in [*_MENTION_RE.findall(content), *(_sid(u) for u in extra)]:
            if uid not in ids:
                ids.append(uid)
        out = []
        for uid in ids:
            with contextlib.suppress(KeyError):
                out.append(_public_user(self._user(uid)))
        return out

    def _gateway_message(self, message: Json) -> Json:
        """The MESSAGE_CREATE/UPDATE form: adds guild_id, author member and mention members."""
        payload = dict(message)
        gid = self._guild_id_of(message["channel_id"])
        if gid is not None and not message.get("webhook_id"):
            payload["guild_id"] = gid
            member = self._member_view(message["author"]["id"])
            if member is not None:
                payload["member"] = member
            payload["mentions"] = [
                {**u, "member": self._member_view(u["id"])} if u["id"] in self.members else u
                for u in message["mentions"]
            ]
        elif gid is not None:
            payload["guild_id"] = gid
        return payload

    def _store_message(self, message: Json) -> None:
        self.messages[message["id"]] = message
        channel = self.channels.get(message["channel_id"])
        if channel is not None and "last_message_id" in channel:
            channel["last_message_id"] = message["id"]

    def _dispatch_message(self, event: str, message: Json) -> None:
        if message.get("flags", 0) & _FLAG_EPHEMERAL:
            return  # ephemeral messages never reach the gateway
        gid = self._guild_id_of(message["channel_id"])
        intent = Intents.GUILD_MESSAGES if gid else Intents.DIRECT_MESSAGES
        self.dispatch(event, self._gateway_message(message), intent=intent, message=message)

    def _sticker_items(self, stickers: Iterable[Json | int | str]) -> list[Json]:
        items = []
        for sticker in stickers:
            sid = _sid(sticker)
            known = next((s for s in self.stickers if s["id"] == sid), None)
            source = known or (sticker if isinstance(sticker, Mapping) else {"id": sid})
            items.append(
                {
                    "id": sid,
                    "name": source.get("name", "sticker"),
                    "format_type": source.get("format_type", 1),
                }
            )
        return items

    def _reference(self, target: Json, *, ref_type: int = 0) -> Json:
        ref: Json = {
            "type": ref_type,
            "channel_id": target["channel_id"],
            "message_id": target["id"],
        }
        gid = self._guild_id_of(target["channel_id"])
        if gid is not None:
            ref["guild_id"] = gid
        return ref

    def message_create(
        self,
        channel: Json | int | str,
        author: Json | int | str,
        content: str = "",
        attachments: Sequence[Json] = (),
        mentions_bot: bool = False,
        reply_to: Json | int | str | None = None,
        embeds: Sequence[Json] = (),
        stickers: Sequence[Json | int | str] = (),
        *,
        mentions: Sequence[Json | int | str] = (),
        components: Sequence[Json] = (),
        flags: int = 0,
    ) -> Json:
        """A person posts a message: store it and dispatch MESSAGE_CREATE. Returns the message.

        ``mentions_bot`` prefixes ``<@bot>`` to the content (a mention makes content visible even
        without the MESSAGE_CONTENT intent). ``reply_to`` makes it a reply (type 19).
        """
        ch = self._channel(channel)
        user = self._user(author)
        bot_mention = f"<@{self.bot_user['id']}>"
        if (
            mentions_bot
            and bot_mention not in content
            and f"<@!{self.bot_user['id']}>" not in content
        ):
            content = f"{bot_mention} {content}".rstrip()
        message: Json = {
            "id": self._snowflake(),
            "channel_id": ch["id"],
            "type": 0,
            "content": content,
            "author": _public_user(user),
            "attachments": [dict(a) for a in attachments],
            "embeds": [dict(e) for e in embeds],
            "mentions": self._mentions(content, mentions),
            "mention_roles": _ROLE_MENTION_RE.findall(content),
            "mention_everyone": False,
            "pinned": False,
            "tts": False,
            "timestamp": _now_iso(),
            "edited_timestamp": None,
            "flags": flags,
            "components": [dict(c) for c in components],
        }
        if stickers:
            message["sticker_items"] = self._sticker_items(stickers)
        if reply_to is not None:
            target = self._message(reply_to)
            message["type"] = 19
            message["message_reference"] = self._reference(target)
            message["referenced_message"] = copy.deepcopy(target)
        self._store_message(message)
        self._dispatch_message("MESSAGE_CREATE", message)
        return message

    def message_update(self, message: Json | int | str, **changes: Any) -> Json:
        """A person edits their message (``content=...``, ``embeds=...``): MESSAGE_UPDATE."""
        stored = self._message(message)
        stored.update(changes)
        if "content" in changes:
            stored["mentions"] = self._mentions(stored["content"])
        stored["edited_timestamp"] = _now_iso()
        self._dispatch_message("MESSAGE_UPDATE", stored)
        return stored

    def message_delete(self, message: Json | int | str) -> None:
        """A message is deleted: MESSAGE_DELETE."""
        stored = self._message(message)
        self._delete_message(stored)

    def _delete_message(self, message: Json) -> None:
        self.messages.pop(message["id"], None)
        self.deleted_messages[message["id"]] = message
        if message.get("flags", 0) & _FLAG_EPHEMERAL:
            return
        data: Json = {"id": message["id"], "channel_id": message["channel_id"]}
        gid = self._guild_id_of(message["channel_id"])
        if gid is not None:
            data["guild_id"] = gid
        self.dispatch(
            "MESSAGE_DELETE",
            data,
            intent=Intents.GUILD_MESSAGES if gid else Intents.DIRECT_MESSAGES,
        )

    # -- reactions -----------------------------------------------------------------------------

    def _parse_emoji(self, emoji: Json | str) -> Json:
        if isinstance(emoji, Mapping):
            out: Json = {"id": emoji.get("id"), "name": emoji.get("name")}
            if emoji.get("animated"):
                out["animated"] = True
            return out
        text = unquote(emoji)
        parts = text.split(":")
        if len(parts) >= 2 and parts[-1].isdigit():
            animated = parts[0] == "a" and len(parts) == 3
            known = next((e for e in self.emojis if e["id"] == parts[-1]), None)
            return {
                "id": parts[-1],
                "name": parts[-2],
                "animated": bool(animated or (known and known["animated"])),
            }
        return {"id": None, "name": text}

    @staticmethod
    def _emoji_key(emoji: Json) -> str:
        return str(emoji["id"]) if emoji.get("id") else str(emoji["name"])

    def _render_reactions(self, mid: str) -> None:
        message = self.messages.get(mid)
        if message is None:
            return
        bot_id = self.bot_user["id"]
        rendered = []
        for emoji, users in self._reactions.get(mid, {}).values():
            if users:
                rendered.append(
                    {
                        "emoji": emoji,
                        "count": len(users),
                        "count_details": {"burst": 0, "normal": len(users)},
                        "me": bot_id in users,
                        "me_burst": False,
                        "burst_colors": [],
                    }
                )
        if rendered:
            message["reactions"] = rendered
        else:
            message.pop("reactions", None)

    def _apply_reaction(
        self, event: Literal["add", "remove"], uid: str, mid: str, cid: str, emoji: Json
    ) -> bool:
        """Change the reaction store and dispatch; False if nothing changed."""
        per_message = self._reactions.setdefault(mid, {})
        key = self._emoji_key(emoji)
        _, users = per_message.setdefault(key, (emoji, []))
        if event == "add":
            if uid in users:
                return False
            users.append(uid)
        else:
            if uid not in users:
                return False
            users.remove(uid)
        self._render_reactions(mid)
        gid = self._guild_id_of(cid)
        data: Json = {
            "user_id": uid,
            "channel_id": cid,
            "message_id": mid,
            "emoji": emoji,
            "burst": False,
            "type": 0,
        }
        if gid is not None:
            data["guild_id"] = gid
        if event == "add":
            data["burst_colors"] = []
            message = self.messages.get(mid)
            if message is not None:
                data["message_author_id"] = message["author"]["id"]
            if gid is not None and uid in self.members:
                data["member"] = self.members[uid]
        intent = Intents.GUILD_MESSAGE_REACTIONS if gid else Intents.DIRECT_MESSAGE_REACTIONS
        self.dispatch(
            "MESSAGE_REACTION_ADD" if event == "add" else "MESSAGE_REACTION_REMOVE",
            data,
            intent=intent,
        )
        return True

    def reaction_add(
        self,
        user: Json | int | str,
        message_id: Json | int | str,
        channel: Json | int | str | None = None,
        emoji: Json | str = "👍",
    ) -> None:
        """A person reacts: MESSAGE_REACTION_ADD (``emoji``: "👍", "name:id" or a dict)."""
        mid = _sid(message_id)
        cid = _sid(channel) if channel is not None else self._message(mid)["channel_id"]
        self._apply_reaction("add", _sid(user), mid, cid, self._parse_emoji(emoji))

    def reaction_remove(
        self,
        user: Json | int | str,
        message_id: Json | int | str,
        channel: Json | int | str | None = None,
        emoji: Json | str = "👍",
    ) -> None:
        """A person removes a reaction: MESSAGE_REACTION_REMOVE."""
        mid = _sid(message_id)
        cid = _sid(channel) if channel is not None else self._message(mid)["channel_id"]
        self._apply_reaction("remove", _sid(user), mid, cid, self._parse_emoji(emoji))

    def reactions(self, message: Json | int | str) -> dict[str, list[str]]:
        """``{emoji key: [user ids]}`` for a message (key: unicode emoji or custom emoji id)."""
        return {
            k: list(users)
            for k, (_, users) in self._reactions.get(_sid(message), {}).items()
            if users
        }

    # -- interactions --------------------------------------------------------------------------

    def _find_command(self, name: str, command_type: int, guild_id: str | None) -> Json | None:
        pools = [self.guild_commands.get(guild_id, [])] if guild_id else []
        pools.append(self.commands)
        for pool in pools:
            for command in pool:
                if command["name"] == name and command.get("type", 1) == command_type:
                    return command
        return None

    def _resolved_user(self, resolved: Json, user: Json | int | str, guild_id: str | None) -> str:
        target = _public_user(self._user(user))
        resolved.setdefault("users", {})[target["id"]] = target
        if guild_id and target["id"] in self.members:
            member = dict(self._member_view(target["id"]) or {})
            member["permissions"] = str(self._member_permissions(target["id"]))
            resolved.setdefault("members", {})[target["id"]] = member
        return target["id"]

    def _build_options(
        self,
        command: Json | None,
        options: Mapping[str, Any] | Sequence[Json] | None,
        attachments: Mapping[str, Json] | None,
        guild_id: str | None,
    ) -> tuple[list[Json], Json]:
        resolved: Json = {}
        if options is not None and not isinstance(options, Mapping):
            return [dict(o) for o in options], resolved
        values: dict[str, Any] = dict(options or {})
        values.update(attachments or {})
        declared = {o["name"]: o for o in (command or {}).get("options", [])}
        out: list[Json] = []
        for name, value in values.items():
            opt_type = declared.get(name, {}).get("type") or self._infer_option_type(value)
            if opt_type == 11:
                att = value if isinstance(value, Mapping) else self.attachments[_sid(value)]
                resolved.setdefault("attachments", {})[att["id"]] = dict(att)
                value = att["id"]
            elif opt_type == 6 or (
                opt_type == 9 and isinstance(value, Mapping) and "username" in value
            ):
                value = self._resolved_user(resolved, value, guild_id)
            elif opt_type == 7:
                channel = self._channel(value)
                resolved.setdefault("channels", {})[channel["id"]] = {
                    **channel,
                    "permissions": str(Permissions.BOT),
                }
                value = channel["id"]
            elif opt_type in (8, 9):
                role = next(r for r in self.roles if r["id"] == _sid(value))
                resolved.setdefault("roles", {})[role["id"]] = role
                value = role["id"]
            out.append({"name": name, "type": opt_type, "value": value})
        return out, resolved

    @staticmethod
    def _infer_option_type(value: Any) -> int:
        if isinstance(value, Mapping):
            if "filename" in value:
                return 11
            if "username" in value:
                return 6
            if "permissions" in value and "position" in value:
                return 8
            return 7
        if isinstance(value, bool):
            return 5
        if isinstance(value, int):
            return 4
        if isinstance(value, float):
            return 10
        return 3

    def _interaction_payload(
        self, user: Json | int | str, channel: Json | int | str, itype: int, data: Json
    ) -> Json:
        ch = self._channel(channel)
        person = _public_user(self._user(user))
        gid = ch.get("guild_id")
        payload: Json = {
            "id": self._snowflake(),
            "application_id": self.application["id"],
            "type": itype,
            "data": data,
            "token": "aW50ZXJhY3Rpb246" + secrets.token_urlsafe(60),
            "version": 1,
            "channel_id": ch["id"],
            "locale": self.locales.get(person["id"], "en-US"),
            "entitlements": [],
            "entitlement_sku_ids": [],
            "attachment_size_limit": self.upload_limit,
        }
        if gid is not None:
            member = {
                **self.members[person["id"]],
                "user": person,
                "permissions": str(self._member_permissions(person["id"])),
            }
            payload.update(
                {
                    "guild_id": gid,
                    "guild": {"id": gid, "locale": self.guild["preferred_locale"],
                              "features": self.guild["features"]},
                    "guild_locale": self.guild["preferred_locale"],
                    "member": member,
                    "channel": {**ch, "permissions": member["permissions"]},
                    "app_permissions": str(self._member_permissions(self.bot_user["id"])),
                    "authorizing_integration_owners": {"0": gid},
                    "context": 0,
                }
            )
        else:
            payload.update(
                {
                    "user": person,
                    "channel": {**ch, "recipients": [person]},
                    "app_permissions": str(Permissions.BOT),
                    "authorizing_integration_owners": {"0": "0"},
                    "context": 1,
                }
            )
        return payload

    def _dispatch_interaction(self, payload: Json, command_type: int | None) -> Json:
        state = _Interaction(payload=payload, created=time.monotonic(), command_type=command_type)
        self.interactions[payload["id"]] = state
        self._interactions_by_token[payload["token"]] = state
        self.dispatch("INTERACTION_CREATE", payload)
        return payload

    def interaction_slash(
        self,
        user: Json | int | str,
        channel: Json | int | str,
        name: str,
        options: Mapping[str, Any] | Sequence[Json] | None = None,
        attachments: Mapping[str, Json] | None = None,
    ) -> Json:
        """A person runs ``/name``: INTERACTION_CREATE type 2. Returns the interaction payload.

        ``options`` maps option name -> value (attachment/user/channel/role dicts are resolved;
        types come from the synced command, else are inferred), or is a raw option list.
        ``attachments`` maps option name -> attachment dict from :meth:`add_attachment`.
        """
        ch = self._channel(channel)
        command = self._find_command(name, 1, ch.get("guild_id"))
        opts, resolved = self._build_options(command, options, attachments, ch.get("guild_id"))
        data: Json = {
            "id": command["id"] if command else self._snowflake(),
            "name": name,
            "type": 1,
        }
        if opts:
            data["options"] = opts
        if resolved:
            data["resolved"] = resolved
        if command is not None and command.get("guild_id"):
            data["guild_id"] = command["guild_id"]
        return self._dispatch_interaction(self._interaction_payload(user, ch, 2, data), 1)

    def interaction_message_context(
        self,
        user: Json | int | str,
        channel: Json | int | str,
        target_message: Json | int | str,
        name: str,
    ) -> Json:
        """A person runs the message context-menu command ``name`` on ``target_message``."""
        ch = self._channel(channel)
        target = self._message(target_message)
        command = self._find_command(name, 3, ch.get("guild_id"))
        data: Json = {
            "id": command["id"] if command else self._snowflake(),
            "name": name,
            "type": 3,
            "target_id": target["id"],
            "resolved": {"messages": {target["id"]: copy.deepcopy(target)}},
        }
        if command is not None and command.get("guild_id"):
            data["guild_id"] = command["guild_id"]
        return self._dispatch_interaction(self._interaction_payload(user, ch, 2, data), 3)

    def interaction_user_context(
        self,
        user: Json | int | str,
        channel: Json | int | str,
        target_user: Json | int | str,
        name: str,
    ) -> Json:
        """A person runs the user context-menu command ``name`` on ``target_user``."""
        ch = self._channel(channel)
        command = self._find_command(name, 2, ch.get("guild_id"))
        resolved: Json = {}
        target_id = self._resolved_user(resolved, target_user, ch.get("guild_id"))
        data: Json = {
            "id": command["id"] if command else self._snowflake(),
            "name": name,
            "type": 2,
            "target_id": target_id,
            "resolved": resolved,
        }
        if command is not None and command.get("guild_id"):
            data["guild_id"] = command["guild_id"]
        return self._dispatch_interaction(self._interaction_payload(user, ch, 2, data), 2)

    def interaction_component(
        self,
        user: Json | int | str,
        message: Json | int | str,
        custom_id: str,
        *,
        component_type: int = 2,
        values: Sequence[str] | None = None,
    ) -> Json:
        """A person clicks a button (or picks from a select) on ``message``: type 3."""
        target = self._message(message)
        data: Json = {"custom_id": custom_id, "component_type": component_type}
        if values is not None:
            data["values"] = list(values)
        payload = self._interaction_payload(user, target["channel_id"], 3, data)
        payload["message"] = copy.deepcopy(target)
        return self._dispatch_interaction(payload, None)

    def _state_of(self, interaction: Json | int | str) -> _Interaction:
        return self.interactions[_sid(interaction)]

    def interaction_callbacks(self, interaction: Json | int | str) -> list[Json]:
        """The callback bodies the bot posted for ``interaction`` (normally exactly one)."""
        return list(self._state_of(interaction).callbacks)

    def original_response(self, interaction: Json | int | str) -> Json | None:
        """The interaction's original response message (current state), if any."""
        state = self._state_of(interaction)
        if state.original_id is None:
            return None
        return self.messages.get(state.original_id) or self.deleted_messages.get(state.original_id)

    def followups(self, interaction: Json | int | str) -> list[Json]:
        """Follow-up messages (current state); a follow-up that filled a deferred response is
        the original response, see :meth:`original_response`."""
        state = self._state_of(interaction)
        return [self.messages.get(m) or self.deleted_messages[m] for m in state.followup_ids]

    # -- HTTP ----------------------------------------------------------------------------------

    def _build_routes(self) -> list[tuple[str, re.Pattern[str], Callable[..., Any]]]:
        n = r"(\d+)"
        table: list[tuple[str, str, Callable[..., Any]]] = [
            ("GET", r"/users/@me", self._r_get_me),
            ("GET", rf"/users/{n}", self._r_get_user),
            ("POST", r"/users/@me/channels", self._r_create_dm),
            ("GET", r"/oauth2/applications/@me", self._r_get_application),
            ("GET", r"/applications/@me", self._r_get_application),
            ("GET", r"/gateway", self._r_gateway),
            ("GET", r"/gateway/bot", self._r_gateway_bot),
            ("GET", rf"/channels/{n}", self._r_get_channel),
            ("GET", rf"/channels/{n}/messages", self._r_history),
            ("POST", rf"/channels/{n}/messages", self._r_post_message),
            ("GET", rf"/channels/{n}/messages/{n}", self._r_get_message),
            ("PATCH", rf"/channels/{n}/messages/{n}", self._r_edit_message),
            ("DELETE", rf"/channels/{n}/messages/{n}", self._r_delete_message),
            ("PUT", rf"/channels/{n}/messages/{n}/reactions/([^/]+)/@me", self._r_add_reaction),
            (
                "DELETE",
                rf"/channels/{n}/messages/{n}/reactions/([^/]+)/@me",
                self._r_remove_own_reaction,
            ),
            (
                "DELETE",
                rf"/channels/{n}/messages/{n}/reactions/([^/]+)/{n}",
                self._r_remove_user_reaction,
            ),
            ("GET", rf"/channels/{n}/messages/{n}/reactions/([^/]+)", self._r_reaction_users),
            ("POST", rf"/channels/{n}/typing", self._r_typing),
            ("GET", rf"/guilds/{n}", self._r_get_guild),
            ("GET", rf"/guilds/{n}/channels", self._r_guild_channels),
            ("GET", rf"/guilds/{n}/roles", self._r_guild_roles),
            ("GET", rf"/guilds/{n}/members/{n}", self._r_guild_member),
            ("GET", rf"/applications/{n}/commands", self._r_list_commands),
            ("PUT", rf"/applications/{n}/commands", self._r_put_commands),
            ("POST", rf"/applications/{n}/commands", self._r_post_command),
            ("DELETE", rf"/applications/{n}/commands/{n}", self._r_delete_command),
            ("GET", rf"/applications/{n}/guilds/{n}/commands", self._r_list_commands),
            ("PUT", rf"/applications/{n}/guilds/{n}/commands", self._r_put_commands),
            ("POST", rf"/applications/{n}/guilds/{n}/commands", self._r_post_command),
            ("DELETE", rf"/applications/{n}/guilds/{n}/commands/{n}", self._r_delete_command),
            ("POST", rf"/interactions/{n}/([^/]+)/callback", self._r_interaction_callback),
            ("POST", rf"/webhooks/{n}/([^/]+)", self._r_followup),
            ("GET", rf"/webhooks/{n}/([^/]+)/messages/(@original|\d+)", self._r_webhook_get),
            ("PATCH", rf"/webhooks/{n}/([^/]+)/messages/(@original|\d+)", self._r_webhook_edit),
            ("DELETE", rf"/webhooks/{n}/([^/]+)/messages/(@original|\d+)", self._r_webhook_delete),
        ]
        return [(method, re.compile(pattern), handler) for method, pattern, handler in table]

    async def _read_body(
        self, request: web.Request
    ) -> tuple[Any, list[UploadedFile], dict[str, str]]:
        files: list[UploadedFile] = []
        form: dict[str, str] = {}
        body: Any = None
        if request.content_type.startswith("multipart/"):
            reader = await request.multipart()
            while True:
                part = await reader.next()
                if part is None:
                    break
                name = getattr(part, "name", None) or ""
                data = await part.read()  # type: ignore[union-attr]
                filename = getattr(part, "filename", None)
                if filename is not None:
                    ctype = part.headers.get("Content-Type", "application/octet-stream")
                    files.append(UploadedFile(name, filename, ctype, bytes(data)))
                elif name == "payload_json":
                    body = json.loads(bytes(data).decode())
                else:
                    form[name] = bytes(data).decode(errors="replace")
        elif request.can_read_body:
            raw = await request.read()
            if raw:
                try:
                    body = json.loads(raw)
                except ValueError:
                    form["_raw"] = raw.decode(errors="replace")
        return body, files, form

    async def _http_handler(self, request: web.Request) -> web.StreamResponse:
        full_path = request.path
        is_api = full_path.startswith(API_PREFIX + "/")
        path = full_path[len(API_PREFIX) :] if is_api else full_path
        body, files, form = await self._read_body(request)
        rec = RecordedRequest(
            method=request.method,
            path=path,
            query=dict(request.query),
            json=body,
            files=files,
            form=form,
            headers=dict(request.headers),
            time=time.monotonic(),
        )
        self.requests.append(rec)
        try:
            reply = self._injected(rec) or await self._route(rec, request, is_api)
        except Exception as exc:  # a bug in the fake: answer 500 and keep it for the test
            self.errors.append(exc)
            reply = _error(500, f"fake discord error: {exc!r}")
            # discord.py retries 500s with sleeps; 418 makes the failure immediate.
            reply.status = 418
        rec.status = reply.status
        rec.response = reply.body
        self._notify()
        return reply.to_response()

    def _injected(self, rec: RecordedRequest) -> _Reply | None:
        for rule in self._failures:
            if rule.matches(rec.method, rec.path):
                rec.injected = True
                return self._failure_reply(rule)
        return None

    async def _route(self, rec: RecordedRequest, request: web.Request, is_api: bool) -> _Reply:
        if not is_api:
            return self._cdn(rec)
        needs_auth = not rec.path.startswith(("/interactions/", "/webhooks/"))
        if needs_auth and request.headers.get("Authorization") != f"Bot {self.token}":
            return _error(401, "401: Unauthorized")
        for method, pattern, handler in self._routes:
            match = pattern.fullmatch(rec.path)
            if match is not None and method == rec.method:
                result = handler(rec, *match.groups())
                if asyncio.iscoroutine(result):
                    result = await result
                return result
        rec.unknown = True
        return _error(404, "404: Not Found")

    def _cdn(self, rec: RecordedRequest) -> _Reply:
        match = re.fullmatch(
            r"(?:/media)?/(?:ephemeral-)?attachments/(\d+)/(\d+)/([^/]+)", rec.path
        )
        if match is not None and rec.method in ("GET", "HEAD"):
            blob = self._blobs.get(match[2])
            if blob is not None:
                return _Reply(200, blob.data, content_type=blob.content_type)
        if re.fullmatch(r"/embed/avatars/\d+\.png", rec.path):
            return _Reply(200, _TINY_PNG, content_type="image/png")
        rec.unknown = match is None
        return _Reply(404, b"404: Not Found", content_type="text/plain")

    # REST handlers: users, application, gateway ----------------------------------------------

    def _r_get_me(self, rec: RecordedRequest) -> _Reply:
        return _Reply(
            200,
            {
                **self.bot_user,
                "verified": True,
                "mfa_enabled": False,
                "email": None,
                "locale": "en-US",
                "premium_type": 0,
            },
        )

    def _r_get_user(self, rec: RecordedRequest, uid: str) -> _Reply:
        try:
            return _Reply(200, _public_user(self._user(uid)))
        except KeyError:
            return _error(404, "Unknown User", 10013)

    def _r_create_dm(self, rec: RecordedRequest) -> _Reply:
        recipient = str((rec.json or {}).get("recipient_id"))
        try:
            return _Reply(200, self.dm_channel(recipient))
        except KeyError:
            return _form_error("recipient_id", "Value is not a known user.", "USER_NOT_FOUND")

    def _r_get_application(self, rec: RecordedRequest) -> _Reply:
        return _Reply(200, self.application)

    def _r_gateway(self, rec: RecordedRequest) -> _Reply:
        return _Reply(200, {"url": self.gateway_url.rstrip("/")})

    def _r_gateway_bot(self, rec: RecordedRequest) -> _Reply:
        return _Reply(
            200,
            {
                "url": self.gateway_url.rstrip("/"),
                "shards": self.recommended_shards,
                "session_start_limit": {
                    "total": 1000,
                    "remaining": 999,
                    "reset_after": 14400000,
                    "max_concurrency": 1,
                },
            },
        )

    # channels and messages -----------------------------------------------------------------

    def _r_get_channel(self, rec: RecordedRequest, cid: str) -> _Reply:
        channel = self.channels.get(cid)
        return _Reply(200, channel) if channel else _error(404, "Unknown Channel", 10003)

    def _r_history(self, rec: RecordedRequest, cid: str) -> _Reply:
        if cid not in self.channels:
            return _error(404, "Unknown Channel", 10003)
        limit = max(1, min(100, int(rec.query.get("limit", 50))))
        items = sorted(
            (m for m in self.messages.values() if m["channel_id"] == cid),
            key=lambda m: int(m["id"]),
            reverse=True,
        )
        if "before" in rec.query:
            items = [m for m in items if int(m["id"]) < int(rec.query["before"])]
        if "after" in rec.query:
            items = [m for m in items if int(m["id"]) > int(rec.query["after"])][-limit:]
        return _Reply(200, items[:limit])

    def _r_get_message(self, rec: RecordedRequest, cid: str, mid: str) -> _Reply:
        message = self.messages.get(mid)
        if message is None or message["channel_id"] != cid:
            return _error(404, "Unknown Message", 10008)
        return _Reply(200, message)

    def _validate_outgoing(self, payload: Json, files: Sequence[UploadedFile]) -> _Reply | None:
        content = payload.get("content")
        if content is not None and not isinstance(content, str):
            return _form_error(
                "content", "Could not interpret value as string.", "STRING_TYPE_CONVERT"
            )
        if content and len(content) > 2000:
            return _form_error(
                "content", "Must be 2000 or fewer in length.", "BASE_TYPE_MAX_LENGTH"
            )
        embeds = payload.get("embeds") or []
        if len(embeds) > 10:
            return _form_error("embeds", "Must be 10 or fewer in length.", "BASE_TYPE_MAX_LENGTH")
        total = 0
        limits = {"title": 256, "description": 4096}
        for i, embed in enumerate(embeds):
            for key, limit in limits.items():
                value = embed.get(key) or ""
                total += len(value)
                if len(value) > limit:
                    return _form_error(
                        f"embeds.{i}.{key}",
                        f"Must be {limit} or fewer in length.",
                        "BASE_TYPE_MAX_LENGTH",
                    )
            fields = embed.get("fields") or []
            if len(fields) > 25:
                return _form_error(
                    f"embeds.{i}.fields", "Must be 25 or fewer in length.", "BASE_TYPE_MAX_LENGTH"
                )
            for j, fld in enumerate(fields):
                name, value = fld.get("name") or "", fld.get("value") or ""
                if not name or not value:
                    return _form_error(
                        f"embeds.{i}.fields.{j}.{'name' if not name else 'value'}",
                        "This field is required",
                        "BASE_TYPE_REQUIRED",
                    )
                if len(name) > 256 or len(value) > 1024:
                    return _form_error(
                        f"embeds.{i}.fields.{j}", "Field too long.", "BASE_TYPE_MAX_LENGTH"
                    )
                total += len(name) + len(value)
            footer = (embed.get("footer") or {}).get("text") or ""
            author = (embed.get("author") or {}).get("name") or ""
            if len(footer) > 2048 or len(author) > 256:
                return _form_error(f"embeds.{i}", "Footer/author too long.", "BASE_TYPE_MAX_LENGTH")
            total += len(footer) + len(author)
        if total > 6000:
            return _form_error(
                "embeds", "Embed size exceeds maximum size of 6000", "MAX_EMBED_SIZE_EXCEEDED"
            )
        if len(files) > 10:
            return _form_error("files", "Must be 10 or fewer in length.", "BASE_TYPE_MAX_LENGTH")
        if sum(f.size for f in files) > self.upload_limit:
            return _error(413, "Request entity too large", 40005)
        return None

    def _attachments_for(
        self,
        channel_id: str,
        meta: Sequence[Json] | None,
        files: Sequence[UploadedFile],
        existing: Sequence[Json] = (),
    ) -> list[Json]:
        by_index: dict[str, UploadedFile] = {}
        for position, upload in enumerate(files):
            match = re.fullmatch(r"files\[(\d+)\]", upload.field_name)
            by_index[match[1] if match else str(position)] = upload
        old = {a["id"]: a for a in existing}
        out: list[Json] = []
        used: set[str] = set()
        for entry in meta or []:
            key = str(entry.get("id"))
            if key in old:
                out.append(old[key])
            elif key in by_index:
                upload = by_index[key]
                used.add(key)
                out.append(
                    self._make_attachment(
                        upload.data,
                        entry.get("filename") or upload.filename,
                        upload.content_type,
                        channel_id,
                        description=entry.get("description"),
                    )
                )
        for key, upload in by_index.items():
            if key not in used:
                out.append(
                    self._make_attachment(
                        upload.data, upload.filename, upload.content_type, channel_id
                    )
                )
        return out

    def _normalize_embeds(self, embeds: Sequence[Json], attachments: Sequence[Json]) -> list[Json]:
        by_name = {a["filename"]: a for a in attachments}
        out = []
        for raw in embeds:
            embed = copy.deepcopy(dict(raw))
            embed.setdefault("type", "rich")
            embed.setdefault("content_scan_version", 0)
            for key in ("image", "thumbnail"):
                media = embed.get(key)
                if not media:
                    continue
                url = media.get("url") or ""
                att = (
                    by_name.get(url[len("attachment://") :])
                    if url.startswith("attachment://")
                    else None
                )
                if att is not None:
                    media.update({"url": att["url"], "proxy_url": att["proxy_url"], "flags": 0})
                    if "width" in att:
                        media.update(
                            {
                                "width": att["width"],
                                "height": att["height"],
                                "content_type": att["content_type"],
                            }
                        )
                else:
                    media.setdefault("proxy_url", url)
            for key in ("author", "footer"):
                part = embed.get(key)
                if part and part.get("icon_url"):
                    url = part["icon_url"]
                    att = (
                        by_name.get(url[len("attachment://") :])
                        if url.startswith("attachment://")
                        else None
                    )
                    part["icon_url"] = att["url"] if att else url
                    part["proxy_icon_url"] = att["proxy_url"] if att else url
            out.append(embed)
        return out

    def _with_component_ids(self, components: Sequence[Json]) -> list[Json]:
        def walk(node: Json) -> Json:
            node = dict(node)
            if "id" not in node:
                self._component_ids += 1
                node["id"] = self._component_ids
            if isinstance(node.get("components"), list):
                node["components"] = [walk(c) for c in node["components"]]
            if isinstance(node.get("accessory"), Mapping):
                node["accessory"] = walk(node["accessory"])
            return node

        return [walk(c) for c in components]

    def _build_bot_message(
        self,
        channel_id: str,
        payload: Json,
        files: Sequence[UploadedFile],
        *,
        ephemeral_allowed: bool = False,
        allow_empty: bool = False,
    ) -> Json | _Reply:
        """A new message authored by the bot from a send payload (not yet stored)."""
        error = self._validate_outgoing(payload, files)
        if error is not None:
            return error
        attachments = self._attachments_for(channel_id, payload.get("attachments"), files)
        content = payload.get("content") or ""
        allowed_mentions = payload.get("allowed_mentions")
        mention_ids: list[str] = []
        if (
            allowed_mentions is None
            or "users" in (allowed_mentions.get("parse") or [])
            or allowed_mentions.get("users")
        ):
            mention_ids = _MENTION_RE.findall(content)
        flags_mask = _SENDABLE_FLAGS | (_FLAG_EPHEMERAL if ephemeral_allowed else 0)
        message: Json = {
            "id": self._snowflake(),
            "channel_id": channel_id,
            "type": 0,
            "content": content,
            "author": _public_user(self.bot_user),
            "attachments": attachments,
            "embeds": self._normalize_embeds(payload.get("embeds") or [], attachments),
            "mentions": self._mentions("", mention_ids),
            "mention_roles": [],
            "mention_everyone": False,
            "pinned": False,
            "tts": bool(payload.get("tts")),
            "timestamp": _now_iso(),
            "edited_timestamp": None,
            "flags": int(payload.get("flags") or 0) & flags_mask,
            "components": self._with_component_ids(payload.get("components") or []),
        }
        if payload.get("nonce") is not None:
            message["nonce"] = payload["nonce"]
        if payload.get("sticker_ids"):
            message["sticker_items"] = self._sticker_items(payload["sticker_ids"])
        if payload.get("poll"):
            message["poll"] = payload["poll"]
        reference = payload.get("message_reference")
        if reference:
            target = self.messages.get(str(reference.get("message_id")))
            if target is None:
                if reference.get("fail_if_not_exists", True):
                    return _form_error(
                        "message_reference", "Unknown message", "MESSAGE_REFERENCE_UNKNOWN_MESSAGE"
                    )
            else:
                ref_type = int(reference.get("type", 0))
                message["message_reference"] = self._reference(target, ref_type=ref_type)
                if ref_type == 0:
                    message["type"] = 19
                    message["referenced_message"] = copy.deepcopy(target)
                    replied_user = (allowed_mentions or {}).get("replied_user", True)
                    author_id = target["author"]["id"]
                    if (
                        replied_user
                        and author_id != self.bot_user["id"]
                        and all(u["id"] != author_id for u in message["mentions"])
                    ):
                        message["mentions"].append(_public_user(target["author"]))
        if not (
            allow_empty
            or content
            or message["embeds"]
            or attachments
            or message.get("sticker_items")
            or message["components"]
            or message.get("poll")
        ):
            return _error(400, "Cannot send an empty message", 50006)
        return message

    def _r_post_message(self, rec: RecordedRequest, cid: str) -> _Reply:
        channel = self.channels.get(cid)
        if channel is None:
            return _error(404, "Unknown Channel", 10003)
        if channel["type"] not in _MESSAGEABLE_CHANNEL_TYPES:
            return _error(400, "Cannot send messages in a non-text channel", 50008)
        message = self._build_bot_message(cid, rec.json or {}, rec.files)
        if isinstance(message, _Reply):
            return message
        self._store_message(message)
        self._dispatch_message("MESSAGE_CREATE", message)
        return _Reply(200, message)

    def _apply_edit(
        self,
        message: Json,
        payload: Json,
        files: Sequence[UploadedFile],
        *,
        mark_edited: bool = True,
    ) -> _Reply | None:
        error = self._validate_outgoing(payload, files)
        if error is not None:
            return error
        updated = dict(message)
        if "content" in payload:
            updated["content"] = payload["content"] or ""
        if "attachments" in payload or files:
            updated["attachments"] = self._attachments_for(
                message["channel_id"],
                payload.get("attachments"),
                files,
                existing=message.get("attachments", []),
            )
        if "embeds" in payload:
            updated["embeds"] = self._normalize_embeds(
                payload["embeds"] or [], updated["attachments"]
            )
        if "components" in payload:
            updated["components"] = self._with_component_ids(payload["components"] or [])
        if "flags" in payload and payload["flags"] is not None:
            keep = message.get("flags", 0) & (_FLAG_EPHEMERAL | _FLAG_COMPONENTS_V2)
            updated["flags"] = keep | (int(payload["flags"]) & _SENDABLE_FLAGS)
        if not (
            updated["content"]
            or updated["embeds"]
            or updated["attachments"]
            or updated.get("sticker_items")
            or updated["components"]
            or updated.get("poll")
        ):
            return _error(400, "Cannot send an empty message", 50006)
        if mark_edited:
            updated["edited_timestamp"] = _now_iso()
        message.clear()
        message.update(updated)
        return None

    def _r_edit_message(self, rec: RecordedRequest, cid: str, mid: str) -> _Reply:
        message = self.messages.get(mid)
        if message is None or message["channel_id"] != cid:
            return _error(404, "Unknown Message", 10008)
        if message["author"]["id"] != self.bot_user["id"]:
            payload = rec.json or {}
            if set(payload) - {"flags"}:
                return _error(403, "Cannot edit a message authored by another user", 50005)
        error = self._apply_edit(message, rec.json or {}, rec.files)
        if error is not None:
            return error
        self._dispatch_message("MESSAGE_UPDATE", message)
        return _Reply(200, message)

    def _r_delete_message(self, rec: RecordedRequest, cid: str, mid: str) -> _Reply:
        message = self.messages.get(mid)
        if message is None or message["channel_id"] != cid:
            return _error(404, "Unknown Message", 10008)
        self._delete_message(message)
        return _Reply(204)

    def _reaction_target(self, cid: str, mid: str, raw_emoji: str) -> tuple[Json, Json] | _Reply:
        if cid not in self.channels:
            return _error(404, "Unknown Channel", 10003)
        message = self.messages.get(mid)
        if message is None or message["channel_id"] != cid:
            return _error(404, "Unknown Message", 10008)
        emoji = self._parse_emoji(raw_emoji)
        if emoji["id"] and all(e["id"] != emoji["id"] for e in self.emojis):
            return _error(400, "Unknown Emoji", 10014)
        return message, emoji

    def _r_add_reaction(self, rec: RecordedRequest, cid: str, mid: str, raw_emoji: str) -> _Reply:
        target = self._reaction_target(cid, mid, raw_emoji)
        if isinstance(target, _Reply):
            return target
        _, emoji = target
        self._apply_reaction("add", self.bot_user["id"], mid, cid, emoji)
        return _Reply(204)

    def _r_remove_own_reaction(
        self, rec: RecordedRequest, cid: str, mid: str, raw_emoji: str
    ) -> _Reply:
        return self._r_remove_user_reaction(rec, cid, mid, raw_emoji, self.bot_user["id"])

    def _r_remove_user_reaction(
        self, rec: RecordedRequest, cid: str, mid: str, raw_emoji: str, uid: str
    ) -> _Reply:
        target = self._reaction_target(cid, mid, raw_emoji)
        if isinstance(target, _Reply):
            return target
        _, emoji = target
        self._apply_reaction("remove", uid, mid, cid, emoji)
        return _Reply(204)

    def _r_reaction_users(self, rec: RecordedRequest, cid: str, mid: str, raw_emoji: str) -> _Reply:
        target = self._reaction_target(cid, mid, raw_emoji)
        if isinstance(target, _Reply):
            return target
        _, emoji = target
        _, users = self._reactions.get(mid, {}).get(self._emoji_key(emoji), (emoji, []))
        return _Reply(200, [_public_user(self._user(u)) for u in users])

    def _r_typing(self, rec: RecordedRequest, cid: str) -> _Reply:
        if cid not in self.channels:
            return _error(404, "Unknown Channel", 10003)
        self.typing.append((cid, time.monotonic()))
        return _Reply(204)

    # guilds ----------------------------------------------------------------------------------

    def _r_get_guild(self, rec: RecordedRequest, gid: str) -> _Reply:
        if gid != self.guild["id"]:
            return _error(404, "Unknown Guild", 10004)
        skip = {
            "channels",
            "members",
            "threads",
            "presences",
            "voice_states",
            "stage_instances",
            "guild_scheduled_events",
            "soundboard_sounds",
            "embedded_activities",
            "joined_at",
            "large",
            "lazy",
            "unavailable",
            "member_count",
        }
        return _Reply(200, {k: v for k, v in self.guild.items() if k not in skip})

    def _r_guild_channels(self, rec: RecordedRequest, gid: str) -> _Reply:
        if gid != self.guild["id"]:
            return _error(404, "Unknown Guild", 10004)
        return _Reply(200, self.guild["channels"])

    def _r_guild_roles(self, rec: RecordedRequest, gid: str) -> _Reply:
        if gid != self.guild["id"]:
            return _error(404, "Unknown Guild", 10004)
        return _Reply(200, self.roles)

    def _r_guild_member(self, rec: RecordedRequest, gid: str, uid: str) -> _Reply:
        if gid != self.guild["id"]:
            return _error(404, "Unknown Guild", 10004)
        member = self.members.get(uid)
        return _Reply(200, member) if member else _error(404, "Unknown Member", 10007)

    # application commands --------------------------------------------------------------------

    def _command_pool(self, app_id: str, guild_id: str | None) -> list[Json] | _Reply:
        if app_id != self.application["id"]:
            return _error(403, "Missing Access", 50001)
        if guild_id is None:
            return self.commands
        if guild_id != self.guild["id"]:
            return _error(403, "Missing Access", 50001)
        return self.guild_commands.setdefault(guild_id, [])

    def _validate_command(self, index: int, command: Json) -> _Reply | None:
        name = command.get("name") or ""
        ctype = command.get("type", 1)
        if not 1 <= len(name) <= 32:
            return _form_error(
                f"{index}.name", "Must be between 1 and 32 in length.", "BASE_TYPE_BAD_LENGTH"
            )
        if ctype == 1:
            if not re.fullmatch(r"[-_\w]{1,32}", name) or name != name.lower():
                return _form_error(
                    f"{index}.name", "Command name is invalid", "APPLICATION_COMMAND_INVALID_NAME"
                )
            if not 1 <= len(command.get("description") or "") <= 100:
                return _form_error(
                    f"{index}.description",
                    "Must be between 1 and 100 in length.",
                    "BASE_TYPE_BAD_LENGTH",
                )
            if len(command.get("options") or []) > 25:
                return _form_error(
                    f"{index}.options", "Must be 25 or fewer in length.", "BASE_TYPE_MAX_LENGTH"
                )
        return None

    def _materialize_command(self, command: Json, pool: list[Json], guild_id: str | None) -> Json:
        ctype = command.get("type", 1)
        previous = next(
            (c for c in pool if c["name"] == command["name"] and c.get("type", 1) == ctype), None
        )
        out: Json = {
            "id": previous["id"] if previous else self._snowflake(),
            "application_id": self.application["id"],
            "version": self._snowflake(),
            "type": ctype,
            "name": command["name"],
            "description": command.get("description", ""),
            "options": command.get("options", []),
            "default_member_permissions": command.get("default_member_permissions"),
            "dm_permission": command.get("dm_permission", True),
            "nsfw": command.get("nsfw", False),
            "contexts": command.get("contexts"),
            "integration_types": command.get("integration_types", [0]),
            "name_localizations": command.get("name_localizations"),
            "description_localizations": command.get("description_localizations"),
        }
        if guild_id is not None:
            out["guild_id"] = guild_id
        return out

    def _r_list_commands(
        self, rec: RecordedRequest, app_id: str, guild_id: str | None = None
    ) -> _Reply:
        pool = self._command_pool(app_id, guild_id)
        return pool if isinstance(pool, _Reply) else _Reply(200, pool)

    def _r_put_commands(
        self, rec: RecordedRequest, app_id: str, guild_id: str | None = None
    ) -> _Reply:
        pool = self._command_pool(app_id, guild_id)
        if isinstance(pool, _Reply):
            return pool
        body = rec.json or []
        if len(body) > 100:
            return _form_error("_", "Must be 100 or fewer in length.", "BASE_TYPE_MAX_LENGTH")
        for index, command in enumerate(body):
            error = self._validate_command(index, command)
            if error is not None:
                return error
        fresh = [self._materialize_command(c, pool, guild_id) for c in body]
        pool[:] = fresh
        return _Reply(200, fresh)

    def _r_post_command(
        self, rec: RecordedRequest, app_id: str, guild_id: str | None = None
    ) -> _Reply:
        pool = self._command_pool(app_id, guild_id)
        if isinstance(pool, _Reply):
            return pool
        error = self._validate_command(0, rec.json or {})
        if error is not None:
            return error
        command = self._materialize_command(rec.json, pool, guild_id)
        pool[:] = [c for c in pool if c["id"] != command["id"]] + [command]
        return _Reply(201, command)

    def _r_delete_command(self, rec: RecordedRequest, app_id: str, *ids: str) -> _Reply:
        guild_id, command_id = (ids[0], ids[1]) if len(ids) == 2 else (None, ids[0])
        pool = self._command_pool(app_id, guild_id)
        if isinstance(pool, _Reply):
            return pool
        if all(c["id"] != command_id for c in pool):
            return _error(404, "Unknown application command", 10063)
        pool[:] = [c for c in pool if c["id"] != command_id]
        return _Reply(204)

    # interaction responses -------------------------------------------------------------------

    def _interaction_message(
        self,
        state: _Interaction,
        payload: Json,
        files: Sequence[UploadedFile],
        *,
        original: bool,
        allow_empty: bool = False,
    ) -> Json | _Reply:
        message = self._build_bot_message(
            state.payload["channel_id"],
            payload,
            files,
            ephemeral_allowed=True,
            allow_empty=allow_empty,
        )
        if isinstance(message, _Reply):
            return message
        interaction = state.payload
        person = interaction.get("member", {}).get("user") or interaction["user"]
        app_id = self.application["id"]
        message["webhook_id"] = app_id
        message["application_id"] = app_id
        if original:
            message["type"] = 23 if state.command_type in (2, 3) else 20
        metadata: Json = {
            "id": interaction["id"],
            "type": interaction["type"],
            "user": person,
            "authorizing_integration_owners": interaction["authorizing_integration_owners"],
        }
        if not original and state.original_id is not None:
            metadata["original_response_message_id"] = state.original_id
        if interaction["type"] == 3 and "message" in interaction:
            metadata["interacted_message_id"] = interaction["message"]["id"]
        message["interaction_metadata"] = metadata
        if interaction["type"] == 2:
            message["interaction"] = {
                "id": interaction["id"],
                "type": 2,
                "name": interaction["data"]["name"],
                "user": person,
            }
        return message

    def _r_interaction_callback(self, rec: RecordedRequest, iid: str, token: str) -> _Reply:
        state = self.interactions.get(iid)
        if state is None or state.payload["token"] != token:
            return _error(404, "Unknown interaction", 10062)
        if state.acknowledged:
            return _error(400, "Interaction has already been acknowledged.", 40060)
        if time.monotonic() - state.created > self.interaction_timeout:
            return _error(404, "Unknown interaction", 10062)
        body = rec.json or {}
        cb_type = int(body.get("type", 0))
        data = body.get("data") or {}
        resource_message: Json | None = None
        if cb_type in (4, 5):
            if cb_type == 5:
                data = {"content": "", "flags": data.get("flags", 0) & _FLAG_EPHEMERAL}
            message = self._interaction_message(
                state, data, rec.files, original=True, allow_empty=cb_type == 5
            )
            if isinstance(message, _Reply):
                return message
            if cb_type == 5:
                message["flags"] |= _FLAG_LOADING
                state.loading = True
            state.original_id = message["id"]
            self._store_message(message)
            self._dispatch_message("MESSAGE_CREATE", message)
            resource_message = message
        elif cb_type == 7:
            target = self.messages.get(state.payload.get("message", {}).get("id", ""))
            if target is None:
                return _error(400, "Interaction has no message to update", 50035)
            error = self._apply_edit(target, data, rec.files)
            if error is not None:
                return error
            self._dispatch_message("MESSAGE_UPDATE", target)
            resource_message = target
        elif cb_type not in (6, 8, 9, 10, 12):
            return _form_error(
                "type", "Value must be one of {1, 4, 5, 6, 7, 8, 9, 10, 12}.", "ENUM_TYPE_COERCE"
            )
        state.acknowledged = True
        state.response_type = cb_type
        state.callbacks.append(body)
        if rec.query.get("with_response") not in ("1", "true", "True"):
            return _Reply(204)
        info: Json = {
            "id": iid,
            "type": state.payload["type"],
            "response_message_loading": cb_type == 5,
            "response_message_ephemeral": bool(
                resource_message and resource_message["flags"] & _FLAG_EPHEMERAL
            ),
        }
        if resource_message is not None:
            info["response_message_id"] = resource_message["id"]
        result: Json = {"interaction": info}
        if resource_message is not None:
            result["resource"] = {"type": cb_type, "message": resource_message}
        elif cb_type in (6, 8, 9):
            result["resource"] = {"type": cb_type}
        return _Reply(200, result)

    def _webhook_state(self, app_id: str, token: str) -> _Interaction | _Reply:
        state = self._interactions_by_token.get(token)
        if state is None or app_id != self.application["id"]:
            return _error(404, "Unknown Webhook", 10015)
        if not state.acknowledged:
            return _error(404, "Unknown Webhook", 10015)
        return state

    def _webhook_message(self, state: _Interaction, which: str) -> Json | _Reply:
        mid = state.original_id if which == "@original" else which
        if mid is None or (mid != state.original_id and mid not in state.followup_ids):
            return _error(404, "Unknown Message", 10008)
        message = self.messages.get(mid)
        return message if message is not None else _error(404, "Unknown Message", 10008)

    def _r_followup(self, rec: RecordedRequest, app_id: str, token: str) -> _Reply:
        state = self._webhook_state(app_id, token)
        if isinstance(state, _Reply):
            return state
        payload = rec.json or {}
        if state.loading and state.original_id in self.messages:
            # Discord: the first follow-up after a deferred response fills the "thinking"
            # message, which keeps the ephemeral setting chosen when deferring.
            message = self.messages[state.original_id]
            error = self._apply_edit(
                message, {**payload, "flags": payload.get("flags", 0)}, rec.files, mark_edited=False
            )
            if error is not None:
                return error
            message["flags"] &= ~_FLAG_LOADING
            state.loading = False
            self._dispatch_message("MESSAGE_UPDATE", message)
        else:
            built = self._interaction_message(state, payload, rec.files, original=False)
            if isinstance(built, _Reply):
                return built
            message = built
            state.followup_ids.append(message["id"])
            self._store_message(message)
            self._dispatch_message("MESSAGE_CREATE", message)
        if rec.query.get("wait") in ("1", "true", "True"):
            return _Reply(200, message)
        return _Reply(204)

    def _r_webhook_get(self, rec: RecordedRequest, app_id: str, token: str, which: str) -> _Reply:
        state = self._webhook_state(app_id, token)
        if isinstance(state, _Reply):
            return state
        message = self._webhook_message(state, which)
        return message if isinstance(message, _Reply) else _Reply(200, message)

    def _r_webhook_edit(self, rec: RecordedRequest, app_id: str, token: str, which: str) -> _Reply:
        state = self._webhook_state(app_id, token)
        if isinstance(state, _Reply):
            return state
        message = self._webhook_message(state, which)
        if isinstance(message, _Reply):
            return message
        filling = state.loading and message["id"] == state.original_id
        error = self._apply_edit(message, rec.json or {}, rec.files, mark_edited=not filling)
        if error is not None:
            return error
        if filling:
            message["flags"] &= ~_FLAG_LOADING
            state.loading = False
        self._dispatch_message("MESSAGE_UPDATE", message)
        return _Reply(200, message)

    def _r_webhook_delete(
        self, rec: RecordedRequest, app_id: str, token: str, which: str
    ) -> _Reply:
        state = self._webhook_state(app_id, token)
        if isinstance(state, _Reply):
            return state
        message = self._webhook_message(state, which)
        if isinstance(message, _Reply):
            return message
        self._delete_message(message)
        return _Reply(204)
