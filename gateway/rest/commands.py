"""REST routes for commands (being built; see the issue)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from gateway.rest.api import Api


def add_routes(app: web.Application, api: Api) -> None:
    """Register this module's routes."""
