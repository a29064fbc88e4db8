"""A node: greenroom's actor system on uvloop, its data plane and its services.

``Node`` runs inside an asyncio program. ``NodeActor`` is the Thespian actor that
Thespian's ``multiprocTCPBase`` starts as an OS process and the supervisor restarts:
it runs a ``Node`` on a uvloop loop in a thread of its own and reports to the
membership actor, which tells every node where the others' data planes listen.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import threading
from dataclasses import dataclass
from typing import Any

from thespian.actors import Actor as ThespianActor
from thespian.actors import ActorExitRequest

from actors import Actor, UvloopSystemBase, tune_gc
from actors.address import Address
from cluster.data_plane import DataPlane
from cluster.heartbeat import Heartbeats, heartbeats_of
from cluster.membership import Membership
from cluster.messages import (
    DIRECTORY_ID,
    MEMBERSHIP,
    GetView,
    Heartbeat,
    Here,
    Members,
    NodeConfig,
    NodeUp,
    Ping,
    Pong,
    Reannounce,
    View,
    WhereIs,
)
from cluster.view import ClusterView
from observability.metrics import counter
from supervision import ChildSpec, Start, Stop, Supervisor, SupervisorFlags, SupervisorSpec
from supervision.messages import SupervisorError

log = logging.getLogger("greenroom.node")
#: The ``serve`` hook a node with ``settings["gateway"]`` calls (``Node._start_gateway``).
DEFAULT_SERVE = "gateway.serve.serve_from_options"
#: What registers a served gateway's gauges and readiness checks (``_start_operator``).
DEFAULT_WATCH = "gateway.observe.watch_gateway"
_membership_changes = counter("cluster_membership_changes_total",
                              "nodes that joined, left (or were suspected) or came back as "
                              "a new process (restarted), as this node saw them",
                              labels={"event": ("joined", "left", "restarted")})


def _resolve(path: str) -> Any:
    """The object a dotted ``module.name`` path names."""
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


class Directory(Actor):
    """Answers other processes' questions about this node, at a well-known address."""

    def receiveMessage(self, msg: Any, sender: Any) -> None:
        if isinstance(msg, WhereIs):
            self.send(sender, Here(msg.name, self._myRef.base.global_names.get(msg.name)))
        elif isinstance(msg, Heartbeat):
            heartbeats = heartbeats_of(self._myRef.base)
            if heartbeats is not None:
                heartbeats.heard(msg)
        elif isinstance(msg, Ping):
            self.send(sender, Pong(self._myRef.base.node, os.getpid()))
        elif isinstance(msg, GetView):
            heartbeats = heartbeats_of(self._myRef.base)
            node = self._myRef.base.node
            self.send(sender, heartbeats.view() if heartbeats else View(node, [], [node]))


class NodeStartError(RuntimeError):
    """A node's services could not start (e.g. an unimportable service class)."""


@dataclass(frozen=True)
class WhyNotUp:
    """Launcher -> a ``NodeActor`` that has not joined yet: answered ``NodeStartFailed``
    if its node could not start; not answered otherwise (still starting, or up)."""


@dataclass(frozen=True)
class NodeStartFailed:
    name: str
    reason: str


class Node:
    """One node on the running event loop."""

    def __init__(self, config: NodeConfig) -> None:
        self.config = config
        self.base: UvloopSystemBase | None = None
        self.plane: DataPlane | None = None
        self.root: Address | None = None
        self.gateway: Any = None  # gateway.server.Gateway when settings["gateway"] asks
        self._served: Any = None  # what the serve hook started (gateway/serve.py: Served)
        #: what this node serves besides its data plane (reported in ``NodeUp.info``)
        self.info: dict[str, Any] = {}
        self.heartbeats: Heartbeats | None = None
        #: the live members: announced by the membership actors and heard from
        self.members = Members({})
        #: who owns which guild among the live members, and membership events
        #: (``cluster.view``); kept up to date by ``set_members``
        self.view = ClusterView(config.name,
                                hosts_entities=bool(config.settings.get("gateway")))
        #: What to do when the gateway's services give up (their supervisor exceeded
        #: its restart intensity): OTP escalates. ``NodeActor`` ends the node process,
        #: which Thespian's node supervisor starts again; None (a node in a thread
        #: beside other code): the services stay down, logged.
        self.escalate: Any = None
        #: the operator port (/metrics, /healthz, /readyz) when settings["operator"] asks
        self.operator: Any = None
        self._unwatch: list[Any] = []  # stops the gauges this node registered

    async def start(self) -> tuple[str, int]:
        loop = asyncio.get_running_loop()
        self.base = base = UvloopSystemBase(loop=loop, node=self.config.name)
        base.create_actor(None, Directory, None, None, fixed_id=DIRECTORY_ID)
        self.plane = DataPlane(base, self.config.secret, host=self.config.host,
                               port=self.config.port)
        address = await self.plane.start()
        # a remote monitor on an actor of a node that is not live fires at once
        base.reachable = lambda node: node in self.members.nodes
        self.heartbeats = Heartbeats(base, self.plane, self.set_members)
        self.heartbeats.start()
        services = tuple(ChildSpec(name, cls, global_name=name)
                         for name, cls in self.config.services)
        self.root = base.create_actor(None, Supervisor, None, "node-root")
        answer = await base.ask_async(self.root, Start(SupervisorSpec(
            SupervisorFlags("one_for_one", 10, 10.0), services)), 10)
        if isinstance(answer, SupervisorError):  # OTP: a child failed to start
            self.root = None  # the root supervisor has exited with that reason
            await self.stop()  # release the data plane and heartbeats
            raise NodeStartError(f"node {self.config.name}: {answer.reason}")
        gateway = self.config.settings.get("gateway")
        if gateway:
            await self._start_gateway(gateway)
        operator = self.config.settings.get("operator")
        if operator:
            await self._start_operator(operator)
        log.info("node %s serving; data plane on %s:%d", self.config.name, *address)
        return address

    async def _start_gateway(self, options: dict[str, Any]) -> None:
        """The gateway (WebSocket + REST, and the internal ingress when asked) on this
        node's own base and loop, started by the config's ``serve`` hook: a dotted path
        to ``async (options, *, host, base, cluster, on_services_down) -> Served``,
        ``gateway.serve.serve_from_options`` by default (greenroom's one composition
        root, which ``greenroom gateway`` uses too; ``options`` are described by
        ``gateway.serve.GatewaySettings.from_options``). Resolved when a node starts, so
        this module does not import the layer above it. Every node of a host serves the
        same ports (SO_REUSEPORT: the kernel spreads the connections); guilds and
        channels are placed over the nodes (``view``)."""
        serve = _resolve(self.config.settings.get("serve", DEFAULT_SERVE))
        served = await serve(options, host=self.config.host, base=self.base,
                             cluster=self.view, on_services_down=self.escalate)
        self._served, self.gateway = served, served.gateway
        self.info = dict(served.info)
        log.info("node %s: gateway on %s, REST on %s", self.config.name,
                 self.gateway.gateway_url, self.gateway.rest_url)

    async def _start_operator(self, options: dict[str, Any]) -> None:
        """``/metrics``, ``/healthz`` and ``/readyz`` (observability/operator.py) on
        ``options["host"]`` (loopback by default) and ``options["port"]`` (this node's:
        the launcher gives node i the first port + i - 1). Ready: this node in the
        cluster view, and with a gateway its storage reachable and its listener
        accepting: the config's ``watch`` hook, ``gateway.observe.watch_gateway`` by
        default, resolved like ``serve`` (this module does not import the layer above)."""
        from observability.actor_metrics import watch_base
        from observability.metrics import gauge
        from observability.operator import OperatorServer

        server = OperatorServer(options.get("host", "127.0.0.1"), int(options.get("port", 0)))
        name = self.config.name
        server.add_check("cluster", lambda: None if name in self.members.nodes
                         else "this node is not in the cluster view yet")
        if self.gateway is not None:
            watch = _resolve(self.config.settings.get("watch", DEFAULT_WATCH))
            self._unwatch = watch(self.gateway, server)
        else:
            self._unwatch = watch_base(self.base)
        self._unwatch.append(gauge("cluster_members", "live members in this node's view "
                                   "(nodes heard from)", "{node}").observe(
            lambda: [({"node": name}, len(self.members.nodes))]))
        await server.start()
        self.operator = server
        self.info["operator"] = server.url

    def set_peers(self, peers: dict[str, tuple[str, int]]) -> None:
        self.plane.set_peers(peers)

    def announce(self, members: Members) -> None:
        """The membership actor's latest member set (loop thread). The heartbeats
        filter it down to the members that are heard from and call ``set_members``
        with that live set each time it changes."""
        self.heartbeats.update(members)

    def set_members(self, members: Members) -> None:
        """The live member set changed (loop thread): a member joined, left, was
        suspected by the failure detector or came back as a new process."""
        self.members = members
        self._placement_changed(members)

    def _placement_changed(self, members: Members) -> None:
        """Placement first, then every monitor on an actor of a member that is gone
        (left, suspected or restarted) fires ``Down(..., "noconnection")``, and the
        monitors its actors held here are dropped. The ``Down``s are handled after
        this returns, so a session that re-subscribes to a guild whose node is gone
        routes by the new placement."""
        change = self.view.update(members)
        for event, nodes in (("joined", change.joined), ("left", change.left),
                             ("restarted", change.restarted)):
            if nodes:
                _membership_changes.add(len(nodes), event=event)
        for node in sorted(change.gone - {self.config.name}):
            log.info("node %s: %s %s", self.config.name, node,
                     "restarted" if node in change.restarted else "is gone")
            self.base.node_down(node)

    async def stop(self) -> None:
        if self.operator is not None:
            await self.operator.stop()
            self.operator = None
        for unwatch in self._unwatch:
            unwatch()
        self._unwatch = []
        if self._served is not None:
            served, self._served, self.gateway = self._served, None, None
            await served.stop()
        if self.root is not None:
            try:
                await self.base.ask_async(self.root, Stop(), 10)
            except TimeoutError:
                log.warning("node %s: services did not stop within 10 s", self.config.name)
        if self.heartbeats is not None:
            self.heartbeats.stop()
        self.base.shutdown_in_loop()
        await self.plane.close()


class NodeThread:
    """A ``Node`` on a uvloop loop in a thread: how a node lives inside a Thespian
    actor process, or beside synchronous code (tests, tools)."""

    def __init__(self, config: NodeConfig) -> None:
        import uvloop

        self.node = Node(config)
        self.loop = uvloop.new_event_loop()
        self.address: tuple[str, int] | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"node-{config.name}",
                                        daemon=True)

    def start(self, timeout: float = 30.0) -> tuple[str, int]:
        self._thread.start()
        if not self._started.wait(timeout):
            raise TimeoutError(f"node {self.node.config.name} did not start in {timeout} s")
        if self._error is not None:
            raise self._error
        return self.address

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.address = self.loop.run_until_complete(self.node.start())
        except BaseException as err:
            self._error = err
            self._started.set()
            return
        self._started.set()
        self.loop.run_forever()

    def call(self, fn: Any, *args: Any) -> None:
        self.loop.call_soon_threadsafe(fn, *args)

    def stop(self, timeout: float = 10.0) -> None:
        if not self._thread.is_alive():
            return
        future = asyncio.run_coroutine_threadsafe(self.node.stop(), self.loop)
        try:
            future.result(timeout)
        except Exception:
            log.warning("node %s did not stop cleanly", self.node.config.name, exc_info=True)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout)


def _end_process(reason: Any) -> None:
    """The node's services gave up: end this node process at once (its record is
    written: node processes log to their own stderr), so that its supervisor in the
    admin starts a fresh one, as OTP's escalation ends at the top."""
    log.critical("node process exits: its services gave up (%r)", reason)
    os._exit(70)  # EX_SOFTWARE; nothing of this process is worth a clean shutdown


class NodeActor(ThespianActor):
    """A node process under Thespian's multi-process base."""

    def __init__(self) -> None:
        self.thread: NodeThread | None = None
        self.up: NodeUp | None = None  # what this node told the membership actor
        #: why its node could not start (it stays down; the launcher asks ``WhyNotUp``)
        self.failed: NodeStartFailed | None = None

    def receiveMessage(self, msg: Any, sender: Any) -> None:
        if isinstance(msg, NodeConfig):
            from observability import configure_logging, configure_tracing

            # Records go to this process's stderr when they happen, not through
            # Thespian's logging process (observability/logging.py, ``_install``).
            configure_logging()
            configure_tracing(f"greenroom-{msg.name}")
            self.thread = NodeThread(msg)
            self.thread.node.escalate = _end_process
            try:
                address = self.thread.start()
            except NodeStartError as err:  # its services: restarting would not help
                log.error("node %s did not start: %s", msg.name, err)
                self.thread = None
                self.failed = NodeStartFailed(msg.name, str(err))
                return
            except BaseException:
                log.exception("node %s did not start", msg.name)
                raise
            self.thread.call(tune_gc)  # start-up is done: freeze it out of the GC's way
            membership = self.createActor(Membership, globalName=MEMBERSHIP)
            self.up = NodeUp(msg.name, address, os.getpid(), self.myAddress,
                             info=dict(self.thread.node.info))
            self.send(membership, self.up)
        elif isinstance(msg, WhyNotUp):
            # Answered only when it failed: Thespian's external ask takes the first
            # message that comes, so a late "still starting" would answer someone's
            # next ask (the launcher stops on the first failure it hears).
            if self.failed is not None:
                self.send(sender, self.failed)
        elif isinstance(msg, Reannounce) and self.up is not None:
            self.send(sender, self.up)  # a new membership incarnation (else: not up yet)
        elif isinstance(msg, Members) and self.thread is not None:
            self.thread.call(self.thread.node.announce, msg)
        elif isinstance(msg, ActorExitRequest) and self.thread is not None:
            self.thread.stop()
