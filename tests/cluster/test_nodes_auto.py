"""``greenroom run`` without ``--nodes`` (as ``make run`` starts it) uses the CPUs it may
run on: one node process per usable CPU but one (left for the rest of the host),
bounded, and the banner says how many and why.

The tree runs as real OS processes under a chosen CPU affinity (what ``taskset`` or a
container's cpuset gives it): the count comes from the affinity, not the machine."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

from greenroom.cli import AUTO_NODES_MAX, auto_nodes
from tests.cluster.run_log import ROOT, TAG_VAR, read_until, reap, run_env


def _start(env: dict[str, str], cpus: set[int], *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "greenroom.cli", "run", "--port", "0",
                             "--rest-port", "0", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env, cwd=ROOT, preexec_fn=lambda: os.sched_setaffinity(0, cpus))


def _stop(proc: subprocess.Popen, tag: str, lines: list[str]) -> None:
    """SIGTERM (Ctrl-C's path): it exits 0 and leaves no process of its tree behind."""
    proc.terminate()
    try:
        status = proc.wait(30)
        lines += proc.stdout.readlines()
        assert status == 0, "".join(lines[-60:])
    finally:
        if proc.poll() is None:
            proc.kill()
        assert not reap(tag), "processes of the tree left behind"


def test_auto_is_a_node_per_usable_cpu_but_one_within_bounds():
    assert auto_nodes(1) == (1, "auto: 1 usable CPU")
    assert auto_nodes(2) == (1, "auto: 2 usable CPUs, one left for the rest of the host")
    assert auto_nodes(4) == (3, "auto: 4 usable CPUs, one left for the rest of the host")
    nodes, why = auto_nodes(64)
    assert nodes == AUTO_NODES_MAX and why.endswith(f", at most {AUTO_NODES_MAX}")


def test_run_without_nodes_starts_a_node_per_usable_cpu_and_the_banner_says_why(tmp_path):
    """The terminal output ``make run`` shows: no GREENROOM_NODES, no --nodes."""
    cpus = set(sorted(os.sched_getaffinity(0))[:3])  # 3 where the machine allows it
    tag = f"auto-{os.getpid()}-{time.monotonic_ns()}"
    env = run_env(tmp_path, tag, without=("GREENROOM_NODES",))
    env.pop("GREENROOM_LOG_FORMAT")  # the readable output, with the banner
    proc = _start(env, cpus)
    lines: list[str] = []
    try:
        for line in iter(proc.stdout.readline, ""):
            lines.append(line)
            if "greenroom is running" in line:
                break
        output = "".join(lines)
        n, why = auto_nodes(len(cpus))
        banner = re.search(r"^  nodes +(\d+)  \((.*)\)$", output, re.MULTILINE)
        assert banner, output
        assert banner.groups() == (str(n), why)
        assert why.startswith(f"auto: {len(cpus)} usable CPU")
        assert output.count("node serving") == n, output
    finally:
        _stop(proc, tag, lines)


def test_nodes_auto_flag_wins_over_the_variable_and_follows_the_affinity(tmp_path):
    tag = f"auto1-{os.getpid()}-{time.monotonic_ns()}"
    env = run_env(tmp_path, tag, GREENROOM_NODES="3")
    proc = _start(env, {min(os.sched_getaffinity(0))}, "--nodes", "auto")
    lines: list[str] = []
    try:
        running, events, lines[:] = read_until(proc, "greenroom is running")
        assert running is not None, "".join(lines)
        assert [e["node"] for e in events if e.get("event") == "node serving"] == ["n1"]
        assert running["nodes"] == 1 and running["nodes_why"] == "auto: 1 usable CPU"
    finally:
        _stop(proc, tag, lines)


def test_run_names_a_bad_greenroom_nodes():
    env = dict(os.environ, GREENROOM_NODES="many")
    env.pop(TAG_VAR, None)
    done = subprocess.run([sys.executable, "-m", "greenroom.cli", "run"], capture_output=True,
                          text=True, env=env, cwd=ROOT, timeout=60)
    assert done.returncode == 2
    assert "GREENROOM_NODES: expected a number or 'auto', got 'many'" in done.stderr
