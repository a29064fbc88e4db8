"""REST routes for application commands: global and per-guild create (an upsert by type
and name), list, get, edit, delete and bulk overwrite, and the command permissions
reads (``chat.commands`` holds the rules and the storage).

Only the application's own bot manages its commands: greenroom's application id is the
bot's user id, so ``{app_id}`` must be the caller's own id (else 403 50001, as Discord
answers a bot token for another application), and a guild's commands need the bot in
that guild (403 50001 otherwise).

Command permissions (per user, role and channel overwrites) are edited on Discord only
with a user's OAuth2 Bearer token (``applications.commands.permissions.update``); a bot
token is refused 403 20001, which is what greenroom answers, since it issues no such
token. So none are ever set: the guild list reads ``[]`` and a command's reads 404
10066, as Discord answers for a command without overwrites, and
APPLICATION_COMMAND_PERMISSIONS_UPDATE is never sent.
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any

from aiohttp import web

from chat.commands import (
    CommandError,
    Problem,
    check_bulk,
    check_command,
    command_object,
    create_command,
    delete_command,
    edit_command,
    errors_tree,
    get_command,
    list_commands,
    overwrite_commands,
)
from gateway.rest.errors import (
    INVALID_FORM_BODY,
    MISSING_ACCESS,
    PREFIX,
    UNKNOWN_APPLICATION,
    UNKNOWN_GUILD,
    HTTPDiscordError,
    json_response,
    path_id,
)

if TYPE_CHECKING:
    from gateway.rest.api import Api

# Discord's JSON error codes met here.
BOTS_CANNOT_USE = 20001
REQUEST_TOO_LARGE = 40005
UNKNOWN_APPLICATION_COMMAND = 10063
UNKNOWN_COMMAND_PERMISSIONS = 10066
MAX_APPLICATION_COMMANDS = 30032


#: Largest JSON body of a bulk overwrite and of one command. aiohttp's 1 MiB default is
#: too small for a localised bot: 100 commands of 10 options with 5 locales are 1.4 MB
#: of UTF-8 JSON, 3.4 MB as discord.py sends it (ASCII-escaped).
MAX_BULK_BYTES = 16 * 1024 * 1024
MAX_COMMAND_BYTES = 2 * 1024 * 1024
_READ_CHUNK = 64 * 1024
#: Bodies larger than this are parsed and checked in a thread: a 16 MiB bulk costs
#: ~0.35 s of CPU, which would otherwise stall every socket of the node's loop at once.
OFF_LOOP_BYTES = 256 * 1024
#: a bulk overwrite of more commands than this is checked in a thread too
OFF_LOOP_COMMANDS = 8


async def read_json(request: web.Request, limit: int) -> Any:
    """The request's JSON value, read up to ``limit`` bytes (413 40005 beyond; 400 50035
    if it is not JSON). Read from the stream: ``request.json()`` stops at the
    application's ``client_max_size``."""
    if (request.content_length or 0) > limit:
        raise HTTPDiscordError(413, REQUEST_TOO_LARGE, "Request entity too large")
    chunks, total = [], 0
    async for chunk in request.content.iter_chunked(_READ_CHUNK):
        total += len(chunk)
        if total > limit:
            raise HTTPDiscordError(413, REQUEST_TOO_LARGE, "Request entity too large")
        chunks.append(chunk)
    raw = b"".join(chunks)
    try:
        if len(raw) <= OFF_LOOP_BYTES:
            return json.loads(raw)
        return await asyncio.to_thread(json.loads, raw)
    except (ValueError, RecursionError):  # not JSON, not UTF-8, or nested past the stack
        raise HTTPDiscordError(400, INVALID_FORM_BODY, "Invalid Form Body") from None


async def read_json_object(request: web.Request, limit: int) -> dict[str, Any]:
    body = await read_json(request, limit)
    if not isinstance(body, dict):
        raise HTTPDiscordError(400, INVALID_FORM_BODY, "Invalid Form Body")
    return body


def command_failure(exc: CommandError) -> HTTPDiscordError:
    """Discord's answer for a command write that could not be done."""
    if exc.reason == "invalid":
        return HTTPDiscordError(400, INVALID_FORM_BODY, "Invalid Form Body",
                                errors_tree(exc.problems))
    if exc.reason == "unknown":
        return HTTPDiscordError(404, UNKNOWN_APPLICATION_COMMAND, "Unknown application command")
    if exc.reason == "limit":
        return HTTPDiscordError(400, MAX_APPLICATION_COMMANDS,
                                f"Maximum number of application commands reached ({exc.limit})")
    return HTTPDiscordError(503, 0, "application commands busy; not done, retry")


def invalid(problems: list[Problem]) -> HTTPDiscordError:
    return HTTPDiscordError(400, INVALID_FORM_BODY, "Invalid Form Body", errors_tree(problems))


class CommandsApi:
    """The handlers; ``api`` gives authentication, storage and the id generator."""

    def __init__(self, api: Api) -> None:
        self.api = api
        self.storage = api.storage

    def next_id(self) -> int:
        return self.api.ctx.snowflakes.next_id()

    async def scope(self, request: web.Request) -> tuple[int, int | None]:
        """``(application_id, guild_id or None)`` once the caller may manage them."""
        user = await self.api.auth(request)
        application_id = path_id(request, "app_id", UNKNOWN_APPLICATION, "Unknown Application")
        if not user.bot or user.id != application_id:
            raise HTTPDiscordError(403, MISSING_ACCESS, "Missing Access")
        if "guild_id" not in request.match_info:
            return application_id, None
        guild_id = path_id(request, "guild_id", UNKNOWN_GUILD, "Unknown Guild")
        if await self.storage.get_guild(guild_id) is None:
            raise HTTPDiscordError(404, UNKNOWN_GUILD, "Unknown Guild")
        if await self.storage.get_member(guild_id, user.id) is None:
            raise HTTPDiscordError(403, MISSING_ACCESS, "Missing Access")
        return application_id, guild_id

    def command_id(self, request: web.Request) -> int:
        return path_id(request, "command_id", UNKNOWN_APPLICATION_COMMAND,
                       "Unknown application command")

    async def in_scope(self, application_id: int, guild_id: int | None, command_id: int
                       ) -> dict[str, Any]:
        command = await get_command(self.storage, application_id, command_id)
        if command is None or command.get("guild_id") != (str(guild_id) if guild_id else None):
            raise HTTPDiscordError(404, UNKNOWN_APPLICATION_COMMAND, "Unknown application command")
        return command

    # -- commands -------------------------------------------------------------------

    async def get_commands(self, request: web.Request) -> web.Response:
        application_id, guild_id = await self.scope(request)
        commands = await list_commands(self.storage, application_id, guild_id)
        # Discord's boolean query string; only a list read takes it
        full = request.query.get("with_localizations", "").lower() in ("true", "1")
        return json_response([command_object(c, localizations=full) for c in commands])

    async def post_command(self, request: web.Request) -> web.Response:
        application_id, guild_id = await self.scope(request)
        definition, problems = check_command(
            await read_json_object(request, MAX_COMMAND_BYTES))
        if definition is None:
            raise invalid(problems)
        try:
            command, created = await create_command(
                self.storage, self.next_id, application_id, guild_id, definition)
        except CommandError as exc:
            raise command_failure(exc) from None
        return json_response(command_object(command), status=201 if created else 200)

    async def put_commands(self, request: web.Request) -> web.Response:
        application_id, guild_id = await self.scope(request)
        body = await read_json(request, MAX_BULK_BYTES)
        if isinstance(body, list) and len(body) > OFF_LOOP_COMMANDS:
            definitions, problems = await asyncio.to_thread(check_bulk, body)
        else:
            definitions, problems = check_bulk(body)
        if problems:
            raise invalid(problems)
        try:
            commands = await overwrite_commands(
                self.storage, self.next_id, application_id, guild_id, definitions)
        except CommandError as exc:
            raise command_failure(exc) from None
        return json_response([command_object(c) for c in commands])

    async def get_command(self, request: web.Request) -> web.Response:
        application_id, guild_id = await self.scope(request)
        command = await self.in_scope(application_id, guild_id, self.command_id(request))
        return json_response(command_object(command))

    async def patch_command(self, request: web.Request) -> web.Response:
        application_id, guild_id = await self.scope(request)
        command_id = self.command_id(request)
        changes = await read_json_object(request, MAX_COMMAND_BYTES)
        try:
            command = await edit_command(self.storage, self.next_id, application_id,
                                         guild_id, command_id, changes)
        except CommandError as exc:
            raise command_failure(exc) from None
        return json_response(command_object(command))

    async def delete_command(self, request: web.Request) -> web.Response:
        application_id, guild_id = await self.scope(request)
        command_id = self.command_id(request)
        try:
            deleted = await delete_command(self.storage, application_id, guild_id, command_id)
        except CommandError as exc:
            raise command_failure(exc) from None
        if not deleted:
            raise HTTPDiscordError(404, UNKNOWN_APPLICATION_COMMAND, "Unknown application command")
        return web.Response(status=204)

    # -- permissions ------------------------------------------------------------------

    async def get_guild_permissions(self, request: web.Request) -> web.Response:
        """Every command's overwrites in the guild: none can be set (module docstring)."""
        await self.scope(request)
        return json_response([])

    async def get_command_permissions(self, request: web.Request) -> web.Response:
        """One command's (or, by the application's id, the default) overwrites in the
        guild: Discord answers 10066 for one that has none, which is every one here."""
        application_id, guild_id = await self.scope(request)
        command_id = self.command_id(request)
        if command_id != application_id:
            command = await get_command(self.storage, application_id, command_id)
            if command is None or command.get("guild_id") not in (None, str(guild_id)):
                raise HTTPDiscordError(404, UNKNOWN_APPLICATION_COMMAND,
                                       "Unknown application command")
        raise HTTPDiscordError(404, UNKNOWN_COMMAND_PERMISSIONS,
                               "Unknown application command permissions")

    async def put_command_permissions(self, request: web.Request) -> web.Response:
        """Discord takes only a user's Bearer token here; a bot token is 403 20001."""
        await self.api.auth(request)
        raise HTTPDiscordError(403, BOTS_CANNOT_USE, "Bots cannot use this endpoint")


def add_routes(app: web.Application, api: Api) -> None:
    """Register this module's routes (``commands/permissions`` before
    ``commands/{command_id}``, which would otherwise take it for an id)."""
    handlers = CommandsApi(api)
    r = app.router
    for scope in (f"{PREFIX}/applications/{{app_id}}",
                  f"{PREFIX}/applications/{{app_id}}/guilds/{{guild_id}}"):
        r.add_get(f"{scope}/commands", handlers.get_commands)
        r.add_post(f"{scope}/commands", handlers.post_command)
        r.add_put(f"{scope}/commands", handlers.put_commands)
        if scope.endswith("{guild_id}"):
            r.add_get(f"{scope}/commands/permissions", handlers.get_guild_permissions)
            r.add_get(f"{scope}/commands/{{command_id}}/permissions",
                      handlers.get_command_permissions)
            r.add_put(f"{scope}/commands/{{command_id}}/permissions",
                      handlers.put_command_permissions)
        r.add_get(f"{scope}/commands/{{command_id}}", handlers.get_command)
        r.add_patch(f"{scope}/commands/{{command_id}}", handlers.patch_command)
        r.add_delete(f"{scope}/commands/{{command_id}}", handlers.delete_command)

