"""Application flags (migration 3) on both backends: none stored for a new id, set and
replaced by a put; a missing row counts as the default bot flags."""

from __future__ import annotations

from storage.applications import (
    DEFAULT_BOT_FLAGS,
    GATEWAY_MESSAGE_CONTENT,
    GATEWAY_PRESENCE_LIMITED,
    effective_flags,
)
from storage.base import Storage


def test_application_flags_round_trip(aio, storage: Storage, ids) -> None:  # type: ignore[no-untyped-def]
    app, other = ids.now(), ids.now()

    async def go() -> None:
        assert await storage.application_flags(app) is None
        await storage.put_application_flags(app, GATEWAY_MESSAGE_CONTENT)
        assert await storage.application_flags(app) == GATEWAY_MESSAGE_CONTENT
        await storage.put_application_flags(app, 0)  # replaced, and 0 is not "none"
        assert await storage.application_flags(app) == 0
        await storage.put_application_flags(other, GATEWAY_PRESENCE_LIMITED)
        assert await storage.application_flags(other) == GATEWAY_PRESENCE_LIMITED
        assert await storage.application_flags(app) == 0

    aio.run(go())


def test_a_bot_without_stored_flags_has_the_default() -> None:
    assert effective_flags(None) == DEFAULT_BOT_FLAGS
    assert effective_flags(0) == 0
