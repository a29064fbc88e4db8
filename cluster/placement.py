"""Where an entity lives: rendezvous (highest-random-weight) hashing over live nodes.

Every node computes the owner of a key from the same member set with no coordination:
each node gets a weight ``hash(node, key)`` and the highest wins. When a node leaves,
only the keys it owned move (each to its own next-highest node, so they spread over
the survivors); when one joins, it takes only the keys for which it is now highest
(about ``1/N`` of them). Consistent-hash rings need virtual nodes for the same
balance; rendezvous needs none and N is small (node processes, not entities).

Pure: no I/O, no actors. ``Placement`` is an immutable view of the member set; the
node builds a new one on each membership change (``cluster.node.MembershipView``).
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable

_KEY = struct.Struct(">q")


def weight(node: str, key: int) -> int:
    """The rendezvous weight of ``key`` on ``node``: 64 bits of BLAKE2b (stable across
    processes and Python versions, unlike ``hash()``)."""
    digest = hashlib.blake2b(_KEY.pack(key), digest_size=8, key=node.encode()[:64]).digest()
    return int.from_bytes(digest, "big")


def owner(nodes: Iterable[str], key: int) -> str:
    """The node that owns ``key`` among ``nodes`` (ties, which need a 64-bit collision,
    go to the larger name so every node agrees)."""
    best: tuple[int, str] | None = None
    for node in nodes:
        candidate = (weight(node, key), node)
        if best is None or candidate > best:
            best = candidate
    if best is None:
        raise LookupError("no live node to place the key on")
    return best[1]


class Placement:
    """The owner of each key among one set of live nodes (owners are cached: a guild's
    owner is asked for on every routed message)."""

    __slots__ = ("nodes", "_cache")

    def __init__(self, nodes: Iterable[str]) -> None:
        self.nodes: frozenset[str] = frozenset(nodes)
        if not self.nodes:
            raise ValueError("a placement needs at least one node")
        self._cache: dict[int, str] = {}

    def owner(self, key: int) -> str:
        found = self._cache.get(key)
        if found is None:
            if len(self._cache) >= 1_000_000:
                self._cache.clear()  # a bound, not an LRU: recomputing is cheap
            found = self._cache[key] = owner(self.nodes, key)
        return found

    def __repr__(self) -> str:
        return f"Placement({sorted(self.nodes)})"
