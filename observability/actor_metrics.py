"""The actor system's metrics, read from a running base when ``/metrics`` is scraped.

The base (``actors.UvloopSystemBase``) keeps plain ints and lists for its own use: its
run queue, its ``stats`` (``overloaded``, ``dead_letters``, ``poison``) and
``mailbox_high_water``. ``watch_base`` reads them at collection, so the scheduler pays
nothing; it takes the base as any object with those attributes, because ``actors``
imports no other project package and this package imports none above it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from .metrics import counter, gauge

__all__ = ["watch_base"]

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
            _poison.observe(stat("poison"))]
