"""Discord's 10-day message buckets, and the sans-I/O plan for walking them.

``bucket = (message_id >> 22) // 864_000_000``: a channel's messages live in one
partition per 10 days, so partitions stay small whatever the channel's age. A history
read walks buckets from its cursor towards the channel's creation bucket (the channel id
is itself a snowflake, so no message can be older than it) or, for ``after``, towards
the present.

A run of empty buckets must not cost one query each, so the walk asks several buckets
per query (``bucket IN (...)``) with a window that doubles each round up to
``MAX_WINDOW``: a dense channel is served by the first, single-bucket query, and a
channel silent for a year (37 buckets) costs ``1 + 2 + 4 + 8 + 16 + 32 >= 37`` - six
queries - while the whole 12-year snowflake range is covered in 18.
"""

from __future__ import annotations

from collections.abc import Iterator

from storage.snowflake import DISCORD_EPOCH_MS, TIMESTAMP_SHIFT

BUCKET_MS = 10 * 24 * 3600 * 1000  # 864,000,000
FIRST_WINDOW = 1
MAX_WINDOW = 32


def bucket_of(snowflake: int) -> int:
    """The 10-day bucket of a snowflake."""
    if snowflake < 0:
        raise ValueError(f"snowflake must be non-negative, got {snowflake}")
    return (snowflake >> TIMESTAMP_SHIFT) // BUCKET_MS


def bucket_of_ms(unix_ms: int) -> int:
    """The bucket that holds ids issued at ``unix_ms``."""
    return max(0, unix_ms - DISCORD_EPOCH_MS) // BUCKET_MS


def bucket_windows(
    start: int, stop: int, first: int = FIRST_WINDOW, maximum: int = MAX_WINDOW
) -> Iterator[list[int]]:
    """Bucket lists from ``start`` to ``stop`` inclusive (either direction), doubling in size.

    Each list is in walk order (nearest the cursor first); together they cover every
    bucket between the two ends exactly once.
    """
    if first < 1 or maximum < first:
        raise ValueError(f"bad window sizes first={first} maximum={maximum}")
    step = -1 if stop < start else 1
    size = first
    current = start
    while (current - stop) * step <= 0:
        end = current + step * (size - 1)
        if (end - stop) * step > 0:
            end = stop
        yield list(range(current, end + step, step))
        current = end + step
        size = min(size * 2, maximum)
