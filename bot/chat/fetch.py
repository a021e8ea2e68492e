"""Safe link downloads for the chat front ends: http(s) only, a total timeout, a streamed
size cap, the content type checked, redirects followed by hand (each hop checked again), and
by default only public addresses, checked on the addresses actually connected to."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from dataclasses import dataclass

import aiohttp
import yarl
from aiohttp.abc import AbstractResolver, ResolveResult

from bot.chat.media import fetchable_type
from bot.chat.texts import said, too_large
from core.errors import AniRecError, UnsupportedMedia

logger = logging.getLogger(__name__)

_REDIRECTS = frozenset({301, 302, 303, 307, 308})


@dataclass(frozen=True)
class FetchParams:
    """Limits of one link download."""

    #: Total seconds for the whole download, redirects included.
    timeout_s: float = 10.0
    #: Redirects followed before giving up.
    max_redirects: int = 3
    #: Bytes read per chunk while streaming (the size cap is checked after each).
    chunk_bytes: int = 64 * 1024
    #: Connections the fetcher keeps open at once.
    connections: int = 16


class DownloadFailed(AniRecError):
    """The file or link could not be fetched (timeout, HTTP error, not an image)."""

    user_message = "I couldn't download that picture. Try again, or attach the file itself."
    i18n_key = "error.download"


_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")
_IPV4_COMPAT = ipaddress.ip_network("::/96")
#: Where the platforms serve attachments; links elsewhere need ANIREC_ALLOW_LINK_DOWNLOADS.
PLATFORM_MEDIA_HOSTS = frozenset({"cdn.discordapp.com", "media.discordapp.net"})


def _public(host: str) -> bool:
    """A globally routable address; IPv6 forms that carry an IPv4 address (mapped,
    compatible, 6to4, NAT64) are judged by the IPv4 address inside."""
    try:
        ip = ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        inner = ip.ipv4_mapped or ip.sixtofour
        if inner is None and (ip in _NAT64 or ip in _IPV4_COMPAT):
            inner = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if ip in _NAT64_LOCAL:
            return False
        if inner is not None:
            return inner.is_global
    return ip.is_global


def host_allowed(host: str, hosts: frozenset[str] | None) -> bool:
    """`host` is one of `hosts` or a subdomain of one (None: any host)."""
    if hosts is None:
        return True
    name = host.rstrip(".").lower()
    return any(name == h or name.endswith("." + h) for h in hosts)


class PublicResolver(AbstractResolver):
    """A resolver that only returns public addresses, so a posted link cannot make the bot
    fetch from the operator's own network (checked on the addresses actually connected to,
    so DNS rebinding does not get around it)."""

    def __init__(self) -> None:
        self._inner = aiohttp.ThreadedResolver()

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        found = await self._inner.resolve(host, port, family)
        ok = [r for r in found if _public(r["host"])]
        if not ok:
            raise OSError(f"{host} does not resolve to a public address")
        return ok

    async def close(self) -> None:
        await self._inner.close()


class LinkFetcher:
    """Downloads media links: http(s) only, a total timeout, a streamed size cap."""

    def __init__(self, *, timeout: float | None = None, allow_private: bool = False,
                 max_redirects: int | None = None, params: FetchParams = FetchParams(),
                 hosts: frozenset[str] | None = PLATFORM_MEDIA_HOSTS) -> None:
        """`hosts`: the only hosts links may point at (redirects included); None: any public
        host (the operator allowed links). `allow_private` (tests only) lifts every check."""
        self.timeout = params.timeout_s if timeout is None else timeout
        self.max_redirects = params.max_redirects if max_redirects is None else max_redirects
        self.allow_private = allow_private
        self.hosts = None if allow_private else hosts
        self.params = params
        self._session: aiohttp.ClientSession | None = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=self.params.connections,
                resolver=None if self.allow_private else PublicResolver())
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=aiohttp.ClientTimeout(total=self.timeout),
                headers={"User-Agent": "AniRec (self-hosted anime recognition bot)"})
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def check_url(self, url: yarl.URL) -> None:
        """Only http(s) URLs with a host; literal IPs must be public (unless allowed)."""
        if url.scheme not in ("http", "https") or not url.host:
            raise said(DownloadFailed, "error.link_scheme")
        if url.user or url.password:
            raise said(DownloadFailed, "error.link_login")
        if not host_allowed(url.host.strip("[]"), self.hosts):
            raise said(DownloadFailed, "error.link_host")
        if not self.allow_private:
            host = url.host.strip("[]")
            try:
                ipaddress.ip_address(host.split("%", 1)[0])
            except ValueError:
                return  # a name: PublicResolver checks what it resolves to
            if not _public(host):
                raise said(DownloadFailed, "error.link_address")

    async def fetch(self, url: str, limit: int) -> bytes:
        """The bytes at `url` (at most `limit`), following up to `max_redirects` redirects.

        Raises:
            DownloadFailed: bad scheme or address, HTTP error, timeout, a web page.
            MediaTooLarge: more than `limit` bytes (declared or streamed).
        """
        try:
            async with asyncio.timeout(self.timeout):
                return await self._fetch(yarl.URL(url), limit)
        except TimeoutError:
            raise said(DownloadFailed, "error.link_slow") from None
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            logger.info("link download failed: %s: %s", type(exc).__name__, exc)
            raise DownloadFailed() from None

    async def _fetch(self, url: yarl.URL, limit: int) -> bytes:
        session = self._get_session()
        for _ in range(self.max_redirects + 1):
            self.check_url(url)
            async with session.get(url, allow_redirects=False) as resp:
                if resp.status in _REDIRECTS:
                    location = resp.headers.get("Location")
                    if not location:
                        raise DownloadFailed()
                    url = url.join(yarl.URL(location))
                    continue
                return await self._body(resp, limit)
        raise said(DownloadFailed, "error.link_redirects")

    async def _body(self, resp: aiohttp.ClientResponse, limit: int) -> bytes:
        if resp.status != 200:
            raise said(DownloadFailed, "error.link_status", status=resp.status)
        ctype = (resp.content_type or "").lower()
        if not fetchable_type(ctype):
            raise said(UnsupportedMedia, "error.link_type", type=ctype or "?")
        if resp.content_length is not None and resp.content_length > limit:
            raise too_large(resp.content_length, limit)
        buf = bytearray()
        async for chunk in resp.content.iter_chunked(self.params.chunk_bytes):
            buf += chunk
            if len(buf) > limit:
                raise too_large(len(buf), limit)
        return bytes(buf)
