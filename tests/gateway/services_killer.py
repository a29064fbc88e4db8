"""A node service for the escalation test (``greenroom run --service killer=...``): once
the gateway's services are up, it kills the storage actor again and again, faster than
their supervisor's restart intensity allows. Only in the first node process of a run
(a marker file), so the restarted process stays up."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from actors import Actor
from actors.address import Address
from gateway.services import INTENSITY, STORAGE_ID


class Killer(Actor):
    def __init__(self) -> None:
        marker = Path(os.environ["GREENROOM_TEST_KILL_MARKER"])
        if marker.exists():
            return
        marker.write_text("killed once")
        self.kills = 0
        asyncio.get_running_loop().call_soon(self._tick)

    def _tick(self) -> None:
        base = self._myRef.base
        cell = base.cells.get(STORAGE_ID)
        if cell is not None and cell.alive:
            base.kill_brutally(Address(base.node, STORAGE_ID))
            self.kills += 1
        if self.kills <= INTENSITY:
            base.loop.call_later(0.02, self._tick)

    def receiveMessage(self, msg: Any, sender: Any) -> None:
        pass
