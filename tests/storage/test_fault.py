"""Fault test: the Cassandra node dies in the middle of a stream of writes and comes back.

Every acknowledged write must be there afterwards; every write gets exactly one final
answer (``Written`` or ``WriteFailed``); the storage actor - the same instance, in the
same process - goes on acknowledging writes once the node is back.
"""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from typing import Any

import pytest
from storage_testkit import Runtime, create, send_until_accepted

from storage.messages import GetStorageStats, Write, WriteFailed, Written
from storage.scylla import ScyllaStorage
from tests.services.cassandra import CassandraNode

pytestmark = pytest.mark.cassandra_fault

TOTAL_WRITES = 3000
KILL_AFTER_ACKS = 600


@pytest.mark.timeout(400)
def test_node_killed_mid_stream(cassandra_node: CassandraNode, scylla_settings, ids) -> None:  # type: ignore[no-untyped-def]
    rt = Runtime()
    settings = scylla_settings.with_(retry_budget_s=120.0, request_timeout_s=3.0)
    storage = ScyllaStorage(settings)
    rt.run(storage.open())
    addr = rt.storage_actor(storage, settings)
    channels = [ids.now(-60_000) for _ in range(8)]
    writes = [create(channels[i % 8], ids.now(), f"w{i}") for i in range(TOTAL_WRITES)]
    acked_at: dict[int, float] = {}
    answers: dict[int, Any] = {}
    fault: dict[str, float] = {}
    fault_error: list[BaseException] = []

    def kill_and_restart() -> None:
        try:
            while len(acked_at) < KILL_AFTER_ACKS:
                time.sleep(0.01)
            fault["killed"] = time.monotonic()
            cassandra_node.stop(keep_data=True, sig=signal.SIGKILL)
            time.sleep(2.0)
            cassandra_node.spawn(keep_data=True)
            cassandra_node.wait_ready(180)
            fault["back"] = time.monotonic()
        except BaseException as exc:  # surfaced by the test body below
            fault_error.append(exc)

    async def one(i: int) -> None:
        answer, _busy = await send_until_accepted(rt.base, addr, Write(i, (writes[i],)), 200)
        answers[i] = answer
        if isinstance(answer, Written):
            acked_at[i] = time.monotonic()

    async def stream() -> None:
        tasks = []
        for start in range(0, TOTAL_WRITES, 50):  # ~5k writes/s offered, then sustained
            tasks += [asyncio.ensure_future(one(i)) for i in range(start, start + 50)]
            await asyncio.sleep(0.01 if "killed" not in fault or "back" in fault else 0.05)
        await asyncio.gather(*tasks)

    injector = threading.Thread(target=kill_and_restart, daemon=True)
    injector.start()
    try:
        rt.run(stream(), timeout=360)
        injector.join(200)
        assert not fault_error, f"could not restart Cassandra: {fault_error[0]}"
        assert "back" in fault, "the node never came back"

        # Every write got exactly one final answer.
        assert sorted(answers) == list(range(TOTAL_WRITES))
        kinds = {type(a) for a in answers.values()}
        assert kinds <= {Written, WriteFailed}, kinds
        acked = {writes[i].message_id for i, a in answers.items() if isinstance(a, Written)}
        failed = [a for a in answers.values() if isinstance(a, WriteFailed)]
        assert len(acked) + len(failed) == TOTAL_WRITES

        # The same actor kept working after the node came back.
        after_restart = [i for i, t in acked_at.items() if t > fault["back"]]
        assert after_restart, "no write was acknowledged after the restart"
        probe = create(channels[0], ids.now(), "probe")
        assert isinstance(rt.ask(addr, Write("probe", (probe,)), 60), Written)
        acked.add(probe.message_id)

        # Every acknowledged write is there - read through a brand-new connection.
        async def stored() -> set[int]:
            fresh = ScyllaStorage(settings)
            await fresh.open()
            try:
                found: set[int] = set()
                for c in channels:
                    before = None
                    while page := await fresh.messages(c, before=before, limit=100):
                        found.update(m.id for m in page)
                        before = page[-1].id
                return found
            finally:
                await fresh.close()

        found = rt.run(stored(), timeout=120)
        missing = acked - found
        assert not missing, f"{len(missing)} acknowledged writes lost"
        stats = rt.ask(addr, GetStorageStats())
        print(
            f"\nfault test: {len(acked)} acked, {len(failed)} reported failed, "
            f"{stats.retries} retries, {stats.reconnects} reconnects, node down "
            f"{fault['back'] - fault['killed']:.1f}s"
        )
    finally:
        if not cassandra_node.ready():  # leave the shared node up for whoever runs next
            cassandra_node.start(keep_data=True)
        rt.run(storage.close())
        rt.asys.shutdown()
