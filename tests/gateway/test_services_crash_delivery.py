"""A node service crashing under load loses nothing acknowledged (issue 10), over real
sockets: a client stays connected while posts flow and the service dies.

* registry: its guild and channel actors end with it; the posts acknowledged before
  the session's guild answers again reach the client from storage (the session's
  catch-up), each once, in the channel's order.
* fan-out point: the dispatches queued behind its crash are gone; its next incarnation
  has every local session catch up from storage.
* storage actor: its queued writes are sent again (same snowflake) to the next
  incarnation, so a post is acknowledged once (or refused at once), never left to the
  REST timeout.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp

from actors.address import Address
from cluster.routing import ENTITY_REGISTRY_ID
from gateway.fanout import FANOUT_ID
from gateway.services import STORAGE_ID
from tests.gateway.harness import Running, run, running_gateway
from tests.gateway.test_gateway_socket import identified
from tests.gateway.test_node_services_supervised import Reader, history, restarted

#: concurrent posters, so that the services' mailboxes are never empty
POSTERS = 3
#: a post not answered within this long counts as not acknowledged (REST's own ask
#: timeout is 15 s: a post that waits for it is what the storage case must not do)
POST_TIMEOUT_S = 5.0


async def post(http: aiohttp.ClientSession, r: Running, content: str
               ) -> tuple[int | None, str | None, float]:
    """(status, message id if acknowledged, seconds taken); status None: no answer in
    ``POST_TIMEOUT_S``."""
    started = time.monotonic()
    try:
        async with http.post(
                f"{r.gateway.rest_url}/channels/{r.seeded.channel_id}/messages",
                json={"content": content}, headers={"Authorization": f"Bot {r.seeded.token}"},
                timeout=aiohttp.ClientTimeout(total=POST_TIMEOUT_S)) as resp:
            body = await resp.json()
            return (resp.status, body["id"] if resp.status == 200 else None,
                    time.monotonic() - started)
    except TimeoutError:
        return None, None, time.monotonic() - started


class Load:
    """``POSTERS`` clients posting one after another until ``stop``; the acknowledged
    ids in the order their answers came."""

    def __init__(self, http: aiohttp.ClientSession, r: Running) -> None:
        self.acked: list[str] = []
        #: (status, seconds) of each post neither acknowledged nor refused with a 503
        #: within 2 s
        self.slow: list[tuple[int | None, float]] = []
        self.contents: dict[str, str] = {}  # acknowledged id -> content
        self._stop = False
        self._tasks = [asyncio.ensure_future(self._poster(http, r, n)) for n in range(POSTERS)]

    async def _poster(self, http: aiohttp.ClientSession, r: Running, n: int) -> None:
        i = 0
        while not self._stop:
            content = f"poster {n} post {i}"
            status, message_id, took = await post(http, r, content)
            if message_id is not None:
                self.acked.append(message_id)
                self.contents[message_id] = content
            if took >= 2.0 or status not in (200, 503):
                self.slow.append((status, took))
            i += 1

    async def until(self, count: int, timeout: float = 15.0) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while len(self.acked) < count and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)
        assert len(self.acked) >= count, f"only {len(self.acked)} of {count} acknowledged"

    async def stop(self) -> None:
        self._stop = True
        await asyncio.gather(*self._tasks)


async def delivered_once_in_order(http: aiohttp.ClientSession, r: Running,
                                  reader: Reader, acked: list[str]) -> None:
    await reader.wait_for(set(acked))
    assert reader.closed is None, reader.closed
    missing = set(acked) - reader.ids
    assert not missing, f"{len(missing)} of {len(acked)} acknowledged posts never delivered"
    assert len(reader.order) == len(reader.ids), "a post was delivered twice"
    assert reader.order == sorted(reader.order, key=int), "delivered out of the channel's order"
    assert set(acked) <= await history(http, r)


async def backlog(cell: Any, count: int, timeout: float = 10.0) -> None:
    """Hold ``cell``'s turns (it looks scheduled to the runtime) until ``count``
    messages wait in its mailbox: the backlog a crash then drops. Taken between two of
    its turns: one the runtime has queued already would still run (and let go)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while cell.scheduled and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0)
    cell.scheduled = True
    while len(cell.mailbox or ()) < count and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.005)
    assert len(cell.mailbox or ()) >= count, "no backlog built up"


def test_registry_killed_under_load_every_acked_post_is_delivered_once(
        tmp_path: Path) -> None:
    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            base = r.gateway.base
            reader = Reader((await identified(http, r))[0])
            load = Load(http, r)
            await load.until(10)
            before = base.cells[ENTITY_REGISTRY_ID]
            base.kill_brutally(Address(base.node, ENTITY_REGISTRY_ID))
            assert await restarted(r, ENTITY_REGISTRY_ID, before) is not None
            await load.until(len(load.acked) + 40)  # through the re-subscription
            await load.stop()
            await delivered_once_in_order(http, r, reader, load.acked)

    run(main, timeout=60)


def test_fanout_point_killed_with_a_backlog_every_acked_post_is_delivered_once(
        tmp_path: Path) -> None:
    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            base = r.gateway.base
            reader = Reader((await identified(http, r))[0])
            load = Load(http, r)
            await load.until(10)
            before = base.cells[FANOUT_ID]
            await backlog(before, 5)  # acknowledged, queued for delivery
            base.kill_brutally(Address(base.node, FANOUT_ID))
            assert await restarted(r, FANOUT_ID, before) is not None
            await load.until(len(load.acked) + 20)
            await load.stop()
            await delivered_once_in_order(http, r, reader, load.acked)

    run(main, timeout=60)


def test_storage_killed_with_writes_queued_each_post_acked_once_or_refused_at_once(
        tmp_path: Path) -> None:
    queued = 8

    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            base = r.gateway.base
            reader = Reader((await identified(http, r))[0])
            before = base.cells[STORAGE_ID]
            posts = [asyncio.ensure_future(post(http, r, f"queued {i}"))
                     for i in range(queued)]
            await backlog(before, queued)  # held before the posts run: they queue up
            base.kill_brutally(Address(base.node, STORAGE_ID))
            assert await restarted(r, STORAGE_ID, before) is not None
            answers = await asyncio.gather(*posts)
            acked = [message_id for _, message_id, _ in answers if message_id is not None]
            for status, _, took in answers:
                assert status == 200 or (status == 503 and took < 2.0), (status, took)
            assert len(acked) == len(set(acked))
            stored = await history(http, r)
            assert set(acked) <= stored
            # never acknowledged twice, nor stored twice: one message per post
            async with http.get(
                    f"{r.gateway.rest_url}/channels/{r.seeded.channel_id}/messages",
                    params={"limit": "100"},
                    headers={"Authorization": f"Bot {r.seeded.token}"}) as resp:
                contents = [m["content"] for m in await resp.json()]
            assert len(contents) == len(set(contents))
            await reader.wait_for(set(acked))
            assert set(acked) <= reader.ids
            assert len(reader.order) == len(reader.ids)
            # and the storage actor works on
            status, _, took = await post(http, r, "after the restart")
            assert status == 200 and took < 2.0

    run(main, timeout=60)


def test_storage_killed_under_load_every_acked_post_is_stored_and_delivered_once(
        tmp_path: Path) -> None:
    """Killed mid-stream: writes in its queue and in a flush go with it; each is written
    again by the next incarnation under the same snowflake."""
    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            base = r.gateway.base
            reader = Reader((await identified(http, r))[0])
            load = Load(http, r)
            await load.until(10)
            before = base.cells[STORAGE_ID]
            # mid-write: a batch at the database, or writes queued for one
            deadline = asyncio.get_running_loop().time() + 5.0
            while not (before.instance.in_flight_writes or before.instance.waiting) \
                    and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0)
            assert before.instance.in_flight_writes or before.instance.waiting
            base.kill_brutally(Address(base.node, STORAGE_ID))
            assert await restarted(r, STORAGE_ID, before) is not None
            await load.until(len(load.acked) + 20)
            await load.stop()
            assert not load.slow, load.slow
            await delivered_once_in_order(http, r, reader, load.acked)
            assert len(load.acked) == len(set(load.acked))
            async with http.get(
                    f"{r.gateway.rest_url}/channels/{r.seeded.channel_id}/messages",
                    params={"limit": "100"},
                    headers={"Authorization": f"Bot {r.seeded.token}"}) as resp:
                contents = [m["content"] for m in await resp.json()]
            assert len(contents) == len(set(contents))  # none stored twice

    run(main, timeout=60)
