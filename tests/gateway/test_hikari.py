"""Interop: a real hikari bot (2.x, from PyPI) against greenroom on loopback ports.

hikari is pointed at greenroom by ``rest_url=`` alone: the gateway URL comes from
``GET /gateway/bot``, as on Discord. The bot logs in (READY, then its guild's
GUILD_CREATE), reads its application (``fetch_application``: hikari indexes
``approximate_guild_count`` and ``approximate_user_install_count`` without defaults),
receives a message another client posted over REST, replies, finds both in the history,
edits and deletes its reply (and sees the events), and after its socket is cut it
RESUMEs and gets the message posted while it was away. The transport is hikari's own
default: zstd-stream when ``backports.zstd`` is installed (the ``test`` extra has it, as
``hikari[speedups]`` does), zlib-stream otherwise.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import hikari

from tests.gateway.harness import run, running_gateway
from tests.gateway.libraries import HikariBot, post_as_alice


def test_hikari_bot_round_trip_and_resume(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            bot = HikariBot(r.seeded.token, r.gateway.rest_url, {
                "ready": hikari.ShardReadyEvent, "guild": hikari.GuildAvailableEvent,
                "edit": hikari.GuildMessageUpdateEvent, "delete": hikari.GuildMessageDeleteEvent,
                "resumed": hikari.ShardResumedEvent})

            async def on_message(event: hikari.GuildMessageCreateEvent) -> None:
                if event.author_id == r.seeded.user_id:
                    return
                await bot.events.put("message", event)
                if event.content == "ping":
                    await bot.rest.create_message(event.channel_id, "pong")

            bot.bot.subscribe(hikari.GuildMessageCreateEvent, on_message)

            async def rest_post(content: str) -> int:
                return int((await post_as_alice(http, r, {"content": content}))["id"])

            await bot.start()
            try:
                ready = await bot.expect("ready")
                assert ready.my_user.id == r.seeded.user_id
                assert list(ready.unavailable_guilds) == [r.seeded.guild_id]
                guild = (await bot.expect("guild")).guild
                assert guild.id == r.seeded.guild_id
                assert r.seeded.channel_id in guild.get_channels()

                application = await bot.rest.fetch_application()
                assert application.id == r.seeded.user_id
                assert application.approximate_guild_count == 1

                ping_id = await rest_post("ping")
                got = await bot.expect("message")
                assert got.message_id == ping_id and got.content == "ping"
                assert got.author_id == r.other_id

                for _ in range(100):  # the reply is sent from the listener
                    history = [m async for m in bot.rest.fetch_messages(r.seeded.channel_id)
                               .limit(10)]
                    if history and history[0].content == "pong":
                        break
                    await asyncio.sleep(0.05)
                assert [m.content for m in history][:2] == ["pong", "ping"]
                pong = history[0]
                assert pong.author.id == r.seeded.user_id

                edited = await bot.rest.edit_message(r.seeded.channel_id, pong, "pong, edited")
                assert edited.content == "pong, edited" and edited.edited_timestamp is not None
                event = await bot.expect("edit")
                assert event.message_id == pong.id and event.content == "pong, edited"
                await bot.rest.delete_message(r.seeded.channel_id, pong)
                assert (await bot.expect("delete")).message_id == pong.id
                with_deleted = [m.id async for m in bot.rest.fetch_messages(r.seeded.channel_id)]
                assert with_deleted == [ping_id]

                # Cut the bot's socket (no close frame); post while it is away.
                links = [link for link in r.gateway.links if link.session is not None]
                assert len(links) == 1
                links[0].transport.disconnect(graceful=False)
                missed_id = await rest_post("while you were away")
                # Both, in either order (Discord replays missed events before RESUMED).
                seen: dict[str, Any] = {}
                while len(seen) < 2:
                    kind, event = await bot.events.expect_any("message", "resumed")
                    seen[kind] = event
                got = seen["message"]
                assert got.message_id == missed_id and got.content == "while you were away"
            finally:
                await bot.close()

    run(main, timeout=30)
