"""Blobs (attachment bytes) in the configured storage, so a cluster needs no other store.

A blob lives in one partition, ``(channel_id, blob_id)``: its head (size, content
type, ETag, chunk size, and the message that holds it) and its bytes in chunks of at
most ``CHUNK_BYTES`` (Cassandra rejects mutations over half its commit-log segment
and handles large cells badly; 1 MiB chunks also let a Range read touch only the
chunks it needs). SQLite keeps the same shape in two tables. ``Blobs`` is the one
interface the rest of the code uses; the backends only store heads and chunks.

Nothing half-written is reachable. A blob is written before the message that lists it
exists, so it is *pending* (``message_id`` 0) until ``commit`` names its message; it is
served only while that message exists and still lists it (``reachable``), so a failed
post, a deleted message or an edit that dropped the file leaves nothing to download,
whatever the cleanup managed. Cleanup itself is journalled: every blob whose fate is
open (uploaded, not yet committed; or its message being deleted) has a record of
kind ``blob-journal`` (a partition an hour), removed once settled. ``collect`` settles what a
crash or an outage left behind: after ``JOURNAL_GRACE_S`` a journalled blob is
committed if a message lists it, else deleted.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from storage.history import HistoryQuery
from storage.model import Message
from storage.records import key_of
from storage.snowflake import snowflake_ms

if TYPE_CHECKING:
    from storage.base import Storage

#: Largest chunk written (Cassandra: well under a mutation's limit; one Range unit).
CHUNK_BYTES = 1024 * 1024
#: The records kind of blobs whose fate is open: scope, the hour the entry was written
#: (a partition an hour, so the tombstones of settled entries never pile up in one
#: partition that every ``collect`` reads); key, the blob id (``key_of``).
JOURNAL = "blob-journal"
JOURNAL_BUCKET_MS = 3_600_000
#: ``collect`` looks this many hours back (entries older are left: none should be, as
#: every node collects every ``gateway.rest.attachments.COLLECT_EVERY_S``).
JOURNAL_LOOKBACK_H = 24
#: A journalled blob is left alone this long (its upload or delete may still run).
JOURNAL_GRACE_S = 600
#: How far before a blob's id (its node's clock) its message's id may be (another
#: node's clock), and how long after it the message may be created (REST's ask timeout
#: and storage's retries, with room to spare).
CLOCK_SKEW_S = 60
POST_WINDOW_S = 600
#: History pages read to find the message of a blob whose commit was lost.
SEARCH_PAGES = 20


@dataclass(frozen=True, slots=True)
class BlobHead:
    """What is known of a blob without reading it; ``message_id`` 0: not committed."""

    size: int
    content_type: str | None
    etag: str
    chunk_size: int
    message_id: int = 0

    @property
    def chunks(self) -> int:
        return -(-self.size // self.chunk_size) if self.size else 0


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _bucket(unix_ms: int) -> int:
    return unix_ms // JOURNAL_BUCKET_MS


def lists_blob(message: Message | None, blob_id: int, filename: str | None = None) -> bool:
    """Whether ``message`` holds attachment ``blob_id`` (under ``filename`` if given)."""
    if message is None:
        return False
    wanted = str(blob_id)
    return any(str(a.get("id")) == wanted
               and (filename is None or a.get("filename") == filename)
               for a in message.attachments)


class Blobs:
    """The blob interface over a ``Storage`` (either backend)."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    async def put(self, channel_id: int, blob_id: int, data: bytes,
                  content_type: str | None) -> BlobHead:
        """Store a pending blob: journalled first, then its chunks (concurrently), then
        its head - so a head always stands for every chunk."""
        await self._journal(channel_id, blob_id, 0, _bucket(snowflake_ms(blob_id)))
        if len(data) > CHUNK_BYTES:  # ~3 ms a MiB: off the loop (hashlib drops the GIL)
            etag = await asyncio.to_thread(_sha256, data)
        else:
            etag = _sha256(data)
        head = BlobHead(len(data), content_type, etag, CHUNK_BYTES)
        await asyncio.gather(*(
            self.storage.put_blob_chunk(channel_id, blob_id, i,
                                        data[i * CHUNK_BYTES:(i + 1) * CHUNK_BYTES])
            for i in range(head.chunks)))
        await self.storage.put_blob_head(channel_id, blob_id, head)
        return head

    async def commit(self, channel_id: int, blob_id: int, message_id: int,
                     journal: int | None = None) -> None:
        """The message listing the blob is durable: the blob is its now. ``journal``:
        the bucket of its journal entry (default: an upload's, from the blob's id)."""
        await self.storage.set_blob_message(channel_id, blob_id, message_id)
        await self._settled(blob_id, journal)

    async def retire(self, channel_id: int, blob_id: int, message_id: int) -> int:
        """Journal a committed blob before its message is deleted (or edited without
        it): if the caller dies half-way, ``collect`` finishes (or undoes) the job.
        Answers the entry's bucket, for ``discard``."""
        bucket = _bucket(int(time.time() * 1000))
        await self._journal(channel_id, blob_id, message_id, bucket)
        return bucket

    async def discard(self, channel_id: int, blob_id: int, journal: int | None = None
                      ) -> None:
        """Delete a blob and its journal entry (idempotent; ``journal`` as ``commit``)."""
        await self.storage.delete_blob(channel_id, blob_id)
        await self._settled(blob_id, journal)

    async def head(self, channel_id: int, blob_id: int) -> BlobHead | None:
        return await self.storage.get_blob_head(channel_id, blob_id)

    async def reachable(self, channel_id: int, blob_id: int, filename: str
                        ) -> BlobHead | None:
        """The blob's head if it may be served: committed, and its message exists and
        lists it under ``filename``."""
        head = await self.storage.get_blob_head(channel_id, blob_id)
        if head is None or not head.message_id:
            return None
        message = await self.storage.get_message(channel_id, head.message_id)
        return head if lists_blob(message, blob_id, filename) else None

    async def read(self, channel_id: int, blob_id: int, head: BlobHead, start: int = 0,
                   end: int | None = None) -> AsyncIterator[bytes]:
        """Bytes ``start``..``end`` (inclusive; default: to the last), a chunk at a time
        (memory: one chunk per reader, whatever the blob's size)."""
        last = head.size - 1 if end is None else min(end, head.size - 1)
        if head.size == 0 or start > last:
            return
        size = head.chunk_size
        for index in range(start // size, last // size + 1):
            chunk = await self.storage.get_blob_chunk(channel_id, blob_id, index)
            if chunk is None:
                raise LookupError(f"blob {channel_id}/{blob_id} lost chunk {index}")
            base = index * size
            yield chunk[max(0, start - base):last - base + 1]

    async def read_all(self, channel_id: int, blob_id: int) -> bytes | None:
        """The whole blob (tests and small files), None if it has no head."""
        head = await self.head(channel_id, blob_id)
        if head is None:
            return None
        return b"".join([part async for part in self.read(channel_id, blob_id, head)])

    # -- the journal ------------------------------------------------------------------
    async def _journal(self, channel_id: int, blob_id: int, message_id: int,
                       bucket: int) -> None:
        await self.storage.put_record(JOURNAL, bucket, key_of(blob_id), {
            "channel_id": channel_id, "message_id": message_id,
            "at_ms": int(time.time() * 1000)})

    async def _settled(self, blob_id: int, bucket: int | None) -> None:
        if bucket is None:
            bucket = _bucket(snowflake_ms(blob_id))
        await self.storage.delete_record(JOURNAL, bucket, key_of(blob_id))

    async def pending(self, now_ms: int | None = None, limit: int = 100
                      ) -> list[tuple[int, int, dict[str, Any]]]:
        """Journalled blobs of the last ``JOURNAL_LOOKBACK_H`` hours, oldest bucket first:
        ``(bucket, blob_id, entry)``, at most ``limit`` a bucket."""
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        newest = _bucket(now_ms)
        found = []
        for bucket in range(newest - JOURNAL_LOOKBACK_H, newest + 1):
            for key, value in await self.storage.list_records(JOURNAL, bucket, limit=limit):
                found.append((bucket, int(key), value))
        return found

    async def collect(self, *, now_ms: int | None = None, grace_s: float = JOURNAL_GRACE_S,
                      limit: int = 100) -> tuple[int, int]:
        """Settle journalled blobs older than ``grace_s``: commit those a message lists,
        delete the others. Answers (committed, deleted). Any node may run it, several
        at once: each step is idempotent."""
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        committed = deleted = 0
        for bucket, blob_id, entry in await self.pending(now_ms, limit):
            if entry.get("at_ms", 0) > now_ms - grace_s * 1000:
                continue
            channel_id = int(entry["channel_id"])
            message = await self._holder(channel_id, blob_id, int(entry.get("message_id", 0)))
            if message is not None:
                await self.commit(channel_id, blob_id, message.id, bucket)
                committed += 1
            else:
                await self.discard(channel_id, blob_id, bucket)
                deleted += 1
        return committed, deleted

    async def _holder(self, channel_id: int, blob_id: int, message_id: int
                      ) -> Message | None:
        """The message that lists the blob, if any: the journalled one, or (a post whose
        commit was lost) one created in the blob's post window."""
        if message_id:
            message = await self.storage.get_message(channel_id, message_id)
            return message if lists_blob(message, blob_id) else None
        born_ms = snowflake_ms(blob_id)
        cursor = max(0, blob_id - (CLOCK_SKEW_S * 1000 << 22))
        for _ in range(SEARCH_PAGES):
            page = await self.storage.history(HistoryQuery(channel_id, after=cursor,
                                                           limit=100))
            for message in page:
                if lists_blob(message, blob_id):
                    return message
            if not page:
                return None
            cursor = max(m.id for m in page)
            if snowflake_ms(cursor) > born_ms + POST_WINDOW_S * 1000:
                return None
        return None
