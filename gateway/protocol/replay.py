"""A session's dispatch sequence and replay buffer, which outlive any one connection.

Decision: the log belongs to the session, not the connection. A connection numbers and
records each dispatch into the log it was given; when the socket drops, the session layer
keeps the log (``GatewayConnection.log``) for the resume window and keeps appending the
session's dispatches to it directly; a RESUME on a new connection hands the log over
(``resume_ok(log)``) and the connection replays every entry after the client's ``seq``, in
order, then RESUMED. Entries are ``PreparedDispatch`` references shared with every other
recipient, so the buffer costs a pointer per entry.

The buffer keeps the last ``max_entries`` dispatches. A RESUME whose ``seq`` is older than
that cannot be replayed without a gap, so it is refused (INVALID_SESSION, d=false) rather
than resumed with missing events. A log is tied to the encoding it was started with:
Discord requires a resume to use the same encoding, and compacted entries (READY,
GUILD_CREATE) only exist in that encoding.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from itertools import islice

from .codec import Encoding
from .dispatch import PreparedDispatch

DEFAULT_MAX_ENTRIES = 2048


class DispatchLog:
    """Sequence numbers from 1 and the last ``max_entries`` dispatches of one session."""

    __slots__ = ("encoding", "seq", "_entries")

    def __init__(self, encoding: Encoding, max_entries: int = DEFAULT_MAX_ENTRIES) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.encoding = encoding
        #: The sequence number of the last dispatch (0 before the first).
        self.seq = 0
        self._entries: deque[PreparedDispatch] = deque(maxlen=max_entries)

    def append(self, dispatch: PreparedDispatch) -> int:
        """Number ``dispatch`` and keep it for replay; returns its sequence number."""
        self.seq += 1
        self._entries.append(dispatch)
        return self.seq

    @property
    def oldest_seq(self) -> int:
        """The sequence number of the oldest dispatch still kept (``seq + 1`` when empty)."""
        return self.seq - len(self._entries) + 1

    def can_replay_after(self, seq: int) -> bool:
        """Whether every dispatch after ``seq`` is still kept (and ``seq`` is not ahead)."""
        return self.oldest_seq - 1 <= seq <= self.seq

    def after(self, seq: int) -> Iterator[tuple[int, PreparedDispatch]]:
        """``(seq, dispatch)`` for every kept dispatch after ``seq``, oldest first."""
        first = max(seq + 1, self.oldest_seq)
        kept = islice(self._entries, first - self.oldest_seq, None)
        for offset, dispatch in enumerate(kept):
            yield first + offset, dispatch

    def __len__(self) -> int:
        return len(self._entries)
