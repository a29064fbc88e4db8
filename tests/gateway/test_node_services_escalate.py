"""OTP's escalation at the top: when a node's services crash faster than their
supervisor's restart intensity, it gives up, the node process ends, and the node
supervisor in Thespian's admin starts a fresh node process that serves again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


def test_services_that_keep_crashing_end_the_node_process_which_is_started_again(
        tmp_path: Path) -> None:
    env = {**os.environ, "GREENROOM_LOG_FORMAT": "json",
           "GREENROOM_TEST_KILL_MARKER": str(tmp_path / "killed"),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO),
                                                       os.environ.get("PYTHONPATH")]))}
    proc = subprocess.Popen(
        [sys.executable, "-m", "greenroom.cli", "run", "--port", "0", "--rest-port", "0",
         "--sqlite-path", str(tmp_path / "greenroom.db"),
         "--service", "killer=tests.gateway.services_killer.Killer"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    records: list[dict[str, Any]] = []
    lines: list[str] = []

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)
            try:
                records.append(json.loads(line))
            except ValueError:
                pass

    def serving() -> list[dict[str, Any]]:
        return [r for r in list(records)
                if r.get("logger") == "greenroom.node" and " serving; " in r.get("event", "")]

    threading.Thread(target=read, daemon=True).start()
    try:
        deadline = time.monotonic() + 90
        while len(serving()) < 2 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    assert len(serving()) >= 2, "".join(lines[-40:])  # the node served, then again
    events = [(r.get("logger"), r.get("level"), r.get("event", "")) for r in records]
    gave_up = [i for i, (_, level, e) in enumerate(events)
               if level == "critical" and e.startswith("node services gave up")]
    exits = [i for i, (_, level, e) in enumerate(events)
             if level == "critical" and e.startswith("node process exits")]
    restarts = [r for r in records if r.get("child") == "storage"
                and "restarting" in r.get("event", "")]
    assert gave_up and exits and gave_up[0] < exits[0], "".join(lines[-40:])
    assert len(restarts) >= 10  # each restart before the last was logged and counted
    # the second "serving" comes after the exit: a new process
    served = [i for i, r in enumerate(records) if r.get("logger") == "greenroom.node"
              and " serving; " in r.get("event", "")]
    assert served[0] < gave_up[0] and served[1] > exits[0]
