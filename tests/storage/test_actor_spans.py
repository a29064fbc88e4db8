"""The storage actor in the trace: a traced ``Write`` gets its queueing and its database
call under its sender's span, and each database call one ``storage.batch`` span linked to
every traced write it carried (real runtime, real SQLite; one fault wrapper for retries)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from storage_testkit import Runtime, create
from test_actor import FailingFirst

from observability import configure_tracing, get_tracer
from observability.spans import context_of
from storage.messages import Write, Written
from storage.settings import StorageSettings

#: one flush for everything sent at once: a window far longer than the sends take
ONE_BATCH = StorageSettings(max_batch=1000, flush_window_ms=200, max_in_flight=4)


@pytest.fixture
def rt() -> Iterator[Runtime]:
    runtime = Runtime()
    yield runtime
    runtime.asys.shutdown()


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    configure_tracing("greenroom-test", exporter=exporter)
    yield exporter
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")  # back to no tracing for later tests
    configure_tracing("greenroom-test")


def _write_span(name: str) -> tuple[Any, dict]:
    """A stand-in for the channel's storage.write span, and its context for ``Write``."""
    span = get_tracer("test").start_span(name)
    trace = context_of(span)
    assert trace is not None
    return span, trace


def _named(exporter: InMemorySpanExporter, name: str) -> list[Any]:
    return [s for s in exporter.get_finished_spans() if s.name == name]


def test_a_batch_is_one_span_linked_to_each_traced_write(
        rt: Runtime, sqlite_storage, ids, spans: InMemorySpanExporter) -> None:  # type: ignore[no-untyped-def]
    addr = rt.storage_actor(sqlite_storage, ONE_BATCH)
    channels = [ids.now(-10_000), ids.now(-20_000)]
    parents = [_write_span(f"write {i}") for i in range(3)]
    traced = [Write(f"t{i}", (create(channels[i % 2], ids.now()),), trace)
              for i, (_, trace) in enumerate(parents)]
    untraced = [Write(f"u{i}", (create(channels[i % 2], ids.now()),)) for i in range(5)]
    # group commit: the first write finds nothing in flight and goes at once; the rest
    # arrive while it is written and go together in the next batch
    leader = Write("lead", (create(channels[0], ids.now()),))

    async def go() -> list[Any]:
        return await asyncio.gather(*(rt.base.ask_async(addr, w, 30)
                                      for w in [leader, *traced, *untraced]))

    assert all(isinstance(a, Written) for a in rt.run(go()))
    for span, _ in parents:
        span.end()

    batches = _named(spans, "storage.batch")
    # SQLite: one transaction for the eight (the untraced leader's made no span)
    assert len(batches) == 1, [b.attributes for b in batches]
    batch = batches[0]
    assert dict(batch.attributes) == {
        "greenroom.writes": 8, "greenroom.partitions": 2, "greenroom.attempt": 1,
        "greenroom.backend": "sqlite", "greenroom.traced_writes": 3,
        "greenroom.failed_writes": 0}
    assert batch.status.status_code is StatusCode.UNSET
    # linked to every traced write's span, and to nothing else
    assert sorted(link.context.span_id for link in batch.links) == sorted(
        span.get_span_context().span_id for span, _ in parents)

    queued, dbs = _named(spans, "storage.queued"), _named(spans, "storage.db")
    for span, _ in parents:
        me = span.get_span_context()
        mine_q = [q for q in queued if q.parent.span_id == me.span_id]
        mine_db = [d for d in dbs if d.parent.span_id == me.span_id]
        assert len(mine_q) == 1 and len(mine_db) == 1
        q, db = mine_q[0], mine_db[0]
        assert q.context.trace_id == db.context.trace_id == me.trace_id
        # queued from acceptance until the call; the call covers the batch
        assert q.end_time <= db.start_time <= batch.start_time
        assert batch.end_time <= db.end_time
        assert db.attributes["greenroom.attempt"] == 1
        # its database call: the batch is under it or linked from it
        assert batch.parent.span_id == db.context.span_id or [
            link.context.span_id for link in db.links] == [batch.context.span_id]
    assert len(queued) == len(dbs) == 3  # untraced writes made no span


def test_retries_show_as_attempts_with_their_backoff(
        rt: Runtime, sqlite_storage, ids, spans: InMemorySpanExporter) -> None:  # type: ignore[no-untyped-def]
    flaky = FailingFirst(sqlite_storage, failures=2)
    addr = rt.storage_actor(flaky)
    parent, trace = _write_span("write")
    assert isinstance(rt.ask(addr, Write("a", (create(ids.now(-10_000), ids.now()),), trace)),
                      Written)
    parent.end()

    def by_start(name: str) -> list[Any]:
        return sorted(_named(spans, name), key=lambda s: s.start_time)

    batches, dbs, queued = by_start("storage.batch"), by_start("storage.db"), \
        by_start("storage.queued")
    assert [b.attributes["greenroom.attempt"] for b in batches] == [1, 2, 3]
    assert [d.attributes["greenroom.attempt"] for d in dbs] == [1, 2, 3]
    assert [q.attributes["greenroom.attempt"] for q in queued] == [1, 2, 3]
    assert [(d.status.status_code, d.status.description) for d in dbs] == [
        (StatusCode.ERROR, "OperationalError")] * 2 + [(StatusCode.UNSET, None)]
    assert [b.attributes["greenroom.failed_writes"] for b in batches] == [1, 1, 0]
    # a retry's queueing starts when its attempt failed: the backoff is in it
    for failed, again in zip(dbs, queued[1:], strict=False):
        assert again.start_time >= failed.start_time
        assert again.end_time <= dbs[dbs.index(failed) + 1].start_time
    me = parent.get_span_context().span_id
    assert {s.parent.span_id for s in [*dbs, *queued]} == {me}


def test_untraced_writes_make_no_span(rt: Runtime, sqlite_storage, ids,
                                      spans: InMemorySpanExporter) -> None:  # type: ignore[no-untyped-def]
    addr = rt.storage_actor(sqlite_storage)
    assert isinstance(rt.ask(addr, Write("u", (create(ids.now(-10_000), ids.now()),))),
                      Written)
    assert spans.get_finished_spans() == ()
