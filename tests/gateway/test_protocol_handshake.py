"""HELLO, heartbeats, IDENTIFY and READY, and every close a client can earn on the way."""

from __future__ import annotations

import json

import pytest

from gateway.protocol import (
    CloseCode,
    ConnectionState,
    GatewayConfig,
    GuildMembersRequested,
    Intents,
    PresenceUpdateRequested,
    ProtocolUsageError,
    SoundboardSoundsRequested,
    VoiceStateUpdateRequested,
)

from .scripted_client import (
    APPLICATION,
    BOT_USER,
    GUILD,
    IDENTIFY_D,
    ScriptedClient,
    close_of,
    timers_of,
)

# -- HELLO and heartbeats ----------------------------------------------------------------


def test_hello_carries_heartbeat_interval_and_arms_the_zombie_timer():
    config = GatewayConfig(heartbeat_interval_ms=30_000, heartbeat_grace_s=5,
                           identify_timeout_s=60)  # the IDENTIFY deadline comes later
    client = ScriptedClient(config=config)
    [hello] = client.start_payloads
    assert hello == {"t": None, "s": None, "op": 10, "d": {"heartbeat_interval": 30_000}}
    assert timers_of(client.start_effects) == [35.0]
    assert client.text_frames == [True]


def test_heartbeat_is_acknowledged_before_and_after_identify():
    client = ScriptedClient()
    assert client.payloads(client.send({"op": 1, "d": None})) == [
        {"t": None, "s": None, "op": 11, "d": None}
    ]
    client.ready()
    assert client.payloads(client.send({"op": 1, "d": 2}, at=5.0))[0]["op"] == 11


def test_heartbeat_with_a_non_sequence_d_closes_4001():
    client = ScriptedClient()
    close = close_of(client.send({"op": 1, "d": "soon"}))
    assert close.code == CloseCode.UNKNOWN_OPCODE


def test_zombie_closes_4000_and_keeps_the_session_resumable():
    config = GatewayConfig(heartbeat_interval_ms=10_000, heartbeat_grace_s=2)
    client = ScriptedClient(config=config)
    client.ready()
    client.send({"op": 1, "d": 1}, at=9.0)  # deadline moves to 21.0, no new timer needed
    # the first timer (at 12.0) fires early: it is re-armed for the moved deadline
    assert timers_of(client.conn.on_timer(12.0)) == [21.0]
    assert timers_of(client.conn.on_timer(20.9)) == [21.0]
    close = close_of(client.conn.on_timer(21.0))
    assert close.code == CloseCode.UNKNOWN_ERROR == 4000
    assert close.reason == "Unknown error"
    assert close.session_resumable is True
    assert client.conn.state is ConnectionState.CLOSED
    assert client.conn.connection_lost(4000).session_resumable is True


def test_zombie_before_identify_has_no_session_to_keep():
    client = ScriptedClient(config=GatewayConfig(heartbeat_interval_ms=1000, heartbeat_grace_s=1))
    close = close_of(client.conn.on_timer(2.0))
    assert (close.code, close.session_resumable) == (4000, False)


def test_server_requested_heartbeat_shortens_the_deadline():
    config = GatewayConfig(heartbeat_interval_ms=40_000, heartbeat_grace_s=3)
    client = ScriptedClient(config=config)
    client.ready()
    effects = client.conn.request_heartbeat(now=10.0)
    assert client.payloads(effects) == [{"t": None, "s": None, "op": 1, "d": None}]
    assert timers_of(effects) == [13.0]
    assert close_of(client.conn.on_timer(13.0)).code == 4000


def test_answered_server_heartbeat_keeps_the_connection():
    config = GatewayConfig(heartbeat_interval_ms=40_000, heartbeat_grace_s=3)
    client = ScriptedClient(config=config)
    client.ready()
    client.conn.request_heartbeat(now=10.0)
    client.send({"op": 1, "d": 1}, at=11.0)
    assert timers_of(client.conn.on_timer(13.0)) == [54.0]
    assert client.conn.state is ConnectionState.READY


# -- IDENTIFY and READY ------------------------------------------------------------------


def test_identify_raises_an_event_with_everything_the_session_layer_needs():
    client = ScriptedClient()
    event = client.identify(
        shard=[1, 4],
        presence={"status": "idle", "activities": [], "since": 0, "afk": False},
        large_threshold=1000,
        compress=True,
    )
    assert event.token == IDENTIFY_D["token"]
    assert event.intents == 513
    assert event.properties == IDENTIFY_D["properties"]
    assert event.shard == (1, 4)
    assert event.presence["status"] == "idle"
    assert event.large_threshold == 250  # clamped to Discord's 50..250
    assert event.compress is True
    assert client.conn.state is ConnectionState.IDENTIFYING


def test_ready_has_every_field_client_libraries_read_then_guild_create():
    client = ScriptedClient()
    ready, guild_create = client.ready(shard=[0, 1])
    assert (ready["op"], ready["t"], ready["s"]) == (0, "READY", 1)
    d = ready["d"]
    assert d["v"] == 10
    assert d["user"] == {
        "id": "111",
        "username": "greenbot",
        "discriminator": "0",
        "global_name": None,
        "avatar": None,
        "bot": True,
        "mfa_enabled": False,
        "flags": 0,
    }
    assert d["guilds"] == [{"id": "333", "unavailable": True}]
    assert d["session_id"] == "session-1"
    assert d["resume_gateway_url"] == "ws://127.0.0.1:9999"
    assert d["application"] == {"id": "222", "flags": 0}
    assert d["shard"] == [0, 1]

    assert (guild_create["t"], guild_create["s"]) == ("GUILD_CREATE", 2)
    g = guild_create["d"]
    for key in (
        "id", "name", "owner_id", "joined_at", "large", "member_count", "members",
        "channels", "roles", "presences", "voice_states", "threads", "unavailable",
    ):  # fmt: skip
        assert key in g, key
    assert (g["id"], g["owner_id"], g["unavailable"], g["large"]) == ("333", "444", False, False)
    assert g["member_count"] == 2
    assert client.conn.session_id == "session-1"
    assert client.conn.state is ConnectionState.READY


def test_ready_omits_shard_when_identify_had_none():
    client = ScriptedClient()
    ready, _ = client.ready()
    assert "shard" not in ready["d"]


def test_guild_create_without_presences_intent_holds_only_self_and_voice():
    client = ScriptedClient()
    guild = {**GUILD, "voice_states": [{"user_id": "777", "channel_id": "1"}]}
    guild["members"] = [*GUILD["members"], {"user": {"id": "777"}, "roles": []}]
    _, without = client.ready(guilds=[guild])
    assert [m["user"]["id"] for m in without["d"]["members"]] == ["111", "777"]
    assert without["d"]["presences"] == []

    other = ScriptedClient()
    _, with_presences = other.ready(guilds=[guild], intents=513 | Intents.GUILD_PRESENCES)
    assert len(with_presences["d"]["members"]) == 3
    assert with_presences["d"]["presences"] == GUILD["presences"]


def test_no_guild_create_without_guilds_intent():
    client = ScriptedClient()
    payloads = client.ready(intents=int(Intents.GUILD_MESSAGES))
    assert [p["t"] for p in payloads] == ["READY"]
    assert payloads[0]["d"]["guilds"] == [{"id": "333", "unavailable": True}]


def test_dispatch_sequence_continues_after_ready():
    client = ScriptedClient()
    client.ready()
    first = client.payloads(client.conn.dispatch_event("MESSAGE_CREATE", {"id": "1"}))
    second = client.payloads(client.conn.dispatch_event("TYPING_START", {"channel_id": "5"}))
    assert [(p["t"], p["s"], p["op"]) for p in first + second] == [
        ("MESSAGE_CREATE", 3, 0),
        ("TYPING_START", 4, 0),
    ]


def test_bad_token_closes_4004_which_clients_do_not_retry():
    client = ScriptedClient()
    client.identify()
    close = close_of(client.conn.auth_failed())
    assert (close.code, close.reason, close.session_resumable) == (
        4004,
        "Authentication failed",
        False,
    )


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        (CloseCode.INVALID_SHARD, "Invalid shard"),
        (CloseCode.SHARDING_REQUIRED, "Sharding required"),
        (CloseCode.DISALLOWED_INTENTS, "Disallowed intent(s)"),
    ],
)
def test_session_layer_refusals_close_with_their_code(code, reason):
    client = ScriptedClient()
    client.identify(intents=int(Intents.GUILD_MEMBERS))
    close = close_of(client.conn.reject_identify(code))
    assert (close.code, close.reason) == (code, reason)


def test_reject_identify_refuses_codes_that_are_not_identify_refusals():
    client = ScriptedClient()
    client.identify()
    with pytest.raises(ProtocolUsageError):
        client.conn.reject_identify(CloseCode.RATE_LIMITED)


def test_identify_concurrency_limit_answers_op9_false_and_allows_a_new_identify():
    client = ScriptedClient()
    client.identify()
    assert client.payloads(client.conn.identify_rate_limited()) == [
        {"t": None, "s": None, "op": 9, "d": False}
    ]
    assert client.conn.state is ConnectionState.AWAITING_IDENTIFY
    client.identify()


def test_second_identify_closes_4005_while_pending_and_when_ready():
    pending = ScriptedClient()
    pending.identify()
    assert close_of(pending.send({"op": 2, "d": IDENTIFY_D})).code == 4005

    ready = ScriptedClient()
    ready.ready()
    close = close_of(ready.send({"op": 2, "d": IDENTIFY_D}))
    assert (close.code, close.reason) == (4005, "Already authenticated")
    assert close.session_resumable is True


def test_resume_on_an_identified_connection_closes_4005():
    client = ScriptedClient()
    client.ready()
    resume = {"op": 6, "d": {"token": "t", "session_id": "session-1", "seq": 1}}
    assert close_of(client.send(resume)).code == 4005


@pytest.mark.parametrize(
    "payload",
    [
        {"op": 3, "d": {"status": "online", "activities": [], "since": None, "afk": False}},
        {
            "op": 4,
            "d": {"guild_id": "1", "channel_id": None, "self_mute": False, "self_deaf": False},
        },
        {"op": 8, "d": {"guild_id": "1", "query": "", "limit": 0}},
        {"op": 31, "d": {"guild_ids": ["1"]}},
    ],
)
def test_client_events_before_identify_close_4003(payload):
    client = ScriptedClient()
    close = close_of(client.send(payload))
    assert (close.code, close.reason) == (4003, "Not authenticated")


def test_client_event_while_identify_is_pending_closes_4003():
    client = ScriptedClient()
    client.identify()
    payload = {"op": 3, "d": {"status": "online", "activities": [], "since": None, "afk": False}}
    assert close_of(client.send(payload)).code == 4003


@pytest.mark.parametrize(
    "intents",
    [1 << 17, -1, 1 << 40, "513", True, None, 513.0, (1 << 26) | 1],
)
def test_invalid_intents_close_4013(intents):
    client = ScriptedClient()
    d = {**IDENTIFY_D, "intents": intents}
    if intents is None:
        del d["intents"]
    close = close_of(client.send({"op": 2, "d": d}))
    assert (close.code, close.reason) == (4013, "Invalid intent(s)")


def test_every_defined_intent_is_accepted():
    client = ScriptedClient()
    every = 0
    for flag in Intents:
        every |= int(flag)
    assert client.identify(intents=every).intents == every == ((1 << 17) - 1) | 3 << 20 | 3 << 24


@pytest.mark.parametrize("shard", [[1, 1], [-1, 2], [0, 0], [0], [0, 1, 2], ["0", "1"], "0,1"])
def test_invalid_shard_closes_4010(shard):
    client = ScriptedClient()
    close = close_of(client.send({"op": 2, "d": {**IDENTIFY_D, "shard": shard}}))
    assert (close.code, close.reason) == (4010, "Invalid shard")


@pytest.mark.parametrize(
    "d",
    [
        None,
        [],
        {"intents": 513, "properties": {}},
        {**IDENTIFY_D, "token": 5},
        {**IDENTIFY_D, "properties": "linux"},
        {**IDENTIFY_D, "presence": "online"},
        {**IDENTIFY_D, "large_threshold": "big"},
        {**IDENTIFY_D, "compress": 1},
    ],
)
def test_malformed_identify_closes_4001(d):
    client = ScriptedClient()
    assert close_of(client.send({"op": 2, "d": d})).code == 4001


# -- events from a ready client ----------------------------------------------------------


def test_presence_update_becomes_an_event():
    client = ScriptedClient()
    client.ready()
    d = {"status": "dnd", "activities": [{"name": "x", "type": 0}], "since": 5, "afk": True}
    assert client.send({"op": 3, "d": d}) == [
        PresenceUpdateRequested(status="dnd", activities=d["activities"], since=5, afk=True)
    ]


def test_request_guild_members_becomes_an_event_with_int_snowflakes():
    client = ScriptedClient()
    client.ready(intents=513 | Intents.GUILD_MEMBERS)
    d = {"guild_id": "333", "user_ids": ["1", 2], "presences": True, "nonce": "n" * 32}
    [event] = client.send({"op": 8, "d": d})
    assert event == GuildMembersRequested(
        guild_id=333, user_ids=(1, 2), presences=False, nonce="n" * 32, limit=0
    )  # presences forced false without GUILD_PRESENCES, as Discord does
    d = {"guild_id": 333, "query": "al", "limit": 10, "nonce": "n" * 33}
    [event] = client.send({"op": 8, "d": d})
    assert (event.query, event.limit, event.nonce, event.user_ids) == ("al", 10, None, None)


def test_voice_state_and_soundboard_requests_become_events():
    client = ScriptedClient()
    client.ready()
    d = {"guild_id": "333", "channel_id": "9", "self_mute": True, "self_deaf": False}
    assert client.send({"op": 4, "d": d}) == [VoiceStateUpdateRequested(333, 9, True, False)]
    assert client.send({"op": 31, "d": {"guild_ids": ["333", 4]}}) == [
        SoundboardSoundsRequested((333, 4))
    ]


@pytest.mark.parametrize(
    "payload",
    [
        {"op": 3, "d": {"status": "sleeping", "activities": []}},
        {"op": 3, "d": {"status": "online", "activities": "none"}},
        {"op": 3, "d": {"status": "online", "afk": "no"}},
        {"op": 3, "d": "online"},
        {"op": 8, "d": {"guild_id": "333"}},
        {"op": 8, "d": {"guild_id": "333", "query": "a"}},
        {"op": 8, "d": {"guild_id": "x", "query": "", "limit": 0}},
        {"op": 8, "d": {"guild_id": "333", "query": "", "limit": -1}},
        {"op": 8, "d": {"guild_id": "333", "query": "", "limit": 0, "user_ids": ["1"]}},
        {"op": 8, "d": {"guild_id": str(1 << 64), "user_ids": ["1"]}},
        {"op": 4, "d": {"guild_id": "1", "channel_id": None}},
        {"op": 31, "d": {"guild_ids": "1"}},
    ],
)
def test_invalid_payload_for_an_opcode_closes_4001(payload):
    client = ScriptedClient()
    client.ready()
    close = close_of(client.send(payload))
    assert (close.code, close.reason) == (4001, "Unknown opcode")


# -- opcodes and decoding ----------------------------------------------------------------


@pytest.mark.parametrize("op", [0, 5, 7, 9, 10, 11, 12, 99, -1, 1 << 70])
def test_unknown_or_server_only_opcode_closes_4001(op):
    client = ScriptedClient()
    close = close_of(client.send({"op": op, "d": None}))
    assert (close.code, close.reason) == (4001, "Unknown opcode")


@pytest.mark.parametrize(
    "raw",
    [
        "{",
        "not json",
        '{"op": 1, "d": null',
        '{"op": NaN}',
        '{"op": 1, "d": 1e999}',
        b"\xff\xfe\x00",
        '{"op": 1, "d": "\\ud800"}',
        "[" * 3000,
        "",
    ],
)
def test_invalid_json_closes_4002(raw):
    client = ScriptedClient()
    close = close_of(client.send(raw))
    assert (close.code, close.reason) == (4002, "Decode error")


@pytest.mark.parametrize(
    "payload", [[1, 2], "op", 7, None, {"d": None}, {"op": "1"}, {"op": 1.0}, {"op": True}]
)
def test_wrong_shape_closes_4002(payload):
    client = ScriptedClient()
    assert close_of(client.send(json.dumps(payload))).code == 4002


def test_payload_over_4096_bytes_closes_4002_and_4096_is_accepted():
    client = ScriptedClient()
    filler = "x" * (4096 - len(json.dumps({"op": 1, "d": None, "pad": ""})))
    exact = json.dumps({"op": 1, "d": None, "pad": filler})
    assert len(exact.encode()) == 4096
    assert client.payloads(client.send(exact))[0]["op"] == 11
    close = close_of(client.send(json.dumps({"op": 1, "d": None, "pad": filler + "x"})))
    assert (close.code, close.reason) == (4002, "Decode error")
    assert "4097 bytes" in close.detail


def test_payload_size_counts_utf8_bytes_not_characters():
    client = ScriptedClient()
    filler = "é" * 2040  # 2040 characters, 4080 bytes: with the envelope, over 4096 bytes
    raw = json.dumps({"op": 1, "d": None, "p": filler}, ensure_ascii=False)
    assert len(raw) < 4096 < len(raw.encode())
    assert close_of(client.send(raw)).code == 4002
    assert close_of(ScriptedClient().send(raw.encode())).code == 4002


def test_nothing_is_processed_after_a_close():
    client = ScriptedClient()
    close_of(client.send("{"))
    assert client.send({"op": 1, "d": None}) == []
    assert client.conn.on_timer(1e9) == []


# -- rate limit --------------------------------------------------------------------------


def test_121st_event_in_60_seconds_closes_4008_and_heartbeats_count():
    client = ScriptedClient()
    client.ready()
    presence = {"op": 3, "d": {"status": "online", "activities": [], "since": None, "afk": False}}
    for i in range(118):  # with the IDENTIFY, 119 events
        [event] = client.send(presence, at=1.0 + i * 0.1)
        assert isinstance(event, PresenceUpdateRequested)
    assert client.payloads(client.send({"op": 1, "d": 3}, at=30.0))[0]["op"] == 11  # 120th
    close = close_of(client.send({"op": 1, "d": 3}, at=30.5))  # 121st
    assert (close.code, close.reason) == (4008, "Rate limited")
    assert close.session_resumable is True


def test_rate_limit_window_resets_after_60_seconds():
    client = ScriptedClient()
    for i in range(120):
        client.send({"op": 1, "d": None}, at=1.0 + i * 0.01)
    # the window opened at t=1.0 by the first event; at t=61.0 a new one starts
    assert client.payloads(client.send({"op": 1, "d": None}, at=61.0))[0]["op"] == 11
    for i in range(119):
        client.send({"op": 1, "d": None}, at=61.0 + i * 0.01)
    assert close_of(client.send({"op": 1, "d": None}, at=62.0)).code == 4008


# -- connection URL ----------------------------------------------------------------------


@pytest.mark.parametrize("url", ["/?v=9&encoding=json", "/?v=11", "/?v=abc", "/?v=", "/?v=010"])
def test_api_version_other_than_10_closes_4012_instead_of_hello(url):
    client = ScriptedClient(url)
    close = close_of(client.start_effects)
    assert (close.code, close.reason) == (4012, "Invalid API version")
    assert len(client.start_effects) == 1


def test_unsupported_encoding_closes_4002():
    client = ScriptedClient("/?v=10&encoding=etf")
    assert close_of(client.start_effects).code == 4002


def test_connection_misuse_raises_for_the_layer_above():
    client = ScriptedClient()
    with pytest.raises(ProtocolUsageError):
        client.conn.start(0.0)
    with pytest.raises(ProtocolUsageError):
        client.conn.identified(
            session_id="x", user=BOT_USER, guilds=[], application=APPLICATION,
            resume_gateway_url="ws://x",
        )  # fmt: skip
    with pytest.raises(ProtocolUsageError):
        client.conn.dispatch_event("MESSAGE_CREATE", {})
