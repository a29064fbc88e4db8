"""The rate-limit middleware: Discord's buckets (``gateway.limits``) applied to every
REST request, with Discord's ``X-RateLimit-*`` headers and 429 body."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from chat.interactions import token_interaction_id
from gateway.limits import RestRateLimiter, headers_for
from gateway.rest.auth import Principals
from gateway.rest.errors import PREFIX, error_response, rate_limited, request_token
from storage.snowflake import parse_snowflake

#: an interaction's callback: counted, but answered without the ``X-RateLimit-*``
#: headers, as Discord does (hikari logs an error for a bucket header there)
INTERACTION_CALLBACK = "/interactions/{interaction_id}/{token}/callback"


#: the route name of every request no route matches
UNMATCHED = "<unmatched>"


def rate_limits(limiter: RestRateLimiter, principals: Principals) -> Any:
    """Middleware: count the request against its bucket; 429 when it is exhausted;
    ``X-RateLimit-*`` headers on every answer (errors included).

    A bucket is keyed by the principal (the user behind the token; the IP without a
    valid one) and the canonical major id: neither another spelling of the header nor
    ``0<id>`` opens a fresh bucket (every non-canonical id shares one, answered 404)."""

    @web.middleware
    async def middleware(request: web.Request, handler: Any) -> web.StreamResponse:
        resource = request.match_info.route.resource
        # every path no route matches is one route: keyed by the raw path, each would
        # keep an entry (the path itself) in the limiter's route hashes for good
        template = resource.canonical if resource is not None else UNMATCHED
        if template.startswith(PREFIX):
            template = template[len(PREFIX):]
        info = request.match_info
        # a webhook's routes (executing it above all) count per webhook, as Discord's do
        raw = info.get("channel_id") or info.get("guild_id") or info.get("webhook_id")
        major = "" if raw is None else str(parse_snowflake(raw))
        if "token" in info:  # an interaction's follow-ups count per interaction, not per
            interaction_id = token_interaction_id(info["token"])  # application
            if interaction_id is not None:
                major += f":{interaction_id}"
        token = request_token(request)
        user_id = await principals.user_id(token) if token else None
        caller = f"user:{user_id}" if user_id is not None else f"ip:{request.remote}"
        verdict = limiter.hit(caller, request.method, template, major)
        if not verdict.allowed:
            refusal = {**headers_for(verdict),
                       "X-RateLimit-Scope": "global" if verdict.global_ else "user"}
            if verdict.global_:
                refusal["X-RateLimit-Global"] = "true"
            return rate_limited("You are being rate limited.", round(verdict.reset_after, 3),
                                global_=verdict.global_, headers=refusal)
        try:
            response = await handler(request)
        except Exception as exc:
            response = error_response(exc, request)
        if template != INTERACTION_CALLBACK:  # Discord sends none there (hikari checks)
            # built from the verdict now, not before the handler: off a post's way to
            # its channel actor
            response.headers.update(headers_for(verdict))
        return response

    return middleware
