"""Heartbeats over real data-plane links between two nodes in this process: each sees
the other live; when one stops, the other sees it leave; clients are never suspected."""

from __future__ import annotations

import time

import pytest

from cluster.heartbeat import Heartbeats
from cluster.messages import Members, NodeConfig
from cluster.node import NodeThread

SECRET = b"heartbeat-test-secret"


def wait_until(predicate, what: str, limit: float = 20.0) -> None:
    deadline = time.monotonic() + limit
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.02)


def test_nodes_see_each_other_live_and_a_stopped_one_leave():
    a, b = NodeThread(NodeConfig("hb-a", SECRET)), NodeThread(NodeConfig("hb-b", SECRET))
    try:
        members = Members({"hb-a": (a.start(), 1), "hb-b": (b.start(), 2),
                           "a-client": (("127.0.0.1", 9), 3)},
                          clients=frozenset({"a-client"}))
        for t in (a, b):
            t.call(t.node.announce, members)
        wait_until(lambda: a.node.members.nodes.keys() == members.nodes.keys(), "a sees b")
        assert a.node.members == members == b.node.members
        b.stop()
        wait_until(lambda: "hb-b" not in a.node.members.nodes, "a sees b leave")
        view = a.node.heartbeats.view()
        assert view.known == ["hb-a", "hb-b"] and view.live == ["hb-a"]
        assert [e[1:3] for e in view.events][-1] == ["left", "hb-b"]
        assert "a-client" in a.node.members.nodes  # sends no heartbeats: never suspected
    finally:
        b.stop()
        a.stop()


def test_a_heartbeat_interval_not_below_the_timeout_is_refused():
    t = NodeThread(NodeConfig("hb-c", SECRET))
    t.start()
    try:
        with pytest.raises(ValueError, match="shorter than the timeout"):
            Heartbeats(t.node.base, t.node.plane, lambda m: None, interval=1.0, timeout=1.0)
    finally:
        t.stop()
