"""REST routes for reactions (Discord's "Create Reaction" ... "Delete All Reactions for
Emoji"): checked here (the caller, the channel, the emoji, the message), then changed
by the message's reactions actor (``gateway.reactions``: one writer per message, off
the channel actor's path) and answered 204 once durable. Listing reactors reads the
records directly.

Permissions as Discord's: reading the message (READ_MESSAGE_HISTORY) to react or list;
ADD_REACTIONS only for an emoji nobody has used on the message yet (the actor decides
that, atomically); MANAGE_MESSAGES to remove another's reactions or all of them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from actors.registry import Route
from chat.dms import DMChannel
from chat.objects import member_object, user_object
from chat.permissions import ADD_REACTIONS, MANAGE_MESSAGES, READ_MESSAGE_HISTORY
from chat.reactions import (
    NORMAL,
    REACTION_KIND,
    REACTION_TYPES,
    Emoji,
    emoji_prefix,
    forget_reactions,
    parse_emoji,
    user_key,
    user_of,
)
from gateway.messages import Posted, PostFailed
from gateway.reactions import (
    ADD,
    REMOVE,
    REMOVE_ALL,
    REMOVE_EMOJI,
    React,
    reactions_key,
)
from gateway.rest.dms import dm_recipients
from gateway.rest.errors import (
    ASK_TIMEOUT_S,
    PREFIX,
    UNKNOWN_MESSAGE,
    HTTPDiscordError,
    json_response,
    path_id,
    query_id,
    query_int,
    rate_limited,
)
from gateway.ttl_map import TtlMap
from storage.model import Channel

if TYPE_CHECKING:
    from gateway.rest.api import Api

#: the app's ``ReactionsApi`` (``forget_message_reactions`` reaches it from a request)
REACTIONS = web.AppKey("reactions", Any)

UNKNOWN_USER = 10013
UNKNOWN_EMOJI = 10014
#: How long a message found stays known (``ReactionsApi._target``), and how many
KNOWN_TTL_S = 1.0
KNOWN_MAX = 10_000
#: Reaction changes this node works on at once, for one message and in all. Past either
#: a change is answered 429 with Discord's ``shared`` scope (a limit of the resource,
#: not of the caller) and the client retries: a node that cannot keep up with a storm
#: sheds the storm, not the latency of everything else it serves. A healthy node has a
#: few in flight at 500/s (throughput x a few ms); one that falls behind queued
#: thousands, and every message of the node waited behind them. make bench-reactions
#: (500/s on one message, 10 messages/s to 1,000 members, one node, 2 cores): on a busy
#: host messages' storm p99 was 1.4-2 s with 100 allowed, 0.1-0.2 s with 12-24 (and more
#: reactions taken, not fewer); on a quiet one 44 ms with 12 (baseline 41; 5 % of the
#: storm shed) and 86 ms with 24 (2 % shed): 500/s is near what one node takes.
MAX_IN_FLIGHT_PER_MESSAGE = 12
MAX_IN_FLIGHT = 100
SHED_RETRY_S = 0.5
#: ``GET .../reactions/{emoji}``: Discord's default and largest page
DEFAULT_USERS = 25
MAX_USERS = 100


class ReactionsApi:
    def __init__(self, api: Api) -> None:
        self.api = api
        self.storage = api.storage
        #: (channel id, message id) -> author id, of messages found lately
        self.known: TtlMap[tuple[int, int], int] = TtlMap(KNOWN_TTL_S, KNOWN_MAX)
        self.in_flight = 0
        #: message id (as in the URL) -> changes to it in flight (no entry: none)
        self.in_flight_by_message: dict[str, int] = {}
        self.shed = 0  # changes answered 429 for MAX_IN_FLIGHT(_PER_MESSAGE)

    def shedding(self, handler: Any) -> Any:
        """``handler`` (a change) behind ``MAX_IN_FLIGHT_PER_MESSAGE`` and
        ``MAX_IN_FLIGHT``."""
        by_message = self.in_flight_by_message

        async def guarded(request: web.Request) -> web.StreamResponse:
            message = request.match_info["message_id"]
            here = by_message.get(message, 0)
            if here >= MAX_IN_FLIGHT_PER_MESSAGE or self.in_flight >= MAX_IN_FLIGHT:
                self.shed += 1
                return rate_limited("You are being rate limited.", SHED_RETRY_S,
                                    headers={"X-RateLimit-Scope": "shared"})
            by_message[message] = here + 1
            self.in_flight += 1
            try:
                return await handler(request)
            finally:
                self.in_flight -= 1
                left = by_message[message] - 1
                if left:
                    by_message[message] = left
                else:
                    del by_message[message]

        return guarded

    # -- helpers ----------------------------------------------------------------------------

    async def _target(self, request: web.Request, channel: Channel | DMChannel
                      ) -> tuple[int, int, Emoji | None]:
        """The message in the URL (404 10008 unless it is in ``channel``), its author,
        and the emoji in the URL if the route has one (400 10014 if it names none).

        A message found within ``KNOWN_TTL_S`` is not read again: under a storm the
        check costs one read a second, not one a reaction. A delete over REST forgets
        it here at once (``forget_message_reactions``); one on another node or path is
        seen within ``KNOWN_TTL_S``."""
        emoji = None
        if "emoji" in request.match_info:
            emoji = parse_emoji(request.match_info["emoji"])
            if emoji is None:
                raise HTTPDiscordError(400, UNKNOWN_EMOJI, "Unknown Emoji")
        message_id = path_id(request, "message_id", UNKNOWN_MESSAGE, "Unknown Message")
        key = (channel.id, message_id)
        author_id = self.known.get(key)
        if author_id is None:
            message = await self.storage.get_message(channel.id, message_id)
            if message is None:
                raise HTTPDiscordError(404, UNKNOWN_MESSAGE, "Unknown Message")
            author_id = message.author_id
            self.known.put(key, author_id)
        return message_id, author_id, emoji

    async def _change(self, channel: Channel | DMChannel, message_id: int, react: React
                      ) -> web.Response:
        """Hand ``react`` to the message's reactions actor; 204 once durable."""
        api = self.api
        answer = await api.gateway.base.ask_async(
            api.ctx.registry,
            Route("reactions", reactions_key(channel.guild_id, channel.id, message_id), react),
            ASK_TIMEOUT_S)
        if isinstance(answer, Posted):
            return web.Response(status=204)
        if isinstance(answer, PostFailed):
            raise HTTPDiscordError(answer.status, answer.code, answer.message)
        raise HTTPDiscordError(500, 0, f"reaction: unexpected answer {type(answer).__name__}")

    # -- endpoints ----------------------------------------------------------------------------

    async def put_own(self, request: web.Request) -> web.Response:
        """Create Reaction: READ_MESSAGE_HISTORY, and ADD_REACTIONS for a new emoji."""
        access = await self.api.channel_access(request, READ_MESSAGE_HISTORY)
        user, channel, member = access.user, access.channel, access.member
        message_id, author_id, emoji = await self._target(request, channel)
        assert emoji is not None
        # without ADD_REACTIONS one may still add to an emoji already there
        may_add_new = bool(access.permissions & ADD_REACTIONS)
        return await self._change(channel, message_id, React(
            ADD, emoji.to_list(), user.id, may_add_new,
            member=member_object(member, user) if member is not None else None,
            message_author_id=author_id, recipients=dm_recipients(channel)))

    async def delete_own(self, request: web.Request) -> web.Response:
        """Delete Own Reaction."""
        user, channel, _ = await self.api.authorised_channel(request, 0)
        message_id, _, emoji = await self._target(request, channel)
        assert emoji is not None
        return await self._change(channel, message_id, React(
            REMOVE, emoji.to_list(), user.id, recipients=dm_recipients(channel)))

    async def delete_user(self, request: web.Request) -> web.Response:
        """Delete User Reaction: MANAGE_MESSAGES."""
        _, channel, _ = await self.api.authorised_channel(request, MANAGE_MESSAGES)
        message_id, _, emoji = await self._target(request, channel)
        assert emoji is not None
        target = path_id(request, "user_id", UNKNOWN_USER, "Unknown User")
        return await self._change(channel, message_id, React(
            REMOVE, emoji.to_list(), target, recipients=dm_recipients(channel)))

    async def delete_emoji(self, request: web.Request) -> web.Response:
        """Delete All Reactions for Emoji: MANAGE_MESSAGES."""
        _, channel, _ = await self.api.authorised_channel(request, MANAGE_MESSAGES)
        message_id, _, emoji = await self._target(request, channel)
        assert emoji is not None
        return await self._change(channel, message_id, React(
            REMOVE_EMOJI, emoji.to_list(), recipients=dm_recipients(channel)))

    async def delete_all(self, request: web.Request) -> web.Response:
        """Delete All Reactions: MANAGE_MESSAGES."""
        _, channel, _ = await self.api.authorised_channel(request, MANAGE_MESSAGES)
        message_id, _, _ = await self._target(request, channel)
        return await self._change(channel, message_id, React(
            REMOVE_ALL, recipients=dm_recipients(channel)))

    async def get_users(self, request: web.Request) -> web.Response:
        """Get Reactions: the users who reacted with the emoji, by user id, ``after``
        one, at most ``limit`` (1-100, 25), of ``type`` (0 normal, 1 super: none here)."""
        _, channel, _ = await self.api.authorised_channel(request, READ_MESSAGE_HISTORY)
        message_id, _, emoji = await self._target(request, channel)
        assert emoji is not None
        limit = query_int(request, "limit", DEFAULT_USERS, 1, MAX_USERS)
        after = query_id(request, "after")
        reaction_type = query_int(request, "type", NORMAL, 0, max(REACTION_TYPES))
        records = await self.storage.list_records(
            REACTION_KIND, message_id, prefix=emoji_prefix(emoji, reaction_type),
            after=None if after is None else user_key(emoji, reaction_type, after),
            limit=limit)
        ids = [user_of(key) for key, _ in records]
        users = await self.storage.get_users(set(ids)) if ids else {}
        out: list[dict[str, Any]] = [user_object(users[i]) for i in ids if i in users]
        return json_response(out)


async def forget_message_reactions(request: web.Request, channel: Channel | DMChannel,
                                   message_id: int) -> None:
    """A message's delete is durable: its reactions go, and this node stops taking
    reactions to it at once (``ReactionsApi._target``)."""
    reactions = request.app[REACTIONS]
    reactions.known.pop((channel.id, message_id))
    await forget_reactions(reactions.storage, channel.id, message_id)


def add_routes(app: web.Application, api: Api) -> None:
    """Register this module's routes (``@me`` before ``{user_id}``: both match it)."""
    reactions = app[REACTIONS] = ReactionsApi(api)
    r = app.router
    base = f"{PREFIX}/channels/{{channel_id}}/messages/{{message_id}}/reactions"
    shed = reactions.shedding
    r.add_put(f"{base}/{{emoji}}/@me", shed(reactions.put_own))
    r.add_delete(f"{base}/{{emoji}}/@me", shed(reactions.delete_own))
    r.add_delete(f"{base}/{{emoji}}/{{user_id}}", shed(reactions.delete_user))
    r.add_get(f"{base}/{{emoji}}", reactions.get_users)
    r.add_delete(f"{base}/{{emoji}}", shed(reactions.delete_emoji))
    r.add_delete(base, shed(reactions.delete_all))
