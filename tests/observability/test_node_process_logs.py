"""Logs of a real ``greenroom run`` tree (JSON on stderr): records from node processes
are written when they happen and stamped then, exceptions arrive with their type and
traceback, and no record carries the bot token."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
BURST = 1000


def _stamp(record: dict[str, Any]) -> float:
    return datetime.fromisoformat(record["timestamp"].replace("Z", "+00:00")).timestamp()


class Tree:
    """``greenroom run`` with one node and the burst service; its stderr records, each
    with the time this process read it."""

    def __init__(self, tmp_path: Path) -> None:
        env = {**os.environ, "GREENROOM_LOG_FORMAT": "json", "GREENROOM_TEST_BURST": str(BURST),
               "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO),
                                                           os.environ.get("PYTHONPATH")]))}
        env.pop("GREENROOM_CLUSTER_SECRET", None)
        self.db = tmp_path / "greenroom.db"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "greenroom.cli", "run", "--port", "0", "--rest-port", "0",
             "--sqlite-path", str(self.db),
             "--service", "burst=tests.observability.burst_service.Burst"],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.records: list[tuple[float, dict[str, Any]]] = []
        self.lines: list[str] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            now = time.time()
            with self._lock:
                self.lines.append(line)
                try:
                    self.records.append((now, json.loads(line)))
                except ValueError:
                    pass

    def wait_for(self, done: Any, timeout: float = 60.0) -> list[tuple[float, dict[str, Any]]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                records = list(self.records)
            if done(records) or self.proc.poll() is not None:
                return records
            time.sleep(0.05)
        return records

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


def _is_crash(record: dict[str, Any]) -> bool:
    return record.get("logger") == "greenroom.actors" and "crashed" in record.get("event", "")


def _events(records: list[tuple[float, dict[str, Any]]], event: str) -> list[Any]:
    return [(t, r) for t, r in records if r.get("event") == event]


def test_node_process_records_are_timely_stamped_and_carry_exceptions(tmp_path: Path) -> None:
    tree = Tree(tmp_path)
    try:
        def done(records: list[tuple[float, dict[str, Any]]]) -> bool:
            return (len(_events(records, "burst record")) >= BURST
                    and any(_is_crash(r) for _, r in records)
                    and bool(_events(records, "greenroom is running")))

        records = tree.wait_for(done)
    finally:
        tree.stop()
    assert done(records), "".join(tree.lines[-30:])

    burst = _events(records, "burst record")
    assert len(burst) == BURST  # each once
    # Stamped when emitted in the node process (not when written), written at once.
    assert max(abs(_stamp(r) - r["emitted"]) for _, r in burst) < 0.25
    assert max(read - r["emitted"] for read, r in burst) < 2.0

    ((read, failed),) = _events(records, "burst failed")
    assert failed["level"] == "error"
    assert failed["exc_type"] == "LookupError"
    assert failed["exc_message"] == "raised in a node process (test)"
    assert failed["exception"].startswith("Traceback (most recent call last):")
    assert 'raise LookupError("raised in a node process (test)")' in failed["exception"]
    assert abs(_stamp(failed) - failed["emitted"]) < 0.25

    # An actor crash in a node process: one ERROR record with the error's type and
    # traceback, stamped at the crash; the supervisor's restart follows.
    ((_, crash_sent),) = _events(records, "crashing now")
    (crash,) = [r for _, r in records if _is_crash(r)]
    assert crash["level"] == "error" and crash["exc_type"] == "ZeroDivisionError"
    assert "in receiveMessage" in crash["exception"]
    assert "ZeroDivisionError: the burst service crashed (test)" in crash["exception"]
    assert 0 <= _stamp(crash) - crash_sent["emitted"] < 1.0
    assert any(r.get("child") == "burst" and "restarting" in r.get("event", "")
               for _, r in records)


def test_no_record_of_greenroom_run_carries_the_bot_token(tmp_path: Path) -> None:
    tree = Tree(tmp_path)
    try:
        records = tree.wait_for(lambda rs: bool(_events(rs, "greenroom is running")))
    finally:
        tree.stop()
    assert _events(records, "greenroom is running"), "".join(tree.lines[-30:])
    seed = json.loads(tree.db.with_suffix(".seed.json").read_text())
    token = seed["token"]
    assert token and not any(token in line for line in tree.lines)
    ((_, serving),) = _events(records, "gateway serving")
    assert serving["seed_file"] == str(tree.db.with_suffix(".seed.json"))
    assert not any("token" in key for key in serving)
