"""configure_tracing from the OTEL_* variables, and the JSON-lines span exporter."""

from __future__ import annotations

import json
import os

import pytest
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from observability import JsonLinesSpanExporter, configure_tracing, get_tracer, span_from
from observability.tracing import span_pipeline

# Loopback port 9 ("discard"): nothing listens there, and nothing is sent in these tests.
NOWHERE = "http://127.0.0.1:9"


@pytest.fixture(autouse=True)
def _no_metrics_export(monkeypatch: pytest.MonkeyPatch) -> None:
    """The metrics bridge is tested in its own file; keep its exporter out of these."""
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "none")


def _read(path) -> list[dict]:
    with open(path) as fh:
        return [json.loads(line) for line in fh]


def test_jsonlines_exporter_writes_one_parseable_line_per_span(tmp_path) -> None:
    path = tmp_path / "spans.jsonl"
    configure_tracing("greenroom-test", exporter=JsonLinesSpanExporter(path))
    tracer = get_tracer("t")
    with tracer.start_as_current_span("outer", attributes={"greenroom.guild": 1}) as outer:
        with tracer.start_as_current_span("inner", attributes={"tags": ("a", "b")}):
            pass

    inner, outer_line = _read(path)
    ctx = outer.get_span_context()
    assert outer_line["name"] == "outer"
    assert outer_line["trace_id"] == f"{ctx.trace_id:032x}"
    assert outer_line["span_id"] == f"{ctx.span_id:016x}"
    assert outer_line["parent_span_id"] is None
    assert outer_line["attributes"] == {"greenroom.guild": 1}
    assert outer_line["service_name"] == "greenroom-test"
    assert outer_line["resource"]["service.name"] == "greenroom-test"
    assert outer_line["pid"] == os.getpid()
    assert outer_line["start_time_unix_nano"] <= outer_line["end_time_unix_nano"]
    assert inner["trace_id"] == outer_line["trace_id"]
    assert inner["parent_span_id"] == outer_line["span_id"]
    assert inner["parent_is_remote"] is False
    assert inner["attributes"] == {"tags": ["a", "b"]}


def test_jsonlines_exporter_appends(tmp_path) -> None:
    path = tmp_path / "spans.jsonl"
    path.write_text('{"existing": true}\n')
    configure_tracing("greenroom-test", exporter=JsonLinesSpanExporter(path))
    with get_tracer("t").start_as_current_span("s"):
        pass
    first, second = _read(path)
    assert first == {"existing": True} and second["name"] == "s"


def test_trace_file_env_enables_the_jsonlines_exporter(tmp_path, monkeypatch) -> None:
    path = tmp_path / "env.jsonl"
    monkeypatch.setenv("GREENROOM_TRACE_FILE", str(path))
    configure_tracing("greenroom-test")
    ((processor, exporter),) = span_pipeline()
    assert isinstance(exporter, JsonLinesSpanExporter) and exporter.path == str(path)
    assert isinstance(processor, SimpleSpanProcessor)  # written when the span ends
    with span_from(None, "from-env"):
        pass
    assert [line["name"] for line in _read(path)] == ["from-env"]


def test_no_exporter_without_configuration() -> None:
    configure_tracing("greenroom-test")
    assert span_pipeline() == []


@pytest.mark.parametrize(
    ("variable", "expected_endpoint"),
    [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", f"{NOWHERE}/v1/traces"),
        ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", NOWHERE),  # signal-specific: used as is
    ],
)
def test_otlp_endpoint_selects_batched_otlp_http(monkeypatch, variable, expected_endpoint) -> None:
    monkeypatch.setenv(variable, NOWHERE)
    provider = configure_tracing("greenroom-test")
    try:
        ((processor, exporter),) = span_pipeline()
        assert isinstance(processor, BatchSpanProcessor)
        assert isinstance(exporter, OTLPSpanExporter)
        assert exporter._endpoint == expected_endpoint
    finally:
        provider.shutdown()  # no span was made: nothing is sent


def test_otel_traces_exporter_none_overrides_the_endpoint(monkeypatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", NOWHERE)
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    configure_tracing("greenroom-test")
    assert span_pipeline() == []


def test_sdk_disabled_records_and_exports_nothing(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", NOWHERE)
    monkeypatch.setenv("GREENROOM_TRACE_FILE", str(tmp_path / "never.jsonl"))
    memory = InMemorySpanExporter()
    provider = configure_tracing("greenroom-test", exporter=memory)
    assert isinstance(provider, TracerProvider)
    assert span_pipeline() == []
    with get_tracer("t").start_as_current_span("ignored") as span:
        assert not span.is_recording()
        assert not span.get_span_context().is_valid
    assert memory.get_finished_spans() == ()
    assert not (tmp_path / "never.jsonl").exists()


def test_service_name_from_argument_unless_the_environment_names_one(monkeypatch) -> None:
    provider = configure_tracing("greenroom-node")
    assert provider.resource.attributes["service.name"] == "greenroom-node"

    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=staging,service.name=ra")
    provider = configure_tracing("greenroom-node")
    assert provider.resource.attributes["service.name"] == "ra"
    assert provider.resource.attributes["deployment.environment"] == "staging"

    monkeypatch.setenv("OTEL_SERVICE_NAME", "from-env")
    provider = configure_tracing("greenroom-node")
    assert provider.resource.attributes["service.name"] == "from-env"


def test_sampler_comes_from_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_off")
    memory = InMemorySpanExporter()
    configure_tracing("greenroom-test", exporter=memory)
    with get_tracer("t").start_as_current_span("sampled-out"):
        pass
    assert memory.get_finished_spans() == ()


def test_tracers_taken_early_follow_reconfiguration() -> None:
    """Modules take a tracer at import time, before the process configures tracing."""
    early = get_tracer("greenroom.early")
    first, second = InMemorySpanExporter(), InMemorySpanExporter()
    configure_tracing("greenroom-test", exporter=first)
    with early.start_as_current_span("one"):
        pass
    configure_tracing("greenroom-test", exporter=second)
    with early.start_as_current_span("two"):
        pass
    with trace.get_tracer("third.party").start_as_current_span("three"):
        pass
    assert [s.name for s in first.get_finished_spans()] == ["one"]
    assert [s.name for s in second.get_finished_spans()] == ["two", "three"]
