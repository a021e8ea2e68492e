"""The local web chat (`anirec run` with no tokens) and the operator pages, on aiohttp.

The chat page behaves like a conversation with the bots: drop, paste or pick a picture, GIF
or clip and the answer comes back as a chat bubble with the same wording, the preview clip
and the ✅ ❌ 1–5 feedback buttons, which write the same `feedback` rows as the bots. It is
an adapter like the others: request → bytes + `Source(platform="web")` → the shared
`RecognitionService` → a JSON view built from `core.formatting` → rendered by the browser.

Nothing the browser receives names a file on the machine: preview clips, stills, the
picture with the characters' faces marked, and sample pictures are served under opaque
random tokens (`MediaTokens`), errors are the same friendly texts the bots send
(`bot.common.user_error_text`), and stack traces only go to the log.

The operator pages (`/admin`) answer loopback clients only (unless `local_only=False`), and
only under a loopback host name, so a web page elsewhere cannot reach them by DNS rebinding.
State-changing POSTs from another origin are refused.
"""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import html
import io
import ipaddress
import logging
import math
import re
import secrets
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from bot.common import user_error_text
from core.errors import (
    AniRecError,
    Busy,
    IndexUnavailable,
    InvalidMedia,
    MediaTooLarge,
    NotFound,
    RateLimited,
)
from core.formatting import (
    STATUS_TEXT,
    candidate_line,
    character_text,
    episode_text,
    format_percent,
    format_timestamp,
    other_titles,
    time_range,
)
from core.types import FeedbackTally, Recognition, Source, Verdict

logger = logging.getLogger(__name__)

#: Static assets of the chat and operator pages (package data: `bot/webstatic/*`).
STATIC_DIR = Path(__file__).with_name("webstatic")
#: The browser-local user id (random, kept in localStorage) travels in this header.
USER_HEADER = "X-AniRec-User"
#: Operator actions must carry this header: a cross-site form cannot set it.
ADMIN_HEADER = "X-AniRec-Admin"
#: Who the operator is when they pick the right candidate on /admin.
OPERATOR = Source(platform="web", chat_id="admin", user_id="operator", allow_adult=True)
WEB_CHAT_ID = "web"

NO_MATCH_WITH_GUESSES = "Not sure — nothing matched well; the closest I have"
FEEDBACK_HINT = "Right? Tap ✅ or ❌ — or the number of the right answer."
#: Multipart framing around the file (boundaries, part headers, other small fields).
MULTIPART_SLACK = 64 * 1024
SAMPLE_SUFFIXES = {".jpg", ".jpeg", ".png", ".gif", ".webp"}
SHEET_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif"}
MAX_SAMPLES = 12
CONTENT_TYPES = {".mp4": "video/mp4", ".webm": "video/webm", ".jpg": "image/jpeg",
                 ".jpeg": "image/jpeg", ".png": "image/png", ".gif": "image/gif",
                 ".webp": "image/webp"}
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob:; "
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

_USER_ID = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
_QUERY_ID = re.compile(r"^[A-Za-z0-9_-]{1,40}$")
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{16,64}$")


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


def retry_after_header(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))


class MediaTokens:
    """Opaque random tokens for files the browser may fetch (previews, stills, samples).

    The same file keeps its token; the oldest are forgotten past `max_items`, so memory stays
    bounded on a long-running chat. Paths only come from the service or the operator's folders,
    never from a request.
    """

    def __init__(self, max_items: int = 4096) -> None:
        self.max_items = max_items
        self._by_token: collections.OrderedDict[str, Path] = collections.OrderedDict()
        self._by_path: dict[Path, str] = {}

    def token_for(self, path: str | Path) -> str:
        p = Path(path)
        tok = self._by_path.get(p)
        if tok is not None:
            self._by_token.move_to_end(tok)
            return tok
        tok = secrets.token_urlsafe(18)
        self._by_token[tok] = p
        self._by_path[p] = tok
        while len(self._by_token) > self.max_items:
            _old, old_path = self._by_token.popitem(last=False)
            self._by_path.pop(old_path, None)
        return tok

    def resolve(self, token: str) -> Path | None:
        if not _TOKEN.match(token or ""):
            return None
        return self._by_token.get(token)

    def __len__(self) -> int:
        return len(self._by_token)


def answer_view(rec: Recognition, media: MediaTokens) -> dict[str, Any]:
    """The JSON the chat page renders: the bots' wording, no paths.

    Args:
        rec: the recognition (its preview/still/annotated paths are turned into
            /media/<token> URLs).
        media: the token registry the /media route serves from.

    Returns:
        A dict ready for `json.dumps`.
    """
    top = list(rec.candidates[:5])
    if rec.status == "no_match":
        header = NO_MATCH_WITH_GUESSES if top else STATUS_TEXT["no_match"]
    else:
        header = STATUS_TEXT[rec.status]
    best_c = rec.best if rec.status != "no_match" else None
    best = None
    preview = still = None
    if best_c is not None:
        best = {"title": best_c.series.title, "other_titles": other_titles(best_c),
                "episode": episode_text(best_c), "time": time_range(best_c),
                "adult": best_c.series.is_adult}
        if best_c.preview:
            preview = f"/media/{media.token_for(best_c.preview)}"
        if best_c.still:
            still = f"/media/{media.token_for(best_c.still)}"
    candidates = []
    for i, c in enumerate(top):
        line = candidate_line(i + 1, c)
        prefix = f"{i + 1}. "
        candidates.append({"rank": i + 1, "title": c.series.title, "adult": c.series.is_adult,
                           "text": line.removeprefix(prefix),
                           "score": round(c.score, 4)})
    n_ranks = len(top) if len(top) > 1 else 0  # a single candidate is what ✅ already says
    annotated = annotated_alt = None
    if rec.annotated and rec.characters:
        annotated = f"/media/{media.token_for(rec.annotated)}"
        names = character_text(rec.characters)
        annotated_alt = f"Your picture with the faces marked: {names}" if names else None
    total = rec.timings_ms.get("total")
    return {
        "query_id": rec.query_id,
        "status": rec.status,
        "header": header,
        "confidence": round(rec.confidence, 4),
        "confidence_text": format_percent(rec.confidence),
        "best": best,
        "candidates": candidates,
        "show_candidates": len(top) > 1 or (bool(top) and rec.status == "no_match"),
        "characters": [h.name for h in rec.characters],
        "characters_text": character_text(rec.characters),
        "genres": [g for g, _ in rec.genres[:3]] if rec.status != "match" else [],
        "preview": preview,
        "still": still,
        "annotated": annotated,
        "annotated_alt": annotated_alt,
        "feedback_ranks": n_ranks,
        "tally": FeedbackTally().as_dict(),
        "hint": FEEDBACK_HINT if rec.query_id else None,
        "ms": round(total) if total is not None else None,
    }


def feedback_toast(verdict: Verdict, rank: int | None, withdrawn: bool = False) -> str:
    """The short "thanks" a button press gets (the same words as the Telegram bot)."""
    if withdrawn:
        return "Your vote was taken back."
    if verdict is Verdict.CORRECT:
        return "Thanks! Marked as right ✅"
    if verdict is Verdict.WRONG:
        return "Thanks! Marked as wrong ❌ (tap a number if one of the others is right)"
    return f"Thanks! Noted: it was answer {rank}."


# -- application state ---------------------------------------------------------------------------

@dataclass
class WebContext:
    """What the handlers share (one per application)."""

    service: Any  # core.service.RecognitionService
    sessions: Any
    index_dir: Path
    framestore_dir: Path
    samples_dir: Path | None
    contact_sheets_dir: Path | None
    local_only: bool
    media: MediaTokens = field(default_factory=MediaTokens)
    samples: MediaTokens = field(default_factory=lambda: MediaTokens(256))
    thumbs: dict[str, bytes] = field(default_factory=dict)
    url: str | None = None  # set by run_web once listening


CTX = web.AppKey("anirec_web", WebContext)


def _ctx(request: web.Request) -> WebContext:
    return request.app[CTX]


def json_error(status: int, message: str, *, retry_after: float | None = None
               ) -> web.Response:
    body: dict[str, Any] = {"error": message}
    headers = {}
    if retry_after is not None:
        body["retry_after"] = max(1, math.ceil(retry_after))
        headers["Retry-After"] = retry_after_header(retry_after)
    return web.json_response(body, status=status, headers=headers)


def _wants_json(request: web.Request) -> bool:
    return request.path.startswith(("/api/", "/media/", "/samples/", "/admin/api/"))


def _error_response(request: web.Request, status: int, message: str) -> web.Response:
    if _wants_json(request):
        return json_error(status, message)
    return web.Response(status=status, text=message, content_type="text/plain")


_HTTP_TEXT = {400: "That request was not understood.", 403: "Not allowed from here.",
              404: "Not found.", 405: "Method not allowed.",
              413: "That file is too large."}

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
        return _error_response(request, exc.status, _HTTP_TEXT.get(exc.status, exc.reason))
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # the one catch-all: the user gets a friendly line, the log the trace
        logger.error("web request %s %s failed", request.method, request.path, exc_info=exc)
        return _error_response(request, 500, user_error_text(exc))


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse cross-origin POSTs; keep the operator pages to this machine when local_only."""
    if request.method not in ("GET", "HEAD", "OPTIONS") and not same_origin(
            request.headers.get("Origin"), request.host):
        return _error_response(request, 403, "Cross-site requests are not allowed.")
    if request.path == "/admin" or request.path.startswith("/admin/"):
        ctx = _ctx(request)
        if ctx.local_only and not (is_loopback(request.remote) and is_local_host(request.host)):
            return _error_response(request, 403,
                                   "The operator pages are only available on this machine.")
    return await handler(request)


# -- the chat ------------------------------------------------------------------------------------

class UploadError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _too_large(limit: int) -> UploadError:
    return UploadError(413, f"That file is too large (the limit is {limit / 1e6:.0f} MB).")


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
                        raise UploadError(400, "That request was not understood.")
                    continue
                while chunk := await part.read_chunk(256 * 1024):
                    buf += chunk
                    if len(buf) > limit:
                        raise _too_large(limit)
                break
        except (ValueError, AssertionError, RuntimeError) as exc:
            logger.info("bad multipart upload: %s", exc)
            raise UploadError(400, "That upload could not be read. Please try again.") from None
    else:
        async for chunk in request.content.iter_chunked(256 * 1024):
            buf += chunk
            if len(buf) > limit:
                raise _too_large(limit)
    if not buf:
        raise UploadError(400, "There was no file in that message. Send a picture, GIF or clip.")
    return bytes(buf)


def web_source(request: web.Request) -> Source:
    """The browser-local user (a random id the page keeps in localStorage) in the web chat."""
    uid = request.headers.get(USER_HEADER, "")
    if not _USER_ID.match(uid):
        uid = f"addr:{request.remote or 'unknown'}"
    return Source(platform="web", chat_id=WEB_CHAT_ID, user_id=uid, allow_adult=True)


async def page_index(request: web.Request) -> web.StreamResponse:
    return web.FileResponse(STATIC_DIR / "index.html",
                            headers={"Content-Type": "text/html; charset=utf-8",
                                     "Cache-Control": "no-cache"})


async def api_status(request: web.Request) -> web.Response:
    svc = _ctx(request).service
    return web.json_response({"ready": bool(svc.ready), "max_bytes": svc.limits.max_bytes,
                              "hint": FEEDBACK_HINT})


async def api_identify(request: web.Request) -> web.Response:
    """POST a picture/GIF/clip; answer with the chat bubble's JSON (see `answer_view`)."""
    ctx = _ctx(request)
    svc = ctx.service
    try:
        data = await read_upload(request, svc.limits.max_bytes)
    except UploadError as exc:
        return json_error(exc.status, exc.message)
    try:
        rec = await svc.recognize(data, source=web_source(request), with_preview=True)
    except RateLimited as exc:
        return json_error(429, user_error_text(exc), retry_after=exc.retry_after)
    except Busy as exc:
        return json_error(503, user_error_text(exc), retry_after=exc.retry_after)
    except MediaTooLarge as exc:
        return json_error(413, user_error_text(exc))
    except InvalidMedia as exc:
        return json_error(400, user_error_text(exc))
    except IndexUnavailable as exc:
        return json_error(503, user_error_text(exc), retry_after=30)
    except AniRecError as exc:
        logger.warning("web identify: %s", exc)
        return json_error(400, user_error_text(exc))
    return web.json_response(answer_view(rec, ctx.media))


async def _feedback_body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise UploadError(400, "That request was not understood.") from None
    if not isinstance(body, dict):
        raise UploadError(400, "That request was not understood.")
    return body


def _parse_vote(body: Mapping[str, Any]) -> tuple[str, Verdict, int | None]:
    qid = body.get("query_id")
    if not isinstance(qid, str) or not _QUERY_ID.match(qid):
        raise UploadError(404, "That answer is no longer known.")
    try:
        verdict = Verdict(body.get("verdict"))
    except ValueError:
        raise UploadError(400, "Unknown verdict: use correct, wrong or pick.") from None
    rank = body.get("rank")
    if verdict is Verdict.PICK:
        if isinstance(rank, bool) or not isinstance(rank, int) or not 1 <= rank <= 5:
            raise UploadError(400, "A pick needs a rank from 1 to 5.")
    else:
        rank = None
    return qid, verdict, rank


async def api_feedback(request: web.Request) -> web.Response:
    """POST {query_id, verdict, rank?, withdraw?}: the ✅ ❌ 1–5 buttons."""
    svc = _ctx(request).service
    try:
        body = await _feedback_body(request)
        qid, verdict, rank = _parse_vote(body)
    except UploadError as exc:
        return json_error(exc.status, exc.message)
    source = web_source(request)
    withdraw = bool(body.get("withdraw"))
    try:
        if withdraw:
            await asyncio.get_running_loop().run_in_executor(None, svc.store.get_query, qid)
            tally = await svc.withdraw_feedback(qid, source=source, verdict=verdict, rank=rank)
        else:
            tally = await svc.record_feedback(qid, verdict, source=source, rank=rank)
    except NotFound as exc:
        return json_error(404, user_error_text(exc))
    except ValueError:
        return json_error(400, "That answer does not have that many candidates.")
    return web.json_response({"tally": tally.as_dict(),
                              "message": feedback_toast(verdict, rank, withdraw)})


async def media(request: web.Request) -> web.StreamResponse:
    """A preview clip, still or named-faces picture, by its opaque token."""
    path = _ctx(request).media.resolve(request.match_info["token"])
    if path is None or not path.is_file():
        return json_error(404, "That preview is no longer available.")
    ctype = CONTENT_TYPES.get(path.suffix.lower(), "application/octet-stream")
    return web.FileResponse(path, headers={"Content-Type": ctype,
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
    ctx = _ctx(request)
    files = await asyncio.get_running_loop().run_in_executor(None, _sample_files,
                                                             ctx.samples_dir)
    out = []
    for p in files:
        tok = ctx.samples.token_for(p)
        out.append({"id": tok, "name": p.name, "url": f"/samples/{tok}",
                    "thumb": f"/samples/{tok}/thumb"})
    return web.json_response({"samples": out})


async def sample_full(request: web.Request) -> web.StreamResponse:
    path = _ctx(request).samples.resolve(request.match_info["token"])
    if path is None or not path.is_file():
        return json_error(404, "That example is no longer available.")
    ctype = CONTENT_TYPES.get(path.suffix.lower(), "application/octet-stream")
    return web.FileResponse(path, headers={"Content-Type": ctype, "Cache-Control": "no-cache"})


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
    ctx = _ctx(request)
    tok = request.match_info["token"]
    path = ctx.samples.resolve(tok)
    if path is None or not path.is_file():
        return json_error(404, "That example is no longer available.")
    data = ctx.thumbs.get(tok)
    if data is None:
        try:
            data = await asyncio.get_running_loop().run_in_executor(None, make_thumbnail, path)
        except OSError:
            return json_error(404, "That example cannot be shown.")
        if len(ctx.thumbs) > 512:
            ctx.thumbs.clear()
        ctx.thumbs[tok] = data
    return web.Response(body=data, content_type="image/jpeg",
                        headers={"Cache-Control": "private, max-age=600"})


# -- the operator pages ---------------------------------------------------------------------------

def _e(x: object) -> str:
    return html.escape(str(x), quote=True)


def _when(iso: str | None) -> str:
    if not iso:
        return ""
    try:
        t = dt.datetime.fromisoformat(iso)
    except ValueError:
        return iso
    return t.strftime("%Y-%m-%d %H:%M:%S")


def _bytes(n: float | None) -> str:
    x = float(n or 0)
    for unit in ("B", "KB", "MB", "GB"):
        if x < 1000 or unit == "GB":
            return f"{x:.0f} {unit}" if unit == "B" else f"{x:.1f} {unit}"
        x /= 1000
    return f"{x:.1f} GB"


def stored_candidate_text(c: Mapping[str, Any]) -> str:
    """A stored top-5 entry (queries.top5) as "Title — Episode 3 @ 00:00:12 (87%)"."""
    series = c.get("series") or {}
    title = str(series.get("title") or "?")
    if c.get("is_opening_or_ending"):
        where = "opening/ending"
    else:
        ep = c.get("episode")
        label = f"Episode {ep:g}" if isinstance(ep, (int, float)) else "Movie"
        season = c.get("season")
        if isinstance(season, int) and season > 1:
            label = f"S{season} · {label}"
        where = f"{label} @ {format_timestamp(float(c.get('time') or 0.0))}"
    return f"{title} — {where} ({format_percent(float(c.get('score') or 0.0))})"


def _tally_text(t: Mapping[str, Any] | None) -> str:
    if not t:
        return "—"
    parts = []
    if t.get("correct"):
        parts.append(f"✅ {t['correct']}")
    if t.get("wrong"):
        parts.append(f"❌ {t['wrong']}")
    for i, n in enumerate(t.get("picks") or ()):
        if n:
            parts.append(f"#{i + 1}: {n}")
    return " · ".join(parts) or "—"


def _dl(pairs: Iterable[tuple[str, object]]) -> str:
    return "<dl class='facts'>" + "".join(
        f"<div><dt>{_e(k)}</dt><dd>{_e(v)}</dd></div>" for k, v in pairs) + "</dl>"


def _contact_sheets(folder: Path | None) -> list[str]:
    if folder is None or not folder.is_dir():
        return []
    try:
        return sorted(p.name for p in folder.iterdir()
                      if p.is_file() and p.suffix.lower() in SHEET_SUFFIXES)
    except OSError:
        return []


def render_admin(status: Mapping[str, Any], stats: Mapping[str, Any],
                 recent: list[dict[str, Any]], wrong: list[dict[str, Any]],
                 operator_picks: Mapping[str, int], sheets: list[str] | None) -> str:
    """The operator page as HTML (every value escaped; no file paths)."""
    idx = status.get("index") or {}
    library = _dl([
        ("Series", status.get("series", 0)),
        ("Episodes indexed", status.get("episodes", 0)),
        ("Episodes failed / pending",
         f"{status.get('episodes_failed', 0)} / {status.get('episodes_pending', 0)}"),
        ("Frames", status.get("frames", 0)),
        ("Video hours", f"{float(status.get('video_hours') or 0):.2f}"),
        ("Index", f"{idx.get('count', 0)} vectors, version {idx.get('version', '—')}, "
                  f"{_bytes(idx.get('bytes'))}" if idx else "not built yet"),
        ("Embedder", idx.get("embedder", "—") if idx else "—"),
        ("Frame store", _bytes(status.get("framestore_bytes"))),
        ("Models", ", ".join(f"{k}: {v}" for k, v in (status.get("models") or {}).items()) or "—"),
    ])
    series_rows = "".join(
        f"<tr><td>{_e(s['title'])}</td><td class='num'>{_e(s['episodes'])}</td>"
        f"<td class='num'>{_e(s['frames'])}</td></tr>"
        for s in status.get("series_list") or [])
    service = _dl([
        ("Ready", "yes" if stats.get("ready") else "no (index not loaded)"),
        ("Model / index",
         f"{stats.get('model_version') or '—'} / {stats.get('index_version') or '—'}"),
        ("Queries (24 h)", f"{stats.get('queries', 0)} ({stats.get('queries_24h', 0)})"),
        ("Active feedback", stats.get("feedback", 0)),
        ("Marked wrong", stats.get("marked_wrong", 0)),
        ("Mean latency", f"{float(stats.get('mean_latency_ms') or 0):.0f} ms"),
        ("Served since start", stats.get("served_since_start", 0)),
        ("Queue", stats.get("queue", 0)),
    ])

    wrong_html = []
    for q in wrong:
        picked = operator_picks.get(q["id"])
        items = []
        for i, c in enumerate(q.get("top5") or []):
            rank = i + 1
            cls = " class='picked'" if picked == rank else ""
            label = "Picked ✔" if picked == rank else "This one"
            items.append(
                f"<li{cls}><span>{_e(stored_candidate_text(c))}</span>"
                f"<button type='button' class='pick' data-qid='{_e(q['id'])}' "
                f"data-rank='{rank}'>{label}</button></li>")
        wrong_html.append(
            f"<article class='card' id='q-{_e(q['id'])}'><header><code>{_e(q['id'])}</code> · "
            f"{_e(_when(q.get('created_at')))} · {_e(q.get('platform'))} · {_e(q.get('status'))} "
            f"{_e(format_percent(float(q.get('confidence') or 0)))} · votes: "
            f"{_e(_tally_text(q.get('tally')))}</header>"
            f"<ol class='cands'>{''.join(items) or '<li>No candidates were shown.</li>'}</ol>"
            "</article>")

    recent_rows = []
    for q in recent:
        top = (q.get("top5") or [None])[0]
        answer = stored_candidate_text(top) if top else "—"
        recent_rows.append(
            f"<tr><td>{_e(_when(q.get('created_at')))}</td><td><code>{_e(q['id'])}</code></td>"
            f"<td>{_e(q.get('platform'))}</td><td>{_e(q.get('status'))} "
            f"{_e(format_percent(float(q.get('confidence') or 0)))}</td>"
            f"<td>{_e(answer)}</td><td>{_e(_tally_text(q.get('tally')))}</td>"
            f"<td class='num'>{float(q.get('latency_ms') or 0):.0f} ms</td></tr>")

    if sheets is None:
        sheets_html = ("<p class='muted'>Character contact sheets appear here after "
                       "<code>anirec characters discover SERIES</code>; name a cluster with "
                       "<code>anirec characters name CLUSTER NAME</code>.</p>")
    elif not sheets:
        sheets_html = "<p class='muted'>The contact-sheets folder is empty.</p>"
    else:
        links = "".join(f"<li><a href='/admin/contact-sheets/{_e(n)}'>{_e(n)}</a></li>"
                        for n in sheets)
        sheets_html = f"<ul class='sheets'>{links}</ul>"

    no_series = ("<tr><td colspan='3' class='muted'>Nothing indexed yet: run "
                 "<code>anirec index</code>.</td></tr>")
    no_queries = "<tr><td colspan='7' class='muted'>No queries yet.</td></tr>"
    no_wrong = "<p class='muted'>Nothing marked wrong. 🎉</p>"
    recent_head = "".join(f"<th{' class=num' if h == 'Latency' else ''}>{h}</th>" for h in (
        "When (UTC)", "Query", "Platform", "Answer", "Top candidate", "Feedback", "Latency"))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>AniRec · operator</title>
<link rel="stylesheet" href="/static/style.css">
<script src="/static/admin.js" defer></script>
</head><body class="admin">
<header class="topbar">
<div class="brand"><span class="logo">◉</span> AniRec <span class="muted">operator</span></div>
<nav><a href="/">Chat</a></nav></header>
<main class="admin-main">
<section><h2>Service</h2>{service}</section>
<section><h2>Library</h2>{library}
<table class="grid"><thead><tr>
<th>Series</th><th class="num">Episodes</th><th class="num">Frames</th></tr></thead>
<tbody>{series_rows or no_series}</tbody></table></section>
<section id="wrong"><h2>Wrong answers <span class="count">{len(wrong)}</span></h2>
<p class="muted">Answers someone marked ❌ or corrected. Pick the right candidate: it is stored
as your feedback (a corrected label for retraining).</p>
{''.join(wrong_html) or no_wrong}</section>
<section id="recent"><h2>Recent queries</h2>
<div class="scroll"><table class="grid"><thead><tr>{recent_head}</tr></thead>
<tbody>{''.join(recent_rows) or no_queries}</tbody></table></div></section>
<section id="characters"><h2>Character contact sheets</h2>{sheets_html}</section>
</main></body></html>"""


def _admin_data(ctx: WebContext) -> tuple[dict[str, Any], list[dict[str, Any]],
                                          list[dict[str, Any]], dict[str, int]]:
    from core.status import library_status

    status = library_status(ctx.sessions, ctx.index_dir, ctx.framestore_dir)
    store = ctx.service.store
    recent = store.recent(50)
    wrong = store.wrong_answers(50)
    me = store.hash_id(OPERATOR.platform, OPERATOR.user_id)[:12]
    picks: dict[str, int] = {}
    for q in wrong:
        for f in store.active_feedback(q["id"]):
            if f["user"] == me and f["verdict"] == Verdict.PICK.value and f["rank"]:
                picks[q["id"]] = int(f["rank"])
    return status, recent, wrong, picks


async def admin_page(request: web.Request) -> web.Response:
    ctx = _ctx(request)
    loop = asyncio.get_running_loop()
    status, recent, wrong, picks = await loop.run_in_executor(None, _admin_data, ctx)
    stats = await ctx.service.stats()
    sheets_dir = ctx.contact_sheets_dir
    sheets = _contact_sheets(sheets_dir) if sheets_dir is not None and sheets_dir.is_dir() else None
    page = render_admin(status, stats, recent, wrong, picks, sheets)
    # Belt and braces: the operator's own folders never appear, even inside a version string.
    for folder in {ctx.index_dir.parent.resolve(), ctx.index_dir.parent}:
        if folder.is_absolute() and len(folder.parts) > 1:
            page = page.replace(str(folder), "…")
    return web.Response(text=page, content_type="text/html",
                        headers={"Cache-Control": "no-store"})


async def admin_pick(request: web.Request) -> web.Response:
    """POST {query_id, rank}: the operator says which candidate was right."""
    if request.headers.get(ADMIN_HEADER) != "1":
        return json_error(403, "Operator actions need the operator page.")
    svc = _ctx(request).service
    try:
        body = await _feedback_body(request)
        qid, _, rank = _parse_vote({**body, "verdict": Verdict.PICK.value})
    except UploadError as exc:
        return json_error(exc.status, exc.message)
    try:
        tally = await svc.record_feedback(qid, Verdict.PICK, source=OPERATOR, rank=rank)
    except NotFound as exc:
        return json_error(404, user_error_text(exc))
    except ValueError:
        return json_error(400, "That answer does not have that many candidates.")
    return web.json_response({"tally": tally.as_dict(), "message": f"Recorded: answer {rank}."})


async def admin_sheet(request: web.Request) -> web.StreamResponse:
    ctx = _ctx(request)
    name = request.match_info["name"]
    if name not in _contact_sheets(ctx.contact_sheets_dir):
        return _error_response(request, 404, "Not found.")
    assert ctx.contact_sheets_dir is not None
    path = ctx.contact_sheets_dir / name
    return web.FileResponse(path, headers={
        "Content-Type": CONTENT_TYPES.get(path.suffix.lower(), "application/octet-stream")})


# -- assembly -------------------------------------------------------------------------------------

def build_web_app(service: Any, *, sessions: Any, index_dir: Path, framestore_dir: Path,
                  samples_dir: Path | None = None, local_only: bool = True,
                  contact_sheets_dir: Path | None = None) -> web.Application:
    """The web chat and operator pages over a started `RecognitionService`.

    Args:
        service: the shared recognition service (the bots' one).
        sessions: the catalog's SQLAlchemy sessionmaker (library status).
        index_dir: the vector index folder (status; its parent is the home folder).
        framestore_dir: the frame store folder (status).
        samples_dir: a folder of example screenshots (jpg/png/gif) offered on the chat page.
        local_only: answer /admin only for loopback clients under a loopback host name.
        contact_sheets_dir: character contact sheets (default `<home>/contact-sheets`).

    Returns:
        The aiohttp application (not started; see `run_web`).
    """
    index_dir = Path(index_dir)
    ctx = WebContext(service=service, sessions=sessions, index_dir=index_dir,
                     framestore_dir=Path(framestore_dir),
                     samples_dir=Path(samples_dir) if samples_dir is not None else None,
                     contact_sheets_dir=(Path(contact_sheets_dir) if contact_sheets_dir is not None
                                         else index_dir.parent / "contact-sheets"),
                     local_only=local_only)
    app = web.Application(middlewares=[security_headers, friendly_errors, guard],
                          client_max_size=1024 * 1024)
    app[CTX] = ctx
    app.router.add_get("/", page_index)
    app.router.add_get("/api/status", api_status)
    app.router.add_post("/api/identify", api_identify)
    app.router.add_post("/api/feedback", api_feedback)
    app.router.add_get("/api/samples", api_samples)
    app.router.add_get("/media/{token}", media)
    app.router.add_get("/samples/{token}", sample_full)
    app.router.add_get("/samples/{token}/thumb", sample_thumb)
    app.router.add_get("/admin", admin_page)
    app.router.add_post("/admin/api/pick", admin_pick)
    app.router.add_get("/admin/contact-sheets/{name}", admin_sheet)
    app.router.add_static("/static/", STATIC_DIR, show_index=False, follow_symlinks=False,
                          append_version=False)
    return app


async def run_web(app: web.Application, host: str, port: int, stop: asyncio.Event) -> None:
    """Serve `app` on host:port until `stop` is set (port 0 picks a free port).

    The address it listens on is logged and kept in the app's context (`app[CTX].url`).
    """
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
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
        if ctx.local_only and not is_loopback(host) and host != "localhost":
            logger.warning("the web chat listens on %s; the operator pages still answer only "
                           "this machine", host)
        await stop.wait()
    finally:
        await runner.cleanup()
