"""chat.overwrites on both backends: a channel's overwrites and a guild's, each target
its own record (replaced by target, deleted one by one or with the channel)."""

from __future__ import annotations

import pytest

import chat.overwrites
from chat.overwrites import (
    channel_overwrites,
    delete_channel_overwrites,
    delete_overwrite,
    guild_overwrites,
    put_overwrite,
)
from chat.permissions import MEMBER_OVERWRITE, ROLE_OVERWRITE, VIEW_CHANNEL, Overwrite
from storage.base import Storage


def test_overwrites_by_channel_and_guild(aio, storage: Storage, ids,  # type: ignore[no-untyped-def]
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(chat.overwrites, "MAX_LIST", 2)  # listings take several pages
    guild, first, second = ids.now(), ids.now(), ids.now()
    everyone = Overwrite(guild, ROLE_OVERWRITE, 0, VIEW_CHANNEL)
    member = Overwrite(7, MEMBER_OVERWRITE, VIEW_CHANNEL | (1 << 50), 0)
    role = Overwrite(1 << 60, ROLE_OVERWRITE, 1, 2)

    async def go() -> None:
        assert await channel_overwrites(storage, guild, first) == {}
        for o in (everyone, member, role):
            await put_overwrite(storage, guild, first, o)
        await put_overwrite(storage, guild, second, member)
        assert await channel_overwrites(storage, guild, first) == {
            guild: everyone, 7: member, 1 << 60: role}
        replaced = Overwrite(7, MEMBER_OVERWRITE, 0, VIEW_CHANNEL)
        await put_overwrite(storage, guild, first, replaced)
        assert await guild_overwrites(storage, guild) == {
            first: {guild: everyone, 7: replaced, 1 << 60: role}, second: {7: member}}
        await delete_overwrite(storage, guild, first, guild)
        assert set(await channel_overwrites(storage, guild, first)) == {7, 1 << 60}
        await delete_channel_overwrites(storage, guild, first)
        assert await guild_overwrites(storage, guild) == {second: {7: member}}

    aio.run(go())
