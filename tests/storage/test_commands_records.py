"""Application commands' storage (``chat.commands``) on both backends, with writers that
do not share a node's local lock (as REST requests landing on different nodes): the
scope's lease (insert-if-absent with a TTL, released by a conditional delete: both
LWTs on Cassandra, where a plain delete of an LWT-written row can be undone) keeps one
command per name and the type's limit under contention, and never stalls for its TTL.
With it, ``Storage.delete_record_if`` on both backends."""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

import pytest

import chat.commands as commands
from chat.commands import (
    USER,
    CommandError,
    check_bulk,
    check_command,
    create_command,
    get_command,
    list_commands,
    overwrite_commands,
)
from storage.base import Storage


class NoSharedLock(dict):  # type: ignore[type-arg]
    """``_local_locks`` as if each writer ran on its own node: a fresh lock each time."""

    def get(self, key: Any, default: Any = None) -> Any:
        return None

    def __setitem__(self, key: Any, value: Any) -> None:
        pass


def test_delete_record_if_deletes_only_the_value_it_names(aio, storage: Storage, ids) -> None:  # type: ignore[no-untyped-def]
    scope = ids.now()

    async def go() -> None:
        assert not await storage.delete_record_if("lease", scope, "k", {"by": "a"})  # none
        await storage.insert_record_if_absent("lease", scope, "k", {"by": "a"}, ttl_s=10)
        assert not await storage.delete_record_if("lease", scope, "k", {"by": "b"})
        assert await storage.get_record("lease", scope, "k") == {"by": "a"}
        assert await storage.delete_record_if("lease", scope, "k", {"by": "a"})
        assert await storage.get_record("lease", scope, "k") is None
        inserted, _ = await storage.insert_record_if_absent("lease", scope, "k", {"by": "b"})
        assert inserted

    aio.run(go())


def test_writers_on_different_nodes_keep_names_unique_and_limits(  # type: ignore[no-untyped-def]
        aio, storage: Storage, ids, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(commands, "_local_locks", NoSharedLock())
    # a lower USER limit: the same contention for a third of the round trips (an LWT on a
    # busy test Cassandra takes ~0.1 s)
    monkeypatch.setitem(commands.MAX_COMMANDS, USER, 4)
    app, guild = ids.now(), ids.now()
    counter = itertools.count(ids.now())

    def next_id() -> int:
        return next(counter)

    def user_command(name: str) -> dict[str, Any]:
        definition, problems = check_command({"type": USER, "name": name})
        assert definition is not None, problems
        return definition

    async def attempt(name: str) -> str:
        try:
            _, created = await create_command(storage, next_id, app, guild, user_command(name))
        except CommandError as exc:
            return exc.reason
        return "created" if created else "updated"

    async def go() -> None:
        started = time.monotonic()
        same = await asyncio.gather(*(attempt("Same") for _ in range(4)))
        assert sorted(same) == ["created"] + ["updated"] * 3
        assert await attempt("Other") == "created"
        outcomes = await asyncio.gather(*(attempt(f"V{i}") for i in range(4)))
        assert sorted(outcomes) == ["created"] * 2 + ["limit"] * 2  # 2 exist, 4 fit
        assert len(await list_commands(storage, app, guild)) == 4
        assert await storage.get_record(commands.LOCK_KIND, app, f"{guild:020d}") is None
        # a bulk overwrite's writes run concurrently: all land, the rest are removed
        definitions, problems = check_bulk([{"name": f"s{i}", "description": "d"}
                                            for i in range(20)] + [{"type": USER, "name": "V0"}])
        assert problems == []
        out = await overwrite_commands(storage, next_id, app, guild, definitions)
        listed = await list_commands(storage, app, guild)
        assert sorted(c["id"] for c in listed) == sorted(c["id"] for c in out)
        assert len(listed) == 21
        assert all([await get_command(storage, app, int(c["id"])) for c in out])
        # no lease was lost and waited out (a stall lasts LEASE_S = 10 s)
        assert time.monotonic() - started < commands.LEASE_S * 0.8

    aio.run(go(), 120)
