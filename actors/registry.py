"""A per-node registry: find or activate an actor by ``(kind, key)``; passivate it when idle.

``Registry`` is an ``actors.Actor`` and the parent (a dynamic supervisor) of the
entities it activates. Kinds map a kind name to an actor class, either on a subclass::

    class Entities(Registry):
        kinds = {"guild": GuildActor, "channel": ChannelActor}
        idle_timeout = 300.0              # seconds without a turn; None: never passivate

or at run time with ``Configure(kinds=..., idle_timeout=..., sweep_interval=...)``.

Messages (``Route``, ``Locate`` and their answers are wire types, so another node can
route to an entity here through this node's registry):

* ``Route(kind, key, message)`` delivers ``message`` to the entity, activating it on
  first use, *as if the original sender had sent it* (``forward``): the entity answers
  its ``sender`` and the answer goes straight back, not through the registry.
* ``Locate(kind, key)`` answers ``Located(kind, key, address)``, activating too.
* An unknown kind, an unhashable key or a class that fails to start answers
  ``RegistryError(kind, key, reason, message)``; the registry goes on.
* A new incarnation's first message is always ``Activated(kind, key)`` (sent by the
  registry), so it learns who it is before any routed message; it loads its state then.

Passivation. Every ``sweep_interval`` seconds (default ``idle_timeout / 2``; the timer
runs only while entities are live) the registry stops each entity that is idle: no turn
for ``idle_timeout`` seconds (the runtime's per-cell ``last_turn``), nothing in its
mailbox, no pending timer or wakeup, and no live monitor on it (see *leases*). It forgets
the entity, then sends it ``ActorExitRequest``, on which the entity flushes its state.
A large table is swept ``sweep_batch`` entities per turn so one sweep never stalls the loop.

Why no message routed through the registry can be lost to passivation (all of this
runs on the one event-loop thread, and a handler is never interleaved with another):

1. The idle check and "forget, then send ``ActorExitRequest``" happen in one registry
   turn. At that instant the entity's mailbox is empty and it is not scheduled, so the
   exit request is the first and only message in its mailbox.
2. Any later ``Route`` for that key is handled by the registry after this turn, finds
   no entry and activates a fresh incarnation: nothing is ever forwarded to an entity
   the registry has forgotten. (Forwarding checks the cell is alive, so an entity that
   crashed or stopped itself is replaced, not fed dead letters.)
3. Even without the empty-mailbox check nothing routed would be lost: a mailbox is one
   FIFO list, and the base handles everything queued ahead of an ``ActorExitRequest``
   before it ends the actor; only what is queued *behind* it becomes a dead letter.
4. The old incarnation's exit handler runs before the new one's ``Activated``: the old
   cell was put on the run queue (with its exit request) before the new cell existed,
   and the run queue is FIFO. So what the old one sends while flushing (say, a write to
   the storage actor) is queued before anything the new one sends when it loads.
   (A flush done with ``run_io`` is not covered: its completion would come after the
   actor is gone. Flush by sending to the storage actor, whose mailbox keeps the order.)

Direct senders. An address from ``Located`` (or a reply's sender) may be cached, but a
message sent straight to an incarnation that has since been passivated is a dead
letter — and Thespian hands a ``DeadEnvelope`` to the system's dead-letter handler, not
to the sender, so a direct sender cannot count on hearing about it. Hence *leases*:
an entity that some live actor monitors (``self.monitor(address)``) is never
passivated. A caller that wants to keep sending directly should monitor the address
it was given, send as long as it holds the monitor, ``demonitor`` when done (the entity
then passivates normally), and re-``Locate`` on ``Down`` (which now means a crash, the
entity's own exit or the registry's shutdown, never a passivation). Callers that do not hold a lease should use ``Route``.
A ``Locate`` counts as activity, so the entity will not be passivated for at least
``idle_timeout`` after it is answered.

Work in flight. An entity whose class sets ``finish_before_exit = True`` (a channel,
with storage writes whose answers are still to come) is sent ``Handoff`` instead of
``ActorExitRequest`` when it is passivated or handed over (``stop_entity``): it
finishes, answers its askers, then exits by itself. Forgotten first, it gets no new
``Route`` meanwhile, as above; a ``Route`` for its key activates a new incarnation,
which may run beside the finishing one for that moment (its writes are already keyed).

What passivation cannot protect. An in-flight ``ask`` or ``run_io`` is not visible to
the registry: choose ``idle_timeout`` well above any ask/IO timeout an entity uses. An
entity that crashes (``exit_on_error``) or exits by itself loses what was queued behind
the crash, as an OTP process does; the next ``Route`` re-activates it (restart on
demand: state reloads from storage), and the crashed message's sender gets the
``PoisonMessage``. An overloaded entity (mailbox full) returns a routed message to its
original sender as ``Overloaded``.

Per-entity cost: one dict entry ``(kind, key) -> Address``. The registry uses the
greenroom extensions (``forward``, timers) and the cells of its children, so it runs on
``UvloopSystemBase`` only.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from thespian.actors import ActorExitRequest, ChildActorExited, PoisonMessage

from actors.actor import Actor
from actors.address import Address
from actors.messages import MailboxFull, Overloaded, Timeout, is_normal_exit
from actors.wire import wire_type

log = logging.getLogger("greenroom.actors.registry")

__all__ = [
    "Activated",
    "Configure",
    "Configured",
    "GetRegistryStats",
    "Handoff",
    "Locate",
    "Located",
    "Registry",
    "RegistryError",
    "RegistryStats",
    "Route",
]


# -- messages ---------------------------------------------------------------------------


@wire_type("registry.route")
@dataclass(slots=True)
class Route:
    """Deliver ``message`` to entity ``(kind, key)`` on behalf of this message's sender."""

    kind: str
    key: Any
    message: Any


@wire_type("registry.locate")
@dataclass(slots=True)
class Locate:
    """Ask for the address of entity ``(kind, key)`` (activating it); see *leases*."""

    kind: str
    key: Any


@wire_type("registry.located")
@dataclass(slots=True)
class Located:
    kind: str
    key: Any
    address: Address


@wire_type("registry.error")
@dataclass(slots=True)
class RegistryError:
    """A ``Route``/``Locate`` the registry could not serve; ``message`` is what was routed."""

    kind: Any
    key: Any
    reason: str
    message: Any = None


@dataclass(slots=True, frozen=True)
class Activated:
    """The first message of every incarnation: who it is. Sent by its registry."""

    kind: str
    key: Any


@dataclass(slots=True)
class Configure:
    """Add kinds (name -> actor class) and/or change the timing. Local only (classes
    do not cross processes). Answered with ``Configured``."""

    kinds: Mapping[str, Any] | None = None
    idle_timeout: float | None = None
    sweep_interval: float | None = None
    #: True: turn passivation off (``idle_timeout=None`` means "leave unchanged")
    never_passivate: bool = False


@dataclass(slots=True, frozen=True)
class Handoff:
    """To an entity its registry has just forgotten (passivated, or its key moved to
    another node), instead of ``ActorExitRequest``, when its class sets
    ``finish_before_exit = True``: finish what is in flight (a storage write whose
    answer is still to come), answer its askers, then ``self.exit()``. No new request
    reaches it through the registry any more."""


@dataclass(slots=True, frozen=True)
class Configured:
    kinds: tuple[str, ...]
    idle_timeout: float | None
    sweep_interval: float | None


@dataclass(slots=True, frozen=True)
class GetRegistryStats:
    pass


@dataclass(slots=True, frozen=True)
class RegistryStats:
    entries: int  # live entities (and crashed ones not yet noticed by a sweep or Route)
    activations: int
    passivations: int
    crashes: int  # entities that exited abnormally


@dataclass(slots=True, frozen=True)
class _SweepMore:
    """The registry's note to itself: the current sweep has more entities to check."""


_SWEEP = "registry-sweep"


def _freeze(key: Any) -> Any:
    """msgpack turns tuples into lists; a key must be hashable and compare equal."""
    return tuple(_freeze(k) for k in key) if isinstance(key, list) else key


# -- the registry ---------------------------------------------------------------------------


class Registry(Actor):
    #: kind name -> actor class (or Thespian's dotted class name)
    kinds: ClassVar[Mapping[str, Any]] = {}
    #: seconds without a turn after which an entity is passivated; None: never
    idle_timeout: ClassVar[float | None] = 300.0
    #: seconds between sweeps; None: idle_timeout / 2 (so passivation happens between
    #: idle_timeout and 1.5 x idle_timeout after the last turn)
    sweep_interval: ClassVar[float | None] = None
    #: entities checked per registry turn during a sweep
    sweep_batch: ClassVar[int] = 5_000

    def __init__(self) -> None:
        super().__init__()
        self._kinds: dict[str, Any] = dict(type(self).kinds)
        self._idle: float | None = type(self).idle_timeout
        self._interval: float | None = type(self).sweep_interval
        self._entities: dict[tuple[str, Any], Address] = {}
        self._timer: int | None = None
        self._sweep_keys: list[tuple[str, Any]] | None = None
        self._sweep_pos = 0
        self._activations = 0
        self._passivations = 0
        self._crashes = 0

    # -- the mailbox -------------------------------------------------------------------

    def receiveMessage(self, msg: Any, sender: Any) -> None:
        cls = msg.__class__
        if cls is Route:
            try:  # the hot path: a live entity
                address = self._entities.get((msg.kind, msg.key))
            except TypeError:  # an unhashable key (a list from msgpack): _find sorts it out
                address = None
            if address is None or not address._cell.alive:
                address = self._find(msg.kind, msg.key, msg.message, sender)
                if address is None:
                    return
            self._forward(address, msg.message, sender)
        elif cls is Locate:
            address = self._find(msg.kind, msg.key, None, sender)
            if address is not None:
                address._cell.last_turn = max(address._cell.last_turn, self._now())
                self._reply(sender, Located(msg.kind, _freeze(msg.key), address))
        elif cls is Timeout and msg.payload == _SWEEP:
            if msg.ref == self._timer and self._sweep_keys is None:
                self._sweep_start()
        elif cls is _SweepMore:
            self._sweep_step()
        elif cls is ChildActorExited:
            reason = getattr(msg, "reason", None)
            if not is_normal_exit(reason):
                self._crashes += 1
                log.info("entity %s exited: %r", msg.childAddress, reason)
            # Its entry (if still there) is dropped by the next Route/Locate or sweep
            # that finds the cell dead: no reverse map, one dict entry per entity.
        elif cls is Configure:
            self._configure(msg, sender)
        elif cls is GetRegistryStats:
            self._reply(sender, RegistryStats(len(self._entities), self._activations,
                                              self._passivations, self._crashes))
        elif isinstance(msg, ActorExitRequest):
            pass  # the base stops every entity (each gets ActorExitRequest), then us
        elif isinstance(msg, PoisonMessage):
            # e.g. on Activated; the type, not the message (it may carry a token)
            failed = msg.poisonMessage
            log.warning("registry.entity_failed", extra={
                "msg_type": type(failed).__name__, "trace": getattr(failed, "trace", None)})
        else:
            self.receiveOther(msg, sender)

    def receiveOther(self, msg: Any, sender: Any) -> None:
        """Anything that is not the registry's own (override in a subclass: its own
        timers, requests, ...). The default logs and drops it."""
        log.warning("registry %s ignored an unexpected %s from %s", self.myAddress,
                    type(msg).__name__, sender)

    # -- find or activate -----------------------------------------------------------------

    def _find(self, kind: Any, key: Any, message: Any, sender: Any) -> Address | None:
        if key.__class__ is list:
            key = _freeze(key)
        ident = (kind, key)
        try:
            address = self._entities.get(ident)
        except TypeError:
            self._reply(sender, RegistryError(kind, key, f"unhashable key {key!r}", message))
            return None
        if address is not None:
            cell = address._cell
            if cell is not None and cell.alive:
                return address
            del self._entities[ident]  # crashed or stopped itself: restart on demand
        actor_class = self._kinds.get(kind)
        if actor_class is None:
            self._reply(sender, RegistryError(
                kind, key, f"unknown kind {kind!r} (known: {sorted(self._kinds)})", message))
            return None
        try:
            address = self.createActor(actor_class)
        except Exception as err:  # a bad class name: the base raises before creating
            self._reply(sender, RegistryError(kind, key, f"cannot create {kind!r}: {err!r}",
                                              message))
            return None
        if not address._cell.alive:  # its constructor raised (logged by the base)
            self._reply(sender, RegistryError(
                kind, key, f"{kind!r} entity {key!r} failed to start", message))
            return None
        self.send(address, Activated(kind, key))  # first in its (new, empty) mailbox
        self._entities[ident] = address
        self._activations += 1
        if self._timer is None and self._idle is not None:
            self._timer = self.start_timer(self._sweep_every(), _SWEEP, repeat=True)
        return address

    def _forward(self, address: Address, message: Any, sender: Any) -> None:
        try:
            self.forward(address, message, sender)
        except MailboxFull:
            # The base raises for an external sender (a synchronous tell would); the tell
            # to us already returned, so hand the bounce back as a message instead.
            if sender is not None:
                cell = address._cell
                self.send(sender, Overloaded(address, message, cell.capacity))
            else:
                log.warning("registry.dropped", extra={
                    "reason": "entity overloaded, no sender to tell", "target": str(address),
                    "msg_type": type(message).__name__,
                    "trace": getattr(message, "trace", None)})

    def _reply(self, to: Any, message: Any) -> None:
        if to is not None:
            self.send(to, message)
        else:
            log.warning("registry.dropped", extra={"reason": "no one to tell",
                                                    "msg_type": type(message).__name__})

    # -- passivation ----------------------------------------------------------------------

    def _now(self) -> float:
        return self._myRef.base.loop.time()

    def _sweep_every(self) -> float:
        return self._interval if self._interval is not None else self._idle / 2

    def _sweep_start(self) -> None:
        if not self._entities:
            self.cancel_timer(self._timer)  # restarted by the next activation
            self._timer = None
            return
        self._sweep_keys = list(self._entities)
        self._sweep_pos = 0
        self._sweep_step()

    def _sweep_step(self) -> None:
        keys = self._sweep_keys
        if keys is None:
            return
        idle = self._idle
        start = self._sweep_pos
        end = min(start + self.sweep_batch, len(keys))
        entities = self._entities
        now = self._now()
        for ident in keys[start:end]:
            address = entities.get(ident)
            if address is None:
                continue  # gone since the sweep began
            cell = address._cell
            if cell is None or not cell.alive:
                del entities[ident]
                continue
            if (idle is None or cell.mailbox or cell.scheduled or cell.timers
                    or now - cell.last_turn < idle or self._leased(cell)):
                continue
            # Forget first, then ask it to exit: see the module docstring, 1-4.
            del entities[ident]
            self._passivations += 1
            self.stop_entity(address)
        if end < len(keys):
            self._sweep_pos = end
            self.send(self.myAddress, _SweepMore())  # behind the Routes already waiting
        else:
            self._sweep_keys = None

    def stop_entity(self, address: Address) -> None:
        """Stop an entity the registry has just forgotten: ``Handoff`` if its class
        finishes its in-flight work first (``finish_before_exit``), else
        ``ActorExitRequest``."""
        cell = address._cell
        instance = cell.instance if cell is not None else None
        if getattr(instance, "finish_before_exit", False):
            self.send(address, Handoff())
        else:
            self.send(address, ActorExitRequest())

    @staticmethod
    def _leased(cell: Any) -> bool:
        monitors = cell.monitors
        if not monitors:
            return False
        for watcher in monitors.values():
            wcell = watcher._cell
            if wcell is not None and wcell.alive:
                return True
            if watcher.node != cell.address.node:
                # another node's monitor agent: a remote watcher holds the lease until
                # it demonitors, ends, or its node leaves (``UvloopSystemBase.node_down``)
                return True
        return False  # only dead watchers (the base does not drop their monitors)

    # -- configuration --------------------------------------------------------------------

    def _configure(self, msg: Configure, sender: Any) -> None:
        if msg.kinds:
            self._kinds.update(msg.kinds)
        if msg.never_passivate:
            self._idle = None
        elif msg.idle_timeout is not None:
            self._idle = float(msg.idle_timeout)
        if msg.sweep_interval is not None:
            self._interval = float(msg.sweep_interval)
        if self._timer is not None:
            self.cancel_timer(self._timer)
            self._timer = None
        if self._idle is not None and self._entities:
            self._timer = self.start_timer(self._sweep_every(), _SWEEP, repeat=True)
        self._reply(sender, Configured(tuple(sorted(self._kinds)), self._idle,
                                       None if self._idle is None else self._sweep_every()))
