"""A channel actor's cache of its recent messages, and which history reads it can answer.

The cache holds the channel's newest live messages (at most ``size``) as storage would
return them, and a floor: every live message with an id at or above ``floor`` is in the
cache (``floor == 0``: the whole channel is). A read is answered from the cache only
when that makes the answer exact — the same messages, in the same form, that
``Storage.history`` gives for the same ``HistoryQuery`` — otherwise ``answer`` says
None and the caller reads storage.

It is filled by one storage read of the latest ``size`` messages (``start_fill`` /
``load``) and then kept current by the channel actor from its own durable writes
(``created``, ``edited``, ``deleted``, called on the storage actor's ``Written``). Writes
that become durable while the fill is in flight may or may not be in the fill's
snapshot, so they are recorded and applied again on top of it (each is idempotent).
This relies on every message write of the channel going through its one channel actor;
an actor that is stopped or moved starts with an empty cache and fills it again.

Exactness details: messages are stored in storage's own form (``storage.codec``: lists
and JSON as a read returns them); an edit applies exactly the columns storage writes;
storage resolves edits by their timestamps (last write wins per field), so an edit that
is not newer than the last one the cache applied to that message (a wall clock that
stepped back) drops the whole cache rather than guess.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from typing import Any

from storage.codec import creation_values, edit_values, message_from_columns
from storage.history import MAX_LIMIT, HistoryQuery
from storage.model import Message, MessageEdit
from storage.snowflake import snowflake_us

#: Messages kept per channel: one full page (Discord's largest ``limit``).
CACHE_SIZE = MAX_LIMIT
#: A fill unanswered for this long is taken as lost and sent again.
FILL_PATIENCE_S = 10.0


def stored_form(message: Message, changes: dict[str, Any] | None = None) -> Message:
    """``message`` (with ``changes``, an edit's fields, applied) as storage reads it back."""
    columns = {"message_id": message.id, **creation_values(message)}
    if changes:
        columns.update(edit_values(changes))
    return message_from_columns(message.channel_id, columns)


class RecentMessages:
    """The newest ``size`` live messages of one channel, complete from ``floor`` up."""

    __slots__ = ("size", "floor", "_ids", "_messages", "_stamps", "_loaded", "_recorded",
                 "_fill_at")

    def __init__(self, size: int = CACHE_SIZE) -> None:
        if size < 1:
            raise ValueError("size must be at least 1")
        self.size = size
        #: Every live message with ``id >= floor`` is cached (meaningful once loaded).
        self.floor = 0
        self._ids: list[int] = []  # ascending
        self._messages: dict[int, Message] = {}
        #: id -> the timestamp (us) of the newest write applied to it
        self._stamps: dict[int, int] = {}
        self._loaded = False
        #: writes that became durable while the fill is in flight (None: no fill)
        self._recorded: list[tuple[str, Any]] | None = None
        self._fill_at = 0.0

    @property
    def loaded(self) -> bool:
        return self._loaded

    @property
    def filling(self) -> bool:
        return self._recorded is not None

    def __len__(self) -> int:
        return len(self._ids)

    # -- filling ---------------------------------------------------------------------

    def start_fill(self, channel_id: int, now: float) -> HistoryQuery | None:
        """The storage read that fills the cache (the latest ``size`` messages), or None
        when it is loaded or a fill has been in flight for less than
        ``FILL_PATIENCE_S`` (``now``: monotonic seconds). An older fill counts as lost (a
        storage actor that restarted does not answer) and is replaced: the caller must
        ignore the old one's answer."""
        if self._loaded or (self._recorded is not None
                            and now - self._fill_at < FILL_PATIENCE_S):
            return None
        self._recorded = []
        self._fill_at = now
        return HistoryQuery(channel_id, limit=self.size)

    def load(self, newest_first: list[Message]) -> None:
        """The fill's answer (the latest ``size`` messages, newest first)."""
        recorded = self._recorded or []
        self.clear()
        self._loaded = True
        for message in newest_first:
            self._put(message, snowflake_us(message.id))
        self._ids = sorted(self._messages)
        # fewer than asked: that is the whole channel
        self.floor = self._ids[0] if len(newest_first) >= self.size and self._ids else 0
        for kind, arg in recorded:
            getattr(self, kind)(arg)
            if not self._loaded:  # an edit out of timestamp order dropped the cache
                return
        self._trim()

    def abort_fill(self) -> None:
        """The fill failed: stay unloaded (the next read tries again)."""
        self._recorded = None

    def clear(self) -> None:
        """Forget everything (unloaded; a fill in flight is abandoned)."""
        self._ids = []
        self._messages = {}
        self._stamps = {}
        self._loaded = False
        self._recorded = None
        self.floor = 0

    # -- the actor's durable writes --------------------------------------------------

    def created(self, message: Message) -> None:
        """``message`` (as the actor built it) is durable."""
        if self._recorded is not None:
            self._recorded.append(("created", message))
        if not self._loaded or message.id < self.floor or message.id in self._messages:
            return
        self._put(stored_form(message), snowflake_us(message.id))
        insort(self._ids, message.id)
        self._trim()

    def edited(self, write: MessageEdit) -> None:
        """``write`` is durable."""
        if self._recorded is not None:
            self._recorded.append(("edited", write))
        message = self._messages.get(write.message_id) if self._loaded else None
        if message is None:
            return  # not cached: older than the floor, or not live (storage agrees)
        if write.at_us <= self._stamps[write.message_id]:
            self.clear()
            return
        self._put(stored_form(message, write.changes), write.at_us)

    def deleted(self, message_id: int) -> None:
        """The delete of ``message_id`` is durable (it shadows every older write)."""
        if self._recorded is not None:
            self._recorded.append(("deleted", message_id))
        if self._loaded and self._messages.pop(message_id, None) is not None:
            del self._stamps[message_id]
            self._ids.remove(message_id)

    # -- reads -----------------------------------------------------------------------

    def answer(self, query: HistoryQuery) -> list[Message] | None:
        """What storage would answer for ``query`` (newest first), or None when the
        cache cannot tell exactly (not loaded, or the answer reaches below ``floor``)."""
        if not self._loaded:
            return None
        ids, limit, whole = self._ids, query.limit, self.floor == 0
        if query.after is not None:  # the oldest ``limit`` after it
            if not whole and query.after + 1 < self.floor:
                return None
            start = bisect_right(ids, query.after)
            picked = ids[start:start + limit]
        elif query.around is not None:  # limit // 2 newer, the rest at or older
            newer = limit // 2
            older = limit - newer
            end = bisect_right(ids, query.around)
            if end < older and not whole:
                return None
            picked = ids[max(0, end - older):end + newer]
        else:  # the newest ``limit`` before ``before`` (or the newest)
            end = len(ids) if query.before is None else bisect_left(ids, query.before)
            if end < limit and not whole:
                return None
            picked = ids[max(0, end - limit):end]
        messages = self._messages
        return [messages[i] for i in reversed(picked)]

    # -- internals -------------------------------------------------------------------

    def _put(self, message: Message, stamp: int) -> None:
        self._messages[message.id] = message
        self._stamps[message.id] = stamp

    def _trim(self) -> None:
        ids = self._ids
        if len(ids) > self.size:
            for old in ids[: len(ids) - self.size]:
                del self._messages[old], self._stamps[old]
            del ids[: len(ids) - self.size]
            self.floor = ids[0]  # complete from the oldest kept message up
