"""Validate the ``d`` of each client opcode and turn it into an event.

A malformed ``d`` for a known opcode closes with 4001: Discord's table defines 4001 as
"an invalid Gateway opcode or an invalid payload for an opcode", and its gateway answers
e.g. a presence update missing a field that way. IDENTIFY has its own codes for bad
intents (4013) and a bad shard (4010), and an empty token is 4004 like a wrong one.
Snowflakes may arrive as integers or strings of digits (libraries send both), parsed by
``storage.snowflake.parse_snowflake`` (canonical decimal below 2**63, as REST reads
them); one that is not is a malformed payload (4001), never an id nothing answers for.
Events carry them as ints.

Activities (op 3 and IDENTIFY's ``presence``) are broadcast to every member who sees the
user's presence, so their size is bounded here: at most ``MAX_ACTIVITIES``, each with a
``name`` of 1..128 characters (Discord's limit) and ``state``/``details`` of at most 128;
a presence over that is refused (4001), not truncated: a client sees its mistake.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from storage.snowflake import parse_snowflake

from .close_codes import CloseCode
from .events import (
    GuildMembersRequested,
    GuildSubscribeRequested,
    IdentifyRequested,
    PresenceUpdateRequested,
    ResumeRequested,
    SoundboardSoundsRequested,
    VoiceStateUpdateRequested,
)
from .intents import GUILD_PRESENCES, intents_valid

STATUSES = frozenset({"online", "dnd", "idle", "invisible", "offline"})
LARGE_THRESHOLD_MIN, LARGE_THRESHOLD_MAX, LARGE_THRESHOLD_DEFAULT = 50, 250, 50
NONCE_MAX_BYTES = 32
#: Activities per presence; Discord shows one for a bot and a few for a user.
MAX_ACTIVITIES = 5
#: Characters in an activity's ``name``, ``state`` and ``details`` (Discord: 128).
ACTIVITY_TEXT_MAX = 128
#: Characters in an activity's ``url`` (a stream URL).
ACTIVITY_URL_MAX = 512


class InvalidPayload(Exception):
    """The payload must close the connection with ``code``."""

    def __init__(self, code: int, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


def _bad(detail: str, code: int = CloseCode.UNKNOWN_OPCODE) -> InvalidPayload:
    return InvalidPayload(code, detail)


def _is_int(value: object) -> bool:
    return type(value) is int


def _object(d: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(d, dict):
        raise _bad(f"{what}: d must be an object")
    return d


def snowflake(value: Any, what: str) -> int:
    """An id sent as an integer or a canonical string of digits, below 2**63."""
    number = parse_snowflake(value)
    if number is None:
        raise _bad(f"{what} is not a snowflake")
    return number


def _text(activity: Mapping[str, Any], key: str, limit: int, what: str) -> None:
    value = activity.get(key)
    if value is not None and (not isinstance(value, str) or len(value) > limit):
        raise _bad(f"{what}: activity {key} must be a string of at most {limit} characters")


def parse_activities(value: Any, what: str) -> list[dict[str, Any]]:
    """A presence's ``activities``: a list of at most ``MAX_ACTIVITIES`` objects, each
    with a ``name`` of 1..128 characters and an integer ``type``; null is no activity."""
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(a, dict) for a in value):
        raise _bad(f"{what}: activities must be a list of objects")
    if len(value) > MAX_ACTIVITIES:
        raise _bad(f"{what}: more than {MAX_ACTIVITIES} activities")
    for activity in value:
        name = activity.get("name")
        if not isinstance(name, str) or not 1 <= len(name) <= ACTIVITY_TEXT_MAX:
            raise _bad(f"{what}: activity name must be 1..{ACTIVITY_TEXT_MAX} characters")
        kind = activity.get("type", 0)
        if not _is_int(kind) or not 0 <= kind <= 6:
            raise _bad(f"{what}: activity type must be an integer 0..6")
        _text(activity, "state", ACTIVITY_TEXT_MAX, what)
        _text(activity, "details", ACTIVITY_TEXT_MAX, what)
        _text(activity, "url", ACTIVITY_URL_MAX, what)
    return value


def parse_heartbeat(d: Any) -> int | None:
    """Op 1: ``d`` is the last sequence number the client saw, or null."""
    if d is None or (_is_int(d) and d >= 0):
        return d
    raise _bad("heartbeat: d must be null or a sequence number")


def parse_identify(d: Any) -> IdentifyRequested:
    data = _object(d, "identify")
    token = data.get("token")
    if not isinstance(token, str):
        raise _bad("identify: token must be a string")
    if not token.strip():
        raise _bad("identify: empty token", CloseCode.AUTHENTICATION_FAILED)
    properties = data.get("properties")
    if not isinstance(properties, dict):
        raise _bad("identify: properties must be an object")
    intents = data.get("intents")
    if not intents_valid(intents):
        raise _bad(f"identify: invalid intents {intents!r}", CloseCode.INVALID_INTENTS)

    shard = data.get("shard")
    if shard is not None:
        if not (
            isinstance(shard, list)
            and len(shard) == 2
            and _is_int(shard[0])
            and _is_int(shard[1])
            and 0 <= shard[0] < shard[1]
        ):
            raise _bad(f"identify: invalid shard {shard!r}", CloseCode.INVALID_SHARD)
        shard = (shard[0], shard[1])

    presence = data.get("presence")
    if presence is not None:
        if not isinstance(presence, dict):
            raise _bad("identify: presence must be an object")
        status = presence.get("status")
        if status is not None and (not isinstance(status, str) or status not in STATUSES):
            raise _bad(f"identify: unknown presence status {status!r}")
        parse_activities(presence.get("activities"), "identify")

    threshold = data.get("large_threshold", LARGE_THRESHOLD_DEFAULT)
    if not _is_int(threshold):
        raise _bad("identify: large_threshold must be an integer")
    threshold = min(max(threshold, LARGE_THRESHOLD_MIN), LARGE_THRESHOLD_MAX)

    compress = data.get("compress", False)
    if not isinstance(compress, bool):
        raise _bad("identify: compress must be a boolean")

    return IdentifyRequested(
        token=token,
        intents=intents,
        properties=properties,
        shard=shard,
        presence=presence,
        large_threshold=threshold,
        compress=compress,
    )


def parse_resume(d: Any) -> ResumeRequested:
    data = _object(d, "resume")
    token = data.get("token")
    session_id = data.get("session_id")
    seq = data.get("seq")
    if not isinstance(token, str) or not isinstance(session_id, str):
        raise _bad("resume: token and session_id must be strings")
    if seq is None:
        seq = 0  # a client that saw no dispatch yet (libraries send their null sequence)
    elif not _is_int(seq) or seq < 0:
        raise _bad("resume: seq must be a sequence number")
    return ResumeRequested(token=token, session_id=session_id, seq=seq)


def parse_presence_update(d: Any) -> PresenceUpdateRequested:
    data = _object(d, "presence update")
    status = data.get("status")
    if not isinstance(status, str) or status not in STATUSES:  # a list is not hashable
        raise _bad(f"presence update: unknown status {status!r}")
    activities = parse_activities(data.get("activities", []), "presence update")
    since = data.get("since")
    if since is not None and not _is_int(since):
        raise _bad("presence update: since must be null or an integer")
    afk = data.get("afk", False)
    if not isinstance(afk, bool):
        raise _bad("presence update: afk must be a boolean")
    return PresenceUpdateRequested(status=status, activities=activities, since=since, afk=afk)


def parse_request_guild_members(d: Any, intents: int) -> GuildMembersRequested:
    data = _object(d, "request guild members")
    guild_id = snowflake(data.get("guild_id"), "request guild members: guild_id")
    query = data.get("query")
    raw_user_ids = data.get("user_ids")
    if (query is None) == (raw_user_ids is None):
        raise _bad("request guild members: send exactly one of query and user_ids")

    limit = data.get("limit", 0)
    if query is not None:
        if not isinstance(query, str):
            raise _bad("request guild members: query must be a string")
        if "limit" not in data:
            raise _bad("request guild members: limit is required with query")
    if not _is_int(limit) or limit < 0:
        raise _bad("request guild members: limit must be a non-negative integer")

    user_ids = None
    if raw_user_ids is not None:
        items = raw_user_ids if isinstance(raw_user_ids, list) else [raw_user_ids]
        user_ids = tuple(snowflake(i, "request guild members: user_ids") for i in items)

    presences = data.get("presences", False)
    if not isinstance(presences, bool):
        raise _bad("request guild members: presences must be a boolean")

    nonce = data.get("nonce")
    if not isinstance(nonce, str) or len(nonce.encode("utf-8")) > NONCE_MAX_BYTES:
        nonce = None

    return GuildMembersRequested(
        guild_id=guild_id,
        query=query,
        limit=limit,
        presences=presences and bool(intents & GUILD_PRESENCES),
        user_ids=user_ids,
        nonce=nonce,
    )


def parse_voice_state_update(d: Any) -> VoiceStateUpdateRequested:
    data = _object(d, "voice state update")
    guild_id = snowflake(data.get("guild_id"), "voice state update: guild_id")
    channel = data.get("channel_id")
    channel_id = None if channel is None else snowflake(channel, "voice state update: channel_id")
    self_mute = data.get("self_mute")
    self_deaf = data.get("self_deaf")
    if not isinstance(self_mute, bool) or not isinstance(self_deaf, bool):
        raise _bad("voice state update: self_mute and self_deaf must be booleans")
    return VoiceStateUpdateRequested(guild_id, channel_id, self_mute, self_deaf)


def parse_request_soundboard_sounds(d: Any) -> SoundboardSoundsRequested:
    data = _object(d, "request soundboard sounds")
    guild_ids = data.get("guild_ids")
    if not isinstance(guild_ids, list):
        raise _bad("request soundboard sounds: guild_ids must be a list")
    return SoundboardSoundsRequested(
        tuple(snowflake(g, "request soundboard sounds: guild_ids") for g in guild_ids)
    )


def parse_guild_subscribe(d: Any) -> GuildSubscribeRequested:
    """Op 14 as Discord's user clients send it: ``guild_id`` plus options (``typing``,
    ``activities``, ``threads``, ``channels``: member-list ranges) that this gateway
    accepts and does not use — opening the guild is what counts."""
    data = _object(d, "guild subscribe")
    return GuildSubscribeRequested(snowflake(data.get("guild_id"), "guild subscribe: guild_id"))
