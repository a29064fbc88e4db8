"""``greenroom run`` whose nodes cannot start (an unimportable ``--service``): one clear
line on stderr, a non-zero exit, no traceback, and no process left behind."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from tests.cluster.run_log import ROOT, reap, run_env, serving


def test_run_with_a_service_that_cannot_be_imported_exits_with_one_clear_error(tmp_path):
    tag = f"start-failure-{os.getpid()}-{time.monotonic_ns()}"
    try:
        done = subprocess.run(
            [sys.executable, "-m", "greenroom.cli", "run", "--nodes", "2", "--port", "0",
             "--rest-port", "0", "--service", "broken=tests.cluster.hop.NoSuchService"],
            capture_output=True, text=True, env=run_env(tmp_path, tag), cwd=ROOT, timeout=120)
        assert done.returncode == 1, done.stderr
        errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1, done.stderr
        assert "broken" in errors[0] and "NoSuchService" in errors[0], errors[0]
        assert "Traceback" not in done.stderr + done.stdout
    finally:
        left = reap(tag)
    assert not left, f"processes left behind: {left}"


def test_a_malformed_service_option_is_a_usage_error():
    done = subprocess.run([sys.executable, "-m", "greenroom.cli", "run", "--service", "oops"],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 2
    assert "NAME=MODULE.CLASS" in done.stderr


def test_ports_out_of_range_are_usage_errors_not_tracebacks():
    for argv, env, named in (
            (["--operator-port", "-5"], {}, "--operator-port"),
            (["--port", "70000"], {}, "--port"),
            ([], {"GREENROOM_OPERATOR_PORT": "x"}, "$GREENROOM_OPERATOR_PORT")):
        done = subprocess.run([sys.executable, "-m", "greenroom.cli", "run", *argv],
                              capture_output=True, text=True, cwd=ROOT, timeout=60,
                              env={**os.environ, **env})
        assert done.returncode == 2, (argv, done.stderr)
        assert named in done.stderr and "Traceback" not in done.stderr, done.stderr


def test_operator_port_minus_one_serves_no_operator_port(tmp_path):
    tag = f"no-operator-{os.getpid()}-{time.monotonic_ns()}"
    with serving(run_env(tmp_path, tag), "--port", "0", "--rest-port", "0",
                 "--operator-port", "-1") as run:
        assert run.nodes and not any(n.get("operator") for n in run.nodes.values()), run.nodes
