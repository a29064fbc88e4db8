"""One gateway connection as a pure state machine (sans-I/O, in the style of h11/wsproto).

The socket layer feeds it whole WebSocket messages and the time (monotonic seconds); the
session layer answers the events it raises; both get back lists of ``events.Effect`` to
carry out in order. Nothing here reads a clock, touches a socket or raises on client
input: every bad payload becomes a ``Close`` with Discord's close code.

Lifecycle::

    NEW --start()--> AWAITING_IDENTIFY --IDENTIFY--> IDENTIFYING --identified()--> READY
                          |      ^                        '--reject_identify()--> CLOSED
                          |      '--resume_failed() / identify_rate_limited() (op 9 false)
                          '--RESUME--> RESUMING --resume_ok(log)--> READY (replay, RESUMED)

Choices the docs leave open, made here:
- Heartbeats count toward the 120-events-per-60-s limit: Discord counts every gateway
  event an app sends, and discord.py keeps 10 of the 120 in reserve for its heartbeats.
  The window is fixed (opened by the first event, reset 60 s later), the same shape as
  the client-side limiters of discord.py, so a client obeying its own limiter is never
  closed by a sliding-window mismatch.
- A zombie (no HEARTBEAT within ``heartbeat_interval + heartbeat_grace_s`` of the last
  one, or of HELLO) is closed with 4000 "Unknown error", which every client library
  treats as reconnect-and-RESUME, and the session is kept; 4009 would tell clients to
  start a new session.
- A ``d`` that does not fit its opcode is 4001 (Discord's definition of 4001 includes
  "an invalid payload for an opcode"); a payload that is not an object with an integer
  ``op`` is 4002, like undecodable bytes.
- A connection that neither IDENTIFYs nor RESUMEs within ``identify_timeout_s`` of
  HELLO (or of its last refused attempt: op 9) is closed with 4003 "Not authenticated":
  heartbeats alone do not keep an anonymous socket open.
- A client that breaks RFC 6455 itself (reserved bits, stray continuation frames, text
  that is not UTF-8) is closed with 1002 / 1007 (``protocol_violation``), never 1011.
- Server payloads other than dispatches carry all four keys (``{"t":null,"s":null,...}``)
  as Discord's gateway does, so strict parsers that index ``d`` or ``s`` do not fail.
"""

from __future__ import annotations

import functools
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

from . import commands
from .close_codes import (
    CLIENT_CLOSES_ENDING_SESSION,
    FATAL,
    RESUMABLE,
    WS_INVALID_DATA,
    WS_PROTOCOL_ERROR,
    CloseCode,
    reason_for,
)
from .codec import DecodeError, Encoding, decode_payload, encode_payload
from .compression import (
    DEFAULT_LEVEL,
    DEFAULT_MEM_LEVEL,
    DEFAULT_WBITS,
    DEFAULT_ZSTD_HASH_LOG,
    DEFAULT_ZSTD_LEVEL,
    DEFAULT_ZSTD_WINDOW_LOG,
    ZLIB_STREAM,
    ZSTD_STREAM,
    StreamCompressor,
    ZlibStreamCompressor,
    ZstdStreamCompressor,
)
from .dispatch import PreparedDispatch
from .events import (
    Close,
    Disconnected,
    Effect,
    IdentifyRequested,
    ResumeRequested,
    SendFrame,
    SetTimer,
)
from .intents import event_allowed
from .opcodes import CLIENT_OPCODES, Opcode
from .params import ConnectionParams
from .ready import build_guild_create, build_ready, guild_create_json
from .replay import DEFAULT_MAX_ENTRIES, DispatchLog


class ConnectionState(Enum):
    NEW = "new"
    AWAITING_IDENTIFY = "awaiting_identify"
    IDENTIFYING = "identifying"
    RESUMING = "resuming"
    READY = "ready"
    CLOSED = "closed"


class ProtocolUsageError(RuntimeError):
    """The layer above called the connection in a state where the call makes no sense."""


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    heartbeat_interval_ms: int = 41_250
    #: Slack past the interval before a silent client is a zombie; also how long a client
    #: has to answer a server-requested heartbeat.
    heartbeat_grace_s: float = 10.0
    max_payload_bytes: int = 4096
    rate_limit_events: int = 120
    rate_limit_window_s: float = 60.0
    replay_max_entries: int = DEFAULT_MAX_ENTRIES
    #: After RECONNECT (op 7), close the socket this long later if the client has not.
    reconnect_close_after_s: float = 5.0
    #: A connection must IDENTIFY or RESUME this long after HELLO (or after an op 9
    #: answered its last try), else it is closed with 4003. Client libraries IDENTIFY at
    #: once; 30 s leaves room for a client waiting out an op 9 before trying again.
    identify_timeout_s: float = 30.0
    zlib_level: int = DEFAULT_LEVEL
    zlib_wbits: int = DEFAULT_WBITS
    zlib_mem_level: int = DEFAULT_MEM_LEVEL
    #: A fan-out to at least this many sessions of a node sends its zlib-stream
    #: recipients one shared deflated tail instead of compressing per connection
    #: (compression.py): less CPU a delivery, more bytes than a stream with history,
    #: which a smaller guild keeps.
    zlib_shared_tail_min: int = 32
    zstd_level: int = DEFAULT_ZSTD_LEVEL
    zstd_window_log: int = DEFAULT_ZSTD_WINDOW_LOG
    zstd_hash_log: int = DEFAULT_ZSTD_HASH_LOG
    #: How often the socket layer offers each connection's transport compression a rest
    #: (``rest_idle_compression``): an idle zlib-stream holds no deflater (compression.py)
    compression_rest_s: float = 0.25
    #: Sent in HELLO's ``_trace`` as Discord does ("" sends none): the node that serves
    #: the connection, so a client (or test) knows where the kernel put it.
    trace: str = ""


DEFAULT_CONFIG = GatewayConfig()

#: RESUMED is the same payload for every session: encoded once per process and encoding.
RESUMED = PreparedDispatch("RESUMED", {})

_IDENTIFY_REFUSALS = frozenset(FATAL - {CloseCode.INVALID_API_VERSION})
#: for the per-recipient path (``dispatch_frame``): an Enum member read through its
#: class costs ~0.13 µs on Python 3.11, a module global ~0.02
_READY = ConnectionState.READY
_CLOSED = ConnectionState.CLOSED


def _control(op: Opcode, d: Any = None) -> dict[str, Any]:
    return {"t": None, "s": None, "op": int(op), "d": d}


@functools.lru_cache(maxsize=64)
def _hello(encoding: Encoding, heartbeat_interval_ms: int, trace: str) -> bytes:
    """HELLO's payload, the same for every connection of a configuration: encoded once."""
    d: dict[str, Any] = {"heartbeat_interval": heartbeat_interval_ms}
    if trace:
        d["_trace"] = [trace]
    return encode_payload(_control(Opcode.HELLO, d), encoding)


_CONSTANT_PAYLOADS: dict[Encoding, dict[str, bytes]] = {
    encoding: {
        "ack": encode_payload(_control(Opcode.HEARTBEAT_ACK), encoding),
        "heartbeat": encode_payload(_control(Opcode.HEARTBEAT), encoding),
        "reconnect": encode_payload(_control(Opcode.RECONNECT), encoding),
        "invalid_true": encode_payload(_control(Opcode.INVALID_SESSION, True), encoding),
        "invalid_false": encode_payload(_control(Opcode.INVALID_SESSION, False), encoding),
    }
    for encoding in Encoding
}


@functools.lru_cache(maxsize=64)
def _tail_key(encoding: str, level: int, wbits: int, mem_level: int) -> str:
    """``PreparedDispatch.deflated_tail``'s key for these settings, one object for all."""
    return f"{encoding}:{level}:{wbits}:{mem_level}"


class GatewayConnection:
    """The protocol state of one WebSocket connection to the gateway."""

    def __init__(self, params: ConnectionParams, config: GatewayConfig = DEFAULT_CONFIG) -> None:
        self.params = params
        self.config = config
        self.state = ConnectionState.NEW
        #: The session's dispatch log once READY (or RESUMED); keep it after a resumable
        #: close and hand it to the next connection's ``resume_ok``.
        self.log: DispatchLog | None = None
        self.session_id: str | None = None
        #: The pending IDENTIFY (None once answered, and on a resumed connection).
        self.identify: IdentifyRequested | None = None
        self.close_code: int | None = None
        self._resume: ResumeRequested | None = None
        self._intents = 0
        self._session_resumable = False
        self._encoding = params.encoding
        self._payloads = _CONSTANT_PAYLOADS[params.encoding]
        #: Whether frames go out as WebSocket text (JSON without transport compression);
        #: binary otherwise. Read-only.
        self.text_frames = params.encoding is Encoding.JSON and params.compress is None
        #: One compression stream for the connection's life (never one per recipient).
        self._compressor: StreamCompressor | None = None
        #: Whether ``rest_idle_compression`` can free anything: a zlib-stream (zstd's one
        #: frame cannot rest). The socket layer sweeps only these. Read-only.
        self.compression_rests = params.close_code is None and params.compress == ZLIB_STREAM
        if params.close_code is None:
            if params.compress == ZLIB_STREAM:
                self._compressor = ZlibStreamCompressor(
                    config.zlib_level, config.zlib_wbits, config.zlib_mem_level
                )
            elif params.compress == ZSTD_STREAM:
                self._compressor = ZstdStreamCompressor(
                    config.zstd_level, config.zstd_window_log, config.zstd_hash_log
                )
        #: ``dispatch_frame`` splices a shared tail (``PreparedDispatch.deflated_tail``)
        #: for a fan-out this big: a zlib-stream's threshold, never for another stream
        self._shared_tail_min = (
            config.zlib_shared_tail_min
            if self._compressor is not None and self._compressor.splices else sys.maxsize)
        #: the tail's cache key: the encoding and the deflate settings (one string shared
        #: by every connection alike: an idle session is counted in bytes)
        self._tail_key = _tail_key(params.encoding.value, config.zlib_level,
                                   config.zlib_wbits, config.zlib_mem_level)
        self._interval_s = config.heartbeat_interval_ms / 1000.0
        self._heartbeat_deadline = 0.0
        self._close_at: float | None = None
        #: when an anonymous connection is closed (AWAITING_IDENTIFY only)
        self._identify_by = 0.0
        #: the deadline starts at the next time passed in (op 9 sent without one)
        self._identify_from_next = False
        #: the latest time the socket layer passed in (for transitions made without one)
        self._now = 0.0
        self._timer_at: float | None = None
        self._window_start = float("-inf")
        self._window_count = 0

    # ---------------------------------------------------------------- properties

    @property
    def intents(self) -> int:
        """The session's intents (0 until IDENTIFY or RESUME succeeded)."""
        return self._intents

    @property
    def next_deadline(self) -> float | None:
        """When ``on_timer`` must next run (None when closed or not started)."""
        if self.state in (ConnectionState.NEW, ConnectionState.CLOSED):
            return None
        deadline = self._heartbeat_deadline
        if self._close_at is not None and self._close_at < deadline:
            deadline = self._close_at
        if self.state is ConnectionState.AWAITING_IDENTIFY and self._identify_by < deadline:
            deadline = self._identify_by
        return deadline

    # ---------------------------------------------------------------- socket side

    def start(self, now: float) -> list[Effect]:
        """The socket is open: send HELLO (or the close a bad URL earned)."""
        if self.state is not ConnectionState.NEW:
            raise ProtocolUsageError("start() called twice")
        if self.params.close_code is not None:
            return self._close(self.params.close_code, "gateway URL refused")
        self._now = now
        self._await_identify()
        self._heartbeat_deadline = now + self._interval_s + self.config.heartbeat_grace_s
        hello = _hello(self._encoding, self.config.heartbeat_interval_ms, self.config.trace)
        return [self._frame(hello), *self._arm()]

    def receive(self, data: bytes | bytearray | memoryview | str, now: float) -> list[Effect]:
        """One whole WebSocket message from the client (text or binary)."""
        state = self.state
        if state is ConnectionState.CLOSED:
            return []
        if state is ConnectionState.NEW:
            raise ProtocolUsageError("receive() before start()")
        self._now = now
        if self._identify_from_next:
            self._start_identify_deadline()

        size = self._size(data)
        if size > self.config.max_payload_bytes:
            return self._close(
                CloseCode.DECODE_ERROR,
                f"payload of {size} bytes exceeds {self.config.max_payload_bytes}",
            )
        if now - self._window_start >= self.config.rate_limit_window_s:
            self._window_start = now
            self._window_count = 0
        self._window_count += 1
        if self._window_count > self.config.rate_limit_events:
            return self._close(
                CloseCode.RATE_LIMITED,
                f"more than {self.config.rate_limit_events} events "
                f"in {self.config.rate_limit_window_s:g} s",
            )

        try:
            payload = decode_payload(data, self._encoding)
        except DecodeError as exc:
            return self._close(CloseCode.DECODE_ERROR, f"undecodable payload: {exc}")
        if not isinstance(payload, dict):
            return self._close(CloseCode.DECODE_ERROR, "payload is not an object")
        op = payload.get("op")
        if type(op) is not int:
            return self._close(CloseCode.DECODE_ERROR, "payload has no integer op")
        if op not in CLIENT_OPCODES:
            return self._close(CloseCode.UNKNOWN_OPCODE, f"opcode {op} is not a client opcode")

        d = payload.get("d")
        try:
            if op == Opcode.HEARTBEAT:
                acked = commands.parse_heartbeat(d)
                if acked is not None and self.log is not None and state is ConnectionState.READY:
                    self.log.ack(acked)  # the client has these: no RESUME can ask for them
                self._heartbeat_deadline = now + self._interval_s + self.config.heartbeat_grace_s
                compressor = self._compressor
                if compressor is None:
                    return [self._frame(self._payloads["ack"])]
                # an ACK does not wake a resting zlib-stream (compression.py)
                return [SendFrame(compressor.compress_control(self._payloads["ack"]), False)]
            if op == Opcode.IDENTIFY:
                if state is not ConnectionState.AWAITING_IDENTIFY:
                    return self._close(
                        CloseCode.ALREADY_AUTHENTICATED, f"IDENTIFY while {state.value}"
                    )
                identify = commands.parse_identify(d)
                self.identify = identify
                self.state = ConnectionState.IDENTIFYING
                return [identify]
            if op == Opcode.RESUME:
                if state is not ConnectionState.AWAITING_IDENTIFY:
                    return self._close(
                        CloseCode.ALREADY_AUTHENTICATED, f"RESUME while {state.value}"
                    )
                resume = commands.parse_resume(d)
                self._resume = resume
                self.state = ConnectionState.RESUMING
                return [resume]
            if state is not ConnectionState.READY:
                return self._close(CloseCode.NOT_AUTHENTICATED, f"opcode {op} while {state.value}")
            if op == Opcode.PRESENCE_UPDATE:
                return [commands.parse_presence_update(d)]
            if op == Opcode.REQUEST_GUILD_MEMBERS:
                return [commands.parse_request_guild_members(d, self.intents)]
            if op == Opcode.VOICE_STATE_UPDATE:
                return [commands.parse_voice_state_update(d)]
            if op == Opcode.GUILD_SUBSCRIBE:
                return [commands.parse_guild_subscribe(d)]
            return [commands.parse_request_soundboard_sounds(d)]
        except commands.InvalidPayload as exc:
            return self._close(exc.code, exc.detail)

    def on_timer(self, now: float) -> list[Effect]:
        """The timer from the last ``SetTimer`` fired (early is fine)."""
        if self.state in (ConnectionState.NEW, ConnectionState.CLOSED):
            return []
        self._timer_at = None
        self._now = max(self._now, now)
        if self._identify_from_next:
            self._start_identify_deadline()
        if self._close_at is not None and now >= self._close_at:
            return self._close(CloseCode.UNKNOWN_ERROR, "closing after RECONNECT")
        if self.state is ConnectionState.AWAITING_IDENTIFY and now >= self._identify_by:
            return self._close(
                CloseCode.NOT_AUTHENTICATED,
                f"no IDENTIFY or RESUME within {self.config.identify_timeout_s:g} s",
            )
        if now >= self._heartbeat_deadline:
            return self._close(
                CloseCode.UNKNOWN_ERROR,
                f"zombie: no heartbeat for {self._interval_s + self.config.heartbeat_grace_s:g} s",
            )
        return self._arm()

    def protocol_violation(self, code: int, detail: str) -> list[Effect]:
        """The socket layer found the client broke RFC 6455: 1002 (reserved bits, a
        stray or interleaved continuation frame) or 1007 (a text message that is not
        UTF-8). The session, if any, stays resumable, as after 4002."""
        if code not in (WS_PROTOCOL_ERROR, WS_INVALID_DATA):
            raise ProtocolUsageError(f"{code} is not an RFC 6455 protocol-violation code")
        if self.state is ConnectionState.CLOSED:
            return []
        return self._close(code, detail)

    def connection_lost(self, code: int | None = None) -> Disconnected:
        """The socket is gone; ``code`` is the client's close code (None: no close frame)."""
        if self.state is not ConnectionState.CLOSED:
            self.state = ConnectionState.CLOSED
            self._session_resumable = (
                self.log is not None and code not in CLIENT_CLOSES_ENDING_SESSION
            )
        return Disconnected(self._session_resumable)

    # ---------------------------------------------------------------- session side

    def identified(
        self,
        *,
        session_id: str,
        user: Mapping[str, Any],
        guilds: Sequence[Mapping[str, Any]],
        application: Mapping[str, Any],
        resume_gateway_url: str,
        log: DispatchLog | None = None,
    ) -> list[Effect]:
        """IDENTIFY was accepted: send READY (s=1), then a GUILD_CREATE per guild.

        ``guilds`` are full guild dicts (see ``ready.build_guild_create``); GUILD_CREATE
        needs the GUILDS intent, READY lists the guilds regardless.
        """
        if self._answered_after_close(ConnectionState.IDENTIFYING, "identified"):
            return []
        identify = self.identify
        assert identify is not None
        self.identify = None  # its token and properties are not kept for the socket's life
        if log is None:
            log = DispatchLog(self._encoding, self.config.replay_max_entries)
        elif log.encoding is not self._encoding:
            raise ProtocolUsageError("the log was started with another encoding")
        self.log = log
        self.session_id = session_id
        self._intents = identify.intents
        self.state = ConnectionState.READY
        ready = build_ready(
            session_id=session_id,
            user=user,
            guild_ids=[guild["id"] for guild in guilds],
            application=application,
            resume_gateway_url=resume_gateway_url,
            shard=identify.shard,
        )
        effects: list[Effect] = [
            self._send(PreparedDispatch("READY", ready).compact(self._encoding))
        ]
        if event_allowed(identify.intents, "GUILD_CREATE"):
            for guild in guilds:
                if self._encoding is Encoding.JSON:  # a SharedGuild's encoded once
                    dispatch = PreparedDispatch.from_json("GUILD_CREATE", guild_create_json(
                        guild, intents=identify.intents, user_id=user["id"],
                        large_threshold=identify.large_threshold))
                else:
                    dispatch = PreparedDispatch("GUILD_CREATE", build_guild_create(
                        guild, intents=identify.intents, user_id=user["id"],
                        large_threshold=identify.large_threshold))
                effects.append(self._send(dispatch.compact(self._encoding)))
        return effects

    def reject_identify(self, code: int, detail: str = "") -> list[Effect]:
        """Refuse the pending IDENTIFY with 4004, 4010, 4011, 4013 or 4014."""
        if code not in _IDENTIFY_REFUSALS:
            raise ProtocolUsageError(f"{code} is not a close code for a refused IDENTIFY")
        if self._answered_after_close(ConnectionState.IDENTIFYING, "reject_identify"):
            return []
        return self._close(code, detail or "IDENTIFY refused")

    def auth_failed(self) -> list[Effect]:
        """The IDENTIFY token is not valid: close with 4004 (clients do not retry)."""
        return self.reject_identify(CloseCode.AUTHENTICATION_FAILED, "invalid token")

    def identify_rate_limited(self) -> list[Effect]:
        """Too many IDENTIFYs for the token (``max_concurrency`` per 5 s): op 9, d=false,
        as Discord answers; the client may IDENTIFY again on this connection."""
        if self._answered_after_close(ConnectionState.IDENTIFYING, "identify_rate_limited"):
            return []
        self.identify = None
        self._await_identify()
        return [self._frame(self._payloads["invalid_false"]), *self._arm()]

    def resume_ok(self, log: DispatchLog, *, intents: int, replay: bool = True
                  ) -> list[Effect]:
        """The session of the pending RESUME exists and the token matches: replay every
        dispatch after the client's ``seq`` in order, then RESUMED. ``intents`` are the
        session's, from its IDENTIFY.

        A ``seq`` ahead of the log closes with 4007 (Invalid seq: start a new session);
        one older than what the log still holds, or a log of another encoding, cannot be
        replayed without a gap and gets op 9 d=false instead.

        ``replay`` False: RESUMED is only numbered in the log, and no frame is made; the
        caller sends ``log.after(seq)`` (taken before this call) then RESUMED through
        ``logged_frame``, at the client's pace: a replay of thousands of frames made at
        once would cost their bytes whether or not the client reads (``gateway.outbound``).
        """
        if self._answered_after_close(ConnectionState.RESUMING, "resume_ok"):
            return []
        resume = self._resume
        assert resume is not None
        if resume.seq > log.seq:
            return self._close(
                CloseCode.INVALID_SEQ,
                f"resume seq {resume.seq} is ahead of the session's {log.seq}",
            )
        if log.encoding is not self._encoding or not log.can_replay_after(resume.seq):
            return self.resume_failed()
        self.log = log
        self.session_id = resume.session_id
        self._intents = intents
        self.state = ConnectionState.READY
        self._resume = None
        if not replay:
            log.append(RESUMED)
            log.ack(resume.seq)
            return []
        encoding = self._encoding
        effects: list[Effect] = [
            self._frame(dispatch.frame(seq, encoding)) for seq, dispatch in log.after(resume.seq)
        ]
        effects.append(self._send(RESUMED))
        log.ack(resume.seq)  # replayed from here on; the client had these already
        return effects

    def resume_failed(self) -> list[Effect]:
        """Unknown, expired or foreign session: op 9 d=false; the client must IDENTIFY."""
        if self._answered_after_close(ConnectionState.RESUMING, "resume_failed"):
            return []
        self._resume = None
        self._await_identify()
        return [self._frame(self._payloads["invalid_false"]), *self._arm()]

    def dispatch(self, dispatch: PreparedDispatch) -> list[Effect]:
        """Number ``dispatch`` in this session, record it for replay and send it.

        After a resumable close the dispatch is only recorded, so a RESUME replays it.
        The caller filters by intents (``intents.event_allowed``) before calling.
        """
        state = self.state
        log = self.log
        if state is ConnectionState.READY and log is not None:
            seq = log.append(dispatch)
            return [self._frame(dispatch.frame(seq, self._encoding))]
        if state is ConnectionState.CLOSED:
            if self._session_resumable and log is not None:
                log.append(dispatch)
            return []
        raise ProtocolUsageError(f"dispatch() while {state.value}")

    def dispatch_frame(self, dispatch: PreparedDispatch) -> bytes | None:
        """``dispatch`` without the effect list, for fan-out (once per recipient): the
        frame's bytes to send (text if ``text_frames``), or None when the dispatch was
        only recorded (after a resumable close) or dropped (closed for good)."""
        log = self.log
        if self.state is _READY and log is not None:
            # log.append, inlined: this runs once per recipient of every fan-out
            log.seq = seq = log.seq + 1
            entries = log._entries
            if entries is None or len(entries) >= log._cap:
                log._store(dispatch)
            else:
                entries.append(dispatch)
            compressor = self._compressor
            if compressor is None:
                return dispatch.frame(seq, self._encoding)
            if dispatch.fanout >= self._shared_tail_min:  # a zlib-stream in a big fan-out
                return compressor.compress_spliced(
                    dispatch.head(seq, self._encoding),
                    dispatch.deflated_tail(self._tail_key, self._encoding,
                                           compressor.deflate_alone))
            return compressor.compress(dispatch.frame(seq, self._encoding))
        if self.state is _CLOSED:
            if self._session_resumable and log is not None:
                log.append(dispatch)
            return None
        raise ProtocolUsageError(f"dispatch() while {self.state.value}")

    def logged_frame(self, seq: int, dispatch: PreparedDispatch) -> bytes:
        """The frame of ``dispatch``, already numbered ``seq`` in the log and not sent:
        a socket that paused writing sends its backlog from the log (``gateway.outbound``).
        Through the compression stream, so call it in seq order, for frames that are written."""
        data = dispatch.frame(seq, self._encoding)
        return data if self._compressor is None else self._compressor.compress(data)

    def rest_idle_compression(self) -> bool:
        """Drop the transport compressor's state if it compressed nothing since the last
        call (``compression.ZlibStreamCompressor.rest_if_idle``); the socket layer calls
        this every ``GatewayConfig.compression_rest_s``. Writes nothing. Whether it
        dropped state now."""
        return self._compressor is not None and self._compressor.rest_if_idle()

    def dispatch_event(self, event: str, data: Any) -> list[Effect]:
        """``dispatch`` for a payload only this session receives."""
        return self.dispatch(PreparedDispatch(event, data))

    def request_heartbeat(self, now: float) -> list[Effect]:
        """Send op 1: the client must heartbeat at once, within ``heartbeat_grace_s``."""
        if self.state in (ConnectionState.NEW, ConnectionState.CLOSED):
            return []
        deadline = now + self.config.heartbeat_grace_s
        self._heartbeat_deadline = min(self._heartbeat_deadline, deadline)
        return [self._frame(self._payloads["heartbeat"]), *self._arm()]

    def reconnect(self, now: float) -> list[Effect]:
        """Send op 7 (reconnect and resume); close the socket if the client has not
        within ``reconnect_close_after_s``. The session stays resumable."""
        if self.state in (ConnectionState.NEW, ConnectionState.CLOSED):
            return []
        self._close_at = now + self.config.reconnect_close_after_s
        return [self._frame(self._payloads["reconnect"]), *self._arm()]

    def invalidate_session(self, resumable: bool) -> list[Effect]:
        """Op 9 for the active session. ``resumable=False`` ends the session: the client
        must IDENTIFY again (on this connection or a new one)."""
        if self.state is not ConnectionState.READY:
            if self.state is ConnectionState.CLOSED:
                return []
            raise ProtocolUsageError(f"invalidate_session() while {self.state.value}")
        if not resumable:
            self.log = None
            self.session_id = None
            self.identify = None
            self._intents = 0
            # the last time passed in may be a heartbeat interval old: the deadline
            # starts at the next one (a receive or the timer), not in the past
            self._await_identify(from_next=True)
            return [self._frame(self._payloads["invalid_false"])]
        return [self._frame(self._payloads["invalid_true"])]

    def close(self, code: int = CloseCode.UNKNOWN_ERROR, detail: str = "") -> list[Effect]:
        """Close from the server side (e.g. an operator disconnecting the session)."""
        if self.state is ConnectionState.CLOSED:
            return []
        return self._close(code, detail or "closed by the server")

    # ---------------------------------------------------------------- internals

    def _await_identify(self, *, from_next: bool = False) -> None:
        """Back to (or first in) AWAITING_IDENTIFY: the IDENTIFY deadline starts at the
        latest time passed in (a refused IDENTIFY's or RESUME's), or at the next one."""
        self.state = ConnectionState.AWAITING_IDENTIFY
        if from_next:
            self._identify_by = math.inf
            self._identify_from_next = True
        else:
            self._start_identify_deadline()

    def _start_identify_deadline(self) -> None:
        self._identify_from_next = False
        self._identify_by = self._now + self.config.identify_timeout_s

    def _answered_after_close(self, expected: ConnectionState, method: str) -> bool:
        """True if the connection closed while the session layer was deciding (the answer
        is moot); raises if the call does not fit the state at all."""
        if self.state is ConnectionState.CLOSED:
            return True
        if self.state is not expected:
            raise ProtocolUsageError(f"{method}() while {self.state.value}")
        return False

    @staticmethod
    def _size(data: bytes | bytearray | memoryview | str) -> int:
        if isinstance(data, str):
            # isascii() is O(1) on CPython strings; only non-ASCII text needs encoding.
            return len(data) if data.isascii() else len(data.encode("utf-8", "surrogatepass"))
        if isinstance(data, memoryview):
            return data.nbytes
        return len(data)

    def _frame(self, payload: bytes) -> SendFrame:
        if self._compressor is not None:
            return SendFrame(self._compressor.compress(payload), False)
        return SendFrame(payload, self.text_frames)

    def _send(self, dispatch: PreparedDispatch) -> SendFrame:
        assert self.log is not None
        seq = self.log.append(dispatch)
        return self._frame(dispatch.frame(seq, self._encoding))

    def _arm(self) -> list[Effect]:
        deadline = self.next_deadline
        if deadline is None or (self._timer_at is not None and self._timer_at <= deadline):
            return []
        self._timer_at = deadline
        return [SetTimer(deadline)]

    def _close(self, code: int, detail: str) -> list[Effect]:
        self.state = ConnectionState.CLOSED
        self.close_code = code
        self._session_resumable = self.log is not None and code in RESUMABLE
        return [Close(code, reason_for(code), self._session_resumable, detail)]
