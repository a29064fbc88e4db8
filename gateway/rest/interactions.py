"""REST routes for interactions (being built; see issue 13)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from gateway.rest.api import Api


def add_routes(app: web.Application, api: Api) -> None:
    """Register this module's routes."""


async def answer_as_interaction(api: Api, request: web.Request) -> web.StreamResponse | None:
    """``/webhooks/{webhook_id}/{token}...`` is shared with channel webhooks (Discord
    serves interaction follow-ups and ``@original`` there, the application id standing
    in for the webhook's): answer the request here when ``{token}`` is an interaction's
    token, else None (then it is a channel webhook's; ``gateway.rest.webhooks``)."""
    return None
