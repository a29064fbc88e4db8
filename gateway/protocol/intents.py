"""Gateway intents: which dispatches a session asked for, and the MESSAGE_CONTENT rule.

Fan-out calls ``event_allowed`` once per recipient, so it is a dict lookup and a bit test.
For message events the fan-out prepares at most two encodings of a payload — the full one
and ``redact_message_content(message)`` — and picks per recipient with
``message_content_visible``; encode-once still holds.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import IntFlag
from typing import Any

from storage import applications


class Intents(IntFlag):
    GUILDS = 1 << 0
    GUILD_MEMBERS = 1 << 1
    GUILD_MODERATION = 1 << 2
    GUILD_EXPRESSIONS = 1 << 3
    GUILD_INTEGRATIONS = 1 << 4
    GUILD_WEBHOOKS = 1 << 5
    GUILD_INVITES = 1 << 6
    GUILD_VOICE_STATES = 1 << 7
    GUILD_PRESENCES = 1 << 8
    GUILD_MESSAGES = 1 << 9
    GUILD_MESSAGE_REACTIONS = 1 << 10
    GUILD_MESSAGE_TYPING = 1 << 11
    DIRECT_MESSAGES = 1 << 12
    DIRECT_MESSAGE_REACTIONS = 1 << 13
    DIRECT_MESSAGE_TYPING = 1 << 14
    MESSAGE_CONTENT = 1 << 15
    GUILD_SCHEDULED_EVENTS = 1 << 16
    AUTO_MODERATION_CONFIGURATION = 1 << 20
    AUTO_MODERATION_EXECUTION = 1 << 21
    GUILD_MESSAGE_POLLS = 1 << 24
    DIRECT_MESSAGE_POLLS = 1 << 25


GUILDS = int(Intents.GUILDS)
GUILD_MEMBERS = int(Intents.GUILD_MEMBERS)
GUILD_PRESENCES = int(Intents.GUILD_PRESENCES)
GUILD_MESSAGES = int(Intents.GUILD_MESSAGES)
GUILD_MESSAGE_TYPING = int(Intents.GUILD_MESSAGE_TYPING)
MESSAGE_CONTENT = int(Intents.MESSAGE_CONTENT)

#: Every defined bit; IDENTIFY with any other bit set is closed with 4013.
ALL_INTENTS: int = sum(int(flag) for flag in Intents)

#: Intents an application must be granted (4014 otherwise); the session layer knows grants.
PRIVILEGED_INTENTS: int = GUILD_MEMBERS | GUILD_PRESENCES | MESSAGE_CONTENT

#: Each privileged intent and the application flags that allow it (the flag, or its
#: _LIMITED form: an application in fewer than 100 servers, allowed all the same).
_ALLOWED_BY: tuple[tuple[int, int], ...] = (
    (GUILD_PRESENCES, applications.GATEWAY_PRESENCE | applications.GATEWAY_PRESENCE_LIMITED),
    (GUILD_MEMBERS,
     applications.GATEWAY_GUILD_MEMBERS | applications.GATEWAY_GUILD_MEMBERS_LIMITED),
    (MESSAGE_CONTENT,
     applications.GATEWAY_MESSAGE_CONTENT | applications.GATEWAY_MESSAGE_CONTENT_LIMITED),
)


def disallowed_intents(intents: int, application_flags: int) -> int:
    """The privileged intents in ``intents`` that the application's flags do not allow
    (0: none). A bot's IDENTIFY asking for any is closed with 4014."""
    refused = 0
    for intent, flags in _ALLOWED_BY:
        if intents & intent and not application_flags & flags:
            refused |= intent
    return refused


def intents_valid(value: object) -> bool:
    """True for an integer made only of defined intent bits (bool is not an integer here)."""
    return type(value) is int and 0 <= value and value & ~ALL_INTENTS == 0


_I = Intents
# event name -> (mask when the event is about a guild, mask when it is about a DM).
# From the intents list in gateway.mdx; an event missing here is sent regardless of intents.
_EVENT_MASKS: dict[str, tuple[int, int]] = {}


def _register(mask_guild: int, mask_dm: int, *names: str) -> None:
    for name in names:
        _EVENT_MASKS[name] = (int(mask_guild), int(mask_dm))


_register(
    _I.GUILDS,
    _I.GUILDS,
    "GUILD_CREATE", "GUILD_UPDATE", "GUILD_DELETE",
    "GUILD_ROLE_CREATE", "GUILD_ROLE_UPDATE", "GUILD_ROLE_DELETE",
    "THREAD_CREATE", "THREAD_UPDATE", "THREAD_DELETE", "THREAD_LIST_SYNC",
    "THREAD_MEMBER_UPDATE", "THREAD_MEMBERS_UPDATE",
    "STAGE_INSTANCE_CREATE", "STAGE_INSTANCE_UPDATE", "STAGE_INSTANCE_DELETE",
    "VOICE_CHANNEL_STATUS_UPDATE", "VOICE_CHANNEL_START_TIME_UPDATE",
)  # fmt: skip
_register(_I.GUILDS, _I.DIRECT_MESSAGES, "CHANNEL_PINS_UPDATE")
# A DM channel's own events go with its messages (Discord sends bots none; a user's
# client hears of a new DM: gateway/rest/dms.py).
_register(_I.GUILDS, _I.DIRECT_MESSAGES, "CHANNEL_CREATE", "CHANNEL_UPDATE", "CHANNEL_DELETE")
_register(
    _I.GUILD_MEMBERS, _I.GUILD_MEMBERS,
    "GUILD_MEMBER_ADD", "GUILD_MEMBER_UPDATE", "GUILD_MEMBER_REMOVE",
)  # fmt: skip
_register(
    _I.GUILD_MODERATION, _I.GUILD_MODERATION,
    "GUILD_AUDIT_LOG_ENTRY_CREATE", "GUILD_BAN_ADD", "GUILD_BAN_REMOVE",
)  # fmt: skip
_register(
    _I.GUILD_EXPRESSIONS, _I.GUILD_EXPRESSIONS,
    "GUILD_EMOJIS_UPDATE", "GUILD_STICKERS_UPDATE",
    "GUILD_SOUNDBOARD_SOUND_CREATE", "GUILD_SOUNDBOARD_SOUND_UPDATE",
    "GUILD_SOUNDBOARD_SOUND_DELETE", "GUILD_SOUNDBOARD_SOUNDS_UPDATE",
)  # fmt: skip
_register(
    _I.GUILD_INTEGRATIONS, _I.GUILD_INTEGRATIONS,
    "GUILD_INTEGRATIONS_UPDATE", "INTEGRATION_CREATE", "INTEGRATION_UPDATE", "INTEGRATION_DELETE",
)  # fmt: skip
_register(_I.GUILD_WEBHOOKS, _I.GUILD_WEBHOOKS, "WEBHOOKS_UPDATE")
_register(_I.GUILD_INVITES, _I.GUILD_INVITES, "INVITE_CREATE", "INVITE_DELETE")
_register(
    _I.GUILD_VOICE_STATES, _I.GUILD_VOICE_STATES, "VOICE_CHANNEL_EFFECT_SEND", "VOICE_STATE_UPDATE"
)
_register(_I.GUILD_PRESENCES, _I.GUILD_PRESENCES, "PRESENCE_UPDATE")
_register(
    _I.GUILD_MESSAGES, _I.DIRECT_MESSAGES,
    "MESSAGE_CREATE", "MESSAGE_UPDATE", "MESSAGE_DELETE",
)  # fmt: skip
_register(_I.GUILD_MESSAGES, _I.GUILD_MESSAGES, "MESSAGE_DELETE_BULK")
_register(
    _I.GUILD_MESSAGE_REACTIONS, _I.DIRECT_MESSAGE_REACTIONS,
    "MESSAGE_REACTION_ADD", "MESSAGE_REACTION_REMOVE",
    "MESSAGE_REACTION_REMOVE_ALL", "MESSAGE_REACTION_REMOVE_EMOJI",
)  # fmt: skip
_register(_I.GUILD_MESSAGE_TYPING, _I.DIRECT_MESSAGE_TYPING, "TYPING_START")
_register(
    _I.GUILD_SCHEDULED_EVENTS, _I.GUILD_SCHEDULED_EVENTS,
    "GUILD_SCHEDULED_EVENT_CREATE", "GUILD_SCHEDULED_EVENT_UPDATE", "GUILD_SCHEDULED_EVENT_DELETE",
    "GUILD_SCHEDULED_EVENT_USER_ADD", "GUILD_SCHEDULED_EVENT_USER_REMOVE",
)  # fmt: skip
_register(
    _I.AUTO_MODERATION_CONFIGURATION, _I.AUTO_MODERATION_CONFIGURATION,
    "AUTO_MODERATION_RULE_CREATE", "AUTO_MODERATION_RULE_UPDATE", "AUTO_MODERATION_RULE_DELETE",
)  # fmt: skip
_register(
    _I.AUTO_MODERATION_EXECUTION, _I.AUTO_MODERATION_EXECUTION, "AUTO_MODERATION_ACTION_EXECUTION"
)
_register(
    _I.GUILD_MESSAGE_POLLS, _I.DIRECT_MESSAGE_POLLS,
    "MESSAGE_POLL_VOTE_ADD", "MESSAGE_POLL_VOTE_REMOVE",
)  # fmt: skip


def event_allowed(intents: int, event_name: str, *, direct_message: bool = False) -> bool:
    """Whether a session identified with ``intents`` receives dispatch ``event_name``.

    ``direct_message`` selects the DM intent for events that exist in both worlds
    (MESSAGE_CREATE needs GUILD_MESSAGES in a guild, DIRECT_MESSAGES in a DM). Events
    not tied to an intent (READY, RESUMED, USER_UPDATE, GUILD_MEMBERS_CHUNK, ...) are
    always allowed. Discord also sends GUILD_MEMBER_UPDATE about the session's own user
    without GUILD_MEMBERS; that case is the caller's, who knows whose member it is.
    """
    masks = _EVENT_MASKS.get(event_name)
    if masks is None:
        return True
    return intents & masks[direct_message] != 0


#: Message fields that carry user-written content, and how each is emptied.
CONTENT_FIELDS: dict[str, type] = {
    "content": str,
    "embeds": list,
    "attachments": list,
    "components": list,
}


def message_content_visible(
    intents: int, message: Mapping[str, Any], *, user_id: int | str, direct_message: bool
) -> bool:
    """The MESSAGE_CONTENT rule: may this session see the message's content fields?

    Without the intent a session still sees content in DMs, in messages it sent, and in
    messages that mention its user (gateway.mdx, "Message Content Intent").
    """
    if intents & MESSAGE_CONTENT or direct_message:
        return True
    me = str(user_id)
    author = message.get("author")
    if isinstance(author, Mapping) and str(author.get("id")) == me:
        return True
    for mentioned in message.get("mentions") or ():
        if isinstance(mentioned, Mapping) and str(mentioned.get("id")) == me:
            return True
    return False


def redact_message_content(message: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a message object with its content fields emptied (and any poll
    removed), those of the message it replies to (``referenced_message``) too: a reply
    must not show a session the content it may not read."""
    redacted = dict(message)
    for field, empty in CONTENT_FIELDS.items():
        if field in redacted:
            redacted[field] = empty()
    redacted.pop("poll", None)
    referenced = redacted.get("referenced_message")
    if isinstance(referenced, Mapping):
        redacted["referenced_message"] = redact_message_content(referenced)
    return redacted
