"""Fan-out through each node's fan-out point (gateway/fanout.py): one ``NodeFanout`` per
node, across the data plane too; passive sessions (op 14) over real sockets."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from actors import UvloopSystemBase
from actors.address import Address
from actors.wire import envelope, open_envelope, pack, unpack
from chat.permissions import VIEW_CHANNEL
from cluster.data_plane import DataPlane
from gateway.context import GatewayContext, bind
from gateway.fanout import FANOUT_ID, NodeFanout, fanout_address, payload_for
from gateway.guild import GuildActor, _Sub
from gateway.messages import Fanout
from gateway.protocol import GatewayConfig, Intents, PreparedDispatch, SendFrame
from observability import configure_tracing
from storage.snowflake import SnowflakeGenerator
from tests.gateway.harness import run, running_gateway
from tests.gateway.scripted_client import ScriptedClient
from tests.gateway.test_events import next_event, quiet, session
from tests.gateway.test_gateway_socket import identified, post, recv, recv_close
from tests.gateway.test_rest import call

SECRET = b"fanout-test-secret"
CONTENT = int(Intents.GUILDS | Intents.GUILD_MESSAGES | Intents.MESSAGE_CONTENT)
NO_CONTENT = int(Intents.GUILDS | Intents.GUILD_MESSAGES)
TYPING = CONTENT | int(Intents.GUILD_MESSAGE_TYPING)


async def open_guild(ws: aiohttp.ClientWebSocketResponse, guild_id: int | str) -> None:
    """What a user client sends when its user opens a guild (op 14); returns once the
    server has read it (a heartbeat sent after it is ACKed; nothing else arrives)."""
    await ws.send_json({"op": 14, "d": {"guild_id": str(guild_id), "typing": True,
                                        "activities": True, "threads": False,
                                        "channels": {}}})
    await ws.send_json({"op": 1, "d": None})
    ack = await recv(ws)
    assert ack["op"] == 11, ack


# -- passive sessions, over real sockets --------------------------------------------------


def test_a_user_session_is_passive_until_it_opens_the_guild(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            bot = await session(http, r, r.seeded.token, TYPING)  # a bot: active
            alice = await session(http, r, r.other_token, TYPING)  # a user: passive
            for ws in (bot, alice):
                assert (await recv(ws))["t"] == "GUILD_CREATE"
            await asyncio.sleep(0.05)  # both subscribed to the guild

            async with post(http, r, r.seeded.token, "before") as resp:
                assert resp.status == 200
            first = await next_event(bot, "MESSAGE_CREATE")
            assert first["content"] == "before"
            async with http.post(f"{r.gateway.rest_url}/channels/{r.seeded.channel_id}/typing",
                                 headers={"Authorization": f"Bot {r.seeded.token}"}) as resp:
                assert resp.status == 204
            await next_event(bot, "TYPING_START")
            # Guild events still reach the passive session.
            status, channel, _ = await call(http, r, "POST",
                                            f"/guilds/{r.seeded.guild_id}/channels",
                                            r.seeded.token, json={"name": "news"})
            assert status == 201, channel
            created = await recv(alice)
            assert created["t"] == "CHANNEL_CREATE" and created["s"] == 3, created
            assert created["d"]["id"] == channel["id"]
            await quiet(alice, "MESSAGE_CREATE", "TYPING_START")

            await open_guild(alice, r.seeded.guild_id)
            async with post(http, r, r.seeded.token, "after") as resp:
                assert resp.status == 200
            event = await recv(alice)
            # the next number after CHANNEL_CREATE: nothing was sent to her in between
            assert event["t"] == "MESSAGE_CREATE" and event["s"] == 4, event
            assert event["d"]["content"] == "after"
            # Opening it again changes nothing; a guild she is not in is ignored.
            await open_guild(alice, r.seeded.guild_id)
            await open_guild(alice, 12345)
            async with post(http, r, r.seeded.token, "again") as resp:
                assert resp.status == 200
            again = await recv(alice)
            assert again["s"] == 5 and again["d"]["content"] == "again"
            await bot.close()
            await alice.close()

    run(main)


def test_an_opened_guild_stays_open_across_resume(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            alice, ready = await identified(http, r, r.other_token)
            await open_guild(alice, r.seeded.guild_id)
            await alice.close(code=4000)  # resumable: the session records what it misses
            await asyncio.sleep(0.05)
            async with post(http, r, r.seeded.token, "while away") as resp:
                assert resp.status == 200
            await asyncio.sleep(0.05)
            ws = await http.ws_connect(f"{r.gateway.gateway_url}/?v=10&encoding=json",
                                       autoclose=False)
            assert (await recv(ws))["op"] == 10
            await ws.send_json({"op": 6, "d": {"token": r.other_token, "seq": 2,
                                               "session_id": ready["d"]["session_id"]}})
            missed = await recv(ws)
            assert missed["t"] == "MESSAGE_CREATE" and missed["s"] == 3
            assert missed["d"]["content"] == "while away"
            assert (await recv(ws))["t"] == "RESUMED"
            async with post(http, r, r.seeded.token, "live") as resp:
                assert resp.status == 200
            live = await recv(ws)
            assert live["s"] == 5 and live["d"]["content"] == "live"  # RESUMED was 4
            await ws.close()

    run(main)


def test_op_14_with_a_bad_guild_id_closes_4001(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            ws, _ = await identified(http, r, r.other_token)
            await ws.send_json({"op": 14, "d": {"guild_id": "not-a-snowflake"}})
            assert await recv_close(ws) == 4001
            ws = await session(http, r, r.other_token, CONTENT)
            await ws.send_json({"op": 14, "d": None})
            assert await recv_close(ws) == 4001

    run(main)


# -- the per-recipient path, sans I/O --------------------------------------------------------


@pytest.mark.parametrize("url", ["/?v=10&encoding=json", "/?v=10&encoding=msgpack",
                                 "/?v=10&encoding=json&compress=zlib-stream"])
def test_dispatch_frame_is_dispatch_without_the_effect_list(url: str) -> None:
    """What a fan-out recipient's socket gets is what ``dispatch`` would have sent."""
    fast, slow = ScriptedClient(url), ScriptedClient(url)
    fast.ready()
    slow.ready()
    for i in range(3):
        dispatch = PreparedDispatch("MESSAGE_CREATE", {"id": str(i), "content": "x" * i})
        [frame] = slow.conn.dispatch(dispatch)
        data = fast.conn.dispatch_frame(dispatch)
        assert data == frame.data and fast.conn.text_frames is frame.text
        assert fast.payloads([SendFrame(data, frame.text)])[0]["s"] == 3 + i
    assert fast.conn.log.seq == slow.conn.log.seq == 5
    # After a resumable close it is only recorded (for the RESUME); then nothing is sent.
    fast.conn.connection_lost(None)
    assert fast.conn.dispatch_frame(PreparedDispatch("TYPING_START", {})) is None
    assert fast.conn.log.seq == 6


# -- across nodes: NodeFanout on the data plane --------------------------------------------


def test_node_fanout_envelope_round_trip() -> None:
    data = {"id": "1", "content": "héllo", "author": {"id": "4"}}
    dispatch = PreparedDispatch("MESSAGE_CREATE", data)
    message = NodeFanout(payload_for(dispatch, False), [5, 6], None, [], None)
    _to, _sender, got, _trace = open_envelope(unpack(pack(
        envelope(fanout_address("n2"), Address("n1", 9), message))))
    assert got.to == [5, 6] and got.payload[0] == "MESSAGE_CREATE"
    again = PreparedDispatch.from_json(*got.payload)
    from gateway.protocol.codec import Encoding

    for encoding in Encoding:  # byte for byte what the sending node would have framed
        assert again.frame(7, encoding) == dispatch.frame(7, encoding)
    assert again.data == data
    assert payload_for(dispatch, True) is dispatch  # within a node: the object itself


@contextlib.asynccontextmanager
async def far_node(here: UvloopSystemBase) -> AsyncIterator[UvloopSystemBase]:
    """A second node ``far`` (its own base and data plane) linked to ``here`` over
    loopback TCP, as another node process would be; closed after."""
    plane = DataPlane(here, SECRET)
    other = UvloopSystemBase(loop=asyncio.get_running_loop(), node="far")
    far_plane = DataPlane(other, SECRET)
    peers = {here.node: await plane.start(), "far": await far_plane.start()}
    plane.set_peers(peers)
    far_plane.set_peers(peers)
    try:
        yield other
    finally:
        await far_plane.close()
        await plane.close()
        other.shutdown_in_loop()


def test_node_fanout_from_another_node_reaches_local_sockets(tmp_path: Path) -> None:
    """A second node (its own base and data plane, over loopback TCP) sends the gateway
    node's fan-out point one NodeFanout for two sessions: the full payload to one, the
    redacted one to the other, each numbered in its session."""
    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            here = r.gateway.base
            async with far_node(here) as other:
                full, ready_full = await identified(http, r)
                ws_nc = await session(http, r, r.seeded.token, NO_CONTENT)
                assert (await recv(ws_nc))["t"] == "GUILD_CREATE"
                await asyncio.sleep(0.05)
                sessions = r.gateway.ctx.sessions
                sid_full = sessions[ready_full["d"]["session_id"]].id
                sid_nc = next(a.id for s, a in sessions.items()
                              if s != ready_full["d"]["session_id"])
                data = {"id": "77", "channel_id": str(r.seeded.channel_id),
                        "content": "from afar", "author": {"id": "4"}}
                redacted = dict(data, content="")
                other.tell_from_loop(fanout_address(here.node), NodeFanout(
                    payload_for(PreparedDispatch("MESSAGE_CREATE", data), False), [sid_full],
                    payload_for(PreparedDispatch("MESSAGE_CREATE", redacted), False),
                    [sid_nc]))
                got = await recv(full)
                assert got == {"t": "MESSAGE_CREATE", "s": 3, "op": 0, "d": data}
                got = await recv(ws_nc)
                assert got == {"t": "MESSAGE_CREATE", "s": 3, "op": 0, "d": redacted}
                await full.close()
                await ws_nc.close()

    run(main)


# -- the guild's side: one NodeFanout per node ---------------------------------------------


class _Capture:
    """A data-plane router that keeps what leaves the process."""

    def __init__(self) -> None:
        self.sent: list[tuple[Address, Any]] = []

    def __call__(self, to: Address, message: Any, sender: Any) -> None:
        self.sent.append((to, message))


class _Guild(GuildActor):
    def receiveMessage(self, msg: Any, sender: Any) -> None:
        if isinstance(msg, dict) and "subs" in msg:  # the test's set-up, no storage
            self._stash = None
            self.subs = msg["subs"]
        else:
            super().receiveMessage(msg, sender)


@pytest.mark.parametrize("traced", [False, True])
def test_guild_sends_one_node_fanout_per_node(traced: bool,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    if traced:  # a trace is carried on only where spans can be kept (an exporter)
        configure_tracing("greenroom-test", exporter=InMemorySpanExporter())

    async def main() -> None:
        base = UvloopSystemBase(loop=asyncio.get_running_loop(), node="here")
        capture = _Capture()
        base.router = capture
        seen: list[NodeFanout] = []

        class Point:  # this node's fan-out point, recording instead of delivering
            def receiveMessage(self, msg: Any, sender: Any) -> None:
                seen.append(msg)

        base.create_actor(None, Point, None, None, fixed_id=FANOUT_ID)
        ctx = GatewayContext(None, SnowflakeGenerator(), GatewayConfig())  # type: ignore[arg-type]
        guild = base.create_actor(None, bind(_Guild, ctx), None, None)
        author = 900
        subs = {
            Address("here", 101): _Sub(1, CONTENT, VIEW_CHANNEL, 0),
            Address("here", 102): _Sub(2, NO_CONTENT, VIEW_CHANNEL, 0),
            Address("here", 103): _Sub(3, CONTENT, 0, 0),  # no VIEW_CHANNEL
            Address("here", 104): _Sub(4, CONTENT, VIEW_CHANNEL, 0, active=False),
            Address("n2", 201): _Sub(5, CONTENT, VIEW_CHANNEL, 0),
            Address("n2", 202): _Sub(author, NO_CONTENT, VIEW_CHANNEL, 0),  # the author
            Address("n2", 203): _Sub(7, NO_CONTENT, VIEW_CHANNEL, 0),
            Address("n3", 301): _Sub(8, int(Intents.GUILDS), VIEW_CHANNEL, 0),  # no intent
        }
        base.tell_from_loop(guild, {"subs": subs})
        message = {"id": "1", "content": "secret", "author": {"id": str(author)},
                   "mentions": []}
        trace = None
        if traced:
            trace = {"traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01"}
        for _ in range(2):  # the second one from the cached plan
            base.tell_from_loop(guild, Fanout(2, PreparedDispatch("MESSAGE_CREATE", message),
                                              message, trace))
        await asyncio.sleep(0.05)

        assert len(seen) == 2 and all(list(m.to) == [101] for m in seen)
        assert all(list(m.redacted_to) == [102] for m in seen)
        local = seen[0]
        assert local.payload.__class__ is PreparedDispatch  # no encoding within the node
        assert local.redacted.data["content"] == ""
        assert [to for to, _ in capture.sent] == [Address("n2", FANOUT_ID)] * 2
        remote = capture.sent[0][1]
        assert list(remote.to) == [201, 202] and list(remote.redacted_to) == [203]
        event, d_json = remote.payload
        assert event == "MESSAGE_CREATE" and b'"secret"' in d_json
        assert b'"secret"' not in remote.redacted[1]
        assert (remote.trace is not None) == traced
        base.shutdown_in_loop()

    try:
        run(main)
    finally:
        if traced:  # tracing off again, as in production without OTEL_*
            monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
            configure_tracing("greenroom-test")
            monkeypatch.delenv("OTEL_SDK_DISABLED")
