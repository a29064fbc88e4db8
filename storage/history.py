"""History queries with Discord's semantics, independent of any database.

``GET /channels/{id}/messages`` takes at most one of ``before``, ``after``, ``around``
and a ``limit`` of 1-100 (default 50); the answer is always newest first:

* no cursor: the latest ``limit`` messages;
* ``before=X``: the ``limit`` messages just older than X;
* ``after=X``: the ``limit`` messages just newer than X (the oldest ones after X, so a
  client can page forward), still returned newest first;
* ``around=X``: up to ``limit // 2`` messages newer than X and ``limit - limit // 2``
  at or older than X (X itself included when it exists).

``HistoryQuery`` validates and normalises that; ``walk_buckets`` is the bucket walk the
CQL backend runs, written against a fetch callback so its query count is testable.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from storage.buckets import bucket_of, bucket_of_ms, bucket_windows
from storage.model import MAX_SNOWFLAKE, check_id

MIN_LIMIT = 1
MAX_LIMIT = 100
DEFAULT_LIMIT = 50


@dataclass(frozen=True, slots=True)
class HistoryQuery:
    channel_id: int
    before: int | None = None
    after: int | None = None
    around: int | None = None
    limit: int = DEFAULT_LIMIT

    def __post_init__(self) -> None:
        check_id("channel_id", self.channel_id)
        given = [n for n in ("before", "after", "around") if getattr(self, n) is not None]
        if len(given) > 1:
            raise ValueError(f"use at most one of before/after/around, got {given}")
        for name in given:
            check_id(name, getattr(self, name))
        if isinstance(self.limit, bool) or not isinstance(self.limit, int):
            raise TypeError(f"limit must be an int, got {type(self.limit).__name__}")
        if not MIN_LIMIT <= self.limit <= MAX_LIMIT:
            raise ValueError(f"limit must be between {MIN_LIMIT} and {MAX_LIMIT}, got {self.limit}")

    @property
    def key(self) -> tuple[int, int | None, int | None, int | None, int]:
        """Identity for coalescing identical in-flight reads."""
        return (self.channel_id, self.before, self.after, self.around, self.limit)


Direction = Literal["desc", "asc"]
# fetch(buckets, bound, limit) -> rows: for "desc" rows with id < bound, newest first;
# for "asc" rows with id > bound, oldest first. Each call is one database query.
Fetch = Callable[[list[int], int, int], Awaitable[Sequence[Any]]]


async def walk_buckets(
    fetch: Fetch,
    *,
    direction: Direction,
    bound: int,
    limit: int,
    first_bucket: int,
    last_bucket: int,
    row_id: Callable[[Any], int],
    row_live: Callable[[Any], bool],
    first_window: int = 1,
) -> list[Any]:
    """Collect up to ``limit`` live rows beyond ``bound``, walking buckets in windows.

    ``first_bucket`` is where the walk starts (nearest the cursor) and ``last_bucket``
    where it must stop (the channel's creation bucket going back, the present going
    forward). A window query that fills its limit with rows that are not live (partial
    rows of a message whose create has not landed) is repeated from its last row, so the
    answer never comes up short while older live rows exist.
    """
    out: list[Any] = []
    if (direction == "desc" and first_bucket < last_bucket) or (
        direction == "asc" and first_bucket > last_bucket
    ):
        return out
    for window in bucket_windows(first_bucket, last_bucket, first=first_window):
        cursor = bound
        while True:
            want = limit - len(out)
            rows = await fetch(window, cursor, want)
            out.extend(r for r in rows if row_live(r))
            if len(out) >= limit:
                return out[:limit]
            if len(rows) < want:
                break  # window exhausted
            cursor = row_id(rows[-1])
    return out


def desc_range(channel_id: int, before: int | None, now_ms: int) -> tuple[int, int, int]:
    """(bound, first bucket, last bucket) for a newest-first walk below ``before``."""
    if before is None:
        # One bucket of slack for clocks a little ahead of ours.
        return MAX_SNOWFLAKE, bucket_of_ms(now_ms) + 1, bucket_of(channel_id)
    return before, bucket_of(max(before - 1, 0)), bucket_of(channel_id)


def asc_range(channel_id: int, after: int, now_ms: int) -> tuple[int, int, int]:
    """(bound, first bucket, last bucket) for an oldest-first walk above ``after``."""
    start = max(bucket_of(after), bucket_of(channel_id))
    return after, start, max(bucket_of_ms(now_ms) + 1, start)
