"""Where a message's time goes, in its trace: the storage actor's batch (linked to the
write), the node's fan-out point (one span around the per-recipient loop) and the data
plane between two nodes (a span on each side), over real sockets and SQLite."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from gateway.fanout import SOCKET_OUT_SPANS, NodeFanout, fanout_address, payload_for
from gateway.protocol import PreparedDispatch
from observability import configure_tracing, get_tracer
from observability.spans import context_of
from tests.gateway.harness import run, running_gateway
from tests.gateway.test_fanout import far_node
from tests.gateway.test_gateway_socket import identified, post, recv
from tests.gateway.test_ingress import next_dispatch


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    configure_tracing("greenroom-test", exporter=exporter)
    yield exporter
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")  # back to no tracing for later tests
    configure_tracing("greenroom-test")


def _trace_of(exporter: InMemorySpanExporter, root_name: str) -> dict[str, list[Any]]:
    """The spans of the one trace whose root is ``root_name``, by name."""
    finished = exporter.get_finished_spans()
    roots = [s for s in finished if s.name == root_name]
    assert len(roots) == 1, [s.name for s in finished]
    by_name: dict[str, list[Any]] = {}
    for s in finished:
        if s.context.trace_id == roots[0].context.trace_id:
            by_name.setdefault(s.name, []).append(s)
    return by_name


def _one(by_name: dict[str, list[Any]], name: str) -> Any:
    assert len(by_name.get(name, [])) == 1, (name, {k: len(v) for k, v in by_name.items()})
    return by_name[name][0]


def test_a_rest_post_shows_its_storage_batch_queueing_and_db_call(
        tmp_path: Path, spans: InMemorySpanExporter) -> None:
    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            spans.clear()
            async with post(http, r, r.other_token, "traced") as resp:
                assert resp.status == 200
            by_name = _trace_of(spans, "rest.post_message")
            root, channel = _one(by_name, "rest.post_message"), _one(by_name, "channel.post")
            write = _one(by_name, "storage.write")
            queued, db = _one(by_name, "storage.queued"), _one(by_name, "storage.db")
            batch = _one(by_name, "storage.batch")
            assert channel.parent.span_id == root.context.span_id
            assert write.parent.span_id == channel.context.span_id
            assert queued.parent.span_id == db.parent.span_id == write.context.span_id
            assert batch.parent.span_id == db.context.span_id
            # the batch is linked to the write it carried, and says what it was
            assert [link.context.span_id for link in batch.links] == [write.context.span_id]
            assert batch.attributes["greenroom.backend"] == "sqlite"
            assert batch.attributes["greenroom.writes"] == 1
            assert batch.attributes["greenroom.partitions"] == 1
            assert batch.attributes["greenroom.attempt"] == 1
            # in time: queued, then the database call, all inside the write
            assert write.start_time <= queued.start_time <= queued.end_time <= db.start_time
            assert db.start_time <= batch.start_time <= batch.end_time <= db.end_time
            assert db.end_time <= write.end_time

    run(main)


@pytest.mark.parametrize("n", [4, SOCKET_OUT_SPANS + 4])
def test_a_fanout_to_n_local_sessions_is_one_fanout_deliver_span(
        tmp_path: Path, spans: InMemorySpanExporter, n: int) -> None:
    """One fanout.deliver for the node's loop; a socket.out for each of the first
    SOCKET_OUT_SPANS recipients only (a span per recipient of a big fan-out cost the
    loop more than the delivery), every recipient delivered."""
    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            sockets = [(await identified(http, r))[0] for _ in range(n)]  # bot sessions
            await asyncio.sleep(0.05)
            spans.clear()
            async with post(http, r, r.other_token, "to four") as resp:
                assert resp.status == 200
            for ws in sockets:
                await next_dispatch(ws, "MESSAGE_CREATE")
            await asyncio.sleep(0.02)
            by_name = _trace_of(spans, "rest.post_message")
            fanout, deliver = _one(by_name, "guild.fanout"), _one(by_name, "fanout.deliver")
            assert deliver.parent.span_id == fanout.context.span_id
            assert deliver.attributes["greenroom.recipients"] == n
            assert deliver.attributes["greenroom.socket_out_spans"] == min(n, SOCKET_OUT_SPANS)
            assert deliver.attributes["greenroom.node"] == r.gateway.base.node
            assert fanout.attributes["greenroom.nodes"] == 1
            outs = by_name.get("socket.out", [])
            assert len(outs) == min(n, SOCKET_OUT_SPANS)
            for out in outs:  # each delivery inside the fan-out point's loop
                assert out.parent.span_id == deliver.context.span_id
                assert deliver.start_time <= out.start_time <= out.end_time <= deliver.end_time
            for ws in sockets:
                await ws.close()

    run(main)


def test_a_node_fanout_over_the_data_plane_has_a_span_on_each_side(
        tmp_path: Path, spans: InMemorySpanExporter) -> None:
    """A second node (its own base and data plane, over loopback TCP) sends a traced
    NodeFanout to the gateway node's fan-out point."""
    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            here = r.gateway.base
            async with far_node(here) as other:
                ws, ready = await identified(http, r)
                sid = r.gateway.ctx.sessions[ready["d"]["session_id"]].id
                spans.clear()
                guild_span = get_tracer("test").start_span("guild.fanout")
                data = {"id": "77", "channel_id": str(r.seeded.channel_id),
                        "content": "from afar", "author": {"id": "4"}}
                other.tell_from_loop(fanout_address(here.node), NodeFanout(
                    payload_for(PreparedDispatch("MESSAGE_CREATE", data), False), [sid],
                    trace=context_of(guild_span)))
                assert (await recv(ws))["d"] == data
                guild_span.end()
                await asyncio.sleep(0.02)
                by_name = _trace_of(spans, "guild.fanout")
                send, receive = _one(by_name, "dataplane.send"), \
                    _one(by_name, "dataplane.receive")
                deliver, out = _one(by_name, "fanout.deliver"), _one(by_name, "socket.out")
                me = guild_span.get_span_context().span_id
                # the hop's two sides hang off the sender's span, as the receiver does
                assert send.parent.span_id == receive.parent.span_id == me
                assert deliver.parent.span_id == me and out.parent.span_id == \
                    deliver.context.span_id
                assert (send.attributes["greenroom.peer"], send.attributes["greenroom.node"]) \
                    == (here.node, "far")
                assert (receive.attributes["greenroom.peer"],
                        receive.attributes["greenroom.node"]) == ("far", here.node)
                for side in (send, receive):
                    assert side.attributes["greenroom.message_type"] == "NodeFanout"
                assert send.attributes["greenroom.bytes"] == receive.attributes[
                    "greenroom.bytes"] > 0
                assert send.attributes["greenroom.batch_envelopes"] >= 1
                assert deliver.attributes["greenroom.recipients"] == 1
                # in time: encoded and flushed, read, handed over, then delivered
                assert send.start_time <= send.end_time <= receive.end_time
                assert receive.end_time <= deliver.start_time <= out.start_time
                await ws.close()

    run(main)
