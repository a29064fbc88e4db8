"""The embedded backend: SQLite in WAL mode, on one dedicated thread.

SQLite calls block, so they run on a single worker thread that owns the connection
(one writer is all SQLite allows anyway); the event loop only awaits, except for the
reads every REST call on a channel and every IDENTIFY start with (``channel_access``,
``account_for_token``), which it runs on a read-only connection of its own (``open_reader``: a WAL reader never waits for the
writer, and a lock sends the read to the thread). The storage actor hands each batch to
the thread as it sends it (``start_unit``). A call
to ``apply`` is one transaction, so a batch of writes costs one commit (one fsync with
``synchronous=FULL``) however many messages it holds. If that transaction fails for a
reason that is not transient, the batch is run again in one transaction with a savepoint
per write: a write that fails rolls back alone and the others commit (still one fsync).

Messages emulate CQL's per-cell timestamps (see storage.schema) with upserts whose
``CASE`` arms keep the newer of two writes per column and refuse anything at or before
the row's tombstone - the same outcome as Cassandra for redelivered or reordered writes.
"""

from __future__ import annotations

import asyncio
import json
import queue
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, TypeVar

from storage.base import Storage, rejection_reason
from storage.blobs import BlobHead
from storage.codec import (
    BOOL_COLUMNS,
    EDITABLE_COLUMNS,
    IMMUTABLE_COLUMNS,
    JSON_COLUMNS,
    LIST_COLUMNS,
    READ_COLUMNS,
    creation_values,
    dump_json,
    edit_values,
    message_from_columns,
    token_hash,
)
from storage.grants import OAuth2Grant
from storage.history import HistoryQuery
from storage.invites import Invite
from storage.model import (
    Channel,
    Guild,
    Member,
    Message,
    MessageCreate,
    MessageDelete,
    MessageEdit,
    MessageWrite,
    Role,
    User,
    check_id,
)
from storage.records import MAX_LIST, check_record, key_range, pack, unpack
from storage.schema import open_sqlite
from storage.settings import StorageSettings

T = TypeVar("T")


def _settle(future: asyncio.Future, result: Any, error: BaseException | None) -> None:
    if future.done():  # its awaiter was cancelled
        return
    if error is None:
        future.set_result(result)
    else:
        future.set_exception(error)


class SqliteThread:
    """The one thread that runs SQLite's calls, in the order given; each call's answer
    settles an asyncio future on its caller's loop.

    A one-worker ``ThreadPoolExecutor`` did the same with more on both sides of every
    call: two locks and a ``concurrent.futures.Future`` (a condition, its callbacks)
    chained to the asyncio one, an idle semaphore whose lock the worker takes after each
    call while the loop takes it in ``submit``. Each is a point where one thread waits
    for the other to be given the GIL back (py-spy at 10 posts/s x 1,000 recipients: the
    loop thread in ``submit`` a quarter as often as in the whole REST handler). Here:
    one ``SimpleQueue`` put, and ``call_soon_threadsafe`` once the call returns; an
    empty round trip p50 0.12-0.14 -> 0.05-0.08 ms, a one-message apply with
    ``synchronous=NORMAL`` 0.34 -> 0.26 ms (alternated, busy 2-core host)."""

    def __init__(self, name: str = "sqlite-storage") -> None:
        self._calls: queue.SimpleQueue[tuple | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """``fn(*args)`` on the thread (after every call submitted before it)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._calls.put((loop, future, fn, args))
        return future

    def _run(self) -> None:
        while (call := self._calls.get()) is not None:
            loop, future, fn, args = call
            try:
                result, error = fn(*args), None
            except BaseException as exc:  # the caller's to see, as an executor hands it
                result, error = None, exc
            try:
                loop.call_soon_threadsafe(_settle, future, result, error)
            except RuntimeError:  # its loop is closed: nobody waits for it
                pass
            del call, future, result, error  # not kept alive until the next call

    def shutdown(self) -> None:
        """Stop once the calls submitted so far have run; waits for the thread."""
        self._calls.put(None)
        self._thread.join()


def open_reader(path: str) -> sqlite3.Connection:
    """A read-only connection for the event loop's own reads (``SqliteStorage._read_here``).

    In WAL mode a reader never waits for the writer; it waits only for the rare lock of
    a WAL recovery or restart, and then the loop must not: ``busy_timeout=0`` makes
    that an immediate ``SQLITE_BUSY`` (transient), and the caller asks the SQLite
    thread instead. Each ``_read_here`` call is one read transaction (its statements
    run to completion), so it sees every write committed before it started."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA query_only=1")
    conn.execute("PRAGMA busy_timeout=0")
    return conn


def _when_newer(col: str) -> str:
    ts = "create_ts" if col in IMMUTABLE_COLUMNS or col == "create_ts" else f"{col}_ts"
    return f"(excluded.{ts} > tomb_ts AND excluded.{ts} > COALESCE({ts}, -1))"


def _build_upsert() -> str:
    cols = ["channel_id", "message_id", "create_ts", *IMMUTABLE_COLUMNS]
    for c in EDITABLE_COLUMNS:
        cols += [c, f"{c}_ts"]
    sets = []
    for c in cols[2:]:
        base = c[:-3] if c.endswith("_ts") and c != "create_ts" else c
        sets.append(f"{c} = CASE WHEN {_when_newer(base)} THEN excluded.{c} ELSE {c} END")
    return (
        f"INSERT INTO messages ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))}) "
        f"ON CONFLICT (channel_id, message_id) DO UPDATE SET {', '.join(sets)}"
    )


def _build_delete() -> str:
    tomb = "MAX(tomb_ts, excluded.tomb_ts)"
    sets = [f"tomb_ts = {tomb}"]
    for c in ("create_ts", *IMMUTABLE_COLUMNS):
        sets.append(f"{c} = CASE WHEN create_ts <= {tomb} THEN NULL ELSE {c} END")
    for c in EDITABLE_COLUMNS:
        for target in (c, f"{c}_ts"):
            sets.append(f"{target} = CASE WHEN {c}_ts <= {tomb} THEN NULL ELSE {target} END")
    return (
        "INSERT INTO messages (channel_id, message_id, tomb_ts) VALUES (?, ?, ?) "
        f"ON CONFLICT (channel_id, message_id) DO UPDATE SET {', '.join(sets)}"
    )


UPSERT_SQL = _build_upsert()
# The common case - a create for an id not seen before - needs none of the CASE arms.
INSERT_NEW_SQL = UPSERT_SQL[: UPSERT_SQL.index(" ON CONFLICT")] + (
    " ON CONFLICT (channel_id, message_id) DO NOTHING"
)
DELETE_SQL = _build_delete()
_SELECT = f"SELECT {', '.join(READ_COLUMNS)} FROM messages"
HISTORY_DESC_SQL = (
    f"{_SELECT} WHERE channel_id = ? AND message_id < ? AND create_ts IS NOT NULL "
    "ORDER BY message_id DESC LIMIT ?"
)
HISTORY_ASC_SQL = (
    f"{_SELECT} WHERE channel_id = ? AND message_id > ? AND create_ts IS NOT NULL "
    "ORDER BY message_id ASC LIMIT ?"
)
GET_SQL = f"{_SELECT} WHERE channel_id = ? AND message_id = ? AND create_ts IS NOT NULL"
# A newer claim (a larger snowflake) replaces an older one, as CQL's write timestamps do.
CLAIM_NONCE_SQL = (
    "INSERT INTO message_nonces (channel_id, author_id, nonce, message_id, expires_at_ms) "
    "VALUES (?, ?, ?, ?, ?) ON CONFLICT (channel_id, author_id, nonce) DO UPDATE SET "
    "message_id = excluded.message_id, expires_at_ms = excluded.expires_at_ms "
    "WHERE excluded.message_id >= message_id"
)
FIND_NONCE_SQL = (
    "SELECT message_id FROM message_nonces WHERE channel_id = ? AND author_id = ? "
    "AND nonce = ? AND expires_at_ms > ?"
)
PURGE_NONCES_SQL = "DELETE FROM message_nonces WHERE expires_at_ms <= ?"
#: Expired nonce rows are deleted at most this often, inside a write's transaction.
NONCE_PURGE_INTERVAL_S = 60.0


def _sqlite_value(col: str, value: Any) -> Any:
    if value is None:
        return None
    if col in LIST_COLUMNS:
        return json.dumps(list(value))
    if col in BOOL_COLUMNS:
        return int(bool(value))
    return value


def _upsert_params(write: MessageCreate | MessageEdit) -> tuple[Any, ...]:
    if isinstance(write, MessageCreate):
        values = creation_values(write.message)
        ts = write.timestamp_us
        create_ts: int | None = ts
    else:
        values = edit_values(write.changes)
        ts = write.at_us
        create_ts = None
    params: list[Any] = [write.channel_id, write.message_id, create_ts]
    params += [_sqlite_value(c, values.get(c)) for c in IMMUTABLE_COLUMNS]
    for c in EDITABLE_COLUMNS:
        if c in values:
            params += [_sqlite_value(c, values[c]), ts]
        else:
            params += [None, None]
    return tuple(params)


_CREATE_ORDER = (
    "content",
    "embeds",
    "attachments",
    "flags",
    "pinned",
    "mentions",
    "mention_roles",
    "mention_everyone",
    "edited_at_ms",
    "extra",
)
assert _CREATE_ORDER == EDITABLE_COLUMNS, "keep _create_params in step with the schema"


def _create_params(write: MessageCreate) -> tuple[Any, ...]:
    """``_upsert_params`` for a create, unrolled: it is the hot path of every write."""
    m = write.message
    ts = write.timestamp_us
    embeds = dump_json(m.embeds) if m.embeds else None
    attachments = dump_json(m.attachments) if m.attachments else None
    mentions = json.dumps(list(m.mentions)) if m.mentions else None
    roles = json.dumps(list(m.mention_roles)) if m.mention_roles else None
    extra = dump_json(m.extra) if m.extra else None
    return (
        m.channel_id,
        m.id,
        ts,
        m.author_id,
        m.guild_id,
        m.type,
        int(bool(m.tts)),
        m.nonce,
        m.content,
        ts,
        embeds,
        ts if embeds is not None else None,
        attachments,
        ts if attachments is not None else None,
        m.flags or None,
        ts if m.flags else None,
        1 if m.pinned else None,
        ts if m.pinned else None,
        mentions,
        ts if mentions is not None else None,
        roles,
        ts if roles is not None else None,
        1 if m.mention_everyone else None,
        ts if m.mention_everyone else None,
        m.edited_at_ms,
        ts if m.edited_at_ms is not None else None,
        extra,
        ts if extra is not None else None,
    )


def _row_to_message(channel_id: int, row: sqlite3.Row) -> Message:
    data = dict(zip(READ_COLUMNS, row, strict=True))
    for c in LIST_COLUMNS:
        if data[c] is not None:
            data[c] = json.loads(data[c])
    for c in JSON_COLUMNS:
        if data[c] is not None and not isinstance(data[c], str):
            data[c] = str(data[c])
    return message_from_columns(channel_id, data)


class SqliteStorage(Storage):
    """SQLite (WAL) backend; the embedded default."""

    name = "sqlite"

    def __init__(self, settings: StorageSettings) -> None:
        super().__init__()
        self.settings = settings
        self._executor: SqliteThread | None = None
        self._conn: sqlite3.Connection | None = None
        #: a read-only connection the event loop queries itself (``_read_here``);
        #: the lock keeps a second thread (a test's, another loop's) off it meanwhile
        self._reader: sqlite3.Connection | None = None
        self._reading = threading.Lock()
        self._nonces_purged = 0.0  # time.monotonic() of the last purge of expired nonces

    # -- plumbing ----------------------------------------------------------------------
    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        if self._executor is None:
            raise RuntimeError("SqliteStorage is not open: call `await storage.open()` first")
        return await self._executor.submit(fn, *args)

    async def _read_here(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args, db)`` on the event loop's own reader (``open_reader``): a few
        indexed reads cost less than the round trip to SQLite's thread (two wake-ups, the
        GIL handed back and forth around each statement). Only when the reader meets a
        lock (or another thread holds it) does the thread read it (``fn(*args)``)."""
        if self._reading.acquire(blocking=False):
            try:
                reader = self._reader
                if reader is not None:
                    # One read transaction for all of fn's statements (one snapshot):
                    # alone, each opens and ends its own (the WAL read lock, the
                    # wal-index check); a post's check is 7 of them, ~15% of its cost.
                    reader.execute("BEGIN")
                    try:
                        result = fn(*args, reader)
                    except BaseException:
                        reader.execute("ROLLBACK")  # a read's: never busy, never fails
                        raise
                    reader.execute("COMMIT")
                    return result
            except sqlite3.OperationalError as exc:
                if not self.is_transient(exc):
                    raise
            finally:
                self._reading.release()
        return await self._call(fn, *args)

    def _db(self) -> sqlite3.Connection:
        assert self._conn is not None
        return self._conn

    async def open(self) -> None:
        if self._executor is not None:
            return
        self._executor = SqliteThread()
        self._conn = await self._call(
            open_sqlite, self.settings.sqlite_path, self.settings.sqlite_synchronous
        )
        try:
            await self._call(self._check_schema)
            if self.settings.sqlite_path != ":memory:":  # a second one would be another db
                self._reader = open_reader(self.settings.sqlite_path)
        except BaseException:
            await self.close()
            raise

    def _check_schema(self) -> None:
        try:
            self._db().execute("SELECT 1 FROM messages LIMIT 1")
        except sqlite3.OperationalError as exc:
            raise RuntimeError(
                f"{self.settings.sqlite_path} has no greenroom schema: run "
                "`python -m storage migrate` first"
            ) from exc

    async def close(self) -> None:
        executor, self._executor = self._executor, None
        if executor is None:
            return
        reader, self._reader = self._reader, None
        if reader is not None:
            with self._reading:
                reader.close()
        conn, self._conn = self._conn, None
        if conn is not None:
            await executor.submit(conn.close)
        executor.shutdown()

    def is_transient(self, exc: BaseException) -> bool:
        if isinstance(exc, sqlite3.OperationalError):
            text = str(exc).lower()
            return "locked" in text or "busy" in text
        return False

    def rejection(self, exc: BaseException) -> str | None:
        if isinstance(exc, sqlite3.IntegrityError | sqlite3.DataError):
            return "the database refused a value of this write"
        if isinstance(exc, sqlite3.ProgrammingError) and "binding" in str(exc):
            return "a value cannot be stored"
        return rejection_reason(exc)

    def _query(self, sql: str, params: Sequence[Any],
               db: sqlite3.Connection | None = None) -> list[Any]:
        self.queries += 1
        return (db or self._db()).execute(sql, params).fetchall()

    def _transaction(self, fn: Callable[[sqlite3.Connection], None]) -> None:
        db = self._db()
        db.execute("BEGIN IMMEDIATE")
        try:
            fn(db)
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    # -- messages ----------------------------------------------------------------------
    @staticmethod
    def _plan(writes: Sequence[MessageWrite]) -> tuple[list, list, list, list]:
        """Statement parameters by kind: creates, edits, deletes, nonce claims."""
        creates = []
        edits = []
        deletes = []
        claims = []
        for w in writes:
            if isinstance(w, MessageCreate):
                creates.append(_create_params(w))
                if w.claim_nonce:
                    m = w.message
                    claims.append((m.channel_id, m.author_id, m.nonce, m.id,
                                   w.nonce_expires_ms))
            elif isinstance(w, MessageEdit):
                edits.append(_upsert_params(w))
            elif isinstance(w, MessageDelete):
                deletes.append((w.channel_id, w.message_id, w.at_us))
            else:
                raise TypeError(f"not a message write: {type(w).__name__}")
        return creates, edits, deletes, claims

    def _run(self, db: sqlite3.Connection, plan: tuple[list, list, list, list]) -> None:
        creates, edits, deletes, claims = plan
        # Timestamps make the writes commute, so grouping them by kind is safe.
        if creates:
            inserted = db.executemany(INSERT_NEW_SQL, creates).rowcount
            if inserted != len(creates):
                # Some ids existed (redelivery, or an edit/delete got there first):
                # resolve those per column. Rows just inserted are unchanged by it.
                db.executemany(UPSERT_SQL, creates)
        if edits:
            db.executemany(UPSERT_SQL, edits)
        if deletes:
            db.executemany(DELETE_SQL, deletes)
        if claims:
            db.executemany(CLAIM_NONCE_SQL, claims)
            now = time.monotonic()
            if now - self._nonces_purged >= NONCE_PURGE_INTERVAL_S:
                self._nonces_purged = now
                db.execute(PURGE_NONCES_SQL, (int(time.time() * 1000),))

    def _apply_sync(self, writes: Sequence[MessageWrite]) -> None:
        plan = self._plan(writes)
        self.queries += 1
        self._transaction(lambda db: self._run(db, plan))

    def _apply_isolated(self, writes: Sequence[MessageWrite]) -> list[BaseException | None]:
        """The writes in one transaction, each in a savepoint: one that fails is rolled
        back alone and reported; the others commit together."""
        outcomes: list[BaseException | None] = [None] * len(writes)

        def run(db: sqlite3.Connection) -> None:
            for i, w in enumerate(writes):
                db.execute("SAVEPOINT one_write")
                try:
                    self._run(db, self._plan([w]))
                except Exception as exc:
                    db.execute("ROLLBACK TO one_write")
                    outcomes[i] = exc
                db.execute("RELEASE one_write")

        self.queries += 1
        self._transaction(run)
        return outcomes

    def _apply_batch(self, writes: Sequence[MessageWrite]) -> list[BaseException | None]:
        try:
            self._apply_sync(writes)
            return [None] * len(writes)
        except Exception as exc:
            if len(writes) == 1 or self.is_transient(exc):
                return [exc] * len(writes)  # the actor retries them all
        try:  # maybe one write's fault: find it, commit the others
            return self._apply_isolated(writes)
        except Exception as exc:
            return [exc] * len(writes)

    def _apply_each(self, writes: Sequence[MessageWrite]) -> list[BaseException | None]:
        outcomes: list[BaseException | None] = []
        for w in writes:
            try:
                self._apply_sync([w])
                outcomes.append(None)
            except Exception as exc:
                outcomes.append(exc)
        return outcomes

    async def apply(
        self, writes: Sequence[MessageWrite], batched: bool = True
    ) -> list[BaseException | None]:
        writes = list(writes)
        if not writes:
            return []
        return await self._call(self._apply_batch if batched else self._apply_each, writes)

    def start_unit(self, writes: Sequence[MessageWrite]) -> Awaitable[list[BaseException | None]]:
        """``apply`` for one ack unit (the storage actor's call), handed to the SQLite
        thread now: ``SqliteThread``'s future, which the transaction's end settles. Through
        ``apply``'s task the transaction would only start at the task's first step, a
        loop turn later (behind the rest of the actors' drain: a 1,000-recipient fan-out
        is ~10 ms of it), and its end would wake the task before the actor hears. Same
        transaction, same outcomes; only the turns in between go."""
        if self._executor is None or not writes:
            return self.apply(writes)  # not open: raises as apply does; nothing: []
        return self._executor.submit(self._apply_batch, list(writes))

    async def find_nonce(self, channel_id: int, author_id: int, nonce: str) -> int | None:
        rows = await self._call(self._query, FIND_NONCE_SQL, (
            check_id("channel_id", channel_id), check_id("author_id", author_id), nonce,
            int(time.time() * 1000)))
        return rows[0][0] if rows else None

    async def get_message(self, channel_id: int, message_id: int) -> Message | None:
        check_id("channel_id", channel_id)
        check_id("message_id", message_id)
        rows = await self._call(self._query, GET_SQL, (channel_id, message_id))
        return _row_to_message(channel_id, rows[0]) if rows else None

    def _history_sync(self, q: HistoryQuery) -> list[Message]:
        cid = q.channel_id
        if q.after is not None:
            rows = self._query(HISTORY_ASC_SQL, (cid, q.after, q.limit))
            rows.reverse()
        elif q.around is not None:
            newer_n = q.limit // 2
            newer = self._query(HISTORY_ASC_SQL, (cid, q.around, newer_n)) if newer_n else []
            older = self._query(HISTORY_DESC_SQL, (cid, q.around + 1, q.limit - newer_n))
            rows = newer[::-1] + older
        else:
            before = q.before if q.before is not None else (1 << 63) - 1
            rows = self._query(HISTORY_DESC_SQL, (cid, before, q.limit))
        return [_row_to_message(cid, r) for r in rows]

    async def history(self, query: HistoryQuery) -> list[Message]:
        return await self._call(self._history_sync, query)

    # -- entities ----------------------------------------------------------------------
    def _upsert(self, table: str, key: Sequence[str], values: dict[str, Any]) -> None:
        cols = list(values)
        sets = [f"{c} = COALESCE(excluded.{c}, {c})" for c in cols if c not in key]
        sql = (
            f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))}) "
            f"ON CONFLICT ({', '.join(key)}) DO "
            + (f"UPDATE SET {', '.join(sets)}" if sets else "NOTHING")
        )
        self.queries += 1
        self._db().execute(sql, list(values.values()))

    async def _write(self, table: str, key: Sequence[str], values: dict[str, Any]) -> None:
        await self._call(self._upsert, table, key, values)

    async def _exec(self, sql: str, params: Sequence[Any]) -> None:
        await self._call(self._query, sql, params)

    async def _rows(self, sql: str, params: Sequence[Any]) -> list[Any]:
        return await self._call(self._query, sql, params)

    async def put_user(self, user: User) -> None:
        check_id("user id", user.id)
        await self._write(
            "users",
            ["id"],
            {
                "id": user.id,
                "username": user.username,
                "discriminator": user.discriminator,
                "global_name": user.global_name,
                "avatar": user.avatar,
                "bot": int(user.bot),
                "flags": user.flags,
            },
        )

    async def get_user(self, user_id: int) -> User | None:
        rows = await self._rows(
            "SELECT id, username, discriminator, global_name, avatar, bot, flags "
            "FROM users WHERE id = ?",
            (check_id("user_id", user_id),),
        )
        if not rows:
            return None
        r = rows[0]
        return User(r[0], r[1], r[2] or "0", r[3], r[4], bool(r[5]), r[6] or 0)

    async def get_users(self, user_ids: Iterable[int]) -> dict[int, User]:
        ids = [check_id("user_id", u) for u in dict.fromkeys(user_ids)]
        found: dict[int, User] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            rows = await self._rows(
                "SELECT id, username, discriminator, global_name, avatar, bot, flags "
                f"FROM users WHERE id IN ({', '.join('?' * len(chunk))})",
                chunk,
            )
            for r in rows:
                found[r[0]] = User(r[0], r[1], r[2] or "0", r[3], r[4], bool(r[5]), r[6] or 0)
        return found

    async def put_token(self, token: str, user_id: int) -> None:
        await self._exec(
            "INSERT OR REPLACE INTO bot_tokens (token_hash, user_id) VALUES (?, ?)",
            (token_hash(token), check_id("user_id", user_id)),
        )

    async def user_id_for_token(self, token: str) -> int | None:
        rows = await self._rows(
            "SELECT user_id FROM bot_tokens WHERE token_hash = ?", (token_hash(token),)
        )
        return rows[0][0] if rows else None

    async def put_application_flags(self, application_id: int, flags: int) -> None:
        await self._exec(
            "INSERT OR REPLACE INTO applications (id, flags) VALUES (?, ?)",
            (check_id("application_id", application_id), int(flags)),
        )

    async def application_flags(self, application_id: int) -> int | None:
        rows = await self._rows("SELECT flags FROM applications WHERE id = ?",
                                (check_id("application_id", application_id),))
        return rows[0][0] if rows else None

    async def put_oauth2_grant(self, token: str, grant: OAuth2Grant) -> None:
        await self._exec(
            "INSERT OR REPLACE INTO oauth2_grants (token_hash, user_id, application_id, "
            "scopes, expires_at_ms) VALUES (?, ?, ?, ?, ?)",
            (token_hash(token), check_id("user_id", grant.user_id),
             check_id("application_id", grant.application_id), " ".join(grant.scopes),
             grant.expires_at_ms),
        )

    async def oauth2_grant(self, token: str) -> OAuth2Grant | None:
        rows = await self._rows(
            "SELECT user_id, application_id, scopes, expires_at_ms FROM oauth2_grants "
            "WHERE token_hash = ?", (token_hash(token),)
        )
        if not rows:
            return None
        user_id, application_id, scopes, expires_at_ms = rows[0]
        return OAuth2Grant(user_id, application_id, tuple(scopes.split()), expires_at_ms)

    # -- records (storage.records): expiry is a column, filtered on read ------------------
    @staticmethod
    def _expiry(ttl_s: int | None) -> int | None:
        return None if ttl_s is None else int(time.time() * 1000) + int(ttl_s) * 1000

    async def put_record(self, kind: str, scope: int, key: str, value: dict[str, Any],
                         ttl_s: int | None = None) -> None:
        check_record(kind, scope, key)
        await self._exec(
            "INSERT OR REPLACE INTO records (kind, scope, key, value, expires_at_ms) "
            "VALUES (?, ?, ?, ?, ?)", (kind, scope, key, pack(value), self._expiry(ttl_s)))

    async def get_record(self, kind: str, scope: int, key: str) -> dict[str, Any] | None:
        check_record(kind, scope, key)
        rows = await self._rows(
            "SELECT value FROM records WHERE kind = ? AND scope = ? AND key = ? "
            "AND (expires_at_ms IS NULL OR expires_at_ms > ?)",
            (kind, scope, key, int(time.time() * 1000)))
        return unpack(rows[0][0]) if rows else None

    async def insert_record_if_absent(self, kind: str, scope: int, key: str,
                                      value: dict[str, Any], ttl_s: int | None = None
                                      ) -> tuple[bool, dict[str, Any]]:
        check_record(kind, scope, key)
        return await self._call(self._insert_record_sync, kind, scope, key, pack(value),
                                self._expiry(ttl_s), value)

    def _insert_record_sync(self, kind: str, scope: int, key: str, raw: bytes,
                            expires: int | None, value: dict[str, Any]
                            ) -> tuple[bool, dict[str, Any]]:
        # One statement: an expired record there is replaced, a live one kept. Atomic
        # against every other process on the file.
        cursor = self._db().execute(
            "INSERT INTO records (kind, scope, key, value, expires_at_ms) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (kind, scope, key) DO UPDATE SET "
            "value = excluded.value, expires_at_ms = excluded.expires_at_ms "
            "WHERE records.expires_at_ms IS NOT NULL AND records.expires_at_ms <= ?",
            (kind, scope, key, raw, expires, int(time.time() * 1000)))
        self.queries += 1
        if cursor.rowcount == 1:
            return True, value
        rows = self._query("SELECT value FROM records WHERE kind = ? AND scope = ? AND key = ?",
                           (kind, scope, key))
        return False, unpack(rows[0][0])

    async def delete_record(self, kind: str, scope: int, key: str) -> None:
        check_record(kind, scope, key)
        await self._exec("DELETE FROM records WHERE kind = ? AND scope = ? AND key = ?",
                         (kind, scope, key))

    async def delete_record_if(self, kind: str, scope: int, key: str,
                               value: dict[str, Any]) -> bool:
        check_record(kind, scope, key)
        return await self._call(self._delete_record_if_sync, kind, scope, key, pack(value))

    def _delete_record_if_sync(self, kind: str, scope: int, key: str, raw: bytes) -> bool:
        cursor = self._db().execute(
            "DELETE FROM records WHERE kind = ? AND scope = ? AND key = ? AND value = ?",
            (kind, scope, key, raw))
        self.queries += 1
        return cursor.rowcount == 1

    async def write_records(self, writes: Sequence[tuple[str, int, str, dict[str, Any] | None]]
                            ) -> None:
        rows = []
        for kind, scope, key, value in writes:
            check_record(kind, scope, key)
            rows.append((kind, scope, key, None if value is None else pack(value)))
        if rows:
            await self._call(self._transaction, lambda db: self._write_records(db, rows))

    def _write_records(self, db: sqlite3.Connection,
                       rows: list[tuple[str, int, str, bytes | None]]) -> None:
        for kind, scope, key, raw in rows:
            if raw is None:
                db.execute("DELETE FROM records WHERE kind = ? AND scope = ? AND key = ?",
                           (kind, scope, key))
            else:
                db.execute("INSERT OR REPLACE INTO records (kind, scope, key, value, "
                           "expires_at_ms) VALUES (?, ?, ?, ?, NULL)", (kind, scope, key, raw))
        self.queries += len(rows)

    async def list_records(self, kind: str, scope: int, *, prefix: str = "",
                           after: str | None = None, limit: int = 100
                           ) -> list[tuple[str, dict[str, Any]]]:
        return [(k, unpack(v)) for k, v in await self._rows(
            *self._records_query(kind, scope, prefix, after, limit))]

    @staticmethod
    def _records_query(kind: str, scope: int, prefix: str, after: str | None, limit: int
                       ) -> tuple[str, list[Any]]:
        """``list_records``' statement and parameters."""
        check_record(kind, scope, prefix)
        low, inclusive, high = key_range(prefix, after)
        sql = (f"SELECT key, value FROM records WHERE kind = ? AND scope = ? "
               f"AND key {'>=' if inclusive else '>'} ? "
               "AND (expires_at_ms IS NULL OR expires_at_ms > ?)")
        params: list[Any] = [kind, scope, low, int(time.time() * 1000)]
        if high is not None:
            sql += " AND key < ?"
            params.append(high)
        sql += " ORDER BY key LIMIT ?"
        params.append(max(0, min(limit, MAX_LIST)))
        return sql, params

    async def delete_records(self, kind: str, scope: int, prefix: str = "") -> None:
        check_record(kind, scope, prefix)
        if prefix:
            await self._exec("DELETE FROM records WHERE kind = ? AND scope = ? AND key >= ? "
                             "AND key < ?", (kind, scope, prefix, key_range(prefix, None)[2]))
        else:
            await self._exec("DELETE FROM records WHERE kind = ? AND scope = ?", (kind, scope))

    _INVITE_COLS = ("code, guild_id, channel_id, inviter_id, created_at_ms, max_age_s, "
                    "max_uses, uses")

    async def put_invite(self, invite: Invite) -> None:
        await self._exec(
            f"INSERT OR REPLACE INTO invites ({self._INVITE_COLS}) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (invite.code, check_id("guild_id", invite.guild_id),
             check_id("channel_id", invite.channel_id),
             check_id("inviter_id", invite.inviter_id), invite.created_at_ms,
             invite.max_age_s, invite.max_uses, invite.uses),
        )

    async def get_invite(self, code: str) -> Invite | None:
        rows = await self._rows(
            f"SELECT {self._INVITE_COLS} FROM invites WHERE code = ?", (code,))
        return Invite(*rows[0]) if rows else None

    async def use_invite(self, code: str, now_ms: int) -> Invite | None:
        return await self._call(self._use_invite_sync, code, now_ms)

    def _use_invite_sync(self, code: str, now_ms: int) -> Invite | None:
        # One conditional UPDATE: atomic against every other process on the file.
        cursor = self._db().execute(
            "UPDATE invites SET uses = uses + 1 WHERE code = ? "
            "AND (max_uses = 0 OR uses < max_uses) "
            "AND (max_age_s = 0 OR created_at_ms + max_age_s * 1000 > ?)", (code, now_ms))
        self.queries += 1
        if cursor.rowcount != 1:
            return None
        rows = self._query(f"SELECT {self._INVITE_COLS} FROM invites WHERE code = ?", (code,))
        return Invite(*rows[0]) if rows else None

    # -- blobs (storage.blobs) --------------------------------------------------------
    async def put_blob_chunk(self, channel_id: int, blob_id: int, index: int,
                             data: bytes) -> None:
        await self._exec("INSERT OR REPLACE INTO blob_chunks (channel_id, blob_id, chunk, "
                         "data) VALUES (?, ?, ?, ?)", (channel_id, blob_id, index, data))

    async def put_blob_head(self, channel_id: int, blob_id: int, head: BlobHead) -> None:
        await self._exec(
            "INSERT OR REPLACE INTO blobs (channel_id, blob_id, size, content_type, etag, "
            "chunk_size, message_id) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (channel_id, blob_id, head.size, head.content_type, head.etag, head.chunk_size,
             head.message_id))

    async def get_blob_head(self, channel_id: int, blob_id: int) -> BlobHead | None:
        rows = await self._rows("SELECT size, content_type, etag, chunk_size, message_id "
                                "FROM blobs WHERE channel_id = ? AND blob_id = ?",
                                (channel_id, blob_id))
        return BlobHead(*rows[0]) if rows else None

    async def set_blob_message(self, channel_id: int, blob_id: int, message_id: int
                               ) -> None:
        await self._exec("UPDATE blobs SET message_id = ? WHERE channel_id = ? "
                         "AND blob_id = ?", (message_id, channel_id, blob_id))

    async def get_blob_chunk(self, channel_id: int, blob_id: int, index: int
                             ) -> bytes | None:
        rows = await self._rows("SELECT data FROM blob_chunks WHERE channel_id = ? "
                                "AND blob_id = ? AND chunk = ?", (channel_id, blob_id, index))
        return bytes(rows[0][0]) if rows else None

    async def delete_blob(self, channel_id: int, blob_id: int) -> None:
        def delete(db: sqlite3.Connection) -> None:
            for table in ("blobs", "blob_chunks"):
                db.execute(f"DELETE FROM {table} WHERE channel_id = ? AND blob_id = ?",
                           (channel_id, blob_id))

        await self._call(self._transaction, delete)

    async def put_guild(self, guild: Guild) -> None:
        check_id("guild id", guild.id)
        await self._write(
            "guilds",
            ["id"],
            {
                "id": guild.id,
                "name": guild.name,
                "owner_id": guild.owner_id,
                "icon": guild.icon,
                "description": guild.description,
                "features": json.dumps(list(guild.features)),
            },
        )

    _GUILD_COLS = "id, name, owner_id, icon, description, features"

    @staticmethod
    def _guild(r: Sequence[Any]) -> Guild:
        return Guild(r[0], r[1], r[2], r[3], r[4], json.loads(r[5]) if r[5] else [])

    async def get_guild(self, guild_id: int) -> Guild | None:
        rows = await self._rows(
            f"SELECT {self._GUILD_COLS} FROM guilds WHERE id = ?",
            (check_id("guild_id", guild_id),),
        )
        return self._guild(rows[0]) if rows else None

    _CHANNEL_COLS = "id, guild_id, name, type, position, topic, parent_id, nsfw"

    @staticmethod
    def _channel(r: Sequence[Any]) -> Channel:
        return Channel(r[0], r[1], r[2], r[3] or 0, r[4] or 0, r[5], r[6], bool(r[7]))

    async def put_channel(self, channel: Channel) -> None:
        check_id("channel id", channel.id)
        check_id("guild_id", channel.guild_id)
        await self._write(
            "channels",
            ["id"],
            {
                "id": channel.id,
                "guild_id": channel.guild_id,
                "name": channel.name,
                "type": channel.type,
                "position": channel.position,
                "topic": channel.topic,
                "parent_id": channel.parent_id,
                "nsfw": int(channel.nsfw),
            },
        )

    async def get_channel(self, channel_id: int) -> Channel | None:
        rows = await self._rows(
            f"SELECT {self._CHANNEL_COLS} FROM channels WHERE id = ?",
            (check_id("channel_id", channel_id),),
        )
        return self._channel(rows[0]) if rows else None

    async def channels_for_guild(self, guild_id: int) -> list[Channel]:
        rows = await self._rows(
            f"SELECT {self._CHANNEL_COLS} FROM channels WHERE guild_id = ? ORDER BY id",
            (check_id("guild_id", guild_id),),
        )
        return [self._channel(r) for r in rows]

    async def delete_channel(self, guild_id: int, channel_id: int) -> None:
        await self._exec(
            "DELETE FROM channels WHERE id = ? AND guild_id = ?",
            (check_id("channel_id", channel_id), check_id("guild_id", guild_id)),
        )

    async def put_role(self, role: Role) -> None:
        check_id("guild_id", role.guild_id)
        check_id("role id", role.id)
        await self._write(
            "roles",
            ["guild_id", "id"],
            {
                "guild_id": role.guild_id,
                "id": role.id,
                "name": role.name,
                "color": role.color,
                "hoist": int(role.hoist),
                "position": role.position,
                "permissions": role.permissions,
                "managed": int(role.managed),
                "mentionable": int(role.mentionable),
            },
        )

    async def roles_for_guild(self, guild_id: int) -> list[Role]:
        rows = await self._rows(
            "SELECT guild_id, id, name, color, hoist, position, permissions, managed, "
            "mentionable FROM roles WHERE guild_id = ? ORDER BY id",
            (check_id("guild_id", guild_id),),
        )
        return [
            Role(
                r[0],
                r[1],
                r[2],
                r[3] or 0,
                bool(r[4]),
                r[5] or 0,
                r[6] or 0,
                bool(r[7]),
                bool(r[8]),
            )
            for r in rows
        ]

    async def delete_role(self, guild_id: int, role_id: int) -> None:
        await self._exec(
            "DELETE FROM roles WHERE guild_id = ? AND id = ?",
            (check_id("guild_id", guild_id), check_id("role_id", role_id)),
        )

    async def put_member(self, member: Member) -> None:
        check_id("guild_id", member.guild_id)
        check_id("user_id", member.user_id)
        await self._write(
            "members",
            ["guild_id", "user_id"],
            {
                "guild_id": member.guild_id,
                "user_id": member.user_id,
                "nick": member.nick,
                "roles": json.dumps(list(member.roles)),
                "joined_at_ms": member.joined_at_ms,
                "deaf": int(member.deaf),
                "mute": int(member.mute),
            },
        )

    _MEMBER_COLS = "guild_id, user_id, joined_at_ms, nick, roles, deaf, mute"

    @staticmethod
    def _member(r: Sequence[Any]) -> Member:
        return Member(
            r[0], r[1], r[2], r[3], json.loads(r[4]) if r[4] else [], bool(r[5]), bool(r[6])
        )

    async def get_member(self, guild_id: int, user_id: int) -> Member | None:
        rows = await self._rows(
            f"SELECT {self._MEMBER_COLS} FROM members WHERE guild_id = ? AND user_id = ?",
            (check_id("guild_id", guild_id), check_id("user_id", user_id)),
        )
        return self._member(rows[0]) if rows else None

    async def members_for_guild(
        self, guild_id: int, limit: int = 1000, after: int | None = None
    ) -> list[Member]:
        if limit < 1:
            raise ValueError(f"limit must be positive, got {limit}")
        rows = await self._rows(
            f"SELECT {self._MEMBER_COLS} FROM members WHERE guild_id = ? AND user_id > ? "
            "ORDER BY user_id LIMIT ?",
            (check_id("guild_id", guild_id), -1 if after is None else after, limit),
        )
        return [self._member(r) for r in rows]

    async def member_count(self, guild_id: int) -> int:
        # COUNT over the (guild_id, user_id) primary key: an index range, no row reads.
        rows = await self._rows(
            "SELECT COUNT(*) FROM members WHERE guild_id = ?", (check_id("guild_id", guild_id),)
        )
        return int(rows[0][0])

    async def remove_member(self, guild_id: int, user_id: int) -> None:
        await self._exec(
            "DELETE FROM members WHERE guild_id = ? AND user_id = ?",
            (check_id("guild_id", guild_id), check_id("user_id", user_id)),
        )

    async def members_of_user(self, user_id: int) -> list[Member]:
        rows = await self._rows(
            f"SELECT {self._MEMBER_COLS} FROM members WHERE user_id = ? ORDER BY guild_id",
            (check_id("user_id", user_id),),
        )
        return [self._member(r) for r in rows]

    def _account_sync(self, digest: bytes, db: sqlite3.Connection | None = None
                      ) -> tuple[User, list[Member]] | None:
        found = self._query("SELECT user_id FROM bot_tokens WHERE token_hash = ?", (digest,),
                            db)
        if not found:
            return None
        user_id = found[0][0]
        rows = self._query(
            "SELECT id, username, discriminator, global_name, avatar, bot, flags "
            "FROM users WHERE id = ?",
            (user_id,), db,
        )
        if not rows:
            return None
        r = rows[0]
        user = User(r[0], r[1], r[2] or "0", r[3], r[4], bool(r[5]), r[6] or 0)
        members = self._query(
            f"SELECT {self._MEMBER_COLS} FROM members WHERE user_id = ? ORDER BY guild_id",
            (user_id,), db,
        )
        return user, [self._member(m) for m in members]

    async def account_for_token(self, token: str) -> tuple[User, list[Member]] | None:
        """Every IDENTIFY starts with this: read on the event loop (``_read_here``)."""
        return await self._read_here(self._account_sync, token_hash(token))

    #: ``channel_access``' reads in 4 statements, not 7: each costs its own step, row
    #: decoding and, on the loop's cold caches between posts, ~15-20 us
    _ACCESS_USER_SQL = (
        "SELECT u.id, u.username, u.discriminator, u.global_name, u.avatar, u.bot, u.flags "
        "FROM bot_tokens t JOIN users u ON u.id = t.user_id WHERE t.token_hash = ?")
    _ACCESS_CHANNEL_SQL = (
        "SELECT " + ", ".join(f"c.{col}" for col in _CHANNEL_COLS.split(", "))
        + ", " + ", ".join(f"g.{col}" for col in _GUILD_COLS.split(", "))
        + ", " + ", ".join(f"m.{col}" for col in _MEMBER_COLS.split(", "))
        + " FROM channels c LEFT JOIN guilds g ON g.id = c.guild_id LEFT JOIN members m"
        " ON m.guild_id = c.guild_id AND m.user_id = ? WHERE c.id = ?")
    #: where the guild's and the member's columns start in its rows
    _ACCESS_GUILD_AT = len(_CHANNEL_COLS.split(", "))
    _ACCESS_MEMBER_AT = _ACCESS_GUILD_AT + len(_GUILD_COLS.split(", "))

    def _channel_access_sync(self, digest: bytes, channel_id: int,
                             guild_records: tuple[str, str] | None,
                             db: sqlite3.Connection | None = None
                             ) -> tuple[User | None, Channel | None, Guild | None,
                                        Member | None, list[Role],
                                        list[tuple[str, dict[str, Any]]]]:
        rows = self._query(self._ACCESS_USER_SQL, (digest,), db)
        if not rows:
            return None, None, None, None, [], []
        r = rows[0]
        user = User(r[0], r[1], r[2] or "0", r[3], r[4], bool(r[5]), r[6] or 0)
        rows = self._query(self._ACCESS_CHANNEL_SQL, (user.id, channel_id), db)
        if not rows:
            return user, None, None, None, [], []
        r = rows[0]
        channel = self._channel(r)  # the channel's columns, then the guild's, the member's
        at_guild, at_member = self._ACCESS_GUILD_AT, self._ACCESS_MEMBER_AT
        guild = self._guild(r[at_guild:]) if r[at_guild] is not None else None
        member = self._member(r[at_member:]) if r[at_member] is not None else None
        roles = [Role(r[0], r[1], r[2], r[3] or 0, bool(r[4]), r[5] or 0, r[6] or 0,
                      bool(r[7]), bool(r[8]))
                 for r in self._query(
                     "SELECT guild_id, id, name, color, hoist, position, permissions, "
                     "managed, mentionable FROM roles WHERE guild_id = ? ORDER BY id",
                     (channel.guild_id,), db)]
        records = [(k, unpack(v)) for k, v in self._query(*self._records_query(
            guild_records[0], channel.guild_id, guild_records[1], None, MAX_LIST), db)] \
            if guild_records else []
        return user, channel, guild, member, roles, records

    async def channel_access(self, token: str, channel_id: int,
                             guild_records: tuple[str, str] | None = None
                             ) -> tuple[User | None, Channel | None, Guild | None,
                                        Member | None, list[Role],
                                        list[tuple[str, dict[str, Any]]]]:
        """Every REST call on a channel starts with this (a post: before its write), so
        the event loop reads it itself (``open_reader``: ~0.1 ms of indexed reads) instead
        of a round trip to SQLite's thread: two thread wake-ups and the GIL handed back
        and forth around each of its seven statements cost ~0.3 ms more (measured at 10
        posts/s on a 2-core host), far more when the host is busy. Only when the reader
        meets a lock does the thread read it."""
        return await self._read_here(self._channel_access_sync, token_hash(token),
                                     check_id("channel_id", channel_id), guild_records)

    async def guild_ids_for_user(self, user_id: int) -> list[int]:
        rows = await self._rows(
            "SELECT guild_id FROM members WHERE user_id = ? ORDER BY guild_id",
            (check_id("user_id", user_id),),
        )
        return [r[0] for r in rows]
