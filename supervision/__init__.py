"""OTP supervision for Thespian actors: strategies, restart types, restart intensity.

A ``Supervisor`` is a plain Thespian actor, so the same class supervises session,
guild and channel actors in-process (greenroom's base) and node processes
(Thespian's ``multiprocTCPBase``).
"""

from supervision.messages import (
    Children,
    ChildStarted,
    ChildTerminated,
    Start,
    StartChild,
    Started,
    Stop,
    Stopped,
    SupervisorError,
    TerminateChild,
    WhichChildren,
)
from supervision.spec import (
    BRUTAL_KILL,
    INFINITY,
    ONE_FOR_ALL,
    ONE_FOR_ONE,
    PERMANENT,
    REST_FOR_ONE,
    TEMPORARY,
    TRANSIENT,
    ChildSpec,
    SupervisorFlags,
    SupervisorSpec,
)
from supervision.supervisor import Supervisor

__all__ = [
    "BRUTAL_KILL", "INFINITY", "ONE_FOR_ALL", "ONE_FOR_ONE", "PERMANENT", "REST_FOR_ONE",
    "TEMPORARY", "TRANSIENT", "ChildSpec", "ChildStarted", "ChildTerminated", "Children",
    "Start", "StartChild", "Started", "Stop", "Stopped", "Supervisor", "SupervisorError",
    "SupervisorFlags", "SupervisorSpec", "TerminateChild", "WhichChildren",
]
