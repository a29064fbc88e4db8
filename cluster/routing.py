"""Any node routes to any entity: a registry that serves the entities placed on its own
node and hands the others to their owner's registry over the data plane.

Senders do not change: they send ``Route(kind, key, message)`` (or ``Locate``) to their
node's registry, as on one node. For a *placed* kind the registry asks the cluster view
who owns the key (rendezvous hashing over live members, ``cluster.placement``); if that
is another node, it forwards ``Placed(request)`` to that node's registry, at the
well-known ``ENTITY_REGISTRY_ID``, keeping the original sender, so the entity answers the
sender directly, across nodes, and never through a registry.

Views of the membership may disagree for a moment (a change on its way). A registry that
gets a ``Placed`` request for a key it no longer owns by its own view passes it on to
the owner it sees, up to ``MAX_HOPS`` times in all, then serves it where it is: a node
that just handed a guild over does not bring it back for a sender whose view lags, and
two views that disagree cannot bounce a message forever.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from actors.address import Address
from actors.registry import Locate, Registry, RegistryError, Route, _freeze
from actors.wire import wire_type

log = logging.getLogger("greenroom.cluster.routing")

#: Every node's entity registry has this well-known actor id.
ENTITY_REGISTRY_ID = -2
#: Forwards of one request between registries before it is served where it is.
MAX_HOPS = 2


@wire_type("registry.placed")
@dataclass(slots=True)
class Placed:
    """A ``Route`` or ``Locate`` another node's registry sent here because this node
    owns the entity by its view; ``hops``: registry-to-registry forwards so far."""

    request: Any
    hops: int = 1


@dataclass(slots=True, frozen=True)
class Rebalance:
    """To the registry, when the placement changed (``rebalance_on_change``): stop the
    entities this node no longer owns. Their watchers' monitors fire (sessions
    re-subscribe), and the next ``Route`` activates them on their new owner, which
    loads their state from storage."""


def rebalance_on_change(view: Any, base: Any, registry: Address) -> None:
    """Have ``registry`` hand over what it no longer owns after each membership change
    of ``view`` (a ``cluster.view.ClusterView``; the listener runs on the loop)."""
    view.listen(lambda change: base.deliver(registry, Rebalance(), None))


class PlacedRegistry(Registry):
    #: kind -> the placement key (an int) of an entity key; raise ValueError for a key
    #: that cannot be placed. Kinds not listed live wherever they are asked for.
    placed: ClassVar[Mapping[str, Callable[[Any], int]]] = {}
    #: ``cluster.view.ClusterView`` (None: a single process; everything is local)
    view: ClassVar[Any] = None

    def receiveMessage(self, msg: Any, sender: Any) -> None:
        cls = msg.__class__
        hops = 0
        if cls is Placed:
            hops = msg.hops
            msg = msg.request
            cls = msg.__class__
            if cls is not Route and cls is not Locate:
                if sender is not None:
                    self.send(sender, RegistryError(None, None, "Placed carries a Route or "
                                                    f"a Locate, not {cls.__name__}"))
                return
            if msg.key.__class__ is list:  # a tuple key that crossed as msgpack
                msg.key = _freeze(msg.key)
        if (cls is Route or cls is Locate) and hops < MAX_HOPS and self.view is not None:
            place = self.placed.get(msg.kind)
            if place is not None:
                view = self.view
                try:
                    home = view.owner(place(msg.key))
                except (TypeError, ValueError) as err:
                    if sender is not None:
                        self.send(sender, RegistryError(
                            msg.kind, msg.key, f"cannot place {msg.kind!r} {msg.key!r}: {err}",
                            msg.message if cls is Route else None))
                    return
                if home != view.me:
                    self.forward(Address(home, ENTITY_REGISTRY_ID), Placed(msg, hops + 1),
                                 sender)
                    return
        super().receiveMessage(msg, sender)

    def receiveOther(self, msg: Any, sender: Any) -> None:
        if msg.__class__ is Rebalance:
            self._rebalance()
        else:
            super().receiveOther(msg, sender)

    def _rebalance(self) -> None:
        view = self.view
        if view is None:
            return
        moved = 0
        for ident, address in list(self._entities.items()):
            place = self.placed.get(ident[0])
            if place is None:
                continue
            try:
                home = view.owner(place(ident[1]))
            except (TypeError, ValueError):
                continue
            if home != view.me:
                # As a passivation: forget first, then ask it to exit (see Registry);
                # a channel finishes its pending writes first (``Handoff``).
                del self._entities[ident]
                self.stop_entity(address)
                moved += 1
        if moved:
            log.info("node %s: %d entities moved to their new owners", view.me, moved)
