"""DMs across node processes: ``greenroom run --nodes 2`` (one gateway from both, on one
SQLite file). The bot's session is on one node, alice's on the other; whichever node the
DM's channel actor lands on (placed by the channel's id), both sessions get the DM's
events. Both users open the DM at once through REST served by either node: one channel."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from gateway.seed import add_member, create_user
from storage.settings import StorageSettings
from storage.snowflake import SnowflakeGenerator
from storage.sqlite import SqliteStorage
from tests.cluster.test_scale_out import NODES, made_on, running

DMS = 1 << 12 | 1 << 14  # DIRECT_MESSAGES, DIRECT_MESSAGE_TYPING


async def add_alice(db: Path, guild_id: int) -> tuple[int, str]:
    """A user in the seeded guild, written to the run's database as an operator's seed
    would be (the nodes read users and tokens from storage)."""
    storage = SqliteStorage(StorageSettings(sqlite_path=str(db), sqlite_synchronous="NORMAL"))
    await storage.open()
    try:
        user_id, token = await create_user(storage, SnowflakeGenerator(worker=30), "alice",
                                           bot=False)
        await add_member(storage, guild_id, user_id)
        return user_id, token
    finally:
        await storage.close()


def rest(served: dict, token: str, method: str, path: str, body: dict | None = None
         ) -> tuple[str, Any]:
    """One request on a new connection (the kernel picks the node); the serving node and
    the JSON answer."""
    request = urllib.request.Request(
        f"{served['rest_url']}{path}", method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bot {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=15) as response:
        raw = response.read()
        return response.headers["X-Greenroom-Node"], json.loads(raw) if raw else None


class Session:
    def __init__(self, served: dict, token: str) -> None:
        from websockets.sync.client import connect

        self._connection = connect(f"{served['gateway_url']}/?v=10&encoding=json",
                                   open_timeout=10, close_timeout=2)
        self.ws = self._connection.__enter__()
        assert json.loads(self.ws.recv(timeout=10))["op"] == 10
        self.ws.send(json.dumps({"op": 2, "d": {
            "token": token, "intents": DMS,
            "properties": {"os": "linux", "browser": "test", "device": "test"}}}))
        self.node = self.next_dispatch("READY")["session_id"].split(".", 1)[0]

    def next_dispatch(self, event: str, timeout: float = 10.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            payload = json.loads(self.ws.recv(timeout=max(0.01, deadline - time.monotonic())))
            if payload.get("op") == 0 and payload.get("t") == event:
                return payload["d"]

    def close(self) -> None:
        self._connection.__exit__(None, None, None)


def session_on(node: str, served: dict, token: str, tries: int = 60) -> Session:
    for _ in range(tries):
        session = Session(served, token)
        if session.node == node:
            return session
        session.close()
    raise AssertionError(f"{tries} connections and none landed on {node}")


def test_dm_events_reach_sessions_on_both_nodes(tmp_path: Path) -> None:
    with running(tmp_path) as (served, _nodes):
        bot_token = served["bot_token"]
        alice_id, alice_token = asyncio.run(add_alice(tmp_path / "greenroom.db",
                                                      int(served["guild_id"])))
        bot = session_on(NODES[0], served, bot_token)
        alice = session_on(NODES[1], served, alice_token)
        try:
            _, me = rest(served, bot_token, "GET", "/users/@me")
            bot_id = me["id"]

            def open_dm(i: int) -> tuple[str, Any]:
                token, recipient = (bot_token, alice_id) if i % 2 else (alice_token, bot_id)
                return rest(served, token, "POST", "/users/@me/channels",
                            {"recipient_id": str(recipient)})

            # both open the DM at once, through REST on whichever node: one channel
            with ThreadPoolExecutor(8) as pool:
                opens = list(pool.map(open_dm, range(8)))
            assert len({answer["id"] for _, answer in opens}) == 1
            assert {node for node, _ in opens} <= set(NODES)
            channel = opens[0][1]["id"]

            _, hello = rest(served, bot_token, "POST", f"/channels/{channel}/messages",
                            {"content": "hello alice"})
            _, reply = rest(served, alice_token, "POST", f"/channels/{channel}/messages",
                            {"content": "hello bot"})
            owner = made_on(hello["id"])  # the node of the DM's channel actor
            assert made_on(reply["id"]) == owner
            for session in (bot, alice):
                assert session.next_dispatch("MESSAGE_CREATE")["id"] == hello["id"]
                got = session.next_dispatch("MESSAGE_CREATE")
                assert got["id"] == reply["id"] and got["content"] == "hello bot"
                assert "guild_id" not in got
            rest(served, alice_token, "POST", f"/channels/{channel}/typing")
            typing = bot.next_dispatch("TYPING_START")
            assert typing["user_id"] == str(alice_id) and typing["channel_id"] == channel
        finally:
            bot.close()
            alice.close()
