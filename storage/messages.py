"""Messages the storage actor takes and sends (plain dataclasses).

Every request carries a ``ref`` chosen by the sender; every answer echoes it, so a
sender with many writes in flight knows which one an answer is about.

Writes: ``Write`` -> exactly one of ``Written`` (all its writes are durable),
``WriteFailed`` (some were not, after retries; the others are durable - every write is
idempotent, so sending the whole ``Write`` again is safe) or ``Busy`` (nothing was
queued: the queue is full; send again after ``retry_after_s``).

A write fails alone: one write the database cannot hold never fails the others it was
batched with (see storage.base). ``WriteFailed.error`` is safe to show a client (the
database's own text goes to the log only); ``rejected`` says the writes can never
succeed (a client error), ``transient`` that the database was unavailable for the whole
retry budget (send again later).

Reads: ``History`` -> ``HistoryResult`` or ``HistoryFailed``; ``FindNonce`` ->
``NonceFound`` or ``HistoryFailed``.

If the actor is stopped, queued writes and writes waiting for a retry are answered
``WriteFailed``; a batch already sent to the database gets no answer (its outcome is
unknown), so a sender should ask with a timeout and resend on it - writes are idempotent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from storage.base import Storage
from storage.history import HistoryQuery
from storage.model import Message, MessageWrite
from storage.settings import StorageSettings


@dataclass(slots=True)
class StorageStart:
    """Configure the actor: open a backend from ``settings``, or use an open ``storage``
    (then ``settings``, if given, only tunes the actor: batch size, window, bounds).

    Answered with ``StorageReady`` (or ``StorageFailed``). Writes and reads sent before
    it are queued (within the queue bound) and served once the backend is open.
    """

    settings: StorageSettings | None = None
    storage: Storage | None = None


@dataclass(slots=True)
class StorageReady:
    backend: str


@dataclass(slots=True)
class StorageFailed:
    error: str


@dataclass(slots=True)
class Write:
    """``trace``: the W3C context of the sender's span for this write (its
    ``storage.write``), or None when untraced. The actor puts its queueing, the
    database call and the batch it went out in under that span (storage/actor.py)."""

    ref: Any
    writes: tuple[MessageWrite, ...]
    trace: dict | None = None

    def __post_init__(self) -> None:
        if not self.writes:
            raise ValueError("a Write needs at least one message write")
        self.writes = tuple(self.writes)


@dataclass(slots=True)
class Written:
    ref: Any


@dataclass(slots=True)
class WriteFailed:
    ref: Any
    error: str
    failed: tuple[MessageWrite, ...] = ()
    #: every failed write can never succeed (its values cannot be stored): a client error
    rejected: bool = False
    #: some failed write was still failing transiently when its retry budget ran out
    transient: bool = False


@dataclass(slots=True)
class Busy:
    """Backpressure: the write was not queued; try again after ``retry_after_s``."""

    ref: Any
    retry_after_s: float
    pending: int


@dataclass(slots=True)
class History:
    ref: Any
    query: HistoryQuery


@dataclass(slots=True)
class HistoryResult:
    ref: Any
    messages: list[Message]


@dataclass(slots=True)
class HistoryFailed:
    ref: Any
    error: str
    transient: bool = False


@dataclass(slots=True)
class FindNonce:
    """Which message ``author_id`` created in the channel with ``nonce`` (an
    ``enforce_nonce`` send, ``MessageCreate.claim_nonce``) within its window, if any."""

    ref: Any
    channel_id: int
    author_id: int
    nonce: str


@dataclass(slots=True)
class NonceFound:
    """``message_id``: the id claimed by the nonce (None: unclaimed); ``message``: that
    message, or None if it was never written (its create failed or was cut short after
    the claim: re-sending it under the same id makes exactly one)."""

    ref: Any
    message_id: int | None
    message: Message | None = None


@dataclass(slots=True)
class GetStorageStats:
    pass


@dataclass(slots=True)
class StorageStats:
    pending: int = 0
    in_flight: int = 0
    flushes: int = 0
    writes_acked: int = 0
    writes_failed: int = 0
    retries: int = 0
    busy: int = 0
    reads: int = 0
    reads_coalesced: int = 0
    reconnects: int = 0
    queries: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
