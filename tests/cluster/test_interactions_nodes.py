"""Interactions across node processes: ``greenroom run --nodes 2`` (one gateway from
both, on one SQLite file). The bot's session is on one node, the invoking user's on the
other, the channel's actor where placement puts it; REST requests land on either node.
The bot gets INTERACTION_CREATE, one of many simultaneous answers is taken whichever
nodes serve them (the rest 40060), the user gets the message, an ephemeral follow-up
reaches only the user, an unanswered interaction fails for the user once, and one whose
invoking node is killed before its 3 s are up is closed all the same (10062)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from tests.cluster import test_dms_nodes
from tests.cluster.test_dms_nodes import add_alice
from tests.cluster.test_scale_out import NODES, made_on, running

INTENTS = 1 | 1 << 9 | 1 << 15  # GUILDS, GUILD_MESSAGES, MESSAGE_CONTENT


class Session(test_dms_nodes.Session):
    """A session asking for guild messages (the DM test's asks for DMs)."""

    def __init__(self, served: dict, token: str) -> None:
        from websockets.sync.client import connect

        self._connection = connect(f"{served['gateway_url']}/?v=10&encoding=json",
                                   open_timeout=10, close_timeout=2)
        self.ws = self._connection.__enter__()
        assert json.loads(self.ws.recv(timeout=10))["op"] == 10
        self.ws.send(json.dumps({"op": 2, "d": {
            "token": token, "intents": INTENTS,
            "properties": {"os": "linux", "browser": "test", "device": "test"}}}))
        self.node = self.next_dispatch("READY")["session_id"].split(".", 1)[0]


def session_on(node: str, served: dict, token: str, tries: int = 60) -> Session:
    for _ in range(tries):
        session = Session(served, token)
        if session.node == node:
            return session
        session.close()
    raise AssertionError(f"{tries} connections and none landed on {node}")


def call(served: dict, token: str | None, method: str, path: str,
         body: Any = None) -> tuple[str, int, Any]:
    """One request on a new connection (the kernel picks the node): the serving node,
    the status and the JSON answer (errors included)."""
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bot {token}"
    request = urllib.request.Request(
        f"{served['rest_url']}{path}", method=method,
        data=None if body is None else json.dumps(body).encode(), headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            raw = response.read()
            return response.headers["X-Greenroom-Node"], response.status, \
                json.loads(raw) if raw else None
    except urllib.error.HTTPError as exc:
        return exc.headers["X-Greenroom-Node"], exc.code, json.loads(exc.read() or b"null")


def settled(served: dict, method: str, path: str, body: Any) -> tuple[int, Any]:
    """``call`` without a token, again while the node that was killed comes back (its
    connections refused or reset meanwhile)."""
    for _ in range(100):
        try:
            _, status, answer = call(served, None, method, path, body)
            return status, answer
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.1)
    raise AssertionError(f"{method} {path} never answered")


def test_interactions_across_nodes(tmp_path: Path) -> None:
    with running(tmp_path) as (served, nodes):
        bot_token, guild_id = served["bot_token"], served["guild_id"]
        channel_id = served["channel_id"]
        alice_id, alice_token = asyncio.run(add_alice(tmp_path / "greenroom.db",
                                                      int(guild_id)))
        _, _, me = call(served, bot_token, "GET", "/users/@me")
        app = me["id"]
        _, status, commands = call(served, bot_token, "PUT",
                                   f"/applications/{app}/guilds/{guild_id}/commands",
                                   [{"name": "roll", "description": "roll a die"}])
        assert status == 200, commands
        bot = session_on(NODES[0], served, bot_token)
        alice = session_on(NODES[1], served, alice_token)
        alice.ws.send(json.dumps({"op": 14, "d": {"guild_id": guild_id}}))
        invocation = {"type": 2, "application_id": app, "guild_id": guild_id,
                      "channel_id": channel_id, "nonce": "n",
                      "data": {"id": commands[0]["id"], "name": "roll", "type": 1}}
        try:
            _, status, body = call(served, alice_token, "POST", "/interactions", invocation)
            assert status == 204, body
            got = bot.next_dispatch("INTERACTION_CREATE")
            assert got["member"]["user"]["id"] == str(alice_id)

            def answer(i: int) -> tuple[str, int, Any]:
                return call(served, None, "POST",
                            f"/interactions/{got['id']}/{got['token']}/callback",
                            {"type": 4, "data": {"content": f"answer {i}"}})

            with ThreadPoolExecutor(8) as pool:
                answers = list(pool.map(answer, range(16)))
            assert sorted(status for _, status, _ in answers) == [204] + [400] * 15, answers
            assert {body["code"] for _, status, body in answers if status == 400} == {40060}
            assert {node for node, _, _ in answers} == set(NODES)  # both nodes answered
            message = alice.next_dispatch("MESSAGE_CREATE")
            assert message["content"].startswith("answer") and message["type"] == 20
            owner = made_on(message["id"])  # the channel actor's node
            assert owner in NODES
            assert alice.next_dispatch("INTERACTION_SUCCESS")["id"] == got["id"]

            # an ephemeral follow-up: only alice's session, on the other node
            _, status, follow = call(served, None, "POST", f"/webhooks/{app}/{got['token']}",
                                     {"content": "psst", "flags": 64})
            assert status == 200, follow
            assert alice.next_dispatch("MESSAGE_CREATE")["id"] == follow["id"]
            _, status, plain = call(served, bot_token, "POST",
                                    f"/channels/{channel_id}/messages", {"content": "after"})
            assert bot.next_dispatch("MESSAGE_CREATE")["id"] == message["id"]
            assert bot.next_dispatch("MESSAGE_CREATE")["id"] == plain["id"]  # not psst

            # unanswered: alice is told once, whichever node took it; the bot is too late
            _, status, _ = call(served, alice_token, "POST", "/interactions", invocation)
            assert status == 204
            late = bot.next_dispatch("INTERACTION_CREATE")
            failure = alice.next_dispatch("INTERACTION_FAILURE")
            assert failure["id"] == late["id"]
            _, status, body = call(served, None, "POST",
                                   f"/interactions/{late['id']}/{late['token']}/callback",
                                   {"type": 4, "data": {"content": "late"}})
            assert (status, body["code"]) == (404, 10062)

            # the node that took an invocation is killed before its window closes: the
            # window closes all the same (a late answer is 10062 on the node left)
            node, status, _ = call(served, alice_token, "POST", "/interactions", invocation)
            assert status == 204
            orphan = bot.next_dispatch("INTERACTION_CREATE")
            os.kill(nodes[node]["pid"], signal.SIGKILL)  # its supervisor restarts it
            time.sleep(3.2)
            status, body = settled(served, "POST",
                                   f"/interactions/{orphan['id']}/{orphan['token']}/callback",
                                   {"type": 4, "data": {"content": "late"}})
            assert (status, body["code"]) == (404, 10062)
        finally:
            bot.close()
            alice.close()
