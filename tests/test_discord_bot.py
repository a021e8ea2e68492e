"""End to end: the real discord.py client (bot.discord_adapter) against the fake Discord
(REST + gateway + CDN on 127.0.0.1), with the real RecognitionService over the real indexed
sample library.

Nothing is patched but the URLs `FakeDiscord.install()` points at the fake: the bot runs
through `run_discord()`, syncs its commands, downloads attachments from the fake CDN,
recognises them with the real models/index/SQLite, and the fake records every request.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import json
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import discord
import pytest
from aiohttp import web
from discord.utils import escape_markdown
from sqlalchemy import select

from bot.common import RANK_EMOJI
from bot.discord_adapter import (
    CONTEXT_MENU_NAME,
    LOTTIE_STICKER,
    LRU,
    UNSUPPORTED_FILE,
    AniRecBot,
    DownloadFailed,
    LinkFetcher,
    build_discord_bot,
    links_in,
    media_link,
    run_discord,
)
from bot.discord_render import (
    ADULT_TITLE,
    ANNOTATED_NAME,
    HELP_TEXT,
    MENTION_HINT,
    OWNER_ONLY,
    SLASH_HINT,
    query_id_from_footer,
    render_answer,
)
from core.db.models import Feedback, Query
from core.errors import ConfigError, MediaTooLarge, UnsupportedMedia
from core.media import MediaLimits
from core.types import Candidate, CharacterHit, Recognition, SeriesInfo
from tests.fakes.media import clip_of, faces_jpeg
from tests.fakes.discord_server import FakeDiscord, RecordedRequest

pytestmark = pytest.mark.timeout(60)  # the first test also pays for indexing

HEARTBEAT_MS = 200
MESSAGES = r"^/channels/\d+/messages$"


@pytest.fixture(autouse=True)
def _no_unexpected_errors(no_logged_errors: Any) -> None:
    """No handler may fail unexpectedly."""


@pytest.fixture
async def dc() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord(heartbeat_interval_ms=HEARTBEAT_MS) as fake:
        yield fake
        assert not fake.errors, f"the fake itself failed: {fake.errors!r}"
        assert not fake.unknown_requests, fake.unknown_requests


@asynccontextmanager
async def running(dc: FakeDiscord, service: Any, **kwargs: Any) -> AsyncIterator[AniRecBot]:
    """The bot as the runner runs it: `run_discord(bot, token, stop)` as a task on this loop.
    The fake's #general is an auto channel; #after-dark (NSFW) is not."""
    kwargs.setdefault("auto_channels", [int(dc.text_channel["id"])])
    kwargs.setdefault("owner_ids", [int(dc.users[0]["id"])])
    bot = build_discord_bot(service, guild_ready_timeout=0.05, sync_commands=True,
                            allow_private_urls=True, **kwargs)
    stop = asyncio.Event()
    task = asyncio.create_task(run_discord(bot, dc.token, stop))
    await asyncio.sleep(0)
    ready = asyncio.create_task(bot.wait_until_ready())
    done, _ = await asyncio.wait({task, ready}, timeout=10, return_when=asyncio.FIRST_COMPLETED)
    if ready not in done:
        ready.cancel()
        if task.done():
            task.result()
        raise AssertionError("bot did not become ready")
    try:
        yield bot
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def eventually(condition: Callable[[], object], timeout: float = 10.0,
                     what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def replies(dc: FakeDiscord, message: dict[str, Any]) -> list[RecordedRequest]:
    """Completed message POSTs that reply to `message`."""
    return [r for r in dc.requests_matching("POST", MESSAGES)
            if r.completed and isinstance(r.json, dict)
            and str((r.json.get("message_reference") or {}).get("message_id")) == message["id"]]


async def answer_to(dc: FakeDiscord, message: dict[str, Any], n: int = 1,
                    timeout: float = 20.0) -> list[RecordedRequest]:
    await eventually(lambda: len(replies(dc, message)) >= n, timeout,
                     f"{n} replies to {message['content']!r}")
    return replies(dc, message)[:n]


def embed_of(req: RecordedRequest) -> dict[str, Any]:
    [embed] = req.json["embeds"]
    return embed


def qid_of(req: RecordedRequest) -> str:
    qid = query_id_from_footer(embed_of(req)["footer"]["text"])
    assert qid
    return qid


def sent_message_id(req: RecordedRequest) -> str:
    return str(req.response["id"])


def feedback_rows(indexed_home: Any, qid: str) -> list[Feedback]:
    with indexed_home.app.sessions() as s:
        return list(s.scalars(select(Feedback).where(Feedback.query_id == qid)
                              .order_by(Feedback.id)).all())


def dispatch_time(dc: FakeDiscord, message: dict[str, Any]) -> float:
    return next(t for ev, data, t in dc.dispatched
                if ev == "MESSAGE_CREATE" and data.get("id") == message["id"])


def png_attachment(dc: FakeDiscord, data: bytes, name: str = "frame.png", **kw: Any
                   ) -> dict[str, Any]:
    return dc.add_attachment(data, name, "image/png", **kw)


def adult_episode(indexed_home: Any) -> int:
    for i, ep in enumerate(indexed_home.ground_truth["episodes"]):
        meta = indexed_home.library / Path(ep["path"]).parent / "series.json"
        if meta.exists() and json.loads(meta.read_text()).get("is_adult"):
            return i
    pytest.skip("the sample library has no adult series")


def gif_of(frames: Sequence[bytes]) -> bytes:
    from PIL import Image

    imgs = [Image.open(io.BytesIO(f)).convert("RGB") for f in frames]
    out = io.BytesIO()
    imgs[0].save(out, format="GIF", save_all=True, append_images=imgs[1:], duration=250, loop=0)
    return out.getvalue()





def transcript(dc: FakeDiscord, since: float, until: float) -> list[str]:
    """What the fake received in [since, until): method, path and the key payload fields."""
    lines = []
    for r in dc.requests:
        if not since <= r.time < until:
            continue
        line = f"{r.method} {r.path} -> {r.status}"
        if isinstance(r.json, dict) and r.json.get("embeds"):
            e = r.json["embeds"][0]
            names = [f["name"] for f in e.get("fields", [])]
            line += (f" | embed.title={e.get('title')!r} fields={names}"
                     f" footer={e.get('footer', {}).get('text')!r}"
                     f" reply_to={(r.json.get('message_reference') or {}).get('message_id')}")
        elif isinstance(r.json, dict) and r.json.get("content"):
            line += f" | content={r.json['content']!r}"
        if r.files:
            line += f" | files={[(f.filename, f.size) for f in r.files]}"
        lines.append(line)
    return lines


# -- end to end ------------------------------------------------------------------------------

async def test_auto_channel_image_gets_embed_preview_reactions_and_latency(
        dc: FakeDiscord, make_service: Callable[..., Any], indexed_home: Any) -> None:
    service = await make_service()
    title = indexed_home.series_title(0)
    async with running(dc, service) as bot:
        put = await dc.wait_for("PUT", r"^/applications/\d+/commands$")
        assert {(c["name"], c.get("type", 1)) for c in put.json} == {
            ("anime", 1), ("anirec", 1), (CONTEXT_MENU_NAME, 3)}
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
        assert "confidence" in embed["description"]
        assert [f["name"] for f in embed["fields"]][:1] == ["Top 5"]
        assert post.is_multipart and [f.filename for f in post.files][0] == "preview.mp4"
        assert post.files[0].data[4:8] == b"ftyp"
        assert sum(f.size for f in post.files) < 8 * 1024 * 1024
        assert post.json["message_reference"]["fail_if_not_exists"] is False
        assert dc.typing and dc.typing[0][0] == dc.text_channel["id"]
        qid = qid_of(post)
        assert bot.cog.answers.get(int(sent_message_id(post))) == qid

        # ✅ ❌ then one number per candidate, added by the bot (PUT .../@me).
        n = len(embed["fields"][0]["value"].splitlines())
        mid = sent_message_id(post)
        puts = [await dc.wait_for("PUT", rf"/messages/{mid}/reactions/.+/@me$")
                for _ in range(2 + n)]
        emoji = [p.path.split("/reactions/")[1].split("/")[0] for p in puts]
        assert emoji == ["✅", "❌", *RANK_EMOJI[:n]]
        assert all(p.status == 204 for p in puts)

        # The platform echoed our answers and reactions back: nothing came of them.
        await eventually(lambda: sum(1 for ev, d, _ in dc.dispatched
                                     if ev == "MESSAGE_REACTION_ADD") >= 2 + n)
        await asyncio.sleep(0.3)
        assert feedback_rows(indexed_home, qid) == []
        assert len(dc.sent_messages(dc.text_channel)) == 2  # no answers to our own answers
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
        assert followup.files and followup.files[0].filename == "preview.mp4"
        original = dc.original_response(slash)
        assert original is not None and original["embeds"][0]["title"] == title
        await dc.wait_for("PUT", rf"/messages/{original['id']}/reactions/✅/@me$")

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
        await dc.wait_for("PUT", rf"/messages/{mid}/reactions/2️⃣/@me$")
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
        # A restart forgets the in-memory map: the footer of the (fetched) answer says the id.
        bot.cog.answers = LRU(10)
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
    assert unsupported.json["content"] == UNSUPPORTED_FILE
    assert "too large (50.0 MB)" in too_big.json["content"]
    assert not dc.requests_matching("GET", rf"/{big['id']}/huge.png$")
    assert sticker.json["content"] == LOTTIE_STICKER
    assert [bool(a.json.get("embeds")) for a in answers] == [True, True, False]
    assert embed_of(answers[1])["title"] == escape_markdown(indexed_home.series_title(1))
    assert answers[2].json["content"].startswith("I looked at the first 2;")
    assert len(dc.requests_matching("GET", r"^/attachments/.+/(shot0.png|clip.mp4)$")) == 2
    assert not dc.requests_matching("GET", r"^/attachments/.+/shot2.png$")


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
        [hidden] = await answer_to(dc, general)
        [shown] = await answer_to(dc, nsfw)
    he, se = embed_of(hidden), embed_of(shown)
    assert he["title"] == ADULT_TITLE and title not in he["title"]
    assert he["description"].startswith(f"||**{title}**||")
    assert "image" not in he and "thumbnail" not in he
    assert [f.filename for f in hidden.files] == ["SPOILER_preview.mp4"]
    assert se["title"] == title and "||" not in se["description"]
    assert [f.filename for f in shown.files] == ["preview.mp4", "preview.jpg"]


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


# -- links: a tiny local web server ----------------------------------------------------------------

@pytest.fixture
async def web_server(indexed_home: Any) -> AsyncIterator[str]:
    png = indexed_home.frame_png(0, 6.0)

    async def image(_: web.Request) -> web.Response:
        return web.Response(body=png, content_type="image/png")

    async def page(_: web.Request) -> web.Response:
        return web.Response(text="<html></html>", content_type="text/html")

    async def to_file(_: web.Request) -> web.Response:
        raise web.HTTPFound("file:///etc/passwd")

    async def to_image(_: web.Request) -> web.Response:
        raise web.HTTPFound("/image.png")

    async def endless(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "image/png"})
        await resp.prepare(request)
        for _ in range(64):
            await resp.write(b"\0" * 65536)
        return resp

    async def slow(_: web.Request) -> web.Response:
        await asyncio.sleep(1.0)
        return web.Response(body=png, content_type="image/png")

    async def sticker(_: web.Request) -> web.Response:
        from PIL import Image

        out = io.BytesIO()
        Image.open(io.BytesIO(png)).convert("RGBA").save(out, format="PNG")
        return web.Response(body=out.getvalue(), content_type="image/png")

    app = web.Application()
    app.router.add_get("/stickers/{name}", sticker)
    app.router.add_get("/image.png", image)
    app.router.add_get("/page.png", page)
    app.router.add_get("/to-file.png", to_file)
    app.router.add_get("/to-image.png", to_image)
    app.router.add_get("/endless.png", endless)
    app.router.add_get("/slow.png", slow)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def test_link_fetcher_limits(web_server: str, indexed_home: Any) -> None:
    fetcher = LinkFetcher(allow_private=True, timeout=0.5)
    try:
        assert await fetcher.fetch(f"{web_server}/image.png", 10_000_000) == \
            indexed_home.frame_png(0, 6.0)
        assert await fetcher.fetch(f"{web_server}/to-image.png", 10_000_000)  # http redirect
        with pytest.raises(DownloadFailed, match="http"):
            await fetcher.fetch(f"{web_server}/to-file.png", 10_000_000)
        with pytest.raises(UnsupportedMedia):
            await fetcher.fetch(f"{web_server}/page.png", 10_000_000)
        with pytest.raises(MediaTooLarge):
            await fetcher.fetch(f"{web_server}/endless.png", 1_000_000)
        with pytest.raises(DownloadFailed, match="too long"):
            await fetcher.fetch(f"{web_server}/slow.png", 10_000_000)
        with pytest.raises(DownloadFailed):
            await fetcher.fetch("ftp://example.com/a.png", 10_000_000)
    finally:
        await fetcher.close()
    public_only = LinkFetcher()
    try:
        with pytest.raises(DownloadFailed):  # a literal private address: refused up front
            await public_only.fetch(f"{web_server}/image.png", 10_000_000)
        port = web_server.rsplit(":", 1)[1]
        with pytest.raises(DownloadFailed):  # a name resolving to loopback: the resolver
            await public_only.fetch(f"http://localhost:{port}/image.png", 10_000_000)
    finally:
        await public_only.close()


@pytest.mark.parametrize(("text", "found"), [
    ("https://example.com/shot.PNG", ["https://example.com/shot.PNG"]),
    ("see (https://example.com/a/b.jpg).", ["https://example.com/a/b.jpg"]),
    ("<https://cdn.discordapp.com/attachments/1/2/image?ex=abc>",
     ["https://cdn.discordapp.com/attachments/1/2/image?ex=abc"]),
    ("https://example.com/clip.webm?x=1 https://example.com/clip.webm?x=1",
     ["https://example.com/clip.webm?x=1"]),
    ("https://example.com/page.html ftp://example.com/a.png javascript:alert(1).png", []),
])
def test_links_in(text: str, found: list[str]) -> None:
    assert links_in(text) == found
    assert all(media_link(u) for u in found)


# -- rendering -------------------------------------------------------------------------------------

def _cand(i: int, *, adult: bool = False, preview: str | None = None,
          still: str | None = None) -> Candidate:
    name = f"*Bold* _Title_ {i} `x` ||y||"
    return Candidate(series=SeriesInfo(i, name, {"ja": f"題名{i}"}, is_adult=adult),
                     episode_id=i, season=2, episode=3, episode_label="03", time=75.0,
                     time_from=74.0, time_to=77.0, score=0.9 - i / 10, preview=preview,
                     still=still)


def test_render_escapes_and_unsure_wording() -> None:
    rec = Recognition(status="unsure", confidence=0.41,
                      candidates=tuple(_cand(i) for i in range(1, 4)),
                      characters=(CharacterHit("Mika_chan", "x", 0.9, (0, 0, 9, 9)),),
                      genres=(("Drama", 0.8),), query_id="abcDEF_12-3")
    out = render_answer(rec, adult_ok=False)
    e = out.embed.to_dict()
    assert e["title"] == r"\*Bold\* \_Title\_ 1 \`x\` \|\|y\|\|"
    assert "Not sure — here are my best guesses · 41% confidence" in e["description"]
    assert "S2 · Episode 03" in e["description"] and "00:01:14–00:01:17" in e["description"]
    assert [f["name"] for f in e["fields"]] == ["Top 5", "Characters", "Looks like"]
    assert e["fields"][1]["value"] == r"Mika\_chan"
    assert query_id_from_footer(e["footer"]["text"]) == "abcDEF_12-3"
    assert out.rank_emoji == ("✅", "❌", "1️⃣", "2️⃣", "3️⃣") and out.attachments == []


def test_render_no_match_and_adult_and_budget(tmp_path: Path) -> None:
    clip, still = tmp_path / "c.mp4", tmp_path / "s.jpg"
    clip.write_bytes(b"\0" * 5000)
    still.write_bytes(b"\0" * 1000)
    nothing = render_answer(Recognition(status="no_match", confidence=0.0, query_id="q1"))
    assert nothing.embed.title == "I couldn't find this in the library"
    assert nothing.rank_emoji == ()
    guesses = render_answer(Recognition(status="no_match", confidence=0.1,
                                        candidates=(_cand(1),), query_id="q2"))
    assert guesses.embed.title.startswith("Not sure") and guesses.embed.fields[0].name == "Closest"
    adult = Recognition(status="match", confidence=0.9, query_id="q3",
                        candidates=(_cand(1, adult=True, preview=str(clip), still=str(still)),))
    hidden = render_answer(adult, adult_ok=False)
    assert hidden.embed.title == ADULT_TITLE and hidden.hidden
    assert [a.filename for a in hidden.attachments] == ["SPOILER_preview.mp4"]
    shown = render_answer(adult, adult_ok=True)
    assert [a.filename for a in shown.attachments] == ["preview.mp4", "preview.jpg"]
    assert shown.embed.thumbnail.url == "attachment://preview.jpg"
    small = render_answer(adult, adult_ok=True, budget=2000)  # the clip does not fit
    assert [a.filename for a in small.attachments] == ["preview.jpg"]
    assert small.embed.image.url == "attachment://preview.jpg"
    assert shown.rank_emoji == ("✅", "❌")  # one candidate: ✅ says it all


# -- the named-faces picture -----------------------------------------------------------------------


def png_of(color: tuple[int, int, int] = (200, 100, 50)) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (64, 48), color).save(out, format="PNG")
    return out.getvalue()


class StubService:
    """Just what the cog calls to answer a picture; `recognize` returns what it is given."""

    def __init__(self, result: Recognition) -> None:
        self.limits = MediaLimits()
        self.result = result

    async def recognize(self, data: bytes, *, source: Any, sticker: bool = False,
                        with_preview: bool = True) -> Recognition:
        return self.result


def faces_recognition(annotated: Path | None, still: Path | None = None) -> Recognition:
    best = Candidate(series=SeriesInfo(1, "Some Show"), episode_id=1, season=None, episode=2,
                     episode_label="02", time=5.0, time_from=4.0, time_to=6.0, score=0.97,
                     still=str(still) if still else None)
    return Recognition(status="match", confidence=0.97, candidates=(best,),
                       characters=(CharacterHit("Mika_chan", "Some Show", 0.9, (20, 20, 60, 70)),
                                   CharacterHit("unknown", None, 0.2, (90, 20, 130, 70))),
                       annotated=str(annotated) if annotated else None, query_id="facesQ01")


def test_render_annotated_is_the_thumbnail_within_the_budget(tmp_path: Path) -> None:
    clip, still = tmp_path / "c.mp4", tmp_path / "s.jpg"
    clip.write_bytes(b"\0" * 5000)
    still.write_bytes(b"\0" * 1000)
    faces = faces_jpeg(tmp_path / "faces.jpg")
    cand = _cand(1, preview=str(clip), still=str(still))
    rec = Recognition(status="match", confidence=0.9, candidates=(cand,), query_id="q1",
                      characters=(CharacterHit("Mika", "x", 0.9, (0, 0, 9, 9)),),
                      annotated=str(faces))
    # A clip: the named faces take the thumbnail from the clip's still.
    out = render_answer(rec, adult_ok=True)
    assert [a.filename for a in out.attachments] == ["preview.mp4", ANNOTATED_NAME]
    assert out.embed.thumbnail.url == f"attachment://{ANNOTATED_NAME}"
    # No clip: the still stays the embed image, the faces are the thumbnail.
    no_clip = replace(rec, candidates=(replace(cand, preview=None),))
    out = render_answer(no_clip, adult_ok=True)
    assert [a.filename for a in out.attachments] == ["preview.jpg", ANNOTATED_NAME]
    assert out.embed.image.url == "attachment://preview.jpg"
    assert out.embed.thumbnail.url == f"attachment://{ANNOTATED_NAME}"
    # Too big for what is left of the budget: the answer is as it was without it.
    tight = render_answer(rec, adult_ok=True, budget=5000 + 1000)
    assert [a.filename for a in tight.attachments] == ["preview.mp4", "preview.jpg"]
    assert tight.embed.thumbnail.url == "attachment://preview.jpg"
    # Withheld adult series: a blurred file, not in the embed.
    adult = replace(rec, candidates=(_cand(1, adult=True, preview=str(clip), still=str(still)),))
    hidden_out = render_answer(adult, adult_ok=False)
    assert [a.filename for a in hidden_out.attachments] == ["SPOILER_preview.mp4",
                                                            "SPOILER_" + ANNOTATED_NAME]
    assert not hidden_out.embed.thumbnail and not hidden_out.embed.image
    # Gone, or gone between rendering and sending: left out, the embed no longer points at it.
    assert ANNOTATED_NAME not in [a.filename for a in render_answer(
        replace(rec, annotated=str(tmp_path / "nope.jpg"))).attachments]
    late = render_answer(no_clip, adult_ok=True)
    faces.unlink()
    assert [f.filename for f in late.files()] == ["preview.jpg"]
    assert not late.embed.thumbnail and late.embed.image.url == "attachment://preview.jpg"


async def test_annotated_faces_go_as_the_embed_thumbnail(dc: FakeDiscord, tmp_path: Path) -> None:
    still = faces_jpeg(tmp_path / "still.jpg", boxes=())
    faces = faces_jpeg(tmp_path / "faces.jpg")
    alice = dc.users[0]
    async with running(dc, StubService(faces_recognition(faces, still))):
        msg = dc.message_create(dc.text_channel, alice, "who is this?",
                                attachments=[png_attachment(dc, png_of())])
        [post] = await answer_to(dc, msg)
    assert [f.filename for f in post.files] == ["preview.jpg", ANNOTATED_NAME]
    assert post.files[1].data == faces.read_bytes()
    embed = embed_of(post)
    assert embed["thumbnail"]["url"] == f"attachment://{ANNOTATED_NAME}"
    assert embed["image"]["url"] == "attachment://preview.jpg"
    assert [f["value"] for f in embed["fields"] if f["name"] == "Characters"] == [
        r"Mika\_chan, 1 unknown"]
    # What Discord made of it: the thumbnail is the uploaded characters.jpg.
    [sent] = dc.sent_messages(dc.text_channel)
    by_name = {a["filename"]: a for a in sent["attachments"]}
    assert set(by_name) == {"preview.jpg", ANNOTATED_NAME}
    assert sent["embeds"][0]["thumbnail"]["url"] == by_name[ANNOTATED_NAME]["url"]


async def test_missing_annotated_file_is_left_out(dc: FakeDiscord, tmp_path: Path) -> None:
    still = faces_jpeg(tmp_path / "still.jpg", boxes=())
    rec = faces_recognition(tmp_path / "evicted.jpg", still)
    alice = dc.users[0]
    async with running(dc, StubService(rec)):
        msg = dc.message_create(dc.text_channel, alice, "who is this?",
                                attachments=[png_attachment(dc, png_of())])
        [post] = await answer_to(dc, msg)
    assert [f.filename for f in post.files] == ["preview.jpg"]
    embed = embed_of(post)
    assert "thumbnail" not in embed and embed["image"]["url"] == "attachment://preview.jpg"
    assert embed["title"] == "Some Show" and qid_of(post) == "facesQ01"
