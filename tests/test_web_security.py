"""Web chat security: server-signed identity (no forged votes), Host checks against DNS
rebinding, the operator token, per-user and per-address limits, slow uploads timed out."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from bot.web import CTX, build_web_app
from bot.web_identity import NEW_IDS_PER_ADDRESS, Identities
from core.service import SlidingWindow


@web.middleware
async def forge_remote(request: web.Request, handler: Any) -> web.StreamResponse:
    """Tests only: pretend the peer is X-Test-Remote."""
    if "X-Test-Remote" in request.headers:
        request = request.clone(remote=request.headers["X-Test-Remote"])
    return await handler(request)


@pytest.fixture()
async def make_client(make_service: Callable[..., Any], indexed_home: Any
                      ) -> AsyncIterator[Callable[..., Any]]:
    clients: list[TestClient] = []

    async def factory(*, service: Any = None, **kw: Any) -> TestClient:
        svc = service if service is not None else await make_service()
        st = indexed_home.settings
        app = build_web_app(svc, sessions=indexed_home.app.sessions, index_dir=st.index_dir,
                            framestore_dir=st.framestore_dir, secret=b"k" * 32, **kw)
        app.middlewares.insert(0, forge_remote)
        client = TestClient(TestServer(app, host="127.0.0.1"))
        await client.start_server()
        clients.append(client)
        return client

    yield factory
    for c in clients:
        await c.close()


async def identify(client: TestClient, png: bytes, *, cookie: str | None = None,
                   headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any], str | None]:
    client.session.cookie_jar.clear()
    form = aiohttp.FormData()
    form.add_field("file", png, filename="shot.png", content_type="image/png")
    h = dict(headers or {})
    if cookie:
        h["Cookie"] = f"anirec_uid={cookie}"
    resp = await client.post("/api/identify", data=form, headers=h)
    body = await resp.json()
    got = resp.cookies["anirec_uid"].value if "anirec_uid" in resp.cookies else cookie
    return resp.status, body, got


async def vote(client: TestClient, qid: str, verdict: str = "wrong", *, cookie: str | None = None,
               headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    client.session.cookie_jar.clear()
    h = dict(headers or {})
    if cookie:
        h["Cookie"] = f"anirec_uid={cookie}"
    resp = await client.post("/api/feedback", json={"query_id": qid, "verdict": verdict}, headers=h)
    return resp.status, await resp.json()


async def test_fifty_invented_identities_cannot_vote_on_one_answer(make_client: Any, indexed_home: Any) -> None:
    client = await make_client()
    status, view, cookie = await identify(client, indexed_home.frame_png(0, 8.0))
    assert status == 200 and cookie
    qid = view["query_id"]
    refused = 0
    for i in range(50):
        st, _ = await vote(client, qid, headers={"X-AniRec-User": f"invented-identity-{i:04d}xx"})
        refused += st == 403
    forged = Identities(b"another key" * 3).sign("a" * 24)
    st, _ = await vote(client, qid, cookie=forged)
    refused += st == 403
    assert refused == 51
    st, out = await vote(client, qid, cookie=cookie)  # the asker
    assert st == 200 and out["tally"]["wrong"] == 1
    st, out = await vote(client, qid, cookie=cookie)  # again: replaces, still one vote
    assert out["tally"]["wrong"] == 1


async def test_identities_are_rationed_per_address(make_client: Any) -> None:
    client = await make_client()
    issued = set()
    for _ in range(NEW_IDS_PER_ADDRESS + 10):
        client.session.cookie_jar.clear()
        resp = await client.get("/api/status", headers={"X-Test-Remote": "198.51.100.7"})
        if "anirec_uid" in resp.cookies:
            issued.add(resp.cookies["anirec_uid"].value)
    assert len(issued) == NEW_IDS_PER_ADDRESS


@pytest.mark.parametrize("path,method", [("/", "GET"), ("/api/status", "GET"), ("/api/identify", "POST"),
                                         ("/api/feedback", "POST"), ("/admin", "GET")])
async def test_foreign_host_names_are_refused(make_client: Any, path: str, method: str) -> None:
    client = await make_client()
    resp = await client.request(method, path, headers={"Host": "rebind.attacker.example:8765"})
    assert resp.status == 403


async def test_ip_and_configured_host_names_are_answered(make_client: Any) -> None:
    client = await make_client(allowed_hosts=frozenset({"anirec.example.org"}))
    for host in ("127.0.0.1:1", "localhost", "[::1]:8765", "192.0.2.4", "anirec.example.org"):
        assert (await client.get("/api/status", headers={"Host": host})).status == 200, host
    assert (await client.get("/api/status", headers={"Host": "evil.example.org"})).status == 403


async def test_operator_pages_need_the_token_from_elsewhere(make_client: Any) -> None:
    client = await make_client(admin_token="s3cret-token-value")
    far = {"X-Test-Remote": "203.0.113.9"}
    assert (await client.get("/admin", headers=far)).status == 403
    assert (await client.post("/admin/api/pick", json={"query_id": "x", "rank": 1}, headers=far)).status == 403
    bad = {**far, "Authorization": "Bearer wrong"}
    assert (await client.get("/admin", headers=bad)).status == 403
    ok = {**far, "Authorization": "Bearer s3cret-token-value"}
    assert (await client.get("/admin", headers=ok)).status == 200
    client.session.cookie_jar.clear()
    resp = await client.get("/admin?token=s3cret-token-value", headers=far, allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == "/admin"
    assert resp.cookies["anirec_admin"]["httponly"]
    assert (await client.get("/admin", headers=far)).status == 200  # the cookie now
    assert (await client.get("/admin")).status == 200  # this machine needs no token


async def test_operator_pages_without_a_token_answer_this_machine_only(make_client: Any) -> None:
    client = await make_client()
    assert (await client.get("/admin", headers={"X-Test-Remote": "203.0.113.9",
                                                "Authorization": "Bearer "})).status == 403


async def test_per_address_limit_is_not_shared_and_cannot_be_bypassed(make_client: Any, make_service: Any,
                                                                      indexed_home: Any) -> None:
    svc = await make_service()
    svc._chat_rate = SlidingWindow(3)
    client = await make_client(service=svc)
    png = indexed_home.frame_png(0, 8.0)
    statuses = []
    for i in range(5):  # no cookie kept, a new invented header each time: the address still counts
        st, _, _ = await identify(client, png, headers={"X-Test-Remote": "198.51.100.20",
                                                        "X-AniRec-User": f"fresh-identity-{i:05d}"})
        statuses.append(st)
    assert statuses == [200, 200, 200, 429, 429]
    st, _, _ = await identify(client, png, headers={"X-Test-Remote": "198.51.100.21"})
    assert st == 200  # another web user is not held up by the first one's flood


async def _trickle(port: int, hold: asyncio.Event) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"POST /api/identify HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\n"
                 b"Content-Length: 100000\r\n\r\n\x89PNG")
    await writer.drain()
    try:
        while not hold.is_set():
            writer.write(b"\0")
            await writer.drain()
            try:
                return await asyncio.wait_for(reader.read(4096), 0.05)
            except TimeoutError:
                continue
        return b""
    finally:
        writer.close()


async def test_slow_uploads_are_timed_out_and_bounded(make_client: Any) -> None:
    client = await make_client(upload_timeout=0.5)
    client.server.app[CTX].uploads = asyncio.Semaphore(2)
    hold = asyncio.Event()
    port = client.server.port
    slow = [asyncio.create_task(_trickle(port, hold)) for _ in range(2)]
    await asyncio.sleep(0.2)
    third = await _trickle_once(port)
    assert b" 503 " in third.split(b"\r\n", 1)[0]  # the upload slots are full: busy, at once
    answers = await asyncio.gather(*slow)
    hold.set()
    assert all(b" 408 " in a.split(b"\r\n", 1)[0] for a in answers)
    assert (await client.get("/api/status")).status == 200


async def _trickle_once(port: int) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"POST /api/identify HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\n"
                 b"Content-Length: 100000\r\n\r\n\x89PNG")
    await writer.drain()
    data = await reader.read(4096)
    writer.close()
    return data
