"""Interop: a real discord.py bot (from PyPI) against greenroom on loopback ports.

Only ``discord.http.Route.BASE`` and ``DiscordWebSocket.DEFAULT_GATEWAY`` are changed.
The bot logs in (users/@me, oauth2/applications/@me), gets READY + GUILD_CREATE
(``on_ready`` with its guild), receives a message another client posted over REST,
replies with ``channel.send``, finds the reply in the history, and after its socket is
cut it RESUMEs and gets the message posted while it was away.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest

from gateway.seed import create_user
from tests.gateway.harness import run, running_gateway
from tests.gateway.libraries import (
    EventQueue,
    discordpy_client,
    discordpy_running,
    on,
    point_discordpy_at,
    post_as_alice,
)

discord = pytest.importorskip("discord")



def test_discordpy_bot_round_trip_and_resume(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            point_discordpy_at(monkeypatch, r.gateway)
            client = discordpy_client()
            resumed = asyncio.Event()
            received: asyncio.Queue = asyncio.Queue()

            @client.event
            async def on_resumed() -> None:
                resumed.set()

            @client.event
            async def on_message(message) -> None:  # type: ignore[no-untyped-def]
                if message.author.id == client.user.id:
                    return
                await received.put(message)
                if message.content == "ping":
                    await message.channel.send("pong")

            async def rest_post(content: str) -> str:
                return (await post_as_alice(http, r, {"content": content}))["id"]

            async with discordpy_running(client, r.seeded.token, reconnect=True):
                assert client.user.id == r.seeded.user_id
                assert [g.id for g in client.guilds] == [r.seeded.guild_id]
                channel = client.get_channel(r.seeded.channel_id)
                assert channel is not None and channel.guild.id == r.seeded.guild_id

                ping_id = await rest_post("ping")
                got = await asyncio.wait_for(received.get(), 10)
                assert got.id == int(ping_id) and got.content == "ping"
                assert got.author.id == r.other_id

                for _ in range(100):  # the reply is sent from on_message
                    history = [m async for m in channel.history(limit=10)]
                    if any(m.content == "pong" for m in history):
                        break
                    await asyncio.sleep(0.05)
                assert [m.content for m in history][:2] == ["pong", "ping"]
                assert history[0].author.id == r.seeded.user_id

                # Cut the bot's socket (no close frame); post while it is away.
                links = [link for link in r.gateway.links if link.session is not None]
                assert len(links) == 1
                links[0].transport.disconnect(graceful=False)
                missed_id = await rest_post("while you were away")
                await asyncio.wait_for(resumed.wait(), 10)
                got = await asyncio.wait_for(received.get(), 10)
                assert got.id == int(missed_id) and got.content == "while you were away"

    run(main, timeout=30)


def test_discordpy_edit_delete_typing_channels_members(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """discord.py's own calls for the rest of the slice: ``Message.edit``/``delete``,
    ``channel.typing()``, ``create_text_channel``, and the events they cause."""

    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            point_discordpy_at(monkeypatch, r.gateway)
            client = discordpy_client(members=True, presences=True)
            events = EventQueue()
            on(client, "raw_message_edit", lambda p: events.put(
                "edit", ("edit", p.message_id, p.data.get("content"))))
            on(client, "raw_message_delete", lambda p: events.put(
                "delete", ("delete", p.message_id, None)))
            on(client, "raw_typing", lambda p: events.put("typing", ("typing", p.user_id, None)))
            on(client, "guild_channel_create", lambda c: events.put(
                "channel", ("channel", c.id, c.name)))
            on(client, "presence_update", lambda before, after: events.put(
                "presence", ("presence", after.id, str(after.status))))

            async with discordpy_running(client, r.seeded.token, reconnect=True):
                channel = client.get_channel(r.seeded.channel_id)
                sent = await channel.send("draft")
                edited = await sent.edit(content="final")
                assert edited.content == "final" and edited.edited_at is not None
                assert await events.expect("edit") == ("edit", sent.id, "final")
                await sent.delete()
                assert await events.expect("delete") == ("delete", sent.id, None)
                async with channel.typing():
                    pass
                assert await events.expect("typing") == ("typing", r.seeded.user_id, None)
                created = await channel.guild.create_text_channel("random")
                assert created.name == "random"
                assert await events.expect("channel") == ("channel", created.id, "random")

                # Another client comes online: discord.py sees the presence.
                ws = await http.ws_connect(f"{r.gateway.gateway_url}/?v=10&encoding=json")
                await ws.receive_json()
                await ws.send_json({"op": 2, "d": {"token": r.other_token, "intents": 1,
                                                   "properties": {"os": "x", "browser": "x",
                                                                  "device": "x"}}})
                assert (await ws.receive_json())["t"] == "READY"
                await ws.send_json({"op": 3, "d": {"since": None, "status": "dnd",
                                                   "afk": False, "activities": []}})
                while (event := await events.expect("presence"))[2] != "dnd":
                    pass
                assert event[1] == r.other_id
                await ws.close()

    run(main, timeout=30)


def test_discordpy_invites(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """discord.py's ``create_invite`` and ``fetch_invite`` (issue 10, finding 5: a user
    joins by accepting an invite); a user accepts it with their own token."""

    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            point_discordpy_at(monkeypatch, r.gateway)
            client = discordpy_client(message_content=False)
            async with discordpy_running(client, r.seeded.token, reconnect=True):
                channel = client.get_channel(r.seeded.channel_id)
                invite = await channel.create_invite(max_age=600, max_uses=1)
                assert invite.max_uses == 1 and invite.max_age == 600 and invite.uses == 0
                assert invite.guild.id == r.seeded.guild_id and invite.inviter.id == client.user.id
                fetched = await client.fetch_invite(invite.code)
                assert fetched.code == invite.code and fetched.channel.id == channel.id
                assert fetched.expires_at is not None
                eve_id, eve = await create_user(r.gateway.storage, r.ids,
                                                "eve", bot=False)
                async with http.post(f"{r.gateway.rest_url}/invites/{invite.code}",
                                     headers={"Authorization": f"Bot {eve}"}) as resp:
                    assert resp.status == 200 and (await resp.json())["new_member"] is True
                with pytest.raises(discord.NotFound):
                    await client.fetch_invite(invite.code)  # its one use is taken
                assert await r.gateway.storage.get_member(r.seeded.guild_id, eve_id) is not None

    run(main, timeout=30)
