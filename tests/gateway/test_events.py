"""Message edit and delete, typing, permissions and presence over real sockets: each REST
call is answered once durable and its event reaches the sessions that asked for it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

from chat.permissions import ADMINISTRATOR, READ_MESSAGE_HISTORY, SEND_MESSAGES, VIEW_CHANNEL
from gateway.protocol import Intents
from gateway.seed import create_user
from storage.model import Member, Role
from tests.gateway.harness import Running, member, run, running_gateway
from tests.gateway.test_gateway_socket import INTENTS, connect, identified, identify, recv
from tests.gateway.test_rest import call

TYPING = INTENTS | int(Intents.GUILD_MESSAGE_TYPING)
PRESENCES = int(Intents.GUILDS | Intents.GUILD_PRESENCES)


async def next_event(ws: aiohttp.ClientWebSocketResponse, t: str,
                     match: Callable[[dict[str, Any]], bool] = lambda d: True,
                     timeout: float = 5.0) -> dict[str, Any]:
    """The next dispatch ``t`` whose ``d`` matches, skipping everything else."""
    async def find() -> dict[str, Any]:
        while True:
            event = await recv(ws, timeout)
            if event["op"] == 0 and event["t"] == t and match(event["d"]):
                return event["d"]

    return await asyncio.wait_for(find(), timeout)


async def quiet(ws: aiohttp.ClientWebSocketResponse, *unwanted: str) -> None:
    """Nothing of ``unwanted`` arrives before a heartbeat's ACK (FIFO per socket)."""
    await ws.send_json({"op": 1, "d": None})
    while True:
        event = await recv(ws)
        if event["op"] == 11:
            return
        assert event.get("t") not in unwanted, event


async def session(http: aiohttp.ClientSession, r: Running, token: str, intents: int
                  ) -> aiohttp.ClientWebSocketResponse:
    ws = await connect(http, r)
    await ws.send_json(identify(token, intents))
    assert (await recv(ws))["t"] == "READY"
    return ws


def test_edit_and_delete_a_message(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            bot, alice = r.seeded.token, r.other_token
            path = f"/channels/{r.seeded.channel_id}/messages"
            ws, _ = await identified(http, r)
            _, sent, _ = await call(http, r, "POST", path, alice, json={"content": "tpyo"})
            assert (await next_event(ws, "MESSAGE_CREATE"))["id"] == sent["id"]
            mid = sent["id"]

            status, body, _ = await call(http, r, "PATCH", f"{path}/{mid}", bot,
                                         json={"content": "not yours"})
            assert status == 403 and body["code"] == 50005
            status, body, _ = await call(http, r, "PATCH", f"{path}/{mid}", alice,
                                         json={"content": ""})
            assert status == 400 and body["code"] == 50006
            status, body, _ = await call(http, r, "PATCH", f"{path}/99", alice,
                                         json={"content": "x"})
            assert status == 404 and body["code"] == 10008
            status, edited, _ = await call(http, r, "PATCH", f"{path}/{mid}", alice,
                                           json={"content": "typo"})
            assert status == 200, edited
            assert edited["id"] == mid and edited["content"] == "typo"
            assert edited["edited_timestamp"] and "member" not in edited
            update = await next_event(ws, "MESSAGE_UPDATE")
            assert update["id"] == mid and update["content"] == "typo"
            assert update["edited_timestamp"] == edited["edited_timestamp"]
            assert update["guild_id"] == str(r.seeded.guild_id)
            # Durable before the answer.
            _, stored, _ = await call(http, r, "GET", f"{path}/{mid}", bot)
            assert stored["content"] == "typo" and stored["edited_timestamp"]

            # Another member without MANAGE_MESSAGES may not delete it; the owner may.
            _, carol = await member(r, "carol", bot=False)
            status, body, _ = await call(http, r, "DELETE", f"{path}/{mid}", carol)
            assert status == 403 and body["code"] == 50013
            async with http.delete(f"{r.gateway.rest_url}{path}/{mid}",
                                   headers={"Authorization": f"Bot {bot}"}) as resp:
                assert resp.status == 204
            gone = await next_event(ws, "MESSAGE_DELETE")
            assert gone == {"id": mid, "channel_id": str(r.seeded.channel_id),
                            "guild_id": str(r.seeded.guild_id)}
            status, body, _ = await call(http, r, "GET", f"{path}/{mid}", bot)
            assert status == 404 and body["code"] == 10008
            _, history, _ = await call(http, r, "GET", path, bot)
            assert history == []

            # The author may delete its own message.
            _, own, _ = await call(http, r, "POST", path, carol, json={"content": "mine"})
            async with http.delete(f"{r.gateway.rest_url}{path}/{own['id']}",
                                   headers={"Authorization": f"Bot {carol}"}) as resp:
                assert resp.status == 204
            assert (await next_event(ws, "MESSAGE_DELETE"))["id"] == own["id"]
            await ws.close()

    run(main)


def test_edit_is_redacted_without_message_content(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            path = f"/channels/{r.seeded.channel_id}/messages"
            ws = await session(http, r, r.seeded.token,
                               int(Intents.GUILDS | Intents.GUILD_MESSAGES))
            _, sent, _ = await call(http, r, "POST", path, r.other_token, json={"content": "a"})
            await call(http, r, "PATCH", f"{path}/{sent['id']}", r.other_token,
                       json={"content": "b"})
            update = await next_event(ws, "MESSAGE_UPDATE")
            assert update["id"] == sent["id"] and update["content"] == ""
            await ws.close()

    run(main)


def test_typing_reaches_sessions_with_the_typing_intent(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            typing = await session(http, r, r.seeded.token, TYPING)
            plain = await session(http, r, r.seeded.token, INTENTS)
            async with http.post(
                    f"{r.gateway.rest_url}/channels/{r.seeded.channel_id}/typing",
                    headers={"Authorization": f"Bot {r.other_token}"}) as resp:
                assert resp.status == 204
            event = await next_event(typing, "TYPING_START")
            assert event["user_id"] == str(r.other_id)
            assert event["channel_id"] == str(r.seeded.channel_id)
            assert event["guild_id"] == str(r.seeded.guild_id)
            assert isinstance(event["timestamp"], int)
            assert event["member"]["user"]["id"] == str(r.other_id)
            await quiet(plain, "TYPING_START")
            status, body, _ = await call(http, r, "POST", "/channels/1/typing", r.other_token)
            assert status == 404 and body["code"] == 10003
            for ws in (typing, plain):
                await ws.close()

    run(main)


def test_permissions_from_roles(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            storage = r.gateway.storage
            gid, cid, alice = r.seeded.guild_id, r.seeded.channel_id, r.other_token
            path = f"/channels/{cid}/messages"
            _, sent, _ = await call(http, r, "POST", path, r.seeded.token,
                                    json={"content": "by the owner"})
            # @everyone may only view.
            await storage.put_role(Role(gid, gid, "@everyone", permissions=VIEW_CHANNEL))
            status, _, _ = await call(http, r, "GET", f"/channels/{cid}", alice)
            assert status == 200
            status, body, _ = await call(http, r, "POST", path, alice, json={"content": "x"})
            assert status == 403 and body == {"code": 50013, "message": "Missing Permissions"}
            status, body, _ = await call(http, r, "GET", path, alice)
            assert status == 403 and body["code"] == 50013
            status, body, _ = await call(http, r, "GET", f"{path}/{sent['id']}", alice)
            assert status == 403 and body["code"] == 50013
            status, body, _ = await call(http, r, "POST", f"/channels/{cid}/typing", alice)
            assert status == 403 and body["code"] == 50013
            # The owner has every permission whatever @everyone says.
            status, _, _ = await call(http, r, "GET", path, r.seeded.token)
            assert status == 200

            # A role grants what @everyone lacks.
            talker = 1_000_001
            await storage.put_role(Role(gid, talker, "talker",
                                        permissions=SEND_MESSAGES | READ_MESSAGE_HISTORY))
            await storage.put_member(Member(gid, r.other_id, 1, roles=[talker]))
            status, mine, _ = await call(http, r, "POST", path, alice, json={"content": "hi"})
            assert status == 200, mine
            status, history, _ = await call(http, r, "GET", path, alice)
            assert status == 200 and len(history) == 2
            status, body, _ = await call(http, r, "DELETE", f"{path}/{sent['id']}", alice)
            assert status == 403 and body["code"] == 50013  # no MANAGE_MESSAGES

            # ADMINISTRATOR has everything.
            admin = 1_000_002
            await storage.put_role(Role(gid, admin, "admin", permissions=ADMINISTRATOR))
            await storage.put_member(Member(gid, r.other_id, 1, roles=[talker, admin]))
            async with http.delete(f"{r.gateway.rest_url}{path}/{sent['id']}",
                                   headers={"Authorization": f"Bot {alice}"}) as resp:
                assert resp.status == 204

            # Without VIEW_CHANNEL: Missing Access; a non-member too.
            await storage.put_member(Member(gid, r.other_id, 1, roles=[]))
            await storage.put_role(Role(gid, gid, "@everyone", permissions=0))
            status, body, _ = await call(http, r, "GET", f"/channels/{cid}", alice)
            assert status == 403 and body == {"code": 50001, "message": "Missing Access"}
            _, stranger = await create_user(storage, r.ids, "eve")
            status, body, _ = await call(http, r, "GET", path, stranger)
            assert status == 403 and body["code"] == 50001

    run(main)


def test_presence_updates_and_offline_after_the_resume_window(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_gateway(tmp_path, resume_window_s=0.3) as r, \
                aiohttp.ClientSession() as http:
            alice_id = str(r.other_id)

            def alice(d: dict[str, Any]) -> bool:
                return d["user"]["id"] == alice_id

            watcher = await session(http, r, r.seeded.token, PRESENCES)
            blind = await session(http, r, r.seeded.token, INTENTS)
            ws = await session(http, r, r.other_token, int(Intents.GUILDS))
            online = await next_event(watcher, "PRESENCE_UPDATE", alice)
            assert online["status"] == "online"
            assert online["guild_id"] == str(r.seeded.guild_id)
            await ws.send_json({"op": 3, "d": {"since": None, "status": "dnd", "afk": False,
                                               "activities": [{"name": "chess", "type": 0}]}})
            dnd = await next_event(watcher, "PRESENCE_UPDATE", alice)
            assert dnd["status"] == "dnd" and dnd["activities"][0]["name"] == "chess"
            # The same presence again changes nothing: no dispatch.
            await ws.send_json({"op": 3, "d": {"since": None, "status": "dnd", "afk": False,
                                               "activities": [{"name": "chess", "type": 0}]}})
            await ws.send_json({"op": 3, "d": {"since": None, "status": "invisible",
                                               "afk": False, "activities": []}})
            hidden = await next_event(watcher, "PRESENCE_UPDATE", alice)
            assert hidden["status"] == "offline"  # invisible shows as offline
            await ws.send_json({"op": 3, "d": {"since": None, "status": "idle", "afk": True,
                                               "activities": []}})
            assert (await next_event(watcher, "PRESENCE_UPDATE", alice))["status"] == "idle"
            # A resumable drop keeps the presence for the resume window, then offline.
            await ws.close(code=4000)
            await quiet(watcher, "PRESENCE_UPDATE")
            gone = await next_event(watcher, "PRESENCE_UPDATE", alice)
            assert gone["status"] == "offline" and gone["activities"] == []
            await quiet(blind, "PRESENCE_UPDATE")
            for w in (watcher, blind):
                await w.close()

    run(main)


def test_presence_of_a_user_with_two_sessions(tmp_path: Path) -> None:
    """A user shows its latest session's presence; a normal close (1000) ends the session
    at once, and the user goes offline only when its last session ends."""

    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            alice_id = str(r.other_id)

            def alice(d: dict[str, Any]) -> bool:
                return d["user"]["id"] == alice_id

            watcher = await session(http, r, r.seeded.token, PRESENCES)
            one = await session(http, r, r.other_token, int(Intents.GUILDS))
            await one.send_json({"op": 3, "d": {"since": None, "status": "idle",
                                                "afk": True, "activities": []}})
            while (await next_event(watcher, "PRESENCE_UPDATE", alice))["status"] != "idle":
                pass
            two = await session(http, r, r.other_token, int(Intents.GUILDS))
            # The newer session (online by default) is what alice shows now.
            assert (await next_event(watcher, "PRESENCE_UPDATE", alice))["status"] == "online"
            await two.close(code=1000)
            assert (await next_event(watcher, "PRESENCE_UPDATE", alice))["status"] == "idle"
            await one.close(code=1000)
            assert (await next_event(watcher, "PRESENCE_UPDATE", alice))["status"] == "offline"
            await watcher.close()

    run(main)
