"""A request whose owner is on a node this node cannot reach (the view still names it;
the data plane has no link to it): REST answers 503 with ``Retry-After`` and the
ingress 503 ``failed`` at once — not after the 15 s ask timeout."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from cluster.data_plane import DataPlane
from cluster.placement import Placement
from cluster.view import ClusterView
from gateway.ingress_client import IngressClient, IngressRequestError
from gateway.ingress_messages import FAILED
from tests.gateway.harness import run, running_gateway

SECRET = "unreachable-owner-secret"


def test_rest_and_ingress_answer_503_at_once_for_an_owner_on_an_unreachable_node(
        tmp_path: Path):
    view = ClusterView("me", hosts_entities=False)
    view.placement = Placement(["gone"])  # every guild is placed on node "gone"

    async def main() -> None:
        async with running_gateway(tmp_path, cluster=view, ingress_secret=SECRET) as r, \
                aiohttp.ClientSession() as http, \
                IngressClient(r.gateway.ingress_url, SECRET) as ingress:
            base = r.gateway.base
            view.me = base.node
            plane = DataPlane(base, b"secret")  # the node's router; "gone" is no peer
            await plane.start()
            try:
                url = f"{r.gateway.rest_url}/channels/{r.seeded.channel_id}/messages"
                async with http.post(url, json={"content": "to nowhere"}, headers={
                        "Authorization": f"Bot {r.seeded.token}"}) as answer:
                    body = await answer.json(content_type=None)
                    assert answer.status == 503, body
                    assert answer.headers["Retry-After"] == "1"
                    assert body["code"] == 0 and "gone" in body["message"], body
                with pytest.raises(IngressRequestError) as refused:
                    await ingress.post_system_message(r.seeded.channel_id, "to nowhere")
                assert refused.value.code == FAILED and refused.value.status == 503
                assert "not delivered, retry" in str(refused.value)
            finally:
                await plane.close()

    run(main, timeout=60)
