"""One node's view of the cluster: the live members, who owns what, and change events.

The membership actor tells every node the whole member set (``Members``) whenever it
changes; ``ClusterView.update`` turns that into a ``MembershipChange`` (who joined, who
left, who came back as a new process) and a new ``Placement``, and calls the listeners.
Everything that asks "who owns guild G now" asks ``view.owner(G)``; everything that must
react to a node leaving subscribes with ``view.listen``. It runs on the node's event loop
(``Node.set_members``), so readers on that loop never see a half-applied change.

Entities are placed on the members that host them: nodes whose ``NodeUp.info`` names a
``"gateway"`` (a client node, such as ``cluster.client.ClusterClient``, hosts none).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from cluster.messages import Members
from cluster.placement import Placement

log = logging.getLogger("greenroom.cluster.view")

#: The ``NodeUp.info`` key that marks a node as a host of guild and channel actors.
HOSTS_ENTITIES = "gateway"


@dataclass(frozen=True)
class MembershipChange:
    joined: frozenset[str]
    #: members that are gone: their actors are gone, monitors on them fire
    left: frozenset[str]
    #: members that came back as a new process (a new pid): their old actors are gone
    restarted: frozenset[str]
    placement: Placement | None

    @property
    def gone(self) -> frozenset[str]:
        """The incarnations that ended (``left`` and ``restarted``)."""
        return self.left | self.restarted


class ClusterView:
    def __init__(self, me: str, *, hosts_entities: bool = False) -> None:
        self.me = me
        self.members: Members = Members({})
        self._hosts_me = hosts_entities
        #: None until some member hosts entities (then every entity would be local)
        self.placement: Placement | None = Placement([me]) if hosts_entities else None
        self._listeners: list[Callable[[MembershipChange], None]] = []

    def owner(self, key: int) -> str:
        """The node that owns ``key`` now (this node when no placement is known yet)."""
        placement = self.placement
        return self.me if placement is None else placement.owner(key)

    def listen(self, callback: Callable[[MembershipChange], None]) -> None:
        """Call ``callback(change)`` after each change of the member set or of the
        nodes that host entities (on the node's loop, the new placement in force)."""
        self._listeners.append(callback)

    def update(self, members: Members) -> MembershipChange:
        before = self.members.nodes
        after = members.nodes
        change = MembershipChange(
            joined=frozenset(after.keys() - before.keys()),
            left=frozenset(before.keys() - after.keys()),
            restarted=frozenset(n for n in after.keys() & before.keys()
                                if after[n] != before[n]),
            placement=self._placement(members))
        self.members = members
        before_hosts = None if self.placement is None else self.placement.nodes
        after_hosts = None if change.placement is None else change.placement.nodes
        if after_hosts != before_hosts:
            log.info("node %s: entities placed over %s", self.me, sorted(after_hosts or ()))
        self.placement = change.placement
        if change.joined or change.gone or after_hosts != before_hosts:
            for callback in list(self._listeners):
                try:
                    callback(change)
                except Exception:
                    log.exception("a membership listener failed")
        return change

    def _placement(self, members: Members) -> Placement | None:
        hosts = {n for n in members.nodes if HOSTS_ENTITIES in members.info.get(n, {})}
        if self._hosts_me:
            hosts.add(self.me)
        return Placement(hosts) if hosts else None
