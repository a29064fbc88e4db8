"""RESUME: replay in order then RESUMED; stale, unknown and impossible resumes; RECONNECT and
INVALID_SESSION; what survives a dropped socket."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.protocol import (
    ConnectionState,
    DispatchLog,
    Encoding,
    GatewayConfig,
    PreparedDispatch,
    ProtocolUsageError,
    ResumeRequested,
)

from .scripted_client import ScriptedClient, close_of, timers_of


def _session_with_dispatches(count: int, config: GatewayConfig | None = None) -> ScriptedClient:
    client = ScriptedClient(config=config)
    client.ready()  # READY s=1, GUILD_CREATE s=2
    for i in range(count):
        client.conn.dispatch_event("MESSAGE_CREATE", {"n": i})
    return client


def _resume(new: ScriptedClient, seq: int | None, session_id: str = "session-1"):
    d = {"token": "Bot.token", "session_id": session_id, "seq": seq}
    return new.send({"op": 6, "d": d}, at=100.0)


def test_resume_replays_every_missed_dispatch_in_order_then_resumed():
    old = _session_with_dispatches(5)  # s = 3..7
    disconnected = old.conn.connection_lost(None)  # TCP dropped, no close frame
    assert disconnected.session_resumable
    log = old.conn.log
    # the session layer keeps appending while nobody is connected
    log.append(PreparedDispatch("MESSAGE_CREATE", {"n": "while away"}))  # s=8

    new = ScriptedClient()
    assert _resume(new, 4) == [ResumeRequested(token="Bot.token", session_id="session-1", seq=4)]
    assert new.conn.state is ConnectionState.RESUMING
    payloads = new.payloads(new.conn.resume_ok(log, intents=513))
    assert [(p["t"], p["s"]) for p in payloads] == [
        ("MESSAGE_CREATE", 5),
        ("MESSAGE_CREATE", 6),
        ("MESSAGE_CREATE", 7),
        ("MESSAGE_CREATE", 8),
        ("RESUMED", 9),
    ]
    assert [p["d"] for p in payloads[:3]] == [{"n": 2}, {"n": 3}, {"n": 4}]
    assert payloads[-1] == {"t": "RESUMED", "s": 9, "op": 0, "d": {}}
    # the resumed connection goes on numbering the same session
    [after] = new.payloads(new.conn.dispatch_event("TYPING_START", {}))
    assert after["s"] == 10
    assert new.conn.session_id == "session-1"
    assert new.conn.state is ConnectionState.READY


def test_resume_from_seq_1_replays_guild_create():
    old = _session_with_dispatches(0)
    old.conn.connection_lost(4000)
    new = ScriptedClient()
    _resume(new, 1)
    payloads = new.payloads(new.conn.resume_ok(old.conn.log, intents=513))
    assert [p["t"] for p in payloads] == ["GUILD_CREATE", "RESUMED"]
    assert payloads[0]["d"]["name"] == "the greenroom"


def test_resume_when_nothing_was_missed_sends_only_resumed():
    old = _session_with_dispatches(2)
    old.conn.connection_lost(4000)
    new = ScriptedClient()
    _resume(new, old.conn.log.seq)
    assert [p["t"] for p in new.payloads(new.conn.resume_ok(old.conn.log, intents=513))] == [
        "RESUMED"
    ]


def test_dispatches_after_a_resumable_server_close_are_kept_for_replay():
    old = _session_with_dispatches(1)  # s=3
    close_of(old.send("{"))  # 4002 keeps the session
    assert old.conn.dispatch_event("MESSAGE_CREATE", {"n": "late"}) == []
    new = ScriptedClient()
    _resume(new, 3)
    payloads = new.payloads(new.conn.resume_ok(old.conn.log, intents=513))
    assert [(p["d"], p["s"]) for p in payloads] == [({"n": "late"}, 4), ({}, 5)]


def test_unknown_session_gets_op9_false_and_may_identify_on_the_same_connection():
    new = ScriptedClient()
    _resume(new, 10, session_id="nope")
    assert new.payloads(new.conn.resume_failed()) == [{"t": None, "s": None, "op": 9, "d": False}]
    assert new.conn.state is ConnectionState.AWAITING_IDENTIFY
    new.ready()
    assert new.conn.state is ConnectionState.READY


def test_stale_resume_whose_dispatches_were_evicted_gets_op9_false():
    config = GatewayConfig(replay_max_entries=4)
    old = _session_with_dispatches(6, config)  # s=1..8, only 5..8 kept
    old.conn.connection_lost(None)
    new = ScriptedClient(config=config)
    _resume(new, 3)  # 4 is gone: replaying would leave a gap
    assert new.payloads(new.conn.resume_ok(old.conn.log, intents=513)) == [
        {"t": None, "s": None, "op": 9, "d": False}
    ]
    assert new.conn.state is ConnectionState.AWAITING_IDENTIFY

    newer = ScriptedClient(config=config)
    _resume(newer, 4)  # 5..8 are all kept
    assert [p["s"] for p in newer.payloads(newer.conn.resume_ok(old.conn.log, intents=513))] == [
        5,
        6,
        7,
        8,
        9,
    ]


def test_resume_with_a_seq_ahead_of_the_session_closes_4007():
    old = _session_with_dispatches(1)  # last s=3
    old.conn.connection_lost(None)
    new = ScriptedClient()
    _resume(new, 99)
    close = close_of(new.conn.resume_ok(old.conn.log, intents=513))
    assert (close.code, close.reason, close.session_resumable) == (4007, "Invalid seq", False)


def test_resume_on_another_encoding_gets_op9_false():
    old = _session_with_dispatches(1)
    old.conn.connection_lost(None)
    new = ScriptedClient("/?v=10&encoding=msgpack")
    _resume(new, 2)
    assert new.payloads(new.conn.resume_ok(old.conn.log, intents=513)) == [
        {"t": None, "s": None, "op": 9, "d": False}
    ]


def test_resume_with_null_seq_means_nothing_seen():
    new = ScriptedClient()
    assert _resume(new, None)[0].seq == 0


@pytest.mark.parametrize(
    "d",
    [None, {"session_id": "s", "seq": 1}, {"token": "t", "session_id": 5, "seq": 1},
     {"token": "t", "session_id": "s", "seq": -1}, {"token": "t", "session_id": "s", "seq": "1"}],
)  # fmt: skip
def test_malformed_resume_closes_4001(d):
    assert close_of(ScriptedClient().send({"op": 6, "d": d})).code == 4001


def test_second_resume_while_resuming_closes_4005():
    new = ScriptedClient()
    _resume(new, 1)
    assert close_of(_resume(new, 1)).code == 4005


def test_client_events_while_resuming_close_4003():
    new = ScriptedClient()
    _resume(new, 1)
    presence = {"op": 3, "d": {"status": "online", "activities": []}}
    assert close_of(new.send(presence)).code == 4003


@pytest.mark.parametrize(("code", "resumable"), [(1000, False), (1001, False), (4000, True),
                                                 (1006, True), (None, True)])  # fmt: skip
def test_client_close_1000_or_1001_ends_the_session_others_keep_it(code, resumable):
    client = _session_with_dispatches(0)
    assert client.conn.connection_lost(code).session_resumable is resumable
    assert client.conn.state is ConnectionState.CLOSED


def test_connection_lost_before_ready_has_no_session():
    client = ScriptedClient()
    client.identify()
    assert client.conn.connection_lost(4000).session_resumable is False
    assert client.conn.identified(
        session_id="late", user={"id": 1, "username": "x"}, guilds=[],
        application={"id": 2}, resume_gateway_url="ws://x",
    ) == []  # fmt: skip


def test_reconnect_sends_op7_then_closes_resumably_if_the_client_stays():
    config = GatewayConfig(reconnect_close_after_s=5)
    client = _session_with_dispatches(0, config)
    effects = client.conn.reconnect(now=10.0)
    assert client.payloads(effects) == [{"t": None, "s": None, "op": 7, "d": None}]
    assert timers_of(effects) == [15.0]
    assert timers_of(client.conn.on_timer(14.0)) == [15.0]
    close = close_of(client.conn.on_timer(15.0))
    assert (close.code, close.session_resumable) == (4000, True)


def test_invalidate_session_resumable_keeps_the_session():
    client = _session_with_dispatches(0)
    assert client.payloads(client.conn.invalidate_session(True)) == [
        {"t": None, "s": None, "op": 9, "d": True}
    ]
    assert client.conn.state is ConnectionState.READY
    assert client.conn.connection_lost(4000).session_resumable is True


def test_invalidate_session_not_resumable_drops_it_and_awaits_identify():
    client = _session_with_dispatches(0)
    assert client.payloads(client.conn.invalidate_session(False))[0]["d"] is False
    assert client.conn.state is ConnectionState.AWAITING_IDENTIFY
    assert client.conn.log is None
    client.ready()  # a fresh IDENTIFY on the same connection
    assert client.conn.connection_lost(None).session_resumable is True


def test_server_close_of_a_ready_session():
    client = _session_with_dispatches(0)
    close = close_of(client.conn.close(4000, "operator disconnect"))
    assert (close.code, close.detail, close.session_resumable) == (
        4000,
        "operator disconnect",
        True,
    )
    assert client.conn.close() == []


def test_resume_answers_out_of_order_raise():
    client = ScriptedClient()
    with pytest.raises(ProtocolUsageError):
        client.conn.resume_ok(DispatchLog(Encoding.JSON), intents=513)
    with pytest.raises(ProtocolUsageError):
        client.conn.resume_failed()


def test_dispatch_log_numbering_and_replay_window():
    log = DispatchLog(Encoding.JSON, max_entries=3)
    items = [PreparedDispatch("E", i) for i in range(5)]
    assert [log.append(item) for item in items] == [1, 2, 3, 4, 5]
    assert (log.seq, log.oldest_seq, len(log)) == (5, 3, 3)
    assert [(seq, d.data) for seq, d in log.after(2)] == [(3, 2), (4, 3), (5, 4)]
    assert [seq for seq, _ in log.after(4)] == [5]
    assert list(log.after(5)) == []
    assert [log.can_replay_after(s) for s in (1, 2, 5, 6)] == [False, True, True, False]
    with pytest.raises(ValueError):
        DispatchLog(Encoding.JSON, max_entries=0)


def test_resumed_connection_applies_the_sessions_intents():
    old = _session_with_dispatches(0)
    old.conn.connection_lost(None)
    new = ScriptedClient()
    _resume(new, 2)
    new.conn.resume_ok(old.conn.log, intents=513 | 256)
    assert new.conn.intents == 513 | 256
    d = {"guild_id": "333", "user_ids": ["1"], "presences": True}
    [event] = new.send({"op": 8, "d": d})
    assert event.presences is True  # GUILD_PRESENCES came with the resumed session


def _heartbeat(client: ScriptedClient, seq: int | None) -> None:
    [ack] = client.payloads(client.send({"op": 1, "d": seq}))
    assert ack["op"] == 11


def test_heartbeat_seq_forgets_what_the_client_has_and_resume_still_replays_the_rest():
    old = _session_with_dispatches(3)  # s = 1..5
    _heartbeat(old, 4)
    assert (len(old.conn.log), old.conn.log.oldest_seq) == (1, 5)
    old.conn.dispatch_event("MESSAGE_CREATE", {"n": "after the beat"})  # s=6
    old.conn.connection_lost(None)
    new = ScriptedClient()
    _resume(new, 4)
    payloads = new.payloads(new.conn.resume_ok(old.conn.log, intents=513))
    assert [(p["s"], p["d"]) for p in payloads] == [
        (5, {"n": 2}), (6, {"n": "after the beat"}), (7, {})]  # fmt: skip
    # replayed is not received: 5..7 stay until the client acknowledges them
    assert (len(old.conn.log), old.conn.log.oldest_seq) == (3, 5)
    _heartbeat(new, 6)
    assert (len(old.conn.log), old.conn.log.oldest_seq) == (1, 7)


def test_resume_below_an_acknowledged_seq_gets_op9_false():
    old = _session_with_dispatches(3)
    _heartbeat(old, 4)
    old.conn.connection_lost(None)
    new = ScriptedClient()
    _resume(new, 3)  # s=4 is forgotten: replaying would leave a gap
    assert new.payloads(new.conn.resume_ok(old.conn.log, intents=513)) == [
        {"t": None, "s": None, "op": 9, "d": False}
    ]


def test_idle_session_keeps_nothing_after_its_first_heartbeat():
    old = _session_with_dispatches(0)  # READY s=1, GUILD_CREATE s=2
    _heartbeat(old, None)  # nothing received yet (as a library sends before READY)
    assert len(old.conn.log) == 2
    _heartbeat(old, 2)
    assert (len(old.conn.log), old.conn.log._entries) == (0, None)
    old.conn.connection_lost(None)
    new = ScriptedClient()
    _resume(new, 2)
    assert [p["t"] for p in new.payloads(new.conn.resume_ok(old.conn.log, intents=513))] == [
        "RESUMED"
    ]


def test_heartbeat_ahead_of_the_session_forgets_only_what_was_sent():
    old = _session_with_dispatches(1)  # s = 1..3
    _heartbeat(old, 99)
    assert (len(old.conn.log), old.conn.log.seq) == (0, 3)
    old.conn.connection_lost(None)
    new = ScriptedClient()
    _resume(new, 99)
    assert close_of(new.conn.resume_ok(old.conn.log, intents=513)).code == 4007


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.tuples(st.just("append"), st.booleans()),
                          st.tuples(st.just("ack"), st.integers(-1, 40))), max_size=60),
       st.integers(1, 6))  # fmt: skip
def test_dispatch_log_matches_a_model_under_appends_trims_and_acks(ops, max_entries):
    """The log against the obvious model (every dispatch by seq, the acknowledged floor,
    the last ``max_entries``), through both append paths (``append`` and fan-out's
    inlined ``dispatch_frame``)."""
    client = ScriptedClient(config=GatewayConfig(replay_max_entries=max_entries))
    client.ready()  # s = 1, 2
    conn, log = client.conn, client.conn.log
    sent = {1: log._entries[0], 2: log._entries[1]}
    floor = 0
    for op, arg in ops:
        if op == "append":
            dispatch = PreparedDispatch("E", log.seq + 1)
            if arg:
                conn.dispatch_frame(dispatch)
            else:
                log.append(dispatch)
            sent[log.seq] = dispatch
        else:
            log.ack(arg)
            floor = max(floor, min(arg, log.seq))
        oldest = max(floor + 1, log.seq - max_entries + 1, 1)
        assert (log.oldest_seq, len(log)) == (oldest, log.seq - oldest + 1)
        for seq in range(log.seq + 2):
            assert log.can_replay_after(seq) is (oldest - 1 <= seq <= log.seq)
            assert list(log.after(seq)) == [
                (s, sent[s]) for s in range(max(seq + 1, oldest), log.seq + 1)]  # fmt: skip


def test_resume_seq_acknowledges_what_the_client_had():
    old = _session_with_dispatches(3)  # s = 1..5, nothing acknowledged
    old.conn.connection_lost(None)
    new = ScriptedClient()
    _resume(new, 4)
    new.conn.resume_ok(old.conn.log, intents=513)
    assert (len(old.conn.log), old.conn.log.oldest_seq) == (2, 5)  # 5 and RESUMED (6)


@pytest.mark.parametrize("encoding", list(Encoding))
def test_a_log_moved_as_encoded_entries_replays_the_same_frames(encoding):
    """A session moving to another node sends its log as ``encoded`` bytes (compacted
    entries included); the log restored from them frames exactly what the original did."""
    log = DispatchLog(encoding, max_entries=4)
    log.append(PreparedDispatch("READY", {"v": 10}).compact(encoding))
    for i in range(5):
        log.append(PreparedDispatch("MESSAGE_CREATE", {"n": i, "s": "é"}))
    moved = [PreparedDispatch.from_encoded(d.event, encoding, d.encoded(encoding))
             for _, d in log.after(2)]
    restored = DispatchLog.restored(encoding, log.seq, moved, max_entries=4)
    assert restored.seq == log.seq == 6
    assert restored.can_replay_after(2) and not restored.can_replay_after(1)
    assert [(s, d.frame(s, encoding)) for s, d in restored.after(2)] \
        == [(s, d.frame(s, encoding)) for s, d in log.after(2)]
    assert restored.append(PreparedDispatch("E", {})) == 7
    with pytest.raises(ValueError, match="cannot end at seq"):
        DispatchLog.restored(encoding, 1, moved)
