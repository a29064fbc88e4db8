"""SIGINT/SIGTERM as a request to stop, for a main thread that waits for one.

The handler only appends to a list: it takes no lock. A handler that called
``threading.Event.set()`` (as ``greenroom run`` did) deadlocks when the signal lands
while the main thread is inside that Event's ``wait()`` holding the Event's lock: the
handler runs on the main thread, between two of its bytecodes, and waits for a lock its
own thread holds. ``greenroom run`` logs "greenroom is running" and then waits, so a
SIGTERM sent on reading that line could find the window: CI saw the tree never stop
(measured with a tight ``wait(0)`` loop: 11 of 20 processes hung on one SIGTERM).
Python runs a handler only between bytecodes of the main thread, so the waiting side
sleeps in short steps and reads the list (``poll_s``: how late a stop may start).
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterable


class StopSignals:
    """Installs handlers for ``signals`` that record each one received (``received``)."""

    def __init__(self, signals: Iterable[int] = (signal.SIGINT, signal.SIGTERM),
                 poll_s: float = 0.1) -> None:
        self.poll_s = poll_s
        #: the signals received, in order (list.append takes no lock a handler could wait on)
        self.received: list[int] = []
        for signum in signals:
            signal.signal(signum, self._handle)

    def _handle(self, signum: int, _frame: object) -> None:
        self.received.append(signum)

    def wait(self, timeout: float | None = None) -> bool:
        """Until a signal was received (True) or ``timeout`` seconds passed (False)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.received:
            if deadline is None:
                time.sleep(self.poll_s)
                continue
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(self.poll_s, left))
        return True
