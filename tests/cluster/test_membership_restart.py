"""The membership actor keeps its state in memory only; a new incarnation (restarted by
the host's supervisor) learns every node again from the nodes themselves."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from cluster.launcher import Cluster
from supervision import Children, WhichChildren
from tests.cluster.conftest import SECRET
from tests.cluster.test_nodes import listening_tcp


def pid_listening_on(port: int) -> int:
    pids = {int(e.name) for e in Path("/proc").iterdir() if e.name.isdigit()}
    return next(pid for _addr, p, pid in listening_tcp(pids) if p == port)


def membership_address(cluster: Cluster):
    children = cluster.system.ask(cluster.top, WhichChildren(), 10)
    assert isinstance(children, Children)
    return {cid: addr for cid, addr, _type in children.children}["membership"]


def test_a_membership_actor_killed_and_restarted_learns_every_node_again():
    cluster = Cluster(2, SECRET)
    before = cluster.start()
    try:
        old = cluster.membership
        # Each actor of Thespian's TCP base is a process listening on its address's port.
        os.kill(pid_listening_on(old.addressDetails.connectArgs[0][1]), signal.SIGKILL)
        deadline = time.monotonic() + 30
        while membership_address(cluster) in (None, old):
            assert time.monotonic() < deadline, "the membership actor was not restarted"
            time.sleep(0.05)
        after = cluster.wait_for(lambda m: m.nodes == before.nodes, 30)
        assert cluster.membership != old  # Cluster follows the new incarnation
        assert after.nodes.keys() == {"n1", "n2"}
    finally:
        cluster.stop()
