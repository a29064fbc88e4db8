"""A node service for the logging tests (``greenroom run --service burst=...``).

In the node process it logs a burst of records, each carrying the wall-clock time it
was emitted (``GREENROOM_TEST_BURST`` of them), one handled exception, and then crashes
once on a message of its own (``exit_on_error``: the base logs the crash, the node's
root supervisor restarts it).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any, ClassVar

from actors import Actor

log = logging.getLogger("greenroom.test.burst")


class Burst(Actor):
    exit_on_error = True
    crashed: ClassVar[bool] = False  # once per process: the restarted one stays up

    def __init__(self) -> None:
        if Burst.crashed:
            return  # the restarted incarnation: quiet
        Burst.crashed = True
        count = int(os.environ.get("GREENROOM_TEST_BURST", "1000"))
        for i in range(count):
            log.info("burst record", extra={"i": i, "emitted": time.time()})
        try:
            raise LookupError("raised in a node process (test)")
        except LookupError:
            log.exception("burst failed", extra={"emitted": time.time()})
        # created inside the supervisor's turn: its address exists once this returns
        asyncio.get_running_loop().call_soon(self._crash_soon)

    def _crash_soon(self) -> None:
        log.info("crashing now", extra={"emitted": time.time()})
        self.send(self.myAddress, "crash")

    def receiveMessage(self, msg: Any, sender: Any) -> None:
        if msg == "crash":
            raise ZeroDivisionError("the burst service crashed (test)")
