"""``make bench-abuse``: what a hostile client or a crash costs, in one run.

1. **Fuzz** (``loadtest.abuse_fuzz``): seeded mutated frames over real sockets in the
   three encodings (json, msgpack, json + zlib-stream) against a gateway; prints the
   frames tried and the closes that are not Discord/RFC codes allowed for what was sent
   (target 0), ERROR records (0) and RSS growth. Rate limits are off for this part
   (named in the output): the fuzzer opens thousands of connections from one address,
   which the per-address connection limit would refuse.
2. **Slow consumers** (``loadtest.abuse_slow``): clients that heartbeat but never read,
   a burst of 1,000 messages of ~2 KB: RSS growth per non-reading session against the
   configured per-connection bound + 64 KiB (target: below it).
3. **Loss audit** (``loadtest.abuse_loss``): ``greenroom run`` as ``make run`` starts
   it, concurrent REST posters, kill -9 of a node process and of the whole tree (and of
   Cassandra itself), restart, read back: acknowledged but lost (target 0) on SQLite and
   on a real Cassandra node.

    .venv/bin/python -m loadtest.bench_abuse                # about 4-6 minutes
    .venv/bin/python -m loadtest.bench_abuse --only fuzz    # (or slow, loss-sqlite, loss-cassandra)

Everything runs on loopback with bounded counts and times; ends with one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

import uvloop

PARTS = ("fuzz", "slow", "loss-sqlite", "loss-cassandra")


def progress(text: str) -> None:
    print(text, flush=True)


def fuzz(frames: int, seed: int) -> dict[str, Any]:
    from loadtest.abuse_fuzz import serve_and_fuzz

    progress(f"fuzz: {frames:,} frames, seed {seed} (rate limits off: one source address)")
    report = uvloop.run(serve_and_fuzz(seed=seed, frames=frames, progress=True))
    for code, last in report.unexpected[:10]:
        progress(f"  unexpected close {code} after {last}")
    for record in report.error_records[:10]:
        progress(f"  error record: {record}")
    return {"fuzz_frames": report.frames, "fuzz_connections": report.connections,
            "fuzz_unexpected_closes": report.unexpected_closes,
            "fuzz_error_records": len(report.error_records),
            "fuzz_rss_growth_mib": round(report.rss_growth_mib, 1),
            "fuzz_well_behaved_client_ok": report.well_behaved_ok,
            "fuzz_settings": "rate limits off"}


def slow(sessions: int, messages: int) -> dict[str, Any]:
    from loadtest.abuse_slow import measure_slow_consumers

    progress(f"slow consumers: {sessions} non-reading sessions, {messages} messages of ~2 KB")
    figures = asyncio.run(measure_slow_consumers(sessions, messages))
    bound = figures.high_water + 64 * 1024
    progress(f"  RSS growth per non-reading session {figures.growth_per_session:,} B "
             f"(bound {figures.high_water:,} B + 64 KiB = {bound:,} B); "
             f"{figures.disconnected}/{sessions} disconnected; "
             f"reader complete: {figures.reader_complete}")
    return {"slow_rss_growth_per_session_bytes": figures.growth_per_session,
            "slow_bound_bytes": bound,
            "slow_within_bound": figures.growth_per_session <= bound,
            "slow_disconnected": figures.disconnected, "slow_sessions": sessions,
            "slow_kernel_queue_peak_bytes": figures.kernel_queue_peak,
            "slow_reader_complete": figures.reader_complete}


def loss(backend: str, repeat: int) -> dict[str, Any]:
    from loadtest.abuse_loss import audit

    progress(f"loss audit on {backend}: kill -9 of a node, the tree"
             f"{' and Cassandra' if backend == 'scylla' else ''}, x{repeat}")
    result = audit(backend, repeat=repeat, messages=1500, duration_s=30.0)
    name = "sqlite" if backend == "sqlite" else "cassandra"
    progress(f"  {name}: acked {result['acked']}, found {result['found']}, "
             f"lost {result['lost']}")
    return {f"{name}_acked": result["acked"], f"{name}_acked_lost": result["lost"],
            f"{name}_faults": [t.get("fault") for t in result["trials"]]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.bench_abuse",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=PARTS, action="append",
                        help="run only this part (repeatable)")
    parser.add_argument("--frames", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=1, help="loss trials per fault")
    args = parser.parse_args(argv)
    if not 1 <= args.frames <= 200_000 or not 1 <= args.sessions <= 200 \
            or not 1 <= args.messages <= 10_000 or not 1 <= args.repeat <= 5:
        parser.error("--frames 1..200000, --sessions 1..200, --messages 1..10000, "
                     "--repeat 1..5")
    parts = args.only or list(PARTS)
    runs = {"fuzz": lambda: fuzz(args.frames, args.seed),
            "slow": lambda: slow(args.sessions, args.messages),
            "loss-sqlite": lambda: loss("sqlite", args.repeat),
            "loss-cassandra": lambda: loss("scylla", args.repeat)}
    line: dict[str, Any] = {}
    failed: list[str] = []
    try:
        for part in PARTS:
            if part not in parts:
                continue
            try:  # one part failing still leaves the others' figures in the line
                figures = runs[part]()
            except Exception as exc:
                failed.append(part)
                figures = {f"{part}_error": f"{type(exc).__name__}: {exc}"}
            progress(f"  {json.dumps(figures)}")
            line.update(figures)
    finally:
        if "loss-cassandra" in parts:
            from tests.services.cassandra import skip_driver_exit_wait

            skip_driver_exit_wait()
    ok = (not failed
          and line.get("fuzz_unexpected_closes", 0) == 0 and line.get("fuzz_error_records", 0) == 0
          and line.get("slow_within_bound", True)
          and line.get("sqlite_acked_lost", 0) == 0 and line.get("cassandra_acked_lost", 0) == 0)
    line["ok"] = ok
    print(json.dumps(line), flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
