"""The production backend: ScyllaDB (or Cassandra) through scylla-driver.

How it talks to the driver, and why:

* ``LibevConnection`` explicitly: the wheels bundle libev, the asyncio reactor is
  experimental. Requests go out with ``execute_async``; the driver calls back on its own
  thread, and ``loop.call_soon_threadsafe`` hands each result to the asyncio future.
* Statements are prepared once per session (at ``open``/``reconnect``) and marked
  ``is_idempotent``: every write carries ``USING TIMESTAMP`` so replaying it is harmless,
  which also lets the driver retry it safely.
* Unwritten columns are bound as ``UNSET_VALUE``, never null (a null is a tombstone).
* A batch the database refuses as a whole (``InvalidRequest``: one write's value, or the
  batch's size) is cut in halves, each sent again, down to the write at fault: it fails
  alone and the writes batched with it, maybe other users', are written (see
  storage.base). Values the driver cannot encode fail at bind time, one write each.
* ``enforce_nonce`` claims go to ``message_nonces`` (its own partition, so not in the
  message's batch): sent beside it, and the create is acknowledged only once both are
  written; a claim left without its message is repaired by the retry, which reuses the
  claimed id (gateway.channel).
* Writes are grouped per partition ``(channel_id, bucket)`` into UNLOGGED batches, and
  partitions with few writes (under ``PACK_BELOW``) owned by the same replicas (and
  shards) share one, so a batch goes to one replica set, never a coordinator fan-out
  across the cluster; the batches run concurrently. Per-request cost dominates here
  (measured 0.4-0.8 ms of Python and 0.4-0.8 ms of JVM CPU per request against ~0.04 ms
  each per message in a batch): many channels with a few messages each per flush would
  otherwise cost one request each. A partition with many writes keeps batches of its
  own: one large mutation each, which the node applies in parallel with the others.
* ``TCP_NODELAY`` on every connection (see ``make_cluster``).
* History walks buckets in windows (see storage.buckets): one bucket is one ordered
  single-partition query; several are one ``bucket IN ? ... PER PARTITION LIMIT ?``
  query merged here. ``IN`` together with ``ORDER BY`` is avoided: Cassandra then reads
  and sorts whole partitions (measured 12-24 ms instead of ~1 ms on a 27k-row bucket).
* After a long outage the driver's pools may not come back (known reconnect bugs), so
  ``reconnect`` builds a new ``Cluster``; the storage actor calls it when writes keep
  failing.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from collections.abc import Awaitable, Iterable, Sequence
from dataclasses import replace
from typing import Any

from cassandra import (
    ConsistencyLevel,
    CoordinationFailure,
    InvalidRequest,
    OperationTimedOut,
    ReadTimeout,
    Unavailable,
    WriteTimeout,
)
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile, NoHostAvailable
from cassandra.connection import ConnectionException
from cassandra.io.libevreactor import LibevConnection
from cassandra.policies import (
    DCAwareRoundRobinPolicy,
    ExponentialReconnectionPolicy,
    TokenAwarePolicy,
)
from cassandra.protocol import IsBootstrappingErrorMessage, OverloadedErrorMessage
from cassandra.query import UNSET_VALUE, BatchStatement, BatchType, tuple_factory

from storage.base import Storage, StorageError, rejection_reason
from storage.blobs import BlobHead
from storage.buckets import bucket_of
from storage.codec import (
    EDITABLE_COLUMNS,
    IMMUTABLE_COLUMNS,
    READ_COLUMNS,
    creation_values,
    edit_values,
    message_from_columns,
    token_hash,
)
from storage.grants import OAuth2Grant
from storage.history import HistoryQuery, asc_range, desc_range, walk_buckets
from storage.invites import Invite
from storage.model import (
    NONCE_WINDOW_S,
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
from storage.settings import StorageSettings
from storage.snowflake import snowflake_ms

log = logging.getLogger(__name__)

MAX_BATCH_STATEMENTS = 100  # per partition in one batch
MAX_REQUEST_STATEMENTS = 256  # per batch, over all its partitions
# A partition with this many writes in one plan gets batches of its own; fewer share one
# with other partitions (see plan_batches).
PACK_BELOW = 16
MAX_BATCH_BYTES = 40 * 1024  # under Cassandra's default 50 KiB batch_size_fail_threshold
_REPLICA_CACHE_MAX = 65_536
_TRANSIENT = (
    OperationTimedOut,
    NoHostAvailable,
    Unavailable,
    ReadTimeout,
    WriteTimeout,
    CoordinationFailure,
    ConnectionException,
    OverloadedErrorMessage,
    IsBootstrappingErrorMessage,
    OSError,
)


def make_cluster(settings: StorageSettings) -> Cluster:
    profile = ExecutionProfile(
        load_balancing_policy=TokenAwarePolicy(DCAwareRoundRobinPolicy()),
        consistency_level=ConsistencyLevel.name_to_value[settings.consistency],
        request_timeout=settings.request_timeout_s,
        row_factory=tuple_factory,
    )
    return Cluster(
        contact_points=list(settings.hosts),
        port=settings.port,
        connection_class=LibevConnection,
        # Protocol v5 (Cassandra 5) compresses each frame segment in Python: ~0.8 ms per
        # request here (profiled), more than the request itself on a local network.
        compression=False,
        # Without TCP_NODELAY a request that leaves in more than one segment waits for
        # the server's delayed ACK (Nagle): measured 51 ms instead of 5 ms for a
        # 50-message batch. The Java driver sets it by default; this one does not.
        sockopts=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
        execution_profiles={EXEC_PROFILE_DEFAULT: profile},
        reconnection_policy=ExponentialReconnectionPolicy(0.5, 4.0),
        connect_timeout=5,
        control_connection_timeout=5,
        idle_heartbeat_interval=5,
        idle_heartbeat_timeout=10,
    )


def connect_cluster(settings: StorageSettings) -> tuple[Cluster, Any]:
    """A connected (cluster, session) pair, blocking; the caller shuts the cluster down."""
    cluster = make_cluster(settings)
    try:
        return cluster, cluster.connect()
    except BaseException:
        cluster.shutdown()
        raise


def _settle(fut: asyncio.Future, value: Any, exc: BaseException | None) -> None:
    if fut.done():
        return  # cancelled by its awaiter (a timeout); nothing to deliver
    if exc is not None:
        fut.set_exception(exc)
    else:
        fut.set_result(value)


class _Request:
    """One driver request bridged to an asyncio future, following pages if any."""

    __slots__ = ("loop", "fut", "rf", "rows")

    def __init__(self, loop: asyncio.AbstractEventLoop, rf: Any) -> None:
        self.loop = loop
        self.fut = loop.create_future()
        self.rf = rf
        self.rows: list[Any] | None = None
        rf.add_callbacks(self._ok, self._err)

    def _ok(self, rows: Any) -> None:
        try:
            page = [] if rows is None else list(rows)  # writes answer with no rows
            if self.rf.has_more_pages:
                self.rows = (self.rows or []) + page
                self.rf.start_fetching_next_page()
                return
            result = page if self.rows is None else self.rows + page
        except BaseException as exc:  # never leave the awaiting future hanging
            self._done(None, exc)
            return
        self._done(result, None)

    def _err(self, exc: BaseException) -> None:
        self._done(None, exc)

    def _done(self, value: Any, exc: BaseException | None) -> None:
        # A finished ResponseFuture sits in two reference cycles - its callbacks -> this
        # request -> it, and its cancelled timer -> its bound ``_on_timeout`` -> it - and
        # keeps the whole statement it sent (a batch: a tuple and a list per message).
        # Cut both, so it is freed by reference counting instead of piling up for the
        # cyclic GC (measured: ~60 objects per request plus ~2 per batched message, and
        # 50 ms collections under the storage actor's load).
        rf, self.rf = self.rf, None
        if rf is not None:
            rf._timer = None
        self.loop.call_soon_threadsafe(_settle, self.fut, value, exc)


class _UnitRequest(_Request):
    """One ack unit's request (``start_unit``), whose answer settles the unit's outcomes
    directly: no task between the driver's answer and the storage actor."""

    __slots__ = ("storage", "bound")

    def __init__(self, loop: asyncio.AbstractEventLoop, rf: Any, storage: ScyllaStorage,
                 bound: list[Any]) -> None:
        self.storage = storage
        self.bound = bound
        super().__init__(loop, rf)

    def _done(self, value: Any, exc: BaseException | None) -> None:
        rf, self.rf = self.rf, None  # cut its reference cycles, as _Request does
        if rf is not None:
            rf._timer = None
        self.loop.call_soon_threadsafe(self._settle_unit, exc)

    def _settle_unit(self, exc: BaseException | None) -> None:
        fut = self.fut
        if fut.done():
            return
        n = len(self.bound)
        if exc is None:
            fut.set_result([None] * n)
        elif n > 1 and isinstance(exc, InvalidRequest):
            # refused as a whole: its halves, down to the write at fault (as apply does)
            task = asyncio.ensure_future(self.storage._apply_halves(list(range(n)), self.bound))
            task.add_done_callback(self._halves_done)
        else:
            fut.set_result([exc] * n)

    def _halves_done(self, task: asyncio.Task) -> None:
        if self.fut.done():
            return
        if task.cancelled():
            self.fut.cancel()
        elif task.exception() is not None:
            self.fut.set_exception(task.exception())  # type: ignore[arg-type]
        else:
            self.fut.set_result(task.result())


def _text_bytes(text: str) -> int:
    """UTF-8 length (what the database counts), cheap for ASCII; a lone surrogate
    counts as 3 bytes (that write fails at bind anyway)."""
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def _batch_size(write: MessageWrite) -> int:
    if isinstance(write, MessageCreate):
        m = write.message
        return (
            96
            + _text_bytes(m.content) * 2
            + (len(json.dumps(m.embeds)) if m.embeds else 0)
            + (len(json.dumps(m.attachments)) if m.attachments else 0)
            + (len(json.dumps(m.extra)) if m.extra else 0)
        )
    if isinstance(write, MessageEdit):
        return 96 + sum(len(str(v)) for v in write.changes.values())
    return 48


class ScyllaStorage(Storage):
    """ScyllaDB/Cassandra backend."""

    name = "scylla"
    unit_concurrency = 256
    partition_batch_limit = MAX_BATCH_STATEMENTS

    def __init__(self, settings: StorageSettings) -> None:
        super().__init__()
        if not settings.hosts:
            raise ValueError("ScyllaStorage needs settings.hosts")
        self.settings = settings
        self.cluster: Cluster | None = None
        self.session: Any = None
        self._ps: dict[str, Any] = {}
        self.reconnects = 0
        # partition -> key of the replicas (and shards) that own it; valid for one token map
        self._replicas: dict[tuple[int, int], Any] = {}
        self._token_map: Any = None

    # -- lifecycle ---------------------------------------------------------------------
    async def open(self) -> None:
        if self.session is not None:
            return
        cluster, session, ps = await asyncio.to_thread(self._connect)
        self.cluster, self.session, self._ps = cluster, session, ps

    def _connect(self) -> tuple[Cluster, Any, dict[str, Any]]:
        cluster, session = connect_cluster(self.settings)
        try:
            return cluster, session, self._prepare_all(session)
        except BaseException:
            cluster.shutdown()
            raise

    async def close(self) -> None:
        cluster, self.cluster, self.session = self.cluster, None, None
        if cluster is not None:
            await asyncio.to_thread(cluster.shutdown)

    async def reconnect(self) -> None:
        """Replace the Cluster: in-flight requests on the old one fail (and are retried)."""
        cluster, session, ps = await asyncio.to_thread(self._connect)
        old, self.cluster, self.session, self._ps = self.cluster, cluster, session, ps
        self.reconnects += 1
        if old is not None:
            await asyncio.to_thread(old.shutdown)

    def is_transient(self, exc: BaseException) -> bool:
        return isinstance(exc, _TRANSIENT)

    def rejection(self, exc: BaseException) -> str | None:
        # A single write refused by the node (batches are split down to the write at fault
        # before an outcome is given): its values, never something a retry would fix.
        if isinstance(exc, InvalidRequest):
            return "the database refused a value of this write"
        return rejection_reason(exc)

    def _prepare_all(self, session: Any) -> dict[str, Any]:
        ks = self.settings.keyspace
        cols = ", ".join(READ_COLUMNS)
        msg_cols = ["channel_id", "bucket", "message_id", *IMMUTABLE_COLUMNS, *EDITABLE_COLUMNS]
        where_msg = "channel_id = ? AND bucket = ? AND message_id = ?"
        cql = {
            "insert_message": f"INSERT INTO {ks}.messages ({', '.join(msg_cols)}) "
            f"VALUES ({', '.join('?' * len(msg_cols))}) USING TIMESTAMP ?",
            # Most messages are plain text: a narrower statement binds half the values.
            "insert_plain_message": f"INSERT INTO {ks}.messages (channel_id, bucket, "
            "message_id, author_id, guild_id, type, tts, nonce, content) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) USING TIMESTAMP ?",
            "edit_message": f"UPDATE {ks}.messages USING TIMESTAMP ? SET "
            + ", ".join(f"{c} = ?" for c in EDITABLE_COLUMNS)
            + f" WHERE {where_msg}",
            "delete_message": f"DELETE FROM {ks}.messages USING TIMESTAMP ? WHERE {where_msg}",
            "get_message": f"SELECT {cols} FROM {ks}.messages WHERE {where_msg}",
            "claim_nonce": f"INSERT INTO {ks}.message_nonces (channel_id, author_id, nonce, "
            "message_id) VALUES (?, ?, ?, ?) USING TTL ? AND TIMESTAMP ?",
            "find_nonce": f"SELECT message_id FROM {ks}.message_nonces WHERE channel_id = ? "
            "AND author_id = ? AND nonce = ?",
            # Clustering order is newest first: no ORDER BY needed going back.
            "hist_desc_one": f"SELECT {cols} FROM {ks}.messages WHERE channel_id = ? "
            "AND bucket = ? AND message_id < ? LIMIT ?",
            "hist_desc_many": f"SELECT {cols} FROM {ks}.messages WHERE channel_id = ? "
            "AND bucket IN ? AND message_id < ? PER PARTITION LIMIT ?",
            "hist_asc_one": f"SELECT {cols} FROM {ks}.messages WHERE channel_id = ? "
            "AND bucket = ? AND message_id > ? ORDER BY message_id ASC LIMIT ?",
            "hist_asc_probe": f"SELECT bucket FROM {ks}.messages WHERE channel_id = ? "
            "AND bucket IN ? AND message_id > ? PER PARTITION LIMIT 1",
            "put_user": f"INSERT INTO {ks}.users (id, username, discriminator, global_name, "
            "avatar, bot, flags) VALUES (?, ?, ?, ?, ?, ?, ?)",
            "get_user": f"SELECT id, username, discriminator, global_name, avatar, bot, flags "
            f"FROM {ks}.users WHERE id = ?",
            "put_token": f"INSERT INTO {ks}.bot_tokens (token_hash, user_id) VALUES (?, ?)",
            "get_token": f"SELECT user_id FROM {ks}.bot_tokens WHERE token_hash = ?",
            "put_guild": f"INSERT INTO {ks}.guilds (id, name, owner_id, icon, description, "
            "features) VALUES (?, ?, ?, ?, ?, ?)",
            "get_guild": f"SELECT id, name, owner_id, icon, description, features "
            f"FROM {ks}.guilds WHERE id = ?",
            "put_channel": f"INSERT INTO {ks}.channels (id, guild_id, name, type, position, "
            "topic, parent_id, nsfw) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            "put_channel_by_guild": f"INSERT INTO {ks}.channels_by_guild (channel_id, guild_id, "
            "name, type, position, topic, parent_id, nsfw) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            "get_channel": f"SELECT id, guild_id, name, type, position, topic, parent_id, nsfw "
            f"FROM {ks}.channels WHERE id = ?",
            "channels_for_guild": f"SELECT channel_id, guild_id, name, type, position, topic, "
            f"parent_id, nsfw FROM {ks}.channels_by_guild WHERE guild_id = ?",
            "delete_channel": f"DELETE FROM {ks}.channels WHERE id = ?",
            "delete_channel_by_guild": f"DELETE FROM {ks}.channels_by_guild "
            "WHERE guild_id = ? AND channel_id = ?",
            "put_role": f"INSERT INTO {ks}.roles (guild_id, id, name, color, hoist, position, "
            "permissions, managed, mentionable) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            "roles_for_guild": f"SELECT guild_id, id, name, color, hoist, position, permissions, "
            f"managed, mentionable FROM {ks}.roles WHERE guild_id = ?",
            "delete_role": f"DELETE FROM {ks}.roles WHERE guild_id = ? AND id = ?",
            "put_member": f"INSERT INTO {ks}.members (guild_id, user_id, joined_at_ms, nick, "
            "roles, deaf, mute) VALUES (?, ?, ?, ?, ?, ?, ?)",
            "put_guild_by_user": f"INSERT INTO {ks}.guilds_by_user (user_id, guild_id) "
            "VALUES (?, ?)",
            "get_member": f"SELECT guild_id, user_id, joined_at_ms, nick, roles, deaf, mute "
            f"FROM {ks}.members WHERE guild_id = ? AND user_id = ?",
            "members_for_guild": f"SELECT guild_id, user_id, joined_at_ms, nick, roles, deaf, "
            f"mute FROM {ks}.members WHERE guild_id = ? LIMIT ?",
            "members_after": f"SELECT guild_id, user_id, joined_at_ms, nick, roles, deaf, "
            f"mute FROM {ks}.members WHERE guild_id = ? AND user_id > ? LIMIT ?",
            "member_count": f"SELECT COUNT(*) FROM {ks}.members WHERE guild_id = ?",
            "delete_member": f"DELETE FROM {ks}.members WHERE guild_id = ? AND user_id = ?",
            "delete_guild_by_user": f"DELETE FROM {ks}.guilds_by_user "
            "WHERE user_id = ? AND guild_id = ?",
            "guilds_for_user": f"SELECT guild_id FROM {ks}.guilds_by_user WHERE user_id = ?",
        }
        prepared = {}
        for key, text in cql.items():
            ps = session.prepare(text)
            ps.is_idempotent = True  # timestamps or plain upserts: replays are harmless
            prepared[key] = ps
        return prepared

    # -- requests ----------------------------------------------------------------------
    def _send(self, statement: Any, params: Any = None) -> asyncio.Future:
        if self.session is None:
            raise RuntimeError("ScyllaStorage is not open: call `await storage.open()` first")
        self.queries += 1
        # The caller's loop: one open storage can serve coroutines on any event loop.
        loop = asyncio.get_running_loop()
        return _Request(loop, self.session.execute_async(statement, params)).fut

    async def _rows(self, key: str, params: Sequence[Any], paged: bool = True) -> list[Any]:
        bound = self._ps[key].bind(params)
        if not paged:
            bound.fetch_size = None
        return await self._send(bound)

    # -- messages ----------------------------------------------------------------------
    def _bind_write(self, write: MessageWrite) -> Any:
        if isinstance(write, MessageCreate):
            m = write.message
            if not (
                m.embeds
                or m.attachments
                or m.flags
                or m.pinned
                or m.mentions
                or m.mention_roles
                or m.mention_everyone
                or m.edited_at_ms is not None
                or m.extra
            ):
                return self._ps["insert_plain_message"].bind(
                    (
                        m.channel_id,
                        bucket_of(m.id),
                        m.id,
                        m.author_id,
                        UNSET_VALUE if m.guild_id is None else m.guild_id,
                        m.type,
                        m.tts,
                        UNSET_VALUE if m.nonce is None else m.nonce,
                        m.content,
                        write.timestamp_us,
                    )
                )
            values = creation_values(m)
            params = [m.channel_id, bucket_of(m.id), m.id]
            params += [values.get(c, UNSET_VALUE) for c in IMMUTABLE_COLUMNS]
            params += [values.get(c, UNSET_VALUE) for c in EDITABLE_COLUMNS]
            params.append(write.timestamp_us)
            return self._ps["insert_message"].bind(params)
        if isinstance(write, MessageEdit):
            values = edit_values(write.changes)
            params = [write.at_us]
            params += [values[c] if c in values else UNSET_VALUE for c in EDITABLE_COLUMNS]
            params += [write.channel_id, bucket_of(write.message_id), write.message_id]
            return self._ps["edit_message"].bind(params)
        if isinstance(write, MessageDelete):
            return self._ps["delete_message"].bind(
                (write.at_us, write.channel_id, bucket_of(write.message_id), write.message_id)
            )
        raise TypeError(f"not a message write: {type(write).__name__}")

    def _replica_key(self, partition: tuple[int, int]) -> Any:
        """What identifies the replicas (and shards) owning ``partition``: partitions with
        equal keys can share a batch without the coordinator fanning out. None when the
        driver has no token map (then all partitions share one key)."""
        metadata = self.cluster.metadata if self.cluster is not None else None
        token_map = metadata.token_map if metadata is not None else None
        if token_map is None or "get_message" not in self._ps:
            return None
        if token_map is not self._token_map or len(self._replicas) > _REPLICA_CACHE_MAX:
            self._token_map = token_map
            self._replicas.clear()
        key = self._replicas.get(partition)
        if key is not None:
            return key
        routing_key = self._ps["get_message"].bind((*partition, 0)).routing_key
        token = token_map.token_class.from_key(routing_key)
        ks = self.settings.keyspace
        tablets = getattr(metadata, "_tablets", None)  # ScyllaDB tablets, as the driver routes
        tablet = tablets.get_tablet_for_key(ks, "messages", token) if tablets else None
        if tablet is not None:
            key = tuple(sorted((str(h), shard) for h, shard in tablet.replicas))
        else:
            owners = []
            for host in metadata.get_replicas(ks, routing_key):
                info = getattr(host, "sharding_info", None)
                shard = info.shard_id_from_token(token.value) if info is not None else 0
                owners.append((str(host.host_id), shard))
            key = tuple(sorted(owners))
        self._replicas[partition] = key
        return key

    def plan_batches(self, writes: Sequence[MessageWrite]) -> list[list[int]]:
        """Group write indexes into batches. Each partition's writes, in order, are cut
        into chunks of at most ``MAX_BATCH_STATEMENTS`` and ``MAX_BATCH_BYTES``; a chunk of
        ``PACK_BELOW`` writes or more is a batch of its own (one mutation, run in parallel
        with the others), smaller chunks of partitions owned by the same replicas share
        batches of up to ``MAX_REQUEST_STATEMENTS`` and ``MAX_BATCH_BYTES``."""
        partitions: dict[tuple[int, int], list[int]] = {}
        for i, w in enumerate(writes):
            partitions.setdefault(w.partition, []).append(i)
        groups: list[list[int]] = []
        shared: dict[Any, tuple[list[int], int]] = {}  # replica key -> open batch, bytes
        for partition, indexes in partitions.items():
            chunks: list[tuple[list[int], int]] = []
            chunk: list[int] = []
            size = 0
            for i in indexes:
                s = _batch_size(writes[i])
                if chunk and (len(chunk) >= MAX_BATCH_STATEMENTS or size + s > MAX_BATCH_BYTES):
                    chunks.append((chunk, size))
                    chunk, size = [], 0
                chunk.append(i)
                size += s
            chunks.append((chunk, size))
            for chunk, size in chunks:
                if len(chunk) >= PACK_BELOW or len(partitions) == 1:
                    groups.append(chunk)
                    continue
                owners = self._replica_key(partition)
                batch, used = shared.get(owners, (None, 0))
                if batch is None or (
                    len(batch) + len(chunk) > MAX_REQUEST_STATEMENTS
                    or used + size > MAX_BATCH_BYTES
                ):
                    batch, used = [], 0
                    groups.append(batch)
                batch += chunk
                shared[owners] = (batch, used + size)
        return groups

    def ack_units(self, writes: Sequence[MessageWrite]) -> list[list[int]]:
        """One unit per batch: each is one request, durable on its own."""
        return self.plan_batches(writes)

    def _bind_claim(self, write: MessageCreate) -> Any:
        """The nonce claim's statement, or None once its window has passed (a late
        replay): it expires when the window does, ``NONCE_WINDOW_S`` after creation."""
        ttl_s = -(-(write.nonce_expires_ms - int(time.time() * 1000)) // 1000)
        if ttl_s <= 0:
            return None
        m = write.message
        return self._ps["claim_nonce"].bind(
            (m.channel_id, m.author_id, m.nonce, m.id, ttl_s, write.timestamp_us))

    async def apply(
        self, writes: Sequence[MessageWrite], batched: bool = True
    ) -> list[BaseException | None]:
        writes = list(writes)
        if not writes:
            return []
        outcomes: list[BaseException | None] = [None] * len(writes)
        bound: list[Any] = []
        claims: list[tuple[int, Any]] = []  # (write index, its nonce claim)
        for i, w in enumerate(writes):
            try:
                bound.append(self._bind_write(w))
                if isinstance(w, MessageCreate) and w.claim_nonce:
                    claim = self._bind_claim(w)
                    if claim is not None:
                        claims.append((i, claim))
            except Exception as exc:  # bad value for the column type, etc.
                bound.append(None)
                outcomes[i] = exc
        groups = self.plan_batches(writes) if batched else [[i] for i in range(len(writes))]
        groups = [[i for i in g if bound[i] is not None] for g in groups]
        groups = [g for g in groups if g]
        claims = [(i, c) for i, c in claims if bound[i] is not None]
        results: list[Any]
        if len(groups) == 1 and not claims:
            # The storage actor's usual call (one ack unit, no nonce claims): awaited
            # directly, not through gather's task per group, whose start and result
            # each wait a turn of a busy event loop.
            try:
                results = [await self._apply_group(groups[0], bound)]
            except Exception as exc:
                results = [exc]
        else:
            results = await asyncio.gather(
                *(self._apply_group(g, bound) for g in groups),
                *(self._send(c) for _, c in claims),
                return_exceptions=True)
        for group, result in zip(groups, results, strict=False):
            for i, outcome in zip(group, (result if isinstance(result, list)
                                          else [result] * len(group)), strict=True):
                outcomes[i] = outcome
        for (i, _), result in zip(claims, results[len(groups):], strict=True):
            if isinstance(result, BaseException) and outcomes[i] is None:
                outcomes[i] = result  # acknowledged only with its claim
        return outcomes

    def start_unit(self, writes: Sequence[MessageWrite]) -> Awaitable[list[BaseException | None]]:
        """``apply`` for one ack unit (the storage actor's call), its request sent now: a
        future that the driver's answer settles with the outcomes, where ``apply``'s task
        would first wait a loop turn to start and another to be woken by the answer
        (measured: each a whole turn of a busy loop, tens of ms at the tail when the
        machine is short of CPU). What needs more than one request - nonce claims, more
        than one batch - or fails to bind goes through ``apply``."""
        writes = list(writes)
        if (not writes or self.session is None or any(
                isinstance(w, MessageCreate) and w.claim_nonce for w in writes)):
            return self.apply(writes)
        try:
            bound = [self._bind_write(w) for w in writes]
            if len(bound) == 1:
                statement = bound[0]
            else:
                if len(self.plan_batches(writes)) != 1:
                    return self.apply(writes)
                statement = BatchStatement(batch_type=BatchType.UNLOGGED)
                for b in bound:
                    statement.add(b)
                statement.is_idempotent = True
            request = _UnitRequest(asyncio.get_running_loop(),
                                   self.session.execute_async(statement), self, bound)
        except Exception:  # a value that does not bind, a closed session: apply says which
            return self.apply(writes)
        self.queries += 1
        return request.fut

    async def _apply_halves(self, group: list[int], bound: list[Any]
                            ) -> list[BaseException | None]:
        half = len(group) // 2
        first, second = await asyncio.gather(self._apply_group(group[:half], bound),
                                             self._apply_group(group[half:], bound))
        return first + second

    async def _apply_group(self, group: list[int], bound: list[Any]
                           ) -> list[BaseException | None]:
        """Send one batch (or statement); if the node refuses it as a whole, send its
        halves, recursively, so only the write at fault fails (at most 2n-1 requests,
        and only when a batch was refused)."""
        if len(group) == 1:
            statement = bound[group[0]]
        else:
            statement = BatchStatement(batch_type=BatchType.UNLOGGED)
            for i in group:
                statement.add(bound[i])
            statement.is_idempotent = True
        try:
            await self._send(statement)
        except Exception as exc:
            if len(group) == 1 or not isinstance(exc, InvalidRequest):
                return [exc] * len(group)
            return await self._apply_halves(group, bound)
        return [None] * len(group)

    async def find_nonce(self, channel_id: int, author_id: int, nonce: str) -> int | None:
        rows = await self._rows("find_nonce", (check_id("channel_id", channel_id),
                                               check_id("author_id", author_id), nonce))
        if not rows:
            return None
        message_id = rows[0][0]
        # The row's TTL counts from its write; the window from the message's creation.
        window_ms = NONCE_WINDOW_S * 1000
        return message_id if snowflake_ms(message_id) + window_ms > time.time() * 1000 else None

    @staticmethod
    def _live(row: Any) -> bool:
        return row[1] is not None  # author_id: set by the create, absent on partial rows

    def _message(self, channel_id: int, row: Any) -> Message:
        return message_from_columns(channel_id, dict(zip(READ_COLUMNS, row, strict=True)))

    async def get_message(self, channel_id: int, message_id: int) -> Message | None:
        check_id("channel_id", channel_id)
        check_id("message_id", message_id)
        rows = await self._rows("get_message", (channel_id, bucket_of(message_id), message_id))
        if not rows or not self._live(rows[0]):
            return None
        return self._message(channel_id, rows[0])

    async def _fetch_desc(self, cid: int, buckets: list[int], cursor: int, want: int) -> list[Any]:
        """Newest ``want`` rows below ``cursor`` in ``buckets`` (one query)."""
        if len(buckets) == 1:
            return await self._rows("hist_desc_one", (cid, buckets[0], cursor, want), paged=False)
        # No ORDER BY: with IN on the partition key it makes Cassandra read whole
        # partitions and sort them (measured: 12-24 ms p50 instead of ~1 ms). Each
        # partition already returns its rows newest first, so take each one's newest
        # `want` and merge here.
        rows = await self._rows("hist_desc_many", (cid, buckets, cursor, want), paged=False)
        rows.sort(key=lambda r: r[0], reverse=True)
        return rows[:want]

    async def _fetch_asc(self, cid: int, buckets: list[int], cursor: int, want: int) -> list[Any]:
        """Oldest ``want`` rows above ``cursor`` in ``buckets``.

        Per partition that needs a reversed read, which cannot be merged across an IN
        without the whole-partition sort; so one cheap probe (a row per non-empty
        bucket) finds where rows are, then only those buckets are read, in order.
        """
        if len(buckets) == 1:
            return await self._rows("hist_asc_one", (cid, buckets[0], cursor, want), paged=False)
        probe = await self._rows("hist_asc_probe", (cid, buckets, cursor), paged=False)
        out: list[Any] = []
        for bucket in sorted(r[0] for r in probe):
            out += await self._rows(
                "hist_asc_one", (cid, bucket, cursor, want - len(out)), paged=False
            )
            if len(out) >= want:
                break
        return out

    async def _walk(
        self,
        channel_id: int,
        direction: str,
        bound: int | None,
        limit: int,
        now_ms: int,
    ) -> list[Any]:
        if direction == "desc":
            start, first, last = desc_range(channel_id, bound, now_ms)
            fetch = self._fetch_desc
        else:
            assert bound is not None
            start, first, last = asc_range(channel_id, bound, now_ms)
            fetch = self._fetch_asc
        return await walk_buckets(
            lambda b, c, w: fetch(channel_id, b, c, w),
            direction=direction,  # type: ignore[arg-type]
            bound=start,
            limit=limit,
            first_bucket=first,
            last_bucket=last,
            row_id=lambda r: r[0],
            row_live=self._live,
            # 'latest' starts one bucket in the future (clock slack): read two at first.
            first_window=2 if bound is None else 1,
        )

    async def history(self, query: HistoryQuery) -> list[Message]:
        cid = query.channel_id
        now_ms = int(time.time() * 1000)
        if query.after is not None:
            rows = await self._walk(cid, "asc", query.after, query.limit, now_ms)
            rows.reverse()
        elif query.around is not None:
            newer_n = query.limit // 2
            older_task = self._walk(cid, "desc", query.around + 1, query.limit - newer_n, now_ms)
            if newer_n:
                newer, older = await asyncio.gather(
                    self._walk(cid, "asc", query.around, newer_n, now_ms), older_task
                )
            else:
                newer, older = [], await older_task
            rows = newer[::-1] + older
        else:
            rows = await self._walk(cid, "desc", query.before, query.limit, now_ms)
        return [self._message(cid, r) for r in rows]

    # -- entities ----------------------------------------------------------------------
    @staticmethod
    def _opt(value: Any) -> Any:
        return UNSET_VALUE if value is None else value

    async def _write(self, key: str, params: Sequence[Any]) -> None:
        await self._send(self._ps[key].bind([self._opt(p) for p in params]))

    async def put_user(self, user: User) -> None:
        check_id("user id", user.id)
        await self._write(
            "put_user",
            (
                user.id,
                user.username,
                user.discriminator,
                user.global_name,
                user.avatar,
                user.bot,
                user.flags,
            ),
        )

    @staticmethod
    def _user(r: Sequence[Any]) -> User:
        return User(r[0], r[1], r[2] or "0", r[3], r[4], bool(r[5]), r[6] or 0)

    async def get_user(self, user_id: int) -> User | None:
        rows = await self._rows("get_user", (check_id("user_id", user_id),))
        return self._user(rows[0]) if rows else None

    async def get_users(self, user_ids: Iterable[int]) -> dict[int, User]:
        ids = [check_id("user_id", u) for u in dict.fromkeys(user_ids)]
        found: dict[int, User] = {}
        for start in range(0, len(ids), 256):  # bounded concurrency, single-partition reads
            chunk = ids[start : start + 256]
            results = await asyncio.gather(*(self._rows("get_user", (u,)) for u in chunk))
            for rows in results:
                if rows:
                    user = self._user(rows[0])
                    found[user.id] = user
        return found

    async def put_token(self, token: str, user_id: int) -> None:
        await self._write("put_token", (token_hash(token), check_id("user_id", user_id)))

    async def user_id_for_token(self, token: str) -> int | None:
        rows = await self._rows("get_token", (token_hash(token),))
        return rows[0][0] if rows else None

    async def put_application_flags(self, application_id: int, flags: int) -> None:
        # Rare: a plain statement (not prepared at open).
        await self._send(
            f"INSERT INTO {self.settings.keyspace}.applications (id, flags) VALUES (%s, %s)",
            (check_id("application_id", application_id), int(flags)))

    async def application_flags(self, application_id: int) -> int | None:
        # Once per bot IDENTIFY: prepared on first use (and again after a reconnect,
        # which prepares a new statement table).
        prepared, session = self._ps, self.session  # one session's table, even if it changes
        statement = prepared.get("application_flags")
        if statement is None:
            statement = await asyncio.to_thread(
                session.prepare,
                f"SELECT flags FROM {self.settings.keyspace}.applications WHERE id = ?")
            statement.is_idempotent = True
            prepared["application_flags"] = statement
        rows = await self._send(statement.bind((check_id("application_id", application_id),)))
        for (flags,) in rows:
            return flags
        return None

    async def put_oauth2_grant(self, token: str, grant: OAuth2Grant) -> None:
        # Rare: a plain statement (not prepared at open); the TTL drops it once expired.
        ttl = max(1, -(-(grant.expires_at_ms - int(time.time() * 1000)) // 1000))
        await self._send(
            f"INSERT INTO {self.settings.keyspace}.oauth2_grants (token_hash, user_id, "
            "application_id, scopes, expires_at_ms) VALUES (%s, %s, %s, %s, %s) "
            "USING TTL %s",
            (token_hash(token), check_id("user_id", grant.user_id),
             check_id("application_id", grant.application_id), " ".join(grant.scopes),
             grant.expires_at_ms, ttl))

    async def oauth2_grant(self, token: str) -> OAuth2Grant | None:
        rows = await self._send(
            f"SELECT user_id, application_id, scopes, expires_at_ms FROM "
            f"{self.settings.keyspace}.oauth2_grants WHERE token_hash = %s",
            (token_hash(token),))
        for user_id, application_id, scopes, expires_at_ms in rows:
            return OAuth2Grant(user_id, application_id, tuple(scopes.split()), expires_at_ms)
        return None

    # -- records (storage.records): expiry is CQL's TTL ---------------------------------
    async def put_record(self, kind: str, scope: int, key: str, value: dict[str, Any],
                         ttl_s: int | None = None) -> None:
        check_record(kind, scope, key)
        ttl = f" USING TTL {max(1, int(ttl_s))}" if ttl_s is not None else ""
        await self._send(
            f"INSERT INTO {self.settings.keyspace}.records (kind, scope, key, value) "
            f"VALUES (%s, %s, %s, %s){ttl}", (kind, scope, key, pack(value)))

    async def get_record(self, kind: str, scope: int, key: str) -> dict[str, Any] | None:
        check_record(kind, scope, key)
        rows = await self._send(
            f"SELECT value FROM {self.settings.keyspace}.records "
            "WHERE kind = %s AND scope = %s AND key = %s", (kind, scope, key))
        for (raw,) in rows:
            return unpack(raw)
        return None

    async def insert_record_if_absent(self, kind: str, scope: int, key: str,
                                      value: dict[str, Any], ttl_s: int | None = None
                                      ) -> tuple[bool, dict[str, Any]]:
        # A lightweight transaction: of two nodes inserting at once, one wins and the
        # other reads the winner's value in the same answer.
        check_record(kind, scope, key)
        ttl = f" USING TTL {max(1, int(ttl_s))}" if ttl_s is not None else ""
        rows = await self._send(
            f"INSERT INTO {self.settings.keyspace}.records (kind, scope, key, value) "
            f"VALUES (%s, %s, %s, %s) IF NOT EXISTS{ttl}", (kind, scope, key, pack(value)))
        row = rows[0]
        if row[0]:  # [applied]
            return True, value
        # not applied: the row there comes back as [applied], kind, scope, key, value
        existing = row[-1] if len(row) > 1 else None
        if existing is None:  # expired between the check and the read: answer as found
            found = await self.get_record(kind, scope, key)
            if found is None:
                raise StorageError(f"record {kind}/{key}: no answer from its LWT",
                                   transient=True)
            return False, found
        return False, unpack(existing)

    async def delete_record(self, kind: str, scope: int, key: str) -> None:
        check_record(kind, scope, key)
        await self._send(
            f"DELETE FROM {self.settings.keyspace}.records "
            "WHERE kind = %s AND scope = %s AND key = %s", (kind, scope, key))

    async def delete_record_if(self, kind: str, scope: int, key: str,
                               value: dict[str, Any]) -> bool:
        # an LWT like the insert it undoes: Paxos orders the two (a plain DELETE can be
        # undone by a later round re-committing the insert)
        check_record(kind, scope, key)
        rows = await self._send(
            f"DELETE FROM {self.settings.keyspace}.records "
            "WHERE kind = %s AND scope = %s AND key = %s IF value = %s",
            (kind, scope, key, pack(value)))
        return bool(rows[0][0])

    async def list_records(self, kind: str, scope: int, *, prefix: str = "",
                           after: str | None = None, limit: int = 100
                           ) -> list[tuple[str, dict[str, Any]]]:
        check_record(kind, scope, prefix)
        low, inclusive, high = key_range(prefix, after)
        cql = (f"SELECT key, value FROM {self.settings.keyspace}.records "
               f"WHERE kind = %s AND scope = %s AND key {'>=' if inclusive else '>'} %s")
        params: list[Any] = [kind, scope, low]
        if high is not None:
            cql += " AND key < %s"
            params.append(high)
        cql += f" LIMIT {max(1, min(limit, MAX_LIST))}"
        if limit <= 0:
            return []
        return [(k, unpack(v)) for k, v in await self._send(cql, tuple(params))]

    async def delete_records(self, kind: str, scope: int, prefix: str = "") -> None:
        check_record(kind, scope, prefix)
        table = f"{self.settings.keyspace}.records"
        if prefix:  # a range tombstone
            await self._send(f"DELETE FROM {table} WHERE kind = %s AND scope = %s "
                             "AND key >= %s AND key < %s",
                             (kind, scope, prefix, key_range(prefix, None)[2]))
        else:  # a partition tombstone
            await self._send(f"DELETE FROM {table} WHERE kind = %s AND scope = %s",
                             (kind, scope))

    _INVITE_COLS = ("code, guild_id, channel_id, inviter_id, created_at_ms, max_age_s, "
                    "max_uses, uses")

    async def put_invite(self, invite: Invite) -> None:
        # Rare: plain statements (not prepared at open); an expiring invite has a TTL.
        ttl = f" USING TTL {invite.max_age_s}" if invite.max_age_s else ""
        await self._send(
            f"INSERT INTO {self.settings.keyspace}.invites ({self._INVITE_COLS}) "
            f"VALUES (%s, %s, %s, %s, %s, %s, %s, %s){ttl}",
            (invite.code, check_id("guild_id", invite.guild_id),
             check_id("channel_id", invite.channel_id),
             check_id("inviter_id", invite.inviter_id), invite.created_at_ms,
             invite.max_age_s, invite.max_uses, invite.uses))

    async def get_invite(self, code: str) -> Invite | None:
        rows = await self._send(
            f"SELECT {self._INVITE_COLS} FROM {self.settings.keyspace}.invites "
            "WHERE code = %s", (code,))
        for row in rows:
            return None if row[1] is None else Invite(*row)
        return None

    async def use_invite(self, code: str, now_ms: int) -> Invite | None:
        # A lightweight transaction (compare-and-set on ``uses``): two nodes accepting a
        # one-use invite at once admit one user. Lost races re-read and try again.
        for _ in range(8):
            invite = await self.get_invite(code)
            if invite is None or not invite.usable(now_ms):
                return None
            expires = invite.expires_at_ms
            ttl = "" if expires is None else \
                f" USING TTL {max(1, -(-(expires - now_ms) // 1000))}"
            rows = await self._send(
                f"UPDATE {self.settings.keyspace}.invites{ttl} SET uses = %s "
                "WHERE code = %s IF uses = %s", (invite.uses + 1, code, invite.uses))
            if rows and rows[0][0]:  # [applied]
                return replace(invite, uses=invite.uses + 1)
        raise StorageError(f"invite {code!r}: too much contention", transient=True)

    # -- blobs (storage.blobs): a partition per blob, the head in static columns ------
    async def _blob_statement(self, key: str, cql: str) -> Any:
        """Prepared on first use (blobs are rare next to messages), once per session."""
        prepared, session = self._ps, self.session
        statement = prepared.get(key)
        if statement is None:
            statement = await asyncio.to_thread(
                session.prepare, cql.format(table=f"{self.settings.keyspace}.blobs"))
            statement.is_idempotent = True
            prepared[key] = statement
        return statement

    async def put_blob_chunk(self, channel_id: int, blob_id: int, index: int,
                             data: bytes) -> None:
        statement = await self._blob_statement(
            "put_blob_chunk", "INSERT INTO {table} (channel_id, blob_id, chunk, data) "
            "VALUES (?, ?, ?, ?)")
        await self._send(statement.bind((channel_id, blob_id, index, data)))

    async def put_blob_head(self, channel_id: int, blob_id: int, head: BlobHead) -> None:
        statement = await self._blob_statement(
            "put_blob_head", "INSERT INTO {table} (channel_id, blob_id, size, content_type, "
            "etag, chunk_size, message_id) VALUES (?, ?, ?, ?, ?, ?, ?)")
        await self._send(statement.bind((channel_id, blob_id, head.size,
                                         self._opt(head.content_type), head.etag,
                                         head.chunk_size, head.message_id)))

    async def get_blob_head(self, channel_id: int, blob_id: int) -> BlobHead | None:
        statement = await self._blob_statement(
            "get_blob_head", "SELECT size, content_type, etag, chunk_size, message_id "
            "FROM {table} WHERE channel_id = ? AND blob_id = ? LIMIT 1")
        for size, content_type, etag, chunk_size, message_id in await self._send(
                statement.bind((channel_id, blob_id))):
            if size is not None:
                return BlobHead(size, content_type, etag, chunk_size, message_id or 0)
        return None

    async def set_blob_message(self, channel_id: int, blob_id: int, message_id: int
                               ) -> None:
        statement = await self._blob_statement(
            "set_blob_message", "UPDATE {table} SET message_id = ? "
            "WHERE channel_id = ? AND blob_id = ?")
        await self._send(statement.bind((message_id, channel_id, blob_id)))

    async def get_blob_chunk(self, channel_id: int, blob_id: int, index: int
                             ) -> bytes | None:
        statement = await self._blob_statement(
            "get_blob_chunk", "SELECT data FROM {table} WHERE channel_id = ? "
            "AND blob_id = ? AND chunk = ?")
        for (data,) in await self._send(statement.bind((channel_id, blob_id, index))):
            return data
        return None

    async def delete_blob(self, channel_id: int, blob_id: int) -> None:
        statement = await self._blob_statement(
            "delete_blob", "DELETE FROM {table} WHERE channel_id = ? AND blob_id = ?")
        await self._send(statement.bind((channel_id, blob_id)))  # a partition tombstone

    async def put_guild(self, guild: Guild) -> None:
        check_id("guild id", guild.id)
        await self._write(
            "put_guild",
            (
                guild.id,
                guild.name,
                guild.owner_id,
                guild.icon,
                guild.description,
                list(guild.features),
            ),
        )

    async def get_guild(self, guild_id: int) -> Guild | None:
        rows = await self._rows("get_guild", (check_id("guild_id", guild_id),))
        if not rows:
            return None
        r = rows[0]
        return Guild(r[0], r[1], r[2], r[3], r[4], list(r[5] or ()))

    @staticmethod
    def _channel(r: Sequence[Any]) -> Channel:
        return Channel(r[0], r[1], r[2], r[3] or 0, r[4] or 0, r[5], r[6], bool(r[7]))

    async def put_channel(self, channel: Channel) -> None:
        check_id("channel id", channel.id)
        check_id("guild_id", channel.guild_id)
        params = (
            channel.id,
            channel.guild_id,
            channel.name,
            channel.type,
            channel.position,
            channel.topic,
            channel.parent_id,
            channel.nsfw,
        )
        await asyncio.gather(
            self._write("put_channel", params), self._write("put_channel_by_guild", params)
        )

    async def get_channel(self, channel_id: int) -> Channel | None:
        rows = await self._rows("get_channel", (check_id("channel_id", channel_id),))
        return self._channel(rows[0]) if rows else None

    async def channels_for_guild(self, guild_id: int) -> list[Channel]:
        rows = await self._rows("channels_for_guild", (check_id("guild_id", guild_id),))
        return [self._channel(r) for r in rows]

    async def delete_channel(self, guild_id: int, channel_id: int) -> None:
        check_id("guild_id", guild_id)
        check_id("channel_id", channel_id)
        await asyncio.gather(
            self._write("delete_channel", (channel_id,)),
            self._write("delete_channel_by_guild", (guild_id, channel_id)),
        )

    async def put_role(self, role: Role) -> None:
        check_id("guild_id", role.guild_id)
        check_id("role id", role.id)
        await self._write(
            "put_role",
            (
                role.guild_id,
                role.id,
                role.name,
                role.color,
                role.hoist,
                role.position,
                role.permissions,
                role.managed,
                role.mentionable,
            ),
        )

    async def roles_for_guild(self, guild_id: int) -> list[Role]:
        rows = await self._rows("roles_for_guild", (check_id("guild_id", guild_id),))
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
        await self._write(
            "delete_role", (check_id("guild_id", guild_id), check_id("role_id", role_id))
        )

    @staticmethod
    def _member(r: Sequence[Any]) -> Member:
        return Member(r[0], r[1], r[2], r[3], list(r[4] or ()), bool(r[5]), bool(r[6]))

    async def put_member(self, member: Member) -> None:
        check_id("guild_id", member.guild_id)
        check_id("user_id", member.user_id)
        await asyncio.gather(
            self._write(
                "put_member",
                (
                    member.guild_id,
                    member.user_id,
                    member.joined_at_ms,
                    member.nick,
                    list(member.roles),
                    member.deaf,
                    member.mute,
                ),
            ),
            self._write("put_guild_by_user", (member.user_id, member.guild_id)),
        )

    async def get_member(self, guild_id: int, user_id: int) -> Member | None:
        rows = await self._rows(
            "get_member", (check_id("guild_id", guild_id), check_id("user_id", user_id))
        )
        return self._member(rows[0]) if rows else None

    async def members_for_guild(
        self, guild_id: int, limit: int = 1000, after: int | None = None
    ) -> list[Member]:
        if limit < 1:
            raise ValueError(f"limit must be positive, got {limit}")
        check_id("guild_id", guild_id)
        if after is None:
            rows = await self._rows("members_for_guild", (guild_id, limit))
        else:
            rows = await self._rows("members_after", (guild_id, after, limit))
        return [self._member(r) for r in rows]

    async def member_count(self, guild_id: int) -> int:
        # A count read of one partition (the guild's members): no counter table to keep
        # in step with member writes; the gateway caches the figure per guild.
        rows = await self._rows("member_count", (check_id("guild_id", guild_id),))
        return int(rows[0][0])

    async def remove_member(self, guild_id: int, user_id: int) -> None:
        check_id("guild_id", guild_id)
        check_id("user_id", user_id)
        await asyncio.gather(
            self._write("delete_member", (guild_id, user_id)),
            self._write("delete_guild_by_user", (user_id, guild_id)),
        )

    async def members_of_user(self, user_id: int) -> list[Member]:
        # guilds_by_user, then the member rows: single-partition reads, in parallel.
        guild_ids = await self.guild_ids_for_user(user_id)
        found = await asyncio.gather(*(self._rows("get_member", (g, user_id))
                                       for g in guild_ids))
        return [self._member(rows[0]) for rows in found if rows]

    async def guild_ids_for_user(self, user_id: int) -> list[int]:
        rows = await self._rows("guilds_for_user", (check_id("user_id", user_id),))
        return [r[0] for r in rows]
