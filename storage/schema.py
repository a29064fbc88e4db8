"""Versioned schema migrations for both backends; ``migrate`` is idempotent.

Each migration has a CQL and a SQLite form. Applied versions are recorded in a
``schema_migrations`` table (in the keyspace, or in the SQLite file); a migration runs
only if its version is not recorded, and every statement is itself idempotent
(``IF NOT EXISTS``) so two processes migrating at once, or a migration interrupted
half-way, converge on the same schema. The tests create their keyspaces with this code.

Messages follow Discord's schema: ``PRIMARY KEY ((channel_id, bucket), message_id)``
newest first, with frozen collections (a frozen list is one cell; writing a non-frozen
one writes a tombstone first). The SQLite table emulates CQL's per-cell write
timestamps (``*_ts`` columns and a row tombstone ``tomb_ts``) so both backends resolve
redelivered and reordered writes identically.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from storage.settings import StorageSettings, replication_options

#: the messages table's editable columns as version 1 created them (later versions add
#: columns with ALTER TABLE: ``storage.model.EDITABLE_FIELDS`` is the current list)
V1_EDITABLE_FIELDS = ("content", "embeds", "attachments", "flags", "pinned", "mentions",
                      "mention_roles", "mention_everyone", "edited_at_ms")


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    cql: tuple[str, ...]  # "{ks}" is replaced by the keyspace
    sqlite: tuple[str, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "users, bot tokens, guilds, channels, roles, members, messages",
        cql=(
            """CREATE TABLE IF NOT EXISTS {ks}.users (
                id bigint PRIMARY KEY, username text, discriminator text, global_name text,
                avatar text, bot boolean, flags bigint)""",
            """CREATE TABLE IF NOT EXISTS {ks}.bot_tokens (
                token_hash blob PRIMARY KEY, user_id bigint)""",
            """CREATE TABLE IF NOT EXISTS {ks}.guilds (
                id bigint PRIMARY KEY, name text, owner_id bigint, icon text,
                description text, features frozen<list<text>>)""",
            """CREATE TABLE IF NOT EXISTS {ks}.channels (
                id bigint PRIMARY KEY, guild_id bigint, name text, type int, position int,
                topic text, parent_id bigint, nsfw boolean)""",
            """CREATE TABLE IF NOT EXISTS {ks}.channels_by_guild (
                guild_id bigint, channel_id bigint, name text, type int, position int,
                topic text, parent_id bigint, nsfw boolean,
                PRIMARY KEY (guild_id, channel_id))""",
            """CREATE TABLE IF NOT EXISTS {ks}.roles (
                guild_id bigint, id bigint, name text, color int, hoist boolean,
                position int, permissions bigint, managed boolean, mentionable boolean,
                PRIMARY KEY (guild_id, id))""",
            """CREATE TABLE IF NOT EXISTS {ks}.members (
                guild_id bigint, user_id bigint, nick text, roles frozen<list<bigint>>,
                joined_at_ms bigint, deaf boolean, mute boolean,
                PRIMARY KEY (guild_id, user_id))""",
            """CREATE TABLE IF NOT EXISTS {ks}.guilds_by_user (
                user_id bigint, guild_id bigint, PRIMARY KEY (user_id, guild_id))""",
            """CREATE TABLE IF NOT EXISTS {ks}.messages (
                channel_id bigint, bucket int, message_id bigint,
                author_id bigint, guild_id bigint, type int, tts boolean, nonce text,
                content text, embeds text, attachments text, flags int, pinned boolean,
                mentions frozen<list<bigint>>, mention_roles frozen<list<bigint>>,
                mention_everyone boolean, edited_at_ms bigint,
                PRIMARY KEY ((channel_id, bucket), message_id)
            ) WITH CLUSTERING ORDER BY (message_id DESC)""",
        ),
        sqlite=(
            """CREATE TABLE IF NOT EXISTS users (
                id INTEGER PRIMARY KEY, username TEXT, discriminator TEXT, global_name TEXT,
                avatar TEXT, bot INTEGER, flags INTEGER)""",
            """CREATE TABLE IF NOT EXISTS bot_tokens (
                token_hash BLOB PRIMARY KEY, user_id INTEGER NOT NULL) WITHOUT ROWID""",
            """CREATE TABLE IF NOT EXISTS guilds (
                id INTEGER PRIMARY KEY, name TEXT, owner_id INTEGER, icon TEXT,
                description TEXT, features TEXT)""",
            """CREATE TABLE IF NOT EXISTS channels (
                id INTEGER PRIMARY KEY, guild_id INTEGER NOT NULL, name TEXT, type INTEGER,
                position INTEGER, topic TEXT, parent_id INTEGER, nsfw INTEGER)""",
            "CREATE INDEX IF NOT EXISTS channels_by_guild ON channels (guild_id, id)",
            """CREATE TABLE IF NOT EXISTS roles (
                guild_id INTEGER NOT NULL, id INTEGER NOT NULL, name TEXT, color INTEGER,
                hoist INTEGER, position INTEGER, permissions INTEGER, managed INTEGER,
                mentionable INTEGER, PRIMARY KEY (guild_id, id)) WITHOUT ROWID""",
            """CREATE TABLE IF NOT EXISTS members (
                guild_id INTEGER NOT NULL, user_id INTEGER NOT NULL, nick TEXT, roles TEXT,
                joined_at_ms INTEGER, deaf INTEGER, mute INTEGER,
                PRIMARY KEY (guild_id, user_id)) WITHOUT ROWID""",
            "CREATE INDEX IF NOT EXISTS guilds_by_user ON members (user_id, guild_id)",
            """CREATE TABLE IF NOT EXISTS messages (
                channel_id INTEGER NOT NULL, message_id INTEGER NOT NULL,
                create_ts INTEGER, tomb_ts INTEGER NOT NULL DEFAULT 0,
                author_id INTEGER, guild_id INTEGER, type INTEGER, tts INTEGER, nonce TEXT,
                """
            + ",\n".join(f"{c}, {c}_ts INTEGER" for c in V1_EDITABLE_FIELDS)
            + """,
                PRIMARY KEY (channel_id, message_id)) WITHOUT ROWID""",
        ),
    ),
    Migration(
        2,
        "message_nonces: enforce_nonce sends, remembered for their window",
        # One row per (channel, author, nonce), written with the message's create and
        # expiring with its window (storage.model.NONCE_WINDOW_S): TTL'd rows only, so
        # time-window compaction drops whole expired files; nothing is deleted by hand,
        # so a short gc_grace is safe (an hour: hints still outlive it).
        cql=(
            """CREATE TABLE IF NOT EXISTS {ks}.message_nonces (
                channel_id bigint, author_id bigint, nonce text, message_id bigint,
                PRIMARY KEY ((channel_id, author_id, nonce))
            ) WITH default_time_to_live = 3600 AND gc_grace_seconds = 3600
              AND compaction = {{'class': 'TimeWindowCompactionStrategy',
                                'compaction_window_unit': 'HOURS',
                                'compaction_window_size': 1}}""",
        ),
        sqlite=(
            """CREATE TABLE IF NOT EXISTS message_nonces (
                channel_id INTEGER NOT NULL, author_id INTEGER NOT NULL, nonce TEXT NOT NULL,
                message_id INTEGER NOT NULL, expires_at_ms INTEGER NOT NULL,
                PRIMARY KEY (channel_id, author_id, nonce)) WITHOUT ROWID""",
        ),
    ),
    Migration(
        3,
        "applications: each bot application's flags (privileged gateway intents)",
        cql=(
            """CREATE TABLE IF NOT EXISTS {ks}.applications (
                id bigint PRIMARY KEY, flags bigint)""",
        ),
        sqlite=(
            """CREATE TABLE IF NOT EXISTS applications (
                id INTEGER PRIMARY KEY, flags INTEGER NOT NULL)""",
        ),
    ),
    Migration(
        4,
        "OAuth2 grants: a user's consent (e.g. guilds.join) to an application",
        cql=(
            """CREATE TABLE IF NOT EXISTS {ks}.oauth2_grants (
                token_hash blob PRIMARY KEY, user_id bigint, application_id bigint,
                scopes text, expires_at_ms bigint)""",
        ),
        sqlite=(
            """CREATE TABLE IF NOT EXISTS oauth2_grants (
                token_hash BLOB PRIMARY KEY, user_id INTEGER NOT NULL,
                application_id INTEGER NOT NULL, scopes TEXT NOT NULL,
                expires_at_ms INTEGER NOT NULL) WITHOUT ROWID""",
        ),
    ),
    Migration(
        5,
        "guild invites (storage.invites)",
        cql=(
            """CREATE TABLE IF NOT EXISTS {ks}.invites (
                code text PRIMARY KEY, guild_id bigint, channel_id bigint, inviter_id bigint,
                created_at_ms bigint, max_age_s int, max_uses int, uses int)""",
        ),
        sqlite=(
            """CREATE TABLE IF NOT EXISTS invites (
                code TEXT PRIMARY KEY, guild_id INTEGER NOT NULL, channel_id INTEGER NOT NULL,
                inviter_id INTEGER NOT NULL, created_at_ms INTEGER NOT NULL,
                max_age_s INTEGER NOT NULL, max_uses INTEGER NOT NULL,
                uses INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID""",
        ),
    ),
    Migration(
        6,
        "messages.extra (fields without a column of their own, JSON); records: small "
        "keyed tables of the chat features (storage.records)",
        cql=(
            "ALTER TABLE {ks}.messages ADD extra text",
            """CREATE TABLE IF NOT EXISTS {ks}.records (
                kind text, scope bigint, key text, value blob,
                PRIMARY KEY ((kind, scope), key))""",
        ),
        sqlite=(
            "ALTER TABLE messages ADD COLUMN extra",
            "ALTER TABLE messages ADD COLUMN extra_ts INTEGER",
            """CREATE TABLE IF NOT EXISTS records (
                kind TEXT NOT NULL, scope INTEGER NOT NULL, key TEXT NOT NULL,
                value BLOB NOT NULL, expires_at_ms INTEGER,
                PRIMARY KEY (kind, scope, key)) WITHOUT ROWID""",
        ),
    ),
    Migration(
        7,
        "blobs: attachment bytes in chunks of at most 1 MiB, a partition per blob with its "
        "head (storage.blobs)",
        cql=(
            """CREATE TABLE IF NOT EXISTS {ks}.blobs (
                channel_id bigint, blob_id bigint, chunk int, data blob,
                size bigint static, content_type text static, etag text static,
                chunk_size int static, message_id bigint static,
                PRIMARY KEY ((channel_id, blob_id), chunk))""",
        ),
        sqlite=(
            """CREATE TABLE IF NOT EXISTS blobs (
                channel_id INTEGER NOT NULL, blob_id INTEGER NOT NULL, size INTEGER NOT NULL,
                content_type TEXT, etag TEXT NOT NULL, chunk_size INTEGER NOT NULL,
                message_id INTEGER NOT NULL DEFAULT 0,
                PRIMARY KEY (channel_id, blob_id)) WITHOUT ROWID""",
            # a rowid table: SQLite advises against WITHOUT ROWID for large rows
            """CREATE TABLE IF NOT EXISTS blob_chunks (
                channel_id INTEGER NOT NULL, blob_id INTEGER NOT NULL, chunk INTEGER NOT NULL,
                data BLOB NOT NULL, UNIQUE (channel_id, blob_id, chunk))""",
        ),
    ),
)


def _check_versions() -> None:
    # Strictly increasing, not necessarily contiguous: each version is recorded on its
    # own, and parallel branches reserve their numbers ahead of landing.
    versions = [m.version for m in MIGRATIONS]
    if versions[0] < 1 or any(b <= a for a, b in zip(versions, versions[1:], strict=False)):
        raise AssertionError(f"migration versions must increase from 1, got {versions}")


_check_versions()
LATEST_VERSION = MIGRATIONS[-1].version


# -- SQLite ------------------------------------------------------------------------------
def migrate_sqlite(conn: sqlite3.Connection) -> list[int]:
    """Apply pending migrations on an open connection; returns the versions applied."""
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        "version INTEGER PRIMARY KEY, description TEXT, applied_at_ms INTEGER)"
    )
    done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
    applied = []
    for migration in MIGRATIONS:
        if migration.version in done:
            continue
        with conn:  # one transaction per migration: all of it or none of it
            for statement in migration.sqlite:
                conn.execute(statement)
            conn.execute(
                "INSERT OR IGNORE INTO schema_migrations VALUES (?, ?, ?)",
                (migration.version, migration.description, int(time.time() * 1000)),
            )
        applied.append(migration.version)
    return applied


def open_sqlite(path: str | Path, synchronous: str = "FULL") -> sqlite3.Connection:
    """Open a connection in WAL mode with this project's pragmas (no implicit transactions)."""
    if str(path) != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute("PRAGMA busy_timeout=5000")
    conn.execute("PRAGMA foreign_keys=OFF")
    return conn


# -- CQL ---------------------------------------------------------------------------------
def create_keyspace_cql(session: object, keyspace: str, replication: str) -> None:
    options = replication_options(replication)
    rendered = ", ".join(f"'{k}': '{v}'" for k, v in options.items())
    session.execute(  # type: ignore[attr-defined]
        f"CREATE KEYSPACE IF NOT EXISTS {keyspace} WITH replication = {{{rendered}}}"
    )


def migrate_cql(session: object, keyspace: str, replication: str) -> list[int]:
    """Create the keyspace if needed and apply pending migrations (driver session, blocking)."""
    create_keyspace_cql(session, keyspace, replication)
    execute = session.execute  # type: ignore[attr-defined]
    execute(
        f"CREATE TABLE IF NOT EXISTS {keyspace}.schema_migrations ("
        "version int PRIMARY KEY, description text, applied_at_ms bigint)"
    )
    done = {row[0] for row in execute(f"SELECT version FROM {keyspace}.schema_migrations")}
    applied = []
    for migration in MIGRATIONS:
        if migration.version in done:
            continue
        for statement in migration.cql:
            _execute_cql(execute, statement.format(ks=keyspace))
        execute(
            f"INSERT INTO {keyspace}.schema_migrations (version, description, applied_at_ms) "
            "VALUES (%s, %s, %s)",
            (migration.version, migration.description, int(time.time() * 1000)),
        )
        applied.append(migration.version)
    return applied


def _execute_cql(execute: object, statement: str) -> None:
    """Run one migration statement. CQL's ``ALTER TABLE ... ADD`` has no ``IF NOT
    EXISTS``: a column added by an earlier, interrupted run (or a racing process) is
    the wanted schema, not an error."""
    try:
        execute(statement)  # type: ignore[operator]
    except Exception as exc:
        adding = statement.lstrip().upper().startswith("ALTER TABLE") and " ADD " in statement.upper()
        if not (adding and "conflicts with an existing column" in str(exc)):
            raise


def applied_versions(settings: StorageSettings) -> list[int]:
    """Versions recorded as applied (for ``storage status``)."""
    if settings.backend == "sqlite":
        conn = open_sqlite(settings.sqlite_path, settings.sqlite_synchronous)
        try:
            try:
                return sorted(r[0] for r in conn.execute("SELECT version FROM schema_migrations"))
            except sqlite3.OperationalError:
                return []
        finally:
            conn.close()
    from storage.scylla import connect_cluster

    cluster, session = connect_cluster(settings)
    try:
        try:
            rows = session.execute(f"SELECT version FROM {settings.keyspace}.schema_migrations")
        except Exception:
            return []
        return sorted(r[0] for r in rows)
    finally:
        cluster.shutdown()


def migrate(settings: StorageSettings) -> list[int]:
    """Create/migrate the configured backend's schema (blocking); returns versions applied."""
    if settings.backend == "sqlite":
        conn = open_sqlite(settings.sqlite_path, settings.sqlite_synchronous)
        try:
            return migrate_sqlite(conn)
        finally:
            conn.close()
    from storage.scylla import connect_cluster

    cluster, session = connect_cluster(settings)
    try:
        return migrate_cql(session, settings.keyspace, settings.replication)
    finally:
        cluster.shutdown()


async def migrate_async(settings: StorageSettings) -> list[int]:
    """``migrate`` off the event loop."""
    return await asyncio.to_thread(migrate, settings)
