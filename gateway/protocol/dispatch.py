"""Encode a dispatch once, send it to many sessions: only ``s`` differs per recipient.

A ``PreparedDispatch`` encodes ``{"t": t, "s": <seq>, "op": 0, "d": d}`` once per
encoding into the bytes before and after the sequence number, so a recipient's frame is
``prefix + digits(seq) + suffix`` — byte-for-byte what ``encode_payload`` gives for that
dict (tests/gateway/test_protocol_dispatch.py proves it with hypothesis). Encodings are
made lazily, the first time a recipient with that encoding needs one.

A replay buffer holds references to these shared objects, not copies, so keeping the last
N dispatches of a session costs a pointer each.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from typing import Any

from .codec import Encoding, json_bytes, msgpack_bytes

_JSON_OP0_D = b',"op":0,"d":'
_MSGPACK_MAP4 = b"\x84"
_MSGPACK_KEY_T = msgpack_bytes("t")
_MSGPACK_KEY_S = msgpack_bytes("s")
_MSGPACK_OP0_D = msgpack_bytes("op") + msgpack_bytes(0) + msgpack_bytes("d")
_pack_u8 = struct.Struct(">BB").pack
_pack_u16 = struct.Struct(">BH").pack
_pack_u32 = struct.Struct(">BI").pack
_pack_u64 = struct.Struct(">BQ").pack
#: ``frame`` runs once per fan-out recipient: a module global is read in ~0.02 µs, an
#: Enum member through its class in ~0.13 (Python 3.11)
_JSON = Encoding.JSON


def msgpack_uint(value: int) -> bytes:
    """msgpack's shortest form of a non-negative int, as ``msgpack.packb`` writes it."""
    if value < 0x80:
        return bytes((value,))
    if value <= 0xFF:
        return _pack_u8(0xCC, value)
    if value <= 0xFFFF:
        return _pack_u16(0xCD, value)
    if value <= 0xFFFFFFFF:
        return _pack_u32(0xCE, value)
    return _pack_u64(0xCF, value)


class PreparedDispatch:
    """One DISPATCH payload, encoded at most once per encoding, for any number of sessions."""

    __slots__ = ("event", "fanout", "_data", "_json", "_msgpack", "_tails")

    def __init__(self, event: str, data: Any) -> None:
        self.event = event
        #: How many sessions of this node the fan-out that delivers it reaches (set by
        #: gateway/fanout.py before its loop; 0 otherwise): a big fan-out's zlib-stream
        #: frames share one deflated tail (``deflated_tail``; protocol/compression.py)
        self.fanout = 0
        self._data = data
        self._json: tuple[bytes, bytes] | None = None
        self._msgpack: tuple[bytes, bytes] | None = None
        #: ``deflated_tail``'s, by its key (made on first use)
        self._tails: dict[str, bytes] | None = None

    @property
    def data(self) -> Any:
        """The ``d`` value (raises after ``compact``, which drops it)."""
        data = self._data
        if data is _PENDING:
            data = self._data = json.loads(self._json[1][len(_JSON_OP0_D):-1])
        elif data is _DROPPED:
            raise RuntimeError(f"{self.event} dispatch was compacted; its data is gone")
        return data

    def _parts(self, encoding: Encoding) -> tuple[bytes, bytes]:
        if encoding is Encoding.JSON:
            parts = self._json
            if parts is None:
                parts = self._json = (
                    b'{"t":' + json_bytes(self.event) + b',"s":',
                    _JSON_OP0_D + json_bytes(self.data) + b"}",
                )
            return parts
        parts = self._msgpack
        if parts is None:
            parts = self._msgpack = (
                _MSGPACK_MAP4 + _MSGPACK_KEY_T + msgpack_bytes(self.event) + _MSGPACK_KEY_S,
                _MSGPACK_OP0_D + msgpack_bytes(self.data),
            )
        return parts

    @classmethod
    def from_json(cls, event: str, d_json: bytes) -> PreparedDispatch:
        """The dispatch whose ``d`` is the JSON ``d_json`` (what ``json_d`` gave on
        another node): JSON recipients reuse the bytes; ``data`` decodes them if needed."""
        self = cls.__new__(cls)
        self.event = event
        self.fanout = 0
        self._tails = None
        self._data = _PENDING
        self._json = (b'{"t":' + json_bytes(event) + b',"s":', _JSON_OP0_D + d_json + b"}")
        self._msgpack = None
        return self

    def encoded(self, encoding: Encoding) -> bytes:
        """This dispatch's frame bytes after the sequence number in ``encoding`` (kept
        even when compacted): how a session's replay log moves to another node
        (``from_encoded`` there)."""
        return self._parts(encoding)[1]

    @classmethod
    def from_encoded(cls, event: str, encoding: Encoding, suffix: bytes) -> PreparedDispatch:
        """The dispatch that ``encoded(encoding)`` gave on another node; it can be framed
        in ``encoding`` only (its ``data`` is decoded for JSON, gone for msgpack)."""
        self = cls.__new__(cls)
        self.event = event
        self.fanout = 0
        self._tails = None
        self._msgpack = self._json = None
        if encoding is Encoding.JSON:
            self._data = _PENDING
            self._json = (b'{"t":' + json_bytes(event) + b',"s":', suffix)
        else:
            self._data = _DROPPED
            self._msgpack = (_MSGPACK_MAP4 + _MSGPACK_KEY_T + msgpack_bytes(event)
                             + _MSGPACK_KEY_S, suffix)
        return self

    def json_parts(self) -> tuple[bytes, bytes]:
        """The JSON frame cut where the sequence number goes: ``frame(seq, JSON)`` is
        ``before + b"%d" % seq + after``, for a loop that frames this dispatch for each of
        many recipients itself (gateway/fanout.py)."""
        return self._json or self._parts(Encoding.JSON)

    def json_d(self) -> bytes:
        """The JSON encoding of ``d`` (made once, shared with JSON recipients): how a
        dispatch crosses to another node (``from_json`` there)."""
        return self._parts(Encoding.JSON)[1][len(_JSON_OP0_D):-1]

    def frame(self, seq: int, encoding: Encoding) -> bytes:
        """The encoded payload for one recipient whose next sequence number is ``seq``."""
        if encoding is _JSON:  # once per fan-out recipient: the cached parts first
            prefix, suffix = self._json or self._parts(encoding)
            return b"".join((prefix, b"%d" % seq, suffix))  # faster than one b"%b%d%b"
        prefix, suffix = self._msgpack or self._parts(encoding)
        return prefix + msgpack_uint(seq) + suffix

    def head(self, seq: int, encoding: Encoding) -> bytes:
        """``frame(seq, encoding)`` up to and including the sequence number: the part of
        the frame that differs per recipient."""
        if encoding is _JSON:
            return (self._json or self._parts(encoding))[0] + b"%d" % seq
        return (self._msgpack or self._parts(encoding))[0] + msgpack_uint(seq)

    def deflated_tail(self, key: str, encoding: Encoding,
                      deflate: Callable[[bytes], bytes]) -> bytes:
        """``deflate`` of the frame bytes after the sequence number in ``encoding``, made
        once per ``key`` (which names the encoding and the deflate settings) and kept:
        ``head(seq) + suffix`` is every recipient's frame, and the tail the same for all."""
        tails = self._tails
        if tails is None:
            tails = self._tails = {}
        else:
            tail = tails.get(key)
            if tail is not None:
                return tail
        tail = tails[key] = deflate(self._parts(encoding)[1])
        return tail

    def compact(self, encoding: Encoding) -> PreparedDispatch:
        """Keep only ``encoding``'s bytes and drop ``d``; for payloads built for one session
        (READY, GUILD_CREATE) that its replay buffer would otherwise keep as Python objects."""
        self._parts(encoding)
        self._data = _DROPPED
        return self

    def __repr__(self) -> str:
        return f"PreparedDispatch({self.event!r})"


_DROPPED: Any = object()
_PENDING: Any = object()  # ``from_json``: ``d`` is decoded from the bytes when needed
