"""``gateway.stages``: a posted message is timed at each stage of its way to the
sockets, once per message (not per recipient), and only creates are timed."""

from __future__ import annotations

from pathlib import Path

import aiohttp

from gateway.stages import STAGES, _stage
from tests.gateway.harness import run, running_gateway
from tests.gateway.test_gateway_socket import identified, post, recv


def _counts() -> dict[str, int]:
    return {stage: _stage.count(stage=stage) for stage in STAGES}


def test_each_stage_of_a_post_is_timed_once(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            ws, _ = await identified(http, r)
            before = _counts()
            for n in range(3):
                async with post(http, r, r.other_token, f"timed {n}") as resp:
                    assert resp.status == 200, await resp.text()
                    sent = await resp.json()
                while (event := await recv(ws))["t"] != "MESSAGE_CREATE":
                    pass
                assert event["d"]["id"] == sent["id"]
            url = f"{r.gateway.rest_url}/channels/{r.seeded.channel_id}/messages/{sent['id']}"
            async with http.patch(url, json={"content": "edited"},
                                  headers={"Authorization": f"Bot {r.other_token}"}) as resp:
                assert resp.status == 200, await resp.text()
            while (await recv(ws))["t"] != "MESSAGE_UPDATE":
                pass
            after = _counts()
            # three creates, each once per stage; the edit is not a timed create
            assert {s: after[s] - before[s] for s in STAGES} == dict.fromkeys(STAGES, 3)
            await ws.close()

    run(main, timeout=30)
