"""Interop: reactions with a real discord.py bot (from PyPI), under Discord's default
rate limits (discord.py paces itself on the reaction bucket's headers).

The bot adds reactions (``Message.add_reaction`` with a Unicode emoji, a custom one in
``<:name:id>`` form and a ``PartialEmoji``), hears them and another user's
(``on_raw_reaction_add`` with ``member``; ``on_reaction_add`` for its cached message),
reads the counts (``Message.reactions``) and who reacted (``Reaction.users()``), then
removes another's, one emoji and all, hearing each event.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from urllib.parse import quote

import aiohttp
import pytest

from gateway.limits import RateLimits
from tests.gateway.harness import run, running_gateway
from tests.gateway.libraries import (
    discordpy_client,
    discordpy_running,
    import_discord,
    point_discordpy_at,
)

discord = import_discord()

PARTY_ID = 112233445566778899


def test_discordpy_reactions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async def main() -> None:
        async with running_gateway(tmp_path, limits=RateLimits()) as r, \
                aiohttp.ClientSession() as http:
            point_discordpy_at(monkeypatch, r.gateway)
            client = discordpy_client()  # GUILD_MESSAGE_REACTIONS among the defaults
            raw: asyncio.Queue = asyncio.Queue()
            cached: asyncio.Queue = asyncio.Queue()
            created: asyncio.Queue = asyncio.Queue()

            @client.event
            async def on_message(message) -> None:  # type: ignore[no-untyped-def]
                await created.put(message)

            @client.event
            async def on_raw_reaction_add(payload) -> None:  # type: ignore[no-untyped-def]
                await raw.put(("add", payload))

            @client.event
            async def on_raw_reaction_remove(payload) -> None:  # type: ignore[no-untyped-def]
                await raw.put(("remove", payload))

            @client.event
            async def on_raw_reaction_clear_emoji(payload) -> None:  # type: ignore[no-untyped-def]
                await raw.put(("clear_emoji", payload))

            @client.event
            async def on_raw_reaction_clear(payload) -> None:  # type: ignore[no-untyped-def]
                await raw.put(("clear", payload))

            @client.event
            async def on_reaction_add(reaction, user) -> None:  # type: ignore[no-untyped-def]
                await cached.put((str(reaction.emoji), reaction.count, user.id))

            async def next_raw(kind: str):  # type: ignore[no-untyped-def]
                got, payload = await asyncio.wait_for(raw.get(), 10)
                assert got == kind, (got, payload)
                return payload

            async with discordpy_running(client, r.seeded.token):
                channel = client.get_channel(r.seeded.channel_id)
                url = f"{r.gateway.rest_url}/channels/{r.seeded.channel_id}/messages"
                alice = {"Authorization": f"Bot {r.other_token}"}
                async with http.post(url, json={"content": "react here"}, headers=alice) as resp:
                    assert resp.status == 200
                    mid = int((await resp.json())["id"])
                message = await asyncio.wait_for(created.get(), 10)
                assert message.id == mid

                await message.add_reaction("👍")
                payload = await next_raw("add")
                assert (payload.message_id, payload.user_id, str(payload.emoji)) == \
                    (mid, r.seeded.user_id, "👍")
                assert payload.member is not None and payload.member.id == r.seeded.user_id
                assert payload.message_author_id == r.other_id
                assert payload.event_type == "REACTION_ADD" and payload.burst is False
                assert await asyncio.wait_for(cached.get(), 10) == ("👍", 1, r.seeded.user_id)
                await message.add_reaction(f"<:party:{PARTY_ID}>")
                payload = await next_raw("add")
                assert payload.emoji.id == PARTY_ID and payload.emoji.name == "party"
                await message.add_reaction(discord.PartialEmoji(name="🔥"))
                await next_raw("add")
                assert [(await asyncio.wait_for(cached.get(), 10))[:2] for _ in range(2)] == \
                    [(f"<:party:{PARTY_ID}>", 1), ("🔥", 1)]
                async with http.put(f"{url}/{mid}/reactions/{quote('👍')}/@me",
                                    headers=alice) as resp:
                    assert resp.status == 204
                payload = await next_raw("add")
                assert payload.user_id == r.other_id and payload.member.id == r.other_id
                assert await asyncio.wait_for(cached.get(), 10) == ("👍", 2, r.other_id)

                fetched = await channel.fetch_message(mid)
                shown = [(str(x.emoji), x.count, x.me) for x in fetched.reactions]
                assert shown == [("👍", 2, True), (f"<:party:{PARTY_ID}>", 1, True),
                                 ("🔥", 1, True)]
                thumbs = fetched.reactions[0]
                users = sorted([r.seeded.user_id, r.other_id])  # by id, Discord's order
                # (discord.py yields each page reversed)
                assert [u.id async for u in thumbs.users()] == users[::-1]
                assert [u.id async for u in thumbs.users(limit=1)] == users[:1]

                await fetched.remove_reaction("👍", discord.Object(id=r.other_id))
                payload = await next_raw("remove")
                assert (payload.user_id, str(payload.emoji)) == (r.other_id, "👍")
                await fetched.remove_reaction("🔥", client.user)  # its own: @me
                payload = await next_raw("remove")
                assert (payload.user_id, str(payload.emoji)) == (r.seeded.user_id, "🔥")
                await fetched.clear_reaction(f"<:party:{PARTY_ID}>")
                payload = await next_raw("clear_emoji")
                assert payload.emoji.id == PARTY_ID and payload.message_id == mid
                await fetched.clear_reactions()
                payload = await next_raw("clear")
                assert payload.message_id == mid and payload.guild_id == r.seeded.guild_id
                assert (await channel.fetch_message(mid)).reactions == []

                with pytest.raises(discord.HTTPException) as refused:
                    await fetched.add_reaction("not an emoji")
                assert refused.value.code == 10014

    run(main, timeout=40)
