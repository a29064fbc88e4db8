"""The tracing-cost bench's tools (``loadtest/tracing_cost.py``, ``loadtest/otlp_sink.py``):
each configuration's node environment, and the local collector counting what a real OTLP
exporter sends. Without these, ``make bench-gateway``'s three CPU figures compare other
configurations than they name."""

from __future__ import annotations

import asyncio

import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from loadtest.otlp_sink import OtlpSink
from loadtest.tracing_cost import tracing_env


def test_each_configuration_starts_from_no_tracing_variable(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The shell's OTEL_* variables and trace file reach no configuration: ``default``
    is exactly what ``make run`` ships; the other two add one variable each."""
    for name, value in (("OTEL_TRACES_SAMPLER", "always_on"), ("OTEL_SDK_DISABLED", "false"),
                        ("GREENROOM_TRACE_FILE", "/tmp/spans.jsonl"),
                        ("GREENROOM_TRACES_IDENTIFY_RATIO", "1")):
        monkeypatch.setenv(name, value)
    url = "http://127.0.0.1:4318"
    default = tracing_env("default", url)
    assert {k for k, v in default.items() if v is not None} == set()
    assert {"OTEL_TRACES_SAMPLER", "OTEL_SDK_DISABLED", "GREENROOM_TRACE_FILE",
            "GREENROOM_TRACES_IDENTIFY_RATIO"} <= set(default)  # removed
    assert {k: v for k, v in tracing_env("sdk_disabled", url).items() if v is not None} == {
        "OTEL_SDK_DISABLED": "true"}
    assert {k: v for k, v in tracing_env("exporting", url).items() if v is not None} == {
        "OTEL_EXPORTER_OTLP_ENDPOINT": url}
    with pytest.raises(ValueError):
        tracing_env("sampled", url)


def test_the_sink_counts_the_spans_an_otlp_exporter_sends() -> None:
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("rest.post_message"):
        with tracer.start_as_current_span("channel.post"):
            pass
    spans = memory.get_finished_spans()

    async def main() -> None:
        sink = OtlpSink()
        url = await sink.start()
        try:
            exporter = OTLPSpanExporter(endpoint=f"{url}/v1/traces")
            result = await asyncio.get_running_loop().run_in_executor(
                None, exporter.export, spans)
            exporter.shutdown()
            assert result is SpanExportResult.SUCCESS
            assert sink.spans == 2 and sink.bad == 0
            assert sink.names == {"rest.post_message": 1, "channel.post": 1}
            assert sink.requests == {"traces": 1} and sink.bytes["traces"] > 0
        finally:
            await sink.stop()

    asyncio.run(main())


def test_the_benchmark_server_runs_without_the_shells_tracing_variables(
        monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """``make bench-gateway``'s server (``start_gateway_server``) is ``make run``'s as
    shipped even when the shell exports tracing variables: its node process has none of
    them, and the names removed are reported for the JSON line's settings."""
    from loadtest.gateway_load import seed_users, start_gateway_server, stop_gateway_server

    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_on")
    monkeypatch.setenv("GREENROOM_TRACE_FILE", str(tmp_path / "spans.jsonl"))
    seeded = asyncio.run(seed_users(str(tmp_path), 1, 1))
    server = start_gateway_server(seeded.db, tmp_path / "server.log")
    try:
        with open(f"/proc/{server.pid}/environ", "rb") as environ:
            names = {entry.partition(b"=")[0].decode() for entry in environ.read().split(b"\0")}
    finally:
        stop_gateway_server(server)
    assert not {n for n in names if n.startswith("OTEL_")}, names
    assert "GREENROOM_TRACE_FILE" not in names
    assert {"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_TRACES_SAMPLER",
            "GREENROOM_TRACE_FILE"} <= set(server.env_removed)
    assert not (tmp_path / "spans.jsonl").exists()
