"""Span helpers for the gateway's hops (socket in, session, guild, channel, storage
write, fan-out, socket out): one trace per message, carried in each actor message's
``trace`` field (the W3C context of the sending hop's span), never in a global.

A hop whose incoming ``trace`` is None does no tracing work at all. The origin (REST,
ingress, IDENTIFY) starts its root span with ``observability.span_from``; the sampler
(``observability.sampling``) decides there, once per message, and an unsampled or
untraced message leaves with ``trace`` None (``inject_current()``), so the
per-recipient hops of a fan-out cost one ``is None`` test each. A ``trace`` that does
arrive while this process keeps no spans (no exporter) is not parsed: ``start`` answers
the shared invalid span, whose context is None again.
"""

from __future__ import annotations

from typing import Any

from opentelemetry import trace as otel_trace
from opentelemetry.context import Context
from opentelemetry.trace import INVALID_SPAN
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from observability import extract, get_tracer
from observability.sampling import FANOUT_RECIPIENTS
from observability.tracing import tracing_active

TRACER = get_tracer("greenroom.gateway")
_PROPAGATOR = TraceContextTextMapPropagator()
#: the last ``trace`` parsed and its context: a traced fan-out hands the same dict to
#: each of its recipients' ``socket.out``, so it is parsed once, not once per recipient
#: (a ~9 us parse of a ~45 us span). Replaced as a whole tuple: safe across threads.
_last: tuple[Any, Context] = (None, Context())


def start(trace: dict | None, name: str, attributes: dict[str, Any] | None = None) -> Any:
    """A span ``name`` that is a child of ``trace`` (not made current), or None when
    ``trace`` is None. End it with ``span.end()``; for spans that outlive one handler
    (a storage write waits for its acknowledgement). Not None for a ``trace``, but
    possibly a non-recording span (nothing is kept here, or the trace is not sampled):
    ``set_attribute``/``end`` on it cost nothing and ``context_of`` gives None."""
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
    return TRACER.start_span(name, context=context, attributes=attributes)


def child(span: Any, name: str, attributes: dict[str, Any] | None = None) -> Any:
    """A span ``name`` whose parent is ``span`` (None if ``span`` is None; ``span``
    itself if it is not recording: its children would not be kept either)."""
    if span is None or not span.is_recording():
        return span
    return TRACER.start_span(name, context=otel_trace.set_span_in_context(span),
                             attributes=attributes)


def context_of(span: Any) -> dict | None:
    """``span``'s W3C context as a message's ``trace`` field; None if there is none or
    its trace is not sampled (the next hop then does no tracing work)."""
    if span is None or not span.get_span_context().trace_flags.sampled:
        return None
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier, context=otel_trace.set_span_in_context(span))
    return carrier or None


def fail(span: Any, description: str) -> None:
    if span is not None:
        span.set_status(otel_trace.Status(otel_trace.StatusCode.ERROR, description))
        span.end()


async def fanout_attributes(identity: Any, guild_id: int | None,
                            attributes: dict[str, Any]) -> dict[str, Any]:
    """``attributes`` plus ``greenroom.fanout.recipients`` for a message entering for
    ``guild_id``'s channel: what the fan-out sampler decides on. Only when spans can be
    kept (else nothing is read); the count is the guild's member count from the
    process's guild cache (``IdentityCache.guild_shell``: no storage call within its TTL),
    the recipients a message can reach at most."""
    if not tracing_active():
        return attributes
    shell = None
    if identity is not None and guild_id is not None:
        try:
            shell = await identity.guild_shell(guild_id)
        except Exception:  # storage trouble: the request meets it next and reports it
            return attributes  # unknown size: a root without it is kept
    attributes[FANOUT_RECIPIENTS] = shell.member_count if shell is not None else 1
    return attributes
