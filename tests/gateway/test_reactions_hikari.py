"""Interop: reactions with a real hikari bot (2.x, from PyPI), pointed at greenroom by
``rest_url=`` alone.

The bot adds a Unicode and a custom reaction (``rest.add_reaction``, ``emoji_id=``),
hears them and another user's (``GuildReactionAddEvent`` with its member), reads them
back (``Message.reactions``, ``fetch_reactions_for_emoji``), removes its own, another's,
one emoji's and all, hearing ``GuildReactionDeleteEvent``,
``GuildReactionDeleteEmojiEvent`` and ``GuildReactionDeleteAllEvent``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import hikari
import pytest

from tests.gateway.harness import run, running_gateway

PARTY_ID = 112233445566778899


def test_hikari_reactions(tmp_path: Path) -> None:
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

            bot.subscribe(hikari.GuildAvailableEvent, on("guild"))
            bot.subscribe(hikari.GuildReactionAddEvent, on("add"))
            bot.subscribe(hikari.GuildReactionDeleteEvent, on("remove"))
            bot.subscribe(hikari.GuildReactionDeleteEmojiEvent, on("remove_emoji"))
            bot.subscribe(hikari.GuildReactionDeleteAllEvent, on("remove_all"))

            async def expect(kind: str) -> Any:
                got, event = await asyncio.wait_for(events.get(), 10)
                assert got == kind, (got, event)
                return event

            channel = r.seeded.channel_id
            await asyncio.wait_for(bot.start(check_for_updates=False), 10)
            try:
                await expect("guild")
                url = f"{r.gateway.rest_url}/channels/{channel}/messages"
                alice = {"Authorization": f"Bot {r.other_token}"}
                async with http.post(url, json={"content": "react here"}, headers=alice) as resp:
                    mid = int((await resp.json())["id"])

                await bot.rest.add_reaction(channel, mid, "👍")
                event = await expect("add")
                assert (event.message_id, event.user_id, event.emoji_name) == \
                    (mid, r.seeded.user_id, "👍")
                assert event.member.id == r.seeded.user_id and event.guild_id == r.seeded.guild_id
                assert event.emoji_id is None and not event.is_burst
                await bot.rest.add_reaction(channel, mid, "party", emoji_id=PARTY_ID)
                event = await expect("add")
                assert (event.emoji_id, event.emoji_name) == (PARTY_ID, "party")
                async with http.put(f"{url}/{mid}/reactions/{quote('👍')}/@me",
                                    headers=alice) as resp:
                    assert resp.status == 204
                event = await expect("add")
                assert event.user_id == r.other_id and event.member.id == r.other_id

                message = await bot.rest.fetch_message(channel, mid)
                shown = [(str(x.emoji), x.count, x.is_me) for x in message.reactions]
                assert shown == [("👍", 2, True), (f"<:party:{PARTY_ID}>", 1, True)]
                assert message.reactions[0].count_details.normal == 2
                users = [u.id async for u in bot.rest.fetch_reactions_for_emoji(channel, mid, "👍")]
                assert users == sorted([r.seeded.user_id, r.other_id])

                await bot.rest.delete_my_reaction(channel, mid, "👍")
                event = await expect("remove")
                assert (event.user_id, event.emoji_name) == (r.seeded.user_id, "👍")
                await bot.rest.delete_reaction(channel, mid, r.other_id, "👍")
                event = await expect("remove")
                assert (event.user_id, event.guild_id) == (r.other_id, r.seeded.guild_id)
                await bot.rest.delete_all_reactions_for_emoji(channel, mid, "party",
                                                              emoji_id=PARTY_ID)
                event = await expect("remove_emoji")
                assert (event.emoji_id, event.message_id) == (PARTY_ID, mid)
                await bot.rest.add_reaction(channel, mid, "🔥")
                await expect("add")
                await bot.rest.delete_all_reactions(channel, mid)
                event = await expect("remove_all")
                assert event.message_id == mid and event.channel_id == channel
                assert (await bot.rest.fetch_message(channel, mid)).reactions == []

                with pytest.raises(hikari.BadRequestError) as refused:
                    await bot.rest.add_reaction(channel, mid, "nope")
                assert refused.value.code == 10014
                with pytest.raises(hikari.NotFoundError):
                    await bot.rest.add_reaction(channel, 42, "👍")
            finally:
                await bot.close()

    run(main, timeout=30)
