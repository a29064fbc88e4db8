"""Discord snowflakes: 42 bits of ms since 2015-01-01, 5 worker bits, 5 process bits, 12 increment.

Ids are assigned once at ingress, so a retried write carries the same key and the
database sees one message. The generator is sans-I/O apart from its clock (injectable):

* monotonic: if the wall clock steps back, ids keep growing from the last one issued
  (the generator keeps its own "logical" millisecond and never reuses one);
* at most 4,096 ids per millisecond: when the increment is exhausted it waits for the
  clock's next millisecond; if the clock is behind the logical millisecond (it stepped
  back), waiting could take arbitrarily long, so it moves the logical ms forward by one
  instead - ids stay unique and ordered, and the clock catches up later.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

DISCORD_EPOCH_MS = 1420070400000
WORKER_BITS = 5
PROCESS_BITS = 5
INCREMENT_BITS = 12
MAX_WORKER = (1 << WORKER_BITS) - 1
MAX_PROCESS = (1 << PROCESS_BITS) - 1
MAX_INCREMENT = (1 << INCREMENT_BITS) - 1
TIMESTAMP_SHIFT = WORKER_BITS + PROCESS_BITS + INCREMENT_BITS  # 22
MAX_TIMESTAMP = (1 << 42) - 1


def snowflake_ms(snowflake: int) -> int:
    """Unix milliseconds at which ``snowflake`` was issued."""
    if snowflake < 0:
        raise ValueError(f"snowflake must be non-negative, got {snowflake}")
    return (snowflake >> TIMESTAMP_SHIFT) + DISCORD_EPOCH_MS


def snowflake_us(snowflake: int) -> int:
    """Unix microseconds of the snowflake's creation: the CQL write timestamp of its insert."""
    return snowflake_ms(snowflake) * 1000


def snowflake_at(unix_ms: int, worker: int = 0, process: int = 0, increment: int = 0) -> int:
    """The snowflake for a given time (the lowest one for that ms by default)."""
    rel = unix_ms - DISCORD_EPOCH_MS
    if not 0 <= rel <= MAX_TIMESTAMP:
        raise ValueError(f"time {unix_ms} ms is outside the snowflake range")
    _check_bits(worker, process)
    if not 0 <= increment <= MAX_INCREMENT:
        raise ValueError(f"increment must be in 0..{MAX_INCREMENT}, got {increment}")
    return (
        (rel << TIMESTAMP_SHIFT)
        | (worker << (PROCESS_BITS + INCREMENT_BITS))
        | (process << INCREMENT_BITS)
        | increment
    )


MAX_SNOWFLAKE = (1 << 63) - 1  # Discord's ids are signed 64-bit; CQL's bigint too


def parse_snowflake(value: object) -> int | None:
    """The id ``value`` names, or ``None`` if it is not a canonical snowflake.

    The one parser for ids that arrive from the network (REST paths, queries and bodies,
    gateway payloads, the ingress): ASCII decimal digits only, no sign, no leading zero,
    no ``_`` or white space, below 2**63 - or an ``int`` in that range (JSON and msgpack
    numbers). ``int()`` accepts ``" 0012"``, ``"+12"``, ``"1_2"`` and full-width digits,
    so ``0<id>`` would name the same object as ``<id>`` under another rate-limit bucket.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if 0 <= value <= MAX_SNOWFLAKE else None
    if isinstance(value, bytes):
        try:
            value = value.decode("ascii")
        except UnicodeDecodeError:
            return None
    if not isinstance(value, str) or not value or len(value) > 19:
        return None
    if not (value.isascii() and value.isdigit()) or (value[0] == "0" and len(value) > 1):
        return None
    n = int(value)
    return n if n <= MAX_SNOWFLAKE else None


def _check_bits(worker: int, process: int) -> None:
    if not 0 <= worker <= MAX_WORKER:
        raise ValueError(f"snowflake worker id must be in 0..{MAX_WORKER}, got {worker}")
    if not 0 <= process <= MAX_PROCESS:
        raise ValueError(f"snowflake process id must be in 0..{MAX_PROCESS}, got {process}")


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


class SnowflakeGenerator:
    """Thread-safe snowflake source for one (worker, process) pair."""

    def __init__(
        self,
        worker: int = 0,
        process: int = 0,
        clock_ms: Callable[[], int] = _wall_ms,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        _check_bits(worker, process)
        self.worker = worker
        self.process = process
        self._clock = clock_ms
        self._sleep = sleep
        self._last_ms = -1
        self._increment = 0
        self._lock = threading.Lock()
        self._prefix = (worker << (PROCESS_BITS + INCREMENT_BITS)) | (process << INCREMENT_BITS)

    @classmethod
    def from_settings(cls, settings: object) -> SnowflakeGenerator:
        """From ``StorageSettings`` (``GREENROOM_WORKER_ID`` / ``GREENROOM_PROCESS_ID``)."""
        return cls(settings.snowflake_worker, settings.snowflake_process)  # type: ignore[attr-defined]

    def next_id(self) -> int:
        with self._lock:
            now = self._clock()
            if now > self._last_ms:
                self._last_ms = now
                self._increment = 0
            elif self._increment < MAX_INCREMENT:
                self._increment += 1  # same ms, or the clock stepped back: stay on ours
            else:
                # 4,096 ids used in this ms: wait for the next one, unless the clock is
                # behind us (it stepped back) - then borrow the next ms instead of blocking.
                while now == self._last_ms:
                    self._sleep(0.0001)
                    now = self._clock()
                self._last_ms = now if now > self._last_ms else self._last_ms + 1
                self._increment = 0
            rel = self._last_ms - DISCORD_EPOCH_MS
            if not 0 <= rel <= MAX_TIMESTAMP:
                raise ValueError(f"clock {self._last_ms} ms is outside the snowflake range")
            return (rel << TIMESTAMP_SHIFT) | self._prefix | self._increment
