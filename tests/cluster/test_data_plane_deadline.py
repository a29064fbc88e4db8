"""A connection to a node's data plane that never authenticates is closed after the
handshake deadline (finding 6 of issue 10: 200 of 200 such sockets were open after
120 s), and the plane goes on serving real peers."""

from __future__ import annotations

import socket
import struct
import time

from actors.address import Address
from actors.wire import envelope, pack
from observability import snapshot
from tests.cluster.test_data_plane import (  # noqa: F401 (pair: a fixture)
    Collector,
    Numbered,
    _authenticated_socket,
    on_loop,
    pair,
    seen_by,
)

SILENT = 20
DEADLINE = 0.5


def closed_by_server(sock: socket.socket, until: float) -> bool:
    """True once the server closed ``sock`` (EOF or reset); False at ``until``."""
    sock.settimeout(max(0.01, until - time.monotonic()))
    try:
        while sock.recv(64):  # the greeting, then nothing
            pass
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    return True


def test_sockets_that_never_authenticate_are_closed_and_the_plane_serves_on(pair):  # noqa: F811
    a, b = pair
    plane = b.node.plane
    on_loop(b, setattr, plane, "handshake_timeout", DEADLINE)
    before = snapshot().get("links_handshake_timeout_total", 0)
    port = b.address[1]
    t0 = time.monotonic()
    silent = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(SILENT)]
    silent[0].sendall(b"\x00\x08intr")  # half a hello, then silence
    try:
        closed = [closed_by_server(s, t0 + DEADLINE + 3) for s in silent]
        elapsed = time.monotonic() - t0
    finally:
        for s in silent:
            s.close()
    assert all(closed), f"{closed.count(False)} of {SILENT} silent sockets still open"
    assert DEADLINE * 0.8 <= elapsed < DEADLINE + 3
    assert snapshot().get("links_handshake_timeout_total", 0) - before == SILENT
    assert on_loop(b, len, plane.inbound) <= 1  # a's link, if it has one yet
    # a real peer still gets in, and its link outlives the deadline
    collector = on_loop(b, b.node.base.create_actor, None, Collector, None, None)
    sock = _authenticated_socket(port)
    try:
        assert sock.recv(2) == b"OK"
        time.sleep(DEADLINE * 2)  # past the deadline: what it sends now still arrives
        frame = pack(envelope(Address("pb", collector.id), None, Numbered(1)))
        sock.sendall(struct.pack(">I", len(frame)) + frame)
        assert seen_by(b, collector, 1) == [1]
    finally:
        sock.close()
    on_loop(a, a.node.base.deliver, Address("pb", collector.id), Numbered(2), None)
    assert seen_by(b, collector, 2) == [1, 2]
