"""structlog configuration: JSON/console, trace ids in lines, stdlib lines rendered alike."""

from __future__ import annotations

import io
import json
import logging
from datetime import UTC, datetime

import pytest

from observability import configure_logging, get_logger, get_tracer
from observability.logging import add_trace_context

pytestmark = pytest.mark.usefixtures("spans")


def _ids(span) -> tuple[str, str]:
    ctx = span.get_span_context()
    return f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}"


def test_json_line_carries_the_active_span_ids(log_lines) -> None:
    log = get_logger("greenroom.test")
    with get_tracer("t").start_as_current_span("outer") as span:
        log.info("inside", user=7)
    log.info("outside")

    inside, outside = log_lines()
    trace_id, span_id = _ids(span)
    assert inside["event"] == "inside" and inside["user"] == 7
    assert (inside["trace_id"], inside["span_id"]) == (trace_id, span_id)
    assert len(inside["trace_id"]) == 32 and len(inside["span_id"]) == 16
    assert "trace_id" not in outside and "span_id" not in outside


def test_nested_span_ids_follow_the_current_span(log_lines) -> None:
    log = get_logger("greenroom.test")
    tracer = get_tracer("t")
    with tracer.start_as_current_span("a") as a:
        with tracer.start_as_current_span("b") as b:
            log.info("in b")
        log.info("back in a")
    in_b, in_a = log_lines()
    assert (in_b["trace_id"], in_b["span_id"]) == _ids(b)
    assert (in_a["trace_id"], in_a["span_id"]) == _ids(a)
    assert in_a["trace_id"] == in_b["trace_id"]


def test_line_has_iso_utc_timestamp_level_and_logger_name(log_lines) -> None:
    get_logger("greenroom.session").warning("slow client", ms=120)
    (line,) = log_lines()
    assert line["level"] == "warning"
    assert line["logger"] == "greenroom.session"
    assert line["timestamp"].endswith("Z")
    stamp = datetime.fromisoformat(line["timestamp"].replace("Z", "+00:00"))
    assert stamp.utcoffset().total_seconds() == 0
    assert abs((datetime.now(UTC) - stamp).total_seconds()) < 60


def test_stdlib_lines_pass_through_the_same_renderer(log_lines) -> None:
    """Thespian logs with stdlib logging; its lines must look like ours."""
    ours = get_logger("greenroom.actor")
    theirs = logging.getLogger("Thespian.test")
    with get_tracer("t").start_as_current_span("turn") as span:
        ours.info("handled %s", "msg")
        theirs.info("actor %s started", "abc", extra={"actor_class": "Echo"})

    ours_line, theirs_line = log_lines()
    assert theirs_line["event"] == "actor abc started"
    assert theirs_line["logger"] == "Thespian.test"
    assert theirs_line["level"] == "info"
    assert theirs_line["actor_class"] == "Echo"
    assert ours_line["event"] == "handled msg"
    for line in (ours_line, theirs_line):
        assert (line["trace_id"], line["span_id"]) == _ids(span)
    assert set(ours_line) == set(theirs_line) - {"actor_class"}


def test_exceptions_are_rendered_into_the_json_line(log_lines) -> None:
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        get_logger("greenroom.test").exception("handler failed")
        logging.getLogger("Thespian.test").exception("stdlib failed")
    ours, theirs = log_lines()
    for line in (ours, theirs):
        assert line["level"] == "error"
        assert "RuntimeError: boom" in line["exception"]


def test_level_filters_both_kinds_of_line(restore_logging) -> None:
    buf = io.StringIO()
    configure_logging(json=True, level="WARNING", stream=buf)
    get_logger("greenroom.test").info("dropped")
    logging.getLogger("Thespian.test").info("dropped too")
    get_logger("greenroom.test").warning("kept")
    logging.getLogger("Thespian.test").error("kept too")
    events = [json.loads(line)["event"] for line in buf.getvalue().splitlines()]
    assert events == ["kept", "kept too"]


def test_configure_is_idempotent_and_never_stacks_handlers(restore_logging) -> None:
    buf = io.StringIO()
    before = len(logging.getLogger().handlers)
    configure_logging(json=True, stream=buf)
    configure_logging(json=True, stream=buf)
    assert len(logging.getLogger().handlers) == before + 1
    get_logger("greenroom.test").info("once")
    assert len(buf.getvalue().splitlines()) == 1

    other = io.StringIO()  # different settings: same single handler, new output
    configure_logging(json=True, stream=other)
    assert len(logging.getLogger().handlers) == before + 1
    get_logger("greenroom.test").info("moved")
    assert len(buf.getvalue().splitlines()) == 1
    assert json.loads(other.getvalue())["event"] == "moved"


def test_console_renderer_for_development(restore_logging) -> None:
    buf = io.StringIO()
    configure_logging(json=False, stream=buf)
    with get_tracer("t").start_as_current_span("s") as span:
        get_logger("greenroom.test").info("hello", guild=3)
    line = buf.getvalue()
    with pytest.raises(json.JSONDecodeError):
        json.loads(line)
    assert "hello" in line and "guild=3" in line
    assert f"trace_id={_ids(span)[0]}" in line
    assert "\x1b[" not in line  # no colour codes into a non-terminal


@pytest.mark.parametrize(
    ("env", "tty", "expect_json"),
    [("json", True, True), ("console", False, False), (None, False, True), (None, True, False)],
)
def test_default_format_from_env_then_tty(
    restore_logging, monkeypatch: pytest.MonkeyPatch, env, tty, expect_json
) -> None:
    class FakeStderr(io.StringIO):
        def isatty(self) -> bool:
            return tty

    fake = FakeStderr()
    monkeypatch.setattr("sys.stderr", fake)
    if env is not None:
        monkeypatch.setenv("GREENROOM_LOG_FORMAT", env)
    configure_logging()  # default stream: whatever sys.stderr is when a line is written
    get_logger("greenroom.test").info("which format")
    out = fake.getvalue().strip()
    if expect_json:
        assert json.loads(out)["event"] == "which format"
    else:
        assert out and not out.startswith("{")


def test_add_trace_context_adds_nothing_without_a_span_and_keeps_explicit_ids() -> None:
    assert add_trace_context(None, "info", {"event": "x"}) == {"event": "x"}
    with get_tracer("t").start_as_current_span("s"):
        explicit = add_trace_context(None, "info", {"event": "x", "trace_id": "given"})
    assert explicit["trace_id"] == "given" and len(explicit["span_id"]) == 16


def test_unknown_level_is_refused(restore_logging) -> None:
    with pytest.raises(ValueError):
        configure_logging(json=True, level="LOUD", stream=io.StringIO())
