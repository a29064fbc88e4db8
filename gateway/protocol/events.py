"""What a ``GatewayConnection`` hands back: effects for the socket, events for the session.

Every method of the connection returns a list of these, in the order they must happen.
Effects the socket layer carries out: ``SendFrame``, ``Close``, ``SetTimer``. Events the
session layer answers (by calling the connection back): ``IdentifyRequested`` ->
``identified`` / ``auth_failed`` / ...; ``ResumeRequested`` -> ``resume_ok`` /
``resume_failed``. ``ClientEvent`` subclasses are requests a ready client made.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class Effect:
    """Base of everything a connection returns."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class SendFrame(Effect):
    """Send one WebSocket message: a text frame if ``text``, else binary."""

    data: bytes
    text: bool


@dataclass(frozen=True, slots=True)
class Close(Effect):
    """Send a close frame with ``code`` and ``reason`` and drop the connection.

    ``session_resumable`` tells the session layer whether to keep the session (and
    ``GatewayConnection.log``) for a RESUME. ``detail`` is for logs, never sent.
    """

    code: int
    reason: str
    session_resumable: bool = False
    detail: str = ""


@dataclass(frozen=True, slots=True)
class SetTimer(Effect):
    """Call ``on_timer(now)`` once ``now >= at`` (monotonic seconds); replaces earlier ones.

    The connection only asks for a timer when its deadline moves earlier; when it moves
    later, the timer fires early and ``on_timer`` answers with a new ``SetTimer``.
    """

    at: float


@dataclass(frozen=True, slots=True)
class IdentifyRequested(Effect):
    """A well-formed IDENTIFY. Answer with ``identified(...)`` or a refusal."""

    token: str
    intents: int
    properties: dict[str, Any]
    shard: tuple[int, int] | None = None
    presence: dict[str, Any] | None = None
    large_threshold: int = 50
    #: Payload compression asked for; not applied (Discord: "not all payloads will be
    #: compressed"), zlib-stream transport compression is what this server offers.
    compress: bool = False


@dataclass(frozen=True, slots=True)
class ResumeRequested(Effect):
    """A well-formed RESUME. Answer with ``resume_ok(log)`` or ``resume_failed()``."""

    token: str
    session_id: str
    seq: int


class ClientEvent(Effect):
    """A request from a ready client, validated, for the session layer to act on."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class PresenceUpdateRequested(ClientEvent):
    status: str
    activities: list[Any] = field(default_factory=list)
    since: int | None = None
    afk: bool = False


@dataclass(frozen=True, slots=True)
class GuildMembersRequested(ClientEvent):
    """Op 8. Exactly one of ``query`` and ``user_ids`` is set. ``presences`` is already
    forced false without the GUILD_PRESENCES intent, as Discord does; answering the full
    member list (query "" and limit 0) only with GUILD_MEMBERS is the session layer's."""

    guild_id: int
    query: str | None = None
    limit: int = 0
    presences: bool = False
    user_ids: tuple[int, ...] | None = None
    #: Dropped when longer than 32 bytes (Discord ignores an invalid nonce).
    nonce: str | None = None


@dataclass(frozen=True, slots=True)
class VoiceStateUpdateRequested(ClientEvent):
    guild_id: int
    channel_id: int | None
    self_mute: bool
    self_deaf: bool


@dataclass(frozen=True, slots=True)
class SoundboardSoundsRequested(ClientEvent):
    guild_ids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class GuildSubscribeRequested(ClientEvent):
    """Op 14: the client opened guild ``guild_id`` (its message events, please)."""

    guild_id: int


@dataclass(frozen=True, slots=True)
class Disconnected:
    """What ``connection_lost`` reports: keep the session for a RESUME or drop it."""

    session_resumable: bool
