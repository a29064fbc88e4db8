"""A gateway stops with clients still connected: each WebSocket gets a close frame
(1001, going away: the client may RESUME elsewhere) and stop() returns."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp

from tests.gateway.harness import run, running_gateway
from tests.gateway.test_gateway_socket import identified
from tests.gateway.test_rest import call


def test_a_gateway_with_connected_clients_stops_and_closes_their_sockets(tmp_path: Path):
    async def main() -> list[int | None]:
        async with aiohttp.ClientSession() as http:
            async with running_gateway(tmp_path) as r:
                sockets = [(await identified(http, r))[0] for _ in range(2)]
                # an idle keep-alive REST connection stays open too
                status, _, _ = await call(http, r, "GET", "/gateway")
                assert status == 200
                # generous bound: a stop that hangs fails here instead of the suite
                await asyncio.wait_for(r.gateway.stop(), 30)
                codes = []
                for ws in sockets:
                    while (msg := await ws.receive(30)).type not in (
                            aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED,
                            aiohttp.WSMsgType.CLOSING):
                        pass
                    codes.append(ws.close_code if msg.data is None else msg.data)
                return codes

    assert run(main, timeout=90) == [1001, 1001]
