"""A heartbeat failure detector: which peers have been silent for too long.

Pure (no I/O, no timers): the caller says when it ``heard`` a peer and asks ``check``
on its own tick; the clock is injected so tests step time by hand. A peer is suspected
after ``timeout`` seconds without a heartbeat and trusted again on its next one.
Thespian's convention notices a vanished host only after minutes (its re-registration
period), so failover within seconds needs this: the data plane carries a heartbeat
every ``interval`` seconds between node processes (``cluster.heartbeat``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

INTERVAL = 0.2  # seconds between heartbeats to each peer
TIMEOUT = 1.0  # seconds of silence before a peer is suspected (five missed heartbeats)


class FailureDetector:
    def __init__(self, timeout: float = TIMEOUT,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if timeout <= 0:
            raise ValueError(f"the failure detector's timeout must be > 0 s, not {timeout}")
        self.timeout = timeout
        self.clock = clock
        self._last: dict[str, float] = {}
        self.suspected: set[str] = set()

    @property
    def watched(self) -> frozenset[str]:
        return frozenset(self._last)

    def watch(self, peers: Iterable[str]) -> None:
        """Watch exactly ``peers``: a new one gets a full ``timeout`` of grace (it was
        just announced), one no longer listed is forgotten."""
        peers = set(peers)
        now = self.clock()
        for gone in self._last.keys() - peers:
            del self._last[gone]
            self.suspected.discard(gone)
        for peer in peers - self._last.keys():
            self._last[peer] = now

    def restart(self, peer: str) -> None:
        """``peer`` is a new incarnation: trust it afresh, with a full grace period."""
        if peer in self._last:
            self._last[peer] = self.clock()
            self.suspected.discard(peer)

    def heard(self, peer: str) -> bool:
        """A heartbeat from ``peer``; True when it was suspected until now."""
        if peer not in self._last:
            return False  # not (or no longer) a member: nothing to trust
        self._last[peer] = self.clock()
        if peer in self.suspected:
            self.suspected.discard(peer)
            return True
        return False

    def check(self) -> set[str]:
        """The peers that became suspected since the last check."""
        deadline = self.clock() - self.timeout
        newly = {p for p, t in self._last.items() if t < deadline and p not in self.suspected}
        self.suspected |= newly
        return newly

    def alive(self) -> frozenset[str]:
        return frozenset(self._last.keys() - self.suspected)
