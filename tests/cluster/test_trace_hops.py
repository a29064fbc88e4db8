"""One REST post's trace across two node processes (``greenroom run --nodes 2``, spans
written by both to one JSON-lines file): the storage batch, the hop between the nodes
(a span on each side) and each node's fan-out point are in it, in the right processes."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from cluster.placement import Placement
from tests.cluster.test_scale_out import NODES, client_on, rest, running


def _spans(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _trace_of_message(path: Path, message_id: str, want: set[str],
                      timeout: float = 10.0, delivers: int = 2) -> dict[str, list[dict[str, Any]]]:
    """The spans of the trace that wrote ``message_id``, by name, once the names in
    ``want`` are there (each process writes a span when it ends)."""
    deadline = time.monotonic() + timeout
    by_name: dict[str, list[dict[str, Any]]] = {}
    while time.monotonic() < deadline:
        spans = _spans(path)
        posts = [s for s in spans if s["name"] == "channel.post"
                 and s["attributes"].get("greenroom.message_id") == int(message_id)]
        if posts:
            by_name = {}
            for s in spans:
                if s["trace_id"] == posts[0]["trace_id"]:
                    by_name.setdefault(s["name"], []).append(s)
            if want <= set(by_name) and len(by_name.get("fanout.deliver", [])) >= delivers:
                return by_name
        time.sleep(0.05)
    raise AssertionError(f"trace of {message_id} incomplete: "
                         f"{ {k: len(v) for k, v in by_name.items()} }")


def test_a_post_fanned_out_to_both_nodes_shows_the_hop_and_each_fanout_point(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    trace_file = tmp_path / "spans.jsonl"
    monkeypatch.setenv("GREENROOM_TRACE_FILE", str(trace_file))  # the nodes inherit it
    with running(tmp_path) as (served, _nodes):
        clients = [client_on(node, served) for node in NODES]  # one session per node
        try:
            # the guild subscriptions are in place once a post reaches both sessions
            for attempt in range(40):
                _, warm = rest(served, "POST", f"/channels/{served['channel_id']}/messages",
                               {"content": f"warm-up {attempt}"})
                try:
                    for c in clients:
                        while c.next_dispatch("MESSAGE_CREATE", 2.0)["id"] != warm["id"]:
                            pass
                    break
                except TimeoutError:
                    continue
            _, posted = rest(served, "POST", f"/channels/{served['channel_id']}/messages",
                             {"content": "traced across nodes"})
            for c in clients:
                while c.next_dispatch("MESSAGE_CREATE")["id"] != posted["id"]:
                    pass
        finally:
            for c in clients:
                c.close()
        by_name = _trace_of_message(trace_file, posted["id"], {
            "rest.post_message", "storage.write", "storage.batch", "guild.fanout",
            "fanout.deliver", "dataplane.send", "dataplane.receive", "socket.out"})

    (fanout,) = by_name["guild.fanout"]
    guild_pid = fanout["pid"]
    assert fanout["attributes"]["greenroom.nodes"] == 2
    # the storage batch, linked under the write, on the channel's (= the guild's) node
    (batch,) = by_name["storage.batch"]
    assert batch["attributes"]["greenroom.backend"] == "sqlite"
    assert batch["pid"] == guild_pid
    # each node's fan-out point delivered to its one session, in its own process
    delivers = by_name["fanout.deliver"]
    assert sorted(d["attributes"]["greenroom.node"] for d in delivers) == sorted(NODES)
    assert {d["parent_span_id"] for d in delivers} == {fanout["span_id"]}
    assert all(d["attributes"]["greenroom.recipients"] == 1 for d in delivers)
    assert len({d["pid"] for d in delivers}) == 2
    remote = next(d for d in delivers if d["pid"] != guild_pid)
    # the hop in between: the NodeFanout leaves the guild's process and enters the other
    sends = [s for s in by_name["dataplane.send"]
             if s["attributes"]["greenroom.message_type"] == "NodeFanout"]
    receives = [s for s in by_name["dataplane.receive"]
                if s["attributes"]["greenroom.message_type"] == "NodeFanout"]
    assert len(sends) == len(receives) == 1, by_name["dataplane.send"]
    send, receive = sends[0], receives[0]
    assert send["pid"] == guild_pid and receive["pid"] == remote["pid"]
    assert send["parent_span_id"] == receive["parent_span_id"] == fanout["span_id"]
    assert receive["parent_is_remote"]
    assert send["attributes"]["greenroom.peer"] == remote["attributes"]["greenroom.node"]
    assert receive["attributes"]["greenroom.peer"] == send["attributes"]["greenroom.node"]
    assert send["attributes"]["greenroom.bytes"] == receive["attributes"]["greenroom.bytes"]
    # in time (one host, one clock): sent, received, then delivered on the far node
    assert send["start_time_unix_nano"] <= receive["end_time_unix_nano"] \
        <= remote["start_time_unix_nano"]
    outs = by_name["socket.out"]
    assert {o["parent_span_id"] for o in outs} == {d["span_id"] for d in delivers}


def test_a_post_served_by_the_other_node_shows_the_registry_hop(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """REST on one node, the channel on the other: the routed post (a registry ``Route``)
    (a ``Placed`` between registries) crosses the data plane with its own ``dataplane.send``/``receive`` spans, children
    of the REST span, so the hop REST -> channel is visible where it is spent."""
    trace_file = tmp_path / "spans.jsonl"
    monkeypatch.setenv("GREENROOM_TRACE_FILE", str(trace_file))
    with running(tmp_path) as (served, _nodes):
        owner = Placement(NODES).owner(int(served["guild_id"]))
        for attempt in range(40):  # the kernel picks the node of each new connection
            node, posted = rest(served, "POST", f"/channels/{served['channel_id']}/messages",
                                {"content": f"routed {attempt}"})
            if node != owner:
                break
        else:
            raise AssertionError(f"40 posts and none was served by a node other than {owner}")
        by_name = _trace_of_message(trace_file, posted["id"], {
            "rest.post_message", "channel.post", "dataplane.send", "dataplane.receive"},
            delivers=0)
    (root,) = by_name["rest.post_message"]
    routed = [s for s in by_name["dataplane.send"]
              if s["attributes"]["greenroom.message_type"] == "Placed"]
    assert len(routed) == 1, by_name["dataplane.send"]
    (send,) = routed
    (receive,) = [s for s in by_name["dataplane.receive"]
                  if s["attributes"]["greenroom.message_type"] == "Placed"]
    assert send["pid"] == root["pid"] != receive["pid"]
    assert send["attributes"]["greenroom.peer"] == owner
    (post,) = by_name["channel.post"]
    assert post["pid"] == receive["pid"]
