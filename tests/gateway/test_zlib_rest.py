"""A resting zlib-stream with a real client: hikari (zlib-stream, ``zlib.decompressobj``
as discord.py's decoder too) keeps reading a connection whose server deflater rested
between messages (``gateway.protocol.compression``: an idle connection holds none),
including after heartbeat ACKs sent while it rested."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest

from gateway.protocol import GatewayConfig
from tests.gateway.harness import run, running_gateway
from tests.gateway.libraries import HikariBot

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
            bot = HikariBot(r.seeded.token, r.gateway.rest_url, {
                "ready": hikari.ShardReadyEvent, "message": hikari.GuildMessageCreateEvent})
            await bot.start(until="ready")
            try:
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
                    got = await bot.expect("message")
                    assert got.content == f"after rest {n} " * 20
                latency = bot.bot.heartbeat_latency
                assert bot.bot.is_alive and latency == latency  # not NaN
            finally:
                await bot.close()

    run(main, timeout=60)
