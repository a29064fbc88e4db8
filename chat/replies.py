"""Replies: a message's ``message_reference`` to an earlier message of its channel.

Discord (message.mdx, "Message Reference" and Create Message's "Limitations"): a reply
names the message it answers by ``message_id`` (``channel_id`` and ``guild_id`` are
optional when sending and must be the reply's own: a reply stays in its channel); the
author needs READ_MESSAGE_HISTORY (160002 otherwise); the message must exist — unless
``fail_if_not_exists`` is false, when the message is sent as an ordinary one — and
must not be a system message. The reply is type 19 (REPLY) and carries the full
``message_reference`` (``type`` 0, ``message_id``, ``channel_id``, ``guild_id``) and
``referenced_message``, the message answered as it was when the reply was sent
(without its own ``referenced_message``: no chains).

Forwards (``type`` 1) are not supported: refused with the field named.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from chat.validation import FieldError
from storage.model import Message
from storage.snowflake import parse_snowflake

REPLY = 19  # the message type of a reply
#: message types a reply may answer: the rest are system messages
REPLYABLE_TYPES = frozenset({0, 19, 20, 23})
#: Discord's JSON error code when the author may not read the channel's history
CANNOT_REPLY_WITHOUT_HISTORY = 160002
FIELD = "message_reference"


@dataclass(frozen=True, slots=True)
class ReplyTo:
    """A checked ``message_reference`` of a message being sent."""

    message_id: int
    fail_if_not_exists: bool = True


def check_reference(value: Any, *, channel_id: int, guild_id: int | None
                    ) -> tuple[ReplyTo | None, FieldError | None]:
    """The reply a body's ``message_reference`` asks for (None if absent or null), or
    its problem, with Discord's field path."""
    if value is None:
        return None, None
    if not isinstance(value, dict):
        return None, FieldError(FIELD, "DICT_TYPE_CONVERT",
                                "Only dictionaries may be used in a DictType.")
    kind = value.get("type", 0)
    if kind is not None and kind != 0:
        return None, FieldError(f"{FIELD}.type", "BASE_TYPE_CHOICES",
                                "Value must be one of (0,): only replies are supported.")
    message_id = parse_snowflake(value.get("message_id"))
    if message_id is None:
        if value.get("message_id") is None:
            return None, FieldError(f"{FIELD}.message_id", "BASE_TYPE_REQUIRED",
                                    "This field is required")
        return None, FieldError(f"{FIELD}.message_id", "NUMBER_TYPE_COERCE",
                                f"Value \"{str(value.get('message_id'))[:32]}\" "
                                "is not snowflake.")
    fail = value.get("fail_if_not_exists", True)
    if fail is None:
        fail = True
    if not isinstance(fail, bool):
        return None, FieldError(f"{FIELD}.fail_if_not_exists", "BASE_TYPE_BOOLEAN",
                                "Must be either true or false.")
    for key, own in (("channel_id", channel_id), ("guild_id", guild_id)):
        raw = value.get(key)
        if raw is None:
            continue
        named = parse_snowflake(raw)
        if named is None:
            return None, FieldError(f"{FIELD}.{key}", "NUMBER_TYPE_COERCE",
                                    f"Value \"{str(raw)[:32]}\" is not snowflake.")
        if named != own:  # another channel's message: not one this reply can answer
            return None, FieldError(FIELD, "MESSAGE_REFERENCE_UNKNOWN_MESSAGE",
                                    "Unknown message")
    return ReplyTo(message_id, fail), None


def unknown_message() -> FieldError:
    """Discord's answer to a reply whose message does not exist (fail_if_not_exists)."""
    return FieldError(FIELD, "MESSAGE_REFERENCE_UNKNOWN_MESSAGE", "Unknown message")


def check_replyable(message: Message) -> FieldError | None:
    """Whether ``message`` may be replied to (not a system message)."""
    if message.type in REPLYABLE_TYPES:
        return None
    return FieldError(FIELD, "REPLIES_CANNOT_REPLY_TO_SYSTEM_MESSAGE",
                      "Cannot reply to a system message")


def reference_object(message: Message) -> dict[str, Any]:
    """The ``message_reference`` a reply to ``message`` carries."""
    out: dict[str, Any] = {"type": 0, "message_id": str(message.id),
                           "channel_id": str(message.channel_id)}
    if message.guild_id is not None:
        out["guild_id"] = str(message.guild_id)
    return out


def replied_id(message: Message) -> int | None:
    """The id of the message ``message`` replies to (None: not a reply). A read shows
    that message as it is now (``referenced_message``: its edits, null once deleted,
    as Discord does), not the snapshot taken when the reply was sent."""
    if "referenced_message" not in message.extra:
        return None
    reference = message.extra.get("message_reference")
    return parse_snowflake(reference.get("message_id")) if isinstance(reference, dict) \
        else None


def referenced_snapshot(payload: dict[str, Any]) -> dict[str, Any]:
    """The answered message's object as a reply's ``referenced_message``: without its
    own ``referenced_message`` (no chains) nor gateway-only ``member``."""
    return {k: v for k, v in payload.items() if k not in ("referenced_message", "member")}
