"""Messages that greenroom's extensions add to Thespian's set.

Thespian's own system messages (``ActorExitRequest``, ``ChildActorExited``,
``WakeupMessage``, ``PoisonMessage``, ``DeadEnvelope``) are used as they are; these
cover what Thespian lacks: replies to ``ask`` from inside an actor, monitors,
cancellable timers, I/O completions and mailbox overload.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from thespian.actors import ActorSystemMessage

from actors.address import Address
from actors.wire import wire_type

# Exit reasons that OTP treats as normal: a transient child leaving with one of
# these is not restarted.
NORMAL = "normal"
SHUTDOWN = "shutdown"
KILLED = "killed"


def is_normal_exit(reason: Any) -> bool:
    """OTP's rule: ``normal``, ``shutdown`` and ``("shutdown", term)`` are normal."""
    if reason in (NORMAL, SHUTDOWN):
        return True
    return isinstance(reason, tuple) and len(reason) == 2 and reason[0] == SHUTDOWN


@dataclass(slots=True, eq=True)
class Reply(ActorSystemMessage):
    """The answer to ``self.ask(...)``, tagged with the correlation id it returned."""

    correlation_id: int
    message: Any
    sender: Address | None = None


@dataclass(slots=True, eq=True)
class AskTimeout(ActorSystemMessage):
    """No answer came to ``self.ask(...)`` within its timeout, or none can come:
    ``reason`` is ``"timeout"``, or ``NOCONNECTION`` when the node the answer had to
    come from left the cluster first (``UvloopSystemBase.node_down``), delivered at
    once rather than after ``timeout``."""

    correlation_id: int
    target: Address
    timeout: float
    reason: str = "timeout"


@wire_type("actors.down")
@dataclass(slots=True, eq=True)
class Down(ActorSystemMessage):
    """A monitored actor has exited (or never existed: reason ``"noproc"``)."""

    ref: int
    address: Address
    reason: Any


@wire_type("actors.monitor")
@dataclass(slots=True, eq=True)
class MonitorRemote(ActorSystemMessage):
    """Watcher node's monitor agent -> the target node's: watch ``target`` for ``ref``."""

    ref: int
    target: Address


@wire_type("actors.demonitor")
@dataclass(slots=True, eq=True)
class DemonitorRemote(ActorSystemMessage):
    """Watcher node's monitor agent -> the target node's: forget monitor ``ref``."""

    ref: int


#: Why a remote monitor fired because the target's node left the membership (OTP's word).
NOCONNECTION = "noconnection"


@dataclass(slots=True, eq=True)
class Timeout(ActorSystemMessage):
    """A timer started with ``self.start_timer`` fired."""

    ref: int
    payload: Any


@dataclass(slots=True, eq=True)
class IODone(ActorSystemMessage):
    """An awaitable handed to ``self.run_io`` finished: ``error`` is its exception or None."""

    tag: Any
    result: Any
    error: BaseException | None


@wire_type("actors.overloaded")
@dataclass(slots=True, eq=True)
class Overloaded(ActorSystemMessage):
    """Bounce sent back to a sender whose message did not fit the target's mailbox.

    Nothing is dropped silently: the sender gets its message back and decides
    (retry later, shed, or fail its own caller).
    """

    target: Address
    message: Any
    capacity: int


class NodeDownError(TimeoutError):
    """``ask_async``: the node that had to answer left the cluster (or stopped being
    reachable) before it did, so no answer will come. A ``TimeoutError``, so callers
    that treat a silent target as a failed ask keep working, only sooner."""

    def __init__(self, node: str, message: str) -> None:
        super().__init__(message)
        self.node = node


class MailboxFull(Exception):
    """Raised by an external ``tell`` when the target's mailbox is at capacity."""
