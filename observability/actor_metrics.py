"""The actor system's metrics, read from a running base when ``/metrics`` is scraped.

The base (``actors.UvloopSystemBase``) keeps plain ints and lists for its own use: its
run queue, its ``stats`` (``overloaded``, ``dead_letters``, ``poison``) and
``mailbox_high_water``. ``watch_base`` reads them at collection, so the scheduler pays
nothing; it takes the base as any object with those attributes, because ``actors``
imports no other project package and this package imports none above it.

It also times the process's cyclic-GC collections (``watch_gc``): the collecting
thread holds the GIL for all of one but its finalizers and callbacks (this one too,
which may let another thread run for a switch interval), so the event loop and every
thread that needs the GIL wait, and a pause of tens of ms is a p99 of that size for
whatever was in flight. That is what the 80-100 msg/s steps' tail was until the
runtime's timers and asks stopped leaving reference cycles (loadtest/GATEWAY_BENCH.md,
"Ninth session"); it costs two calls per collection (its start and its end). And it
times how late the loop runs a timer (``watch_loop``): a stall of any cause.
"""

from __future__ import annotations

import contextlib
import gc
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from .metrics import counter, gauge, histogram

__all__ = ["watch_base", "watch_gc", "watch_loop"]

_run_queue = gauge("actor_run_queue_length", "actors with messages waiting for a turn",
                   "{actor}")
_mailbox_high = gauge("actor_mailbox_high_water", "the longest mailbox an actor had at "
                      "the start of a turn, since the node started", "{message}")
_node = {"node": None}  # per node process: read from its base once watched
_overloaded = counter("actor_overloaded_total", "messages refused by a full mailbox "
                      "(the sender got Overloaded)", labels=_node)
_dead_letters = counter("actor_dead_letters_total", "messages to an actor that is gone",
                        labels=_node)
_poison = counter("actor_poison_messages_total", "messages whose handler failed (the "
                  "sender got PoisonMessage)", labels=_node)

#: 0.1 ms to 1 s: a young collection of a few thousand objects takes well under 1 ms
GC_PAUSE_BUCKETS_S = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                      0.1, 0.25, 0.5, 1.0)
_GENERATIONS = ("0", "1", "2")
_gc_pause = histogram("python_gc_pause", "the process's cyclic-GC collections, by the "
                      "generation collected (the event loop waits for each)", "s",
                      GC_PAUSE_BUCKETS_S, labels={"generation": _GENERATIONS})
_gc_watchers = [0]  # one hook per process, however many bases watch
_gc_watchers_lock = threading.Lock()  # two nodes of one process start theirs at once
_gc_started: list[float | None] = [None]

#: the loop-lag probe's period: a stall of S ms (a long actor turn, a GC pause, a
#: blocking call, a busy host) makes the probe due in it S - 20 to S ms late (below
#: 20 ms, one probe in S / 20 falls due in it), for 50 timers a second (a few µs each)
LOOP_PROBE_S = 0.02
#: 1 ms up: libuv's timers have a resolution of 1 ms, so an idle loop reads 0-1.5 ms
LOOP_LAG_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
_loop_lag = histogram("actor_loop_lag", "how late the event loop ran a timer due every "
                      "20 ms (a long turn, a GC pause, a blocking call, a busy host)", "s",
                      LOOP_LAG_BUCKETS_S)

Read = Callable[[], Iterable[tuple[dict[str, Any], float]]]


def watch_base(base: Any) -> list[Callable[[], None]]:
    """The actor system's gauges and counts of *base*, labelled with its node; returns
    the functions that stop them (call them when the base stops)."""
    node = {"node": base.node}

    def run_queue() -> Iterable[tuple[dict[str, Any], float]]:
        yield node, len(base.runq)

    def mailbox_high() -> Iterable[tuple[dict[str, Any], float]]:
        yield node, getattr(base, "mailbox_high_water", 0)

    def stat(key: str) -> Read:
        return lambda: [(node, base.stats.get(key, 0))]

    return [_run_queue.observe(run_queue), _mailbox_high.observe(mailbox_high),
            _overloaded.observe(stat("overloaded")), _dead_letters.observe(stat("dead_letters")),
            _poison.observe(stat("poison")), watch_gc(), watch_loop(base.loop)]


class _LagProbe:
    """A timer due every ``LOOP_PROBE_S`` on ``loop`` that records how late it ran."""

    __slots__ = ("loop", "due", "handle")

    def __init__(self, loop: Any) -> None:
        self.loop = loop
        self.due = 0.0
        self.handle: Any = None

    def arm(self) -> None:
        # time.monotonic, not loop.time(): libuv's clock is cached for the iteration
        self.due = time.monotonic() + LOOP_PROBE_S
        self.handle = self.loop.call_later(LOOP_PROBE_S, self.tick)

    def tick(self) -> None:
        _loop_lag.record(max(0.0, time.monotonic() - self.due))
        self.arm()

    def disarm(self) -> None:
        handle, self.handle = self.handle, None
        if handle is not None:
            handle.cancel()


def watch_loop(loop: Any) -> Callable[[], None]:
    """Record how late ``loop`` runs a timer due every ``LOOP_PROBE_S`` in
    ``actor_loop_lag_seconds`` (from any thread); returns the function that stops it."""
    probe = _LagProbe(loop)
    loop.call_soon_threadsafe(probe.arm)

    def stop() -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nothing runs
            loop.call_soon_threadsafe(probe.disarm)

    return stop


def _on_gc(phase: str, info: dict[str, Any]) -> None:
    # Collections do not overlap (CPython runs one at a time, its start and end in the
    # same thread), so one start time serves every thread; an end without its start
    # (the hook came in the middle of a collection) is not a pause to count.
    if phase == "start":
        _gc_started[0] = time.perf_counter()
        return
    started, _gc_started[0] = _gc_started[0], None
    if started is not None:
        _gc_pause.record(time.perf_counter() - started,
                         generation=_GENERATIONS[info["generation"]])


def watch_gc() -> Callable[[], None]:
    """Time this process's GC collections in ``python_gc_pause_seconds``; returns the
    function that stops it (the hook goes when its last watcher stops)."""
    with _gc_watchers_lock:
        if _gc_watchers[0] == 0:
            gc.callbacks.append(_on_gc)
        _gc_watchers[0] += 1
    stopped = [False]

    def stop() -> None:
        with _gc_watchers_lock:
            if stopped[0]:
                return
            stopped[0] = True
            _gc_watchers[0] -= 1
            if _gc_watchers[0] == 0 and _on_gc in gc.callbacks:
                gc.callbacks.remove(_on_gc)
                _gc_started[0] = None  # a start seen now has no end to pair with

    return stop
