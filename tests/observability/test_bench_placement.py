"""The benchmarks' CPU placement (``loadtest/placement.py``): which CPUs each side gets,
and pinning a whole process, every thread of it, a real child process's included."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from loadtest.placement import cpu_plan, run_on

#: a child with a second thread that exists before it is pinned
_CHILD = """
import sys, threading
threading.Thread(target=sys.stdin.read, daemon=True).start()
print("ready", flush=True)
sys.stdin.read()
"""


def _threads_cpus(pid: int) -> dict[int, set[int]]:
    return {int(tid): os.sched_getaffinity(int(tid))
            for tid in os.listdir(f"/proc/{pid}/task")}


def test_the_client_side_gets_the_last_cpu_and_the_server_the_rest() -> None:
    usable = sorted(os.sched_getaffinity(0))
    server, client, line = cpu_plan(None, None, server="Cassandra", client="the bench")
    if len(usable) > 1:
        assert server == set(usable[:-1]) and client == {usable[-1]}
        assert line.startswith("Cassandra on CPU") and line.endswith(f"the bench on CPU {usable[-1]}")
    else:
        assert (server, client) == (None, None) and line.startswith("not pinned")
    # as many server processes as CPUs: nothing is pinned, and the line says why
    assert cpu_plan(None, None, nodes=len(usable))[:2] == (None, None)
    # --placement shared: nothing pinned, flags or not
    assert cpu_plan([usable[0]], None, placement="shared") == (
        None, None, "not pinned (--placement shared)")
    # flags win, and an unnamed side keeps every usable CPU
    server, client, line = cpu_plan([usable[0]], None)
    assert server == {usable[0]} and client == set(usable) and "pinned by flags" in line


def test_run_on_pins_every_thread_of_a_process_and_what_it_starts() -> None:
    usable = os.sched_getaffinity(0)
    one = {min(usable)}
    child = subprocess.Popen([sys.executable, "-c", _CHILD], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        before = _threads_cpus(child.pid)
        assert len(before) >= 2 and all(cpus == usable for cpus in before.values())
        run_on(one, child.pid)
        assert all(cpus == one for cpus in _threads_cpus(child.pid).values())
        run_on(usable, child.pid)
        assert all(cpus == usable for cpus in _threads_cpus(child.pid).values())
    finally:
        child.kill()
        child.wait(timeout=10)


def test_run_on_none_leaves_a_process_as_it_is() -> None:
    before = _threads_cpus(os.getpid())
    run_on(None)
    assert _threads_cpus(os.getpid()) == {tid: cpus for tid, cpus in before.items()
                                          if Path(f"/proc/self/task/{tid}").exists()}


def test_a_process_started_after_run_on_inherits_its_cpus() -> None:
    usable = os.sched_getaffinity(0)
    one = {max(usable)}
    try:
        run_on(one)
        out = subprocess.run([sys.executable, "-c", "import os; print(sorted(os.sched_getaffinity(0)))"],
                             capture_output=True, text=True, timeout=30, check=True).stdout
        assert out.strip() == str(sorted(one))
    finally:
        run_on(usable)
    assert os.sched_getaffinity(0) == usable
