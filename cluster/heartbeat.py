"""Heartbeats between node processes over the data plane: the member set the membership
actors announce, filtered down to the members that are heard from.

The membership actors (``cluster.membership``) know who joined and, through process
supervision, which local node process exited; a host that vanishes (power, network)
tells nobody, and Thespian's convention notices only after minutes. So every node
sends a ``Heartbeat`` to every other member's directory every ``INTERVAL`` seconds and
a ``FailureDetector`` suspects a member after ``TIMEOUT`` seconds of silence. What the
node acts on (placement, monitors: ``Node.set_members``) is the *live* ``Members``:
the announced ones minus the suspected ones. A suspected member that is heard again
rejoins. Outside clients (``Members.clients``) send no heartbeats and are never
suspected.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import time
import weakref
from collections import deque
from collections.abc import Callable

from actors.address import Address
from actors.system_base import UvloopSystemBase
from cluster.data_plane import DataPlane
from cluster.detector import INTERVAL, TIMEOUT, FailureDetector
from cluster.messages import DIRECTORY_ID, Heartbeat, Members, View
from observability.metrics import histogram

log = logging.getLogger("greenroom.heartbeat")
_delay = histogram("dataplane_heartbeat_delay",
                   "a peer's heartbeat from its send (the peer's clock) to its arrival at "
                   "this node's directory, by peer: the data plane's one-way latency plus "
                   "both event loops' lag (across hosts, plus their clocks' skew)", "s",
                   labels={"peer": None})

_by_base: weakref.WeakKeyDictionary[UvloopSystemBase, Heartbeats] = \
    weakref.WeakKeyDictionary()


def heartbeats_of(base: UvloopSystemBase) -> Heartbeats | None:
    """The heartbeats of the node that runs ``base`` (None before they start)."""
    return _by_base.get(base)


class Heartbeats:
    """Runs on the node's loop. ``update`` takes each announced ``Members``;
    ``on_live`` gets the live ``Members`` each time that set changes."""

    def __init__(self, base: UvloopSystemBase, plane: DataPlane,
                 on_live: Callable[[Members], None], *, interval: float = INTERVAL,
                 timeout: float = TIMEOUT) -> None:
        if interval <= 0 or interval >= timeout:
            raise ValueError(f"heartbeat interval {interval} s must be > 0 and shorter "
                             f"than the timeout {timeout} s")
        self.base = base
        self.plane = plane
        self.on_live = on_live
        self.interval = interval
        self.detector = FailureDetector(timeout)
        self.announced = Members({})
        self.live = Members({})
        self._pid = os.getpid()
        #: the latest changes of the live set: (seq, "joined" | "left", node, pid)
        self.events: deque[tuple[int, str, str, int]] = deque(maxlen=100)
        self._seq = itertools.count(1)
        self._timer: asyncio.TimerHandle | None = None
        #: when the next tick is due (loop time), and whether the last one skipped its
        #: check (its node's loop had stalled)
        self._due = 0.0
        self._skipped = False
        _by_base[base] = self

    def start(self) -> None:
        self._due = self.base.loop.time() + self.interval
        self._timer = self.base.loop.call_later(self.interval, self._tick)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        _by_base.pop(self.base, None)

    def update(self, members: Members) -> None:
        """The membership actor's latest announcement."""
        before = self.announced.nodes
        self.announced = members
        me = self.base.node
        self.detector.watch(n for n in members.nodes if n != me and n not in members.clients)
        for name, entry in members.nodes.items():
            if name in before and before[name] != entry:
                self.detector.restart(name)  # a new process: its own grace period
        self._publish()

    def heard(self, beat: Heartbeat) -> None:
        entry = self.announced.nodes.get(beat.node)
        if entry is None or entry[1] != beat.pid:
            return  # an unannounced node, or an older incarnation still talking
        if beat.sent_at:
            _delay.record(max(0.0, time.time() - beat.sent_at), peer=beat.node)
        if self.detector.heard(beat.node):
            log.info("node %s: %s is heard again", self.base.node, beat.node)
            self._publish()

    def view(self) -> View:
        known = sorted(n for n in self.announced.nodes if n not in self.announced.clients)
        live = sorted(n for n in self.live.nodes if n not in self.live.clients)
        return View(self.base.node, known, live, {n: self.live.nodes[n][1] for n in live},
                    [list(e) for e in self.events])

    def _tick(self) -> None:
        loop = self.base.loop
        # Over an interval late: this node's own loop did not run (blocked, or the host
        # gave it no CPU). The loop runs due timers before it reads its sockets, so the
        # peers' heartbeats of that time are still unread: check at the next tick, not
        # now (each peer would be suspected for the stall of this node, and heard again
        # a moment later). Never twice in a row: a loop that lags at every tick still
        # checks at every other one.
        stalled = loop.time() - self._due > self.interval and not self._skipped
        self._skipped = stalled
        self._due = loop.time() + self.interval
        self._timer = loop.call_later(self.interval, self._tick)
        route = self.plane.route
        beat = Heartbeat(self.base.node, self._pid, time.time())  # one for every peer
        for peer in self.detector.watched:
            route(Address(peer, DIRECTORY_ID), beat, None)
        if stalled:
            return
        newly = self.detector.check()
        if newly:
            log.warning("node %s: no heartbeat from %s for %.1f s; suspected", self.base.node,
                        ", ".join(sorted(newly)), self.detector.timeout)
            self._publish()

    def _publish(self) -> None:
        suspected = self.detector.suspected
        m = self.announced
        live = Members({n: e for n, e in m.nodes.items() if n not in suspected},
                       {n: i for n, i in m.info.items() if n not in suspected},
                       m.clients)
        if live != self.live:
            self._record(self.live, live)
            self.live = live
            self.on_live(live)
        # whoever acts on the live set may narrow the data plane's peers to it; the
        # suspected members must stay reachable, or their heartbeats could never return
        self.plane.set_peers(m.data_addresses())

    def _record(self, before: Members, after: Members) -> None:
        old, new = before.nodes, after.nodes
        for name, (_addr, pid) in sorted(old.items()):
            if name not in after.clients and new.get(name) != old[name]:
                self.events.append((next(self._seq), "left", name, pid))
                log.info("node %s: %s (pid %d) left", self.base.node, name, pid)
        for name, (_addr, pid) in sorted(new.items()):
            if name not in after.clients and old.get(name) != new[name]:
                self.events.append((next(self._seq), "joined", name, pid))
                log.info("node %s: %s (pid %d) joined", self.base.node, name, pid)
