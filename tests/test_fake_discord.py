"""The real discord.py 2.7.1 client against tests/fakes/discord_server.py: connecting,
messages, attachments, embeds and files, reactions, own echoes, slash and context-menu
commands, buttons, the message-content intent, typing, edits and deletes.

These tests prove the fake is faithful enough for end-to-end tests of the AniRec Discord
adapter.
"""

from __future__ import annotations

import io

import discord
import discord.gateway
import discord.http
import pytest
import yarl
from discord import app_commands
from discord.ext import commands

from tests import fake_discord_helpers
from tests.fake_discord_helpers import eventually, own_filter, png_bytes, start_bot, stop_bot
from tests.fakes.discord_server import FakeDiscord, Intents

# The shared fixtures (pytest finds them as attributes of this module).
dc = fake_discord_helpers.dc
bot = fake_discord_helpers.bot

# ---------------------------------------------------------------------------------------------


async def test_install_patches_and_restores() -> None:
    route_base = discord.http.Route.BASE
    gateway = discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
    async with FakeDiscord() as fake:
        patched_base = discord.http.Route.BASE
        patched_gateway = discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
        assert patched_base == f"http://127.0.0.1:{fake.port}/api/v10"
        assert isinstance(patched_gateway, yarl.URL) and str(patched_gateway) == fake.gateway_url
    restored_base = discord.http.Route.BASE
    restored_gateway = discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
    assert (restored_base, restored_gateway) == (route_base, gateway)
    assert isinstance(gateway, yarl.URL)


async def test_bot_connects_and_sees_the_guild(dc: FakeDiscord, bot: commands.Bot) -> None:
    assert bot.user is not None and str(bot.user.id) == dc.bot_user["id"]
    assert str(bot.application_id) == dc.application["id"]
    guild = bot.get_guild(int(dc.guild["id"]))
    assert guild is not None and not guild.unavailable
    assert guild.name == dc.guild["name"]
    text = guild.get_channel(int(dc.text_channel["id"]))
    nsfw = guild.get_channel(int(dc.nsfw_channel["id"]))
    assert isinstance(text, discord.TextChannel) and not text.is_nsfw()
    assert isinstance(nsfw, discord.TextChannel) and nsfw.is_nsfw()
    assert guild.me is not None and guild.me.id == bot.user.id
    assert text.permissions_for(guild.me).attach_files
    assert guild.emojis == ()  # discord.py caches emojis/stickers only with that intent
    assert {r.name for r in guild.roles} >= {"@everyone", "Moderator"}
    # discord.py logged in over REST, then identified with the intents we asked for.
    assert [r.path for r in dc.requests[:2]] == ["/users/@me", "/oauth2/applications/@me"]
    assert dc.identifies[0]["intents"] & Intents.MESSAGE_CONTENT
    assert not dc.unknown_requests


async def test_image_message_reply_embed_file_reactions_and_own_echoes(
    dc: FakeDiscord, bot: commands.Bot
) -> None:
    image = png_bytes()
    downloaded: list[bytes] = []
    own: list[discord.Message] = []
    own_reactions: list[discord.RawReactionActionEvent] = []

    async def handle(message: discord.Message) -> None:
        if not message.attachments:
            return
        data = await message.attachments[0].read()
        downloaded.append(data)
        embed = discord.Embed(title="Sousou no Frieren", description="Episode 3 at 12:34")
        embed.set_image(url="attachment://result.png")
        reply = await message.reply(embed=embed, file=discord.File(io.BytesIO(data), "result.png"))
        await reply.add_reaction("👍")
        await reply.add_reaction("👎")

    async def on_raw_reaction_add(payload: discord.RawReactionActionEvent) -> None:
        if bot.user is not None and payload.user_id == bot.user.id:
            own_reactions.append(payload)

    bot.add_listener(own_filter(bot, own, handle), "on_message")
    bot.add_listener(on_raw_reaction_add)

    attachment = dc.add_attachment(image, "query frame.png", "image/png")
    assert attachment["filename"] == "query_frame.png" and (
        attachment["width"],
        attachment["height"],
    ) == (64, 48)
    asked = dc.message_create(
        dc.text_channel, dc.users[0], "what anime is this?", attachments=[attachment]
    )

    post = await dc.wait_for("POST", rf"^/channels/{dc.text_channel['id']}/messages$")
    assert post.status == 200 and post.is_multipart
    assert [(f.field_name, f.filename, f.data) for f in post.files] == [
        ("files[0]", "result.png", image)
    ]
    assert post.json["embeds"][0]["title"] == "Sousou no Frieren"
    assert post.json["embeds"][0]["image"]["url"] == "attachment://result.png"
    assert str(post.json["message_reference"]["message_id"]) == asked["id"]
    first = await dc.wait_for("PUT", r"/reactions/.+/@me$")
    second = await dc.wait_for("PUT", r"/reactions/.+/@me$")
    assert (first.status, second.status) == (204, 204)
    assert downloaded == [image]
    assert dc.requests_matching("GET", r"^/attachments/")[0].status == 200

    [sent] = dc.sent_messages(dc.text_channel)
    assert sent["type"] == 19 and sent["referenced_message"]["id"] == asked["id"]
    assert (
        sent["embeds"][0]["image"]["url"] == sent["attachments"][0]["url"]
    )  # attachment:// resolved
    assert sent["attachments"][0]["width"] == 64
    assert dc.attachment_bytes(sent["attachments"][0]) == image
    assert dc.reactions(sent) == {"👍": [dc.bot_user["id"]], "👎": [dc.bot_user["id"]]}

    # The platform echoed the bot's message and reactions; the author check catches them.
    await eventually(lambda: own and len(own_reactions) == 2, what="own echoes")
    assert len(downloaded) == 1  # the echo (which has an attachment too) was ignored
    assert own[0].id == int(sent["id"]) and own[0].author == bot.user
    assert own[0].embeds[0].title == "Sousou no Frieren"
    assert own[0].reference is not None and own[0].reference.message_id == int(asked["id"])
    assert [str(p.emoji) for p in own_reactions] == ["👍", "👎"]
    assert all(p.message_id == int(sent["id"]) for p in own_reactions)


async def test_person_reactions_reach_raw_listeners(dc: FakeDiscord, bot: commands.Bot) -> None:
    added: list[discord.RawReactionActionEvent] = []
    removed: list[discord.RawReactionActionEvent] = []

    async def on_raw_reaction_add(payload: discord.RawReactionActionEvent) -> None:
        added.append(payload)

    async def on_raw_reaction_remove(payload: discord.RawReactionActionEvent) -> None:
        removed.append(payload)

    bot.add_listener(on_raw_reaction_add)
    bot.add_listener(on_raw_reaction_remove)
    bob = dc.users[1]
    message = dc.message_create(dc.text_channel, dc.users[0], "react to me")
    custom = dc.emojis[0]

    dc.reaction_add(bob, message["id"], dc.text_channel, "👍")
    dc.reaction_add(bob, message["id"], dc.text_channel, f"{custom['name']}:{custom['id']}")
    dc.reaction_remove(bob, message["id"], dc.text_channel, "👍")
    await eventually(lambda: len(added) == 2 and len(removed) == 1, what="reaction events")

    assert [p.user_id for p in added] == [int(bob["id"])] * 2
    assert added[0].emoji.name == "👍" and added[0].emoji.id is None
    assert added[1].emoji.id == int(custom["id"]) and added[1].emoji.name == custom["name"]
    assert added[0].member is not None and added[0].member.id == int(bob["id"])
    assert added[0].message_id == int(message["id"]) and added[0].guild_id == int(dc.guild["id"])
    assert removed[0].emoji.name == "👍" and removed[0].user_id == int(bob["id"])
    assert dc.reactions(message) == {custom["id"]: [bob["id"]]}


async def test_slash_and_context_menu_commands(dc: FakeDiscord, bot: commands.Bot) -> None:
    image = png_bytes(32, 32)

    @app_commands.command(name="recognize", description="Recognize an anime screenshot")
    async def recognize(
        interaction: discord.Interaction, image: discord.Attachment, spoiler: bool = False
    ) -> None:
        await interaction.response.defer(thinking=True)
        data = await image.read()
        await interaction.followup.send(
            f"{len(data)} bytes, spoiler={spoiler}", file=discord.File(io.BytesIO(data), "echo.png")
        )

    @app_commands.context_menu(name="Recognize image")
    async def recognize_message(interaction: discord.Interaction, message: discord.Message) -> None:
        await interaction.response.send_message(
            f"{len(message.attachments)} attachment(s)", ephemeral=True
        )
        await interaction.edit_original_response(content=f"{message.author.name}: checked")

    bot.tree.add_command(recognize)
    bot.tree.add_command(recognize_message)
    synced = await bot.tree.sync()
    assert {(c.name, c.type) for c in synced} == {
        ("recognize", discord.AppCommandType.chat_input),
        ("Recognize image", discord.AppCommandType.message),
    }
    put = await dc.wait_for("PUT", rf"^/applications/{dc.application['id']}/commands$")
    assert [o["name"] for o in put.json[0]["options"]] == ["image", "spoiler"]

    attachment = dc.add_attachment(image, "shot.png", "image/png")
    slash = dc.interaction_slash(
        dc.users[1], dc.text_channel, "recognize", {"image": attachment, "spoiler": True}
    )
    callback = await dc.wait_for("POST", rf"^/interactions/{slash['id']}/[^/]+/callback$")
    assert callback.json == {"type": 5} and callback.status == 200
    followup = await dc.wait_for("POST", rf"^/webhooks/{dc.application['id']}/{slash['token']}$")
    assert followup.query["wait"] == "1"
    assert followup.json["content"] == f"{len(image)} bytes, spoiler=True"
    assert followup.files[0].data == image
    original = dc.original_response(slash)
    assert original is not None and original["content"] == f"{len(image)} bytes, spoiler=True"
    assert (
        original["flags"] == 0
        and original["interaction_metadata"]["user"]["id"] == dc.users[1]["id"]
    )
    assert dc.followups(slash) == []  # the first follow-up filled the deferred "thinking" message

    target = dc.message_create(dc.text_channel, dc.users[0], "look", attachments=[attachment])
    menu = dc.interaction_message_context(dc.users[0], dc.text_channel, target, "Recognize image")
    callback = await dc.wait_for("POST", rf"^/interactions/{menu['id']}/")
    assert callback.json["type"] == 4
    assert (
        callback.json["data"]["content"] == "1 attachment(s)"
        and callback.json["data"]["flags"] == 64
    )
    edit = await dc.wait_for(
        "PATCH", rf"^/webhooks/{dc.application['id']}/{menu['token']}/messages/@original$"
    )
    assert edit.status == 200
    original = dc.original_response(menu)
    assert (
        original is not None and original["content"] == "alice: checked" and original["flags"] & 64
    )
    assert not dc.unknown_requests


async def test_button_component_interaction(dc: FakeDiscord, bot: commands.Bot) -> None:
    clicks: list[int] = []

    class Feedback(discord.ui.View):
        def __init__(self) -> None:
            super().__init__(timeout=None)

        @discord.ui.button(
            label="Correct", custom_id="feedback:ok", style=discord.ButtonStyle.success
        )
        async def correct(
            self, interaction: discord.Interaction, button: discord.ui.Button[Feedback]
        ) -> None:
            clicks.append(interaction.user.id)
            await interaction.response.edit_message(content="Thanks for the feedback!", view=None)

    channel = bot.get_channel(int(dc.text_channel["id"]))
    assert isinstance(channel, discord.TextChannel)
    sent = await channel.send("Is this right?", view=Feedback())
    stored = dc.messages[str(sent.id)]
    assert stored["components"][0]["components"][0]["custom_id"] == "feedback:ok"

    click = dc.interaction_component(dc.users[1], stored, "feedback:ok")
    callback = await dc.wait_for("POST", rf"^/interactions/{click['id']}/")
    assert callback.json["type"] == 7 and clicks == [int(dc.users[1]["id"])]
    assert stored["content"] == "Thanks for the feedback!" and stored["components"] == []


async def test_message_content_intent_is_enforced(dc: FakeDiscord) -> None:
    intents = discord.Intents.default()  # no message_content
    client = commands.Bot(
        command_prefix="!", intents=intents, help_command=None, guild_ready_timeout=0.05
    )
    seen: list[tuple[str, int]] = []

    async def on_message(message: discord.Message) -> None:
        seen.append((message.content, len(message.attachments)))

    client.add_listener(on_message)
    task = await start_bot(dc, client)
    try:
        attachment = dc.add_attachment(png_bytes(), "a.png")
        dc.message_create(dc.text_channel, dc.users[0], "hidden", attachments=[attachment])
        dc.message_create(
            dc.text_channel, dc.users[0], "visible", attachments=[attachment], mentions_bot=True
        )
        dc.message_create(dc.dm_channel(dc.users[0]), dc.users[0], "dm", attachments=[attachment])
        await eventually(lambda: len(seen) == 3, what="three messages")
    finally:
        await stop_bot(client, task)
    assert seen == [("", 0), (f"<@{dc.bot_user['id']}> visible", 1), ("dm", 1)]


async def test_typing_edit_delete_and_message_events(dc: FakeDiscord, bot: commands.Bot) -> None:
    edits: list[discord.RawMessageUpdateEvent] = []
    deletes: list[discord.RawMessageDeleteEvent] = []

    async def on_raw_message_edit(payload: discord.RawMessageUpdateEvent) -> None:
        edits.append(payload)

    async def on_raw_message_delete(payload: discord.RawMessageDeleteEvent) -> None:
        deletes.append(payload)

    bot.add_listener(on_raw_message_edit)
    bot.add_listener(on_raw_message_delete)
    channel = bot.get_channel(int(dc.text_channel["id"]))
    assert isinstance(channel, discord.TextChannel)
    async with channel.typing():
        sent = await channel.send("first draft")
    assert dc.typing[0][0] == dc.text_channel["id"]
    edited = await sent.edit(content="final")
    assert edited.content == "final" and edited.edited_at is not None
    await sent.delete()
    await eventually(lambda: edits and deletes, what="edit and delete events")
    assert edits[0].message_id == sent.id and edits[0].data["content"] == "final"
    assert deletes[0].message_id == sent.id
    assert str(sent.id) not in dc.messages and str(sent.id) in dc.deleted_messages
    with pytest.raises(discord.Forbidden):
        dc.fail_next("GET", r"/messages/\d+$", status=403)
        await channel.fetch_message(sent.id)
