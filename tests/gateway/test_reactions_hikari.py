"""Interop: reactions with a real hikari bot (2.x, from PyPI), pointed at greenroom by
``rest_url=`` alone.

The bot adds a Unicode and a custom reaction (``rest.add_reaction``, ``emoji_id=``),
hears them and another user's (``GuildReactionAddEvent`` with its member), reads them
back (``Message.reactions``, ``fetch_reactions_for_emoji``), removes its own, another's,
one emoji's and all, hearing ``GuildReactionDeleteEvent``,
``GuildReactionDeleteEmojiEvent`` and ``GuildReactionDeleteAllEvent``.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import aiohttp
import hikari
import pytest

from tests.gateway.harness import run, running_gateway
from tests.gateway.libraries import HikariBot

PARTY_ID = 112233445566778899


def test_hikari_reactions(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            bot = HikariBot(r.seeded.token, r.gateway.rest_url, {
                "guild": hikari.GuildAvailableEvent, "add": hikari.GuildReactionAddEvent,
                "remove": hikari.GuildReactionDeleteEvent,
                "remove_emoji": hikari.GuildReactionDeleteEmojiEvent,
                "remove_all": hikari.GuildReactionDeleteAllEvent})
            expect = bot.expect
            channel = r.seeded.channel_id
            await bot.start(until="guild")
            try:
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
