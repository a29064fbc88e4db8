"""The per-actor record: what Thespian calls an actor's ``_myRef``.

Thespian's ``Actor`` methods (``send``, ``createActor``, ``wakeupAfter``, ...) all call
through ``self._myRef``; a ``Cell`` answers those calls for greenroom's base and adds
the extensions (ask, timers, monitors, I/O). It is slotted and its mailbox is created
on the first message and dropped when drained, so an idle actor costs a few hundred
bytes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from thespian.actors import ActorAddress, InvalidActorAddress

from actors.address import Address

if TYPE_CHECKING:
    from actors.system_base import UvloopSystemBase


class Cell:
    __slots__ = (
        "base",
        "address",
        "instance",
        "parent",
        "children",
        "mailbox",
        "scheduled",
        "alive",
        "capacity",
        "globalName",
        "timers",
        "monitors",
        "last_turn",
    )

    def __init__(self, base: UvloopSystemBase, address: Address, parent: Address | None,
                 capacity: int) -> None:
        self.base = base
        self.address = address
        self.instance: Any = None
        self.parent = parent
        # id -> address, in creation order (a dict: O(1) removal for registries with
        # many children, newest-first iteration for shutdown)
        self.children: dict[int, Address] | None = None
        self.mailbox: list | None = None
        self.scheduled = False
        self.alive = True
        self.capacity = capacity
        self.globalName: str | None = None
        self.timers: dict[int, Any] | None = None
        self.monitors: dict[int, Address] | None = None
        self.last_turn = 0.0

    # -- Thespian's _myRef interface -------------------------------------------------

    def actor_send(self, target: ActorAddress, msg: Any) -> None:
        # Classes that keep Thespian's own ``send`` come here; the others get the
        # inlined hot path installed by the base (``system_base._fast_send``).
        if target.__class__ is not Address:
            raise InvalidActorAddress(target, "is not an address of this actor system")
        self.base.deliver(target, msg, self.address)

    def createActor(self, actorClass: Any, targetActorRequirements: Any = None,
                    globalName: str | None = None, sourceHash: Any = None) -> Address:
        return self.base.create_actor(self, actorClass, targetActorRequirements, globalName)

    def wakeupAfter(self, timePeriod: Any, payload: Any = None) -> None:
        self.base.wakeup_after(self, timePeriod, payload)

    def handleDeadLetters(self, address: Address, enable: bool) -> None:
        self.base._handleDeadLetters(address, enable)

    def updateCapability(self, name: str, value: Any = None) -> None:
        self.base.updateCapability(name, value)

    def notifyOnSystemRegistrationChanges(self, address: Address, enable: bool) -> None:
        self.base.registration_watchers[address] = enable

    def registerSourceAuthority(self, address: Address) -> None:
        raise NotImplementedError("greenroom's base does not load actor sources at run time")

    def loadActorSource(self, fname: Any) -> Any:
        raise NotImplementedError("greenroom's base does not load actor sources at run time")

    unloadActorSource = loadActorSource
    notifyOnSourceAvailability = registerSourceAuthority

    def preRegisterRemoteSystem(self, remoteAddress: Any, remoteCapabilities: Any) -> None:
        raise NotImplementedError("cluster membership is formed by the node layer, not here")

    deRegisterRemoteSystem = preRegisterRemoteSystem

    def actorSystemShutdown(self) -> None:
        self.base.loop.call_soon(self.base.shutdown_in_loop)

    # -- greenroom extensions (see actors.actor.Actor) --------------------------------

    def ask(self, target: Address, message: Any, timeout: float) -> int:
        return self.base.ask_from_actor(self, target, message, timeout)

    def start_timer(self, delay: float, payload: Any, repeat: bool = False) -> int:
        return self.base.start_timer(self, delay, payload, repeat)

    def cancel_timer(self, ref: int) -> bool:
        return self.base.cancel_timer(self, ref)

    def monitor(self, target: Address) -> int:
        return self.base.monitor(self, target)

    def demonitor(self, ref: int) -> bool:
        return self.base.demonitor(ref)

    def run_io(self, awaitable: Any, tag: Any) -> None:
        self.base.run_io(self, awaitable, tag)

    def exit(self, reason: Any) -> None:
        self.base.kill(self, reason)

    def forward(self, target: Address, message: Any, sender: Address) -> None:
        self.base.deliver(target, message, sender)
