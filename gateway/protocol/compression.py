"""Transport compression: one compression stream per connection, flushed per payload.

``zlib-stream``: every frame is the compressed bytes of one payload, ended by a
Z_SYNC_FLUSH so it ends in ``00 00 ff ff`` and a client can inflate it with the one
``zlib.decompressobj()`` it keeps for the connection. The stream carries a zlib header
(first frame) and never ends.

``zstd-stream``: one zstd frame per connection that never ends; every WebSocket frame is
the bytes of one payload up to a ZSTD_e_flush, so it ends on a complete block and the
one streaming decompressor a client keeps (discord.py: ``zstandard``'s ``decompressobj``;
hikari: ``compression.zstd``/``backports.zstd`` ``ZstdDecompressor``, one ``decompress``
per WebSocket message) yields exactly that payload. The frame header goes out with the
first frame (HELLO): window size, no content size, no checksum (a never-ending frame has
no end to check). Ending the frame would break both libraries: their decompressor is
done at a frame's end (hikari's raises on more data).

Memory and CPU are per connection: the stream state depends on everything sent before.
An idle zlib-stream, though, needs none: after a sync flush the stream is byte-aligned
and no later block has to refer back, so
``ZlibStreamCompressor.rest`` drops the deflater (its ~38 KiB) and the next payload starts a
fresh raw one (no second zlib header) whose blocks continue the same stream — a client's
one inflater cannot tell. While resting, a heartbeat ACK goes out as a stored block, so a
connection that only heartbeats holds no compressor at all. The gateway checks every
connection's stream each ``GatewayConfig.compression_rest_s`` (``Gateway``) and rests
those that compressed nothing since the check before — at once for a deflater that
carried only a handshake, after ``WARM_QUIET_CHECKS`` for one that carried a stream (a
busy guild's 1,000 sessions re-making their deflaters after each short pause made the
next message's fan-out loop 50-75 ms instead of ~15); the bound is on the deflaters
alive at once, which is
also what the heap must hold at its peak (freed memory is reused, rarely returned:
sessions rested only at their second heartbeat kept ~50 KiB RSS a session; with checks
every 0.5 s, 10,000 idle zlib sessions identified at ~700/s held 16.3 KiB a session,
every 0.25 s (the default) 15.3-15.5, against 14.7-15.1 uncompressed). A connection
whose payloads are further apart than that pays a new deflater (~2 µs) and compresses
each payload without the history of the ones before. zstd-stream cannot rest: its one
frame must never end (see above) and a frame cannot be continued by a new context.

A big fan-out shares its CPU, though (``compress_spliced``): a dispatch frame is
``prefix + seq + suffix`` (``PreparedDispatch``) and only the seq differs per recipient,
so each zlib-stream recipient gets ``prefix + seq`` as a stored block and then the tail:
the suffix deflated once per dispatch by a fresh raw deflater (``deflate_alone``), whose
back-references stay within it, so it continues any byte-aligned stream; the
connection's deflater is dropped (a rest), its history no longer the client's. A
per-connection deflate at 1,000 sessions costs the most CPU of a delivery (each
deflater's state cold in cache; ``tests.gateway.bench_fanout --compress zlib-stream``:
~7-9 µs a delivery, spliced ~2.5-3.3, uncompressed ~2-2.8). The cost is bytes: the tail
has no history to refer to (a ~900-byte MESSAGE_CREATE: ~540 bytes instead of ~250). So
only fan-outs to ``GatewayConfig.zlib_shared_tail_min`` sessions of the node or more
take it (``PreparedDispatch.fanout``); a small guild keeps its stream's history.

Measured with ``loadtest/bench_compression.py``
(Python 3.11, zstd 1.5.7, ~800-byte MESSAGE_CREATE payloads, a shared 2-core machine:
µs are the fastest batch's; RSS per connection over 1,000 connections whose window is
full and that each then sent one 64 KB payload):

==========================================  ========  ==========  ==========
stream                                      RSS/conn  compressed  µs/message
==========================================  ========  ==========  ==========
zlib  wbits 15, memLevel 8 (zlib default)   ~229 KiB  ~16 %       ~10-15
zlib  wbits 12, memLevel 5 (default here)    ~38 KiB  ~19 %       ~12-18
zstd  level 1, window 2^17, hash 2^15       ~385 KiB  ~13 %       ~4-6
zstd  level 1, window 2^15, hash 2^12       ~145 KiB  ~13.5 %     ~4-6
zstd  level 3, window 2^15, hash 2^12       ~161 KiB  ~13.5 %     ~4-7
zstd  level 1, window 2^12, hash 2^10 (*)    ~57 KiB  ~15 %       ~4-6
zstd  level 1, window 2^12, hash 2^8         ~54 KiB  ~17 %       ~4-6
zstd  (*) through ``compressobj()``          ~68 KiB  ~15 %       ~4-6
==========================================  ========  ==========  ==========

(*) the default here. zstd's own level-1 parameters (window 2^19, hash 2^14) hold
~1.3 MiB a connection (``ZstdCompressor.memory_size()``). At the 4 KiB window zlib-stream
uses, zstd compresses better in a third of the time for ~1.5x the memory; most of that is
zstd's fixed per-context state (entropy tables, block and sequence buffers) that a
smaller window cannot shrink (a 2^10 window, barely one payload, compresses to ~36 %). A level
above 1 buys nothing at these sizes. ``zstandard``'s ``compressobj`` writes into a
128 KiB output buffer that stays resident as far as a large payload (READY, a
GUILD_CREATE) has filled it, so the chunker is used, with 4 KiB chunks. Every client's
default decompressor accepts any window up to 2^27.
"""

from __future__ import annotations

import struct
import zlib
from typing import Any, Protocol

import zstandard

SYNC_FLUSH_SUFFIX = b"\x00\x00\xff\xff"
_SYNC_FLUSH = zlib.Z_SYNC_FLUSH  # read once per frame of every connection

ZLIB_STREAM = "zlib-stream"
ZSTD_STREAM = "zstd-stream"
#: The ``compress`` values of a gateway URL served here.
TRANSPORT_COMPRESSIONS = (ZLIB_STREAM, ZSTD_STREAM)

DEFAULT_LEVEL = 1
DEFAULT_WBITS = 12
DEFAULT_MEM_LEVEL = 5

DEFAULT_ZSTD_LEVEL = 1
DEFAULT_ZSTD_WINDOW_LOG = 12
DEFAULT_ZSTD_HASH_LOG = 10
#: A resting zlib-stream (``ZlibStreamCompressor.rest_if_idle``): a deflater that
#: compressed at most this many payloads (HELLO, READY, GUILD_CREATEs) is idle at the
#: first quiet check; one that compressed more waits this many quiet checks
COLD_PAYLOADS = 8
WARM_QUIET_CHECKS = 8
#: The chunker's output buffer: bounds what a large payload leaves resident.
ZSTD_CHUNK_SIZE = 4096
#: a stored block's header: BFINAL=0/BTYPE=00 in a byte of its own (the stream is
#: byte-aligned), then LEN and NLEN, little-endian
_stored_header = struct.Struct("<BHH").pack


class StreamCompressor(Protocol):
    """One connection's transport compression: one payload in, one frame's bytes out."""

    #: Whether a frame can be a shared tail spliced in (``compress_spliced``)
    splices: bool

    def compress(self, payload: bytes) -> bytes: ...

    def compress_control(self, payload: bytes) -> bytes:
        """``compress`` for a small control payload (a heartbeat ACK), which need not
        wake a resting stream."""
        ...

    def rest_if_idle(self) -> bool:
        """Rest if nothing was compressed since the last call (no-op where a stream
        cannot rest); whether it dropped state now."""
        ...


def stored_blocks(data: bytes) -> bytes:
    """``data`` as deflate stored blocks (uncompressed, at most 65,535 bytes each, never
    final), with no sync-flush marker after them: bytes that continue a byte-aligned
    deflate stream and leave it byte-aligned."""
    size = len(data)
    if size <= 0xFFFF:  # one block: what a shared-tail frame's head always is
        return _stored_header(0, size, size ^ 0xFFFF) + data
    out = bytearray()
    for start in range(0, size, 0xFFFF):
        chunk = data[start:start + 0xFFFF]
        out += _stored_header(0, len(chunk), len(chunk) ^ 0xFFFF)
        out += chunk
    return bytes(out)


def stored_block(payload: bytes) -> bytes:
    """``payload`` as deflate stored blocks ending in a sync-flush marker: a valid
    continuation of a byte-aligned deflate stream that needs no compressor state."""
    # an empty stored block after them: what Z_SYNC_FLUSH writes
    return stored_blocks(payload) + b"\x00" + SYNC_FLUSH_SUFFIX


class ZlibStreamCompressor:
    """The server side of one connection's zlib-stream; rests when idle (module doc)."""

    __slots__ = ("_deflate", "_level", "_wbits", "_mem_level", "_payloads", "_seen",
                 "_quiet")

    splices = True
    #: deflaters dropped by every compressor of the process since ``take_dropped``,
    #: wherever they were dropped (an idle sweep, or a fan-out's splice): the heap trim
    #: (``gateway/memory.py``) counts them all
    _dropped = 0

    def __init__(
        self,
        level: int = DEFAULT_LEVEL,
        wbits: int = DEFAULT_WBITS,
        mem_level: int = DEFAULT_MEM_LEVEL,
    ) -> None:
        self._level, self._wbits, self._mem_level = level, wbits, mem_level
        # the first deflater writes the stream's zlib header; later ones are raw
        self._deflate: Any = zlib.compressobj(level, zlib.DEFLATED, wbits, mem_level)
        #: payloads this deflater compressed; the count the last check saw; checks in a
        #: row that saw none
        self._payloads = self._seen = self._quiet = 0

    @property
    def resting(self) -> bool:
        """No deflater held: the next payload starts a fresh one."""
        return self._deflate is None

    def compress(self, payload: bytes) -> bytes:
        """Compress one payload into one frame ending in ``00 00 ff ff``."""
        deflate = self._deflate
        if deflate is None:
            deflate = self._deflate = zlib.compressobj(
                self._level, zlib.DEFLATED, -self._wbits, self._mem_level)
        self._payloads += 1
        return deflate.compress(payload) + deflate.flush(_SYNC_FLUSH)

    def compress_control(self, payload: bytes) -> bytes:
        deflate = self._deflate
        if deflate is None:
            return stored_block(payload)
        # through the deflater that is there (it must see every byte of the stream),
        # without counting as activity: ACKs alone let a connection rest
        return deflate.compress(payload) + deflate.flush(_SYNC_FLUSH)

    def deflate_alone(self, data: bytes) -> bytes:
        """``data`` deflated by a fresh raw deflater of this stream's settings, ending in
        a sync flush: it refers to nothing before it, so it continues any byte-aligned
        stream of these settings (a shared tail: ``compress_spliced``)."""
        deflate = zlib.compressobj(self._level, zlib.DEFLATED, -self._wbits, self._mem_level)
        return deflate.compress(data) + deflate.flush(_SYNC_FLUSH)

    def compress_spliced(self, head: bytes, tail: bytes) -> bytes:
        """One frame of a big fan-out: ``head`` (the recipient's own bytes) as a stored
        block, then ``tail``, which ``deflate_alone`` made once for every recipient. The
        deflater is dropped (a rest): its history is no longer what the client's inflater
        saw, and the next payload starts a fresh one (``compress``)."""
        deflate = self._deflate
        if deflate is None:  # resting: the hot path of a big guild's sessions
            return b"".join((stored_blocks(head), tail))
        # the stream's first deflater owes the zlib header if it wrote nothing yet (flush
        # writes it, or just an empty block after it); no payload came before: no HELLO
        lead = deflate.flush(_SYNC_FLUSH) if not self._payloads else b""
        self.rest()
        return b"".join((lead, stored_blocks(head), tail))

    def rest_if_idle(self) -> bool:
        """A deflater that carried a handshake's few payloads (``COLD_PAYLOADS``) rests
        at the first check that saw nothing new; one that carried a stream of them
        waits out ``WARM_QUIET_CHECKS`` quiet checks, so a guild's sessions do not make
        a deflater each (~10 µs, its pages faulted in again) for every message after a
        pause of a few hundred ms."""
        if self._payloads != self._seen:
            self._seen, self._quiet = self._payloads, 0
            return False
        self._quiet += 1
        if self._deflate is not None and self._quiet >= (
                1 if self._payloads <= COLD_PAYLOADS else WARM_QUIET_CHECKS):
            self.rest()
            return True
        return False

    def rest(self) -> None:
        """Drop the deflater: the stream is byte-aligned after every frame (sync flush),
        and the next deflater refers to nothing before it."""
        if self._deflate is not None:
            ZlibStreamCompressor._dropped += 1
        self._deflate = None
        self._payloads = self._seen = self._quiet = 0

    @staticmethod
    def take_dropped() -> int:
        """The deflaters dropped since the last call (``_dropped``), and count afresh."""
        dropped, ZlibStreamCompressor._dropped = ZlibStreamCompressor._dropped, 0
        return dropped


class ZstdStreamCompressor:
    """The server side of one connection's zstd-stream."""

    __slots__ = ("_cctx", "_chunker")

    def __init__(
        self,
        level: int = DEFAULT_ZSTD_LEVEL,
        window_log: int = DEFAULT_ZSTD_WINDOW_LOG,
        hash_log: int = DEFAULT_ZSTD_HASH_LOG,
    ) -> None:
        # chain_log is unused by level 1-2's "fast" strategy; bounded all the same for
        # higher levels.
        params = zstandard.ZstdCompressionParameters.from_level(
            level, window_log=window_log, hash_log=hash_log, chain_log=hash_log
        )
        # the chunker drives this context (kept referenced: it owns the ZSTD_CCtx)
        self._cctx = zstandard.ZstdCompressor(compression_params=params)
        self._chunker = self._cctx.chunker(chunk_size=ZSTD_CHUNK_SIZE)

    def compress(self, payload: bytes) -> bytes:
        """Compress one payload into one frame: the stream up to a ZSTD_e_flush."""
        chunker = self._chunker
        chunks = [*chunker.compress(payload), *chunker.flush()]
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    compress_control = compress
    #: its one frame cannot take a piece made elsewhere (module doc)
    splices = False

    def rest_if_idle(self) -> bool:
        """zstd-stream cannot rest (module doc)."""
        return False
