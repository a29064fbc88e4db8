"""SQLite's ``channel_access`` reads on the event loop (``storage.sqlite.open_reader``):
what storage holds, and SQLite's thread reads it when the loop's reader meets a lock."""

from __future__ import annotations

import sqlite3
import threading

from storage.model import Channel, Guild, Member, User


class LockedReader(sqlite3.Connection):
    """A reader whose statements meet a lock (a WAL recovery's: ``SQLITE_BUSY`` at once
    with ``busy_timeout=0``), as SQLite reports it; which threads tried is recorded."""

    tried: list[int]

    def execute(self, *args, **kwargs):  # type: ignore[no-untyped-def, override]
        self.tried.append(threading.get_ident())
        raise sqlite3.OperationalError("database is locked")


def test_channel_access_reads_through_the_thread_when_the_reader_meets_a_lock(  # type: ignore[no-untyped-def]
        aio, sqlite_storage, sqlite_settings, ids) -> None:
    user, guild, channel = ids.now(), ids.now(), ids.now()
    token = f"t.{user}"

    async def go() -> tuple[tuple, tuple]:
        await sqlite_storage.put_user(User(user, "u"))
        await sqlite_storage.put_token(token, user)
        await sqlite_storage.put_guild(Guild(guild, "g", user))
        await sqlite_storage.put_channel(Channel(channel, guild, "c"))
        await sqlite_storage.put_member(Member(guild, user, 1))
        on_loop = await sqlite_storage.channel_access(token, channel)  # the loop's reader
        reader = sqlite_storage._reader
        locked = sqlite3.connect(sqlite_settings.sqlite_path, factory=LockedReader,
                                 check_same_thread=False)
        locked.tried = []
        sqlite_storage._reader = locked
        try:
            through_thread = await sqlite_storage.channel_access(token, channel)
        finally:
            sqlite_storage._reader = reader
            locked.close()
        assert locked.tried == [threading.get_ident()]  # tried once, on the loop
        return on_loop, through_thread

    on_loop, through_thread = aio.run(go())
    expected = (User(user, "u"), Channel(channel, guild, "c"), Guild(guild, "g", user),
                Member(guild, user, 1), [], [])
    assert on_loop == expected
    assert through_thread == expected


class RecordingReader(sqlite3.Connection):
    """A reader that records which threads ran its statements."""

    tried: list[int]

    def execute(self, *args, **kwargs):  # type: ignore[no-untyped-def, override]
        self.tried.append(threading.get_ident())
        return super().execute(*args, **kwargs)


def test_account_for_token_reads_on_the_loop_and_through_the_thread_on_a_lock(  # type: ignore[no-untyped-def]
        aio, sqlite_storage, sqlite_settings, ids) -> None:
    """IDENTIFY's read: the loop's reader answers it (no hop to SQLite's thread); a
    reader that meets a lock hands it to the thread, with the same answer."""
    user, guild = ids.now(), ids.now()
    token = f"t.{user}"

    async def go() -> tuple[tuple, tuple, tuple, list[int], list[int]]:
        await sqlite_storage.put_user(User(user, "u"))
        await sqlite_storage.put_token(token, user)
        await sqlite_storage.put_member(Member(guild, user, 1))
        reader = sqlite_storage._reader
        found = []
        for factory in (RecordingReader, LockedReader):
            other = sqlite3.connect(sqlite_settings.sqlite_path, factory=factory,
                                    check_same_thread=False)
            other.tried = []
            sqlite_storage._reader = other
            try:
                found.append((await sqlite_storage.account_for_token(token), other.tried))
            finally:
                sqlite_storage._reader = reader
                other.close()
        unknown = await sqlite_storage.account_for_token("no.such.token")
        return found[0][0], found[1][0], unknown, found[0][1], found[1][1]

    on_loop, through_thread, unknown, loop_tried, locked_tried = aio.run(go())
    here = threading.get_ident()
    # BEGIN, token, user, members, COMMIT (one read transaction): all on the loop
    assert loop_tried == [here] * 5
    assert locked_tried == [here]  # tried once, then SQLite's thread
    expected = (User(user, "u"), [Member(guild, user, 1)])
    assert on_loop == expected
    assert through_thread == expected
    assert unknown is None
