"""Intents, the MESSAGE_CONTENT rule, payload builders and URL parsing."""

from __future__ import annotations

import pytest

from gateway.protocol import (
    Encoding,
    Intents,
    build_guild_create,
    build_ready,
    event_allowed,
    intents_valid,
    message_content_visible,
    parse_connection_url,
    redact_message_content,
)
from gateway.protocol.intents import (
    GUILD_MEMBERS,
    GUILD_MESSAGE_TYPING,
    GUILD_MESSAGES,
    GUILD_PRESENCES,
    GUILDS,
    MESSAGE_CONTENT,
    PRIVILEGED_INTENTS,
)


def test_intent_bit_values_match_discord():
    assert (GUILDS, GUILD_MEMBERS, GUILD_PRESENCES) == (1, 2, 256)
    assert (GUILD_MESSAGES, GUILD_MESSAGE_TYPING, MESSAGE_CONTENT) == (512, 2048, 32768)
    assert Intents.DIRECT_MESSAGES == 1 << 12 and Intents.DIRECT_MESSAGE_POLLS == 1 << 25
    assert PRIVILEGED_INTENTS == GUILD_MEMBERS | GUILD_PRESENCES | MESSAGE_CONTENT


@pytest.mark.parametrize(
    ("value", "valid"),
    [(0, True), (513, True), (1 << 25, True), (1 << 17, False), (1 << 22, False),
     (-1, False), (True, False), ("1", False), (None, False)],
)  # fmt: skip
def test_intents_valid(value, valid):
    assert intents_valid(value) is valid


@pytest.mark.parametrize(
    ("intents", "event", "dm", "allowed"),
    [
        (GUILD_MESSAGES, "MESSAGE_CREATE", False, True),
        (GUILDS, "MESSAGE_CREATE", False, False),
        (GUILD_MESSAGES, "MESSAGE_CREATE", True, False),
        (int(Intents.DIRECT_MESSAGES), "MESSAGE_CREATE", True, True),
        (GUILD_MESSAGES, "MESSAGE_UPDATE", False, True),
        (GUILD_MESSAGES, "MESSAGE_DELETE", False, True),
        (GUILD_MESSAGE_TYPING, "TYPING_START", False, True),
        (GUILD_MESSAGES, "TYPING_START", False, False),
        (int(Intents.DIRECT_MESSAGE_TYPING), "TYPING_START", True, True),
        (GUILD_PRESENCES, "PRESENCE_UPDATE", False, True),
        (GUILDS, "PRESENCE_UPDATE", False, False),
        (GUILD_MEMBERS, "GUILD_MEMBER_ADD", False, True),
        (GUILD_MEMBERS, "GUILD_MEMBER_REMOVE", False, True),
        (GUILDS, "GUILD_MEMBER_ADD", False, False),
        (GUILDS, "CHANNEL_CREATE", False, True),
        (0, "CHANNEL_CREATE", False, False),
        (GUILDS, "CHANNEL_PINS_UPDATE", True, False),
        (0, "READY", False, True),
        (0, "RESUMED", False, True),
        (0, "GUILD_MEMBERS_CHUNK", False, True),
        (0, "INTERACTION_CREATE", False, True),
        (MESSAGE_CONTENT, "MESSAGE_CREATE", False, False),
    ],
)
def test_event_allowed(intents, event, dm, allowed):
    assert event_allowed(intents, event, direct_message=dm) is allowed


MESSAGE = {
    "id": "1",
    "channel_id": "5",
    "author": {"id": "42"},
    "content": "secret plans",
    "embeds": [{"title": "t"}],
    "attachments": [{"id": "9"}],
    "components": [{"type": 1}],
    "poll": {"question": {"text": "?"}},
    "mentions": [{"id": "7"}],
}


@pytest.mark.parametrize(
    ("intents", "user_id", "dm", "visible"),
    [
        (GUILD_MESSAGES | MESSAGE_CONTENT, 100, False, True),
        (GUILD_MESSAGES, 100, False, False),  # a guild message, not ours, no mention
        (GUILD_MESSAGES, 100, True, True),  # DMs keep their content
        (GUILD_MESSAGES, 42, False, True),  # our own message
        (GUILD_MESSAGES, "42", False, True),
        (GUILD_MESSAGES, 7, False, True),  # we are mentioned
    ],
)
def test_message_content_rule(intents, user_id, dm, visible):
    assert message_content_visible(intents, MESSAGE, user_id=user_id, direct_message=dm) is visible


def test_redaction_empties_content_fields_and_keeps_the_rest():
    redacted = redact_message_content(MESSAGE)
    assert redacted["content"] == ""
    assert redacted["embeds"] == redacted["attachments"] == redacted["components"] == []
    assert "poll" not in redacted
    assert (redacted["id"], redacted["author"], redacted["mentions"]) == (
        "1",
        {"id": "42"},
        [{"id": "7"}],
    )
    assert MESSAGE["content"] == "secret plans"  # the original is untouched


def test_build_ready_stringifies_snowflakes():
    ready = build_ready(
        session_id="s",
        user={"id": 10, "username": "u", "global_name": "U", "verified": True},
        guild_ids=[1, "2"],
        application={"id": 3, "flags": 8},
        resume_gateway_url="ws://r",
        shard=(0, 2),
    )
    assert ready["user"]["id"] == "10" and ready["user"]["verified"] is True
    assert ready["user"]["global_name"] == "U"
    assert ready["guilds"] == [{"id": "1", "unavailable": True}, {"id": "2", "unavailable": True}]
    assert ready["application"] == {"id": "3", "flags": 8}
    assert ready["shard"] == [0, 2]


def test_build_guild_create_defaults_and_large():
    guild = {"id": 5, "name": "g", "owner_id": 6, "member_count": 300, "system_channel_id": 7}
    out = build_guild_create(
        guild, intents=GUILDS | GUILD_PRESENCES, user_id=1, large_threshold=250
    )
    assert (out["id"], out["owner_id"], out["system_channel_id"]) == ("5", "6", "7")
    assert out["large"] is True and out["unavailable"] is False
    assert out["channels"] == [] and out["features"] == [] and out["afk_timeout"] == 300
    with pytest.raises(KeyError):
        build_guild_create({"id": 5, "name": "g"}, intents=GUILDS, user_id=1)


@pytest.mark.parametrize(
    ("url", "encoding", "zlib", "close"),
    [
        ("/?v=10&encoding=json", Encoding.JSON, False, None),
        ("wss://h:1/gw?v=10&encoding=msgpack&compress=zlib-stream", Encoding.MSGPACK, True, None),
        ("v=10&encoding=json&compress=zlib-stream", Encoding.JSON, True, None),
        ("/", Encoding.JSON, False, None),
        ("/?encoding=json", Encoding.JSON, False, None),
        ("/?v=6", Encoding.JSON, False, 4012),
        ("/?v=%D9%A1%D9%A0", Encoding.JSON, False, 4012),  # Arabic-Indic "10"
        ("/?v=10&encoding=etf", Encoding.JSON, False, 4002),
    ],
)
def test_parse_connection_url(url, encoding, zlib, close):
    params = parse_connection_url(url)
    assert (params.encoding, params.zlib_stream, params.close_code) == (encoding, zlib, close)
