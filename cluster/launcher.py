"""Start a cluster of node processes under an OTP supervisor on Thespian's
multi-process base, and stop all of it."""

from __future__ import annotations

import logging
import os
import socket
import time

from thespian.actors import ActorSystem

from cluster.messages import MEMBERSHIP, GetMembers, Members, NodeConfig
from cluster.node import Membership, NodeActor
from cluster.thespian_tcp import bind_thespian_to
from observability import log_defs
from supervision import (
    ONE_FOR_ONE,
    ChildSpec,
    Start,
    Started,
    Stop,
    Supervisor,
    SupervisorFlags,
    SupervisorSpec,
)

log = logging.getLogger("greenroom.cluster")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _node_settings(index: int, settings: dict | None, gateway: dict | None) -> dict:
    merged = dict(settings or {})
    if gateway and index == 1:
        merged["gateway"] = gateway
    return merged


class Cluster:
    """``nodes`` node processes (``n1``..``nN``) and the membership actor, supervised
    one_for_one: a node that dies (even by SIGKILL) is started again."""

    def __init__(self, nodes: int, secret: bytes, *, host: str = "127.0.0.1",
                 admin_port: int | None = None, services: tuple[tuple[str, str], ...] = (),
                 settings: dict | None = None, intensity: int = 5, period: float = 10.0,
                 gateway: dict | None = None) -> None:
        """``gateway``: options for the gateway service (see ``Node._start_gateway``);
        only node ``n1`` serves it for now (sharing the ports is issue 5)."""
        if nodes < 1:
            raise ValueError("a cluster needs at least one node")
        self.nodes = nodes
        self.host = host
        self.admin_port = admin_port or free_port(host)
        self.spec = SupervisorSpec(
            SupervisorFlags(ONE_FOR_ONE, intensity, period),
            (ChildSpec("membership", Membership, global_name=MEMBERSHIP),)
            + tuple(ChildSpec(f"n{i}", NodeActor, shutdown=15.0,
                              init=NodeConfig(f"n{i}", secret, host=host, services=services,
                                              settings=_node_settings(i, settings, gateway)))
                    for i in range(1, nodes + 1)))
        self.system: ActorSystem | None = None
        self.top = None
        self.membership = None

    def start(self, timeout: float = 60.0) -> Members:
        bind_thespian_to(self.host)
        self.system = ActorSystem("multiprocTCPBase", {"Admin Port": self.admin_port},
                                  logDefs=log_defs(), transientUnique=True)
        self.top = self.system.createActor(Supervisor)
        started = self.system.ask(self.top, Start(self.spec), timeout)
        if not isinstance(started, Started):
            self.stop()
            raise RuntimeError(f"the node supervisor did not start: {started!r}")
        self.membership = dict(started.children)["membership"]
        return self.wait_for(lambda m: len(m.nodes) == self.nodes, timeout)

    def members(self) -> Members:
        return self.system.ask(self.membership, GetMembers(), 10)

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
            return
        try:
            self.system.ask(self.top, Stop(), timeout)
        finally:
            self.system.shutdown()
            self.system = None
            log.info("cluster stopped (pid %d)", os.getpid())
