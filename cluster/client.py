"""A node in this process, joined to a running ``Cluster``: how tools, benchmarks and
tests talk to actors on the cluster's nodes over the data plane."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from actors.address import Address
from cluster.launcher import Cluster
from cluster.messages import DIRECTORY_ID, Here, Members, NodeConfig, NodeUp, WhereIs
from cluster.node import NodeThread


class ClusterClient:
    def __init__(self, cluster: Cluster, secret: bytes, name: str | None = None) -> None:
        self.cluster = cluster
        # on the cluster's interface: nodes on other hosts may answer it
        self.thread = NodeThread(NodeConfig(name or f"client-{os.getpid()}", secret,
                                            host=cluster.host))

    def start(self) -> None:
        """Start the client node and register it, so the nodes can answer it."""
        address = self.thread.start()
        members = self.cluster.system.ask(
            self.cluster.membership,
            NodeUp(self.thread.node.config.name, address, os.getpid(), None), 10)
        self.join(members)

    def join(self, members: Members) -> None:
        """Learn the nodes' data-plane addresses (again, after a node restarted)."""
        self.thread.call(self.thread.node.set_peers, members.data_addresses())
        self.thread.call(self.thread.node.set_members, members)

    def ask(self, target: Address, message: Any, timeout: float = 5.0) -> Any:
        base = self.thread.node.base
        return asyncio.run_coroutine_threadsafe(
            base.ask_async(target, message, timeout), self.thread.loop).result(timeout + 5)

    def where_is(self, node: str, name: str) -> Address:
        """The address of the service registered as ``name`` on ``node``."""
        here = self.ask(Address(node, DIRECTORY_ID), WhereIs(name))
        if not isinstance(here, Here) or here.address is None:
            raise LookupError(f"no {name!r} on node {node}: {here!r}")
        return here.address

    def stop(self) -> None:
        self.thread.stop()
