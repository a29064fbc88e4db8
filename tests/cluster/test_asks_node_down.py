"""An ask whose answer had to come from a node that leaves fails at once, not at its
timeout: asked directly, or routed (``Placed``) to the owner by the registry. Two nodes
in this process with real data-plane sockets (``test_routing``'s fixture)."""

from __future__ import annotations

import asyncio
import time

import pytest

from actors import Actor, Address, AskTimeout, NodeDownError, Reply
from actors.messages import NOCONNECTION
from actors.registry import GetRegistryStats, Locate, Route
from cluster.messages import Members
from tests.cluster.test_routing import ask, keys_owned_by, nodes, run  # noqa: F401

#: far above how long the test runs: an ask that "fails" by this timeout fails the test
LONG_ASK_S = 120.0


class Asker(Actor):
    """Asks on the test's behalf (``Actor.ask``) and reports how the ask ended."""

    def receiveMessage(self, msg, sender):
        if isinstance(msg, tuple) and msg[0] == "ask":
            self.requester = sender
            self.ask(msg[1], msg[2], LONG_ASK_S)
        elif isinstance(msg, AskTimeout):
            self.send(self.requester, ("failed", msg.reason))
        elif isinstance(msg, Reply):
            self.send(self.requester, ("answered", msg.message))


def wait_until_activated(thread, registry) -> None:
    """The request reached the other node's registry (its entity is activated)."""
    for _ in range(500):
        if ask(thread, registry, GetRegistryStats()).entries:
            return
        time.sleep(0.01)
    raise AssertionError("the request never reached the owner's registry")


def leave(thread, name: str) -> None:
    """``thread``'s view of the live members drops node ``name``."""
    alone = Members({thread.node.config.name: (thread.address, 1)},
                    {thread.node.config.name: {"gateway": "ws://test"}})
    assert name not in alone.nodes
    run(thread, thread.node.set_members, alone)


def test_a_routed_ask_fails_at_once_when_the_owner_leaves(nodes):  # noqa: F811
    threads, registries = nodes
    a = threads["ra"]
    key = keys_owned_by("rb", 1)[0]
    # rb's entity ignores "hush": only rb's departure can end this ask
    pending = asyncio.run_coroutine_threadsafe(
        a.node.base.ask_async(registries["ra"], Route("thing", key, "hush"), LONG_ASK_S),
        a.loop)
    wait_until_activated(threads["rb"], registries["rb"])
    leave(a, "rb")
    with pytest.raises(NodeDownError) as failed:
        pending.result(LONG_ASK_S / 2)
    assert failed.value.node == "rb"
    # the survivor now serves the key, and asks to it are answered
    assert ask(a, registries["ra"], Route("thing", key, "where")) == ["ra", key]


def test_an_actors_ask_to_a_remote_actor_fails_at_once_when_its_node_leaves(nodes):  # noqa: F811
    threads, registries = nodes
    a = threads["ra"]
    key = keys_owned_by("rb", 1)[0]
    located = ask(threads["rb"], registries["rb"], Locate("thing", key)).address
    target = Address(located.node, located.id)  # as decoded off the wire: no cell here
    asker = run(a, a.node.base.create_actor, None, Asker, None, None)
    outcome = asyncio.run_coroutine_threadsafe(
        a.node.base.ask_async(asker, ("ask", target, "hush"), LONG_ASK_S), a.loop)
    time.sleep(0.2)  # the request is on its way (not an assertion)
    leave(a, "rb")
    assert outcome.result(LONG_ASK_S / 2) == ("failed", NOCONNECTION)


def test_an_answered_ask_is_not_failed_when_the_node_leaves_later(nodes):  # noqa: F811
    threads, registries = nodes
    a = threads["ra"]
    key = keys_owned_by("rb", 1)[0]
    assert ask(a, registries["ra"], Route("thing", key, "where")) == ["rb", key]
    leave(a, "rb")
    assert not a.node.base._awaiting  # nothing is left waiting on rb
