"""Delivery of a DM channel's events to its two users' sessions, on whatever nodes.

A guild fans out to the sessions subscribed to it; a DM channel has no guild and no
subscribers. Its channel actor (placed by the channel's own id: ``channel_key(None,
id)``) sends each event, once it is durable, to every gateway node's session directory
as one ``ToUserSessions(user, DirectDispatch)`` per recipient user; each directory
forwards it to that user's sessions on its node (``gateway/sessions.py``), and each
session keeps it only if it asked for it by intent (``event_allowed(...,
direct_message=True)``: MESSAGE_* need DIRECT_MESSAGES, TYPING_START
DIRECT_MESSAGE_TYPING, reactions DIRECT_MESSAGE_REACTIONS). The MESSAGE_CONTENT rule
does not apply in DMs.

Why not a registry of where each user's sessions are: a DM is two users, the directory
hop already exists for GUILD_CREATE after a join, and a message per gateway node and
user costs little next to the storage write before it. One sender per channel (its
actor) and one path (directory, then session) keep a channel's events in order: the
CHANNEL_CREATE of a new DM (``DirectEvent``, sent through the channel actor for that
reason) comes before its first MESSAGE_CREATE.

Not covered yet: a session reachable by user on no node for a moment misses what is
sent meanwhile — between its hand-over and its arrival when a RESUME moves it to
another node, and what was in flight when its node died (a promoted standby catches up
its guilds' channels from storage, ``gateway.replica.read_missed_messages``, not its
DMs, whose channels no per-user index lists).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from actors.wire import wire_type
from gateway.protocol import PreparedDispatch
from gateway.sessions import ToUserSessions, gateway_nodes, sessions_address


@wire_type("gateway.direct_dispatch")
@dataclass(slots=True)
class DirectDispatch:
    """DM channel -> (a node's session directory ->) a user's sessions: one dispatch of
    a DM channel. ``payload``: the ``PreparedDispatch`` within the node, ``[event, JSON
    bytes of d]`` across nodes (encoded once per event, like ``NodeFanout``'s)."""

    payload: Any

    def dispatch(self) -> PreparedDispatch:
        payload = self.payload
        if payload.__class__ is PreparedDispatch:
            return payload
        if (isinstance(payload, list | tuple) and len(payload) == 2
                and isinstance(payload[0], str) and isinstance(payload[1], bytes)):
            return PreparedDispatch.from_json(payload[0], payload[1])
        raise ValueError(f"DirectDispatch payload must be [event, json bytes], "
                         f"not {payload!r:.80}")


@wire_type("gateway.direct_event")
@dataclass(slots=True)
class DirectEvent:
    """REST -> a DM channel's actor: send ``event`` with ``data`` to ``users``' sessions
    in the channel's order (e.g. CHANNEL_CREATE of a new DM before its first message)."""

    users: list[int]
    event: str
    data: dict[str, Any]


def send_to_users(actor: Any, cluster: Any, users: Iterable[int],
                  dispatch: PreparedDispatch) -> None:
    """``dispatch`` to the sessions of ``users`` on every gateway node, from ``actor``
    (the DM channel's actor: the one sender that keeps the channel's order)."""
    me = actor.myAddress.node
    users = list(dict.fromkeys(users))
    wire: list[Any] | None = None
    for node in gateway_nodes(cluster, me):
        if node == me:  # the same process: the dispatch itself, no copy
            payload: Any = dispatch
        else:
            if wire is None:
                wire = [dispatch.event, dispatch.json_d()]
            payload = wire
        directory = sessions_address(node)
        for user_id in users:
            actor.send(directory, ToUserSessions(user_id, DirectDispatch(payload)))
