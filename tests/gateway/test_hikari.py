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


def test_hikari_bot_round_trip_and_resume(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            bot = hikari.GatewayBot(
                r.seeded.token, rest_url=r.gateway.rest_url, banner=None, logs=None,
                suppress_optimization_warning=True,
                intents=hikari.Intents.ALL_UNPRIVILEGED | hikari.Intents.MESSAGE_CONTENT)
            events: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()

            def on(kind: str) -> Any:
                async def listener(event: Any) -> None:
                    await events.put((kind, event))
                return listener

            async def on_message(event: hikari.GuildMessageCreateEvent) -> None:
                if event.author_id == r.seeded.user_id:
                    return
                await events.put(("message", event))
                if event.content == "ping":
                    await bot.rest.create_message(event.channel_id, "pong")

            bot.subscribe(hikari.ShardReadyEvent, on("ready"))
            bot.subscribe(hikari.GuildAvailableEvent, on("guild"))
            bot.subscribe(hikari.GuildMessageCreateEvent, on_message)
            bot.subscribe(hikari.GuildMessageUpdateEvent, on("edit"))
            bot.subscribe(hikari.GuildMessageDeleteEvent, on("delete"))
            bot.subscribe(hikari.ShardResumedEvent, on("resumed"))

            async def expect(kind: str) -> Any:
                while True:
                    got, event = await asyncio.wait_for(events.get(), 10)
                    if got == kind:
                        return event

            async def rest_post(content: str) -> int:
                url = f"{r.gateway.rest_url}/channels/{r.seeded.channel_id}/messages"
                async with http.post(url, json={"content": content},
                                     headers={"Authorization": f"Bot {r.other_token}"}) as resp:
                    assert resp.status == 200, await resp.text()
                    return int((await resp.json())["id"])

            await asyncio.wait_for(bot.start(check_for_updates=False), 10)
            try:
                ready = await expect("ready")
                assert ready.my_user.id == r.seeded.user_id
                assert list(ready.unavailable_guilds) == [r.seeded.guild_id]
                guild = (await expect("guild")).guild
                assert guild.id == r.seeded.guild_id
                assert r.seeded.channel_id in guild.get_channels()

                application = await bot.rest.fetch_application()
                assert application.id == r.seeded.user_id
                assert application.approximate_guild_count == 1

                ping_id = await rest_post("ping")
                got = await expect("message")
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
                event = await expect("edit")
                assert event.message_id == pong.id and event.content == "pong, edited"
                await bot.rest.delete_message(r.seeded.channel_id, pong)
                assert (await expect("delete")).message_id == pong.id
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
                    kind, event = await asyncio.wait_for(events.get(), 10)
                    if kind in ("message", "resumed"):
                        seen[kind] = event
                got = seen["message"]
                assert got.message_id == missed_id and got.content == "while you were away"
            finally:
                await bot.close()

    run(main, timeout=30)
