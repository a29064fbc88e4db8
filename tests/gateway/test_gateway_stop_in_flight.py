"""A gateway stops while a REST request waits on an owner that never answers: ``stop()``
does not wait out the request (its 15 s ask); the request's connection is closed."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp

from cluster.placement import Placement
from cluster.view import ClusterView
from tests.gateway.harness import run, running_gateway


def test_stop_does_not_wait_for_a_rest_request_whose_owner_never_answers(tmp_path: Path):
    # The view names another node as every guild's owner, and this process has no data
    # plane: a post is forwarded nowhere and its ask would wait its whole timeout.
    view = ClusterView("me", hosts_entities=False)
    view.placement = Placement(["elsewhere"])

    async def main() -> BaseException | int:
        async with aiohttp.ClientSession() as http:
            async with running_gateway(tmp_path, cluster=view) as r:
                view.me = r.gateway.base.node
                url = f"{r.gateway.rest_url}/channels/{r.seeded.channel_id}/messages"
                waiting = asyncio.ensure_future(http.post(
                    url, json={"content": "never answered"},
                    headers={"Authorization": f"Bot {r.seeded.token}"}))
                while not r.gateway.base.stats["dead_letters"]:  # it was forwarded
                    await asyncio.sleep(0.01)
                await r.gateway.stop()
            try:
                answer = await waiting
            except aiohttp.ClientError as err:
                return err
            return answer.status

    outcome = run(main, timeout=60)
    # cut off by the stop, not answered by the ask's timeout (a 503 "upstream timed out")
    assert isinstance(outcome, aiohttp.ServerDisconnectedError), outcome
