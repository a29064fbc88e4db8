"""chat.replies: message_reference's form, what may be replied to, the reply's objects."""

from __future__ import annotations

import pytest

from chat.replies import (
    ReplyTo,
    check_reference,
    check_replyable,
    reference_object,
    referenced_snapshot,
)
from storage.model import Message

CHANNEL, GUILD = 1000, 900


def check(value: object):
    return check_reference(value, channel_id=CHANNEL, guild_id=GUILD)


def test_a_reply_needs_only_the_message_id() -> None:
    assert check(None) == (None, None)
    assert check({"message_id": "1234"}) == (ReplyTo(1234, True), None)
    assert check({"message_id": 1234, "channel_id": str(CHANNEL), "guild_id": GUILD,
                  "fail_if_not_exists": False, "type": 0}) == (ReplyTo(1234, False), None)
    assert check({"message_id": "1234", "fail_if_not_exists": None}) == (ReplyTo(1234), None)


@pytest.mark.parametrize(("value", "path", "code"), [
    ([], "message_reference", "DICT_TYPE_CONVERT"),
    ({}, "message_reference.message_id", "BASE_TYPE_REQUIRED"),
    ({"message_id": "12x"}, "message_reference.message_id", "NUMBER_TYPE_COERCE"),
    ({"message_id": "12", "type": 1}, "message_reference.type", "BASE_TYPE_CHOICES"),
    ({"message_id": "12", "fail_if_not_exists": "no"},
     "message_reference.fail_if_not_exists", "BASE_TYPE_BOOLEAN"),
    ({"message_id": "12", "channel_id": "+1000"}, "message_reference.channel_id",
     "NUMBER_TYPE_COERCE"),
    ({"message_id": "12", "channel_id": "1001"}, "message_reference",
     "MESSAGE_REFERENCE_UNKNOWN_MESSAGE"),
    ({"message_id": "12", "guild_id": "901"}, "message_reference",
     "MESSAGE_REFERENCE_UNKNOWN_MESSAGE"),
])
def test_reference_problems(value: object, path: str, code: str) -> None:
    reply, problem = check(value)
    assert reply is None and problem is not None
    assert (problem.field, problem.code) == (path, code)


def test_system_messages_cannot_be_replied_to() -> None:
    for kind in (0, 19, 20, 23):
        assert check_replyable(Message(CHANNEL, 5000, 7, "x", GUILD, type=kind)) is None
    problem = check_replyable(Message(CHANNEL, 5000, 7, "", GUILD, type=7))  # USER_JOIN
    assert problem is not None and problem.code == "REPLIES_CANNOT_REPLY_TO_SYSTEM_MESSAGE"


def test_reference_and_snapshot_objects() -> None:
    answered = Message(CHANNEL, 5000, 7, "x", GUILD)
    assert reference_object(answered) == {"type": 0, "message_id": "5000",
                                          "channel_id": str(CHANNEL), "guild_id": str(GUILD)}
    assert "guild_id" not in reference_object(Message(CHANNEL, 5000, 7, "x"))
    payload = {"id": "5000", "content": "x", "member": {}, "referenced_message": {"id": "1"}}
    assert referenced_snapshot(payload) == {"id": "5000", "content": "x"}
