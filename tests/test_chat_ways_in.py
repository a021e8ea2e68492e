"""More ways in and the defaults people get, through the real clients against the fakes:

- Telegram: a picture link given only as the message's link preview; a text with several
  picture links and an album of photos (the first answered, a picker for the others, each
  press answering one more); the cover from series.json on a text answer; the reply language
  taken from the person's Telegram app language;
- Discord: the answer language from the server's locale (messages) and the person's client
  locale (slash commands), and the slash commands' descriptions in Japanese and Chinese.

With CHAT_EVIDENCE=1 the fakes' recordings go to bench/results/chat/ (see
tests/test_chat_answers.py).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from bot.chat import i18n
from core.types import Recognition, SeriesInfo
from tests import discord_helpers, telegram_helpers
from tests.discord_helpers import answer_to as discord_answer
from tests.discord_helpers import embed_of, eventually, png_attachment
from tests.discord_helpers import running as discord_running
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.telegram_server import FakeTelegram
from tests.telegram_helpers import answer_to, keyboard, replies_to, running, shown
from tests.test_chat_answers import (
    SHOW,
    Recording,
    StubService,
    cand,
    elsewhere_rival,
    png,
    save,
    tg_record,
)

tg = telegram_helpers.tg
dc = discord_helpers.dc
web_server = discord_helpers.web_server
_no_proxy = telegram_helpers._no_proxy

pytestmark = pytest.mark.timeout(90)

COVERED = SeriesInfo(9, "Lantern Street", {"ja": "灯籠通り"}, anilist_id=404,
                     cover="https://img.example.org/lantern-street.jpg",
                     synopsis="Two couriers race the last tram.")


def covered_match() -> Recognition:
    """A plain match without a preview clip or still: the cover is what there is to show."""
    return Recognition(status="match", confidence=0.97, query_id="coverQ01",
                       candidates=(cand(COVERED, 4, 61.0, 0.93),))


def telegram_bot(tg: FakeTelegram, service: Any) -> Any:
    """The Telegram bot, allowed to fetch links from the local test server."""
    return running(tg, service, allow_private_urls=True, any_link_host=True)


async def sends_to(tg: FakeTelegram, message_id: int, n: int, timeout: float = 20.0) -> list[Any]:
    """The first `n` successful sends replying to `message_id`, in order."""
    for _ in range(int(timeout / 0.05)):
        got = [c for c in replies_to(tg, message_id) if c.ok and c.method.startswith("send")]
        if len(got) >= n:
            return got[:n]
        await asyncio.sleep(0.05)
    raise TimeoutError(f"{len(got)} of {n} replies to {message_id}")


# -- Telegram ------------------------------------------------------------------------------------

async def test_telegram_answers_the_link_preview_picture(tg: FakeTelegram, web_server: str,
                                                         indexed_home: Any) -> None:
    """The text names a web page; the picture is only the message's chosen link preview."""
    svc = Recording(elsewhere_rival())
    async with telegram_bot(tg, svc):
        alice = tg.user(1001, "Alice", "alice")
        upd = tg.text_message(tg.private_chat(alice), alice, "look at this scene")
        upd["message"]["link_preview_options"] = {"url": f"{web_server}/image.png"}
        tg.push_update(upd)
        ans = await answer_to(tg, upd["message"]["message_id"])
    assert svc.got == [indexed_home.frame_png(0, 6.0)]  # fetched from the preview's URL
    assert "Probably this" in shown(ans)


async def test_telegram_several_links_are_answered_one_then_a_picker(
        tg: FakeTelegram, web_server: str, indexed_home: Any) -> None:
    svc = Recording(elsewhere_rival())
    async with telegram_bot(tg, svc):
        alice = tg.user(1001, "Alice", "alice")
        chat = tg.private_chat(alice)
        upd = tg.text_message(chat, alice, f"{web_server}/image.png and {web_server}/stickers/b.png")
        tg.push_update(upd)
        mid = upd["message"]["message_id"]
        ans, picker = await sends_to(tg, mid, 2)
        assert len(svc.got) == 1 and "Probably this" in shown(ans)
        assert shown(picker) == i18n.EN["picker.prompt"].format(n=1)
        assert keyboard(picker) == [["Picture 2"]]
        data = picker.params["reply_markup"]["inline_keyboard"][0][0]["callback_data"]
        msg = tg.get_message(picker.result["chat"]["id"], picker.result["message_id"])
        tg.push_update(tg.callback_query(alice, msg, data))
        _, _, second = await sends_to(tg, mid, 3)
        await eventually(lambda: tg.calls("editMessageReplyMarkup"))
    assert len(svc.got) == 2 and svc.got[1] != svc.got[0]  # the second link's picture
    assert "Probably this" in shown(second)
    [edit] = tg.calls("editMessageReplyMarkup")
    assert not (edit.params.get("reply_markup") or {}).get("inline_keyboard")  # none left


async def test_telegram_album_is_answered_once_with_a_picker(tg: FakeTelegram) -> None:
    svc = Recording(elsewhere_rival())
    async with telegram_bot(tg, svc):
        alice = tg.user(1001, "Alice", "alice")
        chat = tg.private_chat(alice)
        album = [tg.photo_message(chat, alice, png()) for _ in range(3)]
        for upd in album:
            upd["message"]["media_group_id"] = "album-1"
            tg.push_update(upd)
        first = album[0]["message"]["message_id"]
        ans, picker = await sends_to(tg, first, 2)
        await asyncio.sleep(0.5)
        # only the first photo was answered; the others wait behind the picker
        assert len(svc.got) == 1
        assert all(not replies_to(tg, u["message"]["message_id"]) for u in album[1:])
        assert keyboard(picker) == [["Picture 2", "Picture 3"]]
        data = picker.params["reply_markup"]["inline_keyboard"][0][1]["callback_data"]
        msg = tg.get_message(picker.result["chat"]["id"], picker.result["message_id"])
        tg.push_update(tg.callback_query(alice, msg, data))
        await sends_to(tg, first, 3)
        await eventually(lambda: tg.calls("editMessageReplyMarkup"))
    assert len(svc.got) == 2
    [edit] = tg.calls("editMessageReplyMarkup")
    assert [b["text"] for b in edit.params["reply_markup"]["inline_keyboard"][0]] == ["Picture 2"]
    save("telegram_album_picker", "Telegram: an album of 3 photos → one answer and a picker; "
         "'Picture 3' pressed → its answer; the picker keeps 'Picture 2'",
         [tg_record(ans), tg_record(picker), tg_record(edit)])


async def test_telegram_text_answer_shows_the_cover_and_the_app_language(tg: FakeTelegram) -> None:
    """No preview clip or still: the cover from series.json is the answer's link preview;
    a person whose Telegram is in Japanese gets Japanese without choosing /lang."""
    async with telegram_bot(tg, StubService(covered_match())):
        kenji = tg.user(2002, "Kenji", "kenji", language_code="ja")
        upd = tg.photo_message(tg.private_chat(kenji), kenji, png())
        tg.push_update(upd)
        ans = await answer_to(tg, upd["message"]["message_id"])
    assert ans.method == "sendMessage"
    assert ans.params["link_preview_options"] == {
        "url": COVERED.cover, "prefer_small_media": True, "show_above_text": False}
    assert ans.result["link_preview_options"]["url"] == COVERED.cover
    assert "灯籠通り" in shown(ans) and "確信度 97%" in shown(ans)
    assert "Two couriers race the last tram." in shown(ans)
    # the "/" menu in Japanese for people whose Telegram is in Japanese
    menu = tg.commands[json.dumps([{"type": "default"}, "ja"], sort_keys=True)]
    assert {c["command"]: c["description"] for c in menu}["lang"] == i18n.JA["tg.cmd.lang"]
    save("telegram_cover", "Telegram: a text answer (no preview) with the series cover as its "
         "link preview, in Japanese from the person's Telegram language",
         [tg_record(ans)])


async def test_telegram_adult_cover_is_not_shown_in_groups(tg: FakeTelegram) -> None:
    adult = SeriesInfo(10, "After Hours", {}, cover="https://img.example.org/a.jpg", is_adult=True)
    rec = Recognition(status="match", confidence=0.95, query_id="adultQ01",
                      candidates=(cand(adult, 1, 5.0, 0.9),))
    async with telegram_bot(tg, StubService(rec)):
        alice = tg.user(1001, "Alice", "alice")
        group = tg.group_chat(-100500, "Friends")
        upd = tg.photo_message(group, alice, png(), caption="/anime")
        tg.push_update(upd)
        ans = await answer_to(tg, upd["message"]["message_id"])
    assert "link_preview_options" not in ans.params


# -- Discord -------------------------------------------------------------------------------------

async def test_discord_language_follows_the_server_and_client_locale(dc: FakeDiscord) -> None:
    alice = dc.users[0]
    dc.guild["preferred_locale"] = "ja"
    dc.locales[alice["id"]] = "zh-CN"
    async with discord_running(dc, StubService(elsewhere_rival())):
        msg = dc.message_create(dc.text_channel, alice, "?", attachments=[png_attachment(dc, png())])
        [post] = await discord_answer(dc, msg)
        att = png_attachment(dc, png())
        slash = dc.interaction_slash(alice, dc.text_channel, "anime", {"image": att})
        app_id = dc.application["id"]
        answer = await dc.wait_for("POST", rf"^/webhooks/{app_id}/{slash['token']}$", timeout=20)
        commands = {c["name"]: c for c in dc.commands}
    # a message in the server: the server's language (no one chose otherwise)
    assert embed_of(post)["title"] == "紅の港" and "確信度 93%" in embed_of(post)["description"]
    # a slash command: the person's own Discord language
    assert embed_of(answer)["title"] == "红港" and "置信度 93%" in embed_of(answer)["description"]
    # the commands' descriptions, translated for Japanese and Chinese clients
    anime = commands["anime"]
    assert anime["description_localizations"]["ja"] == i18n.JA["dc.cmd.anime"]
    assert anime["description_localizations"]["zh-CN"] == i18n.ZH["dc.cmd.anime"]
    assert commands["Identify anime"]["name_localizations"]["ja"] == "アニメを特定"
    assert SHOW.titles["zh"] == "红港"
