"""The standby copy of a session (gateway/replica.py): its ring, the feed's batching, and
a promotion on a real gateway (sockets, storage): the promoted session is RESUMEd,
catches up from storage on the messages its copy never got, and delivers each once."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import aiohttp

from actors.address import Address
from gateway.messages import HomesGone, ReplicaClose, ReplicaOpen, Replicate, SessionState
from gateway.protocol import Encoding, PreparedDispatch
from gateway.replica import Replica, ReplicaFeed, standby_of, standby_token_key
from tests.gateway.harness import run, running_gateway

INTENTS = 1 | 512 | 1 << 15  # GUILDS, GUILD_MESSAGES, MESSAGE_CONTENT


def state(session_id: str, seq: int, entries: list[Any], *, token: str = "t", user_id: int = 1,
          guild_ids: list[int] | None = None) -> SessionState:
    return SessionState(session_id, standby_token_key(token), user_id, INTENTS,
                        guild_ids or [], None, "online", [], 50, "json", seq, entries)


def test_a_ring_keeps_the_last_entries_contiguous_and_restarts_after_a_gap():
    replica = Replica(state("a.1", 2, [["READY", b"r"], ["GUILD_CREATE", b"g"]]),
                      Address("a", 5), 0.0)
    for seq in range(3, 13):
        replica.add(seq, ["MESSAGE_CREATE", b"%d" % seq], max_entries=4)
    replica.add(12, ["MESSAGE_CREATE", b"dup"], max_entries=4)  # already held: ignored
    snapshot = replica.snapshot(4)
    assert snapshot.seq == 12
    assert [e[1] for e in snapshot.entries] == [b"9", b"10", b"11", b"12"]
    replica.add(20, ["MESSAGE_CREATE", b"20"], max_entries=4)  # 13..19 never came
    assert replica.snapshot(4).entries == [["MESSAGE_CREATE", b"20"]]
    assert replica.seq == 20


class FakeBase:
    """What the feed needs of a system base: its node, loop, and a tell (recorded)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.node = "home"
        self.loop = loop
        self.sent: list[tuple[Address, Any]] = []

    def tell_from_loop(self, to: Address, msg: Any) -> None:
        self.sent.append((to, msg))


class View:
    def __init__(self, nodes: set[str]) -> None:
        from cluster.placement import Placement

        self.placement = Placement(nodes)


class FakeSession:
    def __init__(self, session_id: str) -> None:
        self.session_id = session_id
        self.myAddress = Address("home", hash(session_id) & 0xFFFF)
        self._standby: str | None = None
        #: the standby each ``sync_lane`` call saw (the fan-out's lane, gateway/fanout.py)
        self.lane_synced: list[str | None] = []

    def sync_lane(self) -> None:
        self.lane_synced.append(self._standby)


def test_the_feed_sends_one_batch_per_standby_per_loop_turn_with_each_dispatch_once():
    async def main() -> None:
        base = FakeBase(asyncio.get_running_loop())
        feed = ReplicaFeed(base, View({"home", "b", "c"}))
        sessions = [FakeSession(f"home.{i}") for i in range(40)]
        for s in sessions:
            feed.open(s, state(s.session_id, 0, []))
        dispatch = PreparedDispatch("MESSAGE_CREATE", {"id": "1"})
        for s in sessions:  # one fan-out to every local session
            feed.record(s._standby, s.session_id, dispatch, Encoding.JSON, 1)
        feed.close(sessions[0], sessions[0].session_id)
        assert base.sent == []  # nothing before the loop turn ends
        await asyncio.sleep(0)
        by_node = {to.node: msg for to, msg in base.sent}
        assert set(by_node) == {s._standby for s in sessions[1:]} | {"b", "c"} - {None}
        assert len(base.sent) == len(by_node)  # one Replicate per standby node
        for node, msg in by_node.items():
            assert isinstance(msg, Replicate) and msg.node == "home"
            opens = [op for op in msg.ops if isinstance(op, ReplicaOpen)]
            [entry] = [op for op in msg.ops if isinstance(op, list)]  # the bytes once
            assert entry[:3] == ["MESSAGE_CREATE", dispatch.json_d() and
                                 dispatch.encoded(Encoding.JSON), "json"]
            recipients = entry[3][0::2]
            assert sorted(recipients) == sorted(o.state.session_id for o in opens)
            assert all(standby_of(sid, {"home", "b", "c"}, "home") == node
                       for sid in recipients)
            # the open comes before the dispatch; the close after it
            assert msg.ops.index(entry) > max(msg.ops.index(o) for o in opens)
        closes = [op for _, msg in base.sent for op in msg.ops if isinstance(op, ReplicaClose)]
        assert [c.session_id for c in closes] == [sessions[0].session_id]
        assert sessions[0]._standby is None

    run(main)


def test_a_lone_node_replicates_nothing_until_another_joins():
    async def main() -> None:
        base = FakeBase(asyncio.get_running_loop())
        feed = ReplicaFeed(base, View({"home"}))
        session = FakeSession("home.1")
        feed.open(session, state("home.1", 0, []))
        await asyncio.sleep(0)
        assert session._standby is None and base.sent == []
        # a node joins: the session gets a standby and its copy is opened there
        session.replicate_open = lambda: feed.open(session, state("home.1", 0, []))
        feed.view = View({"home", "b"})
        feed.membership_changed(None)
        await asyncio.sleep(0)
        assert session._standby == "b"
        # and the fan-out stops writing to it in place: each dispatch feeds the standby
        assert session.lane_synced == ["b"]
        [(to, msg)] = base.sent
        assert to.node == "b" and isinstance(msg.ops[0], ReplicaOpen)

    run(main)


async def post(http: aiohttp.ClientSession, r: Any, content: str) -> str:
    async with http.post(f"{r.gateway.rest_url}/channels/{r.seeded.channel_id}/messages",
                         json={"content": content},
                         headers={"Authorization": f"Bot {r.seeded.token}"}) as response:
        assert response.status == 200, await response.text()
        return (await response.json())["id"]


async def resumed(http: aiohttp.ClientSession, r: Any, session_id: str, seq: int,
                  wanted: set[str]) -> tuple[list[int], list[str]]:
    """RESUME ``session_id`` at ``seq`` on a new socket; read until RESUMED and every
    message in ``wanted``: (every seq received, every MESSAGE_CREATE id in order)."""
    seqs: list[int] = []
    ids: list[str] = []
    async with http.ws_connect(f"{r.gateway.gateway_url}/?v=10&encoding=json") as ws:
        assert json.loads((await ws.receive(timeout=5)).data)["op"] == 10
        await ws.send_str(json.dumps({"op": 6, "d": {
            "token": r.seeded.token, "session_id": session_id, "seq": seq}}))
        got_resumed = False
        while not got_resumed or not wanted <= set(ids):
            payload = json.loads((await ws.receive(timeout=10)).data)
            assert payload["op"] == 0, f"RESUME refused: {payload}"
            seqs.append(payload["s"])
            if payload["t"] == "RESUMED":
                got_resumed = True
            elif payload["t"] == "MESSAGE_CREATE":
                ids.append(payload["d"]["id"])
        await ws.close(code=4000)  # resumable: the session waits for the next RESUME
    return seqs, ids


def test_a_promoted_copy_resumes_and_catches_up_from_storage_once(tmp_path: Path):
    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            gateway, seeded = r.gateway, r.seeded
            ctx = gateway.ctx
            # Acknowledged while the copy's home was dying: only storage has them.
            missed = [await post(http, r, f"missed {i}") for i in range(3)]
            dead = Address("gone", 77)
            ctx.replicas["gone.abc"] = Replica(
                state("gone.abc", 7, [], token=seeded.token, user_id=seeded.user_id,
                      guild_ids=[seeded.guild_id]), dead, time.time())
            # a copy that lags its client (the home's last turn never replicated)
            ctx.replicas["gone.def"] = Replica(
                state("gone.def", 3, [], token=seeded.token, user_id=seeded.user_id),
                dead, time.time())
            gateway.base.tell_from_loop(gateway._replica_store,
                                        HomesGone(frozenset({"gone"})))
            for _ in range(200):
                if "gone.abc" in ctx.sessions and "gone.def" in ctx.sessions:
                    break
                await asyncio.sleep(0.01)
            assert not ctx.replicas  # promoted, and no longer kept as copies

            seqs, ids = await resumed(http, r, "gone.abc", 7, set(missed))
            assert seqs == list(range(8, 8 + len(seqs)))  # numbering goes on, no gap
            assert ids == missed  # each once, in order
            # accepted, not closed with 4007: numbering goes on from the client's seq
            assert await resumed(http, r, "gone.def", 5, set()) == ([6], [])
            later = await post(http, r, "after")  # live, to the promoted session: once
            seqs, ids = await resumed(http, r, "gone.abc", 11, {later})
            assert ids == [later] and seqs == [12, 13]  # RESUMED, then the message

            # a wrong token cannot take a promoted session
            async with http.ws_connect(f"{gateway.gateway_url}/?v=10&encoding=json") as ws:
                await ws.receive(timeout=5)
                await ws.send_str(json.dumps({"op": 6, "d": {
                    "token": seeded.token + "x", "session_id": "gone.abc", "seq": 7}}))
                assert json.loads((await ws.receive(timeout=5)).data)["op"] == 9

    run(main, timeout=60)
