"""The REST application: its middlewares (metrics, bounded responses, the access log,
Discord's error bodies, rate limits) and its routes, each feature's module adding its
own (``add_routes``)."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from aiohttp import web

from gateway.outbound import bounded_responses
from gateway.rest import (
    api as core,
)
from gateway.rest import (
    attachments,
    commands,
    dms,
    guilds,
    interactions,
    permissions,
    reactions,
    webhooks,
)
from gateway.rest.api import Api
from gateway.rest.auth import Principals
from gateway.rest.errors import (
    FAILURE,
    SHUTDOWN_TIMEOUT_S,
    SPAN,
    STORAGE,
    discord_errors,
)
from gateway.rest.ratelimit import rate_limits
from observability.http_metrics import server_metrics
from observability.logging import LogThrottle

if TYPE_CHECKING:
    from gateway.server import Gateway

log = logging.getLogger("greenroom.gateway.rest")
#: every module's routes, in registration order
ROUTES = (core.add_routes, guilds.add_routes, reactions.add_routes, dms.add_routes,
          webhooks.add_routes, attachments.add_routes, permissions.add_routes,
          commands.add_routes, interactions.add_routes)


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


def make_app(gateway: Gateway) -> web.Application:
    api = Api(gateway)
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
    for add_routes in ROUTES:
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
