"""Channel webhooks over REST: managed with a bot's token and MANAGE_WEBHOOKS
(``/channels/{id}/webhooks``, ``/guilds/{id}/webhooks``, ``/webhooks/{id}``), used
with their own token and no ``Authorization`` (``/webhooks/{id}/{token}``: read,
modify, delete, execute, and the messages it posted).

``/webhooks/{id}/{token}...`` is also where Discord serves interaction follow-ups (the
application's id and the interaction's token in the same places): every handler of
those routes first offers the request to ``gateway.rest.interactions``, and answers it
as a channel webhook's only when that declines.

A webhook's message is created like any other (``PostMessage`` to the channel actor,
durable before the answer, fanned out as MESSAGE_CREATE), with the webhook as its
author and ``webhook_id`` in ``Message.extra`` (``chat.webhooks``). An unknown id is
Discord's 404 10015, a wrong token 401 50027; neither says which tokens exist.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from actors.registry import Route
from chat.compose import ComposeContext, ComposeError, compose, compose_edit
from chat.mentions import PARSE_USERS
from chat.objects import message_object, user_object
from chat.permissions import (
    ALL_PERMISSIONS,
    MANAGE_WEBHOOKS,
    READ_MESSAGE_HISTORY,
)
from chat.validation import FieldError
from chat.webhooks import (
    BY_CHANNEL,
    BY_GUILD,
    MAX_PER_CHANNEL,
    Webhook,
    avatar_hash,
    check_avatar_url,
    check_name,
    delete_webhook,
    listed_webhooks,
    load_webhook,
    new_token,
    save_webhook,
    webhook_author,
    webhook_message_extra,
    webhook_object,
)
from gateway.messages import ChangeMessage, GuildBroadcast, PostMessage
from gateway.rest.api import check_channel_access
from gateway.rest.attachments import attachments_of, read_message_body
from gateway.rest.errors import (
    MISSING_ACCESS,
    PREFIX,
    UNKNOWN_CHANNEL,
    UNKNOWN_MESSAGE,
    HTTPDiscordError,
    compose_failure,
    invalid_form,
    json_body,
    json_response,
    path_id,
)
from gateway.rest.guilds import MoreApi
from gateway.rest.interactions import answer_as_interaction
from storage.model import Channel, Message, User
from storage.snowflake import parse_snowflake

if TYPE_CHECKING:
    from gateway.rest.api import Api

UNKNOWN_WEBHOOK = 10015
MAX_WEBHOOKS = 30007
INVALID_WEBHOOK_TOKEN = 50027
THREADS_ONLY_IN_FORUMS = 220003
#: What a webhook may do in its channel when it posts: anything a message can carry
#: (embeds, files, @everyone, tts), but not reply (Discord ignores a webhook's
#: ``message_reference``, so it is dropped before the body is composed).
WEBHOOK_PERMISSIONS = ALL_PERMISSIONS & ~READ_MESSAGE_HISTORY
#: Discord's boolean query strings
_TRUE, _FALSE = ("true", "True", "1"), ("false", "False", "0")


def _unknown_webhook() -> HTTPDiscordError:
    return HTTPDiscordError(404, UNKNOWN_WEBHOOK, "Unknown Webhook")


def _flag(request: web.Request, name: str) -> bool:
    """A boolean query parameter (``wait``): Discord's spellings only, else 50035."""
    raw = request.query.get(name)
    if raw is None or raw in _FALSE:
        return False
    if raw in _TRUE:
        return True
    raise invalid_form(FieldError(name, "BOOLEAN_TYPE_COERCE",
                                  f"Value \"{raw[:32]}\" is not a valid boolean."))


def _no_threads(request: web.Request, body: dict[str, Any] | None = None) -> None:
    """Threads do not exist here: a ``thread_id`` names none (400, saying so), and a
    ``thread_name`` is Discord's 220003 (only forum channels take one; there are none)."""
    if "thread_id" in request.query:
        raise invalid_form(FieldError(
            "thread_id", "THREADS_UNSUPPORTED",
            "This server has no threads: send without thread_id."))
    if body is not None and body.get("thread_name") is not None:
        raise HTTPDiscordError(400, THREADS_ONLY_IN_FORUMS,
                               "Webhooks can only create threads in forum channels")


class WebhookApi:
    def __init__(self, api: Api) -> None:
        self.api = api
        self.gateway = api.gateway
        self.ctx = api.ctx
        self.storage = api.storage
        self.guilds = MoreApi(api)  # its guild_for: the guild in the URL, checked

    # -- helpers --------------------------------------------------------------------------

    async def require(self, user: User, channel: Channel, need: int) -> None:
        """403 unless ``user`` may view ``channel`` and has ``need`` in it."""
        guild = await self.storage.get_guild(channel.guild_id)
        member = await self.storage.get_member(channel.guild_id, user.id)
        if guild is None or member is None:
            raise HTTPDiscordError(403, MISSING_ACCESS, "Missing Access")
        roles = await self.storage.roles_for_guild(guild.id)
        check_channel_access(guild, roles, member, need,
                             await self.api.overwrites_that_matter(guild, roles, member, channel))

    async def managed(self, request: web.Request, need: int = MANAGE_WEBHOOKS, *,
                      owner_reads: bool = False) -> tuple[User, Webhook, Channel]:
        """``/webhooks/{id}`` with a bot's token: the webhook, its channel (``need``
        checked there for the caller) and the caller. ``owner_reads``: the application
        that created it needs no permission (Discord's rule for reading one)."""
        user = await self.api.auth(request)
        webhook_id = path_id(request, "webhook_id", UNKNOWN_WEBHOOK, "Unknown Webhook")
        webhook = await load_webhook(self.storage, webhook_id)
        channel = None if webhook is None else await self.storage.get_channel(
            webhook.channel_id)
        if webhook is None or channel is None:
            raise _unknown_webhook()
        if not (owner_reads and webhook.application_id == user.id):
            await self.require(user, channel, need)
        return user, webhook, channel

    async def by_token(self, request: web.Request) -> Webhook:
        """``/webhooks/{id}/{token}``: the webhook whose token this is; 404 10015 for an
        id that names none, 401 50027 for a wrong token."""
        webhook_id = parse_snowflake(request.match_info["webhook_id"])
        webhook = None if webhook_id is None else await load_webhook(self.storage, webhook_id)
        if webhook is None:
            raise _unknown_webhook()
        if not webhook.token_matches(request.match_info["token"]):
            raise HTTPDiscordError(401, INVALID_WEBHOOK_TOKEN, "Invalid Webhook Token")
        return webhook

    async def creator(self, webhook: Webhook) -> dict[str, Any] | None:
        user = await self.storage.get_user(webhook.user_id)
        return None if user is None else user_object(user)

    def webhooks_update(self, guild_id: int, channel_id: int) -> None:
        """WEBHOOKS_UPDATE to the guild's sessions that asked for GUILD_WEBHOOKS."""
        self.gateway.base.tell_from_loop(self.ctx.registry, Route("guild", guild_id, GuildBroadcast(
            "WEBHOOKS_UPDATE", {"guild_id": str(guild_id), "channel_id": str(channel_id)})))

    async def ask_channel(self, guild_id: int, channel_id: int, msg: Any,
                          staged: Any = None) -> web.Response:
        """A post, edit or delete through the channel actor (``Api.ask_channel``),
        answered as REST answers a message's (the message object; ``{}`` for a delete)."""
        return json_response(await self.api.ask_channel(guild_id, channel_id, msg, staged))

    async def changes(self, body: dict[str, Any], webhook: Webhook) -> Webhook:
        """``webhook`` with a modify body's ``name`` and ``avatar`` applied (checked)."""
        if "name" in body:
            problem = check_name("name", body["name"])
            if problem is not None:
                raise invalid_form(problem)
            webhook.name = body["name"].strip()
        if "avatar" in body:
            digest, problem = avatar_hash(body["avatar"])
            if problem is not None:
                raise invalid_form(problem)
            webhook.avatar = digest
        return webhook

    # -- managed with a bot's token ---------------------------------------------------------

    async def create(self, request: web.Request) -> web.Response:
        user, channel, _ = await self.api.authorised_channel(request, MANAGE_WEBHOOKS)
        body = await json_body(request)
        problem = check_name("name", body.get("name"))
        if problem is not None:
            raise invalid_form(problem)
        avatar, problem = avatar_hash(body.get("avatar"))
        if problem is not None:
            raise invalid_form(problem)
        if len(await listed_webhooks(self.storage, BY_CHANNEL, channel.id)) >= MAX_PER_CHANNEL:
            raise HTTPDiscordError(400, MAX_WEBHOOKS,
                                   f"Maximum number of webhooks reached ({MAX_PER_CHANNEL})")
        token, digest = new_token()
        webhook = Webhook(self.ctx.snowflakes.next_id(), channel.guild_id, channel.id,
                          body["name"].strip(), digest, user.id,
                          user.id if user.bot else None, avatar)
        await save_webhook(self.storage, webhook)
        self.webhooks_update(webhook.guild_id, webhook.channel_id)
        return json_response(webhook_object(webhook, creator=user_object(user), token=token))

    async def channel_webhooks(self, request: web.Request) -> web.Response:
        _, channel, _ = await self.api.authorised_channel(request, MANAGE_WEBHOOKS)
        return json_response(await self.objects(
            await listed_webhooks(self.storage, BY_CHANNEL, channel.id)))

    async def guild_webhooks(self, request: web.Request) -> web.Response:
        user = await self.api.auth(request)
        guild, _, _ = await self.guilds.guild_for(request, user, MANAGE_WEBHOOKS)
        return json_response(await self.objects(
            await listed_webhooks(self.storage, BY_GUILD, guild.id)))

    async def objects(self, webhooks: list[Webhook]) -> list[dict[str, Any]]:
        users = await self.storage.get_users({w.user_id for w in webhooks})
        return [webhook_object(w, creator=user_object(users[w.user_id])
                               if w.user_id in users else None) for w in webhooks]

    async def get(self, request: web.Request) -> web.Response:
        _, webhook, _ = await self.managed(request, owner_reads=True)
        return json_response(webhook_object(webhook, creator=await self.creator(webhook)))

    async def modify(self, request: web.Request) -> web.Response:
        user, webhook, _ = await self.managed(request)
        body = await json_body(request)
        webhook = await self.changes(body, webhook)
        moved_from = None
        if body.get("channel_id") is not None:
            target_id = parse_snowflake(body["channel_id"])
            target = None if target_id is None else await self.storage.get_channel(target_id)
            if target is None:
                raise HTTPDiscordError(404, UNKNOWN_CHANNEL, "Unknown Channel")
            if target.guild_id != webhook.guild_id:
                raise invalid_form(FieldError("channel_id", "CHANNEL_INVALID",
                                              "Must be a channel of the webhook's guild."))
            await self.require(user, target, MANAGE_WEBHOOKS)
            if target.id != webhook.channel_id:
                if len(await listed_webhooks(self.storage, BY_CHANNEL, target.id)) \
                        >= MAX_PER_CHANNEL:
                    raise HTTPDiscordError(
                        400, MAX_WEBHOOKS,
                        f"Maximum number of webhooks reached ({MAX_PER_CHANNEL})")
                moved_from, webhook.channel_id = webhook.channel_id, target.id
        await save_webhook(self.storage, webhook, moved_from)
        self.webhooks_update(webhook.guild_id, webhook.channel_id)
        if moved_from is not None:
            self.webhooks_update(webhook.guild_id, moved_from)
        return json_response(webhook_object(webhook, creator=await self.creator(webhook)))

    async def delete(self, request: web.Request) -> web.Response:
        _, webhook, _ = await self.managed(request)
        await delete_webhook(self.storage, webhook)
        self.webhooks_update(webhook.guild_id, webhook.channel_id)
        return web.Response(status=204)

    # -- used with the webhook's token (no Authorization) ---------------------------------

    async def get_by_token(self, request: web.Request) -> web.StreamResponse:
        answer = await answer_as_interaction(self.api, request)
        if answer is not None:
            return answer
        # with the token its caller gave (as Discord answers): a client that refetches
        # a webhook by token keeps a usable one (discord.py's and hikari's take it from
        # the answer)
        return json_response(webhook_object(await self.by_token(request),
                                            token=request.match_info["token"]))

    async def modify_by_token(self, request: web.Request) -> web.StreamResponse:
        answer = await answer_as_interaction(self.api, request)
        if answer is not None:
            return answer
        webhook = await self.by_token(request)
        body = await json_body(request)
        if "channel_id" in body:
            raise invalid_form(FieldError("channel_id", "BASE_TYPE_INVALID",
                                          "A webhook's token cannot move it: use a bot's "
                                          "token with MANAGE_WEBHOOKS."))
        webhook = await self.changes(body, webhook)
        await save_webhook(self.storage, webhook)
        self.webhooks_update(webhook.guild_id, webhook.channel_id)
        return json_response(webhook_object(webhook, token=request.match_info["token"]))

    async def delete_by_token(self, request: web.Request) -> web.StreamResponse:
        answer = await answer_as_interaction(self.api, request)
        if answer is not None:
            return answer
        webhook = await self.by_token(request)
        await delete_webhook(self.storage, webhook)
        self.webhooks_update(webhook.guild_id, webhook.channel_id)
        return web.Response(status=204)

    def compose_context(self, webhook: Webhook) -> ComposeContext:
        """Mentions in a webhook's message: users pinged by default (as Discord does for
        webhooks), everything else only through ``allowed_mentions``."""
        return ComposeContext(webhook.channel_id, webhook.guild_id, webhook.id,
                              WEBHOOK_PERMISSIONS, default_parse=PARSE_USERS)

    async def execute(self, request: web.Request) -> web.StreamResponse:
        """Post as the webhook: the message object with ``?wait=true``, else 204 (once
        the message is durable either way: a 204 means it was stored). The body is a
        message's (``chat.compose``: content, embeds, allowed_mentions, tts, flags;
        files as multipart) plus ``username`` and ``avatar_url``."""
        answer = await answer_as_interaction(self.api, request)
        if answer is not None:
            return answer
        webhook = await self.by_token(request)
        wait = _flag(request, "wait")
        body, files = await read_message_body(request)
        _no_threads(request, body)
        username = body.get("username")
        problem = check_name("username", username, required=False) \
            or check_avatar_url(body.get("avatar_url"))
        if problem is not None:
            raise invalid_form(problem)
        body.pop("message_reference", None)
        try:
            composed = await compose(body, ctx=self.compose_context(webhook),
                                     storage=self.storage, files=bool(files))
        except ComposeError as exc:
            raise compose_failure(exc) from None
        author = webhook_author(webhook, username, body.get("avatar_url"))
        fields = composed.fields
        fields["extra"] = {**fields.get("extra", {}), **webhook_message_extra(webhook, author)}
        post = PostMessage(guild_id=webhook.guild_id, author=author, member=None,
                           content=composed.content, tts=composed.tts, type=composed.type,
                           fields=fields)
        staged = await attachments_of(request).stage(request, webhook.channel_id, body, files)
        if staged.objects:
            fields["attachments"] = staged.objects
        response = await self.ask_channel(webhook.guild_id, webhook.channel_id, post, staged)
        return response if wait else web.Response(status=204)

    async def own_message(self, request: web.Request, webhook: Webhook) -> Message:
        """The message in the URL, if this webhook posted it; 404 10008 otherwise."""
        _no_threads(request)
        message_id = path_id(request, "message_id", UNKNOWN_MESSAGE, "Unknown Message")
        message = await self.storage.get_message(webhook.channel_id, message_id)
        if message is None or message.extra.get("webhook_id") != str(webhook.id):
            raise HTTPDiscordError(404, UNKNOWN_MESSAGE, "Unknown Message")
        return message

    async def get_message(self, request: web.Request) -> web.StreamResponse:
        answer = await answer_as_interaction(self.api, request)
        if answer is not None:
            return answer
        webhook = await self.by_token(request)
        message = await self.own_message(request, webhook)
        return json_response(message_object(message, webhook_author(webhook)))

    async def edit_message(self, request: web.Request) -> web.StreamResponse:
        """Edit the webhook's message as a message is edited (``compose_edit``: content
        with its mentions parsed again, embeds, flags; ``attachments`` kept or dropped,
        new files added); the author and ``webhook_id`` stay."""
        answer = await answer_as_interaction(self.api, request)
        if answer is not None:
            return answer
        webhook = await self.by_token(request)
        message = await self.own_message(request, webhook)
        body, files = await read_message_body(request)
        attaching = "attachments" in body or bool(files)
        try:
            changes = await compose_edit(
                body, ctx=self.compose_context(webhook), storage=self.storage,
                message=message,
                attachments=bool(files or body.get("attachments")) if attaching else None)
        except ComposeError as exc:
            raise compose_failure(exc) from None
        for name, value in changes.items():
            setattr(message, name, value)
        service = attachments_of(request)
        staged = await service.stage(request, webhook.channel_id, body, files,
                                     existing=message)
        retired = []
        if staged.given:
            retired = await service.retire(message, keep={str(a["id"]) for a in staged.objects})
            message.attachments = changes["attachments"] = staged.objects
        payload = message_object(message, webhook_author(webhook))
        response = await self.ask_channel(
            webhook.guild_id, webhook.channel_id,
            ChangeMessage(webhook.guild_id, message.id, changes, payload), staged)
        if staged.given:
            await service.forget(webhook.channel_id, retired)
        return response

    async def delete_message(self, request: web.Request) -> web.StreamResponse:
        answer = await answer_as_interaction(self.api, request)
        if answer is not None:
            return answer
        webhook = await self.by_token(request)
        message = await self.own_message(request, webhook)
        service = attachments_of(request)
        retired = await service.retire(message) if message.attachments else []
        await self.ask_channel(webhook.guild_id, webhook.channel_id,
                               ChangeMessage(webhook.guild_id, message.id, None))
        await service.forget(webhook.channel_id, retired)
        return web.Response(status=204)


def add_routes(app: web.Application, api: Api) -> None:
    """Register this module's routes."""
    hooks = WebhookApi(api)
    r = app.router
    r.add_post(f"{PREFIX}/channels/{{channel_id}}/webhooks", hooks.create)
    r.add_get(f"{PREFIX}/channels/{{channel_id}}/webhooks", hooks.channel_webhooks)
    r.add_get(f"{PREFIX}/guilds/{{guild_id}}/webhooks", hooks.guild_webhooks)
    one = f"{PREFIX}/webhooks/{{webhook_id}}"
    r.add_get(one, hooks.get)
    r.add_patch(one, hooks.modify)
    r.add_delete(one, hooks.delete)
    by_token = f"{one}/{{token}}"
    r.add_get(by_token, hooks.get_by_token)
    r.add_patch(by_token, hooks.modify_by_token)
    r.add_delete(by_token, hooks.delete_by_token)
    r.add_post(by_token, hooks.execute)
    message = f"{by_token}/messages/{{message_id}}"
    r.add_get(message, hooks.get_message)
    r.add_patch(message, hooks.edit_message)
    r.add_delete(message, hooks.delete_message)
