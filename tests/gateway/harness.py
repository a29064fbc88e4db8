"""A greenroom gateway + REST on loopback ports, on SQLite in a temp dir, for tests."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvloop

from gateway.limits import UNLIMITED
from gateway.protocol import GatewayConfig
from gateway.seed import Seeded, add_member, create_user, seed
from gateway.server import Gateway
from storage.schema import migrate
from storage.settings import StorageSettings
from storage.snowflake import SnowflakeGenerator
from storage.sqlite import SqliteStorage


@dataclass
class Running:
    gateway: Gateway
    seeded: Seeded
    other_token: str  # a second (non-bot) member of the guild, to post "from another client"
    other_id: int
    ids: SnowflakeGenerator  # the one generator of this run: a fresh one per call repeats ids within a ms


async def member(r: Running, name: str, **kwargs: Any) -> tuple[int, str]:
    """A new user (a bot unless ``bot=False``) who is a member of the seeded guild."""
    user_id, token = await create_user(r.gateway.storage, r.ids, name, **kwargs)
    await add_member(r.gateway.storage, r.seeded.guild_id, user_id)
    return user_id, token


@contextlib.asynccontextmanager
async def running_gateway(tmp_path: Path, config: GatewayConfig | None = None,
                          **kwargs: Any) -> AsyncIterator[Running]:
    settings = StorageSettings(sqlite_path=str(tmp_path / "greenroom.db"),
                               sqlite_synchronous="NORMAL", flush_window_ms=0.5)
    migrate(settings)
    storage = SqliteStorage(settings)
    await storage.open()
    ids = SnowflakeGenerator(worker=1)
    seeded = await seed(storage, ids)
    other_id, other_token = await create_user(storage, ids, "alice", bot=False)
    await add_member(storage, seeded.guild_id, other_id)
    # Tests that are not about rate limits run without them (they pass ``limits=``).
    kwargs.setdefault("limits", UNLIMITED)
    gateway = Gateway(storage, config=config or GatewayConfig(), **kwargs)
    await gateway.start()
    try:
        yield Running(gateway, seeded, other_token, other_id, ids)
    finally:
        await gateway.stop()
        await storage.close()


def run(main: Callable[[], Awaitable[Any]], timeout: float = 20.0) -> Any:
    """Run ``main()`` on a fresh uvloop loop, as the server runs."""
    async def bounded() -> Any:
        return await asyncio.wait_for(main(), timeout)

    return uvloop.run(bounded())
