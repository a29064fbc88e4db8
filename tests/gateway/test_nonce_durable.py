"""``enforce_nonce`` outlives the channel actor that saw the first send (issue 10,
finding 7): after the channel is passivated (its in-memory cache is gone) a retried send
with the same nonce gets the first message back, and history holds exactly one. Also:
a claim whose message was never written (cut short by a crash) is completed under the
claimed id, not duplicated. The restart and move cases run with real node processes in
tests/cluster/test_nonce_restart.py."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp

from actors.registry import GetRegistryStats, RegistryStats
from storage.model import Message, MessageCreate
from tests.gateway.harness import Running, run, running_gateway
from tests.gateway.test_rest import call


async def passivated(r: Running, at_least: int) -> RegistryStats:
    """Poll the registry until ``at_least`` entities were passivated and none is live."""
    base, registry = r.gateway.base, r.gateway.ctx.registry
    while True:
        stats = await base.ask_async(registry, GetRegistryStats(), 5)
        if stats.passivations >= at_least and stats.entries == 0:
            return stats
        await asyncio.sleep(0.05)


def test_an_enforced_nonce_is_found_after_the_channel_is_passivated(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_gateway(tmp_path, entity_idle_timeout_s=0.2) as r, \
                aiohttp.ClientSession() as http:
            path = f"/channels/{r.seeded.channel_id}/messages"
            body = {"content": "once", "nonce": "p-1", "enforce_nonce": True}
            status, first, _ = await call(http, r, "POST", path, r.seeded.token, json=body)
            assert status == 200, first
            await passivated(r, 1)  # the channel (and its guild) stopped: cache gone
            status, again, _ = await call(http, r, "POST", path, r.seeded.token, json=body)
            assert status == 200 and again["id"] == first["id"], (first, again)
            assert again["content"] == "once" and again["nonce"] == "p-1"
            # without enforce_nonce, the same nonce is a new message (Discord)
            plain = {"content": "twice", "nonce": "p-1"}
            _, other, _ = await call(http, r, "POST", path, r.seeded.token, json=plain)
            assert other["id"] != first["id"]
            _, history, _ = await call(http, r, "GET", path, r.seeded.token)
            assert sorted(m["id"] for m in history) == sorted([first["id"], other["id"]])

    run(main)


def test_a_claim_without_its_message_is_completed_under_the_claimed_id(tmp_path: Path) -> None:
    """A crash between the claim and the message (possible on Cassandra: they are two
    partitions) leaves a claim alone; the retry writes the message under that id."""
    from storage.messages import FindNonce, NonceFound

    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            storage, cid = r.gateway.storage, r.seeded.channel_id
            claimed = r.gateway.ctx.snowflakes.next_id()
            # the claim alone: its message row deleted as if it never landed
            await storage.apply([MessageCreate(Message(
                channel_id=cid, id=claimed, author_id=r.seeded.user_id, content="lost",
                nonce="c-1"), claim_nonce=True)])
            await storage._call(lambda: storage._db().execute(  # noqa: SLF001
                "DELETE FROM messages WHERE message_id = ?", (claimed,)))
            found = await r.gateway.base.ask_async(
                r.gateway.ctx.storage_actor, FindNonce(1, cid, r.seeded.user_id, "c-1"), 5)
            assert found == NonceFound(1, claimed, None)
            body = {"content": "retried", "nonce": "c-1", "enforce_nonce": True}
            path = f"/channels/{cid}/messages"
            status, sent, _ = await call(http, r, "POST", path, r.seeded.token, json=body)
            assert status == 200 and sent["id"] == str(claimed), sent
            _, history, _ = await call(http, r, "GET", path, r.seeded.token)
            assert [(m["id"], m["content"]) for m in history] == [(str(claimed), "retried")]

    run(main)
