"""Child specifications and supervisor flags, in OTP's vocabulary."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

Strategy = Literal["one_for_one", "one_for_all", "rest_for_one"]
Restart = Literal["permanent", "transient", "temporary"]
ChildType = Literal["worker", "supervisor"]

ONE_FOR_ONE: Strategy = "one_for_one"
ONE_FOR_ALL: Strategy = "one_for_all"
REST_FOR_ONE: Strategy = "rest_for_one"
PERMANENT: Restart = "permanent"
TRANSIENT: Restart = "transient"
TEMPORARY: Restart = "temporary"
BRUTAL_KILL = 0.0
INFINITY = math.inf


@dataclass(frozen=True)
class ChildSpec:
    """One child of a supervisor (OTP's child_spec map).

    ``start`` is the actor class (or its dotted name, for Thespian's multi-process
    bases). ``shutdown`` is how many seconds the child gets to exit after it is asked
    before it is killed (``BRUTAL_KILL`` = at once, ``INFINITY`` = wait; OTP's default
    is 5 s for a worker and infinity for a supervisor).
    """

    id: str
    start: Any
    restart: Restart = PERMANENT
    shutdown: float | None = None
    type: ChildType = "worker"
    requirements: dict[str, Any] | None = None
    #: A message sent to the child right after it is created (its "init arguments").
    init: Any = None
    #: Register the child under this Thespian global name (each incarnation in turn).
    global_name: str | None = None
    #: Create each incarnation at this well-known actor id (greenroom's base only), so
    #: that other actors and other nodes, which address it by id, reach the restarted
    #: one without being told: the address outlives the incarnation.
    fixed_id: int | None = None

    def __post_init__(self) -> None:
        if self.restart not in (PERMANENT, TRANSIENT, TEMPORARY):
            raise ValueError(f"child {self.id!r}: restart must be permanent, transient or "
                             f"temporary, not {self.restart!r}")
        if self.type not in ("worker", "supervisor"):
            raise ValueError(f"child {self.id!r}: type must be worker or supervisor")
        if self.shutdown is not None and self.shutdown < 0:
            raise ValueError(f"child {self.id!r}: shutdown must be >= 0 seconds")

    @property
    def shutdown_timeout(self) -> float:
        if self.shutdown is not None:
            return self.shutdown
        return INFINITY if self.type == "supervisor" else 5.0


@dataclass(frozen=True)
class SupervisorFlags:
    """Strategy and restart intensity: more than ``intensity`` restarts within
    ``period`` seconds and the supervisor gives up: it stops its children and exits
    with reason ``shutdown``, so its own supervisor decides."""

    strategy: Strategy = ONE_FOR_ONE
    intensity: int = 1
    period: float = 5.0

    def __post_init__(self) -> None:
        if self.strategy not in (ONE_FOR_ONE, ONE_FOR_ALL, REST_FOR_ONE):
            raise ValueError(f"unknown strategy {self.strategy!r}")
        if self.intensity < 0 or self.period <= 0:
            raise ValueError("intensity must be >= 0 and period > 0")


@dataclass(frozen=True)
class SupervisorSpec:
    flags: SupervisorFlags = field(default_factory=SupervisorFlags)
    children: tuple[ChildSpec, ...] = ()

    def __post_init__(self) -> None:
        ids = [c.id for c in self.children]
        if len(ids) != len(set(ids)):
            raise ValueError(f"duplicate child ids in {ids}")
