"""A real cluster of node processes (Thespian's multiprocTCPBase) per test module,
and an in-process client node joined to it over the data plane."""

from __future__ import annotations

import os

import pytest

from cluster.client import ClusterClient
from cluster.launcher import Cluster

SECRET = b"test-cluster-secret"
SERVICES = (("hop", "tests.cluster.hop.Hop"), ("echo", "tests.cluster.hop.Echo"))


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
    cl = ClusterClient(cluster, SECRET)
    cl.start()
    yield cl
    cl.stop()
