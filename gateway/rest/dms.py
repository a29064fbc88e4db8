"""REST for direct messages: ``POST /users/@me/channels`` (open a DM), ``GET
/users/@me/channels``, and the DM side of the channel routes (``Api.authorised_channel``
and ``Api.channel_for`` answer a DM channel through ``dm_access``).

Opening is idempotent per pair of users, also when two nodes open the same pair at
once: the pair's claim is one ``insert_record_if_absent`` (chat/dms.py). A DM's
messages, edits, deletes, history and typing take the guild channel's routes and its
channel actor (keyed ``(None, channel id)``, so placed by the channel's own id); the
actor tells the two users' sessions itself (gateway/direct.py).

Decided where Discord's docs are silent:

* CHANNEL_CREATE of a new DM goes to the sessions of its *non-bot* users only, through
  the channel's actor (so before its first MESSAGE_CREATE). Discord stopped sending it
  to bots: hikari asserts that a CHANNEL_CREATE is a guild channel's (it logs an error
  for a DM's), discord.py discards it; bots learn a DM from its MESSAGE_CREATE
  (discord.js with ``Partials.Channel``, as on Discord).
* READY's ``private_channels`` stays empty, as Discord sends it to bots, and ``GET
  /users/@me/channels`` answers ``[]`` ("no longer supported for bots").
* Opening a DM checks who may DM whom (Discord's 400 50007 when opening, e.g. a bot
  with itself or with another bot), and so does every send (403 50007: a shared
  guild may be gone since).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from aiohttp import web

from actors.registry import Route
from chat.dms import (
    DMChannel,
    Refusal,
    beyond_dm,
    dm_channel_object,
    load_channel,
    open_channel,
    parse_recipient_id,
    refusal,
    shares_guild,
)
from chat.objects import user_object
from gateway.channel import channel_key
from gateway.direct import DirectEvent
from gateway.rest.errors import (
    MISSING_ACCESS,
    PREFIX,
    UNKNOWN_CHANNEL,
    HTTPDiscordError,
    invalid_form,
    json_body,
    json_response,
    path_id,
)
from storage.history import HistoryQuery
from storage.model import User

if TYPE_CHECKING:
    from gateway.rest.api import Api
    from storage.base import Storage

# Discord's JSON error codes for DMs.
UNKNOWN_USER = 10013
CANNOT_EXECUTE_IN_DM = 50003
CANNOT_MESSAGE_USER = 50007


async def dm_access(storage: Storage, channel_id: int, user: User, need: int) -> DMChannel:
    """The DM channel ``channel_id`` for one of its two users: 404 10003 if there is no
    such channel, 403 50001 for anyone else (Discord's answer for a channel one cannot
    see), 403 50003 for what no one may do in a DM (``need`` beyond ``DM_PERMISSIONS``)."""
    channel = await load_channel(storage, channel_id)
    if channel is None:
        raise HTTPDiscordError(404, UNKNOWN_CHANNEL, "Unknown Channel")
    if not channel.has(user.id):
        raise HTTPDiscordError(403, MISSING_ACCESS, "Missing Access")
    if beyond_dm(need):
        raise HTTPDiscordError(403, CANNOT_EXECUTE_IN_DM, "Cannot execute action on a DM channel")
    return channel


async def may_message(storage: Storage, sender: User, recipient_id: int) -> tuple[
        User | None, Refusal | None]:
    """The recipient and why ``sender`` may not DM it (None: it may)."""
    if recipient_id == sender.id:
        return sender, Refusal.SELF
    recipient, mine, theirs = await asyncio.gather(
        storage.get_user(recipient_id), storage.guild_ids_for_user(sender.id),
        storage.guild_ids_for_user(recipient_id))
    return recipient, refusal(sender, recipient, shares_guild(mine, theirs))


async def check_send(storage: Storage, sender: User, channel: DMChannel) -> None:
    """403 50007 unless ``sender`` may still message the DM's other user."""
    _, why = await may_message(storage, sender, channel.other(sender.id))
    if why is not None:
        raise HTTPDiscordError(403, CANNOT_MESSAGE_USER, "Cannot send messages to this user")


def dm_recipients(channel: Any) -> list[int] | None:
    """A DM channel's two users (what the channel actor tells), None for a guild's."""
    return list(channel.recipients) if channel.guild_id is None else None


async def last_message_id(storage: Storage, channel_id: int) -> int | None:
    newest = await storage.history(HistoryQuery(channel_id, limit=1))
    return newest[0].id if newest else None


async def dm_object(storage: Storage, channel: DMChannel, viewer: User) -> dict[str, Any]:
    """The DM channel object ``viewer`` gets (the other user, the newest message id)."""
    other_id = channel.other(viewer.id)
    other, last = await asyncio.gather(storage.get_user(other_id),
                                       last_message_id(storage, channel.id))
    users = {other_id: other} if other is not None else {}
    return dm_channel_object(channel, viewer.id, users, last)


class DMs:
    def __init__(self, api: Api) -> None:
        self.api = api
        self.storage = api.storage
        self.ctx = api.ctx

    async def open_dm(self, request: web.Request) -> web.Response:
        """``POST /users/@me/channels``: the DM channel with ``recipient_id``, opened if
        needed (the same channel every time)."""
        user = await self.api.auth(request)
        body = await json_body(request)
        recipient_id = parse_recipient_id(body)
        if not isinstance(recipient_id, int):
            raise invalid_form(recipient_id)
        recipient, why = await may_message(self.storage, user, recipient_id)
        if why is Refusal.UNKNOWN_USER or recipient is None:
            raise HTTPDiscordError(404, UNKNOWN_USER, "Unknown User")
        if why is not None:
            raise HTTPDiscordError(400, CANNOT_MESSAGE_USER, "Cannot send messages to this user")
        channel, created = await open_channel(self.storage, self.ctx.snowflakes.next_id,
                                              user.id, recipient.id)
        last = None if created else await last_message_id(self.storage, channel.id)
        users = {user.id: user, recipient.id: recipient}
        if created:
            self._announce(channel, users)
        return json_response(dm_channel_object(channel, user.id, users, last))

    def _announce(self, channel: DMChannel, users: dict[int, User]) -> None:
        """CHANNEL_CREATE of a new DM to its non-bot users' sessions (see the module
        docstring), each seeing the other as the recipient; through the channel's actor,
        so it comes before the channel's first message."""
        key = channel_key(None, channel.id)
        for user_id in channel.recipients:
            if users[user_id].bot:
                continue
            self.api.gateway.base.tell_from_loop(self.ctx.registry, Route(
                "channel", key, DirectEvent([user_id], "CHANNEL_CREATE",
                                            dm_channel_object(channel, user_id, users))))

    async def get_user(self, request: web.Request) -> web.Response:
        """``GET /users/{user_id}``: a user object, as bots read it before a DM
        (discord.js ``users.fetch``, hikari ``fetch_user``, discord.py ``fetch_user``)."""
        await self.api.auth(request)
        user_id = path_id(request, "user_id", UNKNOWN_USER, "Unknown User")
        user = await self.storage.get_user(user_id)
        if user is None:
            raise HTTPDiscordError(404, UNKNOWN_USER, "Unknown User")
        return json_response(user_object(user))

    async def list_dms(self, request: web.Request) -> web.Response:
        """``GET /users/@me/channels``: ``[]`` (Discord's answer to bots; DMs reach a
        client as they are used)."""
        await self.api.auth(request)
        return json_response([])


def add_routes(app: web.Application, api: Api) -> None:
    """Register this module's routes."""
    dms = DMs(api)
    app.router.add_post(f"{PREFIX}/users/@me/channels", dms.open_dm)
    app.router.add_get(f"{PREFIX}/users/@me/channels", dms.list_dms)
    app.router.add_get(f"{PREFIX}/users/{{user_id}}", dms.get_user)
