"""A real cluster of node processes (Thespian's multiprocTCPBase) per test module,
and an in-process client node joined to it over the data plane."""

from __future__ import annotations

import asyncio
import os

import pytest

from cluster.launcher import Cluster
from cluster.messages import NodeConfig, NodeUp
from cluster.node import NodeThread

SECRET = b"test-cluster-secret"
SERVICES = (("hop", "tests.cluster.hop.Hop"), ("echo", "tests.cluster.hop.Echo"))


class Client:
    """A node in the test process: asks actors on the cluster's nodes."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.thread = NodeThread(NodeConfig(f"client-{os.getpid()}", SECRET))

    def start(self) -> None:
        address = self.thread.start()
        members = self.cluster.system.ask(
            self.cluster.membership, NodeUp(self.thread.node.config.name, address,
                                            os.getpid(), None), 10)
        self.join(members)

    def join(self, members) -> None:
        self.thread.call(self.thread.node.set_peers, members.data_addresses())

    def ask(self, target, message, timeout: float = 5.0):
        base = self.thread.node.base
        return asyncio.run_coroutine_threadsafe(
            base.ask_async(target, message, timeout), self.thread.loop).result(timeout + 1)


@pytest.fixture(scope="module")
def trace_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("traces") / "spans.jsonl"
    os.environ["GREENROOM_TRACE_FILE"] = str(path)  # node processes inherit it
    yield path
    os.environ.pop("GREENROOM_TRACE_FILE", None)


@pytest.fixture(scope="module")
def cluster(trace_file):
    c = Cluster(2, SECRET, services=SERVICES)
    c.start()
    yield c
    c.stop()


@pytest.fixture
def client(cluster):
    cl = Client(cluster)
    cl.start()
    yield cl
    cl.thread.stop()
