"""``greenroom run`` whose nodes cannot start (an unimportable ``--service``): one clear
line on stderr, a non-zero exit, no traceback, and no process left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.cluster.test_nodes import alive, tagged

ROOT = Path(__file__).parents[2]


def test_run_with_a_service_that_cannot_be_imported_exits_with_one_clear_error(tmp_path):
    tag = f"start-failure-{os.getpid()}-{time.monotonic_ns()}"
    env = dict(os.environ, GREENROOM_LOG_FORMAT="json", PYTHONUNBUFFERED="1",
               GREENROOM_TEST_TAG=tag, GREENROOM_SQLITE_PATH=str(tmp_path / "greenroom.db"))
    try:
        done = subprocess.run(
            [sys.executable, "-m", "greenroom.cli", "run", "--nodes", "2", "--port", "0",
             "--rest-port", "0", "--service", "broken=tests.cluster.hop.NoSuchService"],
            capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
        assert done.returncode == 1, done.stderr
        errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1, done.stderr
        assert "broken" in errors[0] and "NoSuchService" in errors[0], errors[0]
        assert "Traceback" not in done.stderr + done.stdout
    finally:
        deadline = time.monotonic() + 10
        while (left := {p for p in tagged(tag) if alive(p)}) and time.monotonic() < deadline:
            time.sleep(0.05)
        for pid in left:
            os.kill(pid, signal.SIGKILL)
    assert not left, f"processes left behind: {left}"


def test_a_malformed_service_option_is_a_usage_error():
    done = subprocess.run([sys.executable, "-m", "greenroom.cli", "run", "--service", "oops"],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 2
    assert "NAME=MODULE.CLASS" in done.stderr
