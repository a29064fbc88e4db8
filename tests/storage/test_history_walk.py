"""The bucket walk against an in-memory table (a fake fetch), checked against a model."""

from __future__ import annotations

import asyncio

from hypothesis import given, settings
from hypothesis import strategies as st

from storage.buckets import bucket_of
from storage.history import walk_buckets
from storage.snowflake import snowflake_at

BASE_MS = 1_700_000_000_000
DAY = 86_400_000


class Table:
    """Rows ``(id, live)`` per bucket, answering like the CQL ``bucket IN ?`` queries."""

    def __init__(self, rows: list[tuple[int, bool]]) -> None:
        self.rows = rows
        self.queries = 0

    async def desc(self, buckets: list[int], bound: int, limit: int) -> list[tuple[int, bool]]:
        self.queries += 1
        hits = [r for r in self.rows if bucket_of(r[0]) in buckets and r[0] < bound]
        return sorted(hits, reverse=True)[:limit]

    async def asc(self, buckets: list[int], bound: int, limit: int) -> list[tuple[int, bool]]:
        self.queries += 1
        hits = [r for r in self.rows if bucket_of(r[0]) in buckets and r[0] > bound]
        return sorted(hits)[:limit]


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 400), st.booleans()), min_size=0, max_size=40),
    st.integers(1, 30),
    st.integers(0, 400),
)
def test_walk_matches_a_sorted_scan(
    spec: list[tuple[int, bool]], limit: int, cursor_day: int
) -> None:
    rows = sorted(
        {(snowflake_at(BASE_MS + d * DAY, 0, 0, i), live) for i, (d, live) in enumerate(spec)}
    )
    table = Table(rows)
    cursor = snowflake_at(BASE_MS + cursor_day * DAY, 31, 31, 4095)
    live_ids = sorted(r[0] for r in rows if r[1])
    first, last = (
        bucket_of(snowflake_at(BASE_MS + 401 * DAY)),
        bucket_of(snowflake_at(BASE_MS)),
    )
    got = run(
        walk_buckets(
            table.desc,
            direction="desc",
            bound=cursor,
            limit=limit,
            first_bucket=bucket_of(cursor),
            last_bucket=last,
            row_id=lambda r: r[0],
            row_live=lambda r: r[1],
        )
    )
    assert [r[0] for r in got] == [i for i in reversed(live_ids) if i < cursor][:limit]
    got = run(
        walk_buckets(
            table.asc,
            direction="asc",
            bound=cursor,
            limit=limit,
            first_bucket=bucket_of(cursor),
            last_bucket=first,
            row_id=lambda r: r[0],
            row_live=lambda r: r[1],
        )
    )
    assert [r[0] for r in got] == [i for i in live_ids if i > cursor][:limit]


def test_partial_rows_never_make_a_page_short() -> None:
    # 10 rows in one bucket, the newest 5 not live (edits whose create has not landed).
    rows = [(snowflake_at(BASE_MS, 0, 0, i), i < 5) for i in range(10)]
    table = Table(rows)
    got = run(
        walk_buckets(
            table.desc,
            direction="desc",
            bound=1 << 62,
            limit=3,
            first_bucket=bucket_of(rows[0][0]),
            last_bucket=bucket_of(rows[0][0]),
            row_id=lambda r: r[0],
            row_live=lambda r: r[1],
        )
    )
    assert [r[0] for r in got] == [rows[4][0], rows[3][0], rows[2][0]]


def test_query_count_is_logarithmic_then_linear_in_32s() -> None:
    only = snowflake_at(BASE_MS)
    table = Table([(only, True)])
    start = bucket_of(snowflake_at(BASE_MS + 3650 * DAY))  # 365 buckets of nothing
    got = run(
        walk_buckets(
            table.desc,
            direction="desc",
            bound=1 << 62,
            limit=50,
            first_bucket=start,
            last_bucket=bucket_of(only),
            row_id=lambda r: r[0],
            row_live=lambda r: r[1],
        )
    )
    assert got == [(only, True)]
    # 1+2+4+8+16 = 31 buckets in 5 queries, then ceil((366-31)/32) = 11 more.
    assert table.queries == 16
    empty = Table([])
    run(
        walk_buckets(
            empty.desc,
            direction="desc",
            bound=1 << 62,
            limit=50,
            first_bucket=10,
            last_bucket=11,
            row_id=lambda r: r[0],
            row_live=lambda r: r[1],
        )
    )
    assert empty.queries == 0  # a cursor older than the channel: nothing to read
