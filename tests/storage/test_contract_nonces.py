"""The storage contract for ``enforce_nonce`` claims (issue 10, finding 7), on both backends.

A create with ``claim_nonce`` records (channel, author, nonce) -> its id in the same
apply as the message; ``find_nonce`` answers it for ``NONCE_WINDOW_S`` after the
message's creation, per channel and author, and the claim is as idempotent as the create.
"""

from __future__ import annotations

import time

from storage.base import Storage
from storage.model import NONCE_WINDOW_S, Message, MessageCreate


def claim(channel: int, mid: int, nonce: str, author: int = 7, text: str = "hi") -> MessageCreate:
    return MessageCreate(Message(channel_id=channel, id=mid, author_id=author, content=text,
                                 nonce=nonce), claim_nonce=True)


def test_a_claimed_nonce_is_found_per_channel_and_author(aio, storage: Storage, ids) -> None:  # type: ignore[no-untyped-def]
    channel, other_channel = ids.now(-1000), ids.now(-1000)
    first = claim(channel, ids.now(), "n-1")
    plain = MessageCreate(Message(channel_id=channel, id=ids.now(), author_id=7, nonce="n-2"))

    async def go() -> None:
        assert await storage.apply([first, plain]) == [None, None]
        assert await storage.find_nonce(channel, 7, "n-1") == first.message_id
        assert await storage.apply([first]) == [None]  # a redelivery changes nothing
        assert await storage.find_nonce(channel, 7, "n-1") == first.message_id
        # another author, another channel, an unclaimed nonce: nothing
        assert await storage.find_nonce(channel, 8, "n-1") is None
        assert await storage.find_nonce(other_channel, 7, "n-1") is None
        assert await storage.find_nonce(channel, 7, "n-2") is None
        assert (await storage.get_message(channel, first.message_id)).nonce == "n-1"

    aio.run(go())


def test_a_claim_is_forgotten_after_its_window(aio, storage: Storage, ids) -> None:  # type: ignore[no-untyped-def]
    now = int(time.time() * 1000)
    channel = ids.at(now - NONCE_WINDOW_S * 1000 - 60_000)
    # created just past the window: its claim has expired (or is never written)
    stale = claim(channel, ids.at(now - NONCE_WINDOW_S * 1000 - 2000), "old")
    fresh = claim(channel, ids.at(now - NONCE_WINDOW_S * 1000 + 60_000), "recent")

    async def go() -> None:
        assert await storage.apply([stale, fresh]) == [None, None]
        assert await storage.find_nonce(channel, 7, "old") is None
        assert await storage.find_nonce(channel, 7, "recent") == fresh.message_id
        # the stale message itself is stored: only the claim has a window
        assert await storage.get_message(channel, stale.message_id) is not None

    aio.run(go())


def test_a_claim_with_a_poison_nonce_fails_alone(aio, storage: Storage, ids) -> None:  # type: ignore[no-untyped-def]
    channel = ids.now(-1000)
    bad = claim(channel, ids.now(), "x\udfff")
    good = claim(channel, ids.now(), "fine")

    async def go() -> None:
        outcomes = await storage.apply([bad, good])
        assert outcomes[1] is None and storage.rejection(outcomes[0]) is not None
        assert await storage.find_nonce(channel, 7, "fine") == good.message_id

    aio.run(go())
