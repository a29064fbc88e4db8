"""``http.server.request.duration`` for an aiohttp app, by OpenTelemetry's conventions.

One histogram (seconds) with the semantic-convention attributes ``http.request.method``,
``http.route`` (the route's template, ``/api/v10/channels/{channel_id}/messages``, never
the path: ids would make a series each) and ``http.response.status_code``. A request
that matched no route has no ``http.route`` (a scan of random paths adds no series).
Prometheus shows it as ``http_server_request_duration_seconds`` with the attributes'
dots as underscores.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from .metrics import histogram

__all__ = ["DURATION", "server_metrics"]

DURATION = histogram("http.server.request.duration",
                     "Duration of HTTP server requests (REST and the internal ingress).", "s",
                     labels={"http_request_method": None, "http_route": None,
                             "http_response_status_code": None})

#: methods named as they are; anything else is ``_OTHER`` (semantic conventions)
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS",
                      "TRACE", "PATCH"})

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def server_metrics() -> Any:
    """An aiohttp middleware recording each request's duration; put it first (outermost)
    so that the status is the one the client gets."""

    @web.middleware
    async def record(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        status = 500  # an exception that escapes every handler: aiohttp answers 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            method = request.method if request.method in _METHODS else "_OTHER"
            resource = request.match_info.route.resource
            route = resource.canonical if resource is not None else None
            if route is not None:
                DURATION.record(time.perf_counter() - started, **{
                    "http.request.method": method, "http.route": route,
                    "http.response.status_code": status})
            else:
                DURATION.record(time.perf_counter() - started, **{
                    "http.request.method": method, "http.response.status_code": status})

    return record
