"""The W3C trace context in an envelope's ``trace`` field: inject, extract, span_from."""

from __future__ import annotations

import msgpack
import pytest
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, TraceState

from observability import configure_tracing, counter, extract, get_tracer, inject_current, span_from

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN_ID = "00f067aa0ba902b7"
VALID = {"traceparent": f"00-{TRACE_ID}-{SPAN_ID}-01"}


def test_inject_without_a_span_is_none(spans) -> None:
    assert inject_current() is None


def test_inject_gives_traceparent_and_omits_empty_tracestate(spans) -> None:
    with get_tracer("t").start_as_current_span("send") as span:
        carried = inject_current()
    ctx = span.get_span_context()
    flags = f"{ctx.trace_flags:02x}"
    assert carried == {"traceparent": f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{flags}"}


def test_tracestate_travels_when_present(spans) -> None:
    remote = SpanContext(
        int(TRACE_ID, 16),
        int(SPAN_ID, 16),
        is_remote=True,
        trace_flags=TraceFlags(1),
        trace_state=TraceState([("vendor", "v1")]),
    )
    with trace.use_span(NonRecordingSpan(remote)):
        carried = inject_current()
    assert carried["tracestate"] == "vendor=v1"
    with span_from(carried, "recv") as span:
        assert span.get_span_context().trace_state.get("vendor") == "v1"


def test_round_trip_gives_a_child_with_the_same_trace_and_right_parent(spans) -> None:
    with get_tracer("t").start_as_current_span("channel.post") as sender:
        envelope = msgpack.packb(
            {"to": "a", "from": "b", "type": "x", "body": {}, "trace": inject_current()}
        )
    received = msgpack.unpackb(envelope)

    with span_from(received["trace"], "session.deliver", **{"greenroom.actor": "s1"}) as child:
        assert trace.get_current_span() is child
        assert (
            inject_current()["traceparent"].split("-")[2]
            == f"{child.get_span_context().span_id:016x}"
        )

    by_name = {s.name: s for s in spans.get_finished_spans()}
    parent_ctx = sender.get_span_context()
    child_span = by_name["session.deliver"]
    assert child_span.context.trace_id == parent_ctx.trace_id
    assert child_span.parent.span_id == parent_ctx.span_id
    assert child_span.parent.is_remote
    assert child_span.attributes["greenroom.actor"] == "s1"


def test_extract_context_works_with_start_as_current_span(spans) -> None:
    ctx = extract(VALID)
    with get_tracer("t").start_as_current_span("work", context=ctx) as span:
        assert f"{span.get_span_context().trace_id:032x}" == TRACE_ID
    (finished,) = spans.get_finished_spans()
    assert f"{finished.parent.span_id:016x}" == SPAN_ID


def test_the_receivers_own_current_span_is_not_the_parent(spans) -> None:
    """The message is the cause: an unrelated span current in the receiver is ignored."""
    with get_tracer("t").start_as_current_span("unrelated") as unrelated:
        with span_from(VALID, "recv") as span:
            pass
        with span_from(None, "no-trace") as root:
            pass
    assert span.get_span_context().trace_id == int(TRACE_ID, 16)
    assert span.parent.span_id == int(SPAN_ID, 16)
    assert root.parent is None
    assert root.get_span_context().trace_id != unrelated.get_span_context().trace_id


def test_bytes_from_msgpack_raw_are_accepted(spans) -> None:
    raw = msgpack.unpackb(msgpack.packb({"trace": VALID}), raw=True)[b"trace"]
    with span_from(raw, "recv") as span:
        pass
    assert span.parent.span_id == int(SPAN_ID, 16)


@pytest.mark.parametrize("absent", [None, {}])
def test_absent_trace_is_a_root_without_complaint(spans, log_lines, absent) -> None:
    malformed = counter("trace_context_malformed_total")
    before = malformed.total()
    with span_from(absent, "recv") as span:
        pass
    assert span.parent is None and span.get_span_context().is_valid
    assert malformed.total() == before
    assert not [line for line in log_lines() if "malformed" in line["event"]]


@pytest.mark.parametrize(
    "bad",
    [
        "garbage",
        42,
        ["traceparent", VALID["traceparent"]],
        {"traceparent": 5},
        {"traceparent": None, "tracestate": 3.5},
        {"traceparent": "00-zz"},
        {"traceparent": "not-a-trace-parent-at-all"},
        {"traceparent": f"00-{'0' * 32}-{SPAN_ID}-01"},  # all-zero trace id is invalid
        {"traceparent": f"ff-{TRACE_ID}-{SPAN_ID}-01"},  # version ff is forbidden
        {"traceparent": "00-" + "a" * 10_000},
        {"tracestate": "vendor=v1"},  # no traceparent at all
        {b"traceparent": b"\xff\xfe"},
        {("tuple",): "key"},
    ],
)
def test_malformed_trace_gives_a_new_root_span_and_a_debug_line(spans, log_lines, bad) -> None:
    malformed = counter("trace_context_malformed_total")
    before = malformed.total()
    with span_from(bad, "recv") as span:
        pass
    assert span.parent is None
    assert span.get_span_context().is_valid and span.is_recording() is False  # ended
    assert malformed.total() == before + 1
    (line,) = [line for line in log_lines() if line["event"].startswith("malformed trace")]
    assert line["level"] == "debug"
    assert line["logger"] == "observability.propagation"
    assert line["reason"]


def test_span_from_records_and_reraises_exceptions(spans) -> None:
    with pytest.raises(KeyError):
        with span_from(VALID, "recv"):
            raise KeyError("lost")
    (finished,) = spans.get_finished_spans()
    assert finished.status.status_code.name == "ERROR"
    assert finished.events[0].name == "exception"


def test_disabled_sdk_still_passes_the_context_along(monkeypatch: pytest.MonkeyPatch) -> None:
    """With OTEL_SDK_DISABLED nothing is recorded, but the next hop keeps the trace."""
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    configure_tracing("greenroom-test")
    with span_from(VALID, "recv") as span:
        assert not span.is_recording()
        assert inject_current() == VALID
