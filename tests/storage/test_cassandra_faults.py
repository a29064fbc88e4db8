"""Storage faults on Cassandra, seen from REST, with a real ``greenroom run`` node.

* Cassandra is killed and restarted in the middle of a stream of posts: no post the
  node acknowledged is lost, every refusal meanwhile is a retryable 503 with
  ``Retry-After`` (never a 500), and the same node process serves writes again.
* Cassandra answers slowly (a delaying proxy between the driver and it): the storage
  actor's backpressure reaches REST as 503 with ``Retry-After`` and Discord's JSON,
  the node's memory stays flat under a client that retries at once, and once the
  delay is gone the same node serves normally.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from delay_proxy import DelayProxy

from loadtest.abuse_loss import Posters, Tree, alive, drop_keyspace, read_history
from loadtest.ws_baseline.load import rss_bytes
from tests.services.cassandra import CassandraNode

#: acknowledged posts before Cassandra is killed, and after it is back
ACKS_BEFORE = 200
ACKS_AFTER = 50
#: RSS the node may gain while a hostile client floods it during the slow phase
RSS_BOUND = 32 << 20


@contextlib.contextmanager
def serving(tmp_path: Path, cql_port: int, cassandra: CassandraNode,
            *extra: str) -> Iterator[tuple[Tree, dict]]:
    """``greenroom run`` (one node) on a keyspace of its own, its driver pointed at
    ``cql_port``; the keyspace is dropped afterwards."""
    keyspace = f"greenroom_faults_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    tree = Tree(tmp_path, ["--storage", "scylla", "--scylla-hosts", "127.0.0.1",
                           "--scylla-port", str(cql_port), "--scylla-keyspace", keyspace,
                           *extra])
    seed = tree.start()
    try:
        yield tree, seed
    finally:
        tree.stop()
        drop_keyspace(cassandra.port, keyspace)


def post(tree: Tree, seed: dict, posters: int, count: int, seconds: float = 30.0,
         honour_retry_after: bool = True) -> Posters:
    feed = Posters(tree.rest_url, seed, posters, honour_retry_after)
    asyncio.run(feed.run(count, time.monotonic() + seconds))
    return feed


@pytest.mark.cassandra_fault
@pytest.mark.timeout(300)
def test_cassandra_killed_mid_stream_loses_no_acknowledged_post_and_the_node_recovers(
        cassandra_node: CassandraNode, tmp_path: Path) -> None:
    with serving(tmp_path, cassandra_node.port, cassandra_node) as (tree, seed):
        node_pid = tree.node_pids()["n1"]
        feed = Posters(tree.rest_url, seed, 4)
        fault: dict[str, float] = {}

        async def kill_and_restart() -> None:
            while len(feed.acked) < ACKS_BEFORE and not feed.stop:
                await asyncio.sleep(0.01)
            fault["killed"] = time.monotonic()
            await asyncio.to_thread(cassandra_node.stop, keep_data=True, sig=signal.SIGKILL)
            await asyncio.sleep(1.0)
            await asyncio.to_thread(cassandra_node.spawn, keep_data=True)
            await asyncio.to_thread(cassandra_node.wait_ready, 180)
            fault["back"] = time.monotonic()
            while not feed.stop and sum(
                    t > fault["back"] for t in feed.acked.values()) < ACKS_AFTER:
                await asyncio.sleep(0.05)
            feed.stop = True

        async def stream() -> None:
            injector = asyncio.ensure_future(kill_and_restart())
            await feed.run(100_000, time.monotonic() + 240)
            feed.stop = True
            await injector

        try:
            asyncio.run(stream())
        finally:  # leave the shared node up for whoever runs next
            if not cassandra_node.ready():
                cassandra_node.start(keep_data=True)
        found = asyncio.run(read_history(tree.rest_url, seed))
        acked = set(feed.acked)
        assert "back" in fault, "Cassandra never came back"
        assert not acked - found, f"{len(acked - found)} of {len(acked)} acknowledged posts lost"
        after = [t for t in feed.acked.values() if t > fault["back"]]
        assert len(after) >= ACKS_AFTER, f"the node served {len(after)} posts after the restart"
        # refusals while Cassandra was down told the client to retry (never a 500)
        assert not feed.improper, feed.improper[:5]
        # the same node process recovered: it was not restarted
        assert alive(node_pid) and tree.node_pids() == {"n1": node_pid}


@pytest.mark.timeout(180)
def test_a_slow_cassandra_is_refused_as_503_with_retry_after_and_the_node_recovers(
        cassandra_node: CassandraNode, tmp_path: Path) -> None:
    with DelayProxy(cassandra_node.port) as proxy, serving(
            tmp_path, proxy.port, cassandra_node,
            "--storage-max-pending", "32") as (tree, seed):
        node_pid = tree.node_pids()["n1"]
        warm = post(tree, seed, 4, 40)
        assert len(warm.acked) == 40, warm.answers
        baseline = rss_bytes(node_pid)

        proxy.delay_s = 1.0  # every request to Cassandra now waits a second
        samples: list[int] = []
        sampling = threading.Event()

        def sample() -> None:
            while not sampling.wait(0.1):
                samples.append(rss_bytes(node_pid))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            # 100 clients that retry at once whatever they are told, for 6 s
            slow = post(tree, seed, 100, 100_000, seconds=6.0, honour_retry_after=False)
        finally:
            sampling.set()
            sampler.join()
        assert slow.answers["503"] > 0, slow.answers
        assert set(slow.answers) <= {"200", "503"}, slow.answers
        assert not slow.improper, slow.improper[:5]  # each 503: Retry-After and JSON
        # ... and it is the storage actor's backpressure (Busy) that answered
        assert any("storage is busy" in m for m in slow.refusals), slow.refusals
        growth = max(samples) - baseline
        assert growth < RSS_BOUND, f"node RSS grew {growth >> 20} MiB while Cassandra was slow"

        proxy.delay_s = 0.0
        after = post(tree, seed, 4, 40)
        assert len(after.acked) == 40 and not after.improper, after.answers
        assert alive(node_pid) and tree.node_pids() == {"n1": node_pid}
        acked = set(warm.acked) | set(slow.acked) | set(after.acked)
        found = asyncio.run(read_history(tree.rest_url, seed))
        assert not acked - found, f"{len(acked - found)} acknowledged posts lost"


def test_a_rest_ask_that_times_out_on_slow_storage_is_a_503_with_retry_after() -> None:
    # the 15 s REST ask expiring (a database slower than that) is retryable too
    from gateway.rest.errors import error_response

    response = error_response(TimeoutError())
    assert response.status == 503 and response.headers["Retry-After"] == "1"
    assert response.content_type == "application/json"
