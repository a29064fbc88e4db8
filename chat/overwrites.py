"""Channels' permission overwrites: what a REST body may set (``overwrite_from_body``)
and where they are stored: records of kind ``"overwrite"`` scoped by guild, keyed
``channel:target`` (zero-padded), so one listing reads a whole guild's (a guild actor's
load, GUILD_CREATE) and a prefix one channel's (a REST call's check).

Each overwrite is its own record, so two editors of different targets of one channel
never overwrite each other's change; the same target is last write wins, as on Discord.
"""

from __future__ import annotations

from typing import Any

from chat.permissions import ALL_PERMISSIONS, MEMBER_OVERWRITE, ROLE_OVERWRITE, Overwrite
from chat.validation import FieldError
from storage.base import Storage
from storage.records import MAX_LIST, key_of
from storage.snowflake import parse_snowflake

KIND = "overwrite"

#: by channel id, then by target id
GuildOverwrites = dict[int, dict[int, Overwrite]]


#: the largest permission value a body may carry (Discord's 64-bit field); bits past
#: the known permissions are dropped
MAX_BITS = (1 << 64) - 1


def _bits(name: str, value: Any) -> int | FieldError:
    if value is None:
        return 0
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 20:
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return FieldError(name, "NUMBER_TYPE_COERCE",
                          f"Value \"{str(value)[:32]}\" is not int.")
    if value > MAX_BITS:
        return FieldError(name, "NUMBER_TYPE_MAX",
                          f"int value should be less than or equal to {MAX_BITS}.")
    return value & ALL_PERMISSIONS


def overwrite_from_body(target_id: int, body: dict[str, Any]) -> Overwrite | FieldError:
    """The overwrite a ``PUT /channels/{id}/permissions/{target_id}`` body describes:
    ``type`` 0 (role) or 1 (member), required; ``allow`` and ``deny`` permission
    integers as strings (or numbers), ``"0"`` when absent; else the field at fault."""
    kind = body.get("type")
    if kind is None:
        return FieldError("type", "BASE_TYPE_REQUIRED", "This field is required")
    if isinstance(kind, str) and kind in ("0", "1"):
        kind = int(kind)
    if isinstance(kind, bool) or kind not in (ROLE_OVERWRITE, MEMBER_OVERWRITE):
        return FieldError("type", "BASE_TYPE_CHOICES", "Value must be one of {0, 1}.")
    allow = _bits("allow", body.get("allow"))
    if isinstance(allow, FieldError):
        return allow
    deny = _bits("deny", body.get("deny"))
    if isinstance(deny, FieldError):
        return deny
    return Overwrite(target_id, kind, allow, deny)


#: most overwrites a channel may be created with (``overwrites_from_body``)
MAX_CREATE_OVERWRITES = 100


def overwrites_from_body(raw: Any, field: str = "permission_overwrites"
                         ) -> list[Overwrite] | FieldError:
    """A channel creation's ``permission_overwrites``: a list of overwrite objects (``id``
    a snowflake, then as ``overwrite_from_body``), each target once; else the field at
    fault with its path (``permission_overwrites.2.allow``)."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        return FieldError(field, "BASE_TYPE_ARRAY", "Could not interpret the value as a list.")
    if len(raw) > MAX_CREATE_OVERWRITES:
        return FieldError(field, "BASE_TYPE_MAX_LENGTH",
                          f"Must be {MAX_CREATE_OVERWRITES} or fewer in length.")
    out: dict[int, Overwrite] = {}
    for i, item in enumerate(raw):
        path = f"{field}.{i}"
        if not isinstance(item, dict):
            return FieldError(path, "MODEL_TYPE_CONVERT", "Only dictionaries may be used in a "
                                                          "ModelType")
        target = item.get("id")
        target_id = None if isinstance(target, bool) else parse_snowflake(target)
        if target_id is None:
            return FieldError(f"{path}.id", "NUMBER_TYPE_COERCE",
                              f"Value \"{str(target)[:32]}\" is not snowflake.")
        parsed = overwrite_from_body(target_id, item)
        if isinstance(parsed, FieldError):
            return FieldError(f"{path}.{parsed.field}", parsed.code, parsed.message)
        out[target_id] = parsed  # a target named twice: the later wins, as in a PUT
    return list(out.values())


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


def channel_records(channel_id: int) -> tuple[str, str]:
    """A channel's overwrites as ``Storage.channel_access``'s ``guild_records`` (kind and
    key prefix in the guild's scope): read in the same round trip as the rest of a
    channel call's check."""
    return KIND, key_of(channel_id) + ":"


async def from_records(storage: Storage, guild_id: int, channel_id: int,
                       records: list[tuple[str, dict]]) -> dict[int, Overwrite]:
    """The channel's overwrites from ``channel_access``'s records (read again, in pages,
    in the unlikely case they filled the page)."""
    if len(records) >= MAX_LIST:
        return await channel_overwrites(storage, guild_id, channel_id)
    return {o.id: o for _, o in (_overwrite(key, value) for key, value in records)}


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
