"""More of the REST API: message edit/delete, typing, guilds, channels and members, and
the rate-limit middleware (``gateway.limits``). Registered by ``gateway.rest.app.make_app``.

Writes are durable before the answer: message edits and deletes go through the channel
actor (ordered behind the channel's sends, answered once the storage actor says
``Written``); guild, channel and member writes are awaited on storage. Events then go
through the guild actor (``GuildBroadcast``: filtered by intent) and, for a member who
joins or leaves, to that user's live sessions (GUILD_CREATE / GUILD_DELETE).

Permissions are guild-level (no channel overwrites in this model): no VIEW_CHANNEL or
not a member answers 403 50001 Missing Access, a missing permission 403 50013.
"""

from __future__ import annotations

import secrets
import time
from typing import TYPE_CHECKING, Any

from aiohttp import web

from actors.registry import Route
from chat.compose import ComposeContext, ComposeError, compose_edit
from chat.objects import channel_object, member_object, message_object, role_object, user_object
from chat.overwrites import guild_overwrites
from chat.permissions import MANAGE_MESSAGES, SEND_MESSAGES, VIEW_CHANNEL, base_permissions
from chat.validation import FieldError, check_text
from gateway.channel import channel_key
from gateway.messages import (
    ChangeMessage,
    GuildBroadcast,
    JoinedGuild,
    LeftGuild,
    Typing,
)
from gateway.protocol.ready import GUILD_DEFAULTS
from gateway.rest.attachments import attachments_of, check_may_attach, read_message_body
from gateway.rest.dms import dm_recipients
from gateway.rest.errors import (
    INVALID_FORM_BODY,
    MISSING_ACCESS,
    MISSING_PERMISSIONS,
    PREFIX,
    UNKNOWN_APPLICATION,
    UNKNOWN_GUILD,
    UNKNOWN_MESSAGE,
    HTTPDiscordError,
    compose_failure,
    error,
    invalid_form,
    json_body,
    json_response,
    path_id,
    query_id,
    query_int,
)
from gateway.rest.interactions import message_components
from gateway.rest.permissions import creation_overwrites, store_overwrites
from gateway.rest.reactions import forget_message_reactions
from gateway.seed import create_guild
from gateway.sessions import ToUserSessions, gateway_nodes, sessions_address
from storage.grants import OAuth2Grant
from storage.model import Channel, Guild, Member, User
from storage.snowflake import parse_snowflake

if TYPE_CHECKING:
    from gateway.rest.api import Api

CREATE_INSTANT_INVITE = 1 << 0
KICK_MEMBERS = 1 << 1
MANAGE_CHANNELS = 1 << 4

UNKNOWN_MEMBER = 10007
UNKNOWN_USER = 10013
CANNOT_EDIT_OTHERS = 50005
INVALID_OAUTH2_TOKEN = 50025

#: The OAuth2 scope that lets an application add its user to guilds.
GUILDS_JOIN = "guilds.join"
#: Discord's access-token lifetime (``expires_in``: 7 days).
GRANT_TTL_S = 604_800


#: The REST guild's fields beyond those built in ``_rest_guild``: GUILD_CREATE's defaults
#: (less the gateway-only ``joined_at``) and the limits hikari indexes without defaults.
_REST_GUILD_DEFAULTS: dict[str, Any] = {
    **{k: v for k, v in GUILD_DEFAULTS.items() if k != "joined_at"},
    "max_members": 500_000,
    "max_presences": None,
    "max_video_channel_users": 25,
    "max_stage_video_channel_users": 50,
    "widget_enabled": False,
    "widget_channel_id": None,
}


def _rest_guild(guild: Guild, roles: list[Any]) -> dict[str, Any]:
    return {
        **_REST_GUILD_DEFAULTS,
        "id": str(guild.id),
        "name": guild.name,
        "owner_id": str(guild.owner_id),
        "icon": guild.icon,
        "description": guild.description,
        "features": list(guild.features),
        "roles": [role_object(r) for r in roles],
        "emojis": [],
        "stickers": [],
        "verification_level": 0,
        "default_message_notifications": 0,
        "explicit_content_filter": 0,
        "mfa_level": 0,
        "nsfw_level": 0,
        "premium_tier": 0,
        "preferred_locale": "en-US",
        "system_channel_id": None,
        "afk_channel_id": None,
        "afk_timeout": 300,
    }


class MoreApi:
    def __init__(self, api: Api) -> None:
        self.api = api
        self.gateway = api.gateway
        self.ctx = api.ctx
        self.storage = api.storage

    # -- helpers ------------------------------------------------------------------------

    async def guild_for(self, request: web.Request, user: User, need: int = 0
                        ) -> tuple[Guild, Member, int]:
        """The guild in the URL, the caller's membership and permissions (``need`` checked)."""
        guild_id = path_id(request, "guild_id", UNKNOWN_GUILD, "Unknown Guild")
        guild = await self.storage.get_guild(guild_id)
        if guild is None:
            raise HTTPDiscordError(404, UNKNOWN_GUILD, "Unknown Guild")
        member = await self.storage.get_member(guild_id, user.id)
        if member is None:
            raise HTTPDiscordError(403, MISSING_ACCESS, "Missing Access")
        roles = {r.id: r for r in await self.storage.roles_for_guild(guild_id)}
        perms = base_permissions(guild, roles, member)
        if perms & need != need:
            raise HTTPDiscordError(403, MISSING_PERMISSIONS, "Missing Permissions")
        return guild, member, perms

    async def ask_channel(self, channel: Channel, msg: Any) -> Any:
        return await self.api.ask_channel(channel.guild_id, channel.id, msg)

    def tell(self, address: Any, msg: Any) -> None:
        self.gateway.base.tell_from_loop(address, msg)

    def tell_guild(self, guild_id: int, msg: Any) -> None:
        self.tell(self.ctx.registry, Route("guild", guild_id, msg))

    def tell_user_sessions(self, user_id: int, msg: Any) -> None:
        """``msg`` to the user's sessions on every gateway node (each node's session
        directory forwards it to the ones it has)."""
        base = self.gateway.base
        for node in gateway_nodes(self.gateway.cluster, base.node):
            if node == base.node:
                for session in list(self.ctx.user_sessions.get(user_id, ())):
                    self.tell(session, msg)
            else:
                self.tell(sessions_address(node), ToUserSessions(user_id, msg))

    # -- messages -----------------------------------------------------------------------

    async def patch_message(self, request: web.Request) -> web.Response:
        access = await self.api.channel_access(request, 0)
        user, channel, member = access.user, access.channel, access.member
        message_id = path_id(request, "message_id", UNKNOWN_MESSAGE, "Unknown Message")
        body, files = await read_message_body(request)
        message = await self.storage.get_message(channel.id, message_id)
        if message is None:
            return error(404, UNKNOWN_MESSAGE, "Unknown Message")
        if message.author_id != user.id:
            return error(403, CANNOT_EDIT_OTHERS,
                         "Cannot edit a message authored by another user")
        check_may_attach(files, access.permissions)
        attaching = "attachments" in body or bool(files)
        try:  # content (mentions parsed again), embeds replaced, flags (chat/compose.py)
            changes = await compose_edit(body, ctx=ComposeContext(
                channel.id, channel.guild_id, user.id, access.permissions,
                needs_embed_links=True),
                storage=self.storage, message=message,
                attachments=bool(files or body.get("attachments")) if attaching else None)
        except ComposeError as exc:
            raise compose_failure(exc) from None
        components = message_components(body, user)  # replaced when given
        if components is not None:
            changes["extra"] = {**changes.get("extra", message.extra),
                                "components": components}
        for name, value in changes.items():
            setattr(message, name, value)
        # attachments: the ones ``attachments`` keeps, and the new files (stored pending);
        # the ones dropped are journalled now and deleted once the edit is durable
        service = attachments_of(request)
        staged = await service.stage(request, channel.id, body, files, existing=message)
        retired = []
        if staged.given:
            kept = {str(a["id"]) for a in staged.objects}
            retired = await service.retire(message, keep=kept)
            message.attachments = changes["attachments"] = staged.objects
        payload = message_object(message, user_object(user),
                                 member_object(member) if member is not None else None)
        referenced = await self.api.referenced_now([message])
        if message.id in referenced:  # a reply: what it answers as it is now
            payload["referenced_message"] = referenced[message.id]
        try:
            out = await self.ask_channel(channel, ChangeMessage(
                channel.guild_id, message_id, changes, payload,
                recipients=dm_recipients(channel)))
        except HTTPDiscordError as exc:
            if 400 <= exc.status < 500:
                await staged.discard()
            raise
        if staged.given:
            await staged.settle(out)
            await service.forget(channel.id, retired)
        return json_response(out)

    async def delete_message(self, request: web.Request) -> web.Response:
        user = await self.api.auth(request)
        channel, _ = await self.api.channel_for(request, user, 0)
        message_id = path_id(request, "message_id", UNKNOWN_MESSAGE, "Unknown Message")
        message = await self.storage.get_message(channel.id, message_id)
        if message is None:
            return error(404, UNKNOWN_MESSAGE, "Unknown Message")
        if message.author_id != user.id:
            await self.api.channel_for(request, user, MANAGE_MESSAGES)
        # its files: journalled before, deleted once the delete is durable
        service = attachments_of(request)
        retired = await service.retire(message) if message.attachments else []
        await self.ask_channel(channel, ChangeMessage(channel.guild_id, message_id, None,
                                                      recipients=dm_recipients(channel)))
        await service.forget(channel.id, retired)
        await forget_message_reactions(request, channel, message_id)
        return web.Response(status=204)

    async def post_typing(self, request: web.Request) -> web.Response:
        user = await self.api.auth(request)
        channel, member = await self.api.channel_for(request, user, SEND_MESSAGES)
        key = channel_key(channel.guild_id, channel.id)
        self.tell(self.ctx.registry, Route("channel", key, Typing(
            channel.guild_id, user.id,
            {**member_object(member), "user": user_object(user)} if member is not None else None,
            recipients=dm_recipients(channel))))
        return web.Response(status=204)

    # -- guilds ---------------------------------------------------------------------------

    async def post_guild(self, request: web.Request) -> web.Response:
        user = await self.api.auth(request)
        body = await json_body(request)
        problem = check_text("name", body.get("name"), min_len=2, max_len=100)
        if problem is not None:
            raise invalid_form(problem)
        name = body["name"]
        guild_id, _ = await create_guild(self.storage, self.ctx.snowflakes, name, user.id)
        guild = await self.storage.get_guild(guild_id)
        assert guild is not None
        self.tell_user_sessions(user.id, JoinedGuild(guild_id))
        roles = await self.storage.roles_for_guild(guild_id)
        return json_response(_rest_guild(guild, roles), status=201)

    async def get_guild(self, request: web.Request) -> web.Response:
        user = await self.api.auth(request)
        guild, _, _ = await self.guild_for(request, user)
        roles = await self.storage.roles_for_guild(guild.id)
        return json_response(_rest_guild(guild, roles))

    async def get_channels(self, request: web.Request) -> web.Response:
        user = await self.api.auth(request)
        guild, _, perms = await self.guild_for(request, user)
        channels = await self.storage.channels_for_guild(guild.id) \
            if perms & VIEW_CHANNEL else []
        channels.sort(key=lambda c: (c.position, c.id))
        overwrites = await guild_overwrites(self.storage, guild.id) if channels else {}
        return json_response([channel_object(c, overwrites.get(c.id, {}).values())
                              for c in channels])

    async def post_channel(self, request: web.Request) -> web.Response:
        user = await self.api.auth(request)
        guild, _, perms = await self.guild_for(request, user, MANAGE_CHANNELS)
        body = await json_body(request)
        name = body.get("name")
        kind = body.get("type", 0)
        topic = body.get("topic")
        position = body.get("position", 0)
        problem = (check_text("name", name, min_len=1, max_len=100)
                   or check_text("topic", topic, max_len=1024, required=False))
        if problem is not None:
            raise invalid_form(problem)
        if kind not in (0, None) or not isinstance(position, int) or isinstance(position, bool) \
                or not -(1 << 31) <= position < 1 << 31:  # CQL's int
            return error(400, INVALID_FORM_BODY, "Invalid Form Body")
        overwrites = await creation_overwrites(self.storage, guild, perms,
                                               body.get("permission_overwrites"))
        channel = Channel(self.ctx.snowflakes.next_id(), guild.id, name, 0, position, topic)
        await store_overwrites(self.storage, guild.id, channel.id, overwrites)
        await self.storage.put_channel(channel)
        self.ctx.identity.forget_guild(guild.id)  # GUILD_CREATE lists the channel from now
        obj = channel_object(channel, overwrites)
        self.tell_guild(guild.id, GuildBroadcast("CHANNEL_CREATE", obj, channel=channel))
        return json_response(obj, status=201)

    async def get_members(self, request: web.Request) -> web.Response:
        user = await self.api.auth(request)
        guild, _, _ = await self.guild_for(request, user)
        limit = query_int(request, "limit", 1, 1, 1000)  # Discord's default is 1
        after = query_id(request, "after") or 0
        members = await self.storage.members_for_guild(guild.id, limit, after=after)
        users = await self.storage.get_users(m.user_id for m in members)
        return json_response([member_object(m, users.get(m.user_id)) for m in members])

    async def put_member(self, request: web.Request) -> web.Response:
        """Add a user with their consent (Discord's rule): the body's ``access_token``
        must be a grant of ``guilds.join`` by that user to the caller's application
        (``post_authorize``); the caller also needs CREATE_INSTANT_INVITE in the guild.
        The operator's ``greenroom admin add-member`` adds directly (not over REST)."""
        caller = await self.api.auth(request)
        guild, _, _ = await self.guild_for(request, caller, CREATE_INSTANT_INVITE)
        user_id = path_id(request, "user_id", UNKNOWN_USER, "Unknown User")
        user = await self.storage.get_user(user_id)
        if user is None:
            return error(404, UNKNOWN_USER, "Unknown User")
        if await self.storage.get_member(guild.id, user_id) is not None:
            return web.Response(status=204)  # Discord: already a member
        token = (await json_body(request)).get("access_token")
        if not isinstance(token, str) or not token:
            raise invalid_form(FieldError("access_token", "BASE_TYPE_REQUIRED",
                                          "This field is required"))
        grant = await self.storage.oauth2_grant(token) \
            if token.isascii() and len(token) <= 256 else None
        if grant is None or not grant.allows(user_id, caller.id, GUILDS_JOIN,
                                             int(time.time() * 1000)):
            return error(403, INVALID_OAUTH2_TOKEN, "Invalid OAuth2 access token provided")
        return json_response(await self.add_member(guild.id, user), status=201)

    async def add_member(self, guild_id: int, user: User) -> dict[str, Any]:
        """Store ``user`` as a member (consent checked by the caller); GUILD_MEMBER_ADD
        to the guild, GUILD_CREATE to the user's sessions; the member object."""
        member = Member(guild_id, user.id, int(time.time() * 1000))
        await self.storage.put_member(member)
        self.ctx.identity.forget_guild(guild_id)  # member_count
        obj = member_object(member, user)
        self.tell_guild(guild_id, GuildBroadcast(
            "GUILD_MEMBER_ADD", {**obj, "guild_id": str(guild_id)}, member_added=member))
        self.tell_user_sessions(user.id, JoinedGuild(guild_id))
        return obj

    # -- consent --------------------------------------------------------------------------

    async def post_authorize(self, request: web.Request) -> web.Response:
        """The caller (a user, by their own token) consents to ``scope`` for the
        application ``client_id`` (a bot's id: its application id here) and gets the
        access token to give that application, in Discord's implicit-grant shape.
        Discord shows an authorize page and redirects; a self-hosted server has no
        web UI, so the user's client calls this directly. Parameters come in the query
        (as in Discord's authorize URL) or a JSON body; only ``guilds.join`` exists."""
        user = await self.api.auth(request)
        params: dict[str, Any] = dict(request.query)
        if request.can_read_body:
            params.update(await json_body(request))
        raw = params.get("client_id")
        app_id = parse_snowflake(raw)
        if app_id is None:
            raise invalid_form(FieldError("client_id", "NUMBER_TYPE_COERCE",
                                          f"Value \"{str(raw)[:32]}\" is not snowflake."))
        if params.get("scope") != GUILDS_JOIN:
            raise invalid_form(FieldError("scope", "BASE_TYPE_CHOICES",
                                          f"Value must be \"{GUILDS_JOIN}\"."))
        application = await self.storage.get_user(app_id)
        if application is None or not application.bot:
            return error(404, UNKNOWN_APPLICATION, "Unknown Application")
        token = secrets.token_urlsafe(32)
        expires = int(time.time() * 1000) + GRANT_TTL_S * 1000
        await self.storage.put_oauth2_grant(
            token, OAuth2Grant(user.id, app_id, (GUILDS_JOIN,), expires))
        return json_response({"access_token": token, "token_type": "Bearer",
                              "expires_in": GRANT_TTL_S, "scope": GUILDS_JOIN})

    async def delete_member(self, request: web.Request) -> web.Response:
        """Kick (KICK_MEMBERS) or leave (the caller itself); the owner cannot be removed."""
        caller = await self.api.auth(request)
        user_id = path_id(request, "user_id", UNKNOWN_MEMBER, "Unknown Member")
        guild, _, _ = await self.guild_for(request, caller,
                                           0 if user_id == caller.id else KICK_MEMBERS)
        if user_id == guild.owner_id:
            return error(403, MISSING_PERMISSIONS, "Missing Permissions")
        if await self.storage.get_member(guild.id, user_id) is None:
            return error(404, UNKNOWN_MEMBER, "Unknown Member")
        user = await self.storage.get_user(user_id)
        await self.storage.remove_member(guild.id, user_id)
        self.ctx.identity.forget_guild(guild.id)
        self.tell_guild(guild.id, GuildBroadcast(
            "GUILD_MEMBER_REMOVE", {
                "guild_id": str(guild.id),
                "user": user_object(user) if user else {"id": str(user_id)},
            }, member_removed=user_id))
        self.tell_user_sessions(user_id, LeftGuild(guild.id))
        return web.Response(status=204)


def add_routes(app: web.Application, api: Api) -> None:
    more = MoreApi(api)
    r = app.router
    message = f"{PREFIX}/channels/{{channel_id}}/messages/{{message_id}}"
    r.add_patch(message, more.patch_message)
    r.add_delete(message, more.delete_message)
    r.add_post(f"{PREFIX}/channels/{{channel_id}}/typing", more.post_typing)
    r.add_post(f"{PREFIX}/guilds", more.post_guild)
    r.add_get(f"{PREFIX}/guilds/{{guild_id}}", more.get_guild)
    r.add_get(f"{PREFIX}/guilds/{{guild_id}}/channels", more.get_channels)
    r.add_post(f"{PREFIX}/guilds/{{guild_id}}/channels", more.post_channel)
    r.add_get(f"{PREFIX}/guilds/{{guild_id}}/members", more.get_members)
    r.add_put(f"{PREFIX}/guilds/{{guild_id}}/members/{{user_id}}", more.put_member)
    r.add_post(f"{PREFIX}/oauth2/authorize", more.post_authorize)
    from gateway.rest.invites import add_invite_routes  # it builds on this module

    add_invite_routes(app, more)
    r.add_delete(f"{PREFIX}/guilds/{{guild_id}}/members/{{user_id}}", more.delete_member)
