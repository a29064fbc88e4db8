"""The storage actor: one per node process, in front of a storage backend.

Writes (``Write``) wait in one queue per partition ``(channel_id, bucket)``. A write that
finds no batch in flight goes out at once (group commit: a write waits for the next
commit, not for a timer); otherwise writes gather until ``max_batch`` are waiting, a
batch completes, or ``flush_window_ms`` after the first one arrived.
A partition sends its next batch only once its last one has completed or has been out
for half the recent batch latency (``flush_seconds``), and has at most
``max_partition_in_flight`` out - many concurrent batches to one hot partition contend
inside Cassandra: whatever arrives meanwhile goes out together, so batches grow with
load (group commit) instead of multiplying. With one batch in flight per partition a
write that just missed its partition's batch waited that whole batch out before its own
left, so its ack took up to twice the database's latency (measured at half the actor's
maximum: ack p99 1.5-2.5x the database requests' p99, that wait its largest part). Half
a batch latency bounds the wait, and the cap is above the two batches that spacing
keeps out, so that a slow batch (a database pause) does not hold the writes behind it:
they leave and wait out the pause in a request of their own.
When a batch completes while others are still out, the partitions it frees wait for the
window (or for the last batch out) rather than leaving at once in a small request of
their own.
Each batch (a unit of the backend: a CQL batch of the partitions that share replicas, a
SQLite transaction) is acknowledged as soon as it completes, at most ``max_in_flight``
at a time.
Each ``Write`` is acknowledged (``Written``) only when every write in it is durable.

* Backpressure: at most ``max_pending`` writes are queued or in flight. A ``Write`` that
  does not fit is answered ``Busy(retry_after_s)`` and not queued - never dropped
  silently, and the sender can tell "slow down" from "failed".
* Retries: a write that failed transiently (timeout, node down) is retried with
  exponential backoff and jitter - safe because every write is idempotent (timestamped,
  keyed by its snowflake) - until ``retry_budget_s`` has passed since it was accepted;
  then its sender gets ``WriteFailed``. Permanent errors fail at once, and only the
  write that caused them: the backend retries the rest of its batch without it
  (storage.base). The answer names a reason safe for a client; the database's own text
  goes to the log.
* Recovery: after repeated failing flushes the actor rebuilds the backend's connections
  (``Storage.reconnect``: a new CQL ``Cluster``), because the driver does not always
  recover on its own after the database restarts. The actor itself keeps running.
* Tracing: a ``Write`` with a ``trace`` (its sender's ``storage.write`` span) gets, under
  that span, a ``storage.queued`` span per write and attempt (accepted or failed ->
  sent to the database) and a ``storage.db`` span per database call, and each
  database call carrying traced writes is one ``storage.batch`` span (writes,
  partitions, attempt, backend) linked to every traced write's span. Untraced writes
  cost one ``is None`` test per ``Write`` and one per batch (``self.traced``).
* Reads: identical in-flight ``History`` queries are coalesced into one database query
  (Discord's data services). A read issued after a write to that channel was
  acknowledged never joins a query that started before the acknowledgement, so a
  client still reads its own writes.

All I/O runs through ``run_io`` on the actor system's event loop; the handlers never
block.
"""

from __future__ import annotations

import heapq
import logging
import random
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from thespian.actors import ActorExitRequest

from actors import Actor, IODone, Timeout
from observability.logging import LogThrottle, log_span
from observability.metrics import SIZE_BUCKETS, histogram
from observability.spans import child, end, fail, link_to, start
from storage.base import Storage
from storage.messages import (
    Busy,
    FindNonce,
    GetStorageStats,
    History,
    HistoryFailed,
    HistoryResult,
    NonceFound,
    StorageFailed,
    StorageReady,
    StorageStart,
    StorageStats,
    Write,
    WriteFailed,
    Written,
)
from storage.model import MessageWrite
from storage.settings import StorageSettings

log = logging.getLogger("greenroom.storage")
#: An outage fails every batch and read, again after each backoff: one line a second
#: per event and error type, with the count held back (``suppressed``).
_outage_lines = LogThrottle(interval=1.0)


def _log_outage(level: int, event: str, error: BaseException, **fields: Any) -> None:
    held = _outage_lines.allow((event, type(error)))
    if held is not None:
        log.log(level, event, extra={**fields, "exc_type": type(error).__name__,
                                     "exc_message": str(error), "suppressed": held})
_batch_writes = histogram("storage_batch_writes", "writes per database call (a CQL "
                          "batch, a SQLite transaction)", "{write}", SIZE_BUCKETS)
_db_duration = histogram("storage_batch_duration", "one database call of a write batch, "
                         "by outcome (ok, error: apply raised)", "s",
                         labels={"outcome": ("ok", "error")})

BACKOFF_BASE_S = 0.02
BACKOFF_CAP_S = 1.0
RECONNECT_AFTER_FAILED_FLUSHES = 3
RECONNECT_MIN_INTERVAL_S = 5.0
#: A busy partition's next batch leaves once its last has been out this share of the
#: batch latency (see the module docstring).
PIPELINE_SPACING = 0.5


@dataclass(slots=True)
class _Request:
    ref: Any
    sender: Any
    remaining: int
    failed: list[MessageWrite] = field(default_factory=list)
    error: str = ""
    rejected: bool = True  # every failure so far was a rejection
    transient: bool = False
    trace: dict | None = None  # the sender's storage.write span (None: untraced)


@dataclass(slots=True)
class _Entry:
    write: MessageWrite
    request: _Request
    accepted_at: float
    attempts: int = 0
    queued: Any = None  # its open storage.queued span (traced writes only)


@dataclass(slots=True)
class _Read:
    query_key: tuple
    channel_id: int
    waiters: list[tuple[Any, Any]]  # (sender, ref)


class StorageActor(Actor):
    """Batches, acknowledges, retries and coalesces storage work (see module docstring)."""

    # The runtime bounces messages past this as ``Overloaded``; ``Busy`` (at
    # ``max_pending`` writes) is the normal backpressure, so leave the mailbox roomier.
    mailbox_capacity = 100_000

    def __init__(self) -> None:
        super().__init__()
        self.storage: Storage | None = None
        self.owns_storage = False
        self.cfg = StorageSettings()
        # Writes wait in one queue per partition; a partition has a few batches in
        # flight at most (``max_partition_in_flight``: concurrent batches to one hot
        # partition contend inside Cassandra), and whatever arrives meanwhile goes out
        # together in its next batch.
        self.queues: dict[tuple[int, int], deque[_Entry]] = {}
        self.ready: deque[tuple[int, int]] = deque()  # partitions with writes, not busy
        self.ready_set: set[tuple[int, int]] = set()
        self.busy: dict[tuple[int, int], int] = {}  # partition -> units in flight
        # A busy partition with writes waiting sends its next batch (if under
        # max_partition_in_flight) once its last one has been out for half the batch
        # latency: (when, partition) in a heap, its current time in behind_due.
        self.last_sent: dict[tuple[int, int], float] = {}  # busy partition -> its last batch
        self.behind: list[tuple[float, tuple[int, int]]] = []
        self.behind_due: dict[tuple[int, int], float] = {}
        self.pipeline_timer: int | None = None
        self.pipeline_at = 0.0  # when pipeline_timer fires
        self.pipelined = 0  # batches sent while their partition had one in flight
        self.waiting = 0  # writes in the queues
        self.units_in_flight = 0
        #: the writes of each unit at the database, by the id of its entry list (kept
        #: alive by its ``run_io`` tag): an exit answers them too
        self.in_flight_units: dict[int, list[_Entry]] = {}
        self.in_flight_writes = 0  # in flight or waiting for a retry
        self.flush_timer: int | None = None
        self.retrying: dict[int, list[_Entry]] = {}  # timer ref -> entries waiting
        self.reads: dict[tuple, _Read] = {}  # joinable in-flight reads, by query key
        self.reads_by_channel: dict[int, set[tuple]] = {}
        self.waiting_reads: list[tuple[Any, History]] = []
        self.failed_flushes = 0
        self.reconnecting = False
        self.last_reconnect = 0.0
        self.flush_seconds = 0.005  # moving average, for Busy's retry_after
        self.stats = StorageStats()
        self.opener: Any = None
        self.traced = 0  # entries with an open storage.queued span (0: skip span work)

    # -- dispatch ------------------------------------------------------------------------
    def receiveMessage(self, msg: Any, sender: Any) -> None:
        kind = msg.__class__
        if kind is Write:
            self._on_write(msg, sender)
        elif kind is IODone:
            self._on_io(msg)
        elif kind is Timeout:
            self._on_timer(msg.ref, msg.payload)
        elif kind is History:
            self._on_history(msg, sender)
        elif kind is FindNonce:
            self._on_find_nonce(msg, sender)
        elif kind is StorageStart:
            self._on_start(msg, sender)
        elif kind is GetStorageStats:
            self.send(sender, self._snapshot())
        elif kind is ActorExitRequest:
            self._on_exit()

    # -- start / stop ------------------------------------------------------------------
    def _on_start(self, msg: StorageStart, sender: Any) -> None:
        if msg.storage is not None:
            self.storage = msg.storage
            self.cfg = msg.settings or getattr(msg.storage, "settings", self.cfg)
            self.send(sender, StorageReady(self.storage.name))
            self._resume()
            return
        if msg.settings is None:
            self.send(sender, StorageFailed("StorageStart needs settings or an open storage"))
            return
        from storage import make_storage

        self.cfg = msg.settings
        backend = make_storage(msg.settings)
        self.opener = sender
        self.run_io(backend.open(), ("open", backend))

    def _on_exit(self) -> None:
        if self.owns_storage and self.storage is not None:
            import asyncio

            asyncio.ensure_future(self.storage.close())  # the loop outlives this actor
        waiting = [e for q in self.queues.values() for e in q]
        for entries in self.retrying.values():
            waiting += entries
        # at the database when the actor stops: their answers come to nobody, so their
        # askers hear now (a transient failure: the write may have landed, and a retry
        # of it is idempotent) instead of waiting out their ask's timeout
        for entries in self.in_flight_units.values():
            waiting += entries
        self.queues.clear()
        self.retrying.clear()
        self.in_flight_units.clear()
        for entry in waiting:
            if entry.queued is not None:
                fail(entry.queued, "storage actor stopped")
            self._finish(entry, "storage actor stopped", transient=True)

    def _resume(self) -> None:
        if self.waiting:
            self._flush()
        waiting, self.waiting_reads = self.waiting_reads, []
        for sender, msg in waiting:
            if isinstance(msg, FindNonce):
                self._on_find_nonce(msg, sender)
            else:
                self._on_history(msg, sender)

    # -- writes ------------------------------------------------------------------------
    def _limits(self) -> tuple[int, int]:
        """(units allowed in flight, writes per partition per batch) for this backend."""
        assert self.storage is not None
        units = min(self.cfg.max_in_flight, self.storage.unit_concurrency)
        per_partition = self.storage.partition_batch_limit or self.cfg.max_batch
        return units, per_partition

    def _enqueue(self, entry: _Entry, front: bool = False) -> None:
        p = entry.write.partition
        q = self.queues.get(p)
        if q is None:
            q = self.queues[p] = deque()
        if front:
            q.appendleft(entry)
        else:
            q.append(entry)
        self.waiting += 1
        if p not in self.ready_set:
            n = self.busy.get(p)
            if n is None:
                self.ready.append(p)
                self.ready_set.add(p)
            elif n < self.cfg.max_partition_in_flight and p not in self.behind_due:
                self._behind(p)

    def _behind(self, p: tuple[int, int]) -> None:
        """``p`` has a batch in flight, room for another and writes waiting: they go once
        its last batch has been out for half the batch latency (``flush_seconds``),
        unless a batch of it completes first."""
        due = self.last_sent[p] + self.flush_seconds * PIPELINE_SPACING
        now = time.monotonic()
        if due <= now:
            self.ready.append(p)
            self.ready_set.add(p)
            return
        self.behind_due[p] = due
        heapq.heappush(self.behind, (due, p))
        if self.pipeline_timer is None or due < self.pipeline_at:
            if self.pipeline_timer is not None:
                self.cancel_timer(self.pipeline_timer)
            self.pipeline_at = due
            self.pipeline_timer = self.start_timer(due - now, "pipeline")

    def _on_pipeline_timer(self) -> None:
        """Partitions whose last batch has been out long enough become ready."""
        self.pipeline_timer = None
        now = time.monotonic()
        behind = self.behind
        while behind and behind[0][0] <= now:
            due, p = heapq.heappop(behind)
            if self.behind_due.get(p) != due:
                continue  # stale: its batch completed, or it was scheduled again
            del self.behind_due[p]
            if (p in self.queues and p not in self.ready_set
                    and self.busy.get(p, 0) < self.cfg.max_partition_in_flight):
                self.ready.append(p)
                self.ready_set.add(p)
        if behind:
            self.pipeline_at = behind[0][0]
            self.pipeline_timer = self.start_timer(max(0.0, self.pipeline_at - now), "pipeline")
        if self.ready:
            self._flush()

    def _on_write(self, msg: Write, sender: Any) -> None:
        n = len(msg.writes)
        queued = self.waiting + self.in_flight_writes
        if queued + n > self.cfg.max_pending:
            self.stats.busy += 1
            rounds = 1 + queued // self.cfg.max_batch
            retry_after = max(0.002, min(1.0, self.flush_seconds * rounds))
            self.send(sender, Busy(msg.ref, retry_after, queued))
            return
        now = time.monotonic()
        request = _Request(msg.ref, sender, n)
        if msg.trace is None:
            for w in msg.writes:
                self._enqueue(_Entry(w, request, now))
        else:
            request.trace = msg.trace
            for w in msg.writes:
                self._enqueue(self._traced(_Entry(w, request, now)))
        if self.storage is None:
            return
        if self.waiting >= self.cfg.max_batch or self.units_in_flight == 0:
            # group commit: nothing is being written, so nothing is gained by waiting;
            # while a batch is out, what arrives gathers for the next one (sent when a
            # batch completes, or after the window if others are still out)
            self._flush()
        elif self.flush_timer is None:
            self.flush_timer = self.start_timer(self.cfg.flush_window_ms / 1000.0, "flush")

    def _flush(self) -> None:
        """Send batches for ready partitions while units may be in flight.

        Each round takes up to ``max_batch`` writes from ready partitions (at most one
        batch's worth each) and splits them into the backend's units of durability
        (``ack_units``: a CQL batch of partitions sharing replicas, a SQLite
        transaction); each unit is acknowledged as soon as it completes.
        """
        if self.flush_timer is not None:
            self.cancel_timer(self.flush_timer)
            self.flush_timer = None
        if self.storage is None:
            return
        max_units, per_partition = self._limits()
        now = time.monotonic()
        while self.ready and self.units_in_flight < max_units:
            batch: list[_Entry] = []
            left: list[tuple[int, int]] = []  # partitions with writes for a next batch
            while self.ready and len(batch) < self.cfg.max_batch:
                p = self.ready.popleft()
                self.ready_set.discard(p)
                q = self.queues[p]
                take = min(len(q), per_partition, self.cfg.max_batch - len(batch))
                batch += [q.popleft() for _ in range(take)]
                if p in self.busy:
                    self.pipelined += 1
                self.last_sent[p] = now
                if q:  # the rest goes in its next batch
                    left.append(p)
                else:
                    del self.queues[p]
            self.waiting -= len(batch)
            self.in_flight_writes += len(batch)
            self.stats.flushes += 1
            writes = [e.write for e in batch]
            for unit in self.storage.ack_units(writes):
                entries = [batch[i] for i in unit]
                partitions = {e.write.partition for e in entries}
                for p in partitions:
                    self.busy[p] = self.busy.get(p, 0) + 1
                self.units_in_flight += 1
                self.in_flight_units[id(entries)] = entries
                _batch_writes.record(len(entries))
                spans = self._batch_spans(entries, partitions) if self.traced else None
                unit_writes = [writes[i] for i in unit]
                # start_unit (CQL): the request leaves now and its answer settles a future,
                # no task's turns in between; else apply's coroutine
                start_unit = getattr(self.storage, "start_unit", None)
                self.run_io(
                    self.storage.apply(unit_writes) if start_unit is None
                    else start_unit(unit_writes),
                    ("unit", entries, partitions, time.monotonic(), spans),
                )
            for p in left:
                if (p not in self.behind_due
                        and self.busy[p] < self.cfg.max_partition_in_flight):
                    self._behind(p)

    def _after_unit(
        self,
        batch: list[_Entry],
        partitions: set[tuple[int, int]],
        started: float,
        outcomes: Any,
        error: BaseException | None,
    ) -> None:
        self.units_in_flight -= 1
        self.in_flight_units.pop(id(batch), None)
        self.in_flight_writes -= len(batch)
        now = time.monotonic()
        self.flush_seconds = 0.9 * self.flush_seconds + 0.1 * (now - started)
        _db_duration.record(now - started, outcome="error" if error is not None else "ok")
        if error is not None:  # apply itself raised: every write shares the outcome
            outcomes = [error] * len(batch)
        retry: list[_Entry] = []
        assert self.storage is not None
        for entry, outcome in zip(batch, outcomes, strict=True):
            if outcome is None:
                self._finish(entry, None)
            elif not self.storage.is_transient(outcome):
                self._fail_permanently(entry, outcome)
            elif now - entry.accepted_at < self.cfg.retry_budget_s:
                entry.attempts += 1
                retry.append(entry)
            else:
                _log_outage(logging.ERROR, "storage.write_failed", outcome,
                            channel_id=entry.write.channel_id, attempts=entry.attempts + 1,
                            reason="retry budget exhausted",
                            retry_budget_s=self.cfg.retry_budget_s)
                self._finish(entry, "storage unavailable, retry later", transient=True)
        if retry:
            self.stats.retries += len(retry)
            attempts = max(e.attempts for e in retry)
            delay = min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** (attempts - 1))
            delay *= random.uniform(0.5, 1.0)
            failed = next(o for o in outcomes if o is not None and self.storage.is_transient(o))
            _log_outage(logging.WARNING, "storage.retry", failed, writes=len(retry),
                        batch_writes=len(batch), partitions=len(partitions),
                        attempt=attempts, delay_s=round(delay, 4),
                        backend=self.storage.name)
            self.in_flight_writes += len(retry)  # still counted against the bound
            self.retrying[self.start_timer(delay, "retry")] = retry
            self.failed_flushes += 1
            self._maybe_reconnect()
        else:
            self.failed_flushes = 0
        for p in partitions:
            left = self.busy[p] - 1
            if left:
                self.busy[p] = left
                # room for another batch of it again: its waiting writes go once its
                # last batch has been out long enough (see _behind)
                if p in self.queues and p not in self.ready_set and p not in self.behind_due:
                    self._behind(p)
                continue
            del self.busy[p]
            del self.last_sent[p]
            self.behind_due.pop(p, None)  # its heap entry is stale now
            if p in self.queues and p not in self.ready_set:
                self.ready.append(p)
                self.ready_set.add(p)
        if self.ready:
            if self.units_in_flight == 0:
                # These writes waited at least one batch's latency already: send them now.
                self._flush()
            elif self.flush_timer is None:
                # Other batches are still out: the partitions freed by each one would
                # otherwise leave at once, a few at a time, in a request each (measured at
                # half the maximum rate: 2-4x the requests, more CPU, higher p50). Let the
                # window, or the last batch out, gather them.
                self.flush_timer = self.start_timer(self.cfg.flush_window_ms / 1000.0, "flush")

    def _fail_permanently(self, entry: _Entry, exc: BaseException) -> None:
        """A write that can never succeed as sent: rejected (its values; a client error,
        logged at INFO) or a server error (logged as a WARNING). Only the reason is sent
        back; the exception's text may name internals."""
        assert self.storage is not None
        reason = self.storage.rejection(exc)
        if reason is not None:
            log.info("storage.write_rejected", extra={
                "channel_id": entry.write.channel_id, "reason": reason,
                "exc_type": type(exc).__name__, "exc_message": str(exc)})
            self._finish(entry, reason, rejected=True)
        else:
            log.error("storage.write_failed", extra={
                "channel_id": entry.write.channel_id, "reason": "not transient"},
                exc_info=exc)
            self._finish(entry, "storage error")

    def _finish(self, entry: _Entry, error: str | None, *, rejected: bool = False,
                transient: bool = False) -> None:
        request = entry.request
        if error is None:
            self.stats.writes_acked += 1
            self._invalidate_reads(entry.write.channel_id)
        else:
            self.stats.writes_failed += 1
            request.failed.append(entry.write)
            request.error = error
            request.rejected = request.rejected and rejected
            request.transient = request.transient or transient
        request.remaining -= 1
        if request.remaining == 0:
            if request.failed:
                self.send(request.sender, WriteFailed(
                    request.ref, request.error, tuple(request.failed),
                    rejected=request.rejected, transient=request.transient))
            else:
                self.send(request.sender, Written(request.ref))

    def _maybe_reconnect(self) -> None:
        now = time.monotonic()
        if (
            self.reconnecting
            or self.failed_flushes < RECONNECT_AFTER_FAILED_FLUSHES
            or now - self.last_reconnect < RECONNECT_MIN_INTERVAL_S
            or self.storage is None
        ):
            return
        self.reconnecting = True
        self.last_reconnect = now
        log.warning("storage.reconnecting", extra={"failed_flushes": self.failed_flushes})
        self.run_io(self.storage.reconnect(), ("reconnect",))

    # -- spans (traced writes only) -------------------------------------------------------
    def _traced(self, entry: _Entry) -> _Entry:
        """Open ``entry``'s ``storage.queued`` span: from now (accepted, or its attempt
        failed and waits for its backoff) until its batch goes to the database."""
        entry.queued = start(entry.request.trace, "storage.queued",
                             {"greenroom.attempt": entry.attempts + 1})
        self.traced += 1
        return entry

    def _batch_spans(self, entries: list[_Entry],
                     partitions: set[tuple[int, int]]) -> tuple[Any, list] | None:
        """A database call is about to carry ``entries``: end the traced ones'
        ``storage.queued``, open one ``storage.db`` per traced ``Write`` and the call's
        ``storage.batch``, linked to each traced write's span.

        The batch is also a child of the first ``storage.db``: a root span would face the
        root sampler again, and could be dropped while the writes it carries are kept."""
        traced: dict[int, tuple[_Request, list[_Entry]]] = {}
        for e in entries:
            if e.queued is not None:
                e.queued.end()
                e.queued = None
                self.traced -= 1
                group = traced.get(id(e.request))
                if group is None:
                    traced[id(e.request)] = (e.request, [e])
                else:
                    group[1].append(e)
        if not traced:
            return None
        assert self.storage is not None
        backend = self.storage.name
        dbs = []
        links = []
        for request, mine in traced.values():
            link = link_to(request.trace)
            if link is not None:
                links.append(link)
            dbs.append((mine, start(request.trace, "storage.db", {
                "greenroom.writes": len(mine), "greenroom.backend": backend,
                "greenroom.attempt": 1 + max(e.attempts for e in mine)})))
        batch = child(dbs[0][1], "storage.batch", {
            "greenroom.writes": len(entries),
            "greenroom.partitions": len(partitions),
            "greenroom.attempt": 1 + max(e.attempts for e in entries),
            "greenroom.backend": backend,
            "greenroom.traced_writes": sum(len(mine) for mine, _ in dbs),
        }, links=links)
        if batch.is_recording():
            here = batch.get_span_context()
            for _, db in dbs[1:]:
                db.add_link(here)
        return batch, dbs

    def _end_batch_spans(self, entries: list[_Entry], spans: tuple[Any, list],
                         attempts: list[int], outcomes: Any,
                         error: BaseException | None) -> None:
        """The call is done (``_after_unit`` has acted on it): end its spans, failed with
        the exception's type (never the database's own text) where a write failed; a
        traced write that will be retried starts its next ``storage.queued``."""
        batch, dbs = spans
        if error is not None:
            outcomes = [error] * len(entries)
        outcome_of = {id(e): o for e, o in zip(entries, outcomes, strict=True)}
        failures = [o for o in outcomes if o is not None]
        batch.set_attribute("greenroom.failed_writes", len(failures))
        if failures:
            fail(batch, type(failures[0]).__name__)
        else:
            batch.end()  # before the storage.db spans: one of them is its parent
        for mine, db in dbs:
            failed = [outcome_of[id(e)] for e in mine if outcome_of[id(e)] is not None]
            if failed:
                fail(db, type(failed[0]).__name__)
            else:
                end(db)
        for e, before in zip(entries, attempts, strict=True):
            if e.attempts > before and e.request.trace is not None:
                self._traced(e)  # retried: its backoff and queueing, up to its next call

    # -- reads -------------------------------------------------------------------------
    def _on_history(self, msg: History, sender: Any) -> None:
        self.stats.reads += 1
        if self.storage is None:
            self.waiting_reads.append((sender, msg))
            return
        key = msg.query.key
        read = self.reads.get(key)
        if read is not None:
            self.stats.reads_coalesced += 1
            read.waiters.append((sender, msg.ref))
            return
        read = _Read(key, msg.query.channel_id, [(sender, msg.ref)])
        self.reads[key] = read
        self.reads_by_channel.setdefault(read.channel_id, set()).add(key)
        self.run_io(self.storage.history(msg.query), ("read", read))

    def _on_find_nonce(self, msg: FindNonce, sender: Any) -> None:
        if self.storage is None:
            self.waiting_reads.append((sender, msg))
            return
        self.run_io(self._find_nonce(self.storage, msg), ("nonce", sender, msg.ref))

    @staticmethod
    async def _find_nonce(storage: Storage, msg: FindNonce) -> NonceFound:
        message_id = await storage.find_nonce(msg.channel_id, msg.author_id, msg.nonce)
        if message_id is None:
            return NonceFound(msg.ref, None)
        return NonceFound(msg.ref, message_id,
                          await storage.get_message(msg.channel_id, message_id))

    def _invalidate_reads(self, channel_id: int) -> None:
        keys = self.reads_by_channel.pop(channel_id, None)
        if keys:
            for key in keys:
                self.reads.pop(key, None)  # still answers its waiters; no new joiners

    def _after_read(self, read: _Read, result: Any, error: BaseException | None) -> None:
        if self.reads.get(read.query_key) is read:
            del self.reads[read.query_key]
            keys = self.reads_by_channel.get(read.channel_id)
            if keys is not None:
                keys.discard(read.query_key)
                if not keys:
                    del self.reads_by_channel[read.channel_id]
        failed = None if error is None else self._read_failed(None, error)
        for sender, ref in read.waiters:
            if failed is None:
                self.send(sender, HistoryResult(ref, result))
            else:
                self.send(sender, HistoryFailed(ref, failed.error, failed.transient))

    def _read_failed(self, ref: Any, error: BaseException) -> HistoryFailed:
        transient = self.storage is not None and self.storage.is_transient(error)
        if transient:
            _log_outage(logging.WARNING, "storage.read_failed", error, transient=True)
        else:
            log.error("storage.read_failed", extra={"transient": False}, exc_info=error)
        return HistoryFailed(ref, "storage unavailable, retry later" if transient
                             else "storage error", transient)

    # -- completions and timers ----------------------------------------------------------
    def _on_io(self, msg: IODone) -> None:
        tag = msg.tag
        what = tag[0]
        if what == "unit":
            if tag[4] is None:
                self._after_unit(tag[1], tag[2], tag[3], msg.result, msg.error)
            else:
                attempts = [e.attempts for e in tag[1]]
                with log_span(tag[4][0]):  # its lines (a retry) join the batch's trace
                    self._after_unit(tag[1], tag[2], tag[3], msg.result, msg.error)
                self._end_batch_spans(tag[1], tag[4], attempts, msg.result, msg.error)
        elif what == "read":
            self._after_read(tag[1], msg.result, msg.error)
        elif what == "nonce":
            self.send(tag[1], msg.result if msg.error is None
                      else self._read_failed(tag[2], msg.error))
        elif what == "reconnect":
            self.reconnecting = False
            if msg.error is None:
                self.stats.reconnects += 1
                log.warning("storage.reconnected")
            else:
                log.warning("storage.reconnect_failed", extra={
                    "exc_type": type(msg.error).__name__, "exc_message": str(msg.error)})
        elif what == "open":
            if msg.error is None:
                self.storage = tag[1]
                self.owns_storage = True
                self.send(self.opener, StorageReady(self.storage.name))
                self._resume()
            else:
                self.send(self.opener, StorageFailed(f"{type(msg.error).__name__}: {msg.error}"))

    def _on_timer(self, ref: int, payload: Any) -> None:
        if payload == "flush":
            self.flush_timer = None
            self._flush()
        elif payload == "pipeline":
            self._on_pipeline_timer()
        elif payload == "retry":
            entries = self.retrying.pop(ref, [])
            self.in_flight_writes -= len(entries)
            for entry in reversed(entries):
                self._enqueue(entry, front=True)  # retried writes go first
            self._flush()

    def _snapshot(self) -> StorageStats:
        s = self.stats
        return StorageStats(
            pending=self.waiting,
            in_flight=self.units_in_flight,
            flushes=s.flushes,
            writes_acked=s.writes_acked,
            writes_failed=s.writes_failed,
            retries=s.retries,
            busy=s.busy,
            reads=s.reads,
            reads_coalesced=s.reads_coalesced,
            reconnects=s.reconnects,
            queries=self.storage.queries if self.storage else 0,
            extra={
                "retrying": sum(map(len, self.retrying.values())),
                "failed_flushes": self.failed_flushes,
                "pipelined": self.pipelined,
            },
        )
