"""Hostile-client cases of the sans-I/O core (issue 10, point 8): the IDENTIFY deadline,
RFC 6455 violations reported by the socket layer, an empty token, ids that are not
canonical snowflakes and oversized activities."""

from __future__ import annotations

import pytest

from gateway.protocol import Close, CloseCode, GatewayConfig, SendFrame
from gateway.protocol.close_codes import WS_INVALID_DATA, WS_PROTOCOL_ERROR
from gateway.protocol.connection import ProtocolUsageError
from tests.gateway.scripted_client import IDENTIFY_D, ScriptedClient, close_of, timers_of

# -- IDENTIFY deadline ---------------------------------------------------------------------


def test_a_connection_that_only_heartbeats_is_closed_4003_at_the_identify_deadline():
    client = ScriptedClient(config=GatewayConfig(identify_timeout_s=30))
    assert timers_of(client.start_effects) == [30.0]
    for at in (10.0, 20.0, 29.0):  # heartbeats do not extend it
        assert client.payloads(client.send({"op": 1, "d": None}, at=at))[0]["op"] == 11
    assert timers_of(client.conn.on_timer(29.9)) == [30.0]  # early: re-armed, open
    close = close_of(client.conn.on_timer(30.0))
    assert (close.code, close.reason, close.session_resumable) == (4003, "Not authenticated",
                                                                   False)


def test_the_deadline_does_not_apply_once_identified():
    client = ScriptedClient(config=GatewayConfig(identify_timeout_s=5))
    client.ready(at=1.0)
    assert client.conn.next_deadline > 5.0
    assert timers_of(client.conn.on_timer(6.0)) == [client.conn.next_deadline]


def test_an_op_9_after_a_refused_identify_gives_a_fresh_deadline():
    client = ScriptedClient(config=GatewayConfig(identify_timeout_s=10))
    client.identify(at=8.0)
    effects = client.conn.identify_rate_limited()
    assert client.payloads(effects) == [{"t": None, "s": None, "op": 9, "d": False}]
    assert client.conn.next_deadline == 18.0
    assert timers_of(client.conn.on_timer(12.0)) == [18.0]
    assert close_of(client.conn.on_timer(18.0)).code == CloseCode.NOT_AUTHENTICATED


def test_a_failed_resume_gives_a_fresh_deadline():
    client = ScriptedClient(config=GatewayConfig(identify_timeout_s=10))
    client.send({"op": 6, "d": {"token": "t", "session_id": "s", "seq": 0}}, at=4.0)
    client.conn.resume_failed()
    assert client.conn.next_deadline == 14.0


def test_an_op_9_for_an_ended_session_starts_the_deadline_at_the_next_time_known():
    # invalidate_session gets no time: the last one known may be a heartbeat old, and a
    # deadline counted from it would close the socket right after the op 9
    client = ScriptedClient(config=GatewayConfig(identify_timeout_s=30))
    client.ready(at=1.0)
    client.send({"op": 1, "d": None}, at=40.0)
    effects = client.conn.invalidate_session(False)
    assert client.payloads(effects) == [{"t": None, "s": None, "op": 9, "d": False}]
    assert not any(isinstance(e, Close) for e in client.conn.on_timer(75.0))  # starts here
    client.send({"op": 1, "d": None}, at=90.0)  # no zombie
    assert timers_of(client.conn.on_timer(91.25)) == [105.0]
    assert close_of(client.conn.on_timer(105.0)).code == CloseCode.NOT_AUTHENTICATED


def test_after_an_op_9_an_identify_in_time_is_taken():
    client = ScriptedClient(config=GatewayConfig(identify_timeout_s=30))
    client.ready(at=1.0)
    client.conn.invalidate_session(False)
    client.identify(at=50.0)  # the first time known after the op 9: in time


# -- RFC 6455 violations found by the socket layer ------------------------------------------


@pytest.mark.parametrize("code", [WS_PROTOCOL_ERROR, WS_INVALID_DATA])
def test_protocol_violation_closes_with_the_rfc_code_and_keeps_the_session(code):
    client = ScriptedClient()
    client.ready()
    close = close_of(client.conn.protocol_violation(code, "bad frame"))
    assert close.code == code and close.session_resumable
    assert close.reason in ("Protocol error", "Invalid frame payload data")


def test_protocol_violation_refuses_other_codes():
    with pytest.raises(ProtocolUsageError):
        ScriptedClient().conn.protocol_violation(1011, "not the client's fault")


# -- IDENTIFY token -------------------------------------------------------------------------


@pytest.mark.parametrize("token", ["", "   "])
def test_an_empty_token_closes_4004(token):
    client = ScriptedClient()
    close = close_of(client.send({"op": 2, "d": {**IDENTIFY_D, "token": token}}))
    assert (close.code, close.reason) == (4004, "Authentication failed")


# -- snowflakes from the client ---------------------------------------------------------------

BAD_IDS = [1 << 63, str(1 << 63), -1, "-1", "0123", "+5", "1_2", "١٢", " 5", 1.5, True, ""]


@pytest.mark.parametrize("bad", BAD_IDS)
def test_op_8_with_an_id_that_is_not_a_canonical_snowflake_closes_4001(bad):
    for d in ({"guild_id": "333", "user_ids": [bad]}, {"guild_id": "333", "user_ids": bad},
              {"guild_id": bad, "query": "", "limit": 0}):
        client = ScriptedClient()
        client.ready()
        close = close_of(client.send({"op": 8, "d": d}))
        assert close.code == CloseCode.UNKNOWN_OPCODE, (d, close)


def test_op_8_accepts_the_largest_snowflake():
    client = ScriptedClient()
    client.ready()
    [event] = client.send({"op": 8, "d": {"guild_id": "333",
                                          "user_ids": [str((1 << 63) - 1), 0]}})
    assert event.user_ids == ((1 << 63) - 1, 0)


@pytest.mark.parametrize("payload", [
    {"op": 14, "d": {"guild_id": "0333"}},
    {"op": 4, "d": {"guild_id": str(1 << 63), "channel_id": None, "self_mute": False,
                    "self_deaf": False}},
    {"op": 31, "d": {"guild_ids": ["-1"]}},
])
def test_every_id_the_gateway_reads_uses_the_one_parser(payload):
    client = ScriptedClient()
    client.ready()
    assert close_of(client.send(payload)).code == CloseCode.UNKNOWN_OPCODE


# -- activities ---------------------------------------------------------------------------------


def _presence(*activities: dict) -> dict:
    return {"status": "online", "activities": list(activities), "since": None, "afk": False}


@pytest.mark.parametrize("activities", [
    [{"name": "x" * 129, "type": 0}],
    [{"name": "x" * 3000, "type": 0}],
    [{"name": "", "type": 0}],
    [{"type": 0}],
    [{"name": "x", "type": 0, "state": "s" * 129}],
    [{"name": "x", "type": 0, "details": ["not", "text"]}],
    [{"name": "x", "type": 99}],
    [{"name": f"a{i}", "type": 0} for i in range(6)],
])
def test_an_oversized_or_malformed_activity_is_refused_not_broadcast(activities):
    client = ScriptedClient()
    client.ready()
    close = close_of(client.send({"op": 3, "d": _presence(*activities)}))
    assert close.code == CloseCode.UNKNOWN_OPCODE
    fresh = ScriptedClient()
    close = close_of(fresh.send({"op": 2, "d": {**IDENTIFY_D,
                                                "presence": _presence(*activities)}}))
    assert close.code == CloseCode.UNKNOWN_OPCODE


@pytest.mark.parametrize("status", [[], {}, ["online"]])
def test_an_unhashable_status_closes_4001_instead_of_raising(status):
    # found by loadtest/abuse_fuzz.py: ``status not in STATUSES`` raised TypeError (1011)
    client = ScriptedClient()
    client.ready()
    presence = {"status": status, "activities": [], "since": None, "afk": False}
    assert close_of(client.send({"op": 3, "d": presence})).code == CloseCode.UNKNOWN_OPCODE
    fresh = ScriptedClient()
    close = close_of(fresh.send({"op": 2, "d": {**IDENTIFY_D, "presence": presence}}))
    assert close.code == CloseCode.UNKNOWN_OPCODE


def test_activities_at_the_limits_are_accepted():
    client = ScriptedClient()
    client.ready()
    activities = [{"name": "x" * 128, "type": 4, "state": "s" * 128}] + [
        {"name": f"a{i}", "type": 0} for i in range(4)]
    [event] = client.send({"op": 3, "d": _presence(*activities)})
    assert event.activities == activities
    assert not any(isinstance(e, SendFrame) for e in [event])
