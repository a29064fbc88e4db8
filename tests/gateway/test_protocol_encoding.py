"""Encodings (json, msgpack), zlib-stream, and encode-once dispatches."""

from __future__ import annotations

import json
import zlib

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.protocol import (
    DecodeError,
    Encoding,
    PreparedDispatch,
    SendFrame,
    ZlibStreamCompressor,
    decode_payload,
    encode_payload,
)
from tests.gateway.libraries import node_inflate

from .scripted_client import ZLIB_SUFFIX, ScriptedClient, close_of

# JSON-like values: what dispatch data is made of. Floats stay finite (JSON has no NaN).
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=25,
)
sequence_numbers = st.integers(min_value=0, max_value=2**64 - 1)
event_names = st.text(min_size=1, max_size=40)


@settings(max_examples=300, deadline=None)
@given(event=event_names, data=json_values, seq=sequence_numbers)
def test_prepared_dispatch_equals_plain_encoding_json(event, data, seq):
    plain = encode_payload({"t": event, "s": seq, "op": 0, "d": data}, Encoding.JSON)
    assert PreparedDispatch(event, data).frame(seq, Encoding.JSON) == plain
    assert json.loads(plain) == {"t": event, "s": seq, "op": 0, "d": data}


@settings(max_examples=300, deadline=None)
@given(event=event_names, data=json_values, seq=sequence_numbers)
def test_prepared_dispatch_equals_plain_encoding_msgpack(event, data, seq):
    try:
        plain = encode_payload({"t": event, "s": seq, "op": 0, "d": data}, Encoding.MSGPACK)
    except UnicodeEncodeError:  # lone surrogates have no UTF-8 form, so no msgpack form
        with pytest.raises(UnicodeEncodeError):
            PreparedDispatch(event, data).frame(seq, Encoding.MSGPACK)
        return
    assert PreparedDispatch(event, data).frame(seq, Encoding.MSGPACK) == plain
    assert msgpack.unpackb(plain, raw=False, strict_map_key=False) == {
        "t": event,
        "s": seq,
        "op": 0,
        "d": data,
    }


@settings(max_examples=50, deadline=None)
@given(data=json_values, seqs=st.lists(sequence_numbers, min_size=2, max_size=6))
def test_one_prepared_dispatch_serves_many_recipients(data, seqs):
    prepared = PreparedDispatch("MESSAGE_CREATE", data)
    frames = [prepared.frame(seq, Encoding.JSON) for seq in seqs]
    assert [json.loads(f)["s"] for f in frames] == seqs
    assert all(json.loads(f)["d"] == data for f in frames)


def test_compacted_dispatch_keeps_its_bytes_and_drops_its_data():
    prepared = PreparedDispatch("READY", {"v": 10}).compact(Encoding.JSON)
    assert prepared.frame(1, Encoding.JSON) == b'{"t":"READY","s":1,"op":0,"d":{"v":10}}'
    with pytest.raises(RuntimeError):
        prepared.frame(1, Encoding.MSGPACK)


def test_json_is_compact_utf8_and_snowflakes_are_strings():
    client = ScriptedClient()
    [ready, _] = client.ready()
    frame = PreparedDispatch("X", {"content": "héllo", "id": "1"}).frame(1, Encoding.JSON)
    assert frame == '{"t":"X","s":1,"op":0,"d":{"content":"héllo","id":"1"}}'.encode()
    assert isinstance(ready["d"]["user"]["id"], str)
    assert isinstance(ready["d"]["application"]["id"], str)


def test_json_with_a_lone_surrogate_falls_back_to_escapes():
    assert encode_payload({"c": "a\ud800"}, Encoding.JSON) == b'{"c":"a\\ud800"}'


# -- msgpack connections -----------------------------------------------------------------


def test_msgpack_session_round_trip():
    client = ScriptedClient("/?v=10&encoding=msgpack")
    [hello] = client.start_payloads
    assert hello == {"t": None, "s": None, "op": 10, "d": {"heartbeat_interval": 41250}}
    ready, guild_create = client.ready()
    assert (ready["t"], ready["s"], ready["d"]["user"]["id"]) == ("READY", 1, "111")
    assert guild_create["d"]["id"] == "333"
    [ack] = client.payloads(client.send({"op": 1, "d": 2}))
    assert ack["op"] == 11
    [message] = client.payloads(client.conn.dispatch_event("MESSAGE_CREATE", {"content": "hi"}))
    assert message == {"t": "MESSAGE_CREATE", "s": 3, "op": 0, "d": {"content": "hi"}}
    assert set(client.text_frames) == {False}  # msgpack travels in binary frames


@pytest.mark.parametrize(
    "raw",
    [
        b"\xc1",  # never-used byte
        b"\x81\xa2op",  # truncated map
        b"\x81\x01\x01",  # integer key
        b"\x82\xa2op\x01\xa1d\xc4\x01x",  # bin value
        b"\x82\xa2op\x01\xa1d\xd4\x05\x00",  # extension type
        b"\x82\xa2op\x01\xa1d\xcb\x7f\xf8\x00\x00\x00\x00\x00\x00",  # NaN
        b"\x91" * 3000,  # nesting deeper than the unpacker allows
        b"\x01\x02",  # extra data after a value
    ],
)
def test_invalid_msgpack_closes_4002(raw):
    client = ScriptedClient("/?v=10&encoding=msgpack")
    close = close_of(client.send(raw))
    assert (close.code, close.reason) == (4002, "Decode error")


def test_msgpack_wrong_shape_and_unknown_opcode():
    client = ScriptedClient("/?v=10&encoding=msgpack")
    assert close_of(client.send(msgpack.packb([1, 2]))).code == 4002
    client = ScriptedClient("/?v=10&encoding=msgpack")
    assert close_of(client.send(msgpack.packb({"op": 42, "d": None}))).code == 4001


def test_decode_payload_errors_are_decode_errors():
    for raw, encoding in [(b"{", Encoding.JSON), (b"\xc1", Encoding.MSGPACK)]:
        with pytest.raises(DecodeError):
            decode_payload(raw, encoding)
    assert decode_payload(memoryview(b'{"op":1}'), Encoding.JSON) == {"op": 1}


# -- zlib-stream ---------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["json", "msgpack"])
def test_zlib_stream_round_trip_like_a_client(encoding):
    client = ScriptedClient(f"/?v=10&encoding={encoding}&compress=zlib-stream")
    frames = [e for e in client.start_effects if isinstance(e, SendFrame)]
    cmf, flg = frames[0].data[:2]  # a zlib header (deflate, checksummed) opens the stream
    assert cmf & 0x0F == 8 and (cmf << 8 | flg) % 31 == 0
    ready, guild_create = client.ready()
    assert (ready["t"], guild_create["t"]) == ("READY", "GUILD_CREATE")
    for i in range(50):
        effects = client.conn.dispatch_event("MESSAGE_CREATE", {"content": "hello " * i, "n": i})
        [frame] = effects
        assert frame.data.endswith(ZLIB_SUFFIX) and frame.text is False
        [message] = client.payloads(effects)
        assert message["d"]["n"] == i and message["s"] == 3 + i
    assert set(client.text_frames) == {False}


def test_zlib_stream_shares_one_context_so_repeats_shrink():
    compressor = ZlibStreamCompressor()
    payload = b'{"t":"MESSAGE_CREATE","s":1,"op":0,"d":{"content":"the same words again"}}'
    first, second = compressor.compress(payload), compressor.compress(payload)
    assert len(second) < len(first)
    inflate = zlib.decompressobj()
    assert inflate.decompress(first) + inflate.decompress(second) == payload * 2


def test_zlib_stream_replay_after_resume_decompresses_on_the_new_context():
    old = ScriptedClient("/?v=10&encoding=json&compress=zlib-stream")
    old.ready()
    old.conn.dispatch_event("MESSAGE_CREATE", {"n": 1})
    old.conn.connection_lost(None)
    new = ScriptedClient("/?v=10&encoding=json&compress=zlib-stream")
    new.send({"op": 6, "d": {"token": "t", "session_id": "session-1", "seq": 1}})
    payloads = new.payloads(new.conn.resume_ok(old.conn.log, intents=513))
    assert [(p["t"], p["s"]) for p in payloads] == [
        ("GUILD_CREATE", 2),
        ("MESSAGE_CREATE", 3),
        ("RESUMED", 4),
    ]


def test_unknown_compress_value_is_served_uncompressed():
    client = ScriptedClient("/?v=10&encoding=json&compress=lz4")
    [hello] = client.start_payloads
    assert hello["op"] == 10 and client.text_frames == [True]


# -- a resting zlib-stream ----------------------------------------------------------------

# one step of a connection's life: a payload compressed, a heartbeat ACK, a heartbeat
steps = st.lists(st.one_of(
    st.tuples(st.just("payload"), st.binary(max_size=3000)),
    st.tuples(st.just("ack"), st.just(b'{"op":11,"d":null}')),
    st.tuples(st.just("check"), st.just(b"")),
), max_size=30)


@settings(max_examples=60, deadline=None)
@given(steps)
def test_a_resting_zlib_stream_is_one_stream_to_a_clients_inflater(script):
    compressor = ZlibStreamCompressor()
    inflate = zlib.decompressobj()  # discord.py's and hikari's decoder: one per connection
    first = compressor.compress(b"hello")
    assert inflate.decompress(first) == b"hello"
    for kind, payload in script:
        if kind == "check":
            compressor.rest_if_idle()
            continue
        if kind == "ack":
            frame = compressor.compress_control(payload)
        else:
            frame = compressor.compress(payload)
        assert frame.endswith(ZLIB_SUFFIX)
        assert inflate.decompress(frame) == payload


def test_a_stored_frame_longer_than_a_block_is_split_into_blocks():
    compressor = ZlibStreamCompressor()
    inflate = zlib.decompressobj()
    inflate.decompress(compressor.compress(b"x"))
    compressor.rest()
    payload = bytes(range(256)) * 300  # 76,800 bytes: two stored blocks
    assert inflate.decompress(compressor.compress_control(payload)) == payload
    assert inflate.decompress(compressor.compress(b"awake")) == b"awake"


def test_an_idle_zlib_stream_rests_after_a_quiet_check_interval():
    compressor = ZlibStreamCompressor()
    compressor.compress(b"HELLO")
    compressor.rest_if_idle()  # something was compressed since the last check: keep it
    assert not compressor.resting
    compressor.rest_if_idle()  # a whole interval without a payload
    assert compressor.resting
    ack = compressor.compress_control(b'{"op":11,"d":null}')
    assert compressor.resting and ack[:1] == b"\x00"  # a stored block: no deflater woken
    compressor.compress(b"MESSAGE_CREATE")
    assert not compressor.resting


def test_a_deflater_that_carried_a_stream_waits_longer_before_it_rests():
    from gateway.protocol.compression import COLD_PAYLOADS, WARM_QUIET_CHECKS

    compressor = ZlibStreamCompressor()
    for n in range(COLD_PAYLOADS + 1):  # more than a handshake: a guild's messages
        compressor.compress(b"MESSAGE_CREATE %d" % n)
    compressor.rest_if_idle()  # saw them
    for _ in range(WARM_QUIET_CHECKS - 1):
        compressor.rest_if_idle()
        assert not compressor.resting
    compressor.rest_if_idle()
    assert compressor.resting
    compressor.compress(b"after a long pause")  # a fresh deflater: a handshake's worth
    compressor.rest_if_idle()
    compressor.rest_if_idle()
    assert compressor.resting


def test_a_heartbeating_idle_zlib_session_holds_no_deflater():
    client = ScriptedClient("/?v=10&encoding=json&compress=zlib-stream")
    client.ready()
    compressor = client.conn._compressor
    client.conn.rest_idle_compression()  # READY went out in the first interval
    assert not compressor.resting
    [ack] = client.payloads(client.send({"op": 1, "d": 2}, at=2.0))
    assert ack["op"] == 11
    client.conn.rest_idle_compression()  # the second held only an ACK
    assert compressor.resting
    [ack] = client.payloads(client.send({"op": 1, "d": 2}, at=3.0))
    assert ack["op"] == 11 and compressor.resting  # an ACK does not wake it
    [message] = client.payloads(client.conn.dispatch_event("MESSAGE_CREATE", {"n": 1}))
    assert message["d"] == {"n": 1} and not compressor.resting


def test_a_resting_zlib_stream_inflates_in_nodes_zlib(tmp_path):
    """discord.js inflates zlib-stream with zlib-sync (zlib's own inflate, as Node's zlib
    is): Node inflates a stream that rested and woke, frame by frame."""
    compressor = ZlibStreamCompressor()
    payloads = [b'{"op":10}', b"x" * 500, b'{"op":11,"d":null}', b"after rest " * 40]
    frames = [compressor.compress(payloads[0]), compressor.compress(payloads[1])]
    compressor.rest_if_idle()
    compressor.rest_if_idle()
    frames.append(compressor.compress_control(payloads[2]))
    frames.append(compressor.compress(payloads[3]))
    assert node_inflate(frames, tmp_path) == payloads
