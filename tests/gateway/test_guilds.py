"""Guilds, channels and members over REST, with their gateway events: CHANNEL_CREATE,
GUILD_MEMBER_ADD / _REMOVE, and GUILD_CREATE / GUILD_DELETE to the joining or leaving
user's live sessions."""

from __future__ import annotations

from pathlib import Path

import aiohttp

from gateway.protocol import Intents
from tests.gateway.harness import run, running_gateway
from tests.gateway.test_consent import consent
from tests.gateway.test_events import next_event, quiet, session
from tests.gateway.test_fanout import open_guild
from tests.gateway.test_rest import call

MEMBERS = int(Intents.GUILDS | Intents.GUILD_MEMBERS | Intents.GUILD_MESSAGES
              | Intents.MESSAGE_CONTENT)


def test_create_guild_channels_and_members(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            bot, alice, alice_id = r.seeded.token, r.other_token, str(r.other_id)
            ws_bot = await session(http, r, bot, MEMBERS)
            ws_alice = await session(http, r, alice, MEMBERS)
            no_members = await session(http, r, bot, int(Intents.GUILDS))

            status, body, _ = await call(http, r, "POST", "/guilds", bot, json={"name": "x"})
            assert status == 400 and body["code"] == 50035
            status, guild, _ = await call(http, r, "POST", "/guilds", bot,
                                          json={"name": "second home"})
            assert status == 201, guild
            gid = guild["id"]
            assert guild["name"] == "second home" and guild["owner_id"] == str(r.seeded.user_id)
            assert [role["id"] for role in guild["roles"]] == [gid]  # @everyone
            created = await next_event(ws_bot, "GUILD_CREATE", lambda d: d["id"] == gid)
            assert [c["name"] for c in created["channels"]] == ["general"]
            general = created["channels"][0]["id"]

            status, got, _ = await call(http, r, "GET", f"/guilds/{gid}", bot)
            assert status == 200 and got["id"] == gid
            status, body, _ = await call(http, r, "GET", f"/guilds/{gid}", alice)
            assert status == 403 and body["code"] == 50001
            status, body, _ = await call(http, r, "GET", "/guilds/12345", bot)
            assert status == 404 and body["code"] == 10004
            status, channels, _ = await call(http, r, "GET", f"/guilds/{gid}/channels", bot)
            assert status == 200 and [c["id"] for c in channels] == [general]

            # Add alice (with her consent): GUILD_MEMBER_ADD to GUILD_MEMBERS sessions,
            # GUILD_CREATE to hers.
            grant = await consent(http, r, alice, r.seeded.user_id)
            status, member, _ = await call(http, r, "PUT", f"/guilds/{gid}/members/{alice_id}",
                                           bot, json={"access_token": grant})
            assert status == 201 and member["user"]["id"] == alice_id
            added = await next_event(ws_bot, "GUILD_MEMBER_ADD")
            assert added["guild_id"] == gid and added["user"]["id"] == alice_id
            joined = await next_event(ws_alice, "GUILD_CREATE", lambda d: d["id"] == gid)
            assert joined["channels"][0]["id"] == general
            async with http.put(f"{r.gateway.rest_url}/guilds/{gid}/members/{alice_id}",
                                headers={"Authorization": f"Bot {bot}"}) as resp:
                assert resp.status == 204  # already a member
            status, body, _ = await call(http, r, "PUT", f"/guilds/{gid}/members/777", bot)
            assert status == 404 and body["code"] == 10013
            status, body, _ = await call(http, r, "PUT",
                                         f"/guilds/{gid}/members/{r.seeded.user_id}", alice)
            assert status == 403 and body["code"] == 50013

            status, members, _ = await call(http, r, "GET", f"/guilds/{gid}/members", bot)
            assert status == 200 and len(members) == 1  # Discord's default limit is 1
            status, members, _ = await call(http, r, "GET",
                                            f"/guilds/{gid}/members?limit=1000", bot)
            assert sorted(m["user"]["id"] for m in members) == sorted(
                [alice_id, str(r.seeded.user_id)])

            # A new channel: CHANNEL_CREATE to both; only MANAGE_CHANNELS may create one.
            status, body, _ = await call(http, r, "POST", f"/guilds/{gid}/channels", alice,
                                         json={"name": "nope"})
            assert status == 403 and body["code"] == 50013
            status, channel, _ = await call(http, r, "POST", f"/guilds/{gid}/channels", bot,
                                            json={"name": "random", "topic": "anything"})
            assert status == 201 and channel["guild_id"] == gid and channel["topic"] == "anything"
            for ws in (ws_bot, ws_alice, no_members):
                event = await next_event(ws, "CHANNEL_CREATE")
                assert event["id"] == channel["id"] and event["name"] == "random"
            status, channels, _ = await call(http, r, "GET", f"/guilds/{gid}/channels", alice)
            assert {c["name"] for c in channels} == {"general", "random"}
            # Alice hears the new channel's messages (the guild actor knows it) once her
            # client opens the guild (op 14: she is a user, passive until then).
            await open_guild(ws_alice, gid)
            status, sent, _ = await call(http, r, "POST", f"/channels/{channel['id']}/messages",
                                         bot, json={"content": "in random"})
            assert status == 200
            assert (await next_event(ws_alice, "MESSAGE_CREATE"))["id"] == sent["id"]

            # The owner cannot be removed; alice is: GUILD_MEMBER_REMOVE and GUILD_DELETE.
            status, body, _ = await call(http, r, "DELETE",
                                         f"/guilds/{gid}/members/{r.seeded.user_id}", alice)
            assert status == 403 and body["code"] == 50013
            async with http.delete(f"{r.gateway.rest_url}/guilds/{gid}/members/{alice_id}",
                                   headers={"Authorization": f"Bot {bot}"}) as resp:
                assert resp.status == 204
            removed = await next_event(ws_bot, "GUILD_MEMBER_REMOVE")
            assert removed == {"guild_id": gid, "user": removed["user"]}
            assert removed["user"]["id"] == alice_id
            assert await next_event(ws_alice, "GUILD_DELETE") == {"id": gid}
            status, body, _ = await call(http, r, "GET", f"/guilds/{gid}", alice)
            assert status == 403 and body["code"] == 50001
            status, body, _ = await call(http, r, "DELETE",
                                         f"/guilds/{gid}/members/{alice_id}", bot)
            assert status == 404 and body["code"] == 10007
            # She no longer gets the guild's messages.
            status, _, _ = await call(http, r, "POST", f"/channels/{general}/messages", bot,
                                      json={"content": "after she left"})
            assert status == 200
            await quiet(ws_alice, "MESSAGE_CREATE")
            await quiet(no_members, "GUILD_MEMBER_ADD", "GUILD_MEMBER_REMOVE")
            for ws in (ws_bot, ws_alice, no_members):
                await ws.close()

    run(main)


def test_a_member_may_leave(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            gid, alice_id = r.seeded.guild_id, r.other_id
            ws = await session(http, r, r.other_token, MEMBERS)
            async with http.delete(f"{r.gateway.rest_url}/guilds/{gid}/members/{alice_id}",
                                   headers={"Authorization": f"Bot {r.other_token}"}) as resp:
                assert resp.status == 204
            assert await next_event(ws, "GUILD_DELETE") == {"id": str(gid)}
            await ws.close()

    run(main)
