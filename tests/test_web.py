"""The local web chat and operator pages: real service, real aiohttp server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import func, select

from bot.web import (
    CTX,
    build_web_app,
    is_local_host,
    is_loopback,
    run_web,
    same_origin,
)
from bot.web_render import MediaTokens
from core.db.models import Feedback, Query
from core.errors import MediaTooLarge
from core.media import MediaLimits
from core.types import Candidate, CharacterHit, Recognition, SeriesInfo

USER_A = "userAAAAAAAAAAAAAAAAAA"
USER_B = "userBBBBBBBBBBBBBBBBBB"


class Web:
    """A test client that remembers every body it received (for the no-paths check)."""

    def __init__(self, client: TestClient, service: Any) -> None:
        self.client = client
        self.service = service
        self.bodies: list[bytes] = []
        self.cookies: dict[str, str] = {}  # each test user's identity cookie (one browser each)

    async def request(self, method: str, path: str, *, as_user: str | None = None, **kw: Any
                      ) -> tuple[aiohttp.ClientResponse, bytes]:
        self.client.session.cookie_jar.clear()
        if as_user is not None and as_user in self.cookies:
            kw["headers"] = {**kw.get("headers", {}), "Cookie": f"anirec_uid={self.cookies[as_user]}"}
        resp = await self.client.request(method, path, **kw)
        body = await resp.read()
        if as_user is not None and "anirec_uid" in resp.cookies:
            self.cookies[as_user] = resp.cookies["anirec_uid"].value
        self.bodies.append(body)
        return resp, body

    async def identify(self, data: bytes, *, user: str = USER_A, name: str = "shot.png",
                       ctype: str = "image/png") -> tuple[aiohttp.ClientResponse, Any]:
        form = aiohttp.FormData()
        form.add_field("file", data, filename=name, content_type=ctype)
        resp, _ = await self.request("POST", "/api/identify", data=form, as_user=user)
        return resp, await resp.json()

    async def vote(self, qid: str, verdict: str, rank: int | None = None, *, user: str = USER_A,
                   **extra: Any) -> tuple[aiohttp.ClientResponse, Any]:
        body = {"query_id": qid, "verdict": verdict, "rank": rank, **extra}
        resp, _ = await self.request("POST", "/api/feedback", json=body, as_user=user)
        return resp, await resp.json()


@pytest.fixture()
async def make_web(make_service: Callable[..., Any], indexed_home: Any, tmp_path: Path
                   ) -> AsyncIterator[Callable[..., Any]]:
    clients: list[TestClient] = []

    async def factory(*, service: Any = None, middlewares: tuple[Any, ...] = (),
                      samples: bool = False, sheets: Path | None = None, **svc_kw: Any) -> Web:
        svc = service if service is not None else await make_service(**svc_kw)
        samples_dir = None
        if samples:
            samples_dir = tmp_path / "samples"
            samples_dir.mkdir(exist_ok=True)
            (samples_dir / "a-frame.png").write_bytes(indexed_home.frame_png(0, 5.0))
            (samples_dir / "notes.txt").write_text("not a sample")
        st = indexed_home.settings
        app = build_web_app(svc, sessions=indexed_home.app.sessions, index_dir=st.index_dir,
                            framestore_dir=st.framestore_dir, samples_dir=samples_dir,
                            contact_sheets_dir=sheets)
        for mw in middlewares:
            app.middlewares.insert(0, mw)
        client = TestClient(TestServer(app, host="127.0.0.1"))
        await client.start_server()
        clients.append(client)
        return Web(client, svc)

    yield factory
    for c in clients:
        await c.close()


def count_queries(indexed_home: Any) -> int:
    with indexed_home.app.sessions() as s:
        return int(s.scalar(select(func.count(Query.id))) or 0)


def feedback_rows(indexed_home: Any, qid: str) -> list[Feedback]:
    with indexed_home.app.sessions() as s:
        return list(s.scalars(select(Feedback).where(Feedback.query_id == qid)
                              .order_by(Feedback.id)).all())


def assert_no_home(web_: Web, indexed_home: Any) -> None:
    home = str(indexed_home.settings.home)
    resolved = str(Path(home).resolve())
    for body in web_.bodies:
        assert home.encode() not in body and resolved.encode() not in body
        assert b"Traceback" not in body


# -- pure helpers ---------------------------------------------------------------------------------

@pytest.mark.parametrize("remote, ok", [
    ("127.0.0.1", True), ("127.8.9.1", True), ("::1", True), ("::ffff:127.0.0.1", True),
    ("192.168.1.5", False), ("10.0.0.1", False), ("203.0.113.9", False), ("::ffff:8.8.8.8", False),
    ("", False), (None, False), ("not-an-ip", False),
])
def test_is_loopback(remote: str | None, ok: bool) -> None:
    assert is_loopback(remote) is ok


@pytest.mark.parametrize("host, ok", [
    ("127.0.0.1:8765", True), ("localhost", True), ("LOCALHOST:80", True), ("[::1]:8765", True),
    ("app.localhost", True), ("evil.example", False), ("evil.example:8765", False),
    ("192.168.1.5:8765", False), ("", False), (None, False),
])
def test_is_local_host(host: str | None, ok: bool) -> None:
    assert is_local_host(host) is ok


def test_same_origin() -> None:
    assert same_origin(None, "127.0.0.1:8765")
    assert same_origin("http://127.0.0.1:8765", "127.0.0.1:8765")
    assert not same_origin("http://evil.example", "127.0.0.1:8765")
    assert not same_origin("null", "127.0.0.1:8765")


def test_media_tokens_are_opaque_stable_and_bounded(tmp_path: Path) -> None:
    reg = MediaTokens(max_items=2)
    a, b, c = (tmp_path / n for n in ("a.mp4", "b.mp4", "c.mp4"))
    ta = reg.token_for(a)
    assert reg.token_for(a) == ta and str(tmp_path) not in ta and len(ta) >= 20
    reg.token_for(b)
    reg.token_for(c)
    assert reg.resolve(ta) is None and len(reg) == 2  # the oldest was forgotten
    assert reg.resolve("../../etc/passwd") is None


# -- the chat -------------------------------------------------------------------------------------

async def test_identify_frame_answers_like_the_bots(make_web: Any, indexed_home: Any) -> None:
    w = await make_web()
    resp, page = await w.request("GET", "/")
    assert resp.status == 200 and b"/static/app.js" in page
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    csp = resp.headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "media-src 'self' blob:" in csp
    for asset in ("/static/app.js", "/static/style.css", "/static/admin.js"):
        r, body = await w.request("GET", asset)
        assert r.status == 200 and body and b"https://" not in body

    resp, view = await w.identify(indexed_home.frame_png(0, 5.0))
    assert resp.status == 200, view
    assert view["status"] == "match"
    assert view["best"]["title"] == indexed_home.series_title(0)
    assert view["best"]["where"].startswith("Episode ") and ":" in view["best"]["where"]
    assert view["header"].startswith("Found it") and view["confidence_text"].startswith("Confidence ")
    assert view["query_id"] and view["characters"] == [] and view["votes"] >= 1
    assert len(view["candidates"]) <= 5 and all("%" not in c["text"] for c in view["candidates"])
    # The answer came back without waiting for the clip: the page fetches it from preview_url.
    assert view["preview"] is None and view["preview_url"] == f"/api/preview/{view['query_id']}"
    r, _ = await w.request("GET", view["preview_url"], as_user=USER_B)
    assert r.status == 403  # only the person who asked
    r, got = await w.request("GET", view["preview_url"], as_user=USER_A)
    assert r.status == 200 and r.headers["Content-Type"].startswith("application/json"), got
    later = json.loads(got)
    assert later["preview"].startswith("/media/") and set(later) == {
        "preview", "still", "annotated", "annotated_alt"}
    view.update(later)
    r, clip = await w.request("GET", view["preview"])
    assert r.status == 200 and r.headers["Content-Type"] == "video/mp4"
    assert clip[4:8] == b"ftyp" and len(clip) > 1000
    if view["still"]:
        r, still = await w.request("GET", view["still"])
        assert r.status == 200 and r.headers["Content-Type"] == "image/jpeg"
        assert still[:2] == b"\xff\xd8"
    r, _ = await w.request("GET", "/media/" + "x" * 24)
    assert r.status == 404
    r, _ = await w.request("GET", "/media/..%2F..%2Fcatalog.db")
    assert r.status == 404
    assert_no_home(w, indexed_home)


async def test_feedback_writes_the_bots_rows_one_vote_per_user(make_web: Any,
                                                               indexed_home: Any) -> None:
    w = await make_web()
    resp, view = await w.identify(indexed_home.frame_png(1, 7.0))
    assert resp.status == 200
    qid = view["query_id"]
    assert len(view["candidates"]) >= 2 and view["feedback_ranks"] == len(view["candidates"])

    resp, out = await w.vote(qid, "wrong")
    assert resp.status == 200 and out["tally"]["wrong"] == 1 and "wrong" in out["message"]
    resp, out = await w.vote(qid, "pick", 2)
    assert resp.status == 200
    assert out["tally"] == {"correct": 0, "wrong": 0, "picks": [0, 1, 0, 0, 0]}
    resp, out = await w.vote(qid, "correct", user=USER_B)  # another browser: not the asker
    assert resp.status == 403 and "Only the person who asked" in out["error"]

    rows = feedback_rows(indexed_home, qid)
    assert [(r.verdict, r.rank, r.active, r.platform) for r in rows] == [
        ("wrong", None, False, "web"), ("pick", 2, True, "web")]
    assert rows[0].user_hash == rows[1].user_hash
    active_a = [r for r in rows if r.active and r.user_hash == rows[0].user_hash]
    assert len(active_a) == 1

    # Pressing the active button again takes the vote back.
    resp, out = await w.vote(qid, "pick", 2, withdraw=True)
    assert resp.status == 200 and out["tally"]["picks"] == [0, 0, 0, 0, 0]

    resp, out = await w.vote("nosuchquery1", "wrong")
    assert resp.status == 404 and out["error"]
    resp, out = await w.vote(qid, "pick", 9)
    assert resp.status == 400
    resp, out = await w.vote(qid, "maybe")
    assert resp.status == 400
    r, _body = await w.request("POST", "/api/feedback", data=b"{not json",
                              headers={"Content-Type": "application/json"})
    assert r.status == 400
    assert_no_home(w, indexed_home)


async def test_oversize_upload_is_refused_early(make_web: Any, indexed_home: Any) -> None:
    png = indexed_home.frame_png(0, 3.0)
    w = await make_web(max_bytes=len(png) // 4)
    before = count_queries(indexed_home)
    resp, out = await w.identify(png)
    assert resp.status == 413 and "too large" in out["error"]

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: caught while streaming
        for i in range(0, len(png), 4096):
            yield png[i:i + 4096]

    r, body = await w.request("POST", "/api/identify", data=chunks(),
                              headers={"Content-Type": "image/png"})
    assert r.status == 413 and b"too large" in body
    assert count_queries(indexed_home) == before
    assert_no_home(w, indexed_home)


async def test_bad_files_get_friendly_errors(make_web: Any, indexed_home: Any) -> None:
    w = await make_web()
    resp, out = await w.identify(b"hello, this is a text file\n" * 10, name="notes.txt",
                                 ctype="text/plain")
    assert resp.status == 400 and out["error"] and "Traceback" not in out["error"]
    r, _ = await w.request("POST", "/api/identify", data=aiohttp.FormData({"note": "hi"}))
    assert r.status == 400
    r, _body = await w.request("GET", "/api/nothing-here")
    assert r.status == 404 and (await r.json())["error"]
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert_no_home(w, indexed_home)


async def test_rate_limited_and_busy(make_web: Any, indexed_home: Any) -> None:
    w = await make_web(rate=1)
    junk = b"not an image at all" * 8
    resp, _ = await w.identify(junk)
    assert resp.status == 400  # counted by the limiter all the same
    resp, out = await w.identify(junk)
    assert resp.status == 429 and "too fast" in out["error"]
    assert int(resp.headers["Retry-After"]) >= 1 and out["retry_after"] >= 1

    w2 = await make_web(queue_size=0)
    resp, out = await w2.identify(junk)
    assert resp.status == 503 and "busy" in out["error"] and int(resp.headers["Retry-After"]) >= 1


class _ExplodingService:
    """Stands in for the service to check the catch-all (no path, no trace reaches a user)."""

    limits = MediaLimits(max_bytes=1_000_000)
    ready = True

    def __init__(self, exc: Exception) -> None:
        self.exc = exc

    async def recognize(self, data: bytes, **kw: Any) -> Any:
        raise self.exc


class _FacesService:
    """Stands in for the service: answers every picture with named faces."""

    limits = MediaLimits(max_bytes=1_000_000)
    ready = True

    def __init__(self, rec: Recognition) -> None:
        self.rec = rec

    async def recognize(self, data: bytes, **kw: Any) -> Recognition:
        return self.rec

    def preview_pending(self, query_id: str | None) -> bool:
        return False  # the named faces come with the answer here


async def test_named_faces_picture_is_served_behind_a_token(make_web: Any, indexed_home: Any,
                                                           tmp_path: Path) -> None:
    from PIL import Image, ImageDraw

    folder = tmp_path / "previews" / "annotated"
    folder.mkdir(parents=True)
    faces = folder / "0123456789abcdef01234567.jpg"
    img = Image.new("RGB", (160, 120), (30, 60, 90))
    ImageDraw.Draw(img).rectangle((20, 20, 60, 70), outline=(255, 82, 82), width=3)
    img.save(faces, format="JPEG", quality=85)
    best = Candidate(series=SeriesInfo(1, "Some Show"), episode_id=1, season=None, episode=2,
                     episode_label="02", time=5.0, time_from=4.0, time_to=6.0, score=0.97)
    rec = Recognition(status="match", confidence=0.97, candidates=(best,), query_id="facesQ01",
                      characters=(CharacterHit("Mika", "Some Show", 0.9, (20, 20, 60, 70)),
                                  CharacterHit("unknown", None, 0.2, (90, 20, 130, 70))),
                      annotated=str(faces))
    w = await make_web(service=_FacesService(rec))
    resp, view = await w.identify(indexed_home.frame_png(0, 5.0))
    assert resp.status == 200, view
    assert view["characters"] == ["Mika", "unknown"]
    assert view["annotated"].startswith("/media/") and "annotated" not in view["annotated"]
    assert "Mika" in view["annotated_alt"] and "1 unknown" in view["annotated_alt"]
    r, body = await w.request("GET", view["annotated"])
    assert r.status == 200 and r.headers["Content-Type"] == "image/jpeg"
    assert body == faces.read_bytes()
    _, again = await w.identify(indexed_home.frame_png(0, 5.0))
    assert again["annotated"] == view["annotated"]  # the same file keeps its token
    texts = [b for b in w.bodies if b != body]  # everything but the JPEG itself
    for leaked in (str(tmp_path), str(tmp_path.resolve()), faces.stem):
        assert all(leaked.encode() not in b for b in texts), leaked
    assert_no_home(w, indexed_home)

    none = await make_web(service=_FacesService(Recognition(status="no_match", confidence=0.0)))
    _, plain = await none.identify(indexed_home.frame_png(0, 5.0))
    assert plain["annotated"] is None and plain["annotated_alt"] is None


async def test_unexpected_errors_show_no_paths(make_web: Any, indexed_home: Any) -> None:
    w = await make_web(service=_ExplodingService(RuntimeError(f"{indexed_home.settings.home}/x")))
    resp, out = await w.identify(b"\x89PNG whatever")
    assert resp.status == 500 and out["error"].startswith("Sorry")
    w2 = await make_web(service=_ExplodingService(MediaTooLarge("That file is too large (99 MB).")))
    resp, out = await w2.identify(b"\x89PNG whatever")
    assert resp.status == 413
    assert_no_home(w, indexed_home)


async def test_samples_are_listed_and_served(make_web: Any, indexed_home: Any) -> None:
    w = await make_web(samples=True)
    r, _ = await w.request("GET", "/api/samples")
    samples = (await r.json())["samples"]
    assert [s["name"] for s in samples] == ["a-frame.png"]
    r, thumb = await w.request("GET", samples[0]["thumb"])
    assert r.status == 200 and r.headers["Content-Type"] == "image/jpeg"
    assert thumb[:2] == b"\xff\xd8"
    r, full = await w.request("GET", samples[0]["url"])
    assert r.status == 200 and full == indexed_home.frame_png(0, 5.0)
    r, _ = await w.request("GET", "/samples/" + "y" * 24 + "/thumb")
    assert r.status == 404
    assert_no_home(w, indexed_home)


async def test_the_welcome_pages_twelve_examples_do_not_trip_the_rate_limit(
        make_web: Any, indexed_home: Any, tmp_path: Path) -> None:
    """Trying all 12 examples, under a per-person limit of 3 a minute, then uploading: every
    example is answered and the uploads still have their whole allowance. The examples have
    their own allowance per address, which does run out."""
    from bot.web_common import SAMPLES_PER_MINUTE
    from core.service import SlidingWindow

    w = await make_web(samples=True, rate=3)
    folder = tmp_path / "samples"
    for i in range(11):
        (folder / f"ex-{i:02d}.png").write_bytes(indexed_home.frame_png(i % 3, 4.0 + i))
    r, _ = await w.request("GET", "/api/samples", as_user=USER_A)
    samples = (await r.json())["samples"]
    assert len(samples) == 12 and SAMPLES_PER_MINUTE >= 2 * len(samples)
    queries = count_queries(indexed_home)
    for s in samples:
        r, _ = await w.request("POST", f"/api/samples/{s['id']}/identify?preview=0", as_user=USER_A)
        view = await r.json()
        assert r.status == 200, view
        assert view["status"] in ("match", "unsure", "no_match") and view["query_id"]
    assert count_queries(indexed_home) == queries + 12  # each example is a real query (votes)
    for _ in range(3):  # the person's own allowance is untouched
        r, view = await w.identify(indexed_home.frame_png(1, 6.0), user=USER_A)
        assert r.status == 200, view
    r, view = await w.identify(indexed_home.frame_png(1, 6.0), user=USER_A)
    assert r.status == 429 and "too fast" in view["error"]  # …and it is a real limit
    app_ctx = w.client.server.app[CTX]
    app_ctx.sample_rate = SlidingWindow(1)
    r, _ = await w.request("POST", f"/api/samples/{samples[0]['id']}/identify", as_user=USER_A)
    assert r.status == 200
    r, body = await w.request("POST", f"/api/samples/{samples[0]['id']}/identify?lang=ja",
                              as_user=USER_A)
    assert r.status == 429 and "秒後" in (await r.json())["error"]
    r, _ = await w.request("POST", "/api/samples/" + "z" * 12 + "/identify", as_user=USER_A)
    assert r.status == 404
    assert_no_home(w, indexed_home)


# -- operator pages -------------------------------------------------------------------------------

async def test_admin_lists_queries_and_records_picks(make_web: Any, indexed_home: Any,
                                                     tmp_path: Path) -> None:
    sheets = tmp_path / "contact-sheets"
    w = await make_web(sheets=sheets)
    _resp, view = await w.identify(indexed_home.frame_png(2, 6.0))
    qid = view["query_id"]
    await w.vote(qid, "wrong")

    r, page = await w.request("GET", "/admin")
    text = page.decode()
    assert r.status == 200 and r.headers["Content-Security-Policy"]
    assert qid in text and "Wrong answers" in text and "Recent queries" in text
    assert indexed_home.series_title(2) in text
    assert "Character contact sheets" in text and "anirec characters discover" in text
    assert "<script>" not in text  # only the external admin.js (CSP)

    r, body = await w.request("POST", "/admin/api/pick", json={"query_id": qid, "rank": 2})
    assert r.status == 403  # no operator header: a cross-site form cannot do this
    r, body = await w.request("POST", "/admin/api/pick", json={"query_id": qid, "rank": 2},
                              headers={"X-AniRec-Admin": "1"})
    assert r.status == 200, body
    op = w.service.store.hash_id("web", "operator")
    rows = [f for f in feedback_rows(indexed_home, qid) if f.user_hash == op]
    assert [(f.verdict, f.rank, f.active) for f in rows] == [("pick", 2, True)]
    r, page = await w.request("GET", "/admin")
    assert "Picked ✔" in page.decode()

    sheets.mkdir()
    (sheets / "series-1.png").write_bytes(indexed_home.frame_png(0, 1.0))
    r, page = await w.request("GET", "/admin")
    assert "/admin/contact-sheets/series-1.png" in page.decode()
    r, _img = await w.request("GET", "/admin/contact-sheets/series-1.png")
    assert r.status == 200 and r.headers["Content-Type"] == "image/png"
    r, _ = await w.request("GET", "/admin/contact-sheets/..%2Fcatalog.db")
    assert r.status == 404
    assert_no_home(w, indexed_home)


async def test_admin_refuses_other_machines_and_foreign_hosts(make_web: Any,
                                                              indexed_home: Any) -> None:
    @web.middleware
    async def forge_remote(request: web.Request, handler: Any) -> web.StreamResponse:
        if "X-Test-Remote" in request.headers:
            request = request.clone(remote=request.headers["X-Test-Remote"])
        return await handler(request)

    w = await make_web(middlewares=(forge_remote,))
    far = {"X-Test-Remote": "203.0.113.9"}
    r, body = await w.request("GET", "/admin", headers=far)
    assert r.status == 403 and b"only available on this machine" in body
    r, _ = await w.request("POST", "/admin/api/pick", json={"query_id": "x", "rank": 1},
                           headers={**far, "X-AniRec-Admin": "1"})
    assert r.status == 403
    r, _ = await w.request("GET", "/", headers=far)
    assert r.status == 200  # the chat itself is for everyone who can reach it
    r, _ = await w.request("GET", "/admin", headers={"Host": "rebound.evil.example:8765"})
    assert r.status == 403  # DNS rebinding
    r, _ = await w.request("POST", "/api/feedback", json={"query_id": "x", "verdict": "wrong"},
                           headers={"Origin": "http://evil.example"})
    assert r.status == 403
    r, _ = await w.request("GET", "/admin", headers={"X-Test-Remote": "::ffff:127.0.0.1"})
    assert r.status == 200


async def test_run_web_serves_until_stopped(make_service: Callable[..., Any],
                                            indexed_home: Any) -> None:
    st = indexed_home.settings
    svc = await make_service()
    app = build_web_app(svc, sessions=indexed_home.app.sessions, index_dir=st.index_dir,
                        framestore_dir=st.framestore_dir)
    stop = asyncio.Event()
    task = asyncio.create_task(run_web(app, "127.0.0.1", 0, stop))
    for _ in range(200):
        if app[CTX].url or task.done():
            break
        await asyncio.sleep(0.02)
    url = app[CTX].url
    assert url and url.startswith("http://127.0.0.1:")
    async with aiohttp.ClientSession() as s, s.get(url + "api/status") as r:
        assert r.status == 200 and (await r.json())["ready"] is True
    stop.set()
    await asyncio.wait_for(task, 10)


def test_static_assets_are_local_only() -> None:
    from bot.web import STATIC_DIR, TEMPLATE_DIR

    names = {p.name for p in STATIC_DIR.iterdir()} | {p.name for p in TEMPLATE_DIR.iterdir()}
    assert {"chat.html", "admin.html", "app.js", "style.css", "admin.js"} <= names
    for p in [*STATIC_DIR.iterdir(), *TEMPLATE_DIR.iterdir()]:
        if p.suffix == ".png":  # the favicon
            continue
        text = p.read_text()
        assert "http://" not in text and "https://" not in text and "//cdn" not in text
    for page in ("chat.html", "admin.html"):  # CSP: no inline scripts
        assert "<script>" not in (TEMPLATE_DIR / page).read_text()
