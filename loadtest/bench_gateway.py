"""``make bench-gateway``: the gateway's figures on this machine, in one bounded run.

1. 10,000 identified idle sessions (``--sessions``): identifies/s and server RSS per
   session (the node process's RSS delta over the sessions it holds);
2. a guild of 1,000 online members (``--members``), one channel, one bot posting over
   REST at rising rates: the highest deliveries/s with everything delivered and p99
   send-to-deliver <= 50 ms, with p50/p99 there;
3. the bare picows broadcast server (``loadtest/ws_baseline``), same receivers, same
   rates, frames of the gateway's MESSAGE_CREATE size;
4. tracing's cost (``loadtest/tracing_cost.py``): the same 1,000 members at a fixed rate,
   node CPU per delivery with no tracing variable (``make run``), with
   ``OTEL_SDK_DISABLED=true`` and exporting over OTLP/HTTP to a local collector;
5. and 6. parts 1-3 again with every client on zlib-stream, then zstd-stream, as
   discord.py and hikari connect (each client inflates every frame), against the
   baseline compressing each receiver's stream with the gateway's own compressor and
   settings; the idle sessions' RSS is read after they idle ``COMPRESSED_IDLE_S``
   (an idle zlib-stream rests: ``gateway/protocol/compression.py``).

The server runs as ``make run`` configures it: no tracing variable is set for it. Where
the machine has the CPUs, the server and the load generator run on CPUs of their own,
as real clients are on other machines (``loadtest/placement.py``; ``--placement shared``:
neither pinned); each JSON line names the placement and whether a maximum was the load
generator's (``client_bound``).
Ends with one JSON line per part. Everything is ``loadtest/gateway_load.py``; this only
picks the bench's settings (any of its flags may be given, e.g. ``--mix bots=1,users=1``:
``make bench-gateway ARGS="--mix bots=1,users=1"``) and the JSON keys; each line names
the sessions' ``mix`` (default ``users=1``: user sessions that send op 14). Part 4
(tracing) runs user sessions whatever the mix.

    .venv/bin/python loadtest/bench_gateway.py                  # < 9 min
    .venv/bin/python loadtest/bench_gateway.py --only tracing   # part 4 alone, ~3 min
    .venv/bin/python loadtest/bench_gateway.py --only zlib      # part 5 alone, ~6 min
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from loadtest.gateway_load import (  # noqa: E402
    add_arguments,
    check_bounds,
    print_summary,
    run,
    write_outputs,
)
from loadtest.tracing_cost import add_tracing_arguments, run_tracing  # noqa: E402

TARGETS = {"rss_bytes_per_session": 16 * 1024, "ratio": 0.8, "p99_ms": 50.0,
           "identify_per_s": 1000, "p50_ms_at_10_minus_baseline": 5.0}
#: seconds the compressed parts' idle sessions idle before their RSS is read: a few
#: rest sweeps (``GatewayConfig.compression_rest_s``) and a settled heap
COMPRESSED_IDLE_S = 5.0
COMPRESSIONS = {"zlib": "zlib-stream", "zstd": "zstd-stream"}


#: What the server runs with besides make run's configuration, named in every JSON line:
#: one bot sends up to ~100 msg/s to one channel and 10,000 sessions IDENTIFY with one
#: token, which the shipped limits (5 posts per 5 s per channel, the IDENTIFY budget)
#: would refuse, so there is no figure of these loads as shipped to print beside them.
SETTINGS = "--no-rate-limits (REST and IDENTIFY limits off); otherwise as make run"


def settings(result: dict) -> str:
    """``SETTINGS``, naming this shell's tracing variables the server ran without."""
    removed = result.get("server_env_removed")
    return SETTINGS + (f"; server without this shell's {', '.join(removed)}" if removed
                       else "")

def main() -> None:
    import uvloop

    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    add_tracing_arguments(parser)
    parser.add_argument("--only", choices=["tracing", "plain", *COMPRESSIONS],
                        help="run one part alone (tracing: part 4, ~3 min; plain: parts "
                             "1-3; zlib, zstd: part 5 or 6, ~6 min each)")
    parser.set_defaults(sessions=10_000, members=1000, budget=300.0, identify_budget=110.0,
                        out=str(ROOT / "loadtest" / "results" / "bench_gateway"))
    args = parser.parse_args()
    check_bounds(parser, args)
    if args.only == "tracing":
        args.budget = min(args.budget, 240.0)
        tracing = uvloop.run(run_tracing(args, rising=True))
        print_tracing(tracing, args.out)
        return
    if args.only in COMPRESSIONS:
        run_compressed(args, args.only)
        return
    result = uvloop.run(run(args))
    print_summary(result)
    write_outputs(result, args.out, args.max_p99_ms)
    if "gateway" not in result:  # --identify-only
        print(json.dumps({"bench": "gateway-identify", "settings": settings(result),
                          "mix": result["mix"], "sessions": result["sessions"],
                          "rss_bytes_per_session": result["rss_bytes_per_session"],
                          "identify_per_s": result["identify_per_s"],
                          "server_cpu_ms_per_identify": result["server_cpu_ms_per_identify"],
                          "client_cpu_ms_per_identify": result["client_cpu_ms_per_identify"],
                          "identify_per_s_1000_member_guild":
                              result["identify_per_s_big_guild"],
                          "seconds": result["seconds"]}, separators=(",", ":")), flush=True)
        return
    g, b = result["gateway"], result.get("baseline", {})
    base = b.get("max_deliveries_per_s") or 0
    ratio = round(g["max_deliveries_per_s"] / base, 3) if base else None
    p50_gap = p50_at_first_rate_gap(g, b)
    line = {
        "bench": "gateway",
        "settings": settings(result),
        "mix": result["mix"],
        "sessions": result["sessions"],
        "rss_bytes_per_session": result["rss_bytes_per_session"],
        "identify_per_s": result["identify_per_s"],
        "identify_per_s_1000_member_guild": result["identify_per_s_big_guild"],
        "server_cpu_ms_per_identify": result["server_cpu_ms_per_identify"],
        "client_cpu_ms_per_identify": result["client_cpu_ms_per_identify"],
        "members_online": g["clients"],
        "members_receiving": g["receivers"],
        "max_deliveries_per_s": g["max_deliveries_per_s"],
        "max_rate_msgs_per_s": g["max_rate_msgs_per_s"],
        "p50_ms": g["p50_ms"],
        "p99_ms": g["p99_ms"],
        "baseline_max_deliveries_per_s": base,
        "baseline_p50_ms": b.get("p50_ms"),
        "baseline_p99_ms": b.get("p99_ms"),
        "ratio": ratio,
        # where the server and the load generator ran, and whether a maximum was the load
        # generator's (loadtest/placement.py, gateway_load.client_bound)
        "placement": result["placement"],
        "client_bound": {"gateway": g["client_bound"], "baseline": b.get("client_bound")},
        "p50_ms_at_10": first_step(g).get("p50_ms"),
        "baseline_p50_ms_at_10": first_step(b).get("p50_ms"),
        "p50_ms_at_10_minus_baseline": p50_gap,
        "dispatch_frame_bytes": g["dispatch_frame_bytes"],
        # where the p50 goes at 10 msg/s: per stage (gateway/stages.py), interpolated
        "stage_p50_ms_at_10": first_step(g).get("stage_p50_ms"),
        # where the tail comes from: p99 per stage (gateway/stages.py) at the top rate
        # that held, and at the first rate that did not
        "stage_p99_ms_at_max": step_at(g, g["max_rate_msgs_per_s"]).get("stage_p99_ms"),
        "stage_p99_ms_past_max": step_after(g, g["max_rate_msgs_per_s"]).get("stage_p99_ms"),
        # and the node's GC collections in those two steps (count, ms in all, longest)
        # and its loop's stalls (probes over 10 ms late, the latest)
        "gc_at_max": step_at(g, g["max_rate_msgs_per_s"]).get("gc"),
        "gc_past_max": step_after(g, g["max_rate_msgs_per_s"]).get("gc"),
        "loop_stalls_at_max": step_at(g, g["max_rate_msgs_per_s"]).get("loop_stalls"),
        "loop_stalls_past_max": step_after(g, g["max_rate_msgs_per_s"]).get("loop_stalls"),
        "targets_met": {
            "p50_ms_at_10_minus_baseline": p50_gap is not None
            and p50_gap <= TARGETS["p50_ms_at_10_minus_baseline"],
            "rss_bytes_per_session": (result["rss_bytes_per_session"] or 1 << 40)
            <= TARGETS["rss_bytes_per_session"],
            "ratio": ratio is not None and ratio >= TARGETS["ratio"],
            "p99_ms": g["p99_ms"] is not None and g["p99_ms"] <= TARGETS["p99_ms"],
            "identify_per_s": result["identify_per_s"] >= TARGETS["identify_per_s"],
        },
        "seconds": result["seconds"],
    }
    print(json.dumps(line, separators=(",", ":")), flush=True)
    if args.only == "plain":
        return
    if not args.identify_only:
        # part 4; max_deliveries_per_s and p99_ms as shipped are part 2's (same server
        # configuration), so no second rising-rate run here
        budget = args.budget
        args.budget = 240.0
        tracing = uvloop.run(run_tracing(args, rising=False))
        tracing["figures"].update(max_deliveries_per_s=g["max_deliveries_per_s"],
                                  p99_ms=g["p99_ms"])
        print_tracing(tracing, args.out)
        args.budget = budget
        for name in COMPRESSIONS:  # parts 5 and 6
            run_compressed(args, name)


def step_at(summary: dict, rate: float) -> dict:
    """The step at ``rate``, or {}."""
    return next((s for s in summary.get("steps") or [] if s["rate"] == rate), {})


def step_after(summary: dict, rate: float) -> dict:
    """The first step above ``rate`` (where the bound broke), or {}."""
    return next((s for s in summary.get("steps") or [] if s["rate"] > rate), {})


def first_step(summary: dict) -> dict:
    """The lowest rate's step (10 msg/s with the bench's rates), or {}."""
    steps = summary.get("steps") or []
    return steps[0] if steps else {}


def p50_at_first_rate_gap(gateway: dict, baseline: dict) -> float | None:
    """p50 send->deliver at the lowest rate, gateway minus baseline (ms): what the send
    path (REST, the durable write, fan-out) adds to a bare broadcast."""
    g, b = first_step(gateway), first_step(baseline)
    if g.get("p50_ms") is None or b.get("p50_ms") is None or g.get("rate") != b.get("rate"):
        return None
    return round(g["p50_ms"] - b["p50_ms"], 2)


def run_compressed(args: argparse.Namespace, name: str) -> None:
    """Parts 5/6: parts 1-3 with every client on ``name``'s transport compression; one
    JSON line whose keys carry the ``name`` prefix (``zlib_max_deliveries_per_s``...)."""
    import uvloop

    compressed = argparse.Namespace(**vars(args))
    compressed.compress = COMPRESSIONS[name]
    compressed.idle_wait = max(args.idle_wait, COMPRESSED_IDLE_S)
    compressed.out = args.out + f"_{name}"
    result = uvloop.run(run(compressed))
    print_summary(result)
    g, b = result.get("gateway", {}), result.get("baseline", {})
    base = b.get("max_deliveries_per_s") or 0
    ratio = round(g["max_deliveries_per_s"] / base, 3) if base and g else None
    rss = result["rss_bytes_per_session"]
    line = {
        "bench": f"gateway-{name}",
        "settings": settings(result),
        "compress": compressed.compress,
        "mix": result["mix"],
        "sessions": result["sessions"],
        f"rss_bytes_per_session_{name}": rss,
        f"identify_per_s_{name}": result["identify_per_s"],
        "members_online": g.get("clients"),
        "members_receiving": g.get("receivers"),
        f"{name}_max_deliveries_per_s": g.get("max_deliveries_per_s"),
        f"{name}_p50_ms": g.get("p50_ms"),
        f"{name}_p99_ms": g.get("p99_ms"),
        f"baseline_{name}_max_deliveries_per_s": base,
        f"baseline_{name}_p99_ms": b.get("p99_ms"),
        f"{name}_ratio": ratio,
        "placement": result["placement"],
        "client_bound": {"gateway": g.get("client_bound"), "baseline": b.get("client_bound")},
        f"{name}_p50_ms_at_10_minus_baseline": p50_at_first_rate_gap(g, b),
        "targets_met": {
            f"rss_bytes_per_session_{name}": (rss or 1 << 40)
            <= TARGETS["rss_bytes_per_session"],
            f"{name}_ratio": ratio is not None and ratio >= TARGETS["ratio"],
        },
        "seconds": result["seconds"],
    }
    print(json.dumps(line, separators=(",", ":")), flush=True)


def print_tracing(tracing: dict, out: str) -> None:
    """The tracing part's JSON line, and its details next to the bench's results."""
    path = Path(out).with_name(Path(out).name + "_tracing.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(tracing, indent=2))
    line = {"bench": "gateway-tracing", "settings": SETTINGS, **tracing["figures"],
            "seconds": tracing["seconds"]}
    print(json.dumps(line, separators=(",", ":")), flush=True)


if __name__ == "__main__":
    main()
