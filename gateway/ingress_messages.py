"""The internal ingress's message types: one place, versioned (``name@version``).

A request is one of ``PostSystemMessage``, ``DisconnectSession`` or ``BroadcastToGuild``,
packed with ``actors.wire.pack`` (``{"$t": "ingress.post_system_message@1", "b": [...]}``),
so it is the same typed msgpack an actor message is when it leaves a process. The
answer is ``IngressOk`` or ``IngressError``; each carries the request's ``request_id``
back (correlation beyond HTTP's own request/response pairing, for logs and clients that
pipeline).

``trace`` is the caller's W3C trace context (``observability.inject_current()``) or
None; the ingress continues that trace, so a system message's trace starts in the
service that asked for it.

``check_request`` validates fields by type (msgpack decoding only checks the field
count), so a wrong type is a ``bad_message`` answer, not an error deep in an actor.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from typing import Any

from actors.wire import wire_type
from storage.snowflake import parse_snowflake

#: Error codes of ``IngressError`` (with the HTTP status the ingress answers them with).
UNAUTHENTICATED = "unauthenticated"  # 401
BAD_MESSAGE = "bad_message"  # 400: not msgpack, unknown type, wrong fields or types
UNKNOWN_CHANNEL = "unknown_channel"  # 404
UNKNOWN_GUILD = "unknown_guild"  # 404
UNKNOWN_SESSION = "unknown_session"  # 404
FAILED = "failed"  # 502/503: the target could not carry it out (storage busy, timeout)

#: A service's free-text notice is stored and sent the way Discord sends one from its
#: own System user: a DEFAULT (0) message whose author has ``system: true`` (Discord's
#: other system types, 6-46, are rendered from fixed templates and ignore ``content``).
SYSTEM_MESSAGE_TYPE = 0
#: The author of system messages (Discord's own system user id and shape).
SYSTEM_USER: dict[str, Any] = {
    "id": "643945264868098049",
    "username": "Discord",
    "discriminator": "0000",
    "global_name": "System",
    "avatar": None,
    "bot": False,
    "system": True,
    "public_flags": 1 << 12,  # SYSTEM
    "flags": 1 << 12,
}

#: Close codes an ingress may close a session with: 1000/1001 (the session ends; the
#: client starts a new one) and Discord's 4000-4999 range. 4000 (the default) keeps the
#: session resumable, so a client reconnects and RESUMEs with nothing missed; codes
#: outside ``gateway.protocol.RESUMABLE`` end the session.
DEFAULT_CLOSE_CODE = 4000
EVENT_NAME = re.compile(r"[A-Z][A-Z0-9_]{0,63}")
#: Events only the gateway itself may send (they drive a client's session state).
RESERVED_EVENTS = frozenset({"READY", "RESUMED", "GUILD_CREATE", "GUILD_DELETE"})
MAX_CONTENT = 2000


@wire_type("ingress.post_system_message", 1)
@dataclass(slots=True)
class PostSystemMessage:
    """Store ``content`` in ``channel_id`` as a system message; then MESSAGE_CREATE."""

    request_id: str
    channel_id: int
    content: str
    trace: dict | None = None


@wire_type("ingress.disconnect_session", 1)
@dataclass(slots=True)
class DisconnectSession:
    """Close session ``session_id``'s socket with ``code`` (see ``DEFAULT_CLOSE_CODE``)."""

    request_id: str
    session_id: str
    code: int = DEFAULT_CLOSE_CODE
    reason: str = ""
    trace: dict | None = None


@wire_type("ingress.broadcast", 1)
@dataclass(slots=True)
class BroadcastToGuild:
    """Dispatch ``event`` with ``data`` to every session subscribed to ``guild_id``
    (encoded once; intents do not filter service events)."""

    request_id: str
    guild_id: int
    event: str
    data: Any
    trace: dict | None = None


@wire_type("ingress.ok", 1)
@dataclass(slots=True)
class IngressOk:
    request_id: str
    result: dict


@wire_type("ingress.error", 1)
@dataclass(slots=True)
class IngressError:
    request_id: str
    code: str
    message: str


REQUEST_TYPES = (PostSystemMessage, DisconnectSession, BroadcastToGuild)

_TYPES: dict[type, dict[str, tuple[type, ...]]] = {
    PostSystemMessage: {"request_id": (str,), "channel_id": (int,), "content": (str,)},
    DisconnectSession: {"request_id": (str,), "session_id": (str,), "code": (int,),
                        "reason": (str,)},
    BroadcastToGuild: {"request_id": (str,), "guild_id": (int,), "event": (str,),
                       "data": (dict, list, str, int, float, bool, type(None))},
}


def _plain(value: Any, depth: int = 0) -> bool:
    """JSON-shaped data only (what a dispatch may carry to a JSON client)."""
    if depth > 32:
        return False
    if value is None or isinstance(value, str | bool | int | float):
        return True
    if isinstance(value, list):
        return all(_plain(v, depth + 1) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v, depth + 1) for k, v in value.items())
    return False


def check_request(msg: Any) -> str | None:
    """None if ``msg`` is a well-formed request, else what is wrong with it."""
    spec = _TYPES.get(type(msg))
    if spec is None:
        return f"not an ingress request: {type(msg).__name__}"
    for f in fields(msg):
        value = getattr(msg, f.name)
        if f.name == "trace":
            if value is not None and not isinstance(value, dict):
                return "trace must be a map or nil"
            continue
        want = spec[f.name]
        if isinstance(value, bool) and bool not in want:
            return f"{f.name} must be {want[0].__name__}, not bool"
        if not isinstance(value, want):
            return f"{f.name} must be {want[0].__name__}, not {type(value).__name__}"
    if isinstance(msg, PostSystemMessage):
        if parse_snowflake(msg.channel_id) is None:
            return "channel_id must be a snowflake"
        if not msg.content or len(msg.content) > MAX_CONTENT:
            return f"content must be 1-{MAX_CONTENT} characters"
    elif isinstance(msg, DisconnectSession):
        if not (msg.code in (1000, 1001) or 4000 <= msg.code <= 4999):
            return "code must be 1000, 1001 or 4000-4999"
        if len(msg.reason.encode()) > 120:
            return "reason must be at most 120 bytes"
    elif isinstance(msg, BroadcastToGuild):
        if parse_snowflake(msg.guild_id) is None:
            return "guild_id must be a snowflake"
        if not EVENT_NAME.fullmatch(msg.event) or msg.event in RESERVED_EVENTS:
            return "event must match [A-Z][A-Z0-9_]* and not be a gateway-owned event"
        if not _plain(msg.data):
            return "data must be JSON-shaped (maps with string keys, lists, scalars)"
    return None
