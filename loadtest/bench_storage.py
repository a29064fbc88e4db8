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
  cassandra_ack_database_p99_ms     the database requests alone that carried those writes
  cassandra_ack_p99_ratio           the two p99s' ratio: what the actor adds (also measured
                                    at the same rate in the same run as the actor was
                                    before: the ..._before keys); the ack phase runs with
                                    the node and this process on CPUs of their own
                                    (--placement split, the default; ``placement``)
  coalesced_reads_ratio             database queries per 100 identical concurrent reads

Usage: python loadtest/bench_storage.py [--quick] [--only write|history|ack|sqlite ...]
       [--port PORT]   (or: make bench-storage ARGS="...")
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import contextvars
import gc
import json
import math
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import uvloop  # noqa: E402
from thespian.actors import ActorSystem  # noqa: E402

from actors import Actor, Overloaded, Timeout, UvloopSystemBase, tune_gc  # noqa: E402
from loadtest.placement import cpu_plan, run_on  # noqa: E402
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
from tests.services.cassandra import (  # noqa: E402
    CassandraNode,
    find_java,
    skip_driver_exit_wait,
)

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


class Usage:
    """CPU used between ``start`` and ``stop``: by the whole machine, the Cassandra node,
    this process and everything else; and the node's JVM collector pauses (from
    ``jstat``, when the JDK has it). On this 2-core machine another process's work or a
    database GC pause shows up in every latency here, so the run reports both."""

    def __init__(self, node_pid: int | None) -> None:
        self.node_pid = node_pid
        self.tick = os.sysconf("SC_CLK_TCK")
        jstat = Path(find_java()).with_name("jstat") if node_pid else None
        self.jstat = jstat if jstat is not None and os.access(jstat, os.X_OK) else None
        self.t0: tuple[float, ...] = ()

    def _busy(self) -> float:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return (sum(v) - v[3] - v[4]) / self.tick  # all but idle and iowait

    def _node_cpu(self) -> float:
        try:
            with open(f"/proc/{self.node_pid}/stat") as f:
                v = f.read().rsplit(")", 1)[1].split()
            return (int(v[11]) + int(v[12])) / self.tick
        except (OSError, TypeError):
            return 0.0

    def _gc(self) -> tuple[float, float]:
        """(stop-the-world pauses, their seconds) so far, or (nan, nan)."""
        if self.jstat is None:
            return math.nan, math.nan
        try:
            out = subprocess.run(
                [str(self.jstat), "-gc", str(self.node_pid)],
                capture_output=True,
                text=True,
                timeout=10,
            ).stdout.split("\n")
            row = dict(zip(out[0].split(), out[1].split(), strict=True))
            count = sum(float(row[k]) for k in ("YGC", "FGC", "CGC"))
            seconds = sum(float(row[k]) for k in ("YGCT", "FGCT", "CGCT"))
            return count, seconds
        except (OSError, IndexError, KeyError, ValueError, subprocess.SubprocessError):
            return math.nan, math.nan

    def sample(self) -> tuple[float, ...]:
        return (
            time.perf_counter(),
            self._busy(),
            self._node_cpu(),
            time.process_time(),
            *self._gc(),
        )

    def start(self) -> None:
        self.t0 = self.sample()

    def stop(self) -> str:
        t1 = self.sample()
        d = [b - a for a, b in zip(self.t0, t1, strict=True)]
        el = d[0]
        other = d[1] - d[2] - d[3]
        text = (
            f"cores used: all {d[1] / el:.2f}, cassandra {d[2] / el:.2f}, "
            f"this process {d[3] / el:.2f}, other processes {other / el:.2f}"
        )
        if not math.isnan(d[4]):
            text += f"; cassandra GC: {d[4]:.0f} pauses, {d[5] * 1000:.0f} ms in all"
        return text


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


class _Load:
    """What the pacing coroutine and the writer actor share."""

    def __init__(self, storage_actor: Any, make_write: Any) -> None:
        self.storage_actor = storage_actor
        self.make_write = make_write
        self.sent_at: dict[int, float] = {}  # ref -> when its first attempt was sent
        self.writes: dict[int, Write] = {}  # ref -> the Write, for a resend after Busy
        self.latencies: list[float] | None = None  # ms, when this phase measures them
        self.refill_until = 0.0  # closed loop: each ack sends a new write until then
        self.acked = 0
        self.failed: list[Any] = []
        self.stages: Stages | None = None


class _Writer(Actor):
    """Sends ``Write``s to the storage actor and takes the answers, as a channel actor
    does (gateway/channel.py: ``send``, then ``Written`` arrives in its mailbox): the
    latency measured is the storage actor's, not that of an ask and a task per write."""

    mailbox_capacity = 1_000_000

    def __init__(self) -> None:
        super().__init__()
        self.load: _Load | None = None

    def write(self, write: Write) -> None:
        load = self.load
        assert load is not None
        load.sent_at[write.ref] = now = time.perf_counter()
        load.writes[write.ref] = write
        if load.stages is not None and load.stages.on:
            load.stages.sent[write.writes[0].message.id] = now
        self.send(load.storage_actor, write)

    def receiveMessage(self, msg: Any, sender: Any) -> None:
        load = self.load
        kind = msg.__class__
        if kind is Written:
            assert load is not None
            t0 = load.sent_at.pop(msg.ref)
            write = load.writes.pop(msg.ref)
            load.acked += 1
            now = time.perf_counter()
            if load.stages is not None and load.stages.on:
                load.stages.acked[write.writes[0].message.id] = now
            if load.latencies is not None:
                load.latencies.append((now - t0) * 1000)
            if now < load.refill_until:
                self.write(load.make_write())
        elif kind is Busy:  # not queued: send the same write again after the hint
            self.start_timer(msg.retry_after_s, msg.ref)
        elif kind is Overloaded:
            self.start_timer(0.01, msg.message.ref)
        elif kind is Timeout:
            assert load is not None
            self.send(load.storage_actor, load.writes[msg.payload])
        elif kind is _Load:
            self.load = msg
        elif kind is int:  # a burst from the pacing coroutine
            assert load is not None
            for _ in range(msg):
                self.write(load.make_write())
        else:  # WriteFailed, PoisonMessage
            assert load is not None
            load.failed.append(msg)


#: The Stages timing the writes now (``--stages``), and the message ids of the running
#: ``storage.apply`` (the requests it sends are timed for those writes).
_active_stages: list[Stages | None] = [None]
_unit_ids: contextvars.ContextVar[tuple[int, ...]] = contextvars.ContextVar("unit", default=())
_unit_of: dict[int, tuple[int, ...]] = {}  # id of a start_unit future -> its message ids


class Stages:
    """Per-write timestamps along the ack path (``--stages``), to say which stage owns
    the ack's tail: the writer sends -> the actor accepts (``_on_write``) -> the actor
    calls ``storage.apply`` (queued) -> the call starts running on the loop -> the
    driver's thread has the answer (``_Request._done``) -> the loop settles the future ->
    the actor handles the outcome (``_after_unit``) -> the writer has ``Written``. Also
    the loop's own delay (a 1 ms sleep's oversleep), this process's GC pauses, and how
    long the loop's thread waited in the kernel's run queue for a CPU."""

    NAMES = ("accept", "queue", "start", "database", "handoff", "return", "reply")

    def __init__(self) -> None:
        self.on = False
        self.sent: dict[int, float] = {}  # message id -> writer sent
        self.accepted: dict[int, float] = {}
        self.called: dict[int, float] = {}
        self.started: dict[int, float] = {}
        self.answered: dict[int, float] = {}  # driver thread
        self.settled: dict[int, float] = {}
        self.handled: dict[int, float] = {}
        self.acked: dict[int, float] = {}
        self.lags: list[float] = []  # ms a 1 ms sleep overslept: the loop's own delay
        self.gc_pauses: list[float] = []  # ms, this process's collections
        self.sched = [0, 0]  # ns: the loop's thread on a CPU, waiting for one
        self.elapsed = 0.0
        self._sched0: list[int] = []
        self._began = 0.0
        self._gc_started = 0.0
        self._lag_task: asyncio.Task | None = None

    def _on_gc(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter()
        elif self.on:
            self.gc_pauses.append((time.perf_counter() - self._gc_started) * 1000)

    async def _watch_lag(self) -> None:
        while True:
            t0 = time.perf_counter()
            await asyncio.sleep(0.001)
            self.lags.append((time.perf_counter() - t0) * 1000 - 1)

    @staticmethod
    def _schedstat() -> list[int]:
        """This (the loop's) thread's ns on a CPU and ns waiting in a run queue for one."""
        try:
            with open(f"/proc/self/task/{threading.get_native_id()}/schedstat") as f:
                return [int(x) for x in f.read().split()[:2]]
        except OSError:
            return [0, 0]

    def begin(self) -> None:
        self._sched0 = self._schedstat()
        self._began = time.perf_counter()
        self.on = True
        _active_stages[0] = self
        if self._on_gc not in gc.callbacks:
            gc.callbacks.append(self._on_gc)
        self._lag_task = asyncio.ensure_future(self._watch_lag())

    def end(self) -> None:
        now = self._schedstat()
        self.sched = [t + b - a for t, a, b in zip(self.sched, self._sched0, now, strict=True)]
        self.elapsed += time.perf_counter() - self._began
        self.on = False
        _active_stages[0] = None
        gc.callbacks.remove(self._on_gc)
        if self._lag_task is not None:
            self._lag_task.cancel()
            self._lag_task = None

    def install(self, storage: Storage) -> Any:
        """Patch ``storage._send`` (Cassandra only; once) to time its requests for the
        active Stages; returns an actor class that times its own steps for this one."""
        from storage import scylla

        stages = self

        class TimedRequest(scylla._Request):
            __slots__ = ("ids", "stages")

            def _done(self, value: Any, exc: BaseException | None) -> None:
                answered = time.perf_counter()
                rf, self.rf = self.rf, None
                if rf is not None:
                    rf._timer = None
                ids, timing = self.ids, self.stages

                def settle(fut: asyncio.Future, value: Any, exc: Any) -> None:
                    now = time.perf_counter()
                    if timing is not None and timing.on:
                        for i in ids:
                            timing.answered[i] = answered
                            timing.settled[i] = now
                    scylla._settle(fut, value, exc)

                self.loop.call_soon_threadsafe(settle, self.fut, value, exc)

        unit_request = scylla._UnitRequest
        if not getattr(unit_request, "bench_timed", False):
            answered_at: dict[int, float] = {}
            done, settle_unit = unit_request._done, unit_request._settle_unit

            def timed_done(self: Any, value: Any, exc: BaseException | None) -> None:
                answered_at[id(self)] = time.perf_counter()  # the driver's thread
                done(self, value, exc)

            def timed_settle(self: Any, exc: BaseException | None) -> None:
                now = time.perf_counter()
                answered = answered_at.pop(id(self), now)
                unit = _unit_of.pop(id(self.fut), ())
                timing = _active_stages[0]
                if timing is not None and timing.on:
                    for i in unit:
                        timing.answered[i] = answered
                        timing.settled[i] = now
                settle_unit(self, exc)

            unit_request._done = timed_done  # type: ignore[method-assign]
            unit_request._settle_unit = timed_settle  # type: ignore[method-assign]
            unit_request.bench_timed = True  # type: ignore[attr-defined]

        if isinstance(storage, ScyllaStorage) and "_send" not in vars(storage):
            def send(statement: Any, params: Any = None) -> asyncio.Future:
                storage.queries += 1
                request = TimedRequest.__new__(TimedRequest)
                request.ids = _unit_ids.get()
                request.stages = _active_stages[0]
                scylla._Request.__init__(request, asyncio.get_running_loop(),
                                         storage.session.execute_async(statement, params))
                return request.fut

            storage._send = send  # type: ignore[method-assign]

        class TimedStorageActor(StorageActor):
            def _on_write(self, msg: Write, sender: Any) -> None:
                if stages.on:
                    now = time.perf_counter()
                    for w in msg.writes:
                        stages.accepted[w.message.id] = now
                super()._on_write(msg, sender)

            def _after_unit(self, batch: Any, *args: Any) -> None:
                if stages.on:
                    now = time.perf_counter()
                    for e in batch:
                        stages.handled[e.write.message.id] = now
                super()._after_unit(batch, *args)

        return TimedStorageActor

    def report(self, skip: set[int]) -> str:
        """The stages' p50/p99 and their share of the slowest 1%, ``skip`` left out."""
        marks = (self.sent, self.accepted, self.called, self.started, self.answered,
                 self.settled, self.handled, self.acked)
        ids = [i for i in self.acked if i not in skip and all(i in m for m in marks)]
        if not ids:
            return "stages: no complete samples"
        parts = []
        for name, a, b in zip(self.NAMES, marks, marks[1:], strict=False):
            ms = [(b[i] - a[i]) * 1000 for i in ids]
            parts.append(f"{name} {statistics.median(ms):.2f}/{p99(ms):.2f}")
        total = [(self.acked[i] - self.sent[i]) * 1000 for i in ids]
        tail = sorted(ids, key=lambda i: self.acked[i] - self.sent[i])[-max(1, len(ids) // 100):]
        share = []
        for name, a, b in zip(self.NAMES, marks, marks[1:], strict=False):
            share.append(f"{name} {statistics.mean((b[i] - a[i]) * 1000 for i in tail):.1f}")
        lags = self.lags or [0.0, 0.0]
        elapsed = self.elapsed or 1.0
        return (f"stages p50/p99 ms ({len(ids):,} writes, total p99 {p99(total):.2f}): "
                + ", ".join(parts) + "; the slowest 1% on average: " + ", ".join(share)
                + f"; loop lag p50/p99/max {statistics.median(lags):.2f}/{p99(lags):.2f}/"
                f"{max(lags):.1f} ms; GC {len(self.gc_pauses)} collections, "
                f"{sum(self.gc_pauses):.1f} ms, longest {max(self.gc_pauses, default=0):.1f}; "
                f"the loop's thread ran {self.sched[0] / 1e9 / elapsed:.2f} of a core and "
                f"waited for one {self.sched[1] / 1e9 / elapsed:.2f} of the time")


#: The variant measured as the actor was before its ack path was shortened: one batch in
#: flight per partition, and each unit through ``apply``'s task (no ``start_unit``).
BEFORE = "before"


class _ThroughApply:
    """The storage as the actor saw it before ``start_unit``: every attribute but that."""

    start_unit = None

    def __init__(self, storage: Storage) -> None:
        self._storage = storage

    def __getattr__(self, name: str) -> Any:
        return getattr(self._storage, name)


async def actor_bench(
    storage: Storage, settings: StorageSettings, seconds: float, n_channels: int, usage: Usage,
    variants: list[tuple[str, StorageSettings]], timed: bool = False,
    rate: float | None = None,
) -> tuple[float, dict[str, tuple[float, float, float]], float]:
    """(max acked/s with ``settings``; per variant: ack p50 ms, ack p99 ms at half that
    rate, p99 ms of the database requests alone that carried those writes, per write;
    queries per 100 identical reads).

    One writer actor sends ``Write``s (one message each, as channel actors send them) to
    the storage actor and records each one's time to ``Written``: first closed loop,
    keeping ``window`` writes outstanding, for the maximum acked rate; then open loop,
    paced every millisecond at half that rate, for the ack latency - ``seconds`` for each
    variant of the settings (a storage actor each), in interleaved slices, so that each
    ratio between variants is taken under the same conditions of a shared machine.
    ``timed``: time each write's stages (``Stages``) too; ``rate``: offer this instead.
    """
    loop = asyncio.get_running_loop()
    base = UvloopSystemBase(loop=loop)
    asys = ActorSystem(systemBase=base, transientUnique=True)
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

    stages = {name: Stages() for name, _ in variants} if timed else {}

    async def start_actor(name: str, variant: StorageSettings) -> Any:
        kind = stages[name].install(storage) if timed else StorageActor
        actor = asys.createActor(kind)
        backend = _ThroughApply(storage) if name == BEFORE else storage
        ready = await base.ask_async(actor, StorageStart(settings=variant, storage=backend), 10)
        assert isinstance(ready, StorageReady), ready
        return actor

    actors = {name: await start_actor(name, variant) for name, variant in variants}
    deployed = next(name for name, variant in variants if variant == settings)
    addr = actors[deployed]
    load = _Load(addr, next_write)
    writer = asys.createActor(_Writer)
    base.tell_from_loop(writer, load)
    # As a node does once started (cluster/node.py): start-up objects leave the GC's way.
    gc_before = gc.get_threshold()
    tune_gc()

    async def drain(limit_s: float = 60.0) -> None:
        deadline = time.perf_counter() + limit_s
        while load.sent_at and time.perf_counter() < deadline:
            await asyncio.sleep(0.01)
        if load.sent_at or load.failed:
            raise RuntimeError(
                f"{len(load.sent_at)} writes unanswered, failures: {load.failed[:3]}"
            )

    # Each write's database request alone (the batch it rode in, from the start of
    # storage.apply to its result): an ack can never be faster than that.
    apply = storage.apply
    requests: list[tuple[float, float, int]] = []  # (started, ms, writes)

    async def timed_apply(writes: Any, batched: bool = True) -> Any:
        started = time.perf_counter()
        try:
            return await apply(writes, batched)
        finally:
            requests.append((started, (time.perf_counter() - started) * 1000, len(writes)))

    async def staged_apply(timing: Stages, writes: Any, batched: bool) -> Any:
        unit = tuple(w.message.id for w in writes)
        _unit_ids.set(unit)
        now = time.perf_counter()
        for i in unit:
            timing.started[i] = now
        return await timed_apply(writes, batched)

    start_unit = getattr(storage, "start_unit", None)

    async def timed_awaitable(started: float, n: int, awaitable: Any) -> Any:
        try:
            return await awaitable
        finally:
            requests.append((started, (time.perf_counter() - started) * 1000, n))

    def call_start_unit(writes: Any) -> Any:
        """The actor's one-unit call: its request leaves now; timed to the turn its
        future is done in (the turn the actor's own callback runs in)."""
        started = time.perf_counter()
        timing = _active_stages[0]
        unit = tuple(w.message.id for w in writes)
        if timing is not None:
            for i in unit:
                timing.called[i] = timing.started[i] = started
        awaitable = start_unit(writes)  # type: ignore[misc]
        if not isinstance(awaitable, asyncio.Future):  # it went through apply
            return timed_awaitable(started, len(unit), awaitable)
        if timing is not None:
            _unit_of[id(awaitable)] = unit
        awaitable.add_done_callback(lambda _: requests.append(
            (started, (time.perf_counter() - started) * 1000, len(unit))))
        return awaitable

    def call_apply(writes: Any, batched: bool = True) -> Any:
        timing = _active_stages[0]
        if timing is None:
            return timed_apply(writes, batched)
        now = time.perf_counter()
        for w in writes:
            timing.called[w.message.id] = now
        return staged_apply(timing, writes, batched)

    n_requests = dict.fromkeys((name for name, _ in variants), 0)

    async def one_slice(name: str, rate: float, length: float,
                        out: tuple[list[float], list[float], set[int]]) -> int:
        """Offer ``rate`` writes/s to variant ``name``'s actor for ``length`` s; its acks'
        and requests' ms go to ``out`` (the first tenth of the slice warms up)."""
        latencies, per_write, skipped = out
        load.storage_actor = actors[name]
        load.stages = stages.get(name)
        slice_latencies: list[float] = []
        load.latencies = slice_latencies
        requests.clear()
        if timed:
            stages[name].begin()
        t0 = time.perf_counter()
        sent = 0
        while (elapsed := time.perf_counter() - t0) < length:
            due = int(elapsed * rate) - sent
            if due > 0:
                base.tell_from_loop(writer, due)
                sent += due
            await asyncio.sleep(0.001)
        await drain()
        if timed:
            stages[name].end()
        load.latencies = None
        latencies += slice_latencies[len(slice_latencies) // 10:]
        n_requests[name] += len(requests)
        skip_until = t0 + length / 10
        if timed:
            skipped.update(i for i, at in stages[name].sent.items() if t0 <= at < skip_until)
        per_write += [ms for started, ms, n in requests if started >= skip_until
                      for _ in range(n)]
        return sent

    # 1. Maximum: closed loop, `window` writes outstanding, for `seconds`.
    window = 2_000
    await asyncio.to_thread(usage.start)  # jstat starts a JVM: never on the loop
    t0 = time.perf_counter()
    load.refill_until = t0 + seconds
    base.tell_from_loop(writer, window)
    await asyncio.sleep(seconds)
    max_rate = load.acked / (time.perf_counter() - t0)
    await drain()
    log(f"actor: max {max_rate:,.0f} acked writes/s ({window:,} outstanding); {usage.stop()}")

    # 2. Half that rate, open loop (paced every 1 ms), measuring each write's ack: each
    # variant for `seconds` in all, in slices taken in turn (ABBA...), at the same rate.
    rate = rate or max_rate / 2
    if isinstance(storage, ScyllaStorage):  # the last phase's flushes and compactions
        await settle(storage, 30.0)
    rounds = 4
    results = {name: ([], [], set()) for name, _ in variants}  # type: ignore[var-annotated]
    sent = dict.fromkeys(results, 0)
    storage.apply = call_apply  # type: ignore[method-assign]
    if start_unit is not None:
        storage.start_unit = call_start_unit  # type: ignore[attr-defined]
    await asyncio.to_thread(usage.start)
    for r in range(rounds):
        for name, _ in (variants if r % 2 == 0 else variants[::-1]):
            sent[name] += await one_slice(name, rate, seconds / rounds, results[name])
    used = await asyncio.to_thread(usage.stop)
    del storage.apply
    if start_unit is not None:
        del storage.start_unit
    load.storage_actor = addr
    figures: dict[str, tuple[float, float, float]] = {}
    for name, variant in variants:
        latencies, per_write, skipped = results[name]
        if timed:
            log(f"actor ({name}): {stages[name].report(skipped)}")
        log(
            f"actor ({name}, max {variant.max_partition_in_flight} batches in flight per "
            f"partition): {sent[name]:,} writes at {rate:,.0f}/s: ack p50 "
            f"{statistics.median(latencies):.2f} ms, p99 {p99(latencies):.2f} ms; their "
            f"database requests alone: p50 {statistics.median(per_write):.2f} ms, p99 "
            f"{p99(per_write):.2f} ms ({n_requests[name]:,} requests); ratio of the p99s "
            f"{p99(latencies) / p99(per_write):.2f}"
        )
        figures[name] = statistics.median(latencies), p99(latencies), p99(per_write)
    log(f"actor: the half-rate phase ({len(variants)} variants x {seconds:g} s): {used}")

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
    gc.unfreeze()
    gc.set_threshold(*gc_before)
    return max_rate, figures, statistics.mean(per_100)


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
    only = set(args.only or ("write", "history", "ack", "sqlite"))
    try:
        if "write" in only:
            await cassandra_writes(cass, ids, now_ms, scale, results)
        if "history" in only:
            await cassandra_history(cass, ids, now_ms, history_rows, args.rounds, results)
        if "ack" in only:
            with placed(args.placement, node.pid()) as placement:
                results["placement"] = placement
                await ack_bench(args, cass, settings, node, results)
    finally:
        await cass.close()
    if "sqlite" in only:
        await sqlite_bench(ids, now_ms, scale, history_rows, args.rounds, results)
    return results


@contextlib.contextmanager
def placed(placement: str, node_pid: int | None) -> Iterator[str]:
    """The ack phase's CPUs (``loadtest/placement.py``): with ``split`` and more than one
    CPU, the Cassandra node on all but the last and this process (the storage actor, its
    loop and the driver's threads) on the last, as the database runs on machines of its
    own in production; everything on every CPU again afterwards. Yields a line saying
    where each ran ("split: ..." or "shared: ...")."""
    usable = os.sched_getaffinity(0)
    if node_pid is None and placement != "shared":
        db_cpus, own_cpus, line = None, None, "not pinned: no pid for the Cassandra node"
    else:
        db_cpus, own_cpus, line = cpu_plan(None, None, server="Cassandra",
                                           client="benchmark (the storage actor)",
                                           placement=placement)
    log(f"actor: placement: {line}")
    run_on(db_cpus, node_pid)
    run_on(own_cpus)
    try:
        yield f"{'split' if db_cpus else 'shared'}: {line}"
    finally:
        if db_cpus:
            with contextlib.suppress(OSError):  # the node may have gone
                run_on(usable, node_pid)
            run_on(usable)


async def ack_bench(args: argparse.Namespace, cass: ScyllaStorage, settings: StorageSettings,
                    node: CassandraNode, results: dict[str, Any]) -> None:
    """The storage actor's ack latency at half its maximum, as deployed and as before."""
    # The actor as deployed: the default window, batch, queue and in-flight bounds.
    log(
        f"actor: flush window {settings.flush_window_ms} ms, max batch "
        f"{settings.max_batch}, max in flight {settings.max_in_flight}, max pending "
        f"{settings.max_pending}; {args.ack_channels} channels"
    )
    # The same rate, in the same run: as the actor was before (one batch in flight
    # per partition, each unit through apply's task) and as deployed.
    variants = [(BEFORE, settings.with_(max_partition_in_flight=1)),
                ("deployed", settings)]
    for n in args.partition_in_flight:
        variants.append((f"{n}_per_partition",
                         settings.with_(max_partition_in_flight=n)))
    max_rate, figures, per_100 = await actor_bench(
        cass,
        settings,
        5.0 if args.quick else 8.0,
        args.ack_channels,
        Usage(node.pid()),
        variants,
        args.stages,
        args.ack_rate,
    )
    p50_ack, p99_ack, db_p99 = figures["deployed"]
    results["cassandra_ack_p99_ms"] = round(p99_ack, 2)
    results["cassandra_ack_database_p99_ms"] = round(db_p99, 2)
    results["cassandra_ack_p99_ratio"] = round(p99_ack / db_p99, 2)
    results["coalesced_reads_ratio"] = round(per_100, 2)
    results["cassandra_actor_max_writes_per_s"] = round(max_rate)
    results["cassandra_ack_p50_ms"] = round(p50_ack, 2)
    for name, (p50, p99_name, db_name) in figures.items():
        if name != "deployed":
            results[f"cassandra_ack_p50_ms_{name}"] = round(p50, 2)
            results[f"cassandra_ack_p99_ms_{name}"] = round(p99_name, 2)
            results[f"cassandra_ack_database_p99_ms_{name}"] = round(db_name, 2)
            results[f"cassandra_ack_p99_ratio_{name}"] = round(p99_name / db_name, 2)
    results["ack_channels"] = args.ack_channels


async def cassandra_writes(
    cass: ScyllaStorage, ids: Ids, now_ms: int, scale: float, results: dict[str, Any]
) -> None:
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


async def cassandra_history(
    cass: ScyllaStorage, ids: Ids, now_ms: int, rows: int, rounds: int, results: dict[str, Any]
) -> None:
    year_channel = ids.at(now_ms - 366 * DAY_MS)
    t0 = time.perf_counter()
    cursors = await load_year(cass, year_channel, rows, ids, now_ms, 10_000, 3)
    log(f"cassandra: loaded {rows:,} messages over a year in {time.perf_counter() - t0:.1f}s")
    waited = await settle(cass)
    log(f"cassandra: compactions after the load settled in {waited:.1f}s")
    lat, bef, both = await history_latency(cass, year_channel, cursors, rounds)
    log(f"cassandra: history p99 latest-50 {lat:.2f} ms, before-X {bef:.2f} ms")
    results["cassandra_history_p99_ms"] = round(both, 2)


async def sqlite_bench(
    ids: Ids, now_ms: int, scale: float, history_rows: int, rounds: int, results: dict[str, Any]
) -> None:
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
            lat, bef, both = await history_latency(lite, year_channel, cursors, rounds)
            log(f"sqlite: history p99 latest-50 {lat:.2f} ms, before-X {bef:.2f} ms")
            results["sqlite_history_p99_ms"] = round(both, 2)
        finally:
            await lite.close()


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
    parser.add_argument(
        "--only",
        action="append",
        choices=["write", "history", "ack", "sqlite"],
        help="run only this part (repeatable); the JSON line then holds only its figures",
    )
    parser.add_argument(
        "--ack-rate",
        type=float,
        help="offer this many writes/s in the ack phase instead of half the maximum",
    )
    parser.add_argument(
        "--partition-in-flight",
        type=int,
        action="append",
        default=[],
        help="also measure the ack phase with this max_partition_in_flight (repeatable)",
    )
    parser.add_argument(
        "--stages",
        action="store_true",
        help="time each write's stages along the ack path (actor, database, handoffs)",
    )
    parser.add_argument(
        "--placement",
        choices=("split", "shared"),
        default="split",
        help="the ack phase: split (default) puts the Cassandra node and this process on "
        "CPUs of their own where the machine allows (loadtest/placement.py), as the "
        "database has machines of its own in production; shared pins neither",
    )
    parser.add_argument(
        "--port",
        type=int,
        help="use the Cassandra node already answering on this port (e.g. one started "
        "with `python -m tests.services.cassandra start`) instead of starting one",
    )
    args = parser.parse_args(argv)
    if args.port:
        node = CassandraNode(port=args.port)
    else:
        node = CassandraNode.isolated("bench")
    log(f"cpu pressure before: {cpu_pressure()}")
    started = False
    if not args.port:
        log("starting Cassandra (jars cached under .cache/cassandra)")
        t0 = time.monotonic()
        started = node.start()
        verb = "started" if started else "already running"
        log(f"cassandra {verb} in {time.monotonic() - t0:.1f}s")
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
        "cassandra_ack_database_p99_ms",
        "cassandra_ack_p99_ratio",
        "coalesced_reads_ratio",
    ]
    extra = {k: v for k, v in results.items() if k not in order}
    log(f"cpu pressure after: {cpu_pressure()}")
    if "cassandra_batched_writes_per_s" in results:
        ratio = (
            results["cassandra_batched_writes_per_s"] / results["cassandra_unbatched_writes_per_s"]
        )
        extra["batched_over_unbatched"] = round(ratio, 1)
    log(f"also: {json.dumps(extra)}")
    print(json.dumps({k: results[k] for k in order if k in results}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
