"""Spans for actor hops (storage, the data plane, and the gateway's hops through
``gateway/tracing.py``, which re-exports these): start, child, context_of, end, fail and
span links, here so that layers below ``gateway`` use the same ones.

A hop's span is made from the message's ``trace`` field (the sending span's W3C context),
never from whatever is current in the process, and is not made current: an actor's span
may outlive the handler that started it (a write waits for its batch). Every function
takes None for "untraced" and then does nothing, so the caller's only cost on an
untraced message is its own ``is None`` test. Where this process keeps no spans, ``start`` answers the shared invalid span without
parsing ``trace``, and ``context_of`` gives None for a span whose trace is not sampled.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from opentelemetry import trace as otel_trace
from opentelemetry.context import Context
from opentelemetry.trace import INVALID_SPAN, Link, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from .propagation import extract
from .tracing import get_tracer, tracing_active

__all__ = ["child", "context_of", "end", "fail", "link_to", "start"]

TRACER = get_tracer("greenroom")
_PROPAGATOR = TraceContextTextMapPropagator()
#: the last ``trace`` parsed and its context: a traced fan-out hands the same dict to
#: each of its recipients' ``socket.out``, so it is parsed once, not once per recipient
#: (a ~9 us parse of a ~45 us span). Replaced as a whole tuple: safe across threads.
_last: tuple[Any, Context] = (None, Context())


def start(trace: Mapping[str, Any] | None, name: str,
          attributes: dict[str, Any] | None = None, *, links: Iterable[Link] | None = None,
          kind: SpanKind = SpanKind.INTERNAL, start_time: int | None = None) -> Any:
    """A span ``name``, child of the W3C context ``trace``; None when ``trace`` is None.

    ``start_time`` (ns since the epoch) backdates it: a hop that learns it is traced
    only after the work began (the data plane reads ``trace`` after decoding)."""
    if trace is None:
        return None
    if not tracing_active():
        return INVALID_SPAN
    global _last
    last = _last
    if last[0] is trace:  # the dicts are never changed once sent
        context = last[1]
    else:
        context = extract(trace)
        _last = (trace, context)
    return TRACER.start_span(name, context=context, kind=kind, attributes=attributes,
                             links=links, start_time=start_time)


def child(span: Any, name: str, attributes: dict[str, Any] | None = None, *,
          links: Iterable[Link] | None = None) -> Any:
    """A span ``name`` whose parent is ``span`` (None if ``span`` is None; ``span``
    itself if it is not recording: its children would not be kept either)."""
    if span is None or not span.is_recording():
        return span
    return TRACER.start_span(name, context=otel_trace.set_span_in_context(span),
                             attributes=attributes, links=links)


def context_of(span: Any) -> dict | None:
    """``span``'s W3C context as a message's ``trace`` field; None if there is none or
    its trace is not sampled (the next hop then does no tracing work)."""
    if span is None or not span.get_span_context().trace_flags.sampled:
        return None
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier, context=otel_trace.set_span_in_context(span))
    return carrier or None


def link_to(trace: Mapping[str, Any] | None,
            attributes: dict[str, Any] | None = None) -> Link | None:
    """A span link to the span ``trace`` describes; None if it describes none (absent or
    malformed: ``extract`` logs and counts that)."""
    if trace is None or not tracing_active():
        return None
    ctx = otel_trace.get_current_span(extract(trace)).get_span_context()
    return Link(ctx, attributes) if ctx.is_valid else None


def end(span: Any, end_time: int | None = None) -> None:
    if span is not None:
        span.end(end_time)


def fail(span: Any, description: str, end_time: int | None = None) -> None:
    """End ``span`` with an error status saying ``description`` (a reason, never a
    database's own text: spans are exported like logs)."""
    if span is not None:
        span.set_status(Status(StatusCode.ERROR, description))
        span.end(end_time)
