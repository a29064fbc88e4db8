"""The gateway's socket edge (picows) and the ``Gateway`` that runs it with REST.

Each WebSocket connection gets a ``Link``: it owns the connection's sans-I/O
``GatewayConnection``, feeds it whole messages and timer ticks, and carries out its
effects (frames, close, timer). IDENTIFY creates a session actor; RESUME finds the
session by id on this node and attaches the new link to it. Everything runs on one
event loop: the link, the actors and aiohttp's REST handlers.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from picows import (
    WSCloseCode,
    WSFrame,
    WSListener,
    WSMsgType,
    WSTransport,
    WSUpgradeResponse,
    WSUpgradeResponseWithListener,
    ws_create_server,
)
from thespian.actors import ActorExitRequest

from actors import UvloopSystemBase
from actors.address import Address
from actors.registry import Configure
from cluster.routing import ENTITY_REGISTRY_ID, PlacedRegistry, rebalance_on_change
from gateway.channel import ChannelActor, placement_key
from gateway.context import GatewayContext, bind
from gateway.guild import GuildActor
from gateway.identity import IdentityCache
from gateway.limits import (
    DEFAULT_MAX_CONNECTIONS,
    ConnectionRateLimiter,
    IdentifyBudget,
    RateLimits,
    RestRateLimiter,
    connection_key,
)
from gateway.memory import TRIM_AFTER_RESTS, trim_heap
from gateway.messages import (
    Attach,
    Detached,
    HomesGone,
    Identify,
    Migrate,
    OpenGuild,
    SetPresence,
)
from gateway.outbound import (
    DEFAULT_WRITE_LIMITS,
    WriteLimits,
    abort,
    apply_write_limits,
    bytes_written,
    write_frames,
)
from gateway.protocol import (
    DEFAULT_CONFIG,
    WS_INVALID_DATA,
    WS_PROTOCOL_ERROR,
    Close,
    CloseCode,
    ConnectionState,
    DispatchLog,
    Effect,
    GatewayConfig,
    GatewayConnection,
    GuildMembersRequested,
    GuildSubscribeRequested,
    IdentifyRequested,
    PreparedDispatch,
    PresenceUpdateRequested,
    ResumeRequested,
    SendFrame,
    SetTimer,
    ZlibStreamCompressor,
    parse_connection_url,
)
from gateway.reactions import ReactionsActor, reactions_placement
from gateway.replica import REPLICAS_ID, ReplicaFeed
from gateway.services import SESSION_HOST_ID, STORAGE_ID, node_services, services_watch
from gateway.session import SessionActor
from gateway.sessions import node_of_session
from gateway.timers import TimerWheel
from gateway.ws_log import quiet_peer_protocol_errors
from observability import counter, inject_current, span_from
from observability.logging import LogThrottle
from observability.tracing import tracing_active
from storage.base import Storage
from storage.snowflake import SnowflakeGenerator
from supervision import Start, Started, Stop, Supervisor

log = logging.getLogger("greenroom.gateway")
#: a full node answers every new handshake 503: one line a second, with the count held
_refused_lines = LogThrottle(interval=1.0)

_identifies = counter("gateway_identifies_total", "IDENTIFYs that passed the "
                      "connection's checks (a session actor was started for each)")
_resumes = counter("gateway_resumes_total", "RESUMEs that passed the connection's checks")
_slow_closes = counter("gateway_slow_consumer_closes_total",
                       "connections closed with 4000 for not reading, by reason "
                       "(stalled, replay_limit)",
                       labels={"reason": ("stalled", "replay_limit")})

_TEXT = WSMsgType.TEXT
_BINARY = WSMsgType.BINARY
_CONT = WSMsgType.CONTINUATION
_CLOSE = WSMsgType.CLOSE
_PING = WSMsgType.PING


class Link(WSListener):
    """One WebSocket connection: the socket side of a ``GatewayConnection``."""

    # Flow control (gateway/outbound.py), as class defaults: an instance sets them only
    # while its client is behind, so an idle connection costs no more memory.
    #: above the high-water mark: dispatches wait in the session's replay log
    _paused = False
    #: the seq of the first dispatch held in the log and not written yet (None: none)
    _unsent: int | None = None
    #: while paused: the check that the client makes progress
    _stall: asyncio.TimerHandle | None = None
    #: a RESUME's replay not written yet: (the seq of the first, its dispatches)
    _replay: tuple[int, deque[PreparedDispatch]] | None = None

    def __init__(self, gateway: Gateway, path: str) -> None:
        self.gateway = gateway
        self.loop = gateway.loop
        self.conn = GatewayConnection(parse_connection_url(path), gateway.config)
        self.transport: WSTransport | None = None
        self.session: Any = None  # the session actor's address once IDENTIFY/RESUME worked
        self._parts: list[bytes] | None = None
        self._parts_size = 0
        self._parts_text = True
        self._client_close: int | None = None

    @property
    def closed(self) -> bool:
        """The connection is closed (by either side): nothing more goes out on it."""
        return self.conn.state is ConnectionState.CLOSED

    # -- picows callbacks ---------------------------------------------------------------

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        apply_write_limits(transport.underlying_transport, self.gateway.write_limits)
        peer = transport.underlying_transport.get_extra_info("peername")
        if not self.gateway.connection_limiter.allow(connection_key(peer)):
            # over the per-address rate: 4008 before HELLO; never in ``links`` (the cap)
            self.execute(self.conn.close(CloseCode.RATE_LIMITED, "too many new connections"))
            return
        self.gateway.links.add(self)
        if self.conn.compression_rests:
            self.gateway.resting_links.add(self)
        self.execute(self.conn.start(self.loop.time()))

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        kind = frame.msg_type
        if frame.rsv1 or frame.rsv2 or frame.rsv3:
            # RFC 6455 §5.2: no extension was negotiated, so a reserved bit fails it
            self._violation(WS_PROTOCOL_ERROR, "reserved bit set, no extension negotiated")
        elif kind is _TEXT or kind is _BINARY:
            if self._parts is not None:  # §5.4: a fragmented message is not interleaved
                self._violation(WS_PROTOCOL_ERROR, "new message inside a fragmented one")
            elif frame.fin:
                if kind is _BINARY:
                    self.execute(self.conn.receive(frame.get_payload_as_bytes(),
                                                   self.loop.time()))
                else:
                    self._receive_text(frame.get_payload_as_bytes())
            else:
                self._parts = [frame.get_payload_as_bytes()]
                self._parts_size = frame.payload_size
                self._parts_text = kind is _TEXT
        elif kind is _CONT:
            if self._parts is None:
                self._violation(WS_PROTOCOL_ERROR, "continuation frame without a message")
                return
            self._parts.append(frame.get_payload_as_bytes())
            self._parts_size += frame.payload_size
            too_big = self._parts_size > self.gateway.config.max_payload_bytes
            if frame.fin or too_big:
                data = b"".join(self._parts)
                self._parts = None
                if self._parts_text and not too_big:
                    self._receive_text(data)
                else:  # over the limit: the connection closes it with 4002
                    self.execute(self.conn.receive(data, self.loop.time()))
        elif kind is _PING:  # answered here, not by picows: after the RSV check above
            transport.send_pong(frame.get_payload_as_bytes())
        elif kind is _CLOSE:
            self._client_close = int(frame.get_close_code().value) \
                if frame.payload_size >= 2 else None
            transport.send_close(WSCloseCode.OK)
            transport.disconnect()

    def _receive_text(self, data: bytes) -> None:
        """A whole text message: UTF-8 or the connection fails with 1007 (RFC 6455
        §8.1), not with picows's 1011 and an ERROR record for a client's bad bytes."""
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            self._violation(WS_INVALID_DATA, f"text message is not UTF-8 ({exc.reason})")
            return
        self.execute(self.conn.receive(text, self.loop.time()))

    def _violation(self, code: int, detail: str) -> None:
        self._parts = None
        self.execute(self.conn.protocol_violation(code, detail))

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.gateway.links.discard(self)
        self.gateway.resting_links.discard(self)
        self.gateway.timers.cancel(self)
        gone = self.conn.connection_lost(self._client_close)
        self._sync_lane()
        if self.session is not None:
            self.gateway.base.tell_from_loop(self.session, Detached(self, gone.session_resumable))

    # -- effects ---------------------------------------------------------------------------

    def send_dispatch(self, dispatch: PreparedDispatch) -> None:
        """``execute(conn.dispatch(dispatch))`` without the effect list: the fan-out's
        per-recipient path (the session actor calls it)."""
        if self._paused:  # the client is behind: numbered in the log, written later
            self._hold(dispatch)
            return
        conn = self.conn
        data = conn.dispatch_frame(dispatch)
        transport = self.transport
        if data is not None and transport is not None and not transport.is_disconnected:
            transport.send(_TEXT if conn.text_frames else _BINARY, data)
            bytes_written[0] += len(data)

    def send_dispatches(self, dispatches: list[PreparedDispatch],
                        failed: Callable[[Exception, PreparedDispatch], None]) -> None:
        """``send_dispatch`` of each, in order, their frames in one write (what rides on
        a fan-out, gateway/fanout.py: a compressed connection's frames go through its
        stream in order, then out together). ``failed`` hears of each dispatch that
        raised; the others go on, as they would one by one."""
        conn = self.conn
        kind = _TEXT if conn.text_frames else _BINARY
        frames: list[tuple[WSMsgType, bytes]] = []
        for dispatch in dispatches:
            try:
                if self._paused:  # the client is behind (or fell behind just now)
                    self._hold(dispatch)
                    continue
                data = conn.dispatch_frame(dispatch)
            except Exception as exc:
                failed(exc, dispatch)
                continue
            if data is not None:
                frames.append((kind, data))
        transport = self.transport
        if frames and transport is not None and not transport.is_disconnected:
            write_frames(transport, frames)
            bytes_written[0] += sum(len(data) for _, data in frames)

    def execute(self, effects: Iterable[Effect]) -> None:
        """Carry out the connection's effects in order (the session actor calls this too).
        Consecutive frames (READY and its GUILD_CREATEs) go out in one write."""
        try:
            self._carry_out(effects)
        finally:  # the connection's state may have changed, whatever went wrong
            self._sync_lane()

    def _carry_out(self, effects: Iterable[Effect]) -> None:
        transport = self.transport
        frames: list[SendFrame] | None = None
        for effect in effects:
            if isinstance(effect, SendFrame):
                if frames is None:
                    frames = [effect]
                else:
                    frames.append(effect)
                continue
            if frames is not None:
                self._send_frames(frames)
                frames = None
            if isinstance(effect, SetTimer):
                # one shared timer for every link (gateway/timers.py), not a handle each
                self.gateway.timers.schedule(self, effect.at)
            elif isinstance(effect, Close):
                # the wire carries the code's generic reason; why is only here
                log.debug("gateway.closed", extra={
                    "code": effect.code, "detail": effect.detail,
                    "session_id": self.conn.session_id,
                    "resumable": effect.session_resumable})
                if transport is not None and not transport.is_disconnected:
                    transport.send_close(WSCloseCode(effect.code), effect.reason.encode())
                    transport.disconnect()
                    if transport.underlying_transport.get_write_buffer_size():
                        # bytes ahead of the close a client may never read: abort then
                        self.loop.call_later(self.gateway.write_limits.close_grace_s,
                                             self._abort)
            elif isinstance(effect, IdentifyRequested):
                self.gateway.identify(self, effect)
            elif isinstance(effect, ResumeRequested):
                self.gateway.resume(self, effect)
            elif isinstance(effect, PresenceUpdateRequested):
                if self.session is not None:
                    self.gateway.base.tell_from_loop(
                        self.session, SetPresence(effect.status, list(effect.activities)))
            elif isinstance(effect, GuildSubscribeRequested):
                if self.session is not None:
                    self.gateway.base.tell_from_loop(self.session, OpenGuild(effect.guild_id))
            elif isinstance(effect, GuildMembersRequested):
                if self.session is not None:  # op 8: the session answers with chunks
                    self.gateway.base.tell_from_loop(self.session, effect)
            # Voice: not served in this slice.
        if frames is not None:
            self._send_frames(frames)

    # -- the fan-out's lane (gateway/fanout.py, "Lanes") -----------------------------------

    def lane_transport(self) -> WSTransport | None:
        """This connection's transport while a dispatch would go straight to it (the
        fan-out point frames plain JSON text itself, and has the connection frame any
        other, ``dispatch_frame``): READY, not paused, nothing of a RESUME's replay or a
        backlog left to write, connected. None otherwise."""
        conn, transport = self.conn, self.transport
        if (conn.state is ConnectionState.READY and not self._paused
                and self._replay is None and self._unsent is None
                and transport is not None and not transport.is_disconnected):
            return transport
        return None

    def _sync_lane(self) -> None:
        """Something on this side changed what may be the session's lane: let the session
        (when it lives on this node) set it again (``SessionActor.sync_lane``)."""
        session = self.session
        cell = session._cell if session is not None else None
        if cell is None:
            return
        if cell.alive and isinstance(cell.instance, SessionActor):
            cell.instance.sync_lane()
        else:  # it died (a crash ends a session without its own last word)
            self.gateway.ctx.lanes.pop(session.id, None)

    def _send_frames(self, frames: list[SendFrame]) -> None:
        """Write ``frames``; several in one write (one segment, one wake-up of the
        client, one send instead of one each: ~40 us of node CPU a frame on loopback)."""
        transport = self.transport
        if transport is None or transport.is_disconnected:
            return
        if len(frames) == 1:
            frame = frames[0]
            transport.send(_TEXT if frame.text else _BINARY, frame.data)
            bytes_written[0] += len(frame.data)
            return
        write_frames(transport, [(_TEXT if frame.text else _BINARY, frame.data)
                                 for frame in frames])
        bytes_written[0] += sum(len(frame.data) for frame in frames)

    def on_deadline(self) -> None:
        """The ``SetTimer`` deadline came (``TimerWheel``)."""
        self.execute(self.conn.on_timer(self.loop.time()))

    # -- flow control (gateway/outbound.py) ------------------------------------------------

    def pause_writing(self) -> None:
        """picows: the transport holds more than ``high_water`` bytes."""
        self._paused = True
        self._sync_lane()
        if self._stall is None:
            self._stall = self.loop.call_later(self.gateway.write_limits.stall_timeout_s,
                                               self._check_stall, self._queued())

    def resume_writing(self) -> None:
        """picows: the transport drained below ``low_water``: write what waits."""
        stall, self._stall = self._stall, None
        if stall is not None:
            stall.cancel()
        self._write_backlog()
        self._sync_lane()

    def resume_ok(self, log: DispatchLog, *, intents: int, seq: int) -> None:
        """Answer this connection's RESUME (the client's ``seq``) from the session's
        ``log``: every dispatch after ``seq``, then RESUMED, written as the client
        reads them, like any backlog; meanwhile they cost a pointer each, not a frame."""
        conn = self.conn
        replay = deque(dispatch for _, dispatch in log.after(seq))
        effects = conn.resume_ok(log, intents=intents, replay=False)
        self.execute(effects)  # a refusal (4007, INVALID_SESSION); nothing on success
        if conn.log is not log:
            return
        replay.extend(dispatch for _, dispatch in log.after(log.seq - 1))  # RESUMED
        self._replay = (seq + 1, replay)
        self._write_backlog()
        self._sync_lane()

    def _write_backlog(self) -> None:
        """Write a RESUME's replay, then the dispatches held in the log, in order, until
        the high-water mark again (``pause_writing`` runs inside ``send``)."""
        self._paused = False
        conn, transport = self.conn, self.transport
        log = conn.log
        if log is None or conn.state is not ConnectionState.READY \
                or transport is None or transport.is_disconnected:
            self._replay = self._unsent = None
            return
        kind = _TEXT if conn.text_frames else _BINARY
        if self._replay is not None:
            seq, replay = self._replay
            while replay:
                frame = conn.logged_frame(seq, replay.popleft())
                transport.send(kind, frame)
                bytes_written[0] += len(frame)
                seq += 1
                if self._paused:  # over the mark again: the rest waits
                    self._replay = (seq, replay) if replay else None
                    return
            self._replay = None
        first, self._unsent = self._unsent, None
        if first is None:
            return
        for seq, dispatch in log.after(first - 1):
            frame = conn.logged_frame(seq, dispatch)
            transport.send(kind, frame)
            bytes_written[0] += len(frame)
            if self._paused:
                if seq < log.seq:
                    self._unsent = seq + 1
                return

    def _hold(self, dispatch: PreparedDispatch) -> None:
        """``send_dispatch`` while paused: number and keep ``dispatch`` in the log only.
        Once the log holds nothing but dispatches never written, one more would push
        out what this connection still has to send: close (4000); a RESUME then gets
        INVALID_SESSION, as for any session that fell beyond the replay log. (Not the
        log's length alone: a busy client that acknowledges every 41 s may fill it with
        what it has received, and a brief pause must not close it.)"""
        conn = self.conn
        log = conn.log
        if conn.state is not ConnectionState.READY or log is None:
            conn.dispatch_frame(dispatch)  # closed: recorded for a RESUME (or dropped)
            return
        if self._unsent is None:
            self._unsent = log.seq + 1
        log.append(dispatch)
        held = log.seq - self._unsent + 1
        if held >= log.max_entries:
            self._slow("replay_limit", f"{held} dispatches held, the replay log's limit")

    def _check_stall(self, queued_before: int) -> None:
        """Paused for ``stall_timeout_s``: a client that read something since gets
        another period; one that did not is a slow consumer."""
        self._stall = None
        transport = self.transport
        if not self._paused or transport is None or transport.is_disconnected:
            return
        queued = self._queued()
        timeout = self.gateway.write_limits.stall_timeout_s
        if queued < queued_before:
            self._stall = self.loop.call_later(timeout, self._check_stall, queued)
        else:
            self._slow("stalled", f"no progress for {timeout:g} s")

    def _slow(self, reason: str, why: str) -> None:
        """Close a connection whose client does not keep up: 4000, which keeps the
        session (and its log) for a RESUME; the session holds what comes meanwhile."""
        stall, self._stall = self._stall, None
        if stall is not None:
            stall.cancel()
        log.info("slow consumer %s closed: %s", self.conn.session_id, why)
        _slow_closes.add(reason=reason)
        self.execute(self.conn.close(CloseCode.UNKNOWN_ERROR, f"slow consumer: {why}"))

    def _queued(self) -> int:
        transport = self.transport
        return 0 if transport is None else transport.underlying_transport.get_write_buffer_size()

    def _abort(self) -> None:
        """``close_grace_s`` after a close with bytes still queued: drop them (RST)."""
        transport = self.transport
        if transport is not None and not transport.is_disconnected:
            abort(transport.underlying_transport)


def int_key_of(kind: str) -> Any:
    """``PlacedRegistry.placed``'s function for ``kind`` (``gateway.channel.placement_key``)."""
    return lambda key: placement_key(kind, key)


class Gateway:
    """The gateway WebSocket server and the REST API on the running loop, with the
    storage actor, the entity registry (guild and channel actors) and the sessions."""

    def __init__(
        self,
        storage: Storage,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        rest_port: int = 0,
        config: GatewayConfig = DEFAULT_CONFIG,
        resume_window_s: float = 120.0,
        entity_idle_timeout_s: float = 300.0,
        ingress_secret: str | None = None,
        ingress_host: str = "127.0.0.1",
        ingress_port: int = 0,
        limits: RateLimits | None = None,
        reuse_port: bool = False,
        cluster: Any = None,
        write_limits: WriteLimits = DEFAULT_WRITE_LIMITS,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
    ) -> None:
        """``reuse_port``: bind the WebSocket and REST ports with SO_REUSEPORT, so every
        node process of a host serves the same ports (the kernel spreads connections).
        ``cluster``: this node's ``cluster.view.ClusterView``; guilds and channels are
        then placed over the cluster's nodes (``cluster.routing``), else all local.
        ``write_limits``: what one connection may hold queued for a slow client
        (``gateway.outbound``).
        ``max_connections``: open WebSocket connections this node serves; past it the
        handshake is answered 503 (new connections per address: ``limits``)."""
        settings = getattr(storage, "settings", None)
        worker = getattr(settings, "snowflake_worker", 0)
        process = getattr(settings, "snowflake_process", 0)
        self.storage = storage
        self.host = host
        self.port = port
        self.rest_port = rest_port
        self.config = config
        self.write_limits = write_limits
        self.entity_idle_timeout_s = entity_idle_timeout_s
        self.ctx = GatewayContext(storage, SnowflakeGenerator(worker, process), config,
                                  resume_window_s=resume_window_s)
        self.limits = limits or RateLimits()
        self.rest_limiter = RestRateLimiter(self.limits)
        self.ctx.identify_budget = IdentifyBudget(self.limits)
        self.ctx.identity = IdentityCache(storage)
        self.links: set[Link] = set()
        #: the links whose compression stream can rest (zlib-stream): the rest sweep's, so
        #: it costs nothing per plain-JSON or zstd connection (~14 ms a sweep at 10,000)
        self.resting_links: set[Link] = set()
        self.max_connections = max_connections
        quiet_peer_protocol_errors()  # a client's broken frames are not server errors
        self.connection_limiter = ConnectionRateLimiter(
            self.limits.connections_per_ip_per_s, self.limits.connections_per_ip_burst)
        #: the links' deadlines (heartbeat, RECONNECT close) on one loop timer
        self.timers: TimerWheel = None  # type: ignore[assignment]  # made in start()
        self.base: UvloopSystemBase = None  # type: ignore[assignment]
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]
        self._ws_server: asyncio.Server | None = None
        self._rest_runner: Any = None
        self._owns_base = False
        self._session_class = bind(SessionActor, self.ctx)
        self._sessions_host: Any = None
        #: the supervisor of the node's services (gateway/services.py)
        self._services: Any = None
        #: Called (on the loop, with the reason) if that supervisor gives up: more
        #: restarts than its intensity allows. OTP escalates to whoever runs the gateway
        #: (a node process ends, and its own supervisor starts it again). Set before
        #: ``start``; None: logged only.
        self.on_services_down: Callable[[Any], None] | None = None
        #: The internal ingress (``gateway.ingress``) runs only with a secret.
        self.ingress_secret = ingress_secret
        self.ingress_host = ingress_host  # loopback by default even if ``host`` is public
        self.ingress_port = ingress_port
        self._ingress_runner: Any = None
        self.reuse_port = reuse_port
        self.cluster = cluster
        self._replica_store: Any = None
        self._rest_compression: asyncio.TimerHandle | None = None

    @property
    def gateway_url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    @property
    def rest_url(self) -> str:
        return f"http://{self.host}:{self.rest_port}/api/v10"

    @property
    def ingress_url(self) -> str:
        return f"http://{self.ingress_host}:{self.ingress_port}/ingress/v1"

    async def start(self, base: UvloopSystemBase | None = None) -> None:
        """Start actors, then the sockets; ``base`` defaults to a new one on this loop."""
        from gateway.rest.app import start_rest

        self.loop = asyncio.get_running_loop()
        self.timers = TimerWheel(self.loop)
        self._rest_compression = self.loop.call_later(self.config.compression_rest_s,
                                                      self._rest_idle_compression)
        if base is None:
            base = UvloopSystemBase(loop=self.loop)
            self._owns_base = True
        self.base = base
        if self.cluster is not None:  # HELLO names the node (many serve these ports)
            self.config = dataclasses.replace(self.config, trace=base.node)
        ctx = self.ctx
        # The node's services, each at its well-known id, under one supervisor
        # (gateway/services.py: strategy, crash rules). Other nodes' registries route to
        # the entities placed here; guilds send the fan-out point one message per
        # dispatch for all of this node's recipients (gateway/fanout.py); other nodes
        # reach this node's sessions through the directory; the replica store keeps
        # standby copies of other nodes' sessions (gateway/replica.py).
        registry = bind(PlacedRegistry, ctx)
        registry.view = self.cluster
        registry.placed = {"guild": int_key_of("guild"), "channel": int_key_of("channel"),
                           "reactions": reactions_placement}
        ctx.cluster = self.cluster
        ctx.spawn_session = self._spawn_session
        self._services = base.create_actor(None, Supervisor, None, None)
        started = await base.ask_async(self._services, Start(node_services(
            ctx, self.storage, registry, Configure(
                kinds={"guild": bind(GuildActor, ctx), "channel": bind(ChannelActor, ctx),
                       "reactions": bind(ReactionsActor, ctx)},
                idle_timeout=self.entity_idle_timeout_s),
            host_started=self._session_host_started)), 10)
        if not isinstance(started, Started):
            self._services = None  # it has exited (OTP: a child failed to start)
            raise RuntimeError(f"node services did not start: {started!r}")
        watch = base.create_actor(None, services_watch(self._services_gave_up), None, None)
        base.monitor(watch._cell, self._services)
        ctx.storage_actor = Address(base.node, STORAGE_ID)
        ctx.registry = Address(base.node, ENTITY_REGISTRY_ID)
        self._sessions_host = Address(base.node, SESSION_HOST_ID)
        self._replica_store = Address(base.node, REPLICAS_ID)
        if self.cluster is not None:  # a membership change hands guilds over
            rebalance_on_change(self.cluster, base, ctx.registry)
            feed = ctx.replica_feed = ReplicaFeed(base, self.cluster)
            store = self._replica_store
            self.cluster.listen(feed.membership_changed)

            def homes_gone(change: Any) -> None:
                if change.gone:
                    base.tell_from_loop(store, HomesGone(change.gone))

            self.cluster.listen(homes_gone)

        def route(request: Any) -> Link | WSUpgradeResponseWithListener:
            if len(self.links) >= self.max_connections:
                # the node is full: 503 at the handshake, before any per-connection
                # state; with SO_REUSEPORT the client's retry may reach another node
                held = _refused_lines.allow("connection_limit")
                if held is not None:
                    log.warning("gateway.connection_refused", extra={
                        "reason": "connection limit", "status": 503,
                        "connections": len(self.links), "limit": self.max_connections,
                        "suppressed": held})
                response = WSUpgradeResponse.create_error_response(
                    503, b"gateway node at its connection limit")
                response.headers["Retry-After"] = "5"
                return WSUpgradeResponseWithListener(response, None)
            return Link(self, request.path.decode("latin-1"))

        # picows logs every accepted and closed connection at INFO: in a node process
        # each record is a message to Thespian's logging process, a cost per IDENTIFY
        # (and a log line per client) that says nothing the gateway's figures do not.
        # Unless someone chose a level for it, it logs warnings and errors only.
        picows_log = logging.getLogger("picows")
        if picows_log.level == logging.NOTSET:
            picows_log.setLevel(logging.WARNING)

        # Client payloads are small (at most 4,096 bytes; an IDENTIFY is ~0.5 KiB): a
        # read buffer of 2 KiB (picows's floor; it grows when a bigger frame comes)
        # instead of picows's 16 KiB default saves ~14 KiB an idle connection
        # (measured: loadtest/GATEWAY_BENCH.md, loadtest/session_memory.py).
        self._ws_server = await ws_create_server(
            route, self.host, self.port, max_frame_size=1 << 20,
            websocket_handshake_timeout=10, read_buffer_init_size=2048,
            # one shared adapter: given a Logger, picows makes a child Logger per
            # connection (~0.5 KiB an idle session)
            logger_name=logging.LoggerAdapter(picows_log, {}),
            # uvloop's own transport, not aiofastnet's (picows's default): 5.3 KiB less
            # an idle session, the same server CPU per fan-out delivery, ~0.3 ms more per
            # IDENTIFY (measured, alternated: loadtest/GATEWAY_BENCH.md)
            use_aiofastnet=False,
            # Link answers PINGs (picows would before Link sees the frame's RSV bits)
            enable_auto_pong=False,
            reuse_port=self.reuse_port or None)
        self.port = self._ws_server.sockets[0].getsockname()[1]
        ctx.gateway_url = self.gateway_url
        self._rest_runner, self.rest_port = await start_rest(self, self.host, self.rest_port,
                                                          reuse_port=self.reuse_port)
        if self.ingress_secret:
            from gateway.ingress import start_ingress

            self._ingress_runner, self.ingress_port = await start_ingress(
                self, self.ingress_secret, self.ingress_host, self.ingress_port)
        log.info("gateway on %s, REST on %s", self.gateway_url, self.rest_url)

    async def stop(self) -> None:
        if self._ingress_runner is not None:
            await self._ingress_runner.cleanup()
            self._ingress_runner = None
        if self._rest_runner is not None:
            await self._rest_runner.cleanup()
            self._rest_runner = None
        if self._ws_server is not None:
            self._ws_server.close()
            for link in list(self.links):
                if link.transport is not None:
                    link.transport.send_close(WSCloseCode.GOING_AWAY)
                    link.transport.disconnect()
            self._ws_server = None
        if self.timers is not None:
            self.timers.close()
        if self._rest_compression is not None:
            self._rest_compression.cancel()
            self._rest_compression = None
        if self.base is None:
            return
        # The supervisor stops its services in reverse start order: sessions first,
        # then the guild/channel actors, then the storage actor (which handles what
        # they queued before its exit request).
        services, self._services = self._services, None
        if services is not None and services.id in self.base.cells:  # not given up
            try:
                await self.base.ask_async(services, Stop(), 10)
            except TimeoutError:
                log.warning("node services did not stop within 10 s")
                self.base.tell_from_loop(services, ActorExitRequest())
        await asyncio.sleep(0.01)
        if self._owns_base:
            self.base.shutdown_in_loop()

    def _rest_idle_compression(self) -> None:
        """Every ``compression_rest_s``: idle zlib-streams drop their deflater
        (``gateway.protocol.compression``), so idle sessions hold none."""
        for link in self.resting_links:
            link.conn.rest_idle_compression()
        # dropped here or by a fan-out's spliced frames since the last sweep: the
        # deflaters' ~30 KiB each went back to malloc's heap, in pieces between live
        # objects, where glibc keeps them resident: hand those pages back
        if ZlibStreamCompressor.take_dropped() >= TRIM_AFTER_RESTS:
            trim_heap()
        self._rest_compression = self.loop.call_later(self.config.compression_rest_s,
                                                      self._rest_idle_compression)

    # -- called by links ----------------------------------------------------------------------

    def _services_gave_up(self, reason: Any) -> None:
        if self._services is None:
            return  # stop() asked them to stop
        self._services = None
        log.critical("node services gave up (more restarts than their intensity allows)",
                     extra={"reason": repr(reason)})
        if self.on_services_down is not None:
            self.on_services_down(reason)

    def _session_host_started(self) -> None:
        """A session host incarnation started: after a restart, the sessions of the one
        before ended with it (its children). Each that kept its state
        (``SessionActor._orphan``) is made again under this one, in place: the same
        session on the same socket (or detached, for a RESUME), caught up from storage;
        its client sees nothing. Any other's client is told (op 9, not resumable) and
        identifies again on the same socket; a socket not past READY is closed (4000)."""
        orphans, self.ctx.orphans = self.ctx.orphans, {}
        cells = self.base.cells
        for link in list(self.links):
            session = link.session
            if session is not None and session.node == self.base.node:
                cell = cells.get(session.id)
                if cell is None or not cell.alive:
                    self.ctx.lanes.pop(session.id, None)  # it died with its host
                    orphan = orphans.pop(session.id, None)
                    conn = link.conn
                    if orphan is not None and orphan.link is link \
                            and conn.log is orphan.log:
                        link.session = self._spawn_session(orphan)
                        continue
                    link.session = None
                    link.execute(conn.invalidate_session(False)
                                 if conn.state is ConnectionState.READY
                                 else conn.close(CloseCode.UNKNOWN_ERROR, "session lost"))
        for orphan in orphans.values():
            # detached, or its socket closed since (its Detached went with it): kept
            # for a RESUME unless that close ended the session
            link, orphan.link = orphan.link, None
            if link is None or not link.closed \
                    or link.conn.connection_lost().session_resumable:
                self._spawn_session(orphan)

    def _host_cell(self) -> Any:
        """The session host's live cell: a restarted host is a new cell at its id."""
        host = self._sessions_host
        cell = host._cell
        if cell is None or not cell.alive:
            # None for the moment between a crash and the restart: the session is
            # then top-level (it still works; it is not stopped with the host).
            cell = host._cell = self.base.cells.get(SESSION_HOST_ID)
        return cell

    def identify(self, link: Link, event: IdentifyRequested) -> None:
        _identifies.add()
        session = self.base.create_actor(self._host_cell(), self._session_class,
                                         None, None)
        trace = None
        if tracing_active():  # else the span is a no-op and its context None
            with span_from(None, "socket.in", **{"greenroom.op": "IDENTIFY"}):
                trace = inject_current()  # None when unsampled
        self.base.tell_from_loop(session, Identify(link, event, trace))

    def _spawn_session(self, first: Any) -> Any:
        """A new session actor on this node, told ``first`` (``ctx.spawn_session``)."""
        session = self.base.create_actor(self._host_cell(), self._session_class,
                                         None, None)
        self.base.tell_from_loop(session, first)
        return session

    def resume(self, link: Link, event: ResumeRequested) -> None:
        _resumes.add()
        session = self.ctx.sessions.get(event.session_id)
        if session is not None:
            self.base.tell_from_loop(session, Attach(link, event))
            return
        # The kernel may hand a RESUME to any node: a session of another node moves here
        # (gateway/session.py, ``Migrate``), from its home or, if that node is gone,
        # from its standby copy (gateway/replica.py); else it is unknown or expired.
        home = node_of_session(event.session_id)
        me = self.base.node
        if home is None or (self.cluster is None and home != me) \
                or (home == me and self.ctx.replica_feed is None
                    and event.session_id not in self.ctx.moved):
            link.execute(link.conn.resume_failed())
            return
        # its Detached reaches the session while it moves (Migrate is only queued yet)
        link.session = self._spawn_session(Migrate(link, event))
