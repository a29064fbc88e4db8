"""The fan-out point's loop over many recipients (gateway/fanout.py): each gets each
dispatch once, numbered in its session and in order; a paused client's is held in its
log; a socket write that fails costs no other recipient its frame. Real session actors
and links on a real loop with the socket replaced (this piece), then over real sockets."""

from __future__ import annotations

import asyncio
import json
import logging
import zlib
from pathlib import Path
from typing import Any

import aiohttp
import msgpack
import pytest
import uvloop
import zstandard
from websockets.frames import Opcode

import gateway.fanout
import gateway.server
from actors import Actor, Overloaded, UvloopSystemBase
from gateway.context import GatewayContext, bind
from gateway.fanout import NodeFanout, fanout_address, start_fanout_point
from gateway.messages import Cutover
from gateway.outbound import ws_frame_header
from gateway.protocol import Encoding, GatewayConfig, PreparedDispatch
from gateway.session import SessionActor
from storage.snowflake import SnowflakeGenerator
from tests.gateway.bench_fanout import _link, _Session, _SetupSession
from tests.gateway.harness import run, running_gateway
from tests.gateway.test_events import session
from tests.gateway.test_fanout import CONTENT
from tests.gateway.test_gateway_socket import identified, identify, recv
from tests.gateway.test_rest import call
from tests.gateway.test_ws_frame_header import parse_all

RECIPIENTS = 70
_TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


class _Transport:
    """A picows ``WSTransport`` that keeps its frames (or fails every write): those it
    sends, and those written together to its ``underlying_transport``, read back by the
    websockets library's parser. ``writes``: the frames in each write."""

    is_disconnected = False
    is_close_frame_sent = False

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.sent: list[bytes] = []
        self.writes: list[int] = []
        self.underlying_transport = self

    def send(self, msg_type: Any, data: bytes) -> None:
        self.write(ws_frame_header(msg_type, len(data)) + data)

    def write(self, data: bytes) -> None:
        if self.fail:
            raise RuntimeError("injected write failure")
        frames = parse_all(data)
        assert all(f.opcode in (Opcode.TEXT, Opcode.BINARY) and f.fin for f in frames)
        self.sent.extend(f.data for f in frames)
        self.writes.append(len(frames))


class _Probe(Actor):
    """Notes, when it handles a message, how many frames the transports hold so far."""

    seen: list[int] = []

    def receiveMessage(self, msg: Any, sender: Any) -> None:
        if isinstance(msg, list):
            _Probe.seen.append(sum(len(transport.sent) for transport in msg))


class _CutSession(_Session):
    """Notes how many frames its transport held when a Cutover reached it."""

    cut_at: list[int] = []

    def cutover(self, guild_id: int) -> None:
        _CutSession.cut_at.append(len(self.link.transport.sent))


async def _sessions(paused: int | None = None, failing: int | None = None,
                    compressed: int | None = None) -> tuple[
        UvloopSystemBase, GatewayContext, Any, list[int], list[tuple[Any, _Transport, int]]]:
    """A base on this loop with its fan-out point and RECIPIENTS READY sessions, the
    ``paused``-th above its high-water mark, the ``failing``-th's writes failing, the
    ``compressed``-th on zlib-stream: (base, context, fan-out point, session actor ids,
    each one's (link, transport, seq))."""
    base = UvloopSystemBase(loop=asyncio.get_running_loop())
    config = GatewayConfig()
    ctx = GatewayContext(None, SnowflakeGenerator(), config)  # type: ignore[arg-type]
    point = start_fanout_point(base, ctx)
    ids, out = [], []
    for n in range(RECIPIENTS):
        link = _link("zlib-stream" if n == compressed else None, config)
        transport = _Transport(fail=n == failing)
        link.transport = transport
        if n == paused:
            link._paused = True  # above the high-water mark: dispatches are held
        actor = base.create_actor(None, bind(_CutSession, ctx), None, None)
        base.tell_from_loop(actor, _SetupSession(link))
        ids.append(actor.id)
        out.append((link, transport, link.conn.log.seq))
    await asyncio.sleep(0.05)
    return base, ctx, point, ids, out


def _fan_out(dispatches: list[PreparedDispatch], paused: int | None = None,
             failing: int | None = None, together: bool = False,
             traced: int | None = None, last_to: int | None = None,
             cutover: bool = False) -> list[tuple[Any, _Transport, int]]:
    """Deliver ``dispatches`` (one NodeFanout each) to RECIPIENTS sessions through the
    fan-out point, one at a time or all at once (``together``: each behind the one before,
    a ``_Probe`` message after the first, and with ``cutover`` a Cutover for the last
    session), the ``traced``-th with a trace, the last to the last ``last_to`` sessions
    only; answers each session's (link, transport, seq before the first)."""
    async def main() -> list[tuple[Any, _Transport, int]]:
        base, ctx, point, ids, out = await _sessions(paused, failing)
        # the fan-out writes to these sessions in place (gateway/fanout.py, "Lanes"),
        # and calls the paused one's ``deliver_dispatch``
        assert len(ctx.lanes) == RECIPIENTS - (paused is not None)
        probe = base.create_actor(None, _Probe, None, None)
        _Probe.seen, _CutSession.cut_at = [], []
        for n, dispatch in enumerate(dispatches):
            trace = {"traceparent": _TRACEPARENT} if n == traced else None
            to = ids[-last_to:] if last_to and n == len(dispatches) - 1 else ids
            base.tell_from_loop(point, NodeFanout(dispatch, tuple(to), trace=trace))
            if not together:
                await asyncio.sleep(0.02)
            elif n == 0:
                base.tell_from_loop(probe, [transport for _, transport, _ in out])
                if cutover:
                    base.tell_from_loop(point, Cutover(1, ids[-1]))
        await asyncio.sleep(0.05)
        base.shutdown_in_loop()
        return out

    return uvloop.run(main())


def _dispatch(n: int) -> PreparedDispatch:
    return PreparedDispatch("MESSAGE_CREATE", {"id": str(n), "content": f"m{n}"})


def test_each_recipient_gets_each_dispatch_once_in_order() -> None:
    dispatches = [_dispatch(1), _dispatch(2)]
    for link, transport, before in _fan_out(dispatches):
        assert link.conn.log.seq == before + 2
        assert transport.sent == [d.frame(seq, Encoding.JSON)
                                  for seq, d in enumerate(dispatches, before + 1)]


def test_a_paused_client_is_held_and_the_others_are_written() -> None:
    held = 30
    recipients = _fan_out([_dispatch(1)], paused=held)
    for n, (link, transport, before) in enumerate(recipients):
        assert link.conn.log.seq == before + 1  # numbered and kept for the replay either way
        assert len(transport.sent) == (0 if n == held else 1), n
    link, _, before = recipients[held]
    assert link._unsent == before + 1  # written from the log once it drains


def test_a_failed_write_costs_no_other_recipient_its_frame(
        caplog: pytest.LogCaptureFixture) -> None:
    failing = 3
    with caplog.at_level(logging.ERROR, logger="greenroom.gateway.fanout"):
        recipients = _fan_out([_dispatch(1), _dispatch(2)], failing=failing)
    for n, (_, transport, _) in enumerate(recipients):
        assert len(transport.sent) == (0 if n == failing else 2), n
    failures = [r for r in caplog.records if r.getMessage() == "fanout.delivery_failed"]
    assert failures and failures[0].exc_info is not None
    assert failures[0].event_name == "MESSAGE_CREATE"


def test_a_big_fan_out_takes_turns_with_the_other_actors(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Past ``TURN_RECIPIENTS`` a fan-out goes on over several turns of the fan-out
    point, and an actor's message sent after it is handled in between (the loop's I/O
    too): nothing waits behind a whole 1,000-recipient loop. What comes behind it waits
    its turn: a Cutover reaches the last session after the first fan-out's frame, and a
    small fan-out (5 sessions, one turn's worth) comes after the big ones."""
    monkeypatch.setattr(gateway.fanout, "TURN_RECIPIENTS", 16)
    small = PreparedDispatch("MESSAGE_CREATE", {"id": "3", "content": "small"})
    dispatches = [_dispatch(1), _dispatch(2), small]
    recipients = _fan_out(dispatches, together=True, last_to=5, cutover=True)
    assert len(_Probe.seen) == 1 and 16 <= _Probe.seen[0] < RECIPIENTS
    assert _CutSession.cut_at == [1]
    for n, (link, transport, before) in enumerate(recipients):
        got = dispatches if n >= RECIPIENTS - 5 else dispatches[:2]
        assert link.conn.log.seq == before + len(got)
        assert transport.sent == [d.frame(seq, Encoding.JSON)
                                  for seq, d in enumerate(got, before + 1)]


def _fan_out_many(fanouts: list[Any], paused: int | None = None,
                  compressed: int | None = None, prepare: Any = None
                  ) -> list[tuple[Any, _Transport, int]]:
    """Hand the fan-out point each of ``fanouts`` at once (a function of the session
    ids giving a NodeFanout or a Cutover), each behind the one before, after
    ``prepare(base, ids)``; answers each session's (link, transport, seq before the
    first)."""
    async def main() -> list[tuple[Any, _Transport, int]]:
        base, _, point, ids, out = await _sessions(paused, compressed=compressed)
        if prepare is not None:
            prepare(base, ids)
        _CutSession.cut_at = []
        for make in fanouts:
            base.tell_from_loop(point, make(ids))
        await asyncio.sleep(0.1)
        base.shutdown_in_loop()
        return out

    return uvloop.run(main())


def _to_all(dispatch: PreparedDispatch) -> Any:
    return lambda ids: NodeFanout(dispatch, tuple(ids))


def test_fan_outs_behind_one_under_way_ride_with_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two fan-outs to the same sessions that arrive while a big one is in turns ride
    on it (gateway/fanout.py, "Riding"): from where it has got to, each session gets the
    three in one write; the sessions it had passed get the two others after it, in one
    write too. Every session reads the three in order, numbered one after the other."""
    monkeypatch.setattr(gateway.fanout, "TURN_RECIPIENTS", 16)
    dispatches = [_dispatch(1), _dispatch(2), _dispatch(3)]
    recipients = _fan_out_many([_to_all(d) for d in dispatches])
    for n, (link, transport, before) in enumerate(recipients):
        assert link.conn.log.seq == before + 3
        assert transport.sent == [d.frame(seq, Encoding.JSON)
                                  for seq, d in enumerate(dispatches, before + 1)]
        assert transport.writes == ([1, 2] if n < 16 else [3]), n


def test_riders_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """At most ``MAX_RIDERS`` fan-outs share one write; the next waits its turn."""
    monkeypatch.setattr(gateway.fanout, "TURN_RECIPIENTS", 16)
    monkeypatch.setattr(gateway.fanout, "MAX_RIDERS", 2)
    dispatches = [_dispatch(n) for n in range(1, 5)]
    for _, transport, before in _fan_out_many([_to_all(d) for d in dispatches]):
        assert transport.sent == [d.frame(seq, Encoding.JSON)
                                  for seq, d in enumerate(dispatches, before + 1)]
        assert max(transport.writes) == 2


def test_only_the_same_recipients_ride_and_never_past_a_cutover(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A fan-out to other sessions (as many) does not ride: it waits for the one under
    way, and what comes behind it waits for it. Nor does one behind a Cutover: the old
    session hears of the cutover after exactly the frames sent before it."""
    monkeypatch.setattr(gateway.fanout, "TURN_RECIPIENTS", 16)
    half = RECIPIENTS // 2
    first, second, third, fourth = (_dispatch(n) for n in range(1, 5))
    recipients = _fan_out_many([
        lambda ids: NodeFanout(first, tuple(ids[:half])),
        lambda ids: NodeFanout(second, tuple(ids[half:])),
        lambda ids: NodeFanout(third, tuple(ids[half:])),
        lambda ids: Cutover(1, ids[-1]), _to_all(fourth)])
    assert _CutSession.cut_at == [2]
    for n, (_, transport, before) in enumerate(recipients):
        got = [first, fourth] if n < half else [second, third, fourth]
        assert transport.sent == [d.frame(seq, Encoding.JSON)
                                  for seq, d in enumerate(got, before + 1)]
        # the third waited behind the second, and rode on it from its start
        assert transport.writes == ([1, 1] if n < half else [2, 1]), n


def test_a_held_session_and_redacted_recipients_ride_too(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Riding keeps each part's payload (the redacted one to its recipients) and each
    session's flow control: a paused session numbers every rider in its log, in order,
    and writes none of them."""
    monkeypatch.setattr(gateway.fanout, "TURN_RECIPIENTS", 16)
    held, hidden = 40, 25  # the last 25 sessions get the redacted payloads
    pairs = [(_dispatch(n), PreparedDispatch("MESSAGE_CREATE", {"id": str(n), "content": ""}))
             for n in (1, 2, 3)]

    def fanout(pair: tuple[PreparedDispatch, PreparedDispatch]) -> Any:
        return lambda ids: NodeFanout(pair[0], list(ids[:-hidden]), pair[1],
                                      list(ids[-hidden:]))

    recipients = _fan_out_many([fanout(pair) for pair in pairs], paused=held)
    for n, (link, transport, before) in enumerate(recipients):
        got = [pair[n >= RECIPIENTS - hidden] for pair in pairs]
        assert link.conn.log.seq == before + 3
        assert [d for _, d in link.conn.log.after(before)] == got, n
        if n == held:
            assert transport.sent == [] and link._unsent == before + 1
            continue
        assert transport.sent == [d.frame(seq, Encoding.JSON)
                                  for seq, d in enumerate(got, before + 1)]
    assert recipients[60][1].writes == [3]  # past the first turn: all three at once


def test_a_rider_that_cannot_be_framed_costs_only_itself(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """A fan-out whose dispatch cannot be encoded (a bug where it was made) fails as its
    own message when it arrives, before it could ride: the fan-outs it would have ridden
    with still reach everyone, in order, numbered without a gap."""
    monkeypatch.setattr(gateway.fanout, "TURN_RECIPIENTS", 16)
    good = [_dispatch(1), _dispatch(3)]
    bad = PreparedDispatch("MESSAGE_CREATE", {"id": "2", "content": object()})
    with caplog.at_level(logging.ERROR, logger="greenroom.actors"):
        recipients = _fan_out_many([_to_all(good[0]), _to_all(bad), _to_all(good[1])])
    for link, transport, before in recipients:
        assert link.conn.log.seq == before + 2
        assert transport.sent == [d.frame(seq, Encoding.JSON)
                                  for seq, d in enumerate(good, before + 1)]
    assert [r.getMessage() for r in caplog.records].count("actor.poisoned") == 1


def test_a_turn_with_riders_writes_about_a_turn_of_frames(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A turn's budget counts frames: with three riders a turn goes a third as far, so
    the loop gets its I/O back as often as without them."""
    monkeypatch.setattr(gateway.fanout, "TURN_RECIPIENTS", 16)
    per_turn: list[int] = []
    transports: list[_Transport] = []
    work = gateway.fanout.FanoutPoint._work

    def counted(self: Any) -> None:
        before = sum(len(t.sent) for t in transports)
        work(self)
        per_turn.append(sum(len(t.sent) for t in transports) - before)

    monkeypatch.setattr(gateway.fanout.FanoutPoint, "_work", counted)
    dispatches = [_dispatch(n) for n in range(1, 4)]

    async def main() -> None:
        base, _, point, ids, out = await _sessions()
        transports.extend(transport for _, transport, _ in out)
        for d in dispatches:
            base.tell_from_loop(point, NodeFanout(d, tuple(ids)))
        await asyncio.sleep(0.1)
        base.shutdown_in_loop()

    uvloop.run(main())
    assert sum(per_turn) == 3 * RECIPIENTS
    # the budget, give or take one recipient's frames (each rider's, at least one)
    assert max(per_turn) <= 16 + len(dispatches) - 1


def test_a_session_catching_up_gets_riders_through_its_own_delivery(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A session catching up from storage delivers through its own ``deliver_dispatch``
    (it holds, or notes, what comes meanwhile), so it has no lane and riders reach it
    one by one through that, in order, never written past it."""
    monkeypatch.setattr(gateway.fanout, "TURN_RECIPIENTS", 16)
    catching_up = 50
    through: list[PreparedDispatch] = []

    def prepare(base: Any, ids: list[int]) -> None:
        session = base.cells[ids[catching_up]].instance
        session.deliver_dispatch = lambda dispatch, trace=None: through.append(dispatch)
        session.sync_lane()

    dispatches = [_dispatch(n) for n in (1, 2, 3)]
    recipients = _fan_out_many([_to_all(d) for d in dispatches], prepare=prepare)
    assert through == dispatches
    assert recipients[catching_up][1].sent == []


def test_a_compressed_session_writes_its_riders_together_and_loses_one_alone(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """A zlib-stream session (no lane) gets the riders through its compressor in order,
    then in one write; a dispatch its connection fails to frame costs the others
    nothing (the line names the session)."""
    monkeypatch.setattr(gateway.fanout, "TURN_RECIPIENTS", 16)
    compressed = 50
    first, second, third = (_dispatch(n) for n in (1, 2, 3))
    its_id: list[int] = []

    def prepare(base: Any, ids: list[int]) -> None:
        its_id.append(ids[compressed])
        conn = base.cells[ids[compressed]].instance.link.conn
        frame = conn.dispatch_frame

        def failing(dispatch: PreparedDispatch) -> bytes | None:
            if dispatch is second:
                raise RuntimeError("injected framing failure")
            return frame(dispatch)

        conn.dispatch_frame = failing

    with caplog.at_level(logging.ERROR, logger="greenroom.gateway.fanout"):
        recipients = _fan_out_many([_to_all(d) for d in (first, second, third)],
                                   compressed=compressed, prepare=prepare)
    link, transport, before = recipients[compressed]
    # (what a client inflates from such writes: test_compressed_sessions_get_what_rides_in_one_write)
    assert transport.writes == [2]
    assert [d for _, d in link.conn.log.after(before)] == [first, third]
    failures = [r for r in caplog.records if r.getMessage() == "fanout.delivery_failed"]
    assert len(failures) == 1 and failures[0].session == its_id[0]
    assert failures[0].exc_info is not None
    for n, (_, transport, _) in enumerate(recipients):
        if n != compressed:
            assert len(transport.sent) == 3, n


class _Guild(Actor):
    """Sends the fan-out point three NodeFanouts a turn, for three turns; keeps what
    comes back as ``Overloaded`` (nothing should)."""

    bounced: list[Any] = []

    def receiveMessage(self, msg: Any, sender: Any) -> None:
        if isinstance(msg, Overloaded):
            _Guild.bounced.append(msg.message)
        elif isinstance(msg, tuple):
            point, ids, rounds = msg
            for n in range(3):
                self.send(point, NodeFanout(_dispatch(10 * rounds + n), ids))
            if rounds > 1:
                self.send(self.myAddress, (point, ids, rounds - 1))


def test_past_the_backlog_bound_a_fan_out_is_shed_and_its_sessions_closed_in_place(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """What waits behind a fan-out in turns is bounded (``backlog_capacity``): past it a
    NodeFanout is shed, and each of its sessions is closed 4009 where it would have been
    delivered: after every dispatch that came before it, once for a run of shed ones.
    Nothing goes back to the sender. (The close is only noted here, so the sessions go on
    getting the rest: each gets exactly the others, in the order sent.)"""
    monkeypatch.setattr(gateway.fanout, "TURN_RECIPIENTS", 16)
    monkeypatch.setattr(gateway.fanout.FanoutPoint, "backlog_capacity", 4)
    closed: dict[int, list[tuple[int, int]]] = {}  # actor id -> (code, frames before)

    def close(session: Any, code: int, reason: str) -> bool:
        closed.setdefault(session.myAddress.id, []).append(
            (code, len(session.link.transport.sent)))
        return False

    monkeypatch.setattr(SessionActor, "close", close)

    async def main() -> tuple[list[int], list[tuple[Any, _Transport, int]]]:
        base, _, point, ids, out = await _sessions()
        _Guild.bounced = []
        guild = base.create_actor(None, _Guild, None, None)
        base.tell_from_loop(guild, (point, tuple(ids), 3))
        await asyncio.sleep(0.2)
        base.shutdown_in_loop()
        return ids, out

    ids, recipients = uvloop.run(main())
    assert _Guild.bounced == []
    sent = [_dispatch(10 * rounds + n).data["id"] for rounds in (3, 2, 1) for n in range(3)]
    got = [json.loads(frame)["d"]["id"] for frame in recipients[0][1].sent]
    shed = [i for i in sent if i not in got]
    assert shed and got == [i for i in sent if i not in shed]
    runs, kept = [], 0  # each run of shed ones: the frames written before it
    for n, i in enumerate(sent):
        if i not in shed:
            kept += 1
        elif n == 0 or sent[n - 1] not in shed:
            runs.append((4009, kept))
    for actor_id, (_, transport, _) in zip(ids, recipients, strict=True):
        assert [json.loads(frame)["d"]["id"] for frame in transport.sent] == got
        assert closed[actor_id] == runs


def test_a_malformed_fan_out_behind_a_big_one_costs_only_itself(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """A NodeFanout whose payload cannot be decoded (another node's bug) fails as its
    own message when it arrives, backlog or not (the base logs it, its sender gets a
    PoisonMessage); nobody gets it, and the fan-outs around it still go out in order."""
    monkeypatch.setattr(gateway.fanout, "TURN_RECIPIENTS", 16)
    good = [_dispatch(1), _dispatch(3)]
    with caplog.at_level(logging.ERROR, logger="greenroom.actors"):
        recipients = _fan_out([good[0], ["MESSAGE_CREATE", 42], good[1]],  # type: ignore[list-item]
                              together=True)
    for link, transport, before in recipients:
        assert link.conn.log.seq == before + 2
        assert transport.sent == [d.frame(seq, Encoding.JSON)
                                  for seq, d in enumerate(good, before + 1)]
    poisoned = [r for r in caplog.records if r.getMessage() == "actor.poisoned"]
    assert len(poisoned) == 1 and "NodeFanout payload must be" in poisoned[0].exc_text


def test_a_traced_fan_out_waits_behind_a_big_one_under_way(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A traced NodeFanout is delivered whole (its spans time the loop), but only once
    the fan-outs ahead of it are done, and the ones after it wait for it."""
    monkeypatch.setattr(gateway.fanout, "TURN_RECIPIENTS", 16)
    dispatches = [_dispatch(1), _dispatch(2), _dispatch(3)]
    for link, transport, before in _fan_out(dispatches, together=True, traced=1):
        assert link.conn.log.seq == before + 3
        assert transport.sent == [d.frame(seq, Encoding.JSON)
                                  for seq, d in enumerate(dispatches, before + 1)]


def _count_shared_writes(monkeypatch: pytest.MonkeyPatch, module: Any) -> list[int]:
    """The frames in each of ``module``'s calls of ``write_frames`` from now on."""
    together: list[int] = []
    write_frames = module.write_frames

    def counted(transport: Any, frames: list[tuple[Any, bytes]]) -> None:
        together.append(len(frames))
        write_frames(transport, frames)

    monkeypatch.setattr(module, "write_frames", counted)
    return together


def test_many_sockets_each_get_their_own_frame(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Over real sockets: 36 sessions, one NodeFanout; each client reads the dispatch
    once, numbered after its own GUILD_CREATE. Then two that go out in turns of 8
    recipients, the second riding on the first (both frames in one write): each client
    reads both, in order."""
    count = 36
    together = _count_shared_writes(monkeypatch, gateway.fanout)

    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            sockets = []
            for _ in range(count):
                ws = await session(http, r, r.seeded.token, CONTENT)
                assert (await recv(ws))["t"] == "GUILD_CREATE"
                sockets.append(ws)
            await asyncio.sleep(0.05)
            sids = [address.id for address in r.gateway.ctx.sessions.values()]
            assert len(sids) == count
            data = {"id": "99", "channel_id": str(r.seeded.channel_id), "content": "all"}
            here = r.gateway.base
            here.tell_from_loop(fanout_address(here.node),
                                NodeFanout(PreparedDispatch("MESSAGE_CREATE", data), sids))
            for ws in sockets:
                assert await recv(ws) == {"t": "MESSAGE_CREATE", "s": 3, "op": 0, "d": data}
            monkeypatch.setattr(gateway.fanout, "TURN_RECIPIENTS", 8)
            later = [{**data, "id": str(n), "content": f"then {n}"} for n in (100, 101)]
            for d in later:
                here.tell_from_loop(fanout_address(here.node),
                                    NodeFanout(PreparedDispatch("MESSAGE_CREATE", d), sids))
            for ws in sockets:
                assert await recv(ws) == {"t": "MESSAGE_CREATE", "s": 4, "op": 0, "d": later[0]}
                assert await recv(ws) == {"t": "MESSAGE_CREATE", "s": 5, "op": 0, "d": later[1]}
            assert together and set(together) == {2}
            for ws in sockets:
                await ws.close()

    run(main)


def test_compressed_sessions_get_what_rides_in_one_write(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Over real sockets, zlib-stream clients (no lane: their frames go through each
    connection's compressor, here with the deflated tail a big fan-out's recipients
    share): three fan-outs back to back in turns of 4 recipients, the second and third
    riding on the first. Each connection compresses them in order and writes them
    together (the first 4 the two riders, the other 8 all three); each client inflates
    the three in order, numbered one after the other, with one ``zlib.decompressobj``
    as discord.py and hikari do."""
    count = 12
    together = _count_shared_writes(monkeypatch, gateway.server)

    async def main() -> None:
        config = GatewayConfig(zlib_shared_tail_min=2)
        async with running_gateway(tmp_path, config) as r, aiohttp.ClientSession() as http:
            clients = []
            for _ in range(count):
                ws = await http.ws_connect(
                    f"{r.gateway.gateway_url}/?v=10&encoding=json&compress=zlib-stream")
                inflate = zlib.decompressobj()

                async def zrecv(ws: Any = ws, inflate: Any = inflate) -> dict[str, Any]:
                    msg = await ws.receive(5)
                    assert msg.type is aiohttp.WSMsgType.BINARY
                    assert msg.data.endswith(b"\x00\x00\xff\xff")
                    return json.loads(inflate.decompress(msg.data))

                assert (await zrecv())["op"] == 10
                await ws.send_json(identify(r.seeded.token, CONTENT))
                assert (await zrecv())["t"] == "READY"
                assert (await zrecv())["t"] == "GUILD_CREATE"
                clients.append((ws, zrecv))
            await asyncio.sleep(0.05)
            sids = [address.id for address in r.gateway.ctx.sessions.values()]
            assert len(sids) == count
            # each has a lane, framed by its connection (its compressor's stream)
            assert all(r.gateway.ctx.lanes[sid][3] is not None for sid in sids)
            monkeypatch.setattr(gateway.fanout, "TURN_RECIPIENTS", 4)
            data = {"id": "99", "channel_id": str(r.seeded.channel_id), "content": "all"}
            sent = [{**data, "id": str(n), "content": f"then {n}"} for n in (100, 101, 102)]
            here = r.gateway.base
            together.clear()
            for d in sent:
                here.tell_from_loop(fanout_address(here.node),
                                    NodeFanout(PreparedDispatch("MESSAGE_CREATE", d), sids))
            for _, zrecv in clients:
                for seq, d in enumerate(sent, 3):
                    assert await zrecv() == {"t": "MESSAGE_CREATE", "s": seq, "op": 0, "d": d}
            assert sorted(together) == [2] * 4 + [3] * 8
            for ws, _ in clients:
                await ws.close()

    run(main)


def _lane_of(r: Any, session_id: str) -> tuple[int, Any, Any]:
    """(actor id, its ``ctx.lanes`` entry or None, its link) of a live session."""
    address = r.gateway.ctx.sessions[session_id]
    link = next(link for link in r.gateway.links if link.session == address)
    return address.id, r.gateway.ctx.lanes.get(address.id), link


def test_a_session_has_a_lane_exactly_while_it_writes_each_dispatch(tmp_path: Path) -> None:
    """``ctx.lanes`` follows the connection over real sockets: there once READY, gone
    while the transport is paused (the message then waits in the log) and back once the
    backlog is written, gone at the close. A plain JSON connection's lane has no
    connection (the fan-out point frames for it); a compressed one's names its
    connection, which frames each dispatch through its compressor."""
    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            ws, ready = await identified(http, r)
            actor_id, lane, link = _lane_of(r, ready["d"]["session_id"])
            assert lane is not None and lane[1] is link.transport
            assert lane[2] is link.conn.log and lane[3] is None

            link.pause_writing()  # as picows calls it above the high-water mark
            assert actor_id not in r.gateway.ctx.lanes
            status, _, _ = await call(http, r, "POST", f"/channels/{r.seeded.channel_id}"
                                      "/messages", r.seeded.token, json={"content": "held"})
            assert status == 200
            await asyncio.sleep(0.05)
            assert link.conn.log.seq == 3 and link._unsent == 3  # numbered, not written
            link.resume_writing()
            assert r.gateway.ctx.lanes[actor_id][1] is link.transport
            got = await recv(ws)
            assert (got["t"], got["s"], got["d"]["content"]) == ("MESSAGE_CREATE", 3, "held")
            status, _, _ = await call(http, r, "POST", f"/channels/{r.seeded.channel_id}"
                                      "/messages", r.seeded.token, json={"content": "live"})
            assert status == 200
            got = await recv(ws)  # through the lane
            assert (got["s"], got["d"]["content"]) == (4, "live")

            zws = await http.ws_connect(
                f"{r.gateway.gateway_url}/?v=10&encoding=json&compress=zlib-stream")
            await zws.send_json(identify(r.seeded.token))
            await asyncio.sleep(0.2)
            compressed = [s for s in r.gateway.ctx.sessions if s != ready["d"]["session_id"]]
            assert len(compressed) == 1
            z_id, z_lane, z_link = _lane_of(r, compressed[0])
            assert z_lane is not None and z_lane[1] is z_link.transport
            assert z_lane[2] is z_link.conn.log and z_lane[3] is z_link.conn

            await ws.close()
            await zws.close()
            await asyncio.sleep(0.1)
            assert actor_id not in r.gateway.ctx.lanes and z_id not in r.gateway.ctx.lanes

    run(main)


def test_every_kind_of_connection_gets_a_big_fanout_through_its_lane(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Over real sockets, two sessions of each kind: plain JSON, zlib-stream (with the
    deflated tail a big fan-out's recipients share), zstd-stream and msgpack. Each has a
    lane (a compressed or msgpack one names its connection, which frames for it), two
    fan-outs in turns of 3 reach all of them through their lanes and never through
    ``Link.send_dispatch``, and each client decodes both, numbered one after the other,
    as discord.py decodes its streams (one ``decompressobj`` a connection)."""
    sent_by_link: list[Any] = []
    original = gateway.server.Link.send_dispatch

    def counted(link: Any, dispatch: PreparedDispatch) -> None:
        sent_by_link.append(dispatch)
        original(link, dispatch)

    monkeypatch.setattr(gateway.server.Link, "send_dispatch", counted)
    kinds = {"encoding=json": (json.loads, None),
             "encoding=json&compress=zlib-stream": (json.loads, zlib.decompressobj),
             "encoding=json&compress=zstd-stream": (
                 json.loads, lambda: zstandard.ZstdDecompressor().decompressobj()),
             "encoding=msgpack": (lambda b: msgpack.unpackb(b, raw=False), None)}

    async def main() -> None:
        config = GatewayConfig(zlib_shared_tail_min=2)
        async with running_gateway(tmp_path, config) as r, aiohttp.ClientSession() as http:
            clients = []
            for query, (decode, stream) in kinds.items():
                for _ in range(2):
                    ws = await http.ws_connect(f"{r.gateway.gateway_url}/?v=10&{query}")
                    inflate = stream() if stream is not None else None

                    async def receive(ws: Any = ws, inflate: Any = inflate,
                                      decode: Any = decode) -> dict[str, Any]:
                        msg = await ws.receive(5)
                        data = msg.data if inflate is None else inflate.decompress(msg.data)
                        return decode(data.encode() if isinstance(data, str) else data)

                    assert (await receive())["op"] == 10
                    hello = identify(r.seeded.token, CONTENT)
                    if "msgpack" in query:
                        await ws.send_bytes(msgpack.packb(hello))
                    else:
                        await ws.send_json(hello)
                    assert (await receive())["t"] == "READY"
                    assert (await receive())["t"] == "GUILD_CREATE"
                    clients.append((query, receive))
            await asyncio.sleep(0.05)
            lanes, links = r.gateway.ctx.lanes, r.gateway.links
            sids = [address.id for address in r.gateway.ctx.sessions.values()]
            assert len(sids) == len(clients) == len(lanes)
            for link in links:  # a plain JSON lane: the fan-out point frames for it
                conn = lanes[link.session.id][3]
                assert conn is (None if link.conn.text_frames else link.conn)
            monkeypatch.setattr(gateway.fanout, "TURN_RECIPIENTS", 3)
            sent = [{"id": str(n), "channel_id": str(r.seeded.channel_id),
                     "content": f"to all {n}"} for n in (100, 101)]
            here = r.gateway.base
            for d in sent:
                here.tell_from_loop(fanout_address(here.node),
                                    NodeFanout(PreparedDispatch("MESSAGE_CREATE", d), sids))
                await asyncio.sleep(0.05)
            for query, receive in clients:
                for seq, d in enumerate(sent, 3):
                    got = await receive()
                    assert (got["t"], got["s"], got["d"]) == ("MESSAGE_CREATE", seq, d), query
            assert sent_by_link == []

    run(main)
