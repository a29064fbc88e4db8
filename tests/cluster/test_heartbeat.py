"""Heartbeats over real data-plane links between two nodes in this process: each sees
the other live; when one stops, the other sees it leave; clients are never suspected."""

from __future__ import annotations

import os
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


def test_a_node_whose_own_loop_stalled_does_not_suspect_the_peers_it_did_not_read():
    """A stall of a's loop past the timeout (a loaded host): b suspects a, rightly; a,
    once it runs again, reads b's heartbeats before it checks, and suspects nobody."""
    a, b = NodeThread(NodeConfig("hb-d", SECRET)), NodeThread(NodeConfig("hb-e", SECRET))
    try:
        pid = os.getpid()  # both in this process: their heartbeats carry its pid
        members = Members({"hb-d": (a.start(), pid), "hb-e": (b.start(), pid)})
        for t in (a, b):
            t.call(t.node.announce, members)
        wait_until(lambda: a.node.members.nodes.keys() == members.nodes.keys(), "a sees b")
        a.call(time.sleep, 1.6)  # a's loop thread, blocked (timeout: 1 s)
        wait_until(lambda: "hb-d" not in b.node.members.nodes, "b suspects a")
        wait_until(lambda: "hb-d" in b.node.members.nodes, "b hears a again")
        time.sleep(0.5)  # a few ticks of a's
        events = [e[1:3] for e in a.node.heartbeats.view().events]
        assert ["left", "hb-e"] not in events, events
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
