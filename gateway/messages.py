"""Messages between the gateway's actors (session, guild, channel) and its edges.

They stay in-process: a session lives where its socket landed and holds a reference to
the socket's link, so these are plain dataclasses, not wire types.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gateway.protocol import IdentifyRequested, PreparedDispatch, ResumeRequested


@dataclass(slots=True)
class Identify:
    """Edge -> new session actor: authenticate this connection's IDENTIFY."""

    link: Any  # gateway.server.Link
    event: IdentifyRequested
    trace: dict | None = None  # the socket.in span's context (None when not traced)


@dataclass(slots=True)
class Attach:
    """Edge -> existing session actor: a new connection RESUMEs this session."""

    link: Any
    event: ResumeRequested


@dataclass(slots=True)
class Detached:
    """Edge -> session actor: the socket is gone; keep the session if ``resumable``."""

    link: Any
    resumable: bool


@dataclass(slots=True)
class Deliver:
    """Guild -> session: one dispatch, already encoded (shared by every recipient).
    ``trace``: the fan-out span's context (None when not traced: the hot path)."""

    dispatch: PreparedDispatch
    trace: dict | None = None


@dataclass(slots=True)
class Subscribe:
    """Session -> guild: send me the guild's events (filtered by intents and permissions)."""

    session: Any  # Address
    user_id: int
    intents: int
    #: The session's presence (a ``Presence``) to set once subscribed; None: none.
    presence: Any = None


@dataclass(slots=True)
class Unsubscribe:
    session: Any


@dataclass(slots=True)
class Subscribed:
    """Guild -> session; its sender is the guild's address, which the session monitors
    (a lease: the registry never passivates a guild that has live sessions)."""

    guild_id: int
    member: bool


@dataclass(slots=True)
class Fanout:
    """Channel -> guild: send ``dispatch`` (a message event) to every session that may see
    ``channel_id`` and asked for the event; ``message`` is the payload for the
    MESSAGE_CONTENT rule."""

    channel_id: int
    dispatch: PreparedDispatch
    message: dict[str, Any] | None = None
    trace: dict | None = None  # the channel span's context (W3C), None when not traced


@dataclass(slots=True)
class PostMessage:
    """REST -> channel actor (via the registry): create a message; answered ``Posted``
    once the storage actor says it is durable, or ``PostFailed``."""

    guild_id: int | None
    author: dict[str, Any]
    member: dict[str, Any] | None
    content: str
    nonce: str | None = None
    enforce_nonce: bool = False
    tts: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
    type: int = 0  # Discord's message type
    trace: dict | None = None  # the poster's span context (W3C), None when not traced


@dataclass(slots=True)
class Posted:
    message: dict[str, Any]


@dataclass(slots=True)
class PostFailed:
    status: int
    code: int
    message: str
    retry_after: float | None = None


@dataclass(slots=True)
class ChangeMessage:
    """REST -> channel actor: edit (``changes`` set) or delete (``changes`` None) a message
    already checked by REST; answered ``Posted`` (the edited message, or ``{}`` for a
    delete) once durable, or ``PostFailed``. ``message`` is the edited payload."""

    guild_id: int | None
    message_id: int
    changes: dict[str, Any] | None
    message: dict[str, Any] | None = None


@dataclass(slots=True)
class Typing:
    """REST -> channel actor: ``user_id`` started typing (TYPING_START, not stored)."""

    guild_id: int
    user_id: int
    member: dict[str, Any] | None


@dataclass(slots=True)
class GuildBroadcast:
    """REST -> guild actor: fan a guild event out to every subscribed session allowed
    by intent (no channel check), after updating the guild's state: ``channel`` is a new
    channel, ``member_added`` a new member's user id, ``member_removed`` a removed one."""

    dispatch: PreparedDispatch
    channel: Any = None  # storage.model.Channel
    member_added: Any = None  # storage.model.Member
    member_removed: int | None = None


@dataclass(slots=True)
class Presence:
    """Session -> guild: this session's presence (``status`` "offline" to clear it)."""

    session: Any
    user_id: int
    status: str
    activities: list[Any] = field(default_factory=list)
    client_status: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class JoinedGuild:
    """REST -> the user's session actors: the user joined ``guild_id`` (GUILD_CREATE)."""

    guild_id: int


@dataclass(slots=True)
class LeftGuild:
    """REST -> the user's session actors: the user left ``guild_id`` (GUILD_DELETE)."""

    guild_id: int


@dataclass(slots=True)
class SetPresence:
    """Edge -> session: the client sent op 3."""

    status: str
    activities: list[Any] = field(default_factory=list)


@dataclass(slots=True)
class CloseSession:
    """Ingress -> session actor: close the socket with ``code``; answered
    ``SessionClosed`` (the session then ends, unless ``code`` keeps it resumable)."""

    code: int
    reason: str
    trace: dict | None = None


@dataclass(slots=True)
class SessionClosed:
    session_id: str
    code: int
    resumable: bool


@dataclass(slots=True)
class ServiceBroadcast:
    """Ingress -> guild actor: send ``dispatch`` to every subscribed session (no intent
    or channel filter: a service event); answered ``Broadcasted``."""

    dispatch: PreparedDispatch
    trace: dict | None = None


@dataclass(slots=True)
class Broadcasted:
    guild_id: int
    sessions: int
