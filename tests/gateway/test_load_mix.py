"""The load generator's mix of sessions (``loadtest/gateway_load.py --mix``) against a
real node (``greenroom run --nodes 1`` on SQLite): bot sessions (no op 14) and user
sessions that send op 14 get every message, passive user sessions (no op 14) none, and
the deliveries the generator counts are the receiving sessions' alone."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from pathlib import Path

import pytest

from loadtest.gateway_load import (
    RestSender,
    assign_kinds,
    mix_name,
    parse_mix,
    run_gateway_step,
    seed_users,
    start_gateway_server,
    start_gateway_workers,
    stop_gateway_server,
)
from loadtest.ws_baseline.load import StepResult, Workers, stop_workers


def test_mix_shares_and_names() -> None:
    weights = parse_mix("bots=3,users=3,passive=2")
    kinds = assign_kinds(weights, 8)
    assert sorted(kinds) == ["bots"] * 3 + ["passive"] * 2 + ["users"] * 3
    assert kinds[:4].count("passive") == 1  # interleaved, not in blocks
    assert mix_name(weights) == "bots=0.375,users=0.375,passive=0.25"
    assert assign_kinds(parse_mix("users=1"), 3) == ["users"] * 3
    for bad in ("robots=1", "users=-1", "users=0"):
        with pytest.raises(ValueError):
            parse_mix(bad)


@pytest.mark.parametrize("encoding", ["json", "msgpack"])
def test_bots_and_users_get_every_message_passive_none(encoding: str) -> None:
    async def main() -> tuple[Workers, StepResult, list[str]]:
        directory = tempfile.mkdtemp(prefix="greenroom-load-mix-")
        try:
            seeded = await seed_users(directory, 8, 8, mix=parse_mix("bots=3,users=3,passive=2"))
            server = start_gateway_server(seeded.db, Path(directory) / "server.log")
            workers = sender = None
            try:
                workers, _, _, failed = await start_gateway_workers(
                    server.gateway_url, seeded.tokens, 8, 2, 30.0, encoding=encoding,
                    kinds=seeded.kinds)
                assert failed == 0
                sender = RestSender(server.rest_url, seeded.bot_token, seeded.channel_id, 100)
                await sender.open()
                await asyncio.sleep(0.5)  # the op 14s are in before the first post
                step = await run_gateway_step(sender, workers, server.pid, 0, 10.0, 0.5,
                                              5.0, 1000.0)
                assert sender.errors == 0
                return workers, step, seeded.kinds
            finally:
                if sender is not None:
                    await sender.close()
                if workers is not None:
                    await stop_workers(workers)
                stop_gateway_server(server)
        finally:
            shutil.rmtree(directory, ignore_errors=True)

    workers, step, kinds = asyncio.run(asyncio.wait_for(main(), 90))
    assert sorted(kinds) == ["bots"] * 3 + ["passive"] * 2 + ["users"] * 3
    assert (workers.connected, workers.passive) == (8, 2)
    assert step.sent == 5
    # the 3 bots and the 3 users that opened the guild: each message once each
    assert step.expected == 5 * 6
    assert step.delivered == step.expected
    assert step.undue == 0  # the 2 passive sessions got no MESSAGE_CREATE
    assert step.all_delivered


def test_stage_quantiles_interpolate_within_a_bucket() -> None:
    """The bench's p50/p99 per stage from two readings of the stage histogram: only what
    was recorded between them counts, read between the bucket's bounds."""
    from loadtest.gateway_load import stage_quantiles_ms

    inf = float("inf")
    before = {"durable": {0.001: 10.0, 0.002: 10.0, inf: 10.0}}
    after = {"durable": {0.001: 60.0, 0.002: 110.0, inf: 110.0},
             "fanout_loop": {0.001: 0.0, 0.002: 98.0, inf: 100.0}}
    got = stage_quantiles_ms(before, after)
    assert got["p50"] == {"durable": 1.0, "fanout_loop": 1.51}
    assert got["p99"] == {"durable": 1.98, "fanout_loop": None}  # above the last bound


def test_gc_pauses_between_two_readings() -> None:
    """The bench's GC line: collections counted between the readings (all generations
    together), their time, and the bucket the longest fell in."""
    from loadtest.gateway_load import NodeReading, gc_pauses

    inf = float("inf")
    before = NodeReading(ok=True, gc_buckets={0.001: 5.0, 0.025: 7.0, 0.05: 7.0, inf: 7.0},
                         gc_seconds=0.030)
    after = NodeReading(ok=True, gc_buckets={0.001: 6.0, 0.025: 9.0, 0.05: 10.0, inf: 10.0},
                        gc_seconds=0.075)  # 1 of <= 1 ms, 1 of <= 25, 1 of <= 50
    assert gc_pauses(before, after) == {"collections": 3, "pause_ms": 45.0,
                                        "longest_ms_at_most": 50.0}
    assert gc_pauses(after, after) == {"collections": 0, "pause_ms": 0.0,
                                       "longest_ms_at_most": 0.0}
    above = NodeReading(ok=True, gc_buckets={0.001: 6.0, 0.025: 9.0, 0.05: 10.0, inf: 11.0},
                        gc_seconds=2.0)
    assert gc_pauses(after, above)["longest_ms_at_most"] is None  # above the last bound
    assert gc_pauses(before, NodeReading()) is None  # a reading failed: not known
    assert gc_pauses(NodeReading(), after) is None
    assert gc_pauses(before, NodeReading(ok=True)) is None  # a node without the metric


def test_loop_stalls_between_two_readings() -> None:
    """The bench's loop line: the probes more than 10 ms late between the readings, and
    the bucket the latest fell in."""
    from loadtest.gateway_load import NodeReading, loop_stalls

    inf = float("inf")
    before = NodeReading(ok=True, lag_buckets={0.005: 90.0, 0.01: 95.0, 0.05: 97.0,
                                               0.1: 97.0, inf: 97.0})
    # 50 more probes: 45 on time, 3 between 10 and 50 ms late, 2 between 50 and 100
    after = NodeReading(ok=True, lag_buckets={0.005: 135.0, 0.01: 140.0, 0.05: 145.0,
                                              0.1: 147.0, inf: 147.0})
    assert loop_stalls(before, after) == {"late_probes": 5, "latest_ms_at_most": 100.0}
    assert loop_stalls(after, after) == {"late_probes": 0, "latest_ms_at_most": 0.0}
    assert loop_stalls(before, NodeReading()) is None
    assert loop_stalls(before, NodeReading(ok=True)) is None  # a node without the probe


def test_a_maximum_is_the_load_generators_only_while_the_server_had_room() -> None:
    """``client_bound``: the first step past the maximum had the clients at 80 % of their
    CPUs and the server below 90 % of its own; with the server full too it is the server's."""
    from loadtest.gateway_load import client_bound

    def summary(clients_cpu: float, server_cpu: float) -> dict:
        return {"max_rate_msgs_per_s": 50, "steps": [
            {"rate": 50, "clients_cpu": 0.6, "server_cpu": 0.6},
            {"rate": 60, "clients_cpu": clients_cpu, "server_cpu": server_cpu},
            {"rate": 80, "clients_cpu": 0.99, "server_cpu": 0.5}]}

    assert client_bound(summary(0.85, 0.7), 1, 1)
    assert not client_bound(summary(0.85, 0.95), 1, 1)  # the server was full too
    assert not client_bound(summary(0.7, 0.5), 1, 1)  # only a later step's clients were
    assert client_bound(summary(1.7, 0.95), 2, 2)  # per CPU: the server had room on two
    assert not client_bound({"max_rate_msgs_per_s": 50, "steps": [
        {"rate": 50, "clients_cpu": 0.9, "server_cpu": 0.1}]}, 1, 1)  # it never stopped
