"""The local web chat (`anirec run` with no tokens) and the operator pages, on aiohttp.

The chat page behaves like a conversation with the bots: drop, paste or pick a picture, GIF
or clip and the answer comes back as a chat bubble with the same wording, the preview clip
and the ✅ ❌ 1–5 feedback buttons, which write the same `feedback` rows as the bots. It is
an adapter like the others: request → bytes + `Source(platform="web")` → the shared
`RecognitionService` → a JSON view built from `core.formatting` → rendered by the browser.

Nothing the browser receives names a file on the machine: preview clips, stills, the
picture with the characters' faces marked, and sample pictures are served under opaque
random tokens (`bot.web_render.MediaTokens`), errors are the same friendly texts the bots send
(`bot.chat.texts.user_error_text`), and stack traces only go to the log.

Pages come from Jinja2 templates in `bot/templates/` (autoescape on): `chat.html` here, the
operator page `admin.html` in `bot.web_admin`. The operator pages (`/admin`) answer loopback
clients only (unless `local_only=False`), and only under a loopback host name, so a web page
elsewhere cannot reach them by DNS rebinding. State-changing POSTs from another origin are
refused.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import io
import ipaddress
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp_jinja2
import jinja2
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from bot.chat.adapter import Launch
from bot.chat.feedback import feedback_toast
from bot.chat.i18n import EN, LANGS, TABLES, text
from bot.chat.media import content_type
from bot.chat.preview import follow_up
from bot.chat.texts import file_size, said, user_error_text
from bot.web_admin import add_admin_routes
from bot.web_common import (
    CTX,
    UploadError,
    WebContext,
    ctx_of,
    error_response,
    json_error,
    parse_vote,
    read_json_body,
    request_lang,
)
from bot.web_identity import (
    ADMIN_COOKIE,
    Identities,
    admin_token_ok,
    host_allowed,
    identity_middleware,
    request_uid,
)
from bot.web_render import answer_view
from core.db.models import Query
from core.errors import (
    AniRecError,
    Busy,
    IndexUnavailable,
    InvalidMedia,
    MediaTooLarge,
    NotFound,
    RateLimited,
)
from core.feedback import load_salt
from core.service import RecognitionService
from core.types import Source

logger = logging.getLogger(__name__)

#: Static assets of the chat and operator pages (package data: `bot/webstatic/*`).
STATIC_DIR = Path(__file__).with_name("webstatic")
#: The page templates (package data: `bot/templates/*`), rendered by Jinja2 with autoescape.
TEMPLATE_DIR = Path(__file__).with_name("templates")
#: The old client-chosen identity header: ignored (identity is the signed cookie).
USER_HEADER = "X-AniRec-User"
WEB_CHAT_ID = "web"

#: Multipart framing around the file (boundaries, part headers, other small fields).
MULTIPART_SLACK = 64 * 1024
SAMPLE_SUFFIXES = {".jpg", ".jpeg", ".png", ".gif", ".webp"}
MAX_SAMPLES = 12
#: How long GET /api/preview/<query_id> waits for a clip before answering 202 (seconds).
PREVIEW_POLL_S = 10.0
#: img-src allows https: for the series covers named in series.json (never sent a referrer).
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: https:; "
       "media-src 'self' blob:; connect-src 'self'; font-src 'self'; object-src 'none'; "
       "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}

# -- small pure helpers ------------------------------------------------------------------------

def is_loopback(remote: str | None) -> bool:
    """Whether a peer address is this machine (127.0.0.0/8, ::1, IPv4-mapped loopback)."""
    if not remote:
        return False
    try:
        ip = ipaddress.ip_address(remote.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def is_local_host(host: str | None) -> bool:
    """Whether a Host header names this machine ("localhost", "127.0.0.1:8765", "[::1]")."""
    if not host:
        return False
    try:
        name = urlsplit(f"//{host}").hostname or ""
    except ValueError:
        return False
    name = name.rstrip(".").lower()
    return name == "localhost" or name.endswith(".localhost") or is_loopback(name)


def same_origin(origin: str | None, host: str | None) -> bool:
    """Whether a request's Origin header (when a browser sent one) is this server."""
    if not origin:
        return True  # not a browser cross-site request (curl, tests, same-origin GET)
    if origin == "null" or not host:
        return False
    try:
        return urlsplit(origin).netloc.lower() == host.lower()
    except ValueError:
        return False


_HTTP_TEXT = {400: "web.bad_request", 403: "web.forbidden", 404: "web.not_found",
              405: "web.method", 413: "error.too_large"}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def security_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Add the security headers to every response (static files and errors included)."""
    resp = await handler(request)
    for k, v in SECURITY_HEADERS.items():
        resp.headers.setdefault(k, v)
    return resp


@web.middleware
async def friendly_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn every failure into a short friendly text (JSON under /api); log the details."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        key = _HTTP_TEXT.get(exc.status)
        return error_response(request, exc.status,
                              text(request_lang(request), key) if key else exc.reason)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # the one catch-all: the user gets a friendly line, the log the trace
        logger.error("web request %s %s failed", request.method, request.path, exc_info=exc)
        return error_response(request, 500, user_error_text(exc, request_lang(request)))


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse foreign Host names (DNS rebinding) and cross-origin POSTs; the operator pages
    answer this machine, or anyone else with the operator token."""
    ctx = ctx_of(request)
    if not host_allowed(request.host, ctx.allowed_hosts):
        return error_response(request, 403, "This server does not answer to that name.")
    if request.method not in ("GET", "HEAD", "OPTIONS") and not same_origin(
            request.headers.get("Origin"), request.host):
        return error_response(request, 403, "Cross-site requests are not allowed.")
    if request.path == "/admin" or request.path.startswith("/admin/"):
        here = ctx.local_only and is_loopback(request.remote) and is_local_host(request.host)
        if not here and not admin_token_ok(request, ctx.admin_token):
            return error_response(request, 403, "The operator pages are only available on this machine"
                                  + (" or with the operator token." if ctx.admin_token else "."))
        if "token" in request.query and request.method == "GET":  # log in once, keep it out of the URL
            resp = web.Response(status=303, headers={"Location": request.path})
            resp.set_cookie(ADMIN_COOKIE, request.query["token"], httponly=True, samesite="Strict",
                            path="/admin", secure=request.secure)
            return resp
    return await handler(request)


# -- the chat ------------------------------------------------------------------------------------

def _too_large(limit: int) -> UploadError:
    return UploadError(413, "web.file_too_large", limit=file_size(limit))


async def read_upload(request: web.Request, limit: int) -> bytes:
    """The uploaded file's bytes, read in chunks and abandoned as soon as it passes `limit`.

    Takes a multipart form (the first part with a file name, or one named "file") or a raw
    body. Raises UploadError (413 oversize, 400 no file/empty).
    """
    if request.content_length is not None and request.content_length > limit + MULTIPART_SLACK:
        raise _too_large(limit)
    buf = bytearray()
    if request.content_type.startswith("multipart/"):
        try:
            reader = await request.multipart()
            while True:
                part = await reader.next()
                if part is None:
                    break
                if not hasattr(part, "read_chunk"):  # a nested multipart: not ours
                    continue
                if part.name != "file" and not part.filename:
                    if await part.read_chunk(MULTIPART_SLACK) and not part.at_eof():
                        raise UploadError(400, "web.bad_request")
                    continue
                while chunk := await part.read_chunk(256 * 1024):
                    buf += chunk
                    if len(buf) > limit:
                        raise _too_large(limit)
                break
        except (ValueError, AssertionError, RuntimeError, HttpProcessingError) as exc:
            # e.g. a control character in the part's file name: a 400, never a 500
            logger.info("bad multipart upload: %s", type(exc).__name__)
            raise UploadError(400, "web.upload_unreadable") from None
    else:
        async for chunk in request.content.iter_chunked(256 * 1024):
            buf += chunk
            if len(buf) > limit:
                raise _too_large(limit)
    if not buf:
        raise UploadError(400, "web.no_file")
    return bytes(buf)


def web_source(request: web.Request) -> Source:
    """The browser (its server-signed cookie id, see `bot.web_identity`) in the web chat; the
    "chat" is the caller's address, so the per-chat limit bounds one machine however many
    identities it holds, and one web user's flood does not use up the others' allowance."""
    return Source(platform="web", chat_id=f"{WEB_CHAT_ID}:{request.remote or 'unknown'}",
                  user_id=request_uid(request), allow_adult=True)


async def read_upload_guarded(request: web.Request, limit: int) -> bytes:
    """`read_upload` within the upload timeout, at most MAX_CONCURRENT_UPLOADS at once."""
    ctx = ctx_of(request)
    if ctx.uploads.locked():
        raise UploadError(503, "web.uploads_busy")
    async with ctx.uploads:
        try:
            async with asyncio.timeout(ctx.upload_timeout):
                return await read_upload(request, limit)
        except TimeoutError:
            logger.info("upload from %s timed out after %.0f s", request.remote, ctx.upload_timeout)
            raise UploadError(408, "web.upload_slow") from None


#: The catalogue keys the chat page's script uses (bot/webstatic/app.js), in every language.
PAGE_KEYS = tuple(k for k in EN if k.startswith("web.")) + ("feedback.hint", "error.generic",
                                                            "error.index")


def page_texts() -> dict[str, dict[str, str]]:
    """{lang: {key: text}} for the page's language switch (read by app.js)."""
    return {lang: {k: TABLES[lang].get(k) or EN[k] for k in PAGE_KEYS} for lang in LANGS}


async def page_index(request: web.Request) -> web.StreamResponse:
    lang = request_lang(request)
    page = aiohttp_jinja2.render_string("chat.html", request, {
        "lang": lang, "t": {k: text(lang, k) for k in PAGE_KEYS},
        "texts_json": json.dumps(page_texts(), ensure_ascii=False).replace("</", "<\\/")})
    return web.Response(text=page, content_type="text/html", charset="utf-8",
                        headers={"Cache-Control": "no-cache"})


async def api_status(request: web.Request) -> web.Response:
    """Whether the chat can answer: {"ready", "message", "frames", "max_bytes", "hint"}.
    An index without a single episode is not ready ("no episodes indexed")."""
    svc = ctx_of(request).service
    lang = request_lang(request)
    frames = svc.indexed_frames if svc.ready else 0
    ready = bool(svc.ready) and frames > 0
    message = None if ready else text(lang, "error.no_episodes" if svc.ready else "error.index")
    return web.json_response({"ready": ready, "message": message, "frames": frames,
                              "max_bytes": svc.limits.max_bytes,
                              "hint": text(lang, "feedback.hint")})


async def _answer(request: web.Request, data: bytes, *, sample: bool = False) -> web.Response:
    """Recognise `data` for the web chat and answer with the bubble's JSON (or an error)."""
    ctx = ctx_of(request)
    lang = request_lang(request)
    try:
        rec = await ctx.service.recognize(data, source=web_source(request), counted=not sample,
                                          with_preview=request.query.get("preview") != "0")
    except (RateLimited, Busy) as exc:
        return json_error(429 if isinstance(exc, RateLimited) else 503,
                          user_error_text(exc, lang), retry_after=exc.retry_after)
    except MediaTooLarge as exc:
        return json_error(413, user_error_text(exc, lang))
    except IndexUnavailable as exc:
        return json_error(503, user_error_text(exc, lang), retry_after=30)
    except AniRecError as exc:
        if not isinstance(exc, InvalidMedia):
            logger.warning("web identify: %s", exc)
        return json_error(400, user_error_text(exc, lang))
    title_lang = request.query.get("titles", "")[:8] or None
    preview_url = None
    if rec.query_id and ctx.service.preview_pending(rec.query_id):
        ctx.pending_previews.put(rec.query_id, (rec, lang, title_lang))
        preview_url = f"/api/preview/{rec.query_id}"
    return web.json_response(answer_view(rec, ctx.media, lang=lang, title_lang=title_lang,
                                         preview_url=preview_url))


async def api_preview(request: web.Request) -> web.StreamResponse:
    """GET /api/preview/<query_id>: the preview of an answer that went out without it, once cut
    (only for the person who asked). Waits up to `PREVIEW_POLL_S` seconds: 200 with
    {preview, still, annotated, annotated_alt} (/media URLs); 202 {"pending": true} when it
    is still being cut (ask again); 204 when there is none (a failed cut shows nothing);
    404 for an answer this page does not know (any more)."""
    ctx = ctx_of(request)
    lang = request_lang(request)
    qid = request.match_info["query_id"]
    known = ctx.pending_previews.get(qid)
    if known is None:
        return json_error(404, text(lang, "web.preview_gone"))
    rec, rec_lang, title_lang = known
    try:
        if not await asyncio.get_running_loop().run_in_executor(None, _asked_by, ctx, qid,
                                                                web_source(request)):
            return json_error(403, text(lang, "vote.not_asker"))
    except NotFound:
        return json_error(404, text(lang, "web.preview_gone"))
    full = await follow_up(ctx.service, rec, timeout=PREVIEW_POLL_S)
    if full is None:
        if ctx.service.preview_pending(qid) and not ctx.service.preview_ready(qid):
            return web.json_response({"pending": True}, status=202)
        return web.Response(status=204)
    view = answer_view(full, ctx.media, lang=rec_lang, title_lang=title_lang)
    return web.json_response({k: view[k] for k in ("preview", "still", "annotated", "annotated_alt")})


async def api_identify(request: web.Request) -> web.Response:
    """POST a picture/GIF/clip; answer with the chat bubble's JSON (see `answer_view`)."""
    ctx = ctx_of(request)
    try:
        data = await read_upload_guarded(request, ctx.service.limits.max_bytes)
    except UploadError as exc:
        return json_error(exc.status, exc.text(request_lang(request)),
                          retry_after=5 if exc.status == 503 else None)
    return await _answer(request, data)


async def api_sample_identify(request: web.Request) -> web.Response:
    """POST /api/samples/<token>/identify: one of the welcome page's examples, read from the
    server's own sample folder. Examples have their own allowance per address
    (`SAMPLES_PER_MINUTE`, enough to try every example twice a minute) and do not use up the
    person's upload allowance (the service's per-user and per-address limits), so trying the
    examples never makes the next real upload wait."""
    ctx = ctx_of(request)
    lang = request_lang(request)
    path = ctx.samples.resolve(request.match_info["token"])
    if path is None or not path.is_file():
        return json_error(404, text(lang, "web.example_gone"))
    wait = ctx.sample_rate.check(f"sample:{request.remote or 'unknown'}", time.monotonic())
    if wait:
        return json_error(429, text(lang, "web.samples_fast", s=math.ceil(wait)), retry_after=wait)
    try:
        data = await asyncio.get_running_loop().run_in_executor(None, path.read_bytes)
    except OSError:
        return json_error(404, text(lang, "web.example_gone"))
    return await _answer(request, data, sample=True)


async def api_feedback(request: web.Request) -> web.Response:
    """POST {query_id, verdict, rank?, withdraw?}: the ✅ ❌ 1–5 buttons."""
    svc = ctx_of(request).service
    lang = request_lang(request)
    try:
        body = await read_json_body(request)
        qid, verdict, rank = parse_vote(body)
    except UploadError as exc:
        return json_error(exc.status, exc.text(lang))
    source = web_source(request)
    withdraw = bool(body.get("withdraw"))
    try:
        if not await asyncio.get_running_loop().run_in_executor(None, _asked_by, ctx_of(request), qid, source):
            return json_error(403, text(lang, "vote.not_asker"))
        if withdraw:
            await asyncio.get_running_loop().run_in_executor(None, svc.store.get_query, qid)
            tally = await svc.withdraw_feedback(qid, source=source, verdict=verdict, rank=rank)
        else:
            tally = await svc.record_feedback(qid, verdict, source=source, rank=rank)
    except NotFound as exc:
        return json_error(404, user_error_text(exc, lang))
    except ValueError:
        return json_error(400, text(lang, "web.no_such_rank"))
    return web.json_response({"tally": tally.as_dict(),
                              "message": feedback_toast(verdict, rank, withdraw, lang=lang)})


def _asked_by(ctx: WebContext, qid: str, source: Source) -> bool:
    """Whether `source` asked query `qid` (votes come only from the asker); NotFound if unknown."""
    with ctx.sessions() as s:
        owner = s.scalar(select(Query.user_hash).where(Query.id == qid))
    if owner is None:
        raise said(NotFound, "error.not_found")
    return hmac.compare_digest(owner, ctx.service.store.hash_id(source.platform, source.user_id))


async def media(request: web.Request) -> web.StreamResponse:
    """A preview clip, still or named-faces picture, by its opaque token."""
    path = ctx_of(request).media.resolve(request.match_info["token"])
    if path is None or not path.is_file():
        return json_error(404, text(request_lang(request), "web.preview_gone"))
    return web.FileResponse(path, headers={"Content-Type": content_type(path),
                                           "Cache-Control": "private, max-age=3600"})


def _sample_files(folder: Path | None) -> list[Path]:
    if folder is None or not folder.is_dir():
        return []
    try:
        files = sorted(p for p in folder.iterdir()
                       if p.is_file() and p.suffix.lower() in SAMPLE_SUFFIXES)
    except OSError:
        return []
    return files[:MAX_SAMPLES]


async def api_samples(request: web.Request) -> web.Response:
    """The sample library's example screenshots: [{id, name, url, thumb}]."""
    ctx = ctx_of(request)
    files = await asyncio.get_running_loop().run_in_executor(None, _sample_files,
                                                             ctx.samples_dir)
    out = []
    for p in files:
        tok = ctx.samples.token_for(p)
        out.append({"id": tok, "name": p.name, "url": f"/samples/{tok}",
                    "thumb": f"/samples/{tok}/thumb"})
    return web.json_response({"samples": out})


async def sample_full(request: web.Request) -> web.StreamResponse:
    path = ctx_of(request).samples.resolve(request.match_info["token"])
    if path is None or not path.is_file():
        return json_error(404, text(request_lang(request), "web.example_gone"))
    return web.FileResponse(path, headers={"Content-Type": content_type(path), "Cache-Control": "no-cache"})


def make_thumbnail(path: Path, size: int = 320) -> bytes:
    """A small JPEG of a picture (the first frame of an animation)."""
    from PIL import Image, ImageOps

    with Image.open(path) as im:
        im.seek(0)
        img = ImageOps.exif_transpose(im.convert("RGB"))
        img.thumbnail((size, size))
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=80)
        return buf.getvalue()


async def sample_thumb(request: web.Request) -> web.StreamResponse:
    ctx = ctx_of(request)
    tok = request.match_info["token"]
    path = ctx.samples.resolve(tok)
    if path is None or not path.is_file():
        return json_error(404, text(request_lang(request), "web.example_gone"))
    data = ctx.thumbs.get(tok)
    if data is None:
        try:
            data = await asyncio.get_running_loop().run_in_executor(None, make_thumbnail, path)
        except OSError:
            return json_error(404, text(request_lang(request), "web.example_unshowable"))
        if len(ctx.thumbs) > 512:
            ctx.thumbs.clear()
        ctx.thumbs[tok] = data
    return web.Response(body=data, content_type="image/jpeg",
                        headers={"Cache-Control": "private, max-age=600"})


# -- assembly -------------------------------------------------------------------------------------

def build_web_app(service: RecognitionService, *, sessions: sessionmaker[Session], index_dir: Path,
                  framestore_dir: Path, samples_dir: Path | None = None, local_only: bool = True,
                  contact_sheets_dir: Path | None = None, secret: bytes | None = None,
                  admin_token: str | None = None, allowed_hosts: frozenset[str] = frozenset(),
                  upload_timeout: float = 30.0) -> web.Application:
    """The web chat and operator pages over a started `RecognitionService`.

    Args:
        service: the shared recognition service (the bots' one).
        sessions: the catalog's SQLAlchemy sessionmaker (library status).
        index_dir: the vector index folder (status; its parent is the home folder).
        framestore_dir: the frame store folder (status).
        samples_dir: a folder of example screenshots (jpg/png/gif) offered on the chat page.
        local_only: loopback clients under a loopback host name reach /admin without the token.
        contact_sheets_dir: character contact sheets (default `<home>/contact-sheets`).
        secret: the key that signs identity cookies (default: random, forgotten on restart).
        admin_token: the operator token for /admin from other machines (None: none can).
        allowed_hosts: host names answered besides IP literals and localhost.
        upload_timeout: seconds an upload may take to arrive.

    Returns:
        The aiohttp application (not started; see `run_web`).
    """
    index_dir = Path(index_dir)
    ctx = WebContext(service=service, sessions=sessions, index_dir=index_dir,
                     framestore_dir=Path(framestore_dir),
                     samples_dir=Path(samples_dir) if samples_dir is not None else None,
                     contact_sheets_dir=(Path(contact_sheets_dir) if contact_sheets_dir is not None
                                         else index_dir.parent / "contact-sheets"),
                     local_only=local_only, admin_token=admin_token or None,
                     allowed_hosts=frozenset(h.lower() for h in allowed_hosts), upload_timeout=upload_timeout)
    if secret is not None:
        ctx.identities = Identities(hmac.new(secret, b"anirec-web-cookie", hashlib.sha256).digest())
    app = web.Application(middlewares=[security_headers, friendly_errors, guard,
                                       identity_middleware(ctx.identities)],
                          client_max_size=1024 * 1024)
    app[CTX] = ctx
    aiohttp_jinja2.setup(app, loader=jinja2.FileSystemLoader(TEMPLATE_DIR),
                         autoescape=jinja2.select_autoescape(default=True))
    app.router.add_get("/", page_index)
    app.router.add_get("/api/status", api_status)
    app.router.add_post("/api/identify", api_identify)
    app.router.add_post("/api/feedback", api_feedback)
    app.router.add_get("/api/samples", api_samples)
    app.router.add_post("/api/samples/{token}/identify", api_sample_identify)
    app.router.add_get("/api/preview/{query_id}", api_preview)
    app.router.add_get("/media/{token}", media)
    app.router.add_get("/samples/{token}", sample_full)
    app.router.add_get("/samples/{token}/thumb", sample_thumb)
    add_admin_routes(app)
    app.router.add_static("/static/", STATIC_DIR, show_index=False, follow_symlinks=False,
                          append_version=False)
    return app


async def run_web(app: web.Application, host: str, port: int, stop: asyncio.Event) -> None:
    """Serve `app` on host:port until `stop` is set (port 0 picks a free port).

    The address it listens on is logged and kept in the app's context (`app[CTX].url`).
    """
    runner = web.AppRunner(app, access_log=None, handle_signals=False, keepalive_timeout=15)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound = port
        for addr in runner.addresses:
            if isinstance(addr, tuple) and len(addr) >= 2:
                bound = int(addr[1])
                break
        shown = f"[{host}]" if ":" in host else host
        ctx = app[CTX]
        ctx.url = f"http://{shown}:{bound}/"
        logger.info("AniRec web chat on %s (operator pages: %sadmin)", ctx.url, ctx.url)
        if not is_loopback(host) and host != "localhost":
            logger.warning("the web chat listens on %s; the operator pages answer this machine%s",
                           host, " and holders of ANIREC_WEB_ADMIN_TOKEN" if ctx.admin_token else " only")
        await stop.wait()
    finally:
        await runner.cleanup()


class WebAdapter:
    """The local web chat for `anirec run` (see `bot.chat.adapter.PlatformAdapter`)."""

    name = "web"

    def __init__(self, app: web.Application, host: str, port: int) -> None:
        self.app = app
        self.host = host
        self.port = port
        self.url: str | None = f"http://{host}:{port}/"

    @classmethod
    def from_launch(cls, launch: Launch) -> WebAdapter:
        """The chat over the shared service; the demo's query pictures as examples."""
        st = launch.settings
        samples = st.home / "demo-queries"
        token = st.web_admin_token.get_secret_value() if st.web_admin_token else None
        app = build_web_app(launch.service, sessions=launch.sessions, index_dir=st.index_dir,
                            framestore_dir=st.framestore_dir,
                            samples_dir=samples if samples.is_dir() else None,
                            secret=load_salt(st.home), admin_token=token,
                            allowed_hosts=frozenset(st.web_allowed_hosts),
                            upload_timeout=st.web_upload_timeout)
        return cls(app, st.web_host, st.web_port)

    async def run(self, stop: asyncio.Event) -> None:
        await run_web(self.app, self.host, self.port, stop)
