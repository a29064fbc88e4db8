"""Interop: DMs with a real hikari bot (``rest_url=`` only): ``rest.create_dm_channel``
(the same channel every time), ``User.send``, the DM message events (create, update,
delete, typing) for what another user does in the DM over REST, the DM's history; and
nothing hikari cannot deserialize reaches it (its raw-event errors go to the loop's
exception handler, which the test watches)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import hikari

from tests.gateway.harness import run, running_gateway
from tests.gateway.libraries import HikariBot, as_alice


def test_hikari_dms(tmp_path: Path) -> None:
    async def main() -> None:
        errors: list[dict[str, Any]] = []
        asyncio.get_running_loop().set_exception_handler(lambda _, context: errors.append(context))
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            bot = HikariBot(r.seeded.token, r.gateway.rest_url, {
                "ready": hikari.ShardReadyEvent, "message": hikari.DMMessageCreateEvent,
                "edit": hikari.DMMessageUpdateEvent, "delete": hikari.DMMessageDeleteEvent,
                "typing": hikari.DMTypingEvent})

            await bot.start(until="ready")
            try:
                dm = await bot.rest.create_dm_channel(r.other_id)
                assert isinstance(dm, hikari.DMChannel) and dm.type == hikari.ChannelType.DM
                assert dm.recipient.id == r.other_id and dm.recipient.username == "alice"
                assert (await bot.rest.create_dm_channel(r.other_id)).id == dm.id

                alice = await bot.rest.fetch_user(r.other_id)
                hello = await alice.send("hello alice")  # hikari opens the DM itself
                assert hello.channel_id == dm.id and hello.guild_id is None
                own = await bot.expect("message")
                assert own.message_id == hello.id and own.author_id == r.seeded.user_id

                sent = await as_alice(http, r, "POST", f"/channels/{dm.id}/messages",
                                      {"content": "hi bot"})
                got = await bot.expect("message")
                assert got.message_id == int(sent["id"]) and got.content == "hi bot"
                assert got.author_id == r.other_id and got.channel_id == dm.id
                await as_alice(http, r, "PATCH", f"/channels/{dm.id}/messages/{sent['id']}",
                               {"content": "hi bot!"})
                edit = await bot.expect("edit")
                assert edit.message_id == int(sent["id"]) and edit.content == "hi bot!"
                await as_alice(http, r, "POST", f"/channels/{dm.id}/typing")
                typing = await bot.expect("typing")
                assert typing.user_id == r.other_id and typing.channel_id == dm.id
                await as_alice(http, r, "DELETE", f"/channels/{dm.id}/messages/{sent['id']}")
                assert (await bot.expect("delete")).message_id == int(sent["id"])

                history = [m.content async for m in bot.rest.fetch_messages(dm.id).limit(10)]
                assert history == ["hello alice"]
                fetched = await bot.rest.fetch_channel(dm.id)
                assert isinstance(fetched, hikari.DMChannel) and fetched.last_message_id == hello.id
            finally:
                await bot.close()
        assert not errors, errors

    run(main, timeout=30)
