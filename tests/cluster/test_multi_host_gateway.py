"""End to end across hosts: ``greenroom run`` in three network namespaces joined into one
cluster (``--join``), SQLite on one shared file; a client on one host gets what a bot
posts through REST on another; pulling the cable of the host that owns the guild moves
the guild to a survivor and messages flow again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from cluster.placement import Placement
from tests.cluster import netns
from tests.cluster.run_log import alive, read_until
from tests.cluster.test_scale_out import Client, rest_request

ROOT = Path(__file__).parents[2]
HOSTS = 3
ADMIN_PORT = 1900  # the leader's; each host has a namespace of its own, so it is free

pytestmark = pytest.mark.skipif(netns.available() is not None,
                                reason=netns.available() or "")


def start_host(hosts: netns.Hosts, i: int, db: Path) -> tuple[subprocess.Popen, dict]:
    address = hosts.address(i)
    join = [] if i == 1 else ["--join", f"{hosts.address(1)}:{ADMIN_PORT}"]
    env = dict(os.environ, GREENROOM_LOG_FORMAT="json", PYTHONUNBUFFERED="1",
               GREENROOM_SQLITE_PATH=str(db), GREENROOM_SQLITE_SYNCHRONOUS="NORMAL",
               GREENROOM_CLUSTER_SECRET="multi-host-test-secret",
               GREENROOM_WORKER_ID=str(i))  # snowflakes unique across hosts
    proc = hosts.popen(i, [sys.executable, "-m", "greenroom.cli", "run", "--host", address,
                           "--name", f"h{i}", "--admin-port", str(ADMIN_PORT),
                           "--no-rate-limits", *join],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       env=env, cwd=ROOT)
    event, _, lines = read_until(proc, "gateway serving")
    if event is None:
        raise AssertionError(f"host h{i} did not serve:\n" + "".join(lines))
    threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()
    return proc, event


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    db = tmp_path_factory.mktemp("multi-host") / "greenroom.db"
    hosts = netns.Hosts(HOSTS)
    procs: list[subprocess.Popen] = []
    try:
        hosts.open()
        served = {}
        for i in range(1, HOSTS + 1):  # one at a time: each migrates and seeds first
            proc, served[f"h{i}-n1"] = start_host(hosts, i, db)
            procs.append(proc)
        yield hosts, served
        for i in range(1, HOSTS + 1):
            hosts.restore(i)
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        assert [proc.wait(60) for proc in procs] == [0] * HOSTS
    finally:
        hosts.close()
    assert not [p for p in hosts.pids() if alive(p)]
    assert not hosts.namespaces_left() and not hosts.links_left()


def post(served: dict, channel: str, content: str, timeout: float = 3.0) -> str | None:
    """POST a message as a client that gives up after ``timeout`` s and retries; its id
    when acknowledged, None when the request failed or timed out."""
    request = rest_request(served, "POST", f"/channels/{channel}/messages",
                           {"content": content})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())["id"]
    except OSError:  # urllib's HTTPError and timeouts included
        return None


def received(client: Client, message_id: str, timeout: float) -> bool:
    try:
        while client.next_dispatch("MESSAGE_CREATE", timeout)["id"] != message_id:
            pass
    except TimeoutError:
        return False
    return True


def test_a_client_on_one_host_gets_what_another_host_serves_and_survives_a_cut(cluster):
    hosts, served = cluster
    seeded = served["h1-n1"]
    assert {(s["bot_token"], s["guild_id"], s["channel_id"]) for s in served.values()} == {
        (seeded["bot_token"], seeded["guild_id"], seeded["channel_id"])}
    channel = seeded["channel_id"]
    nodes = sorted(served)
    owner = Placement(nodes).owner(int(seeded["guild_id"]))
    on, via = [n for n in nodes if n != owner]  # the client's host, the poster's host
    client = Client(served[on]["gateway_url"], seeded["bot_token"])
    try:
        assert client.node == on, client.session_id
        # the hosts joined, the session subscribed: a message that arrives proves both
        for attempt in range(40):
            message = post(served[via], channel, f"warm-up {attempt}")
            if message and received(client, message, 2.0):
                break
        else:
            raise AssertionError(f"nothing posted on {via} reached the client on {on}")
        posted = [post(served[via], channel, f"before {n}") for n in range(5)]
        assert None not in posted
        assert client.message_ids(len(posted)) == posted  # all, in order

        hosts.cut(int(owner[1]))  # "hN-n1" -> N: the guild's host is gone
        t0 = time.monotonic()
        for attempt in range(60):
            message = post(served[via], channel, f"after {attempt}")
            if message and received(client, message, 2.0):
                break
        else:
            raise AssertionError(f"no message flowed after {owner} was cut off")
        print(f"\n{owner} cut off: messages from {via} reach {on} again after "
              f"{time.monotonic() - t0:.2f} s ({attempt + 1} posts)")
        again = [post(served[via], channel, f"settled {n}") for n in range(5)]
        assert None not in again
        assert client.message_ids(len(again)) == again
    finally:
        client.close()
