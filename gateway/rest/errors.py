"""Discord's error answers for the REST API: the JSON body ``{code, message}`` (with the
``errors`` field tree for 50035), Discord's status codes and JSON error codes, and the
request parsing that produces them (canonical snowflakes in paths and queries, JSON
bodies). A 500 says no more than that; why it happened goes to the log.
"""

from __future__ import annotations

import json
import logging
import math
from typing import Any

from aiohttp import web

from actors.messages import NodeDownError
from chat.compose import ComposeError, ComposeRefused, InvalidBody
from chat.validation import FieldError
from gateway.rest.auth import bot_token
from storage.snowflake import parse_snowflake

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


def rate_limited(message: str, retry_after: float, *, global_: bool = False,
                 headers: dict[str, str] | None = None) -> web.Response:
    """Discord's 429: the body clients wait by, ``Retry-After`` in whole seconds, and
    ``Via`` (discord.py takes a 429 without it for a Cloudflare ban and raises instead
    of waiting; Discord's own answers pass through Google's front end)."""
    refusal = {**(headers or {}), "Retry-After": str(max(1, math.ceil(retry_after))),
               "Via": "1.1 google"}
    return json_response({"message": message, "retry_after": retry_after, "global": global_},
                         status=429, headers=refusal)


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


def compose_failure(exc: ComposeError) -> HTTPDiscordError:
    """The answer to a message body ``chat.compose`` refused (every route that creates
    or edits a message: posts, edits, webhooks, interactions)."""
    if isinstance(exc, InvalidBody):
        return invalid_form(exc.problem)
    assert isinstance(exc, ComposeRefused)
    return HTTPDiscordError(exc.status, exc.code, exc.message)


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



class HTTPDiscordError(Exception):
    """An answer in Discord's error shape; ``errors`` is Discord's field tree (50035).
    A 5xx other than 503 reaches the client as the generic 500, a 429 as Discord's
    (``rate_limited``: wait ``retry_after``) (``error_response``)."""

    def __init__(self, status: int, code: int, message: str,
                 errors: dict[str, Any] | None = None, *,
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.errors = status, code, message, errors
        self.retry_after = retry_after


def error_response(exc: Exception, request: web.Request | None = None) -> web.Response:
    """Discord's JSON answer for an exception a handler raised (aiohttp's redirects and
    other non-errors are raised again). With the ``request``, a database that is down
    or too slow (the node's storage calls it transient) is a retryable 503, not a 500,
    and why a 5xx was answered is noted on it for ``access_log``'s line."""
    if isinstance(exc, HTTPDiscordError):
        if exc.status == 429:
            return rate_limited(exc.message, exc.retry_after or 1.0)
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
