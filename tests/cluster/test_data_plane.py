"""The data plane between two nodes (real sockets), and the envelope codec."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import socket
import struct
import time
from dataclasses import dataclass

import msgpack
import pytest

from actors import Actor
from actors.address import Address
from actors.wire import (
    MalformedEnvelope,
    envelope,
    open_envelope,
    pack,
    unpack,
    wire_type,
)
from cluster.messages import DIRECTORY_ID, Here, NodeConfig, Ping, Pong, WhereIs
from cluster.node import NodeThread
from observability import snapshot

SECRET = b"plane-secret"


@wire_type("test.numbered")
@dataclass
class Numbered:
    n: int
    trace: dict | None = None


class Collector(Actor):
    def receiveMessage(self, msg, sender):
        if isinstance(msg, Numbered):
            self.seen = getattr(self, "seen", []) + [msg.n]
        elif msg == "seen":
            self.send(sender, getattr(self, "seen", []))


@pytest.fixture
def pair():
    a = NodeThread(NodeConfig("pa", SECRET))
    b = NodeThread(NodeConfig("pb", SECRET))
    addr_a, addr_b = a.start(), b.start()
    peers = {"pa": addr_a, "pb": addr_b}
    a.call(a.node.set_peers, peers)
    b.call(b.node.set_peers, peers)
    yield a, b
    a.stop()
    b.stop()


def run(thread, coro, timeout=10):
    return asyncio.run_coroutine_threadsafe(coro, thread.loop).result(timeout)


def seen_by(thread, collector, count: int, timeout: float = 5.0) -> list:
    """What ``collector`` on ``thread``'s node has seen, once it has seen ``count``
    messages or ``timeout`` s passed."""
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline and len(seen) < count:
        seen = run(thread, thread.node.base.ask_async(collector, "seen", 5))
        time.sleep(0.02)
    return seen


def on_loop(thread, fn, *args):
    async def call():
        return fn(*args)
    return run(thread, call())


def test_envelope_round_trip_and_trace_travels_once():
    to, sender = Address("n2", 7), Address("n1", 3)
    trace = {"traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01"}
    env = envelope(to, sender, Numbered(5, trace))
    assert env["type"] == "test.numbered@1" and env["body"] == [5] and env["trace"] == trace
    got_to, got_sender, message, got_trace = open_envelope(unpack(pack(env)))
    assert (got_to, got_sender, got_trace) == (to, sender, trace)
    assert message == Numbered(5, trace)


@pytest.mark.parametrize("bad, reason", [
    (b"\xc1", "not valid msgpack"),
    (msgpack.packb([1, 2]), "is a map"),
    (msgpack.packb({"to": ["n", 1], "from": None, "type": "x@1"}), "lacks"),
    (msgpack.packb({"to": "n", "from": None, "type": "raw@1", "body": 1}), "'to' must be"),
    (msgpack.packb({"to": ["n", 1], "from": None, "type": "nope@9", "body": []}),
     "unknown message type"),
    (msgpack.packb({"to": ["n", 1], "from": None, "type": "test.numbered@1", "body": [1, 2]}),
     "body must be a list of 1"),
    (msgpack.packb({"to": ["n", 1], "from": None, "type": "raw@1", "body": 1, "trace": 5}),
     "'trace' must be a map"),
])
def test_malformed_envelopes_raise_with_a_reason(bad, reason):
    with pytest.raises(MalformedEnvelope, match=reason):
        open_envelope(unpack(bad))


def test_unregistered_objects_cannot_be_packed():
    class Secret:
        pass

    with pytest.raises(TypeError, match="not a wire type"):
        pack(envelope(Address("n", 1), None, [Secret()]))


def test_messages_cross_in_order(pair):
    a, b = pair
    collector = on_loop(b, b.node.base.create_actor, None, Collector, None, None)
    remote = Address("pb", collector.id)  # as another process names it: no cell

    def blast():
        for n in range(5000):
            a.node.base.deliver(remote, Numbered(n), None)

    on_loop(a, blast)
    seen = seen_by(b, collector, 5000, timeout=10)
    assert seen == list(range(5000))


def _authenticated_socket(port: int, node: bytes = b"intruder", secret: bytes = SECRET):
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    greeting = b""
    while len(greeting) < 21:
        greeting += sock.recv(21 - len(greeting))
    assert greeting.startswith(b"GRDP2")
    where = b"127.0.0.1:9"  # where this "node" would listen
    hello = struct.pack(">H", len(node)) + node + struct.pack(">H", len(where)) + where
    mac = hmac.new(secret, greeting[5:] + hello, hashlib.sha256).digest()
    sock.sendall(hello + mac)
    return sock


def test_malformed_envelope_is_logged_counted_and_the_receiver_goes_on(pair):
    a, b = pair
    collector = on_loop(b, b.node.base.create_actor, None, Collector, None, None)
    port = b.address[1]
    before = snapshot().get('envelopes_malformed_total{reason="envelope"}', 0)
    sock = _authenticated_socket(port)
    assert sock.recv(2) == b"OK"
    frames = [b"\xc1garbage",
              msgpack.packb({"to": ["pb", collector.id], "from": None, "type": "zzz@1",
                             "body": []}),
              pack(envelope(Address("pb", collector.id), None, Numbered(42)))]
    sock.sendall(b"".join(struct.pack(">I", len(f)) + f for f in frames))
    seen = seen_by(b, collector, 1)
    assert seen == [42]
    after = snapshot().get('envelopes_malformed_total{reason="envelope"}', 0)
    assert after - before == 2
    sock.close()


def test_a_link_with_the_wrong_secret_is_refused(pair):
    _a, b = pair
    sock = _authenticated_socket(b.address[1], secret=b"wrong")
    sock.settimeout(5)
    assert sock.recv(2) == b""  # closed without "OK"
    sock.close()


def test_an_oversized_frame_closes_the_link(pair):
    _a, b = pair
    sock = _authenticated_socket(b.address[1])
    assert sock.recv(2) == b"OK"
    sock.sendall(struct.pack(">I", 1 << 30))
    sock.settimeout(5)
    assert sock.recv(1) == b""
    sock.close()


def test_data_plane_needs_a_secret():
    from actors import UvloopSystemBase
    from cluster.data_plane import DataPlane

    base = UvloopSystemBase(loop=asyncio.new_event_loop())
    with pytest.raises(ValueError, match="secret"):
        DataPlane(base, b"")


def test_overloaded_bounces_cross_processes():
    from actors.messages import Overloaded

    bounce = Overloaded(Address("n2", 9), Numbered(3), 10)
    _to, _sender, message, _trace = open_envelope(
        unpack(pack(envelope(Address("n1", 1), Address("n2", 9), bounce))))
    assert message == bounce


def test_a_message_that_is_no_wire_type_is_a_dead_letter_not_a_dead_link(pair):
    a, b = pair
    collector = on_loop(b, b.node.base.create_actor, None, Collector, None, None)
    remote = Address("pb", collector.id)
    before = snapshot().get("envelopes_unencodable_total", 0)

    def send_both():
        a.node.base.deliver(remote, object(), None)  # cannot be packed
        a.node.base.deliver(remote, Numbered(7), None)

    on_loop(a, send_both)
    seen = seen_by(b, collector, 1)
    assert seen == [7]
    assert snapshot().get("envelopes_unencodable_total", 0) == before + 1


@wire_type("test.blob")
@dataclass
class Blob:
    data: bytes


def test_a_message_over_the_frame_limit_is_refused_by_the_sender_and_the_link_lives(pair):
    # The receiver closes a link on a frame over MAX_FRAME and loses what is queued
    # behind it; the sender refuses such a message instead, and what follows arrives.
    from cluster.data_plane import MAX_FRAME

    a, b = pair
    collector = on_loop(b, b.node.base.create_actor, None, Collector, None, None)
    remote = Address("pb", collector.id)

    def send_three():
        a.node.base.deliver(remote, Numbered(1), None)
        a.node.base.deliver(remote, Blob(b"x" * (MAX_FRAME + 1)), None)
        a.node.base.deliver(remote, Numbered(2), None)

    on_loop(a, send_three)
    seen = seen_by(b, collector, 2)
    assert seen == [1, 2]
    on_loop(a, a.node.base.deliver, remote, Numbered(3), None)  # the same link still serves
    seen = seen_by(b, collector, 3)
    assert seen == [1, 2, 3]


def test_a_node_answers_a_peer_it_has_not_been_told_about_yet():
    """A client asks a node right after joining: the membership announcement that names
    the client may reach the node after the ask does, and an older announcement (made
    before the client joined) may even arrive after the ask's link. The answer goes
    back to where the client's link said it listens; it was a dead letter before (a
    WhereIs timed out in bench_cluster's phase 2)."""
    client = NodeThread(NodeConfig("pc", SECRET))
    node = NodeThread(NodeConfig("pn", SECRET))
    client_addr, node_addr = client.start(), node.start()
    try:
        client.call(client.node.set_peers, {"pn": node_addr})  # pn does not know pc
        directory = Address("pn", DIRECTORY_ID)
        here = run(client, client.node.base.ask_async(directory, WhereIs("nothing"), 5))
        assert here == Here("nothing", None)
        # a stale announcement, without pc: pc stays reachable until one names it
        on_loop(node, node.node.set_peers, {"pn": node_addr})
        pong = run(client, client.node.base.ask_async(directory, Ping(), 5))
        assert isinstance(pong, Pong) and pong.node == "pn"
        on_loop(node, node.node.set_peers, {"pn": node_addr, "pc": client_addr})
        assert node.node.plane.unannounced == {}
        # announced, then withdrawn: gone at once, as any member that left
        on_loop(node, node.node.set_peers, {"pn": node_addr})
        assert "pc" not in node.node.plane.peers
    finally:
        client.stop()
        node.stop()


def test_an_unannounced_peer_is_forgotten_when_its_link_closes():
    client = NodeThread(NodeConfig("pc", SECRET))
    node = NodeThread(NodeConfig("pn", SECRET))
    _client_addr, node_addr = client.start(), node.start()
    try:
        client.call(client.node.set_peers, {"pn": node_addr})
        run(client, client.node.base.ask_async(Address("pn", DIRECTORY_ID), Ping(), 5))
        assert "pc" in node.node.plane.peers
    finally:
        client.stop()
    deadline = time.monotonic() + 5
    while "pc" in node.node.plane.peers and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        assert "pc" not in node.node.plane.peers
        assert node.node.plane.unannounced == {}
    finally:
        node.stop()
