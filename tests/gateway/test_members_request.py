"""Large guilds over real sockets: GUILD_CREATE carries ``large``, ``member_count`` and
only the caller's member; op 8 (REQUEST_GUILD_MEMBERS) answers GUILD_MEMBERS_CHUNKs."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.protocol import Intents
from gateway.seed import create_user
from storage.model import Member
from tests.gateway.harness import Running, run, running_gateway
from tests.gateway.test_gateway_socket import connect, identify, recv

MEMBERS = int(Intents.GUILDS | Intents.GUILD_MEMBERS)
PRESENCES = MEMBERS | int(Intents.GUILD_PRESENCES)


async def add_members(r: Running, names: list[str]) -> dict[str, int]:
    storage = r.gateway.storage
    ids = {}
    for name in names:
        user_id, _ = await create_user(storage, r.gateway.ctx.snowflakes, name, bot=False)
        await storage.put_member(Member(r.seeded.guild_id, user_id, int(time.time() * 1000)))
        ids[name] = user_id
    return ids


async def guild_create(http: aiohttp.ClientSession, r: Running, intents: int,
                       large_threshold: int = 50) -> tuple[Any, dict[str, Any]]:
    ws = await connect(http, r)
    payload = identify(r.seeded.token, intents)
    payload["d"]["large_threshold"] = large_threshold
    await ws.send_json(payload)
    assert (await recv(ws))["t"] == "READY"
    created = await recv(ws)
    assert created["t"] == "GUILD_CREATE"
    return ws, created["d"]


async def chunks(ws: Any, nonce: str) -> list[dict[str, Any]]:
    got = []
    while True:
        event = await recv(ws)
        if event["t"] == "GUILD_MEMBERS_CHUNK" and event["d"].get("nonce") == nonce:
            got.append(event["d"])
            if len(got) == event["d"]["chunk_count"]:
                return got


def test_large_guild_create_and_member_requests(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            # seeded: the bot and alice; 60 more users make 62 members (> 50)
            ids = await add_members(r, [f"user{i:02d}" for i in range(59)] + ["Zed"])
            gid = str(r.seeded.guild_id)

            ws, guild = await guild_create(http, r, PRESENCES)
            assert guild["large"] is True and guild["member_count"] == 62
            assert [m["user"]["id"] for m in guild["members"]] == [str(r.seeded.user_id)]

            # every member, in one chunk
            await ws.send_json({"op": 8, "d": {"guild_id": gid, "query": "", "limit": 0,
                                               "nonce": "all"}})
            [everyone] = await chunks(ws, "all")
            assert (everyone["guild_id"], everyone["chunk_index"],
                    everyone["chunk_count"]) == (gid, 0, 1)
            assert len({m["user"]["id"] for m in everyone["members"]}) == 62
            # a username prefix, case-insensitive, limited
            await ws.send_json({"op": 8, "d": {"guild_id": gid, "query": "USER0",
                                               "limit": 3, "nonce": "q"}})
            [found] = await chunks(ws, "q")
            names = [m["user"]["username"] for m in found["members"]]
            assert len(names) == 3 and all(n.startswith("user0") for n in names)
            # by id: members and the ids that are not members
            await ws.send_json({"op": 8, "d": {"guild_id": gid, "nonce": "ids", "user_ids": [
                str(ids["Zed"]), "12345"]}})
            [by_id] = await chunks(ws, "ids")
            assert [m["user"]["username"] for m in by_id["members"]] == ["Zed"]
            assert by_id["not_found"] == ["12345"]
            # a guild the session is not in: one empty chunk
            await ws.send_json({"op": 8, "d": {"guild_id": "999", "query": "", "limit": 0,
                                               "nonce": "other"}})
            [other] = await chunks(ws, "other")
            assert other["members"] == [] and other["chunk_count"] == 1
            await ws.close()

            # a threshold above the member count: the small-guild GUILD_CREATE lists all
            ws, guild = await guild_create(http, r, PRESENCES, large_threshold=100)
            assert guild["large"] is False and len(guild["members"]) == 62
            await ws.close()
            # without GUILD_PRESENCES: only the caller, however small the guild
            ws, guild = await guild_create(http, r, MEMBERS, large_threshold=100)
            assert guild["member_count"] == 62 and len(guild["members"]) == 1
            # without GUILD_MEMBERS, the whole list is not given: an empty answer
            await ws.close()
            ws, _ = await guild_create(http, r, int(Intents.GUILDS))
            await ws.send_json({"op": 8, "d": {"guild_id": gid, "query": "", "limit": 0,
                                               "nonce": "n"}})
            [none] = await chunks(ws, "n")
            assert none["members"] == []
            await ws.close()

            # what GUILD_CREATE shares is cached per guild, and forgotten on a change
            async with http.post(f"{r.gateway.rest_url}/guilds/{gid}/channels",
                                 json={"name": "fresh"},
                                 headers={"Authorization": f"Bot {r.seeded.token}"}) as resp:
                assert resp.status == 201
            ws, guild = await guild_create(http, r, MEMBERS)
            assert "fresh" in [c["name"] for c in guild["channels"]]
            await ws.close()

    run(main, timeout=60)


def test_discordpy_chunks_a_guild_with_op_8(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """discord.py with the members intent and no presences chunks every guild at startup
    (``chunk_guilds_at_startup``): ``on_ready`` waits for the GUILD_MEMBERS_CHUNKs."""
    discord = pytest.importorskip("discord")
    yarl = pytest.importorskip("yarl")
    from discord.gateway import DiscordWebSocket
    from discord.http import Route

    async def main() -> None:
        async with running_gateway(tmp_path) as r:
            await add_members(r, [f"user{i:02d}" for i in range(60)])
            monkeypatch.setattr(Route, "BASE", r.gateway.rest_url)
            monkeypatch.setattr(DiscordWebSocket, "DEFAULT_GATEWAY",
                                yarl.URL(r.gateway.gateway_url))
            intents = discord.Intents.default()
            intents.members = True
            client = discord.Client(intents=intents)
            ready = asyncio.Event()

            @client.event
            async def on_ready() -> None:
                ready.set()

            await client.login(r.seeded.token)
            runner = asyncio.create_task(client.connect(reconnect=False))
            try:
                await asyncio.wait_for(ready.wait(), 20)
                [guild] = client.guilds
                # 62 members: below discord.py's large_threshold (250), and without
                # presences GUILD_CREATE lists only the bot, so it asked with op 8
                assert not guild.large and guild.member_count == 62
                assert guild.chunked and len(guild.members) == 62
                assert {m.name for m in guild.members} >= {"alice", "user00", "user59"}
            finally:
                await client.close()
                runner.cancel()
                await asyncio.gather(runner, return_exceptions=True)

    run(main, timeout=40)
