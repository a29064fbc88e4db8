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

import json
import logging
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from actors.messages import NodeDownError
from actors.registry import Route
from gateway.channel import channel_key
from gateway.messages import HistoryPage, Posted, PostFailed, PostMessage, ReadHistory
from gateway.objects import (
    READ_MESSAGE_HISTORY,
    SEND_MESSAGES,
    VIEW_CHANNEL,
    base_permissions,
    channel_object,
    member_object,
    message_object,
    user_object,
)
from gateway.outbound import bounded_responses
from gateway.rest_auth import Principals, bot_token
from gateway.tracing import fanout_attributes
from gateway.validation import FieldError, check_content, check_text
from observability import inject_current, span_from
from observability.http_metrics import server_metrics
from observability.logging import LogThrottle
from storage.applications import effective_flags
from storage.history import HistoryQuery
from storage.model import Channel, Message, User
from storage.snowflake import parse_snowflake

if TYPE_CHECKING:
    from gateway.server import Gateway

log = logging.getLogger("greenroom.gateway.rest")
#: the node's storage, for ``error_response`` to tell an outage from a bug
STORAGE = web.AppKey("storage", Any)
#: request keys: why a request was answered 5xx (``(detail, exception or None)``, set by
#: ``error_response``) and the request's span (for its log lines' trace ids)
FAILURE = web.RequestKey("greenroom.failure", tuple)
SPAN = web.RequestKey("greenroom.span", Any)

PREFIX = "/api/v10"
ASK_TIMEOUT_S = 15.0
#: Seconds a client waits before retrying a request answered 503 (``unavailable``).
RETRY_AFTER_S = 1.0
#: Seconds the REST and ingress servers wait for in-flight requests when they stop;
#: what is still running then is cancelled (its client sees the connection close).
SHUTDOWN_TIMEOUT_S = 1.0

# Discord's JSON error codes.
UNKNOWN_APPLICATION = 10002
UNKNOWN_CHANNEL = 10003
UNKNOWN_GUILD = 10004
UNKNOWN_MESSAGE = 10008
UNAUTHORIZED = 0
MISSING_ACCESS = 50001
MISSING_PERMISSIONS = 50013
EMPTY_MESSAGE = 50006
INVALID_FORM_BODY = 50035


def json_response(data: Any, *, status: int = 200,
                  headers: dict[str, str] | None = None) -> web.Response:
    """JSON with the bare ``application/json`` content type: discord.py only parses a
    body whose Content-Type is exactly that (Discord's own header)."""
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    try:
        body = text.encode()
    except UnicodeEncodeError:  # a lone surrogate echoed from a request: \u-escape it
        body = json.dumps(data, separators=(",", ":")).encode()
    return web.Response(body=body, status=status, headers=headers,
                        content_type="application/json")


def error(status: int, code: int, message: str, **extra: Any) -> web.Response:
    return json_response({"code": code, "message": message, **extra}, status=status)


def internal_error(detail: str, exc: BaseException | None = None,
                   request: web.Request | None = None) -> web.Response:
    """Discord's generic 500: what went wrong goes to the log, never to the client (an
    exception's type and text describe the server, and may quote another user's data).
    With the ``request``, ``access_log`` writes that line (with the route); else here."""
    if request is not None:
        request[FAILURE] = (detail, exc)
    else:
        log.error("rest.failed", extra={"status": 500, "error": detail}, exc_info=exc)
    return error(500, 0, "500: Internal Server Error")


def unavailable(message: str) -> web.Response:
    """503 for a request that reached no live owner (its node died, or the entity was
    handed over before it could answer): it was not acknowledged, so the client
    retries it, after ``RETRY_AFTER_S``."""
    return json_response({"code": 0, "message": message, "retry_after": RETRY_AFTER_S},
                         status=503, headers={"Retry-After": str(int(RETRY_AFTER_S))})


def request_token(request: web.Request) -> str | None:
    """The token of the request's ``Authorization: Bot <token>`` (``rest_auth``)."""
    return bot_token(request.headers.get("Authorization"))


def path_id(request: web.Request, name: str, code: int, message: str) -> int:
    """The canonical snowflake in the URL's ``name``; Discord's 404 ``code`` otherwise
    (``0<id>``, ``+<id>`` or ``1_2`` would otherwise name a real object)."""
    value = parse_snowflake(request.match_info[name])
    if value is None:
        raise HTTPDiscordError(404, code, message)
    return value


def invalid_form(problem: FieldError) -> HTTPDiscordError:
    """400 with Discord's ``errors`` tree (50006 for empty content)."""
    if problem.empty:
        return HTTPDiscordError(400, EMPTY_MESSAGE, "Cannot send an empty message")
    return HTTPDiscordError(400, INVALID_FORM_BODY, "Invalid Form Body", problem.tree())


def query_id(request: web.Request, name: str) -> int | None:
    """The canonical snowflake in query parameter ``name`` (None if absent); 400 50035
    naming the parameter otherwise."""
    raw = request.query.get(name)
    if raw is None:
        return None
    value = parse_snowflake(raw)
    if value is None:
        raise invalid_form(FieldError(name, "NUMBER_TYPE_COERCE",
                                      f"Value \"{raw[:32]}\" is not snowflake."))
    return value


def query_int(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    """An integer query parameter in ``low``..``high`` (ASCII digits only)."""
    raw = request.query.get(name)
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 9):
        raise invalid_form(FieldError(name, "NUMBER_TYPE_COERCE",
                                      f"Value \"{raw[:32]}\" is not int."))
    value = int(raw)
    if not low <= value <= high:
        raise invalid_form(FieldError(name, "NUMBER_TYPE_MAX" if value > high
                                      else "NUMBER_TYPE_MIN",
                                      f"int value should be between {low} and {high}."))
    return value


def check_channel_access(guild: Any, roles: Iterable[Any], member: Any, need: int) -> None:
    """Raise Discord's 403 unless ``member`` may view the channel and has ``need``."""
    perms = base_permissions(guild, {r.id: r for r in roles}, member)
    if not perms & VIEW_CHANNEL:
        raise HTTPDiscordError(403, MISSING_ACCESS, "Missing Access")
    if perms & need != need:
        raise HTTPDiscordError(403, MISSING_PERMISSIONS, "Missing Permissions")


class HTTPDiscordError(Exception):
    """An answer in Discord's error shape; ``errors`` is Discord's field tree (50035).
    A 5xx other than 503 reaches the client as the generic 500 (``error_response``)."""

    def __init__(self, status: int, code: int, message: str,
                 errors: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.errors = status, code, message, errors


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
        if channel is None:
            raise HTTPDiscordError(404, UNKNOWN_CHANNEL, "Unknown Channel")
        guild = await self.storage.get_guild(channel.guild_id)
        member = await self.storage.get_member(channel.guild_id, user.id)
        if guild is None or member is None:
            raise HTTPDiscordError(403, MISSING_ACCESS, "Missing Access")
        roles = await self.storage.roles_for_guild(guild.id)
        check_channel_access(guild, roles, member, need)
        return channel, member

    async def authorised_channel(self, request: web.Request, need: int
                                 ) -> tuple[User, Channel, Any]:
        """``auth`` then ``channel_for`` (same answers, same order of errors) in one
        storage call (one hop to SQLite's thread instead of six: ~0.5 ms less node CPU
        per message post)."""
        channel_id = parse_snowflake(request.match_info["channel_id"])
        if channel_id is None:
            await self.auth(request)
            raise HTTPDiscordError(404, UNKNOWN_CHANNEL, "Unknown Channel")
        token = request_token(request)
        if not token:
            raise HTTPDiscordError(401, UNAUTHORIZED, "401: Unauthorized")
        user, channel, guild, member, roles = await self.storage.channel_access(
            token, channel_id)
        if user is None:
            raise HTTPDiscordError(401, UNAUTHORIZED, "401: Unauthorized")
        if channel is None:
            raise HTTPDiscordError(404, UNKNOWN_CHANNEL, "Unknown Channel")
        if guild is None or member is None:
            raise HTTPDiscordError(403, MISSING_ACCESS, "Missing Access")
        check_channel_access(guild, roles, member, need)
        return user, channel, member

    async def messages_out(self, messages: list[Message]) -> list[dict[str, Any]]:
        users = await self.storage.get_users({m.author_id for m in messages})
        out = []
        for m in messages:
            user = users.get(m.author_id)
            author = user_object(user) if user else {"id": str(m.author_id),
                                                      "username": "Deleted User",
                                                      "discriminator": "0"}
            out.append(message_object(m, author))
        return out

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

    async def get_commands(self, request: web.Request) -> web.Response:
        await self.auth(request)
        path_id(request, "app_id", UNKNOWN_APPLICATION, "Unknown Application")
        if "guild_id" in request.match_info:
            path_id(request, "guild_id", UNKNOWN_GUILD, "Unknown Guild")
        return json_response([])

    async def get_channel(self, request: web.Request) -> web.Response:
        _, channel, _ = await self.authorised_channel(request, 0)
        return json_response(channel_object(channel))

    async def post_message(self, request: web.Request) -> web.Response:
        user, channel, member = await self.authorised_channel(request, SEND_MESSAGES)
        body = await json_body(request)
        content = body.get("content")
        problem = check_content(content)
        if problem is not None:
            raise invalid_form(problem)
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
            member=member_object(member),
            content=content,
            nonce=nonce,
            enforce_nonce=bool(body.get("enforce_nonce")),
            tts=bool(body.get("tts")),
        )
        # The message's trace starts here (or continues the caller's ``traceparent``).
        # The sampler decides here, once, by the guild's size (observability.sampling).
        traceparent = request.headers.get("traceparent")
        attributes = await fanout_attributes(self.ctx.identity, channel.guild_id,
                                             {"greenroom.channel_id": channel.id})
        with span_from({"traceparent": traceparent} if traceparent else None,
                       "rest.post_message", **attributes) as span:
            request[SPAN] = span  # the access log's line joins the trace
            post.trace = inject_current()
            key = channel_key(channel.guild_id, channel.id)
            answer = await self.gateway.base.ask_async(
                self.ctx.registry, Route("channel", key, post), ASK_TIMEOUT_S)
            if post.trace is not None and isinstance(answer, Posted):
                span.set_attribute("greenroom.message_id", answer.message["id"])
        if isinstance(answer, Posted):
            return json_response(answer.message)
        if isinstance(answer, PostFailed):
            if answer.status == 429:
                return json_response(
                    {"message": answer.message, "retry_after": answer.retry_after or 1.0,
                     "global": False}, status=429,
                    headers={"Retry-After": str(answer.retry_after or 1.0)})
            raise HTTPDiscordError(answer.status, answer.code, answer.message)
        raise HTTPDiscordError(500, 0, f"post: unexpected answer {type(answer).__name__}")

    async def get_messages(self, request: web.Request) -> web.Response:
        _, channel, _ = await self.authorised_channel(request, READ_MESSAGE_HISTORY)
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
        return json_response(await self.messages_out(messages))

    async def get_message(self, request: web.Request) -> web.Response:
        _, channel, _ = await self.authorised_channel(request, READ_MESSAGE_HISTORY)
        message_id = path_id(request, "message_id", UNKNOWN_MESSAGE, "Unknown Message")
        message = await self.storage.get_message(channel.id, message_id)
        if message is None:
            return error(404, UNKNOWN_MESSAGE, "Unknown Message")
        return json_response((await self.messages_out([message]))[0])


def error_response(exc: Exception, request: web.Request | None = None) -> web.Response:
    """Discord's JSON answer for an exception a handler raised (aiohttp's redirects and
    other non-errors are raised again). With the ``request``, a database that is down
    or too slow (the node's storage calls it transient) is a retryable 503, not a 500,
    and why a 5xx was answered is noted on it for ``access_log``'s line."""
    if isinstance(exc, HTTPDiscordError):
        if exc.status == 503:
            _note(request, exc.message, None)
            return unavailable(exc.message)
        if exc.status >= 500:
            return internal_error(f"{exc.code}: {exc.message}", None, request)
        if exc.errors is not None:
            return error(exc.status, exc.code, exc.message, errors=exc.errors)
        return error(exc.status, exc.code, exc.message)
    if isinstance(exc, web.HTTPException):
        if exc.status < 400:
            raise exc
        return error(exc.status, 0, f"{exc.status}: {exc.reason}")
    if isinstance(exc, NodeDownError):
        # the node that owned the request's entity died before answering: not acknowledged
        _note(request, "node down", exc)
        return unavailable(f"503: Service Unavailable ({exc})")
    if isinstance(exc, TimeoutError):
        _note(request, "upstream timed out", exc)
        return unavailable("upstream timed out")
    storage = request.app.get(STORAGE) if request is not None else None
    if storage is not None and storage.is_transient(exc):
        # at warning, one line a second per route at most (thousands a second in an
        # outage): the driver and the storage actor report the outage itself
        _note(request, "storage unavailable", exc)
        return unavailable("503: storage unavailable; not done, retry")
    return internal_error(f"{type(exc).__name__} in a handler", exc, request)


def _note(request: web.Request | None, detail: str, exc: BaseException | None) -> None:
    if request is not None:
        request[FAILURE] = (detail, exc)


#: 503s come in floods (an outage, a node gone): one line a second per route and reason
_unavailable_lines = LogThrottle(interval=1.0)


def access_log(node: Any) -> Any:
    """Middleware: the REST access log at debug (``rest.request``: method, route
    template, status, duration, node; never a header, so never the token), and one line
    for every answer 5xx (``rest.failed``: the error, with the traceback when an
    exception caused it; a 503 at warning, at most one a second per route and reason,
    with the count held back). ``node``: a callable naming this node. Costs one level
    check per request when debug is off and the answer is not a 5xx."""

    @web.middleware
    async def middleware(request: web.Request, handler: Any) -> web.StreamResponse:
        started = time.perf_counter()
        response = await handler(request)
        status = response.status
        if status < 500 and not log.isEnabledFor(logging.DEBUG):
            return response
        resource = request.match_info.route.resource
        fields: dict[str, Any] = {
            "method": request.method,
            "route": resource.canonical if resource is not None else "<unmatched>",
            "status": status,
            "duration_ms": round((time.perf_counter() - started) * 1000, 3),
            "node": node(),
            "trace": request.get(SPAN),
        }
        if status < 500:
            log.debug("rest.request", extra=fields)
            return response
        detail, exc = request.get(FAILURE) or (None, None)
        fields["error"] = detail
        if status != 503:
            log.error("rest.failed", extra=fields, exc_info=exc)
            return response
        held = _unavailable_lines.allow((fields["route"], detail))
        if held is not None:
            fields["suppressed"] = held
            if exc is not None:
                fields["exc_type"] = type(exc).__name__
                fields["exc_message"] = str(exc)
            log.warning("rest.failed", extra=fields)
        return response

    return middleware


@web.middleware
async def discord_errors(request: web.Request, handler: Any) -> web.StreamResponse:
    """Every error is Discord's JSON body, never aiohttp's text page nor an exception's
    text."""
    try:
        return await handler(request)
    except Exception as exc:
        return error_response(exc, request)


async def json_body(request: web.Request) -> dict[str, Any]:
    """The request's JSON object; 400 50035 if the body is not one."""
    try:
        body = await request.json()
    except (ValueError, RecursionError):  # not JSON, not UTF-8, or nested past the stack
        raise HTTPDiscordError(400, INVALID_FORM_BODY, "Invalid Form Body") from None
    if not isinstance(body, dict):
        raise HTTPDiscordError(400, INVALID_FORM_BODY, "Invalid Form Body")
    return body


def make_app(gateway: Gateway) -> web.Application:
    api = Api(gateway)
    from gateway.rest_guilds import add_routes, rate_limits

    # discord_errors outside: the limiter's own failures are Discord's JSON too (the
    # limiter turns its handler's errors into answers itself, to put its headers on them)
    app = web.Application(middlewares=[
        server_metrics(),  # http.server.request.duration, with the status sent
        bounded_responses(gateway.write_limits),  # a client that never reads (outbound.py)
        access_log(lambda: gateway.base.node),
        discord_errors, rate_limits(gateway.rest_limiter, Principals(gateway.storage))])
    app[STORAGE] = gateway.storage

    async def served_by(request: web.Request, response: web.StreamResponse) -> None:
        # Every node serves the same port (SO_REUSEPORT): say which one answered.
        response.headers["X-Greenroom-Node"] = gateway.base.node

    app.on_response_prepare.append(served_by)
    r = app.router
    r.add_get(f"{PREFIX}/gateway", api.get_gateway)
    r.add_get(f"{PREFIX}/gateway/bot", api.get_gateway_bot)
    r.add_get(f"{PREFIX}/users/@me", api.get_me)
    r.add_get(f"{PREFIX}/oauth2/applications/@me", api.get_application)
    r.add_get(f"{PREFIX}/applications/@me", api.get_application)
    r.add_get(f"{PREFIX}/applications/{{app_id}}/commands", api.get_commands)
    r.add_get(f"{PREFIX}/applications/{{app_id}}/guilds/{{guild_id}}/commands",
              api.get_commands)
    r.add_get(f"{PREFIX}/channels/{{channel_id}}", api.get_channel)
    r.add_post(f"{PREFIX}/channels/{{channel_id}}/messages", api.post_message)
    r.add_get(f"{PREFIX}/channels/{{channel_id}}/messages", api.get_messages)
    r.add_get(f"{PREFIX}/channels/{{channel_id}}/messages/{{message_id}}", api.get_message)
    add_routes(app, api)
    return app


async def start_rest(gateway: Gateway, host: str, port: int, *, reuse_port: bool = False
                     ) -> tuple[web.AppRunner, int]:
    """Serve the REST API; answers the runner (to clean up) and the bound port.
    ``reuse_port``: SO_REUSEPORT, so every node of a host serves the same port."""
    runner = web.AppRunner(make_app(gateway), access_log=None,
                           shutdown_timeout=SHUTDOWN_TIMEOUT_S)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_port=reuse_port or None)
    await site.start()
    bound = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, bound
