"""Where a benchmark's processes run: the side under load and the side making it, each on
CPUs of its own where the machine has enough, as they would be on separate machines.

Why: on a shared core each side preempts the other mid-burst, and the figures then
measure the scheduler. Measured on a 2-vCPU VM:

- the gateway (``gateway_load``): its p50 at 10 msg/s was 14.9 ms shared, 10.3-14.6 ms
  split (median of 14 runs 12.35); pinning the server alone changed nothing
  (loadtest/GATEWAY_BENCH.md);
- the storage actor (``bench_storage``, Cassandra the other side): at half the actor's
  maximum its loop thread waited for a core 38 % of the time beside the database's JVM,
  5-7 % split, and the ack p99 fell from 247-380 ms to 46-70 ms (README, "make
  bench-storage").

The side given one core bounds what it can do: the gateway bench says when its load
generator set a maximum (``client_bound``).
"""

from __future__ import annotations

import os


def cpu_plan(server_cpus: list[int] | None, client_cpus: list[int] | None, nodes: int = 1,
             server: str = "server", client: str = "load generator",
             placement: str = "split") -> tuple[set[int] | None, set[int] | None, str]:
    """CPUs for the ``server`` side and for the ``client`` side, and a line saying so:
    none with ``placement`` "shared" (a bench's ``--placement shared``);
    ``server_cpus``/``client_cpus`` when given; else, with more CPUs usable than
    ``nodes`` (the server's processes), the last one for the client side and the rest for
    the server; with fewer, no pinning (None, None)."""
    if placement == "shared":
        return None, None, "not pinned (--placement shared)"
    usable = sorted(os.sched_getaffinity(0))
    if server_cpus or client_cpus:
        server_set = set(server_cpus or usable)
        client_set = set(client_cpus or usable)
        return server_set, client_set, (f"pinned by flags: {server} on CPUs "
                                        f"{sorted(server_set)}, {client} on {sorted(client_set)}")
    if len(usable) > nodes:
        return (set(usable[:-1]), {usable[-1]},
                f"{server} on CPU{'s' if len(usable) > 2 else ''} "
                f"{', '.join(map(str, usable[:-1]))}, {client} on CPU {usable[-1]}")
    return None, None, (f"not pinned: {len(usable)} CPU(s) usable, too few to give the "
                        f"{client} a core of its own and {nodes} {server} process(es) one each")


def run_on(cpus: set[int] | None, pid: int | None = None) -> None:
    """Every thread of process ``pid`` (None: this one) on ``cpus`` (None: left as they
    are); what it starts next, threads and processes, inherits them.
    (``sched_setaffinity(pid)`` alone moves only that one thread.)"""
    if not cpus:
        return
    for tid in os.listdir(f"/proc/{'self' if pid is None else pid}/task"):
        try:
            os.sched_setaffinity(int(tid), cpus)
        except ProcessLookupError:  # the thread ended meanwhile
            pass
