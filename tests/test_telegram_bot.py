"""End to end: the real PTB Application (bot.telegram_adapter) against the fake Telegram Bot
API server, with the real RecognitionService over the real indexed sample library: private
and group answers, media kinds, refusals, feedback, rate limits, owners, adult series.

Nothing is patched: the bot runs through `run_telegram()` (initialize/start/polling/stop/
shutdown in the test's loop), downloads files from the fake, recognises them with the real
models/index/SQLite, and the fake records every Bot API call it makes.
"""

from __future__ import annotations

import html
import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bot.telegram_adapter import ALLOWED_UPDATES
from tests import telegram_helpers
from tests.fakes.media import clip_of
from tests.fakes.telegram_server import FakeTelegram
from tests.telegram_helpers import (
    BOT,
    OWNER,
    answer_to,
    feedback_rows,
    gif_of,
    keyboard,
    preview_reply,
    query_id_of,
    replies_to,
    running,
    settle,
    shown,
    webp_sticker,
)

# The shared fixtures (pytest finds them as attributes of this module).
tg = telegram_helpers.tg
_no_proxy = telegram_helpers._no_proxy
_no_handler_errors = telegram_helpers._no_handler_errors

pytestmark = pytest.mark.timeout(60)

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
            clip = await preview_reply(tg, call)  # the answer first, the clip replying to it
            latencies.append((call.time - t0, clip.time - t0))
        print(f"\n[telegram latency] photo push_update → answer / clip at the fake: "
              f"cold {latencies[0][0] * 1000:.0f} / {latencies[0][1] * 1000:.0f} ms, "
              f"warm {latencies[1][0] * 1000:.0f} / {latencies[1][1] * 1000:.0f} ms")

    print("[answer]\n" + call.params["text"])
    assert call.method == "sendMessage", [c.method for c in tg.requests]
    caption = shown(call)
    assert title in caption
    assert "Found it" in caption or "Not sure" in caption
    assert call.params["parse_mode"] == "HTML"
    assert clip.method == "sendVideo" and clip.params["supports_streaming"] is True
    assert title in shown(clip) and clip.params["parse_mode"] == "HTML"
    assert "video" in clip.files and clip.files["video"].data[4:8] == b"ftyp"
    assert "reply_markup" not in clip.params  # the votes stay on the answer
    rows = keyboard(call)
    assert rows[0] == ["✅", "❌"]
    assert rows[-1] == ["AniList", "MyAnimeList"]  # the series' links, from series.json
    rows = rows[:-1]
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
        k: call.params[k] for k in ("chat_id", "parse_mode", "reply_parameters") if k in call.params},
        "text=", call.params["text"].splitlines()[:3],
        "keyboard=", [[b.get("callback_data") or b.get("url") for b in r] for r in
                      call.params["reply_markup"]["inline_keyboard"]],
        "then", clip.method, {k: clip.params[k] for k in ("supports_streaming", "has_spoiler",
                                                          "reply_parameters") if k in clip.params},
        "video bytes=", len(clip.files["video"].data))


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
        assert str(group["id"]) not in state.read_text()  # the chat kept as a keyed hash only
        assert len(json.loads(state.read_text())["autoanswer_chats"]) == 1
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
        clip = await preview_reply(tg, ans)
        tg.fail_next("sendMessage", 429, retry_after=1)
        txt = tg.document_message(chat, alice, b"hello", file_name="a.txt", mime_type="text/plain")
        tg.push_update(txt)
        t_ans = await answer_to(tg, txt["message"]["message_id"])
    assert ans.method == "sendMessage" and clip.method == "sendVideo"
    injected = [c for c in tg.requests if c.injected]
    assert [c.method for c in injected] == ["sendVideo", "sendMessage"]
    assert all(c.status == 429 for c in injected)
    assert clip.time - injected[0].time >= 1.0  # waited retry_after before retrying
    assert t_ans.time - injected[1].time >= 1.0
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
        answered = [a for a in answers if "too fast" not in shown(a)]
        clips = [await preview_reply(tg, a) for a in answered]
        await settle(tg, own_id)
    texts = [shown(a) for a in answers]
    assert sum("too fast" in t for t in texts) == 1, texts
    assert len(answered) == 2 and [c.method for c in clips] == ["sendVideo"] * 2
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
        group_answer = await answer_to(tg, g["message"]["message_id"])
        in_group = await preview_reply(tg, group_answer)
        p = tg.photo_message(tg.private_chat(alice), alice, png)
        tg.push_update(p)
        private_answer = await answer_to(tg, p["message"]["message_id"])
        in_private = await preview_reply(tg, private_answer)
    assert in_group.method == in_private.method == "sendVideo"
    assert in_group.params["has_spoiler"] is True
    assert f"<tg-spoiler><b>{title}</b></tg-spoiler> (18+)" in in_group.params["caption"]
    assert f"<tg-spoiler><b>{title}</b></tg-spoiler> (18+)" in group_answer.params["text"]
    assert in_private.params["has_spoiler"] is False
    assert "tg-spoiler" not in in_private.params["caption"] and title in shown(in_private)
    assert "tg-spoiler" not in private_answer.params["text"]
