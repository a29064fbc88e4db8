"""Any node routes to any entity: ``PlacedRegistry`` on two nodes in this process (real
data-plane sockets), placement by rendezvous over the live members."""

from __future__ import annotations

import asyncio

import pytest

from actors import Activated, Actor, Down
from actors.registry import Configure, Locate, Located, RegistryError, Route
from cluster.messages import Members, NodeConfig
from cluster.node import NodeThread
from cluster.placement import Placement
from cluster.routing import (
    ENTITY_REGISTRY_ID,
    MAX_HOPS,
    Placed,
    PlacedRegistry,
    rebalance_on_change,
)

SECRET = b"routing-secret"


class Entity(Actor):
    """Answers "where" with (its node, its key)."""

    def receiveMessage(self, msg, sender):
        if isinstance(msg, Activated):
            self.key = msg.key
        elif msg == "where":
            self.send(sender, [self.myAddress.node, self.key])


def run(thread, fn, *args, timeout=10):
    async def call():
        result = fn(*args)
        return await result if asyncio.iscoroutine(result) else result
    return asyncio.run_coroutine_threadsafe(call(), thread.loop).result(timeout)


def ask(thread, target, msg):
    return run(thread, thread.node.base.ask_async, target, msg, 5, timeout=10)


@pytest.fixture
def nodes():
    threads = {name: NodeThread(NodeConfig(name, SECRET, settings={"gateway": {}}))
               for name in ("ra", "rb")}
    for t in threads.values():
        t.start()
    members = Members({n: (t.address, 1) for n, t in threads.items()},
                      {n: {"gateway": "ws://test"} for n in threads})
    registries = {}
    for name, t in threads.items():
        run(t, t.node.set_peers, members.data_addresses())
        run(t, t.node.set_members, members)
        cls = type("Reg", (PlacedRegistry,), {"view": t.node.view,
                                              "placed": {"thing": int}})
        registries[name] = run(t, t.node.base.create_actor, None, cls, None, None,
                               ENTITY_REGISTRY_ID)
        assert ask(t, registries[name], Configure(kinds={"thing": Entity}))
        run(t, rebalance_on_change, t.node.view, t.node.base, registries[name])
    yield threads, registries
    for t in threads.values():
        t.stop()


def keys_owned_by(node: str, count: int) -> list[int]:
    placement = Placement(["ra", "rb"])
    return [k for k in range(1, 1000) if placement.owner(k) == node][:count]


def test_a_route_from_any_node_reaches_the_owner_and_the_answer_comes_back(nodes):
    threads, registries = nodes
    for owner in ("ra", "rb"):
        for key in keys_owned_by(owner, 3):
            for via in ("ra", "rb"):
                answer = ask(threads[via], registries[via], Route("thing", key, "where"))
                assert answer == [owner, key], (via, key)


def test_locate_names_the_entity_on_its_owner(nodes):
    threads, registries = nodes
    key = keys_owned_by("rb", 1)[0]
    located = ask(threads["ra"], registries["ra"], Locate("thing", key))
    assert isinstance(located, Located) and located.address.node == "rb"
    assert ask(threads["ra"], located.address, "where") == ["rb", key]


def test_a_stale_sender_is_corrected_and_views_that_disagree_cannot_bounce(nodes):
    threads, registries = nodes
    key = keys_owned_by("rb", 1)[0]
    # a sender whose view lags sent ra what rb owns: ra passes it on to rb
    answer = ask(threads["rb"], registries["ra"], Placed(Route("thing", key, "where")))
    assert answer == ["rb", key]
    # after MAX_HOPS forwards a request is served where it is, whatever that node thinks
    answer = ask(threads["rb"], registries["ra"],
                 Placed(Route("thing", key, "where"), MAX_HOPS))
    assert answer == ["ra", key]


def test_a_key_that_cannot_be_placed_is_a_clear_error(nodes):
    threads, registries = nodes
    answer = ask(threads["ra"], registries["ra"], Route("thing", "not-a-number", "where"))
    assert isinstance(answer, RegistryError) and "cannot place 'thing'" in answer.reason
    bad = ask(threads["ra"], registries["ra"], Placed("nonsense"))
    assert isinstance(bad, RegistryError) and "Route or a Locate" in bad.reason


def test_when_the_owner_leaves_its_keys_are_served_by_the_survivor(nodes):
    threads, registries = nodes
    key = keys_owned_by("rb", 1)[0]
    a = threads["ra"]
    assert ask(a, registries["ra"], Route("thing", key, "where")) == ["rb", key]
    alone = Members({"ra": (a.address, 1)}, {"ra": {"gateway": "ws://test"}})
    run(a, a.node.set_members, alone)
    assert ask(a, registries["ra"], Route("thing", key, "where")) == ["ra", key]


class Watcher(Actor):
    def receiveMessage(self, msg, sender):
        if isinstance(msg, tuple) and msg[0] == "watch":
            self.monitor(msg[1])
            self.waiting = sender
        elif isinstance(msg, Down):
            self.send(self.waiting, msg.reason)


def test_an_entity_whose_owner_changes_is_stopped_and_comes_back_on_the_new_owner(nodes):
    threads, registries = nodes
    a = threads["ra"]
    key = keys_owned_by("ra", 1)[0]
    old = ask(a, registries["ra"], Locate("thing", key)).address
    assert old.node == "ra"
    watcher = run(a, a.node.base.create_actor, None, Watcher, None, None)
    down = asyncio.run_coroutine_threadsafe(
        a.node.base.ask_async(watcher, ("watch", old), 5), a.loop)
    # rb becomes the only host: ra hands its entity over
    rb_only = Members({n: (t.address, 1) for n, t in threads.items()},
                      {"rb": {"gateway": "ws://test"}})
    run(a, a.node.set_members, rb_only)
    assert down.result(10) == "shutdown"  # its watcher hears it leave
    run(threads["rb"], threads["rb"].node.set_members, rb_only)  # both views agree
    assert ask(a, registries["ra"], Route("thing", key, "where")) == ["rb", key]


def test_a_channel_is_placed_by_its_guild():
    from gateway.channel import channel_key, placement_key

    assert placement_key("channel", channel_key(10, 5)) == placement_key("guild", 10) == 10
    assert placement_key("channel", [10, 5]) == 10  # as it arrives from another node
    assert placement_key("channel", channel_key(None, 5)) == 5  # no guild: by its own id
    with pytest.raises(ValueError, match=r"\(guild_id, channel_id\)"):
        placement_key("channel", 5)
    with pytest.raises(ValueError, match="is its id"):
        placement_key("guild", "10")
