"""Start a cluster of node processes under an OTP supervisor on Thespian's
multi-process base, and stop all of it."""

from __future__ import annotations

import logging
import os
import random
import socket
import time

from thespian.actors import ActorSystem

from cluster.membership import Membership, NodeSupervisor
from cluster.messages import MEMBERSHIP, GetMembers, Members, MembershipConfig, NodeConfig
from cluster.node import NodeActor, NodeStartError, NodeStartFailed, WhyNotUp
from cluster.thespian_tcp import authenticate_thespian, bind_thespian_to
from observability import log_defs
from supervision import (
    ONE_FOR_ONE,
    Children,
    ChildSpec,
    Start,
    Started,
    Stop,
    SupervisorFlags,
    SupervisorSpec,
    WhichChildren,
)

log = logging.getLogger("greenroom.cluster")


#: the lowest port ``free_port`` names outside the kernel's ephemeral range
NAMED_PORTS_FROM = 10_000
#: ports this process named: not named twice (two services asking in a row)
_named: set[int] = set()
_random = random.SystemRandom()  # whatever a test seeds ``random`` with


def _ephemeral_start() -> int:
    """Where the kernel's ephemeral range starts (Linux; elsewhere IANA's)."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low, _high = map(int, f.read().split())
        return low
    except (OSError, ValueError):
        return 49152


def free_port(host: str = "127.0.0.1") -> int:
    """A port free now, for a process to bind a moment later (Thespian's admin, a test's
    service). Below the kernel's ephemeral range where there is room: the kernel hands
    out ports in that range itself (a connection's local port, a bind to port 0), so a
    port named there can be taken before its owner binds it (seen in CI); below it,
    only a process that names the same port can. A port a tree of nodes shares is held
    instead (``reserve_shared_port``)."""
    low = _ephemeral_start()
    if low - NAMED_PORTS_FROM >= 1000:
        for port in _random.sample(range(NAMED_PORTS_FROM, low), 64):
            if port in _named:
                continue
            with socket.socket() as s:
                try:
                    s.bind((host, port))
                except OSError:
                    continue
            _named.add(port)
            return port
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def reserve_shared_port(host: str) -> socket.socket:
    """A free port, held: a socket bound to it with SO_REUSEPORT and never listening.
    The nodes bind the port with SO_REUSEPORT beside it, while nothing else can (a port
    that ``free_port`` only named could be taken by any bind or outgoing connection on
    the host before the nodes bound it). Not listening, it is given no connections."""
    held = socket.socket()
    held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    held.bind((host, 0))
    return held


def _node_settings(index: int, settings: dict | None, gateway: dict | None) -> dict:
    merged = dict(settings or {})
    if gateway:
        gateway = dict(gateway)
        if "storage" in gateway:
            # Snowflakes must be unique across the nodes that write: each node of this
            # host gets its own process bits (0-31), from the configured ones on.
            storage = dict(gateway["storage"])
            storage["snowflake_process"] = (storage.get("snowflake_process", 0)
                                            + index - 1) % 32
            gateway["storage"] = storage
        merged["gateway"] = gateway
    operator = merged.get("operator")
    if operator and int(operator.get("port", 0)):
        # one operator port per node (each has its own metrics): node i gets port + i - 1
        merged["operator"] = {**operator, "port": int(operator["port"]) + index - 1}
    return merged


def _shared_gateway(gateway: dict | None, host: str, nodes: int,
                    held: list[socket.socket]) -> dict | None:
    """Every node serves the gateway on the same WebSocket and REST ports (SO_REUSEPORT);
    a port of 0 ("any free one") is chosen here, once, so that all nodes share it, and
    held (in ``held``) until the cluster stops, so a node started or restarted later
    still finds it free."""
    if not gateway:
        return gateway
    shared = dict(gateway)
    if nodes > 1:
        shared["reuse_port"] = True
        ports = [("port", 8080, shared.get("host", host)),
                 ("rest_port", 8081, shared.get("host", host))]
        if shared.get("ingress"):
            ports.append(("ingress_port", 8082, shared.get("ingress_host", host)))
        for key, default, bind_host in ports:
            if not int(shared.get(key, default)):
                held.append(reserve_shared_port(bind_host))
                shared[key] = held[-1].getsockname()[1]
    return shared


def parse_join(join: str) -> tuple[str, int]:
    """``"host:port"`` of a leader's Thespian admin, checked (a clear error otherwise)."""
    host, sep, port = join.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"cannot join {join!r}: expected LEADER_HOST:ADMIN_PORT")
    return host, int(port)


class Cluster:
    """``nodes`` node processes (``n1``..``nN``, or ``NAME-n1``..) and this host's
    membership actor, supervised one_for_one: a node that dies (even by SIGKILL) is
    started again. With ``join`` ("host:port" of another host's admin) this host's
    ActorSystem joins that host's Thespian convention and the nodes of both form one
    cluster; ``name`` must then be unique per host (it prefixes the node names)."""

    def __init__(self, nodes: int, secret: bytes, *, host: str = "127.0.0.1",
                 admin_port: int | None = None, services: tuple[tuple[str, str], ...] = (),
                 settings: dict | None = None, intensity: int = 5, period: float = 10.0,
                 gateway: dict | None = None, name: str = "",
                 join: str | None = None) -> None:
        """``gateway``: options for the gateway service (see ``Node._start_gateway``);
        every node serves it, on the same ports (SO_REUSEPORT when ``nodes`` > 1)."""
        if nodes < 1:
            raise ValueError("a cluster needs at least one node")
        if gateway and nodes > 32:
            raise ValueError("at most 32 gateway nodes per host (snowflake process bits)")
        if join:
            parse_join(join)
        if not secret:
            raise ValueError("a cluster needs a secret (GREENROOM_CLUSTER_SECRET)")
        self.nodes = nodes
        self.secret = secret
        self.host = host
        self.admin_port = admin_port or free_port(host)
        self._held_ports: list[socket.socket] = []
        gateway = _shared_gateway(gateway, host, nodes, self._held_ports)
        self.gateway = gateway
        self.node_names = [f"{name}-n{i}" if name else f"n{i}" for i in range(1, nodes + 1)]
        self.spec = SupervisorSpec(
            SupervisorFlags(ONE_FOR_ONE, intensity, period),
            (ChildSpec("membership", Membership, global_name=MEMBERSHIP,
                       init=MembershipConfig(name or host, join or None)),)
            + tuple(ChildSpec(node, NodeActor, shutdown=15.0,
                              init=NodeConfig(node, secret, host=host, services=services,
                                              settings=_node_settings(i, settings, gateway)))
                    for i, node in enumerate(self.node_names, 1)))
        self.system: ActorSystem | None = None
        self.top = None
        self.membership = None

    def start(self, timeout: float = 60.0) -> Members:
        bind_thespian_to(self.host)
        authenticate_thespian(self.secret)  # before any Thespian process is forked
        self.system = ActorSystem("multiprocTCPBase", {"Admin Port": self.admin_port},
                                  logDefs=log_defs(), transientUnique=True)
        self.top = self.system.createActor(NodeSupervisor)
        started = self.system.ask(self.top, Start(self.spec), timeout)
        if not isinstance(started, Started):
            self.stop()
            raise RuntimeError(f"the node supervisor did not start: {started!r}")
        children = dict(started.children)
        self.membership = children["membership"]
        mine = set(self.node_names)
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.wait_for(lambda m: mine <= m.nodes.keys(), 1.0)
            except TimeoutError:
                if time.monotonic() > deadline:
                    raise
            members = self.members()
            up = members.nodes.keys() if isinstance(members, Members) else set()
            for node in sorted(mine - up):
                # a node whose services cannot start stays down: say why, now
                failed = self.system.ask(children[node], WhyNotUp(), 1.0)
                if isinstance(failed, NodeStartFailed):
                    raise NodeStartError(failed.reason)

    def members(self) -> Members:
        members = self.system.ask(self.membership, GetMembers(), 10)
        if not isinstance(members, Members):
            # the membership actor may have been restarted: ask its new incarnation
            children = self.system.ask(self.top, WhichChildren(), 10)
            current = isinstance(children, Children) and dict(
                (i, a) for i, a, _t in children.children).get("membership")
            if current:
                self.membership = current
                members = self.system.ask(current, GetMembers(), 10)
        return members

    def wait_for(self, predicate, timeout: float = 30.0) -> Members:
        deadline = time.monotonic() + timeout
        while True:
            members = self.members()
            if isinstance(members, Members) and predicate(members):
                return members
            if time.monotonic() > deadline:
                raise TimeoutError(f"cluster did not reach the expected state: {members}")
            time.sleep(0.01)

    def stop(self, timeout: float = 30.0) -> None:
        if self.system is None:
            self._release_ports()
            return
        try:
            self.system.ask(self.top, Stop(), timeout)
        finally:
            self.system.shutdown()
            self.system = None
            self._release_ports()
            log.info("cluster stopped (pid %d)", os.getpid())

    def _release_ports(self) -> None:
        for held in self._held_ports:
            held.close()
        self._held_ports.clear()
