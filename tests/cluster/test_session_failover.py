"""Session failover with real node processes (gateway/replica.py): SIGKILL the node that
holds a set of sessions; every client RESUMEs on whichever node the kernel hands its
new socket to (a survivor, or the killed node's new incarnation), gets RESUMED (not
INVALID_SESSION), every message the REST API acknowledged before, during and after the
kill, and sequence numbers that go on without a gap or a repeat."""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.error

from websockets.exceptions import ConnectionClosed

from cluster.placement import Placement
from tests.cluster.test_resume_anywhere import Conn, subscribed
from tests.cluster.test_scale_out import NODES, rest, running

CLIENTS = 4


class Client(Conn):
    """A ``Conn`` that keeps every sequence number and message id it received, across
    its sockets."""

    def __init__(self, served: dict) -> None:
        super().__init__(served)
        self.seqs: list[int] = []
        self.message_ids: set[str] = set()

    def next(self, timeout: float = 10.0) -> dict:
        payload = json.loads(self.ws.recv(timeout=timeout))
        if payload.get("s") is not None:
            self.seq = payload["s"]
            self.seqs.append(payload["s"])
        if payload.get("t") == "MESSAGE_CREATE":
            self.message_ids.add(payload["d"]["id"])
        return payload

    def reconnect(self, served: dict, node: str, tries: int = 300) -> None:
        """A new socket on ``node`` (connecting until the kernel picks it; a killed
        node's new incarnation may take a while to serve), keeping what was received."""
        try:
            self._connection.__exit__(None, None, None)
        except Exception:  # the old socket died with its node
            pass
        for _ in range(tries):
            try:
                fresh = Conn(served)
            except (OSError, TimeoutError, ConnectionClosed):
                time.sleep(0.1)
                continue
            if fresh.node == node:
                self._connection, self.ws, self.node = fresh._connection, fresh.ws, node
                return
            fresh.drop()
            time.sleep(0.05)
        raise AssertionError(f"{tries} connections and none landed on {node}")

    def drain_until(self, wanted: set[str], timeout: float = 80.0) -> None:
        """Read until every message of ``wanted`` came, or ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        beat_at = 0.0
        while not wanted <= self.message_ids and time.monotonic() < deadline:
            if time.monotonic() >= beat_at:
                # heartbeat, as a client does: a wait past the zombie deadline (51 s)
                # would end in a 4000 close, not in the assertion on what never came
                self.ws.send(json.dumps({"op": 1, "d": self.seq}))
                beat_at = time.monotonic() + 10.0
            try:
                self.next(2.0)
            except TimeoutError:
                continue


def client_on(node: str, served: dict, tries: int = 60) -> Client:
    """Connect until the kernel hands the connection to ``node``'s process."""
    for _ in range(tries):
        client = Client(served)
        if client.node == node:
            return client
        client.drop()
    raise AssertionError(f"{tries} connections and none landed on {node}")


def acknowledged_post(served: dict, content: str, tries: int = 100) -> str:
    """Post until the API acknowledges it: a post that lands on the dying (or stopped)
    node fails or times out, and is retried (only acknowledged posts count)."""
    for _ in range(tries):
        try:
            return rest(served, "POST", f"/channels/{served['channel_id']}/messages",
                        {"content": content}, timeout=3.0)[1]["id"]
        except (urllib.error.URLError, OSError, ConnectionError):
            time.sleep(0.1)
    raise AssertionError(f"{content!r} was never acknowledged")


def every_client_got(clients: list[Client], acknowledged: list[str]) -> None:
    """Each client received every acknowledged message, with seqs that go on without a
    gap or a repeat across its sockets."""
    for client in clients:
        client.drain_until(set(acknowledged))
        missing = set(acknowledged) - client.message_ids
        assert not missing, f"{client.node}: acknowledged messages never arrived: {missing}"
        assert client.seqs == list(range(1, len(client.seqs) + 1)), client.seqs


def fail_over(tmp_path, *, victim_owns_guild: bool, stop_first: bool) -> None:
    """Clients on the victim; messages before; the victim dies (``stop_first``: it
    hangs first, so the failure detector, not the supervisor, finds it gone, and
    messages are acknowledged meanwhile that its sockets never deliver); messages
    during; every client RESUMEs; messages after. Every client gets every acknowledged
    message, with seqs that go on without a gap or a repeat."""
    with running(tmp_path) as (served, nodes):
        token = served["bot_token"]
        owner = Placement(NODES).owner(int(served["guild_id"]))
        victim = owner if victim_owns_guild else next(n for n in NODES if n != owner)
        survivor = next(n for n in NODES if n != victim)
        clients = [client_on(victim, served) for _ in range(CLIENTS)]
        session_ids = [c.identify(token) for c in clients]
        assert all(s.startswith(f"{victim}.") for s in session_ids)
        for client in clients:
            subscribed(client, served)
        acknowledged = [acknowledged_post(served, f"before {i}") for i in range(3)]
        for client in clients:
            client.drain_until(set(acknowledged))

        undelivered: list[str] = []
        if stop_first:
            os.kill(nodes[victim]["pid"], signal.SIGSTOP)
            undelivered = [acknowledged_post(served, f"stopped {i}") for i in range(3)]
            acknowledged += undelivered
        os.kill(nodes[victim]["pid"], signal.SIGKILL)
        acknowledged += [acknowledged_post(served, f"during {i}") for i in range(3)]
        for client in clients:
            try:
                while True:
                    client.next(0.5)  # whatever the dying socket still delivered
            except (ConnectionClosed, TimeoutError, OSError):
                pass
        for client in clients:
            assert not set(undelivered) & client.message_ids

        # half resume on the survivor (which promoted the copies), half on the killed
        # node's new incarnation (which has no such session: it asks the standby)
        for i, (client, session_id) in enumerate(zip(clients, session_ids, strict=True)):
            client.reconnect(served, survivor if i % 2 == 0 else victim)
            client.resume(token, session_id, client.seq)  # asserts RESUMED, not op 9
        acknowledged += [acknowledged_post(served, f"after {i}") for i in range(3)]

        every_client_got(clients, acknowledged)


def test_sessions_of_a_killed_node_and_its_guild_come_back_and_miss_nothing(tmp_path):
    fail_over(tmp_path, victim_owns_guild=True, stop_first=False)


def test_sessions_of_a_hung_then_killed_node_resume_elsewhere_and_miss_nothing(tmp_path):
    fail_over(tmp_path, victim_owns_guild=False, stop_first=True)


def test_sessions_survive_a_node_stalled_past_the_failure_detector_and_miss_nothing(tmp_path):
    """A node's loop stalls past the failure detector's timeout (SIGSTOP, then SIGCONT:
    what a loaded host does), so the other node takes it for gone and promotes its
    copies of the stalled node's sessions (and the stalled node may take the other for
    gone in turn). The sessions and their sockets were there all along: once the nodes
    hear each other again, every client, on the socket it had, gets every message
    acknowledged before and after, with seqs that go on without a gap or a repeat."""
    with running(tmp_path) as (served, nodes):
        token = served["bot_token"]
        owner = Placement(NODES).owner(int(served["guild_id"]))
        stalled = next(n for n in NODES if n != owner)
        clients = [client_on(node, served) for node in NODES for _ in range(2)]
        for client in clients:
            client.identify(token)
            subscribed(client, served)
        acknowledged = [acknowledged_post(served, f"before {i}") for i in range(3)]
        for client in clients:
            client.drain_until(set(acknowledged))

        os.kill(nodes[stalled]["pid"], signal.SIGSTOP)
        time.sleep(1.6)  # the failure detector's timeout is 1 s
        os.kill(nodes[stalled]["pid"], signal.SIGCONT)
        acknowledged += [acknowledged_post(served, f"after {i}") for i in range(3)]

        every_client_got(clients, acknowledged)
