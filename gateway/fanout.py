"""Fan-out across nodes: one message per destination node, then direct local delivery.

A guild actor never sends one actor message per recipient. It groups the sessions that
get a dispatch by the node they live on (a session's ``Address(node, id)``) and sends
each node's **fan-out point** — the actor at ``Address(node, FANOUT_ID)``, made by the
gateway on every node that serves sockets — one ``NodeFanout`` carrying the payload
once (and its MESSAGE_CONTENT-redacted variant once) plus that node's recipients by
actor id. The fan-out point runs on the sessions' own loop thread and calls each
session's ``deliver_dispatch`` directly (number, record in its ``DispatchLog``, write the
frame), so a delivery costs no mailbox, no run-queue entry and no message object.

``NodeFanout`` is a wire type, so it crosses the data plane unchanged; only its payload
fields differ by destination (``payload_for``): within the node they hold the guild's
``PreparedDispatch`` itself (no copy, no encode), across nodes ``[event, json_d]`` — the
JSON bytes of ``d``, encoded once — which the receiving node turns back into one
``PreparedDispatch`` shared by its recipients.

Every dispatch from a guild to its sessions takes this path, guild events included, so
a session sees one guild's dispatches in the order the guild sent them.

A traced ``NodeFanout`` (its ``trace`` is the guild.fanout span's context) gets one
``fanout.deliver`` span on the receiving node (recipients, node) around the decode and
the per-recipient loop, and each session's ``socket.out`` is its child: that loop is
where a large fan-out spends its time. An untraced one costs one ``is None`` test.

Lanes: per recipient, the loop used to reach the session, its link, the connection and
the replay log before the transport, seven objects, most of them out of the CPU's caches
after the previous recipient's ``sendto``; that was ~3.6 µs of Python per delivery
(loadtest/GATEWAY_BENCH.md, "Lanes"). A session in the common case (attached, its
connection READY, not paused, no standby copy, no catch-up) keeps ``(cell, transport,
log, conn)`` in ``ctx.lanes``. For plain JSON (``conn`` None) the loop numbers the
dispatch in that log and writes its frame to that transport: what ``deliver_dispatch``
would do, with three objects. A compressed or msgpack connection (``conn``) numbers and
frames it itself (``dispatch_frame``: through its compressor, in order), and the loop
writes that: the session, its link and their checks are skipped all the same (a
zlib-stream delivery cost 5.3 µs in-process, 3.0-3.2 with its lane).
``SessionActor.sync_lane`` keeps the entry true: it runs after every message the
session handles, after every change on its link's side (effects carried out, pause,
resume, disconnect) and after this actor's direct calls; anything else (paused,
catching up, traced recipients) goes through ``deliver_dispatch`` as before.

Turns: a fan-out to more than ``TURN_RECIPIENTS`` sessions of this node is delivered
``TURN_RECIPIENTS`` at a time, one batch per turn of this actor; the next turn comes
from a timer of 0 s, so the loop serves its I/O and the actors queued meanwhile run in
between. This is the BEAM's reduction count applied to the one actor whose message can
take ~10 ms: a 1,000-recipient loop in one turn held every REST request, storage
acknowledgement and actor hop of the node behind it. At 80 msg/s x 1,000 members the
durable stage's p99 (the poster's answer waits for it) was 49-198 ms because of that,
and 10-27 ms with turns of 128 (14-30 with 256; loadtest/GATEWAY_BENCH.md, "Turns"), the
poster's REST p99 ~20 ms (30-45 with 256, 127-292 in one turn). What arrives meanwhile
(NodeFanouts, small ones too, and Cutovers) waits in ``_backlog`` behind it, in the
order it came, so every session still sees the guild's dispatches in order. The backlog
holds at most ``backlog_capacity`` NodeFanouts (10,000; plus what rides, below, and
Cutovers, which are never shed: one per moving session and guild). Past it a NodeFanout
is *shed*: where it would have been delivered, each of its sessions, which has had
everything before it, is closed 4009 (Session timed out: discord.py, hikari and
discord.js reconnect, are refused the RESUME, op 9, and identify anew, reading the state
afresh; the messages they missed are in the channel's history). A session that cannot
have every dispatch in order cannot go on, in any state (``SessionActor.close``: its
socket closing already, or on either side of a move). Before, the guild got the
NodeFanout back as ``Overloaded`` and dropped it, and its sessions went on without it,
none the wiser. One that finds this actor's mailbox itself full still comes back to its
guild as ``Overloaded``, and the guild closes its sessions the same way
(``GuildActor._bounced``). A traced NodeFanout is delivered whole when its turn comes
(its spans time the loop). Sessions with a standby copy on another node (no lane) feed
``ReplicaFeed``, which sends once per loop round: a 1,000-recipient fan-out now reaches
each standby node in eight batches, each with the dispatch's bytes.

Riding: on loopback most of a delivery's cost is the kernel's, one ``send`` per
recipient (~8.5 of the node's ~14 µs), and that cost hardly depends on the write's size
(~8 µs for 851 bytes, ~9 for 3,404: loadtest/GATEWAY_BENCH.md, "Riding"). So the
NodeFanouts that wait right behind a fan-out under way, to the same recipients (the same
parts, equal), get on it: from where it has got to, each recipient gets all of them in
one write (``outbound.write_frames``), each numbered in its log in the order they came.
A session whose connection frames for it (compressed, say) frames them through that, in
order, and writes them together too (``SessionActor.deliver_together``); one catching up
from storage or feeding a standby copy takes them one by one. A rider goes once round,
so the recipients passed before it got on get it after. A session still sees them in the
order they came; nothing rides past a Cutover, a traced fan-out or one to other
recipients, and at most ``MAX_RIDERS`` ride at once. Nothing waits to ride: only what
already waits behind a fan-out in turns gets on, so a node that keeps up writes as
before, and one that falls behind (a burst, a busy host) catches up with fewer, bigger
writes instead of falling further behind. A turn's budget counts frames, so a turn with
riders lasts about as long, and goes as many times less far: the first rider's last
recipients wait longer than they would alone, no longer than behind the others one after
another. Each dispatch is encoded when it arrives, so one that cannot be fails as its
own message; a bug in a later turn drops the fan-out with its riders
(``fanout.dropped``).

Passive sessions (DESIGN.md, "Placement and fan-out"): a session identified with a
user (non-bot) token is *passive* for a guild until its client sends op 14 (Discord's
guild subscription, sent by its client when the user opens the guild); a passive
session gets the guild's events (GUILD_*, CHANNEL_*, PRESENCE_UPDATE) but no
per-message fan-out (MESSAGE_CREATE/UPDATE/DELETE, TYPING_START). Bot sessions are
always active (bots send no op 14: discord.py keeps working). Once opened, a guild stays
active for the rest of the session, across RESUMEs and guild restarts.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from picows import WSMsgType

from actors import Actor, Timeout
from actors.address import Address
from actors.wire import wire_type
from gateway.context import bind
from gateway.messages import Cutover
from gateway.outbound import bytes_written, write_frames
from gateway.protocol import Encoding, PreparedDispatch
from gateway.protocol.close_codes import REASONS, CloseCode
from gateway.session import SessionActor, catch_up_since
from gateway.stages import record_stage
from gateway.tracing import context_of, start
from observability.logging import LogThrottle
from observability.metrics import counter, histogram
from storage.snowflake import snowflake_ms

log = logging.getLogger("greenroom.gateway.fanout")
#: a bug that fails every delivery would log each recipient: one line a second per error
_failed_lines = LogThrottle(interval=1.0)
#: an overload sheds in bursts (a marker between two Cutovers each): one line a second
_shed_lines = LogThrottle(interval=1.0)
_deliveries = counter("gateway_deliveries_total",
                      "dispatches this node's fan-out point handed to its sessions")
_shed = counter("gateway_fanouts_shed_total",
                "NodeFanouts this node's fan-out point had no room for (its backlog full); "
                "each of their sessions is closed 4009, to identify anew")
_latency = histogram("gateway_delivery_latency",
                     "a MESSAGE_CREATE's creation (its snowflake, ms) to the end of the "
                     "fan-out loop that wrote it to this node's sockets, per delivery", "s")

#: The fan-out point's actor id on every node (negative: never an id the runtime hands
#: out, which counts up from 1; the cluster directory is 0).
FANOUT_ID = -1
_TEXT, _BINARY = WSMsgType.TEXT, WSMsgType.BINARY
_JSON = Encoding.JSON
#: a fan-out point with no context (``start_fanout_point`` without one): no lanes
_NO_LANES: dict[int, tuple[Any, Any, Any, Any]] = {}
#: frames the fan-out point writes in one turn (a recipient counts once per rider); a
#: bigger fan-out goes on in its next turns, each after the loop has served its I/O
#: (module doc, "Turns")
TURN_RECIPIENTS = 128
#: NodeFanouts riding together on one fan-out under way (module doc, "Riding"): what a
#: lane's one write carries at most, and what the backlog may hold beyond its bound
MAX_RIDERS = 16
#: socket.out spans under one traced fanout.deliver (the first recipients'; see _deliver_traced)
SOCKET_OUT_SPANS = 16


def fanout_address(node: str) -> Address:
    """The fan-out point of ``node``."""
    return Address(node, FANOUT_ID)


@wire_type("gateway.node_fanout")
@dataclass(slots=True)
class NodeFanout:
    """Guild -> a node's fan-out point: deliver ``payload`` to the sessions ``to`` (actor
    ids on that node) and ``redacted`` to the sessions ``redacted_to``.

    ``payload``/``redacted``: a ``PreparedDispatch`` within the node, ``[event, json_d]``
    across nodes (``payload_for``); ``redacted`` is None when ``redacted_to`` is empty.
    ``trace``: the guild.fanout span's context (None when not traced: the hot path).
    """

    payload: Any
    to: Any  # a sequence of actor ids (the guild's cached tuple; a list once decoded)
    redacted: Any = None
    redacted_to: Any = ()
    trace: dict | None = None


def payload_for(dispatch: PreparedDispatch | None, local: bool) -> Any:
    """``dispatch`` as a ``NodeFanout`` payload for a node that is (not) the sender's."""
    if dispatch is None or local:
        return dispatch
    return [dispatch.event, dispatch.json_d()]


def _dispatch_of(payload: Any) -> PreparedDispatch:
    if payload.__class__ is PreparedDispatch:
        return payload
    if (isinstance(payload, list) and len(payload) == 2 and isinstance(payload[0], str)
            and isinstance(payload[1], bytes)):
        return PreparedDispatch.from_json(payload[0], payload[1])
    raise ValueError(f"NodeFanout payload must be [event, json bytes], not {payload!r:.80}")


class FanoutPoint(Actor):
    """A node's fan-out point (``FANOUT_ID``): delivers each ``NodeFanout`` to the local
    sessions it names, by direct call on this loop thread. A session that ended in the
    meantime is skipped (its guild forgets it when its monitor fires).

    Its mailbox holds acknowledged messages on their way to the sessions, and nobody
    sends them again: an incarnation that replaces one that died (``replaces_crashed``,
    called by gateway/services.py) first has every local session catch up from storage
    (``SessionActor.dispatches_lost``), before its own first delivery, so each session's
    log still ends where the loss began."""

    #: this incarnation replaced one that died; the sessions are not told yet
    _lost_queue = False
    #: the gateway's context (``gateway.context.bind``): its ``lanes``
    ctx: Any = None
    #: what may wait in ``_backlog``; past it a NodeFanout is shed (module doc, "Turns")
    backlog_capacity: int = Actor.mailbox_capacity

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: NodeFanouts and Cutovers waiting behind a big fan-out, in the order they came;
        #: the first may be a ``_Turns`` under way (module doc, "Turns")
        self._backlog: deque[Any] = deque()

    @property
    def _lanes(self) -> dict[int, tuple[Any, Any, Any, Any]]:
        return _NO_LANES if self.ctx is None else self.ctx.lanes

    def replaces_crashed(self) -> None:
        """The fan-out point before this one died, with what was queued behind it: tell
        the sessions, at this incarnation's first message or its first loop turn."""
        self._lost_queue = True
        asyncio.get_running_loop().call_soon(self._sessions_catch_up)

    def _sessions_catch_up(self) -> None:
        if not self._lost_queue or not self._myRef.alive:
            return
        self._lost_queue = False
        since_s = catch_up_since()  # one for all: their reads are shared
        told = _each_session(list(self._myRef.base.cells.values()),
                             lambda session: session.dispatches_lost(since_s),
                             "fanout.catch_up_failed")
        log.warning("fanout.restarted", extra={"sessions_catching_up": told})

    def receiveMessage(self, msg: Any, sender: Any) -> None:
        if self._lost_queue:
            self._sessions_catch_up()
        if msg.__class__ is Timeout:
            if msg.payload is _GO_ON:
                self._work()
        elif isinstance(msg, (NodeFanout, Cutover)):
            backlog = self._backlog
            untraced = msg.__class__ is NodeFanout and msg.trace is None
            if backlog or (untraced and _recipients(msg) > TURN_RECIPIENTS):
                if len(backlog) >= self.backlog_capacity and msg.__class__ is NodeFanout:
                    self._shed(msg)  # no room: its sessions start anew instead
                    return
                # behind what waits, in order (module doc, "Turns"); a NodeFanout is
                # decoded now: a malformed one fails here, as its own message
                backlog.append(_Turns(msg) if untraced else msg)
                if len(backlog) == 1:
                    self._work()
            else:
                self._handle(msg)

    def _work(self) -> None:
        """Deliver from the backlog, about ``TURN_RECIPIENTS`` frames in this turn; the
        rest goes on in the next one, which comes after the loop has served its I/O (a
        timer of 0 s) and the actors queued meanwhile have had their turn."""
        backlog, budget = self._backlog, TURN_RECIPIENTS
        cells, lanes = self._myRef.base.cells, self._lanes
        try:
            while backlog and budget > 0:
                head = backlog[0]
                try:
                    if head.__class__ is not _Turns:  # a Cutover, a traced NodeFanout,
                        backlog.popleft()  # what was shed; whole (a traced one's spans
                        budget -= _cost(head)  # time its loop)
                        self._handle(head)
                        continue
                    while len(backlog) > 1 and head.take(backlog[1]):
                        del backlog[1]  # it rides along from here (module doc, "Riding")
                    budget = head.deliver(cells, lanes, budget)
                    if not head.riders:
                        backlog.popleft()
                except Exception:  # a bug: this one (and its riders) is lost, not what
                    # waits behind it
                    log.exception("fanout.dropped", extra={"event_name": (
                        head.event if head.__class__ is _Turns else type(head).__name__)})
                    if backlog and backlog[0] is head:
                        backlog.popleft()
        finally:
            if backlog:
                self.start_timer(0, _GO_ON)

    def _shed(self, msg: NodeFanout) -> None:
        """No room behind the fan-out under way for ``msg``: its sessions are noted where
        it would have been delivered (a ``_Shed`` at the end of the backlog, shared with
        those shed right before it), to be closed when that turn comes."""
        backlog = self._backlog
        shed = backlog[-1]
        if shed.__class__ is not _Shed:
            shed = _Shed()
            backlog.append(shed)
        shed.add(msg)
        _shed.add(1)

    def _close_shed(self, shed: _Shed) -> None:
        """Each live session a shed NodeFanout was for has had all that came before it;
        it cannot have the rest in order, so it ends: its socket closed 4009 (module doc,
        "Turns")."""
        cells = self._myRef.base.cells
        closed = _each_session(
            [cell for actor_id in shed.sessions if (cell := cells.get(actor_id)) is not None],
            lambda session: session.close(CloseCode.SESSION_TIMED_OUT,
                                          REASONS[CloseCode.SESSION_TIMED_OUT]),
            "fanout.shed_close_failed")
        held = _shed_lines.allow("shed")
        if held is not None:
            log.warning("fanout.shed", extra={
                "fanouts": shed.fanouts, "event_name": shed.event, "suppressed": held,
                "capacity": self.backlog_capacity, "sessions_closed": closed})

    def _handle(self, msg: NodeFanout | Cutover | _Shed) -> None:
        """``msg`` in this turn, whole."""
        if msg.__class__ is _Shed:
            self._close_shed(msg)
        elif isinstance(msg, NodeFanout):
            cells = self._myRef.base.cells
            if msg.trace is not None:
                started = time.perf_counter()
                self._deliver_traced(cells, msg)
                _delivered(_event_of(msg), started)
            else:  # as one turn with room for every recipient
                whole = _Turns(msg)
                whole.deliver(cells, self._lanes, whole.size)
        else:
            # A guild swapped a session that moved to another node for its new address;
            # here, behind every NodeFanout that guild sent this node, the old session
            # hears that nothing more comes from it (gateway/session.py, ``cutover``).
            cell = self._myRef.base.cells.get(msg.session)
            if cell is not None and cell.alive and isinstance(cell.instance, SessionActor):
                try:
                    cell.instance.cutover(msg.guild_id)
                finally:
                    cell.instance.sync_lane()

    def _deliver_traced(self, cells: dict[int, Any], msg: NodeFanout) -> None:
        to, redacted_to = msg.to, msg.redacted_to or ()
        # The first SOCKET_OUT_SPANS recipients get their socket.out span; the rest are
        # delivered untraced: fanout.deliver covers the whole loop, and a span per
        # recipient cost ~30 ms of loop time per traced 1,000-recipient message (p99
        # of every message behind it) and filled the export queue.
        traced = min(len(to), SOCKET_OUT_SPANS)
        traced_redacted = min(len(redacted_to), SOCKET_OUT_SPANS - traced)
        span = start(msg.trace, "fanout.deliver", {
            "greenroom.recipients": len(to) + len(redacted_to),
            "greenroom.socket_out_spans": traced + traced_redacted,
            "greenroom.node": self.myAddress.node})
        trace = context_of(span)  # each traced socket.out is fanout.deliver's child
        try:
            dispatch = _dispatch_of(msg.payload)
            dispatch.fanout = len(to)
            lanes = self._lanes
            self._deliver(cells, [dispatch], to[:traced], trace, _NO_LANES)
            self._deliver(cells, [dispatch], to[traced:], None, lanes)
            if redacted_to:
                redacted = _dispatch_of(msg.redacted)
                redacted.fanout = len(redacted_to)
                self._deliver(cells, [redacted], redacted_to[:traced_redacted], trace, _NO_LANES)
                self._deliver(cells, [redacted], redacted_to[traced_redacted:], None, lanes)
        finally:
            span.end()

    @staticmethod
    def _deliver(cells: dict[int, Any], dispatches: list[PreparedDispatch], to: Any,
                 trace: dict | None, lanes: dict[int, tuple[Any, Any, Any, Any]]) -> None:
        """Each of ``dispatches``, in order, to each of ``to``; a lane gets them all in
        one write (module doc, "Riding")."""
        # ``to`` may come from another node: only live session actors are called. The
        # caller has set each dispatch's ``fanout`` to its whole fan-out's size: a big
        # fan-out's zlib-stream frames share one deflated tail
        # (gateway/protocol/compression.py), and each connection compares it with its
        # threshold.
        session_class = SessionActor
        one = dispatches[0] if len(dispatches) == 1 else None
        prefix = suffix = b""  # one's JSON frame, cut where a lane's number goes
        join = b"".join
        written = 0
        for actor_id in to:
            try:
                lane = lanes.get(actor_id)
                if lane is not None:  # the common case, in place (module doc, "Lanes")
                    cell, transport, dispatch_log, conn = lane
                    if cell.alive and conn is not None:  # framed by its connection
                        if one is not None:
                            data = conn.dispatch_frame(one)
                            if data is not None:
                                transport.send(_BINARY, data)
                                written += len(data)
                            continue
                        # riders: through the session (deliver_together), below
                    elif cell.alive:  # plain JSON text
                        if one is not None:
                            # dispatch_log.append and one.frame, inlined: this runs
                            # once per recipient (GatewayConnection.dispatch_frame too)
                            if not prefix:  # encoded at the first (and it can fail)
                                prefix, suffix = one.json_parts()
                            dispatch_log.seq = seq = dispatch_log.seq + 1
                            entries = dispatch_log._entries
                            if entries is None or len(entries) >= dispatch_log._cap:
                                dispatch_log._store(one)
                            else:
                                entries.append(one)
                            data = join((prefix, b"%d" % seq, suffix))
                            transport.send(_TEXT, data)
                            written += len(data)
                            continue
                        frames = []
                        for dispatch in dispatches:
                            data = dispatch.frame(dispatch_log.append(dispatch), _JSON)
                            frames.append((_TEXT, data))
                            written += len(data)
                        write_frames(transport, frames)
                        continue
                    else:
                        del lanes[actor_id]  # the session died (a crash): nothing to write
                cell = cells.get(actor_id)
                if cell is not None and cell.alive:
                    session = cell.instance
                    if isinstance(session, session_class):
                        if one is not None:
                            session.deliver_dispatch(one, trace)
                            continue
                        if trace is None and session.deliver_together(
                                dispatches, lambda exc, dispatch, actor_id=actor_id:
                                _delivery_failed(exc, actor_id, dispatch, None)):
                            continue  # in one write (compressed, say)
                        for dispatch in dispatches:  # one failing costs the others nothing
                            try:
                                session.deliver_dispatch(dispatch, trace)
                            except Exception as exc:
                                _delivery_failed(exc, actor_id, dispatch, trace)
            except Exception as exc:  # one broken session must not cost the others theirs
                _delivery_failed(exc, actor_id, dispatches[0], trace)
        bytes_written[0] += written
        for dispatch in dispatches:  # once per batch: metrics cost nothing per recipient
            _deliveries.add(len(to))
            created_ms = _created_ms(dispatch)
            if created_ms is not None:
                _latency.record(time.time() - created_ms / 1000, len(to))


def _each_session(cells: list[Any], call: Callable[[SessionActor], Any],
                  failed: str) -> int:
    """``call`` each live session actor of ``cells`` directly, on this loop thread, then
    keep its lane true (what ``call`` changed, a catch-up's hold, say, the fan-out point
    sees next); one that raises is logged as ``failed`` and costs the others nothing.
    How many were called."""
    called = 0
    for cell in cells:
        session = cell.instance
        if not cell.alive or not isinstance(session, SessionActor):
            continue
        try:
            try:
                call(session)
            finally:
                session.sync_lane()
            called += 1
        except Exception:  # one broken session must not cost the others theirs
            log.exception(failed, extra={"session": cell.address.id})
    return called


def _delivery_failed(exc: Exception, actor_id: int, dispatch: PreparedDispatch,
                     trace: dict | None) -> None:
    """A delivery raised: one line a second per kind of error, naming the message's
    trace."""
    held = _failed_lines.allow(type(exc))
    if held is not None:
        log.error("fanout.delivery_failed", exc_info=exc, extra={
            "session": actor_id, "event_name": dispatch.event, "trace": trace,
            "suppressed": held})


class _Turns:
    """A NodeFanout being delivered, in one turn or over several, with the NodeFanouts
    riding on it (module doc, "Riding").

    ``parts``: its recipients (the payload's, then the redacted payload's), decoded
    before any delivery and the same for every rider; ``size``: their number;
    ``riders``: what goes to them, in the order it came; ``at``: the next recipient,
    counting the parts end to end; each rider goes once round from where it got on."""

    __slots__ = ("parts", "size", "riders", "at")

    def __init__(self, msg: NodeFanout) -> None:
        came = time.perf_counter()  # the fanout_loop stage counts its wait too
        self.parts: list[Any] = []
        dispatches = []
        for payload, to in ((msg.payload, msg.to), (msg.redacted, msg.redacted_to)):
            if to:
                dispatch = _dispatch_of(payload)  # decoded once, for every turn
                # and encoded: one that cannot be fails now, as its own message, not in
                # a write it shares with its riders (plain lanes, which most are, are
                # JSON; another encoding fails per recipient, in ``dispatch_frame``)
                dispatch.encoded(_JSON)
                dispatch.fanout = len(to)
                self.parts.append(to)
                dispatches.append(dispatch)
        self.size = sum(len(to) for to in self.parts)
        self.riders = [_Rider(dispatches, self.size, came, _event_of(msg))]
        self.at = 0

    @property
    def event(self) -> str:
        return self.riders[0].event if self.riders else "?"

    def take(self, other: Any) -> bool:
        """Let ``other`` (what waits right behind this) ride along from here: when it is
        a fan-out to the same recipients that has not begun, and there is room."""
        if other.__class__ is not _Turns or len(self.riders) >= MAX_RIDERS \
                or not self.riders or len(other.riders) != 1 \
                or other.riders[0].left != other.size or other.size != self.size \
                or len(other.parts) != len(self.parts):
            return False
        for mine, theirs in zip(self.parts, other.parts, strict=True):
            if mine is not theirs and mine != theirs:
                return False
        self.riders.append(other.riders[0])
        return True

    def deliver(self, cells: dict[int, Any], lanes: dict[int, tuple[Any, Any, Any, Any]],
                budget: int) -> int:
        """Deliver about ``budget`` more frames (at least one per rider); returns what
        is left of it."""
        riders = self.riders
        if not self.size:  # nobody to write to: done
            self.riders = riders = []
        while riders and budget > 0:
            part, at = 0, self.at
            while at >= len(self.parts[part]):
                at -= len(self.parts[part])
                part += 1
            to = self.parts[part]
            # as far as the part's end, the first rider's last recipient (the first on
            # has the fewest left), the budget
            count = min(len(to) - at, riders[0].left, max(1, budget // len(riders)))
            FanoutPoint._deliver(cells, [r.dispatches[part] for r in riders],
                                 to[at:at + count], None, lanes)
            budget -= count * len(riders)
            self.at = (self.at + count) % self.size
            for rider in riders:
                rider.left -= count
            while riders and riders[0].left <= 0:  # the first on is the first off
                done = riders.pop(0)
                _delivered(done.event, done.came)
        return budget


class _Rider:
    """One NodeFanout on a ``_Turns``: its dispatch per part and the recipients it has
    left to go to."""

    __slots__ = ("dispatches", "left", "came", "event")

    def __init__(self, dispatches: list[PreparedDispatch], left: int, came: float,
                 event: str) -> None:
        self.dispatches = dispatches
        self.left = left
        self.came = came
        self.event = event


def _delivered(event: str, since: float) -> None:
    """A fan-out that came at ``since`` (``perf_counter``) is written: its stage."""
    if event == "MESSAGE_CREATE":
        record_stage("fanout_loop", time.perf_counter() - since)


def _recipients(msg: NodeFanout) -> int:
    return len(msg.to) + len(msg.redacted_to or ())


def _cost(msg: NodeFanout | Cutover | _Shed) -> int:
    """What handling ``msg`` whole takes from a turn's budget: a frame per recipient; a
    session closed counts as one."""
    if msg.__class__ is NodeFanout:
        return _recipients(msg)
    return 1 if msg.__class__ is Cutover else len(msg.sessions)


class _Shed:
    """NodeFanouts shed one after another (no room in the backlog), where they would
    have been delivered: the sessions they were for (local actor ids, in the order
    met), closed when this turn comes (``FanoutPoint._close_shed``)."""

    __slots__ = ("sessions", "fanouts", "event")

    def __init__(self) -> None:
        self.sessions: dict[int, None] = {}
        self.fanouts = 0
        self.event = "?"

    def add(self, msg: NodeFanout) -> None:
        if not self.fanouts:
            self.event = _event_of(msg)
        self.fanouts += 1
        self.sessions.update(dict.fromkeys(msg.to))
        if msg.redacted_to:
            self.sessions.update(dict.fromkeys(msg.redacted_to))


def _event_of(msg: NodeFanout) -> str:
    payload = msg.payload
    return payload.event if payload.__class__ is PreparedDispatch else payload[0]


#: the payload of the timer with which the fan-out point goes on with its backlog
_GO_ON = object()


#: ``,"op":0,"d":{"id":"`` ahead of a message object's id (chat/objects.py: first key)
_MESSAGE_ID_AT = b',"op":0,"d":{"id":"'


def _created_ms(dispatch: PreparedDispatch) -> int | None:
    """When a MESSAGE_CREATE's message was created (its snowflake's ms), read from the
    JSON frame bytes the sessions use anyway (a remote payload is not decoded)."""
    if dispatch.event != "MESSAGE_CREATE":
        return None
    encoded = dispatch.encoded(Encoding.JSON)
    if not encoded.startswith(_MESSAGE_ID_AT):
        return None
    end = encoded.find(b'"', len(_MESSAGE_ID_AT))
    try:
        return snowflake_ms(int(encoded[len(_MESSAGE_ID_AT):end]))
    except ValueError:
        return None


def start_fanout_point(base: Any, ctx: Any = None) -> Address:
    """Create this node's fan-out point on ``base`` (a ``UvloopSystemBase``; loop thread),
    for the sessions of the gateway context ``ctx`` (None: it calls every session)."""
    cls = FanoutPoint if ctx is None else bind(FanoutPoint, ctx)
    return base.create_actor(None, cls, None, None, fixed_id=FANOUT_ID)
