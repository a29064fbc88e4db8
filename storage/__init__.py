"""greenroom storage: one async interface, two backends (ScyllaDB via scylla-driver, SQLite).

``make_storage(settings)`` picks the backend; ``storage.schema.migrate`` creates the
schema; ``storage.actor.StorageActor`` batches writes in front of either. See README.md.
"""

from __future__ import annotations

from storage.base import Storage, StorageError
from storage.history import HistoryQuery
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
)
from storage.settings import StorageSettings, load_settings
from storage.snowflake import SnowflakeGenerator

__all__ = [
    "Channel",
    "Guild",
    "HistoryQuery",
    "Member",
    "Message",
    "MessageCreate",
    "MessageDelete",
    "MessageEdit",
    "MessageWrite",
    "Role",
    "SnowflakeGenerator",
    "Storage",
    "StorageError",
    "StorageSettings",
    "User",
    "load_settings",
    "make_storage",
]


def make_storage(settings: StorageSettings) -> Storage:
    """The backend ``settings`` names (not yet opened)."""
    if settings.backend == "scylla":
        from storage.scylla import ScyllaStorage

        return ScyllaStorage(settings)
    from storage.sqlite import SqliteStorage

    return SqliteStorage(settings)
