"""Micro-benchmark: one guild actor fans MESSAGE_CREATE out to 1,000 real session actors
(each with a real ``Link`` and its ``GatewayConnection`` in READY; only the socket is
replaced: its ``send`` counts the frame).

    PYTHONPATH=. .venv/bin/python -m tests.gateway.bench_fanout [--traced] [--per-session]
        [--compress zlib-stream] [--shared-tail-min N] [--content-bytes N] [--cold]

``--traced`` configures tracing with an in-memory exporter and gives each fan-out a
trace context, so every hop makes its spans; without it tracing is not configured (the
default in production without ``OTEL_*``), which is what the hot-path cost is about.
``--compress zlib-stream``: every connection compresses its frames (they are not
inflated; the scripted client reads no zstd-stream HELLO); ``--shared-tail-min N`` sets
``GatewayConfig.zlib_shared_tail_min`` (a fan-out to 1,000 sessions splices one shared
tail at the default 32; above 1,000 every connection deflates its own frame, as before).
``--content-bytes N``: the message's content is N bytes (default: "hello", a 139-byte
frame; 716 makes an 850-byte one). ``--cold``: the fan-outs one at a time, the CPU
caches evicted before each (a 64 MiB write, not timed), as a node meets each message at
10 msg/s; without it they run back to back on warm caches, and those behind the
first ride on it (gateway/fanout.py, "Riding": a session's frames in one write, which
is what a node that falls behind does). ``--per-session`` measures
the design before gateway/fanout.py in the same run for comparison: the guild sends one
``Deliver`` actor message per recipient.
Prints one JSON line: fan-outs, deliveries/s and microseconds per fan-out (best of 5
runs), and the median CPU microseconds per delivery.
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
from chat.permissions import VIEW_CHANNEL
from gateway.context import GatewayContext, bind
from gateway.fanout import start_fanout_point
from gateway.guild import GuildActor, _Sub
from gateway.messages import Deliver, Fanout
from gateway.protocol import Encoding, GatewayConfig, Intents, PreparedDispatch, event_allowed
from gateway.server import Link
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


class _PerSessionGuild(_Guild):
    """The fan-out before gateway/fanout.py: one ``Deliver`` message per recipient."""

    def _fanout(self, msg: Fanout) -> None:
        event = msg.dispatch.event
        for session, sub in self.subs.items():
            if sub.permissions & VIEW_CHANNEL and event_allowed(sub.intents, event):
                self.send(session, Deliver(msg.dispatch, msg.trace))


class _Session(SessionActor):
    def receiveMessage(self, msg: Any, sender: Any) -> None:
        if isinstance(msg, _SetupSession):
            self.link = msg.link
            self.log = msg.link.conn.log
            self.sync_lane()
        else:
            super().receiveMessage(msg, sender)


class _Transport:
    """A picows ``WSTransport`` that counts frames, sent one by one or written together
    to its ``underlying_transport`` (what rides on a fan-out); ``done`` resolves after
    ``target`` frames in all."""

    sent = 0
    target = 0
    done: asyncio.Future | None = None
    is_disconnected = False
    is_close_frame_sent = False

    @property
    def underlying_transport(self) -> _Transport:
        return self

    def send(self, msg_type: Any, data: bytes) -> None:
        self._count(1)

    def write(self, data: bytes) -> None:
        frames, at = 0, 0
        while at < len(data):  # unmasked frames: 2 bytes, then 2 or 8 of length
            size, at = data[at + 1] & 0x7F, at + 2
            if size >= 126:
                width = 2 if size == 126 else 8
                size, at = int.from_bytes(data[at:at + width], "big"), at + width
            frames, at = frames + 1, at + size
        self._count(frames)

    @staticmethod
    def _count(frames: int) -> None:
        _Transport.sent += frames
        if _Transport.sent >= _Transport.target and _Transport.done is not None:
            if not _Transport.done.done():
                _Transport.done.set_result(None)


def _link(compress: str | None, config: GatewayConfig) -> Link:
    """A ``Link`` whose connection is READY (what ``Link.__init__`` and the handshake
    would set up, without a ``Gateway``), on a counting transport."""
    client = ScriptedClient("/?v=10&encoding=json" + (f"&compress={compress}" if compress else ""),
                            config)
    client.ready()
    link = Link.__new__(Link)
    link.conn = client.conn
    link.transport = _Transport()  # type: ignore[assignment]
    return link


#: larger than the last-level cache of the hosts this runs on: writing it evicts the rest
_EVICT = bytearray(64 << 20)


def _evict_caches() -> None:
    """Write a byte in every cache line of ``_EVICT``."""
    view = memoryview(_EVICT)
    view[::64] = bytes(len(_EVICT) // 64)


async def main(traced: bool, per_session: bool = False, fanouts: int = 200,
               compress: str | None = None, shared_tail_min: int | None = None,
               content_bytes: int | None = None, cold: bool = False) -> dict[str, Any]:
    trace = None
    if traced:
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        from observability import configure_tracing, inject_current, span_from

        configure_tracing("bench", exporter=InMemorySpanExporter())
        with span_from(None, "bench.root"):
            trace = inject_current()
    loop = asyncio.get_running_loop()
    base = UvloopSystemBase(loop=loop)
    config = GatewayConfig() if shared_tail_min is None else GatewayConfig(
        zlib_shared_tail_min=shared_tail_min)
    ctx = GatewayContext(None, SnowflakeGenerator(), config)  # type: ignore[arg-type]
    start_fanout_point(base, ctx)
    guild = base.create_actor(None, bind(_PerSessionGuild if per_session else _Guild, ctx),
                              None, None)
    subs = {}
    for i in range(RECIPIENTS):
        session = base.create_actor(None, bind(_Session, ctx), None, None)
        base.tell_from_loop(session, _SetupSession(_link(compress, config)))
        subs[session] = _Sub(1000 + i, INTENTS, VIEW_CHANNEL, 0)
    base.tell_from_loop(guild, _SetupGuild(subs))
    await asyncio.sleep(0.05)
    content = "hello" if content_bytes is None else ("lorem ipsum " * 100)[:content_bytes]
    payload = {"id": "1", "channel_id": "2", "guild_id": "3", "content": content,
               "author": {"id": "4", "username": "bench"}}
    frame_bytes = len(PreparedDispatch("MESSAGE_CREATE", payload).frame(1, Encoding.JSON))

    async def run(n: int) -> tuple[float, float]:
        _Transport.sent = 0
        _Transport.target = n * RECIPIENTS
        _Transport.done = loop.create_future()
        t0, cpu0 = time.perf_counter(), time.thread_time()
        for _ in range(n):
            fan = Fanout(2, PreparedDispatch("MESSAGE_CREATE", payload), payload)
            if trace is not None:
                fan.trace = trace  # type: ignore[attr-defined]
            base.tell_from_loop(guild, fan)
        await _Transport.done
        return time.perf_counter() - t0, time.thread_time() - cpu0

    async def run_cold(n: int) -> tuple[float, float]:
        """``n`` fan-outs one at a time, the CPU caches evicted before each (outside the
        time): as in a node at 10 msg/s, where each message finds its 1,000 sessions'
        objects gone from the caches."""
        wall = cpu = 0.0
        for _ in range(n):
            _evict_caches()
            w, c = await run(1)
            wall, cpu = wall + w, cpu + c
        return wall, cpu

    await run(20)  # warm up
    # CPU time too: this loop's thread's, less disturbed by a busy host than wall time
    runs = [await (run_cold(fanouts) if cold else run(fanouts)) for _ in range(5)]
    best = min(wall for wall, _ in runs)
    cpu = sorted(cpu for _, cpu in runs)[len(runs) // 2]
    base.shutdown_in_loop()
    return {"recipients": RECIPIENTS, "fanouts": fanouts, "traced": traced,
            "compress": compress, "shared_tail_min": config.zlib_shared_tail_min,
            "frame_bytes": frame_bytes,
            "path": "Deliver per session" if per_session else "NodeFanout", "cold": cold,
            "deliveries_per_s": round(fanouts * RECIPIENTS / best),
            "us_per_fanout": round(best / fanouts * 1e6, 1),
            "cpu_us_per_delivery_median": round(cpu / fanouts / RECIPIENTS * 1e6, 2)}


if __name__ == "__main__":
    args = sys.argv[1:]
    def _option(name: str) -> str | None:
        return args[args.index(name) + 1] if name in args else None

    tail_min, content_size = _option("--shared-tail-min"), _option("--content-bytes")
    print(json.dumps(uvloop.run(main(
        "--traced" in args, "--per-session" in args, compress=_option("--compress"),
        shared_tail_min=None if tail_min is None else int(tail_min),
        content_bytes=None if content_size is None else int(content_size),
        cold="--cold" in args))))
