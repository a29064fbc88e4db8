"""``make bench-abuse``: what a hostile client or a crash costs, in one run.

1. **Fuzz** (``loadtest.abuse_fuzz``): seeded mutated frames over real sockets in
   every wire format (json and msgpack, each plain, zlib-stream and zstd-stream) against
   a gateway; prints the frames tried (per format) and the closes that are not
   Discord/RFC codes allowed for what was sent (target 0), ERROR records (0) and RSS
   growth. Rate limits are off for this part
   (named in the output): the fuzzer opens thousands of connections from one address,
   which the per-address connection limit would refuse.
2. **Slow consumers** (``loadtest.abuse_slow``): clients that heartbeat but never read,
   a burst of 1,000 messages of ~2 KB: RSS growth per non-reading session against the
   configured per-connection bound + 64 KiB (target: below it).
3. **Loss audit** (``loadtest.abuse_loss``): ``greenroom run``, concurrent REST
   posters, kill -9 of a node process and of the whole tree (and of Cassandra itself),
   restart, read back: acknowledged but lost (target 0) on SQLite and on a real
   Cassandra node; first with ``--no-rate-limits`` (many posts a second), then as
   ``make run`` ships it (rate limits on: few posts), each figure named by its setting.

    .venv/bin/python -m loadtest.bench_abuse                # about 4-6 minutes
    .venv/bin/python -m loadtest.bench_abuse --only fuzz    # (or slow, loss-sqlite, loss-cassandra)

Everything runs on loopback with bounded counts and times; ends with one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
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
            "fuzz_frames_per_format": dict(sorted(report.formats.items())),
            "fuzz_unexpected_closes": report.unexpected_closes,
            "fuzz_error_records": len(report.error_records),
            "fuzz_rss_growth_mib": round(report.rss_growth_mib, 1),
            "fuzz_well_behaved_client_ok": report.well_behaved_ok,
            "fuzz_settings": "rate limits off"}


def slow(sessions: int, messages: int) -> dict[str, Any]:
    from gateway.outbound import WriteLimits
    from loadtest.abuse_slow import measure_slow_consumers

    # Both runs post with REST rate limits off (1,000 posts from one bot). The first
    # waits 1 s + 1 s before it disconnects a stuck client (a quicker bench); the second
    # runs the shipped WriteLimits (10 s + 5 s): the bound is the same high-water mark.
    runs = (("slow", "rate limits off; stall 1 s, close grace 1 s",
             WriteLimits(stall_timeout_s=1.0, close_grace_s=1.0)),
            ("slow_default", "rate limits off; WriteLimits as shipped", WriteLimits()))
    out: dict[str, Any] = {}
    for key, setting, limits in runs:
        progress(f"slow consumers ({setting}): {sessions} non-reading sessions, "
                 f"{messages} messages of ~2 KB")
        figures = asyncio.run(measure_slow_consumers(sessions, messages, limits=limits))
        bound = figures.high_water + 64 * 1024
        progress(f"  RSS growth per non-reading session {figures.growth_per_session:,} B "
                 f"(bound {figures.high_water:,} B + 64 KiB = {bound:,} B); "
                 f"{figures.disconnected}/{sessions} disconnected; "
                 f"reader complete: {figures.reader_complete}")
        out.update({f"{key}_rss_growth_per_session_bytes": figures.growth_per_session,
                    f"{key}_bound_bytes": bound,
                    f"{key}_within_bound": figures.growth_per_session <= bound,
                    f"{key}_disconnected": figures.disconnected, f"{key}_sessions": sessions,
                    f"{key}_kernel_queue_peak_bytes": figures.kernel_queue_peak,
                    f"{key}_reader_complete": figures.reader_complete,
                    f"{key}_settings": setting})
    return out


def loss(backend: str, repeat: int) -> dict[str, Any]:
    from loadtest.abuse_loss import audit, cassandra_node

    name = "sqlite" if backend == "sqlite" else "cassandra"
    faults = ("node", "tree", "db") if backend == "scylla" else ("node", "tree")
    figures: dict[str, Any] = {}
    with contextlib.ExitStack() as stack:
        node = stack.enter_context(cassandra_node()) if backend == "scylla" else None
        # --no-rate-limits: many posts a second from one bot (the default allows 5 per
        # 5 s per channel); then the same faults as make run ships it, fewer posts
        for key, limited, sizes in (
                (f"{name}", False, {"messages": 1500, "duration_s": 30.0}),
                (f"{name}_default", True, {"messages": 200, "duration_s": 60.0,
                                           "kill_after": 10, "acks_after": 5})):
            setting = "rate limits on (as make run)" if limited else "--no-rate-limits"
            progress(f"loss audit on {backend}, {setting}: kill -9 of "
                     f"{', '.join(faults)}, x{repeat}")
            result = audit(backend, faults, repeat=repeat, cassandra=node,
                           rate_limits=limited, **sizes)
            progress(f"  {key}: acked {result['acked']}, found {result['found']}, "
                     f"lost {result['lost']}")
            figures.update({f"{key}_acked": result["acked"],
                            f"{key}_acked_lost": result["lost"],
                            f"{key}_settings": setting})
    figures[f"{name}_faults"] = list(faults)
    return figures


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
          and all(v for k, v in line.items() if k.endswith("_within_bound"))
          and all(v == 0 for k, v in line.items() if k.endswith("_acked_lost")))
    line["ok"] = ok
    print(json.dumps(line), flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
