"""Micro-benchmark: one guild actor fans MESSAGE_CREATE out to 1,000 real session actors
(each driving a real ``GatewayConnection`` in READY; the socket write is a counter).

    PYTHONPATH=. .venv/bin/python -m tests.gateway.bench_fanout [--traced]

``--traced`` configures tracing with an in-memory exporter and gives each fan-out a
trace context, so every hop makes its spans; without it tracing is not configured (the
default in production without ``OTEL_*``), which is what the hot-path cost is about.
Prints one JSON line: fan-outs, deliveries/s and microseconds per fan-out.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from dataclasses import dataclass
from typing import Any

import uvloop

from actors import UvloopSystemBase
from gateway.context import GatewayContext, bind
from gateway.guild import GuildActor, _Sub
from gateway.messages import Fanout
from gateway.objects import VIEW_CHANNEL
from gateway.protocol import GatewayConfig, Intents, PreparedDispatch
from gateway.session import SessionActor
from storage.snowflake import SnowflakeGenerator
from tests.gateway.scripted_client import ScriptedClient

RECIPIENTS = 1000
INTENTS = int(Intents.GUILDS | Intents.GUILD_MESSAGES | Intents.MESSAGE_CONTENT)


@dataclass
class _SetupGuild:
    subs: dict[Any, _Sub]


@dataclass
class _SetupSession:
    link: Any


class _Guild(GuildActor):
    def receiveMessage(self, msg: Any, sender: Any) -> None:
        if isinstance(msg, _SetupGuild):
            self._stash = None
            self.subs = msg.subs
        else:
            super().receiveMessage(msg, sender)


class _Session(SessionActor):
    def receiveMessage(self, msg: Any, sender: Any) -> None:
        if isinstance(msg, _SetupSession):
            self.link = msg.link
            self.log = msg.link.conn.log
        else:
            super().receiveMessage(msg, sender)


class _Link:
    """A socket that counts frames; ``done`` resolves after ``target`` frames in all."""

    sent = 0
    target = 0
    done: asyncio.Future | None = None

    def __init__(self) -> None:
        client = ScriptedClient()
        client.ready()
        self.conn = client.conn

    def execute(self, effects: Any) -> None:
        n = len(effects)
        _Link.sent += n
        if _Link.sent >= _Link.target and _Link.done is not None and not _Link.done.done():
            _Link.done.set_result(None)


async def main(traced: bool, fanouts: int = 200) -> dict[str, Any]:
    trace = None
    if traced:
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        from observability import configure_tracing, inject_current, span_from

        configure_tracing("bench", exporter=InMemorySpanExporter())
        with span_from(None, "bench.root"):
            trace = inject_current()
    loop = asyncio.get_running_loop()
    base = UvloopSystemBase(loop=loop)
    ctx = GatewayContext(None, SnowflakeGenerator(), GatewayConfig())  # type: ignore[arg-type]
    guild = base.create_actor(None, bind(_Guild, ctx), None, None)
    subs = {}
    for i in range(RECIPIENTS):
        session = base.create_actor(None, bind(_Session, ctx), None, None)
        base.tell_from_loop(session, _SetupSession(_Link()))
        subs[session] = _Sub(1000 + i, INTENTS, VIEW_CHANNEL, 0)
    base.tell_from_loop(guild, _SetupGuild(subs))
    await asyncio.sleep(0.05)
    payload = {"id": "1", "channel_id": "2", "guild_id": "3", "content": "hello",
               "author": {"id": "4", "username": "bench"}}

    async def run(n: int) -> float:
        _Link.sent = 0
        _Link.target = n * RECIPIENTS
        _Link.done = loop.create_future()
        t0 = time.perf_counter()
        for _ in range(n):
            fan = Fanout(2, PreparedDispatch("MESSAGE_CREATE", payload), payload)
            if trace is not None:
                fan.trace = trace  # type: ignore[attr-defined]
            base.tell_from_loop(guild, fan)
        await _Link.done
        return time.perf_counter() - t0

    await run(20)  # warm up
    best = min([await run(fanouts) for _ in range(5)])
    base.shutdown_in_loop()
    return {"recipients": RECIPIENTS, "fanouts": fanouts, "traced": traced,
            "deliveries_per_s": round(fanouts * RECIPIENTS / best),
            "us_per_fanout": round(best / fanouts * 1e6, 1)}


if __name__ == "__main__":
    print(json.dumps(uvloop.run(main("--traced" in sys.argv[1:]))))
