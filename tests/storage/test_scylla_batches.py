"""The CQL backend's write path: how writes become requests, and what a request leaves behind.

Runs on the real Cassandra node (conftest.py). Why these matter: per request the driver
and the node cost far more than per message in a batch, so many channels with a few
messages each must share requests; and a finished request must not be left to the
cyclic GC (its collections stalled the storage actor's loop for tens of ms).
"""

from __future__ import annotations

import asyncio
import gc
import socket
import time

from cassandra import OperationTimedOut

import storage.scylla as scylla
from storage.model import Message, MessageCreate, MessageWrite
from storage.scylla import (
    MAX_BATCH_BYTES,
    MAX_BATCH_STATEMENTS,
    MAX_REQUEST_STATEMENTS,
    PACK_BELOW,
    ScyllaStorage,
    _batch_size,
)

DAY_MS = 86_400_000


def _creates(
    ids, channels: list[int], per_channel: int, content: str = "hello"
) -> list[MessageWrite]:  # type: ignore[no-untyped-def]
    now = int(time.time() * 1000)
    return [
        MessageCreate(Message(channel_id=c, id=ids.at(now - 1000), author_id=1, content=content))
        for _ in range(per_channel)
        for c in channels
    ]


def _check_plan(writes: list[MessageWrite], groups: list[list[int]]) -> None:
    flat = [i for g in groups for i in g]
    assert sorted(flat) == list(range(len(writes))), "every write in exactly one batch"
    for g in groups:
        assert len(g) <= MAX_REQUEST_STATEMENTS
        assert len(g) == 1 or sum(_batch_size(writes[i]) for i in g) <= MAX_BATCH_BYTES
        per_partition: dict[tuple[int, int], int] = {}
        for i in g:
            p = writes[i].partition
            per_partition[p] = per_partition.get(p, 0) + 1
        assert max(per_partition.values()) <= MAX_BATCH_STATEMENTS
        # A partition's writes keep their order inside a batch.
        for p in per_partition:
            mine = [i for i in g if writes[i].partition == p]
            assert mine == sorted(mine)


def test_partitions_on_the_same_replicas_share_a_batch(scylla_storage: ScyllaStorage, ids) -> None:  # type: ignore[no-untyped-def]
    channels = [ids.now(-10_000) for _ in range(40)]
    writes = _creates(ids, channels, 3)  # 120 writes, 40 partitions, one node
    groups = scylla_storage.plan_batches(writes)
    _check_plan(writes, groups)
    assert len(groups) == 1, [len(g) for g in groups]
    assert scylla_storage.ack_units(writes) == groups


def test_batches_respect_their_limits(scylla_storage: ScyllaStorage, ids) -> None:  # type: ignore[no-untyped-def]
    one = [ids.now(-10_000)]
    many = [ids.now(-10_000) for _ in range(120)]
    few = [ids.now(-10_000) for _ in range(30)]
    big = "x" * 2000  # 4,096 bytes each by the size estimate: the byte limit decides
    packed = MAX_REQUEST_STATEMENTS // 5 * 5  # whole 5-write chunks per batch
    for writes, sizes in (
        # one partition: MAX_BATCH_STATEMENTS per batch
        (_creates(ids, one, 250), [MAX_BATCH_STATEMENTS] * 2 + [50]),
        # 120 partitions with 5 writes each: shared batches of whole chunks
        (_creates(ids, many, 5), [packed, packed, 600 - 2 * packed]),
        # ... and under the byte limit (two 4 KiB writes per partition)
        (_creates(ids, few, 2, big), [MAX_BATCH_BYTES // 4096] * 6),
        # partitions with PACK_BELOW writes or more: a batch each
        (_creates(ids, few[:3], PACK_BELOW), [PACK_BELOW] * 3),
        # a busy channel alone, the quiet ones together
        (_creates(ids, one, 40) + _creates(ids, few[:10], 2), [40, 20]),
    ):
        groups = scylla_storage.plan_batches(writes)
        _check_plan(writes, groups)
        assert sorted(len(g) for g in groups) == sorted(sizes)


def test_apply_across_partitions_is_one_request_per_batch(
    aio, scylla_storage: ScyllaStorage, ids
) -> None:  # type: ignore[no-untyped-def]
    channels = [ids.now(-10_000) for _ in range(25)]
    writes = _creates(ids, channels, 4)
    planned = len(scylla_storage.plan_batches(writes))

    async def go() -> int:
        before = scylla_storage.queries
        assert await scylla_storage.apply(writes) == [None] * len(writes)
        issued = scylla_storage.queries - before
        for c in channels:
            assert len(await scylla_storage.messages(c)) == 4
        return issued

    assert aio.run(go()) == planned == 1


def test_connections_send_without_delay(scylla_storage: ScyllaStorage) -> None:
    # Nagle's algorithm held multi-segment requests for the server's delayed ACK:
    # ~50 ms for a 50-message batch instead of ~5 ms.
    assert (socket.IPPROTO_TCP, socket.TCP_NODELAY, 1) in (scylla_storage.cluster.sockopts or [])


def test_finished_requests_leave_no_cyclic_garbage(aio, scylla_storage: ScyllaStorage, ids) -> None:  # type: ignore[no-untyped-def]
    channels = [ids.now(-10_000) for _ in range(4)]

    async def go() -> None:
        for _ in range(10):
            assert await scylla_storage.apply(_creates(ids, channels, 5)) == [None] * 20
        await scylla_storage.get_message(channels[0], ids.now())

    aio.run(go())  # warm: prepared metadata, pools
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        aio.run(go())
        time.sleep(0.2)
        gc.collect()
        leaked = [o for o in gc.garbage if type(o).__name__ in ("ResponseFuture", "_Request")]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert not leaked, f"{len(leaked)} finished requests were left to the cyclic GC"


def test_partitions_on_different_replicas_never_share_a_batch(  # type: ignore[no-untyped-def]
    scylla_storage: ScyllaStorage, ids, monkeypatch
) -> None:
    # One node owns everything here; pretend three replica sets own the channels.
    channels = [ids.now(-10_000) for _ in range(12)]
    owner = {c: f"replicas-{i % 3}" for i, c in enumerate(channels)}
    monkeypatch.setattr(scylla_storage, "_replica_key", lambda partition: owner[partition[0]])
    writes = _creates(ids, channels, 2)
    groups = scylla_storage.plan_batches(writes)
    _check_plan(writes, groups)
    assert len(groups) == 3
    for g in groups:
        assert len({owner[writes[i].partition[0]] for i in g}) == 1


def test_the_replica_key_is_cached_per_partition(scylla_storage: ScyllaStorage, ids) -> None:  # type: ignore[no-untyped-def]
    partition = (ids.now(), 1)
    key = scylla_storage._replica_key(partition)
    assert key is not None and len(key) == 1  # one node, replication factor 1
    assert scylla_storage._replica_key(partition) is key


def test_one_unit_is_answered_one_loop_turn_after_its_request(aio, scylla_storage: ScyllaStorage, ids) -> None:  # type: ignore[no-untyped-def]
    """The storage actor applies one ack unit per call: its outcome must reach the caller
    the loop turn after the driver's answer is settled, not three (a gather's task per
    group: its start, its end, then the gather's own result), each of which waits out a
    whole turn of a busy loop. Outcomes and a refused request's exception still arrive."""
    channel = ids.now(-10_000)
    answer: list = []

    def send(statement, params=None):  # type: ignore[no-untyped-def]
        fut = asyncio.get_running_loop().create_future()
        answer.append(fut)
        return fut

    async def turns_after_answer(result: object) -> tuple[int, object]:
        answer.clear()
        task = asyncio.ensure_future(scylla_storage.apply(_creates(ids, [channel], 3)))
        while not answer:
            await asyncio.sleep(0)
        assert len(answer) == 1, "one unit, one request"
        if isinstance(result, BaseException):
            answer[0].set_exception(result)
        else:
            answer[0].set_result(result)
        turns = 0
        while not task.done():
            await asyncio.sleep(0)
            turns += 1
        return turns, task.result()

    scylla_storage._send = send  # type: ignore[method-assign]
    try:
        turns, outcomes = aio.run(turns_after_answer([]))
        assert (turns, outcomes) == (1, [None] * 3)
        refused = OperationTimedOut("no answer")
        turns, outcomes = aio.run(turns_after_answer(refused))
        assert turns == 1 and outcomes == [refused] * 3
    finally:
        del scylla_storage._send


def test_start_unit_sends_at_once_and_the_answer_settles_the_outcomes(aio, scylla_storage: ScyllaStorage, ids) -> None:  # type: ignore[no-untyped-def]
    """The storage actor's call: the unit's request leaves before the caller yields, and
    the driver's answer, handed to the loop, settles the unit's outcomes in that same
    callback - no task to start, none to wake."""
    channel = ids.now(-10_000)
    settled_done: list[bool] = []
    settle = scylla._UnitRequest._settle_unit

    def watched(self, exc):  # type: ignore[no-untyped-def]
        settle(self, exc)
        settled_done.append(self.fut.done())

    async def go() -> list:
        before = scylla_storage.queries
        unit = scylla_storage.start_unit(_creates(ids, [channel], 3))
        assert isinstance(unit, asyncio.Future) and scylla_storage.queries == before + 1
        return await unit

    scylla._UnitRequest._settle_unit = watched  # type: ignore[method-assign]
    try:
        assert aio.run(go()) == [None] * 3
    finally:
        scylla._UnitRequest._settle_unit = settle  # type: ignore[method-assign]
    assert settled_done == [True]
    assert len(aio.run(scylla_storage.messages(channel, limit=10))) == 3


def test_start_unit_splits_a_batch_the_node_refuses_whole(aio, scylla_storage: ScyllaStorage, ids, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """As apply does (test_poison_batches): a batch refused as a whole ("Batch too large":
    the test node's threshold is 512 KiB, the planner's bound raised past it) is sent
    again in halves, and every write in it is written."""
    monkeypatch.setattr(scylla, "MAX_BATCH_BYTES", 10 * 1024 * 1024)
    channels = [ids.now(-10_000) for _ in range(40)]
    now = int(time.time() * 1000)
    writes: list[MessageWrite] = [
        MessageCreate(Message(channel_id=c, id=ids.at(now - 1000), author_id=1,
                              content=f"{n}" * 4000))
        for n in range(5) for c in channels]
    assert len(scylla_storage.plan_batches(writes)) == 1  # one batch of ~800 KB
    before = scylla_storage.queries

    async def go() -> list:
        return await scylla_storage.start_unit(writes)

    assert aio.run(go()) == [None] * len(writes)
    assert scylla_storage.queries - before >= 3  # refused whole, then its halves
    assert len(aio.run(scylla_storage.messages(channels[-1], limit=10))) == 5
