"""The session host killed under load (issue 10), over real sockets: its sessions die
with it (its children) and its next incarnation makes each again in place, so clients
stay connected with the same session: no op 9, no close, every message acknowledged
after the kill delivered once, in the channel's order, with no gap in ``s``; a session
kept for a RESUME (no socket) survives too.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from actors.address import Address
from gateway.messages import HomesGone
from gateway.protocol import DispatchLog, Encoding, PreparedDispatch
from gateway.replica import Replica
from gateway.services import SESSION_HOST_ID
from gateway.session import SessionActor
from tests.gateway.harness import Running, run, running_gateway
from tests.gateway.libraries import (
    discordpy_client,
    discordpy_running,
    on,
    point_discordpy_at,
    post_as_alice,
)
from tests.gateway.test_fanout import open_guild
from tests.gateway.test_gateway_socket import connect, identified, recv
from tests.gateway.test_node_services_supervised import restarted
from tests.gateway.test_resume_replica import resumed, state
from tests.gateway.test_services_crash_delivery import Load, post


class Client:
    """A client past READY (s 1) and its GUILD_CREATE (s 2): every event it gets
    after them (op, t, s, d), and how its socket ended."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, ready: dict[str, Any]) -> None:
        self.ws = ws
        self.session_id: str = ready["d"]["session_id"]
        self.events: list[dict[str, Any]] = []
        self.closed: Any = None
        self.task = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        while True:
            msg = await self.ws.receive()
            if msg.type is not aiohttp.WSMsgType.TEXT:
                self.closed = (msg.type, msg.data)
                return
            self.events.append(json.loads(msg.data))

    @property
    def message_ids(self) -> list[str]:
        return [e["d"]["id"] for e in self.events if e.get("t") == "MESSAGE_CREATE"]

    @property
    def seq(self) -> int:
        return max(e["s"] for e in self.events if e["op"] == 0)

    async def wait_for(self, ids: set[str], timeout: float = 15.0) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while not ids <= set(self.message_ids) and self.closed is None \
                and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.02)

    def assert_kept_its_session(self, acked: list[str]) -> None:
        """Never told to re-identify nor closed; got every acknowledged post once, in
        the channel's order (snowflake order), numbered without a gap."""
        assert self.closed is None, self.closed
        ops = [e["op"] for e in self.events]
        assert 9 not in ops, "op 9 (invalid session) sent"
        assert "READY" not in [e["t"] for e in self.events]  # no second IDENTIFY
        got = self.message_ids
        missing = set(acked) - set(got)
        assert not missing, f"{len(missing)} of {len(acked)} acknowledged posts never came"
        assert len(got) == len(set(got)), "a post was delivered twice"
        assert got == sorted(got, key=int), "delivered out of the channel's order"
        seqs = [e["s"] for e in self.events if e["op"] == 0]
        assert seqs == list(range(3, 3 + len(seqs))), "a gap or repeat in s"


async def kill_session_host(r: Running) -> None:
    base = r.gateway.base
    before = base.cells[SESSION_HOST_ID]
    base.kill_brutally(Address(base.node, SESSION_HOST_ID))
    assert await restarted(r, SESSION_HOST_ID, before) is not None


async def resume(http: aiohttp.ClientSession, r: Running, session_id: str, seq: int
                 ) -> tuple[aiohttp.ClientWebSocketResponse, list[dict[str, Any]]]:
    """RESUME ``session_id`` on a new socket: the events up to RESUMED (included)."""
    ws = await connect(http, r)
    await ws.send_json({"op": 6, "d": {"token": r.seeded.token, "session_id": session_id,
                                       "seq": seq}})
    replayed = []
    while True:
        event = await recv(ws)
        assert event["op"] == 0, event  # not op 9
        replayed.append(event)
        if event["t"] == "RESUMED":
            return ws, replayed


def test_session_host_killed_under_load_clients_keep_their_sessions(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            bots = [Client(*await identified(http, r)) for _ in range(2)]
            user_ws, user_ready = await identified(http, r, r.other_token)
            await open_guild(user_ws, r.seeded.guild_id)  # a user: message events once opened
            clients = [*bots, Client(user_ws, user_ready)]
            load = Load(http, r)
            await load.until(10)
            await kill_session_host(r)
            await load.until(len(load.acked) + 40)  # through the rebuild and catch-up
            await load.stop()
            acked = list(load.acked)
            for client in clients:
                await client.wait_for(set(acked))
                client.assert_kept_its_session(acked)

            # a client that leaves now RESUMEs its (rebuilt) session on a new socket
            leaving = clients[0]
            seq = leaving.seq
            await leaving.ws.close(code=4000)
            await leaving.task
            message_id = await post(http, r, "while away")
            assert message_id[1] is not None
            ws, replayed = await resume(http, r, leaving.session_id, seq)
            assert [e["s"] for e in replayed] == [seq + 1, seq + 2]
            assert replayed[0]["d"]["id"] == message_id[1]
            await ws.close()
            for client in clients[1:]:
                await client.ws.close()

    run(main, timeout=90)


def test_session_host_killed_a_detached_session_can_still_resume(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            ws, ready = await identified(http, r)
            await ws.close(code=4000)  # resumable: the session waits for a RESUME
            before = [(await post(http, r, f"before {i}"))[1] for i in range(3)]
            await kill_session_host(r)
            after = [(await post(http, r, f"after {i}"))[1] for i in range(3)]
            assert None not in before + after
            await asyncio.sleep(0.5)  # its catch-up read is done (during it, a RESUME
            # would get what it finds live, after RESUMED: still once and in order)
            ws, replayed = await resume(http, r, ready["d"]["session_id"], 2)
            # what it recorded before the kill, and what was posted since (read back
            # from storage by the rebuilt session), in order, numbered from 3
            assert [e["d"]["id"] for e in replayed[:-1]] == before + after
            assert [e["s"] for e in replayed] == list(range(3, 3 + len(replayed)))
            live = (await post(http, r, "live"))[1]
            event = await recv(ws)
            assert event["d"]["id"] == live and event["s"] == 3 + len(replayed)
            await ws.close()

    run(main, timeout=60)


# -- the catch-up's order (gateway/session.py), as a rebuilt session uses it -------------


def detached_session() -> SessionActor:
    """A session with a log and no socket (its deliveries are recorded), around a
    catch-up's read; no runtime: its tail's timer is fired by hand."""
    session = SessionActor()
    session.log = DispatchLog(Encoding.JSON)
    session._delivered_ids = set()
    session.start_timer = lambda *_: 0  # type: ignore[method-assign]
    return session


def message(message_id: int, channel_id: int = 1) -> dict[str, Any]:
    return {"id": str(message_id), "channel_id": str(channel_id), "content": "x"}


def live(session: SessionActor, message_id: int, channel_id: int = 1) -> None:
    session._deliver_noting(PreparedDispatch("MESSAGE_CREATE", message(message_id, channel_id)))


def recorded(session: SessionActor) -> list[int]:
    assert session.log is not None
    return [int(d.data["id"]) for _, d in session.log.after(0)]


def test_catch_up_read_past_the_live_messages_waits_for_the_channel() -> None:
    """Storage may hold a message durable before an older one is (batches complete out
    of order); the channel fans them out in order. What the read finds past the live
    messages is delivered only once the channel's next live message says where it goes."""
    session = detached_session()
    session._held = []
    session._deliver_read([message(1), message(3)])  # 2 not durable yet at the read
    session._release()
    assert recorded(session) == []  # nothing live yet in the channel: both wait
    live(session, 2)  # before it: 1; 3 comes live after it
    live(session, 3)
    assert recorded(session) == [1, 2, 3]


def test_catch_up_read_delivers_before_the_held_live_messages_and_drops_after() -> None:
    session = detached_session()
    session._held = [(PreparedDispatch("MESSAGE_CREATE", message(4)), None)]
    session._deliver_read([message(2), message(3), message(4), message(5)])
    session._release()
    live(session, 5)
    assert recorded(session) == [2, 3, 4, 5]


def test_catch_up_read_with_no_live_message_after_it_is_delivered_at_the_timer() -> None:
    session = detached_session()
    session._held = []
    session._deliver_read([message(7, channel_id=9)])
    session._release()
    live(session, 8)  # another channel: no word on channel 9
    session._flush_tail()
    assert recorded(session) == [8, 7]
    assert session._tail is None


# -- a real library across the crash ------------------------------------------------------


def test_a_discordpy_bot_receives_across_a_session_host_crash(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """discord.py sees nothing of it: one READY, no disconnect, no RESUME, the same
    session, and every message posted around the crash in order."""
    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            point_discordpy_at(monkeypatch, r.gateway)
            client = discordpy_client()
            received: list[int] = []
            lifecycle: list[str] = []

            async def on_message(message: Any) -> None:
                if message.author.id != client.user.id:
                    received.append(message.id)

            on(client, "message", on_message)
            for event in ("ready", "disconnect", "resumed"):
                on(client, event, noting(lifecycle, event))
            async with discordpy_running(client, r.seeded.token, reconnect=True):
                session_id = client.ws.session_id
                acked = []
                for i in range(30):
                    if i == 10:
                        await kill_session_host(r)
                    posted = await post_as_alice(http, r, {"content": f"post {i}"})
                    acked.append(int(posted["id"]))
                for _ in range(500):
                    if set(acked) <= set(received):
                        break
                    await asyncio.sleep(0.02)
                assert received == acked
                assert client.ws.session_id == session_id
                assert lifecycle == ["ready"]

    run(main, timeout=60)


def noting(lifecycle: list[str], event: str) -> Any:
    """A discord.py callback for ``event`` (no arguments) that notes it."""
    async def noted() -> None:
        lifecycle.append(event)
    return noted


def test_session_host_killed_a_promoted_copy_keeps_its_token_check_and_seq(
        tmp_path: Path) -> None:
    """A session made from a standby copy checks a RESUME's token against the copy's
    digest (it never had the keyed one): rebuilt, it still does, and numbers on."""
    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            ctx = r.gateway.ctx
            ctx.replicas["gone.abc"] = Replica(
                state("gone.abc", 7, [], token=r.seeded.token, user_id=r.seeded.user_id,
                      guild_ids=[r.seeded.guild_id]), Address("gone", 77), time.time())
            r.gateway.base.tell_from_loop(r.gateway._replica_store,
                                          HomesGone(frozenset({"gone"})))
            for _ in range(200):
                if "gone.abc" in ctx.sessions:
                    break
                await asyncio.sleep(0.01)
            promoted = ctx.sessions["gone.abc"]
            await kill_session_host(r)
            for _ in range(200):
                if ctx.sessions.get("gone.abc") not in (None, promoted):
                    break
                await asyncio.sleep(0.01)
            assert ctx.sessions.get("gone.abc") not in (None, promoted)  # made again
            posted = (await post(http, r, "after the kill"))[1]
            assert posted is not None
            seqs, ids = await resumed(http, r, "gone.abc", 7, {posted})
            assert ids == [posted] and seqs == list(range(8, 8 + len(seqs)))
    run(main, timeout=60)
