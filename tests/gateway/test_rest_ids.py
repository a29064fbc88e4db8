"""Canonical identities on REST (issue 10, findings 4 and 8): an id in a path, a query
or a body is a canonical snowflake (``storage.snowflake.parse_snowflake``) or it names
nothing. ``0<id>``, ``+<id>``, ``1_2``, full-width digits, ids >= 2**63 or negative are
answered as Discord does (404 with the resource's Unknown code for a path id, 400 50035
naming the field for a query or body id), with a JSON body; never resolving to the real
object, never a plain-text 500; and the ``Authorization`` header has one spelling."""

from __future__ import annotations

from pathlib import Path

import aiohttp

from tests.gateway.harness import run, running_gateway
from tests.gateway.test_rest import call

FULL_WIDTH = str.maketrans("0123456789", "\uff10\uff11\uff12\uff13\uff14\uff15\uff16\uff17"
                                         "\uff18\uff19")


def spellings(snowflake: int) -> list[str]:
    """Other spellings that ``int()`` reads as ``snowflake``, and ids out of range."""
    s = str(snowflake)
    return [f"0{s}", f"00{s}", f"+{s}", f"{s[:3]}_{s[3:]}", s.translate(FULL_WIDTH),
            f"{s}%20", f"%20{s}", str(1 << 63), str(1 << 64), "-1", f"-{s}"]


def test_non_canonical_path_ids_name_nothing(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            token, cid, gid = r.seeded.token, r.seeded.channel_id, r.seeded.guild_id
            status, sent, _ = await call(http, r, "POST", f"/channels/{cid}/messages", token,
                                         json={"content": "real"})
            assert status == 200
            mid = int(sent["id"])
            cases: list[tuple[str, str, int]] = []
            for bad in spellings(cid):
                cases += [("GET", f"/channels/{bad}", 10003),
                          ("POST", f"/channels/{bad}/messages", 10003),
                          ("GET", f"/channels/{bad}/messages", 10003),
                          ("POST", f"/channels/{bad}/typing", 10003)]
            for bad in spellings(mid):
                cases += [("GET", f"/channels/{cid}/messages/{bad}", 10008),
                          ("PATCH", f"/channels/{cid}/messages/{bad}", 10008),
                          ("DELETE", f"/channels/{cid}/messages/{bad}", 10008)]
            for bad in spellings(gid):
                cases += [("GET", f"/guilds/{bad}", 10004),
                          ("GET", f"/guilds/{bad}/channels", 10004),
                          ("GET", f"/guilds/{bad}/members", 10004)]
            for bad in spellings(r.other_id):
                cases += [("PUT", f"/guilds/{gid}/members/{bad}", 10013),
                          ("DELETE", f"/guilds/{gid}/members/{bad}", 10007)]
            for bad in spellings(r.seeded.user_id):
                cases.append(("GET", f"/applications/{bad}/commands", 10002))
            for method, path, code in cases:
                status, body, ctype = await call(http, r, method, path, token,
                                                 json={"content": "edited"})
                assert (status, body.get("code")) == (404, code), (method, path, body)
                assert ctype == "application/json" and body["message"].startswith("Unknown")
            # nothing was edited or deleted through another spelling
            status, body, _ = await call(http, r, "GET", f"/channels/{cid}/messages/{mid}",
                                         token)
            assert status == 200 and body["content"] == "real"
            assert await r.gateway.storage.get_member(gid, r.other_id) is not None

    run(main)


def test_non_canonical_query_ids_are_invalid_form_bodies(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            token, cid, gid = r.seeded.token, r.seeded.channel_id, r.seeded.guild_id
            for bad in spellings(cid):
                for name in ("before", "after", "around"):
                    status, body, ctype = await call(
                        http, r, "GET", f"/channels/{cid}/messages?{name}={bad}", token)
                    assert status == 400 and body["code"] == 50035, (name, bad, body)
                    assert body["message"] == "Invalid Form Body" and name in body["errors"]
                    assert ctype == "application/json"
                status, body, _ = await call(http, r, "GET",
                                             f"/guilds/{gid}/members?after={bad}", token)
                assert status == 400 and "after" in body["errors"], (bad, body)
            # limit is a count, not an id, but it has one spelling too
            for bad in ("+5", " 5", "5_0", "\uff15", "0x5", "-1", "101"):
                status, body, _ = await call(http, r, "GET",
                                             f"/channels/{cid}/messages?limit={bad}", token)
                assert status == 400 and "limit" in body["errors"], (bad, body)
            status, body, _ = await call(http, r, "GET",
                                         f"/channels/{cid}/messages?after=0&limit=05", token)
            assert status == 200 and body == []  # "0" is canonical; a count may be padded

    run(main)


def test_authorization_has_one_spelling(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            token = r.seeded.token
            url = f"{r.gateway.rest_url}/users/@me"
            for header in (token, f"Bot  {token}", f"bot {token}",
                           f"BOT {token}", f"Bot\t{token}", f"Bearer {token}",
                           f"Bot {token} extra", "Bot ", "Bot", f"Bot {token}\u00e9"):
                async with http.get(url, headers={"Authorization": header}) as resp:
                    assert resp.status == 401, header
                    assert await resp.json() == {"message": "401: Unauthorized", "code": 0}
            async with http.get(url, headers={"Authorization": f"Bot {token}"}) as resp:
                assert resp.status == 200

    run(main)
