"""Actors the cluster tests start as node services (imported by the node processes)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from thespian.actors import ActorSystemMessage

from actors import Actor
from actors.address import Address
from actors.wire import wire_type
from observability import inject_current, span_from


@wire_type("test.relay")
@dataclass
class Relay:
    """Pass along ``path``; each hop opens a span whose parent is the previous hop's."""

    path: list[Address]
    hops: list[str]
    reply_to: Address | None = None
    trace: dict | None = None


class Hop(Actor):
    def receiveMessage(self, msg: Any, sender: Any) -> None:
        if isinstance(msg, Relay):
            node = self.myAddress.node
            with span_from(msg.trace, f"hop {node}", node=node):
                reply_to = msg.reply_to or sender
                hops = msg.hops + [node]
                if msg.path:
                    self.send(msg.path[0], Relay(msg.path[1:], hops, reply_to, inject_current()))
                else:
                    self.send(reply_to, Relay([], hops, None, inject_current()))


class Echo(Actor):
    def receiveMessage(self, msg: Any, sender: Any) -> None:
        # Application messages only: echoing the ActorExitRequest its supervisor sends
        # at shutdown would end that supervisor before it answers Stop with Stopped.
        if not isinstance(msg, ActorSystemMessage):
            self.send(sender, msg)
