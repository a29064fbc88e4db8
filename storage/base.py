"""The storage interface both backends implement (one contract suite tests both).

Every method is a coroutine and never blocks the event loop: the CQL backend bridges the
driver's callbacks into asyncio futures, the SQLite backend runs its blocking calls on
one dedicated thread.

Writes of messages go through ``apply``: it takes many writes, groups them per partition
(the unit the database can write atomically and cheaply) and returns one outcome per
write - ``None`` once that write is durable, or the exception that stopped it - so a
caller such as the storage actor can acknowledge or retry each write on its own.

Failures are isolated: a write the database can never hold (a lone surrogate in its
text, a value the database refuses) must not fail the others it was batched with - a
batch is an optimisation, not a unit the client chose, and its writes may belong to
other users. So a backend whose batch fails for a reason that is not transient retries
its writes apart (SQLite: a savepoint per write in one transaction; CQL: the batch cut
in halves) and returns the exception only for the write that caused it. Outcomes are
then sorted in three: transient (``is_transient``: retry), rejected (``rejection``: this
write can never succeed, a client error with a reason safe to show) and anything else
(a server error; its text is for the log, never for the client).
"""

from __future__ import annotations

import abc
import asyncio
from collections.abc import Iterable, Sequence
from typing import Any

from storage.blobs import BlobHead
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
)
from storage.records import MAX_LIST


async def _nothing() -> list[Any]:
    return []


class StorageError(Exception):
    """A storage operation failed; ``transient`` says whether retrying may succeed."""

    def __init__(self, message: str, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


def rejection_reason(exc: BaseException) -> str | None:
    """The client-facing reason for the errors every backend meets when a value cannot
    be encoded or bound: they come from the write itself, so retrying cannot help."""
    if isinstance(exc, UnicodeError):
        return "text must be valid Unicode (no lone surrogates)"
    if isinstance(exc, OverflowError):
        return "a number is out of range"
    if isinstance(exc, TypeError | ValueError):
        return "a value cannot be stored"
    return None


class Storage(abc.ABC):
    """Async storage for users, guilds, channels, members, roles and messages."""

    name: str = "abstract"
    #: Units (see ``ack_units``) worth running at once: SQLite has one writer.
    unit_concurrency: int = 1
    #: Most writes for one partition in one unit (None: no limit of its own).
    partition_batch_limit: int | None = None

    def __init__(self) -> None:
        # Database round trips issued (queries, batches, statements): tests and the
        # benchmark read it to prove bounds on query counts and coalescing.
        self.queries = 0

    # -- lifecycle -------------------------------------------------------------------
    @abc.abstractmethod
    async def open(self) -> None:
        """Connect (the schema must exist: run ``storage.schema.migrate`` first)."""

    @abc.abstractmethod
    async def close(self) -> None: ...

    async def reconnect(self) -> None:
        """Drop and rebuild connections after a long outage (the CQL driver may not recover).

        Backends without connections to rebuild (SQLite) keep the default: nothing to do.
        """
        return None

    @abc.abstractmethod
    def is_transient(self, exc: BaseException) -> bool:
        """True if ``exc`` is worth retrying (timeouts, unavailable replicas, a busy file)."""

    def rejection(self, exc: BaseException) -> str | None:
        """Why the write can never be stored, if ``exc`` (one write's outcome) says so:
        a reason fit for the client (no driver or SQL text), else None. Backends add
        their own refusals (SQLite's constraint errors, CQL's ``InvalidRequest``)."""
        return rejection_reason(exc)

    async def __aenter__(self) -> Storage:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- messages --------------------------------------------------------------------
    @abc.abstractmethod
    async def apply(
        self, writes: Sequence[MessageWrite], batched: bool = True
    ) -> list[BaseException | None]:
        """Make ``writes`` durable; one outcome per write, in order (``None`` = durable).

        ``batched=False`` writes one statement per message (the benchmark's baseline).
        """

    def ack_units(self, writes: Sequence[MessageWrite]) -> list[list[int]]:
        """Split writes (by index) into units that become durable together.

        The storage actor applies each unit separately and acknowledges it as soon as
        it is done. Default: everything in one unit (SQLite: one transaction, one sync).
        """
        return [list(range(len(writes)))]

    async def _apply_one(self, write: MessageWrite) -> None:
        (outcome,) = await self.apply([write])
        if outcome is not None:
            raise outcome

    async def create_message(self, message: Message) -> None:
        await self._apply_one(MessageCreate(message))

    async def edit_message(self, edit: MessageEdit) -> None:
        await self._apply_one(edit)

    async def delete_message(self, delete: MessageDelete) -> None:
        await self._apply_one(delete)

    @abc.abstractmethod
    async def get_message(self, channel_id: int, message_id: int) -> Message | None: ...

    @abc.abstractmethod
    async def find_nonce(self, channel_id: int, author_id: int, nonce: str) -> int | None:
        """The id of the message ``author_id`` created in the channel with ``nonce`` and
        ``claim_nonce`` (see ``MessageCreate``), while its window lasts; else None."""

    @abc.abstractmethod
    async def history(self, query: HistoryQuery) -> list[Message]:
        """Messages for a history query, newest first (see storage.history)."""

    async def messages(
        self,
        channel_id: int,
        *,
        before: int | None = None,
        after: int | None = None,
        around: int | None = None,
        limit: int = 50,
    ) -> list[Message]:
        return await self.history(HistoryQuery(channel_id, before, after, around, limit))

    # -- users and tokens --------------------------------------------------------------
    @abc.abstractmethod
    async def put_user(self, user: User) -> None: ...

    @abc.abstractmethod
    async def get_user(self, user_id: int) -> User | None: ...

    async def get_users(self, user_ids: Iterable[int]) -> dict[int, User]:
        found = {}
        for uid in dict.fromkeys(user_ids):
            user = await self.get_user(uid)
            if user is not None:
                found[uid] = user
        return found

    @abc.abstractmethod
    async def put_token(self, token: str, user_id: int) -> None:
        """Register a bot token for a user (only its SHA-256 is stored)."""

    @abc.abstractmethod
    async def user_id_for_token(self, token: str) -> int | None: ...

    # -- applications (storage.applications) -----------------------------------------
    async def put_application_flags(self, application_id: int, flags: int) -> None:
        """Set a bot application's flags (its id is the bot's user id)."""
        raise NotImplementedError

    async def application_flags(self, application_id: int) -> int | None:
        """A bot application's stored flags; None if none were stored (a bot created
        before they were: ``storage.applications.effective_flags``)."""
        raise NotImplementedError

    # -- OAuth2 grants (storage.grants) ----------------------------------------------
    async def put_oauth2_grant(self, token: str, grant: OAuth2Grant) -> None:
        """Record ``grant`` under the access token ``token`` (only its SHA-256 is stored)."""
        raise NotImplementedError

    async def oauth2_grant(self, token: str) -> OAuth2Grant | None:
        """The grant of access token ``token`` (expired ones may still be answered)."""
        raise NotImplementedError

    # -- invites (storage.invites) ---------------------------------------------------
    async def put_invite(self, invite: Invite) -> None:
        raise NotImplementedError

    async def get_invite(self, code: str) -> Invite | None:
        """The invite (expired or used-up ones may still be answered)."""
        raise NotImplementedError

    async def use_invite(self, code: str, now_ms: int) -> Invite | None:
        """Count one use of a usable invite, atomically; the invite after it, or None
        (unknown, expired or used up)."""
        raise NotImplementedError

    # -- records (storage.records) --------------------------------------------------
    async def put_record(self, kind: str, scope: int, key: str, value: dict[str, Any],
                         ttl_s: int | None = None) -> None:
        """Write (or replace) one record; with ``ttl_s`` it expires that many seconds on."""
        raise NotImplementedError

    async def get_record(self, kind: str, scope: int, key: str) -> dict[str, Any] | None:
        raise NotImplementedError

    async def insert_record_if_absent(self, kind: str, scope: int, key: str,
                                      value: dict[str, Any], ttl_s: int | None = None
                                      ) -> tuple[bool, dict[str, Any]]:
        """Atomically write ``value`` unless the key holds a live record: ``(True,
        value)`` if written, else ``(False, the record there)``."""
        raise NotImplementedError

    async def delete_record(self, kind: str, scope: int, key: str) -> None:
        raise NotImplementedError

    async def delete_record_if(self, kind: str, scope: int, key: str,
                               value: dict[str, Any]) -> bool:
        """Delete the record only while it holds ``value``; True if it did. Atomic (a
        lightweight transaction on Cassandra): the way to remove what
        ``insert_record_if_absent`` wrote, since a plain ``delete_record`` of such a row
        can be undone there by a later Paxos round re-committing the insert."""
        raise NotImplementedError

    async def list_records(self, kind: str, scope: int, *, prefix: str = "",
                           after: str | None = None, limit: int = 100
                           ) -> list[tuple[str, dict[str, Any]]]:
        """Live records of ``(kind, scope)`` whose key starts with ``prefix`` (and sorts
        after ``after``), in key order, at most ``limit`` (``records.MAX_LIST``)."""
        raise NotImplementedError

    async def delete_records(self, kind: str, scope: int, prefix: str = "") -> None:
        """Delete every record of ``(kind, scope)`` whose key starts with ``prefix``."""
        raise NotImplementedError

    async def write_records(self, writes: Sequence[tuple[str, int, str, dict[str, Any] | None]]
                            ) -> None:
        """Several records written as one: ``(kind, scope, key, value)`` puts, or deletes
        where ``value`` is None, each key once (a reaction storm's group commit: one
        round trip for many). By default one call each, concurrently; SQLite does them
        in one transaction (one hop to its thread instead of one each)."""
        await asyncio.gather(*(
            self.put_record(kind, scope, key, value) if value is not None
            else self.delete_record(kind, scope, key) for kind, scope, key, value in writes))

    # -- blobs (storage.blobs: use its ``Blobs``, not these) ---------------------------
    async def put_blob_chunk(self, channel_id: int, blob_id: int, index: int,
                             data: bytes) -> None:
        """Write chunk ``index`` (at most ``storage.blobs.CHUNK_BYTES``) of a blob."""
        raise NotImplementedError

    async def put_blob_head(self, channel_id: int, blob_id: int, head: BlobHead) -> None:
        """Write a blob's head (size, type, ETag, chunking; ``message_id`` 0: pending)."""
        raise NotImplementedError

    async def get_blob_head(self, channel_id: int, blob_id: int) -> BlobHead | None:
        raise NotImplementedError

    async def set_blob_message(self, channel_id: int, blob_id: int, message_id: int
                               ) -> None:
        """Record the message that holds the blob (its commit)."""
        raise NotImplementedError

    async def get_blob_chunk(self, channel_id: int, blob_id: int, index: int
                             ) -> bytes | None:
        raise NotImplementedError

    async def delete_blob(self, channel_id: int, blob_id: int) -> None:
        """Delete the blob's head and chunks (idempotent)."""
        raise NotImplementedError

    # -- guilds --------------------------------------------------------------------
    @abc.abstractmethod
    async def put_guild(self, guild: Guild) -> None: ...

    @abc.abstractmethod
    async def get_guild(self, guild_id: int) -> Guild | None: ...

    @abc.abstractmethod
    async def put_channel(self, channel: Channel) -> None: ...

    @abc.abstractmethod
    async def get_channel(self, channel_id: int) -> Channel | None: ...

    @abc.abstractmethod
    async def channels_for_guild(self, guild_id: int) -> list[Channel]:
        """By channel id."""

    @abc.abstractmethod
    async def delete_channel(self, guild_id: int, channel_id: int) -> None: ...

    @abc.abstractmethod
    async def put_role(self, role: Role) -> None: ...

    @abc.abstractmethod
    async def roles_for_guild(self, guild_id: int) -> list[Role]:
        """By role id."""

    @abc.abstractmethod
    async def delete_role(self, guild_id: int, role_id: int) -> None: ...

    @abc.abstractmethod
    async def put_member(self, member: Member) -> None:
        """Add or update a member; also indexes the guild under the user (for READY)."""

    @abc.abstractmethod
    async def get_member(self, guild_id: int, user_id: int) -> Member | None: ...

    @abc.abstractmethod
    async def members_for_guild(
        self, guild_id: int, limit: int = 1000, after: int | None = None
    ) -> list[Member]:
        """By user id, at most ``limit``; only user ids above ``after`` if given (paging)."""

    @abc.abstractmethod
    async def member_count(self, guild_id: int) -> int:
        """How many members the guild has (GUILD_CREATE's ``member_count``)."""

    @abc.abstractmethod
    async def remove_member(self, guild_id: int, user_id: int) -> None: ...

    @abc.abstractmethod
    async def guild_ids_for_user(self, user_id: int) -> list[int]:
        """Guilds the user is a member of, by id (READY's ``guilds``)."""

    @abc.abstractmethod
    async def members_of_user(self, user_id: int) -> list[Member]:
        """The user's member in each of its guilds, by guild id (what IDENTIFY needs)."""

    async def account_for_token(self, token: str) -> tuple[User, list[Member]] | None:
        """The token's user and its members (``members_of_user``): what an IDENTIFY
        reads. None: no such token, or its user is gone. A backend may answer in one
        round trip (SQLite: one hop to its thread instead of three)."""
        user_id = await self.user_id_for_token(token)
        if user_id is None:
            return None
        user, members = await asyncio.gather(self.get_user(user_id),
                                             self.members_of_user(user_id))
        return None if user is None else (user, members)

    async def channel_access(self, token: str, channel_id: int,
                             guild_records: tuple[str, str] | None = None
                             ) -> tuple[User | None, Channel | None, Guild | None,
                                        Member | None, list[Role],
                                        list[tuple[str, dict[str, Any]]]]:
        """What a REST call on a channel reads to authorise it: the token's user, the
        channel, its guild, the user's member there, the guild's roles and, with
        ``guild_records`` ``(kind, prefix)``, the first ``records.MAX_LIST`` records of
        that kind under that prefix in the guild's scope (a channel's permission
        overwrites) (None where missing; nothing past the first miss). A backend may
        answer in one round trip (SQLite: one hop to its thread instead of seven, the
        bulk of a post's CPU)."""
        user_id = await self.user_id_for_token(token)
        user = await self.get_user(user_id) if user_id is not None else None
        channel = await self.get_channel(channel_id) if user is not None else None
        if user is None or channel is None:
            return user, channel, None, None, [], []
        guild_id = channel.guild_id
        guild, member, roles, records = await asyncio.gather(
            self.get_guild(guild_id), self.get_member(guild_id, user.id),
            self.roles_for_guild(guild_id),
            self.list_records(guild_records[0], guild_id, prefix=guild_records[1],
                              limit=MAX_LIST) if guild_records else _nothing())
        return user, channel, guild, member, roles, records
