"""Monitors across nodes (two nodes in this process, real data-plane sockets): ``Down``
when the remote actor ends, when its node leaves the membership, and never after a
demonitor; a watcher that ends takes its remote monitors with it."""

from __future__ import annotations

import asyncio

import pytest

from actors import Actor, Down
from actors.address import Address
from cluster.messages import DIRECTORY_ID, Members, NodeConfig, Ping, Pong
from cluster.node import NodeThread

SECRET = b"monitor-secret"


class Target(Actor):
    def receiveMessage(self, msg, sender):
        if msg == "stop":
            self.exit("normal")
        elif msg == "crash":
            self.exit(("error", "boom"))


class Watcher(Actor):
    """Records its ``Down``s; ``downs`` answers them once ``want`` have arrived."""

    def __init__(self):
        super().__init__()
        self.downs = []
        self.waiting = None

    def receiveMessage(self, msg, sender):
        if isinstance(msg, Down):
            self.downs.append((msg.ref, msg.address, msg.reason))
            self._answer()
        elif isinstance(msg, tuple) and msg[0] == "watch":
            self.send(sender, self.monitor(msg[1]))
        elif isinstance(msg, tuple) and msg[0] == "unwatch-then-stop":
            self.demonitor(msg[1])
            self.send(msg[2], "stop")  # same link as the demonitor, behind it
            self.send(sender, True)
        elif isinstance(msg, tuple) and msg[0] == "downs":
            self.waiting = (sender, msg[1])
            self._answer()
        elif msg == "exit":
            self.exit("normal")

    def _answer(self):
        if self.waiting is not None and len(self.downs) >= self.waiting[1]:
            self.send(self.waiting[0], list(self.downs))
            self.waiting = None


def members(**nodes: NodeThread) -> Members:
    return Members({name: (t.address, 1) for name, t in nodes.items()})


def run(thread, fn, *args, timeout=10):
    async def call():
        result = fn(*args)
        return await result if asyncio.iscoroutine(result) else result
    return asyncio.run_coroutine_threadsafe(call(), thread.loop).result(timeout)


def ask(thread, target, msg, timeout=10):
    return run(thread, thread.node.base.ask_async, target, msg, timeout, timeout=timeout + 5)


def create(thread, cls):
    return run(thread, thread.node.base.create_actor, None, cls, None, None)


@pytest.fixture
def pair():
    a = NodeThread(NodeConfig("ma", SECRET))
    b = NodeThread(NodeConfig("mb", SECRET))
    a.start()
    b.start()
    both = members(ma=a, mb=b)
    for t in (a, b):
        run(t, t.node.set_peers, both.data_addresses())
        run(t, t.node.set_members, both)
    yield a, b
    a.stop()
    b.stop()


def synced(thread, node):
    """A round trip to ``node``'s directory over ``thread``'s link to it: whatever
    ``thread`` sent ``node`` before (a MonitorRemote, a DemonitorRemote) is handled."""
    assert isinstance(ask(thread, Address(node, DIRECTORY_ID), Ping()), Pong)


def monitors_on(thread, address):
    cell = thread.node.base.cells.get(address.id)
    return {} if cell is None or not cell.monitors else dict(cell.monitors)


def test_down_arrives_across_nodes_with_the_exit_reason(pair):
    a, b = pair
    watcher = create(a, Watcher)
    calm, crashing = create(b, Target), create(b, Target)
    ref1 = ask(a, watcher, ("watch", calm))
    ref2 = ask(a, watcher, ("watch", crashing))
    synced(a, "mb")  # both monitors are in place before the targets end
    run(b, b.node.base.tell_from_loop, calm, "stop")
    assert ask(a, watcher, ("downs", 1)) == [(ref1, calm, "normal")]
    run(b, b.node.base.tell_from_loop, crashing, "crash")
    assert ask(a, watcher, ("downs", 2))[1] == (ref2, crashing, ["error", "boom"])
    assert monitors_on(b, calm) == {} and a.node.base._remote_monitors == {}


def test_no_down_after_demonitor(pair):
    a, b = pair
    watcher = create(a, Watcher)
    target = create(b, Target)
    dropped = ask(a, watcher, ("watch", target))
    kept = ask(a, watcher, ("watch", target))
    synced(a, "mb")
    assert len(monitors_on(b, target)) == 2
    assert ask(a, watcher, ("unwatch-then-stop", dropped, target)) is True
    # ``dropped`` was registered first, so its Down would have come first
    assert ask(a, watcher, ("downs", 1)) == [(kept, target, "normal")]


def test_a_target_that_does_not_exist_is_noproc(pair):
    a, b = pair
    watcher = create(a, Watcher)
    ghost = Address("mb", 987654)
    ref = ask(a, watcher, ("watch", ghost))
    assert ask(a, watcher, ("downs", 1)) == [(ref, ghost, "noproc")]


def test_a_node_not_in_the_membership_is_noconnection_at_once(pair):
    a, _ = pair
    watcher = create(a, Watcher)
    elsewhere = Address("nowhere", 5)
    ref = ask(a, watcher, ("watch", elsewhere))
    assert ask(a, watcher, ("downs", 1)) == [(ref, elsewhere, "noconnection")]


def test_a_node_leaving_the_membership_fires_its_monitors_and_drops_its_watchers(pair):
    a, b = pair
    watcher_a, watcher_b = create(a, Watcher), create(b, Watcher)
    on_b, on_a = create(b, Target), create(a, Target)
    ref = ask(a, watcher_a, ("watch", on_b))
    ask(b, watcher_b, ("watch", on_a))
    synced(b, "ma")
    assert len(monitors_on(a, on_a)) == 1  # b's agent watches on_a for watcher_b
    # mb leaves a's view, ma leaves b's (each sees the other go)
    run(a, a.node.set_members, members(ma=a))
    run(b, b.node.set_members, members(mb=b))
    assert ask(a, watcher_a, ("downs", 1)) == [(ref, on_b, "noconnection")]
    assert ask(b, watcher_b, ("downs", 1))[0][2] == "noconnection"
    assert monitors_on(a, on_a) == {}  # no lease held for a node that is gone


def test_a_restarted_node_counts_as_gone(pair):
    a, b = pair
    watcher = create(a, Watcher)
    target = create(b, Target)
    ref = ask(a, watcher, ("watch", target))
    again = Members({"ma": (a.address, 1), "mb": (b.address, 2)})  # a new pid for mb
    run(a, a.node.set_members, again)
    assert ask(a, watcher, ("downs", 1)) == [(ref, target, "noconnection")]


def test_a_watcher_that_ends_takes_its_remote_monitors_with_it(pair):
    a, b = pair
    watcher = create(a, Watcher)
    target = create(b, Target)
    ask(a, watcher, ("watch", target))
    synced(a, "mb")
    assert len(monitors_on(b, target)) == 1
    run(a, a.node.base.tell_from_loop, watcher, "exit")
    synced(a, "mb")  # the watcher's exit sent a DemonitorRemote ahead of this
    assert monitors_on(b, target) == {}
