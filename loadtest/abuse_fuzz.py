"""A seeded gateway fuzzer over real sockets: hostile WebSocket frames against a real
gateway, counting what a client must never see.

Each connection picks a wire format: an encoding the gateway serves (``json``,
``msgpack``; ``etf`` is refused, and tried among the bad URLs) with no transport
compression, ``zlib-stream`` or ``zstd-stream`` (``FORMATS``), reads HELLO, sometimes IDENTIFYs for real, then sends a few frames built from valid
payloads and mutated: opcodes, value types, sizes, nesting, ids past 2**63, lone
surrogates and invalid UTF-8, fragments (valid, orphan, interleaved), control frames,
reserved opcodes and RSV bits, unmasked frames. It ends with a heartbeat and reads until
the HEARTBEAT_ACK (the connection survived) or the close. A close is *unexpected* when
its code is not one a Discord client is meant to get for bad input (``ALLOWED_CLOSES``:
1011 and 4000 are the server's faults), when the socket drops without a close frame,
or when nothing answers within ``answer_timeout_s``.

``fuzz_gateway`` is the client alone (any gateway); ``serve_and_fuzz`` runs a gateway in
this process on a temporary SQLite database, fuzzes it, counts ERROR records and
tracebacks logged meanwhile, samples RSS, and checks that a well-behaved client still
gets READY afterwards. The gateway test suite and ``make bench-abuse`` call it.

    .venv/bin/python -m loadtest.abuse_fuzz --frames 20000 --seed 1
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
import struct
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loadtest.raw_client import BINARY, CLOSE, CONT, PING, PONG, TEXT, Closed, RawClient

#: RFC 6455 and Discord close codes a client may get for bad input. 1000: the server's
#: answer to the client's own close frame.
ALLOWED_CLOSES = frozenset({1000, 1002, 1007, 1009, 4001, 4002, 4003, 4004, 4005, 4008,
                            4010, 4012, 4013, 4014})

#: (encoding, transport compression): every pair the gateway serves
FORMATS = tuple((encoding, compress) for encoding in ("json", "msgpack")
                for compress in (None, "zlib-stream", "zstd-stream"))


def format_name(encoding: str, compress: str | None) -> str:
    return f"{encoding}+{compress}" if compress else encoding


# -- payloads and mutations -----------------------------------------------------------------

_STRANGE = [None, True, False, 0, -1, 1 << 63, (1 << 64) + 5, -(1 << 70), 1.5, 1e308, "",
            "x" * 300, "\ud800", "0123", "+5", "١٢", [], {}, [[[]]], {"op": 1}]


def _base_payloads(rng: random.Random, token: str, guild_id: int) -> list[dict[str, Any]]:
    ident = {"token": token, "intents": rng.choice([513, 0, 32767, 1 << 25, -1]),
             "properties": {"os": "linux", "browser": "fuzz", "device": "fuzz"}}
    activity = {"name": rng.choice(["x", "y" * 128, "z" * 129, "\ud800", "w" * 3000]),
                "type": rng.choice([0, 4, 9, "0"])}
    return [
        {"op": 1, "d": rng.choice([None, 0, 7, -1, "1"])},
        {"op": 2, "d": ident},
        {"op": 2, "d": {**ident, "token": rng.choice(["", " ", "bad", token])}},
        {"op": 2, "d": {**ident, "shard": rng.choice([[0, 1], [1, 1], [0, 0], "x"])}},
        {"op": 3, "d": {"since": None, "afk": False, "status": "online",
                        "activities": [activity] * rng.choice([1, 2, 6])}},
        {"op": 6, "d": {"token": token, "session_id": "x.y", "seq": rng.choice([0, 5, None])}},
        {"op": 8, "d": {"guild_id": str(guild_id), "query": "", "limit": 0,
                        "nonce": "n"}},
        {"op": 8, "d": {"guild_id": rng.choice([str(guild_id), 1 << 63, "-1", "0" + str(guild_id)]),
                        "user_ids": [rng.choice([1 << 63, -1, "0123", "12", (1 << 63) - 1])],
                        "nonce": "m"}},
        {"op": 4, "d": {"guild_id": str(guild_id), "channel_id": None, "self_mute": False,
                        "self_deaf": False}},
        {"op": 14, "d": {"guild_id": rng.choice([str(guild_id), "x", 1 << 64])}},
        {"op": 31, "d": {"guild_ids": [str(guild_id)]}},
        {"op": rng.choice([0, 5, 7, 9, 10, 11, 12, 13, 99, -1, 1 << 40]), "d": None},
    ]


def _nested(rng: random.Random) -> Any:
    depth = rng.choice([10, 200, 1500])
    value: Any = 1
    for _ in range(depth):
        value = [value] if rng.random() < 0.5 else {"a": value}
    return value


def _mutate_value(rng: random.Random, payload: dict[str, Any]) -> Any:
    """A mutated copy of ``payload`` (a dict, or not a dict at all)."""
    choice = rng.random()
    p = json.loads(json.dumps(payload))  # a deep copy (surrogates survive the round trip)
    if choice < 0.15:
        p["op"] = rng.choice(_STRANGE + [1, 2, 3, 6, 8])
    elif choice < 0.35 and isinstance(p.get("d"), dict) and p["d"]:
        key = rng.choice(sorted(p["d"]))
        p["d"][key] = rng.choice(_STRANGE)
    elif choice < 0.45:
        p["d"] = rng.choice(_STRANGE)
    elif choice < 0.52:
        p["d"] = _nested(rng)
    elif choice < 0.58:
        p.setdefault("d", {})
        if isinstance(p["d"], dict):
            p["d"]["pad"] = "p" * rng.choice([100, 3000, 5000])
    elif choice < 0.62:
        return rng.choice([[], "op", 1, None, [payload]])
    elif choice < 0.66:
        p["extra"] = rng.choice(_STRANGE)
    return p


def _encode_or_junk(client: RawClient, rng: random.Random, value: Any) -> tuple[int, bytes]:
    try:
        return client.encode(value)
    except (ValueError, TypeError, OverflowError, UnicodeEncodeError, RecursionError):
        return client.encode({"op": 1, "d": None})


def _send_mutated(client: RawClient, rng: random.Random, payload: dict[str, Any],
                  ) -> tuple[int, bool]:
    """Send ``payload`` as one or more mutated frames: (frames sent, expects close echo)."""
    opcode, data = _encode_or_junk(client, rng, _mutate_value(rng, payload))
    kind = rng.random()
    if kind < 0.45:  # the (value-mutated) payload as one frame
        client.frame(opcode, data)
        return 1, False
    if kind < 0.55:  # byte-level damage
        raw = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            if raw:
                raw[rng.randrange(len(raw))] = rng.randrange(256)
        if rng.random() < 0.3 and raw:
            del raw[rng.randrange(len(raw)):]
        client.frame(opcode, bytes(raw))
        return 1, False
    if kind < 0.60:  # invalid UTF-8 in a text frame (alone or split over fragments)
        bad = data[: len(data) // 2] + rng.choice([b"\xff", b"\xc3\x28", b"\xed\xa0\x80",
                                                  b"\xf4\x90\x80\x80"]) + data[len(data) // 2:]
        if rng.random() < 0.5:
            client.frame(TEXT, bad)
            return 1, False
        cut = rng.randrange(1, len(bad))
        client.frame(TEXT, bad[:cut], fin=False)
        client.frame(CONT, bad[cut:])
        return 2, False
    if kind < 0.70:  # fragments: valid, or split oddly
        parts = rng.randint(2, 5)
        cuts = sorted(rng.sample(range(1, max(2, len(data))), min(parts - 1, max(1, len(data) - 1))))
        pieces = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
        for i, piece in enumerate(pieces):
            client.frame(opcode if i == 0 else CONT, piece, fin=i == len(pieces) - 1)
            if i == 0 and rng.random() < 0.2:
                client.frame(PING, b"mid")  # control frames may come between fragments
        return len(pieces), False
    if kind < 0.74:  # an orphan continuation, or a new message inside a fragmented one
        if rng.random() < 0.5:
            client.frame(CONT, data, fin=rng.random() < 0.5)
            return 1, False
        client.frame(opcode, data[:1], fin=False)
        client.frame(opcode, data)
        return 2, False
    if kind < 0.80:  # reserved bits, on a data or a control frame
        if rng.random() < 0.25:
            client.frame(PING, data[:125], rsv=rng.randint(1, 7))
        else:
            client.frame(opcode, data, rsv=rng.randint(1, 7))
        return 1, False
    if kind < 0.88:  # control frames
        which = rng.random()
        if which < 0.4:
            client.frame(PING, os.urandom(rng.randint(0, 125)))
        elif which < 0.6:
            client.frame(PONG, os.urandom(rng.randint(0, 20)))
        elif which < 0.8:
            code = rng.choice([1000, 1001, 4000, 4999, 3000, 999, 1005, 1006, 2000, 5000])
            reason = rng.choice([b"", b"bye", b"\xff\xfe"])
            client.frame(CLOSE, struct.pack("!H", code) + reason)
            return 1, True
        else:
            client.frame(CLOSE, rng.choice([b"", b"\x03"]))
            return 1, True
        return 1, False
    if kind < 0.93:  # reserved opcodes
        client.frame(rng.choice([0x3, 0x4, 0x5, 0x6, 0x7, 0xB, 0xC, 0xD, 0xE, 0xF]), data)
        return 1, False
    if kind < 0.96:  # an unmasked frame (RFC 6455 §5.1: clients must mask)
        client.frame(opcode, data, masked=False)
        return 1, False
    # the other frame type for this encoding
    client.frame(BINARY if opcode == TEXT else TEXT, data)
    return 1, False


# -- the fuzzer -------------------------------------------------------------------------------


@dataclass
class FuzzReport:
    frames: int = 0
    connections: int = 0
    survived: int = 0  # connections that still answered the final heartbeat
    closes: Counter = field(default_factory=Counter)
    #: frames sent per wire format (``format_name``; "bad url" for a refused URL)
    formats: Counter = field(default_factory=Counter)
    #: (close code or None for a drop or "timeout", what was sent last)
    unexpected: list[tuple[Any, str]] = field(default_factory=list)
    #: filled by ``serve_and_fuzz``
    error_records: list[str] = field(default_factory=list)
    rss_mib: list[float] = field(default_factory=list)
    well_behaved_ok: bool | None = None
    seconds: float = 0.0

    @property
    def unexpected_closes(self) -> int:
        return len(self.unexpected)

    @property
    def rss_growth_mib(self) -> float:
        return self.rss_mib[-1] - self.rss_mib[0] if len(self.rss_mib) >= 2 else 0.0


async def _one_connection(host: str, port: int, token: str, guild_id: int,
                          rng: random.Random, budget: int, report: FuzzReport,
                          answer_timeout_s: float) -> int:
    encoding, compress = rng.choice(FORMATS)
    query = None
    if rng.random() < 0.03:  # a bad URL: version, encoding, compression
        query = rng.choice(["v=9&encoding=json", "v=10&encoding=xml", "v=10&encoding=etf",
                            "v=10&compress=lz4", "v=abc", "encoding=json&v=10&v=11"])
        encoding, compress = "json", None
    wire = "bad url" if query else format_name(encoding, compress)
    try:
        client = await RawClient.connect(host, port, encoding, compress, query=query)
    except Closed as closed:
        report.unexpected.append((closed.code, f"handshake {query}"))
        return 0
    report.connections += 1
    sent = 0
    last = "hello"
    echo = False
    try:
        try:
            await client.receive_op(10, answer_timeout_s)
        except Closed as closed:
            if query is None or closed.code not in ALLOWED_CLOSES:
                report.unexpected.append((closed.code, f"before HELLO {query}"))
            else:
                report.closes[closed.code] += 1
            return 0
        if rng.random() < 0.2:  # a real session for the opcodes that need one
            client.send({"op": 2, "d": {"token": token, "intents": 513, "properties": {
                "os": "linux", "browser": "fuzz", "device": "fuzz"}}})
            await client.drain()
            await client.receive_op(0, answer_timeout_s)  # READY
        payloads = _base_payloads(rng, token, guild_id)
        for _ in range(rng.randint(1, min(8, budget))):
            payload = rng.choice(payloads)
            last = json.dumps(payload)[:120]
            count, echo = _send_mutated(client, rng, payload)
            sent += count
            if echo:
                break
        if not echo:
            client.send({"op": 1, "d": None})
            sent += 1
        await client.drain()
        await client.receive_op(11, answer_timeout_s)
        report.survived += 1
    except Closed as closed:
        code = closed.code
        report.closes[code] += 1
        if code not in ALLOWED_CLOSES or (code == 1000 and not echo):
            report.unexpected.append((code, last))
    except TimeoutError:
        report.unexpected.append(("timeout", last))
    finally:
        client.close()
        report.formats[wire] += sent
    return sent


async def fuzz_gateway(host: str, port: int, token: str, guild_id: int, *, seed: int,
                       frames: int, concurrency: int = 16, answer_timeout_s: float = 5.0,
                       report: FuzzReport | None = None,
                       on_progress: Any = None) -> FuzzReport:
    """Send at least ``frames`` fuzzed frames (``concurrency`` connections at a time);
    ``token`` and ``guild_id`` make some payloads valid. Deterministic per ``seed``
    (frame contents; the interleaving of connections is the loop's)."""
    report = report or FuzzReport()
    master = random.Random(seed)
    started = time.monotonic()
    lock = asyncio.Lock()

    async def worker(index: int) -> None:
        rng = random.Random(master.random() + index)
        while True:
            async with lock:
                if report.frames >= frames:
                    return
                budget = frames - report.frames
            sent = await _one_connection(host, port, token, guild_id, rng, budget, report,
                                         answer_timeout_s)
            report.frames += max(sent, 1)
            if on_progress is not None:
                on_progress(report)

    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    report.seconds = time.monotonic() - started
    return report


# -- a gateway in this process, fuzzed --------------------------------------------------------


class _Collect(logging.Handler):
    """ERROR records and records with a traceback, from any logger."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.ERROR or record.exc_info:
            self.records.append(f"{record.levelname} {record.name}: {record.getMessage()}")


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / (1 << 20)


async def well_behaved(host: str, port: int, token: str, timeout: float = 10.0) -> bool:
    """IDENTIFY, READY, GUILD_CREATE and a HEARTBEAT_ACK on each wire format."""
    for encoding, compress in FORMATS:
        client = await RawClient.connect(host, port, encoding, compress)
        try:
            await client.receive_op(10, timeout)
            client.send({"op": 2, "d": {"token": token, "intents": 513, "properties": {
                "os": "linux", "browser": "ok", "device": "ok"}}})
            await client.drain()
            ready = await client.receive_op(0, timeout)
            if ready.get("t") != "READY":
                return False
            client.send({"op": 1, "d": 1})
            await client.drain()
            await client.receive_op(11, timeout)
        except (Closed, TimeoutError):
            return False
        finally:
            client.close()
    return True


async def serve_and_fuzz(*, seed: int, frames: int, concurrency: int = 16,
                         directory: str | Path | None = None, resume_window_s: float = 120.0,
                         progress: bool = False) -> FuzzReport:
    """A gateway on a temporary SQLite database in this process (rate limits off: the
    fuzzer opens thousands of connections from one address), fuzzed with ``frames``
    frames; the report adds ERROR/traceback records, RSS samples (after a warm-up of a
    tenth of the frames, and at the end) and whether a well-behaved client still works.
    The sessions the fuzz IDENTIFYs are kept for RESUME for ``resume_window_s`` after
    their socket closes: that memory is expected, and goes with the window."""
    from gateway.limits import UNLIMITED
    from gateway.seed import seed as seed_storage
    from gateway.server import Gateway
    from storage.schema import migrate
    from storage.settings import StorageSettings
    from storage.snowflake import SnowflakeGenerator
    from storage.sqlite import SqliteStorage

    with tempfile.TemporaryDirectory(prefix="greenroom-fuzz-", dir=directory) as tmp:
        settings = StorageSettings(sqlite_path=str(Path(tmp) / "greenroom.db"),
                                   sqlite_synchronous="OFF", flush_window_ms=0.5)
        migrate(settings)
        storage = SqliteStorage(settings)
        await storage.open()
        seeded = await seed_storage(storage, SnowflakeGenerator(worker=2))
        gateway = Gateway(storage, limits=UNLIMITED, resume_window_s=resume_window_s)
        collect = _Collect()
        root = logging.getLogger()
        root.addHandler(collect)
        report = FuzzReport()
        try:
            await gateway.start()
            host, port = gateway.host, gateway.port
            warm = max(1, frames // 10)
            await fuzz_gateway(host, port, seeded.token, seeded.guild_id, seed=seed,
                               frames=warm, concurrency=concurrency, report=report)
            report.rss_mib.append(rss_mib())
            marks = [frames * k // 4 for k in (1, 2, 3)]

            def on_progress(r: FuzzReport) -> None:
                if marks and r.frames >= marks[0]:
                    marks.pop(0)
                    r.rss_mib.append(rss_mib())
                    if progress:
                        print(f"  {r.frames:,} frames, {r.connections:,} connections, "
                              f"RSS {r.rss_mib[-1]:.1f} MiB", flush=True)

            await fuzz_gateway(host, port, seeded.token, seeded.guild_id, seed=seed + 1,
                               frames=frames, concurrency=concurrency, report=report,
                               on_progress=on_progress)
            await asyncio.sleep(0.2)  # closes in flight reach the server
            report.rss_mib.append(rss_mib())
            report.well_behaved_ok = await well_behaved(host, port, seeded.token)
        finally:
            root.removeHandler(collect)
            await gateway.stop()
            await storage.close()
        report.error_records = collect.records
        return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--resume-window", type=float, default=120.0,
                        help="seconds a closed session is kept for RESUME")
    args = parser.parse_args(argv)
    import uvloop

    report = uvloop.run(serve_and_fuzz(seed=args.seed, frames=args.frames,
                                       concurrency=args.concurrency,
                                       resume_window_s=args.resume_window, progress=True))
    print(f"fuzz frames tried      {report.frames:,} over {report.connections:,} "
          f"connections in {report.seconds:.1f} s")
    print(f"frames per format      {dict(sorted(report.formats.items()))}")
    print(f"closes                 {dict(sorted(report.closes.items(), key=str))}")
    print(f"unexpected closes      {report.unexpected_closes}")
    for code, last in report.unexpected[:10]:
        print(f"    {code}: after {last}")
    print(f"ERROR/traceback logs   {len(report.error_records)}")
    for record in report.error_records[:10]:
        print(f"    {record}")
    print(f"RSS                    {' -> '.join(f'{m:.1f}' for m in report.rss_mib)} MiB")
    print(f"well-behaved client    {'ok' if report.well_behaved_ok else 'FAILED'}")
    print(json.dumps({"fuzz_frames": report.frames, "unexpected_closes":
                      report.unexpected_closes, "error_records": len(report.error_records),
                      "rss_growth_mib": round(report.rss_growth_mib, 1),
                      "well_behaved": report.well_behaved_ok}))
    ok = not report.unexpected and not report.error_records and report.well_behaved_ok
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
