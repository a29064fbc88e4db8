"""The gateway over real sockets (picows server, aiohttp client): handshake, bad input,
fan-out of a REST send, and RESUME on a new connection."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp

from gateway.protocol import GatewayConfig, Intents
from tests.gateway.harness import Running, run, running_gateway

INTENTS = int(Intents.GUILDS | Intents.GUILD_MESSAGES | Intents.MESSAGE_CONTENT)


async def recv(ws: aiohttp.ClientWebSocketResponse, timeout: float = 5.0) -> dict[str, Any]:
    msg = await ws.receive(timeout)
    assert msg.type is aiohttp.WSMsgType.TEXT, (msg.type, msg.data, msg.extra)
    return json.loads(msg.data)


async def recv_close(ws: aiohttp.ClientWebSocketResponse, timeout: float = 5.0) -> int:
    while True:
        msg = await ws.receive(timeout)
        if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
            return ws.close_code if msg.type is aiohttp.WSMsgType.CLOSED else msg.data


def identify(token: str, intents: int = INTENTS) -> dict[str, Any]:
    return {"op": 2, "d": {"token": token, "intents": intents,
                           "properties": {"os": "linux", "browser": "t", "device": "t"}}}


async def connect(http: aiohttp.ClientSession, r: Running) -> aiohttp.ClientWebSocketResponse:
    ws = await http.ws_connect(f"{r.gateway.gateway_url}/?v=10&encoding=json", autoclose=False)
    hello = await recv(ws)
    assert hello["op"] == 10 and hello["d"]["heartbeat_interval"] > 0
    return ws


async def identified(http: aiohttp.ClientSession, r: Running, token: str | None = None
                     ) -> tuple[aiohttp.ClientWebSocketResponse, dict[str, Any]]:
    ws = await connect(http, r)
    await ws.send_json(identify(token or r.seeded.token))
    ready = await recv(ws)
    assert ready["t"] == "READY" and ready["s"] == 1
    guild = await recv(ws)
    assert guild["t"] == "GUILD_CREATE" and guild["s"] == 2
    return ws, ready


def post(http: aiohttp.ClientSession, r: Running, token: str, content: str) -> Any:
    return http.post(f"{r.gateway.rest_url}/channels/{r.seeded.channel_id}/messages",
                     json={"content": content}, headers={"Authorization": f"Bot {token}"})


def test_identify_gets_ready_and_guild_create(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            ws = await connect(http, r)
            await ws.send_json(identify(r.seeded.token))
            ready = await recv(ws)
            assert ready["op"] == 0 and ready["t"] == "READY"
            d = ready["d"]
            assert d["user"]["id"] == str(r.seeded.user_id) and d["user"]["bot"] is True
            assert d["guilds"] == [{"id": str(r.seeded.guild_id), "unavailable": True}]
            assert d["resume_gateway_url"] == r.gateway.gateway_url and d["session_id"]
            guild = (await recv(ws))["d"]
            assert guild["id"] == str(r.seeded.guild_id)
            assert [c["id"] for c in guild["channels"]] == [str(r.seeded.channel_id)]
            await ws.send_json({"op": 1, "d": 2})
            assert (await recv(ws))["op"] == 11
            await ws.close()

    run(main)


def test_bad_token_closes_4004(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            ws = await connect(http, r)
            await ws.send_json(identify("not-a-token"))
            assert await recv_close(ws) == 4004

    run(main)


def test_invalid_json_closes_4002(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            ws = await connect(http, r)
            await ws.send_str("{not json")
            assert await recv_close(ws) == 4002

    run(main)


def test_oversized_payload_closes_4002(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            ws = await connect(http, r)
            big = identify(r.seeded.token)
            big["d"]["properties"]["os"] = "x" * 5000
            await ws.send_json(big)
            assert await recv_close(ws) == 4002

    run(main)


def test_payload_before_identify_closes_4003(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            ws = await connect(http, r)
            await ws.send_json({"op": 3, "d": {"since": None, "activities": [],
                                               "status": "online", "afk": False}})
            assert await recv_close(ws) == 4003

    run(main)


def test_rest_send_fans_out_by_intent_and_content_rule(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            full, _ = await identified(http, r)
            # Same bot, a second session without MESSAGE_CONTENT: content redacted.
            redacted, _ = await identified(http, r)
            await redacted.close()
            ws_nc = await connect(http, r)
            await ws_nc.send_json(identify(r.seeded.token,
                                           int(Intents.GUILDS | Intents.GUILD_MESSAGES)))
            assert (await recv(ws_nc))["t"] == "READY"
            assert (await recv(ws_nc))["t"] == "GUILD_CREATE"
            # No GUILD_MESSAGES: nothing.
            ws_none = await connect(http, r)
            await ws_none.send_json(identify(r.seeded.token, int(Intents.GUILDS)))
            assert (await recv(ws_none))["t"] == "READY"
            assert (await recv(ws_none))["t"] == "GUILD_CREATE"

            async with post(http, r, r.other_token, "hello bots") as resp:
                assert resp.status == 200, await resp.text()
                sent = await resp.json()
            event = await recv(full)
            assert event["t"] == "MESSAGE_CREATE" and event["s"] == 3
            assert event["d"]["id"] == sent["id"] and event["d"]["content"] == "hello bots"
            assert event["d"]["author"]["id"] == str(r.other_id)
            assert event["d"]["guild_id"] == str(r.seeded.guild_id) and "member" in event["d"]
            other = await recv(ws_nc)
            assert other["d"]["id"] == sent["id"] and other["d"]["content"] == ""
            await ws_none.send_json({"op": 1, "d": 2})
            assert (await recv(ws_none))["op"] == 11  # the ACK, not a MESSAGE_CREATE
            for ws in (full, ws_nc, ws_none):
                await ws.close()

    run(main)


def test_resume_on_new_connection_replays_missed(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            ws, ready = await identified(http, r)
            session_id = ready["d"]["session_id"]
            await ws.close(code=4000)  # resumable
            ids = []
            for i in range(3):
                async with post(http, r, r.other_token, f"missed {i}") as resp:
                    ids.append((await resp.json())["id"])
            ws2 = await connect(http, r)
            await ws2.send_json({"op": 6, "d": {"token": r.seeded.token,
                                                "session_id": session_id, "seq": 2}})
            replayed = [await recv(ws2) for _ in range(3)]
            assert [e["d"]["id"] for e in replayed] == ids
            assert [e["s"] for e in replayed] == [3, 4, 5]
            resumed = await recv(ws2)
            assert resumed["t"] == "RESUMED"
            async with post(http, r, r.other_token, "live") as resp:
                live_id = (await resp.json())["id"]
            live = await recv(ws2)
            assert live["d"]["id"] == live_id and live["s"] == 7
            # An unknown session: op 9, d=false.
            ws3 = await connect(http, r)
            await ws3.send_json({"op": 6, "d": {"token": r.seeded.token,
                                                "session_id": "nope", "seq": 1}})
            assert await recv(ws3) == {"op": 9, "d": False, "s": None, "t": None}
            await ws2.close()
            await ws3.close()

    run(main)


def test_session_ends_after_normal_close(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_gateway(tmp_path, GatewayConfig()) as r, \
                aiohttp.ClientSession() as http:
            ws, ready = await identified(http, r)
            await ws.close(code=1000)
            ws2 = await connect(http, r)
            await ws2.send_json({"op": 6, "d": {"token": r.seeded.token,
                                                "session_id": ready["d"]["session_id"],
                                                "seq": 2}})
            assert (await recv(ws2))["op"] == 9
            await ws2.close()

    run(main)


def test_unknown_opcode_closes_4001(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            ws = await connect(http, r)
            await ws.send_json({"op": 42, "d": None})
            assert await recv_close(ws) == 4001

    run(main)


def test_second_identify_closes_4005(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            ws, _ = await identified(http, r)
            await ws.send_json(identify(r.seeded.token))
            assert await recv_close(ws) == 4005

    run(main)


def test_member_without_view_channel_gets_no_message(tmp_path: Path) -> None:
    """A member whose roles deny VIEW_CHANNEL is not sent the channel's messages."""
    from gateway.seed import add_member, create_user
    from storage.model import Role

    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            storage = r.gateway.storage
            await storage.put_role(Role(r.seeded.guild_id, r.seeded.guild_id, "@everyone",
                                        permissions=1 << 11))  # SEND_MESSAGES only
            _, blind_token = await create_user(storage, r.ids, "blind")
            blind_id = await storage.user_id_for_token(blind_token)
            await add_member(storage, r.seeded.guild_id, blind_id)
            owner, _ = await identified(http, r)  # the owner sees everything
            blind, _ = await identified(http, r, blind_token)
            async with post(http, r, r.other_token, "secret") as resp:
                assert resp.status == 403  # no VIEW_CHANNEL: cannot post either
            async with post(http, r, r.seeded.token, "from the owner") as resp:
                assert resp.status == 200
            assert (await recv(owner))["d"]["content"] == "from the owner"
            await blind.send_json({"op": 1, "d": 2})
            assert (await recv(blind))["op"] == 11
            await owner.close()
            await blind.close()

    run(main)


def test_zlib_stream_connection(tmp_path: Path) -> None:
    import zlib

    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            ws = await http.ws_connect(
                f"{r.gateway.gateway_url}/?v=10&encoding=json&compress=zlib-stream")
            inflate = zlib.decompressobj()

            async def zrecv() -> dict[str, Any]:
                msg = await ws.receive(5)
                assert msg.type is aiohttp.WSMsgType.BINARY
                assert msg.data.endswith(b"\x00\x00\xff\xff")
                return json.loads(inflate.decompress(msg.data))

            assert (await zrecv())["op"] == 10
            await ws.send_json(identify(r.seeded.token))
            assert (await zrecv())["t"] == "READY"
            assert (await zrecv())["t"] == "GUILD_CREATE"
            await ws.close()

    run(main)


def test_session_expires_after_the_resume_window(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_gateway(tmp_path, resume_window_s=0.2) as r, \
                aiohttp.ClientSession() as http:
            ws, ready = await identified(http, r)
            await ws.close(code=4000)
            await asyncio.sleep(0.4)
            assert ready["d"]["session_id"] not in r.gateway.ctx.sessions
            ws2 = await connect(http, r)
            await ws2.send_json({"op": 6, "d": {"token": r.seeded.token,
                                                "session_id": ready["d"]["session_id"],
                                                "seq": 2}})
            assert (await recv(ws2))["op"] == 9
            await ws2.close()

    run(main)
