"""``greenroom run`` without ``--nodes`` (as ``make run`` starts it) picks its node count
(``--nodes auto``) and the banner says how many and why: 1 on SQLite (its one write
lock), else one node per usable CPU but one, bounded.

The trees run as real OS processes; the CPU count is the process's affinity (what
``taskset`` or a container's cpuset gives it), not the machine's."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

from greenroom.cli import AUTO_NODES_MAX, auto_nodes
from tests.cluster.run_log import ROOT, TAG_VAR, read_until, reap, run_env


def _start(env: dict[str, str], *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "greenroom.cli", "run", "--port", "0",
                             "--rest-port", "0", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env, cwd=ROOT)


def _stop(proc: subprocess.Popen, tag: str, lines: list[str]) -> None:
    """SIGTERM (Ctrl-C's path): it exits 0 and leaves no process of its tree behind."""
    proc.terminate()
    try:
        try:
            status = proc.wait(30)
        except subprocess.TimeoutExpired:  # fail with what it wrote, not the timeout alone
            proc.kill()
            left = reap(tag)  # the rest of its tree holds the pipe open
            lines += proc.stdout.readlines()
            raise AssertionError(f"no exit 30 s after SIGTERM (left behind: {left}):\n"
                                 + "".join(lines[-60:])) from None
        lines += proc.stdout.readlines()
        assert status == 0, "".join(lines[-60:])
    finally:
        if proc.poll() is None:
            proc.kill()
        assert not reap(tag), "processes of the tree left behind"


def test_auto_is_one_node_on_sqlite_else_a_node_per_usable_cpu_but_one_within_bounds():
    nodes, why = auto_nodes(16, "sqlite")
    assert nodes == 1 and why.startswith("auto on SQLite: its one write lock")
    assert auto_nodes(1, "scylla") == (1, "auto: 1 usable CPU")
    assert auto_nodes(2, "scylla") == (1, "auto: 2 usable CPUs, one left for the rest of "
                                          "the host")
    assert auto_nodes(4, "scylla") == (3, "auto: 4 usable CPUs, one left for the rest of "
                                          "the host")
    nodes, why = auto_nodes(64, "scylla")
    assert nodes == AUTO_NODES_MAX and why.endswith(f", at most {AUTO_NODES_MAX}")


def test_usable_cpus_is_the_affinity_not_the_machine():
    one = {min(os.sched_getaffinity(0))}
    done = subprocess.run([sys.executable, "-c",
                           "from greenroom.cli import usable_cpus; print(usable_cpus())"],
                          capture_output=True, text=True, cwd=ROOT, timeout=60,
                          preexec_fn=lambda: os.sched_setaffinity(0, one))
    assert done.stdout.strip() == "1", done.stderr


def test_make_runs_banner_says_how_many_nodes_and_why(tmp_path):
    """The terminal output ``make run`` shows: SQLite, no GREENROOM_NODES, no --nodes."""
    tag = f"auto-{os.getpid()}-{time.monotonic_ns()}"
    env = run_env(tmp_path, tag, without=("GREENROOM_NODES",))
    env.pop("GREENROOM_LOG_FORMAT")  # the readable output, with the banner
    proc = _start(env)
    lines: list[str] = []
    try:
        for line in iter(proc.stdout.readline, ""):
            lines.append(line)
            if "greenroom is running" in line:
                break
        output = "".join(lines)
        banner = re.search(r"^  nodes +(\d+)  \((.*)\)$", output, re.MULTILINE)
        assert banner, output
        assert banner.groups() == ("1", auto_nodes(len(os.sched_getaffinity(0)), "sqlite")[1])
        assert output.count("node serving") == 1, output
    finally:
        _stop(proc, tag, lines)


def test_the_nodes_flag_wins_over_the_variable(tmp_path):
    tag = f"nodes-{os.getpid()}-{time.monotonic_ns()}"
    proc = _start(run_env(tmp_path, tag, GREENROOM_NODES="auto"), "--nodes", "2")
    lines: list[str] = []
    try:
        running, events, lines[:] = read_until(proc, "greenroom is running")
        assert running is not None, "".join(lines)
        assert sorted(e["node"] for e in events if e.get("event") == "node serving") \
            == ["n1", "n2"]
        assert running["nodes"] == 2 and running["nodes_why"] == "set by --nodes"
    finally:
        _stop(proc, tag, lines)


def test_run_names_a_bad_greenroom_nodes():
    env = dict(os.environ, GREENROOM_NODES="many")
    env.pop(TAG_VAR, None)
    done = subprocess.run([sys.executable, "-m", "greenroom.cli", "run"], capture_output=True,
                          text=True, env=env, cwd=ROOT, timeout=60)
    assert done.returncode == 2
    assert "GREENROOM_NODES: expected a number or 'auto', got 'many'" in done.stderr
