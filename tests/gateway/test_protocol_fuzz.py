"""Whatever a client sends, the connection answers with effects, never an exception, and
closes only with codes a client can act on."""

from __future__ import annotations

import json

import msgpack
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.protocol import Close, ConnectionState, Effect

from .scripted_client import ScriptedClient

CLIENT_CLOSE_CODES = {4001, 4002, 4003, 4004, 4005, 4008, 4010, 4013}  # 4004: empty token

json_like = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
ops = st.sampled_from([0, 1, 2, 3, 4, 6, 7, 8, 9, 10, 11, 31, 99]) | st.integers() | json_like
payloads = st.fixed_dictionaries({"op": ops}, optional={"d": json_like, "s": json_like})


def _check(effects: list[Effect], client: ScriptedClient) -> None:
    closes = [e for e in effects if isinstance(e, Close)]
    for close in closes:
        assert close.code in CLIENT_CLOSE_CODES
        assert effects[-1] is close and client.conn.state is ConnectionState.CLOSED


@settings(max_examples=300, deadline=None)
@given(raw=st.binary(max_size=300) | st.text(max_size=300), ready=st.booleans())
def test_arbitrary_bytes_never_raise(raw, ready):
    for url in ("/?v=10&encoding=json", "/?v=10&encoding=msgpack"):
        client = ScriptedClient(url)
        if ready:
            client.ready()
        _check(client.conn.receive(raw, 2.0), client)


@settings(max_examples=400, deadline=None)
@given(sequence=st.lists(payloads, min_size=1, max_size=6), ready=st.booleans())
def test_arbitrary_payload_sequences_never_raise(sequence, ready):
    for encoding in ("json", "msgpack"):
        client = ScriptedClient(f"/?v=10&encoding={encoding}")
        if ready:
            client.ready()
        for i, payload in enumerate(sequence):
            try:
                raw = (
                    json.dumps(payload)
                    if encoding == "json"
                    else msgpack.packb(payload, use_bin_type=True)
                )
            except (ValueError, OverflowError, UnicodeEncodeError):
                continue  # not representable in this encoding: nothing a client could send
            _check(client.conn.receive(raw, 2.0 + i), client)
            if client.conn.state is ConnectionState.CLOSED:
                assert client.conn.receive(raw, 3.0 + i) == []
                break
