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
    secret: bytes
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

    def data_addresses(self) -> dict[str, tuple[str, int]]:
        return {name: addr for name, (addr, _pid) in self.nodes.items()}


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
