"""Who is asking the web chat, and whether they may: the signed identity cookie, the Host
check against DNS rebinding, the operator token, and the slow-upload guard.

- **Identity** is a random id the server issues in an HttpOnly, SameSite=Strict cookie signed
  with HMAC-SHA256 (`anirec_uid=<id>.<mac>`); a client cannot choose or forge one, so one browser
  cannot vote as another. The old client-chosen `X-AniRec-User` header is ignored. New ids are
  rationed per address (`NEW_IDS_PER_ADDRESS` per 10 minutes), so clearing cookies in a loop does
  not mint identities: past the ration a request counts as its address.
- **Host**: a request must name this server by an IP literal, a loopback name, or a name in
  ANIREC_WEB_ALLOWED_HOSTS; a page on another domain that re-points its DNS at us (rebinding)
  sends its own name and is refused.
- **Operator pages** (/admin, /admin/api/*): loopback clients under a loopback host name as
  before; anyone else needs ANIREC_WEB_ADMIN_TOKEN (`Authorization: Bearer <token>`, or the
  HttpOnly cookie set by visiting `/admin?token=<token>` once).
- **Uploads** must arrive within ANIREC_WEB_UPLOAD_TIMEOUT seconds, and at most
  `MAX_CONCURRENT_UPLOADS` are read at once (the rest are told the chat is busy), so trickling
  connections cannot hold the server.
"""

from __future__ import annotations

import collections
import hashlib
import hmac
import ipaddress
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from aiohttp import web

COOKIE = "anirec_uid"
ADMIN_COOKIE = "anirec_admin"
REQUEST_KEY = web.RequestKey("anirec_uid", str)
NEW_IDS_PER_ADDRESS = 20
NEW_ID_WINDOW_S = 600.0
MAX_CONCURRENT_UPLOADS = 32
COOKIE_MAX_AGE = 400 * 24 * 3600


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name.strip("[]").split("%", 1)[0])
    except ValueError:
        return False
    return True


def host_name(host: str | None) -> str:
    """The name part of a Host header, lower-case, without port or trailing dot ('' if bad)."""
    if not host:
        return ""
    try:
        return (urlsplit(f"//{host}").hostname or "").rstrip(".").lower()
    except ValueError:
        return ""


def host_allowed(host: str | None, allowed: frozenset[str]) -> bool:
    """An IP literal, localhost (or *.localhost), or a configured name."""
    name = host_name(host)
    if not name:
        return False
    return _is_ip(name) or name == "localhost" or name.endswith(".localhost") or name in allowed


@dataclass
class Identities:
    """Issues and checks the signed identity cookies."""

    secret: bytes
    _issued: dict[str, collections.deque[float]] = field(default_factory=dict)

    def sign(self, uid: str) -> str:
        mac = hmac.new(self.secret, f"web-uid:{uid}".encode(), hashlib.sha256).hexdigest()[:32]
        return f"{uid}.{mac}"

    def verify(self, cookie: str | None) -> str | None:
        """The id in a cookie this server signed, else None."""
        if not cookie or cookie.count(".") != 1:
            return None
        uid, _ = cookie.split(".")
        if not (16 <= len(uid) <= 64) or not uid.replace("-", "").replace("_", "").isalnum():
            return None
        return uid if hmac.compare_digest(self.sign(uid), cookie) else None

    def may_issue(self, address: str, now: float | None = None) -> bool:
        """Whether `address` may get one more new id now (and count it)."""
        now = time.monotonic() if now is None else now
        q = self._issued.setdefault(address, collections.deque())
        while q and now - q[0] > NEW_ID_WINDOW_S:
            q.popleft()
        if len(q) >= NEW_IDS_PER_ADDRESS:
            return False
        q.append(now)
        if len(self._issued) > 50_000:
            for k in [k for k, v in self._issued.items() if not v or now - v[-1] > NEW_ID_WINDOW_S]:
                self._issued.pop(k, None)
        return True


def request_uid(request: web.Request) -> str:
    """The caller's identity: the signed cookie's id, else their address."""
    uid = request.get(REQUEST_KEY)
    return str(uid) if uid else f"addr:{request.remote or 'unknown'}"


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Middleware = Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]


def identity_middleware(ids: Identities) -> Middleware:
    """Attach the caller's id to the request; issue a signed cookie to a new browser."""

    @web.middleware
    async def identity(request: web.Request, handler: Handler) -> web.StreamResponse:
        uid = ids.verify(request.cookies.get(COOKIE))
        new = None
        if uid is None and ids.may_issue(request.remote or "unknown"):
            uid = new = secrets.token_urlsafe(18)
        if uid is not None:
            request[REQUEST_KEY] = uid
        resp = await handler(request)
        if new is not None and isinstance(resp, web.StreamResponse) and not resp.prepared:
            resp.set_cookie(COOKIE, ids.sign(new), max_age=COOKIE_MAX_AGE, httponly=True,
                            samesite="Strict", path="/", secure=request.secure)
        return resp

    return identity


def admin_token_ok(request: web.Request, token: str | None) -> bool:
    """The request carries the operator token (header or cookie), compared in constant time."""
    if not token:
        return False
    auth = request.headers.get("Authorization", "")
    given = auth[7:] if auth.startswith("Bearer ") else request.cookies.get(ADMIN_COOKIE, "")
    given = given or request.query.get("token", "")
    return bool(given) and hmac.compare_digest(given.encode(), token.encode())
