"""Who is in the cluster and where their data planes listen: one membership actor per
host (a Thespian actor, global name ``MEMBERSHIP`` in that host's ActorSystem), joined
across hosts through a Thespian convention.

On one host the node actors report ``NodeUp`` and the host's supervisor reports each
node process that exits (``NodeDown``), so a SIGKILLed node is withdrawn at once and
announced again when it is restarted. The membership actor keeps its state in memory
only: when it is (re)started it asks its supervisor for the children
(``WhichChildren``) and asks each node actor among them to send its ``NodeUp`` again
(``Reannounce``), so a new incarnation learns every node of its host at once. Across hosts, every ActorSystem advertises its
host id and its membership actor's address as capabilities; a host that joins sets the
leader's admin address as ``Convention Address.IPv4`` *after* those, so the leader's
``ActorSystemConventionUpdate`` carries them. Thespian's convention is a star (the
leader hears of every member, a member only of the leader), so each host reports its
own nodes to the leader (``HostNodes``) and the leader relays every host's nodes to all
the others. A host that leaves the convention takes its nodes with it.

The convention notices a host that vanished without saying so only after minutes;
nodes learn that within a second from heartbeats (``cluster.heartbeat``).
"""

from __future__ import annotations

import logging
from typing import Any

from thespian.actors import Actor as ThespianActor
from thespian.actors import ActorSystemConventionUpdate, ChildActorExited

from cluster.messages import (
    MEMBERSHIP,
    GetMembers,
    HostNodes,
    Members,
    MembershipConfig,
    NodeDown,
    NodeUp,
    Reannounce,
)
from supervision import Children, Supervisor, WhichChildren

log = logging.getLogger("greenroom.membership")

CONVENTION_ADDRESS = "Convention Address.IPv4"  # Thespian's multiprocTCPBase capability
HOST_CAPABILITY = "greenroom.host"  # this host's id, unique in the cluster
MEMBERSHIP_CAPABILITY = "greenroom.membership"  # this host's membership actor


class Membership(ThespianActor):
    def __init__(self) -> None:
        self.host = ""
        self.leader = True
        self.local: dict[str, NodeUp] = {}  # this host's nodes and clients
        self.remote: dict[str, dict[str, NodeUp]] = {}  # host id -> its nodes
        self.peers: dict[str, Any] = {}  # host id -> its membership actor

    def receiveMessage(self, msg: Any, sender: Any) -> None:
        if isinstance(msg, NodeUp):
            if self.local.get(msg.name) != msg:  # a re-sent NodeUp changes nothing
                self.local[msg.name] = msg
                self._local_changed()
            if msg.actor is None:
                self.send(sender, self._members())
        elif isinstance(msg, NodeDown):
            gone = [n for n, up in self.local.items() if up.actor == msg.actor]
            for name in gone:
                log.warning("membership %s: node %s exited", self.host, name)
                del self.local[name]
            if gone:
                self._local_changed()
        elif isinstance(msg, GetMembers):
            self.send(sender, self._members())
        elif isinstance(msg, HostNodes):
            self._host_nodes(msg)
        elif isinstance(msg, ActorSystemConventionUpdate):
            self._convention(msg)
        elif isinstance(msg, Children):
            for _id, child, _type in msg.children:
                if child is not None and child != self.myAddress:
                    self.send(child, Reannounce())
        elif isinstance(msg, MembershipConfig):
            self._configure(msg)
            # the supervisor sends the init: its other children are this host's nodes
            self.send(sender, WhichChildren())

    def _configure(self, config: MembershipConfig) -> None:
        self.host = config.host_id
        self.leader = config.join is None
        self.updateCapability(HOST_CAPABILITY, config.host_id)
        self.updateCapability(MEMBERSHIP_CAPABILITY, self.myAddress)
        self.notifyOnSystemRegistrationChanges(True)
        if config.join:
            # last: the registration that this triggers carries the two above
            self.updateCapability(CONVENTION_ADDRESS, config.join)
            log.info("membership %s: joining the convention at %s", self.host, config.join)

    def _convention(self, update: ActorSystemConventionUpdate) -> None:
        caps = update.remoteCapabilities or {}
        host, peer = caps.get(HOST_CAPABILITY), caps.get(MEMBERSHIP_CAPABILITY)
        if not host or peer is None:
            return  # an ActorSystem that is not a greenroom host
        if host == self.host:
            log.error("membership %s: another host in the convention has the same id; "
                      "give each host its own --name", self.host)
            return
        if update.remoteAdded:
            log.info("membership %s: host %s joined the convention", self.host, host)
            self.peers[host] = peer
            known = {self.host: dict(self.local)}
            if self.leader:
                known.update((h, nodes) for h, nodes in self.remote.items() if h != host)
            self.send(peer, HostNodes(known))
        else:
            log.warning("membership %s: host %s left the convention", self.host, host)
            self.peers.pop(host, None)
            self._host_nodes(HostNodes({host: {}}))

    def _host_nodes(self, msg: HostNodes) -> None:
        changed = False
        for host, nodes in msg.hosts.items():
            if host == self.host or self.remote.get(host, {}) == nodes:
                continue
            changed = True
            if nodes:
                self.remote[host] = dict(nodes)
            else:
                self.remote.pop(host, None)
        if not changed:
            return
        if self.leader:  # the convention is a star: the leader relays
            for host, peer in self.peers.items():
                if host not in msg.hosts:
                    self.send(peer, msg)
        self._announce()

    def _local_changed(self) -> None:
        report = HostNodes({self.host: dict(self.local)})
        for peer in self.peers.values():
            self.send(peer, report)
        self._announce()

    def _announce(self) -> None:
        members = self._members()
        for up in self.local.values():
            if up.actor is not None:
                self.send(up.actor, members)

    def _members(self) -> Members:
        nodes: dict[str, NodeUp] = {}
        for host_nodes in self.remote.values():
            nodes.update(host_nodes)
        nodes.update(self.local)
        return Members({n: (tuple(u.data_address), u.pid) for n, u in nodes.items()},
                       {n: dict(u.info) for n, u in nodes.items() if u.info},
                       frozenset(n for n, u in nodes.items() if u.actor is None))


class NodeSupervisor(Supervisor):
    """The host's supervisor of its membership actor and node processes: each child
    that exits is reported to the membership actor before it is restarted, so the
    cluster sees "node X left" even when it comes back 50 ms later as a new process."""

    def receiveMessage(self, msg: Any, sender: Any) -> None:
        if isinstance(msg, ChildActorExited):
            membership = self._find_id("membership")
            if membership is not None and membership.address not in (None, msg.childAddress):
                self.send(membership.address, NodeDown(msg.childAddress))
        super().receiveMessage(msg, sender)


__all__ = ["MEMBERSHIP", "Membership", "NodeSupervisor"]
