"""The storage actor's log lines: a retry is one structured line (at most one a second
per error type, with the count held back) carrying the trace of its batch; a write that
spends its retry budget is one error line (real runtime and SQLite; one fault wrapper)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from storage_testkit import Runtime, create
from test_actor import FailingFirst

import storage.actor
from observability import configure_tracing, get_tracer
from observability.logging import LogThrottle
from observability.spans import context_of
from storage.messages import Write, WriteFailed, Written
from storage.settings import StorageSettings
from tests.log_capture import json_logs


@pytest.fixture
def rt(monkeypatch: pytest.MonkeyPatch) -> Iterator[Runtime]:
    monkeypatch.setattr(storage.actor, "_outage_lines", LogThrottle(interval=1.0))
    runtime = Runtime()
    yield runtime
    runtime.asys.shutdown()


@pytest.fixture
def traced(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    configure_tracing("greenroom-test", exporter=InMemorySpanExporter())
    yield
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")  # back to no tracing for later tests
    configure_tracing("greenroom-test")


def test_a_retry_is_one_structured_line_in_the_write_trace(
        rt: Runtime, sqlite_storage, ids, traced) -> None:  # type: ignore[no-untyped-def]
    flaky = FailingFirst(sqlite_storage, failures=3)
    addr = rt.storage_actor(flaky)
    span = get_tracer("test").start_span("storage.write")
    trace = context_of(span)
    with json_logs() as logs:
        answer = rt.ask(addr, Write("a", (create(ids.now(-10_000), ids.now()),), trace))
    span.end()
    assert isinstance(answer, Written) and rt.stats(addr).retries == 3
    # three retries within a second: the first is written, the others are held back
    (line,) = logs.events("storage.retry")
    assert line["level"] == "warning" and line["logger"] == "greenroom.storage"
    assert line["writes"] == 1 and line["attempt"] == 1 and line["backend"] == "sqlite"
    assert line["exc_type"] == "OperationalError"
    assert line["exc_message"] == "database is locked"
    assert line["delay_s"] > 0 and line["suppressed"] == 0
    assert line["trace_id"] == f"{span.get_span_context().trace_id:032x}"


def test_a_spent_retry_budget_is_one_error_line(rt: Runtime, sqlite_storage, ids) -> None:  # type: ignore[no-untyped-def]
    always = FailingFirst(sqlite_storage, failures=10**9)
    addr = rt.storage_actor(always, StorageSettings(retry_budget_s=0.2))
    channel = ids.now(-10_000)
    with json_logs() as logs:
        answer = rt.ask(addr, Write("doomed", (create(channel, ids.now()),)))
    assert isinstance(answer, WriteFailed) and answer.transient
    (line,) = logs.events("storage.write_failed")
    assert line["level"] == "error" and line["reason"] == "retry budget exhausted"
    assert line["channel_id"] == channel and line["exc_type"] == "OperationalError"
    assert "trace_id" not in line  # an untraced write
