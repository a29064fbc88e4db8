"""Direct links between node processes carrying batched msgpack envelopes.

Thespian's TCP transport pickles one message per connection round (≈4k msgs/s) and
unpickles whatever arrives; the data plane instead writes length-prefixed msgpack
envelopes (``actors.wire``), many per ``write`` (one flush per event-loop turn), on a
link opened by the sender and authenticated with the cluster secret:

    server -> client   b"GRDP2" + 16-byte nonce
    client -> server   hello + HMAC-SHA256(secret, nonce + hello), where
                       hello = u16 len + node name + u16 len + b"host:port"
    server -> client   b"OK" (or closes)

A link that has not authenticated ``HANDSHAKE_TIMEOUT`` seconds after it connected
is closed (counted, logged at info): a peer that never speaks holds no socket.

``host:port`` is where the client's own data plane listens: a node that is asked
something by a peer it has not been told about yet (the membership announcement is
still on its way) can still send the answer back (``DataPlane.heard_from``).

Then the client streams ``u32 length + envelope``. Each envelope is decoded alone, so
one malformed envelope is logged, counted (``envelopes_malformed_total``) and
skipped; a frame that breaks the stream itself (over ``MAX_FRAME``) closes the link.
A link whose socket buffer passes ``HIGH_WATER`` stops flushing until it drains;
past ``MAX_PENDING`` queued envelopes the sender gets its message back as
``Overloaded`` — nothing is dropped silently. A dropped link reconnects on the next
send, with backoff.

Tracing: an envelope with a ``trace`` gets a ``dataplane.send`` span on the sender (from
encoding until its batch is written to the socket; peer, bytes, the queue it joined,
the batch it left in) and a ``dataplane.receive`` span on the receiver (from the read
that brought it until it is handed to its actor), both children of the sending actor's
span: the receiving actor's span stays the child of the sender's, as without them.
An envelope without one costs a test per envelope and per flush.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
import struct
import time
from collections.abc import Callable
from typing import Any

from opentelemetry.context import get_current as _otel_context
from opentelemetry.trace import SpanKind

from actors.address import Address
from actors.messages import Overloaded
from actors.registry import Route
from actors.system_base import UvloopSystemBase
from actors.wire import MalformedEnvelope, envelope, packer, unpack_envelope
from cluster.routing import Placed
from observability import counter, inject_current
from observability.logging import LogThrottle
from observability.spans import fail, start

log = logging.getLogger("greenroom.data_plane")
#: Drops and refusals can come per envelope (a peer gone, a link full, a bad peer):
#: one line a second per reason and peer, with the count held back (``suppressed``).
_drop_lines = LogThrottle(interval=1.0)


def _log_drop(level: int, event: str, key: Any, **fields: Any) -> None:
    held = _drop_lines.allow((event, key))
    if held is not None:
        log.log(level, event, extra={**fields, "suppressed": held})

MAGIC = b"GRDP2"
NONCE = 16
MAX_FRAME = 16 * 1024 * 1024
HIGH_WATER = 4 * 1024 * 1024
MAX_PENDING = 200_000
#: seconds a connection has to complete the handshake (``DataPlane.handshake_timeout``)
HANDSHAKE_TIMEOUT = 5.0
_LEN = struct.Struct(">I")

_PEER = {"peer": None}
malformed = counter("envelopes_malformed_total", "envelopes that could not be decoded",
                    labels={"reason": ("frame_too_large", "envelope")})
received = counter("envelopes_received_total", "envelopes delivered from other nodes, "
                   "by peer", labels=_PEER)
received_bytes = counter("dataplane_received_bytes_total", "data-plane bytes read, by peer",
                         labels=_PEER)
unencodable = counter("envelopes_unencodable_total",
                      "messages that are not wire types or over the frame limit")
sent = counter("envelopes_sent_total", "envelopes written to other nodes, by peer",
               labels=_PEER)
sent_bytes = counter("dataplane_sent_bytes_total", "data-plane bytes written, by peer",
                     labels=_PEER)
handshake_timeouts = counter("links_handshake_timeout_total",
                             "inbound links closed for not authenticating in time")
refused_links = counter("links_refused_total", "links that failed authentication")


def _mac(secret: bytes, nonce: bytes, hello: bytes) -> bytes:
    return hmac.new(secret, nonce + hello, hashlib.sha256).digest()


def _hello(node: str, address: tuple[str, int]) -> bytes:
    """The client's half of the handshake, before its MAC: who it is, where it listens."""
    name, where = node.encode(), f"{address[0]}:{address[1]}".encode()
    return struct.pack(">H", len(name)) + name + struct.pack(">H", len(where)) + where


class _Inbound(asyncio.Protocol):
    """The server side of one link: handshake, then envelopes in."""

    def __init__(self, plane: DataPlane) -> None:
        self.plane = plane
        self.buf = bytearray()
        self.peer: str | None = None
        self.nonce = os.urandom(NONCE)
        self.transport: asyncio.Transport | None = None
        self.deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.write(MAGIC + self.nonce)  # type: ignore[attr-defined]
        self.deadline = self.plane.loop.call_later(self.plane.handshake_timeout,
                                                   self.too_slow)

    def too_slow(self) -> None:
        """No authenticated hello in time: a scanner, a stuck or hostile process. Not
        the server's error, so info; the count shows a flood."""
        if self.peer is None and not self.transport.is_closing():
            handshake_timeouts.add()
            log.info("data plane: closed a link from %s that did not authenticate in %.1fs",
                     self.transport.get_extra_info("peername"), self.plane.handshake_timeout)
            self.transport.abort()

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        if self.peer is None:
            if len(buf) < 2:
                return
            (n,) = struct.unpack_from(">H", buf)
            if len(buf) < 2 + n + 2:
                return
            (m,) = struct.unpack_from(">H", buf, 2 + n)
            end = 2 + n + 2 + m
            if len(buf) < end + 32:
                return
            hello = bytes(buf[:end])
            mac = bytes(buf[end:end + 32])
            del buf[:end + 32]
            host, _, port = hello[4 + n:].decode(errors="replace").rpartition(":")
            if (not hmac.compare_digest(mac, _mac(self.plane.secret, self.nonce, hello))
                    or not port.isdigit()):
                _log_drop(logging.WARNING, "dataplane.link_refused", None,
                          remote=str(self.transport.get_extra_info("peername")),
                          reason="authentication failed")
                refused_links.add()
                self.transport.close()
                return
            self.deadline.cancel()
            self.peer = hello[2:2 + n].decode()
            self.plane.heard_from(self.peer, (host, int(port)), self)
            self.transport.write(b"OK")
        base = self.plane.base
        deliver = base.deliver
        here = base.node
        cells = base.cells
        arrived = time.time_ns()  # a traced envelope's dataplane.receive starts here
        pos = 0
        end = len(buf)
        delivered = 0
        try:
            while end - pos >= 4:
                (size,) = _LEN.unpack_from(buf, pos)
                if size > MAX_FRAME:
                    log.error("data plane: frame of %d bytes from %s; closing the link", size,
                              self.peer)
                    malformed.add(reason="frame_too_large")
                    self.transport.close()
                    return
                if end - pos - 4 < size:
                    break
                frame = buf[pos + 4:pos + 4 + size]  # one copy; msgpack reads a bytearray
                pos += 4 + size
                try:
                    to, sender, message, trace = unpack_envelope(frame)
                except MalformedEnvelope as err:
                    malformed.add(reason="envelope")
                    _log_drop(logging.WARNING, "dataplane.malformed_envelope", self.peer,
                              peer=self.peer, error=str(err))
                    continue
                if to.node == here:
                    # what send_slow would do first: resolve the local cell, so that
                    # deliver takes its fast path (a missing or dead one still falls back)
                    to._cell = cells.get(to.id)
                delivered += 1
                if trace is None:
                    deliver(to, message, sender)
                else:
                    span = start(trace, "dataplane.receive", {
                        "greenroom.peer": self.peer, "greenroom.node": here,
                        "greenroom.message_type": type(message).__name__,
                        "greenroom.bytes": size}, kind=SpanKind.CONSUMER, start_time=arrived)
                    try:
                        deliver(to, message, sender)
                    finally:
                        span.end()
        finally:
            if delivered:
                received.add(delivered, peer=self.peer)
                received_bytes.add(pos, peer=self.peer)
            del buf[:pos]

    def connection_lost(self, exc: Exception | None) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
        self.plane.inbound.discard(self)
        if self.peer is not None:
            self.plane.not_heard(self.peer, self)


class _Link(asyncio.Protocol):
    """The client side of a link to one peer: envelopes out, batched per loop turn."""

    def __init__(self, plane: DataPlane, peer: str) -> None:
        self.plane = plane
        self.peer = peer
        self.pending: list[bytes] = []
        self.spans: list[Any] = []  # dataplane.send spans of the traced envelopes pending
        self.transport: asyncio.Transport | None = None
        self.ready = False
        self.paused = False
        self.flush_scheduled = False
        self.connecting: asyncio.Task | None = None
        self.handshake = bytearray()
        self.failures = 0

    # -- sending -------------------------------------------------------------------------

    def send(self, frame: bytes, to: Address, message: Any, sender: Address | None,
             span: Any = None) -> None:
        if len(self.pending) >= MAX_PENDING:
            if span is not None:
                fail(span, "link overloaded")
            self.plane.bounce(to, message, sender)
            return
        self.pending.append(frame)
        if span is not None:
            span.set_attribute("greenroom.queued_envelopes", len(self.pending) - 1)
            self.spans.append(span)
        if self.ready:
            if not self.flush_scheduled and not self.paused:
                self.flush_scheduled = True
                self.plane.loop.call_soon(self.flush)
        elif self.connecting is None:
            self.connecting = self.plane.loop.create_task(self.connect())

    def flush(self) -> None:
        self.flush_scheduled = False
        if not self.ready or self.paused or not self.pending:
            return
        frames, self.pending = self.pending, []
        data = b"".join(frames)
        self.transport.write(data)
        sent.add(len(frames), peer=self.peer)
        sent_bytes.add(len(data), peer=self.peer)
        if self.spans:
            spans, self.spans = self.spans, []
            for span in spans:
                span.set_attribute("greenroom.batch_envelopes", len(frames))
                span.end()

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        self.flush()

    # -- connecting ----------------------------------------------------------------------

    async def connect(self) -> None:
        try:
            if self.failures:
                await asyncio.sleep(min(2.0, 0.05 * 2 ** self.failures))
            host, port = self.plane.peers[self.peer]
            await self.plane.loop.create_connection(lambda: self, host, port)
        except (OSError, KeyError) as err:
            self.failures += 1
            self.connecting = None
            log.warning("data plane: cannot reach %s (%s); %d envelopes waiting", self.peer,
                        err, len(self.pending))
            if self.failures >= 5:
                self.plane.give_up(self)
            elif self.pending:
                self.connecting = self.plane.loop.create_task(self.connect())

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.set_write_buffer_limits(high=HIGH_WATER)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        if self.ready:
            return
        self.handshake += data
        if len(self.handshake) >= len(MAGIC) + NONCE and not self.transport.is_closing():
            hs = bytes(self.handshake)
            if not hs.startswith(MAGIC):
                self.transport.close()
                return
            if len(hs) == len(MAGIC) + NONCE:
                nonce = hs[len(MAGIC):]
                hello = _hello(self.plane.node, (self.plane.host, self.plane.port))
                self.transport.write(hello + _mac(self.plane.secret, nonce, hello))
            elif hs.endswith(b"OK"):
                self.ready = True
                self.failures = 0
                self.connecting = None
                self.flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.ready = False
        self.transport = None
        self.handshake.clear()
        self.connecting = None
        if self.plane.links.get(self.peer) is self:
            del self.plane.links[self.peer]
        if self.pending and not self.plane.closing:
            # Envelopes written before the loss may be gone (at-most-once, like any
            # actor message); those still queued go on over a new link.
            link = self.plane.link(self.peer)
            link.pending.extend(self.pending)
            link.spans.extend(self.spans)
            self.spans = []
            link.connecting = self.plane.loop.create_task(link.connect())


class DataPlane:
    """This node's end of the data plane: one listener and a link per peer."""

    def __init__(self, base: UvloopSystemBase, secret: bytes, *, host: str = "127.0.0.1",
                 port: int = 0) -> None:
        if not secret:
            raise ValueError("the data plane needs a cluster secret")
        self.base = base
        self.loop = base.loop
        self.node = base.node
        self.secret = secret
        self.host = host
        self.port = port
        self.peers: dict[str, tuple[str, int]] = {}
        #: peers not announced yet, known from their inbound link (``heard_from``)
        self.unannounced: dict[str, tuple[tuple[str, int], _Inbound]] = {}
        self.links: dict[str, _Link] = {}
        self.inbound: set[_Inbound] = set()
        self.server: asyncio.AbstractServer | None = None
        self.closing = False
        self.on_unreachable: Callable[[str], None] | None = None
        #: seconds an inbound connection has to authenticate (tests shorten it)
        self.handshake_timeout = HANDSHAKE_TIMEOUT
        self._pack = packer().pack  # reused (route runs on the loop's thread only)

    async def start(self) -> tuple[str, int]:
        self.server = await self.loop.create_server(
            lambda: self._accept(), self.host, self.port)
        self.port = self.server.sockets[0].getsockname()[1]
        self.base.router = self.route
        return self.host, self.port

    def _accept(self) -> _Inbound:
        proto = _Inbound(self)
        self.inbound.add(proto)
        return proto

    def set_peers(self, peers: dict[str, tuple[str, int]]) -> None:
        """The announced peers. A peer only heard from (``heard_from``) stays one until
        an announcement names it: announcements made before it joined may still
        arrive after its link did."""
        self.peers = {k: tuple(v) for k, v in peers.items() if k != self.node}
        unannounced = self.unannounced
        for peer in list(unannounced):
            if peer in self.peers:
                del unannounced[peer]
            else:
                self.peers[peer] = unannounced[peer][0]

    def heard_from(self, peer: str, address: tuple[str, int], inbound: _Inbound) -> None:
        """An authenticated link came in from ``peer``, listening at ``address``. Until
        the membership announcement that names it reaches this node, ``peers`` lacks
        it, and the answers to what it asks would be dead letters (the lost reply to a
        client's first ask right after it joined). Such a peer is known from its link
        until an announcement names it, or until that link closes."""
        if peer != self.node and (peer not in self.peers or peer in self.unannounced):
            self.peers[peer] = address
            self.unannounced[peer] = (address, inbound)

    def not_heard(self, peer: str, inbound: _Inbound) -> None:
        """The link ``heard_from`` learned an unannounced peer from has closed."""
        entry = self.unannounced.get(peer)
        if entry is not None and entry[1] is inbound:
            del self.unannounced[peer]
            if self.peers.get(peer) == entry[0]:
                del self.peers[peer]

    def link(self, peer: str) -> _Link:
        link = self.links.get(peer)
        if link is None:
            link = self.links[peer] = _Link(self, peer)
        return link

    def route(self, to: Address, message: Any, sender: Address | None) -> None:
        """``UvloopSystemBase.router``: send to an actor on another node."""
        if to.node not in self.peers:
            # a node that left (or never was): what is sent to it meanwhile is dropped
            _log_drop(logging.WARNING, "dataplane.dropped", to.node, peer=to.node,
                      reason="not a live peer", target=str(to),
                      msg_type=type(message).__name__, trace=getattr(message, "trace", None))
            self.base.dead_letter(to, message)
            if sender is not None:
                self.base.fail_ask(sender, to.node)  # an ask's request: no answer will come
            return
        trace = getattr(message, "trace", None)
        if trace is None and type(message) is Placed:
            # a registry forward (REST -> channel on another node) carries its trace in
            # the routed message; the envelope repeats it so the hop has its spans
            routed = message.request
            trace = getattr(routed.message if type(routed) is Route else routed, "trace", None)
        if not trace and _otel_context():
            trace = inject_current()  # an empty context has no span to inject
        span = None
        if trace:
            span = start(trace, "dataplane.send", {
                "greenroom.peer": to.node, "greenroom.node": self.node,
                "greenroom.message_type": type(message).__name__}, kind=SpanKind.PRODUCER)
        try:
            frame = self._pack(envelope(to, sender, message, trace))
            if len(frame) > MAX_FRAME:
                # the receiver would close the link on it, and lose everything queued
                # behind it (the sender must cut such messages up)
                raise ValueError(f"{len(frame)} bytes, over the {MAX_FRAME}-byte frame limit")
        except (TypeError, ValueError) as err:
            # Not a wire type, or too big: the sender's bug, not the link's. The message
            # cannot leave this process; it is a dead letter, said loudly.
            unencodable.add()
            _log_drop(logging.ERROR, "dataplane.unencodable", type(message).__name__,
                      peer=to.node, target=str(to), msg_type=type(message).__name__,
                      error=str(err), trace=getattr(message, "trace", None))
            fail(span, "not encodable")
            self.base.dead_letter(to, message)
            return
        link = self.links.get(to.node)
        if link is None:
            link = self.link(to.node)
        if span is not None:
            span.set_attribute("greenroom.bytes", len(frame))
        link.send(_LEN.pack(len(frame)) + frame, to, message, sender, span)

    def bounce(self, to: Address, message: Any, sender: Address | None) -> None:
        """The link to ``to``'s node holds ``MAX_PENDING`` envelopes: refused, and the
        sender (if any) gets ``Overloaded``."""
        _log_drop(logging.WARNING, "dataplane.refused", to.node, peer=to.node,
                  reason="link full", pending=MAX_PENDING, msg_type=type(message).__name__,
                  trace=getattr(message, "trace", None))
        if sender is not None:
            self.base.deliver(sender, Overloaded(to, message, MAX_PENDING), to)

    def give_up(self, link: _Link) -> None:
        log.error("dataplane.peer_unreachable",
                  extra={"peer": link.peer, "dropped": len(link.pending)})
        self.links.pop(link.peer, None)
        link.pending.clear()
        spans, link.spans = link.spans, []
        for span in spans:
            fail(span, "peer unreachable")
        # the asks whose requests were among them (or answered from there) fail now
        self.base.fail_asks_awaiting(link.peer)
        if self.on_unreachable is not None:
            self.on_unreachable(link.peer)

    async def close(self) -> None:
        self.closing = True
        for link in list(self.links.values()):
            link.flush()
            if link.transport is not None:
                link.transport.close()
            if link.connecting is not None:  # a (re)connect still under way: it ends here
                link.connecting.cancel()
                link.connecting = None
        for proto in list(self.inbound):
            proto.transport.close()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
