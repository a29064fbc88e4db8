"""The REST API under ``/api/v10`` (aiohttp.web, same loop as the gateway).

Reads go to storage directly, but history goes to the channel actor, which answers from
its cache of recent messages when that is exact and otherwise through the storage actor
(which coalesces identical in-flight reads); a message send goes to the channel actor through the
registry and is answered once the message is durable. Errors are Discord's JSON body
``{code, message}`` with Discord's status codes; a 500 says no more than that (the
details go to the log).

What arrives is checked here, at the edge: ids are canonical snowflakes
(``parse_snowflake``: another spelling names nothing, so it opens no rate-limit bucket
and reaches no object), ``Authorization`` is exactly ``Bot <token>`` (``rest_auth``),
and text storage cannot hold is refused with the field named (``validation``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web

from actors.registry import Route
from chat.compose import ComposeContext, ComposeError, compose
from chat.dms import DM_PERMISSIONS, DMChannel
from chat.objects import channel_object, member_object, message_object, user_object
from chat.overwrites import channel_overwrites, channel_records, from_records
from chat.permissions import (
    ADMINISTRATOR,
    READ_MESSAGE_HISTORY,
    SEND_MESSAGES,
    VIEW_CHANNEL,
    Overwrite,
    base_permissions,
    channel_permissions,
)
from chat.reactions import reactions_of
from chat.replies import referenced_snapshot, replied_id
from chat.validation import check_text
from gateway.channel import channel_key
from gateway.messages import HistoryPage, Posted, PostFailed, PostMessage, ReadHistory
from gateway.rest.attachments import attachments_of, check_may_attach, read_message_body
from gateway.rest.dms import check_send, dm_access, dm_object, dm_recipients
from gateway.rest.errors import (
    ASK_TIMEOUT_S,
    INVALID_FORM_BODY,
    MISSING_ACCESS,
    MISSING_PERMISSIONS,
    PREFIX,
    SPAN,
    UNAUTHORIZED,
    UNKNOWN_CHANNEL,
    UNKNOWN_MESSAGE,
    HTTPDiscordError,
    compose_failure,
    error,
    invalid_form,
    json_response,
    path_id,
    query_id,
    query_int,
    request_token,
)
from gateway.rest.interactions import message_components
from gateway.tracing import fanout_attributes
from observability import inject_current, span_from
from storage.applications import effective_flags
from storage.history import HistoryQuery
from storage.model import Channel, Guild, Member, Message, Role, User
from storage.snowflake import parse_snowflake

if TYPE_CHECKING:
    from gateway.server import Gateway


def _author(message: Message, users: Mapping[int, User]) -> dict[str, Any]:
    """``message``'s author object from ``users`` (a deleted user's stand-in)."""
    user = users.get(message.author_id)
    return user_object(user) if user else {"id": str(message.author_id),
                                           "username": "Deleted User", "discriminator": "0"}


def check_channel_access(guild: Any, roles: Iterable[Any], member: Any, need: int,
                         overwrites: Mapping[int, Overwrite] | None = None) -> int:
    """Raise Discord's 403 unless ``member`` may view the channel (its ``overwrites``
    applied: ``chat.permissions.channel_permissions``) and has ``need`` there; else
    answer what it may do there."""
    perms = channel_permissions(guild, {r.id: r for r in roles}, member, overwrites or {})
    if not perms & VIEW_CHANNEL:
        raise HTTPDiscordError(403, MISSING_ACCESS, "Missing Access")
    if perms & need != need:
        raise HTTPDiscordError(403, MISSING_PERMISSIONS, "Missing Permissions")
    return perms


@dataclass(slots=True)
class ChannelAccess:
    """What authorised a call on a guild channel (``Api.channel_access``)."""

    user: User
    channel: Channel | DMChannel
    guild: Guild | None  # None (and no member) in a DM (chat/dms.py)
    member: Member | None
    roles: dict[int, Role]
    #: the channel's permission overwrites, by target id
    overwrites: dict[int, Overwrite]
    #: what ``member`` may do in the channel
    permissions: int


class Api:
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.ctx = gateway.ctx
        self.storage = gateway.storage

    # -- helpers ------------------------------------------------------------------------

    async def auth(self, request: web.Request) -> User:
        token = request_token(request)
        user_id = await self.storage.user_id_for_token(token) if token else None
        user = await self.storage.get_user(user_id) if user_id is not None else None
        if user is None:
            raise HTTPDiscordError(401, UNAUTHORIZED, "401: Unauthorized")
        return user

    async def channel_for(self, request: web.Request, user: User, need: int
                          ) -> tuple[Channel, Any]:
        """The channel in the URL, its permissions checked for ``user``; and the member."""
        channel_id = path_id(request, "channel_id", UNKNOWN_CHANNEL, "Unknown Channel")
        channel = await self.storage.get_channel(channel_id)
        if channel is None:  # a DM's (gateway/rest/dms.py), or none: 404
            return await dm_access(self.storage, channel_id, user, need), None
        guild = await self.storage.get_guild(channel.guild_id)
        member = await self.storage.get_member(channel.guild_id, user.id)
        if guild is None or member is None:
            raise HTTPDiscordError(403, MISSING_ACCESS, "Missing Access")
        roles = await self.storage.roles_for_guild(guild.id)
        overwrites = await self.overwrites_that_matter(guild, roles, member, channel)
        check_channel_access(guild, roles, member, need, overwrites)
        return channel, member

    async def overwrites_that_matter(self, guild: Guild, roles: Iterable[Role], member: Member,
                                     channel: Channel) -> dict[int, Overwrite]:
        """``channel``'s permission overwrites, unread where they cannot change the answer
        (the owner, an administrator)."""
        if member.user_id == guild.owner_id \
                or base_permissions(guild, {r.id: r for r in roles}, member) & ADMINISTRATOR:
            return {}
        return await channel_overwrites(self.storage, guild.id, channel.id)

    async def authorised_channel(self, request: web.Request, need: int
                                 ) -> tuple[User, Channel, Any]:
        """``auth`` then ``channel_for`` (same answers, same order of errors) in one
        storage call, the channel's overwrites included (one hop to SQLite's thread
        instead of seven; the overwrites cost ~35 us of CPU there, a hop of their own
        ~150 us)."""
        access = await self.channel_access(request, need)
        return access.user, access.channel, access.member

    async def channel_access(self, request: web.Request, need: int) -> ChannelAccess:
        """``authorised_channel``'s check, answering all it read and the permissions."""
        channel_id = parse_snowflake(request.match_info["channel_id"])
        if channel_id is None:
            await self.auth(request)
            raise HTTPDiscordError(404, UNKNOWN_CHANNEL, "Unknown Channel")
        token = request_token(request)
        if not token:
            raise HTTPDiscordError(401, UNAUTHORIZED, "401: Unauthorized")
        user, channel, guild, member, roles, records = await self.storage.channel_access(
            token, channel_id, channel_records(channel_id))
        if user is None:
            raise HTTPDiscordError(401, UNAUTHORIZED, "401: Unauthorized")
        if channel is None:  # a DM's (gateway/rest/dms.py), or none: 404
            dm = await dm_access(self.storage, channel_id, user, need)
            return ChannelAccess(user, dm, None, None, {}, {}, DM_PERMISSIONS)
        if guild is None or member is None:
            raise HTTPDiscordError(403, MISSING_ACCESS, "Missing Access")
        overwrites = await from_records(self.storage, guild.id, channel.id, records)
        perms = check_channel_access(guild, roles, member, need, overwrites)
        return ChannelAccess(user, channel, guild, member, {r.id: r for r in roles},
                             overwrites, perms)

    async def messages_out(self, messages: list[Message], viewer: int | None = None
                           ) -> list[dict[str, Any]]:
        """Message objects with their ``reactions`` (``me``: whether ``viewer`` reacted)
        and, for replies, the message answered as it is now (``referenced_now``)."""
        users = await self.storage.get_users({m.author_id for m in messages})
        reactions = await reactions_of(self.storage, messages[0].channel_id,
                                       [m.id for m in messages], viewer) if messages else {}
        referenced = await self.referenced_now(messages)
        out = []
        for m in messages:
            obj = message_object(m, _author(m, users))
            if m.id in referenced:
                obj["referenced_message"] = referenced[m.id]
            if m.id in reactions:
                obj["reactions"] = reactions[m.id]
            out.append(obj)
        return out

    async def referenced_now(self, messages: list[Message]
                             ) -> dict[int, dict[str, Any] | None]:
        """For each reply among ``messages`` (by its id), its ``referenced_message`` as
        the answered message is now: edited, its edit; deleted, None (Discord's shape).
        The snapshot taken at send (``chat.compose``) would keep a deleted message's
        content readable through every reply to it. One read per answered message not
        among ``messages``."""
        answering = {m.id: i for m in messages if (i := replied_id(m)) is not None}
        if not answering:
            return {}
        page = {m.id: m for m in messages}
        unread = [i for i in set(answering.values()) if i not in page]
        read = await asyncio.gather(*(self.storage.get_message(messages[0].channel_id, i)
                                      for i in unread))
        answered = {i: page.get(i) for i in answering.values()} | dict(zip(unread, read,
                                                                          strict=True))
        users = await self.storage.get_users(
            {m.author_id for m in answered.values() if m is not None})
        return {reply_id: None if (m := answered[i]) is None
                else referenced_snapshot(message_object(m, _author(m, users)))
                for reply_id, i in answering.items()}

    # -- endpoints ------------------------------------------------------------------------

    async def get_gateway(self, request: web.Request) -> web.Response:
        return json_response({"url": self.gateway.gateway_url})

    async def get_gateway_bot(self, request: web.Request) -> web.Response:
        await self.auth(request)
        token = request_token(request)
        assert token is not None  # auth passed
        return json_response({
            "url": self.gateway.gateway_url,
            "shards": 1,
            "session_start_limit": self.ctx.identify_budget.session_start_limit(token),
        })

    async def get_me(self, request: web.Request) -> web.Response:
        return json_response(user_object(await self.auth(request)))

    async def get_application(self, request: web.Request) -> web.Response:
        """The bot's application (``/oauth2/applications/@me``, read by discord.py and
        hikari, and ``/applications/@me``, read by discord.js): each bot is its own
        application. hikari indexes the ``approximate_*`` counts without defaults."""
        user = await self.auth(request)
        # the privileged intents it may ask for (READY's application.flags too)
        flags = effective_flags(await self.storage.application_flags(user.id)) \
            if user.bot else 0
        guild_count = len(await self.storage.guild_ids_for_user(user.id))
        return json_response({
            "id": str(user.id),
            "name": user.username,
            "icon": None,
            "description": "",
            "summary": "",
            "rpc_origins": [],
            "bot_public": True,
            "bot_require_code_grant": False,
            "verify_key": "0" * 64,
            "owner": user_object(user),
            "team": None,
            "flags": flags,
            "bot": user_object(user),
            "approximate_guild_count": guild_count,
            "approximate_user_install_count": 0,
            "approximate_user_authorization_count": 0,
        })

    async def get_channel(self, request: web.Request) -> web.Response:
        access = await self.channel_access(request, 0)
        if access.channel.guild_id is None:  # a DM
            return json_response(await dm_object(self.storage, access.channel, access.user))
        return json_response(channel_object(access.channel, access.overwrites.values()))

    async def post_message(self, request: web.Request) -> web.Response:
        received_s = time.time()  # gateway.stages: rest_to_channel starts here
        access = await self.channel_access(request, SEND_MESSAGES)
        user, channel, member = access.user, access.channel, access.member
        if channel.guild_id is None:  # a DM: may the two still talk?
            await check_send(self.storage, user, channel)
        body, files = await read_message_body(request)
        check_may_attach(files, access.permissions)
        components = message_components(body, user)  # a bot's buttons and selects
        try:  # content, embeds, mentions, a reply (chat/compose.py); files alone: a message
            composed = await compose(body, ctx=ComposeContext(
                channel.id, channel.guild_id, user.id, access.permissions,
                needs_embed_links=True),
                storage=self.storage, files=bool(files or components))
        except ComposeError as exc:
            raise compose_failure(exc) from None
        if components:
            composed.fields["extra"] = {**composed.fields.get("extra", {}),
                                        "components": components}
        nonce = body.get("nonce")
        if nonce is not None:
            if isinstance(nonce, int) and not isinstance(nonce, bool):
                nonce = str(nonce)
            problem = check_text("nonce", nonce, max_len=25)
            if problem is not None:
                raise invalid_form(problem)
        post = PostMessage(
            guild_id=channel.guild_id,
            author=user_object(user),
            member=member_object(member) if member is not None else None,
            content=composed.content,
            nonce=nonce,
            enforce_nonce=bool(body.get("enforce_nonce")),
            tts=composed.tts,
            type=composed.type,
            fields=composed.fields,
            recipients=dm_recipients(channel),
            received_s=received_s,
        )
        # files are stored (pending) only once the rest of the body is valid
        staged = await attachments_of(request).stage(request, channel.id, body, files)
        if staged.objects:
            post.fields["attachments"] = staged.objects
        # The message's trace starts here (or continues the caller's ``traceparent``).
        # The sampler decides here, once, by the guild's size (observability.sampling).
        traceparent = request.headers.get("traceparent")
        attributes = await fanout_attributes(self.ctx.identity, channel.guild_id,
                                             {"greenroom.channel_id": channel.id})
        with span_from({"traceparent": traceparent} if traceparent else None,
                       "rest.post_message", **attributes) as span:
            request[SPAN] = span  # the access log's line joins the trace
            post.trace = inject_current()
            message = await self.ask_channel(channel.guild_id, channel.id, post, staged)
            if post.trace is not None:
                span.set_attribute("greenroom.message_id", message["id"])
        return json_response(message)

    async def ask_channel(self, guild_id: int | None, channel_id: int, msg: Any,
                          staged: Any = None) -> dict[str, Any]:
        """A post, edit or delete (``PostMessage``, ``ChangeMessage``) through the
        channel's actor, answered once durable: the message object (``{}`` for a
        delete), or Discord's error raised (``channel_answer``). ``staged``: the
        request's files (``gateway.rest.attachments.Staged``), settled by the answer."""
        ask = self.gateway.base.ask_async(
            self.ctx.registry, Route("channel", channel_key(guild_id, channel_id), msg),
            ASK_TIMEOUT_S)
        return channel_answer(await (ask if staged is None else staged.posting(ask)))

    async def get_messages(self, request: web.Request) -> web.Response:
        user, channel, _ = await self.authorised_channel(request, READ_MESSAGE_HISTORY)
        limit = query_int(request, "limit", 50, 1, 100)
        cursors = {k: query_id(request, k) for k in ("before", "after", "around")
                   if k in request.query}
        if len(cursors) > 1:
            raise HTTPDiscordError(400, INVALID_FORM_BODY, "Invalid Form Body", {
                "around": {"_errors": [{"code": "BASE_TYPE_CHOICES",
                                        "message": "Only one of before, after and around "
                                                   "may be given."}]}})
        query = HistoryQuery(channel.id, limit=limit, **cursors)
        # the channel actor answers from its cache of recent messages when it can
        read = ReadHistory(query.before, query.after, query.around, query.limit)
        answer = await self.gateway.base.ask_async(
            self.ctx.registry, Route("channel", channel_key(channel.guild_id, channel.id), read),
            ASK_TIMEOUT_S)
        if isinstance(answer, PostFailed):  # 503: the channel stopped before it answered
            raise HTTPDiscordError(answer.status, answer.code, answer.message)
        if not isinstance(answer, HistoryPage):
            raise HTTPDiscordError(500, 0, f"history: unexpected answer {type(answer).__name__}")
        messages = sorted(answer.messages, key=lambda m: m.id, reverse=True)
        return json_response(await self.messages_out(messages, user.id))

    async def get_message(self, request: web.Request) -> web.Response:
        user, channel, _ = await self.authorised_channel(request, READ_MESSAGE_HISTORY)
        message_id = path_id(request, "message_id", UNKNOWN_MESSAGE, "Unknown Message")
        message = await self.storage.get_message(channel.id, message_id)
        if message is None:
            return error(404, UNKNOWN_MESSAGE, "Unknown Message")
        return json_response((await self.messages_out([message], user.id))[0])


def channel_answer(answer: Any) -> dict[str, Any]:
    """A channel actor's answer as REST's: ``Posted``'s message, else the failure as
    Discord's error (a 429 with its ``retry_after``)."""
    if isinstance(answer, Posted):
        return answer.message
    if isinstance(answer, PostFailed):
        raise HTTPDiscordError(answer.status, answer.code, answer.message,
                               retry_after=answer.retry_after)
    raise HTTPDiscordError(500, 0, f"channel: unexpected answer {type(answer).__name__}")


def add_routes(app: web.Application, api: Api) -> None:
    r = app.router
    r.add_get(f"{PREFIX}/gateway", api.get_gateway)
    r.add_get(f"{PREFIX}/gateway/bot", api.get_gateway_bot)
    r.add_get(f"{PREFIX}/users/@me", api.get_me)
    r.add_get(f"{PREFIX}/oauth2/applications/@me", api.get_application)
    r.add_get(f"{PREFIX}/applications/@me", api.get_application)
    r.add_get(f"{PREFIX}/channels/{{channel_id}}", api.get_channel)
    r.add_post(f"{PREFIX}/channels/{{channel_id}}/messages", api.post_message)
    r.add_get(f"{PREFIX}/channels/{{channel_id}}/messages", api.get_messages)
    r.add_get(f"{PREFIX}/channels/{{channel_id}}/messages/{{message_id}}", api.get_message)
