"""A resting zlib-stream with a real client: hikari (zlib-stream, ``zlib.decompressobj``
as discord.py's decoder too) keeps reading a connection whose server deflater rested
between messages (``gateway.protocol.compression``: an idle connection holds none),
including after heartbeat ACKs sent while it rested."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.protocol import GatewayConfig
from tests.gateway.harness import run, running_gateway

#: short enough that a test sees two quiet intervals quickly
REST_S = 0.1


def test_hikari_reads_a_zlib_stream_that_rests_and_wakes(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    hikari = pytest.importorskip("hikari")
    from hikari.api.shard import GatewayCompression
    from hikari.impl import shard as shard_impl

    monkeypatch.setitem(shard_impl.GatewayShardImpl.__init__.__kwdefaults__, "compression",
                        GatewayCompression("transport_zlib_stream"))

    async def main() -> None:
        config = GatewayConfig(compression_rest_s=REST_S, heartbeat_interval_ms=300)
        async with running_gateway(tmp_path, config) as r, aiohttp.ClientSession() as http:
            bot = hikari.GatewayBot(
                r.seeded.token, rest_url=r.gateway.rest_url, banner=None, logs=None,
                suppress_optimization_warning=True,
                intents=hikari.Intents.ALL_UNPRIVILEGED | hikari.Intents.MESSAGE_CONTENT)
            ready = asyncio.Event()
            messages: asyncio.Queue = asyncio.Queue()

            async def on_ready(event: Any) -> None:
                ready.set()

            async def on_message(event: Any) -> None:
                await messages.put(event)

            bot.subscribe(hikari.ShardReadyEvent, on_ready)
            bot.subscribe(hikari.GuildMessageCreateEvent, on_message)
            await asyncio.wait_for(bot.start(check_for_updates=False), 10)
            try:
                await asyncio.wait_for(ready.wait(), 10)
                [link] = [link for link in r.gateway.links if link.conn.session_id]
                compressor = link.conn._compressor
                assert link.conn.params.compress == "zlib-stream"
                for n in range(3):
                    await asyncio.sleep(0.7)  # heartbeats (every 0.3 s) and ACKs, resting
                    deadline = asyncio.get_running_loop().time() + 10
                    while not compressor.resting:  # idle: heartbeats and ACKs only
                        assert asyncio.get_running_loop().time() < deadline, \
                            "the deflater never rested"
                        await asyncio.sleep(0.05)
                    async with http.post(
                            f"{r.gateway.rest_url}/channels/{r.seeded.channel_id}/messages",
                            json={"content": f"after rest {n} " * 20},
                            headers={"Authorization": f"Bot {r.other_token}"}) as resp:
                        assert resp.status == 200, await resp.text()
                    got = await asyncio.wait_for(messages.get(), 10)
                    assert got.content == f"after rest {n} " * 20
                assert bot.is_alive and bot.heartbeat_latency == bot.heartbeat_latency  # not NaN
            finally:
                await bot.close()

    run(main, timeout=60)
