"""What a person sees, on Telegram and Discord (real clients against the fakes), for the
answers issue #22 is about: a close rival, a no-match, the link buttons, a title in
Japanese, private answers, and an error that never shows a path.

With CHAT_EVIDENCE=1 the tests also write what the fakes recorded to
bench/results/chat/*.json (the evidence the issue asks for; the web chat's screenshots come
from tests/test_web_chat_ux.py the same way):

    CHAT_EVIDENCE=1 python -m pytest tests/test_chat_answers.py tests/test_web_chat_ux.py
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
from pathlib import Path
from typing import Any

import pytest

from core.errors import IndexUnavailable
from core.media import MediaLimits
from core.sysinfo import machine_info
from core.types import Candidate, Recognition, SeriesInfo
from tests import discord_helpers, telegram_helpers
from tests.discord_helpers import answer_to as discord_answer
from tests.discord_helpers import buttons_of, embed_of, eventually, png_attachment, preview_edits, preview_of
from tests.discord_helpers import running as discord_running
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.telegram_server import FakeTelegram
from tests.preview_split import SplitPreview
from tests.telegram_helpers import answer_to, keyboard, preview_reply, replies_to, running, settle, shown

tg = telegram_helpers.tg
dc = discord_helpers.dc
_no_proxy = telegram_helpers._no_proxy

pytestmark = pytest.mark.timeout(90)

EVIDENCE = Path(__file__).resolve().parent.parent / "bench" / "results" / "chat"
SAVE = bool(os.environ.get("CHAT_EVIDENCE"))

SHOW = SeriesInfo(7, "Crimson Harbor", {"en": "Crimson Harbor", "ja": "紅の港", "zh": "红港"},
                  anilist_id=101, mal_id=202, synopsis="A lighthouse keeper's daughter "
                  "finds a letter.")
OTHER = SeriesInfo(8, "Quiet Meadow", {"ja": "静かな草原"}, anilist_id=303)


def cand(series: SeriesInfo, ep: int, t: float, score: float, **kw: Any) -> Candidate:
    return Candidate(series=series, episode_id=series.id * 100 + ep, season=1, episode=ep,
                     episode_label=f"{ep:02d}", time=t, time_from=t - 1, time_to=t + 1,
                     score=score, **kw)


def same_episode_rival(preview: str | None = None) -> Recognition:
    """The issue's case: episode 3 at 00:14 (0.90) and the same episode at 00:25 (0.89)."""
    return Recognition(status="match", confidence=0.99, query_id="rivalQ01", candidates=(
        cand(SHOW, 3, 14.0, 0.90, preview=preview), cand(SHOW, 3, 25.0, 0.89),
        cand(OTHER, 1, 80.0, 0.60)))


def elsewhere_rival() -> Recognition:
    return Recognition(status="match", confidence=0.93, query_id="rivalQ02", candidates=(
        cand(SHOW, 3, 14.0, 0.90), cand(OTHER, 5, 300.0, 0.88)))


def no_match(preview: str | None) -> Recognition:
    return Recognition(status="no_match", confidence=0.08, query_id="nomatchQ1", candidates=(
        cand(SHOW, 2, 40.0, 0.31, preview=preview, still=preview), cand(OTHER, 1, 9.0, 0.29)))


class StubService(SplitPreview):
    """What the adapters call for recognition; `recognize` returns/raises the next result
    (without its preview, which `preview(rec)` gives, as the real service does)."""

    def __init__(self, *results: Recognition | BaseException) -> None:
        super().__init__()
        self.limits = MediaLimits()
        self.results = list(results)

    async def recognize(self, data: bytes, *, source: Any, sticker: bool = False,
                        with_preview: bool = True) -> Recognition:
        r = self.results.pop(0) if len(self.results) > 1 else self.results[0]
        if isinstance(r, BaseException):
            raise r
        return self.answer(r)


def save(name: str, what: str, calls: list[dict[str, Any]]) -> None:
    if not SAVE:
        return
    EVIDENCE.mkdir(parents=True, exist_ok=True)
    when = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    (EVIDENCE / f"{name}.json").write_text(json.dumps(
        {"what": what, "date": when, "machine": machine_info(), "recorded": calls},
        ensure_ascii=False, indent=1, default=str) + "\n", encoding="utf-8")


def tg_record(call: Any) -> dict[str, Any]:
    return {"method": call.method, "params": {k: v for k, v in call.params.items()
                                              if k not in ("video", "photo")},
            "shown": shown(call)}


def png() -> bytes:
    import io

    from PIL import Image
    out = io.BytesIO()
    Image.new("RGB", (64, 48), (90, 120, 200)).save(out, format="PNG")
    return out.getvalue()


# -- Telegram -----------------------------------------------------------------------------------

async def test_telegram_close_rivals_are_said_and_one_confidence(tg: FakeTelegram) -> None:
    alice = tg.user(1001, "Alice", "alice")
    async with running(tg, StubService(same_episode_rival(), elsewhere_rival())):
        chat = tg.private_chat(alice)
        first = tg.photo_message(chat, alice, png())
        tg.push_update(first)
        a = await answer_to(tg, first["message"]["message_id"])
        second = tg.photo_message(chat, alice, png())
        tg.push_update(second)
        b = await answer_to(tg, second["message"]["message_id"])
    text_a, text_b = shown(a), shown(b)
    assert "Found it — two moments of this episode fit · Confidence 99%" in text_a
    assert "Episode 3 · 00:00:14 or 00:00:25" in text_a
    assert text_a.count("%") == 1  # one number, labelled; candidate lines carry none
    assert "Probably this — another scene fits almost as well · Confidence 93%" in text_b
    assert "Could also be: Quiet Meadow — Episode 5 @ 00:05:00" in text_b
    assert keyboard(a)[-1] == ["AniList", "MyAnimeList"]
    urls = [btn["url"] for btn in a.params["reply_markup"]["inline_keyboard"][-1]]
    assert urls == ["https://anilist.co/anime/101", "https://myanimelist.net/anime/202"]
    save("telegram_close_rival", "Telegram: a close rival in the same episode, then elsewhere; "
         "the AniList / MyAnimeList buttons", [tg_record(a), tg_record(b)])


async def test_telegram_no_match_has_no_preview_no_votes_and_a_closest_button(
        tg: FakeTelegram, tmp_path: Path, indexed_home: Any) -> None:
    clip = tmp_path / "p.mp4"
    clip.write_bytes(b"\0" * 100)  # never sent: a no-match has no preview
    alice = tg.user(1001, "Alice", "alice")
    async with running(tg, StubService(no_match(str(clip)))):
        upd = tg.photo_message(tg.private_chat(alice), alice, png())
        tg.push_update(upd)
        ans = await answer_to(tg, upd["message"]["message_id"])
        assert ans.method == "sendMessage" and not tg.calls("sendVideo")
        assert keyboard(ans) == [["Show closest scenes"]]
        assert "Crimson Harbor" not in shown(ans) and "%" not in shown(ans)
        assert shown(ans).startswith("No match")
        msg = tg.get_message(ans.result["chat"]["id"], ans.result["message_id"])
        tg.push_update(tg.callback_query(alice, msg, "cl:nomatchQ1"))
        for _ in range(200):
            if tg.calls("editMessageText"):
                break
            await asyncio.sleep(0.05)
        [edit] = tg.calls("editMessageText")
    after = shown(edit)
    assert "Closest scenes (none fits well)" in after
    assert "1. Crimson Harbor — Episode 2 @ 00:00:40" in after and "2. Quiet Meadow" in after
    assert keyboard(edit) == []  # still no votes: nobody was offered these as an answer
    save("telegram_no_match", "Telegram: a no-match, then 'Show closest scenes' pressed",
         [tg_record(ans), tg_record(edit)])


async def test_telegram_lang_ja_gives_japanese_titles_and_text(tg: FakeTelegram) -> None:
    alice = tg.user(1001, "Alice", "alice")
    async with running(tg, StubService(same_episode_rival())):
        chat = tg.private_chat(alice)
        cmd = tg.text_message(chat, alice, "/lang ja")
        tg.push_update(cmd)
        said = await answer_to(tg, cmd["message"]["message_id"])
        assert shown(said).startswith("言語: 日本語")
        upd = tg.photo_message(chat, alice, png())
        tg.push_update(upd)
        ans = await answer_to(tg, upd["message"]["message_id"])
        bad = tg.text_message(chat, alice, "/lang xx")
        tg.push_update(bad)
        usage = await answer_to(tg, bad["message"]["message_id"])
    text = shown(ans)
    assert text.splitlines()[0].startswith("見つかりました")
    assert "確信度 99%" in text and "紅の港" in text.splitlines()[1]
    assert "第3話" in text
    assert "/lang en" in shown(usage)
    save("telegram_japanese", "Telegram: /lang ja, then an answer with the Japanese title",
         [tg_record(said), tg_record(ans)])


async def test_telegram_errors_never_show_a_path(tg: FakeTelegram) -> None:
    alice = tg.user(1001, "Alice", "alice")
    err = IndexUnavailable("No index in /srv/anirec/var/index (no manifest.json)")
    async with running(tg, StubService(err)):
        upd = tg.photo_message(tg.private_chat(alice), alice, png())
        tg.push_update(upd)
        ans = await answer_to(tg, upd["message"]["message_id"])
    assert "/srv" not in shown(ans) and "manifest" not in shown(ans)
    assert "not ready" in shown(ans)


# -- Discord ------------------------------------------------------------------------------------

async def test_discord_no_match_closest_button_and_japanese(dc: FakeDiscord) -> None:
    alice = dc.users[0]
    async with discord_running(dc, StubService(no_match(None), same_episode_rival())):
        msg = dc.message_create(dc.text_channel, alice, "?", attachments=[png_attachment(dc, png())])
        [post] = await discord_answer(dc, msg)
        embed = embed_of(post)
        assert embed["title"] == "No match — nothing in the library fits well"
        assert buttons_of(post) == [["Show closest scenes"]] and "fields" not in embed
        assert not post.files
        press = dc.interaction_component(dc.users[1], post.response["id"], "cl:nomatchQ1")
        await eventually(lambda: len(dc.interaction_callbacks(press)) == 1)
        [cb] = dc.interaction_callbacks(press)
        assert cb["type"] == 7 and cb["data"]["components"] == []
        [field] = cb["data"]["embeds"][0]["fields"]
        assert field["name"] == "Closest scenes (none fits well)"
        assert field["value"].startswith("1. Crimson Harbor — Episode 2 @ 00:00:40")

        settings = dc.interaction_slash(alice, dc.text_channel, "settings", {"language": "ja"})
        await eventually(lambda: len(dc.interaction_callbacks(settings)) == 1)
        [said] = dc.interaction_callbacks(settings)
        assert said["data"]["content"].startswith("言語: 日本語") and said["data"]["flags"] == 64
        msg2 = dc.message_create(dc.text_channel, alice, "?", attachments=[png_attachment(dc, png())])
        [ja] = await discord_answer(dc, msg2)
    e = embed_of(ja)
    assert e["title"] == "紅の港" and "確信度 99%" in e["description"]
    assert "第3話 · 00:00:14 または 00:00:25" in e["description"]
    assert buttons_of(ja)[-1] == ["AniList", "MyAnimeList"]
    save("discord_answers", "Discord: a no-match with 'Show closest scenes' pressed, then "
         "/settings language:ja and a close-rival answer in Japanese with the link buttons",
         [{"answer": post.json, "button_press_update": cb},
          {"settings_reply": said}, {"answer": ja.json}])


async def test_discord_private_answers_by_server_setting(dc: FakeDiscord) -> None:
    owner, member = dc.users
    async with discord_running(dc, StubService(elsewhere_rival())):
        app = dc.application["id"]
        denied = dc.interaction_slash(member, dc.text_channel, "settings", {"private": True})
        await eventually(lambda: len(dc.interaction_callbacks(denied)) == 1)
        assert "server managers" in dc.interaction_callbacks(denied)[0]["data"]["content"]
        on = dc.interaction_slash(owner, dc.text_channel, "settings", {"private": True})
        await eventually(lambda: len(dc.interaction_callbacks(on)) == 1)
        assert "private" in dc.interaction_callbacks(on)[0]["data"]["content"]
        att = png_attachment(dc, png())
        slash = dc.interaction_slash(member, dc.text_channel, "anime", {"image": att})
        cb = await dc.wait_for("POST", rf"^/interactions/{slash['id']}/[^/]+/callback$")
        assert cb.json == {"type": 5, "data": {"flags": 64}}  # "thinking", only for the asker
        answer = await dc.wait_for("POST", rf"^/webhooks/{app}/{slash['token']}$", timeout=20)
    assert answer.json["flags"] & 64
    assert "Probably this" in embed_of(answer)["description"]


# -- more ways in: links in Telegram, embeds and Tenor clips in Discord ---------------------------

web_server = discord_helpers.web_server


class Recording(StubService):
    def __init__(self, result: Recognition) -> None:
        super().__init__(result)
        self.got: list[bytes] = []

    async def recognize(self, data: bytes, **kw: Any) -> Recognition:
        self.got.append(data)
        return await super().recognize(data, **kw)


async def test_telegram_answers_a_picture_link(tg: FakeTelegram, web_server: str,
                                               indexed_home: Any) -> None:
    from bot.telegram_adapter import build_telegram_application, run_telegram
    from tests.telegram_helpers import TOKEN

    svc = Recording(elsewhere_rival())
    app = build_telegram_application(TOKEN, svc, base_url=tg.base_url,
                                     base_file_url=tg.base_file_url, allow_private_urls=True)
    stop = asyncio.Event()
    mark = len(tg.requests)
    task = asyncio.create_task(run_telegram(app, stop, poll_timeout=1))
    try:
        await tg.wait_for("getUpdates", since=mark, timeout=15)
        alice = tg.user(1001, "Alice", "alice")
        upd = tg.text_message(tg.private_chat(alice), alice, f"what is this? {web_server}/image.png")
        tg.push_update(upd)
        ans = await answer_to(tg, upd["message"]["message_id"])
        hint = tg.text_message(tg.private_chat(alice), alice, "hello")
        tg.push_update(hint)
        plain = await answer_to(tg, hint["message"]["message_id"])
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)
    assert svc.got == [indexed_home.frame_png(0, 6.0)]  # the linked picture, fetched
    assert "Probably this" in shown(ans) and "Send me a screenshot" in shown(plain)


async def test_discord_reads_pictures_inside_embeds_and_tenor_clips(
        dc: FakeDiscord, web_server: str, indexed_home: Any) -> None:
    svc = Recording(elsewhere_rival())
    tenor = {"type": "gifv", "url": "https://tenor.com/view/some-gif-123",
             "video": {"url": f"{web_server}/image.png"},
             "thumbnail": {"url": f"{web_server}/image.png"}}
    async with discord_running(dc, svc):
        msg = dc.message_create(dc.text_channel, dc.users[0], "https://tenor.com/view/some-gif-123",
                                embeds=[tenor])
        [post] = await discord_answer(dc, msg)
    assert svc.got == [indexed_home.frame_png(0, 6.0)]
    assert "Probably this" in embed_of(post)["description"]


# -- skipping the preview ----------------------------------------------------------------------

class PreviewAware(StubService):
    """Gives the clip only when asked for previews (as the real service makes it only then)."""

    def __init__(self, clip: str) -> None:
        super().__init__(elsewhere_rival())
        self.clip = clip
        self.asked: list[bool] = []

    async def recognize(self, data: bytes, **kw: Any) -> Recognition:
        from dataclasses import replace
        want = kw.get("with_preview", True)
        self.asked.append(want)
        rec = self.results[0]
        assert isinstance(rec, Recognition)
        if not want:  # the real service starts no preview at all then
            self.full.pop(rec.query_id or "", None)
            return rec
        best = replace(rec.candidates[0], preview=self.clip)
        return self.answer(replace(rec, candidates=(best, *rec.candidates[1:])))


async def test_telegram_preview_off(tg: FakeTelegram, tmp_path: Path, indexed_home: Any) -> None:
    from tests.fakes.media import clip_of

    clip = tmp_path / "p.mp4"
    clip.write_bytes(clip_of([indexed_home.frame_png(0, t) for t in (6.0, 6.5)]))
    svc = PreviewAware(str(clip))
    alice = tg.user(1001, "Alice", "alice")
    async with running(tg, svc):
        chat = tg.private_chat(alice)
        first = tg.photo_message(chat, alice, png())
        tg.push_update(first)
        answer = await answer_to(tg, first["message"]["message_id"])
        assert (await preview_reply(tg, answer)).method == "sendVideo"
        off = tg.text_message(chat, alice, "/preview off")
        tg.push_update(off)
        assert "without the preview" in shown(await answer_to(tg, off["message"]["message_id"]))
        second = tg.photo_message(chat, alice, png())
        second_id = tg.push_update(second)
        ans = await answer_to(tg, second["message"]["message_id"])
        await settle(tg, second_id)
    assert ans.method == "sendMessage" and svc.asked == [True, False]
    assert not replies_to(tg, ans.result["message_id"])  # no clip followed


async def test_discord_preview_off(dc: FakeDiscord, tmp_path: Path, indexed_home: Any) -> None:
    from tests.fakes.media import clip_of

    clip = tmp_path / "p.mp4"
    clip.write_bytes(clip_of([indexed_home.frame_png(0, t) for t in (6.0, 6.5)]))
    svc = PreviewAware(str(clip))
    alice = dc.users[0]
    async with discord_running(dc, svc):
        first = dc.message_create(dc.text_channel, alice, "?", attachments=[png_attachment(dc, png())])
        [answer] = await discord_answer(dc, first)
        with_clip = await preview_of(dc, answer)
        cmd = dc.interaction_slash(alice, dc.text_channel, "settings", {"preview": False})
        await eventually(lambda: len(dc.interaction_callbacks(cmd)) == 1)
        assert "Preview clips: off." in dc.interaction_callbacks(cmd)[0]["data"]["content"]
        second = dc.message_create(dc.text_channel, alice, "?", attachments=[png_attachment(dc, png())])
        [without] = await discord_answer(dc, second)
        third = dc.message_create(dc.text_channel, alice, "?", attachments=[png_attachment(dc, png())])
        await discord_answer(dc, third)  # answered after the second: no edit of it came before
    assert [f.filename for f in with_clip.files] == ["preview.mp4"]
    assert not without.files and not preview_edits(dc, without) and svc.asked == [True, False, False]


def test_wording_openings_episodes_and_chinese() -> None:
    from dataclasses import replace

    from bot.chat.answer import answer_text
    from bot.chat.i18n import pick_lang

    op = replace(cand(SHOW, 1, 30.0, 0.9), is_opening_or_ending=True, oped_kind="opening")
    rec = Recognition(status="match", confidence=0.9, query_id="q", candidates=(
        op, cand(OTHER, 12, 5.0, 0.5)))
    en = answer_text(rec)
    assert en.where.startswith("Opening of Crimson Harbor")
    assert en.candidates[1].line == "Quiet Meadow — Episode 12 @ 00:00:05"  # never "Episode 012"
    zh = answer_text(rec, lang="zh")
    assert zh.title == "红港" and zh.header == "找到了" and zh.confidence == "置信度 90%"
    assert zh.where.startswith("红港 的片头")
    assert answer_text(rec, lang="ja", title_lang="en").title == "Crimson Harbor"
    assert [pick_lang(x) for x in ("ja-JP", "zh-Hant-TW,zh;q=0.8", "fr-FR,en;q=0.5", "xx")] == \
        ["ja", "zh", "en", None]
