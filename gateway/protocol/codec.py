"""Payload encodings: Discord's ``json`` and this project's ``msgpack``.

JSON is compact (no spaces) and UTF-8 unless a string holds a lone surrogate, which
UTF-8 cannot carry; then that payload falls back to ASCII escapes, which every JSON
parser reads back to the same string. NaN and infinities are not JSON and are refused in
both directions. A decoded client payload holds only values both encodings can carry
(msgpack bin, extension types and non-string keys, and strings with lone surrogates are
refused), so whatever the layers above take from it re-encodes in either encoding.
"""

from __future__ import annotations

import json
import math
from enum import StrEnum
from typing import Any

import msgpack


class Encoding(StrEnum):
    JSON = "json"
    MSGPACK = "msgpack"


class DecodeError(ValueError):
    """A client payload that is not valid in the connection's encoding."""


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} overflows a double")
    return value


def _refuse_ext(code: int, data: bytes) -> Any:
    raise ValueError(f"msgpack extension type {code} is not accepted")


def _check_portable(value: Any) -> None:
    """Refuse what one encoding can carry and the other cannot.

    msgpack bin values, non-string keys and non-finite floats have no JSON form; a lone
    surrogate (a JSON "\\ud800" escape) has no UTF-8 form, so no msgpack form.
    """
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if not item.isascii():
                item.encode("utf-8")  # UnicodeEncodeError on a lone surrogate
        elif isinstance(item, dict):
            for key, child in item.items():
                if type(key) is not str:
                    raise ValueError("map keys must be strings")
                stack.append(key)
                stack.append(child)
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, bytes):
            raise ValueError("msgpack bin values are not accepted")
        elif isinstance(item, float) and not math.isfinite(item):
            raise ValueError("NaN and infinities are not accepted")


_json_decoder = json.JSONDecoder(parse_constant=_refuse_constant, parse_float=_finite_float)
_json_encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)
_json_ascii_encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def json_bytes(value: Any) -> bytes:
    """Compact JSON as UTF-8 bytes."""
    return json_strict_utf8(value) or _json_ascii_encoder.encode(value).encode("ascii")


def json_strict_utf8(value: Any) -> bytes | None:
    """``json_bytes`` where it is UTF-8; None where it falls back to ASCII escapes."""
    try:
        return _json_encoder.encode(value).encode("utf-8")
    except UnicodeEncodeError:
        return None


def msgpack_bytes(value: Any) -> bytes:
    """msgpack with str as str and bytes as bin (the msgpack 1.0 spec types)."""
    return msgpack.packb(value, use_bin_type=True)


def encode_payload(payload: Any, encoding: Encoding) -> bytes:
    """Encode one gateway payload (a dict ``{t, s, op, d}``)."""
    if encoding is Encoding.JSON:
        return json_bytes(payload)
    return msgpack_bytes(payload)


def decode_payload(data: bytes | bytearray | memoryview | str, encoding: Encoding) -> Any:
    """Decode one client payload; any failure, however deep, is a ``DecodeError``."""
    try:
        if encoding is Encoding.JSON:
            text = data if isinstance(data, str) else bytes(data).decode("utf-8")
            value = _json_decoder.decode(text)
            if "\\u" not in text and (text is not data or text.isascii()):
                # JSON has string keys only, no bin, and the decoder refuses NaN and
                # overflows; a lone surrogate comes only from a \u escape or from a str
                # given with one (bytes decoded as UTF-8 hold none): nothing to check
                return value
        else:
            raw = data.encode("utf-8") if isinstance(data, str) else data
            value = msgpack.unpackb(raw, raw=False, strict_map_key=True, ext_hook=_refuse_ext)
        _check_portable(value)
        return value
    except (ValueError, TypeError, RecursionError, OverflowError) as exc:
        # json and msgpack raise ValueError subclasses (JSONDecodeError, UnicodeDecodeError,
        # ExtraData, FormatError, StackError); deep nesting can raise RecursionError.
        raise DecodeError(str(exc) or type(exc).__name__) from exc
