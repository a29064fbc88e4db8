"""Invites (issue 10, finding 5): a user joins a guild by accepting an invite with
their own token; only a member with CREATE_INSTANT_INVITE creates one; a limited invite
admits no more users than its ``max_uses``, even when accepted at once; over real
sockets."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp

from gateway.seed import create_user
from storage.invites import Invite
from storage.snowflake import SnowflakeGenerator
from tests.gateway.harness import run, running_gateway
from tests.gateway.test_rest import call


def test_a_user_joins_by_accepting_an_invite(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            storage, gid, cid = r.gateway.storage, r.seeded.guild_id, r.seeded.channel_id
            ids = SnowflakeGenerator(worker=4)
            eve_id, eve = await create_user(storage, ids, "eve", bot=False)
            _, mallory = await create_user(storage, ids, "mallory", bot=False)
            # alice is a member, but @everyone may not invite; eve is no member
            for token, code in ((r.other_token, 50013), (eve, 50001)):
                status, body, _ = await call(http, r, "POST", f"/channels/{cid}/invites",
                                             token, json={})
                assert status == 403 and body["code"] == code
            status, invite, _ = await call(http, r, "POST", f"/channels/{cid}/invites",
                                           r.seeded.token, json={"max_uses": 1})
            assert status == 200, invite
            assert invite["max_uses"] == 1 and invite["uses"] == 0
            assert invite["max_age"] == 86_400 and invite["expires_at"]
            assert invite["guild"]["id"] == str(gid) and invite["channel"]["id"] == str(cid)
            assert invite["inviter"]["id"] == str(r.seeded.user_id)
            code = invite["code"]

            status, seen, _ = await call(http, r, "GET", f"/invites/{code}")  # no token
            assert status == 200 and seen["guild"]["id"] == str(gid) and "uses" not in seen
            # a member accepting uses no place
            status, body, _ = await call(http, r, "POST", f"/invites/{code}", r.other_token)
            assert status == 200 and body["new_member"] is False
            assert await storage.get_member(gid, eve_id) is None
            status, body, _ = await call(http, r, "POST", f"/invites/{code}", eve)
            assert status == 200 and body["new_member"] is True, body
            assert await storage.get_member(gid, eve_id) is not None
            status, _, _ = await call(http, r, "GET", f"/guilds/{gid}", eve)
            assert status == 200
            # the one place is taken
            for method, token in (("POST", mallory), ("GET", None)):
                status, body, _ = await call(http, r, method, f"/invites/{code}", token)
                assert status == 404 and body == {"code": 10006, "message": "Unknown Invite"}

    run(main)


def test_a_limited_invite_admits_its_limit_under_concurrency(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            storage, gid = r.gateway.storage, r.seeded.guild_id
            ids = SnowflakeGenerator(worker=5)
            users = [await create_user(storage, ids, f"u{i}", bot=False) for i in range(6)]
            status, invite, _ = await call(http, r, "POST",
                                           f"/channels/{r.seeded.channel_id}/invites",
                                           r.seeded.token, json={"max_uses": 2})
            assert status == 200
            answers = await asyncio.gather(*(
                call(http, r, "POST", f"/invites/{invite['code']}", token)
                for _, token in users))
            assert sorted(status for status, _, _ in answers) == [200, 200] + [404] * 4
            joined = [uid for uid, _ in users if await storage.get_member(gid, uid)]
            assert len(joined) == 2
            assert (await storage.get_invite(invite["code"])).uses == 2  # type: ignore[union-attr]

    run(main)


def test_invites_refuse_bad_input(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            cid, token = r.seeded.channel_id, r.seeded.token
            for field, value in (("max_age", -1), ("max_age", 604_801), ("max_age", "1"),
                                 ("max_uses", True), ("max_uses", 101)):
                status, body, _ = await call(http, r, "POST", f"/channels/{cid}/invites",
                                             token, json={field: value})
                assert status == 400 and field in body["errors"], (field, value, body)
            for code in ("a", "x" * 33, "no%2Fslash", "%00abc", "nosuchcode"):
                for method in ("GET", "POST"):
                    status, body, _ = await call(http, r, method, f"/invites/{code}",
                                                 r.other_token)
                    assert status == 404 and body["code"] == 10006, (code, body)
            # expired: answered as unknown, and accepting it adds nobody
            await r.gateway.storage.put_invite(Invite(
                "expiredcode", r.seeded.guild_id, cid, r.seeded.user_id,
                int(time.time() * 1000) - 2000, max_age_s=1))
            _, eve = await create_user(r.gateway.storage, r.ids, "eve",
                                       bot=False)
            for method in ("GET", "POST"):
                status, body, _ = await call(http, r, method, "/invites/expiredcode", eve)
                assert status == 404 and body["code"] == 10006
            status, _, _ = await call(http, r, "GET", f"/channels/{cid}", eve)
            assert status == 403
            # a never-expiring invite says so
            status, invite, _ = await call(http, r, "POST", f"/channels/{cid}/invites",
                                           token, json={"max_age": 0})
            assert status == 200 and invite["expires_at"] is None and invite["max_age"] == 0

    run(main)
