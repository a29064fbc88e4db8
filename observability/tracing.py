"""OpenTelemetry tracing set up from the standard ``OTEL_*`` variables, in one call.

``configure_tracing`` builds the SDK ``TracerProvider`` (the SDK itself reads
``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_SPAN_*_LIMIT``, ``OTEL_BSP_*``
and ``OTEL_SDK_DISABLED``), picks the sampler (``OTEL_TRACES_SAMPLER[_ARG]``, any
``opentelemetry_traces_sampler`` entry point; greenroom's fan-out sampler,
``observability.sampling``, when none is named) and the exporters: OTLP/HTTP behind a
``BatchSpanProcessor`` when an OTLP endpoint is configured, a JSON-lines file when
``GREENROOM_TRACE_FILE`` is set, plus an explicit one for tests.

Tracing that keeps nothing costs nothing: with no exporter (what ``make run`` ships) or
with ``OTEL_SDK_DISABLED=true`` no span is recorded, so tracers are OpenTelemetry's no-op
tracer. A root span is then the shared invalid span, ``inject_current()`` gives None, and
every later hop of the message pays one ``is None`` test (``gateway/tracing.py``). A
context that arrives from outside is passed along by ``span_from`` (the no-op tracer's
behaviour), but gateway hops do not parse it (``tracing_active()``).

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
from importlib.metadata import entry_points
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
from opentelemetry.sdk.trace.sampling import Sampler
from opentelemetry.trace import format_span_id, format_trace_id

from . import _env
from .sampling import fanout_sampler

__all__ = [
    "JsonLinesSpanExporter",
    "configure_tracing",
    "get_tracer",
    "sampler_from_env",
    "span_pipeline",
    "tracing_active",
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
    #: a span processor is installed: spans may be kept (else tracers are no-ops)
    recording = False


_NOOP = trace.NoOpTracer()


def tracing_active() -> bool:
    """Whether the configured provider can keep a span (an exporter is installed).

    False before ``configure_tracing``, with no exporter and with ``OTEL_SDK_DISABLED``:
    then every span is a no-op and hops that would only parse a context skip it.
    """
    return _State.recording


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
            elif not _State.recording:
                # Nothing would be kept: no span object, no id generation, no sampler.
                delegate = _NOOP
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


_SAMPLER_GROUP = "opentelemetry_traces_sampler"
#: the SDK's samplers that take a float ratio as their argument
_RATIO_SAMPLERS = ("traceidratio", "parentbased_traceidratio")


def sampler_from_env() -> Sampler:
    """The sampler ``OTEL_TRACES_SAMPLER``/``_ARG`` name, or greenroom's fan-out sampler.

    Any name in the ``opentelemetry_traces_sampler`` entry-point group works: the SDK's
    (``always_on``, ``parentbased_traceidratio``, ...) and ``greenroom_fanout``. Unset,
    unknown or failing: the fan-out sampler (``observability.sampling``), with a warning
    for the last two: a typo must not stop the server, nor trace every fan-out.
    """
    name = os.environ.get("OTEL_TRACES_SAMPLER", "").strip()
    arg = os.environ.get("OTEL_TRACES_SAMPLER_ARG")
    if not name or name.lower() == "greenroom_fanout":
        return fanout_sampler(arg)
    found = entry_points(group=_SAMPLER_GROUP, name=name.lower())
    try:
        if not found:
            raise LookupError("no such sampler")
        factory = next(iter(found)).load()
        if isinstance(factory, Sampler):  # the SDK's fixed ones (always_on, ...)
            return factory
        if name.lower() in _RATIO_SAMPLERS:
            try:
                ratio = float(arg or "")
            except ValueError:
                _log.warning("OTEL_TRACES_SAMPLER_ARG=%r is not a ratio; using 1.0", arg)
                ratio = 1.0
            sampler = factory(ratio)
        else:
            sampler = factory(arg)
        if not isinstance(sampler, Sampler):
            raise TypeError(f"{type(sampler).__name__} is not a Sampler")
        return sampler
    except Exception as exc:  # an operator's setting: say it, keep serving
        _log.warning("OTEL_TRACES_SAMPLER=%r unusable (%s); using greenroom_fanout", name, exc)
        return fanout_sampler(None)  # the argument was meant for another sampler


def configure_tracing(service_name: str, *, exporter: SpanExporter | None = None) -> TracerProvider:
    """Build and install the process's ``TracerProvider``; returns it.

    Exporters: OTLP/HTTP (batched) when ``OTEL_EXPORTER_OTLP_ENDPOINT`` or
    ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` is set (``OTEL_TRACES_EXPORTER`` may override:
    ``otlp``, ``console``, ``none``); a ``JsonLinesSpanExporter`` when
    ``GREENROOM_TRACE_FILE`` is set; and *exporter* if given. File, console and explicit
    exporters use a ``SimpleSpanProcessor`` so a span is written when it ends, even if the
    process is killed right after. The sampler is ``sampler_from_env()``. With no exporter,
    or with ``OTEL_SDK_DISABLED=true``, nothing can be kept: tracers are no-ops
    (``tracing_active()`` is False; an incoming trace context is still passed along by
    ``span_from``).

    Calling it again replaces the previous provider (which is shut down, flushing its
    spans). When an OTLP endpoint is configured the counter registry is mirrored to OTLP
    metrics with the same resource (see ``observability.metrics``).
    """
    resource = _resource(service_name)
    # Always given explicitly: the SDK's own reading of OTEL_TRACES_SAMPLER knows only
    # its built-in samplers and would warn about greenroom's.
    provider = TracerProvider(resource=resource, sampler=sampler_from_env())
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
        _State.recording = bool(pipeline)
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
            "sampler": provider.sampler.get_description() if pipeline else None,
        },
    )
    return provider
