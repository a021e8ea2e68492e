"""The real python-telegram-bot (22.8) ``Application`` against ``FakeTelegram``.

Nothing in PTB is patched: the bot is pointed at the fake with ``base_url`` /
``base_file_url`` and runs with ``initialize()``, ``start()``, ``updater.start_polling()``
inside the test's event loop. These tests prove the fake is good enough for the Telegram
adapter's end-to-end tests: updates arrive, files download, replies and keyboards are
recorded, callback queries are answered, ``allowed_updates`` is honoured, errors map to
the right PTB exceptions, and shutdown does not hang.
"""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from telegram import (
    Bot,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    InputMediaPhoto,
    ReactionTypeEmoji,
    TelegramObject,
    Update,
)
from telegram.error import BadRequest, InvalidToken, RetryAfter
from telegram.ext import (
    AIORateLimiter,
    Application,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    MessageReactionHandler,
    filters,
)

from tests.fakes.telegram_server import FakeTelegram, derive_entities

pytestmark = pytest.mark.timeout(15)

TOKEN = "123:ABC"
PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """httpx honours proxy variables; the fake lives on 127.0.0.1 and must be hit directly."""
    for var in PROXY_VARS:
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram(token=TOKEN) as fake:
        yield fake


@pytest.fixture
def errors() -> list[BaseException]:
    """Exceptions raised inside PTB handlers (collected by an error handler)."""
    return []


def build_app(tg: FakeTelegram, errors: list[BaseException], **builder: Any) -> Application:
    """An Application pointed at the fake; handler exceptions land in ``errors``."""
    b = tg.application_builder()
    for name, value in builder.items():
        b = getattr(b, name)(value)
    app = b.build()

    async def on_error(update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        errors.append(context.error or RuntimeError("unknown handler error"))

    app.add_error_handler(on_error)
    return app


def make_png(width: int = 640, height: int = 360, color: tuple[int, ...] = (200, 40, 90)) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (width, height), color).save(out, format="PNG")
    return out.getvalue()


def unknown_fields(obj: Any, path: str = "") -> list[str]:
    """Fields PTB did not recognise (they end up in ``api_kwargs``), anywhere in ``obj``."""
    found: list[str] = []
    if isinstance(obj, TelegramObject):
        if obj.api_kwargs:
            found.append(f"{path or type(obj).__name__}: {sorted(obj.api_kwargs)}")
        for name, value in obj._get_attrs(recursive=False).items():
            found += unknown_fields(value, f"{path}.{name}")
    elif isinstance(obj, list | tuple):
        for i, value in enumerate(obj):
            found += unknown_fields(value, f"{path}[{i}]")
    return found


async def test_get_me_and_bot_identity(tg: FakeTelegram) -> None:
    bot = Bot(TOKEN, base_url=tg.base_url, base_file_url=tg.base_file_url)
    async with bot:
        me = await bot.get_me()
    assert bot.username == "anirec_test_bot"
    assert me.is_bot and me.can_join_groups and me.id == 123
    assert not unknown_fields(me)
    assert [c.method for c in tg.requests] == ["getMe", "getMe"]


@pytest.mark.parametrize("chat_kind", ["private", "group"])
async def test_photo_download_and_reply_with_keyboard(
    tg: FakeTelegram, errors: list[BaseException], chat_kind: str
) -> None:
    image = make_png()
    downloaded: list[bytes] = []
    keyboard = InlineKeyboardMarkup(
        [[InlineKeyboardButton("✅ right", callback_data="fb:1:ok"),
          InlineKeyboardButton("❌ wrong", callback_data="fb:1:no")]]
    )  # fmt: skip

    async def on_photo(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        assert message is not None
        largest = max(message.photo, key=lambda p: p.width * p.height)
        file = await largest.get_file()
        downloaded.append(bytes(await file.download_as_bytearray()))
        await message.reply_text("Looks like episode 3 at 12:34", reply_markup=keyboard)

    app = build_app(tg, errors)
    app.add_handler(MessageHandler(filters.PHOTO, on_photo))

    # The explicit sequence the adapter will use inside a running loop (tg.polling() wraps it).
    await app.initialize()
    await app.start()
    assert app.updater is not None
    await app.updater.start_polling(
        allowed_updates=["message", "callback_query"], poll_interval=0, timeout=1
    )
    try:
        user = tg.user(1001, "Alice", "alice")
        chat = tg.private_chat(1001) if chat_kind == "private" else tg.group_chat(-1001234567890)
        update = tg.photo_message(chat, user, image, caption="what anime?")
        tg.push_update(update)
        call = await tg.wait_for("sendMessage")
    finally:
        await app.updater.stop()
        await app.stop()
        await app.shutdown()

    assert not errors
    assert downloaded == [image]
    assert len(update["message"]["photo"]) >= 2, "several PhotoSize entries"
    assert call.params["chat_id"] == chat["id"]
    assert call.params["text"] == "Looks like episode 3 at 12:34"
    assert call.params["reply_markup"] == keyboard.to_dict()
    sent = tg.sent_messages(chat["id"])
    assert len(sent) == 1 and sent[0] == call.result
    assert sent[0]["reply_markup"] == keyboard.to_dict()
    assert sent[0]["from"]["username"] == "anirec_test_bot"
    if chat_kind == "group":  # PTB quotes by default outside private chats
        assert sent[0]["reply_to_message"]["message_id"] == update["message"]["message_id"]
        assert sent[0]["reply_to_message"]["photo"] == update["message"]["photo"]
    else:
        assert "reply_to_message" not in sent[0]
    assert tg.calls("getFile")[0].params["file_id"] == update["message"]["photo"][-1]["file_id"]


async def test_callback_query_is_answered(tg: FakeTelegram, errors: list[BaseException]) -> None:
    pressed: list[str] = []

    async def on_button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.callback_query
        assert query is not None and query.data is not None
        pressed.append(query.data)
        await query.answer("Thanks for the feedback!")
        await query.edit_message_reply_markup(reply_markup=None)

    app = build_app(tg, errors)
    app.add_handler(CallbackQueryHandler(on_button, pattern=r"^fb:"))
    user = tg.user(1001, "Alice", "alice")
    chat = tg.private_chat(user)
    async with tg.polling(app, allowed_updates=["message", "callback_query"]):
        keyboard = InlineKeyboardMarkup([[InlineKeyboardButton("✅", callback_data="fb:7:ok")]])
        answer = await app.bot.send_message(chat["id"], "Result", reply_markup=keyboard)
        press = tg.callback_query(user, answer.message_id, "fb:7:ok")
        tg.push_update(press)
        answered = await tg.wait_for("answerCallbackQuery")
        await tg.wait_for("editMessageReplyMarkup")

    assert not errors
    assert pressed == ["fb:7:ok"]
    assert answered.params["callback_query_id"] == press["callback_query"]["id"]
    assert answered.params["text"] == "Thanks for the feedback!"
    qid = answered.params["callback_query_id"]
    assert tg.answered_callbacks[qid]["text"] == "Thanks for the feedback!"
    [current] = tg.sent_messages(chat["id"])
    assert "reply_markup" not in current and "edit_date" in current


@pytest.mark.parametrize(
    ("allowed_updates", "delivered"),
    [
        (["message", "callback_query", "message_reaction"], True),
        (["message", "callback_query"], False),
        (None, False),  # Telegram's default leaves out message_reaction
    ],
)
async def test_message_reaction_needs_allowed_updates(
    tg: FakeTelegram,
    errors: list[BaseException],
    allowed_updates: list[str] | None,
    delivered: bool,
) -> None:
    reactions: list[tuple[int, list[str]]] = []
    got_reaction = asyncio.Event()

    async def on_reaction(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        r = update.message_reaction
        assert r is not None
        emoji = [x.emoji for x in r.new_reaction if isinstance(x, ReactionTypeEmoji)]
        reactions.append((r.message_id, emoji))
        got_reaction.set()

    async def on_ping(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.effective_message is not None
        await update.effective_message.reply_text("pong")

    app = build_app(tg, errors)
    app.add_handler(MessageReactionHandler(on_reaction))
    app.add_handler(CommandHandler("ping", on_ping))
    user = tg.user(1001, "Alice", "alice")
    chat = tg.private_chat(user)
    async with tg.polling(app, allowed_updates=allowed_updates):
        answer = await app.bot.send_message(chat["id"], "Result")
        reaction_id = tg.push_update(
            tg.message_reaction(chat, answer.message_id, user, old=[], new=["👍"])
        )
        tg.push_update(tg.text_message(chat, user, "/ping"))
        # Updates are handled in order, so once "pong" is sent the reaction was seen or not.
        await tg.wait_for("sendMessage", lambda c: c.params["text"] == "pong")
        if delivered:
            await asyncio.wait_for(got_reaction.wait(), 5)
        assert await tg.wait_confirmed(reaction_id) is delivered

    assert not errors
    if delivered:
        assert reactions == [(answer.message_id, ["👍"])]
        assert not tg.dropped_updates
    else:
        assert reactions == []
        assert [u["update_id"] for u in tg.dropped_updates] == [reaction_id]
    expected = allowed_updates
    assert tg.calls("getUpdates")[0].params.get("allowed_updates") == expected


async def test_retry_after_is_raised(tg: FakeTelegram, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PTB_TIMEDELTA", "true")  # RetryAfter.retry_after as timedelta, no warning
    async with Bot(TOKEN, base_url=tg.base_url, base_file_url=tg.base_file_url) as bot:
        tg.fail_next("sendMessage", status=429, retry_after=3)
        with pytest.raises(RetryAfter) as caught:
            await bot.send_message(1001, "hello")
        assert caught.value.retry_after.total_seconds() == 3  # type: ignore[union-attr]
        message = await bot.send_message(1001, "hello again")  # only one failure was injected
    first, second = tg.calls("sendMessage")
    assert first.injected and first.status == 429
    assert first.response == {
        "ok": False,
        "error_code": 429,
        "description": "Too Many Requests: retry after 3",
        "parameters": {"retry_after": 3},
    }
    assert second.ok and message.text == "hello again"


async def test_aio_rate_limiter_retries_after_429(
    tg: FakeTelegram, errors: list[BaseException], monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("aiolimiter", reason="python-telegram-bot[rate-limiter] not installed")
    monkeypatch.setenv("PTB_TIMEDELTA", "true")
    app = build_app(tg, errors, rate_limiter=AIORateLimiter(max_retries=1))
    tg.fail_next("sendMessage", retry_after=1)
    async with app:
        message = await app.bot.send_message(1001, "after the flood")
    first, second = tg.calls("sendMessage")
    assert first.status == 429 and second.status == 200
    assert second.time - first.time >= 1.0  # slept retry_after (+0.1 s) before retrying
    assert message.text == "after the flood"


async def test_unknown_method_is_bad_request_not_invalid_token(tg: FakeTelegram) -> None:
    async with Bot(TOKEN, base_url=tg.base_url, base_file_url=tg.base_file_url) as bot:
        # PTB drops the "Bad Request: " prefix and capitalises: "Method not found".
        with pytest.raises(BadRequest, match="(?i)method not found") as caught:
            await bot.do_api_request("definitelyNotAMethod", api_kwargs={"x": 1})
    assert not isinstance(caught.value, InvalidToken)
    assert tg.calls("definitelyNotAMethod")[0].status == 400


async def test_wrong_token_is_invalid_token(tg: FakeTelegram) -> None:
    bot = Bot("999:WRONG", base_url=tg.base_url, base_file_url=tg.base_file_url)
    try:
        with pytest.raises(InvalidToken):
            await bot.initialize()
    finally:
        await bot.shutdown()  # initialize() failed half-way; close its HTTP clients anyway
    assert tg.requests[-1].status == 401


async def test_shutdown_does_not_hang_with_a_long_poll_in_flight(
    tg: FakeTelegram, errors: list[BaseException]
) -> None:
    app = build_app(tg, errors)
    async with tg.polling(app, timeout=30):  # PTB's long poll now waits up to 30 s
        await asyncio.sleep(0.2)
        started = time.monotonic()
    assert time.monotonic() - started < 3
    polls = tg.calls("getUpdates")
    assert polls[-1].params["timeout"] == 0  # PTB's cleanup call released the abandoned poll
    assert not errors


async def test_group_command_replying_to_a_photo(
    tg: FakeTelegram, errors: list[BaseException]
) -> None:
    """The group flow: someone replies to a photo with /anime@bot; the handler finds it."""
    seen: list[tuple[str, int]] = []

    async def on_anime(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        assert message is not None and message.reply_to_message is not None
        photo = message.reply_to_message.photo[-1]
        data = await (await photo.get_file()).download_as_bytearray()
        seen.append((message.text or "", len(data)))
        await message.reply_text("found it")

    app = build_app(tg, errors)
    app.add_handler(CommandHandler("anime", on_anime))
    group = tg.group_chat(-1001234567890, "AniRec testers")
    alice, bob = tg.user(1001, "Alice", "alice"), tg.user(1002, "Bob", "bob_the_builder")
    image = make_png(100, 80)
    async with tg.polling(app, allowed_updates=["message"]):
        photo_update = tg.photo_message(group, alice, image)
        tg.push_update(photo_update)
        command = tg.text_message(group, bob, "/anime@anirec_test_bot", reply_to=photo_update)
        entities = command["message"]["entities"]
        assert entities == [{"type": "bot_command", "offset": 0, "length": 22}]
        tg.push_update(command)
        reply = await tg.wait_for("sendMessage")

    assert not errors
    assert seen == [("/anime@anirec_test_bot", len(image))]
    assert reply.result["reply_to_message"]["message_id"] == command["message"]["message_id"]


async def test_bot_uploads_are_recorded_and_downloadable(tg: FakeTelegram) -> None:
    image = make_png(320, 200)
    async with Bot(TOKEN, base_url=tg.base_url, base_file_url=tg.base_file_url) as bot:
        photo_msg = await bot.send_photo(
            1001, photo=image, caption="<b>Preview</b>", parse_mode="HTML"
        )
        mp4 = b"\x00\x00\x00\x18ftypmp42"
        clip = await bot.send_animation(1001, animation=mp4, filename="p.mp4")
        doc = await bot.send_document(1001, document=b'{"top5": []}', filename="result.json")
        again = await bot.send_photo(1001, photo=photo_msg.photo[-1].file_id)
        await bot.send_chat_action(1001, "upload_photo")
        album = await bot.send_media_group(
            1001, [InputMediaPhoto(image, caption="top-1"), InputMediaPhoto(make_png(90, 90))]
        )
        with pytest.raises(BadRequest, match="(?i)IMAGE_PROCESS_FAILED"):
            await bot.send_photo(1001, photo=b"not an image")
        data = await (await bot.get_file(photo_msg.photo[-1])).download_as_bytearray()

    upload = tg.calls("sendPhoto")[0].files["photo"]
    assert upload.data == image  # PTB names raw bytes "application.octet-stream"
    assert bytes(data) == image
    assert photo_msg.caption == "Preview"
    assert photo_msg.photo[-1].width == 320 and len(photo_msg.photo) == 2  # 90 px + original
    assert clip.animation is not None and clip.document is not None
    assert clip.animation.file_name == "p.mp4"
    assert doc.document is not None and doc.document.file_name == "result.json"
    assert doc.document.mime_type == "application/json"
    assert again.photo == photo_msg.photo
    assert len(album) == 2 and album[0].media_group_id == album[1].media_group_id is not None
    assert album[0].caption == "top-1"
    assert tg.file_bytes(album[0].photo[-1].file_id) == image
    for message in (photo_msg, clip, doc, again, *album):
        assert not unknown_fields(message)


async def test_refusals_an_adapter_must_handle(tg: FakeTelegram) -> None:
    """Telegram refusals the fake reproduces (PTB capitalises the text: match with (?i))."""
    async with Bot(TOKEN, base_url=tg.base_url, base_file_url=tg.base_file_url) as bot:
        sent = await bot.send_message(1001, "Result")
        with pytest.raises(BadRequest, match="(?i)message is not modified"):
            await bot.edit_message_text("Result", chat_id=1001, message_id=sent.message_id)
        edited = await bot.edit_message_text("Result (edited)", 1001, sent.message_id)
        assert edited.text == "Result (edited)" and edited.edit_date is not None
        with pytest.raises(BadRequest, match="(?i)REACTION_INVALID"):
            await bot.set_message_reaction(1001, sent.message_id, "✅")
        with pytest.raises(BadRequest, match="(?i)REACTIONS_TOO_MANY"):
            await bot.set_message_reaction(1001, sent.message_id, ["👍", "🔥"])
        assert await bot.set_message_reaction(1001, sent.message_id, "👍")
        with pytest.raises(BadRequest, match="(?i)message to be replied not found"):
            await bot.send_message(1001, "hi", reply_to_message_id=999_999)
        with pytest.raises(BadRequest, match="(?i)BUTTON_DATA_INVALID"):
            big = InlineKeyboardButton("x", callback_data="x" * 65)
            await bot.send_message(1001, "hi", reply_markup=InlineKeyboardMarkup([[big]]))
        with pytest.raises(BadRequest, match="(?i)message is too long"):
            await bot.send_message(1001, "x" * 4097)
        with pytest.raises(BadRequest, match="(?i)query is too old"):
            await bot.answer_callback_query("12345")
        assert await bot.delete_message(1001, sent.message_id)
        with pytest.raises(BadRequest, match="(?i)message to delete not found"):
            await bot.delete_message(1001, sent.message_id)
    assert tg.reactions[(1001, sent.message_id)] == [{"type": "emoji", "emoji": "👍"}]
    assert tg.sent_messages(1001) == []
    assert len(tg.sent_messages(1001, include_deleted=True)) == 1


async def test_payloads_are_complete_for_ptb(tg: FakeTelegram) -> None:
    """Every factory update and every answer de_jsons with no unknown field."""
    alice = tg.user(1001, "Alice", "alice", last_name="Liddell")
    group = tg.group_chat(-1001234567890)
    private = tg.private_chat(alice)
    owner = tg.set_member(group, alice, "creator")
    async with Bot(TOKEN, base_url=tg.base_url, base_file_url=tg.base_file_url) as bot:
        answer = await bot.send_message(group["id"], "Result")
        first = tg.photo_message(private, alice, make_png(), caption="/anime what is this @someone")
        factories = [
            first,
            tg.text_message(group, alice, "hi @anirec_test_bot 👋 /anime", reply_to=first),
            tg.document_message(private, alice, make_png(), file_name="shot.png"),
            tg.animation_message(private, alice, b"GIF89a...", mime_type="image/gif"),
            tg.video_message(private, alice, b"\x00\x00\x00\x18ftypmp42"),
            tg.video_note_message(private, alice, b"\x00\x00\x00\x18ftypmp42"),
            tg.sticker_message(group, alice, b"RIFF....WEBPVP8 "),
            tg.sticker_message(group, alice, b"\x1f\x8b", is_animated=True),
            tg.sticker_message(group, alice, b"\x1aE\xdf\xa3", is_video=True),
            tg.callback_query(alice, answer.message_id, "fb:1:ok"),
            tg.message_reaction(group, answer.message_id, alice, old=["👍"], new=["🔥"]),
        ]
        for i, body in enumerate(factories):
            update = Update.de_json({"update_id": i + 1, **body}, bot)
            assert not unknown_fields(update), body
        assert await bot.set_my_commands([("anime", "Identify a screenshot")])
        answers: list[Any] = [
            await bot.get_chat(group["id"]),
            await bot.get_chat(private["id"]),
            await bot.get_chat_member(group["id"], alice["id"]),
            await bot.get_chat_member(group["id"], tg.bot_id),
            await bot.get_chat_administrators(group["id"]),
            await bot.get_webhook_info(),
            await bot.get_my_commands(),
            await bot.get_file(first["message"]["photo"][0]["file_id"]),
        ]
        for obj in answers:
            assert not unknown_fields(obj), obj
        assert answers[2].status == "creator" and owner["status"] == "creator"
        assert answers[3].status == "administrator"
        assert [c.command for c in answers[6]] == ["anime"]
        for status in ("member", "restricted", "left", "kicked", "administrator"):
            tg.set_member(group, alice, status)
            member = await bot.get_chat_member(group["id"], alice["id"])
            assert member.status == status and not unknown_fields(member)


async def test_raw_http_bodies_long_poll_and_files(tg: FakeTelegram) -> None:
    """The wire format without PTB: query, JSON, form and multipart bodies; offset/limit;
    a newer poll releases an older one; file downloads; 404/401 answers."""
    import aiohttp

    api = f"{tg.base_url}{tg.token}"
    user = tg.user(1001, "Alice", "alice")
    chat = tg.private_chat(user)
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{api}/sendMessage", params={"chat_id": "1001", "text": "007"}) as r:
            assert r.status == 200 and (await r.json())["result"]["text"] == "007"
        async with http.post(f"{api}/SENDMESSAGE", json={"chat_id": 1001, "text": "json"}) as r:
            assert (await r.json())["result"]["chat"]["id"] == 1001
        markup = '{"inline_keyboard": [[{"text": "ok", "callback_data": "fb:ok"}]]}'
        async with http.post(
            f"{api}/sendMessage", data={"chat_id": "1001", "text": "[1]", "reply_markup": markup}
        ) as r:
            body = await r.json()
            assert body["result"]["text"] == "[1]"
            assert body["result"]["reply_markup"]["inline_keyboard"][0][0]["text"] == "ok"
        form = aiohttp.FormData()
        form.add_field("chat_id", "1001")
        form.add_field("document", b"%PDF-1.4", filename="a.pdf", content_type="application/pdf")
        async with http.post(f"{api}/sendDocument", data=form) as r:
            doc = (await r.json())["result"]["document"]
        upload = tg.calls("sendDocument")[0].files["document"]
        assert (upload.data, upload.filename, upload.content_type) == (
            b"%PDF-1.4", "a.pdf", "application/pdf",
        )  # fmt: skip
        assert [c.params for c in tg.calls("sendMessage")][:2] == [
            {"chat_id": 1001, "text": "007"},  # strings stay strings, ids become ints
            {"chat_id": 1001, "text": "json"},
        ]
        async with http.get(f"{api}/getFile", params={"file_id": doc["file_id"]}) as r:
            path = (await r.json())["result"]["file_path"]
        async with http.get(f"{tg.base_file_url}{tg.token}/{path}") as r:
            assert r.status == 200 and await r.read() == b"%PDF-1.4"
        async with http.get(f"{tg.base_file_url}999:WRONG/{path}") as r:
            assert r.status == 401
        async with http.get(f"{tg.url}/nothing/here") as r:
            assert r.status == 404 and (await r.json())["ok"] is False

        ids = [tg.push_update(tg.text_message(chat, user, f"m{i}")) for i in range(3)]
        async with http.get(f"{api}/getUpdates", params={"limit": "2"}) as r:
            assert [u["update_id"] for u in (await r.json())["result"]] == ids[:2]
        async with http.get(f"{api}/getUpdates", params={"offset": str(ids[2])}) as r:
            assert [u["update_id"] for u in (await r.json())["result"]] == ids[2:]
        assert await tg.wait_confirmed(ids[0]) and await tg.wait_confirmed(ids[1])

        started = time.monotonic()
        old_poll = asyncio.ensure_future(
            http.get(f"{api}/getUpdates", params={"offset": str(ids[2] + 1), "timeout": "30"})
        )
        await tg.wait_for("getUpdates", lambda c: c.params.get("timeout") == 30)
        async with http.get(f"{api}/getUpdates", params={"offset": str(ids[2] + 1)}) as r:
            assert (await r.json())["result"] == []
        async with await old_poll as r:  # released by the newer poll, not after 30 s
            assert (await r.json())["result"] == []
        assert time.monotonic() - started < 3


def test_entities_use_utf16_offsets() -> None:
    text = "👋 /anime@anirec_test_bot and @someone_else, not/this"
    assert derive_entities(text) == [
        {"type": "bot_command", "offset": 3, "length": 22},
        {"type": "mention", "offset": 30, "length": 13},
    ]


def test_reaction_factory_refuses_non_reaction_emoji() -> None:
    tg = FakeTelegram()
    with pytest.raises(ValueError, match="not a Telegram reaction emoji"):
        tg.message_reaction(tg.private_chat(1), 1, tg.user(1), new=["✅"])
