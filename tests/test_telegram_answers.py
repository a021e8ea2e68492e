"""The Telegram adapter against the fake Bot API with a stub service (long answers, stills,
the named-faces photo, unexpected errors), webhook mode, pure rendering, and the answer
journal that lets reactions count after a restart.
"""

from __future__ import annotations

import asyncio
import io
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bot.chat.feedback import parse_feedback
from bot.telegram_adapter import ALLOWED_UPDATES, build_telegram_application, run_telegram
from bot.telegram_render import (
    characters_caption,
    feedback_keyboard,
    render_answer,
    render_short_caption,
    visible_length,
)
from core.errors import ConfigError
from core.media import MediaLimits
from core.types import Candidate, CharacterHit, FeedbackTally, Recognition, SeriesInfo
from tests import telegram_helpers
from tests.fakes.media import clip_of, faces_jpeg
from tests.fakes.telegram_server import FakeTelegram
from tests.preview_split import SplitPreview
from tests.telegram_helpers import (
    BOT,
    TOKEN,
    answer_to,
    feedback_rows,
    keyboard,
    preview_reply,
    replies_to,
    running,
    settle,
    shown,
)

# The shared fixtures (pytest finds them as attributes of this module).
tg = telegram_helpers.tg
_no_proxy = telegram_helpers._no_proxy
_no_handler_errors = telegram_helpers._no_handler_errors

pytestmark = pytest.mark.timeout(60)

# -- with a stub service: paths the real library cannot reach --------------------------------------

class StubService(SplitPreview):
    """Just what the adapter calls for recognition; `recognize` returns/raises what it is given."""

    def __init__(self, result: Recognition | BaseException) -> None:
        super().__init__()
        self.limits = MediaLimits()
        self.result = result

    async def recognize(self, data: bytes, *, source: Any, sticker: bool = False,
                        with_preview: bool = True) -> Recognition:
        if isinstance(self.result, BaseException):
            raise self.result
        return self.answer(self.result)


def long_recognition(preview: str | None) -> Recognition:
    def cand(i: int) -> Candidate:
        name = f"A <Very> Long & Winding Title Number {i} " + "x" * 150
        return Candidate(series=SeriesInfo(i, name, {"ja": "長い" * 40, "en": name + " (en)"}),
                         episode_id=i, season=1, episode=3, episode_label="03", time=75.0,
                         time_from=74.0, time_to=77.0, score=0.9 - i / 10,
                         preview=preview if i == 1 else None)
    return Recognition(status="unsure", confidence=0.6,
                       candidates=tuple(cand(i) for i in range(1, 6)),
                       characters=(CharacterHit("Mika <3", "x", 0.9, (0, 0, 9, 9)),),
                       genres=(("Drama", 0.8), ("Romance", 0.6)), query_id="stubQuery01")


async def test_long_answer_goes_in_its_own_message(tg: FakeTelegram, tmp_path: Path,
                                                   indexed_home: Any) -> None:
    clip = tmp_path / "preview.mp4"
    clip.write_bytes(clip_of([indexed_home.frame_png(0, t) for t in (6.0, 6.5)]))
    rec = long_recognition(str(clip))
    assert visible_length(render_answer(rec)) > 1024
    alice = tg.user(1001, "Alice", "alice")
    async with running(tg, StubService(rec)):
        upd = tg.photo_message(tg.private_chat(alice), alice, indexed_home.frame_png(0, 6.0))
        tg.push_update(upd)
        mid = upd["message"]["message_id"]
        text = await answer_to(tg, mid)
        video = await preview_reply(tg, text)  # the clip replies to the answer, after it
    assert "reply_markup" not in video.params
    assert len(shown(video)) <= 1024 and "Not sure" in shown(video)
    assert "&lt;Very&gt; Long &amp; Winding" in text.params["text"]
    assert "A <Very> Long & Winding" in shown(text) and "Mika <3" in shown(text)
    assert keyboard(text) == [["✅", "❌"], ["1", "2", "3", "4", "5"]]


@pytest.mark.parametrize("has", ["still", "nothing"])
async def test_still_or_text_when_there_is_no_clip(tg: FakeTelegram, tmp_path: Path,
                                                   indexed_home: Any, has: str) -> None:
    still = tmp_path / "still.jpg"
    still.write_bytes(indexed_home.frame_png(0, 6.0))
    best = Candidate(series=SeriesInfo(1, "Some Show"), episode_id=1, season=None, episode=2,
                     episode_label="02", time=5.0, time_from=4.0, time_to=6.0, score=0.97,
                     still=str(still) if has == "still" else None)
    rec = Recognition(status="match", confidence=0.97, candidates=(best,), query_id="stubQuery02")
    alice = tg.user(1001, "Alice", "alice")
    async with running(tg, StubService(rec)):
        upd = tg.photo_message(tg.private_chat(alice), alice, indexed_home.frame_png(0, 6.0))
        uid = tg.push_update(upd)
        ans = await answer_to(tg, upd["message"]["message_id"])
        photo = await preview_reply(tg, ans) if has == "still" else None
        await settle(tg, uid)
    assert ans.method == "sendMessage"
    assert "Some Show" in shown(ans) and "Episode 2 ·" in shown(ans)
    assert keyboard(ans) == [["✅", "❌"]]  # one candidate: no rank buttons
    assert photo is None or (photo.method == "sendPhoto" and "Some Show" in shown(photo))
    assert len(replies_to(tg, ans.result["message_id"])) == (1 if has == "still" else 0)
    actions = [c.params["action"] for c in tg.calls("sendChatAction")]
    assert ("upload_photo" in actions) == (has == "still")


# -- the named-faces photo -------------------------------------------------------------------------


def png_of(color: tuple[int, int, int] = (200, 100, 50)) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (64, 48), color).save(out, format="PNG")
    return out.getvalue()


def faces_recognition(annotated: Path | None, *names: str, adult: bool = False) -> Recognition:
    best = Candidate(series=SeriesInfo(1, "Some Show", is_adult=adult), episode_id=1,
                     season=None, episode=2, episode_label="02", time=5.0, time_from=4.0,
                     time_to=6.0, score=0.97)
    hits = tuple(CharacterHit(n, None if n == "unknown" else "Tom & <Jerry>", 0.9,
                              (20 + 40 * i, 20, 50 + 40 * i, 70)) for i, n in enumerate(names))
    return Recognition(status="match", confidence=0.97, candidates=(best,), characters=hits,
                       annotated=str(annotated) if annotated else None, query_id="facesQ01")


def test_characters_caption_escapes_fits_and_hides() -> None:
    rec = faces_recognition(Path("x.jpg"), "Mika <3", "unknown", "Mika <3", "Ren")
    assert characters_caption(rec) == ("Characters: <b>Mika &lt;3</b> (Tom &amp; &lt;Jerry&gt;)"
                                       " · <b>Ren</b> (Tom &amp; &lt;Jerry&gt;)")
    assert characters_caption(faces_recognition(Path("x.jpg"), "unknown", "unknown")) is None
    many = faces_recognition(Path("x.jpg"), *(f"Name{i} " + "x" * 150 for i in range(20)))
    long = characters_caption(many)
    assert long is not None and visible_length(long) <= 1024 and long.endswith(" · …")
    adult = characters_caption(faces_recognition(Path("x.jpg"), "Ren", adult=True),
                               adult_ok=False)
    assert adult == "Characters: <tg-spoiler><b>Ren</b> (Tom &amp; &lt;Jerry&gt;)</tg-spoiler>"


async def test_named_faces_photo_replies_to_the_answer(tg: FakeTelegram, tmp_path: Path) -> None:
    faces = faces_jpeg(tmp_path / "faces.jpg")
    alice = tg.user(1001, "Alice", "alice")
    rec = faces_recognition(faces, "Mika <3", "unknown")
    async with running(tg, StubService(rec)) as app:
        upd = tg.photo_message(tg.private_chat(alice), alice, png_of())
        tg.push_update(upd)
        answer = await answer_to(tg, upd["message"]["message_id"], methods=["sendMessage"])
        answer_id = answer.result["message_id"]
        photo = await answer_to(tg, answer_id, methods=["sendPhoto"])
        ref = app.bot_data["anirec"].answers.get((alice["id"], answer_id))
    assert photo.params["caption"] == "Characters: <b>Mika &lt;3</b> (Tom &amp; &lt;Jerry&gt;)"
    assert photo.params["parse_mode"] == "HTML"
    assert shown(photo) == "Characters: Mika <3 (Tom & <Jerry>)"
    assert photo.params["reply_parameters"]["message_id"] == answer_id
    assert photo.params.get("has_spoiler") in (None, False)
    assert "reply_markup" not in photo.params
    [sent] = tg.calls("sendPhoto")  # the answer itself is text: the only photo is the faces
    file_id = sent.result["photo"][-1]["file_id"]
    assert tg.file_bytes(file_id)[:2] == b"\xff\xd8"
    assert ref is not None and ref.query_id == "facesQ01"
    assert keyboard(answer) == [["✅", "❌"]]


@pytest.mark.parametrize("case", ["all unknown", "no annotated", "file gone"])
async def test_no_named_faces_photo(tg: FakeTelegram, tmp_path: Path, case: str) -> None:
    faces = faces_jpeg(tmp_path / "faces.jpg")
    rec = {"all unknown": faces_recognition(faces, "unknown", "unknown"),
           "no annotated": faces_recognition(None, "Ren"),
           "file gone": faces_recognition(tmp_path / "evicted.jpg", "Ren")}[case]
    alice = tg.user(1001, "Alice", "alice")
    async with running(tg, StubService(rec)):
        upd = tg.photo_message(tg.private_chat(alice), alice, png_of())
        tg.push_update(upd)
        answer = await answer_to(tg, upd["message"]["message_id"], methods=["sendMessage"])
        await asyncio.sleep(0.4)
    assert tg.calls("sendPhoto") == []
    assert answer.ok and "Some Show" in shown(answer)


async def test_failed_named_faces_photo_keeps_the_answer(tg: FakeTelegram, tmp_path: Path
                                                         ) -> None:
    faces = faces_jpeg(tmp_path / "faces.jpg")
    alice = tg.user(1001, "Alice", "alice")
    tg.fail_next("sendPhoto", status=400)
    async with running(tg, StubService(faces_recognition(faces, "Ren"))) as app:
        upd = tg.photo_message(tg.private_chat(alice), alice, png_of())
        tg.push_update(upd)
        answer = await answer_to(tg, upd["message"]["message_id"], methods=["sendMessage"])
        answer_id = answer.result["message_id"]
        deadline = time.monotonic() + 10
        while not tg.calls("sendPhoto") and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.2)
        ref = app.bot_data["anirec"].answers.get((alice["id"], answer_id))
    [failed] = tg.calls("sendPhoto")
    assert not failed.ok
    assert ref is not None and ref.query_id == "facesQ01"
    assert [c.method for c in tg.calls() if c.method.startswith("send")
            and c.method != "sendChatAction"] == ["sendMessage", "sendPhoto"]


async def test_named_faces_photo_is_blurred_for_adult_series_in_groups(
        tg: FakeTelegram, tmp_path: Path) -> None:
    faces = faces_jpeg(tmp_path / "faces.jpg")
    alice = tg.user(1001, "Alice", "alice")
    group = tg.group_chat()
    async with running(tg, StubService(faces_recognition(faces, "Ren", adult=True))):
        upd = tg.photo_message(group, alice, png_of(), caption=f"@{BOT}")
        tg.push_update(upd)
        answer = await answer_to(tg, upd["message"]["message_id"], methods=["sendMessage"])
        photo = await answer_to(tg, answer.result["message_id"], methods=["sendPhoto"])
    assert photo.params["has_spoiler"] is True
    assert photo.params["caption"].startswith("Characters: <tg-spoiler>")


async def test_unexpected_error_is_logged_and_answered_politely(
        tg: FakeTelegram, indexed_home: Any, caplog: pytest.LogCaptureFixture) -> None:
    alice = tg.user(1001, "Alice", "alice")
    async with running(tg, StubService(RuntimeError("boom in /secret/path"))):
        upd = tg.photo_message(tg.private_chat(alice), alice, indexed_home.frame_png(0, 6.0))
        tg.push_update(upd)
        ans = await answer_to(tg, upd["message"]["message_id"])
    assert "something went wrong" in shown(ans) and "/secret" not in shown(ans)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors and errors[0].exc_info and "boom" in str(errors[0].exc_info[1])
    caplog.clear()


async def test_webhook_mode(tg: FakeTelegram, make_service: Callable[..., Any],
                            indexed_home: Any) -> None:
    """Behind a reverse proxy: setWebhook with the public URL, the local listener checks the
    secret header and hands updates to the same handlers."""
    import socket

    import aiohttp

    pytest.importorskip("tornado", reason="webhook mode needs python-telegram-bot[webhooks]")
    from bot.telegram_adapter import webhook_secret

    service = await make_service()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    app = build_telegram_application(TOKEN, service, base_url=tg.base_url,
                                     base_file_url=tg.base_file_url)
    stop = asyncio.Event()
    url = "https://bot.example.org/tg/hook"
    task = asyncio.create_task(run_telegram(app, stop, webhook_url=url, port=port))
    alice = tg.user(1001, "Alice", "alice")
    try:
        hook = await tg.wait_for("setWebhook", timeout=15)
        assert hook.params["url"] == url
        assert set(ALLOWED_UPDATES) <= set(hook.params["allowed_updates"])
        upd = tg.photo_message(tg.private_chat(alice), alice, indexed_home.frame_png(0, 6.0))
        local = f"http://127.0.0.1:{port}/tg/hook"
        async with aiohttp.ClientSession() as http:
            for _ in range(100):  # the listener starts right after setWebhook
                try:
                    async with http.post(local, json={"update_id": 1, **upd}) as r:
                        forged = r.status
                    break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.05)
            headers = {"X-Telegram-Bot-Api-Secret-Token": webhook_secret(TOKEN)}
            async with http.post(local, json={"update_id": 2, **upd}, headers=headers) as r:
                assert r.status == 200
        ans = await answer_to(tg, upd["message"]["message_id"])
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)
    assert forged == 403  # without the secret header
    assert indexed_home.series_title(0) in shown(ans)
    assert not tg.calls("getUpdates")


async def test_webhook_mode_without_tornado_says_so(tg: FakeTelegram) -> None:
    import importlib.util

    if importlib.util.find_spec("tornado") is not None:
        pytest.skip("tornado installed: webhook mode is available")
    app = build_telegram_application(TOKEN, StubService(RuntimeError()), base_url=tg.base_url)
    with pytest.raises(ConfigError, match="webhooks"):
        await run_telegram(app, asyncio.Event(), webhook_url="https://bot.example.org/tg/hook")
    assert not tg.requests  # refused before touching Telegram


# -- rendering (pure) ------------------------------------------------------------------------------

def test_render_escapes_and_keyboard_shapes() -> None:
    rec = long_recognition(None)
    text = render_answer(rec)
    assert "<Very>" not in text and "&lt;Very&gt;" in text and "Mika &lt;3" in text
    assert "Looks like: Drama, Romance" in text
    short = render_short_caption(rec)
    assert visible_length(short) <= 1024 and short.startswith("<b>Not sure")
    one = Recognition(status="match", confidence=0.95, candidates=rec.candidates[:1],
                      query_id="q1")
    assert "Top 5" not in render_answer(one) and "Looks like" not in render_answer(one)
    kb = feedback_keyboard("q1", 1).to_dict()["inline_keyboard"]
    assert [[b["text"] for b in row] for row in kb] == [["✅", "❌"]]
    kb = feedback_keyboard("q1", 3, FeedbackTally(2, 1, (0, 1, 0, 0, 0))).to_dict()
    assert [[b["text"] for b in row] for row in kb["inline_keyboard"]] == [
        ["✅ 2", "❌ 1"], ["1", "2 ·1", "3"]]
    nothing = Recognition(status="no_match", confidence=0.1, genres=(("Mecha", 0.7),))
    out = render_answer(nothing)
    assert "couldn't find" in out and "Looks like: Mecha" in out and "Tap" not in out


async def test_reactions_count_after_a_restart(tg: FakeTelegram, make_service: Any,
                                               indexed_home: Any, tmp_path: Path) -> None:
    """The answer → query link is journaled: a 👎 on an answer sent before a restart counts."""
    service = await make_service()
    state = tmp_path / "telegram.json"
    alice = tg.user(1001, "Alice", "alice")
    bob = tg.user(1002, "Bob", "bob")
    chat = tg.private_chat(alice)
    async with running(tg, service, state_file=state):
        mark = len(tg.requests)
        tg.push_update(tg.photo_message(chat, alice, indexed_home.frame_png(0, 6.0)))
        ans = await tg.wait_for("sendMessage", since=mark, timeout=30)
        await preview_reply(tg, ans)
    qid = parse_feedback(ans.params["reply_markup"]["inline_keyboard"][0][0]["callback_data"]).query_id
    assert (tmp_path / "telegram-answers.jsonl").exists()
    async with running(tg, service, state_file=state):  # a new process: only the journal is left
        mark = len(tg.requests)
        tg.push_update(tg.message_reaction(chat, ans.result["message_id"], bob, old=[], new=["👎"]))
        await tg.wait_for("editMessageReplyMarkup", since=mark, timeout=30)
    rows = feedback_rows(indexed_home, qid)
    assert [(r.verdict, r.active) for r in rows] == [("wrong", True)]


def test_answer_journal_survives_torn_lines_and_compacts(tmp_path: Path) -> None:
    from bot.telegram_io import AnswerRef, answer_memory

    path = tmp_path / "answers.jsonl"
    m = answer_memory(3, path)
    for i in range(10):
        m.put((1, i), AnswerRef(f"q{i}", 5, i))
    assert len(path.read_text().splitlines()) <= 2 * 3 + 1  # compacted, not ever-growing
    with open(path, "a") as fh:
        fh.write('[1, 99, "q99", 5')  # a crash mid-write
    again = answer_memory(3, path)
    assert again.get((1, 9)) == AnswerRef("q9", 5, 9) and again.get((1, 0)) is None
    assert again.get((1, 99)) is None
