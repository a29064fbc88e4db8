"""Channel webhooks in the records store (``chat.webhooks``) on both backends: saved
and listed by channel and by guild, moved, deleted; a listing whose webhook is gone
(a save or delete cut short) is skipped, never an error."""

from __future__ import annotations

from chat.webhooks import (
    BY_CHANNEL,
    BY_GUILD,
    Webhook,
    delete_webhook,
    listed_webhooks,
    load_webhook,
    new_token,
    save_webhook,
)
from storage.base import Storage
from storage.records import key_of


def test_webhooks_saved_listed_moved_and_deleted(aio, storage: Storage, ids) -> None:  # type: ignore[no-untyped-def]
    guild, channel, other = ids.now(), ids.now(), ids.now()

    def hook(name: str) -> Webhook:
        return Webhook(ids.now(), guild, channel, name, new_token()[1], 1, 1)

    async def go() -> None:
        first, second = hook("a"), hook("b")
        for webhook in (first, second):
            await save_webhook(storage, webhook)
        assert await load_webhook(storage, first.id) == first
        assert await listed_webhooks(storage, BY_CHANNEL, channel) == [first, second]
        assert await listed_webhooks(storage, BY_GUILD, guild) == [first, second]

        first.channel_id, first.name = other, "moved"
        await save_webhook(storage, first, moved_from=channel)
        assert await listed_webhooks(storage, BY_CHANNEL, channel) == [second]
        assert await listed_webhooks(storage, BY_CHANNEL, other) == [first]
        assert (await load_webhook(storage, first.id)).name == "moved"  # type: ignore[union-attr]

        await delete_webhook(storage, second)
        assert await load_webhook(storage, second.id) is None
        assert await listed_webhooks(storage, BY_GUILD, guild) == [first]
        # a listing left behind names no webhook (or one elsewhere): skipped
        await storage.put_record(BY_CHANNEL, channel, key_of(second.id), {})
        await storage.put_record(BY_CHANNEL, channel, key_of(first.id), {})
        assert await listed_webhooks(storage, BY_CHANNEL, channel) == []

    aio.run(go())
