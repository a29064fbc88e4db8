"""Thespian's TCP transport, kept on one interface and made to authenticate.

Thespian's ``multiprocTCPBase`` gives every process of the node tree (admin, logger,
supervisor, membership, nodes, and the process that started the ActorSystem) a TCP
listener that unpickles whatever arrives: any process that can reach one runs code
in the server. Two patches, installed before the ActorSystem starts (Thespian forks
its processes, which inherit them):

- ``bind_thespian_to(host)`` binds (and advertises) every such socket on ``host``
  instead of every interface.
- ``authenticate_thespian(secret)`` replaces the one object Thespian frames every
  message and acknowledgement with (``TCPTransport.serializer``, used as
  ``toSendBuffer(x, serializer.dumps)`` / ``ReceiveBuffer(serializer.loads)``). A
  frame's body becomes ``MAC || header || pickle`` with
  ``MAC = HMAC-SHA256(secret, header || pickle)``; the receiver checks the MAC with
  ``hmac.compare_digest`` before a byte is unpickled, refuses stale and replayed
  frames (``header``: sender instance, sequence number, time), and unpickles only
  allowlisted classes (``RestrictedUnpickler``). Thespian answers a refused frame
  with ``ACK+DATAERR`` and a closed socket. Thespian's two constant acknowledgements
  are compared as bytes, never unpickled; a frame announced over ``MAX_FRAME`` is
  refused before it is read.

Replay, decided: within ``WINDOW`` seconds a frame is accepted once per receiving
process (per-sender sliding window of sequence numbers, as IPsec's anti-replay);
older frames are refused by their time. Thespian re-sends a frame's same bytes when
an acknowledgement was lost; if the first copy had arrived, the copy is refused
(the message was delivered once — Thespian reports that send as a bad packet).
Nodes on different hosts need clocks within ``WINDOW`` of each other (NTP).
"""

from __future__ import annotations

import builtins
import dataclasses
import enum
import hashlib
import hmac
import io
import itertools
import os
import pickle
import struct
import sys
import threading
import time
from typing import Any

from thespian.actors import Actor, ActorSystemMessage
from thespian.system.transport import IPBase, TCPTransport
from thespian.system.transport.streamBuffer import ReceiveBuffer, ackDataErrPacket, ackPacket

from observability import counter

#: how old (or how far ahead) a frame's time may be, in seconds
WINDOW = 300.0
#: how far behind the newest sequence number of a sender a frame may still arrive
REPLAY_WINDOW = 4096
#: the largest frame read (Thespian's messages here are kilobytes)
MAX_FRAME = 16 * 1024 * 1024

_MAC = 32
_HEADER = struct.Struct(">8sQd")  # sender instance, sequence number, time (epoch s)
_PLAIN = pickle.dumps  # what Thespian's acknowledgements are framed with
_ACKS = {_PLAIN(ackPacket): ackPacket, _PLAIN(ackDataErrPacket): ackDataErrPacket}

refused = counter("thespian_frames_refused_total",
                  "Thespian TCP frames refused before or while unpickling",
                  labels={"reason": ("short", "mac", "stale", "replay", "type")})

_original_init = IPBase.IPActorAddress.__init__


def bind_thespian_to(host: str = "127.0.0.1") -> None:
    """Bind (and advertise) Thespian's TCP sockets on ``host`` instead of every interface."""
    os.environ["THESPIAN_BASE_IPADDR"] = host

    def __init__(self, af, socktype, proto, baseaddr, port, external=False):  # noqa: N807
        _original_init(self, af, socktype, proto, baseaddr, port, external)
        if self.bindname[0] in ("", "0.0.0.0"):
            self.bindname = (host, self.bindname[1])

    IPBase.IPActorAddress.__init__ = __init__


class Refused(Exception):
    """A frame that is not unpickled: bad MAC, stale, replayed or not allowlisted."""


# -- what may be unpickled -------------------------------------------------------------

#: the packages whose message types travel through Thespian (supervision, membership,
#: node configuration), found by running the tree with every find_class recorded
PROJECT_PACKAGES = ("actors", "cluster", "supervision", "chat", "gateway", "storage",
                    "observability", "greenroom")
#: Thespian's classes that travel and are not ``ActorSystemMessage``s: addresses and
#: the routing wrapper
_THESPIAN = frozenset({
    ("thespian.actors", "ActorAddress"),
    ("thespian.system.transport", "ForwardMessage"),
    *(("thespian.system.transport." + m, c)
      for m in ("IPBase", "TCPTransport")
      for c in ("TCPv4ActorAddress", "TCPv6ActorAddress", "RoutedTCPv4ActorAddress",
                "TXOnlyAdminTCPv4ActorAddress")),
})
#: value types from the standard library that messages and log records hold
_STDLIB = frozenset({
    ("builtins", "set"), ("builtins", "frozenset"), ("builtins", "bytearray"),
    ("builtins", "complex"), ("builtins", "slice"), ("builtins", "range"),
    ("collections", "OrderedDict"), ("collections", "deque"),
    ("datetime", "datetime"), ("datetime", "timedelta"), ("datetime", "date"),
    ("datetime", "time"), ("datetime", "timezone"),
    ("socket", "AddressFamily"), ("socket", "SocketKind"),  # in Thespian's addresses
    ("logging", "LogRecord"),  # to Thespian's logger process
})


class RestrictedUnpickler(pickle.Unpickler):
    """Resolves only allowlisted classes, never a function or a module: Thespian's
    messages and addresses, the value types of greenroom's packages (dataclasses,
    named tuples, enums, exceptions) and its actor classes (named in supervisor
    specs), a few standard value types and the builtin exceptions."""

    def find_class(self, module: str, name: str) -> Any:
        if "." not in name and _allowed(module, name):
            return super().find_class(module, name)
        raise Refused(f"not allowlisted: {module}.{name}")


def _allowed(module: str, name: str) -> bool:
    if (module, name) in _STDLIB or (module, name) in _THESPIAN:
        return True
    if module == "builtins":
        found = getattr(builtins, name, None)
        return isinstance(found, type) and issubclass(found, BaseException)
    top = module.partition(".")[0]
    if top not in PROJECT_PACKAGES and top != "thespian":
        return False
    # never import on a peer's word: a message's module is loaded where it is expected
    found = getattr(sys.modules.get(module), name, None)
    # defined there: not a function, nor a class the module merely imported
    if not isinstance(found, type) or found.__module__ != module:
        return False
    if top == "thespian":
        return issubclass(found, (ActorSystemMessage, Exception))
    return (dataclasses.is_dataclass(found) or issubclass(found, (tuple, enum.Enum,
                                                                  Exception, Actor)))


def restricted_loads(data: bytes) -> Any:
    return RestrictedUnpickler(io.BytesIO(data)).load()


# -- signing and checking --------------------------------------------------------------


class _Replays:
    """Per sender instance: the newest sequence number seen and a bitmask of the
    ``REPLAY_WINDOW`` before it; entries not heard from for ``2 * WINDOW`` go (their
    frames are refused by time by then)."""

    def __init__(self) -> None:
        self.seen: dict[bytes, list] = {}  # instance -> [newest, mask, last heard]
        self.lock = threading.Lock()

    def accept(self, instance: bytes, seq: int, now: float) -> bool:
        with self.lock:
            entry = self.seen.get(instance)
            if entry is None:
                if len(self.seen) >= 1024:
                    self.seen = {k: v for k, v in self.seen.items()
                                 if now - v[2] < 2 * WINDOW}
                self.seen[instance] = [seq, 1, now]
                return True
            newest, mask, _ = entry
            if seq > newest:
                shift = seq - newest
                mask = ((mask << shift) | 1) & ((1 << REPLAY_WINDOW) - 1)
                entry[:] = [seq, mask, now]
                return True
            behind = newest - seq
            if behind >= REPLAY_WINDOW or mask >> behind & 1:
                return False
            entry[1] = mask | 1 << behind
            entry[2] = now
            return True


class RefusedFrame:
    """What ``SignedPickle.loads`` makes of a refused frame: Thespian unpacks a frame
    as ``(sender, message)``, and this one raises the refusal when it is unpacked."""

    def __init__(self, refusal: Refused) -> None:
        self.refusal = refusal

    def __iter__(self):
        raise self.refusal


class _BoundedReceiveBuffer(ReceiveBuffer):
    """Thespian's receive buffer, which would read a frame of any announced length
    before anything can be checked: one announced over ``MAX_FRAME`` ends at once, as
    an empty (so refused) frame."""

    def addMore(self, buf: bytes) -> None:  # noqa: N802 (Thespian's name)
        super().addMore(buf)
        if self._size is not None and self._size > MAX_FRAME:
            self._buf, self._blen, self._size, self._extra = b"", 0, 0, b""


class _Accepted(threading.local):
    data: bytes | None = None  # the frame last accepted by this thread


class SignedPickle:
    """Thespian's ``serializer`` (``dumps``/``loads``) for one cluster secret."""

    def __init__(self, secret: bytes) -> None:
        if not secret:
            raise ValueError("Thespian's transport needs a cluster secret")
        self._secret = secret
        self._replays = _Replays()
        self._accepted = _Accepted()
        self._pid = -1
        self._instance = b""
        self._seq = itertools.count(1)

    def _mac(self, signed: bytes | memoryview) -> bytes:
        return hmac.new(self._secret, signed, hashlib.sha256).digest()

    def dumps(self, obj: Any) -> bytes:
        if self._pid != os.getpid():  # a forked process is another sender
            self._pid = os.getpid()
            self._instance = os.urandom(8)
            self._seq = itertools.count(1)
        signed = _HEADER.pack(self._instance, next(self._seq), time.time()) \
            + pickle.dumps(obj, pickle.HIGHEST_PROTOCOL)
        return self._mac(signed) + signed

    def loads(self, data: bytes) -> Any:
        """Thespian's side: a refused frame comes back as a ``RefusedFrame``, which
        Thespian's receive path fails on (ACK+DATAERR, socket closed) wherever it
        decodes — also while it waits for an ACK, where an exception would escape its
        loop."""
        try:
            return self.open(data)
        except Refused as err:
            return RefusedFrame(err)

    def open(self, data: bytes) -> Any:
        """The message in ``data``, if its MAC, time and sequence number are good and
        it holds only allowlisted classes; ``Refused`` otherwise."""
        ack = _ACKS.get(data)
        if ack is not None:
            return ack
        if len(data) < _MAC + _HEADER.size:
            raise self._refuse("short", "frame too short to carry a MAC")
        view = memoryview(data)
        # Thespian decodes a frame that arrives while it waits for an ACK twice, from
        # the same buffer object: that is no replay (a peer's copy is another object)
        if self._accepted.data is not data:
            if not hmac.compare_digest(bytes(view[:_MAC]), self._mac(view[_MAC:])):
                raise self._refuse("mac", "frame without the cluster secret's MAC")
            instance, seq, sent = _HEADER.unpack_from(view, _MAC)
            now = time.time()
            if abs(now - sent) > WINDOW:
                raise self._refuse("stale", f"frame {now - sent:.0f}s old")
            if not self._replays.accept(instance, seq, now):
                raise self._refuse("replay", "frame already received")
            self._accepted.data = data
        try:
            return restricted_loads(view[_MAC + _HEADER.size:])
        except Refused as err:
            raise self._refuse("type", str(err)) from None

    @staticmethod
    def _refuse(reason: str, text: str) -> Refused:
        # counted here; Thespian logs the raised error to its own log (no logging call
        # from inside the transport: in Thespian's processes that would transmit)
        refused.add(reason=reason)
        return Refused(text)


def authenticate_thespian(secret: bytes) -> None:
    """Sign every Thespian TCP frame of this process and of the processes it forks
    (they inherit the patch), and unpickle none that lacks the MAC."""
    TCPTransport.serializer = SignedPickle(secret)
    TCPTransport.ReceiveBuffer = _BoundedReceiveBuffer
