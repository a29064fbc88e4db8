"""The channel actor's cache of recent messages: every history read it answers equals what
storage answers, over creates, edits and deletes (real SQLite, real sockets for REST)."""

from __future__ import annotations

import random
from pathlib import Path

import aiohttp
import pytest

from actors.registry import Route
from gateway.channel import channel_key
from gateway.messages import ChangeMessage, HistoryPage, Posted, ReadHistory
from gateway.recent_messages import CACHE_SIZE, FILL_PATIENCE_S, RecentMessages
from storage.history import HistoryQuery
from storage.messages import GetStorageStats
from storage.model import Message, MessageCreate, MessageDelete, MessageEdit
from storage.snowflake import SnowflakeGenerator
from storage.sqlite import SqliteStorage
from tests.gateway.harness import Running, run, running_gateway
from tests.gateway.test_rest import call


async def read_via_actor(r: Running, query: HistoryQuery) -> list[Message]:
    base, ctx = r.gateway.base, r.gateway.ctx
    read = ReadHistory(query.before, query.after, query.around, query.limit)
    key = channel_key(r.seeded.guild_id, r.seeded.channel_id)
    page = await base.ask_async(ctx.registry, Route("channel", key, read), 10)
    assert isinstance(page, HistoryPage), page
    return page.messages


async def storage_reads(r: Running) -> int:
    stats = await r.gateway.base.ask_async(r.gateway.ctx.storage_actor, GetStorageStats(), 10)
    return stats.reads


def queries(channel_id: int, ids: list[int], rng: random.Random) -> list[HistoryQuery]:
    """Latest pages and cursors at, between and beyond the ids (deleted ones included)."""
    points = [channel_id, channel_id + 1, *(rng.sample(ids, min(8, len(ids))) if ids else ())]
    if ids:
        points += [ids[0], ids[-1], ids[-1] + 1, ids[len(ids) // 2] - 1]
    out = [HistoryQuery(channel_id, limit=n) for n in (1, 2, 7, 50, 99, 100)]
    for point in points:
        for limit in (1, 4, 25, 100):
            for cursor in ("before", "after", "around"):
                out.append(HistoryQuery(channel_id, limit=limit, **{cursor: point}))
    return out


def test_cache_answers_equal_storage_over_creates_edits_and_deletes(tmp_path: Path) -> None:
    rng = random.Random(4)

    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            cid, storage = r.seeded.channel_id, r.gateway.storage
            path = f"/channels/{cid}/messages"
            key = channel_key(r.seeded.guild_id, cid)
            # what an earlier actor (another node, before a restart) wrote: the first
            # read fills the cache from storage, more than it keeps
            made = SnowflakeGenerator(worker=2)
            earlier = [Message(channel_id=cid, id=made.next_id(), author_id=r.other_id,
                               content=f"earlier {n}", guild_id=r.seeded.guild_id,
                               pinned=n % 3 == 0, mentions=[n] if n % 4 == 0 else [],
                               embeds=[{"n": n}] if n % 5 == 0 else [], nonce=str(n))
                       for n in range(CACHE_SIZE + 20)]
            assert await storage.apply([MessageCreate(m) for m in earlier]) == [None] * len(
                earlier)
            ids: list[int] = [m.id for m in earlier]  # every id ever made, deleted ones too

            async def check() -> None:
                for query in queries(cid, ids, rng):
                    assert await read_via_actor(r, query) == await storage.history(query), query

            await check()
            for round_ in range(8):
                for _ in range(20):
                    status, body, _ = await call(http, r, "POST", path, r.seeded.token,
                                                 json={"content": f"m{len(ids)}"})
                    assert status == 200, body
                    ids.append(int(body["id"]))
                for mid in rng.sample(ids, 6):  # content edits through REST (some deleted)
                    await call(http, r, "PATCH", f"{path}/{mid}", r.seeded.token,
                               json={"content": f"edited {round_}"})
                for mid in rng.sample(ids, 3):  # other editable fields, as REST would send
                    changes = rng.choice([{"pinned": True}, {"flags": 4},
                                          {"embeds": [{"title": "t", "n": round_}]},
                                          {"mentions": [1, 2]}, {"embeds": []}])
                    answer = await r.gateway.base.ask_async(r.gateway.ctx.registry, Route(
                        "channel", key, ChangeMessage(r.seeded.guild_id, mid, changes, {})), 10)
                    assert isinstance(answer, Posted)
                for mid in rng.sample(ids, 5):
                    async with http.delete(f"{r.gateway.rest_url}{path}/{mid}", headers={
                            "Authorization": f"Bot {r.seeded.token}"}):
                        pass
                await check()

            # the cache answered without storage where it could, and only there
            live = await storage.history(HistoryQuery(cid, limit=100))
            before = await storage_reads(r)
            latest = HistoryQuery(cid, limit=50)
            assert await read_via_actor(r, latest) == live[:50]
            assert await read_via_actor(r, HistoryQuery(cid, after=live[30].id)) == live[:30]
            assert await storage_reads(r) == before
            deep = HistoryQuery(cid, before=live[-1].id, limit=100)
            assert await read_via_actor(r, deep) == await storage.history(deep)
            assert await storage_reads(r) == before + 1  # below the floor: storage

    run(main, timeout=120)


def test_writes_durable_during_the_fill_are_applied_on_top_of_its_snapshot(
        tmp_path: Path) -> None:
    """The fill's snapshot may or may not contain a write that became durable while it was
    in flight: both ways, the loaded cache equals storage."""

    async def main() -> None:
        async with running_gateway(tmp_path) as r:
            storage: SqliteStorage = r.gateway.storage
            cid = r.seeded.channel_id
            ids = SnowflakeGenerator(worker=2)

            def message(n: int) -> Message:
                return Message(channel_id=cid, id=ids.next_id(), author_id=r.seeded.user_id,
                               content=f"m{n}", guild_id=r.seeded.guild_id)

            first = [message(n) for n in range(5)]
            await storage.apply([MessageCreate(m) for m in first])
            for included in (True, False):
                recent = RecentMessages(size=4)
                fill = recent.start_fill(cid, 0.0)
                assert fill is not None and recent.start_fill(cid, 1.0) is None
                late = message(9)
                edit = MessageEdit.now(cid, first[-1].id, content="late edit", pinned=True)
                delete = MessageDelete.now(cid, first[-2].id)
                if not included:
                    snapshot = await storage.history(fill)
                await storage.apply([MessageCreate(late), edit, delete])
                if included:
                    snapshot = await storage.history(fill)
                recent.created(late)
                recent.edited(edit)
                recent.deleted(delete.message_id)
                recent.load(snapshot)
                assert recent.loaded and len(recent) <= 4
                for query in queries(cid, [m.id for m in [*first, late]], random.Random(1)):
                    page = recent.answer(query)
                    if page is not None:
                        assert page == await storage.history(query), query
                assert recent.answer(HistoryQuery(cid, limit=3)) is not None
                first = [m for m in first if m.id != delete.message_id] + [late]

    run(main)


def test_an_edit_not_newer_than_the_last_drops_the_cache() -> None:
    cid = 1 << 40
    ids = SnowflakeGenerator(worker=3)
    recent = RecentMessages()
    recent.start_fill(cid, 0.0)
    m = Message(channel_id=cid, id=ids.next_id(), author_id=5, content="a")
    recent.load([])
    recent.created(m)
    edit = MessageEdit.now(cid, m.id, content="b")
    recent.edited(edit)
    assert recent.answer(HistoryQuery(cid))[0].content == "b"
    # storage keeps the newer edit per field; the cache cannot tell, so it forgets all
    recent.edited(MessageEdit(cid, m.id, {"content": "c"}, edit.at_us))
    assert not recent.loaded and recent.answer(HistoryQuery(cid)) is None


def test_cache_size_bounds_and_floor() -> None:
    cid = 1 << 40
    ids = SnowflakeGenerator(worker=3)
    recent = RecentMessages(size=3)
    recent.start_fill(cid, 0.0)
    recent.load([])
    made = [Message(channel_id=cid, id=ids.next_id(), author_id=5) for _ in range(5)]
    for m in made:
        recent.created(m)
    assert len(recent) == 3 and recent.floor == made[2].id
    assert [m.id for m in recent.answer(HistoryQuery(cid, limit=3))] == [
        m.id for m in made[:1:-1]]  # fmt: skip
    assert recent.answer(HistoryQuery(cid, limit=4)) is None  # reaches below the floor
    assert recent.answer(HistoryQuery(cid, after=made[0].id)) is None
    assert recent.answer(HistoryQuery(cid, after=made[1].id)) is not None
    with pytest.raises(ValueError):
        RecentMessages(size=0)


def test_a_fill_unanswered_for_long_is_sent_again_and_records_afresh() -> None:
    cid = 1 << 40
    ids = SnowflakeGenerator(worker=3)
    recent = RecentMessages()
    assert recent.start_fill(cid, 100.0) == HistoryQuery(cid, limit=CACHE_SIZE)
    assert recent.start_fill(cid, 100.0 + FILL_PATIENCE_S - 0.1) is None
    recent.created(Message(channel_id=cid, id=ids.next_id(), author_id=5))  # recorded
    assert recent.start_fill(cid, 100.0 + FILL_PATIENCE_S) is not None  # the first is lost
    recent.load([])  # the second fill's snapshot already has what came before it
    assert recent.loaded and len(recent) == 0
    assert recent.start_fill(cid, 1e9) is None  # loaded: no fill
