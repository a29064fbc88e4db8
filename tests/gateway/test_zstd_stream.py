"""zstd-stream transport compression: one zstd frame per connection, flushed per payload.

Decoded the way the libraries decode it: discord.py keeps one ``zstandard``
``decompressobj()`` and feeds it each binary WebSocket message; hikari keeps one
``compression.zstd``/``backports.zstd`` ``ZstdDecompressor`` and JSON-decodes what one
``decompress`` of each message returns. Then the libraries themselves, unmodified:
discord.py (asks for zstd-stream whenever ``zstandard`` is importable) and hikari (its
default when ``backports.zstd`` is installed, as ``hikari[speedups]`` does) against a
real gateway.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import msgpack
import pytest
import zstandard
from backports import zstd as backports_zstd

from gateway.protocol import SendFrame, ZstdStreamCompressor, parse_connection_url
from gateway.protocol.compression import ZSTD_CHUNK_SIZE
from tests.gateway.harness import Running, run, running_gateway
from tests.gateway.libraries import (
    HikariBot,
    discordpy_client,
    discordpy_running,
    import_discord,
    point_discordpy_at,
)
from tests.gateway.scripted_client import ScriptedClient

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def discordpy_decoder() -> Callable[[bytes], bytes]:
    """discord.py's ``_ZstdDecompressionContext``: one ``decompressobj`` a connection."""
    return zstandard.ZstdDecompressor().decompressobj().decompress


def hikari_decoder() -> Callable[[bytes], bytes]:
    """hikari's ``_GatewayZstdStreamTransport``: one ``ZstdDecompressor`` a connection."""
    return backports_zstd.ZstdDecompressor().decompress


DECODERS = {"discord.py": discordpy_decoder, "hikari": hikari_decoder}


class ZstdScriptedClient(ScriptedClient):
    """The scripted client, reading every frame as one whole zstd-stream payload."""

    def __init__(self, url: str, decoder: Callable[[], Callable[[bytes], bytes]]) -> None:
        self._decompress = decoder()
        super().__init__(url)

    def decode_frame(self, frame: SendFrame) -> dict[str, Any] | None:
        self.text_frames.append(frame.text)
        data = self._decompress(frame.data)  # one frame, one whole payload: never partial
        if self.params.encoding == "msgpack":
            return msgpack.unpackb(data, raw=False)
        return json.loads(data)


# -- the URL --------------------------------------------------------------------------------


@pytest.mark.parametrize(("query", "compress"), [
    ("v=10&encoding=json&compress=zstd-stream", "zstd-stream"),
    ("v=10&encoding=msgpack&compress=zstd-stream", "zstd-stream"),
    ("v=10&encoding=json&compress=zlib-stream", "zlib-stream"),
    ("v=10&encoding=json&compress=lz4", None),  # unknown: served uncompressed, as before
    ("v=10&encoding=json&compress=", None),
    ("v=10&encoding=json", None),
])
def test_compress_parameter(query: str, compress: str | None) -> None:
    params = parse_connection_url(query)
    assert params.compress == compress and params.close_code is None
    assert params.zlib_stream is (compress == "zlib-stream")


# -- sans-I/O ---------------------------------------------------------------------------------


@pytest.mark.parametrize("library", list(DECODERS))
@pytest.mark.parametrize("encoding", ["json", "msgpack"])
def test_every_frame_decodes_to_its_whole_payload(library: str, encoding: str) -> None:
    client = ZstdScriptedClient(f"/?v=10&encoding={encoding}&compress=zstd-stream",
                                DECODERS[library])
    [hello_frame] = [e for e in client.start_effects if isinstance(e, SendFrame)]
    assert hello_frame.data[:4] == ZSTD_MAGIC and hello_frame.text is False
    frame_params = zstandard.get_frame_parameters(hello_frame.data)
    assert frame_params.window_size == 1 << 12 and not frame_params.has_checksum
    assert client.start_payloads[0]["op"] == 10

    ready, guild_create = client.ready()
    assert (ready["t"], guild_create["t"]) == ("READY", "GUILD_CREATE")
    rng = random.Random(12)
    for i in range(200):
        # small repeats, and now and then a payload whose compressed bytes span several
        # of the chunker's 4 KiB chunks (random text barely compresses)
        content = "hello " * (i % 40)
        if i % 25 == 0:
            content = "".join(rng.choice("0123456789abcdef") for _ in range(3 * ZSTD_CHUNK_SIZE))
        effects = client.conn.dispatch_event("MESSAGE_CREATE", {"content": content, "n": i})
        [frame] = effects
        assert frame.text is False and frame.data[:4] != ZSTD_MAGIC  # one frame, never a new one
        [message] = client.payloads(effects)
        assert message["d"] == {"content": content, "n": i} and message["s"] == 3 + i
    assert set(client.text_frames) == {False}


def test_one_stream_per_connection_so_repeats_shrink() -> None:
    compressor = ZstdStreamCompressor()
    payload = b'{"t":"MESSAGE_CREATE","s":1,"op":0,"d":{"content":"the same words again"}}'
    first, second = compressor.compress(payload), compressor.compress(payload)
    assert len(second) < len(first) // 2
    decompress = discordpy_decoder()
    assert decompress(first) == payload and decompress(second) == payload


def test_replay_after_resume_decompresses_on_the_new_stream() -> None:
    old = ZstdScriptedClient("/?v=10&encoding=json&compress=zstd-stream", hikari_decoder)
    old.ready()
    old.conn.dispatch_event("MESSAGE_CREATE", {"n": 1})
    old.conn.connection_lost(None)
    new = ZstdScriptedClient("/?v=10&encoding=json&compress=zstd-stream", hikari_decoder)
    new.send({"op": 6, "d": {"token": "t", "session_id": "session-1", "seq": 1}})
    payloads = new.payloads(new.conn.resume_ok(old.conn.log, intents=513))
    assert [(p["t"], p["s"]) for p in payloads] == [
        ("GUILD_CREATE", 2), ("MESSAGE_CREATE", 3), ("RESUMED", 4)]


def test_a_connection_refused_by_its_url_gets_no_stream() -> None:
    client = ScriptedClient("/?v=9&encoding=json&compress=zstd-stream")
    assert client.conn._compressor is None and client.conn.close_code == 4012


#: RSS growth of ``count`` compressors, each with its window full and one 64 KB payload
#: sent (a READY or a large GUILD_CREATE), in a fresh interpreter (``compressobj()``
#: instead of the chunker measures ~90 KiB here; zstd's level-1 defaults ~1.3 MiB).
_RSS_SCRIPT = textwrap.dedent("""
    import gc, json, os, random, sys
    from gateway.protocol.compression import ZstdStreamCompressor

    def rss_kib():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024

    rng = random.Random(1)
    words = ["".join(rng.choice("etaoinshrdlu") for _ in range(rng.randrange(1, 9)))
             for _ in range(2000)]
    payloads = [json.dumps({"t": "MESSAGE_CREATE", "s": i, "op": 0, "d": {
        "id": str(10**18 + i * 4194304), "content": " ".join(rng.choices(words, k=40))}}
        ).encode() for i in range(40)]
    # a large payload that compresses to ~half: ~32 KiB of output in one flush
    large = rng.randbytes(32768).hex().encode()
    count = int(sys.argv[1])
    gc.collect()
    before = rss_kib()
    kept = []
    for _ in range(count):
        compressor = ZstdStreamCompressor()
        for payload in payloads:
            compressor.compress(payload)
        compressor.compress(large)
        kept.append(compressor)
    gc.collect()
    print((rss_kib() - before) / count)
""")


def test_a_connections_compressor_memory_is_bounded() -> None:
    """~62 KiB measured here (~57 KiB in the module docstring's bench, whose large payload
    compresses better): the 4 KiB chunks bound what a large payload leaves resident,
    where ``compressobj``'s 128 KiB output buffer keeps what it filled."""
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", _RSS_SCRIPT, "400"], cwd=root, check=True,
                         capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(root)})
    per_connection_kib = float(out.stdout)
    assert per_connection_kib < 72, per_connection_kib
    # zstd's own account of the context (window, hash table, buffers, entropy tables)
    assert ZstdStreamCompressor()._cctx.memory_size() < 64 * 1024


# -- a real socket, decoded as the libraries decode it ----------------------------------------


async def _zstd_session(r: Running, http: aiohttp.ClientSession,
                        decompress: Callable[[bytes], bytes]) -> None:
    ws = await http.ws_connect(f"{r.gateway.gateway_url}/?v=10&encoding=json&compress=zstd-stream")

    async def zrecv() -> dict[str, Any]:
        msg = await ws.receive(5)
        assert msg.type is aiohttp.WSMsgType.BINARY, (msg.type, msg.data)
        return json.loads(decompress(msg.data))

    assert (await zrecv())["op"] == 10
    await ws.send_json({"op": 2, "d": {"token": r.seeded.token, "intents": 1 | 512 | 32768,
                                       "properties": {"os": "linux", "browser": "t",
                                                      "device": "t"}}})
    assert (await zrecv())["t"] == "READY"
    assert (await zrecv())["t"] == "GUILD_CREATE"
    sent = ["ping", "x" * 2000, "".join(random.Random(3).choices("abcdefghij", k=1900))]
    for content in sent:
        async with http.post(f"{r.gateway.rest_url}/channels/{r.seeded.channel_id}/messages",
                             json={"content": content},
                             headers={"Authorization": f"Bot {r.other_token}"}) as resp:
            assert resp.status == 200, await resp.text()
    got = []
    while len(got) < len(sent):
        payload = await zrecv()
        if payload["t"] == "MESSAGE_CREATE":
            got.append(payload["d"]["content"])
    assert got == sent
    await ws.send_json({"op": 1, "d": 5})
    assert (await zrecv())["op"] == 11
    await ws.close()


@pytest.mark.parametrize("library", list(DECODERS))
def test_zstd_stream_over_a_real_socket(tmp_path: Path, library: str) -> None:
    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            await _zstd_session(r, http, DECODERS[library]())

    run(main)


# -- the libraries ----------------------------------------------------------------------------


def _served_compressions(r: Running) -> list[str | None]:
    return [link.conn.params.compress for link in r.gateway.links if link.conn.session_id]


def test_discordpy_connects_with_zstd_stream(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                             ) -> None:
    utils = import_discord().utils

    # what discord.py chose at import: zstd-stream, since zstandard is importable
    assert utils._ActiveDecompressionContext.COMPRESSION_TYPE == "zstd-stream"

    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            point_discordpy_at(monkeypatch, r.gateway)
            client = discordpy_client()
            received: asyncio.Queue = asyncio.Queue()

            @client.event
            async def on_message(message) -> None:  # type: ignore[no-untyped-def]
                await received.put(message)

            async with discordpy_running(client, r.seeded.token):
                assert [g.id for g in client.guilds] == [r.seeded.guild_id]
                assert _served_compressions(r) == ["zstd-stream"]
                async with http.post(
                        f"{r.gateway.rest_url}/channels/{r.seeded.channel_id}/messages",
                        json={"content": "over zstd"},
                        headers={"Authorization": f"Bot {r.other_token}"}) as resp:
                    assert resp.status == 200, await resp.text()
                got = await asyncio.wait_for(received.get(), 10)
                assert got.content == "over zstd" and got.author.id == r.other_id

    run(main, timeout=30)


@pytest.mark.parametrize("compression", ["transport_zstd_stream", "transport_zlib_stream"])
def test_hikari_connects_with_its_compression(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              compression: str) -> None:
    hikari = pytest.importorskip("hikari")
    from hikari.api.shard import GatewayCompression
    from hikari.impl import shard as shard_impl

    # zstd-stream is hikari's default here (backports.zstd installed, as with
    # hikari[speedups]); GatewayBot has no option for it, so the shard's default is set
    assert shard_impl._DEFAULT_COMPRESS_TYPE == "transport_zstd_stream"
    monkeypatch.setitem(shard_impl.GatewayShardImpl.__init__.__kwdefaults__, "compression",
                        GatewayCompression(compression))

    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            bot = HikariBot(r.seeded.token, r.gateway.rest_url, {
                "ready": hikari.ShardReadyEvent, "message": hikari.GuildMessageCreateEvent})
            await bot.start(until="ready")
            try:
                assert _served_compressions(r) == [compression.removeprefix("transport_")
                                                   .replace("_", "-")]
                async with http.post(
                        f"{r.gateway.rest_url}/channels/{r.seeded.channel_id}/messages",
                        json={"content": "over " + compression},
                        headers={"Authorization": f"Bot {r.other_token}"}) as resp:
                    assert resp.status == 200, await resp.text()
                got = await bot.expect("message")
                assert got.content == "over " + compression and got.author_id == r.other_id
            finally:
                await bot.close()

    run(main, timeout=30)
