"""What the web chat's handlers share: the per-application context, JSON errors, reading a
vote from a request body, and the operator's identity."""

from __future__ import annotations

import asyncio
import math
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web
from sqlalchemy.orm import Session, sessionmaker

from bot.chat.i18n import pick_lang, text
from bot.chat.state import AnswerMemory
from bot.web_identity import MAX_CONCURRENT_UPLOADS, Identities
from bot.web_render import MediaTokens
from core.service import RecognitionService, SlidingWindow
from core.types import Recognition, Source, Verdict

#: Who the operator is when they pick the right candidate on /admin.
OPERATOR = Source(platform="web", chat_id="admin", user_id="operator", allow_adult=True)

#: Examples one address may have recognised per minute: each of the 12 shown, twice.
SAMPLES_PER_MINUTE = 24

_QUERY_ID = re.compile(r"^[A-Za-z0-9_-]{1,40}$")


def retry_after_header(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))


@dataclass
class WebContext:
    """What the handlers share (one per application)."""

    service: RecognitionService
    sessions: sessionmaker[Session]
    index_dir: Path
    framestore_dir: Path
    samples_dir: Path | None
    contact_sheets_dir: Path | None
    local_only: bool
    media: MediaTokens = field(default_factory=MediaTokens)
    samples: MediaTokens = field(default_factory=lambda: MediaTokens(256))
    thumbs: dict[str, bytes] = field(default_factory=dict)
    url: str | None = None  # set by run_web once listening
    identities: Identities = field(default_factory=lambda: Identities(secrets.token_bytes(32)))
    admin_token: str | None = None  # ANIREC_WEB_ADMIN_TOKEN: the operator pages from elsewhere
    allowed_hosts: frozenset[str] = frozenset()  # host names answered besides IPs and localhost
    upload_timeout: float = 30.0  # seconds an upload may take to arrive
    uploads: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(MAX_CONCURRENT_UPLOADS))
    #: The welcome page's examples, per address (their own allowance: `api_sample_identify`).
    sample_rate: SlidingWindow = field(default_factory=lambda: SlidingWindow(SAMPLES_PER_MINUTE))
    #: Answers whose preview the page may still fetch (`GET /api/preview/<query_id>`):
    #: query id → (the answer as sent, its language, its title language).
    pending_previews: AnswerMemory[str, tuple[Recognition, str, str | None]] = field(
        default_factory=lambda: AnswerMemory(512))


CTX = web.AppKey("anirec_web", WebContext)


def ctx_of(request: web.Request) -> WebContext:
    return request.app[CTX]


def json_error(status: int, message: str, *, retry_after: float | None = None
               ) -> web.Response:
    body: dict[str, object] = {"error": message}
    headers = {}
    if retry_after is not None:
        body["retry_after"] = max(1, math.ceil(retry_after))
        headers["Retry-After"] = retry_after_header(retry_after)
    return web.json_response(body, status=status, headers=headers)


def _wants_json(request: web.Request) -> bool:
    return request.path.startswith(("/api/", "/media/", "/samples/", "/admin/api/"))


def error_response(request: web.Request, status: int, message: str) -> web.Response:
    if _wants_json(request):
        return json_error(status, message)
    return web.Response(status=status, text=message, content_type="text/plain")



class UploadError(Exception):
    """A request the chat cannot use: its HTTP status and the text to show (a catalogue key
    of bot/chat/i18n.py; `message` is the English text, `text(lang)` any language's)."""

    def __init__(self, status: int, key: str, **values: object) -> None:
        self.status = status
        self.key = key
        self.values = values
        self.message = text("en", key, **values)
        super().__init__(self.message)

    def text(self, lang: str | None) -> str:
        return text(lang, self.key, **self.values)


def request_lang(request: web.Request) -> str:
    """The web chat user's language: the page's choice (`?lang=`), else the browser's."""
    return (pick_lang(request.query.get("lang")) or pick_lang(request.headers.get("Accept-Language"))
            or "en")


async def read_json_body(request: web.Request) -> dict[str, object]:
    """The request's JSON object; UploadError(400) when it is not one."""
    try:
        body = await request.json()
    except ValueError:
        raise UploadError(400, "web.bad_request") from None
    if not isinstance(body, dict):
        raise UploadError(400, "web.bad_request")
    return body


def parse_vote(body: Mapping[str, object]) -> tuple[str, Verdict, int | None]:
    """The query id, verdict and rank (picks only) of a vote body; UploadError when bad."""
    qid = body.get("query_id")
    if not isinstance(qid, str) or not _QUERY_ID.match(qid):
        raise UploadError(404, "error.not_found")
    try:
        verdict = Verdict(body.get("verdict"))
    except ValueError:
        raise UploadError(400, "web.bad_verdict") from None
    raw = body.get("rank")
    rank: int | None = None
    if verdict is Verdict.PICK:
        if isinstance(raw, bool) or not isinstance(raw, int) or not 1 <= raw <= 5:
            raise UploadError(400, "web.pick_rank")
        rank = raw
    return qid, verdict, rank
