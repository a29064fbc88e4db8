"""Channel permission overwrites over REST and the gateway: every refusal with Discord's
status and code, the objects that carry them, enforcement on read, history, send and
typing, and the fan-out (a member denied VIEW_CHANNEL in one channel gets none of its
events, and still gets another channel's)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp

from chat.permissions import (
    MANAGE_MESSAGES,
    MANAGE_ROLES,
    SEND_MESSAGES,
    VIEW_CHANNEL,
)
from storage.model import Member, Role
from tests.gateway.harness import member, run, running_gateway
from tests.gateway.test_events import next_event, quiet, session
from tests.gateway.test_fanout import open_guild
from tests.gateway.test_gateway_socket import INTENTS, connect, identify, recv


async def call(http: aiohttp.ClientSession, r: Any, method: str, path: str,
               token: str | None = None, **kwargs: Any) -> tuple[int, Any, str]:
    """``test_rest.call``, also for a 204 (no body)."""
    headers = {"Authorization": f"Bot {token}"} if token else {}
    async with http.request(method, f"{r.gateway.rest_url}{path}", headers=headers,
                            **kwargs) as resp:
        if resp.status == 204:
            assert await resp.read() == b""
            return 204, None, ""
        return resp.status, await resp.json(content_type=None), resp.headers["Content-Type"]

MEMBER, ROLE = 1, 0


async def user_session(http: aiohttp.ClientSession, r: Any, token: str
                       ) -> aiohttp.ClientWebSocketResponse:
    """A user's session with the guild open (op 14: message events from now)."""
    ws = await session(http, r, token, INTENTS)
    await next_event(ws, "GUILD_CREATE")
    await open_guild(ws, r.seeded.guild_id)
    return ws


def _errors(body: dict[str, Any], field: str) -> str:
    assert body["code"] == 50035, body
    return body["errors"][field]["_errors"][0]["code"]


def test_overwrite_refusals(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            storage = r.gateway.storage
            gid, cid, owner, alice = (r.seeded.guild_id, r.seeded.channel_id,
                                      r.seeded.token, r.other_token)
            path = f"/channels/{cid}/permissions"
            member = f"{path}/{r.other_id}"

            async def put(token: str, url: str, body: Any) -> tuple[int, Any]:
                status, out, _ = await call(http, r, "PUT", url, token, json=body)
                return status, out

            # Who may: not without a token, not in an unknown channel, not without
            # MANAGE_ROLES.
            assert (await put("", member, {"type": 1}))[0] == 401
            status, body = await put(owner, f"/channels/1/permissions/{r.other_id}", {"type": 1})
            assert status == 404 and body["code"] == 10003
            status, body = await put(alice, member, {"type": MEMBER})
            assert status == 403 and body == {"code": 50013, "message": "Missing Permissions"}
            # What: the body's fields, named.
            assert _errors((await put(owner, member, {}))[1], "type") == "BASE_TYPE_REQUIRED"
            assert _errors((await put(owner, member, {"type": 2}))[1], "type") \
                == "BASE_TYPE_CHOICES"
            assert _errors((await put(owner, member, {"type": True}))[1], "type") \
                == "BASE_TYPE_CHOICES"
            assert _errors((await put(owner, member, {"type": 1, "allow": "x1"}))[1],
                           "allow") == "NUMBER_TYPE_COERCE"
            assert _errors((await put(owner, member, {"type": 1, "deny": -1}))[1],
                           "deny") == "NUMBER_TYPE_COERCE"
            assert _errors((await put(owner, member, {"type": 1, "allow": str(1 << 64)}))[1],
                           "allow") == "NUMBER_TYPE_MAX"
            status, body, _ = await call(http, r, "PUT", member, owner, data=b"[")
            assert status == 400 and body["code"] == 50035
            # Whom: a role of the guild, a member of it, a snowflake.
            status, body = await put(owner, f"{path}/123", {"type": ROLE})
            assert status == 404 and body == {"code": 10011, "message": "Unknown Role"}
            status, body = await put(owner, f"{path}/123", {"type": MEMBER})
            assert status == 404 and body == {"code": 10007, "message": "Unknown Member"}
            status, body = await put(owner, f"{path}/abc", {"type": MEMBER})
            assert status == 404 and body["code"] == 10009
            status, body, _ = await call(http, r, "DELETE", member, owner)
            assert status == 404 and body == {"code": 10009, "message": "Unknown Overwrite"}
            status, body, _ = await call(http, r, "DELETE", member, alice)
            assert status == 403 and body["code"] == 50013
            nothing = await call(http, r, "GET", f"/channels/{cid}", owner)
            assert nothing[1]["permission_overwrites"] == []  # nothing half-written
            # A DM has no overwrites.
            status, dm, _ = await call(http, r, "POST", "/users/@me/channels", owner,
                                       json={"recipient_id": str(r.other_id)})
            assert status == 200, dm
            status, body = await put(owner, f"/channels/{dm['id']}/permissions/{r.other_id}",
                                     {"type": MEMBER})
            assert status == 403 and body["code"] == 50003

            # A moderator (MANAGE_ROLES from a role) may allow or deny only what it holds
            # in the guild...
            mod = 1_000_005
            await storage.put_role(Role(gid, mod, "mod", permissions=MANAGE_ROLES))
            await storage.put_member(Member(gid, r.other_id, 1, roles=[mod]))
            everyone = f"{path}/{gid}"
            status, body = await put(alice, everyone, {"type": ROLE, "allow": "0",
                                                       "deny": str(MANAGE_MESSAGES)})
            assert status == 403 and body["code"] == 50013  # it lacks MANAGE_MESSAGES
            status, _ = await put(alice, everyone, {"type": ROLE, "deny": str(SEND_MESSAGES)})
            assert status == 204
            # ... or in the channel when MANAGE_ROLES is granted there by an overwrite.
            grant = {"type": MEMBER, "allow": str(MANAGE_ROLES | MANAGE_MESSAGES)}
            assert (await put(owner, member, grant))[0] == 204
            status, _ = await put(alice, f"{path}/{mod}",
                                  {"type": ROLE, "allow": str(MANAGE_MESSAGES)})
            assert status == 204
            # Without VIEW_CHANNEL in the channel, Missing Access comes first.
            hide = {"type": MEMBER, "deny": str(VIEW_CHANNEL)}
            assert (await put(owner, member, hide))[0] == 204
            status, body = await put(alice, everyone, {"type": ROLE})
            assert status == 403 and body == {"code": 50001, "message": "Missing Access"}
            status, body, _ = await call(http, r, "DELETE", everyone, alice)
            assert status == 403 and body["code"] == 50001
            status, channel, _ = await call(http, r, "GET", f"/channels/{cid}", owner)
            assert sorted((o["id"], o["type"], o["allow"], o["deny"])
                          for o in channel["permission_overwrites"]) == sorted([
                (str(gid), ROLE, "0", str(SEND_MESSAGES)),
                (str(mod), ROLE, str(MANAGE_MESSAGES), "0"),
                (str(r.other_id), MEMBER, "0", str(VIEW_CHANNEL))])

    run(main)


def test_a_member_denied_view_gets_nothing_of_the_channel(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            gid, cid, owner, alice = (r.seeded.guild_id, r.seeded.channel_id,
                                      r.seeded.token, r.other_token)
            messages = f"/channels/{cid}/messages"
            _, bob = await member(r, "bob", bot=False)
            mine = await session(http, r, owner, INTENTS)
            hers = await user_session(http, r, alice)
            his = await user_session(http, r, bob)
            _, kept, _ = await call(http, r, "POST", messages, owner, json={"content": "one"})
            for ws in (mine, hers, his):
                await next_event(ws, "MESSAGE_CREATE", lambda d: d["content"] == "one")

            # Deny alice VIEW_CHANNEL here, and @everyone SEND_MESSAGES (bob may still read).
            status, _, _ = await call(http, r, "PUT", f"/channels/{cid}/permissions/{r.other_id}",
                                      owner, json={"type": MEMBER, "allow": "0",
                                                   "deny": str(VIEW_CHANNEL)})
            assert status == 204
            for ws in (mine, hers, his):  # she learns why the channel goes quiet
                update = await next_event(ws, "CHANNEL_UPDATE")
                assert update["id"] == str(cid) and update["guild_id"] == str(gid)
                assert update["permission_overwrites"] == [{
                    "id": str(r.other_id), "type": MEMBER, "allow": "0",
                    "deny": str(VIEW_CHANNEL)}]
            status, _, _ = await call(http, r, "PUT", f"/channels/{cid}/permissions/{gid}",
                                      owner, json={"type": ROLE, "deny": str(SEND_MESSAGES)})
            assert status == 204
            for ws in (mine, his):
                update = await next_event(ws, "CHANNEL_UPDATE")
                assert len(update["permission_overwrites"]) == 2
            await quiet(hers, "CHANNEL_UPDATE")  # she could not see it before either

            # Read, history, send, typing: Missing Access for her; bob may not send.
            for method, url in (("GET", f"/channels/{cid}"), ("GET", messages),
                                ("GET", f"{messages}/{kept['id']}"), ("POST", messages),
                                ("POST", f"/channels/{cid}/typing")):
                status, body, _ = await call(http, r, method, url, alice,
                                             json={"content": "x"} if method == "POST" else None)
                assert status == 403 and body == {"code": 50001, "message": "Missing Access"}, \
                    (method, url, body)
            status, body, _ = await call(http, r, "POST", messages, bob, json={"content": "x"})
            assert status == 403 and body["code"] == 50013
            status, history, _ = await call(http, r, "GET", messages, bob)
            assert status == 200 and [m["id"] for m in history] == [kept["id"]]

            # The fan-out: the owner and bob get the channel's messages, she does not;
            # another channel (no overwrites) still reaches her.
            status, other, _ = await call(http, r, "POST", f"/guilds/{gid}/channels", owner,
                                          json={"name": "open"})
            assert status == 201 and other["permission_overwrites"] == []
            await call(http, r, "POST", messages, owner, json={"content": "hidden"})
            await call(http, r, "POST", f"/channels/{other['id']}/messages", owner,
                       json={"content": "open"})
            for ws in (mine, his):
                assert (await next_event(ws, "MESSAGE_CREATE"))["content"] == "hidden"
            seen = await next_event(hers, "MESSAGE_CREATE")
            assert seen["content"] == "open" and seen["channel_id"] == other["id"]

            # GET guild channels and a new GUILD_CREATE carry the overwrites.
            status, channels, _ = await call(http, r, "GET", f"/guilds/{gid}/channels", owner)
            by_id = {c["id"]: c for c in channels}
            assert len(by_id[str(cid)]["permission_overwrites"]) == 2
            assert by_id[other["id"]]["permission_overwrites"] == []
            again = await connect(http, r)
            await again.send_json(identify(owner))
            assert (await recv(again))["t"] == "READY"
            created = await recv(again)
            assert created["t"] == "GUILD_CREATE"
            listed = {c["id"]: c for c in created["d"]["channels"]}
            assert len(listed[str(cid)]["permission_overwrites"]) == 2
            assert listed[other["id"]]["permission_overwrites"] == []
            await again.close()

            # Deleting her overwrite gives the channel back to her.
            status, _, _ = await call(http, r, "DELETE",
                                      f"/channels/{cid}/permissions/{r.other_id}", owner)
            assert status == 204
            update = await next_event(hers, "CHANNEL_UPDATE")
            assert [o["id"] for o in update["permission_overwrites"]] == [str(gid)]
            await call(http, r, "POST", messages, owner, json={"content": "back"})
            assert (await next_event(hers, "MESSAGE_CREATE"))["content"] == "back"
            status, history, _ = await call(http, r, "GET", messages, alice)
            assert status == 200 and history[0]["content"] == "back"
            for ws in (mine, hers, his):
                await ws.close()

    run(main)


def test_a_channel_created_with_overwrites(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            storage = r.gateway.storage
            gid, owner, alice = r.seeded.guild_id, r.seeded.token, r.other_token
            create = f"/guilds/{gid}/channels"
            mine = await session(http, r, owner, INTENTS)
            hers = await user_session(http, r, alice)

            async def refused(token: str, overwrites: Any) -> tuple[int, Any]:
                status, body, _ = await call(http, r, "POST", create, token, json={
                    "name": "private", "permission_overwrites": overwrites})
                return status, body

            assert _errors((await refused(owner, {"id": "1"}))[1],
                           "permission_overwrites") == "BASE_TYPE_ARRAY"
            body = (await refused(owner, [{"id": str(gid), "type": 0}, {"id": "x", "type": 0}]))[1]
            assert body["errors"]["permission_overwrites"]["1"]["id"]["_errors"][0]["code"] \
                == "NUMBER_TYPE_COERCE"
            body = (await refused(owner, [{"id": str(gid), "type": 0, "allow": "no"}]))[1]
            assert body["errors"]["permission_overwrites"]["0"]["allow"]["_errors"][0]["code"] \
                == "NUMBER_TYPE_COERCE"
            status, body = await refused(owner, [{"id": "5", "type": 0}])
            assert status == 404 and body["code"] == 10011
            # A channel manager without ADMINISTRATOR: only what it holds, never MANAGE_ROLES.
            manager = 1_000_006
            await storage.put_role(Role(gid, manager, "manager", permissions=(1 << 4) | (
                MANAGE_ROLES | VIEW_CHANNEL | SEND_MESSAGES)))
            await storage.put_member(Member(gid, r.other_id, 1, roles=[manager]))
            for bits in (MANAGE_MESSAGES, MANAGE_ROLES):
                status, body = await refused(alice, [{"id": str(gid), "type": 0,
                                                      "deny": str(bits)}])
                assert status == 403 and body["code"] == 50013
            status, body, _ = await call(http, r, "GET", f"/guilds/{gid}/channels", owner)
            assert [c["name"] for c in body] == ["general"]  # nothing half-made

            # The owner's private channel: @everyone may not view it.
            status, private = await refused(owner, [
                {"id": str(gid), "type": 0, "allow": "0", "deny": str(VIEW_CHANNEL)},
                {"id": str(r.seeded.user_id), "type": 1, "allow": str(VIEW_CHANNEL)}])
            assert status == 201
            assert sorted(o["id"] for o in private["permission_overwrites"]) \
                == sorted([str(gid), str(r.seeded.user_id)])
            created = await next_event(mine, "CHANNEL_CREATE")
            assert created["permission_overwrites"] == private["permission_overwrites"]
            await quiet(hers, "CHANNEL_CREATE")
            status, body, _ = await call(http, r, "GET", f"/channels/{private['id']}", alice)
            assert status == 403 and body["code"] == 50001
            await call(http, r, "POST", f"/channels/{private['id']}/messages", owner,
                       json={"content": "secret"})
            await call(http, r, "POST", f"/channels/{r.seeded.channel_id}/messages", owner,
                       json={"content": "public"})
            assert (await next_event(hers, "MESSAGE_CREATE"))["content"] == "public"
            for ws in (mine, hers):
                await ws.close()

    run(main)
