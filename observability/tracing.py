"""OpenTelemetry tracing set up from the standard ``OTEL_*`` variables, in one call.

``configure_tracing`` builds the SDK ``TracerProvider`` (the SDK itself reads
``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_TRACES_SAMPLER[_ARG]``,
``OTEL_SPAN_*_LIMIT``, ``OTEL_BSP_*`` and ``OTEL_SDK_DISABLED``) and picks the exporters:
OTLP/HTTP behind a ``BatchSpanProcessor`` when an OTLP endpoint is configured, a JSON-lines
file when ``GREENROOM_TRACE_FILE`` is set, plus an explicit one for tests.

Tracers from ``get_tracer`` resolve the provider when a span starts, not when the tracer
is made, so modules can take a tracer at import time (before ``configure_tracing`` runs)
and a later reconfiguration (tests do this) reaches them too. OpenTelemetry's global
provider can be set only once, so the global is a thin delegate to whatever was
configured last; libraries that use ``opentelemetry.trace.get_tracer`` follow along.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, OTELResourceDetector, Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.trace import format_span_id, format_trace_id

from . import _env

__all__ = [
    "JsonLinesSpanExporter",
    "configure_tracing",
    "get_tracer",
    "span_pipeline",
]

_log = logging.getLogger(__name__)


class JsonLinesSpanExporter(SpanExporter):
    """Appends each finished span to *path* as one JSON object per line.

    Meant for tests and debugging without a collector: several processes can append to
    the same file (each batch is one ``write`` on an ``O_APPEND`` descriptor, so lines do
    not interleave), and the file shows a trace crossing process boundaries. ``pid`` is
    the process that finished the span.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if not spans:
            return SpanExportResult.SUCCESS
        pid = os.getpid()
        data = "".join(
            json.dumps(_span_record(span, pid), default=str, separators=(",", ":")) + "\n"
            for span in spans
        ).encode()
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
            finally:
                os.close(fd)
        except OSError:
            _log.warning("could not write spans to %s", self.path, exc_info=True)
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        """Nothing to release: the file is opened per batch."""

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def _span_record(span: ReadableSpan, pid: int) -> dict[str, Any]:
    ctx = span.get_span_context()
    parent = span.parent
    resource = dict(span.resource.attributes) if span.resource is not None else {}
    return {
        "name": span.name,
        "trace_id": format_trace_id(ctx.trace_id),
        "span_id": format_span_id(ctx.span_id),
        "parent_span_id": format_span_id(parent.span_id) if parent is not None else None,
        "parent_is_remote": bool(parent.is_remote) if parent is not None else None,
        "kind": span.kind.name,
        "status": span.status.status_code.name,
        "start_time_unix_nano": span.start_time,
        "end_time_unix_nano": span.end_time,
        "attributes": dict(span.attributes or {}),
        "events": [
            {"name": e.name, "time_unix_nano": e.timestamp, "attributes": dict(e.attributes or {})}
            for e in span.events
        ],
        "service_name": resource.get(SERVICE_NAME),
        "pid": pid,
        "resource": resource,
    }


class _State:
    lock = threading.Lock()
    provider: TracerProvider | None = None
    generation = 0
    pipeline: list[tuple[Any, SpanExporter]] = []


class _Tracer(trace.Tracer):
    """A tracer bound to a name, resolving the configured provider at span start."""

    __slots__ = ("_name", "_version", "_generation", "_delegate")

    def __init__(self, name: str, version: str | None) -> None:
        self._name = name
        self._version = version
        self._generation = -1
        self._delegate: trace.Tracer | None = None

    def _real(self) -> trace.Tracer:
        delegate = self._delegate
        if delegate is None or self._generation != _State.generation:
            generation = _State.generation
            provider = _State.provider
            if provider is None:
                # Not configured yet: whatever OpenTelemetry's global is (by default a
                # proxy that produces no-op spans). It cannot be our delegate, which is
                # installed only after a provider exists.
                delegate = trace.get_tracer(self._name, self._version)
            else:
                delegate = provider.get_tracer(self._name, self._version)
            self._delegate, self._generation = delegate, generation
        return delegate

    def start_span(self, *args: Any, **kwargs: Any) -> trace.Span:
        return self._real().start_span(*args, **kwargs)

    def start_as_current_span(  # type: ignore[override]
        self, *args: Any, **kwargs: Any
    ) -> AbstractContextManager[trace.Span]:
        return self._real().start_as_current_span(*args, **kwargs)


class _DelegatingTracerProvider(trace.TracerProvider):
    """Installed once as OpenTelemetry's global; follows ``configure_tracing``."""

    def get_tracer(
        self,
        instrumenting_module_name: str,
        instrumenting_library_version: str | None = None,
        schema_url: str | None = None,
        attributes: Any = None,
    ) -> trace.Tracer:
        return _Tracer(instrumenting_module_name, instrumenting_library_version)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        provider = _State.provider
        return provider.force_flush(timeout_millis) if provider is not None else True

    def shutdown(self) -> None:
        provider = _State.provider
        if provider is not None:
            provider.shutdown()


_GLOBAL = _DelegatingTracerProvider()


def get_tracer(name: str, version: str | None = None) -> trace.Tracer:
    """A tracer for *name* that always uses the provider configured most recently."""
    return _Tracer(name, version)


def span_pipeline() -> list[tuple[Any, SpanExporter]]:
    """The (span processor, exporter) pairs the last ``configure_tracing`` installed.

    For diagnostics and tests: shows what the environment selected without reaching
    into SDK internals.
    """
    return list(_State.pipeline)


def _resource(service_name: str) -> Resource:
    """*service_name* unless ``OTEL_SERVICE_NAME``/``OTEL_RESOURCE_ATTRIBUTES`` name one.

    The code's name is the default and the operator's environment overrides it, as the
    SDK's own precedence would for any other attribute.
    """
    return Resource.create({SERVICE_NAME: service_name}).merge(OTELResourceDetector().detect())


def _exporters_from_env() -> list[tuple[Any, SpanExporter]]:
    pipeline: list[tuple[Any, SpanExporter]] = []
    for name in _env.exporter_names("traces"):
        if name == "otlp":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
                OTLPSpanExporter,
            )

            exporter: SpanExporter = OTLPSpanExporter()
            pipeline.append((BatchSpanProcessor(exporter), exporter))
        elif name == "console":
            exporter = ConsoleSpanExporter()
            pipeline.append((SimpleSpanProcessor(exporter), exporter))
        else:
            _log.warning("OTEL_TRACES_EXPORTER: unsupported exporter %r ignored", name)
    trace_file = os.environ.get("GREENROOM_TRACE_FILE", "").strip()
    if trace_file:
        exporter = JsonLinesSpanExporter(trace_file)
        pipeline.append((SimpleSpanProcessor(exporter), exporter))
    return pipeline


def configure_tracing(service_name: str, *, exporter: SpanExporter | None = None) -> TracerProvider:
    """Build and install the process's ``TracerProvider``; returns it.

    Exporters: OTLP/HTTP (batched) when ``OTEL_EXPORTER_OTLP_ENDPOINT`` or
    ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` is set (``OTEL_TRACES_EXPORTER`` may override:
    ``otlp``, ``console``, ``none``); a ``JsonLinesSpanExporter`` when
    ``GREENROOM_TRACE_FILE`` is set; and *exporter* if given. File, console and explicit
    exporters use a ``SimpleSpanProcessor`` so a span is written when it ends, even if the
    process is killed right after. With ``OTEL_SDK_DISABLED=true`` the provider is a no-op
    and nothing is exported (incoming trace context is still passed along).

    Calling it again replaces the previous provider (which is shut down, flushing its
    spans). When an OTLP endpoint is configured the counter registry is mirrored to OTLP
    metrics with the same resource (see ``observability.metrics``).
    """
    resource = _resource(service_name)
    provider = TracerProvider(resource=resource)
    pipeline: list[tuple[Any, SpanExporter]] = []
    if not _env.sdk_disabled():
        pipeline = _exporters_from_env()
        if exporter is not None:
            pipeline.append((SimpleSpanProcessor(exporter), exporter))
        for processor, _ in pipeline:
            provider.add_span_processor(processor)

    with _State.lock:
        old = _State.provider
        _State.provider = provider
        _State.pipeline = pipeline
        _State.generation += 1
        if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
            trace.set_tracer_provider(_GLOBAL)
    if old is not None and old is not provider:
        old.shutdown()

    from .metrics import configure_metrics

    configure_metrics(resource)
    _log.info(
        "tracing configured",
        extra={
            "service": resource.attributes.get(SERVICE_NAME),
            "exporters": [type(e).__name__ for _, e in pipeline],
            "sdk_disabled": _env.sdk_disabled(),
        },
    )
    return provider
