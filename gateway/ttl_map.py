"""A small bounded map whose entries expire: the caches of answers that change rarely and
are read per request (the user behind a REST token, a bot's application flags).

Bounded, so a stream of distinct keys cannot grow it: a full map first drops what has
expired, then its oldest entry. Not for values that must be fresh: a change reaches the
readers within ``ttl_s``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class TtlMap(Generic[K, V]):
    def __init__(self, ttl_s: float, max_entries: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self.clock = clock
        self._entries: dict[K, tuple[V, float]] = {}

    def get(self, key: K) -> V | None:
        """The value put under ``key`` less than ``ttl_s`` ago, else None."""
        hit = self._entries.get(key)
        return hit[0] if hit is not None and hit[1] > self.clock() else None

    def put(self, key: K, value: V) -> None:
        now = self.clock()
        entries = self._entries
        entries.pop(key, None)
        if len(entries) >= self.max_entries:
            for stale in [k for k, (_, until) in entries.items() if until <= now]:
                del entries[stale]
            if len(entries) >= self.max_entries:
                del entries[next(iter(entries))]  # the oldest
        entries[key] = (value, now + self.ttl_s)

    def pop(self, key: K) -> None:
        self._entries.pop(key, None)

    def __len__(self) -> int:
        return len(self._entries)
