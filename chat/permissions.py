"""Discord's permission bits and arithmetic: what a member may do in a guild."""

from __future__ import annotations

from storage.model import Guild, Member, Role

ADMINISTRATOR = 1 << 3
VIEW_CHANNEL = 1 << 10
SEND_MESSAGES = 1 << 11
MANAGE_MESSAGES = 1 << 13
READ_MESSAGE_HISTORY = 1 << 16
ALL_PERMISSIONS = (1 << 51) - 1
#: What @everyone gets when a guild has no @everyone role stored (Discord's defaults).
DEFAULT_EVERYONE = VIEW_CHANNEL | SEND_MESSAGES | READ_MESSAGE_HISTORY | (1 << 6) | (1 << 14)


def base_permissions(guild: Guild, roles: dict[int, Role], member: Member) -> int:
    """Guild-level permissions of ``member`` (no channel overwrites in this model)."""
    if member.user_id == guild.owner_id:
        return ALL_PERMISSIONS
    everyone = roles.get(guild.id)
    perms = DEFAULT_EVERYONE if everyone is None else everyone.permissions
    for role_id in member.roles:
        role = roles.get(role_id)
        if role is not None:
            perms |= role.permissions
    if perms & ADMINISTRATOR:
        return ALL_PERMISSIONS
    return perms
