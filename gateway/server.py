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
from collections.abc import Iterable
from typing import Any

from picows import WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport, ws_create_server
from thespian.actors import ActorExitRequest

from actors import UvloopSystemBase
from actors.registry import Configure
from cluster.routing import ENTITY_REGISTRY_ID, PlacedRegistry, rebalance_on_change
from gateway.channel import ChannelActor, placement_key
from gateway.context import GatewayContext, bind
from gateway.fanout import start_fanout_point
from gateway.guild import GuildActor
from gateway.identity import IdentityCache
from gateway.limits import IdentifyBudget, RateLimits, RestRateLimiter
from gateway.messages import (
    Attach,
    Detached,
    HomesGone,
    Identify,
    Migrate,
    OpenGuild,
    SetPresence,
)
from gateway.protocol import (
    DEFAULT_CONFIG,
    Close,
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
    parse_connection_url,
)
from gateway.replica import REPLICAS_ID, ReplicaFeed, ReplicaStore
from gateway.session import SessionActor, SessionHost
from gateway.sessions import SESSIONS_ID, SessionDirectory, node_of_session
from gateway.timers import TimerWheel
from observability import inject_current, span_from
from storage.actor import StorageActor
from storage.base import Storage
from storage.messages import StorageReady, StorageStart
from storage.snowflake import SnowflakeGenerator

log = logging.getLogger("greenroom.gateway")

_TEXT = WSMsgType.TEXT
_BINARY = WSMsgType.BINARY
_CONT = WSMsgType.CONTINUATION
_CLOSE = WSMsgType.CLOSE


class Link(WSListener):
    """One WebSocket connection: the socket side of a ``GatewayConnection``."""

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

    # -- picows callbacks ---------------------------------------------------------------

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        self.gateway.links.add(self)
        self.execute(self.conn.start(self.loop.time()))

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        kind = frame.msg_type
        if kind is _TEXT or kind is _BINARY:
            if frame.fin:
                data = (frame.get_payload_as_utf8_text() if kind is _TEXT
                        else frame.get_payload_as_bytes())
                self.execute(self.conn.receive(data, self.loop.time()))
            else:
                self._parts = [frame.get_payload_as_bytes()]
                self._parts_size = frame.payload_size
                self._parts_text = kind is _TEXT
        elif kind is _CONT and self._parts is not None:
            self._parts.append(frame.get_payload_as_bytes())
            self._parts_size += frame.payload_size
            too_big = self._parts_size > self.gateway.config.max_payload_bytes
            if frame.fin or too_big:
                data = b"".join(self._parts)
                self._parts = None
                message: str | bytes = data
                if self._parts_text and not too_big:
                    try:
                        message = data.decode("utf-8")
                    except UnicodeDecodeError:
                        pass  # the codec reports it as a decode error
                self.execute(self.conn.receive(message, self.loop.time()))
        elif kind is _CLOSE:
            self._client_close = int(frame.get_close_code().value) \
                if frame.payload_size >= 2 else None
            transport.send_close(WSCloseCode.OK)
            transport.disconnect()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.gateway.links.discard(self)
        self.gateway.timers.cancel(self)
        gone = self.conn.connection_lost(self._client_close)
        if self.session is not None:
            self.gateway.base.tell_from_loop(self.session, Detached(self, gone.session_resumable))

    # -- effects ---------------------------------------------------------------------------

    def send_dispatch(self, dispatch: PreparedDispatch) -> None:
        """``execute(conn.dispatch(dispatch))`` without the effect list: the fan-out's
        per-recipient path (the session actor calls it)."""
        conn = self.conn
        data = conn.dispatch_frame(dispatch)
        transport = self.transport
        if data is not None and transport is not None and not transport.is_disconnected:
            transport.send(_TEXT if conn.text_frames else _BINARY, data)

    def execute(self, effects: Iterable[Effect]) -> None:
        """Carry out the connection's effects in order (the session actor calls this too)."""
        transport = self.transport
        for effect in effects:
            if isinstance(effect, SendFrame):
                if transport is not None and not transport.is_disconnected:
                    transport.send(_TEXT if effect.text else _BINARY, effect.data)
            elif isinstance(effect, SetTimer):
                # one shared timer for every link (gateway/timers.py), not a handle each
                self.gateway.timers.schedule(self, effect.at)
            elif isinstance(effect, Close):
                if transport is not None and not transport.is_disconnected:
                    transport.send_close(WSCloseCode(effect.code), effect.reason.encode())
                    transport.disconnect()
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

    def on_deadline(self) -> None:
        """The ``SetTimer`` deadline came (``TimerWheel``)."""
        self.execute(self.conn.on_timer(self.loop.time()))


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
    ) -> None:
        """``reuse_port``: bind the WebSocket and REST ports with SO_REUSEPORT, so every
        node process of a host serves the same ports (the kernel spreads connections).
        ``cluster``: this node's ``cluster.view.ClusterView``; guilds and channels are
        then placed over the cluster's nodes (``cluster.routing``), else all local."""
        settings = getattr(storage, "settings", None)
        worker = getattr(settings, "snowflake_worker", 0)
        process = getattr(settings, "snowflake_process", 0)
        self.storage = storage
        self.host = host
        self.port = port
        self.rest_port = rest_port
        self.config = config
        self.entity_idle_timeout_s = entity_idle_timeout_s
        self.ctx = GatewayContext(storage, SnowflakeGenerator(worker, process), config,
                                  resume_window_s=resume_window_s)
        self.limits = limits or RateLimits()
        self.rest_limiter = RestRateLimiter(self.limits)
        self.ctx.identify_budget = IdentifyBudget(self.limits)
        self.ctx.identity = IdentityCache(storage)
        self.links: set[Link] = set()
        #: the links' deadlines (heartbeat, RECONNECT close) on one loop timer
        self.timers: TimerWheel = None  # type: ignore[assignment]  # made in start()
        self.base: UvloopSystemBase = None  # type: ignore[assignment]
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]
        self._ws_server: asyncio.Server | None = None
        self._rest_runner: Any = None
        self._owns_base = False
        self._session_class = bind(SessionActor, self.ctx)
        self._sessions_host: Any = None
        self._fanout_point: Any = None
        #: The internal ingress (``gateway.ingress``) runs only with a secret.
        self.ingress_secret = ingress_secret
        self.ingress_host = ingress_host  # loopback by default even if ``host`` is public
        self.ingress_port = ingress_port
        self._ingress_runner: Any = None
        self.reuse_port = reuse_port
        self.cluster = cluster
        self._session_directory: Any = None
        self._replica_store: Any = None

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
        from gateway.rest import start_rest

        self.loop = asyncio.get_running_loop()
        self.timers = TimerWheel(self.loop)
        if base is None:
            base = UvloopSystemBase(loop=self.loop)
            self._owns_base = True
        self.base = base
        if self.cluster is not None:  # HELLO names the node (many serve these ports)
            self.config = dataclasses.replace(self.config, trace=base.node)
        ctx = self.ctx
        ctx.storage_actor = base.create_actor(None, StorageActor, None, None)
        ready = await base.ask_async(ctx.storage_actor,
                                     StorageStart(storage=self.storage,
                                                  settings=getattr(self.storage, "settings",
                                                                   None)), 10)
        if not isinstance(ready, StorageReady):
            raise RuntimeError(f"storage actor did not start: {ready!r}")
        self._sessions_host = base.create_actor(None, SessionHost, None, None)
        # The node's fan-out point: guilds send it one message per dispatch for all of
        # this node's recipients (gateway/fanout.py).
        self._fanout_point = start_fanout_point(base)
        # At a well-known id: other nodes' registries route to the entities placed here.
        registry = bind(PlacedRegistry, ctx)
        registry.view = self.cluster
        registry.placed = {"guild": int_key_of("guild"), "channel": int_key_of("channel")}
        ctx.registry = base.create_actor(None, registry, None, None,
                                         fixed_id=ENTITY_REGISTRY_ID)
        if self.cluster is not None:  # a membership change hands guilds over
            rebalance_on_change(self.cluster, base, ctx.registry)
        # Other nodes reach this node's sessions by id or by user through it.
        self._session_directory = base.create_actor(
            None, bind(SessionDirectory, ctx), None, None, fixed_id=SESSIONS_ID)
        # Session failover (gateway/replica.py): this node keeps standby copies of
        # other nodes' sessions, and sends its own sessions' copies to theirs.
        ctx.cluster = self.cluster
        ctx.spawn_session = self._spawn_session
        self._replica_store = base.create_actor(
            None, bind(ReplicaStore, ctx), None, None, fixed_id=REPLICAS_ID)
        if self.cluster is not None:
            feed = ctx.replica_feed = ReplicaFeed(base, self.cluster)
            store = self._replica_store
            self.cluster.listen(feed.membership_changed)

            def homes_gone(change: Any) -> None:
                if change.gone:
                    base.tell_from_loop(store, HomesGone(change.gone))

            self.cluster.listen(homes_gone)
        await base.ask_async(ctx.registry, Configure(
            kinds={"guild": bind(GuildActor, ctx), "channel": bind(ChannelActor, ctx)},
            idle_timeout=self.entity_idle_timeout_s), 10)

        def route(request: Any) -> Link:
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
        if self.base is None:
            return
        # Sessions first, then the guild/channel actors, then the storage actor (which
        # handles what they queued before its exit request).
        for address in (self._session_directory, self._replica_store, self._sessions_host,
                        self.ctx.registry,
                        self._fanout_point,
                        self.ctx.storage_actor):
            if address is not None:
                self.base.tell_from_loop(address, ActorExitRequest())
        await asyncio.sleep(0.01)
        if self._owns_base:
            self.base.shutdown_in_loop()

    # -- called by links ----------------------------------------------------------------------

    def identify(self, link: Link, event: IdentifyRequested) -> None:
        session = self.base.create_actor(self._sessions_host._cell, self._session_class,
                                         None, None)
        with span_from(None, "socket.in", **{"greenroom.op": "IDENTIFY"}):
            trace = inject_current()  # None when tracing is off
        self.base.tell_from_loop(session, Identify(link, event, trace))

    def _spawn_session(self, first: Any) -> Any:
        """A new session actor on this node, told ``first`` (``ctx.spawn_session``)."""
        session = self.base.create_actor(self._sessions_host._cell, self._session_class,
                                         None, None)
        self.base.tell_from_loop(session, first)
        return session

    def resume(self, link: Link, event: ResumeRequested) -> None:
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
