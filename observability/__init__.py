"""Observability for greenroom: logs, traces and counters, configured in one place.

Why this shape: an SRE follows one chat message from the socket that received it,
through session, guild and channel actors (possibly in other node processes), to every
socket it reached and to the database. So:

- every log line is structured (JSON in production, readable on a terminal), Thespian's
  stdlib lines included, and carries ``trace_id``/``span_id`` while a span is active;
- the W3C trace context rides in each envelope's ``trace`` field, and the receiving actor
  starts its span from it (``span_from``), making one trace across actors and processes;
- OpenTelemetry is set up from the standard ``OTEL_*`` variables, exporting over OTLP
  only when an endpoint is configured;
- metrics are plain ints (``counter(...).add()``, ``gauge``, ``histogram``), cheap on hot
  paths, read by OpenTelemetry when it collects: ``/metrics`` on the operator port
  (``observability.operator``), OTLP when the metrics signal asks (``metrics``).

A process calls ``configure_logging()`` and ``configure_tracing("greenroom-node")`` once at
start; library code only calls ``get_logger``, ``get_tracer``, ``span_from``,
``inject_current`` and ``counter``/``gauge``/``histogram``, which work (as no-ops where relevant) before that.
"""

from .logging import add_trace_context, configure_logging, get_logger, log_defs
from .metrics import (
    Counter,
    Gauge,
    Histogram,
    configure_metrics,
    counter,
    gauge,
    histogram,
    snapshot,
)
from .propagation import extract, inject_current, span_from
from .tracing import JsonLinesSpanExporter, configure_tracing, get_tracer, span_pipeline

__all__ = [
    "Counter",
    "Gauge",
    "Histogram",
    "JsonLinesSpanExporter",
    "add_trace_context",
    "configure_logging",
    "configure_metrics",
    "configure_tracing",
    "counter",
    "extract",
    "gauge",
    "get_logger",
    "get_tracer",
    "histogram",
    "inject_current",
    "log_defs",
    "snapshot",
    "span_from",
    "span_pipeline",
]
