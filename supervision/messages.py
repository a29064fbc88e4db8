"""What a supervisor is asked and answers. Picklable, so they also cross Thespian's
multi-process transports (node processes are supervised there)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from supervision.spec import ChildSpec, SupervisorSpec


@dataclass(frozen=True)
class Start:
    """Start the children, in order. ``spec=None`` uses the supervisor's ``init()``.
    Answered with ``Started``."""

    spec: SupervisorSpec | None = None


@dataclass(frozen=True)
class Started:
    children: tuple[tuple[str, Any], ...]


@dataclass(frozen=True)
class Stop:
    """Stop the children in reverse start order, each within its shutdown timeout,
    then exit with reason ``shutdown``. Answered with ``Stopped`` just before."""


@dataclass(frozen=True)
class Stopped:
    pass


@dataclass(frozen=True)
class StartChild:
    """Add a child at the end and start it (OTP's ``start_child``). Answer ``ChildStarted``."""

    spec: ChildSpec


@dataclass(frozen=True)
class ChildStarted:
    id: str
    address: Any


@dataclass(frozen=True)
class TerminateChild:
    """Stop a child and forget its spec (``terminate_child`` + ``delete_child``).
    Answered with ``ChildTerminated``."""

    id: str


@dataclass(frozen=True)
class ChildTerminated:
    id: str


@dataclass(frozen=True)
class WhichChildren:
    """Answered with ``Children``: (id, address or None, type) in start order."""


@dataclass(frozen=True)
class Children:
    children: tuple[tuple[str, Any, str], ...]


@dataclass(frozen=True)
class SupervisorError:
    """A request a supervisor could not honour (unknown child, duplicate id, ...)."""

    request: Any
    reason: str
