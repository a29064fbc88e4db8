"""Node processes under an OTP supervisor on Thespian's multi-process base."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from actors.address import Address
from cluster.messages import DIRECTORY_ID, Here, Pong, WhereIs
from cluster.messages import Ping as NodePing
from tests.cluster.hop import Relay
from tests.cluster.run_log import alive, read_until, tagged


def listening_tcp(pids: set[int]) -> list[tuple[str, int, int]]:
    """(address, port, pid) of every listening TCP socket these processes hold."""
    inodes: dict[str, int] = {}
    for pid in pids:
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes[target[8:-1]] = pid
        except OSError:
            continue
    found = []
    for table, family in (("/proc/net/tcp", 4), ("/proc/net/tcp6", 6)):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state != "0A" or inode not in inodes:  # 0A: LISTEN
                continue
            hexaddr, hexport = local.split(":")
            if family == 4:
                raw = bytes.fromhex(hexaddr)[::-1]
                addr = ".".join(str(b) for b in raw)
            else:
                addr = "::1" if hexaddr == "0" * 24 + "01000000" else hexaddr
            found.append((addr, int(hexport, 16), inodes[inode]))
    return found


def test_run_starts_nodes_listens_on_loopback_only_and_sigterm_leaves_no_orphans(tmp_path):
    tag = f"run-{os.getpid()}-{time.monotonic_ns()}"
    env = dict(os.environ, GREENROOM_LOG_FORMAT="json", PYTHONUNBUFFERED="1",
               GREENROOM_TEST_TAG=tag)
    proc = subprocess.Popen([sys.executable, "-m", "greenroom.cli", "run", "--nodes", "3"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env, cwd=Path(__file__).parents[2])
    lines: list[str] = []
    try:
        _, events, lines = read_until(proc, "greenroom is running")
        node_pids = {e["pid"] for e in events if e.get("event") == "node serving"}
        assert len(node_pids) == 3, "".join(lines)
        tree = tagged(tag) - {proc.pid}
        assert node_pids <= tree
        assert len(tree) >= 5  # admin, logger, supervisor, membership and the nodes
        sockets = listening_tcp(tree | {proc.pid})
        assert sockets, "the node tree should listen (Thespian admin, data planes)"
        exposed = [s for s in sockets if s[0] not in ("127.0.0.1", "::1")]
        assert not exposed, f"listening beyond loopback: {exposed}"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        deadline = time.monotonic() + 10
        while any(alive(p) for p in tree) and time.monotonic() < deadline:
            time.sleep(0.05)
        orphans = [p for p in tree if alive(p)]
        assert not orphans, f"processes left after SIGTERM: {orphans}"
    finally:
        if proc.poll() is None:
            proc.kill()
        for p in tagged(tag):
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_run_rejects_bad_arguments():
    result = subprocess.run([sys.executable, "-m", "greenroom.cli", "run", "--nodes", "0"],
                            capture_output=True, text=True, cwd=Path(__file__).parents[2])
    assert result.returncode == 2 and "--nodes must be at least 1" in result.stderr


@pytest.mark.parametrize(("args", "error"), [
    (["--join", "10.0.0.1"], "expected LEADER_HOST:ADMIN_PORT"),
    (["--join", "10.0.0.1:port"], "expected LEADER_HOST:ADMIN_PORT"),
    (["--name", "a b"], "use letters, digits"),
])
def test_run_rejects_a_bad_join_or_name(args, error):
    result = subprocess.run([sys.executable, "-m", "greenroom.cli", "run", *args],
                            capture_output=True, text=True, cwd=Path(__file__).parents[2])
    assert result.returncode == 2 and error in result.stderr, result.stderr


def test_a_node_killed_with_sigkill_is_restarted_and_serves(cluster, client):
    before = cluster.members().nodes["n1"]
    os.kill(before[1], signal.SIGKILL)
    t0 = time.monotonic()
    # withdrawn when its process exits (NodeDown), announced again once restarted
    members = cluster.wait_for(lambda m: m.nodes.get("n1", before)[1] != before[1], 10)
    client.join(members)
    pong = None
    while pong is None and time.monotonic() - t0 < 10:
        try:
            pong = client.ask(Address("n1", DIRECTORY_ID), NodePing(), 0.5)
        except TimeoutError:
            continue
    assert pong == Pong("n1", members.nodes["n1"][1])
    assert not alive(before[1])
    assert time.monotonic() - t0 < 5


def test_one_trace_crosses_two_actors_in_two_processes(cluster, client, trace_file):
    from observability import configure_tracing, get_tracer, inject_current

    members = cluster.wait_for(lambda m: len(m.nodes) >= 2)
    client.join(members)
    hops = {n: client.ask(Address(n, DIRECTORY_ID), WhereIs("hop")) for n in ("n1", "n2")}
    assert all(isinstance(h, Here) and h.address is not None for h in hops.values())
    # client -> hop on n1 -> hop on n2 -> back to the client
    configure_tracing("greenroom-test", exporter=None)
    with get_tracer("test").start_as_current_span("client send") as root:
        trace_id = format(root.get_span_context().trace_id, "032x")
        reply = client.ask(hops["n1"].address,
                           Relay([hops["n2"].address], [], None, inject_current()))
    assert isinstance(reply, Relay) and reply.hops == ["n1", "n2"]
    deadline = time.monotonic() + 5
    spans = []
    while time.monotonic() < deadline:
        if trace_file.exists():
            spans = [json.loads(line) for line in trace_file.read_text().splitlines()]
            spans = [s for s in spans if s["trace_id"] == trace_id]
            if len(spans) >= 2:
                break
        time.sleep(0.05)
    by_name = {s["name"]: s for s in spans}
    assert {"hop n1", "hop n2"} <= set(by_name), spans
    n1, n2 = by_name["hop n1"], by_name["hop n2"]
    assert n1["pid"] != n2["pid"] and os.getpid() not in (n1["pid"], n2["pid"])
    assert n2["parent_span_id"] == n1["span_id"]
    assert n1["parent_span_id"] == format(root.get_span_context().span_id, "016x")


def test_echo_over_the_data_plane_keeps_plain_values(cluster, client):
    echo = client.ask(Address("n2", DIRECTORY_ID), WhereIs("echo")).address
    value = {"text": "héllo", "n": [1, 2.5, None, True], "bytes": b"\x00\xff"}
    assert client.ask(echo, value) == value
    unknown = client.ask(Address("n2", DIRECTORY_ID), WhereIs("nope"))
    assert unknown == Here("nope", None)


@pytest.mark.parametrize("nodes", [0])
def test_cluster_rejects_zero_nodes(nodes):
    from cluster.launcher import Cluster

    with pytest.raises(ValueError, match="at least one node"):
        Cluster(nodes, b"x")


def test_a_shared_port_chosen_for_the_nodes_is_held_until_the_cluster_stops():
    """Port 0 for a tree of nodes is chosen once and held (SO_REUSEPORT, not listening):
    nothing else on the host can take it before the nodes bind it (CI once saw node n2
    fail with 'address already in use' on a port that was only named); the nodes can;
    stop() lets it go."""
    import socket

    from cluster.launcher import Cluster

    cluster = Cluster(2, b"x", gateway={"port": 0, "rest_port": 0, "ingress": True,
                                        "ingress_port": 0})
    ports = [cluster.gateway[key] for key in ("port", "rest_port", "ingress_port")]
    assert all(ports) and len(set(ports)) == 3
    for port in ports:
        for reuse_address in (0, 1):  # a plain bind, and a server's (asyncio sets it)
            with socket.socket() as other, pytest.raises(OSError, match="in use"):
                other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, reuse_address)
                other.bind(("127.0.0.1", port))
        with socket.socket() as node:  # as a node's server binds it
            node.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            node.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            node.bind(("127.0.0.1", port))
            node.listen()
            with socket.create_connection(("127.0.0.1", port), timeout=2):
                node.settimeout(2)
                node.accept()[0].close()  # the held socket takes no connections
    cluster.stop()
    for port in ports:
        with socket.socket() as other:  # SO_REUSEADDR: the test's connection is in TIME_WAIT
            other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            other.bind(("127.0.0.1", port))


def test_a_named_port_is_free_below_the_kernels_ephemeral_range_and_named_once():
    """``free_port`` names ports a process binds a moment later (Thespian's admin, the
    tests' services): below the ephemeral range, which the kernel hands out itself to
    connections and binds to port 0 in that moment; never the same one twice."""
    import socket

    from cluster.launcher import NAMED_PORTS_FROM, _ephemeral_start, free_port

    low = _ephemeral_start()
    ports = [free_port() for _ in range(200)]
    assert len(set(ports)) == len(ports)
    if low - NAMED_PORTS_FROM >= 1000:  # room below the range (Linux's default: 32768)
        assert all(NAMED_PORTS_FROM <= port < low for port in ports)
    for port in ports[:20]:
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))
