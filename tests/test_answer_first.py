"""Issue #21 item 1: the answer goes out first, the preview clip follows when it is cut.

The real service over the sample library, the real discord.py / PTB clients against the
fakes, the real web app: the answer arrives before its clip on every platform; previews off
makes no clip at all; a preview that fails (an unexpected error in the cutter, a cache
folder that cannot be written) loses nothing: the answer arrives as always, no clip follows,
the operator's log says why and the person sees no traceback.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select

from core.db.models import Query
from core.previews import PreviewMaker
from core.types import Source
from tests import discord_helpers, telegram_helpers, test_web
from tests.discord_helpers import answer_to as discord_answer
from tests.discord_helpers import embed_of, eventually, png_attachment, preview_edits, preview_of, qid_of
from tests.discord_helpers import running as discord_running
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.telegram_server import FakeTelegram
from tests.telegram_helpers import answer_to, preview_reply, query_id_of, replies_to, running, settle, shown
from tests.test_web import USER_A

tg = telegram_helpers.tg
dc = discord_helpers.dc
make_web = test_web.make_web
_no_proxy = telegram_helpers._no_proxy

pytestmark = pytest.mark.timeout(90)

ME = Source(platform="cli", chat_id="t", user_id="answer-first", allow_adult=True)
SECRET = "/srv/anirec/secret-library"


class ExplodingPreviews(PreviewMaker):
    """A cutter that fails in a way nobody planned for (not a decode or disk error)."""

    def _cut(self, video: Path, lo: float, hi: float, t: float, clip: Path, still: Path) -> None:
        raise RuntimeError(f"decoder exploded reading {SECRET}/episode.mkv")


def unwritable_previews(tmp_path: Path) -> PreviewMaker:
    """Previews under a folder that cannot be made (as on a full or read-only disk)."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_bytes(b"x")
    return PreviewMaker(blocker / "previews")


def query_row(indexed_home: Any, qid: str) -> Query | None:
    with indexed_home.app.sessions() as s:
        return s.scalar(select(Query).where(Query.id == qid))


def errors_logged(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.ERROR]


# -- the service ------------------------------------------------------------------------------------

async def test_service_answers_before_the_clip_and_previews_off_makes_none(
        make_service: Any, indexed_home: Any, tmp_path: Path) -> None:
    svc = await make_service()
    svc.previews = PreviewMaker(tmp_path / "previews")  # nothing cached yet: a real cut follows
    answer = await svc.recognize(indexed_home.frame_png(0, 6.0), source=ME)
    assert answer.status == "match" and answer.query_id
    assert query_row(indexed_home, answer.query_id) is not None  # recorded before the clip
    assert answer.candidates[0].preview is None and answer.candidates[0].still is None
    assert "preview" not in answer.timings_ms
    assert svc.preview_pending(answer.query_id)
    full = await svc.preview(answer)
    assert full is not None and Path(full.candidates[0].preview or "").is_file()
    assert full.query_id == answer.query_id and full.timings_ms["total"] == answer.timings_ms["total"]
    assert svc.preview_ready(answer.query_id)

    off = await svc.recognize(indexed_home.frame_png(1, 6.0), source=ME, with_preview=False)
    assert off.query_id and not svc.preview_pending(off.query_id)
    assert await svc.preview(off) is None
    assert sorted(p.name for p in (tmp_path / "previews").glob("*.mp4")) == [
        Path(full.candidates[0].preview or "").name]  # previews off cut nothing


@pytest.mark.parametrize("failure", ["exploding cutter", "unwritable folder"])
async def test_service_a_failed_preview_keeps_the_answer(
        make_service: Any, indexed_home: Any, tmp_path: Path, failure: str,
        caplog: pytest.LogCaptureFixture) -> None:
    svc = await make_service()
    svc.previews = (ExplodingPreviews(tmp_path / "previews") if failure == "exploding cutter"
                    else unwritable_previews(tmp_path))
    answer = await svc.recognize(indexed_home.frame_png(0, 6.0), source=ME)
    assert answer.status == "match" and query_row(indexed_home, answer.query_id or "") is not None
    assert await svc.preview(answer) is None
    again = await svc.recognize(indexed_home.frame_png(0, 6.0), source=ME)  # the service still serves
    assert again.status == "match"
    if failure == "exploding cutter":
        [err, *_] = errors_logged(caplog)
        assert "preview" in err.getMessage() and err.exc_info is not None
        caplog.clear()
    else:
        assert not errors_logged(caplog)
        assert any("preview of" in r.getMessage() and r.levelno == logging.WARNING
                   for r in caplog.records)


# -- Discord ----------------------------------------------------------------------------------------

async def test_discord_answer_first_then_the_clip_and_a_failed_clip_leaves_it(
        dc: FakeDiscord, make_service: Any, indexed_home: Any, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    svc = await make_service()
    svc.previews = PreviewMaker(tmp_path / "previews")
    alice = dc.users[0]
    async with discord_running(dc, svc):
        msg = dc.message_create(dc.text_channel, alice, "?", attachments=[
            png_attachment(dc, indexed_home.frame_png(0, 6.0))])
        [answer] = await discord_answer(dc, msg)
        qid = qid_of(answer)
        assert svc.preview_pending(qid)
        edit = await preview_of(dc, answer)  # after the answer, on the same message
        assert [f.filename for f in edit.files][0] == "preview.mp4"
        assert embed_of(edit)["title"] == embed_of(answer)["title"]

        svc.previews = ExplodingPreviews(tmp_path / "other-previews")
        broken = dc.message_create(dc.text_channel, alice, "?", attachments=[
            png_attachment(dc, indexed_home.frame_png(1, 6.0))])
        [plain] = await discord_answer(dc, broken)
        bqid = qid_of(plain)
        await eventually(lambda: svc.preview_ready(bqid), what="the failed cut")
        await asyncio.sleep(0.5)  # an edit would be on its way by now
        assert not preview_edits(dc, plain) and not plain.files
    shown_text = str(embed_of(plain))
    assert SECRET not in shown_text and "Traceback" not in shown_text
    assert embed_of(plain)["title"] and "Confidence " in embed_of(plain)["description"]
    assert [m for m in dc.sent_messages(dc.text_channel) if SECRET in str(m)] == []
    assert any("preview" in r.getMessage() for r in errors_logged(caplog))
    caplog.clear()


# -- Telegram ---------------------------------------------------------------------------------------

async def test_telegram_answer_first_then_the_clip_and_a_failed_clip_leaves_it(
        tg: FakeTelegram, make_service: Any, indexed_home: Any, tmp_path: Path) -> None:
    svc = await make_service()
    svc.previews = PreviewMaker(tmp_path / "previews")
    alice = tg.user(1001, "Alice", "alice")
    chat = tg.private_chat(alice)
    async with running(tg, svc):
        upd = tg.photo_message(chat, alice, indexed_home.frame_png(0, 6.0))
        tg.push_update(upd)
        answer = await answer_to(tg, upd["message"]["message_id"])
        clip = await preview_reply(tg, answer)
        assert clip.method == "sendVideo" and clip.files["video"].data[4:8] == b"ftyp"
        assert indexed_home.series_title(0) in shown(answer)
        qid = query_id_of(answer)
        # A reaction on the clip is a vote on the answer it follows.
        tg.push_update(tg.message_reaction(chat, clip.result["message_id"], alice, old=[], new=["👍"]))
        await tg.wait_for("editMessageReplyMarkup", timeout=30)
        with indexed_home.app.sessions() as s:
            from core.db.models import Feedback
            verdicts = [f.verdict for f in s.scalars(select(Feedback).where(Feedback.query_id == qid))]
        assert verdicts == ["correct"]

        svc.previews = unwritable_previews(tmp_path)  # the disk is full from now on
        upd2 = tg.photo_message(chat, alice, indexed_home.frame_png(1, 6.0))
        uid2 = tg.push_update(upd2)
        plain = await answer_to(tg, upd2["message"]["message_id"])
        await eventually(lambda: svc.preview_ready(query_id_of(plain)), what="the failed cut")
        await settle(tg, uid2)
        assert not replies_to(tg, plain.result["message_id"])  # no clip, no error message
    assert plain.method == "sendMessage" and indexed_home.series_title(1) in shown(plain)
    assert "not-a-folder" not in shown(plain) and "Traceback" not in shown(plain)


# -- the web chat -----------------------------------------------------------------------------------

async def test_web_answer_first_then_the_clip_off_and_failed(
        make_web: Any, indexed_home: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    w = await make_web()
    w.service.previews = PreviewMaker(tmp_path / "previews")
    resp, view = await w.identify(indexed_home.frame_png(0, 6.0))
    assert resp.status == 200 and view["status"] == "match"
    assert view["preview"] is None and view["preview_url"] == f"/api/preview/{view['query_id']}"
    r, body = await w.request("GET", view["preview_url"], as_user=USER_A)
    assert r.status == 200
    got = await r.json()
    r, clip = await w.request("GET", got["preview"])
    assert r.status == 200 and clip[4:8] == b"ftyp"

    # Previews off: no clip is cut, and nothing to fetch.
    form = aiohttp.FormData()
    form.add_field("file", indexed_home.frame_png(1, 6.0), filename="a.png", content_type="image/png")
    r, body = await w.request("POST", "/api/identify?preview=0", data=form, as_user=USER_A)
    off = await r.json()
    assert r.status == 200 and off["preview"] is None and off["preview_url"] is None
    r, _ = await w.request("GET", f"/api/preview/{off['query_id']}", as_user=USER_A)
    assert r.status == 404

    # A cut that fails: the answer as always, then "no preview" (204), nothing said.
    w.service.previews = ExplodingPreviews(tmp_path / "other-previews")
    resp, failed = await w.identify(indexed_home.frame_png(2, 6.0))
    assert resp.status == 200 and failed["best"]["title"] and failed["preview"] is None
    r, body = await w.request("GET", failed["preview_url"], as_user=USER_A)
    assert r.status == 204 and body == b""
    assert all(SECRET.encode() not in b for b in w.bodies)
    assert any("preview" in rec.getMessage() for rec in errors_logged(caplog))
    caplog.clear()
