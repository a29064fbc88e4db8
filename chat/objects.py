"""Discord JSON objects built from storage models (user, member, role, channel, guild,
message)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from chat.permissions import DEFAULT_EVERYONE, Overwrite
from gateway.protocol import build_user
from storage.model import Channel, Guild, Member, Message, Role, User
from storage.snowflake import snowflake_ms


def iso(ms: int | None) -> str | None:
    """Unix milliseconds as Discord's ISO 8601 timestamp."""
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat()


def user_object(user: User) -> dict[str, Any]:
    return build_user(
        {
            "id": user.id,
            "username": user.username,
            "discriminator": user.discriminator,
            "global_name": user.global_name,
            "avatar": user.avatar,
            "bot": user.bot,
            "flags": user.flags,
            "public_flags": user.flags,
        }
    )


def member_object(member: Member, user: User | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "nick": member.nick,
        "roles": [str(r) for r in member.roles],
        "joined_at": iso(member.joined_at_ms),
        "deaf": member.deaf,
        "mute": member.mute,
        "flags": 0,
        "pending": False,
        "avatar": None,
        "premium_since": None,
        "communication_disabled_until": None,
    }
    if user is not None:
        out["user"] = user_object(user)
    return out


def role_object(role: Role) -> dict[str, Any]:
    return {
        "id": str(role.id),
        "name": role.name,
        "color": role.color,
        "hoist": role.hoist,
        "icon": None,
        "unicode_emoji": None,
        "position": role.position,
        "permissions": str(role.permissions),
        "managed": role.managed,
        "mentionable": role.mentionable,
        "flags": 0,
    }


def channel_object(channel: Channel, overwrites: Iterable[Overwrite] = ()) -> dict[str, Any]:
    """A guild channel's object; ``overwrites`` its permission overwrites (``chat.overwrites``)."""
    return {
        "id": str(channel.id),
        "type": channel.type,
        "guild_id": str(channel.guild_id),
        "name": channel.name,
        "position": channel.position,
        "topic": channel.topic,
        "nsfw": channel.nsfw,
        "parent_id": None if channel.parent_id is None else str(channel.parent_id),
        "permission_overwrites": [o.to_json() for o in overwrites],
        "last_message_id": None,
        "rate_limit_per_user": 0,
        "flags": 0,
    }


def guild_object(
    guild: Guild,
    channels: Iterable[Channel],
    roles: Iterable[Role],
    members: Iterable[tuple[Member, User | None]],
    *,
    joined_at_ms: int | None = None,
    overwrites: Mapping[int, Mapping[int, Overwrite]] | None = None,
) -> dict[str, Any]:
    """The full guild of GUILD_CREATE (``gateway.protocol.build_guild_create`` fills the rest);
    ``overwrites`` by channel id, then target id (``chat.overwrites.guild_overwrites``)."""
    member_list = [member_object(m, u) for m, u in members]
    role_list = [role_object(r) for r in roles]
    if not any(r["id"] == str(guild.id) for r in role_list):
        role_list.insert(0, role_object(Role(guild.id, guild.id, "@everyone",
                                             permissions=DEFAULT_EVERYONE)))
    return {
        "id": guild.id,
        "name": guild.name,
        "owner_id": guild.owner_id,
        "icon": guild.icon,
        "description": guild.description,
        "features": list(guild.features),
        "joined_at": iso(joined_at_ms),
        "member_count": len(member_list),
        "members": member_list,
        "channels": [channel_object(c, (overwrites or {}).get(c.id, {}).values())
                     for c in channels],
        "roles": role_list,
    }


def message_object(
    message: Message,
    author: dict[str, Any],
    member: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A message object; ``member`` (without ``user``) is added for MESSAGE_CREATE.
    ``message.extra`` overrides: there a message keeps its ``mentions`` as user objects
    (each with its ``member`` in a guild, as MESSAGE_CREATE has them), its reply's
    ``message_reference`` and ``referenced_message`` (chat/compose.py)."""
    out: dict[str, Any] = {
        "id": str(message.id),
        "channel_id": str(message.channel_id),
        "author": author,
        "content": message.content,
        "timestamp": iso(snowflake_ms(message.id)),
        "edited_timestamp": iso(message.edited_at_ms),
        "tts": message.tts,
        "mention_everyone": message.mention_everyone,
        "mentions": [],  # the user objects are in ``extra`` (``message.mentions``: ids)
        "mention_roles": [str(r) for r in message.mention_roles],
        "attachments": list(message.attachments),
        "embeds": list(message.embeds),
        "pinned": message.pinned,
        "type": message.type,
        "flags": message.flags,
        "components": [],
    }
    if message.guild_id is not None:
        out["guild_id"] = str(message.guild_id)
    if message.nonce is not None:
        out["nonce"] = message.nonce
    if member is not None:
        out["member"] = {k: v for k, v in member.items() if k != "user"}
    if message.extra:
        out.update(message.extra)
    return out
