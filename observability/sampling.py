"""Fan-out-aware trace sampling: keep every small message, a bounded share of big ones.

A message to n recipients makes about n + 5 spans (one ``socket.out`` per recipient), so
a flat ratio either drowns the backend in the big guilds' fan-outs or loses almost every
trace of the small ones. Discord samples by fan-out size instead; greenroom does too:

    p(n) = clamp(B / n, P_MIN, 1)        B = OTEL_TRACES_SAMPLER_ARG (default 10),
                                         P_MIN = 0.001

    n (recipients)   1     10     100    1,000   10,000   100,000
    p                1     1      0.1    0.01    0.001    0.001

so a traced message costs on average at most ``B`` recipient spans up to 10,000
recipients (``n * p(n) = B``), every message to at most ``B`` recipients is kept, and the
biggest guilds still show one message in a thousand.

The decision is taken once, where the message enters (REST post, ingress request): the
entry's root span carries ``greenroom.fanout.recipients`` (the guild's member count,
from the process's guild cache) and this sampler reads it from the span's attributes.
The decision is a function of the trace id (as ``TraceIdRatioBased``: the trace id's low
64 bits under ``p * 2**64``), and a sampled trace carries the W3C sampled flag to every
later hop, on any node; an unsampled one carries no context at all (the entry's
``inject_current()`` gives None), so later hops, sessions included, never start a trace
of their own. A caller's ``traceparent`` cannot force a big fan-out in: its "not
sampled" is obeyed, its "sampled" still passes through ``p(n)``.

Other spans: a child follows its parent's sampled flag (local or remote, as
``ParentBased``); an IDENTIFY root (``greenroom.op`` = ``IDENTIFY``) is kept with
probability ``GREENROOM_TRACES_IDENTIFY_RATIO`` (default 0.01: identifies come in
storms, each trace is small and alike); any other root is kept.

Selected with ``OTEL_TRACES_SAMPLER=greenroom_fanout`` (the ``opentelemetry_traces_sampler``
entry point), and greenroom's default when an exporter is configured and no sampler is
named.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.trace import Link, SpanKind, get_current_span
from opentelemetry.trace.span import TraceState

__all__ = [
    "DEFAULT_BUDGET",
    "DEFAULT_IDENTIFY_RATIO",
    "FANOUT_RECIPIENTS",
    "FanoutSampler",
    "MIN_PROBABILITY",
    "fanout_probability",
    "fanout_sampler",
]

_log = logging.getLogger(__name__)

#: The root span attribute the sampler reads: how many sessions the message may reach.
FANOUT_RECIPIENTS = "greenroom.fanout.recipients"
#: ``greenroom.op`` of the IDENTIFY root (``socket.in``).
_OP = "greenroom.op"
DEFAULT_BUDGET = 10.0
MIN_PROBABILITY = 0.001
DEFAULT_IDENTIFY_RATIO = 0.01
IDENTIFY_RATIO_VAR = "GREENROOM_TRACES_IDENTIFY_RATIO"
_LOW64 = (1 << 64) - 1


def fanout_probability(recipients: int, budget: float = DEFAULT_BUDGET,
                       floor: float = MIN_PROBABILITY) -> float:
    """``p(n) = clamp(budget / n, floor, 1)``; a message to nobody (n <= 1) is kept."""
    if recipients <= 1:
        return 1.0
    return min(1.0, max(floor, budget / recipients))


def _bound(probability: float) -> int:
    """Trace ids whose low 64 bits are under this are kept (``TraceIdRatioBased``)."""
    return round(probability * (1 << 64))


class FanoutSampler(Sampler):
    """The sampler of the module docstring."""

    def __init__(self, budget: float = DEFAULT_BUDGET,
                 identify_ratio: float = DEFAULT_IDENTIFY_RATIO,
                 floor: float = MIN_PROBABILITY) -> None:
        if not (budget > 0 and math.isfinite(budget)):
            raise ValueError(f"fan-out budget must be a positive number, not {budget!r}")
        if not 0.0 <= identify_ratio <= 1.0 or not 0.0 <= floor <= 1.0:
            raise ValueError("identify ratio and floor must be within [0, 1]")
        self.budget = budget
        self.identify_ratio = identify_ratio
        self.floor = floor
        self._identify_bound = _bound(identify_ratio)

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Mapping[str, Any] | None = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        parent = get_current_span(parent_context).get_span_context()
        has_parent = parent is not None and parent.is_valid
        state = parent.trace_state if has_parent else None
        recipients = attributes.get(FANOUT_RECIPIENTS) if attributes else None
        if recipients is not None:  # a message's entry: the one decision of its trace
            if has_parent and not parent.trace_flags.sampled:
                keep = False  # the caller said no
            else:
                try:
                    n = int(recipients)
                except (TypeError, ValueError):
                    n = 1
                p = fanout_probability(n, self.budget, self.floor)
                keep = (trace_id & _LOW64) < _bound(p)
        elif has_parent:
            keep = bool(parent.trace_flags.sampled)
        elif attributes and attributes.get(_OP) == "IDENTIFY":
            keep = (trace_id & _LOW64) < self._identify_bound
        else:
            keep = True
        if keep:
            return SamplingResult(Decision.RECORD_AND_SAMPLE, attributes, state)
        return SamplingResult(Decision.DROP, None, state)

    def get_description(self) -> str:
        return (f"FanoutSampler{{budget={self.budget:g},floor={self.floor:g},"
                f"identify={self.identify_ratio:g}}}")


def _identify_ratio_from_env() -> float:
    raw = os.environ.get(IDENTIFY_RATIO_VAR, "").strip()
    if not raw:
        return DEFAULT_IDENTIFY_RATIO
    try:
        ratio = float(raw)
    except ValueError:
        ratio = -1.0
    if not 0.0 <= ratio <= 1.0:
        _log.warning("%s=%r is not a ratio in [0, 1]; using %g", IDENTIFY_RATIO_VAR, raw,
                     DEFAULT_IDENTIFY_RATIO)
        return DEFAULT_IDENTIFY_RATIO
    return ratio


def fanout_sampler(arg: str | float | None = None) -> FanoutSampler:
    """The ``opentelemetry_traces_sampler`` entry point ``greenroom_fanout``: *arg* is
    ``OTEL_TRACES_SAMPLER_ARG``, the budget ``B`` (recipient spans per traced message;
    default 10). A bad value is logged and the default used: a typo in a variable must
    not stop the server."""
    budget = DEFAULT_BUDGET
    if arg is not None and str(arg).strip():
        try:
            budget = float(arg)
            if not (budget > 0 and math.isfinite(budget)):
                raise ValueError
        except ValueError:
            _log.warning("OTEL_TRACES_SAMPLER_ARG=%r is not a positive number (the fan-out "
                         "budget); using %g", arg, DEFAULT_BUDGET)
            budget = DEFAULT_BUDGET
    return FanoutSampler(budget, _identify_ratio_from_env())
