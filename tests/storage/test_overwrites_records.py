"""chat.overwrites on both backends: a channel's overwrites and a guild's, each target
its own record (replaced by target, deleted one by one or with the channel)."""

from __future__ import annotations

import pytest

import chat.overwrites
from chat.overwrites import (
    channel_overwrites,
    channel_records,
    delete_channel_overwrites,
    delete_overwrite,
    from_records,
    guild_overwrites,
    put_overwrite,
)
from chat.permissions import MEMBER_OVERWRITE, ROLE_OVERWRITE, VIEW_CHANNEL, Overwrite
from storage.base import Storage
from storage.model import Channel, Guild, Member, User


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


def test_channel_access_reads_the_channels_overwrites(aio, storage: Storage, ids) -> None:  # type: ignore[no-untyped-def]
    """``channel_access`` with ``guild_records``: the channel's overwrites in the same
    read (SQLite: the same hop), not another channel's."""
    user, guild, channel, other = ids.now(), ids.now(), ids.now(), ids.now()
    token = f"t.{user}"
    mine = Overwrite(user, MEMBER_OVERWRITE, 0, VIEW_CHANNEL)

    async def go() -> None:
        await storage.put_user(User(user, "u"))
        await storage.put_token(token, user)
        await storage.put_guild(Guild(guild, "g", user))
        await storage.put_channel(Channel(channel, guild, "c"))
        await storage.put_member(Member(guild, user, 1))
        await put_overwrite(storage, guild, channel, mine)
        await put_overwrite(storage, guild, other, Overwrite(guild, ROLE_OVERWRITE, 0, 1))
        *_, records = await storage.channel_access(token, channel, channel_records(channel))
        assert await from_records(storage, guild, channel, records) == {user: mine}
        found = await storage.channel_access(token, channel)
        assert found[1] == Channel(channel, guild, "c") and found[-1] == []
        assert (await storage.channel_access(token, other, channel_records(other)))[-1] == []

    aio.run(go())
