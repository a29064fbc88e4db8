"""One trace per message: REST or ingress -> channel -> storage write, and channel ->
fan-out -> socket out for each session, joined through the actor messages' ``trace``."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from gateway.ingress_client import IngressClient
from observability import add_trace_context, configure_tracing
from tests.gateway.harness import run, running_gateway
from tests.gateway.test_fanout import open_guild
from tests.gateway.test_gateway_socket import identified, post
from tests.gateway.test_ingress import SECRET, next_dispatch


def _untrace(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tracing off, as in production without OTEL_*: spans are no-ops, no context."""
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    configure_tracing("greenroom-test")
    monkeypatch.delenv("OTEL_SDK_DISABLED")


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    # every IDENTIFY traced (the default keeps 1 %: observability/sampling.py)
    monkeypatch.setenv("GREENROOM_TRACES_IDENTIFY_RATIO", "1")
    exporter = InMemorySpanExporter()
    configure_tracing("greenroom-test", exporter=exporter)
    yield exporter
    _untrace(monkeypatch)


def _chain(exporter: InMemorySpanExporter, root_name: str) -> dict[str, Any]:
    finished = exporter.get_finished_spans()
    roots = [s for s in finished if s.name == root_name]
    assert len(roots) == 1, [s.name for s in finished]
    trace_id = roots[0].context.trace_id
    mine = [s for s in finished if s.context.trace_id == trace_id]
    by_name: dict[str, list[Any]] = {}
    for s in mine:
        by_name.setdefault(s.name, []).append(s)
    return by_name


def _assert_message_trace(by_name: dict[str, list[Any]], root_name: str) -> None:
    def one(name: str) -> Any:
        assert len(by_name.get(name, [])) == 1, (name, sorted(by_name))
        return by_name[name][0]

    root, channel = one(root_name), one("channel.post")
    storage, fanout = one("storage.write"), one("guild.fanout")
    outs = by_name.get("socket.out", [])
    assert len(outs) == 2, sorted(by_name)
    assert channel.parent.span_id == root.context.span_id
    assert storage.parent.span_id == channel.context.span_id
    assert fanout.parent.span_id == channel.context.span_id
    deliver = one("fanout.deliver")  # the node's fan-out point, one node here
    assert deliver.parent.span_id == fanout.context.span_id
    for out in outs:
        assert out.parent.span_id == deliver.context.span_id
    assert {o.attributes["greenroom.session_id"] for o in outs}.__len__() == 2
    assert fanout.attributes["greenroom.recipients"] == 2
    # the storage write ends when the write is durable, before the fan-out starts
    assert storage.end_time <= fanout.start_time


def test_rest_post_is_one_trace_to_every_socket(tmp_path: Path,
                                                spans: InMemorySpanExporter) -> None:
    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            bot, _ = await identified(http, r)
            alice, _ = await identified(http, r, r.other_token)
            await open_guild(alice, r.seeded.guild_id)  # a user: active once opened
            await asyncio.sleep(0.05)
            spans.clear()
            async with post(http, r, r.other_token, "traced") as resp:
                assert resp.status == 200
            for ws in (bot, alice):
                await next_dispatch(ws, "MESSAGE_CREATE")
            await asyncio.sleep(0.02)
            _assert_message_trace(_chain(spans, "rest.post_message"), "rest.post_message")
            await bot.close()
            await alice.close()

    run(main)


def test_ingress_post_is_one_trace_and_logs_carry_its_id(
        tmp_path: Path, spans: InMemorySpanExporter) -> None:
    seen: list[dict[str, Any]] = []

    class Grab(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            # what the structlog processor adds to this line, at the time it is logged
            seen.append(add_trace_context(None, "info", {"event": record.getMessage()}))

    handler = Grab(logging.INFO)
    logger = logging.getLogger("greenroom.gateway.ingress")
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.INFO)

    async def main() -> None:
        async with running_gateway(tmp_path, ingress_secret=SECRET) as r, \
                aiohttp.ClientSession() as http, \
                IngressClient(r.gateway.ingress_url, SECRET) as c:
            bot, _ = await identified(http, r)
            alice, _ = await identified(http, r, r.other_token)
            await open_guild(alice, r.seeded.guild_id)  # a user: active once opened
            await asyncio.sleep(0.05)
            spans.clear()
            await c.post_system_message(r.seeded.channel_id, "from a service")
            for ws in (bot, alice):
                await next_dispatch(ws, "MESSAGE_CREATE")
            await asyncio.sleep(0.02)
            by_name = _chain(spans, "ingress.PostSystemMessage")
            _assert_message_trace(by_name, "ingress.PostSystemMessage")
            trace_id = format(by_name["channel.post"][0].context.trace_id, "032x")
            done = [e for e in seen if e["event"] == "ingress PostSystemMessage done"]
            assert done and done[0]["trace_id"] == trace_id
            await bot.close()
            await alice.close()

    try:
        run(main)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


def test_untraced_messages_carry_no_trace(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tracing off: the origin's context is empty, so no later hop does span work."""
    from observability import inject_current, span_from

    _untrace(monkeypatch)
    with span_from(None, "origin"):
        assert inject_current() is None


def test_identify_is_traced_from_socket_in_to_the_session(
        tmp_path: Path, spans: InMemorySpanExporter) -> None:
    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            ws, _ = await identified(http, r)
            finished = spans.get_finished_spans()
            socket_in = [s for s in finished if s.name == "socket.in"]
            session = [s for s in finished if s.name == "session.identify"]
            assert len(socket_in) == 1 and len(session) == 1
            assert socket_in[0].attributes["greenroom.op"] == "IDENTIFY"
            assert session[0].parent.span_id == socket_in[0].context.span_id
            assert session[0].context.trace_id == socket_in[0].context.trace_id
            await ws.close()

    run(main)
