"""Discord's permission bits and arithmetic: what a member may do in a guild, and in
one of its channels once the channel's permission overwrites apply.

``base_permissions`` is the guild level (the @everyone role, the member's roles; the
owner and ADMINISTRATOR get everything); ``channel_permissions`` applies a channel's
overwrites on top in Discord's documented order (@everyone's, then the member's roles'
— every deny, then every allow —, then the member's own) and then the implicit rules:
no VIEW_CHANNEL leaves nothing, no SEND_MESSAGES leaves none of what rides on a send.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from storage.model import Guild, Member, Role

CREATE_INSTANT_INVITE = 1 << 0
KICK_MEMBERS = 1 << 1
BAN_MEMBERS = 1 << 2
ADMINISTRATOR = 1 << 3
MANAGE_CHANNELS = 1 << 4
MANAGE_GUILD = 1 << 5
ADD_REACTIONS = 1 << 6
VIEW_CHANNEL = 1 << 10
SEND_MESSAGES = 1 << 11
SEND_TTS_MESSAGES = 1 << 12
MANAGE_MESSAGES = 1 << 13
EMBED_LINKS = 1 << 14
ATTACH_FILES = 1 << 15
READ_MESSAGE_HISTORY = 1 << 16
MENTION_EVERYONE = 1 << 17
USE_EXTERNAL_EMOJIS = 1 << 18
MANAGE_ROLES = 1 << 28
MANAGE_WEBHOOKS = 1 << 29
USE_APPLICATION_COMMANDS = 1 << 31
ALL_PERMISSIONS = (1 << 51) - 1
#: What @everyone gets when a guild has no @everyone role stored, and in a new guild
#: (Discord's defaults, ATTACH_FILES among them: uploads need it).
DEFAULT_EVERYONE = VIEW_CHANNEL | SEND_MESSAGES | READ_MESSAGE_HISTORY | ADD_REACTIONS \
    | EMBED_LINKS | ATTACH_FILES
#: What a member without SEND_MESSAGES in a channel cannot do there either (Discord's
#: "implicit permissions": they ride on a send).
NEEDS_SEND = MENTION_EVERYONE | SEND_TTS_MESSAGES | ATTACH_FILES | EMBED_LINKS

#: An overwrite's ``type``: for a role (the guild's id: @everyone) or for one member.
ROLE_OVERWRITE = 0
MEMBER_OVERWRITE = 1


@dataclass(frozen=True, slots=True)
class Overwrite:
    """One channel's permission overwrite for a role or a member (``id`` names it)."""

    id: int
    type: int
    allow: int = 0
    deny: int = 0

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Overwrite:
        """From ``to_json``'s form (as it crosses nodes)."""
        return cls(int(obj["id"]), int(obj["type"]), int(obj["allow"]), int(obj["deny"]))

    def to_json(self) -> dict[str, Any]:
        """Discord's overwrite object (``permission_overwrites`` of a channel)."""
        return {"id": str(self.id), "type": self.type, "allow": str(self.allow),
                "deny": str(self.deny)}


def base_permissions(guild: Guild, roles: dict[int, Role], member: Member) -> int:
    """Guild-level permissions of ``member`` (before any channel's overwrites)."""
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


def apply_overwrites(base: int, guild_id: int, user_id: int, member_roles: Iterable[int],
                     overwrites: Mapping[int, Overwrite]) -> int:
    """``base`` (guild-level) after a channel's ``overwrites`` (by target id), in
    Discord's order, without the implicit rules (``implicit``). The roles' overwrites
    are one step: a deny of one role never beats an allow of another."""
    if base & ADMINISTRATOR:
        return ALL_PERMISSIONS
    if not overwrites:
        return base
    perms = base
    everyone = overwrites.get(guild_id)
    if everyone is not None and everyone.type == ROLE_OVERWRITE:
        perms = (perms & ~everyone.deny) | everyone.allow
    allow = deny = 0
    for role_id in member_roles:
        if role_id == guild_id:
            continue  # @everyone's was applied first
        overwrite = overwrites.get(role_id)
        if overwrite is not None and overwrite.type == ROLE_OVERWRITE:
            allow |= overwrite.allow
            deny |= overwrite.deny
    perms = (perms & ~deny) | allow
    mine = overwrites.get(user_id)
    if mine is not None and mine.type == MEMBER_OVERWRITE:
        perms = (perms & ~mine.deny) | mine.allow
    return perms


def implicit(perms: int) -> int:
    """Discord's implicit permissions in a text channel: without VIEW_CHANNEL nothing
    is left; without SEND_MESSAGES, none of ``NEEDS_SEND``."""
    if not perms & VIEW_CHANNEL:
        return 0
    if not perms & SEND_MESSAGES:
        return perms & ~NEEDS_SEND
    return perms


def in_channel(base: int, guild_id: int, user_id: int, member_roles: Iterable[int],
               overwrites: Mapping[int, Overwrite]) -> int:
    """What a member with guild-level ``base`` may do in a channel with ``overwrites``
    (everything for the owner and administrators, whom overwrites do not touch)."""
    if base & ADMINISTRATOR:
        return ALL_PERMISSIONS
    return implicit(apply_overwrites(base, guild_id, user_id, member_roles, overwrites))


def channel_permissions(guild: Guild, roles: dict[int, Role], member: Member,
                        overwrites: Mapping[int, Overwrite]) -> int:
    """What ``member`` may do in a channel of ``guild`` with ``overwrites``."""
    return in_channel(base_permissions(guild, roles, member), guild.id, member.user_id,
                      member.roles, overwrites)


def overwritten_allow(guild_id: int, user_id: int, member_roles: Iterable[int],
                      overwrites: Mapping[int, Overwrite], bit: int) -> bool:
    """Whether one of the overwrites that apply to the member allows ``bit`` explicitly
    (Discord lets a MANAGE_ROLES granted in the channel itself edit its overwrites
    beyond the editor's guild-level permissions)."""
    for target in (guild_id, *member_roles, user_id):
        overwrite = overwrites.get(target)
        if overwrite is not None and overwrite.allow & bit \
                and overwrite.type == (MEMBER_OVERWRITE if target == user_id
                                       else ROLE_OVERWRITE):
            return True
    return False
