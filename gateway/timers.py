"""One loop timer for every connection's deadline (heartbeat / zombie, RECONNECT close).

A ``loop.call_at`` handle per connection costs ~0.5 KiB an idle session (uvloop's
TimerHandle and its libuv timer) and is re-made at every heartbeat. Here deadlines fall
into slots of ``tick_s``; one timer, running only while some deadline is pending, wakes
at the earliest slot and calls the due owners. A call comes at most ``tick_s`` late,
never early, which is what ``GatewayConnection.on_timer`` asks (``SetTimer``: call once
``now >= at``); zombie detection has seconds of slack.
"""

from __future__ import annotations

import asyncio
import heapq
import math
from collections.abc import Callable
from typing import Any


class TimerWheel:
    """Deadlines by owner: ``schedule(owner, at)`` replaces the owner's earlier one, and
    ``owner.on_deadline()`` runs once ``loop.time() >= at``."""

    def __init__(self, loop: asyncio.AbstractEventLoop, tick_s: float = 0.1) -> None:
        self.loop = loop
        self.tick_s = tick_s
        self._slots: dict[int, set[Any]] = {}  # slot -> owners due then
        self._slot_of: dict[Any, int] = {}  # owner -> its slot
        self._heap: list[int] = []  # slot numbers with owners (may hold stale ones)
        self._handle: asyncio.TimerHandle | None = None
        self._armed_for: int | None = None

    def __len__(self) -> int:
        return len(self._slot_of)

    def schedule(self, owner: Any, at: float) -> None:
        slot = math.ceil(at / self.tick_s)
        old = self._slot_of.get(owner)
        if old == slot:
            return
        if old is not None:
            self._discard(owner, old)
        self._slot_of[owner] = slot
        owners = self._slots.get(slot)
        if owners is None:
            owners = self._slots[slot] = set()
            heapq.heappush(self._heap, slot)
        owners.add(owner)
        if self._armed_for is None or slot < self._armed_for:
            self._arm(slot)

    def cancel(self, owner: Any) -> None:
        slot = self._slot_of.pop(owner, None)
        if slot is not None:
            self._discard(owner, slot)

    def close(self) -> None:
        """Forget every deadline and stop the loop timer."""
        if self._handle is not None:
            self._handle.cancel()
        self._handle = self._armed_for = None
        self._slots.clear()
        self._slot_of.clear()
        self._heap.clear()

    def _discard(self, owner: Any, slot: int) -> None:
        owners = self._slots.get(slot)
        if owners is not None:
            owners.discard(owner)
            if not owners:
                del self._slots[slot]  # its heap entry goes stale; skipped when reached

    def _arm(self, slot: int) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._armed_for = slot
        self._handle = self.loop.call_at(slot * self.tick_s, self._fire)

    def _fire(self) -> None:
        self._handle = self._armed_for = None
        now_slot = math.floor(self.loop.time() / self.tick_s)
        heap = self._heap
        due: list[Any] = []
        while heap and heap[0] <= now_slot:
            owners = self._slots.pop(heapq.heappop(heap), None)
            if owners:
                for owner in owners:
                    del self._slot_of[owner]
                due.extend(owners)
        while heap and heap[0] not in self._slots:
            heapq.heappop(heap)  # stale
        if heap:
            self._arm(heap[0])
        for owner in due:  # after re-arming: an owner may schedule again from here
            call: Callable[[], None] = owner.on_deadline
            call()
