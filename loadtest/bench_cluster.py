"""``make bench-cluster``: what scale-out costs and how fast a cluster heals, in one run.

1. ``cost_ratio_two_nodes``: the guild of ``--members`` online members, one bot posting
   ``--rate`` messages/s over REST for ``--duration`` s; CPU seconds of every node
   process per delivery with 2 node processes (the members' sockets spread over both by
   SO_REUSEPORT, the guild on one of them) divided by the same with 1 node, same load.
2. ``cross_node_envelopes_per_s``: envelopes/s streamed between two node processes over
   the data plane (``bench_runtime``'s stream, median of ``--streams``).
3. ``failover_s``: 2 nodes, every member a client that RESUMEs when its socket drops;
   SIGKILL of the node that owns the guild until (a) a message posted after the kill is
   acknowledged and delivered to every member and (b) every client of the killed node
   has RESUMEd. It also checks nothing was missed: every message acknowledged before,
   during and after the failover reached every member.

Everything runs on loopback with bounded counts and timeouts; ends with one JSON line.

    .venv/bin/python loadtest/bench_cluster.py          # about 2 min
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from cluster.launcher import free_port  # noqa: E402
from loadtest.gateway_load import (  # noqa: E402
    RestSender,
    Server,
    raise_fd_limit,
    seed_users,
    start_gateway_server,
    start_gateway_workers,
    stop_gateway_server,
)
from loadtest.ws_baseline.load import (  # noqa: E402
    BUCKET_US,
    Workers,
    call,
    cpu_seconds,
    stop_workers,
    wait_for_quiet_host,
)

TARGETS = {"cost_ratio_two_nodes": 1.25, "failover_s": 2.0}


def progress(text: str) -> None:
    print(text, flush=True)


def sockets_per_process(pids: dict[str, int], port: int) -> dict[str, int]:
    """Established TCP connections on local ``port`` held by each process (from /proc):
    how SO_REUSEPORT spread the clients."""
    established: set[int] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "01" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                established.add(int(fields[9]))
    counts = {}
    for name, pid in pids.items():
        n = 0
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                try:
                    target = os.readlink(f"/proc/{pid}/fd/{fd}")
                except OSError:
                    continue
                if target.startswith("socket:[") and int(target[8:-1]) in established:
                    n += 1
        except OSError:
            pass
        counts[name] = n
    return counts


async def delivered(workers: Workers, step: int) -> int:
    total = 0
    for pipe in workers.pipes:
        total += await call(pipe, ("count", step))
    return total


async def slowest_ms(workers: Workers, step: int) -> float:
    """The slowest send-to-deliver latency of ``step`` (and forget its histogram)."""
    worst = 0
    for pipe in workers.pipes:
        _, histogram = await call(pipe, ("report", step))
        if histogram:
            worst = max(worst, max(histogram))
    return (worst + 1) * BUCKET_US / 1000


async def begin(workers: Workers, step: int) -> None:
    for pipe in workers.pipes:
        await call(pipe, ("begin", step))


async def wait_delivered(workers: Workers, step: int, expected: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while True:
        got = await delivered(workers, step)
        if got >= expected or time.monotonic() >= deadline:
            return got
        await asyncio.sleep(0.05)


async def start(seeded, nodes: int, args: argparse.Namespace, directory: str,
                resume: bool = False) -> tuple[Server, Workers, RestSender, int]:
    port, rest_port = free_port(), free_port()
    server = start_gateway_server(seeded.db, Path(directory) / f"server-{nodes}.log",
                                  nodes=nodes, port=port, rest_port=rest_port)
    workers, rate, _, failed = await start_gateway_workers(
        server.gateway_url, seeded.tokens, args.members, args.processes, 120.0, resume)
    if failed or workers.connected < args.members:
        await stop_workers(workers)
        stop_gateway_server(server)
        raise RuntimeError(f"{failed} of {args.members} members failed to identify")
    # a post answered 503 or cut by a dying node is retried: it was not acknowledged
    sender = RestSender(server.rest_url, seeded.bot_token, seeded.channel_id,
                        args.content_size, retry_s=args.retry)
    await sender.open()
    spread = sockets_per_process(server.node_pids, port)
    progress(f"  {nodes} node(s) {server.node_pids}: {workers.connected:,} members identified"
             f" at {rate:,.0f}/s; sockets per node {spread}")
    return server, workers, sender, port


async def stop(server: Server, workers: Workers, sender: RestSender) -> None:
    await sender.close()
    await stop_workers(workers, stop_timeout=20.0)
    stop_gateway_server(server)


async def cost(seeded, nodes: int, args: argparse.Namespace, directory: str) -> dict:
    """CPU seconds of all node processes per delivery at a fixed load."""
    server, workers, sender, port = await start(seeded, nodes, args, directory)
    try:
        await begin(workers, 0)  # warm-up: caches, guild activation, JIT-free but GC
        await sender.send_step(0, args.rate, 1.0, args.drain)
        await wait_delivered(workers, 0, sender.acknowledged.get(0, 0) * workers.connected,
                             args.drain)
        await wait_for_quiet_host(args.wait_quiet, busy_below=0.3)
        rounds = []
        for step in range(1, args.rounds + 1):
            await begin(workers, step)
            cpu0 = {n: cpu_seconds(pid) for n, pid in server.node_pids.items()}
            _, seconds = await sender.send_step(step, args.rate, args.duration, args.drain)
            expected = sender.acknowledged.get(step, 0) * workers.connected
            got = await wait_delivered(workers, step, expected, args.drain)
            cpu = {n: cpu_seconds(pid) - cpu0[n] for n, pid in server.node_pids.items()}
            per = sum(cpu.values()) / max(got, 1) * 1e6
            rounds.append(per)
            progress(f"  {nodes} node(s) round {step}: {got:,}/{expected:,} delivered in "
                     f"{seconds:.1f} s; node CPU {sum(cpu.values()):.2f} s "
                     f"({', '.join(f'{n} {c:.2f}' for n, c in cpu.items())}) = "
                     f"{per:.2f} us/delivery")
            if got < expected:
                raise RuntimeError(f"{nodes} node(s): {expected - got} deliveries missing")
        return {"cpu_us_per_delivery": round(statistics.median(rounds), 3),
                "rounds_us": [round(r, 3) for r in rounds],
                "sockets_per_node": sockets_per_process(server.node_pids, port)}
    finally:
        await stop(server, workers, sender)


def guild_owner(guild_id: int, nodes: list[str]) -> str:
    from cluster.placement import owner

    return owner(nodes, guild_id)


async def failover(seeded, args: argparse.Namespace, directory: str) -> dict:
    server, workers, sender, port = await start(seeded, 2, args, directory, resume=True)
    try:
        owner = guild_owner(seeded.guild_id, sorted(server.node_pids))
        spread = sockets_per_process(server.node_pids, port)
        on_victim = spread[owner]
        members = workers.connected
        # before: everything acknowledged reaches everyone
        await begin(workers, 0)
        await sender.send_step(0, 20, 1.0, args.drain)
        expected_before = sender.acknowledged.get(0, 0) * members  # only acknowledged posts
        before = await wait_delivered(workers, 0, expected_before, args.drain)
        progress(f"failover: guild {seeded.guild_id} on {owner} "
                 f"(pid {server.node_pids[owner]}, {on_victim} of {members} sockets); "
                 f"before the kill {before:,}/{expected_before:,} delivered")
        # the kill, then one probe every ``--probe-every`` s, each its own step
        probes: list[tuple[int, int]] = []  # (step, sent ns) of acknowledged probes
        killed_ns = time.monotonic_ns()
        os.kill(server.node_pids[owner], signal.SIGKILL)
        step = 1
        deadline = time.monotonic() + args.failover_budget
        serving_ns = resumed_ns = None
        while time.monotonic() < deadline and step < 120:
            await begin(workers, step)
            sent_ns = time.monotonic_ns()
            # no retry: the next probe is the retry (each one its own step), and only an
            # acknowledged probe must reach everyone
            if await sender.post(step, 0, retry_s=0.0):
                probes.append((step, sent_ns))
            if serving_ns is None and probes:
                for s, t in probes:
                    if await delivered(workers, s) >= members:
                        serving_ns = t + int(await slowest_ms(workers, s) * 1e6)
                        break
            if resumed_ns is None:
                resumed, failed, last_ns = 0, 0, 0
                for pipe in workers.pipes:
                    r, f, t = await call(pipe, ("resumed",))
                    resumed, failed, last_ns = resumed + r, failed + f, max(last_ns, t)
                if resumed + failed >= on_victim:
                    resumed_ns = last_ns
            if serving_ns is not None and resumed_ns is not None:
                break
            step += 1
            await asyncio.sleep(args.probe_every)
        # after: every acknowledged probe reached everyone (one drain for all of them:
        # a drain per probe waited minutes when deliveries were missing)
        missing = 0
        drained = time.monotonic() + args.drain
        for s, _ in probes:
            missing += members - await wait_delivered(
                workers, s, members, max(0.0, drained - time.monotonic()))
        resumed, failed = 0, 0
        for pipe in workers.pipes:
            r, f, _ = await call(pipe, ("resumed",))
            resumed, failed = resumed + r, failed + f
        ends = [t for t in (serving_ns, resumed_ns) if t is not None]
        failover_s = (max(ends) - killed_ns) / 1e9 if len(ends) == 2 else None
        result = {"failover_s": round(failover_s, 3) if failover_s else None,
                  "guild_serving_again_s": round((serving_ns - killed_ns) / 1e9, 3)
                  if serving_ns else None,
                  "clients_resumed_s": round((resumed_ns - killed_ns) / 1e9, 3)
                  if resumed_ns else None,
                  "clients_on_killed_node": on_victim, "resumed": resumed,
                  "resume_failed": failed, "probes_acknowledged": len(probes),
                  "probe_deliveries_missing": missing,
                  "delivered_before_kill": before, "expected_before_kill": expected_before,
                  "post_retries": sender.retries}
        progress(f"failover: {json.dumps(result)}")
        return result
    finally:
        await stop(server, workers, sender)


def cross_node_envelopes(args: argparse.Namespace) -> float:
    from loadtest.bench_runtime import ClusterBench

    bench = ClusterBench(os.urandom(32))
    bench.start()
    try:
        rates = []
        for _ in range(args.streams):
            r = bench.stream(args.stream, 10_000, 1_000, 512)
            rates.append(r.count / r.seconds)
        progress(f"cross-node envelopes/s: {', '.join(f'{r:,.0f}' for r in rates)}")
        return statistics.median(rates)
    finally:
        bench.stop()


async def run(args: argparse.Namespace) -> dict:
    raise_fd_limit(args.members * 2 + 2048)
    directory = tempfile.mkdtemp(prefix="greenroom-cluster-")
    progress(f"seeding {args.members:,} members in {directory}")
    seeded = await seed_users(directory, args.members, args.members)
    result: dict = {"members": args.members, "rate": args.rate}
    one = await cost(seeded, 1, args, directory)
    two = await cost(seeded, 2, args, directory)
    result["one_node"], result["two_nodes"] = one, two
    result["cost_ratio_two_nodes"] = round(two["cpu_us_per_delivery"]
                                           / one["cpu_us_per_delivery"], 3)
    progress(f"cost: {one['cpu_us_per_delivery']} us/delivery on 1 node, "
             f"{two['cpu_us_per_delivery']} on 2: ratio {result['cost_ratio_two_nodes']}")
    result["cross_node_envelopes_per_s"] = round(cross_node_envelopes(args))
    result["failover"] = await failover(seeded, args, directory)
    result["failover_s"] = result["failover"]["failover_s"]
    return result


def main() -> None:
    import uvloop

    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=1000)
    parser.add_argument("--processes", type=int, default=2, help="client worker processes")
    parser.add_argument("--rate", type=float, default=20.0, help="messages/s in the cost runs")
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per round")
    parser.add_argument("--rounds", type=int, default=3, help="cost rounds per node count")
    parser.add_argument("--drain", type=float, default=5.0)
    parser.add_argument("--content-size", type=int, default=100)
    parser.add_argument("--wait-quiet", type=float, default=5.0)
    parser.add_argument("--streams", type=int, default=3)
    parser.add_argument("--stream", type=int, default=200_000)
    parser.add_argument("--probe-every", type=float, default=0.05)
    parser.add_argument("--failover-budget", type=float, default=20.0)
    parser.add_argument("--retry", type=float, default=10.0,
                        help="seconds a post answered 503 or cut off is retried for")
    args = parser.parse_args()
    result = uvloop.run(run(args))
    line = {"bench": "cluster",
            "cost_ratio_two_nodes": result["cost_ratio_two_nodes"],
            "cross_node_envelopes_per_s": result["cross_node_envelopes_per_s"],
            "failover_s": result["failover_s"],
            "one_node_cpu_us_per_delivery": result["one_node"]["cpu_us_per_delivery"],
            "two_nodes_cpu_us_per_delivery": result["two_nodes"]["cpu_us_per_delivery"],
            "sockets_per_node": result["two_nodes"]["sockets_per_node"],
            "failover": result["failover"],
            "targets": TARGETS}
    line["all_passed"] = (line["cost_ratio_two_nodes"] <= TARGETS["cost_ratio_two_nodes"]
                          and line["failover_s"] is not None
                          and line["failover_s"] <= TARGETS["failover_s"]
                          and result["failover"]["probe_deliveries_missing"] == 0
                          and result["failover"]["resume_failed"] == 0)
    print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
