"""A client's JSON payload is refused (4002) if it holds what msgpack cannot carry, with
or without the quick path ``decode_payload`` takes for JSON without ``\\u`` escapes."""

from __future__ import annotations

import pytest

from gateway.protocol.codec import DecodeError, Encoding, decode_payload


@pytest.mark.parametrize("raw", [
    b'{"op":2,"d":{"token":"a\\ud800"}}',  # a lone surrogate, escaped
    b'{"op":2,"d":{"x":\\ud800}}',
    b'{"op":2,"d":NaN}', b'{"op":2,"d":Infinity}', b'{"op":2,"d":1e999}',
])
def test_what_msgpack_cannot_carry_is_refused(raw: bytes) -> None:
    for data in (raw, raw.decode()):
        with pytest.raises(DecodeError):
            decode_payload(data, Encoding.JSON)


def test_a_str_holding_a_lone_surrogate_is_refused() -> None:
    with pytest.raises(DecodeError):
        decode_payload('{"op":2,"d":{"token":"a\ud800"}}', Encoding.JSON)


@pytest.mark.parametrize("data", ['{"op":2,"d":{"token":"ñ ☃ \\u00e9 \\ud83d\\ude00"}}',
                                  '{"op":2,"d":{"token":"plain","n":1.5}}'])
def test_portable_payloads_decode(data: str) -> None:
    expected = {"op": 2, "d": {"token": "ñ ☃ é 😀"}} if "ñ" in data \
        else {"op": 2, "d": {"token": "plain", "n": 1.5}}
    assert decode_payload(data, Encoding.JSON) == expected
    assert decode_payload(data.encode(), Encoding.JSON) == expected
