"""Session failover: a standby copy of every session's replay buffer on another node.

Where the replay buffer lives, and why. A RESUME must replay everything the client
missed, even when the node that held the session was SIGKILLed. So the buffer lives on
the session's node (the only one that numbers its dispatches: one sequencer, no
coordination per dispatch) AND as a standby copy on one other gateway node — the
*standby*, chosen by rendezvous hashing of the session id over the live gateway nodes
other than the home (``standby_of``; one node alone: no standby). Not in storage: that
would cost a write per dispatch per recipient. Not in the guilds: a session's sequence
interleaves several guilds and dispatches of its own (READY, member chunks), and only
the session knows the order.

Cost on the hot path: ``ReplicaFeed.record`` appends ``(session id, seq)`` to the entry
of that dispatch in the batch for the session's standby; once per loop turn the feed
sends each standby one ``Replicate`` carrying each dispatch's bytes once, whatever the
number of its recipients there. Session state changes (``ReplicaOpen``,
``ReplicaClose``) ride in the same batch, so the standby sees them in order.

Promotion. When the view says a home node is gone (or a RESUME's ``ToSession`` reaches
the standby's directory for a copy it holds), the ``ReplicaStore`` makes each copy a
detached session on its node under the same id (``SessionActor._promote``): it
resubscribes to its guilds in place of the dead session and waits for a RESUME for the
resume window. What the guilds sent the dead node in its last moments never reached the
standby; message creations are read back from storage after promotion (the session's
catch-up), so no acknowledged message is lost. The last loop turn before the death may
have reached the client but not the standby: a RESUME with a seq ahead of the copy is
accepted (numbering continues from the client's seq) and the catch-up may re-deliver a
message the client had: at-least-once for that one turn, never a loss.

A home that was only suspected (its loop stalled past the failure detector's timeout:
a loaded host) is still there, and so are its sessions, on their clients' sockets: the
guilds dropped them (their Down) or swapped them for the promoted copies, so they hear
nothing more. The copy tells: once the nodes hear each other again, it is re-opened on
its standby, that home, which holds a live session of the same id (``Superseded``). That
session subscribes to its guilds again, catches up from storage on what it missed and
sends its standby its copy again; the promoted copy, detached, expires after the resume
window (or serves a RESUME that lands on its node, caught up as well).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, ClassVar

from actors import Actor
from actors.address import Address
from chat.objects import message_object, user_object
from chat.overwrites import guild_overwrites
from chat.permissions import VIEW_CHANNEL, channel_permissions
from cluster.placement import owner
from gateway.context import GatewayContext
from gateway.messages import (
    HomesGone,
    Promote,
    ReplicaClose,
    ReplicaOpen,
    Replicate,
    SessionState,
)
from gateway.protocol import Encoding, PreparedDispatch
from gateway.protocol.intents import (
    event_allowed,
    message_content_visible,
    redact_message_content,
)
from storage.history import HistoryQuery
from storage.model import Message
from storage.snowflake import snowflake_at

if TYPE_CHECKING:
    from gateway.session import SessionActor

log = logging.getLogger("greenroom.gateway.replica")

#: Every gateway node's replica store has this well-known actor id.
REPLICAS_ID = -4


def replicas_address(node: str) -> Address:
    return Address(node, REPLICAS_ID)


def session_key(session_id: str) -> int:
    """A session id as a placement key (63 bits of its BLAKE2b digest)."""
    digest = hashlib.blake2b(session_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


def standby_of(session_id: str, nodes: Iterable[str], home: str) -> str | None:
    """The node that keeps the standby copy of ``session_id``, living on ``home``, among
    the live gateway ``nodes`` (None: no other node)."""
    others = [n for n in nodes if n != home]
    return owner(others, session_key(session_id)) if others else None


def standby_token_key(token: str) -> bytes:
    """The token digest a standby copy checks a RESUME against. The session's own
    ``token_key`` is keyed with a secret of its process, which another node cannot
    recompute; this one is unkeyed (a token has far more entropy than 128 bits can
    brute-force), so any node can check it."""
    return hashlib.blake2b(token.encode(), digest_size=16, person=b"greenroom-stdby").digest()


def live_gateway_nodes(view: Any, me: str) -> frozenset[str]:
    """The live nodes that serve the gateway (``view``: a ClusterView; None: just me)."""
    if view is None or view.placement is None:
        return frozenset((me,))
    return view.placement.nodes | {me}


class _Batch:
    """One loop turn of replication to one standby: ops so far, and the dispatches
    since the last op by encoding (dispatch -> flat [session id, seq, ...])."""

    __slots__ = ("ops", "json", "msgpack")

    def __init__(self) -> None:
        self.ops: list[Any] = []
        self.json: dict[PreparedDispatch, list[Any]] = {}
        self.msgpack: dict[PreparedDispatch, list[Any]] = {}

    def seal(self) -> None:
        """Turn the dispatches recorded so far into ops (before an open or close)."""
        for group, encoding in ((self.json, Encoding.JSON), (self.msgpack, Encoding.MSGPACK)):
            if group:
                value = encoding.value
                self.ops.extend([d.event, d.encoded(encoding), value, to]
                                for d, to in group.items())
                group.clear()


#: A ``Replicate`` carries about this many bytes at most: a node that gets a new standby
#: re-opens every session on it at once, logs included (500 sessions were one 19 MB
#: envelope, over the data plane's frame limit: the link closed and took the moves in
#: flight on it along).
CHUNK_BYTES = 1 << 20


def _op_bytes(op: Any) -> int:
    """About what ``op`` weighs on the wire (a dispatch's bytes, or a state's log)."""
    if isinstance(op, list):
        return len(op[1]) + 12 * len(op[3])
    if isinstance(op, ReplicaOpen) and op.state.entries:
        return 256 + sum(len(entry[1]) + 16 for entry in op.state.entries)
    return 256


def _chunks(ops: list[Any]) -> Iterator[list[Any]]:
    """``ops`` in order, cut into runs of about ``CHUNK_BYTES`` (one op may be more)."""
    chunk: list[Any] = []
    size = 0
    for op in ops:
        weight = _op_bytes(op)
        if chunk and size + weight > CHUNK_BYTES:
            yield chunk
            chunk, size = [], 0
        chunk.append(op)
        size += weight
    if chunk:
        yield chunk


class ReplicaFeed:
    """This node's side of replication (one per gateway, in ``GatewayContext``): batches
    what local sessions record per standby node and sends it once per loop turn."""

    def __init__(self, base: Any, view: Any) -> None:
        self.base = base
        self.view = view
        self.me: str = base.node
        #: session id -> the local sessions replicated (``_standby`` None: no other node)
        self.sessions: dict[str, SessionActor] = {}
        self._pending: dict[str, _Batch] = {}
        self._scheduled = False

    def standby(self, session_id: str) -> str | None:
        """Where a session living here keeps its copy now (None: no other node)."""
        if self.view is None:
            return None
        return standby_of(session_id, live_gateway_nodes(self.view, self.me), self.me)

    def _batch(self, node: str) -> _Batch:
        batch = self._pending.get(node)
        if batch is None:
            batch = self._pending[node] = _Batch()
            if not self._scheduled:
                self._scheduled = True
                self.base.loop.call_soon(self.flush)
        return batch

    def record(self, standby: str, session_id: str, dispatch: PreparedDispatch,
               encoding: Encoding, seq: int) -> None:
        """``dispatch`` is ``seq`` of ``session_id`` (once per recipient: kept cheap)."""
        batch = self._pending.get(standby) or self._batch(standby)
        group = batch.json if encoding is Encoding.JSON else batch.msgpack
        to = group.get(dispatch)
        if to is None:
            group[dispatch] = [session_id, seq]
        else:
            to.append(session_id)
            to.append(seq)

    def standby_for(self, session: SessionActor, session_id: str) -> str | None:
        """Note ``session`` as living here (a node joining later gives it a standby) and
        return its standby, picked if it has none yet (None: no other node)."""
        self.sessions[session_id] = session
        if session._standby is None:
            session._standby = self.standby(session_id)
        return session._standby

    def open(self, session: SessionActor, state: SessionState, with_log: bool = True) -> None:
        """Send ``session``'s standby its state (and its log unless ``with_log`` is
        False); picks the standby if the session has none yet."""
        standby = self.standby_for(session, state.session_id)
        if standby is not None:
            self._op(standby, ReplicaOpen(state, session.myAddress, with_log))

    def close(self, session: SessionActor, session_id: str) -> None:
        """``session`` ended or moved away: its standby drops the copy."""
        standby, session._standby = session._standby, None
        if self.sessions.get(session_id) is session:
            del self.sessions[session_id]
        if standby is not None:
            self._op(standby, ReplicaClose(session_id, session.myAddress))

    def _op(self, node: str, op: Any) -> None:
        """Queue a state op for ``node``, behind the dispatches recorded so far."""
        batch = self._batch(node)
        batch.seal()
        batch.ops.append(op)

    def flush(self) -> None:
        self._scheduled = False
        pending, self._pending = self._pending, {}
        for node, batch in pending.items():
            batch.seal()
            to = replicas_address(node)
            for ops in _chunks(batch.ops):
                self.base.tell_from_loop(to, Replicate(self.me, ops))

    def membership_changed(self, _change: Any) -> None:
        """Re-open every local session whose standby changed on its new standby (and
        drop the old copy if that node is still there)."""
        nodes = live_gateway_nodes(self.view, self.me)
        for sid, session in list(self.sessions.items()):
            standby = standby_of(sid, nodes, self.me)
            old = session._standby
            if standby == old:
                continue
            if old is not None:
                self._op(old, ReplicaClose(sid, session.myAddress))
            session._standby = standby
            try:
                if standby is not None:
                    session.replicate_open()
            finally:  # a standby to feed: the fan-out calls the session again
                session.sync_lane()


class Replica:
    """A standby copy: the session's state and a bounded ring of its last dispatches
    (``entries`` are ``[event, bytes]`` numbered ``seq - len(entries) + 1 .. seq``);
    ``heard_at``: when it was opened (its home's last ``Replicate`` is in
    ``ctx.replicas_heard``)."""

    __slots__ = ("state", "address", "seq", "entries", "heard_at")

    def __init__(self, state: SessionState, address: Any, heard_at: float) -> None:
        self.state = state
        self.address = address
        self.seq: int = state.seq
        self.entries: list[Any] = list(state.entries)
        self.heard_at = heard_at

    def add(self, seq: int, entry: list[Any], max_entries: int) -> None:
        if seq == self.seq + 1:
            entries = self.entries
            entries.append(entry)
            if len(entries) > max_entries + max(1, max_entries // 4):
                del entries[:len(entries) - max_entries]
        elif seq > self.seq:  # a gap: what is kept must be contiguous up to seq
            self.entries = [entry]
        else:
            return  # already held
        self.seq = seq

    def snapshot(self, max_entries: int) -> SessionState:
        """The state to promote: the replicated state with the ring as its log."""
        return dataclasses.replace(self.state, seq=self.seq,
                                   entries=self.entries[-max_entries:])


@dataclasses.dataclass(slots=True)
class Superseded:
    """To a local session from the replica store: a session of the same id lives at
    ``other`` (another node promoted its copy of this one while it took this node for
    gone). Local only, never sent."""

    other: Any


class ReplicaStore(Actor):
    """The standby copies this node keeps (``ctx.replicas``), at ``REPLICAS_ID``."""

    ctx: ClassVar[GatewayContext]

    def receiveMessage(self, msg: Any, sender: Any) -> None:
        if isinstance(msg, Replicate):
            self._replicate(msg)
        elif isinstance(msg, HomesGone):
            for sid, replica in list(self.ctx.replicas.items()):
                if replica.address.node in msg.nodes:
                    promote(self.ctx, sid)

    def _replicate(self, msg: Replicate) -> None:
        replicas = self.ctx.replicas
        max_entries = self.ctx.config.replay_max_entries
        cap = max_entries + max(1, max_entries // 4)
        now = time.time()
        #: entries that did not follow their ring's last one: applied in seq order once
        #: the batch is read (a batch groups by dispatch, so one session's may come out
        #: of order; or there is a gap, or a repeat)
        later: list[tuple[int, str, list[Any]]] = []
        for op in msg.ops:
            if isinstance(op, list):
                try:
                    event, data, _encoding, to = op
                    entry = [event, data]
                    for i in range(0, len(to), 2):  # once per recipient: kept inline
                        sid = to[i]
                        replica = replicas.get(sid)
                        if replica is None:
                            continue
                        seq = to[i + 1]
                        if seq == replica.seq + 1:
                            entries = replica.entries
                            entries.append(entry)
                            replica.seq = seq
                            if len(entries) > cap:
                                del entries[:len(entries) - max_entries]
                        else:
                            later.append((seq, sid, entry))
                except (ValueError, TypeError, IndexError, AttributeError):
                    log.warning("bad replicated dispatch from %s: %.80r", msg.node, op)
                continue
            self._apply(later, max_entries)
            if isinstance(op, ReplicaOpen):
                sid = op.state.session_id
                local = self.ctx.sessions.get(sid)
                if local is not None and local != op.address:
                    # a copy of a session that is live here: promoted elsewhere on a
                    # false suspicion of this node (a move or a promotion of a dead
                    # home leaves no such session behind)
                    self.send(local, Superseded(op.address))
                replica = replicas.get(sid)
                if op.with_log or replica is None:
                    replicas[sid] = Replica(op.state, op.address, now)
                else:
                    replica.state, replica.address = op.state, op.address
            elif isinstance(op, ReplicaClose):
                replica = replicas.get(op.session_id)
                if replica is not None and replica.address == op.address:
                    del replicas[op.session_id]
        self._apply(later, max_entries)
        self.ctx.replicas_heard[msg.node] = now

    def _apply(self, later: list[tuple[int, str, list[Any]]], max_entries: int) -> None:
        """Add the entries set aside to their rings, in seq order."""
        if not later:
            return
        later.sort(key=_seq_of)
        replicas = self.ctx.replicas
        for seq, sid, entry in later:
            replica = replicas.get(sid)
            if replica is not None:
                replica.add(seq, entry, max_entries)
        later.clear()


def _seq_of(item: tuple[int, str, list[Any]]) -> int:
    return item[0]


def promote(ctx: GatewayContext, session_id: str) -> Any:
    """Make the standby copy of ``session_id`` a session on this node (its home is
    gone); answers its address, or None when this node holds no copy."""
    replica = ctx.replicas.pop(session_id, None)
    if replica is None:
        return None
    if session_id in ctx.sessions:
        return ctx.sessions[session_id]
    log.info("promoting session %s (home %s is gone)", session_id, replica.address.node)
    state = replica.snapshot(ctx.config.replay_max_entries)
    heard_at = max(replica.heard_at, ctx.replicas_heard.get(replica.address.node, 0.0))
    address = ctx.spawn_session(Promote(state, replica.address, heard_at))
    ctx.sessions[session_id] = address
    return address


# -- catching up from storage after a promotion --------------------------------------------

#: The copy may miss what its home sent in its last moments: messages are read back from
#: this long before the home's last ``Replicate`` (for a channel the ring has none of).
CATCH_UP_MARGIN_S = 2.0

#: At most this many messages per channel (storage's history limit).
CATCH_UP_LIMIT = 100

#: Text channel types whose messages are caught up (GUILD_TEXT, GUILD_ANNOUNCEMENT).
_TEXT_CHANNELS = (0, 5)


def _shared(ctx: GatewayContext, key: Any, make: Callable[[], Awaitable[Any]]) -> Any:
    """One read for every promoted session that asks the same thing at once (a node
    promotes all of a dead node's sessions together): an awaitable of ``make()``."""
    reads = ctx.catch_up_reads
    task = reads.get(key)
    if task is None:
        task = reads[key] = asyncio.ensure_future(make())
        task.add_done_callback(lambda _t: reads.pop(key, None))
    return task


def newest_message_ids(entries: Iterable[PreparedDispatch]) -> dict[int, int]:
    """channel id -> the newest MESSAGE_CREATE id among ``entries`` (a promoted log;
    msgpack entries keep no data and are skipped: their channels use the time cursor)."""
    newest: dict[int, int] = {}
    for dispatch in entries:
        if dispatch.event != "MESSAGE_CREATE":
            continue
        try:
            data = dispatch.data
            channel, message = int(data["channel_id"]), int(data["id"])
        except (RuntimeError, KeyError, TypeError, ValueError):
            continue
        if message > newest.get(channel, 0):
            newest[channel] = message
    return newest


async def read_missed_messages(ctx: GatewayContext, *, user_id: int, intents: int,
                               guild_ids: Iterable[int], newest: dict[int, int],
                               since_s: float) -> list[dict[str, Any]]:
    """The MESSAGE_CREATE payloads a promoted session may have missed, oldest first: in
    each text channel of ``guild_ids`` the user may view, those after the newest one its
    log holds (``newest``), else after the time ``since_s`` (Unix seconds)."""
    if not event_allowed(intents, "MESSAGE_CREATE"):
        return []
    storage = ctx.storage
    default_after = snowflake_at(int(since_s * 1000))

    async def guild_of(guild_id: int) -> Any:
        return (await storage.get_guild(guild_id), await storage.roles_for_guild(guild_id),
                await storage.channels_for_guild(guild_id),
                await guild_overwrites(storage, guild_id))

    found: list[Message] = []
    for guild_id in guild_ids:
        guild, roles, channels, overwrites = await _shared(ctx, ("guild", guild_id),
                                                           lambda g=guild_id: guild_of(g))
        member = await storage.get_member(guild_id, user_id)
        if guild is None or member is None:
            continue
        by_id = {r.id: r for r in roles}
        for channel in channels:
            if channel.type not in _TEXT_CHANNELS or not channel_permissions(
                    guild, by_id, member, overwrites.get(channel.id, {})) & VIEW_CHANNEL:
                continue
            query = HistoryQuery(channel.id, after=newest.get(channel.id, default_after),
                                 limit=CATCH_UP_LIMIT)
            found += await _shared(ctx, ("history", channel.id, query.after),
                                   lambda q=query: storage.history(q))
    if not found:
        return []
    users = await storage.get_users({m.author_id for m in found})
    payloads = []
    for message in sorted(found, key=lambda m: m.id):
        user = users.get(message.author_id)
        author = user_object(user) if user else {"id": str(message.author_id),
                                                  "username": "Deleted User",
                                                  "discriminator": "0"}
        payload = message_object(message, author)
        if not message_content_visible(intents, payload, user_id=user_id,
                                       direct_message=message.guild_id is None):
            payload = redact_message_content(payload)
        payloads.append(payload)
    return payloads
