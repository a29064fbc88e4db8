"""SQLite's ``start_unit``: the storage actor's batch goes to SQLite's thread when the
actor sends it, not a loop turn later (a turn of a busy loop is a whole fan-out), with
the outcomes ``apply`` gives."""

from __future__ import annotations

import sqlite3
import time

from test_poison_batches import mixed_batch


def test_start_unit_runs_the_transaction_without_a_loop_turn(  # type: ignore[no-untyped-def]
        aio, sqlite_storage, sqlite_settings, ids) -> None:
    writes, poison, victim_channel, _ = mixed_batch(ids, victims=8)

    async def go() -> None:
        unit = sqlite_storage.start_unit(writes)
        # the loop does not turn until the await below: the victims' rows must land
        # meanwhile, written by SQLite's thread alone
        reader = sqlite3.connect(sqlite_settings.sqlite_path)
        try:
            deadline = time.monotonic() + 10.0
            landed = 0
            while landed < 8 and time.monotonic() < deadline:
                time.sleep(0.005)
                (landed,), = reader.execute(
                    "SELECT count(*) FROM messages WHERE channel_id = ?", (victim_channel,))
        finally:
            reader.close()
        assert landed == 8, "the transaction waited for the loop"
        outcomes = await unit
        assert [i for i, o in enumerate(outcomes) if o is not None] == poison
        reasons = {sqlite_storage.rejection(outcomes[i]) for i in poison}
        assert reasons <= {"text must be valid Unicode (no lone surrogates)",
                           "a number is out of range", "a value cannot be stored"}

    aio.run(go())


def test_the_sqlite_thread_runs_calls_in_order_and_hands_back_errors(aio) -> None:  # type: ignore[no-untyped-def]
    """``SqliteThread``: calls run one at a time in the order submitted; a call's
    exception is its caller's; a caller that gave up (cancelled) costs the next nothing."""
    import asyncio
    import threading

    from storage.sqlite import SqliteThread

    worker = SqliteThread(name="test-sqlite-thread")
    ran: list[tuple[int, int]] = []
    gate = threading.Event()

    def step(n: int) -> int:
        ran.append((n, threading.get_ident()))
        return n * 10

    def fail() -> None:
        raise ValueError("refused")

    async def go() -> None:
        held = worker.submit(gate.wait, 10)  # the next calls queue behind it
        given_up = worker.submit(step, 0)
        results = [worker.submit(step, n) for n in range(1, 6)]
        failed = worker.submit(fail)
        given_up.cancel()
        gate.set()
        assert await held is True
        assert await asyncio.gather(*results) == [10, 20, 30, 40, 50]
        try:
            await failed
        except ValueError as exc:
            assert str(exc) == "refused"
        else:
            raise AssertionError("the call's exception was not handed back")
        assert await worker.submit(step, 6) == 60

    try:
        aio.run(go())
    finally:
        worker.shutdown()
    assert [n for n, _ in ran] == [0, 1, 2, 3, 4, 5, 6]
    assert {t for _, t in ran} != {threading.get_ident()}
    assert len({t for _, t in ran}) == 1
