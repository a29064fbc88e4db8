"""Channels' permission overwrites in storage: records of kind ``"overwrite"`` scoped by
guild, keyed ``channel:target`` (zero-padded), so one listing reads a whole guild's (a
guild actor's load, GUILD_CREATE) and a prefix one channel's (a REST call's check).

Each overwrite is its own record, so two editors of different targets of one channel
never overwrite each other's change; the same target is last write wins, as on Discord.
"""

from __future__ import annotations

from chat.permissions import ALL_PERMISSIONS, Overwrite
from storage.base import Storage
from storage.records import MAX_LIST, key_of

KIND = "overwrite"

#: by channel id, then by target id
GuildOverwrites = dict[int, dict[int, Overwrite]]


def _overwrite(key: str, value: dict) -> tuple[int, Overwrite]:
    channel_id, target_id = (int(part) for part in key.split(":"))
    return channel_id, Overwrite(target_id, int(value["type"]),
                                 int(value["allow"]) & ALL_PERMISSIONS,
                                 int(value["deny"]) & ALL_PERMISSIONS)


async def _listing(storage: Storage, guild_id: int, prefix: str
                   ) -> list[tuple[int, Overwrite]]:
    out: list[tuple[int, Overwrite]] = []
    after: str | None = None
    while True:
        page = await storage.list_records(KIND, guild_id, prefix=prefix, after=after,
                                          limit=MAX_LIST)
        out += (_overwrite(key, value) for key, value in page)
        if len(page) < MAX_LIST:
            return out
        after = page[-1][0]


async def channel_overwrites(storage: Storage, guild_id: int, channel_id: int
                             ) -> dict[int, Overwrite]:
    """One channel's overwrites, by target id."""
    return {o.id: o for _, o in await _listing(storage, guild_id, key_of(channel_id) + ":")}


async def guild_overwrites(storage: Storage, guild_id: int) -> GuildOverwrites:
    """Every channel's overwrites in the guild (channels without any absent)."""
    out: GuildOverwrites = {}
    for channel_id, overwrite in await _listing(storage, guild_id, ""):
        out.setdefault(channel_id, {})[overwrite.id] = overwrite
    return out


async def put_overwrite(storage: Storage, guild_id: int, channel_id: int,
                        overwrite: Overwrite) -> None:
    """Create or replace the overwrite for ``overwrite.id`` in the channel."""
    await storage.put_record(KIND, guild_id, key_of(channel_id, overwrite.id),
                             {"type": overwrite.type, "allow": overwrite.allow,
                              "deny": overwrite.deny})


async def delete_overwrite(storage: Storage, guild_id: int, channel_id: int,
                           target_id: int) -> None:
    await storage.delete_record(KIND, guild_id, key_of(channel_id, target_id))


async def delete_channel_overwrites(storage: Storage, guild_id: int, channel_id: int) -> None:
    """A deleted channel's overwrites go with it."""
    await storage.delete_records(KIND, guild_id, key_of(channel_id) + ":")
