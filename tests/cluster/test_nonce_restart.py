"""``enforce_nonce`` across kill -9 (issue 10, finding 7), with real node processes.

A client posts with a nonce and ``enforce_nonce``; then the node that owns the channel
is killed with SIGKILL (its supervisor restarts it; meanwhile the guild moves to the
other node), and later the whole tree is killed and started again on the same database.
Each retry of the same post - exactly what a client does after such a failure - must
answer the first message, and history must hold it once."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from cluster.placement import Placement
from tests.cluster.run_log import kill_tree, run_env, start_run
from tests.cluster.test_scale_out import NODES, rest, rest_request

RETRY_FOR_S = 45.0


@contextlib.contextmanager
def started(tmp: Path, tag: str) -> Iterator[tuple[dict, dict, subprocess.Popen]]:
    """``greenroom run --nodes 2`` on the SQLite file in ``tmp``, its processes tagged;
    every process of it killed with SIGKILL after."""
    run = start_run(run_env(tmp, tag), "--nodes", "2", "--port", "0", "--rest-port", "0",
                    "--no-rate-limits", log=tmp / f"{tag}.log")
    try:
        yield run.served, run.nodes, run.proc
    finally:
        left = kill_tree(tag)
        assert not left, f"processes survived SIGKILL: {left}"


def post_until_served(served: dict, body: dict) -> dict:
    """The client's retry loop: the same post until a node answers 200 (a connection
    refused, a 503 while the cluster heals, are retried)."""
    path = f"/channels/{served['channel_id']}/messages"
    deadline = time.monotonic() + RETRY_FOR_S
    last: object = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(rest_request(served, "POST", path, body),
                                        timeout=20) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as err:
            last = (err.code, err.read()[:200])
            assert err.code == 503, last  # only "retry": never a failure of the send
        except (urllib.error.URLError, OSError) as err:
            last = err
        time.sleep(0.1)
    raise AssertionError(f"the post was never served: {last}")


def test_an_enforced_nonce_survives_kill_9_of_its_node_and_of_the_tree(tmp_path):
    body = {"content": "exactly once", "nonce": "k-9", "enforce_nonce": True}
    tag = f"nonce-{os.getpid()}-{time.monotonic_ns()}"
    with started(tmp_path, tag) as (served, nodes, _):
        first = post_until_served(served, body)
        owner = Placement(NODES).owner(int(served["guild_id"]))
        os.kill(nodes[owner]["pid"], signal.SIGKILL)  # its supervisor restarts it
        # retried while the guild moves to the survivor, and again once the owner is back
        for _ in range(3):
            again = post_until_served(served, body)
            assert again["id"] == first["id"], (first, again)
    # the whole tree killed (``started`` exits with SIGKILL), then started again
    with started(tmp_path, tag + "-b") as (served, _, _):
        again = post_until_served(served, body)
        assert again["id"] == first["id"] and again["content"] == "exactly once"
        _, history = rest(served, "GET", f"/channels/{served['channel_id']}/messages")
        assert [m["id"] for m in history if m.get("nonce") == "k-9"] == [first["id"]]
