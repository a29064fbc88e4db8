"""A session's dispatch sequence and replay buffer, which outlive any one connection.

Decision: the log belongs to the session, not the connection. A connection numbers and
records each dispatch into the log it was given; when the socket drops, the session layer
keeps the log (``GatewayConnection.log``) for the resume window and keeps appending the
session's dispatches to it directly; a RESUME on a new connection hands the log over
(``resume_ok(log)``) and the connection replays every entry after the client's ``seq``, in
order, then RESUMED. Entries are ``PreparedDispatch`` references shared with every other
recipient, so the buffer costs a pointer per entry.

The buffer keeps at most the last ``max_entries`` dispatches, and forgets the ones the
client acknowledged: a HEARTBEAT's ``d`` (and a RESUME's ``seq``) is the last sequence
number the client received, and Discord's clients resume with their latest one, so a
RESUME can never need an entry at or below it (``ack``). An idle session therefore holds
nothing after its first heartbeat — not its READY and GUILD_CREATE bytes (~2 KiB), and
not even the list (created on the first append, dropped when everything is acknowledged).
A RESUME whose ``seq`` is older than what is kept cannot be replayed without a gap, so it
is refused (INVALID_SESSION, d=false) rather than resumed with missing events; that
includes a client that resumes below a seq it already acknowledged. A log is tied to the
encoding it was started with: Discord requires a resume to use the same encoding, and
compacted entries (READY, GUILD_CREATE) only exist in that encoding.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import islice

from .codec import Encoding
from .dispatch import PreparedDispatch

DEFAULT_MAX_ENTRIES = 2048


class DispatchLog:
    """Sequence numbers from 1 and the last ``max_entries`` unacknowledged dispatches of one
    session.

    ``_entries`` holds the dispatches numbered ``seq - len(_entries) + 1 .. seq`` (None when
    there are none). A plain list, trimmed in chunks once it reaches ``max_entries`` plus a
    quarter, costs less than a bounded deque (760 bytes empty) and lets the fan-out path
    inline the append (``GatewayConnection.dispatch_frame``); entries beyond the last
    ``max_entries`` that a chunked trim has not removed yet are not replayed.
    """

    __slots__ = ("encoding", "seq", "max_entries", "_cap", "_entries")

    def __init__(self, encoding: Encoding, max_entries: int = DEFAULT_MAX_ENTRIES) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.encoding = encoding
        #: The sequence number of the last dispatch (0 before the first).
        self.seq = 0
        self.max_entries = max_entries
        #: ``_entries`` is trimmed back to ``max_entries`` when it reaches this length.
        self._cap = max_entries + max(1, max_entries // 4)
        self._entries: list[PreparedDispatch] | None = None

    @classmethod
    def restored(cls, encoding: Encoding, seq: int, entries: list[PreparedDispatch],
                 max_entries: int = DEFAULT_MAX_ENTRIES) -> DispatchLog:
        """The log another node kept: ``entries`` are the dispatches numbered
        ``seq - len(entries) + 1 .. seq`` (a session that moved, ``gateway.session``)."""
        if seq < len(entries):
            raise ValueError(f"{len(entries)} entries cannot end at seq {seq}")
        log = cls(encoding, max_entries)
        log.seq = seq
        log._entries = list(entries[-max_entries:]) or None
        return log

    def append(self, dispatch: PreparedDispatch) -> int:
        """Number ``dispatch`` and keep it for replay; returns its sequence number."""
        self.seq += 1
        entries = self._entries
        if entries is None or len(entries) >= self._cap:
            self._store(dispatch)
        else:
            entries.append(dispatch)
        return self.seq

    def _store(self, dispatch: PreparedDispatch) -> None:
        """``append``'s rare case: the first entry, or a full list to trim first."""
        entries = self._entries
        if entries is None:
            self._entries = [dispatch]
            return
        del entries[: len(entries) - self.max_entries + 1]
        entries.append(dispatch)

    def skip_to(self, seq: int) -> None:
        """Continue numbering after ``seq``, keeping nothing: a standby copy promoted
        after its home died (``gateway.replica``) may lag the client by the last loop
        turn, whose dispatches the client has and the copy never got."""
        if seq > self.seq:
            self.seq = seq
            self._entries = None

    def ack(self, seq: int | None) -> None:
        """The client has received every dispatch up to ``seq`` (a HEARTBEAT's ``d``, a
        RESUME's ``seq``): forget them. None (nothing received yet) forgets nothing; a
        ``seq`` ahead of the log counts as ``self.seq``."""
        entries = self._entries
        if entries is None or seq is None:
            return
        drop = min(seq, self.seq) - (self.seq - len(entries))
        if drop >= len(entries):
            self._entries = None
        elif drop > 0:
            del entries[:drop]

    @property
    def oldest_seq(self) -> int:
        """The sequence number of the oldest dispatch still kept (``seq + 1`` when empty)."""
        return self.seq - len(self) + 1

    def can_replay_after(self, seq: int) -> bool:
        """Whether every dispatch after ``seq`` is still kept (and ``seq`` is not ahead)."""
        return self.oldest_seq - 1 <= seq <= self.seq

    def after(self, seq: int) -> Iterator[tuple[int, PreparedDispatch]]:
        """``(seq, dispatch)`` for every kept dispatch after ``seq``, oldest first."""
        entries = self._entries
        if entries is None:
            return
        first = max(seq + 1, self.oldest_seq)
        base = self.seq - len(entries) + 1  # the seq of entries[0]
        for offset, dispatch in enumerate(islice(entries, first - base, None)):
            yield first + offset, dispatch

    def __len__(self) -> int:
        entries = self._entries
        return 0 if entries is None else min(len(entries), self.max_entries)
