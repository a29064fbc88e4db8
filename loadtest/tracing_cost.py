"""What tracing costs the node, as shipped and when exported: the bench-gateway section
``make bench-gateway ARGS="--only tracing"`` (~3 min).

One seeded database (the ``make run`` bot, guild and channel, ``--members`` users in the
guild), then one ``greenroom run`` per configuration; only the node's environment differs
(every ``OTEL_*`` variable and ``GREENROOM_TRACE_FILE`` of the calling shell removed
first, so the three are comparable):

- ``default``: no tracing variable, exactly what ``make run`` ships;
- ``sdk_disabled``: ``OTEL_SDK_DISABLED=true`` (the reference: no telemetry at all);
- ``exporting``: ``OTEL_EXPORTER_OTLP_ENDPOINT`` at a local OTLP/HTTP collector
  (``loadtest/otlp_sink.py``, on this process's loop: it accepts ``/v1/traces`` and
  ``/v1/metrics`` and counts bytes and spans) with the default sampler (greenroom's
  fan-out sampler: a 1,000-member guild keeps 1 % of its messages, whole).

Each: every member online (IDENTIFY, op 14), a warm-up, then the bot posts
``--tracing-rate`` messages/s for ``--tracing-duration`` s over REST, and the node's CPU
(``/proc/<pid>/stat``, from the step's start to ``SETTLE_S`` after its last delivery, so
the span exporter's batches, sent every 5 s, are inside) is divided by the deliveries.
With ``rising=True`` the default configuration also runs the rising-rate procedure
(``gateway_load.rising_rates``): ``max_deliveries_per_s`` and ``p99_ms`` as shipped.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from loadtest.gateway_load import (
    RestSender,
    print_step,
    rising_rates,
    run_gateway_step,
    seed_users,
    start_gateway_server,
    start_gateway_workers,
    stop_gateway_server,
    summarize,
    tracing_env,
)
from loadtest.otlp_sink import OtlpSink
from loadtest.ws_baseline.load import cpu_seconds, stop_workers, wait_for_quiet_host

#: the order the configurations run in (the reference first)
CONFIGS = ("sdk_disabled", "default", "exporting")
TARGETS = {"default_vs_sdk_disabled": 1.10, "exporting_vs_sdk_disabled": 1.30}
#: after the last delivery, how long the node's CPU still counts (the span exporter's
#: schedule delay is 5 s: the batches of the step are sent and paid for by then)
SETTLE_S = 5.5


async def measure(config: str, seeded, args: argparse.Namespace, sink: OtlpSink,
                  directory: str, rising: bool, deadline: float) -> dict:
    server = start_gateway_server(seeded.db, Path(directory) / f"server-{config}.log",
                                  env_overrides=tracing_env(config, sink.url))
    workers = sender = None
    try:
        workers, _, _, failed = await start_gateway_workers(
            server.gateway_url, seeded.tokens, args.members, args.processes,
            args.identify_budget)
        sender = RestSender(server.rest_url, seeded.bot_token, seeded.channel_id,
                            args.content_size)
        await sender.open()
        await asyncio.sleep(1.0)
        # warm-up: the guild's plan, the channel's caches, the exporter's first batch
        warm = await run_gateway_step(sender, workers, server.pid, 0, args.tracing_rate,
                                      2.0, args.drain, args.max_p99_ms)
        await asyncio.sleep(SETTLE_S)
        quiet = await wait_for_quiet_host(args.wait_quiet)
        spans0, bytes0 = sink.spans, sum(sink.bytes.values())
        traced0 = sink.names.get("rest.post_message", 0)
        cpu0 = cpu_seconds(server.pid)
        step = await run_gateway_step(sender, workers, server.pid, 1, args.tracing_rate,
                                      args.tracing_duration, args.drain, args.max_p99_ms)
        await asyncio.sleep(SETTLE_S)
        cpu = cpu_seconds(server.pid) - cpu0
        print_step(step)
        result = {
            "members_online": workers.connected, "identify_failed": failed,
            "sent": step.sent, "delivered": step.delivered, "expected": step.expected,
            "warmup_lost": warm.expected - warm.delivered,
            "node_cpu_s": round(cpu, 3),
            "cpu_us_per_delivery": round(cpu / step.delivered * 1e6, 2)
            if step.delivered else None,
            "p50_ms": step.p50_ms, "p99_ms": step.p99_ms,
            "other_cpu": round(step.other_cpu, 2), "host_busy_before": round(quiet, 2),
            "spans_exported": sink.spans - spans0,
            "traced_messages": sink.names.get("rest.post_message", 0) - traced0,
            "otlp_bytes": sum(sink.bytes.values()) - bytes0,
        }
        print(f"  {config}: {result['cpu_us_per_delivery']} us node CPU per delivery"
              f" ({step.delivered:,} deliveries, {cpu:.2f} s CPU; spans exported"
              f" {result['spans_exported']:,} of {result['traced_messages']} messages, other work {step.other_cpu:.0%})", flush=True)
        if rising:
            print(f"  {config}: rising rates", flush=True)

            async def rate_step(n: int, rate: float):
                return await run_gateway_step(sender, workers, server.pid, n + 2, rate,
                                              args.duration, args.drain, args.max_p99_ms)

            steps = await rising_rates(rate_step, args.rates, args.wait_quiet, deadline)
            summary = summarize(steps)
            result.update(max_deliveries_per_s=summary["max_deliveries_per_s"],
                          max_rate_msgs_per_s=summary["max_rate_msgs_per_s"],
                          rising_p50_ms=summary["p50_ms"], rising_p99_ms=summary["p99_ms"],
                          steps=summary["steps"])
        return result
    finally:
        if sender is not None:
            await sender.close()
        if workers is not None:
            await stop_workers(workers, stop_timeout=20.0)
        stop_gateway_server(server)


async def run_tracing(args: argparse.Namespace, rising: bool = True) -> dict:
    """The section's figures (one dict; ``figures`` holds the JSON line's keys)."""
    started = time.monotonic()
    deadline = started + args.budget
    directory = tempfile.mkdtemp(prefix="greenroom-tracing-")
    print(f"tracing cost: seeding {args.members:,} members in {directory}", flush=True)
    seeded = await seed_users(directory, args.members, args.members)
    sink = OtlpSink()
    await sink.start()
    runs: dict[str, dict] = {}
    try:
        for config in CONFIGS:
            print(f"tracing cost: {config}, {args.tracing_rate:g} msg/s for "
                  f"{args.tracing_duration:g} s to {args.members:,} members", flush=True)
            runs[config] = await measure(config, seeded, args, sink, directory,
                                         rising and config == "default", deadline)
    finally:
        await sink.stop()
    cpu = {c: runs[c]["cpu_us_per_delivery"] for c in CONFIGS}
    ref = cpu["sdk_disabled"]

    def ratio(config: str) -> float | None:
        return round(cpu[config] / ref, 3) if ref and cpu[config] else None

    figures = {
        "members_online": runs["default"]["members_online"],
        "rate_msgs_per_s": args.tracing_rate,
        "duration_s": args.tracing_duration,
        "cpu_us_per_delivery_default": cpu["default"],
        "cpu_us_per_delivery_sdk_disabled": cpu["sdk_disabled"],
        "cpu_us_per_delivery_exporting": cpu["exporting"],
        "ratio_default_vs_sdk_disabled": ratio("default"),
        "ratio_exporting_vs_sdk_disabled": ratio("exporting"),
        "p99_ms_at_rate": {c: runs[c]["p99_ms"] for c in CONFIGS},
        "collector": "loadtest/otlp_sink.py (local OTLP/HTTP sink)",
        "sampler": "greenroom_fanout (default)",
        "spans_exported": runs["exporting"]["spans_exported"],
        "traced_messages": runs["exporting"]["traced_messages"],
        "otlp_bytes": runs["exporting"]["otlp_bytes"],
        "other_cpu": {c: runs[c]["other_cpu"] for c in CONFIGS},
    }
    if rising:
        figures["max_deliveries_per_s"] = runs["default"].get("max_deliveries_per_s")
        figures["p99_ms"] = runs["default"].get("rising_p99_ms")
    figures["targets_met"] = {
        "default_vs_sdk_disabled": figures["ratio_default_vs_sdk_disabled"] is not None
        and figures["ratio_default_vs_sdk_disabled"] <= TARGETS["default_vs_sdk_disabled"],
        "exporting_vs_sdk_disabled": figures["ratio_exporting_vs_sdk_disabled"] is not None
        and figures["ratio_exporting_vs_sdk_disabled"]
        <= TARGETS["exporting_vs_sdk_disabled"],
    }
    return {"figures": figures, "runs": runs,
            "seconds": round(time.monotonic() - started, 1)}


def add_tracing_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tracing-rate", type=float, default=20.0,
                        help="messages/s of the tracing-cost section")
    # 30 s: at 1 % (a 1,000-member guild) ~6 messages traced whole in the exporting
    # run, so the figure includes the cost of what is kept, not only of deciding
    parser.add_argument("--tracing-duration", type=float, default=30.0,
                        help="seconds measured per configuration")
