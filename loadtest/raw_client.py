"""A raw WebSocket (RFC 6455) gateway client for the abuse tools and tests.

It sends whatever frame it is told to, however wrong (``frame``: any opcode, FIN, RSV
bits, unmasked), and reads the gateway's payloads in JSON or msgpack, plain, zlib-stream
or zstd-stream. Two ways to connect, for the two kinds of client the tools play:

- ``connect``: asyncio streams, which read ahead as a client library does (the fuzzer,
  the hostile-input tests);
- ``connect_lazy`` (or ``RawClient(sock)`` on a connected non-blocking socket): a plain
  socket with a small receive buffer, read only while ``receive``/``recv`` is awaited,
  so that a client that stops calling them stops reading (the slow consumers).

Frames are queued by ``frame``/``send`` and written at once as far as the socket takes
them; ``drain`` (or the next read) writes the rest.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import select
import socket
import struct
import zlib
from typing import Any
from urllib.parse import urlsplit

import msgpack
import zstandard

CONT, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
ZLIB_SUFFIX = b"\x00\x00\xff\xff"
#: GUILDS | GUILD_MESSAGES: a bot sees the content of the messages it posted itself.
INTENTS = (1 << 0) | (1 << 9)


class Closed(Exception):
    """The server closed the WebSocket (``code``), refused the upgrade (``code``: the
    HTTP status) or dropped the TCP connection (``code`` None)."""

    def __init__(self, code: int | None) -> None:
        super().__init__(code)
        self.code = code


class _Streams:
    """Bytes over asyncio streams (read ahead by the event loop)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.sock = writer.get_extra_info("socket")

    async def read(self, n: int) -> bytes:
        try:
            return await self.reader.readexactly(n)
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            raise Closed(None) from exc

    async def read_until(self, marker: bytes) -> bytes:
        try:
            return await self.reader.readuntil(marker)
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            raise Closed(None) from exc

    def write(self, data: bytes) -> None:
        self.writer.write(data)

    async def drain(self) -> None:
        try:
            await self.writer.drain()
        except ConnectionError as exc:
            raise Closed(None) from exc

    def close(self) -> None:
        self.writer.close()


class _LazySocket:
    """Bytes over a non-blocking socket, read only while a read is awaited."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._in = bytearray()
        self._out = bytearray()  # queued, not yet taken by the kernel
        self._draining = asyncio.Lock()  # one writer of what is queued, in order

    async def _fill(self) -> None:
        await self.drain()  # what was queued goes out before an answer is awaited
        try:
            data = await asyncio.get_running_loop().sock_recv(self.sock, 65536)
        except ConnectionError as exc:
            raise Closed(None) from exc
        if not data:
            raise Closed(None)
        self._in += data

    async def read(self, n: int) -> bytes:
        while len(self._in) < n:
            await self._fill()
        data = bytes(self._in[:n])
        del self._in[:n]
        return data

    async def read_until(self, marker: bytes) -> bytes:
        while (end := self._in.find(marker)) < 0:
            await self._fill()
        return await self.read(end + len(marker))

    def write(self, data: bytes) -> None:
        if not self._out and not self._draining.locked():  # nothing before it: at once
            with contextlib.suppress(BlockingIOError, InterruptedError, ConnectionError):
                data = data[self.sock.send(data):]
        self._out += data

    async def drain(self) -> None:
        async with self._draining:
            while self._out:
                data = bytes(self._out)
                try:
                    await asyncio.get_running_loop().sock_sendall(self.sock, data)
                except ConnectionError as exc:
                    raise Closed(None) from exc
                del self._out[:len(data)]

    def close(self) -> None:
        self.sock.close()


def _upgrade_request(host: str, port: int, query: str) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (f"GET /?{query} HTTP/1.1\r\nHost: {host}:{port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode()


def _query(encoding: str, compress: str | None) -> str:
    return f"v=10&encoding={encoding}" + (f"&compress={compress}" if compress else "")


class RawClient:
    """A minimal RFC 6455 gateway client that sends whatever frame it is told to."""

    def __init__(self, sock: socket.socket | None = None, encoding: str = "json",
                 compress: str | None = None, *,
                 streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
                 ) -> None:
        """On ``sock`` (connected, non-blocking: read lazily) or on ``streams``;
        ``compress``: the transport compression asked for (``zlib-stream``,
        ``zstd-stream``), None: plain frames."""
        if streams is not None:
            self._io: _Streams | _LazySocket = _Streams(*streams)
        elif sock is not None:
            self._io = _LazySocket(sock)
        else:
            raise TypeError("RawClient needs a socket or streams")
        self.sock = self._io.sock
        self.encoding = encoding
        self.compress = compress
        #: one decompressor for the connection, as client libraries keep (zlib-stream:
        #: an inflater; zstd-stream: discord.py's ``zstandard`` ``decompressobj``)
        self._inflate = zlib.decompressobj()
        self._unzstd = zstandard.ZstdDecompressor().decompressobj()
        self._buffer = bytearray()
        self._fragments: list[bytes] = []
        #: the last ``s`` received, and the session READY named (for heartbeats, RESUME)
        self.seq: int | None = None
        self.session_id: str | None = None

    @classmethod
    async def connect(cls, host: str, port: int, encoding: str = "json",
                      compress: str | None = None, timeout: float = 5.0,
                      query: str | None = None) -> RawClient:
        """Open the socket (asyncio streams) and upgrade; raises ``Closed`` with the
        HTTP status as code if the handshake is refused (e.g. 503 at the connection
        cap), or None if the connection drops."""
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        client = cls(encoding=encoding, compress=compress, streams=(reader, writer))
        await client._upgrade(host, port, query or _query(encoding, compress), timeout)
        return client

    @classmethod
    async def connect_lazy(cls, url: str, rcvbuf: int | None = 8192,
                           compress: str | None = None) -> RawClient:
        """A JSON client on a plain socket that reads only when asked. ``rcvbuf``: its
        receive buffer (None: the kernel's autotuning); ``compress`` as ``RawClient``'s."""
        parts = urlsplit(url)
        host, port = parts.hostname or "127.0.0.1", parts.port or 80
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:  # before connect: what the server may fill unread
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (host, port))
        client = cls(sock, "json", compress)
        await client._upgrade(host, port, _query("json", compress), None)
        return client

    async def _upgrade(self, host: str, port: int, query: str, timeout: float | None) -> None:
        self._io.write(_upgrade_request(host, port, query))
        try:
            await self._io.drain()
            head = await asyncio.wait_for(self._io.read_until(b"\r\n\r\n"), timeout)
        except Closed:
            self.close()
            raise
        status = int(head.split(b" ", 2)[1])
        if status != 101:
            self.close()
            raise Closed(status)

    # -- sending ---------------------------------------------------------------------------

    def frame(self, opcode: int, payload: bytes, *, fin: bool = True, rsv: int = 0,
              masked: bool = True) -> None:
        """Queue one frame exactly as described (``rsv``: the three bits, 0..7)."""
        head = bytearray([(0x80 if fin else 0) | (rsv & 7) << 4 | (opcode & 0xF)])
        n = len(payload)
        mask_bit = 0x80 if masked else 0
        if n < 126:
            head.append(mask_bit | n)
        elif n < 1 << 16:
            head.append(mask_bit | 126)
            head += struct.pack("!H", n)
        else:
            head.append(mask_bit | 127)
            head += struct.pack("!Q", n)
        if masked:
            mask = os.urandom(4)
            head += mask
            payload = bytes(b ^ mask[i & 3] for i, b in enumerate(payload))
        self._io.write(bytes(head) + payload)

    def encode(self, payload: Any) -> tuple[int, bytes]:
        """A payload as this connection's encoding sends it: (opcode, bytes)."""
        if self.encoding == "msgpack":
            return BINARY, msgpack.packb(payload, use_bin_type=True)
        return TEXT, json.dumps(payload, separators=(",", ":")).encode()

    def send(self, payload: Any) -> None:
        opcode, data = self.encode(payload)
        self.frame(opcode, data)

    async def drain(self) -> None:
        """Write what is queued; ``Closed`` if the connection is gone."""
        await self._io.drain()

    # -- receiving -------------------------------------------------------------------------

    async def _read_frame(self) -> tuple[int, bool, bytes]:
        b0, b1 = await self._io.read(2)
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", await self._io.read(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", await self._io.read(8))[0]
        return b0 & 0xF, bool(b0 & 0x80), await self._io.read(n)

    async def receive(self) -> dict[str, Any] | None:
        """The next whole payload from the server (None: a zlib-stream part; its ``s``
        noted); raises ``Closed`` at a close frame or the end of the stream."""
        while True:
            opcode, fin, data = await self._read_frame()
            if opcode == CLOSE:
                code = struct.unpack("!H", data[:2])[0] if len(data) >= 2 else None
                raise Closed(code)
            if opcode in (PING, PONG):
                continue
            self._fragments.append(data)
            if not fin:
                continue
            data = b"".join(self._fragments)
            self._fragments.clear()
            if self.compress == "zstd-stream":  # each frame ends on a flushed block
                data = self._unzstd.decompress(data)
            elif self.compress == "zlib-stream":
                self._buffer += data
                if not data.endswith(ZLIB_SUFFIX):
                    return None
                data = self._inflate.decompress(bytes(self._buffer))
                self._buffer.clear()
            if self.encoding == "msgpack":
                payload = msgpack.unpackb(data, raw=False)
            else:
                payload = json.loads(data)
            if isinstance(payload, dict) and payload.get("s") is not None:
                self.seq = payload["s"]
            return payload

    async def recv(self) -> dict[str, Any]:
        """The next whole payload (zlib-stream parts read through)."""
        while (payload := await self.receive()) is None:
            pass
        return payload

    async def receive_op(self, op: int, timeout: float) -> dict[str, Any]:
        """Skip payloads until one with ``op`` (raises ``Closed`` or TimeoutError)."""
        async def wait() -> dict[str, Any]:
            while True:
                payload = await self.receive()
                if payload is not None and payload.get("op") == op:
                    return payload

        return await asyncio.wait_for(wait(), timeout)

    # -- a well-behaved session ----------------------------------------------------------

    async def identify(self, token: str, intents: int = INTENTS) -> None:
        """HELLO, IDENTIFY, then read through READY and the GUILD_CREATE."""
        await self.recv()  # HELLO
        self.send({"op": 2, "d": {"token": token, "intents": intents,
                                  "properties": {"os": "linux", "browser": "raw",
                                                 "device": "raw"}}})
        await self.drain()
        while True:
            message = await self.recv()
            if message.get("t") == "READY":
                self.session_id = message["d"]["session_id"]
            elif message.get("t") == "GUILD_CREATE":
                return

    async def heartbeat(self) -> None:
        self.send({"op": 1, "d": self.seq})
        await self.drain()

    async def resume(self, token: str, session_id: str, seq: int | None) -> None:
        await self.recv()  # HELLO
        self.send({"op": 6, "d": {"token": token, "session_id": session_id, "seq": seq}})
        await self.drain()

    def reset_by_peer(self) -> bool:
        """Whether the server aborted the connection (RST), without reading any data."""
        poller = select.poll()
        poller.register(self.sock, select.POLLERR | select.POLLHUP)
        return any(event & (select.POLLERR | select.POLLHUP)
                   for _, event in poller.poll(0))

    def close(self) -> None:
        self._io.close()
