"""Privileged intents (issue 10, point 8): a bot whose application lacks GATEWAY_PRESENCE,
GATEWAY_GUILD_MEMBERS or GATEWAY_MESSAGE_CONTENT (or their _LIMITED forms) and asks
for GUILD_PRESENCES, GUILD_MEMBERS or MESSAGE_CONTENT is closed with 4014; READY's
``application.flags`` and GET /oauth2/applications/@me show the flags; bots are created
with all three unless the operator says otherwise (``--no-privileged-intents``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from gateway.protocol import Intents
from loadtest.raw_client import Closed, RawClient
from storage.applications import (
    DEFAULT_BOT_FLAGS,
    GATEWAY_MESSAGE_CONTENT_LIMITED,
    PRIVILEGED_INTENT_FLAGS,
)
from storage.model import User
from storage.settings import StorageSettings
from storage.snowflake import SnowflakeGenerator
from storage.sqlite import SqliteStorage
from tests.gateway.harness import Running, member, run, running_gateway

BASE = int(Intents.GUILDS | Intents.GUILD_MESSAGES)
PRIVILEGED = [int(Intents.GUILD_PRESENCES), int(Intents.GUILD_MEMBERS),
              int(Intents.MESSAGE_CONTENT)]
ROOT = Path(__file__).resolve().parents[2]


async def identify(r: Running, token: str, intents: int) -> dict | int:
    """READY's ``d``, or the close code."""
    client = await RawClient.connect(r.gateway.host, r.gateway.port)
    try:
        await client.receive_op(10, 5.0)
        client.send({"op": 2, "d": {"token": token, "intents": intents, "properties": {
            "os": "linux", "browser": "t", "device": "t"}}})
        try:
            ready = await client.receive_op(0, 5.0)
        except Closed as closed:
            return closed.code
        assert ready["t"] == "READY"
        return ready["d"]
    finally:
        client.close()


async def bot(r: Running, privileged_intents: bool) -> str:
    _, token = await member(r, "bot", privileged_intents=privileged_intents)
    return token


@pytest.mark.parametrize("intent", PRIVILEGED)
def test_a_privileged_intent_the_application_lacks_closes_4014(tmp_path: Path,
                                                               intent: int) -> None:
    async def main() -> None:
        async with running_gateway(tmp_path) as r:
            token = await bot(r, privileged_intents=False)
            assert await identify(r, token, BASE | intent) == 4014
            ready = await identify(r, token, BASE)  # without it, the bot connects
            assert ready["application"]["flags"] == 0

    run(main)


def test_bots_get_the_privileged_intents_by_default(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_gateway(tmp_path) as r:
            every = BASE | sum(PRIVILEGED)
            ready = await identify(r, r.seeded.token, every)  # the seed's bot
            assert ready["application"] == {"id": str(r.seeded.user_id),
                                            "flags": DEFAULT_BOT_FLAGS}
            ready = await identify(r, await bot(r, privileged_intents=True), every)
            assert ready["application"]["flags"] & PRIVILEGED_INTENT_FLAGS \
                == PRIVILEGED_INTENT_FLAGS
            async with aiohttp.ClientSession() as http, http.get(
                    f"{r.gateway.rest_url}/oauth2/applications/@me",
                    headers={"Authorization": f"Bot {r.seeded.token}"}) as resp:
                assert resp.status == 200
                assert (await resp.json())["flags"] == DEFAULT_BOT_FLAGS

    run(main)


def test_a_limited_flag_allows_its_intent_only(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_gateway(tmp_path) as r:
            token = await bot(r, privileged_intents=False)
            user_id = (await r.gateway.storage.account_for_token(token))[0].id
            await r.gateway.storage.put_application_flags(user_id,
                                                          GATEWAY_MESSAGE_CONTENT_LIMITED)
            message_content = int(Intents.MESSAGE_CONTENT)
            ready = await identify(r, token, BASE | message_content)
            assert ready["application"]["flags"] == GATEWAY_MESSAGE_CONTENT_LIMITED
            assert await identify(r, token, BASE | message_content
                                  | int(Intents.GUILD_MEMBERS)) == 4014

    run(main)


def test_a_bot_stored_before_the_flags_and_a_user_are_not_refused(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_gateway(tmp_path) as r:
            storage = r.gateway.storage
            legacy = SnowflakeGenerator(worker=4).next_id()  # as create-bot made it before
            await storage.put_user(User(legacy, "legacy", bot=True))
            await storage.put_token("legacy.token.x", legacy)
            every = BASE | sum(PRIVILEGED)
            ready = await identify(r, "legacy.token.x", every)
            assert ready["application"]["flags"] == DEFAULT_BOT_FLAGS
            ready = await identify(r, r.other_token, every)  # not a bot: no application
            assert ready["user"]["id"] == str(r.other_id)

    run(main)


def test_admin_create_bot_without_privileged_intents(tmp_path: Path) -> None:
    db = tmp_path / "admin.db"
    env = {**os.environ, "GREENROOM_STORAGE": "sqlite", "GREENROOM_SQLITE_PATH": str(db)}
    flags = {}
    for name, extra in (("plain", []), ("strict", ["--no-privileged-intents"])):
        out = subprocess.run([sys.executable, "-m", "greenroom.cli", "admin", "create-bot",
                              name, *extra], cwd=ROOT, env=env, capture_output=True,
                             text=True, timeout=60, check=True).stdout
        flags[name] = int(out.split("user ", 1)[1].split()[0])

    async def read() -> dict[str, int | None]:
        storage = SqliteStorage(StorageSettings(sqlite_path=str(db)))
        await storage.open()
        try:
            return {name: await storage.application_flags(user_id)
                    for name, user_id in flags.items()}
        finally:
            await storage.close()

    assert run(read) == {"plain": DEFAULT_BOT_FLAGS, "strict": 0}


def test_a_bots_application_flags_are_read_once_per_ttl_not_per_identify(
        tmp_path: Path) -> None:
    """IDENTIFY stays one storage call: the flags are cached like the guild shells."""
    async def main() -> None:
        async with running_gateway(tmp_path) as r:
            storage = r.gateway.storage
            reads: list[int] = []
            read = storage.application_flags

            async def counted(application_id: int) -> int | None:
                reads.append(application_id)
                return await read(application_id)

            storage.application_flags = counted  # type: ignore[method-assign]
            for _ in range(3):
                ready = await identify(r, r.seeded.token, BASE)
                assert isinstance(ready, dict), ready
            assert len(reads) == 1, reads

    run(main)
