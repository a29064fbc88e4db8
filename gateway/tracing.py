"""Span helpers for the gateway's hops (socket in, session, guild, channel, storage
write, fan-out, socket out): one trace per message, carried in each actor message's
``trace`` field (the W3C context of the sending hop's span), never in a global.

A hop whose incoming ``trace`` is None does no tracing work at all: the origin (REST,
ingress) starts its span with ``observability.span_from`` and, when tracing is not
configured, ``inject_current()`` there gives None, so the per-recipient hops of a
fan-out cost one ``is None`` test each.
"""

from __future__ import annotations

from typing import Any

from opentelemetry import trace as otel_trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from observability import extract, get_tracer

TRACER = get_tracer("greenroom.gateway")
_PROPAGATOR = TraceContextTextMapPropagator()


def start(trace: dict | None, name: str, attributes: dict[str, Any] | None = None) -> Any:
    """A span ``name`` that is a child of ``trace`` (not made current), or None when
    ``trace`` is None. End it with ``span.end()``; for spans that outlive one handler
    (a storage write waits for its acknowledgement)."""
    if trace is None:
        return None
    return TRACER.start_span(name, context=extract(trace), attributes=attributes)


def child(span: Any, name: str, attributes: dict[str, Any] | None = None) -> Any:
    """A span ``name`` whose parent is ``span`` (None if ``span`` is None)."""
    if span is None:
        return None
    return TRACER.start_span(name, context=otel_trace.set_span_in_context(span),
                             attributes=attributes)


def context_of(span: Any) -> dict | None:
    """``span``'s W3C context as a message's ``trace`` field (None if there is none)."""
    if span is None:
        return None
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier, context=otel_trace.set_span_in_context(span))
    return carrier or None


def fail(span: Any, description: str) -> None:
    if span is not None:
        span.set_status(otel_trace.Status(otel_trace.StatusCode.ERROR, description))
        span.end()
