"""REST routes for interactions: a user's invocation (``POST /interactions``), the bot's
one answer (``POST /interactions/{id}/{token}/callback``), and the token's
``@original`` and follow-ups under ``/webhooks/{application_id}/{token}`` (routes of
``gateway.rest.webhooks``, which hands interaction tokens over: ``answer_as_interaction``).

Who invokes. A user authenticates as on every greenroom route, ``Authorization: Bot
<token>`` with the user's own token (greenroom has no other spelling: see
``gateway.rest.auth``); a bot's token is refused (20001, as Discord refuses bots here).
The body is what Discord's client sends: ``type`` (2 command, 3 component, 4
autocomplete, 5 modal submit), ``application_id``, ``guild_id``, ``channel_id``,
``session_id``, ``nonce`` and ``data``. Only guild channels: DMs are left out.

Where its state lives. Every fact about an interaction is a record of kind
``interaction`` under its id (``KIND``), with a TTL past the token's 15 minutes, so any
node serves any request about it: its token names the id (``chat.interactions``). The
one answer is ``insert_record_if_absent(..., "answer")`` (an LWT on Cassandra), raced
by the node that took the invocation, which claims ``{"expired": True}`` once the 3 s
are up and tells the invoker it failed (INTERACTION_FAILURE). If that node dies first,
the answer window still closes by the clock (the id's timestamp): a late callback is
10062 whichever node it reaches, and nothing is answered twice.

What is delivered. INTERACTION_CREATE goes to every session of the application's bot
(``UserDispatch`` through each gateway node's session directory; no intent needed).
Bots that only serve an HTTP interactions endpoint are not supported. A response
message is a message of the channel, created by its channel actor like any other
(MESSAGE_CREATE to everyone there) unless it is ephemeral (flag 64): then it is sent to
the invoker's sessions only and kept with the interaction (kind ``ephemeral``, under
the message id, for ``@original``, follow-ups and clicks), never in channel history.
The invoker's sessions also get what Discord's client gets: INTERACTION_CREATE
``{id, nonce}``, INTERACTION_SUCCESS or INTERACTION_FAILURE, INTERACTION_MODAL_CREATE,
APPLICATION_COMMAND_AUTOCOMPLETE_RESPONSE.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from aiohttp import web

from chat import commands as command_store
from chat import components as comps
from chat import interactions as ix
from chat.compose import (
    CREATE_FLAGS,
    ComposeContext,
    ComposeError,
    InvalidBody,
    compose,
    compose_edit,
)
from chat.dms import DM_PERMISSIONS, DMChannel, dm_channel_object
from chat.mentions import PARSE_USERS
from chat.objects import channel_object, member_object, message_object, role_object, user_object
from chat.overwrites import channel_records, from_records
from chat.permissions import (
    ADMINISTRATOR,
    USE_APPLICATION_COMMANDS,
    VIEW_CHANNEL,
    base_permissions,
    channel_permissions,
    in_channel,
)
from chat.validation import FieldError, check_text
from gateway.messages import ChangeMessage, PostMessage
from gateway.rest.attachments import attachments_of, read_message_body
from gateway.rest.dms import dm_access, dm_recipients
from gateway.rest.errors import (
    MISSING_ACCESS,
    MISSING_PERMISSIONS,
    PREFIX,
    UNAUTHORIZED,
    UNKNOWN_APPLICATION,
    UNKNOWN_CHANNEL,
    UNKNOWN_MESSAGE,
    HTTPDiscordError,
    compose_failure,
    invalid_form,
    json_body,
    json_response,
    request_token,
)
from gateway.sessions import (
    ToSession,
    ToUserSessions,
    UserDispatch,
    gateway_nodes,
    node_of_session,
    sessions_address,
)
from gateway.ttl_map import TtlMap
from storage.model import Channel, Guild, Member, Message, Role, User
from storage.snowflake import parse_snowflake, snowflake_ms

if TYPE_CHECKING:
    from gateway.rest.api import Api

KIND = "interaction"
#: an ephemeral message, under its own id (a click names only the message)
EPHEMERAL_KIND = "ephemeral"
#: records live past the token by a minute (clocks of different nodes)
RECORD_TTL_S = ix.TOKEN_WINDOW_MS // 1000 + 60
#: the invoking node claims the unanswered interaction this long after its creation
#: (the window plus a margin for the bot's answer in flight)
EXPIRY_MARGIN_MS = 100

#: how long an invocation's node trusts what it read of an application's bot and commands
BOT_TTL_S = 10.0
COMMAND_TTL_S = 5.0
CREATED_TTL_S = 30.0
CACHED_MAX = 10_000

BOTS_CANNOT_USE = 20001
INVALID_WEBHOOK_TOKEN = 50027

_INTERACTIONS = web.AppKey("greenroom.interactions", Any)


def now_ms() -> int:
    return int(time.time() * 1000)


def refused(refusal: ix.Refusal) -> HTTPDiscordError:
    return HTTPDiscordError(refusal.status, refusal.code, refusal.message)


def _form(problem: FieldError) -> HTTPDiscordError:
    return invalid_form(problem)


def _snowflake_field(body: dict[str, Any], name: str, *, required: bool = True) -> int | None:
    raw = body.get(name)
    if raw is None and not required:
        return None
    value = parse_snowflake(raw)
    if value is None:
        raise _form(FieldError(name, "NUMBER_TYPE_COERCE", "Value is not snowflake."))
    return value


@dataclasses.dataclass(slots=True)
class Where:
    """The channel of an interaction (a guild's, or a DM with the application's bot:
    ``guild`` None), and who may do what there."""

    channel: Channel | DMChannel
    guild: Guild | None
    roles: dict[int, Role]
    overwrites: dict[int, Any]

    def permissions(self, member: Member | None) -> int:
        if self.guild is None or member is None:
            return DM_PERMISSIONS
        return channel_permissions(self.guild, self.roles, member, self.overwrites)

    def may_use_commands(self, member: Member | None) -> bool:
        """USE_APPLICATION_COMMANDS here. Discord's @everyone has it by default and
        greenroom's stored @everyone roles predate the bit, so the guild level counts
        as granting it: only a channel overwrite denying it takes it away."""
        if self.guild is None or member is None:
            return True
        base = base_permissions(self.guild, self.roles, member) | USE_APPLICATION_COMMANDS
        return bool(in_channel(base, self.guild.id, member.user_id, member.roles,
                               self.overwrites) & USE_APPLICATION_COMMANDS)


class Interactions:
    """The interactions of one node's REST API (its routes, and the expiry timers of
    the invocations it took)."""

    def __init__(self, api: Api) -> None:
        self.api = api
        self.gateway = api.gateway
        self.ctx = api.ctx
        self.storage = api.storage
        self._timers: set[asyncio.Task[None]] = set()
        self._bots: TtlMap[tuple[int | None, int], tuple[User, Member | None]] = \
            TtlMap(BOT_TTL_S, CACHED_MAX)
        self._commands: TtlMap[tuple[int, int], dict[str, Any]] = \
            TtlMap(COMMAND_TTL_S, CACHED_MAX)
        #: the records of the interactions this node created, while a callback is likely
        #: (it usually lands here too: one storage read fewer on the answer's path). A
        #: record never changes once stored, so a copy is never stale.
        self._created_here: TtlMap[int, dict[str, Any]] = TtlMap(
            CREATED_TTL_S, CACHED_MAX)
        #: interactions answered through this node, until their expiry would look
        self._answered_here: TtlMap[int, bool] = TtlMap(
            2 * (ix.RESPONSE_WINDOW_MS + EXPIRY_MARGIN_MS) / 1000, 10 * CACHED_MAX)

    # -- plumbing ---------------------------------------------------------------------

    def tell_user(self, user_id: int, event: str, data: Any, *, direct: bool = False
                  ) -> None:
        """``event`` to every session of ``user_id``, on every gateway node (``direct``:
        a DM's, kept by sessions with the DM intents)."""
        base = self.gateway.base
        dispatch = UserDispatch(event, data, direct=direct)
        for node in gateway_nodes(self.gateway.cluster, base.node):
            if node == base.node:
                for session in list(self.ctx.user_sessions.get(user_id, ())):
                    base.tell_from_loop(session, dispatch)
            else:
                base.tell_from_loop(sessions_address(node), ToUserSessions(user_id, dispatch))

    def tell_invoker(self, record: dict[str, Any], event: str, data: Any) -> None:
        """``event`` to the session the invocation named (``session_id``, as Discord's
        client sends it: the modal opens there), if it is the invoker's; to all the
        invoker's sessions when it named none."""
        session_id = record.get("session")
        node = node_of_session(session_id) if isinstance(session_id, str) else None
        if node is None:
            self.tell_user(record["user"], event, data)
            return
        self.gateway.base.tell_from_loop(sessions_address(node), ToSession(
            session_id, UserDispatch(event, data, record["user"])))

    async def ask_channel(self, guild_id: int | None, channel_id: int, msg: Any,
                          staged: Any = None) -> dict[str, Any]:
        """``Api.ask_channel``."""
        return await self.api.ask_channel(guild_id, channel_id, msg, staged)

    async def bot(self, guild_id: int | None, application_id: int
                  ) -> tuple[User | None, Member | None]:
        """The application's bot and its member in the guild (None in a DM), cached for
        ``BOT_TTL_S`` when both are there: every invocation reads them, they rarely
        change (a bot removed from a guild is invocable there that much longer)."""
        key = (guild_id, application_id)
        hit = self._bots.get(key)
        if hit is not None:
            return hit
        user, member = await asyncio.gather(
            self.storage.get_user(application_id),
            self.storage.get_member(guild_id, application_id)
            if guild_id is not None else _nothing())
        if user is not None and (guild_id is None or member is not None):
            self._bots.put(key, (user, member))
        return user, member

    async def command(self, application_id: int, command_id: int) -> dict[str, Any] | None:
        """A registered command, cached for ``COMMAND_TTL_S`` (an edit or a delete
        reaches invocations that much later, as Discord's clients see commands late)."""
        key = (application_id, command_id)
        hit = self._commands.get(key)
        if hit is not None:
            return hit
        command = await command_store.get_command(self.storage, application_id, command_id)
        if command is not None:
            self._commands.put(key, command)
        return command

    def expire_later(self, interaction_id: int, record: dict[str, Any]) -> None:
        task = asyncio.get_running_loop().create_task(self._expire(interaction_id, record))
        self._timers.add(task)
        task.add_done_callback(self._timers.discard)

    async def _expire(self, interaction_id: int, record: dict[str, Any]) -> None:
        """Close the answer window of an interaction this node took: claim it expired
        unless the bot answered, and tell the invoker it failed."""
        due = snowflake_ms(interaction_id) + ix.RESPONSE_WINDOW_MS + EXPIRY_MARGIN_MS
        await asyncio.sleep(max(0.0, (due - now_ms()) / 1000))
        if self._answered_here.get(interaction_id):
            return  # answered through this node: no storage call needed
        try:
            if await self.storage.get_record(KIND, interaction_id, "answer") is not None:
                return  # answered (a read: cheaper than the conditional insert)
            expired, _ = await self.storage.insert_record_if_absent(
                KIND, interaction_id, "answer", {"expired": True}, ttl_s=RECORD_TTL_S)
        except Exception:  # storage down: the clock still closes the window
            return
        if expired:
            self.tell_invoker(record, "INTERACTION_FAILURE",
                              {"id": str(interaction_id), "nonce": record.get("nonce")})

    async def close(self) -> None:
        for task in list(self._timers):
            task.cancel()
        await asyncio.gather(*self._timers, return_exceptions=True)

    # -- resolution ---------------------------------------------------------------------

    async def resolve(self, where: Where, references: list[ix.Reference],
                      ) -> dict[str, dict[str, Any]]:
        """``data.resolved`` for the ids an invocation or a select names (each must
        exist where it is used: a user, a role of the guild, a channel of the guild of
        an allowed type, a message of the channel); 50035 at the id's field otherwise."""
        resolved: dict[str, dict[str, Any]] = {}
        if not references:
            return resolved
        guild_id = where.guild.id if where.guild is not None else None
        user_ids = {r.id for r in references if r.kind in ("user", "mentionable")}
        users = await self.storage.get_users(user_ids) if user_ids else {}
        for ref in references:
            key = str(ref.id)
            if ref.kind == "role" or (ref.kind == "mentionable" and ref.id not in users):
                role = where.roles.get(ref.id)
                if role is None and guild_id is not None and ref.id == guild_id:
                    role = Role(guild_id, guild_id, "@everyone")
                if role is None:
                    raise _form(FieldError(ref.path, "ROLE_INVALID", "Unknown role."))
                resolved.setdefault("roles", {})[key] = role_object(role)
            elif ref.kind in ("user", "mentionable"):
                user = users.get(ref.id)
                if user is None:
                    raise _form(FieldError(ref.path, "USER_INVALID", "Unknown user."))
                resolved.setdefault("users", {})[key] = user_object(user)
                member = await self.storage.get_member(guild_id, ref.id) \
                    if guild_id is not None else None
                if member is not None:
                    partial = member_object(member)
                    for gone in ("deaf", "mute"):
                        partial.pop(gone, None)
                    partial["permissions"] = str(where.permissions(member))
                    resolved.setdefault("members", {})[key] = partial
            elif ref.kind == "channel":
                channel = await self.storage.get_channel(ref.id) \
                    if guild_id is not None else None  # (a DM names no other channel)
                if channel is None or channel.guild_id != guild_id:
                    raise _form(FieldError(ref.path, "CHANNEL_INVALID", "Unknown channel."))
                if ref.channel_types is not None and channel.type not in ref.channel_types:
                    raise _form(FieldError(ref.path, "CHANNEL_TYPE_INVALID",
                                           "Channel type not allowed."))
                partial = {k: v for k, v in channel_object(channel).items()
                           if k != "permission_overwrites"}
                resolved.setdefault("channels", {})[key] = partial
            elif ref.kind == "message":
                message = await self.storage.get_message(where.channel.id, ref.id)
                if message is None:
                    raise _form(FieldError(ref.path, "MESSAGE_INVALID", "Unknown message."))
                resolved.setdefault("messages", {})[key] = \
                    (await self.api.messages_out([message]))[0]
        return resolved

    # -- POST /interactions ---------------------------------------------------------------

    async def invoke(self, request: web.Request) -> web.Response:
        token = request_token(request)
        if not token:
            raise HTTPDiscordError(401, UNAUTHORIZED, "401: Unauthorized")
        try:
            body = await json_body(request)
            channel_id = _snowflake_field(body, "channel_id")
        except HTTPDiscordError:
            await self.api.auth(request)  # a bad token is 401 before a bad body is 400
            raise
        assert channel_id is not None
        # the caller, the channel, its guild, the caller's member, the roles and the
        # channel's overwrites: one storage call
        user, channel, guild, member, roles, records = await self.storage.channel_access(
            token, channel_id, channel_records(channel_id))
        if user is None:
            raise HTTPDiscordError(401, UNAUTHORIZED, "401: Unauthorized")
        if user.bot:
            raise HTTPDiscordError(403, BOTS_CANNOT_USE, "Bots cannot use this endpoint")
        kind = body.get("type")
        if kind not in (ix.APPLICATION_COMMAND, ix.MESSAGE_COMPONENT, ix.AUTOCOMPLETE,
                        ix.MODAL_SUBMIT):
            raise _form(FieldError("type", "BASE_TYPE_CHOICES",
                                   "Value must be one of (2, 3, 4, 5)."))
        application_id = _snowflake_field(body, "application_id")
        guild_id = _snowflake_field(body, "guild_id", required=False)
        assert application_id is not None
        nonce = body.get("nonce")
        if nonce is not None:
            problem = check_text("nonce", nonce if not isinstance(nonce, int) else str(nonce),
                                 max_len=25)
            if problem is not None:
                raise _form(problem)
        session_id = body.get("session_id")
        if session_id is not None:
            problem = check_text("session_id", session_id, max_len=100)
            if problem is not None:
                raise _form(problem)
        data = body.get("data")
        if not isinstance(data, dict):
            raise _form(FieldError("data", "MODEL_TYPE_CONVERT", "Only dictionaries may be used."))
        command_id = parse_snowflake(data.get("id")) \
            if kind in (ix.APPLICATION_COMMAND, ix.AUTOCOMPLETE) else None

        def command_read() -> Any:  # read beside the rest
            return self.command(application_id, command_id) \
                if command_id is not None else _nothing()

        if channel is None and guild_id is None:
            # not a guild's: a DM of the user's (404 10003 / 403 50001 otherwise), with
            # the application's bot (BOT_DM; a DM with someone else would need a
            # user-installed application, which greenroom does not have)
            dm = await dm_access(self.storage, channel_id, user, 0)
            (bot, _), command = await asyncio.gather(self.bot(None, application_id),
                                                     command_read())
            if bot is None or not bot.bot or not dm.has(application_id):
                raise HTTPDiscordError(404, UNKNOWN_APPLICATION, "Unknown Application")
            where = Where(dm, None, {}, {})
            bot_member = member = None
        else:
            if channel is None or guild is None or channel.guild_id is None \
                    or (guild_id is not None and channel.guild_id != guild_id):
                raise HTTPDiscordError(404, UNKNOWN_CHANNEL, "Unknown Channel")
            overwrites, (bot, bot_member), command = await asyncio.gather(
                from_records(self.storage, guild.id, channel_id, records),
                self.bot(guild.id, application_id), command_read())
            where = Where(channel, guild, {r.id: r for r in roles}, overwrites)
            if member is None:
                raise HTTPDiscordError(403, MISSING_ACCESS, "Missing Access")
            if bot is None or not bot.bot or bot_member is None:
                # each bot is its application; it must be in the guild to be invoked there
                raise HTTPDiscordError(404, UNKNOWN_APPLICATION, "Unknown Application")
        perms = where.permissions(member)
        if not perms & VIEW_CHANNEL:
            raise HTTPDiscordError(403, MISSING_ACCESS, "Missing Access")
        if kind in (ix.APPLICATION_COMMAND, ix.AUTOCOMPLETE) \
                and not where.may_use_commands(member):
            raise HTTPDiscordError(403, MISSING_PERMISSIONS, "Missing Permissions")
        bot_perms = where.permissions(bot_member)
        interaction_id = self.ctx.snowflakes.next_id()
        record: dict[str, Any] = {
            "app": application_id, "type": kind, "user": user.id,
            "guild": where.guild.id if where.guild is not None else None,
            "channel": channel_id, "nonce": nonce, "session": session_id,
            "user_object": user_object(user),
            "member_object": member_object(member) if member is not None else None,
            # what the answer needs, so that it reads nothing more: the bot as author,
            # and what it may do in the channel (mentions, tts); a DM's two users
            "bot_object": user_object(bot),
            "bot_member": member_object(bot_member) if bot_member is not None else None,
            "app_permissions": bot_perms, "recipients": dm_recipients(where.channel),
        }
        message: dict[str, Any] | None = None
        if kind in (ix.APPLICATION_COMMAND, ix.AUTOCOMPLETE):
            out_data = await self._command_data(data, command, where, perms, record)
        elif kind == ix.MESSAGE_COMPONENT:
            out_data, message = await self._click_data(body, data, application_id, where,
                                                       user, record)
        else:
            out_data, message = await self._submit_data(data, application_id, user,
                                                        channel_id, where, record)
        token = ix.new_token(interaction_id)
        record["digest"] = ix.token_digest(token)
        await self.storage.put_record(KIND, interaction_id, "i", record, ttl_s=RECORD_TTL_S)
        self._created_here.put(interaction_id, record)
        if isinstance(where.channel, DMChannel):
            channel_payload = dm_channel_object(where.channel, user.id, {bot.id: bot})
        else:
            channel_payload = {**channel_object(where.channel), "permissions": str(perms)}
            channel_payload.pop("permission_overwrites", None)
        payload = ix.interaction_object(
            interaction_id=interaction_id, application_id=application_id,
            interaction_type=kind, token=token, data=out_data,
            guild_id=record["guild"], channel=channel_payload,
            member={**member_object(member, user), "permissions": str(perms)}
            if member is not None else None,
            user=user_object(user), app_permissions=bot_perms, message=message)
        self.tell_user(application_id, "INTERACTION_CREATE", payload)
        self.tell_invoker(record, "INTERACTION_CREATE", {"id": str(interaction_id),
                                                         "nonce": nonce})
        self.expire_later(interaction_id, record)
        return web.Response(status=204)

    async def _command_data(self, data: dict[str, Any], command: dict[str, Any] | None,
                            where: Where, perms: int, record: dict[str, Any]
                            ) -> dict[str, Any]:
        """``data`` of a command's invocation (``command``: the registered one its id
        names, read beside the rest, or None), checked against it and resolved."""
        command_id = _snowflake_field(data, "id")
        guild_id = where.guild.id if where.guild is not None else None
        if command is None or not ix.command_usable_in(command, guild_id):
            raise HTTPDiscordError(404, ix.UNKNOWN_COMMAND, "Unknown application command")
        if guild_id is not None:  # (member permissions mean nothing in a DM)
            refusal = ix.command_permission_refusal(command, perms,
                                                    bool(perms & ADMINISTRATOR))
            if refusal is not None:
                raise refused(refusal)
        autocomplete = record["type"] == ix.AUTOCOMPLETE
        try:
            checked = ix.check_command_data(command, data, autocomplete=autocomplete)
        except ix.InvalidInvocation as exc:
            raise _form(exc.problem) from None
        out: dict[str, Any] = {"id": str(command_id), "name": command["name"],
                               "type": command.get("type", ix.CHAT_INPUT)}
        if command.get("guild_id"):
            out["guild_id"] = command["guild_id"]
        if checked.options:
            out["options"] = checked.options
        targets = [r for r in checked.references if r.path == "data.target_id"]
        if targets:
            out["target_id"] = str(targets[0].id)
        if not autocomplete:  # partial input is not resolved
            resolved = await self.resolve(where, checked.references)
            if resolved:
                out["resolved"] = resolved
        record.update(name=checked.full_name, command_type=out["type"],
                      focused_type=checked.focused_type)
        return out

    async def _click_data(self, body: dict[str, Any], data: dict[str, Any],
                          application_id: int, where: Where, user: User,
                          record: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        message_id = _snowflake_field(body, "message_id")
        assert message_id is not None
        stored = await self.storage.get_message(where.channel.id, message_id)
        if stored is not None:
            if stored.author_id != application_id:
                raise HTTPDiscordError(404, UNKNOWN_MESSAGE, "Unknown Message")
            components = stored.extra.get("components") or []
            message = (await self.api.messages_out([stored]))[0]
            ephemeral = False
        else:
            kept = await self.storage.get_record(EPHEMERAL_KIND, message_id, "m")
            if kept is None or kept["user"] != user.id or kept["channel"] != where.channel.id \
                    or kept["app"] != application_id:
                raise HTTPDiscordError(404, UNKNOWN_MESSAGE, "Unknown Message")
            message = kept["object"]
            components = message.get("components") or []
            ephemeral = True
        try:
            component, values = comps.check_click(components, data)
        except comps.InvalidComponents as exc:
            raise _form(exc.problem) from None
        out: dict[str, Any] = {"custom_id": component["custom_id"],
                               "component_type": component["type"]}
        if component["type"] in comps.SELECTS:
            out["values"] = values
            kinds = comps.SELECT_VALUE_KINDS.get(component["type"])
            if kinds is not None:
                kind = "mentionable" if len(kinds) > 1 else kinds[0]
                types = component.get("channel_types")
                resolved = await self.resolve(where, [
                    ix.Reference(kind, int(v), f"data.values.{i}",
                                 tuple(types) if types else None)
                    for i, v in enumerate(values)])
                if resolved:
                    out["resolved"] = resolved
        record.update(message=message_id, message_ephemeral=ephemeral)
        return out, message

    async def _submit_data(self, data: dict[str, Any], application_id: int, user: User,
                           channel_id: int, where: Where, record: dict[str, Any]
                           ) -> tuple[dict[str, Any], dict[str, Any] | None]:
        modal_id = _snowflake_field(data, "id")
        assert modal_id is not None
        opener, modal = await asyncio.gather(
            self.storage.get_record(KIND, modal_id, "i"),
            self.storage.get_record(KIND, modal_id, "modal"))
        if opener is None or modal is None or opener["user"] != user.id \
                or opener["channel"] != channel_id or opener["app"] != application_id:
            raise HTTPDiscordError(404, ix.UNKNOWN_INTERACTION, "Unknown interaction")
        refusal = ix.token_refusal(snowflake_ms(modal_id), now_ms())
        if refusal is not None:
            raise HTTPDiscordError(404, ix.UNKNOWN_INTERACTION, "Unknown interaction")
        try:
            answered = comps.check_submission(modal, data)
        except comps.InvalidComponents as exc:
            raise _form(exc.problem) from None
        references = []  # the users, roles and channels chosen in the modal's selects
        for item in answered:
            chosen = item.get("component") or {}
            kinds = comps.SELECT_VALUE_KINDS.get(chosen.get("type"))
            if kinds is not None:
                kind = "mentionable" if len(kinds) > 1 else kinds[0]
                references += [ix.Reference(kind, int(v), "data.components")
                               for v in chosen["values"]]
        resolved = await self.resolve(where, references)
        first, _ = await self.storage.insert_record_if_absent(
            KIND, modal_id, "submitted", {"at": now_ms()}, ttl_s=RECORD_TTL_S)
        if not first:
            raise HTTPDiscordError(400, ix.ALREADY_ACKNOWLEDGED,
                                   "This modal has already been submitted.")
        message = None
        if opener.get("message") is not None:  # opened from a component: its message
            record.update(message=opener["message"],
                          message_ephemeral=opener.get("message_ephemeral", False))
            message = await self._message_object(record, opener["message"])
        out: dict[str, Any] = {"custom_id": modal["custom_id"], "components": answered}
        if resolved:
            out["resolved"] = resolved
        return out, message

    async def _message_object(self, record: dict[str, Any], message_id: int
                              ) -> dict[str, Any] | None:
        if record.get("message_ephemeral"):
            kept = await self.storage.get_record(EPHEMERAL_KIND, message_id, "m")
            return kept["object"] if kept else None
        stored = await self.storage.get_message(record["channel"], message_id)
        return (await self.api.messages_out([stored]))[0] if stored else None

    # -- the one answer ---------------------------------------------------------------------

    async def interaction_for(self, interaction_id: int, token: str) -> dict[str, Any]:
        record = self._created_here.get(interaction_id) \
            or await self.storage.get_record(KIND, interaction_id, "i")
        if record is None or not ix.token_matches(token, record["digest"]):
            raise HTTPDiscordError(404, ix.UNKNOWN_INTERACTION, "Unknown interaction")
        return record

    async def callback(self, request: web.Request) -> web.Response:
        interaction_id = parse_snowflake(request.match_info["interaction_id"])
        if interaction_id is None:
            raise HTTPDiscordError(404, ix.UNKNOWN_INTERACTION, "Unknown interaction")
        record = await self.interaction_for(interaction_id, request.match_info["token"])
        body, files = await read_message_body(request)  # JSON, or multipart with files
        kind = record["type"]
        callback_type = body.get("type")
        problem = ix.callback_type_problem(kind, callback_type,
                                           record.get("message") is not None)
        if problem is not None:
            raise _form(problem)
        data = body.get("data")
        if data is not None and not isinstance(data, dict):
            raise _form(FieldError("data", "MODEL_TYPE_CONVERT", "Only dictionaries may be used."))
        data = data or {}
        # Check the whole body before the answer is spent (a 50035 leaves it unanswered).
        prepared = await self._prepare(record, callback_type, data, files, request)
        try:
            created = snowflake_ms(interaction_id)
            refusal = ix.callback_refusal(created, now_ms(), None)
            if refusal is not None:
                raise refused(refusal)
            claimed, existing = await self.storage.insert_record_if_absent(
                KIND, interaction_id, "answer", {"type": callback_type, "at": now_ms()},
                ttl_s=RECORD_TTL_S)
            if not claimed:
                raise refused(ix.callback_refusal(created, created, existing)
                              or ix.Refusal(400, ix.ALREADY_ACKNOWLEDGED,
                                            "Interaction has already been acknowledged."))
            self._answered_here.put(interaction_id, True)
        except BaseException:
            staged = getattr(prepared, "staged", None)
            if staged is not None:  # its files were stored pending: no message will list them
                await staged.discard()
            raise
        sent: list[bool] = []  # (set once the answer's effect left this handler)
        try:
            resource = await self._act(interaction_id, record, callback_type, prepared, sent)
        except BaseException:
            if not sent:  # nothing can have been shown: the bot may answer again
                self._answered_here.pop(interaction_id)
                await self.storage.delete_record(KIND, interaction_id, "answer")
            raise  # else it stays answered, even if what it showed is unknown
        self.tell_invoker(record, "INTERACTION_SUCCESS",
                          {"id": str(interaction_id), "nonce": record.get("nonce")})
        if request.query.get("with_response", "").lower() not in ("true", "1"):
            return web.Response(status=204)
        callback: dict[str, Any] = {"id": str(interaction_id), "type": kind}
        out: dict[str, Any] = {"interaction": callback}
        if resource is not None:
            callback["response_message_id"] = resource["id"]
            callback["response_message_loading"] = bool(resource["flags"] & ix.LOADING)
            callback["response_message_ephemeral"] = bool(resource["flags"] & ix.EPHEMERAL)
            if callback_type in (ix.CHANNEL_MESSAGE_WITH_SOURCE, ix.UPDATE_MESSAGE):
                out["resource"] = {"type": callback_type, "message": resource}
        if "resource" not in out:
            out["resource"] = {"type": callback_type}
        return json_response(out)

    async def _compose_context(self, record: dict[str, Any]) -> ComposeContext:
        """Who writes the interaction's messages: its bot, with the permissions it had in
        the channel when the interaction was created (mentions, tts)."""
        return ComposeContext(record["channel"], record["guild"], record["app"],
                              record["app_permissions"], default_parse=PARSE_USERS,
                              allowed_flags=CREATE_FLAGS | ix.EPHEMERAL)

    async def _prepare(self, record: dict[str, Any], callback_type: int,
                       data: dict[str, Any], files: Sequence[Any], request: web.Request
                       ) -> Any:
        """What a callback will do, checked (raises its 50035); nothing done yet but
        its files stored pending."""
        if files and callback_type not in (ix.CHANNEL_MESSAGE_WITH_SOURCE, ix.UPDATE_MESSAGE):
            raise _form(FieldError("files", "BASE_TYPE_INVALID",
                                   "Only a message carries files."))
        if callback_type == ix.CHANNEL_MESSAGE_WITH_SOURCE:
            return await self._new_message(data, await self._compose_context(record),
                                           files=files, request=request)
        if callback_type == ix.DEFERRED_CHANNEL_MESSAGE_WITH_SOURCE:
            problem = ix.check_flags(data.get("flags"), field="data.flags")
            if problem is not None:
                raise _form(problem)
            return (data.get("flags") or 0) & ix.EPHEMERAL
        if callback_type == ix.UPDATE_MESSAGE:
            return await self._edit_of(record, record["message"], data,
                                       await self._compose_context(record),
                                       files=files, request=request)
        if callback_type == ix.AUTOCOMPLETE_RESULT:
            problem = ix.check_autocomplete_choices(data, record.get("focused_type") or ix.STRING)
            if problem is not None:
                raise _form(problem)
            return data["choices"]
        if callback_type == ix.MODAL:
            try:
                return comps.check_modal(data)
            except comps.InvalidComponents as exc:
                raise _form(exc.problem) from None
        return None  # DEFERRED_UPDATE_MESSAGE: an acknowledgement only

    async def _act(self, interaction_id: int, record: dict[str, Any], callback_type: int,
                   prepared: Any, sent: list[bool]) -> dict[str, Any] | None:
        """Do what the claimed answer says; the message it made or changed, if any.
        ``sent`` gets an item once something may have reached the channel or a user
        (a message write asked for: its outcome may be unknown)."""
        if callback_type == ix.CHANNEL_MESSAGE_WITH_SOURCE:
            message = await self._create(interaction_id, record, prepared, sent=sent)
            await self._remember(interaction_id, "original", message)
            return message
        if callback_type == ix.DEFERRED_CHANNEL_MESSAGE_WITH_SOURCE:
            composed = _Composed("", False, {"flags": ix.LOADING | prepared, "embeds": []}, [])
            message = await self._create(interaction_id, record, composed, sent=sent)
            await self._remember(interaction_id, "original", message)
            return message
        if callback_type == ix.UPDATE_MESSAGE:
            return await self._apply_edit(record, record["message"], prepared, sent=sent)
        sent.append(True)
        if callback_type == ix.AUTOCOMPLETE_RESULT:
            self.tell_invoker(record, "APPLICATION_COMMAND_AUTOCOMPLETE_RESPONSE",
                              {"nonce": record.get("nonce"), "choices": prepared})
            return None
        if callback_type == ix.MODAL:
            await self.storage.put_record(KIND, interaction_id, "modal", prepared,
                                          ttl_s=RECORD_TTL_S)
            self.tell_invoker(record, "INTERACTION_MODAL_CREATE", {
                "id": str(interaction_id), "nonce": record.get("nonce"),
                "channel_id": str(record["channel"]),
                "application": {"id": str(record["app"]),
                                "name": record["bot_object"]["username"], "icon": None},
                **prepared})
            return None
        return None

    # -- messages of an interaction -----------------------------------------------------------

    async def _new_message(self, data: dict[str, Any], ctx: ComposeContext,
                           field_prefix: str = "data.", *, files: Sequence[Any] = (),
                           request: web.Request | None = None) -> _Composed:
        """A response's or follow-up's message, checked (content, embeds, mentions,
        flags by ``chat.compose``; components by ``chat.components``), its ``files``
        stored pending (``gateway.rest.attachments``)."""
        problem = ix.check_flags(data.get("flags"), field=f"{field_prefix}flags")
        if problem is not None:
            raise _form(problem)
        try:
            components = comps.check_message_components(
                data.get("components"), field=f"{field_prefix}components")
        except comps.InvalidComponents as exc:
            raise _form(exc.problem) from None
        try:  # (components alone make a message, as files do)
            composed = await compose(data, ctx=ctx, storage=self.storage,
                                     files=bool(components or files))
        except ComposeError as exc:
            raise _compose_failure(exc, field_prefix) from None
        fields = dict(composed.fields)
        fields["flags"] = (fields.get("flags") or 0) | ((data.get("flags") or 0) & ix.EPHEMERAL)
        staged = await self._stage(data, files, request, ctx.channel_id, field_prefix,
                                   ephemeral=bool(fields["flags"] & ix.EPHEMERAL))
        return _Composed(composed.content, composed.tts, fields, components, staged)

    async def _stage(self, data: dict[str, Any], files: Sequence[Any],
                     request: web.Request | None, channel_id: int, field_prefix: str, *,
                     ephemeral: bool, existing: Message | None = None) -> Any:
        """The message's files stored pending (None: the body says nothing of files).
        An ephemeral message is kept with its interaction, not in the channel, and a
        file is served only while a channel message lists it: no files there."""
        if not files and "attachments" not in data:
            return None
        if ephemeral:
            raise _form(FieldError(f"{field_prefix}attachments", "BASE_TYPE_INVALID",
                                   "An ephemeral message cannot carry files here."))
        assert request is not None
        return await attachments_of(request).stage(request, channel_id, data, list(files),
                                                   existing=existing)

    async def _create(self, interaction_id: int, record: dict[str, Any],
                      composed: _Composed, *, follow_up: bool = False,
                      sent: list[bool] | None = None) -> dict[str, Any]:
        """Create a message of the interaction: in the channel (its actor writes it and
        fans MESSAGE_CREATE out), or, ephemeral, for the invoker's sessions only."""
        app_id, guild_id, channel_id = record["app"], record["guild"], record["channel"]
        author, member = record["bot_object"], record["bot_member"]
        kind = record["type"]
        meta = ix.interaction_metadata(
            interaction_id=interaction_id, interaction_type=kind,
            user=record["user_object"], name=record.get("name"),
            command_type=record.get("command_type"), guild_id=guild_id,
            message_id=record.get("message"))
        fields = dict(composed.fields)
        extra = dict(fields.get("extra") or {})
        extra.update(application_id=str(app_id), webhook_id=str(app_id),
                     interaction_metadata=meta, components=composed.components)
        if kind == ix.APPLICATION_COMMAND:  # the legacy ``interaction`` field
            legacy = {"id": str(interaction_id), "type": kind, "name": record.get("name"),
                      "user": record["user_object"]}
            if record["member_object"] is not None:  # (none in a DM)
                legacy["member"] = record["member_object"]
            extra["interaction"] = legacy
        fields["extra"] = extra
        message_type = 0 if follow_up else ix.response_message_type(
            kind, record.get("command_type"))
        if fields.get("flags", 0) & ix.EPHEMERAL:
            message = Message(channel_id=channel_id, id=self.ctx.snowflakes.next_id(),
                              author_id=app_id, content=composed.content, guild_id=guild_id,
                              tts=composed.tts, type=message_type)
            for name, value in fields.items():
                setattr(message, name, value)
            payload = message_object(message, author, member)
            await self.storage.put_record(EPHEMERAL_KIND, message.id, "m", {
                "object": payload, "fields": _message_fields(message), "user": record["user"],
                "channel": channel_id, "app": app_id, "interaction": interaction_id},
                ttl_s=RECORD_TTL_S)
            if sent is not None:
                sent.append(True)
            self.tell_user(record["user"], "MESSAGE_CREATE", payload,
                           direct=record["guild"] is None)
            return _rest_view(payload)
        if composed.staged is not None and composed.staged.objects:
            fields["attachments"] = composed.staged.objects
        post = PostMessage(guild_id=guild_id, author=author, member=member,
                           content=composed.content, tts=composed.tts, type=message_type,
                           fields=fields, recipients=record.get("recipients"))
        if sent is not None:
            sent.append(True)
        return await self.ask_channel(guild_id, channel_id, post, composed.staged)

    async def _remember(self, interaction_id: int, key: str, message: dict[str, Any]) -> None:
        await self.storage.put_record(KIND, interaction_id, key, {
            "id": int(message["id"]), "ephemeral": bool(message["flags"] & ix.EPHEMERAL)},
            ttl_s=RECORD_TTL_S)

    async def _stored(self, record: dict[str, Any], message_id: int
                      ) -> tuple[Message, dict[str, Any] | None]:
        """The message to edit (a channel message, or an ephemeral one rebuilt from its
        record: the record too)."""
        stored = await self.storage.get_message(record["channel"], message_id)
        if stored is not None:
            return stored, None
        kept = await self.storage.get_record(EPHEMERAL_KIND, message_id, "m")
        if kept is None:
            raise HTTPDiscordError(404, UNKNOWN_MESSAGE, "Unknown Message")
        return Message(**kept["fields"]), kept

    async def _edit_of(self, record: dict[str, Any], message_id: int, data: dict[str, Any],
                       ctx: ComposeContext, *, field_prefix: str = "data.",
                       files: Sequence[Any] = (),
                       request: web.Request | None = None) -> _Edit:
        """The changes an edit body makes to a message of the interaction, checked (its
        new files stored pending)."""
        message, kept = await self._stored(record, message_id)
        if message.author_id != record["app"]:
            raise HTTPDiscordError(404, UNKNOWN_MESSAGE, "Unknown Message")
        loading = bool(message.flags & ix.LOADING)
        components = message.extra.get("components") or []
        if "components" in data:
            try:
                components = comps.check_message_components(
                    data["components"], field=f"{field_prefix}components")
            except comps.InvalidComponents as exc:
                raise _form(exc.problem) from None
        attaching = bool(files) or "attachments" in data
        has_files = bool(files or data.get("attachments")) if attaching \
            else bool(message.attachments)
        try:  # (the loading message is empty: the edit that fills it says something)
            changes = await compose_edit(
                {k: v for k, v in data.items() if k != "flags"}, ctx=ctx,
                storage=self.storage, message=message,
                attachments=has_files or bool(components))
        except ComposeError as exc:
            raise _compose_failure(exc, field_prefix) from None
        staged = await self._stage(data, files, request, record["channel"], field_prefix,
                                   ephemeral=kept is not None, existing=message)
        if staged is not None and staged.given:
            changes["attachments"] = staged.objects
        if "components" in data:
            extra = dict(changes.get("extra", message.extra))
            extra["components"] = components
            changes["extra"] = extra
        if loading:
            changes["flags"] = message.flags & ~ix.LOADING
        return _Edit(message, kept, changes, staged)

    async def _apply_edit(self, record: dict[str, Any], message_id: int, edit: _Edit,
                          *, sent: list[bool] | None = None) -> dict[str, Any]:
        message, kept, changes = edit.message, edit.kept, edit.changes
        for name, value in changes.items():
            setattr(message, name, value)
        author = record["bot_object"]
        if kept is not None:  # ephemeral: the invoker's sessions only
            if changes:
                message.edited_at_ms = now_ms()
            payload = message_object(message, author, kept["object"].get("member"))
            kept.update(object=payload, fields=_message_fields(message))
            await self.storage.put_record(EPHEMERAL_KIND, message_id, "m", kept,
                                          ttl_s=RECORD_TTL_S)
            if sent is not None:
                sent.append(True)
            self.tell_user(kept["user"], "MESSAGE_UPDATE", payload,
                           direct=record["guild"] is None)
            return _rest_view(payload)
        if not changes:
            return (await self.api.messages_out([message]))[0]
        payload = message_object(message, author, record["bot_member"])
        if sent is not None:
            sent.append(True)
        return await self.ask_channel(record["guild"], record["channel"], ChangeMessage(
            record["guild"], message_id, changes, payload,
            recipients=record.get("recipients")), edit.staged)

    async def _delete(self, record: dict[str, Any], message_id: int) -> None:
        message, kept = await self._stored(record, message_id)
        if message.author_id != record["app"]:
            raise HTTPDiscordError(404, UNKNOWN_MESSAGE, "Unknown Message")
        if kept is not None:
            await self.storage.delete_record(EPHEMERAL_KIND, message_id, "m")
            deleted = {"id": str(message_id), "channel_id": str(record["channel"])}
            if record["guild"] is not None:
                deleted["guild_id"] = str(record["guild"])
            self.tell_user(kept["user"], "MESSAGE_DELETE", deleted,
                           direct=record["guild"] is None)
            return
        await self.ask_channel(record["guild"], record["channel"], ChangeMessage(
            record["guild"], message_id, None, recipients=record.get("recipients")))

    # -- /webhooks/{application_id}/{token}: @original and follow-ups --------------------------

    async def as_webhook(self, request: web.Request) -> web.StreamResponse | None:
        token = request.match_info.get("token", "")
        interaction_id = ix.token_interaction_id(token)
        if interaction_id is None:
            return None
        message_ref = request.match_info.get("message_id")
        if message_ref is None and request.method != "POST":
            return None  # the webhook object's routes: no interaction has one
        if parse_snowflake(request.match_info.get("webhook_id", "")) is None:
            raise HTTPDiscordError(404, ix.UNKNOWN_WEBHOOK, "Unknown Webhook")
        record = await self.storage.get_record(KIND, interaction_id, "i")
        if record is None or str(record["app"]) != request.match_info["webhook_id"]:
            raise HTTPDiscordError(404, ix.UNKNOWN_WEBHOOK, "Unknown Webhook")
        if not ix.token_matches(token, record["digest"]):
            raise HTTPDiscordError(401, INVALID_WEBHOOK_TOKEN, "Invalid Webhook Token")
        refusal = ix.token_refusal(snowflake_ms(interaction_id), now_ms())
        if refusal is not None:
            raise refused(refusal)
        answer = await self.storage.get_record(KIND, interaction_id, "answer")
        if answer is None or answer.get("expired"):
            # nothing acknowledged it: there is no webhook to use yet (or ever)
            raise HTTPDiscordError(404, ix.UNKNOWN_WEBHOOK, "Unknown Webhook")
        if message_ref is None:
            return await self._follow_up(request, interaction_id, record, answer)
        message_id = await self._message_of(interaction_id, record, answer, message_ref)
        if request.method == "GET":
            message, kept = await self._stored(record, message_id)
            if kept is not None:
                return json_response(_rest_view(kept["object"]))
            return json_response((await self.api.messages_out([message]))[0])
        if request.method == "DELETE":
            await self._delete(record, message_id)
            return web.Response(status=204)
        body, files = await read_message_body(request)
        ctx = await self._compose_context(record)
        edit = await self._edit_of(record, message_id, body, ctx, field_prefix="",
                                   files=files, request=request)
        if edit.message.flags & ix.LOADING:
            await self.storage.insert_record_if_absent(KIND, interaction_id, "filled",
                                                       {"by": "edit"}, ttl_s=RECORD_TTL_S)
        return json_response(await self._apply_edit(record, message_id, edit))

    async def _message_of(self, interaction_id: int, record: dict[str, Any],
                          answer: dict[str, Any], ref: str) -> int:
        """The message ``@original`` or an id names, if it is this interaction's."""
        if ref == "@original":
            original = await self.storage.get_record(KIND, interaction_id, "original")
            if original is not None:
                return original["id"]
            if answer.get("type") in (ix.DEFERRED_UPDATE_MESSAGE, ix.UPDATE_MESSAGE) \
                    and record.get("message") is not None:
                return record["message"]  # a component's message is its original
            raise HTTPDiscordError(404, UNKNOWN_MESSAGE, "Unknown Message")
        message_id = parse_snowflake(ref)
        if message_id is None:
            raise HTTPDiscordError(404, UNKNOWN_MESSAGE, "Unknown Message")
        mine = await self.storage.get_record(KIND, interaction_id, f"f:{message_id:020d}")
        if mine is None:
            original = await self.storage.get_record(KIND, interaction_id, "original")
            if original is None or original["id"] != message_id:
                raise HTTPDiscordError(404, UNKNOWN_MESSAGE, "Unknown Message")
        return message_id

    async def _follow_up(self, request: web.Request, interaction_id: int,
                         record: dict[str, Any], answer: dict[str, Any]) -> web.Response:
        body, files = await read_message_body(request)
        if request.query.get("thread_id") is not None or body.get("thread_name") is not None:
            raise _form(FieldError("thread_id", "BASE_TYPE_INVALID",
                                   "Interaction follow-ups cannot use threads."))
        ctx = await self._compose_context(record)
        if answer.get("type") == ix.DEFERRED_CHANNEL_MESSAGE_WITH_SOURCE:
            # Discord: the first follow-up after a deferred answer edits the loading
            # message (its ephemeral state kept) instead of creating one
            original = await self.storage.get_record(KIND, interaction_id, "original")
            if original is not None:
                message, _ = await self._stored(record, original["id"])
                if message.flags & ix.LOADING:
                    edit = await self._edit_of(
                        record, original["id"],
                        {k: v for k, v in body.items() if k != "flags"}, ctx,
                        field_prefix="", files=files, request=request)
                    first, _ = await self.storage.insert_record_if_absent(
                        KIND, interaction_id, "filled", {"by": "follow-up"},
                        ttl_s=RECORD_TTL_S)
                    if first:
                        return json_response(
                            await self._apply_edit(record, original["id"], edit))
                    if edit.staged is not None:  # another follow-up filled it first
                        await edit.staged.discard()
        composed = await self._new_message(body, ctx, field_prefix="", files=files,
                                           request=request)
        message = await self._create(interaction_id, record, composed, follow_up=True)
        await self._remember(interaction_id, f"f:{int(message['id']):020d}", message)
        return json_response(message)


@dataclasses.dataclass(slots=True)
class _Composed:
    content: str
    tts: bool
    fields: dict[str, Any]
    components: list[dict[str, Any]]
    staged: Any = None  # its files (gateway.rest.attachments.Staged), or None


@dataclasses.dataclass(slots=True)
class _Edit:
    message: Message
    kept: dict[str, Any] | None
    changes: dict[str, Any]
    staged: Any = None


def _compose_failure(exc: ComposeError, field_prefix: str) -> HTTPDiscordError:
    """``compose_failure``, the field named where the callback's body has it (under
    ``data``)."""
    if isinstance(exc, InvalidBody) and field_prefix and not exc.problem.empty:
        problem = exc.problem
        return _form(FieldError(f"{field_prefix}{problem.field}", problem.code,
                                problem.message))
    return compose_failure(exc)


async def _nothing() -> None:
    return None


def _message_fields(message: Message) -> dict[str, Any]:
    return {f.name: getattr(message, f.name) for f in dataclasses.fields(Message)}


def _rest_view(payload: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in payload.items() if k != "member"}


def message_components(body: dict[str, Any], author: User) -> list[dict[str, Any]] | None:
    """The ``components`` of a message body sent to a channel's routes (a post or an
    edit), checked (``chat.components``); None when the body has none. Only an
    application's bot may send them (a user's are refused, 50035)."""
    if "components" not in body:
        return None
    if body["components"] and not author.bot:
        raise _form(FieldError("components", "COMPONENT_AUTHOR_NOT_APPLICATION",
                               "Only applications can send components."))
    try:
        return comps.check_message_components(body["components"])
    except comps.InvalidComponents as exc:
        raise _form(exc.problem) from None


def interactions_of(app: web.Application) -> Interactions:
    return app[_INTERACTIONS]


def add_routes(app: web.Application, api: Api) -> None:
    """Register this module's routes."""
    interactions = Interactions(api)
    app[_INTERACTIONS] = interactions

    async def stop_timers(_: web.Application) -> None:
        await interactions.close()

    app.on_shutdown.append(stop_timers)
    r = app.router
    r.add_post(f"{PREFIX}/interactions", interactions.invoke)
    r.add_post(f"{PREFIX}/interactions/{{interaction_id}}/{{token}}/callback",
               interactions.callback)


async def answer_as_interaction(api: Api, request: web.Request) -> web.StreamResponse | None:
    """``/webhooks/{webhook_id}/{token}...`` is shared with channel webhooks (Discord
    serves interaction follow-ups and ``@original`` there, the application id standing
    in for the webhook's): answer the request here when ``{token}`` is an interaction's
    token, else None (then it is a channel webhook's; ``gateway.rest.webhooks``)."""
    if ix.token_interaction_id(request.match_info.get("token", "")) is None:
        return None
    return await interactions_of(request.app).as_webhook(request)

