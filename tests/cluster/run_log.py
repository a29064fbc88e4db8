"""A test's ``greenroom run`` subprocess: started with JSON logs (GREENROOM_LOG_FORMAT=json)
and its processes tagged, read up to the events it waits for, stopped with no process
of its tree left behind."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loadtest.process_tree import alive
from loadtest.process_tree import tagged as tagged_by

ROOT = Path(__file__).parents[2]
#: the environment variable that tags every process of a test's tree
TAG_VAR = "GREENROOM_TEST_TAG"


def tagged(tag: str) -> set[int]:
    """Processes whose environment carries ``GREENROOM_TEST_TAG=tag``.

    Thespian's admin process detaches from its starter, so the node tree is not a
    process subtree of ``greenroom run``; forked processes do inherit its environment.
    """
    return tagged_by(TAG_VAR, tag)


def reap(tag: str, timeout: float = 10.0) -> set[int]:
    """Wait up to ``timeout`` for the processes tagged ``tag`` to end (Thespian's admin
    and logger detach: they finish exiting after the starter), then SIGKILL the rest;
    returns the pids that were left (a test asserts there are none)."""
    deadline = time.monotonic() + timeout
    while (left := {p for p in tagged(tag) if alive(p)}) and time.monotonic() < deadline:
        time.sleep(0.05)
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return left


def kill_tree(tag: str) -> set[int]:
    """SIGKILL every process tagged ``tag`` at once; the pids still alive 10 s later."""
    for pid in tagged(tag):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return reap(tag)


def run_env(tmp: Path, tag: str | None = None, *, without: tuple[str, ...] = (),
            **extra: str) -> dict[str, str]:
    """This environment for a test's run: without the variables whose names start with
    one of ``without``, with JSON logs, unbuffered output, its SQLite file in ``tmp``
    (synchronous NORMAL: no test needs power-loss durability), its processes tagged
    ``tag``, then ``extra``."""
    env = {k: v for k, v in os.environ.items() if not (without and k.startswith(without))}
    env.update(GREENROOM_LOG_FORMAT="json", PYTHONUNBUFFERED="1",
               GREENROOM_SQLITE_PATH=str(tmp / "greenroom.db"),
               GREENROOM_SQLITE_SYNCHRONOUS="NORMAL")
    if tag is not None:
        env[TAG_VAR] = tag
    env.update(extra)
    return env


def read_until(proc: subprocess.Popen, event: str
               ) -> tuple[dict[str, Any] | None, list[dict[str, Any]], list[str]]:
    """Read ``proc``'s stdout up to the first log event named ``event``.

    Returns that event (None if the output ended first), every JSON event read (in
    order) and every line read (for the failure message). Non-JSON lines are kept in
    the lines only. An event that names the seed file gets the bot token from it (no
    record carries the token: it is read where an operator would). Bound the wait with
    the caller's own timeout (e.g. pytest's)."""
    lines: list[str] = []
    events: list[dict[str, Any]] = []
    for line in iter(proc.stdout.readline, ""):
        lines.append(line)
        try:
            parsed = json.loads(line)
        except ValueError:
            continue
        if not isinstance(parsed, dict):
            continue
        events.append(parsed)
        if "seed_file" in parsed and "bot_token" not in parsed:
            parsed["bot_token"] = json.loads(Path(parsed["seed_file"]).read_text())["token"]
        if parsed.get("event") == event:
            return parsed, events, lines
    return None, events, lines


@dataclass
class Run:
    """A started ``greenroom run``: what it logged until it served, then every line it
    writes (read by a thread, so that its pipe never fills)."""

    proc: subprocess.Popen
    tag: str | None
    served: dict[str, Any]  # its "gateway serving" event: URLs, ids, bot_token
    events: list[dict[str, Any]]  # the JSON events read while it started
    lines: list[str]  # every line so far (for failure messages)
    _drain: threading.Thread | None = field(default=None, repr=False)

    @property
    def nodes(self) -> dict[str, dict[str, Any]]:
        """Node name -> its "node serving" event."""
        return {e["node"]: e for e in self.events if e.get("event") == "node serving"}

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM (Ctrl-C's path); its exit status, after which its output is in
        ``lines`` (the detached part of its tree may add to it while it exits). Killed
        if it has not exited within ``timeout``."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
            self._read_all()

    def stop_cleanly(self) -> None:
        """``stop``: it must exit 0 and leave no process of its tree behind."""
        try:
            try:
                status = self.stop()
            except subprocess.TimeoutExpired:  # killed by now: fail with what it wrote
                raise AssertionError("no exit 30 s after SIGTERM:\n"
                                     + self.output[-4000:]) from None
            assert status == 0, self.output[-4000:]
        finally:
            if self.tag is not None:
                left = reap(self.tag)
                self._read_all()
                assert not left, f"processes left behind: {left}"

    def _read_all(self) -> None:
        """Wait (10 s at most) for the end of its output: its tree's last process gone."""
        if self._drain is not None:
            self._drain.join(10)


def start_run(env: Mapping[str, str], *args: str, until: str = "gateway serving",
              log: Path | None = None) -> Run:
    """``greenroom run *args`` in ``env``, read until its ``until`` event (its output
    then goes on into ``Run.lines``, and into the file ``log`` if given, to read when a
    test fails). If it does not get there, it is killed (its tree too) and the test
    fails with its output."""
    proc = subprocess.Popen([sys.executable, "-m", "greenroom.cli", "run", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=dict(env), cwd=ROOT)
    event, events, lines = read_until(proc, until)
    out = log.open("w") if log is not None else None
    if out is not None:
        out.writelines(lines)
        out.flush()

    def drain() -> None:
        for line in proc.stdout:  # type: ignore[union-attr]
            lines.append(line)
            if out is not None:
                out.write(line)
                out.flush()
        if out is not None:
            out.close()

    served = next((e for e in events if e.get("event") == "gateway serving"), None)
    run = Run(proc, env.get(TAG_VAR), served or {}, events, lines,
              threading.Thread(target=drain, daemon=True))
    run._drain.start()  # type: ignore[union-attr]
    if event is None or served is None:
        proc.kill()
        if run.tag is not None:
            kill_tree(run.tag)
        raise AssertionError("greenroom run did not serve:\n" + "".join(lines))
    return run


@contextlib.contextmanager
def serving(env: Mapping[str, str], *args: str, **kw: Any) -> Iterator[Run]:
    """``start_run``; stopped cleanly after (exit 0, no process left behind)."""
    run = start_run(env, *args, **kw)
    try:
        yield run
    finally:
        run.stop_cleanly()
