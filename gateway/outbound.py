"""Bounds on what one WebSocket connection may hold queued for a client that reads slowly
or not at all (issue 10, finding 3).

Without them a client that heartbeats but never reads grows the node without bound: every
dispatch is framed and queued in the transport. With them (``Link`` in ``server.py``):

- once the transport holds more than ``high_water`` bytes (uvloop's ``pause_writing``),
  the connection stops writing dispatches: it only numbers them in the session's replay
  log, which keeps each as a pointer to the ``PreparedDispatch`` every recipient shares;
- once it drains below ``low_water`` (``resume_writing``) it writes that backlog from the
  log, in order, until the high-water mark again (a slow reader gets everything);
- a connection above the mark that makes no progress for ``stall_timeout_s``, or whose
  backlog would outgrow the replay log, is closed with 4000 (resumable, as Discord's
  clients treat it: they RESUME and get the backlog replayed, or INVALID_SESSION when it
  fell beyond ``replay_max_entries``);
- a close that cannot be delivered (the client does not read the bytes ahead of it) is
  followed, ``close_grace_s`` later, by an abort (RST), which frees the queued bytes,
  the kernel's included.

So a connection holds at most ``high_water`` plus one frame in user space (plus, while
a RESUME replays, the replayed frames), ``send_buffer`` in the kernel, and for at most
``stall_timeout_s + close_grace_s`` once it stops reading.

REST and ingress (aiohttp) already bound what one connection queues: at most 32
pipelined requests are parsed ahead (then reading pauses), and a handler's response
waits in ``drain`` while the transport is above 64 KiB. What aiohttp does not bound is
how long: a client that never reads keeps its answer and the kernel's autotuned send
queue (up to 4 MiB) for as long as it keeps the socket open (measured: ~0.8 MiB RSS and
3.2 MiB of kernel queue per connection pipelining history reads, held indefinitely).
``bounded_responses`` adds the same ``send_buffer`` and a deadline for handing each
answer to the kernel (``response_timeout_s``), after which the connection is reset.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from picows import WSMsgType

from observability import counter

bytes_out = counter("gateway_out_bytes_total",
                    "WebSocket frame payload bytes written to clients")
#: ``bytes_out``'s count, summed in place by every write (~0.03 µs against ~0.17 for
#: ``Counter.add``: the fan-out writes once per recipient) and read with the counter
bytes_written = [0]
bytes_out.observe(lambda: (({}, bytes_written[0]),))
_response_timeouts = counter("http_response_write_timeouts_total",
                             "REST/ingress connections reset: an answer not taken in time")


def ws_frame_header(kind: WSMsgType, size: int) -> bytes:
    """The header of an unfragmented, unmasked (server-to-client) frame of ``size``
    payload bytes (RFC 6455 §5.2), as picows writes it."""
    first = 0x80 | int(kind)  # FIN, no RSV bit, the opcode
    if size < 126:
        return bytes((first, size))
    if size < 1 << 16:
        return bytes((first, 126)) + size.to_bytes(2, "big")
    return bytes((first, 127)) + size.to_bytes(8, "big")


def write_frames(transport: Any, frames: list[tuple[WSMsgType, bytes]]) -> None:
    """Several frames (``frames``: each its kind and payload) in one write to a picows
    ``transport``: one segment, one wake-up of the client and one ``send`` instead of one
    each (the kernel's share of a loopback delivery barely depends on its size: ~8 µs for
    851 bytes, ~9 for 3,404). It goes to the transport picows's own sends go through, so
    the order holds; nothing once a close went out, as picows's send."""
    if not (transport.is_close_frame_sent or transport.is_disconnected):
        parts = []
        for kind, data in frames:
            parts.append(ws_frame_header(kind, len(data)))
            parts.append(data)
        transport.underlying_transport.write(b"".join(parts))


@dataclass(frozen=True, slots=True)
class WriteLimits:
    """Why these defaults: an idle session costs ~15 KiB, and most of a busy session's
    backlog lives in its replay log as pointers, so user space only needs to cover what
    the kernel drains between two ``resume_writing`` calls. 256 KiB above a 256 KiB
    kernel buffer (``send_buffer`` doubled by Linux) keeps a 20 Mbit/s client at 100 ms
    RTT busy, and 10,000 stalled sessions cost at most ~5 GiB for ``stall_timeout_s``.
    Discord publishes no figure; its clients treat 4000 as "resume"."""

    #: Bytes queued in the transport above which dispatches wait in the replay log.
    high_water: int = 256 << 10
    #: Below this the held dispatches are written again.
    low_water: int = 64 << 10
    #: Above ``high_water`` with no progress (the queue did not shrink) this long: 4000.
    stall_timeout_s: float = 10.0
    #: After a close the client could not read (bytes still queued), abort this late.
    close_grace_s: float = 5.0
    #: SO_SNDBUF per connection (Linux doubles it); 0 keeps the kernel's autotuning,
    #: which grows to ``net.ipv4.tcp_wmem``'s maximum (4 MiB by default) per socket.
    send_buffer: int = 128 << 10
    #: REST and ingress: an answer not handed to the kernel within this long resets the
    #: connection (a 256 KiB history page at 10 KiB/s needs ~25 s; most fit the kernel's
    #: send buffer at once).
    response_timeout_s: float = 30.0

    def __post_init__(self) -> None:
        if not 0 <= self.low_water <= self.high_water:
            raise ValueError("0 <= low_water <= high_water is required")
        if min(self.stall_timeout_s, self.close_grace_s, self.send_buffer,
               self.response_timeout_s) < 0:
            raise ValueError("timeouts and send_buffer must not be negative")


DEFAULT_WRITE_LIMITS = WriteLimits()


def apply_write_limits(transport: Any, limits: WriteLimits) -> None:
    """Set ``limits`` on an accepted connection's asyncio ``transport`` (uvloop's):
    its pause/resume marks and the socket's kernel send buffer."""
    transport.set_write_buffer_limits(high=limits.high_water, low=limits.low_water)
    _set_send_buffer(transport, limits.send_buffer)


def _set_send_buffer(transport: Any, size: int) -> None:
    sock = transport.get_extra_info("socket") if size else None
    if sock is not None:
        with contextlib.suppress(OSError):  # the peer is gone already: nothing to bound
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)


#: SO_LINGER on, 0 s: close() sends RST and frees the kernel's send queue at once.
_LINGER_0 = struct.pack("ii", 1, 0)


def abort(transport: Any) -> None:
    """Drop a connection's queued bytes, user space and kernel: a plain abort closes the
    socket, but the kernel keeps what it holds (up to ``send_buffer``) and keeps offering
    it to a client that does not read for minutes; with SO_LINGER 0 the close is a RST."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):  # closed meanwhile: nothing left to drop
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_0)
    transport.abort()


_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def bounded_responses(limits: WriteLimits) -> Any:
    """An aiohttp middleware (put it outermost): the connection's kernel send buffer is
    ``send_buffer``, and an answer held in memory must reach the kernel within
    ``response_timeout_s``, else the connection is reset (``abort``). aiohttp then finds
    the answer written or the connection gone, and logs nothing."""

    # the transports bounded already: a keep-alive connection's socket keeps its buffer
    # size, and setting it again cost each request a system call and a socket object
    bounded_already: weakref.WeakSet[Any] = weakref.WeakSet()

    @web.middleware
    async def bounded(request: web.Request, handler: _Handler) -> web.StreamResponse:
        transport = request.transport
        if transport is not None and transport not in bounded_already:
            _set_send_buffer(transport, limits.send_buffer)
            bounded_already.add(transport)
        response = await handler(request)
        if transport is None or response.prepared or not isinstance(response, web.Response):
            return response  # streamed by its handler, which owns its own writes
        try:
            async with asyncio.timeout(limits.response_timeout_s):
                await response.prepare(request)
                await response.write_eof()
        except TimeoutError:
            _response_timeouts.add()
            abort(transport)
        except ConnectionError:
            pass  # the client went away: aiohttp sees it too
        return response

    return bounded
