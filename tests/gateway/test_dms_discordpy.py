"""Interop: DMs with a real discord.py bot (only its base URLs changed): ``create_dm``,
``Member.send`` / ``User.send``, ``on_message`` with a ``DMChannel`` for what another
user posts into the DM over REST, a reply through ``message.channel``, the DM's
history, typing, ``fetch_user`` and ``fetch_channel``."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest

from tests.gateway.harness import run, running_gateway
from tests.gateway.libraries import (
    as_alice,
    discordpy_client,
    discordpy_running,
    point_discordpy_at,
)

discord = pytest.importorskip("discord")


def test_discordpy_dms(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            point_discordpy_at(monkeypatch, r.gateway)
            # the default intents: guilds, guild and DM messages, typing
            client = discordpy_client(members=True)
            received: asyncio.Queue = asyncio.Queue()
            typing: asyncio.Queue = asyncio.Queue()

            @client.event
            async def on_message(message) -> None:  # type: ignore[no-untyped-def]
                await received.put(message)
                if message.author.id != client.user.id and message.content == "ping":
                    await message.channel.send("pong")

            @client.event
            async def on_raw_typing(payload) -> None:  # type: ignore[no-untyped-def]
                await typing.put(payload)

            async def next_message():  # type: ignore[no-untyped-def]
                return await asyncio.wait_for(received.get(), 10)

            async with discordpy_running(client, r.seeded.token, reconnect=True):
                alice = await client.fetch_user(r.other_id)
                assert alice.name == "alice" and not alice.bot
                dm = await alice.create_dm()
                assert isinstance(dm, discord.DMChannel)
                assert dm.recipient is not None and dm.recipient.id == r.other_id
                assert await alice.create_dm() is dm  # cached by discord.py

                member = client.get_guild(r.seeded.guild_id).get_member(r.other_id)
                sent = await member.send("hello alice")  # Member.send: create_dm + send
                assert sent.channel.id == dm.id and isinstance(sent.channel, discord.DMChannel)
                own = await next_message()  # the bot's own DM comes back as an event
                assert own.id == sent.id and own.guild is None

                # alice answers in the DM over REST (the same channel from her side)
                opened = await as_alice(http, r, "POST", "/users/@me/channels",
                                        {"recipient_id": str(r.seeded.user_id)})
                assert opened["id"] == str(dm.id)
                ping = await as_alice(http, r, "POST", f"/channels/{dm.id}/messages",
                                      {"content": "ping"})
                got = await next_message()
                assert got.id == int(ping["id"]) and got.content == "ping"
                assert isinstance(got.channel, discord.DMChannel) and got.guild is None
                assert got.author.id == r.other_id
                pong = await next_message()  # the reply sent from on_message
                assert pong.content == "pong" and pong.channel.id == dm.id
                assert pong.author.id == r.seeded.user_id

                history = [m.content async for m in dm.history(limit=10)]
                assert history == ["pong", "ping", "hello alice"]
                await alice.send("bye")  # User.send through the cached DM channel
                assert (await next_message()).content == "bye"
                await as_alice(http, r, "POST", f"/channels/{dm.id}/typing")
                seen = await asyncio.wait_for(typing.get(), 10)
                assert seen.user_id == r.other_id and seen.channel_id == dm.id
                assert seen.guild_id is None
                fetched = await client.fetch_channel(dm.id)
                assert isinstance(fetched, discord.DMChannel) and fetched.id == dm.id
                assert fetched.recipient.id == r.other_id

    run(main, timeout=30)
