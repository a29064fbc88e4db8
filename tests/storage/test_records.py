"""Records (migration 6, ``storage.records``) on both backends: get/put/delete, listing
in key order by prefix and cursor, expiry, and one atomic insert under contention."""

from __future__ import annotations

import asyncio
import time

import pytest

from storage.base import Storage
from storage.records import key_of


def test_records_are_read_listed_and_deleted_in_key_order(aio, storage: Storage, ids) -> None:  # type: ignore[no-untyped-def]
    scope = ids.now()

    async def go() -> None:
        assert await storage.get_record("t", scope, "a") is None
        for n in (10, 9, 100, 1):
            await storage.put_record("t", scope, key_of("x", n), {"n": n, "b": b"\x00"})
        await storage.put_record("t", scope, key_of("y", 1), {"n": -1})
        await storage.put_record("u", scope, key_of("x", 1), {"other": True})
        listed = await storage.list_records("t", scope, prefix="x:")
        assert [v["n"] for _, v in listed] == [1, 9, 10, 100]
        assert listed[0][1]["b"] == b"\x00"
        page = await storage.list_records("t", scope, prefix="x:", after=listed[1][0], limit=1)
        assert [v["n"] for _, v in page] == [10]
        assert len(await storage.list_records("t", scope)) == 5
        await storage.put_record("t", scope, key_of("x", 9), {"n": 99})  # replaces
        assert await storage.get_record("t", scope, key_of("x", 9)) == {"n": 99}
        await storage.delete_record("t", scope, key_of("x", 9))
        assert await storage.get_record("t", scope, key_of("x", 9)) is None
        await storage.delete_records("t", scope, prefix="x:")
        assert [k for k, _ in await storage.list_records("t", scope)] == [key_of("y", 1)]
        await storage.delete_records("t", scope)
        assert await storage.list_records("t", scope) == []
        assert await storage.get_record("u", scope, key_of("x", 1)) == {"other": True}

    aio.run(go())


def test_one_insert_wins_and_an_expired_record_is_absent(aio, storage: Storage, ids) -> None:  # type: ignore[no-untyped-def]
    scope = ids.now()

    async def go() -> None:
        results = await asyncio.gather(*(
            storage.insert_record_if_absent("once", scope, "k", {"by": i}) for i in range(6)))
        winners = [value for inserted, value in results if inserted]
        assert len(winners) == 1
        assert all(value == winners[0] for _, value in results)
        await storage.put_record("once", scope, "brief", {"v": 1}, ttl_s=2)
        assert await storage.get_record("once", scope, "brief") == {"v": 1}
        await asyncio.sleep(2.2)
        assert await storage.get_record("once", scope, "brief") is None
        assert await storage.list_records("once", scope, prefix="brief") == []
        inserted, value = await storage.insert_record_if_absent("once", scope, "brief", {"v": 2})
        assert inserted and value == {"v": 2}

    aio.run(go())


@pytest.mark.parametrize("bad", [("", 1, "k"), ("t", 1 << 63, "k"), ("t", True, "k")])
def test_bad_record_addresses_are_refused(aio, storage: Storage, bad) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError):
        aio.run(storage.get_record(*bad))


def test_a_record_time_to_live_is_honoured_in_listings(aio, storage: Storage, ids) -> None:  # type: ignore[no-untyped-def]
    scope = ids.now()

    async def go() -> None:
        await storage.put_record("ttl", scope, "a", {"v": 1}, ttl_s=2)
        await storage.put_record("ttl", scope, "b", {"v": 2})
        started = time.monotonic()
        assert len(await storage.list_records("ttl", scope)) == 2
        await asyncio.sleep(max(0.0, 2.2 - (time.monotonic() - started)))
        assert [k for k, _ in await storage.list_records("ttl", scope)] == ["b"]

    aio.run(go())
