"""Fan-out-aware sampling (observability/sampling.py) and tracing that keeps nothing
costing nothing (no exporter: no span object, no ``traceparent`` parse per recipient).

The gateway tests run the real server (loopback sockets, SQLite) and count spans with the
in-memory exporter; trace ids come from the posts' ``traceparent`` headers, spread evenly
over the id space, so which messages the sampler keeps is exact, not statistical.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk import trace as sdk_trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import Decision, ParentBasedTraceIdRatio
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from gateway.seed import add_member, create_guild
from observability import configure_tracing, inject_current, span_from
from observability.sampling import (
    FANOUT_RECIPIENTS,
    FanoutSampler,
    fanout_probability,
    fanout_sampler,
)
from observability.tracing import span_pipeline, tracing_active
from storage.snowflake import SnowflakeGenerator
from tests.gateway.harness import Running, run, running_gateway
from tests.gateway.test_fanout import open_guild
from tests.gateway.test_gateway_socket import identified
from tests.gateway.test_ingress import next_dispatch

LOW64 = 1 << 64
HIGH = 0x0AF7651916CD43DD << 64  # any non-zero high half


@pytest.fixture(autouse=True)
def _no_metrics_export(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "none")
    yield
    for name in ("OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG"):
        monkeypatch.delenv(name, raising=False)
    configure_tracing("greenroom-test")  # back to "keeps nothing" for later tests


# ------------------------------------------------------------------ the formula


@pytest.mark.parametrize(("n", "p"), [(0, 1.0), (1, 1.0), (10, 1.0), (20, 0.5), (100, 0.1),
                                      (1000, 0.01), (10_000, 0.001), (1_000_000, 0.001)])
def test_probability_is_budget_over_recipients_between_a_floor_and_one(n: int, p: float) -> None:
    assert fanout_probability(n) == pytest.approx(p)


def test_probability_never_rises_with_the_fan_out() -> None:
    ps = [fanout_probability(n) for n in range(1, 20_000, 7)]
    assert all(a >= b for a, b in zip(ps, ps[1:], strict=False))
    assert fanout_probability(50, budget=100) == 1.0


# ------------------------------------------------------------------ the sampler alone


def _decide(sampler: FanoutSampler, trace_id: int, attributes: dict[str, Any] | None,
            parent: SpanContext | None = None) -> bool:
    context = (trace.set_span_in_context(NonRecordingSpan(parent)) if parent is not None
               else Context())
    result = sampler.should_sample(context, trace_id, "s", attributes=attributes)
    return result.decision is Decision.RECORD_AND_SAMPLE


def _remote(sampled: bool, trace_id: int = HIGH | 5) -> SpanContext:
    return SpanContext(trace_id, 0x1234, is_remote=True,
                       trace_flags=TraceFlags(TraceFlags.SAMPLED if sampled else 0))


def test_entry_decision_is_the_trace_ids_low_half_under_p() -> None:
    sampler = FanoutSampler()
    bound = LOW64 // 100  # p(1000) = 0.01
    big = {FANOUT_RECIPIENTS: 1000}
    assert _decide(sampler, HIGH | (bound - 1000), big)  # (float rounding: a margin)
    assert not _decide(sampler, HIGH | (bound + 1000), big)
    assert _decide(sampler, HIGH | (LOW64 - 1), {FANOUT_RECIPIENTS: 1})  # p(1) = 1
    assert _decide(sampler, HIGH | (LOW64 - 1), {FANOUT_RECIPIENTS: 7})


def test_a_callers_flag_cannot_force_a_big_fan_out_but_its_no_is_obeyed() -> None:
    sampler = FanoutSampler()
    big, small = {FANOUT_RECIPIENTS: 10_000}, {FANOUT_RECIPIENTS: 1}
    late = HIGH | (LOW64 // 2)
    assert not _decide(sampler, late, big, _remote(True, late))
    assert not _decide(sampler, late, small, _remote(False, late))
    assert _decide(sampler, late, small, _remote(True, late))


def test_children_follow_their_parent_and_other_roots_are_kept() -> None:
    sampler = FanoutSampler()
    late = HIGH | (LOW64 - 1)
    assert _decide(sampler, late, {"greenroom.recipients": 10_000}, _remote(True, late))
    assert not _decide(sampler, late, None, _remote(False, late))
    assert _decide(sampler, late, None)
    assert _decide(sampler, late, {FANOUT_RECIPIENTS: "not a number"})  # counted as 1


def test_identify_roots_at_their_own_ratio(monkeypatch: pytest.MonkeyPatch) -> None:
    identify = {"greenroom.op": "IDENTIFY"}
    assert fanout_sampler(None).identify_ratio == 0.01
    sampler = fanout_sampler(None)
    assert _decide(sampler, HIGH | (LOW64 // 100 - 1000), identify)
    assert not _decide(sampler, HIGH | (LOW64 // 100 + 1000), identify)
    monkeypatch.setenv("GREENROOM_TRACES_IDENTIFY_RATIO", "1")
    assert _decide(fanout_sampler(None), HIGH | (LOW64 - 1), identify)
    monkeypatch.setenv("GREENROOM_TRACES_IDENTIFY_RATIO", "2")  # not a ratio: default
    assert fanout_sampler(None).identify_ratio == 0.01


# ------------------------------------------------------------------ selection


def test_default_sampler_with_an_exporter_is_the_fan_out_one() -> None:
    provider = configure_tracing("greenroom-test", exporter=InMemorySpanExporter())
    assert isinstance(provider.sampler, FanoutSampler) and provider.sampler.budget == 10
    assert tracing_active()


def test_sampler_selected_by_the_standard_variables(monkeypatch: pytest.MonkeyPatch,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    (point,) = entry_points(group="opentelemetry_traces_sampler", name="greenroom_fanout")
    assert point.load() is fanout_sampler
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "greenroom_fanout")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "100")
    provider = configure_tracing("greenroom-test", exporter=InMemorySpanExporter())
    assert isinstance(provider.sampler, FanoutSampler) and provider.sampler.budget == 100

    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "parentbased_traceidratio")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0.25")
    provider = configure_tracing("greenroom-test", exporter=InMemorySpanExporter())
    assert isinstance(provider.sampler, ParentBasedTraceIdRatio)
    assert provider.sampler._root.rate == 0.25

    caplog.set_level(logging.WARNING, "observability")
    for name, arg in (("no_such_sampler", "1"), ("greenroom_fanout", "-3")):
        monkeypatch.setenv("OTEL_TRACES_SAMPLER", name)
        monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", arg)
        provider = configure_tracing("greenroom-test", exporter=InMemorySpanExporter())
        assert isinstance(provider.sampler, FanoutSampler) and provider.sampler.budget == 10
    assert [r for r in caplog.records if "no_such_sampler" in r.getMessage()]
    assert [r for r in caplog.records if "'-3'" in r.getMessage()]


# ------------------------------------------------------------------ spans kept, counted


def test_a_1000_recipient_entry_keeps_about_p_and_a_1_recipient_entry_keeps_all() -> None:
    """Random trace ids (no caller context), as REST posts without ``traceparent``."""
    memory = InMemorySpanExporter()
    configure_tracing("greenroom-test", exporter=memory)
    contexts = []
    for _ in range(20_000):
        with span_from(None, "rest.post_message", **{FANOUT_RECIPIENTS: 1000}):
            contexts.append(inject_current())
    kept = len(memory.get_finished_spans())
    assert 130 <= kept <= 270, kept  # p = 0.01: 200 expected, sd 14
    assert sum(c is not None for c in contexts) == kept  # unsampled: no context travels
    assert all(int(c["traceparent"][-2:], 16) & 1 for c in contexts if c is not None)
    memory.clear()
    for _ in range(2000):
        with span_from(None, "rest.post_message", **{FANOUT_RECIPIENTS: 1}):
            pass
    assert len(memory.get_finished_spans()) == 2000


def _traceparent(i: int, of: int, flags: str = "01") -> str:
    """The i-th of ``of`` trace ids spread evenly over the low 64 bits (the middle of
    the i-th of ``of`` equal slices: clear of any bound's rounding)."""
    return f"00-{HIGH | ((2 * i + 1) * LOW64 // (2 * of)):032x}-{0x1234 + i:016x}-{flags}"


async def _with_guilds(r: Running, members: int) -> int:
    """Give the seeded guild ``members`` members (only the bot will be online); answers a
    second channel, in a guild of the bot alone."""
    storage = r.gateway.ctx.storage
    ids = SnowflakeGenerator(worker=7)
    for _ in range(members - 2):  # the bot and alice are members already
        await add_member(storage, r.seeded.guild_id, ids.next_id())
    _, channel_id = await create_guild(storage, ids, "alone", r.seeded.user_id)
    r.gateway.ctx.identity.forget_guild(r.seeded.guild_id)
    return channel_id


async def _post(http: aiohttp.ClientSession, r: Running, channel_id: int, content: str,
                traceparent: str | None = None) -> None:
    headers = {"Authorization": f"Bot {r.seeded.token}"}
    if traceparent is not None:
        headers["traceparent"] = traceparent
    async with http.post(f"{r.gateway.rest_url}/channels/{channel_id}/messages",
                         json={"content": content}, headers=headers) as resp:
        assert resp.status == 200, await resp.text()


#: the spans of a posted message's trace (others may join it: storage, fan-out point)
MESSAGE_SPANS = {"rest.post_message", "channel.post", "storage.write", "guild.fanout",
                 "socket.out"}


def _traces(memory: InMemorySpanExporter) -> dict[int, list[str]]:
    """The posted messages' traces (those with a ``rest.post_message`` root), by trace
    id; asserts no span of a message's path is in any other trace: no hop, session
    included, started a trace of its own."""
    by_trace: dict[int, list[str]] = {}
    for span in memory.get_finished_spans():
        by_trace.setdefault(span.context.trace_id, []).append(span.name)
    posts = {t: names for t, names in by_trace.items() if "rest.post_message" in names}
    for t, names in by_trace.items():
        assert t in posts or not MESSAGE_SPANS & set(names), names
    return posts


def test_the_entry_decides_by_the_guilds_size_for_the_whole_trace(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A 1,000-member guild keeps exactly p = 10 % (budget 100, chosen with the
    standard variables) of 200 posts whose trace ids are spread evenly; a guild of one
    keeps every post; each kept trace is whole, and nothing else is traced."""
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "greenroom_fanout")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "100")
    memory = InMemorySpanExporter()
    configure_tracing("greenroom-test", exporter=memory)

    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            alone = await _with_guilds(r, 1000)
            bot, _ = await identified(http, r)
            await next_dispatch(bot, "GUILD_CREATE")  # the bot's second guild
            memory.clear()
            for i in range(200):
                await _post(http, r, r.seeded.channel_id, f"big {i}", _traceparent(i, 200))
                await next_dispatch(bot, "MESSAGE_CREATE")
            big = _traces(memory)
            kept = sorted((t & (LOW64 - 1)) * 200 // LOW64 for t in big)
            assert kept == list(range(20)), kept
            for names in big.values():  # whole traces, one socket.out (the bot online)
                assert MESSAGE_SPANS <= set(names) and names.count("socket.out") == 1, names
            memory.clear()
            for i in range(40):
                await _post(http, r, alone, f"alone {i}", _traceparent(i, 40) if i % 2
                            else None)
                await next_dispatch(bot, "MESSAGE_CREATE")
            assert len(_traces(memory)) == 40
            await bot.close()

    run(main, timeout=60)


class _Counts:
    """Counting hooks on what tracing work costs: SDK spans started, non-recording
    spans made, ``traceparent`` headers parsed."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.sdk_spans = self.non_recording = self.parses = 0
        start_span = sdk_trace.Tracer.start_span
        init = NonRecordingSpan.__init__
        extract = TraceContextTextMapPropagator.extract

        def counted_start(tracer: Any, *args: Any, **kwargs: Any) -> Any:
            self.sdk_spans += 1
            return start_span(tracer, *args, **kwargs)

        def counted_init(span: Any, *args: Any, **kwargs: Any) -> None:
            self.non_recording += 1
            init(span, *args, **kwargs)

        def counted_extract(propagator: Any, *args: Any, **kwargs: Any) -> Any:
            self.parses += 1
            return extract(propagator, *args, **kwargs)

        monkeypatch.setattr(sdk_trace.Tracer, "start_span", counted_start)
        monkeypatch.setattr(NonRecordingSpan, "__init__", counted_init)
        monkeypatch.setattr(TraceContextTextMapPropagator, "extract", counted_extract)

    def snapshot(self) -> tuple[int, int, int]:
        return self.sdk_spans, self.non_recording, self.parses


async def _two_recipients(http: aiohttp.ClientSession, r: Running
                          ) -> list[aiohttp.ClientWebSocketResponse]:
    bot, _ = await identified(http, r)
    alice, _ = await identified(http, r, r.other_token)
    await open_guild(alice, r.seeded.guild_id)  # a user: active once opened
    return [bot, alice]


async def _post_and_deliver(http: aiohttp.ClientSession, r: Running,
                            sockets: list[aiohttp.ClientWebSocketResponse], content: str,
                            traceparent: str | None = None) -> None:
    await _post(http, r, r.seeded.channel_id, content, traceparent)
    for ws in sockets:
        await next_dispatch(ws, "MESSAGE_CREATE")
    await asyncio.sleep(0.01)  # the sessions' own bookkeeping after the frame is out


def test_no_exporter_no_span_object_and_no_parse_on_the_delivery_path(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``make run``'s configuration (no OTEL_* variable): the provider keeps nothing, so
    a message costs no span object at all; a caller's ``traceparent`` is parsed once, at
    the entry, and never per recipient."""
    configure_tracing("greenroom-test")
    assert not tracing_active() and span_pipeline() == []
    counts = _Counts(monkeypatch)

    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            sockets = await _two_recipients(http, r)
            before = counts.snapshot()
            for i in range(5):
                await _post_and_deliver(http, r, sockets, f"untraced {i}")
            assert counts.snapshot() == before
            await _post_and_deliver(http, r, sockets, "with a caller's context",
                                    _traceparent(1, 2))
            sdk, non_recording, parses = counts.snapshot()
            assert (sdk, parses) == (before[0], before[2] + 1)  # the REST entry's only
            assert non_recording == before[1] + 1  # the caller's span, made once
            for ws in sockets:
                await ws.close()

    run(main)


def test_an_unsampled_message_costs_its_entry_only(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Exporting, but the caller said "not sampled": one (non-recording) root at the
    entry, then no span and no parse at any hop, for any number of recipients."""
    memory = InMemorySpanExporter()
    configure_tracing("greenroom-test", exporter=memory)
    counts = _Counts(monkeypatch)

    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            sockets = await _two_recipients(http, r)
            memory.clear()
            before = counts.snapshot()
            for i in range(5):
                await _post_and_deliver(http, r, sockets, f"unsampled {i}",
                                        _traceparent(i, 5, flags="00"))
            sdk, _, parses = counts.snapshot()
            assert (sdk - before[0], parses - before[2]) == (5, 5)  # the entries
            assert memory.get_finished_spans() == ()
            await _post_and_deliver(http, r, sockets, "sampled", _traceparent(0, 5))
            (names,) = _traces(memory).values()  # and tracing still works
            assert MESSAGE_SPANS <= set(names) and names.count("socket.out") == 2, names
            for ws in sockets:
                await ws.close()

    run(main)


def test_ingress_entries_carry_the_guilds_size(tmp_path: Path) -> None:
    """An ingress post and broadcast decide at their root, by the guild's member count."""
    from gateway.ingress_client import IngressClient
    from tests.gateway.test_ingress import SECRET

    memory = InMemorySpanExporter()
    configure_tracing("greenroom-test", exporter=memory)

    async def main() -> None:
        async with running_gateway(tmp_path, ingress_secret=SECRET) as r, \
                IngressClient(r.gateway.ingress_url, SECRET) as c:
            await c.post_system_message(r.seeded.channel_id, "from a service")
            await c.broadcast(r.seeded.guild_id, "SERVICE_EVENT", {"x": 1})
            roots = {s.name: s for s in memory.get_finished_spans()
                     if s.name.startswith("ingress.")}
            for name in ("ingress.PostSystemMessage", "ingress.BroadcastToGuild"):
                assert roots[name].attributes[FANOUT_RECIPIENTS] == 2  # bot and alice

    run(main)
