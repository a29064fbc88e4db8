"""Reaching sessions on any node: each node's session directory, at a well-known id.

A session lives where its socket landed, and only its node knows it by session id or
by user (``GatewayContext.sessions``, ``user_sessions``). So a REST handler on one node
that must tell a user's sessions (GUILD_CREATE after a join, GUILD_DELETE after a
leave) sends ``ToUserSessions`` to every gateway node's directory, and the ingress that
must close a session sends ``ToSession`` to the directory of the node its id names
(a session id is ``"<node>.<random>"``). The directory forwards the message on behalf
of the original sender, so the session's answer goes straight back to it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from actors import Actor
from actors.address import Address
from actors.wire import wire_type
from gateway.context import GatewayContext
from gateway.replica import promote

#: Every gateway node's session directory has this well-known actor id.
SESSIONS_ID = -3


@wire_type("gateway.to_session")
@dataclass(slots=True)
class ToSession:
    """Forward ``message`` to session ``session_id`` (answered ``NoSuchSession`` if this
    node has no such session)."""

    session_id: str
    message: Any


@wire_type("gateway.to_user_sessions")
@dataclass(slots=True)
class ToUserSessions:
    """Forward ``message`` to every session of ``user_id`` on this node (no answer)."""

    user_id: int
    message: Any


@wire_type("gateway.user_dispatch")
@dataclass(slots=True)
class UserDispatch:
    """-> one user's sessions (inside ``ToUserSessions``): a guild event meant for that
    user alone, which no guild fans out: INTERACTION_CREATE to an application's bot, an
    ephemeral message or a modal to the user who invoked the interaction. Each session
    encodes it (few recipients) and keeps it if its intents ask for ``event`` (guild
    masks; INTERACTION_CREATE needs none). ``user_id``: sent to one session by its id
    (``ToSession``), kept only if the session is that user's (the id came from a client).
    ``direct``: a DM's event (the DM intents decide, not the guild ones)."""

    event: str
    data: Any
    user_id: int | None = None
    direct: bool = False


@wire_type("gateway.session_moved")
@dataclass(slots=True)
class SessionMoved:
    """A session that moved away from the node its id names (a RESUME elsewhere) ->
    that node's directory: it lives on ``node`` now (None: it ended), so a ``ToSession``
    for it is forwarded there."""

    session_id: str
    node: str | None


@wire_type("gateway.no_such_session")
@dataclass(slots=True)
class NoSuchSession:
    session_id: str


def node_of_session(session_id: str) -> str | None:
    """The node a session id names (None for an id this gateway did not make)."""
    node, dot, _ = session_id.rpartition(".")
    return node if dot and node else None


def sessions_address(node: str) -> Address:
    return Address(node, SESSIONS_ID)


def gateway_nodes(view: Any, me: str) -> list[str]:
    """The nodes whose sessions a user-wide message must reach: every member that
    serves the gateway (``view``: a ``cluster.view.ClusterView``, None: this node)."""
    if view is None or view.placement is None:
        return [me]
    return sorted(view.placement.nodes | {me})


class SessionDirectory(Actor):
    ctx: ClassVar[GatewayContext]

    def receiveMessage(self, msg: Any, sender: Any) -> None:
        if isinstance(msg, ToSession):
            session = self.ctx.sessions.get(msg.session_id)
            if session is not None:
                self.forward(session, msg.message, sender)
                return
            moved = self.ctx.moved.get(msg.session_id)
            if moved is not None and moved != self.myAddress.node:
                self.forward(sessions_address(moved), msg, sender)
                return
            # Only a RESUME whose home failed it asks the node keeping the session's
            # standby copy: the home is gone (or restarted without it), promote the copy.
            session = promote(self.ctx, msg.session_id)
            if session is not None:
                self.forward(session, msg.message, sender)
            else:
                self.send(sender, NoSuchSession(msg.session_id))
        elif isinstance(msg, SessionMoved):
            if msg.node is None or msg.node == self.myAddress.node:
                self.ctx.moved.pop(msg.session_id, None)
            else:
                self.ctx.moved[msg.session_id] = msg.node
        elif isinstance(msg, ToUserSessions):
            for session in list(self.ctx.user_sessions.get(msg.user_id, ())):
                self.forward(session, msg.message, sender)
