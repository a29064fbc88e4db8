"""Direct messages over REST and the gateway (chat/dms.py, gateway/rest/dms.py,
gateway/direct.py): opening is idempotent per pair (also concurrently, from both
sides), who may DM whom, a DM's messages, history, edits, deletes and typing, and
which sessions hear of them by intent."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp

from gateway.protocol import Intents
from gateway.seed import add_member, create_user
from storage.snowflake import SnowflakeGenerator
from tests.gateway.harness import Running, member, run, running_gateway
from tests.gateway.test_events import next_event, quiet, session
from tests.gateway.test_gateway_socket import connect, identify, recv
from tests.gateway.test_rest import call

DMS = int(Intents.DIRECT_MESSAGES)
DM_TYPING = int(Intents.DIRECT_MESSAGE_TYPING)
GUILD_ONLY = int(Intents.GUILDS | Intents.GUILD_MESSAGES | Intents.GUILD_MESSAGE_TYPING
                 | Intents.MESSAGE_CONTENT)


async def open_dm(http: aiohttp.ClientSession, r: Running, token: str, recipient: Any
                  ) -> tuple[int, Any]:
    status, body, _ = await call(http, r, "POST", "/users/@me/channels", token,
                                 json={"recipient_id": recipient})
    return status, body


def test_open_is_idempotent_and_refuses_whom_discord_refuses(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            bot, alice = r.seeded.token, r.other_token
            status, dm = await open_dm(http, r, bot, str(r.other_id))
            assert status == 200, dm
            assert dm["type"] == 1 and "guild_id" not in dm
            assert [u["id"] for u in dm["recipients"]] == [str(r.other_id)]
            assert dm["recipients"][0]["username"] == "alice"
            assert dm["last_message_id"] is None
            # the same channel every time, from either side, and by an integer id
            assert (await open_dm(http, r, bot, str(r.other_id)))[1]["id"] == dm["id"]
            assert (await open_dm(http, r, bot, r.other_id))[1]["id"] == dm["id"]
            status, seen_by_alice = await open_dm(http, r, alice, str(r.seeded.user_id))
            assert status == 200 and seen_by_alice["id"] == dm["id"]
            assert [u["id"] for u in seen_by_alice["recipients"]] == [str(r.seeded.user_id)]

            # a new pair opened 12 times at once from both sides: one channel
            carol_id, carol = await member(r, "carol", bot=False)
            opens = await asyncio.gather(*(
                open_dm(http, r, *((bot, str(carol_id)) if i % 2 else (carol,
                                                                      str(r.seeded.user_id))))
                for i in range(12)))
            assert {status for status, _ in opens} == {200}
            assert len({body["id"] for _, body in opens}) == 1
            assert opens[0][1]["id"] != dm["id"]

            # bad input and refusals, with Discord's codes
            status, body = await open_dm(http, r, bot, "nope")
            assert (status, body["code"]) == (400, 50035)
            assert body["errors"]["recipient_id"]["_errors"][0]["code"] == "NUMBER_TYPE_COERCE"
            status, body, _ = await call(http, r, "POST", "/users/@me/channels", bot, json={})
            assert (status, body["code"]) == (400, 50035) and "recipient_id" in body["errors"]
            for bad in ([], "x", 5, {"recipient_id": None}, {"recipient_id": {}},
                        {"recipient_id": "9" * 30}, {"recipients": [str(r.other_id)]}):
                status, body, _ = await call(http, r, "POST", "/users/@me/channels", bot,
                                             json=bad)
                assert (status, body["code"]) == (400, 50035), (bad, body)
            assert (await open_dm(http, r, bot, "12345"))[1]["code"] == 10013
            assert (await open_dm(http, r, bot, "12345"))[0] == 404
            status, body = await open_dm(http, r, bot, str(r.seeded.user_id))  # oneself
            assert (status, body["code"]) == (400, 50007)
            storage, ids = r.gateway.storage, SnowflakeGenerator(worker=5)
            other_bot, _ = await create_user(storage, ids, "bot2")
            await add_member(storage, r.seeded.guild_id, other_bot)
            status, body = await open_dm(http, r, bot, str(other_bot))  # bot to bot
            assert (status, body["code"]) == (400, 50007)
            stranger, _ = await create_user(storage, ids, "stranger", bot=False)
            status, body = await open_dm(http, r, bot, str(stranger))  # no shared guild
            assert (status, body["code"]) == (400, 50007)
            status, body, _ = await call(http, r, "POST", "/users/@me/channels", None,
                                         json={"recipient_id": str(r.other_id)})
            assert status == 401
            status, body, _ = await call(http, r, "GET", "/users/@me/channels", bot)
            assert (status, body) == (200, [])
            # the user a bot looks up before a DM
            status, body, _ = await call(http, r, "GET", f"/users/{r.other_id}", bot)
            assert status == 200 and body["id"] == str(r.other_id)
            assert body["username"] == "alice" and body["bot"] is False
            for missing in ("12345", "x", "0123"):
                status, body, _ = await call(http, r, "GET", f"/users/{missing}", bot)
                assert (status, body["code"]) == (404, 10013)
            status, body, _ = await call(http, r, "GET", f"/users/{r.other_id}", None)
            assert status == 401

    run(main)


def test_dm_messages_history_edit_delete_typing_and_access(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            bot, alice = r.seeded.token, r.other_token
            _, dm = await open_dm(http, r, bot, str(r.other_id))
            path = f"/channels/{dm['id']}/messages"
            status, hi, _ = await call(http, r, "POST", path, bot, json={"content": "hi"})
            assert status == 200, hi
            assert hi["channel_id"] == dm["id"] and "guild_id" not in hi and "member" not in hi
            assert hi["author"]["id"] == str(r.seeded.user_id)
            status, hello, _ = await call(http, r, "POST", path, alice,
                                          json={"content": "hello bot"})
            assert status == 200, hello
            # the message features work in a DM: a mention, an embed, a reply; and
            # "@everyone" pings no one there
            status, rich, _ = await call(http, r, "POST", path, alice, json={
                "content": f"<@{r.seeded.user_id}> @everyone", "embeds": [{"title": "t"}],
                "message_reference": {"message_id": hi["id"]}})
            assert status == 200, rich
            assert [u["id"] for u in rich["mentions"]] == [str(r.seeded.user_id)]
            assert rich["mention_everyone"] is False and rich["embeds"][0]["title"] == "t"
            assert rich["type"] == 19 and rich["referenced_message"]["id"] == hi["id"]
            async with http.delete(f"{r.gateway.rest_url}{path}/{rich['id']}",
                                   headers={"Authorization": f"Bot {alice}"}) as resp:
                assert resp.status == 204
            for token in (bot, alice):
                status, history, _ = await call(http, r, "GET", f"{path}?limit=10", token)
                assert status == 200
                assert [m["content"] for m in history] == ["hello bot", "hi"]
                assert all("guild_id" not in m for m in history)
            status, one, _ = await call(http, r, "GET", f"{path}/{hi['id']}", alice)
            assert status == 200 and one["content"] == "hi"
            status, channel, _ = await call(http, r, "GET", f"/channels/{dm['id']}", bot)
            assert status == 200 and channel["type"] == 1
            assert channel["last_message_id"] == hello["id"]
            assert (await open_dm(http, r, bot, str(r.other_id)))[1]["last_message_id"] \
                == hello["id"]

            status, edited, _ = await call(http, r, "PATCH", f"{path}/{hi['id']}", bot,
                                           json={"content": "hi!"})
            assert status == 200 and edited["content"] == "hi!" and "guild_id" not in edited
            # another's message: not editable, and not deletable in a DM (50003)
            status, body, _ = await call(http, r, "PATCH", f"{path}/{hello['id']}", bot,
                                         json={"content": "x"})
            assert (status, body["code"]) == (403, 50005)
            status, body, _ = await call(http, r, "DELETE", f"{path}/{hello['id']}", bot)
            assert (status, body["code"]) == (403, 50003)
            async with http.delete(f"{r.gateway.rest_url}{path}/{hi['id']}",
                                   headers={"Authorization": f"Bot {bot}"}) as resp:
                assert resp.status == 204
            async with http.post(f"{r.gateway.rest_url}/channels/{dm['id']}/typing",
                                 headers={"Authorization": f"Bot {alice}"}) as resp:
                assert resp.status == 204
            status, history, _ = await call(http, r, "GET", path, alice)
            assert [m["content"] for m in history] == ["hello bot"]

            # a third user, a member of the same guild, sees none of it
            _, carol = await member(r, "carol", bot=False)
            for method, url, body in (("GET", f"/channels/{dm['id']}", None),
                                      ("GET", path, None),
                                      ("POST", path, {"content": "me too"}),
                                      ("GET", f"{path}/{hello['id']}", None)):
                status, answer, _ = await call(http, r, method, url, carol, json=body)
                assert (status, answer["code"]) == (403, 50001), (method, url, answer)
            status, answer, _ = await call(http, r, "POST", f"/channels/{dm['id']}/typing",
                                           carol)
            assert (status, answer["code"]) == (403, 50001)

            # once they share no guild, neither may send (Discord's 403 50007)
            await r.gateway.storage.remove_member(r.seeded.guild_id, r.other_id)
            for token in (bot, alice):
                status, answer, _ = await call(http, r, "POST", path, token,
                                               json={"content": "still there?"})
                assert (status, answer["code"]) == (403, 50007), answer
            status, history, _ = await call(http, r, "GET", path, bot)
            assert status == 200 and len(history) == 1  # the history stays readable

    run(main)


def test_dm_events_reach_both_users_sessions_by_dm_intent(tmp_path: Path) -> None:
    """MESSAGE_CREATE/UPDATE/DELETE and TYPING_START of a DM reach both users' sessions
    that asked for DIRECT_MESSAGES (DIRECT_MESSAGE_TYPING), without guild_id or member;
    a session with only guild intents and a third user's session get none. A new DM's
    CHANNEL_CREATE reaches its non-bot user, before the DM's first message."""
    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            bot, alice = r.seeded.token, r.other_token
            carol_id, carol = await member(r, "carol", bot=False)
            ws_bot = await session(http, r, bot, DMS | DM_TYPING)
            ws_guild_only = await session(http, r, bot, GUILD_ONLY)
            assert (await recv(ws_guild_only))["t"] == "GUILD_CREATE"
            ws_alice = await session(http, r, alice, DMS)
            ws_carol = await session(http, r, carol, DMS | DM_TYPING)
            await asyncio.sleep(0.05)

            _, dm = await open_dm(http, r, alice, str(r.seeded.user_id))
            path = f"/channels/{dm['id']}/messages"
            _, sent, _ = await call(http, r, "POST", path, bot, json={"content": "hi alice"})
            created = await recv(ws_alice)  # CHANNEL_CREATE first: the user's new DM
            assert created["t"] == "CHANNEL_CREATE", created
            assert created["d"]["id"] == dm["id"] and created["d"]["type"] == 1
            assert [u["id"] for u in created["d"]["recipients"]] == [str(r.seeded.user_id)]
            for ws in (ws_alice, ws_bot):  # the bot hears its own message, as on Discord
                got = await recv(ws)
                assert got["t"] == "MESSAGE_CREATE", got
                assert got["d"]["id"] == sent["id"] and got["d"]["content"] == "hi alice"
                assert "guild_id" not in got["d"] and "member" not in got["d"]

            _, reply, _ = await call(http, r, "POST", path, alice, json={"content": "hey"})
            assert (await next_event(ws_bot, "MESSAGE_CREATE"))["id"] == reply["id"]
            assert (await next_event(ws_alice, "MESSAGE_CREATE"))["id"] == reply["id"]
            async with http.post(f"{r.gateway.rest_url}/channels/{dm['id']}/typing",
                                 headers={"Authorization": f"Bot {alice}"}) as resp:
                assert resp.status == 204
            typing = await recv(ws_bot)
            assert typing["t"] == "TYPING_START", typing
            assert typing["d"]["channel_id"] == dm["id"]
            assert typing["d"]["user_id"] == str(r.other_id)
            assert "guild_id" not in typing["d"] and "member" not in typing["d"]
            await call(http, r, "PATCH", f"{path}/{sent['id']}", bot, json={"content": "hi!"})
            for ws in (ws_bot, ws_alice):
                update = await next_event(ws, "MESSAGE_UPDATE")
                assert update["id"] == sent["id"] and update["content"] == "hi!"
                assert "guild_id" not in update
            async with http.delete(f"{r.gateway.rest_url}{path}/{sent['id']}",
                                   headers={"Authorization": f"Bot {bot}"}) as resp:
                assert resp.status == 204
            for ws in (ws_bot, ws_alice):
                assert await next_event(ws, "MESSAGE_DELETE") == {
                    "id": sent["id"], "channel_id": dm["id"]}
            # alice asked for DIRECT_MESSAGES only: no TYPING_START; the guild-only
            # session and carol: nothing of the DM at all
            await quiet(ws_alice, "TYPING_START")
            for ws in (ws_guild_only, ws_carol):
                await quiet(ws, "CHANNEL_CREATE", "MESSAGE_CREATE", "MESSAGE_UPDATE",
                            "MESSAGE_DELETE", "TYPING_START")
            # the bot is told of no DM channel: CHANNEL_CREATE goes to users only
            await quiet(ws_bot, "CHANNEL_CREATE")
            for ws in (ws_bot, ws_guild_only, ws_alice, ws_carol):
                await ws.close()

    run(main)


def test_a_dm_sent_while_away_is_replayed_on_resume(tmp_path: Path) -> None:
    """A DM's events are in the session's log like a guild's: a session whose socket
    closed gets the DM posted meanwhile when it RESUMEs, and the READY of a bot keeps
    ``private_channels`` empty (DMs reach bots as they are used)."""
    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            ws = await connect(http, r)
            await ws.send_json(identify(r.seeded.token, DMS))
            ready = await recv(ws)
            assert ready["t"] == "READY" and ready["d"]["private_channels"] == []
            _, dm = await open_dm(http, r, r.other_token, str(r.seeded.user_id))
            path = f"/channels/{dm['id']}/messages"
            await call(http, r, "POST", path, r.other_token, json={"content": "first"})
            first = await recv(ws)
            assert first["t"] == "MESSAGE_CREATE" and first["d"]["content"] == "first"
            seq = first["s"]
            await ws.close(code=4000)
            _, missed, _ = await call(http, r, "POST", path, r.other_token,
                                      json={"content": "while away"})
            ws = await connect(http, r)
            await ws.send_json({"op": 6, "d": {"token": r.seeded.token, "seq": seq,
                                               "session_id": ready["d"]["session_id"]}})
            replayed = await recv(ws)
            assert replayed["t"] == "MESSAGE_CREATE" and replayed["s"] == seq + 1
            assert replayed["d"]["id"] == missed["id"]
            assert (await recv(ws))["t"] == "RESUMED"
            await ws.close()

    run(main)

