"""Link downloads: only the platforms' media hosts unless the operator allows links, and then
never loopback, private, link-local or metadata addresses, redirects and DNS answers included."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

import bot.chat.fetch as fetch
from bot.chat.fetch import DownloadFailed, LinkFetcher, _public

PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 64


@pytest.mark.parametrize("addr", [
    "127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1", "0.0.0.0",
    "::1", "fe80::1", "fd00::1", "::ffff:127.0.0.1", "::ffff:169.254.169.254", "64:ff9b::a9fe:a9fe",
    "2002:7f00:1::", "::127.0.0.1", "[::1]", "fe80::1%eth0", "192.0.0.171", "198.18.0.1",
])
def test_non_public_addresses(addr: str) -> None:
    assert not _public(addr)


@pytest.mark.parametrize("addr", ["8.8.8.8", "2001:4860:4860::8888", "1.1.1.1"])
def test_public_addresses(addr: str) -> None:
    assert _public(addr)


@pytest.mark.parametrize("url", [
    "http://169.254.169.254/latest/meta-data/x.png", "http://[::ffff:127.0.0.1]/a.png",
    "http://[64:ff9b::a9fe:a9fe]/a.png", "http://10.0.0.1/a.png", "http://0x7f000001/a.png",
    "http://2130706433/a.png", "http://user:pw@example.com/a.png", "file:///etc/passwd",
])
async def test_operator_allowed_links_still_refuse_internal_targets(url: str) -> None:
    f = LinkFetcher(hosts=None)
    try:
        with pytest.raises(DownloadFailed):
            await f.fetch(url, 1_000_000)
    finally:
        await f.close()


async def test_default_fetches_only_from_the_platform_hosts() -> None:
    f = LinkFetcher()
    try:
        with pytest.raises(DownloadFailed, match="platform's own servers"):
            await f.fetch("https://example.com/shot.png", 1_000_000)
        with pytest.raises(DownloadFailed, match="platform's own servers"):
            await f.fetch("https://cdn.discordapp.com.evil.example/a.png", 1_000_000)
        f.check_url(fetch.yarl.URL("https://cdn.discordapp.com/attachments/1/2/a.png"))  # allowed
        f.check_url(fetch.yarl.URL("https://media.discordapp.net/attachments/1/2/a.png"))
    finally:
        await f.close()


async def test_a_name_resolving_to_loopback_is_refused() -> None:
    f = LinkFetcher(hosts=None)
    try:
        with pytest.raises(DownloadFailed):
            await f.fetch("http://localhost:9/a.png", 1_000_000)
    finally:
        await f.close()


@pytest.fixture()
async def redirector() -> AsyncIterator[str]:
    async def image(_r: web.Request) -> web.Response:
        return web.Response(body=PNG, content_type="image/png")

    def to(target: str):  # noqa: ANN202
        async def h(r: web.Request) -> web.Response:
            raise web.HTTPFound(target.format(port=r.url.port))
        return h

    app = web.Application()
    app.router.add_get("/image.png", image)
    app.router.add_get("/to-metadata.png", to("http://169.254.169.254/latest/meta-data/"))
    app.router.add_get("/to-other-host.png", to("http://localhost:{port}/image.png"))
    app.router.add_get("/to-image.png", to("http://127.0.0.1:{port}/image.png"))
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    base = f"http://127.0.0.1:{server.port}"
    yield base
    await server.close()


async def test_redirects_are_checked_hop_by_hop(redirector: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # The test server is on 127.0.0.1: let exactly that address count as "public" here.
    monkeypatch.setattr(fetch, "_public", lambda h: h == "127.0.0.1")
    f = LinkFetcher(hosts=frozenset({"127.0.0.1"}))
    try:
        assert await f.fetch(f"{redirector}/to-image.png", 1_000_000) == PNG
        with pytest.raises(DownloadFailed):
            await f.fetch(f"{redirector}/to-metadata.png", 1_000_000)
        with pytest.raises(DownloadFailed, match="platform's own servers"):
            await f.fetch(f"{redirector}/to-other-host.png", 1_000_000)
    finally:
        await f.close()
