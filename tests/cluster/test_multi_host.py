"""Three hosts for real: network namespaces on this machine, one node process on each,
joined in one Thespian convention; envelopes cross hosts on the data plane; a host
whose cable is pulled is seen leaving by the others."""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.cluster import netns
from tests.cluster.run_log import alive

ROOT = Path(__file__).parents[2]
HOSTS = 3

pytestmark = pytest.mark.skipif(netns.available() is not None,
                                reason=netns.available() or "")


class HostProcess:
    """``tests.cluster.netns_host`` in one namespace, driven over its stdin/stdout."""

    def __init__(self, hosts: netns.Hosts, i: int, join: str | None = None) -> None:
        self.name = f"h{i}"
        self.address = hosts.address(i)
        argv = [sys.executable, "-m", "tests.cluster.netns_host", "--host", self.address,
                "--name", self.name] + (["--join", join] if join else [])
        env = dict(os.environ, PYTHONUNBUFFERED="1", GREENROOM_LOG_FORMAT="json")
        self.proc = hosts.popen(i, argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True, cwd=ROOT, env=env)
        self.ready = self._read(60)
        assert self.ready.get("ready"), self.ready
        self.node = self.ready["node"]

    def _read(self, timeout: float) -> dict:
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            if not sel.select(timeout):
                raise TimeoutError(f"host {self.name} said nothing in {timeout} s")
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"host {self.name} exited ({self.proc.poll()})")
        return json.loads(line)

    def call(self, op: str, **args) -> dict:
        self.proc.stdin.write(json.dumps({"op": op, **args}) + "\n")
        self.proc.stdin.flush()
        answer = self._read(30)
        assert "error" not in answer, answer.get("traceback", answer)
        return answer


def wait_until(predicate, what: str, limit: float = 30.0):
    """Poll ``predicate`` until it returns something true; the limit only keeps a
    broken run from hanging."""
    deadline = time.monotonic() + limit
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def cluster():
    hosts = netns.Hosts(HOSTS)
    started: list[HostProcess] = []
    try:
        hosts.open()
        leader = HostProcess(hosts, 1)
        started.append(leader)
        started += [HostProcess(hosts, i, join=leader.ready["admin"])
                    for i in range(2, HOSTS + 1)]
        yield hosts, started
        for i in range(1, HOSTS + 1):
            hosts.restore(i)  # a clean stop needs the hosts to reach each other
        for host in started:  # all at once: each takes seconds to stop
            host.proc.stdin.close()
        assert [host.proc.wait(30) for host in started] == [0] * HOSTS
    finally:
        hosts.close()
    left = [p for p in hosts.pids() if alive(p)]
    assert not left, f"processes left: {left}"
    assert not hosts.namespaces_left(), hosts.namespaces_left()
    assert not hosts.links_left(), hosts.links_left()


def test_three_hosts_join_one_convention_and_every_node_sees_all_of_them(cluster):
    _, hosts = cluster
    nodes = sorted(h.node for h in hosts)
    assert nodes == ["h1-n1", "h2-n1", "h3-n1"]
    for host in hosts:
        view = wait_until(lambda h=host: (v := h.call("view"))["live"] == nodes and v,
                          f"{host.name} sees {nodes}")
        assert view["known"] == nodes
        members = host.call("members")
        assert members["nodes"] == sorted(nodes + [f"{h.name}-client" for h in hosts])
        assert members["clients"] == sorted(f"{h.name}-client" for h in hosts)


def test_every_listener_is_on_its_own_host_address(cluster):
    netns_hosts, hosts = cluster
    listeners = []
    for pid in netns_hosts.pids():
        host = next(h for h in hosts if _in_namespace(pid, h))
        listeners += [(host.name, address, port, pid) for address, port in listening_tcp(pid)]
    # per host: Thespian's admin and actor processes, the node's data plane, the client's
    assert {name for name, *_ in listeners} == {h.name for h in hosts}
    exposed = [entry for entry in listeners
               if entry[1] != next(h.address for h in hosts if h.name == entry[0])]
    assert not exposed, f"listening beyond the host's own address: {exposed}"


def test_a_message_from_host_1_reaches_host_3_and_the_answer_comes_back(cluster):
    _, (h1, _h2, h3) = cluster
    answer = h1.call("relay", path=[h1.node, h3.node, h1.node])
    assert answer["hops"] == [h1.node, h3.node, h1.node]


def test_a_node_killed_on_one_host_is_seen_leaving_and_coming_back_on_every_host(cluster):
    _, (h1, h2, h3) = cluster
    old = h1.call("view")["pids"][h2.node]
    os.kill(old, signal.SIGKILL)  # h2's supervisor restarts it
    for host in (h1, h3):  # h1 hears from h2's membership actor, h3 through h1's
        view = wait_until(
            lambda h=host: (v := h.call("view"))["pids"].get(h2.node, old) != old and v,
            f"{host.name} sees {h2.node} restarted")
        new = view["pids"][h2.node]
        events = [tuple(e[1:]) for e in view["events"] if e[2] == h2.node]
        assert events[-2:] == [("left", h2.node, old), ("joined", h2.node, new)], events
    assert not alive(old)


def test_a_host_cut_off_is_seen_leaving_by_the_others(cluster):
    netns_hosts, (h1, h2, h3) = cluster
    for host in (h1, h2):
        wait_until(lambda h=host: h3.node in h.call("view")["live"], "h3 live")
    netns_hosts.cut(3)
    t0 = time.monotonic()
    seen = {}
    for host in (h1, h2):
        view = wait_until(lambda h=host: (v := h.call("view"))["live"] != sorted(
            [h1.node, h2.node, h3.node]) and v, f"{host.name} sees h3 leave")
        seen[host.name] = time.monotonic() - t0
        assert view["live"] == sorted([h1.node, h2.node])
        assert h3.node in view["known"]  # still announced: only its heartbeats stopped
    # and on the far side of the cut, h3 sees the others leave
    view = wait_until(lambda: (v := h3.call("view"))["live"] == [h3.node] and v,
                      "h3 alone")
    print(f"\nhost cut off: seen leaving after {seen} s (heartbeat timeout 1 s)")
    assert view["known"] == sorted([h1.node, h2.node, h3.node])


def _in_namespace(pid: int, host: HostProcess) -> bool:
    try:
        return os.readlink(f"/proc/{pid}/ns/net") == os.readlink(
            f"/proc/{host.proc.pid}/ns/net")
    except OSError:
        return False


def listening_tcp(pid: int) -> list[tuple[str, int]]:
    """(address, port) of the listening TCP sockets of ``pid``, read in its namespace."""
    inodes = set()
    try:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    except OSError:
        return []
    found = []
    for table, family in (("tcp", 4), ("tcp6", 6)):
        try:
            lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] != "0A" or fields[9] not in inodes:
                continue
            hexaddr, hexport = fields[1].split(":")
            if family == 4:
                addr = ".".join(str(b) for b in bytes.fromhex(hexaddr)[::-1])
            else:
                addr = hexaddr
            found.append((addr, int(hexport, 16)))
    return found
