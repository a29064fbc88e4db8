"""Scale-out with real processes: ``greenroom run --nodes 2`` serves one gateway from both
node processes (SO_REUSEPORT); the seeded guild lives on the node that rendezvous
hashing picks; a client on either node gets what a bot posts through REST served by
either node, in order, nothing lost."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from cluster.placement import Placement
from tests.cluster.run_log import run_env, serving

NODES = ("n1", "n2")
INTENTS = 1 | 512 | 1 << 15  # GUILDS, GUILD_MESSAGES, MESSAGE_CONTENT


@contextlib.contextmanager
def running(tmp: Path):
    """``greenroom run --nodes 2`` on SQLite in ``tmp``: yields its "gateway serving"
    log event (URLs, token, ids) and its "node serving" events by node; stops it and
    checks that no process is left behind."""
    tag = f"scale-out-{os.getpid()}-{time.monotonic_ns()}"
    # its output goes on into run.log, to read when a test fails
    with serving(run_env(tmp, tag), "--nodes", "2", "--port", "0", "--rest-port", "0",
                 "--no-rate-limits", log=tmp / "run.log") as run:
        yield run.served, run.nodes


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    with running(tmp_path_factory.mktemp("scale-out")) as (event, _nodes):
        yield event


class Client:
    """A real WebSocket client identified as the seeded bot, on whichever node the
    kernel gave it (its session id names the node)."""

    def __init__(self, url: str, token: str) -> None:
        from websockets.sync.client import connect

        self._connection = connect(f"{url}/?v=10&encoding=json", open_timeout=10,
                                   close_timeout=2)
        self.ws = self._connection.__enter__()
        assert json.loads(self.ws.recv(timeout=10))["op"] == 10
        self.ws.send(json.dumps({"op": 2, "d": {
            "token": token, "intents": INTENTS,
            "properties": {"os": "linux", "browser": "test", "device": "test"}}}))
        ready = self.next_dispatch("READY")
        self.session_id = ready["session_id"]
        self.node = self.session_id.split(".", 1)[0]

    def next_dispatch(self, event: str, timeout: float = 10.0) -> dict:
        while True:
            payload = json.loads(self.ws.recv(timeout=timeout))
            if payload.get("op") == 0 and payload.get("t") == event:
                return payload["d"]

    def message_ids(self, count: int) -> list[str]:
        """The ids of the next ``count`` MESSAGE_CREATEs (10 s each at most)."""
        return [self.next_dispatch("MESSAGE_CREATE")["id"] for _ in range(count)]

    def close(self) -> None:
        self._connection.__exit__(None, None, None)


def client_on(node: str, served: dict, tries: int = 60) -> Client:
    """Connect until the kernel hands the connection to ``node``'s process."""
    for _ in range(tries):
        client = Client(served["gateway_url"], served["bot_token"])
        if client.node == node:
            return client
        assert client.node in NODES, client.session_id
        client.close()
    raise AssertionError(f"{tries} connections and none landed on {node}")


def rest_request(served: dict, method: str, path: str,
                 body: dict | None = None) -> urllib.request.Request:
    """A REST request as the seeded bot, to whichever node the kernel picks."""
    return urllib.request.Request(
        f"{served['rest_url']}{path}", method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bot {served['bot_token']}",
                 "Content-Type": "application/json"})


def rest(served: dict, method: str, path: str, body: dict | None = None,
         timeout: float = 15.0) -> tuple[str, dict]:
    """One request on a new connection (so the kernel picks a node); answers the node
    that served it and the JSON body."""
    request = rest_request(served, method, path, body)
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return response.headers["X-Greenroom-Node"], json.loads(response.read())


def made_on(message_id: str) -> str:
    """The node whose channel actor made a message: a snowflake's process bits are its
    node's index (``cluster.launcher``)."""
    return NODES[(int(message_id) >> 12) & 0x1F]


def received_by_all(clients: list[Client], served: dict, channel: int,
                    attempts: int = 40, owner: str | None = None,
                    within_s: float = 90.0) -> None:
    """Post until one message (made on ``owner``, if given) reaches every client: their
    sessions are subscribed to the guild's current incarnation. A post that fails
    (during a node's restart) is tried again, or made elsewhere while ``owner`` is
    still starting: bounded by ``attempts`` and by ``within_s``, since a loaded host
    may take many seconds to start a node process (such posts come back fast)."""
    deadline = time.monotonic() + within_s
    for _ in range(attempts):
        if time.monotonic() > deadline:
            break
        try:
            _, warm = rest(served, "POST", f"/channels/{channel}/messages",
                           {"content": "warm-up"}, timeout=3.0)
        except (urllib.error.URLError, TimeoutError, ConnectionError):
            time.sleep(0.25)
            continue
        if owner is not None and made_on(warm["id"]) != owner:
            time.sleep(0.25)
            continue  # made by an incarnation that is about to move
        seen = 0
        for c in clients:
            try:
                while c.next_dispatch("MESSAGE_CREATE", 2.0)["id"] != warm["id"]:
                    pass
                seen += 1
            except TimeoutError:
                pass
        if seen == len(clients):
            return
    raise AssertionError(f"{attempts} posts and no message reached every session")


def test_clients_on_both_nodes_get_every_message_posted_through_either_node(served):
    channel = served["channel_id"]
    owner = Placement(NODES).owner(int(served["guild_id"]))
    clients = [client_on(owner, served), client_on(*(set(NODES) - {owner}), served)]
    try:
        # Both sessions subscribe to the guild as they identify; a message that both
        # see proves both subscriptions are in place (what follows is never lost).
        received_by_all(clients, served, channel)
        posted: list[str] = []
        by_node = {n: 0 for n in NODES}
        while len(posted) < 30 or min(by_node.values()) < 3:
            assert len(posted) < 300, f"REST never reached both nodes: {by_node}"
            node, message = rest(served, "POST", f"/channels/{channel}/messages",
                                 {"content": f"message {len(posted)}"})
            by_node[node] += 1
            posted.append(message["id"])
        for c in clients:
            assert c.message_ids(len(posted)) == posted, c.node  # all, in order
        # Every message was made by the channel actor on the guild's node, whichever
        # node served the REST call.
        assert {made_on(m) for m in posted} == {owner}
        # History through either node: the channel actor on the owner answers (from its
        # cache of recent messages), across nodes for the other node's REST handler.
        served_by: set[str] = set()
        for _ in range(100):
            node, history = rest(served, "GET", f"/channels/{channel}/messages?limit=30")
            assert [m["id"] for m in history] == posted[::-1][:30], node
            served_by.add(node)
            if served_by == set(NODES):
                break
        assert served_by == set(NODES)
    finally:
        for c in clients:
            c.close()


def test_guild_events_from_rest_on_either_node_reach_both_nodes(served):
    owner = Placement(NODES).owner(int(served["guild_id"]))
    clients = [client_on(owner, served), client_on(*(set(NODES) - {owner}), served)]
    try:
        created = []
        nodes_seen = set()
        while nodes_seen != set(NODES):
            assert len(created) < 40, f"REST never reached both nodes: {nodes_seen}"
            node, channel = rest(served, "POST", f"/guilds/{served['guild_id']}/channels",
                                 {"name": f"c{len(created)}"})
            nodes_seen.add(node)
            created.append(channel["id"])
        for c in clients:
            got = [c.next_dispatch("CHANNEL_CREATE")["id"] for _ in created]
            assert got == created, c.node
        # a message in a channel created through the other node reaches both, too
        _, message = rest(served, "POST", f"/channels/{created[-1]}/messages",
                          {"content": "in a new channel"})
        for c in clients:
            assert c.next_dispatch("MESSAGE_CREATE")["id"] == message["id"]
        # a new guild: GUILD_CREATE to the user's sessions on every node, whichever
        # node served the call
        guilds_by_node: dict[str, str] = {}
        for attempt in range(40):
            if set(guilds_by_node) == set(NODES):
                break
            node, guild = rest(served, "POST", "/guilds", {"name": f"guild {attempt}"})
            guilds_by_node.setdefault(node, guild["id"])
            for c in clients:
                assert c.next_dispatch("GUILD_CREATE")["id"] == guild["id"], c.node
        assert set(guilds_by_node) == set(NODES), guilds_by_node
    finally:
        for c in clients:
            c.close()


def test_a_session_follows_its_guild_when_the_guilds_node_is_killed(tmp_path):
    """SIGKILL the guild's node: the session on the other node gets ``Down`` for the
    guild (its node left, then came back as a new process), subscribes again where
    placement now puts the guild, and gets the messages posted after that, all of them."""
    with running(tmp_path) as (served, nodes):
        channel = served["channel_id"]
        owner = Placement(NODES).owner(int(served["guild_id"]))
        other = next(n for n in NODES if n != owner)
        client = client_on(other, served)
        try:
            received_by_all([client], served, channel)
            os.kill(nodes[owner]["pid"], signal.SIGKILL)  # its supervisor restarts it
            # the guild comes back on its restarted node (same name, so same owner);
            # once a message made there reaches the client, placement is settled
            received_by_all([client], served, channel, attempts=200, owner=owner)
            posted = [rest(served, "POST", f"/channels/{channel}/messages",
                           {"content": f"after {i}"})[1]["id"] for i in range(20)]
            # A warm-up may still come: one lost with the guild reaches the session
            # from storage (its catch-up), and one refused (503) while the node was
            # gone may have been made after all. Those after it come, in order, all.
            got: list[str] = []
            while len(got) < len(posted):
                message = client.next_dispatch("MESSAGE_CREATE")
                if message["content"] != "warm-up":
                    got.append(message["id"])
            assert got == posted
            assert {made_on(m) for m in posted} == {owner}
        finally:
            client.close()
