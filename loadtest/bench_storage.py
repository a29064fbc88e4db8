"""Storage benchmark: batched vs unbatched writes, history latency, ack latency, coalescing.

Runs against a real local Cassandra 5.0 node (started from the Maven jars like the
tests, and stopped again if this run started it) and against SQLite in a temporary
directory. Prints progress, then ONE JSON line with:

  cassandra_batched_writes_per_s    Storage.apply: per-partition UNLOGGED batches
  cassandra_unbatched_writes_per_s  same data shape, one statement per message
  sqlite_batched_writes_per_s       one transaction per apply, synchronous=FULL
  cassandra_history_p99_ms          'latest 50' and 'before X' on a channel holding
  sqlite_history_p99_ms             1,000,000 messages spread over a year
  cassandra_ack_p99_ms              write -> Written through the storage actor, offered
                                    at half the actor's measured maximum throughput
  coalesced_reads_ratio             database queries per 100 identical concurrent reads

Usage: python loadtest/bench_storage.py [--quick]   (or: make bench-storage)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import uvloop  # noqa: E402
from thespian.actors import ActorSystem  # noqa: E402

from actors import Overloaded, UvloopSystemBase  # noqa: E402
from storage.actor import StorageActor  # noqa: E402
from storage.base import Storage  # noqa: E402
from storage.history import HistoryQuery  # noqa: E402
from storage.messages import (  # noqa: E402
    Busy,
    History,
    HistoryResult,
    StorageReady,
    StorageStart,
    Write,
    Written,
)
from storage.model import Message, MessageCreate  # noqa: E402
from storage.schema import migrate  # noqa: E402
from storage.scylla import ScyllaStorage, connect_cluster  # noqa: E402
from storage.settings import StorageSettings  # noqa: E402
from storage.snowflake import snowflake_at  # noqa: E402
from storage.sqlite import SqliteStorage  # noqa: E402
from tests.services.cassandra import CassandraNode, skip_driver_exit_wait  # noqa: E402

DAY_MS = 86_400_000
CONTENT = "benchmark message with a realistic amount of text in it, about eighty chars"


def log(text: str) -> None:
    print(f"[bench-storage {time.strftime('%H:%M:%S')}] {text}", flush=True)


class Ids:
    """Unique ids at chosen times (worker/process bits used as a counter)."""

    def __init__(self) -> None:
        self.n = 0

    def at(self, ms: int) -> int:
        self.n += 1
        n = self.n
        return snowflake_at(ms, (n >> 17) & 31, (n >> 12) & 31, n & 4095)


def cpu_pressure() -> str:
    """The kernel's CPU pressure (share of time something waited for a CPU): other work on
    this 2-core machine inflates every latency here, so the run reports it."""
    try:
        with open("/proc/pressure/cpu") as f:
            some = f.readline().split()
        return " ".join(p for p in some[1:3])
    except OSError:
        return "n/a"


def p99(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=100, method="inclusive")[98]


def writes_for(channels: list[int], n: int, ids: Ids, now_ms: int) -> list[MessageCreate]:
    """``n`` messages round-robin over ``channels``, all in the current bucket."""
    return [
        MessageCreate(
            Message(
                channel_id=channels[i % len(channels)],
                id=ids.at(now_ms - 60_000 + i % 50_000),
                author_id=42,
                content=CONTENT,
                guild_id=7,
            )
        )
        for i in range(n)
    ]


async def write_rate(
    storage: Storage, writes: list[MessageCreate], chunk: int, parallel: int, batched: bool
) -> float:
    """Writes/s for ``writes`` applied in chunks, ``parallel`` chunks in flight."""
    sem = asyncio.Semaphore(parallel)
    failures = 0

    async def one(part: list[MessageCreate]) -> None:
        nonlocal failures
        async with sem:
            outcomes = await storage.apply(part, batched=batched)
            failures += sum(o is not None for o in outcomes)

    t0 = time.perf_counter()
    await asyncio.gather(*(one(writes[i : i + chunk]) for i in range(0, len(writes), chunk)))
    elapsed = time.perf_counter() - t0
    if failures:
        raise RuntimeError(f"{failures} writes failed during the benchmark")
    return len(writes) / elapsed


async def load_year(
    storage: Storage, channel: int, total: int, ids: Ids, now_ms: int, chunk: int, parallel: int
) -> list[int]:
    """``total`` messages spread evenly over the past year; returns a sample of their ids."""
    start = now_ms - 365 * DAY_MS
    step = (365 * DAY_MS - 60_000) / total
    sample: list[int] = []
    sem = asyncio.Semaphore(parallel)
    tasks = []

    async def one(part: list[MessageCreate]) -> None:
        async with sem:
            outcomes = await storage.apply(part)
            if any(o is not None for o in outcomes):
                raise RuntimeError(f"bulk load failed: {next(o for o in outcomes if o)}")

    for base in range(0, total, chunk):
        part = []
        for i in range(base, min(base + chunk, total)):
            mid = ids.at(start + int(i * step))
            part.append(
                MessageCreate(Message(channel_id=channel, id=mid, author_id=42, content=CONTENT))
            )
            if i % 997 == 0:
                sample.append(mid)
        tasks.append(asyncio.ensure_future(one(part)))
        if len(tasks) >= parallel * 2:
            await asyncio.gather(*tasks)
            tasks = []
    await asyncio.gather(*tasks)
    return sample


async def settle(cass: ScyllaStorage, limit_s: float = 120.0) -> float:
    """Wait until the node runs no compaction (``system_views.sstable_tasks`` is empty):
    reads are measured on the loaded table, not against the load's own aftermath."""
    t0 = time.monotonic()
    quiet = 0
    while quiet < 2 and time.monotonic() - t0 < limit_s:
        rows = await asyncio.to_thread(
            cass.session.execute, "SELECT * FROM system_views.sstable_tasks"
        )
        quiet = quiet + 1 if not list(rows) else 0
        await asyncio.sleep(0.5)
    return time.monotonic() - t0


async def history_latency(
    storage: Storage, channel: int, cursors: list[int], rounds: int
) -> tuple[float, float, float]:
    """p99 (ms) of 'latest 50', of 'before X', and of both together."""
    latest: list[float] = []
    before: list[float] = []
    for i in range(rounds):
        t0 = time.perf_counter()
        got = await storage.history(HistoryQuery(channel, limit=50))
        latest.append((time.perf_counter() - t0) * 1000)
        assert len(got) == 50
        x = random.choice(cursors)
        t0 = time.perf_counter()
        await storage.history(HistoryQuery(channel, before=x, limit=50))
        before.append((time.perf_counter() - t0) * 1000)
        if i == 20:  # the first ones warm caches and the JIT; keep them out
            latest.clear()
            before.clear()
    return p99(latest), p99(before), p99(latest + before)


async def actor_bench(
    storage: Storage, settings: StorageSettings, seconds: float, n_channels: int
) -> tuple[float, float, float, float]:
    """(max acked/s, ack p50 ms, ack p99 ms at half that rate, queries per 100 reads)."""
    loop = asyncio.get_running_loop()
    base = UvloopSystemBase(loop=loop)
    asys = ActorSystem(systemBase=base, transientUnique=True)
    addr = asys.createActor(StorageActor)
    ready = await base.ask_async(addr, StorageStart(settings=settings, storage=storage), 10)
    assert isinstance(ready, StorageReady), ready
    ids = Ids()
    channels = [ids.at(int(time.time() * 1000) - 3_600_000) for _ in range(n_channels)]
    counter = 0

    def next_write() -> Write:
        nonlocal counter
        counter += 1
        mid = ids.at(int(time.time() * 1000) - 1000)
        msg = Message(
            channel_id=channels[counter % n_channels], id=mid, author_id=1, content=CONTENT
        )
        return Write(counter, (MessageCreate(msg),))

    async def send(write: Write, latencies: list[float] | None) -> None:
        t0 = time.perf_counter()
        while True:
            answer = await base.ask_async(addr, write, 60)
            if isinstance(answer, Busy):
                await asyncio.sleep(answer.retry_after_s)
                continue
            if isinstance(answer, Overloaded):
                await asyncio.sleep(0.01)
                continue
            break
        if not isinstance(answer, Written):
            raise RuntimeError(f"write failed: {answer}")
        if latencies is not None:
            latencies.append((time.perf_counter() - t0) * 1000)

    # 1. Maximum: waves of concurrent writes (closed loop) for `seconds`.
    wave = 2_000
    done = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        await asyncio.gather(*(send(next_write(), None) for _ in range(wave)))
        done += wave
    max_rate = done / (time.perf_counter() - t0)
    log(f"actor: max {max_rate:,.0f} acked writes/s")

    # 2. Half that rate, open loop (paced every 2 ms), measuring each write's ack.
    rate = max_rate / 2
    latencies: list[float] = []
    tasks = set()
    t0 = time.perf_counter()
    sent = 0
    while (elapsed := time.perf_counter() - t0) < seconds:
        due = int(elapsed * rate) - sent
        for _ in range(due):
            task = asyncio.ensure_future(send(next_write(), latencies))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        sent += max(due, 0)
        await asyncio.sleep(0.002)
    await asyncio.gather(*tasks)
    steady = latencies[len(latencies) // 10 :]
    log(
        f"actor: {sent:,} writes at {rate:,.0f}/s: ack p50 {statistics.median(steady):.2f} ms, "
        f"p99 {p99(steady):.2f} ms"
    )

    # 3. Coalescing: 100 identical concurrent 'latest 50' reads, ten times over.
    query = HistoryQuery(channels[1], limit=50)
    per_100 = []
    for _ in range(10):
        before = storage.queries
        answers = await asyncio.gather(
            *(base.ask_async(addr, History(i, query), 30) for i in range(100))
        )
        assert all(isinstance(a, HistoryResult) for a in answers)
        per_100.append(storage.queries - before)
    asys.shutdown()
    return max_rate, statistics.median(steady), p99(steady), statistics.mean(per_100)


async def bench(args: argparse.Namespace, node: CassandraNode) -> dict[str, Any]:
    scale = 0.1 if args.quick else 1.0
    history_rows = int(1_000_000 * scale)
    now_ms = int(time.time() * 1000)
    ids = Ids()
    results: dict[str, Any] = {}

    settings = StorageSettings(
        backend="scylla",
        hosts=("127.0.0.1",),
        port=node.port,
        keyspace="greenroom_bench",
        consistency="LOCAL_QUORUM",
        replication="SimpleStrategy:1",
        request_timeout_s=30.0,
    )
    cluster, session = connect_cluster(settings)
    session.execute("DROP KEYSPACE IF EXISTS greenroom_bench", timeout=120)
    cluster.shutdown()
    migrate(settings)
    cass = ScyllaStorage(settings)
    await cass.open()
    try:
        channels = [ids.at(now_ms - 3_600_000) for _ in range(100)]
        log("cassandra: warm-up")
        await write_rate(cass, writes_for(channels, 30_000, ids, now_ms), 5_000, 4, True)
        await write_rate(cass, writes_for(channels, 3_000, ids, now_ms), 300, 2, False)
        n = int(200_000 * max(scale, 0.25))
        rate_b = await write_rate(cass, writes_for(channels, n, ids, now_ms), 10_000, 3, True)
        log(f"cassandra: batched {rate_b:,.0f} writes/s ({n:,} messages, 100 channels)")
        n_u = int(40_000 * max(scale, 0.25))
        rate_u = await write_rate(cass, writes_for(channels, n_u, ids, now_ms), 512, 2, False)
        log(f"cassandra: unbatched {rate_u:,.0f} writes/s ({n_u:,} messages, 1 statement each)")
        results["cassandra_batched_writes_per_s"] = round(rate_b)
        results["cassandra_unbatched_writes_per_s"] = round(rate_u)

        year_channel = ids.at(now_ms - 366 * DAY_MS)
        t0 = time.perf_counter()
        cursors = await load_year(cass, year_channel, history_rows, ids, now_ms, 10_000, 3)
        log(
            f"cassandra: loaded {history_rows:,} messages over a year in "
            f"{time.perf_counter() - t0:.1f}s"
        )
        waited = await settle(cass)
        log(f"cassandra: compactions after the load settled in {waited:.1f}s")
        lat, bef, both = await history_latency(cass, year_channel, cursors, args.rounds)
        log(f"cassandra: history p99 latest-50 {lat:.2f} ms, before-X {bef:.2f} ms")
        results["cassandra_history_p99_ms"] = round(both, 2)

        actor_settings = settings.with_(
            max_pending=20_000, max_batch=1024, flush_window_ms=2.0, max_in_flight=4
        )
        max_rate, p50_ack, p99_ack, per_100 = await actor_bench(
            cass, actor_settings, 5.0 if args.quick else 8.0, args.ack_channels
        )
        results["cassandra_ack_p99_ms"] = round(p99_ack, 2)
        results["coalesced_reads_ratio"] = round(per_100, 2)
        results["cassandra_actor_max_writes_per_s"] = round(max_rate)
        results["cassandra_ack_p50_ms"] = round(p50_ack, 2)
        results["ack_channels"] = args.ack_channels
    finally:
        await cass.close()

    with tempfile.TemporaryDirectory(prefix="greenroom-bench-") as tmp:
        lite_settings = StorageSettings(sqlite_path=f"{tmp}/bench.db", sqlite_synchronous="FULL")
        migrate(lite_settings)
        lite = SqliteStorage(lite_settings)
        await lite.open()
        try:
            channels = [ids.at(now_ms - 3_600_000) for _ in range(100)]
            await write_rate(lite, writes_for(channels, 20_000, ids, now_ms), 5_000, 1, True)
            n = int(300_000 * max(scale, 0.25))
            rate_s = await write_rate(lite, writes_for(channels, n, ids, now_ms), 5_000, 2, True)
            log(f"sqlite: batched {rate_s:,.0f} writes/s ({n:,} messages, synchronous=FULL)")
            results["sqlite_batched_writes_per_s"] = round(rate_s)
            year_channel = ids.at(now_ms - 366 * DAY_MS)
            t0 = time.perf_counter()
            cursors = await load_year(lite, year_channel, history_rows, ids, now_ms, 50_000, 1)
            log(f"sqlite: loaded {history_rows:,} messages in {time.perf_counter() - t0:.1f}s")
            lat, bef, both = await history_latency(lite, year_channel, cursors, args.rounds)
            log(f"sqlite: history p99 latest-50 {lat:.2f} ms, before-X {bef:.2f} ms")
            results["sqlite_history_p99_ms"] = round(both, 2)
        finally:
            await lite.close()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tenth of the data (smoke run)")
    parser.add_argument("--rounds", type=int, default=500, help="history queries per kind")
    parser.add_argument(
        "--ack-channels",
        type=int,
        default=16,
        help="channels the actor benchmark's writes are spread over",
    )
    args = parser.parse_args(argv)
    node = CassandraNode.isolated("bench")
    log(f"cpu pressure before: {cpu_pressure()}")
    log("starting Cassandra (jars cached under .cache/cassandra)")
    t0 = time.monotonic()
    started = node.start()
    log(f"cassandra {'started' if started else 'already running'} in {time.monotonic() - t0:.1f}s")
    try:
        results = uvloop.run(bench(args, node))
    finally:
        if started:
            node.stop()
        skip_driver_exit_wait()
    order = [
        "cassandra_batched_writes_per_s",
        "cassandra_unbatched_writes_per_s",
        "sqlite_batched_writes_per_s",
        "cassandra_history_p99_ms",
        "sqlite_history_p99_ms",
        "cassandra_ack_p99_ms",
        "coalesced_reads_ratio",
    ]
    extra = {k: v for k, v in results.items() if k not in order}
    log(f"cpu pressure after: {cpu_pressure()}")
    log(
        f"also: {json.dumps(extra)}; batched/unbatched = "
        f"{results['cassandra_batched_writes_per_s'] / results['cassandra_unbatched_writes_per_s']:.1f}x"
    )
    print(json.dumps({k: results[k] for k in order}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
