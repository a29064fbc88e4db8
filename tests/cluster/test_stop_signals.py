"""``greenroom run`` waits for SIGINT/SIGTERM with ``StopSignals``: a signal at any
moment of the wait ends it. A handler that set a ``threading.Event`` deadlocked when the
signal landed inside that Event's ``wait()`` (CI: the tree never stopped); these
children wait in a tight loop, which puts nearly every signal inside the wait."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from greenroom.stop_signals import StopSignals
from tests.cluster.run_log import ROOT

#: a child that waits as ``greenroom run`` does, in short waits to widen the window
_TIGHT = """
from greenroom.stop_signals import StopSignals
stop = StopSignals()
print("ready", flush=True)
while not stop.wait(0):
    pass
print("stopped", stop.received, flush=True)
"""

_BLOCKING = """
from greenroom.stop_signals import StopSignals
stop = StopSignals()
print("ready", flush=True)
stop.wait()
print("stopped", stop.received, flush=True)
"""


def _signal_once(code: str, signum: int, after_s: float = 0.0) -> str:
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                             cwd=ROOT)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        time.sleep(after_s)
        child.send_signal(signum)
        out, _ = child.communicate(timeout=10)  # a deadlocked child never answers
        assert child.returncode == 0, out
        return out.strip()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=10)


def test_a_signal_inside_the_wait_stops_it_every_time() -> None:
    for i in range(12):
        signum = signal.SIGTERM if i % 2 else signal.SIGINT
        assert _signal_once(_TIGHT, signum, after_s=0.05) == f"stopped [{int(signum)}]"


def test_a_blocking_wait_ends_at_the_signal() -> None:
    started = time.monotonic()
    assert _signal_once(_BLOCKING, signal.SIGTERM) == f"stopped [{int(signal.SIGTERM)}]"
    assert time.monotonic() - started < 5


def test_wait_times_out_without_a_signal_and_returns_at_once_after_one() -> None:
    previous = signal.getsignal(signal.SIGUSR1)
    try:
        stop = StopSignals(signals=(signal.SIGUSR1,), poll_s=0.01)
        started = time.monotonic()
        assert stop.wait(0.05) is False
        assert 0.05 <= time.monotonic() - started < 1
        os.kill(os.getpid(), signal.SIGUSR1)
        assert stop.wait(5) is True and stop.received == [signal.SIGUSR1]
        assert stop.wait(0) is True  # it stays received
    finally:
        signal.signal(signal.SIGUSR1, previous)
