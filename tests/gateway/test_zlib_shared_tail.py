"""A big fan-out's zlib-stream frames: the recipient's head as a stored block, then one
deflated tail shared by all (gateway/protocol/compression.py, ``compress_spliced``).
Every client keeps one inflater per connection (discord.py and hikari:
``zlib.decompressobj``; discord.js: zlib-sync, zlib's own inflate as Node's is): the
spliced frames, per-connection frames, stored ACKs and rests in any order are one
stream to it."""

from __future__ import annotations

import asyncio
import json
import sys
import zlib
from pathlib import Path
from typing import Any

import aiohttp
import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.protocol import (
    Encoding,
    GatewayConfig,
    PreparedDispatch,
    SendFrame,
    ZlibStreamCompressor,
)
from tests.gateway.harness import run, running_gateway
from tests.gateway.libraries import (
    HikariBot,
    as_alice,
    discordpy_client,
    discordpy_running,
    import_discord,
    node_inflate,
    on,
    point_discordpy_at,
    post_as_alice,
)

from .scripted_client import ZLIB_SUFFIX, ScriptedClient

ACK = b'{"op":11,"d":null}'

data_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.text(max_size=200),
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=10), inner,
                                                               max_size=6),
    max_leaves=30)

# one step of a connection's life; "fanout" is a dispatch sent to both connections with
# one shared tail, "splice" raw head and tail bytes (heads and tails of any content)
steps = st.lists(st.one_of(
    st.tuples(st.just("payload"), st.binary(max_size=3000)),
    st.tuples(st.just("ack"), st.just(ACK)),
    st.tuples(st.just("check"), st.just(None)),
    st.tuples(st.just("rest"), st.just(None)),
    st.tuples(st.just("fanout"), st.tuples(st.sampled_from(list(Encoding)),
                                            st.integers(min_value=0, max_value=2**40),
                                            data_values)),
    st.tuples(st.just("splice"), st.tuples(st.binary(max_size=300),
                                            st.binary(max_size=3000))),
), max_size=30)


def _fanout_frame(compressor: ZlibStreamCompressor, dispatch: PreparedDispatch,
                  seq: int, encoding: Encoding) -> bytes:
    """What ``GatewayConnection.dispatch_frame`` sends in a big fan-out."""
    return compressor.compress_spliced(
        dispatch.head(seq, encoding),
        dispatch.deflated_tail(f"{encoding.value}:1:12:5", encoding, compressor.deflate_alone))


#: the stream's first frame: HELLO, as the protocol sends it before anything else (a
#: rest before it would drop the zlib header), or a splice, after an ACK or not
openings = st.sampled_from([
    [("payload", b'{"op":10}')],
    [("splice", (b'{"op":10', b',"d":null}'))],
    [("ack", ACK), ("splice", (b"head", b"tail"))],
])


@settings(max_examples=150, deadline=None)
@given(openings, steps)
def test_spliced_frames_are_one_stream_to_a_clients_inflater(opening, script):
    # two connections in one fan-out: the tail is made once and spliced into both
    conns = [(ZlibStreamCompressor(), zlib.decompressobj()) for _ in range(2)]
    script = [*opening, *script]
    for kind, arg in script:
        if kind == "fanout":
            encoding, seq, data = arg
            dispatch = PreparedDispatch("MESSAGE_CREATE", data)
            dispatch.fanout = 1000
        for n, (compressor, inflate) in enumerate(conns):
            if kind == "check":
                compressor.rest_if_idle()
                continue
            if kind == "rest":
                compressor.rest()
                continue
            if kind == "ack":
                frame, payload = compressor.compress_control(arg), arg
            elif kind == "payload":
                frame, payload = compressor.compress(arg), arg
            elif kind == "splice":
                head, suffix = arg
                frame = compressor.compress_spliced(head, compressor.deflate_alone(suffix))
                payload = head + suffix
                assert compressor.resting
            else:
                frame = _fanout_frame(compressor, dispatch, seq + n, encoding)
                payload = dispatch.frame(seq + n, encoding)
                assert compressor.resting
            assert frame.endswith(ZLIB_SUFFIX)
            assert inflate.decompress(frame) == payload
        if kind == "fanout":  # one tail for both connections, per the encoding
            assert len(dispatch._tails) == 1
    for _compressor, inflate in conns:
        assert not inflate.unused_data and not inflate.eof


def test_a_fanout_frame_decodes_to_the_dispatch_in_both_encodings():
    data = {"id": "1", "content": "hello " * 50, "n": [1, 2, {"x": None}]}
    for encoding, decode in ((Encoding.JSON, json.loads), (Encoding.MSGPACK, msgpack.unpackb)):
        dispatch = PreparedDispatch("MESSAGE_CREATE", data)
        compressor, inflate = ZlibStreamCompressor(), zlib.decompressobj()
        inflate.decompress(compressor.compress(b"HELLO"))
        for seq in (1, 127, 128, 65_536, 2**33):
            got = decode(inflate.decompress(_fanout_frame(compressor, dispatch, seq, encoding)))
            assert got == {"t": "MESSAGE_CREATE", "s": seq, "op": 0, "d": data}


def test_a_head_longer_than_a_stored_block_is_split():
    compressor, inflate = ZlibStreamCompressor(), zlib.decompressobj()
    inflate.decompress(compressor.compress(b"HELLO"))
    head = bytes(range(256)) * 300  # 76,800 bytes: two stored blocks
    frame = compressor.compress_spliced(head, compressor.deflate_alone(b"tail"))
    assert inflate.decompress(frame) == head + b"tail"
    assert inflate.decompress(compressor.compress(b"awake")) == b"awake"


def _ready_zlib_client(config: GatewayConfig) -> ScriptedClient:
    client = ScriptedClient("/?v=10&encoding=json&compress=zlib-stream", config)
    client.ready()
    return client


def test_dispatch_frame_splices_only_a_fanout_as_big_as_the_threshold():
    config = GatewayConfig(zlib_shared_tail_min=32)
    client = _ready_zlib_client(config)
    conn, compressor = client.conn, client.conn._compressor
    inflate = client._inflate  # the client's one inflater, which read HELLO and READY
    small = PreparedDispatch("MESSAGE_CREATE", {"content": "small guild " * 30})
    small.fanout = 31
    big = PreparedDispatch("MESSAGE_CREATE", {"content": "big guild " * 30})
    big.fanout = 32
    frames = [(conn.dispatch_frame(small), small), (conn.dispatch_frame(big), big),
              (conn.dispatch_frame(small), small)]
    first_seq = conn.log.seq - 2
    assert not compressor.resting  # the last one compressed on a fresh deflater
    tail = big.deflated_tail(conn._tail_key, Encoding.JSON, compressor.deflate_alone)
    assert frames[1][0].endswith(tail) and frames[1][0][:1] == b"\x00"  # head stored
    assert not frames[0][0].endswith(tail)
    for n, (frame, dispatch) in enumerate(frames):
        assert json.loads(inflate.decompress(frame)) == {
            "t": "MESSAGE_CREATE", "s": first_seq + n, "op": 0, "d": dispatch.data}


def test_a_zstd_stream_in_a_big_fanout_compresses_per_connection():
    """zstd-stream's one frame takes no spliced piece: its frames stay its own."""
    from tests.gateway.test_zstd_stream import ZstdScriptedClient, discordpy_decoder

    client = ZstdScriptedClient("/?v=10&encoding=json&compress=zstd-stream", discordpy_decoder)
    client.ready()
    dispatch = PreparedDispatch("MESSAGE_CREATE", {"content": "big guild " * 30})
    dispatch.fanout = 1000
    for _ in range(2):
        frame = client.conn.dispatch_frame(dispatch)
        got = client.decode_frame(SendFrame(frame, False))
        assert (got["s"], got["d"]) == (client.conn.log.seq, dispatch.data)
    assert dispatch._tails is None


def test_spliced_frames_inflate_in_nodes_zlib(tmp_path):
    """discord.js inflates zlib-stream with zlib-sync (zlib's own inflate, as Node's
    zlib is): Node inflates per-connection, spliced, stored and woken frames in turn."""
    compressor = ZlibStreamCompressor()
    dispatch = PreparedDispatch("MESSAGE_CREATE", {"content": "shared " * 60, "id": "7"})
    payloads, frames = [], []

    def send(frame: bytes, payload: bytes) -> None:
        frames.append(frame)
        payloads.append(payload)

    send(compressor.compress(b'{"op":10}'), b'{"op":10}')
    send(compressor.compress(b"x" * 500), b"x" * 500)
    for seq in (3, 4):  # spliced twice in a row, an ACK while resting in between
        send(_fanout_frame(compressor, dispatch, seq, Encoding.JSON),
             dispatch.frame(seq, Encoding.JSON))
        send(compressor.compress_control(ACK), ACK)
    send(compressor.compress(b"after a splice " * 40), b"after a splice " * 40)
    send(_fanout_frame(compressor, dispatch, 5, Encoding.JSON), dispatch.frame(5, Encoding.JSON))
    compressor.rest()
    send(compressor.compress_control(ACK), ACK)
    send(compressor.compress(b"after rest " * 40), b"after rest " * 40)
    assert node_inflate(frames, tmp_path) == payloads


def discordpy_zlib_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make discord.py ask for zlib-stream with its own zlib decoder. It picks zstd-stream
    when zstandard is importable (it is here) and then does not define its
    ``_ZlibDecompressionContext`` at all: the class is taken from its source, unchanged."""
    import inspect
    import textwrap

    utils = import_discord().utils
    source = inspect.getsource(utils)
    start = source.index("    class _ZlibDecompressionContext:")
    end = source.index("    _ActiveDecompressionContext", start)
    namespace: dict[str, Any] = {"zlib": zlib}
    exec(textwrap.dedent(source[start:end]), namespace)  # noqa: S102 - the library's code
    context = namespace["_ZlibDecompressionContext"]
    assert context.COMPRESSION_TYPE == "zlib-stream"
    monkeypatch.setattr(utils, "_ActiveDecompressionContext", context)


def test_discordpy_and_hikari_read_spliced_and_per_connection_frames(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Both libraries on zlib-stream over real sockets: messages alternate between a
    per-connection deflate and the shared tail (each connection's threshold switched),
    with heartbeat ACKs every 0.3 s and a typing event among them, all read in order."""
    hikari = pytest.importorskip("hikari")
    from hikari.api.shard import GatewayCompression
    from hikari.impl import shard as shard_impl

    monkeypatch.setitem(shard_impl.GatewayShardImpl.__init__.__kwdefaults__, "compression",
                        GatewayCompression("transport_zlib_stream"))
    spliced = 0
    splice = ZlibStreamCompressor.compress_spliced

    def counting(self: ZlibStreamCompressor, head: bytes, tail: bytes) -> bytes:
        nonlocal spliced
        spliced += 1
        return splice(self, head, tail)

    monkeypatch.setattr(ZlibStreamCompressor, "compress_spliced", counting)
    discordpy_zlib_stream(monkeypatch)

    async def main() -> None:
        config = GatewayConfig(zlib_shared_tail_min=1, heartbeat_interval_ms=300)
        async with running_gateway(tmp_path, config) as r, aiohttp.ClientSession() as http:
            point_discordpy_at(monkeypatch, r.gateway)
            client = discordpy_client()
            seen: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()

            async def on_message(message: Any) -> None:
                await seen.put(("message", message.content))

            async def on_raw_typing(payload: Any) -> None:
                await seen.put(("typing", payload.user_id))

            on(client, "message", on_message)
            on(client, "raw_typing", on_raw_typing)
            bot = HikariBot(r.seeded.token, r.gateway.rest_url, {
                "ready": hikari.GuildAvailableEvent, "message": hikari.GuildMessageCreateEvent,
                "typing": hikari.GuildTypingEvent})
            async with discordpy_running(client, r.seeded.token):
                await bot.start(until="ready")
                try:
                    conns = [link.conn for link in r.gateway.links if link.conn.session_id]
                    assert len(conns) == 2
                    assert {conn.params.compress for conn in conns} == {"zlib-stream"}
                    expected_spliced = 0
                    for n in range(6):
                        share = n % 3 != 0  # per connection, shared, shared, per connection...
                        for conn in conns:
                            conn._shared_tail_min = 1 if share else sys.maxsize
                        content = f"message {n} " * (10 + n)
                        await post_as_alice(http, r, {"content": content})
                        assert await seen.get() == ("message", content)
                        assert (await bot.expect("message")).content == content
                        expected_spliced += 2 if share else 0
                        if n == 2:  # a typing event, shared, then heartbeats and ACKs
                            await as_alice(http, r, "POST", f"/channels/{r.seeded.channel_id}/typing")
                            assert await seen.get() == ("typing", r.other_id)
                            assert (await bot.expect("typing")).user_id == r.other_id
                            expected_spliced += 2
                            await asyncio.sleep(0.7)
                    assert spliced == expected_spliced
                    assert client.is_ws_ratelimited() is False and bot.bot.is_alive
                    assert client.latency == client.latency  # ACKs read: not NaN
                finally:
                    await bot.close()

    run(main, timeout=60)
