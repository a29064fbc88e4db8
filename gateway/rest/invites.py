"""Invites: how a user joins a guild by their own choice (Discord's invite endpoints).

A member with CREATE_INSTANT_INVITE (not in @everyone's defaults: the owner, or whom the
owner lets) creates an invite to a channel (``POST /channels/{id}/invites``); anyone
may look it up (``GET /invites/{code}``); a user accepts it with their own token
(``POST /invites/{code}``, the call Discord's own client makes) and becomes a member.
The other consent path is the OAuth2 grant for ``PUT /guilds/{g}/members/{u}``
(``gateway.rest.guilds``); an operator adds members directly with ``greenroom admin
add-member``.
"""

from __future__ import annotations

import re
import secrets
import string
import time
from typing import Any

from aiohttp import web

from chat.objects import iso, user_object
from gateway.rest.errors import (
    INVALID_FORM_BODY,
    PREFIX,
    UNKNOWN_GUILD,
    HTTPDiscordError,
    json_body,
    json_response,
    request_token,
)
from gateway.rest.guilds import CREATE_INSTANT_INVITE, MoreApi
from storage.invites import Invite
from storage.model import Channel, Guild, User

UNKNOWN_INVITE = 10006
#: Discord's bounds: ``max_age`` 0 (never) to 7 days, ``max_uses`` 0 (any) to 100.
MAX_AGE_S = 604_800
MAX_USES = 100
_CODE = re.compile(r"[A-Za-z0-9-]{2,32}")
_ALPHABET = string.ascii_letters + string.digits


def _now_ms() -> int:
    return int(time.time() * 1000)


def _bounded(body: dict[str, Any], field: str, default: int, high: int) -> int:
    value = body.get(field, default)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= high:
        raise HTTPDiscordError(400, INVALID_FORM_BODY, "Invalid Form Body", {field: {
            "_errors": [{"code": "NUMBER_TYPE_MAX",
                         "message": f"int value should be between 0 and {high}."}]}})
    return value


def invite_object(invite: Invite, guild: Guild, channel: Channel, inviter: User | None,
                  *, metadata: bool) -> dict[str, Any]:
    """Discord's invite object; ``metadata`` (uses, limits, creation) for its creator."""
    obj: dict[str, Any] = {
        "type": 0,
        "code": invite.code,
        "guild_id": str(guild.id),
        "guild": {"id": str(guild.id), "name": guild.name, "icon": guild.icon,
                  "description": guild.description, "features": list(guild.features),
                  "splash": None, "banner": None, "verification_level": 0,
                  "vanity_url_code": None, "nsfw_level": 0},
        "channel": {"id": str(channel.id), "type": channel.type, "name": channel.name},
        "inviter": user_object(inviter) if inviter is not None else None,
        "expires_at": iso(invite.expires_at_ms),
    }
    if metadata:
        obj.update(uses=invite.uses, max_uses=invite.max_uses, max_age=invite.max_age_s,
                   temporary=False, created_at=iso(invite.created_at_ms))
    return obj


class InviteApi:
    def __init__(self, more: MoreApi) -> None:
        self.more = more
        self.api = more.api
        self.storage = more.storage

    async def post_invite(self, request: web.Request) -> web.Response:
        user, channel, _ = await self.api.authorised_channel(request, CREATE_INSTANT_INVITE)
        body = await json_body(request) if request.can_read_body else {}
        invite = Invite("".join(secrets.choice(_ALPHABET) for _ in range(10)),
                        channel.guild_id, channel.id, user.id, _now_ms(),
                        _bounded(body, "max_age", 86_400, MAX_AGE_S),
                        _bounded(body, "max_uses", 0, MAX_USES))
        guild = await self.storage.get_guild(channel.guild_id)
        if guild is None:
            raise HTTPDiscordError(404, UNKNOWN_GUILD, "Unknown Guild")
        await self.storage.put_invite(invite)
        return json_response(invite_object(invite, guild, channel, user, metadata=True))

    async def _resolve(self, invite: Invite | None
                       ) -> tuple[Invite, Guild, Channel, User | None]:
        """The invite's guild, channel and inviter; Unknown Invite if any is gone."""
        if invite is None:
            raise HTTPDiscordError(404, UNKNOWN_INVITE, "Unknown Invite")
        guild = await self.storage.get_guild(invite.guild_id)
        channel = await self.storage.get_channel(invite.channel_id)
        if guild is None or channel is None:
            raise HTTPDiscordError(404, UNKNOWN_INVITE, "Unknown Invite")
        return invite, guild, channel, await self.storage.get_user(invite.inviter_id)

    def _code(self, request: web.Request) -> str:
        code = request.match_info["code"]
        if not _CODE.fullmatch(code):
            raise HTTPDiscordError(404, UNKNOWN_INVITE, "Unknown Invite")
        return code

    async def get_invite(self, request: web.Request) -> web.Response:
        """Anyone may look an invite up (Discord asks no token for it either)."""
        if request_token(request) is not None:
            await self.api.auth(request)  # a token, if given, must be valid
        invite = await self.storage.get_invite(self._code(request))
        if invite is not None and not invite.usable(_now_ms()):
            invite = None
        invite, guild, channel, inviter = await self._resolve(invite)
        return json_response(invite_object(invite, guild, channel, inviter, metadata=False))

    async def accept_invite(self, request: web.Request) -> web.Response:
        """The caller joins the invite's guild: their own token is their consent. A
        member already in it takes no place of a limited invite (``new_member: false``)."""
        user = await self.api.auth(request)
        code = self._code(request)
        invite = await self.storage.get_invite(code)
        if invite is not None and not invite.usable(_now_ms()):
            invite = None
        invite, guild, channel, inviter = await self._resolve(invite)
        new = await self.storage.get_member(guild.id, user.id) is None
        if new:
            used = await self.storage.use_invite(code, _now_ms())  # atomic: one place each
            if used is None:  # the last place went to another user meanwhile
                raise HTTPDiscordError(404, UNKNOWN_INVITE, "Unknown Invite")
            await self.more.add_member(guild.id, user)
            invite = used
        return json_response({**invite_object(invite, guild, channel, inviter,
                                              metadata=False), "new_member": new})


def add_invite_routes(app: web.Application, more: MoreApi) -> None:
    invites = InviteApi(more)
    r = app.router
    r.add_post(f"{PREFIX}/channels/{{channel_id}}/invites", invites.post_invite)
    r.add_get(f"{PREFIX}/invites/{{code}}", invites.get_invite)
    r.add_post(f"{PREFIX}/invites/{{code}}", invites.accept_invite)

