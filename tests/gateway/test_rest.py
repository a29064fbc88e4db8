"""The REST API over a real socket (aiohttp client): auth, Discord's error bodies, sends
answered once durable, history, one message, nonce idempotency."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp

from gateway.seed import create_user
from tests.gateway.harness import Running, run, running_gateway


async def call(http: aiohttp.ClientSession, r: Running, method: str, path: str,
               token: str | None = None, **kwargs: Any) -> tuple[int, Any, str]:
    headers = {"Authorization": f"Bot {token}"} if token else {}
    async with http.request(method, f"{r.gateway.rest_url}{path}", headers=headers,
                            **kwargs) as resp:
        return resp.status, await resp.json(content_type=None), resp.headers["Content-Type"]


def test_login_endpoints(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            token = r.seeded.token
            status, body, ctype = await call(http, r, "GET", "/gateway")
            assert status == 200 and body == {"url": r.gateway.gateway_url}
            assert ctype == "application/json"  # exactly: discord.py insists
            status, body, _ = await call(http, r, "GET", "/gateway/bot", token)
            assert body["url"] == r.gateway.gateway_url and body["shards"] == 1
            limit = body["session_start_limit"]
            assert limit["max_concurrency"] == r.gateway.limits.max_concurrency
            assert limit["total"] == r.gateway.limits.identify_total
            assert 0 < limit["remaining"] <= limit["total"] and limit["reset_after"] > 0
            status, body, _ = await call(http, r, "GET", "/users/@me", token)
            assert status == 200 and body["id"] == str(r.seeded.user_id) and body["bot"]
            status, body, _ = await call(http, r, "GET", "/oauth2/applications/@me", token)
            assert status == 200 and body["id"] == str(r.seeded.user_id)
            assert body["owner"]["id"] == str(r.seeded.user_id)
            status, body, _ = await call(http, r, "GET", f"/applications/{body['id']}/commands",
                                         token)
            assert status == 200 and body == []
            for bad in (None, "wrong"):
                status, body, _ = await call(http, r, "GET", "/users/@me", bad)
                assert status == 401 and body == {"code": 0, "message": "401: Unauthorized"}

    run(main)


def test_channel_and_messages(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            token, cid = r.seeded.token, r.seeded.channel_id
            status, body, _ = await call(http, r, "GET", f"/channels/{cid}", token)
            assert status == 200 and body["id"] == str(cid)
            assert body["guild_id"] == str(r.seeded.guild_id) and body["type"] == 0
            status, body, _ = await call(http, r, "GET", "/channels/12345", token)
            assert status == 404 and body["code"] == 10003
            # Authorisation answers in Discord's order: token, then channel, then access.
            for path in (f"/channels/{cid}", "/channels/x", f"/channels/{1 << 64}"):
                status, _, _ = await call(http, r, "GET", path, "wrong")
                assert status == 401
            status, body, _ = await call(http, r, "GET", f"/channels/{1 << 64}", token)
            assert status == 404 and body["code"] == 10003
            storage = r.gateway.storage
            _, stranger = await create_user(storage, r.ids, "eve",
                                            bot=False)
            status, body, _ = await call(http, r, "POST", f"/channels/{cid}/messages",
                                         stranger, json={"content": "hi"})
            assert status == 403 and body["code"] == 50001
            status, body, _ = await call(http, r, "POST", f"/channels/{cid}/messages", token,
                                         json={"content": ""})
            assert status == 400 and body["code"] == 50006
            status, body, _ = await call(http, r, "POST", f"/channels/{cid}/messages", token,
                                         json={"content": "x" * 2001})
            assert status == 400 and body["code"] == 50035

            sent = []
            for i in range(5):
                status, body, _ = await call(http, r, "POST", f"/channels/{cid}/messages",
                                             token, json={"content": f"m{i}"})
                assert status == 200, body
                assert body["content"] == f"m{i}" and body["channel_id"] == str(cid)
                assert body["author"]["id"] == str(r.seeded.user_id)
                sent.append(body["id"])
            assert sent == sorted(sent, key=int)

            status, body, _ = await call(http, r, "GET", f"/channels/{cid}/messages", token)
            assert [m["id"] for m in body] == sent[::-1]  # newest first
            status, body, _ = await call(http, r, "GET",
                                         f"/channels/{cid}/messages?limit=2&before={sent[3]}",
                                         token)
            assert [m["content"] for m in body] == ["m2", "m1"]
            status, body, _ = await call(http, r, "GET",
                                         f"/channels/{cid}/messages?limit=500", token)
            assert status == 400 and body["code"] == 50035
            status, body, _ = await call(http, r, "GET", f"/channels/{cid}/messages/{sent[2]}",
                                         token)
            assert status == 200 and body["content"] == "m2" and body["timestamp"]
            status, body, _ = await call(http, r, "GET", f"/channels/{cid}/messages/99", token)
            assert status == 404 and body["code"] == 10008

    run(main)


def test_enforce_nonce_makes_a_send_idempotent(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            path = f"/channels/{r.seeded.channel_id}/messages"
            body = {"content": "once", "nonce": "n-1", "enforce_nonce": True}
            _, first, _ = await call(http, r, "POST", path, r.seeded.token, json=body)
            _, again, _ = await call(http, r, "POST", path, r.seeded.token, json=body)
            assert again["id"] == first["id"] and first["nonce"] == "n-1"
            _, history, _ = await call(http, r, "GET", path, r.seeded.token)
            assert [m["id"] for m in history] == [first["id"]]

    run(main)


def test_concurrent_enforced_nonce_sends_make_one_message(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            path = f"/channels/{r.seeded.channel_id}/messages"
            body = {"content": "once", "nonce": "n-2", "enforce_nonce": True}
            answers = await asyncio.gather(*(call(http, r, "POST", path, r.seeded.token,
                                                  json=body) for _ in range(5)))
            assert {a[1]["id"] for a in answers} == {answers[0][1]["id"]}
            _, history, _ = await call(http, r, "GET", path, r.seeded.token)
            assert len(history) == 1

    run(main)
