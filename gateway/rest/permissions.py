"""Channel permission overwrites: ``PUT`` and ``DELETE /channels/{id}/permissions/{target}``.

Discord's rules: the caller needs MANAGE_ROLES in the channel (its overwrites applied;
without VIEW_CHANNEL 403 50001 first, as for every channel call), and may allow or deny
only permissions it holds in the guild — or, when MANAGE_ROLES is granted to it by an
overwrite of this very channel, the ones it holds in the channel (403 50013 otherwise).
A role overwrite names a role of the guild (the guild's id: @everyone), a member
overwrite a member (404 10011 / 10007). Both answer 204 once stored; the guild actor
then applies the change (who gets the channel's events) and dispatches CHANNEL_UPDATE.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from aiohttp import web

from actors.registry import Route
from chat.overwrites import (
    delete_overwrite,
    overwrite_from_body,
    overwrites_from_body,
    put_overwrite,
)
from chat.permissions import (
    ADMINISTRATOR,
    MANAGE_ROLES,
    ROLE_OVERWRITE,
    Overwrite,
    base_permissions,
    overwritten_allow,
)
from chat.validation import FieldError
from gateway.messages import OverwriteChanged
from gateway.rest.errors import (
    MISSING_PERMISSIONS,
    PREFIX,
    HTTPDiscordError,
    invalid_form,
    json_body,
    path_id,
)

if TYPE_CHECKING:
    from gateway.rest.api import Api, ChannelAccess
    from storage.base import Storage
    from storage.model import Guild, Member

UNKNOWN_MEMBER = 10007
CANNOT_EXECUTE_IN_DM = 50003
UNKNOWN_OVERWRITE = 10009
UNKNOWN_ROLE = 10011


class OverwritesApi:
    def __init__(self, api: Api) -> None:
        self.api = api
        self.storage = api.storage
        self.ctx = api.ctx

    async def access(self, request: web.Request) -> tuple[ChannelAccess, Guild, Member]:
        """The caller's access to the channel with MANAGE_ROLES there; a DM has no
        overwrites (403 50003, which ``channel_access`` answers for a DM already)."""
        access = await self.api.channel_access(request, MANAGE_ROLES)
        if access.guild is None or access.member is None:
            raise HTTPDiscordError(403, CANNOT_EXECUTE_IN_DM,
                                   "Cannot execute action on a DM channel")
        return access, access.guild, access.member

    async def put_permission(self, request: web.Request) -> web.Response:
        access, guild, member = await self.access(request)
        target_id = path_id(request, "overwrite_id", UNKNOWN_OVERWRITE, "Unknown Overwrite")
        parsed = overwrite_from_body(target_id, await json_body(request))
        if isinstance(parsed, FieldError):
            raise invalid_form(parsed)
        if parsed.type == ROLE_OVERWRITE:
            if target_id != guild.id and target_id not in access.roles:
                raise HTTPDiscordError(404, UNKNOWN_ROLE, "Unknown Role")
        elif await self.storage.get_member(guild.id, target_id) is None:
            raise HTTPDiscordError(404, UNKNOWN_MEMBER, "Unknown Member")
        held = access.permissions if overwritten_allow(
            guild.id, member.user_id, member.roles, access.overwrites, MANAGE_ROLES) \
            else base_permissions(guild, access.roles, member)
        if (parsed.allow | parsed.deny) & ~held:
            raise HTTPDiscordError(403, MISSING_PERMISSIONS, "Missing Permissions")
        await put_overwrite(self.storage, guild.id, access.channel.id, parsed)
        self._changed(access, target_id, parsed.to_json())
        return web.Response(status=204)

    async def delete_permission(self, request: web.Request) -> web.Response:
        access, guild, _ = await self.access(request)
        target_id = path_id(request, "overwrite_id", UNKNOWN_OVERWRITE, "Unknown Overwrite")
        channel = access.channel
        if target_id not in access.overwrites:
            raise HTTPDiscordError(404, UNKNOWN_OVERWRITE, "Unknown Overwrite")
        await delete_overwrite(self.storage, guild.id, channel.id, target_id)
        self._changed(access, target_id, None)
        return web.Response(status=204)

    def _changed(self, access: ChannelAccess, target_id: int, overwrite: dict | None) -> None:
        """Stored: GUILD_CREATE reads the overwrites again, and the guild actor applies
        the change and dispatches CHANNEL_UPDATE."""
        guild_id = access.channel.guild_id
        self.ctx.identity.forget_guild(guild_id)
        self.api.gateway.base.tell_from_loop(self.ctx.registry, Route(
            "guild", guild_id, OverwriteChanged(access.channel, target_id, overwrite)))


async def creation_overwrites(storage: Storage, guild: Guild, held: int, raw: Any
                              ) -> list[Overwrite]:
    """A new channel's ``permission_overwrites`` (``POST /guilds/{id}/channels``), checked
    as Discord does: targets as a PUT's, only permissions the creator holds in the guild
    (``held``), and MANAGE_ROLES only by an administrator (403 50013)."""
    parsed = overwrites_from_body(raw)
    if isinstance(parsed, FieldError):
        raise invalid_form(parsed)
    if not parsed:
        return parsed
    roles = {r.id for r in await storage.roles_for_guild(guild.id)} | {guild.id}
    for overwrite in parsed:
        bits = overwrite.allow | overwrite.deny
        if bits & ~held or bits & MANAGE_ROLES and not held & ADMINISTRATOR:
            raise HTTPDiscordError(403, MISSING_PERMISSIONS, "Missing Permissions")
        if overwrite.type == ROLE_OVERWRITE:
            if overwrite.id not in roles:
                raise HTTPDiscordError(404, UNKNOWN_ROLE, "Unknown Role")
        elif await storage.get_member(guild.id, overwrite.id) is None:
            raise HTTPDiscordError(404, UNKNOWN_MEMBER, "Unknown Member")
    return parsed


async def store_overwrites(storage: Storage, guild_id: int, channel_id: int,
                           overwrites: list[Overwrite]) -> None:
    """A new channel's overwrites, stored before the channel itself: a channel is never
    seen without the overwrites that hide it."""
    await asyncio.gather(*(put_overwrite(storage, guild_id, channel_id, o)
                           for o in overwrites))


def add_routes(app: web.Application, api: Api) -> None:
    """Register this module's routes."""
    overwrites = OverwritesApi(api)
    path = f"{PREFIX}/channels/{{channel_id}}/permissions/{{overwrite_id}}"
    app.router.add_put(path, overwrites.put_permission)
    app.router.add_delete(path, overwrites.delete_permission)
