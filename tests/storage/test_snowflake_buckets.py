"""Snowflakes and buckets: pure functions, no database."""

from __future__ import annotations

import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

from storage.buckets import BUCKET_MS, bucket_of, bucket_of_ms, bucket_windows
from storage.snowflake import (
    DISCORD_EPOCH_MS,
    MAX_INCREMENT,
    SnowflakeGenerator,
    snowflake_at,
    snowflake_ms,
)


class FakeClock:
    def __init__(self, ms: int) -> None:
        self.ms = ms
        self.sleeps = 0

    def __call__(self) -> int:
        return self.ms

    def sleep(self, _s: float) -> None:  # time passes only while the generator waits
        self.sleeps += 1
        self.ms += 1


def test_layout_matches_discord() -> None:
    # Discord's documented example: 175928847299117063 -> 2016-04-30 11:18:25.796 UTC.
    sid = 175928847299117063
    assert snowflake_ms(sid) == 1462015105796
    assert (sid >> 17) & 31 == 1 and (sid >> 12) & 31 == 0 and sid & 4095 == 7
    assert snowflake_at(1462015105796, 1, 0, 7) == sid
    gen = SnowflakeGenerator(worker=3, process=17, clock_ms=lambda: DISCORD_EPOCH_MS + 5)
    sid = gen.next_id()
    assert ((sid >> 17) & 31, (sid >> 12) & 31, sid >> 22) == (3, 17, 5)


def test_bad_config_is_rejected() -> None:
    with pytest.raises(ValueError, match="worker id must be in 0..31"):
        SnowflakeGenerator(worker=32)
    with pytest.raises(ValueError, match="process id must be in 0..31"):
        SnowflakeGenerator(process=-1)
    with pytest.raises(ValueError, match="outside the snowflake range"):
        snowflake_at(DISCORD_EPOCH_MS - 1)


@given(st.lists(st.integers(min_value=-5000, max_value=5000), min_size=1, max_size=300))
def test_monotonic_whatever_the_clock_does(steps: list[int]) -> None:
    clock = FakeClock(DISCORD_EPOCH_MS + 10**9)
    gen = SnowflakeGenerator(1, 2, clock_ms=clock, sleep=clock.sleep)
    last = -1
    for step in steps:
        clock.ms = max(DISCORD_EPOCH_MS, clock.ms + step)  # jumps forward and back
        sid = gen.next_id()
        assert sid > last
        last = sid


def test_4096_per_ms_then_waits_for_the_next_ms() -> None:
    clock = FakeClock(DISCORD_EPOCH_MS + 1000)
    gen = SnowflakeGenerator(clock_ms=clock, sleep=clock.sleep)
    first_ms = [gen.next_id() for _ in range(MAX_INCREMENT + 1)]
    assert {snowflake_ms(i) for i in first_ms} == {DISCORD_EPOCH_MS + 1000}
    assert clock.sleeps == 0
    nxt = gen.next_id()
    assert clock.sleeps == 1 and snowflake_ms(nxt) == DISCORD_EPOCH_MS + 1001
    assert nxt & 4095 == 0


def test_exhausted_ms_after_the_clock_stepped_back_does_not_block() -> None:
    clock = FakeClock(DISCORD_EPOCH_MS + 1000)
    gen = SnowflakeGenerator(clock_ms=clock, sleep=lambda _s: pytest.fail("must not wait"))
    gen.next_id()
    clock.ms -= 60_000  # NTP stepped the clock back a minute
    ids = [gen.next_id() for _ in range(3 * (MAX_INCREMENT + 1))]
    assert ids == sorted(set(ids))
    assert snowflake_ms(ids[-1]) == DISCORD_EPOCH_MS + 1003  # borrowed the next ms's


def test_thread_safe_and_unique() -> None:
    gen = SnowflakeGenerator()
    out: list[list[int]] = [[] for _ in range(4)]

    def work(k: int) -> None:
        out[k].extend(gen.next_id() for _ in range(20_000))

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    every = [i for chunk in out for i in chunk]
    assert len(set(every)) == len(every) == 80_000


def test_bucket_formula_is_designs() -> None:
    sid = 175928847299117063
    assert bucket_of(sid) == (sid >> 22) // 864_000_000 == 48
    assert bucket_of_ms(snowflake_ms(sid)) == 48
    assert bucket_of(snowflake_at(DISCORD_EPOCH_MS + BUCKET_MS - 1)) == 0
    assert bucket_of(snowflake_at(DISCORD_EPOCH_MS + BUCKET_MS)) == 1


@given(st.integers(0, 2000), st.integers(0, 2000))
def test_windows_cover_each_bucket_once_in_walk_order(start: int, stop: int) -> None:
    windows = list(bucket_windows(start, stop))
    flat = [b for w in windows for b in w]
    step = -1 if stop < start else 1
    assert flat == list(range(start, stop + step, step))
    sizes = [len(w) for w in windows]
    assert all(s <= 32 for s in sizes)
    assert sizes[:-1] == [min(2**i, 32) for i in range(len(sizes) - 1)]
    # The bound the contract suite relies on: a year of buckets in 6 queries.
    if abs(stop - start) + 1 <= 37:
        assert len(windows) <= 6


def test_parse_snowflake_accepts_only_canonical_ids() -> None:
    from storage.snowflake import MAX_SNOWFLAKE, parse_snowflake

    assert parse_snowflake("0") == 0
    assert parse_snowflake("175928847299117063") == 175928847299117063
    assert parse_snowflake(str(MAX_SNOWFLAKE)) == MAX_SNOWFLAKE
    assert parse_snowflake(12) == 12
    for bad in ("", "012", "+12", "-12", " 12", "12 ", "1_2", "１２", "12a", "0x1f",
                str(MAX_SNOWFLAKE + 1), "9" * 30, -1, MAX_SNOWFLAKE + 1, True, None, 1.0,
                b"\xff"):
        assert parse_snowflake(bad) is None, bad
