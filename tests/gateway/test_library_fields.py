"""The field sweep: every object greenroom serves, loaded through each library's own
parser, as those libraries would load it from Discord.

One greenroom run collects the real answers and events (READY, GUILD_CREATE, message
create/update/delete with mentions, embeds, a reply and a file, a reaction, channel
create/update (an overwrite), members joining and leaving, typing, a DM, WEBHOOKS_UPDATE;
REST user, guild, channels, channel, members, roles, messages, application, invites, DM
channel, webhooks and a webhook's message); then discord.py (``ConnectionState``'s parsers and its models),
hikari (its ``EntityFactoryImpl`` and ``EventFactoryImpl``) and discord.js (its gateway
packet handlers and structures, in ``tests/js/fields.mjs``) each load all of them. A
field one of them indexes without a default and greenroom leaves out fails here with
the library's own KeyError / TypeError, naming the object.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path
from typing import Any
from unittest import mock

import aiohttp
import pytest

from gateway.protocol.intents import ALL_INTENTS
from gateway.seed import create_user
from tests.gateway.harness import run, running_gateway
from tests.gateway.libraries import JS_DIR, node_or_fail

Payloads = dict[str, Any]


async def _next_event(ws: aiohttp.ClientWebSocketResponse, name: str) -> dict[str, Any]:
    while True:
        msg = await ws.receive(5)
        payload = json.loads(msg.data)
        if payload.get("t") == name:
            return payload["d"]


async def _collect(tmp_path: Path) -> Payloads:
    out: Payloads = {}
    async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
        base = r.gateway.rest_url
        bot = {"Authorization": f"Bot {r.seeded.token}"}
        alice = {"Authorization": f"Bot {r.other_token}"}
        guild_id, channel_id = r.seeded.guild_id, r.seeded.channel_id

        async def call(method: str, path: str, headers: dict[str, str] | None = bot,
                       **kw: Any) -> Any:
            async with http.request(method, base + path, headers=headers, **kw) as resp:
                assert resp.status in (200, 201), (method, path, await resp.text())
                return await resp.json()

        ws = await http.ws_connect(f"{r.gateway.gateway_url}/?v=10&encoding=json")
        await ws.receive(5)  # HELLO
        await ws.send_json({"op": 2, "d": {
            "token": r.seeded.token, "intents": ALL_INTENTS,
            "properties": {"os": "linux", "browser": "sweep", "device": "sweep"}}})
        out["READY"] = await _next_event(ws, "READY")
        out["GUILD_CREATE"] = await _next_event(ws, "GUILD_CREATE")

        out["message_post"] = await call("POST", f"/channels/{channel_id}/messages",
                                         alice, json={"content": "hello"})
        out["MESSAGE_CREATE"] = await _next_event(ws, "MESSAGE_CREATE")
        message_id = out["message_post"]["id"]
        out["message_patch"] = await call("PATCH", f"/channels/{channel_id}/messages/"
                                          f"{message_id}", alice, json={"content": "hi"})
        out["MESSAGE_UPDATE"] = await _next_event(ws, "MESSAGE_UPDATE")
        async with http.post(f"{base}/channels/{channel_id}/typing", headers=alice) as resp:
            assert resp.status == 204
        out["TYPING_START"] = await _next_event(ws, "TYPING_START")
        out["channel_post"] = await call("POST", f"/guilds/{guild_id}/channels",
                                         json={"name": "builds"})
        out["CHANNEL_CREATE"] = await _next_event(ws, "CHANNEL_CREATE")
        out["invite_created"] = await call("POST", f"/channels/{channel_id}/invites", json={})
        out["invite"] = await call("GET", f"/invites/{out['invite_created']['code']}", None)

        out["webhook_created"] = await call("POST", f"/channels/{channel_id}/webhooks",
                                            json={"name": "ci"})
        out["WEBHOOKS_UPDATE"] = await _next_event(ws, "WEBHOOKS_UPDATE")
        hook = out["webhook_created"]
        out["webhook"] = await call("GET", f"/webhooks/{hook['id']}")
        out["webhook_by_token"] = await call("GET", f"/webhooks/{hook['id']}/{hook['token']}",
                                             None)
        out["webhook_message"] = await call(
            "POST", f"/webhooks/{hook['id']}/{hook['token']}?wait=true", None,
            json={"content": "build passed", "username": "deploy"})
        out["WEBHOOK_MESSAGE_CREATE"] = await _next_event(ws, "MESSAGE_CREATE")

        # what the bot API adds to messages: a mention and an embed, a reply, a
        # reaction, a file; a channel with an overwrite; a DM; members joining, leaving
        messages = f"/channels/{channel_id}/messages"
        out["rich_message"] = await call("POST", messages, alice, json={
            "content": f"<@{r.seeded.user_id}> look", "embeds": [{
                "title": "Build 12", "description": "passed", "url": "https://ci.example/12",
                "color": 0x2ECC71, "timestamp": "2026-12-07T02:00:00+00:00",
                "footer": {"text": "ci"}, "author": {"name": "ci"},
                "image": {"url": "https://ci.example/a.png"},
                "fields": [{"name": "branch", "value": "main", "inline": True}]}]})
        out["RICH_MESSAGE_CREATE"] = await _next_event(ws, "MESSAGE_CREATE")
        rich_id = out["rich_message"]["id"]
        out["reply_message"] = await call("POST", messages, json={
            "content": "noted", "message_reference": {"message_id": rich_id}})
        out["REPLY_MESSAGE_CREATE"] = await _next_event(ws, "MESSAGE_CREATE")
        async with http.put(f"{base}{messages}/{rich_id}/reactions/%F0%9F%91%8D/@me",
                            headers=bot) as resp:
            assert resp.status == 204, await resp.text()
        out["MESSAGE_REACTION_ADD"] = await _next_event(ws, "MESSAGE_REACTION_ADD")
        out["reacted_message"] = await call("GET", f"{messages}/{rich_id}")
        form = aiohttp.FormData()
        form.add_field("payload_json", json.dumps({"content": "log"}))
        form.add_field("files[0]", b"ok\n", filename="build.log", content_type="text/plain")
        out["file_message"] = await call("POST", messages, alice, data=form)
        out["FILE_MESSAGE_CREATE"] = await _next_event(ws, "MESSAGE_CREATE")
        builds = out["channel_post"]["id"]
        async with http.put(f"{base}/channels/{builds}/permissions/{r.other_id}", headers=bot,
                            json={"type": 1, "allow": "1024", "deny": "2048"}) as resp:
            assert resp.status == 204, await resp.text()
        out["CHANNEL_UPDATE"] = await _next_event(ws, "CHANNEL_UPDATE")
        out["channel_with_overwrites"] = await call("GET", f"/channels/{builds}")
        out["dm_channel"] = await call("POST", "/users/@me/channels",
                                       json={"recipient_id": str(r.other_id)})
        out["dm_message"] = await call("POST", f"/channels/{out['dm_channel']['id']}/messages",
                                       json={"content": "a DM"})
        out["DM_MESSAGE_CREATE"] = await _next_event(ws, "MESSAGE_CREATE")
        out["other_user"] = await call("GET", f"/users/{r.other_id}")
        carol_id, carol_token = await create_user(r.gateway.storage, r.ids,
                                                  "carol", bot=False)
        await call("POST", f"/invites/{out['invite_created']['code']}",
                   {"Authorization": f"Bot {carol_token}"})
        out["GUILD_MEMBER_ADD"] = await _next_event(ws, "GUILD_MEMBER_ADD")
        async with http.delete(f"{base}/guilds/{guild_id}/members/{carol_id}",
                               headers=bot) as resp:
            assert resp.status == 204
        out["GUILD_MEMBER_REMOVE"] = await _next_event(ws, "GUILD_MEMBER_REMOVE")

        out["user"] = await call("GET", "/users/@me")
        out["guild"] = await call("GET", f"/guilds/{guild_id}")
        out["channels"] = await call("GET", f"/guilds/{guild_id}/channels")
        out["channel"] = await call("GET", f"/channels/{channel_id}")
        out["members"] = await call("GET", f"/guilds/{guild_id}/members?limit=10")
        out["messages"] = await call("GET", f"/channels/{channel_id}/messages")
        out["application"] = await call("GET", "/applications/@me")
        out["oauth2_application"] = await call("GET", "/oauth2/applications/@me")

        async with http.delete(f"{base}/channels/{channel_id}/messages/{message_id}",
                               headers=alice) as resp:
            assert resp.status == 204
        out["MESSAGE_DELETE"] = await _next_event(ws, "MESSAGE_DELETE")
        async with http.post(f"{base}/oauth2/authorize?client_id={r.seeded.user_id}"
                             "&scope=guilds.join", headers=alice) as resp:
            assert resp.status == 200
        await ws.close()
    return out


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Payloads:
    """greenroom's answers and events, collected once for the three libraries."""
    tmp = tmp_path_factory.mktemp("sweep")
    return run(lambda: _collect(tmp), timeout=30)


def test_discordpy_loads_every_object(served: Payloads) -> None:
    import discord
    from discord.webhook.async_ import Webhook

    async def main() -> None:
        client = discord.Client(intents=discord.Intents.all())
        state = client._connection
        try:
            state.parse_ready(served["READY"])
            assert client.user is not None and client.user.bot
            state.parse_guild_create(served["GUILD_CREATE"])
            guild = client.get_guild(int(served["GUILD_CREATE"]["id"]))
            assert guild is not None and guild.me is not None
            channel = guild.get_channel(int(served["channel"]["id"]))
            assert isinstance(channel, discord.TextChannel)

            state.parse_message_create(served["MESSAGE_CREATE"])
            state.parse_message_update(served["MESSAGE_UPDATE"])
            assert state._get_message(int(served["message_post"]["id"])).content == "hi"
            state.parse_typing_start(served["TYPING_START"])
            state.parse_channel_create(served["CHANNEL_CREATE"])
            assert guild.get_channel(int(served["channel_post"]["id"])) is not None
            state.parse_webhooks_update(served["WEBHOOKS_UPDATE"])
            state.parse_message_create(served["WEBHOOK_MESSAGE_CREATE"])
            hooked = state._get_message(int(served["webhook_message"]["id"]))
            assert hooked.webhook_id == int(served["webhook_created"]["id"])
            assert hooked.author.name == "deploy" and hooked.author.bot
            for name in ("RICH_MESSAGE_CREATE", "REPLY_MESSAGE_CREATE",
                         "FILE_MESSAGE_CREATE"):
                state.parse_message_create(served[name])
            rich = state._get_message(int(served["rich_message"]["id"]))
            assert rich.mentions[0].id == client.user.id and rich.embeds[0].title == "Build 12"
            reply = state._get_message(int(served["reply_message"]["id"]))
            assert reply.reference.message_id == rich.id and reply.type.value == 19
            assert reply.reference.resolved.id == rich.id
            state.parse_message_reaction_add(served["MESSAGE_REACTION_ADD"])
            assert rich.reactions[0].emoji == "\N{THUMBS UP SIGN}" and rich.reactions[0].me
            attached = state._get_message(int(served["file_message"]["id"]))
            assert attached.attachments[0].filename == "build.log"
            state.parse_channel_update(served["CHANNEL_UPDATE"])
            builds = guild.get_channel(int(served["channel_post"]["id"]))
            assert builds.overwrites_for(discord.Object(int(served["other_user"]["id"]))) \
                .view_channel is True
            state.parse_message_create(served["DM_MESSAGE_CREATE"])
            state.parse_guild_member_add(served["GUILD_MEMBER_ADD"])
            state.parse_guild_member_remove(served["GUILD_MEMBER_REMOVE"])
            state.parse_message_delete(served["MESSAGE_DELETE"])

            assert discord.ClientUser(state=state, data=served["user"]).bot
            assert discord.Guild(data=served["guild"], state=state).name == guild.name
            for data in served["channels"]:
                discord.TextChannel(state=state, guild=guild, data=data)
            for data in served["members"]:
                assert discord.Member(data=data, guild=guild, state=state).joined_at
            for data in served["guild"]["roles"]:
                discord.Role(guild=guild, state=state, data=data)
            for data in [served["message_post"], served["message_patch"],
                         served["webhook_message"], served["rich_message"],
                         served["reply_message"], served["reacted_message"],
                         served["file_message"], *served["messages"]]:
                discord.Message(state=state, channel=channel, data=data)
            builds = discord.TextChannel(state=state, guild=guild,
                                         data=served["channel_with_overwrites"])
            assert len(builds.overwrites) == 1
            dm = discord.DMChannel(me=client.user, state=state, data=served["dm_channel"])
            assert dm.recipient is not None and dm.recipient.id == int(served["other_user"]["id"])
            assert discord.Message(state=state, channel=dm, data=served["dm_message"]).content
            assert discord.User(state=state, data=served["other_user"]).name == "alice"
            app = discord.AppInfo(state, served["oauth2_application"])
            assert app.id == client.user.id
            for data in (served["invite_created"], served["invite"]):
                assert discord.Invite(state=state, data=data).guild is not None
            for data in (served["webhook_created"], served["webhook"],
                         served["webhook_by_token"]):
                assert Webhook.from_state(data, state).channel_id == channel.id
        finally:
            if state._ready_task is not None:
                state._ready_task.cancel()
            await client.close()

    asyncio.run(main())


def test_hikari_loads_every_object(served: Payloads) -> None:
    from hikari.impl.entity_factory import EntityFactoryImpl
    from hikari.impl.event_factory import EventFactoryImpl

    app = mock.Mock()
    entities = app.entity_factory = EntityFactoryImpl(app)
    events = EventFactoryImpl(app)
    shard = mock.Mock()
    user_id = int(served["READY"]["user"]["id"])
    guild_id = int(served["guild"]["id"])

    assert events.deserialize_ready_event(shard, served["READY"]).my_user.id == user_id
    definition = entities.deserialize_gateway_guild(served["GUILD_CREATE"], user_id=user_id)
    for part in (definition.guild, definition.channels, definition.members, definition.roles,
                 definition.presences, definition.voice_states, definition.emojis,
                 definition.stickers, definition.threads):
        part()
    events.deserialize_guild_available_event(shard, served["GUILD_CREATE"])
    for name in ("MESSAGE_CREATE", "WEBHOOK_MESSAGE_CREATE"):
        events.deserialize_message_create_event(shard, served[name])
    hooked = entities.deserialize_message(served["WEBHOOK_MESSAGE_CREATE"])
    assert hooked.webhook_id == int(served["webhook_created"]["id"])
    assert hooked.author.username == "deploy" and hooked.author.is_bot
    for name in ("RICH_MESSAGE_CREATE", "REPLY_MESSAGE_CREATE", "FILE_MESSAGE_CREATE",
                 "DM_MESSAGE_CREATE"):
        events.deserialize_message_create_event(shard, served[name])
    rich = entities.deserialize_message(served["reacted_message"])
    assert rich.user_mentions_ids == [user_id] and rich.embeds[0].title == "Build 12"
    assert rich.reactions[0].emoji == "\N{THUMBS UP SIGN}" and rich.reactions[0].is_me
    reply = entities.deserialize_message(served["reply_message"])
    assert reply.referenced_message is not None and reply.referenced_message.id == rich.id
    assert entities.deserialize_message(served["file_message"]).attachments[0].filename \
        == "build.log"
    events.deserialize_message_reaction_add_event(shard, served["MESSAGE_REACTION_ADD"])
    events.deserialize_guild_channel_update_event(shard, served["CHANNEL_UPDATE"])
    events.deserialize_guild_member_add_event(shard, served["GUILD_MEMBER_ADD"])
    events.deserialize_guild_member_remove_event(shard, served["GUILD_MEMBER_REMOVE"])
    events.deserialize_message_update_event(shard, served["MESSAGE_UPDATE"])
    events.deserialize_message_delete_event(shard, served["MESSAGE_DELETE"])
    events.deserialize_typing_start_event(shard, served["TYPING_START"])
    events.deserialize_guild_channel_create_event(shard, served["CHANNEL_CREATE"])
    events.deserialize_webhook_update_event(shard, served["WEBHOOKS_UPDATE"])

    assert entities.deserialize_my_user(served["user"]).id == user_id
    assert entities.deserialize_rest_guild(served["guild"]).id == guild_id
    for data in [*served["channels"], served["channel"], served["channel_post"]]:
        entities.deserialize_channel(data)
    for data in served["members"]:
        entities.deserialize_member(data, guild_id=guild_id)
    for data in served["guild"]["roles"]:
        entities.deserialize_role(data, guild_id=guild_id)
    for data in [served["message_post"], served["message_patch"], served["webhook_message"],
                 served["rich_message"], served["reply_message"], served["file_message"],
                 served["dm_message"], *served["messages"]]:
        entities.deserialize_message(data)
    builds = entities.deserialize_channel(served["channel_with_overwrites"])
    assert len(builds.permission_overwrites) == 1
    dm = entities.deserialize_channel(served["dm_channel"])
    assert dm.recipient.id == int(served["other_user"]["id"])
    assert entities.deserialize_user(served["other_user"]).username == "alice"
    assert entities.deserialize_application(served["application"]).id == user_id
    entities.deserialize_invite_with_metadata(served["invite_created"])
    entities.deserialize_invite(served["invite"])
    for data in (served["webhook_created"], served["webhook"], served["webhook_by_token"]):
        assert entities.deserialize_webhook(data).name == "ci"


def test_discordjs_loads_every_object(served: Payloads) -> None:
    node = node_or_fail()
    done = subprocess.run([node, str(JS_DIR / "fields.mjs")], input=json.dumps(served),
                          capture_output=True, text=True, cwd=JS_DIR, timeout=60)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout)
    failed = {name: why for name, why in results.items() if why != "ok"}
    assert not failed, failed
    assert set(results) >= {"READY", "GUILD_CREATE", "MESSAGE_CREATE", "webhook_message",
                            "WEBHOOK_MESSAGE_CREATE", "webhook_created", "guild",
                            "RICH_MESSAGE_CREATE", "REPLY_MESSAGE_CREATE",
                            "MESSAGE_REACTION_ADD", "CHANNEL_UPDATE", "DM_MESSAGE_CREATE",
                            "GUILD_MEMBER_ADD", "GUILD_MEMBER_REMOVE", "dm_channel"}
