"""W3C trace context carried in the ``trace`` field of greenroom's msgpack envelopes.

The field is a small dict, ``{"traceparent": "00-<trace>-<span>-<flags>"}`` plus
``"tracestate"`` only when there is one, or absent (``None``) when no span is active or
the trace is not sampled (``observability.sampling``: decided once, at the entry).
Parsing and formatting are OpenTelemetry's ``TraceContextTextMapPropagator``: the
format is the W3C one, not ours to reinvent. A receiver makes the span from the message's
context, never from whatever happens to be current in its own process: in an actor
system the cause of work is the message, so the sender's span is the parent.

An envelope is untrusted input. A broken ``trace`` (wrong types, garbage strings) must
never cost the message: it starts a new root span, logs at debug and is counted
(``trace_context_malformed_total``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from opentelemetry import trace as otel_trace
from opentelemetry.context import Context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from .metrics import counter
from .tracing import get_tracer, tracing_active

__all__ = ["extract", "inject_current", "span_from"]

_log = logging.getLogger(__name__)
_PROPAGATOR = TraceContextTextMapPropagator()
_TRACER = get_tracer("greenroom")
_MALFORMED = counter(
    "trace_context_malformed_total",
    "Envelopes whose trace field could not be parsed; each started a new trace.",
)


def inject_current() -> dict[str, str] | None:
    """The current span's context as the envelope's ``trace`` dict, or ``None``.

    ``None`` (not ``{}``) when there is no valid span, so callers can omit the field and
    save the bytes, and also when the current trace is not sampled: the decision is taken
    once at the message's entry, and "not sampled" travels as no context at all, so each
    later hop (one per recipient in a fan-out) pays one ``is None`` test instead of a
    ``traceparent`` parse and a span it would drop.
    """
    context = otel_trace.get_current_span().get_span_context()
    if not context.trace_flags.sampled or not context.is_valid:
        return None
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return carrier or None


def _as_str(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, bytes | bytearray):  # msgpack with raw=True, or an old peer
        try:
            return bytes(value).decode("ascii")
        except UnicodeDecodeError:
            return None
    return None


def _carrier(trace: Any) -> dict[str, str]:
    if not isinstance(trace, Mapping):
        raise TypeError(f"trace must be a mapping, not {type(trace).__name__}")
    carrier: dict[str, str] = {}
    for key, value in trace.items():
        k, v = _as_str(key), _as_str(value)
        if k is not None and v is not None:
            carrier[k.lower()] = v
    return carrier


def extract(trace: Mapping[str, Any] | None) -> Context:
    """An OpenTelemetry ``Context`` holding the remote parent described by *trace*.

    Use it as ``tracer.start_as_current_span(name, context=ctx)``. ``None`` or ``{}``
    gives an empty context (the next span is a root); so does a malformed value, which
    also logs at debug level and counts ``trace_context_malformed_total``. Never raises.
    """
    if trace is None or (isinstance(trace, Mapping) and not trace):
        return Context()
    try:
        ctx = _PROPAGATOR.extract(_carrier(trace), context=Context())
    except Exception as exc:  # untrusted input: nothing here may kill the receiver
        reason = f"{type(exc).__name__}: {exc}"
        ctx = Context()
    else:
        if otel_trace.get_current_span(ctx).get_span_context().is_valid:
            return ctx
        reason = "no valid traceparent"
    _MALFORMED.add()
    _log.debug(
        "malformed trace context, starting a new trace",
        extra={"reason": reason, "trace": repr(trace)[:200]},
    )
    return ctx


@contextmanager
def span_from(
    trace: Mapping[str, Any] | None, name: str, **attributes: Any
) -> Iterator[otel_trace.Span]:
    """Start span *name* as a child of the envelope's *trace* and make it current.

    For the receiving side of a message: ``with span_from(env["trace"], "channel.post",
    **{"greenroom.channel_id": cid}):``. Inside, log lines carry its ids and
    ``inject_current()`` hands it on to the next envelope. Exceptions are recorded on the
    span and re-raised. Attribute names with dots go in through ``**{...}``.
    """
    if not trace and not tracing_active() \
            and not otel_trace.get_current_span().get_span_context().is_valid:
        # Nothing can be kept, no context comes in and none is current: the span would be
        # a no-op with an invalid context, as the current one is, so none is started
        # (starting it costs ~10 us: every REST post and IDENTIFY).
        yield otel_trace.INVALID_SPAN
        return
    ctx = extract(trace)
    with _TRACER.start_as_current_span(name, context=ctx, attributes=attributes or None) as span:
        yield span
