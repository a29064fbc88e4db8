"""greenroom's actor runtime: Thespian's actor model on a uvloop scheduler.

Every actor is a ``thespian.actors.Actor`` subclass. Run them with::

    from thespian.actors import ActorSystem
    from actors import UvloopSystemBase

    base = UvloopSystemBase()                      # private loop in a thread, or loop=...
    asys = ActorSystem(systemBase=base, transientUnique=True)
    addr = asys.createActor(MyActor)
    asys.tell(addr, "hello"); answer = asys.ask(addr, "question", 1.0)
    # from asyncio code on the loop: await base.ask_async(addr, msg, timeout)

Subclass ``actors.Actor`` for the extensions (ask from inside an actor, timers,
monitors, run_io, exit); see ``actors.messages`` for what they deliver.
``actors.Registry`` finds or activates an actor by ``(kind, key)`` and passivates it
when idle (``Route``, ``Locate``; see ``actors.registry``).
"""

from actors.actor import Actor
from actors.address import Address
from actors.messages import (
    KILLED,
    NORMAL,
    SHUTDOWN,
    AskTimeout,
    Down,
    IODone,
    MailboxFull,
    NodeDownError,
    Overloaded,
    Reply,
    Timeout,
    is_normal_exit,
)
from actors.registry import (
    Activated,
    Configure,
    Configured,
    GetRegistryStats,
    Handoff,
    Locate,
    Located,
    Registry,
    RegistryError,
    RegistryStats,
    Route,
)
from actors.system_base import UvloopSystemBase, tune_gc

__all__ = [
    "Activated",
    "Actor",
    "Address",
    "AskTimeout",
    "Configure",
    "Configured",
    "Down",
    "GetRegistryStats",
    "Handoff",
    "IODone",
    "KILLED",
    "Locate",
    "Located",
    "MailboxFull",
    "NORMAL",
    "NodeDownError",
    "Overloaded",
    "Registry",
    "RegistryError",
    "RegistryStats",
    "Reply",
    "Route",
    "SHUTDOWN",
    "Timeout",
    "UvloopSystemBase",
    "is_normal_exit",
    "tune_gc",
]
