"""End to end: the real PTB Application (bot.telegram_adapter) against the fake Telegram Bot
API server, with the real RecognitionService over the real indexed sample library.

Nothing is patched: the bot runs through `run_telegram()` (initialize/start/polling/stop/
shutdown in the test's loop), downloads files from the fake, recognises them with the real
models/index/SQLite, and the fake records every Bot API call it makes.
"""

from __future__ import annotations

import asyncio
import html
import io
import logging
import re
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from bot.common import parse_feedback
from bot.telegram_adapter import ALLOWED_UPDATES, build_telegram_application, run_telegram
from bot.telegram_render import (
    characters_caption,
    feedback_keyboard,
    render_answer,
    render_short_caption,
    visible_length,
)
from core.db.models import Feedback
from core.errors import ConfigError
from core.media import MediaLimits
from core.types import Candidate, CharacterHit, FeedbackTally, Recognition, SeriesInfo
from tests.fakes.media import clip_of, faces_jpeg
from tests.fakes.telegram_server import FakeTelegram, RecordedCall

pytestmark = pytest.mark.timeout(60)

TOKEN = "123:ABC"
BOT = "anirec_test_bot"
OWNER = 4242
ANSWER_METHODS = ("sendVideo", "sendPhoto", "sendMessage")


@pytest.fixture(autouse=True)
def _no_proxy(no_proxy: None) -> None:
    """Talk straight to the fake."""


@pytest.fixture(autouse=True)
def _no_handler_errors(no_logged_errors: Any) -> None:
    """No handler may fail unexpectedly."""


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram(token=TOKEN, bot_username=BOT) as fake:
        yield fake


@asynccontextmanager
async def running(tg: FakeTelegram, service: Any, state_file: Path | None = None
                  ) -> AsyncIterator[Any]:
    """The bot as the runner runs it: `run_telegram(app, stop)` as a task on this loop."""
    app = build_telegram_application(TOKEN, service, owner_ids=[OWNER], base_url=tg.base_url,
                                     base_file_url=tg.base_file_url, state_file=state_file)
    stop = asyncio.Event()
    mark = len(tg.requests)
    task = asyncio.create_task(run_telegram(app, stop, poll_timeout=1))
    try:
        await tg.wait_for("getUpdates", since=mark, timeout=15)
        yield app
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)


async def answer_to(tg: FakeTelegram, message_id: int, timeout: float = 30.0,
                    methods: Sequence[str] = ANSWER_METHODS) -> RecordedCall:
    """The first successful send that replies to `message_id`."""
    wanted = {m.lower() for m in methods}
    deadline = time.monotonic() + timeout
    while True:
        for c in tg.requests:
            rp = c.params.get("reply_parameters")
            if (c.method.lower() in wanted and c.ok and isinstance(rp, dict)
                    and rp.get("message_id") == message_id):
                return c
        if time.monotonic() > deadline:
            raise TimeoutError(f"no answer to message {message_id}; calls: "
                               f"{[c.method for c in tg.requests]}")
        await asyncio.sleep(0.01)


def replies_to(tg: FakeTelegram, message_id: int) -> list[RecordedCall]:
    return [c for c in tg.requests if isinstance(c.params.get("reply_parameters"), dict)
            and c.params["reply_parameters"].get("message_id") == message_id]


def shown(call: RecordedCall) -> str:
    """What the user sees (tags stripped by the fake): caption or text."""
    res = call.result or {}
    return str(res.get("caption") or res.get("text") or "")


def keyboard(call_or_msg: Any) -> list[list[str]]:
    markup = (call_or_msg.params.get("reply_markup") if isinstance(call_or_msg, RecordedCall)
              else call_or_msg.get("reply_markup"))
    return [[b["text"] for b in row] for row in (markup or {}).get("inline_keyboard", [])]


def query_id_of(call: RecordedCall) -> str:
    data = call.params["reply_markup"]["inline_keyboard"][0][0]["callback_data"]
    action = parse_feedback(data)
    assert action is not None
    return action.query_id


def feedback_rows(indexed_home: Any, qid: str) -> list[Feedback]:
    with indexed_home.app.sessions() as s:
        return list(s.scalars(select(Feedback).where(Feedback.query_id == qid)
                              .order_by(Feedback.id)).all())


async def settle(tg: FakeTelegram, update_id: int, seconds: float = 0.5) -> None:
    """Wait until the bot fetched `update_id`, then a little longer, for "nothing was
    answered" checks (an answer would take a recognition, i.e. well under this)."""
    assert await tg.wait_confirmed(update_id)
    await asyncio.sleep(seconds)


# -- media builders --------------------------------------------------------------------------------

def gif_of(frames: Sequence[bytes]) -> bytes:
    from PIL import Image

    imgs = [Image.open(io.BytesIO(f)).convert("RGB") for f in frames]
    out = io.BytesIO()
    imgs[0].save(out, format="GIF", save_all=True, append_images=imgs[1:], duration=250, loop=0)
    return out.getvalue()


def webp_sticker(frame: bytes) -> bytes:
    from PIL import Image

    im = Image.open(io.BytesIO(frame)).convert("RGBA")
    im = im.resize((512, max(16, round(im.height * 512 / im.width))))
    out = io.BytesIO()
    im.save(out, format="WEBP", quality=90)
    return out.getvalue()





# -- tests -----------------------------------------------------------------------------------------

async def test_private_photo_answer_with_preview_keyboard_and_latency(
        tg: FakeTelegram, make_service: Callable[..., Any], indexed_home: Any) -> None:
    service = await make_service()
    title = indexed_home.series_title(0)
    alice = tg.user(1001, "Alice", "alice")
    chat = tg.private_chat(alice)
    async with running(tg, service):
        polls = tg.calls("getUpdates")
        assert set(ALLOWED_UPDATES) <= set(polls[-1].params["allowed_updates"])
        assert "message_reaction" in tg.allowed_updates
        latencies = []
        for t in (6.0, 9.0):  # cold (first inference, first preview cut), then warm
            upd = tg.photo_message(chat, alice, indexed_home.frame_png(0, t))
            mid = upd["message"]["message_id"]
            t0 = time.monotonic()
            tg.push_update(upd)
            call = await answer_to(tg, mid)
            latencies.append(call.time - t0)
        print(f"\n[telegram latency] photo push_update → answer at the fake: "
              f"cold {latencies[0] * 1000:.0f} ms, warm {latencies[1] * 1000:.0f} ms")

    print("[caption]\n" + call.params["caption"])
    assert call.method == "sendVideo", [c.method for c in tg.requests]
    caption = shown(call)
    assert title in caption
    assert "Found it" in caption or "Not sure" in caption
    assert call.params["parse_mode"] == "HTML"
    assert call.params["supports_streaming"] is True
    assert "video" in call.files and call.files["video"].data[4:8] == b"ftyp"
    rows = keyboard(call)
    assert rows[0] == ["✅", "❌"]
    n = len(rows[1]) if len(rows) > 1 else 1
    assert 1 <= n <= 5 and (n == 1 or rows[1] == [str(i) for i in range(1, n + 1)])
    # the candidate list is numbered like the buttons
    for i in range(1, n + 1):
        assert re.search(rf"^{i}\. ", caption, re.M), caption
    actions = [c.params["action"] for c in tg.calls("sendChatAction")]
    assert "typing" in actions and "upload_video" in actions
    assert tg.calls("getFile") and tg.calls("setMyCommands")
    # one recorded exchange, for the closing note
    print("[telegram exchange]", call.method, {
        k: call.params[k] for k in ("chat_id", "parse_mode", "supports_streaming",
                                    "has_spoiler", "reply_parameters") if k in call.params},
        "caption=", call.params["caption"].splitlines()[:3],
        "keyboard=", [[b["callback_data"] for b in r] for r in
                      call.params["reply_markup"]["inline_keyboard"]],
        "video bytes=", len(call.files["video"].data))


async def test_group_triggers(tg: FakeTelegram, make_service: Callable[..., Any],
                              indexed_home: Any, tmp_path: Path) -> None:
    service = await make_service()
    title = indexed_home.series_title(0)
    png = indexed_home.frame_png(0, 6.0)
    alice, bob = tg.user(1001, "Alice", "alice"), tg.user(1002, "Bob", "bob")
    group = tg.group_chat(-1001234567890)
    state = tmp_path / "telegram.json"
    async with running(tg, service, state_file=state):
        plain = tg.photo_message(group, alice, png)
        tg.push_update(plain)
        # a reply with /anime to the earlier photo → answered, as a reply to the command
        cmd = tg.text_message(group, bob, "/anime", reply_to=plain)
        tg.push_update(cmd)
        a1 = await answer_to(tg, cmd["message"]["message_id"])
        assert title in shown(a1)
        # /anime@botname form
        cmd2 = tg.text_message(group, bob, f"/anime@{BOT}", reply_to=plain)
        tg.push_update(cmd2)
        assert title in shown(await answer_to(tg, cmd2["message"]["message_id"]))
        # a mention in a reply
        men = tg.text_message(group, bob, f"@{BOT} what is this?", reply_to=plain)
        tg.push_update(men)
        assert title in shown(await answer_to(tg, men["message"]["message_id"]))
        # the photo's own caption with /anime
        cap = tg.photo_message(group, alice, png, caption="/anime")
        tg.push_update(cap)
        assert title in shown(await answer_to(tg, cap["message"]["message_id"]))
        # addressed to another bot, and an /anime that replies to no picture
        other = tg.text_message(group, bob, "/anime@some_other_bot", reply_to=plain)
        tg.push_update(other)
        bare = tg.text_message(group, bob, "/anime")
        tg.push_update(bare)
        hint = await answer_to(tg, bare["message"]["message_id"])
        assert "Reply to a picture" in shown(hint)
        # auto-answer: members may not, admins may
        off = tg.text_message(group, bob, "/autoanswer on")
        tg.push_update(off)
        refused = await answer_to(tg, off["message"]["message_id"])
        assert "only group admins" in shown(refused).lower()
        tg.set_member(group, alice, "administrator")
        on = tg.text_message(group, alice, "/autoanswer on")
        tg.push_update(on)
        agreed = await answer_to(tg, on["message"]["message_id"])
        assert "auto-answer is on" in shown(agreed).lower()
        # ... it skips stickers and files it cannot read (nobody asked), answers pictures
        quiet = [tg.sticker_message(group, bob, webp_sticker(png)),
                 tg.document_message(group, bob, b"notes", file_name="a.txt",
                                     mime_type="text/plain")]
        for u in quiet:
            tg.push_update(u)
        auto = tg.photo_message(group, bob, png)
        tg.push_update(auto)
        assert title in shown(await answer_to(tg, auto["message"]["message_id"]))
        assert str(group["id"]) in state.read_text()
        # and off again
        tg.push_update(tg.text_message(group, alice, "/autoanswer off"))
        await tg.wait_for("sendMessage", lambda c: "is off" in c.params["text"])
        after = tg.photo_message(group, bob, png)
        await settle(tg, tg.push_update(after))

    silent = [plain, other, after, *quiet]
    assert not [replies_to(tg, u["message"]["message_id"]) for u in silent if
                replies_to(tg, u["message"]["message_id"])], "answered what nobody asked for"
    assert str(group["id"]) not in state.read_text()


async def test_media_kinds(tg: FakeTelegram, make_service: Callable[..., Any],
                           indexed_home: Any) -> None:
    service = await make_service()
    title = indexed_home.series_title(0)
    frames = [indexed_home.frame_png(0, t) for t in (6.0, 6.5)]
    clip = [indexed_home.frame_png(0, t) for t in (5.5, 6.0, 6.5, 7.0)]
    alice = tg.user(1001, "Alice", "alice")
    chat = tg.private_chat(alice)
    updates = {
        "document": tg.document_message(chat, alice, frames[0], file_name="shot.png",
                                        mime_type="image/png"),
        "gif": tg.animation_message(chat, alice, gif_of(frames), file_name="clip.gif",
                                    mime_type="image/gif"),
        "sticker": tg.sticker_message(chat, alice, webp_sticker(frames[0])),
        "video": tg.video_message(chat, alice, clip_of(clip)),
        "video_note": tg.video_note_message(chat, alice, clip_of(clip)),
        "video_sticker": tg.sticker_message(chat, alice, clip_of(clip, fmt="webm"), is_video=True),
    }
    async with running(tg, service):
        for upd in updates.values():
            tg.push_update(upd)
        answers = {k: await answer_to(tg, u["message"]["message_id"]) for k, u in updates.items()}
    for kind, call in answers.items():
        assert title in shown(call), (kind, shown(call))
        assert keyboard(call)[0] == ["✅", "❌"], kind


async def test_refusals_before_download(tg: FakeTelegram, make_service: Callable[..., Any],
                                        indexed_home: Any) -> None:
    service = await make_service(max_bytes=50_000)
    alice = tg.user(1001, "Alice", "alice")
    chat = tg.private_chat(alice)
    async with running(tg, service):
        txt = tg.document_message(chat, alice, b"just some notes\n", file_name="notes.txt",
                                  mime_type="text/plain")
        tg.push_update(txt)
        t_answer = await answer_to(tg, txt["message"]["message_id"])
        big = tg.document_message(chat, alice, indexed_home.frame_png(0, 6.0) + b"\0" * 60_000,
                                  file_name="big.png", mime_type="image/png")
        tg.push_update(big)
        b_answer = await answer_to(tg, big["message"]["message_id"])
        tgs = tg.sticker_message(chat, alice, b"\x1f\x8b\x08\x00fake-lottie", is_animated=True)
        tg.push_update(tgs)
        s_answer = await answer_to(tg, tgs["message"]["message_id"])
    assert "isn't a picture" in shown(t_answer)
    assert "too large" in shown(b_answer) and "0.05 MB" not in shown(b_answer)
    assert "animated" in shown(s_answer).lower()
    # only the sticker was downloaded: the text file and the big file were refused before
    downloaded = {c.params["file_id"] for c in tg.calls("getFile")}
    assert downloaded == {tgs["message"]["sticker"]["file_id"]}


async def test_feedback_buttons_and_reactions(tg: FakeTelegram, make_service: Callable[..., Any],
                                              indexed_home: Any) -> None:
    service = await make_service()
    alice, bob = tg.user(1001, "Alice", "alice"), tg.user(1002, "Bob", "bob")
    group = tg.group_chat(-1001234567890)
    async with running(tg, service):
        upd = tg.photo_message(group, alice, indexed_home.frame_png(0, 6.0), caption="/anime")
        tg.push_update(upd)
        ans = await answer_to(tg, upd["message"]["message_id"])
        qid = query_id_of(ans)
        n_ranks = sum(1 for row in keyboard(ans)[1:] for _ in row)

        # ✅ by Alice → a row, the query answered, the tally on the keyboard
        mark = len(tg.requests)
        press = tg.callback_query(alice, ans, f"fb:{qid}:ok")
        tg.push_update(press)
        answered = await tg.wait_for("answerCallbackQuery", since=mark)
        edited = await tg.wait_for("editMessageReplyMarkup", since=mark)
        assert answered.params["callback_query_id"] == press["callback_query"]["id"]
        assert "right" in answered.params["text"].lower()
        assert keyboard(edited)[0] == ["✅ 1", "❌"]
        rows = feedback_rows(indexed_home, qid)
        assert [(r.verdict, r.active) for r in rows] == [("correct", True)]

        # Alice changes her mind: ❌ replaces ✅ (one active row for her)
        mark = len(tg.requests)
        tg.push_update(tg.callback_query(alice, ans, f"fb:{qid}:no"))
        edited = await tg.wait_for("editMessageReplyMarkup", since=mark)
        assert keyboard(edited)[0] == ["✅", "❌ 1"]
        rows = feedback_rows(indexed_home, qid)
        assert [(r.verdict, r.active) for r in rows if r.active] == [("wrong", True)]
        assert len(rows) == 2

        if n_ranks >= 2:  # and then picks candidate 2
            mark = len(tg.requests)
            tg.push_update(tg.callback_query(alice, ans, f"fb:{qid}:2"))
            edited = await tg.wait_for("editMessageReplyMarkup", since=mark)
            assert keyboard(edited)[1][1] == "2 ·1" and keyboard(edited)[0] == ["✅", "❌"]
            assert [(r.verdict, r.rank) for r in feedback_rows(indexed_home, qid)
                    if r.active] == [("pick", 2)]

        # Bob reacts 👎 on the answer → wrong; removing the reaction withdraws it
        msg_id = ans.result["message_id"]
        mark = len(tg.requests)
        tg.push_update(tg.message_reaction(group, msg_id, bob, old=[], new=["👎"]))
        await tg.wait_for("editMessageReplyMarkup", since=mark)
        bob_rows = [r for r in feedback_rows(indexed_home, qid) if r.user_hash != rows[0].user_hash]
        assert [(r.verdict, r.active) for r in bob_rows] == [("wrong", True)]
        mark = len(tg.requests)
        tg.push_update(tg.message_reaction(group, msg_id, bob, old=["👎"], new=[]))
        await tg.wait_for("editMessageReplyMarkup", since=mark)
        bob_rows = [r for r in feedback_rows(indexed_home, qid) if r.user_hash != rows[0].user_hash]
        assert [(r.verdict, r.active) for r in bob_rows] == [("wrong", False)]
        assert bob_rows[0].withdrawn_at is not None

        # a stale/unknown payload still gets its callback answered
        mark = len(tg.requests)
        tg.push_update(tg.callback_query(bob, ans, "fb:nosuchquery:ok"))
        stale = await tg.wait_for("answerCallbackQuery", since=mark)
        assert "no longer known" in stale.params["text"]


async def test_429_is_retried(tg: FakeTelegram, make_service: Callable[..., Any],
                              indexed_home: Any) -> None:
    service = await make_service()
    alice = tg.user(1001, "Alice", "alice")
    chat = tg.private_chat(alice)
    async with running(tg, service):
        tg.fail_next("sendVideo", 429, retry_after=1)
        upd = tg.photo_message(chat, alice, indexed_home.frame_png(0, 6.0))
        tg.push_update(upd)
        ans = await answer_to(tg, upd["message"]["message_id"])
        tg.fail_next("sendMessage", 429, retry_after=1)
        txt = tg.document_message(chat, alice, b"hello", file_name="a.txt", mime_type="text/plain")
        tg.push_update(txt)
        t_ans = await answer_to(tg, txt["message"]["message_id"])
    assert ans.method == "sendVideo"
    injected = [c for c in tg.requests if c.injected]
    assert [c.method for c in injected] == ["sendVideo", "sendMessage"]
    assert all(c.status == 429 for c in injected)
    assert ans.time - injected[0].time >= 1.0  # waited retry_after before retrying
    assert "isn't a picture" in shown(t_ans)


async def test_rate_limit_and_own_messages(tg: FakeTelegram, make_service: Callable[..., Any],
                                           indexed_home: Any) -> None:
    service = await make_service(rate=2)
    alice = tg.user(1001, "Alice", "alice")
    chat = tg.private_chat(alice)
    me = tg.user(123, "AniRec Test", BOT, is_bot=True)
    png = indexed_home.frame_png(0, 6.0)
    async with running(tg, service):
        own = tg.photo_message(chat, me, png)
        own_id = tg.push_update(own)
        ups = [tg.photo_message(chat, alice, png) for _ in range(3)]
        for u in ups:
            tg.push_update(u)
        answers = [await answer_to(tg, u["message"]["message_id"]) for u in ups]
        await settle(tg, own_id)
    texts = [shown(a) for a in answers]
    assert sum("too fast" in t for t in texts) == 1, texts
    assert sum("too fast" not in t and a.method == "sendVideo"
               for t, a in zip(texts, answers, strict=True)) == 2
    assert not replies_to(tg, own["message"]["message_id"])


async def test_help_and_owner_commands(tg: FakeTelegram, make_service: Callable[..., Any]) -> None:
    service = await make_service()
    owner, alice = tg.user(OWNER, "Op", "op"), tg.user(1001, "Alice", "alice")
    async with running(tg, service):
        mark = len(tg.requests)
        tg.push_update(tg.text_message(tg.private_chat(alice), alice, "hello?"))
        hint = await tg.wait_for("sendMessage", since=mark)
        assert "Send me a screenshot" in hint.params["text"]
        mark = len(tg.requests)
        tg.push_update(tg.text_message(tg.private_chat(alice), alice, "/help"))
        helped = await tg.wait_for("sendMessage", since=mark)
        tg.push_update(tg.text_message(tg.private_chat(alice), alice, "/stats"))
        refused = await tg.wait_for("sendMessage", lambda c: c.params["chat_id"] == alice["id"]
                                    and "operator" in c.params["text"], since=mark)
        tg.push_update(tg.text_message(tg.private_chat(owner), owner, "/stats"))
        stats = await tg.wait_for("sendMessage", lambda c: c.params["chat_id"] == OWNER,
                                  since=mark)
        mark = len(tg.requests)
        tg.push_update(tg.text_message(tg.private_chat(owner), owner, "/reload"))
        reloaded = await tg.wait_for("sendMessage", since=mark, timeout=30)
    assert "/anime" in helped.params["text"] and "/autoanswer" in helped.params["text"]
    assert "operator" in refused.params["text"]
    text = html.unescape(stats.params["text"])
    assert "queries" in text and "ready" in text and "True" in text
    assert reloaded.params["text"].startswith("Reloaded:")


def adult_episode(indexed_home: Any) -> int:
    import json

    for i, ep in enumerate(indexed_home.ground_truth["episodes"]):
        meta = indexed_home.library / Path(ep["path"]).parent / "series.json"
        if meta.exists() and json.loads(meta.read_text()).get("is_adult"):
            return i
    pytest.skip("the sample library has no adult series")


async def test_adult_series_is_a_spoiler_in_groups_only(
        tg: FakeTelegram, make_service: Callable[..., Any], indexed_home: Any) -> None:
    service = await make_service()
    ep = adult_episode(indexed_home)
    title = indexed_home.series_title(ep)
    png = indexed_home.frame_png(ep, 6.0)
    alice = tg.user(1001, "Alice", "alice")
    group = tg.group_chat(-1001234567890)
    async with running(tg, service):
        g = tg.photo_message(group, alice, png, caption=f"@{BOT}")
        tg.push_update(g)
        in_group = await answer_to(tg, g["message"]["message_id"])
        p = tg.photo_message(tg.private_chat(alice), alice, png)
        tg.push_update(p)
        in_private = await answer_to(tg, p["message"]["message_id"])
    assert in_group.method == in_private.method == "sendVideo"
    assert in_group.params["has_spoiler"] is True
    assert f"<tg-spoiler><b>{title}</b></tg-spoiler> (18+)" in in_group.params["caption"]
    assert in_private.params["has_spoiler"] is False
    assert "tg-spoiler" not in in_private.params["caption"] and title in shown(in_private)


# -- with a stub service: paths the real library cannot reach --------------------------------------

class StubService:
    """Just what the adapter calls for recognition; `recognize` returns/raises what it is given."""

    def __init__(self, result: Recognition | BaseException) -> None:
        self.limits = MediaLimits()
        self.result = result

    async def recognize(self, data: bytes, *, source: Any, sticker: bool = False,
                        with_preview: bool = True) -> Recognition:
        if isinstance(self.result, BaseException):
            raise self.result
        return self.result


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
        video = await answer_to(tg, mid, methods=["sendVideo"])
        text = await answer_to(tg, mid, methods=["sendMessage"])
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
        tg.push_update(upd)
        ans = await answer_to(tg, upd["message"]["message_id"])
    assert ans.method == ("sendPhoto" if has == "still" else "sendMessage")
    assert "Some Show" in shown(ans) and "Episode 02" in shown(ans)
    assert keyboard(ans) == [["✅", "❌"]]  # one candidate: no rank buttons
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
        ref = app.bot_data["anirec"].answers.get(alice["id"], answer_id)
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
        ref = app.bot_data["anirec"].answers.get(alice["id"], answer_id)
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
        ans = await tg.wait_for("sendVideo", since=mark, timeout=30)
    qid = parse_feedback(ans.params["reply_markup"]["inline_keyboard"][0][0]["callback_data"]).query_id
    assert (tmp_path / "telegram-answers.jsonl").exists()
    async with running(tg, service, state_file=state):  # a new process: only the journal is left
        mark = len(tg.requests)
        tg.push_update(tg.message_reaction(chat, ans.result["message_id"], bob, old=[], new=["👎"]))
        await tg.wait_for("editMessageReplyMarkup", since=mark, timeout=30)
    rows = feedback_rows(indexed_home, qid)
    assert [(r.verdict, r.active) for r in rows] == [("wrong", True)]


def test_answer_journal_survives_torn_lines_and_compacts(tmp_path: Path) -> None:
    from bot.telegram_adapter import AnswerMap, AnswerRef

    path = tmp_path / "answers.jsonl"
    m = AnswerMap(size=3, path=path)
    for i in range(10):
        m.put(1, i, AnswerRef(f"q{i}", 5, i))
    assert len(path.read_text().splitlines()) <= 2 * 3 + 1  # compacted, not ever-growing
    with open(path, "a") as fh:
        fh.write('[1, 99, "q99", 5')  # a crash mid-write
    again = AnswerMap(size=3, path=path)
    assert again.get(1, 9) == AnswerRef("q9", 5, 9) and again.get(1, 0) is None
    assert again.get(1, 99) is None
