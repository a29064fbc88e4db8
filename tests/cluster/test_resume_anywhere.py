"""RESUME on any node, with real processes: ``greenroom run --nodes 2`` serves one
gateway from both node processes (SO_REUSEPORT), so a client that lost its socket may
land on the node that does not hold its session. The session moves there (its log, its
guild subscriptions) and the client gets every dispatch it missed, in order, exactly once.
HELLO's ``_trace`` names the node that took the connection."""

from __future__ import annotations

import json

import pytest
from websockets.exceptions import ConnectionClosed

from tests.cluster.test_scale_out import INTENTS, NODES, rest, running


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    with running(tmp_path_factory.mktemp("resume-anywhere")) as (event, _nodes):
        yield event


class Conn:
    """One raw WebSocket connection that tracks the last sequence number it received."""

    def __init__(self, served: dict) -> None:
        from websockets.sync.client import connect

        self._connection = connect(f"{served['gateway_url']}/?v=10&encoding=json",
                                   open_timeout=10, close_timeout=2)
        self.ws = self._connection.__enter__()
        hello = json.loads(self.ws.recv(timeout=10))
        assert hello["op"] == 10
        self.node: str = hello["d"]["_trace"][0]
        self.seq: int | None = None

    def next(self, timeout: float = 10.0) -> dict:
        payload = json.loads(self.ws.recv(timeout=timeout))
        if payload.get("s") is not None:
            self.seq = payload["s"]
        return payload

    def next_dispatch(self, event: str, timeout: float = 10.0) -> dict:
        while True:
            payload = self.next(timeout)
            if payload.get("op") == 0 and payload.get("t") == event:
                return payload["d"]

    def identify(self, token: str) -> str:
        self.ws.send(json.dumps({"op": 2, "d": {
            "token": token, "intents": INTENTS,
            "properties": {"os": "linux", "browser": "test", "device": "test"}}}))
        return self.next_dispatch("READY")["session_id"]

    def resume(self, token: str, session_id: str, seq: int | None) -> list[dict]:
        """RESUME; answers the dispatches replayed before RESUMED."""
        self.ws.send(json.dumps({"op": 6, "d": {"token": token, "session_id": session_id,
                                                "seq": seq}}))
        replayed = []
        while True:
            payload = self.next()
            assert payload["op"] == 0, f"RESUME refused: {payload}"
            if payload["t"] == "RESUMED":
                return replayed
            replayed.append(payload)

    def drop(self) -> None:
        """Close with a resumable code (Discord's clients reconnect after 4000)."""
        self.ws.close(4000, "gone")
        self._connection.__exit__(None, None, None)


def conn_on(node: str, served: dict, tries: int = 60) -> Conn:
    """Connect until the kernel hands the connection to ``node``'s process."""
    for _ in range(tries):
        conn = Conn(served)
        if conn.node == node:
            return conn
        assert conn.node in NODES, conn.node
        conn.drop()
    raise AssertionError(f"{tries} connections and none landed on {node}")


def post(served: dict, content: str) -> str:
    return rest(served, "POST", f"/channels/{served['channel_id']}/messages",
                {"content": content})[1]["id"]


def subscribed(conn: Conn, served: dict) -> None:
    """Post until a message reaches ``conn``: its guild subscription is in place."""
    for attempt in range(40):
        warm = post(served, f"warm-up {attempt}")
        try:
            while conn.next_dispatch("MESSAGE_CREATE", 2.0)["id"] != warm:
                pass
            return
        except TimeoutError:
            continue
    raise AssertionError("no message reached the session")


def created(payloads: list[dict]) -> list[str]:
    return [p["d"]["id"] for p in payloads if p["t"] == "MESSAGE_CREATE"]


def test_resume_on_the_other_node_moves_the_session_and_replays_what_was_missed(served):
    token = served["bot_token"]
    first = Conn(served)
    home = first.node
    other = next(n for n in NODES if n != home)
    session_id = first.identify(token)
    assert session_id.startswith(f"{home}.")
    subscribed(first, served)
    seen = [post(served, f"before {i}") for i in range(3)]
    assert [first.next_dispatch("MESSAGE_CREATE")["id"] for _ in seen] == seen
    seq = first.seq
    first.drop()
    missed = [post(served, f"while away {i}") for i in range(5)]

    # 1. Detached on ``home``, resumed on ``other``: the replay is what was missed.
    second = conn_on(other, served)
    replayed = second.resume(token, session_id, seq)
    assert created(replayed) == missed
    assert [p["s"] for p in replayed] == list(range(seq + 1, seq + 1 + len(replayed)))
    after = [post(served, f"after {i}") for i in range(5)]
    assert [second.next_dispatch("MESSAGE_CREATE")["id"] for _ in after] == after

    # 2. Still attached on ``other``, resumed on ``home``: the old socket is closed
    # and the session moves back; nothing twice, nothing missing.
    seq = second.seq
    during = [post(served, f"during {i}") for i in range(3)]
    third = conn_on(home, served)
    replayed = third.resume(token, session_id, seq)
    received = created(replayed)
    later = [post(served, f"later {i}") for i in range(5)]
    received += [third.next_dispatch("MESSAGE_CREATE")["id"]
                 for _ in range(len(during) + len(later) - len(received))]
    assert received == during + later
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            second.next(5.0)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4000
    # exactly once: the next message after a sentinel is the sentinel
    sentinel = post(served, "sentinel")
    assert third.next_dispatch("MESSAGE_CREATE")["id"] == sentinel
    third.drop()


def test_resume_of_an_unknown_session_on_another_node_is_refused(served):
    conn = Conn(served)
    other = next(n for n in NODES if n != conn.node)
    conn.ws.send(json.dumps({"op": 6, "d": {"token": served["bot_token"],
                                            "session_id": f"{other}.{'0' * 32}",
                                            "seq": 1}}))
    payload = conn.next()
    assert (payload["op"], payload["d"]) == (9, False)
    conn.drop()
