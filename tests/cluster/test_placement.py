"""Rendezvous placement: balance, stability, and minimal movement on leave and join."""

from __future__ import annotations

from collections import Counter

import pytest

from cluster.placement import Placement, owner

KEYS = range(1_000_000_000, 1_000_000_000 + 20_000)


def test_every_node_agrees_and_order_of_members_does_not_matter():
    a = Placement(["n1", "n2", "n3"])
    b = Placement(["n3", "n1", "n2"])
    assert all(a.owner(k) == b.owner(k) == owner(("n2", "n3", "n1"), k) for k in KEYS)


def test_keys_spread_evenly_over_the_nodes():
    nodes = [f"n{i}" for i in range(1, 5)]
    counts = Counter(Placement(nodes).owner(k) for k in KEYS)
    assert set(counts) == set(nodes)
    share = len(KEYS) / len(nodes)
    assert all(abs(c - share) < 0.05 * share for c in counts.values()), counts


def test_a_node_leaving_moves_only_its_keys_and_spreads_them():
    before = Placement(["n1", "n2", "n3", "n4"])
    after = Placement(["n1", "n2", "n4"])
    moved = Counter()
    for k in KEYS:
        if before.owner(k) != "n3":
            assert after.owner(k) == before.owner(k)
        else:
            moved[after.owner(k)] += 1
    assert set(moved) == {"n1", "n2", "n4"}
    assert min(moved.values()) > 0.25 * sum(moved.values())


def test_a_node_joining_takes_only_keys_it_now_owns_about_one_in_n():
    before = Placement(["n1", "n2"])
    after = Placement(["n1", "n2", "n3"])
    taken = 0
    for k in KEYS:
        if after.owner(k) != before.owner(k):
            assert after.owner(k) == "n3"
            taken += 1
    assert abs(taken - len(KEYS) / 3) < 0.05 * len(KEYS)


def test_no_nodes_is_a_clear_error():
    with pytest.raises(ValueError, match="at least one node"):
        Placement([])
    with pytest.raises(LookupError, match="no live node"):
        owner([], 1)


def test_cluster_view_places_over_gateway_nodes_and_reports_changes():
    from cluster.messages import Members
    from cluster.view import ClusterView

    view = ClusterView("n1", hosts_entities=True)
    assert view.owner(42) == "n1"  # before any membership: everything is here
    changes = []
    view.listen(changes.append)
    gw = {"gateway": "ws://x"}
    first = Members({"n1": (("h", 1), 10), "n2": (("h", 2), 20), "client": (("h", 3), 30)},
                    {"n1": gw, "n2": gw})
    view.update(first)
    assert view.placement.nodes == {"n1", "n2"}  # a client node hosts nothing
    assert changes[-1].joined == {"n1", "n2", "client"}
    assert {view.owner(k) for k in KEYS} == {"n1", "n2"}
    view.update(Members({"n1": (("h", 1), 10), "n2": (("h", 9), 21)}, {"n1": gw, "n2": gw}))
    assert changes[-1].restarted == {"n2"} and changes[-1].left == {"client"}
    assert changes[-1].gone == {"n2", "client"}
    view.update(Members({"n1": (("h", 1), 10)}, {"n1": gw}))
    assert changes[-1].left == {"n2"} and all(view.owner(k) == "n1" for k in KEYS)
    count = len(changes)
    view.update(Members({"n1": (("h", 1), 10)}, {"n1": gw}))
    assert len(changes) == count  # no change, no event
