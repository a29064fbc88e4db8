"""What node processes, the membership actor and node directories say to each other."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from actors.address import Address
from actors.wire import wire_type

MEMBERSHIP = "greenroom-membership"
DIRECTORY_ID = 0  # every node's directory has this well-known actor id


@dataclass(frozen=True)
class NodeConfig:
    """A node process's start-up arguments (its ChildSpec ``init``)."""

    name: str
    secret: bytes = field(repr=False)  # never in a log line (Thespian logs messages)
    host: str = "127.0.0.1"
    port: int = 0
    #: (global name, dotted actor class) started under the node's root supervisor
    services: tuple[tuple[str, str], ...] = ()
    settings: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class NodeUp:
    name: str
    data_address: tuple[str, int]
    pid: int
    actor: Any = None  # the Thespian address of the node actor (None: an outside client)
    #: what the node serves besides its data plane, e.g. {"gateway": url, "rest": url}
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class GetMembers:
    pass


@dataclass(frozen=True)
class Members:
    nodes: dict[str, tuple[tuple[str, int], int]]  # name -> (data-plane address, pid)
    #: name -> what the node reported serving (``NodeUp.info``), e.g. the gateway URLs
    info: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: names of outside clients (``NodeUp.actor is None``, e.g. ``ClusterClient``):
    #: reachable, but they send no heartbeats, so the failure detector ignores them
    clients: frozenset[str] = frozenset()

    def data_addresses(self) -> dict[str, tuple[str, int]]:
        return {name: addr for name, (addr, _pid) in self.nodes.items()}


@dataclass(frozen=True)
class NodeDown:
    """To the membership actor from its host's supervisor: the node process at this
    Thespian address exited (its ``NodeUp`` is withdrawn; a restart sends a new one)."""

    actor: Any


@dataclass(frozen=True)
class Reannounce:
    """From a membership actor that was (re)started, to each node actor of its host's
    supervisor: send your ``NodeUp`` again (to the sender), since a new incarnation
    of the membership actor starts with no members."""


@dataclass(frozen=True)
class MembershipConfig:
    """The membership actor's init: this host's id (unique in the cluster) and, on a
    host that joins another, the leader's Thespian admin address ``"host:port"``."""

    host_id: str
    join: str | None = None


@dataclass(frozen=True)
class HostNodes:
    """Between the membership actors of a convention: each listed host's node set
    (``NodeUp`` by name; an empty set: the host has left). A host reports its own
    nodes to the convention leader, which relays every host's to all the others."""

    hosts: dict[str, dict[str, NodeUp]]


@wire_type("node.where_is")
@dataclass(frozen=True)
class WhereIs:
    """Ask a node's directory (``Address(node, DIRECTORY_ID)``) for a global name."""

    name: str


@wire_type("node.here")
@dataclass(frozen=True)
class Here:
    name: str
    address: Address | None


@wire_type("node.ping")
@dataclass(frozen=True)
class Ping:
    pass


@wire_type("node.pong")
@dataclass(frozen=True)
class Pong:
    node: str
    pid: int


@wire_type("node.heartbeat")
@dataclass(frozen=True)
class Heartbeat:
    """Node to node over the data plane, every ``cluster.detector.INTERVAL`` seconds, to
    the peer's directory (``DIRECTORY_ID``)."""

    node: str
    pid: int
    #: the sender's ``time.time()``: the receiver's ``dataplane_heartbeat_delay_seconds``
    sent_at: float = 0.0


@wire_type("node.get_view")
@dataclass(frozen=True)
class GetView:
    """Ask a node's directory which members it knows and which of them it sees live."""


@wire_type("node.view")
@dataclass(frozen=True)
class View:
    node: str
    known: list[str]  # every member the membership actors announced (clients excluded)
    live: list[str]  # of those, the ones whose heartbeats arrive (and this node)
    pids: dict[str, int] = field(default_factory=dict)  # of the live ones
    #: the latest changes of the live set, oldest first: [seq, "joined"|"left", node, pid]
    events: list[list] = field(default_factory=list)
