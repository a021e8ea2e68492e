"""End to end: the real discord.py client (bot.discord_adapter) against the fake Discord
(REST + gateway + CDN on 127.0.0.1), with the real RecognitionService over the real indexed
sample library: answers, mentions, commands, feedback reactions, refusals, load, owners.

Nothing is patched but the URLs `FakeDiscord.install()` points at the fake: the bot runs
through `run_discord()`, syncs its commands, downloads attachments from the fake CDN,
recognises them with the real models/index/SQLite, and the fake records every request.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import discord
import pytest
from discord.utils import escape_markdown

from bot.chat.state import AnswerMemory
from bot.discord_adapter import build_discord_bot, run_discord
from bot.discord_cog import CONTEXT_MENU_NAME
from bot.discord_media import LOTTIE_STICKER, UNSUPPORTED_FILE
from bot.discord_render import (
    ADULT_TITLE,
    HELP_TEXT,
    MENTION_HINT,
    OWNER_ONLY,
    SLASH_HINT,
)
from core.db.models import Query
from core.errors import ConfigError
from tests import discord_helpers
from tests.discord_helpers import (
    HEARTBEAT_MS,
    adult_episode,
    answer_to,
    buttons_of,
    dispatch_time,
    embed_of,
    eventually,
    feedback_rows,
    gif_of,
    png_attachment,
    preview_of,
    qid_of,
    replies,
    running,
    sent_message_id,
    transcript,
)
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.media import clip_of

# The shared fixtures (pytest finds them as attributes of this module).
dc = discord_helpers.dc
_no_unexpected_errors = discord_helpers._no_unexpected_errors
web_server = discord_helpers.web_server

pytestmark = pytest.mark.timeout(60)  # the first test also pays for indexing

# -- end to end ------------------------------------------------------------------------------

async def test_auto_channel_image_gets_embed_preview_reactions_and_latency(
        dc: FakeDiscord, make_service: Callable[..., Any], indexed_home: Any) -> None:
    service = await make_service()
    title = indexed_home.series_title(0)
    async with running(dc, service) as bot:
        put = await dc.wait_for("PUT", r"^/applications/\d+/commands$")
        assert {(c["name"], c.get("type", 1)) for c in put.json} == {
            ("anime", 1), ("anirec", 1), ("settings", 1), (CONTEXT_MENU_NAME, 3)}
        latencies = []
        asked: list[dict[str, Any]] = []
        for ep, t in ((0, 6.0), (1, 9.0)):  # cold (first inference, first preview), then warm
            att = png_attachment(dc, indexed_home.frame_png(ep, t))
            msg = dc.message_create(dc.text_channel, dc.users[0], "what anime?",
                                    attachments=[att])
            asked.append(msg)
            [post] = await answer_to(dc, msg)
            latencies.append(post.time - dispatch_time(dc, msg))
        print(f"\n[discord latency] MESSAGE_CREATE dispatch → reply POST at the fake: "
              f"cold {latencies[0] * 1000:.0f} ms, warm {latencies[1] * 1000:.0f} ms")

        [post] = replies(dc, asked[0])
        embed = embed_of(post)
        assert embed["title"] == escape_markdown(title)
        assert "Confidence " in embed["description"]
        assert [f["name"] for f in embed["fields"]][:1] == ["Other candidates"]
        # The answer went out at once, without the clip; an edit attached it once cut.
        edit = await preview_of(dc, post)
        assert edit.is_multipart and [f.filename for f in edit.files][0] == "preview.mp4"
        assert edit.files[0].data[4:8] == b"ftyp"
        assert sum(f.size for f in edit.files) < 8 * 1024 * 1024
        shown = dc.messages[sent_message_id(post)]
        assert [a["filename"] for a in shown["attachments"]][0] == "preview.mp4"
        assert shown["embeds"][0]["title"] == escape_markdown(title)
        assert buttons_of(shown) == buttons_of(post)  # the votes stay under the answer
        assert post.json["message_reference"]["fail_if_not_exists"] is False
        assert dc.typing and dc.typing[0][0] == dc.text_channel["id"]
        qid = qid_of(post)
        assert bot.cog.answers.get(int(sent_message_id(post))) == qid

        # Buttons, not seven reactions: ✅ ❌, one number per candidate, the series' links.
        n = len(embed["fields"][0]["value"].splitlines())
        rows = buttons_of(post)
        assert rows[:2] == [["✅", "❌"], [str(r) for r in range(1, n + 1)]]
        assert rows[2] == ["AniList", "MyAnimeList"]
        links = [c["url"] for c in post.json["components"][2]["components"]]
        assert links[0].startswith("https://anilist.co/anime/")
        assert links[1].startswith("https://myanimelist.net/anime/")
        assert not dc.requests_matching("PUT", r"/reactions/")

        # A press on ✅ is a feedback row; the button shows the count, the presser a toast.
        mid = sent_message_id(post)
        press = dc.interaction_component(dc.users[1], mid, f"fb:{qid}:ok")
        await eventually(lambda: len(dc.interaction_callbacks(press)) == 1)
        [cb] = dc.interaction_callbacks(press)
        assert cb["type"] == 7  # the answer updated in place
        assert buttons_of(cb["data"])[0] == ["✅", "❌"]
        assert cb["data"]["components"][0]["components"][0]["label"] == "1"
        await eventually(lambda: len(dc.followups(press)) == 1)
        assert "Marked as right" in dc.followups(press)[0]["content"]
        assert [r.verdict for r in feedback_rows(indexed_home, qid)] == ["correct"]

        # The platform echoed our answers and reactions back: nothing came of them.
        await asyncio.sleep(0.3)
        assert len(feedback_rows(indexed_home, qid)) == 1
        # no answers to our own answers (the third is the ephemeral "thanks" of the press)
        assert len(dc.sent_messages(dc.text_channel)) == 3
        print("[discord transcript] one exchange, as the fake received it:")
        for line in transcript(dc, dispatch_time(dc, asked[0]), dispatch_time(dc, asked[1])):
            print("  " + line)


async def test_mention_rules_reply_to_image_and_other_bots(
        dc: FakeDiscord, make_service: Callable[..., Any], indexed_home: Any) -> None:
    service = await make_service()
    png = indexed_home.frame_png(0, 6.0)
    helper = dc.add_user("helperbot", bot=True)
    async with running(dc, service) as bot:
        plain = dc.message_create(dc.nsfw_channel, dc.users[0], "look at this",
                                  attachments=[png_attachment(dc, png, channel=dc.nsfw_channel)])
        by_bot = dc.message_create(dc.text_channel, helper, "", attachments=[
            png_attachment(dc, png)])
        hint = dc.message_create(dc.nsfw_channel, dc.users[1], "hello", mentions_bot=True)
        ask = dc.message_create(dc.nsfw_channel, dc.users[1], "which anime?", mentions_bot=True,
                                reply_to=plain)
        [answer] = await answer_to(dc, ask)
        [hinted] = await answer_to(dc, hint)
        await asyncio.sleep(0.3)
        # When Discord leaves the referenced message out of the reply, it is fetched.
        bare = SimpleNamespace(reference=discord.MessageReference(
            message_id=int(plain["id"]), channel_id=int(dc.nsfw_channel["id"])),
            channel=SimpleNamespace(id=int(dc.nsfw_channel["id"])))
        fetched = await bot.cog._referenced(bare)  # type: ignore[arg-type]
        assert fetched is not None and [a.filename for a in fetched.attachments] == ["frame.png"]
        assert dc.requests_matching("GET", rf"^/channels/\d+/messages/{plain['id']}$")
    assert embed_of(answer)["title"] == escape_markdown(indexed_home.series_title(0))
    assert hinted.json["content"] == MENTION_HINT
    assert replies(dc, plain) == [] and replies(dc, by_bot) == []
    assert len(dc.sent_messages(dc.nsfw_channel)) == 2 and dc.sent_messages(dc.text_channel) == []
    # The image was downloaded once: for the mention (not for the plain post, not for the bot).
    assert len(dc.requests_matching("GET", r"^/attachments/")) == 1


async def test_slash_command_context_menu_and_link(
        dc: FakeDiscord, make_service: Callable[..., Any], indexed_home: Any) -> None:
    service = await make_service()
    title = escape_markdown(indexed_home.series_title(0))
    png = indexed_home.frame_png(0, 6.0)
    app = dc.application["id"]
    async with running(dc, service):
        att = png_attachment(dc, png)
        slash = dc.interaction_slash(dc.users[1], dc.text_channel, "anime", {"image": att})
        callback = await dc.wait_for("POST", rf"^/interactions/{slash['id']}/[^/]+/callback$")
        assert callback.json == {"type": 5}  # deferred ("thinking"), then the follow-up
        followup = await dc.wait_for("POST", rf"^/webhooks/{app}/{slash['token']}$", timeout=20)
        assert embed_of(followup)["title"] == title
        edit = await preview_of(dc, followup)
        assert edit.path.startswith(f"/webhooks/{app}/{slash['token']}/messages/")
        assert edit.files and edit.files[0].filename == "preview.mp4"
        original = dc.original_response(slash)
        assert original is not None and original["embeds"][0]["title"] == title
        assert buttons_of(followup)[0] == ["✅", "❌"]  # votes as buttons, not reactions

        # A link instead of a file (fetched by the adapter's own aiohttp client).
        link = png_attachment(dc, indexed_home.frame_png(1, 9.0), "linked.png")["url"]
        by_url = dc.interaction_slash(dc.users[1], dc.text_channel, "anime", {"url": link})
        linked = await dc.wait_for("POST", rf"^/webhooks/{app}/{by_url['token']}$", timeout=20)
        assert embed_of(linked)["title"] == escape_markdown(indexed_home.series_title(1))

        empty = dc.interaction_slash(dc.users[1], dc.text_channel, "anime")
        refused = await dc.wait_for("POST", rf"^/interactions/{empty['id']}/[^/]+/callback$")
        assert refused.json["type"] == 4 and refused.json["data"]["content"] == SLASH_HINT
        assert refused.json["data"]["flags"] == 64

        target = dc.message_create(dc.nsfw_channel, dc.users[0], "no mention", attachments=[
            png_attachment(dc, png, channel=dc.nsfw_channel)])
        menu = dc.interaction_message_context(dc.users[1], dc.nsfw_channel, target,
                                              CONTEXT_MENU_NAME)
        cb = await dc.wait_for("POST", rf"^/interactions/{menu['id']}/[^/]+/callback$")
        assert cb.json == {"type": 5}
        menu_answer = await dc.wait_for("POST", rf"^/webhooks/{app}/{menu['token']}$",
                                        timeout=20)
        assert embed_of(menu_answer)["title"] == title
    assert replies(dc, target) == []  # #after-dark is not an auto channel


async def test_direct_messages_clip_and_help(
        dc: FakeDiscord, make_service: Callable[..., Any], indexed_home: Any) -> None:
    service = await make_service()
    alice = dc.users[0]
    dm = dc.dm_channel(alice)
    gif = gif_of([indexed_home.frame_png(1, t) for t in (8.0, 8.5, 9.0)])
    async with running(dc, service):
        clip = dc.message_create(dm, alice, "", attachments=[
            dc.add_attachment(gif, "scene.gif", "image/gif", channel=dm)])
        text = dc.message_create(dm, alice, "hi")
        [answer] = await answer_to(dc, clip)
        [helped] = await answer_to(dc, text)
        # A reply to the bot's own answer is not a request (its preview is not a query).
        thanks = dc.message_create(dm, alice, "thanks!", reply_to=sent_message_id(answer))
        await asyncio.sleep(0.3)
    assert embed_of(answer)["title"] == escape_markdown(indexed_home.series_title(1))
    assert embed_of(answer)["title"] != ADULT_TITLE
    assert helped.json["content"] == HELP_TEXT
    assert replies(dc, thanks) == []
    assert len(dc.requests_matching("GET", r"^/attachments/")) == 1


async def test_reactions_become_feedback_rows_and_survive_a_restart(
        dc: FakeDiscord, make_service: Callable[..., Any], indexed_home: Any) -> None:
    service = await make_service()
    alice, bob = dc.users
    other_bot = dc.add_user("helperbot", bot=True)
    bob_hash = service.store.hash_id("discord", bob["id"])
    alice_hash = service.store.hash_id("discord", alice["id"])
    async with running(dc, service) as bot:
        msg = dc.message_create(dc.text_channel, alice, "", attachments=[
            png_attachment(dc, indexed_home.frame_png(0, 6.0))])
        [post] = await answer_to(dc, msg)
        qid, mid = qid_of(post), sent_message_id(post)
        with indexed_home.app.sessions() as s:  # limits are per user and per guild
            q = s.get(Query, qid)
            assert q is not None and q.platform == "discord"
            assert q.chat_hash == service.store.hash_id("discord", dc.guild["id"])
            assert q.user_hash == alice_hash

        dc.reaction_add(bob, mid, dc.text_channel, "❌")
        await eventually(lambda: len(feedback_rows(indexed_home, qid)) == 1, what="❌ row")
        dc.reaction_add(bob, mid, dc.text_channel, "2️⃣")
        await eventually(lambda: len(feedback_rows(indexed_home, qid)) == 2, what="2️⃣ row")
        wrong, pick = feedback_rows(indexed_home, qid)
        assert (wrong.verdict, wrong.active, wrong.user_hash) == ("wrong", False, bob_hash)
        assert (pick.verdict, pick.rank, pick.active, pick.user_hash) == ("pick", 2, True,
                                                                           bob_hash)
        assert wrong.withdrawn_at is not None and pick.platform == "discord"

        dc.reaction_remove(bob, mid, dc.text_channel, "2️⃣")
        await eventually(lambda: not feedback_rows(indexed_home, qid)[1].active,
                         what="2️⃣ withdrawn")
        assert [r.active for r in feedback_rows(indexed_home, qid)] == [False, False]
        assert (await service.tally(qid)).picks == (0, 0, 0, 0, 0)

        # Other bots' reactions and reactions that are not votes count for nothing.
        dc.reaction_add(other_bot, mid, dc.text_channel, "✅")
        dc.reaction_add(alice, mid, dc.text_channel, "🎉")
        # A restart forgets the in-memory map: the buttons of the (fetched) answer say the id.
        bot.cog.answers = AnswerMemory(10)
        dc.reaction_add(alice, mid, dc.text_channel, "✅")
        await eventually(lambda: len(feedback_rows(indexed_home, qid)) == 3, what="✅ row")
        assert dc.requests_matching("GET", rf"^/channels/\d+/messages/{mid}$")
        await asyncio.sleep(0.2)
    rows = feedback_rows(indexed_home, qid)
    assert len(rows) == 3
    assert (rows[-1].verdict, rows[-1].active, rows[-1].user_hash) == ("correct", True,
                                                                        alice_hash)


async def test_refusals_and_several_images(
        dc: FakeDiscord, make_service: Callable[..., Any], indexed_home: Any) -> None:
    service = await make_service()
    png = indexed_home.frame_png(0, 6.0)
    async with running(dc, service, max_images=2):
        text_file = dc.message_create(dc.text_channel, dc.users[0], "notes", attachments=[
            dc.add_attachment(b"just some text\n", "notes.txt", "text/plain")])
        big = png_attachment(dc, png, "huge.png")
        big["size"] = 50_000_000  # what Discord declares; the bytes are never fetched
        oversize = dc.message_create(dc.text_channel, dc.users[0], "", attachments=[big])
        lottie = dc.message_create(dc.text_channel, dc.users[1], "", stickers=[
            {"id": "424242", "name": "dance", "format_type": 3}])
        three = dc.message_create(dc.text_channel, dc.users[1], "three shots", attachments=[
            png_attachment(dc, png, "shot0.png"),
            dc.add_attachment(clip_of([indexed_home.frame_png(1, t) for t in (8.0, 8.5, 9.0)]),
                              "clip.mp4", "video/mp4"),
            png_attachment(dc, png, "shot2.png")])
        [unsupported] = await answer_to(dc, text_file)
        [too_big] = await answer_to(dc, oversize)
        [sticker] = await answer_to(dc, lottie)
        answers = await answer_to(dc, three, n=3)
        assert not dc.requests_matching("GET", r"^/attachments/.+/shot2.png$")
        # The picture not answered is offered in a picker; choosing it answers it.
        [row] = answers[2].json["components"]
        select = row["components"][0]
        assert select["type"] == 3 and [o["label"] for o in select["options"]] == ["shot2.png"]
        pick = dc.interaction_component(dc.users[1], sent_message_id(answers[2]),
                                        select["custom_id"], component_type=3, values=["0"])
        app = dc.application["id"]
        picked = await dc.wait_for("POST", rf"^/webhooks/{app}/{pick['token']}$", timeout=20)
        assert embed_of(picked)["title"] == escape_markdown(indexed_home.series_title(0))
    assert unsupported.json["content"] == UNSUPPORTED_FILE
    assert "too large (50 MB)" in too_big.json["content"]
    assert not dc.requests_matching("GET", rf"/{big['id']}/huge.png$")
    assert sticker.json["content"] == LOTTIE_STICKER
    assert [bool(a.json.get("embeds")) for a in answers] == [True, True, False]
    assert embed_of(answers[1])["title"] == escape_markdown(indexed_home.series_title(1))
    assert answers[2].json["content"].startswith("I looked at the first 2;")
    assert len(dc.requests_matching("GET", r"^/attachments/.+/(shot0.png|clip.mp4)$")) == 2


async def test_burst_from_twenty_people_is_answered_or_told_to_wait_and_heartbeats_flow(
        dc: FakeDiscord, make_service: Callable[..., Any], indexed_home: Any) -> None:
    service = await make_service(queue_size=3)
    n_eps = len(indexed_home.ground_truth["episodes"])
    pngs = [indexed_home.frame_png(i % n_eps, 2.0 + 0.6 * i) for i in range(20)]  # no cache hits
    people = [dc.add_user(f"fan{i}") for i in range(20)]
    async with running(dc, service):
        await dc.wait_heartbeats(2)
        start = time.monotonic()
        asked = [dc.message_create(dc.text_channel, p, "", attachments=[png_attachment(dc, png)])
                 for p, png in zip(people, pngs, strict=True)]
        for m in asked:
            await answer_to(dc, m, timeout=30)
        end = time.monotonic()
    posts = [replies(dc, m)[0] for m in asked]
    answered = [p for p in posts if p.json.get("embeds")]
    busy = [p for p in posts if "busy" in (p.json.get("content") or "")]
    print(f"\n[discord burst] 20 images: {len(answered)} answered, {len(busy)} told to wait, "
          f"{(end - start):.1f} s")
    assert len(answered) + len(busy) == 20 and answered and busy
    interval = HEARTBEAT_MS / 1000
    beats = [t for t in dc.heartbeats if start <= t <= end]
    gaps = [b - a for a, b in itertools.pairwise([start, *beats, end])]
    print(f"[discord burst] heartbeats during the burst: {len(beats)}, longest gap "
          f"{max(gaps) * 1000:.0f} ms (interval {HEARTBEAT_MS} ms)")
    assert max(gaps) < 3 * interval, gaps


async def test_adult_series_withheld_outside_nsfw_channels(
        dc: FakeDiscord, make_service: Callable[..., Any], indexed_home: Any) -> None:
    service = await make_service()
    ep = adult_episode(indexed_home)
    title = escape_markdown(indexed_home.series_title(ep))
    png = indexed_home.frame_png(ep, 6.0)
    async with running(dc, service):
        general = dc.message_create(dc.text_channel, dc.users[0], "", attachments=[
            png_attachment(dc, png)])
        nsfw = dc.message_create(dc.nsfw_channel, dc.users[0], "this?", mentions_bot=True,
                                 attachments=[png_attachment(dc, png, channel=dc.nsfw_channel)])
        [hidden_answer] = await answer_to(dc, general)
        [shown_answer] = await answer_to(dc, nsfw)
        hidden, shown = await preview_of(dc, hidden_answer), await preview_of(dc, shown_answer)
    he, se = embed_of(hidden), embed_of(shown)
    assert he["title"] == ADULT_TITLE and title not in he["title"]
    assert embed_of(hidden_answer)["title"] == ADULT_TITLE
    assert he["description"].startswith(f"||**{title}**||")
    assert "image" not in he and "thumbnail" not in he
    assert [f.filename for f in hidden.files] == ["SPOILER_preview.mp4"]
    assert se["title"] == title and "||" not in se["description"]
    assert [f.filename for f in shown.files] == ["preview.mp4", "preview.jpg"]
    assert se["thumbnail"]["url"] == "attachment://preview.jpg"  # the clip plays below


async def test_owner_commands(dc: FakeDiscord, make_service: Callable[..., Any]) -> None:
    service = await make_service()
    owner, other = dc.users
    app = dc.application["id"]
    stats_opt = [{"name": "stats", "type": 1, "options": []}]
    async with running(dc, service):
        refused = dc.interaction_slash(other, dc.text_channel, "anirec", stats_opt)
        no = await dc.wait_for("POST", rf"^/interactions/{refused['id']}/[^/]+/callback$")
        stats = dc.interaction_slash(owner, dc.text_channel, "anirec", stats_opt)
        yes = await dc.wait_for("POST", rf"^/interactions/{stats['id']}/[^/]+/callback$")
        reload = dc.interaction_slash(owner, dc.text_channel, "anirec",
                                      [{"name": "reload", "type": 1, "options": []}])
        deferred = await dc.wait_for("POST", rf"^/interactions/{reload['id']}/[^/]+/callback$")
        done = await dc.wait_for("POST", rf"^/webhooks/{app}/{reload['token']}$", timeout=30)
    assert no.json["data"]["content"] == OWNER_ONLY and no.json["data"]["flags"] & 64
    assert yes.json["data"]["flags"] & 64 and "queries" in yes.json["data"]["content"]
    assert "ready" in yes.json["data"]["content"]
    assert deferred.json == {"type": 5, "data": {"flags": 64}}
    assert done.json["content"].startswith("Reloaded:")


async def test_rate_limited_people_are_told_to_slow_down(
        dc: FakeDiscord, make_service: Callable[..., Any], indexed_home: Any) -> None:
    service = await make_service(rate=1)
    png = indexed_home.frame_png(0, 6.0)
    async with running(dc, service):
        first = dc.message_create(dc.text_channel, dc.users[0], "", attachments=[
            png_attachment(dc, png)])
        await answer_to(dc, first)
        second = dc.message_create(dc.text_channel, dc.users[0], "", attachments=[
            png_attachment(dc, png), png_attachment(dc, png)])
        [slow_down] = await answer_to(dc, second)
        await asyncio.sleep(0.2)
    assert slow_down.json["content"].startswith("You're sending pictures too fast")
    assert len(replies(dc, second)) == 1  # told once, not once per picture


async def test_png_sticker_is_read_from_the_sticker_cdn(
        dc: FakeDiscord, make_service: Callable[..., Any], indexed_home: Any,
        web_server: str) -> None:
    """Discord serves stickers from its media CDN (`Asset.BASE`); the fake does not, so a
    local server stands in for it during this test."""
    import discord.asset

    service = await make_service()
    saved = discord.asset.Asset.BASE
    discord.asset.Asset.BASE = type(saved)(web_server) if not isinstance(saved, str) \
        else web_server
    try:
        async with running(dc, service):
            msg = dc.message_create(dc.text_channel, dc.users[1], "", stickers=[dc.stickers[0]])
            [answer] = await answer_to(dc, msg)
    finally:
        discord.asset.Asset.BASE = saved
    assert embed_of(answer)["title"] == escape_markdown(indexed_home.series_title(0))


async def test_run_discord_refuses_empty_and_wrong_tokens(
        dc: FakeDiscord, make_service: Callable[..., Any]) -> None:
    service = await make_service()
    with pytest.raises(ConfigError):
        await run_discord(build_discord_bot(service), "", asyncio.Event())
    bot = build_discord_bot(service, guild_ready_timeout=0.05)
    with pytest.raises(discord.LoginFailure):  # surfaced to the runner, not swallowed
        await asyncio.wait_for(run_discord(bot, "not-the-token", asyncio.Event()), 10)
    assert bot.is_closed()
