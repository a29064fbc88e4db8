"""storage.blobs on both backends: chunked bytes and Range reads, what is reachable
(committed, and listed by a live message), deletion, and the journal that ``collect``
settles after a crash (commit a blob a message lists, delete the others)."""

from __future__ import annotations

import os

from storage.base import Storage
from storage.blobs import CHUNK_BYTES, JOURNAL, Blobs, _bucket
from storage.model import Message, MessageDelete
from storage.records import key_of
from storage.snowflake import snowflake_ms


def _message(channel_id: int, message_id: int, *blobs: tuple[int, str]) -> Message:
    return Message(channel_id, message_id, author_id=1,
                   attachments=[{"id": str(b), "filename": f} for b, f in blobs])


async def _journalled(storage: Storage, blob_id: int) -> bool:
    bucket = _bucket(snowflake_ms(blob_id))
    return await storage.get_record(JOURNAL, bucket, key_of(blob_id)) is not None


def test_bytes_round_trip_in_chunks_and_ranges(aio, storage: Storage, ids) -> None:  # type: ignore[no-untyped-def]
    blobs = Blobs(storage)
    channel, big, empty = ids.now(), ids.now(), ids.now()
    data = os.urandom(2 * CHUNK_BYTES + 12345)  # three chunks, the last one short

    async def go() -> None:
        head = await blobs.put(channel, big, data, "application/x-test")
        assert (head.size, head.chunks, head.message_id) == (len(data), 3, 0)
        assert await blobs.head(channel, big) == head
        assert await storage.get_blob_chunk(channel, big, 3) is None
        assert await blobs.read_all(channel, big) == data

        async def span(start: int, end: int | None) -> bytes:
            return b"".join([p async for p in blobs.read(channel, big, head, start, end)])

        edge = CHUNK_BYTES
        for start, end in ((0, 0), (edge - 3, edge + 2), (edge, 2 * edge - 1),
                           (5, len(data) - 1), (len(data) - 10, None),
                           (edge - 1, 10 * edge)):
            assert await span(start, end) == data[start:None if end is None else end + 1]
        assert await span(len(data), None) == b""
        await blobs.put(channel, empty, b"", None)
        assert await blobs.read_all(channel, empty) == b""
        assert (await blobs.head(channel, empty)).content_type is None  # type: ignore[union-attr]

    aio.run(go())


def test_only_a_blob_its_live_message_lists_is_reachable(aio, storage: Storage, ids) -> None:  # type: ignore[no-untyped-def]
    blobs = Blobs(storage)
    channel, blob = ids.now(), ids.now()
    message_id = ids.now()

    async def go() -> None:
        await blobs.put(channel, blob, b"hello", "text/plain")
        assert await _journalled(storage, blob)
        # written, message not yet durable: pending, not served
        assert await blobs.reachable(channel, blob, "a.txt") is None
        await storage.create_message(_message(channel, message_id, (blob, "a.txt")))
        await blobs.commit(channel, blob, message_id)
        assert not await _journalled(storage, blob)
        head = await blobs.reachable(channel, blob, "a.txt")
        assert head is not None and head.message_id == message_id
        assert await blobs.reachable(channel, blob, "b.txt") is None  # another name
        # the message deleted: unreachable at once, whatever the cleanup does
        await storage.delete_message(MessageDelete.now(channel, message_id))
        assert await blobs.reachable(channel, blob, "a.txt") is None
        await blobs.discard(channel, blob)
        assert await blobs.head(channel, blob) is None
        assert await storage.get_blob_chunk(channel, blob, 0) is None

    aio.run(go())


def test_collect_settles_what_a_crash_left(aio, storage: Storage, ids) -> None:  # type: ignore[no-untyped-def]
    blobs = Blobs(storage)
    channel = ids.now()
    orphan, lost_commit, young = ids.now(), ids.now(), ids.now()
    kept, dropped = ids.now(), ids.now()
    posted, retired_live, retired_gone = ids.now(), ids.now(), ids.now()

    async def go() -> None:
        for blob in (orphan, lost_commit, young, kept, dropped):
            await blobs.put(channel, blob, blob.to_bytes(8, "big"), None)
        # lost_commit's message was written, but its commit never ran
        await storage.create_message(_message(channel, posted, (lost_commit, "f")))
        # kept and dropped were committed; their messages were then being deleted when
        # the node died: retired_live's delete never happened, retired_gone's did
        await storage.create_message(_message(channel, retired_live, (kept, "f")))
        await storage.create_message(_message(channel, retired_gone, (dropped, "f")))
        await blobs.commit(channel, kept, retired_live)
        await blobs.commit(channel, dropped, retired_gone)
        kept_bucket = await blobs.retire(channel, kept, retired_live)
        await blobs.retire(channel, dropped, retired_gone)
        await storage.delete_message(MessageDelete.now(channel, retired_gone))

        # within the grace nothing is touched (an upload or delete may still be running)
        await blobs.collect()
        assert await _journalled(storage, orphan)
        assert await storage.get_record(JOURNAL, kept_bucket, key_of(kept)) is not None

        await blobs.collect(grace_s=0)
        assert await blobs.head(channel, orphan) is None  # no message: deleted
        assert not await _journalled(storage, orphan)
        head = await blobs.head(channel, lost_commit)  # found its message: committed
        assert head is not None and head.message_id == posted
        assert await blobs.reachable(channel, lost_commit, "f") is not None
        assert not await _journalled(storage, lost_commit)
        assert await blobs.reachable(channel, kept, "f") is not None
        assert await storage.get_record(JOURNAL, kept_bucket, key_of(kept)) is None
        assert await blobs.head(channel, dropped) is None
        assert await blobs.head(channel, young) is None  # no message either

    aio.run(go())
