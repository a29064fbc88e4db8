"""Several hosts on this machine: network namespaces joined by a bridge.

``Hosts(3)`` makes namespaces ``gr<tag>h1..3``, each with a veth pair whose outer end
is on a bridge in the root namespace (which has the subnet's ``.1``, so a test process
can reach every host) and whose inner end has the host's address (``.11``, ``.12``,
...), loopback up. ``cut(i)`` takes host i's outer link down: its packets go nowhere,
nothing is told — like a pulled cable. ``close()`` (or leaving the ``with``) kills the
processes the hosts ran and removes every namespace and link, also after a failure;
names carry a per-run tag, so runs (and leftovers) never collide. Needs root.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from tests.cluster.run_log import alive, tagged


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(["ip", *args], capture_output=True, text=True)
    if check and result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {result.stderr.strip()}")
    return result


def available() -> str | None:
    """Why namespaces cannot be made here (None: they can)."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    try:
        _ip("netns", "list")
    except (OSError, RuntimeError) as err:
        return f"ip netns does not work here: {err}"
    return None


class Hosts:
    def __init__(self, count: int) -> None:
        if not 1 <= count <= 20:
            raise ValueError("between 1 and 20 hosts")
        self.count = count
        self.tag = f"{os.getpid() % 100000:05d}{time.monotonic_ns() % 100:02d}"
        # a /24 per run, picked from the tag (10.200.0.0 - 10.239.255.0)
        n = int(self.tag)
        self.subnet = f"10.{200 + n % 40}.{(n // 40) % 256}"
        self.bridge = f"grb{self.tag}"
        self.env_tag = f"netns-{self.tag}"  # GREENROOM_TEST_TAG of every process run
        self.procs: list[subprocess.Popen] = []
        self._made: list[tuple[str, ...]] = []  # undo commands, newest last

    def namespace(self, i: int) -> str:
        return f"gr{self.tag}h{i}"

    def address(self, i: int) -> str:
        return f"{self.subnet}.{10 + i}"

    @property
    def gateway_address(self) -> str:
        """The root namespace's address on the bridge."""
        return f"{self.subnet}.1"

    def _outer(self, i: int) -> str:
        return f"grv{self.tag}{i}"

    def __enter__(self) -> Hosts:
        try:
            self.open()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def open(self) -> None:
        _ip("link", "add", self.bridge, "type", "bridge")
        self._made.append(("link", "del", self.bridge))
        _ip("addr", "add", f"{self.gateway_address}/24", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")
        for i in range(1, self.count + 1):
            ns, outer, inner = self.namespace(i), self._outer(i), f"gri{self.tag}{i}"
            _ip("netns", "add", ns)
            self._made.append(("netns", "del", ns))
            _ip("link", "add", outer, "type", "veth", "peer", "name", inner, "netns", ns)
            self._made.append(("link", "del", outer))  # takes its peer along
            _ip("link", "set", outer, "master", self.bridge)
            _ip("link", "set", outer, "up")
            _ip("-n", ns, "link", "set", "lo", "up")
            _ip("-n", ns, "addr", "add", f"{self.address(i)}/24", "dev", inner)
            _ip("-n", ns, "link", "set", inner, "up")

    def popen(self, i: int, argv: list[str], **kw: Any) -> subprocess.Popen:
        """Run ``argv`` in host i's namespace, tagged so that ``close`` finds every
        process it leaves (Thespian's admin detaches from its starter)."""
        env = dict(kw.pop("env", None) or os.environ, GREENROOM_TEST_TAG=self.env_tag)
        proc = subprocess.Popen(["ip", "netns", "exec", self.namespace(i), *argv],
                                env=env, **kw)
        self.procs.append(proc)
        return proc

    def cut(self, i: int) -> None:
        """Host i's cable is pulled: nothing it sends arrives, nothing reaches it."""
        _ip("link", "set", self._outer(i), "down")

    def restore(self, i: int) -> None:
        """Host i's cable is plugged back in."""
        _ip("link", "set", self._outer(i), "up")

    def pids(self) -> set[int]:
        return tagged(self.env_tag)

    def namespaces_left(self) -> list[str]:
        names = _ip("netns", "list").stdout.split()
        return [n for n in names if n.startswith(f"gr{self.tag}")]

    def links_left(self) -> list[str]:
        out = _ip("-br", "link").stdout
        return [line.split()[0] for line in out.splitlines()
                if self.tag in line.split()[0]]

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
        deadline = time.monotonic() + 10
        while (pids := self.pids()) and time.monotonic() < deadline:
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.05)
            pids = {p for p in pids if alive(p)}
            if not pids:
                break
        for proc in self.procs:
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
        while self._made:
            _ip(*self._made.pop(), check=False)
        # a namespace whose mount lingers would keep its name in /run/netns
        for name in self.namespaces_left():
            _ip("netns", "del", name, check=False)
            Path("/run/netns", name).unlink(missing_ok=True)
