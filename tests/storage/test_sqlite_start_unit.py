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
