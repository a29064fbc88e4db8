"""Log lines join the trace of the message they were logged for, and only that one.

Actor hops start their spans without making them current, and the runtime drains many
actors' messages in one loop callback, so what is "current" there says nothing about the
message at hand: a line names its trace through the message (``trace=``), a span a hop
bound for logs (``log_span``), or OpenTelemetry's current span in a request handler.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import pytest
import uvloop
from thespian.actors import ActorExitRequest

from actors import Actor, UvloopSystemBase
from observability import get_tracer, inject_current
from observability.logging import LogThrottle, bind_log_span, log_span, reset_log_span

pytestmark = pytest.mark.usefixtures("spans")
log = logging.getLogger("greenroom.test.join")


@dataclass
class Note:
    text: str
    trace: dict | None = None


class Logs(Actor):
    """Logs each note it gets; crashes (OTP-style exit) on one that says so."""

    exit_on_error = True

    def receiveMessage(self, msg: Any, sender: Any) -> None:
        if isinstance(msg, Note):
            if msg.text == "crash":
                raise RuntimeError("told to")
            log.info("note", extra={"text": msg.text})
            self.send(sender, "ok")


def _trace_id(trace: dict) -> str:
    return trace["traceparent"][3:35]


def test_an_actor_line_does_not_take_the_trace_of_the_task_that_woke_the_runtime(
        log_lines) -> None:
    """A REST handler (inside its span) sends an untraced message: the actor that
    handles it logs without a trace_id (it used to carry the handler's, which with
    concurrent requests is someone else's)."""
    async def main() -> str:
        base = UvloopSystemBase(loop=asyncio.get_running_loop(), node="n1")
        try:
            actor = base.create_actor(None, Logs, None, None)
            with get_tracer("t").start_as_current_span("rest.request"):
                traced = inject_current()
                assert await base.ask_async(actor, Note("untraced"), 5) == "ok"
            return _trace_id(traced)
        finally:
            base.shutdown_in_loop()

    uvloop.run(main())
    (line,) = [x for x in log_lines() if x["event"] == "note"]
    assert "trace_id" not in line and "span_id" not in line


def test_a_crash_line_carries_the_trace_of_the_message_that_crashed_it(log_lines) -> None:
    async def main() -> str:
        base = UvloopSystemBase(loop=asyncio.get_running_loop(), node="n1")
        try:
            actor = base.create_actor(None, Logs, None, None)
            with get_tracer("t").start_as_current_span("origin"):
                trace = inject_current()
            reply = await base.ask_async(actor, Note("crash", trace), 5)
            assert type(reply).__name__ == "PoisonMessage"
            return _trace_id(trace)
        finally:
            base.shutdown_in_loop()

    trace_id = uvloop.run(main())
    (crash,) = [x for x in log_lines() if x["level"] == "error" and "crashed" in x["event"]]
    assert crash["trace_id"] == trace_id
    assert crash["exc_type"] == "RuntimeError" and "Traceback" in crash["exception"]
    assert "trace" not in crash  # the field became the ids


def test_a_span_bound_for_logs_names_the_lines_inside_and_only_those(log_lines) -> None:
    tracer = get_tracer("t")
    span = tracer.start_span("guild.fanout")  # not current, as an actor hop's
    ctx = span.get_span_context()
    with log_span(span):
        log.info("inside")
    log.info("after")
    token = bind_log_span(None)  # untraced: binds nothing
    log.info("untraced")
    reset_log_span(token)
    span.end()
    inside, after, untraced = log_lines()
    assert (inside["trace_id"], inside["span_id"]) == (f"{ctx.trace_id:032x}",
                                                       f"{ctx.span_id:016x}")
    assert "trace_id" not in after and "trace_id" not in untraced


def test_a_message_trace_field_names_the_line_on_both_kinds_of_logger(log_lines) -> None:
    from observability import get_logger

    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    log.warning("envelope.dropped", extra={"trace": {"traceparent": parent}})
    get_logger("greenroom.test").warning("envelope.dropped", trace={"traceparent": parent})
    log.warning("untraced", extra={"trace": None})
    log.warning("garbage", extra={"trace": {"traceparent": "00-zz-xx-01"}})
    stdlib, structlog_line, untraced, garbage = log_lines()
    for line in (stdlib, structlog_line):
        assert line["trace_id"] == "0af7651916cd43dd8448eb211c80319c"
        assert line["span_id"] == "b7ad6b7169203331"
        assert "trace" not in line
    assert "trace_id" not in untraced and "trace" not in untraced
    assert "trace_id" not in garbage


def test_log_throttle_writes_one_line_a_second_per_key_with_the_count() -> None:
    throttle = LogThrottle(interval=1.0)
    assert throttle.allow("peer-a", now=10.0) == 0
    assert throttle.allow("peer-a", now=10.2) is None
    assert throttle.allow("peer-a", now=10.5) is None
    assert throttle.allow("peer-b", now=10.5) == 0  # its own budget
    assert throttle.allow("peer-a", now=11.1) == 2  # the two held back
    assert throttle.allow("peer-a", now=11.2) is None


def test_log_level_from_the_environment(monkeypatch, restore_logging) -> None:
    from observability import configure_logging

    monkeypatch.setenv("GREENROOM_LOG_LEVEL", "debug")
    configure_logging(json=True)
    assert logging.getLogger().level == logging.DEBUG


class BadStart(Actor):
    def __init__(self) -> None:
        raise LookupError("cannot start (test)")


class BadExit(Actor):
    def receiveMessage(self, msg: Any, sender: Any) -> None:
        if isinstance(msg, ActorExitRequest):
            raise LookupError("cannot stop (test)")


def test_an_actor_failing_to_start_or_to_stop_is_one_structured_line(log_lines) -> None:
    """The other ways an actor fails: one line each, the actor in fields, not prose in
    the event, and the traceback."""
    async def main() -> None:
        base = UvloopSystemBase(loop=asyncio.get_running_loop(), node="n1")
        try:
            parent = base.create_actor(None, Logs, None, None)
            base.create_actor(base.cells[parent.id], BadStart, None, None)
            stopping = base.create_actor(None, BadExit, None, None)
            cell = base.cells[stopping.id]
            base.stop(cell, ActorExitRequest(), None, "shutdown")
            assert not cell.alive  # the failure does not keep it alive
        finally:
            base.shutdown_in_loop()

    uvloop.run(main())
    (created,) = [x for x in log_lines() if x["event"] == "actor.create_failed"]
    assert created["actor"] == "BadStart" and created["exc_type"] == "LookupError"
    assert "Traceback" in created["exception"]
    (stopped,) = [x for x in log_lines() if x["event"] == "actor.exit_failed"]
    assert stopped["actor"] == "BadExit" and stopped["address"]
    assert stopped["exc_message"] == "cannot stop (test)"
