"""gateway.ttl_map.TtlMap: entries expire, and the map stays within its bound."""

from __future__ import annotations

from gateway.ttl_map import TtlMap


def test_an_entry_lives_for_its_ttl_then_is_gone() -> None:
    now = [0.0]
    cache: TtlMap[str, int] = TtlMap(10.0, 4, lambda: now[0])
    cache.put("a", 1)
    now[0] = 9.9
    assert cache.get("a") == 1
    now[0] = 10.0
    assert cache.get("a") is None
    assert cache.get("never") is None


def test_a_full_map_drops_expired_entries_first_then_the_oldest() -> None:
    now = [0.0]
    cache: TtlMap[int, int] = TtlMap(10.0, 3, lambda: now[0])
    cache.put(1, 1)
    now[0] = 5.0
    cache.put(2, 2)
    cache.put(3, 3)
    now[0] = 11.0  # 1 has expired: it goes, the others stay
    cache.put(4, 4)
    assert len(cache) == 3 and [cache.get(k) for k in (2, 3, 4)] == [2, 3, 4]
    cache.put(5, 5)  # none expired: the oldest (2) goes
    assert len(cache) == 3 and cache.get(2) is None and cache.get(5) == 5
    cache.put(3, 30)  # an update renews, it does not grow the map
    cache.pop(4)
    assert len(cache) == 2 and cache.get(3) == 30 and cache.get(4) is None
