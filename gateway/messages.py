"""Messages between the gateway's actors (session, guild, channel) and its edges.

A session lives where its socket landed, a guild and its channels on the node that
placement chose (``cluster.routing``), so what a session, a REST handler or the ingress
sends to a guild or channel, and what comes back, may cross nodes: those are wire types
(``@wire_type``), carrying addresses, ids and plain data. What holds a socket's ``Link``
or a ``PreparedDispatch`` (encoded bytes and caches) stays in the process that made it:
``Identify``, ``Attach``, ``Detached``, ``SetPresence``, ``OpenGuild`` and ``Deliver``.
``Fanout`` (channel -> guild) crosses only while a guild moves (placement otherwise puts
a channel beside its guild). Dispatches cross as ``gateway.fanout.NodeFanout``, once
per destination node.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from actors.wire import wire_type, wire_value
from gateway.protocol import IdentifyRequested, PreparedDispatch, ResumeRequested
from storage.model import Channel, Member, Message

# Storage records that ride in gateway messages across nodes (fields in declared order).
wire_type("storage.channel")(Channel)
wire_type("storage.member")(Member)
wire_type("storage.message")(Message)


def _dispatch_from_wire(event: Any, d_json: Any) -> PreparedDispatch:
    if not isinstance(event, str) or not isinstance(d_json, bytes):
        raise ValueError("a dispatch is [event, JSON bytes of d]")
    return PreparedDispatch.from_json(event, d_json)


# A dispatch crosses as its event and the JSON of its ``d`` (made once, shared with the
# JSON recipients): ``Fanout`` carries one when its guild is on another node.
wire_value("gateway.dispatch", to_wire=lambda d: [d.event, d.json_d()],
           from_wire=_dispatch_from_wire)(PreparedDispatch)


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
class Migrate:
    """Edge -> new session actor: a RESUME for a session that lives on another node;
    fetch it from there (``HandOver``) and resume it here."""

    link: Any
    event: ResumeRequested


@wire_type("gateway.hand_over")
@dataclass(slots=True)
class HandOver:
    """New session (node X) -> the session's node, through its session directory: give
    me this session. The session checks ``token``, closes its socket, answers ``to``
    with ``SessionState`` (or the directory with ``gateway.sessions.NoSuchSession``) and
    forwards what it records from then on until every guild has cut over."""

    session_id: str
    token: str
    seq: int  # the client's last seq: only later entries travel
    to: Any  # Address of the new session


@wire_type("gateway.session_state")
@dataclass(slots=True)
class SessionState:
    """Old session -> new session: everything the session is, its replay log as
    ``[event, bytes]`` entries in ``encoding`` (``PreparedDispatch.encoded``) numbered
    ``seq - len(entries) + 1 .. seq``."""

    session_id: str
    token_key: bytes
    user_id: int
    intents: int
    guild_ids: list[int]
    opened: list[int] | None  # None: a bot (active everywhere)
    status: str
    activities: list[Any]
    large_threshold: int
    encoding: str
    seq: int
    entries: list[Any]


@wire_type("gateway.handed_dispatch")
@dataclass(slots=True)
class HandedDispatch:
    """Old session -> new session: a dispatch a guild sent the old one before it cut
    over (``[event, bytes]`` as in ``SessionState``), in the order it was recorded."""

    entry: Any


@wire_type("gateway.cutover")
@dataclass(slots=True)
class Cutover:
    """Guild -> the old session (through its node's fan-out point, behind every
    dispatch the guild sent it), forwarded to the new session: from here on the guild
    sends to the new session only."""

    guild_id: int
    session: int  # the old session's actor id on that node


@dataclass(slots=True)
class Detached:
    """Edge -> session actor: the socket is gone; keep the session if ``resumable``."""

    link: Any
    resumable: bool


@dataclass(slots=True)
class Deliver:
    """-> session: one dispatch, already encoded (shared by every recipient).
    ``trace``: the fan-out span's context (None when not traced: the hot path).
    Guilds do not send it: their fan-out goes through ``gateway.fanout.NodeFanout``."""

    dispatch: PreparedDispatch
    trace: dict | None = None


@wire_type("gateway.subscribe")
@dataclass(slots=True)
class Subscribe:
    """Session -> guild: send me the guild's events (filtered by intents and permissions)."""

    session: Any  # Address
    user_id: int
    intents: int
    #: The session's presence (a ``Presence``) to set once subscribed; None: none.
    presence: Any = None
    #: The user's ``storage.model.Member`` if the session just read it (IDENTIFY);
    #: None: the guild reads it.
    member: Any = None
    #: False: a passive session (a user's, before its op 14 for the guild): no message
    #: events (gateway/fanout.py).
    active: bool = True
    #: The address of the session this one continues on another node (a RESUME that
    #: moved it): the guild swaps them in one step and sends the old one ``Cutover``.
    replaces: Any = None


@wire_type("gateway.unsubscribe")
@dataclass(slots=True)
class Unsubscribe:
    session: Any


@dataclass(slots=True)
class OpenGuild:
    """Edge -> session: the client sent op 14 for ``guild_id`` (it opened the guild)."""

    guild_id: int


@wire_type("gateway.activate")
@dataclass(slots=True)
class Activate:
    """Session -> guild: ``session`` is active from now on (its client opened the guild):
    it gets the guild's message events too (gateway/fanout.py, passive sessions)."""

    session: Any


@wire_type("gateway.subscribed")
@dataclass(slots=True)
class Subscribed:
    """Guild -> session; its sender is the guild's address, which the session monitors
    (a lease: the registry never passivates a guild that has live sessions)."""

    guild_id: int
    member: bool


@wire_type("gateway.fanout")
@dataclass(slots=True)
class Fanout:
    """Channel -> guild: send ``dispatch`` (a message event) to every session that may see
    ``channel_id`` and asked for the event; ``message`` is the payload for the
    MESSAGE_CONTENT rule. Placement puts a channel beside its guild, so this stays in
    its process; but while a guild moves (a node left or came back, and the views of
    the nodes differ for a moment) the guild may be on another node, and the event must
    still reach it: so it is a wire type too (the dispatch as ``[event, JSON d]``)."""

    channel_id: int
    dispatch: PreparedDispatch
    message: dict[str, Any] | None = None
    trace: dict | None = None  # the channel span's context (W3C), None when not traced
    #: when the channel sent it (``time.time()``: it may cross nodes), for ``gateway.stages``
    sent_at: float | None = None


@wire_type("gateway.post_message")
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
    #: more ``storage.model.Message`` fields, set at creation, checked by whoever built
    #: the post (``embeds``, ``attachments``, ``flags``, ``mentions``, ``mention_roles``,
    #: ``mention_everyone``, ``extra``): REST, a webhook, an interaction's response
    fields: dict[str, Any] = field(default_factory=dict)
    type: int = 0  # Discord's message type
    #: a DM's two users (``guild_id`` None): the channel tells their sessions
    #: (gateway/direct.py); None in a guild, whose actor fans out
    recipients: list[int] | None = None
    trace: dict | None = None  # the poster's span context (W3C), None when not traced
    #: when REST took the post (``time.time()``), for ``gateway.stages``; None: not timed
    received_s: float | None = None


@wire_type("gateway.posted")
@dataclass(slots=True)
class Posted:
    message: dict[str, Any]


@wire_type("gateway.post_failed")
@dataclass(slots=True)
class PostFailed:
    status: int
    code: int
    message: str
    retry_after: float | None = None


@wire_type("gateway.change_message")
@dataclass(slots=True)
class ChangeMessage:
    """REST -> channel actor: edit (``changes`` set) or delete (``changes`` None) a message
    already checked by REST; answered ``Posted`` (the edited message, or ``{}`` for a
    delete) once durable, or ``PostFailed``. ``message`` is the edited payload."""

    guild_id: int | None
    message_id: int
    changes: dict[str, Any] | None
    message: dict[str, Any] | None = None
    recipients: list[int] | None = None  # a DM's two users (see ``PostMessage``)


@wire_type("gateway.read_history")
@dataclass(slots=True)
class ReadHistory:
    """REST -> channel actor: a history read (``storage.history.HistoryQuery``'s cursors,
    already validated); answered ``HistoryPage`` from the actor's cache of recent
    messages when it can answer exactly, else from storage, or ``PostFailed``."""

    before: int | None = None
    after: int | None = None
    around: int | None = None
    limit: int = 50


@wire_type("gateway.history_page")
@dataclass(slots=True)
class HistoryPage:
    """The messages of a ``ReadHistory``, newest first, as ``Storage.history`` gives them."""

    messages: list[Message]


@wire_type("gateway.typing")
@dataclass(slots=True)
class Typing:
    """REST -> channel actor: ``user_id`` started typing (TYPING_START, not stored)."""

    guild_id: int | None
    user_id: int
    member: dict[str, Any] | None
    recipients: list[int] | None = None  # a DM's two users (see ``PostMessage``)


@wire_type("gateway.guild_broadcast")
@dataclass
class GuildBroadcast:
    """REST -> guild actor: fan a guild event out to every subscribed session allowed
    by intent (no channel check), after updating the guild's state: ``channel`` is a new
    channel, ``member_added`` a new member's user id, ``member_removed`` a removed one.

    It may come from another node's REST handler, so it carries the event and its data,
    and the guild encodes ``dispatch`` (made once, on first use) where it fans out."""

    event: str
    data: Any
    channel: Channel | None = None
    member_added: Member | None = None
    member_removed: int | None = None

    @cached_property
    def dispatch(self) -> PreparedDispatch:
        return PreparedDispatch(self.event, self.data)


@wire_type("gateway.overwrite_changed")
@dataclass(slots=True)
class OverwriteChanged:
    """REST -> guild actor, once stored: ``channel``'s permission overwrite for
    ``target_id`` is now ``overwrite`` (``Overwrite.to_json``'s form; None: deleted).
    The guild applies it to its state (who sees the channel's events) and dispatches
    CHANNEL_UPDATE with the channel's overwrites as it then holds them — one change per
    target, so two editors' changes arrive in any order and both hold."""

    channel: Channel
    target_id: int
    overwrite: dict[str, Any] | None


@wire_type("gateway.presence")
@dataclass(slots=True)
class Presence:
    """Session -> guild: this session's presence (``status`` "offline" to clear it)."""

    session: Any
    user_id: int
    status: str
    activities: list[Any] = field(default_factory=list)
    client_status: dict[str, str] = field(default_factory=dict)


@wire_type("gateway.joined_guild")
@dataclass(slots=True)
class JoinedGuild:
    """REST -> the user's session actors: the user joined ``guild_id`` (GUILD_CREATE)."""

    guild_id: int


@wire_type("gateway.left_guild")
@dataclass(slots=True)
class LeftGuild:
    """REST -> the user's session actors: the user left ``guild_id`` (GUILD_DELETE)."""

    guild_id: int


@dataclass(slots=True)
class SetPresence:
    """Edge -> session: the client sent op 3."""

    status: str
    activities: list[Any] = field(default_factory=list)


@wire_type("gateway.close_session")
@dataclass(slots=True)
class CloseSession:
    """Ingress -> session actor: close the socket with ``code``; answered
    ``SessionClosed`` (the session then ends, unless ``code`` keeps it resumable)."""

    code: int
    reason: str
    trace: dict | None = None


@wire_type("gateway.session_closed")
@dataclass(slots=True)
class SessionClosed:
    session_id: str
    code: int
    resumable: bool


@wire_type("gateway.service_broadcast")
@dataclass
class ServiceBroadcast:
    """Ingress -> guild actor: send ``event`` with ``data`` to every subscribed session
    (no intent or channel filter: a service event); answered ``Broadcasted``. Like
    ``GuildBroadcast``, its ``dispatch`` is made where the guild lives."""

    event: str
    data: Any
    trace: dict | None = None

    @cached_property
    def dispatch(self) -> PreparedDispatch:
        return PreparedDispatch(self.event, self.data)


@wire_type("gateway.broadcasted")
@dataclass(slots=True)
class Broadcasted:
    guild_id: int
    sessions: int


# -- the replay buffer's standby copy (gateway/replica.py) ---------------------------------


@wire_type("gateway.replica_open")
@dataclass(slots=True)
class ReplicaOpen:
    """Home node -> a session's standby (inside ``Replicate``): the session as it is now
    (``state``: what a move would send; its ``entries`` are the log's, or None to keep
    the replica's ring: a change of guilds, opened guilds or presence) and its actor's
    ``address`` (the guilds' subscriber a promoted copy replaces)."""

    state: SessionState
    address: Any
    with_log: bool = True


@wire_type("gateway.replica_close")
@dataclass(slots=True)
class ReplicaClose:
    """Home node -> standby: the session ended (or moved, or its standby changed); drop
    the copy if it is still the one of ``address`` (a newer home may have opened it)."""

    session_id: str
    address: Any


@wire_type("gateway.replicate")
@dataclass(slots=True)
class Replicate:
    """One loop turn of ``node``'s replication to one standby, in order: each op is a
    ``ReplicaOpen``, a ``ReplicaClose`` or a dispatch as
    ``[event, bytes in encoding, encoding, [session id, seq, session id, seq, ...]]``
    (the bytes once for all its recipients there)."""

    node: str
    ops: list[Any]


@dataclass(slots=True)
class Promote:
    """ReplicaStore -> a new session actor on the standby: become the session whose home
    node is gone (``state`` as replicated, ``address`` the dead one's, ``heard_at`` the
    wall-clock time of the last ``Replicate`` from its home)."""

    state: SessionState
    address: Any
    heard_at: float


@dataclass(slots=True)
class HomesGone:
    """Membership listener -> ReplicaStore: these nodes' incarnations ended."""

    nodes: frozenset[str]
