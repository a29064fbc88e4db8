"""REST rate limits (headers, 429, per token and per channel) and the IDENTIFY budget
(``session_start_limit``), over real sockets with small configured limits."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp

from gateway.limits import Bucket, IdentifyBudget, RateLimits, RestRateLimiter
from gateway.seed import new_token
from tests.gateway.harness import run, running_gateway
from tests.gateway.test_gateway_socket import connect, identify, recv

SMALL = RateLimits(default=Bucket(100, 60.0),
                   routes={("POST", "/channels/{channel_id}/messages"): Bucket(2, 0.5)},
                   identify_total=1000, max_concurrency=1000)


def test_limiter_windows_with_a_fake_clock() -> None:
    now = [100.0]
    limiter = RestRateLimiter(SMALL, clock=lambda: now[0])
    route = "/channels/{channel_id}/messages"
    first = limiter.hit("t", "POST", route, "1")
    assert first.allowed and first.limit == 2 and first.remaining == 1
    assert limiter.hit("t", "POST", route, "1").remaining == 0
    over = limiter.hit("t", "POST", route, "1")
    assert not over.allowed and 0 < over.reset_after <= 0.5
    assert limiter.hit("t", "POST", route, "2").allowed  # another channel
    assert limiter.hit("u", "POST", route, "1").allowed  # another token
    assert limiter.hit("t", "GET", route, "1").limit == 100  # the default bucket
    now[0] += 0.5
    assert limiter.hit("t", "POST", route, "1").allowed
    assert over.bucket == first.bucket != limiter.hit("t", "GET", route, "1").bucket


def test_identify_budget_with_a_fake_clock() -> None:
    now = [0.0]
    budget = IdentifyBudget(RateLimits(identify_total=3, identify_reset_s=60.0,
                                       max_concurrency=2), clock=lambda: now[0])
    assert budget.take("a") and budget.take("a")
    assert not budget.take("a")  # max_concurrency per 5 s
    assert budget.take("b")
    now[0] += 5.0
    assert budget.take("a")
    assert not budget.take("a")  # total
    assert budget.session_start_limit("a") == {"total": 3, "remaining": 0,
                                               "reset_after": 55_000, "max_concurrency": 2}
    now[0] += 55.0
    assert budget.session_start_limit("a")["remaining"] == 3


def test_rest_rate_limit_headers_and_429(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_gateway(tmp_path, limits=SMALL) as r, \
                aiohttp.ClientSession() as http:
            url = f"{r.gateway.rest_url}/channels/{r.seeded.channel_id}/messages"
            auth = {"Authorization": f"Bot {r.seeded.token}"}
            remaining = []
            for i in range(2):
                async with http.post(url, json={"content": f"m{i}"}, headers=auth) as resp:
                    assert resp.status == 200
                    assert resp.headers["X-RateLimit-Limit"] == "2"
                    assert float(resp.headers["X-RateLimit-Reset-After"]) <= 0.5
                    assert float(resp.headers["X-RateLimit-Reset"]) > 1e9
                    assert resp.headers["X-RateLimit-Bucket"]
                    remaining.append(resp.headers["X-RateLimit-Remaining"])
            assert remaining == ["1", "0"]
            async with http.post(url, json={"content": "too many"}, headers=auth) as resp:
                assert resp.status == 429
                body = await resp.json()
                assert body["global"] is False and 0 < body["retry_after"] <= 0.5
                assert body["message"]
                assert int(resp.headers["Retry-After"]) >= 1
                assert resp.headers["X-RateLimit-Remaining"] == "0"
                # without Via, discord.py takes a 429 for a Cloudflare ban and raises
                assert resp.headers["Via"]
            # Another token has its own bucket; reads have theirs.
            async with http.post(url, json={"content": "alice"},
                                 headers={"Authorization": f"Bot {r.other_token}"}) as resp:
                assert resp.status == 200
            async with http.get(url, headers=auth) as resp:
                assert resp.status == 200 and resp.headers["X-RateLimit-Limit"] == "100"
                assert len(await resp.json()) == 3  # the 429 stored nothing
            # Errors carry the headers too.
            async with http.get(f"{r.gateway.rest_url}/users/@me") as resp:
                assert resp.status == 401 and "X-RateLimit-Bucket" in resp.headers
            await asyncio.sleep(0.55)
            async with http.post(url, json={"content": "later"}, headers=auth) as resp:
                assert resp.status == 200

    run(main)


def test_identify_budget_is_enforced(tmp_path: Path) -> None:
    limits = RateLimits(identify_total=2, max_concurrency=100)

    async def main() -> None:
        async with running_gateway(tmp_path, limits=limits) as r, \
                aiohttp.ClientSession() as http:
            token = r.seeded.token
            sockets = []
            for _ in range(2):
                ws = await connect(http, r)
                await ws.send_json(identify(token))
                assert (await recv(ws))["t"] == "READY"
                sockets.append(ws)
            async with http.get(f"{r.gateway.rest_url}/gateway/bot",
                                headers={"Authorization": f"Bot {token}"}) as resp:
                limit = (await resp.json())["session_start_limit"]
            assert limit["total"] == 2 and limit["remaining"] == 0
            assert limit["max_concurrency"] == 100 and limit["reset_after"] > 0
            ws = await connect(http, r)
            await ws.send_json(identify(token))
            assert await recv(ws) == {"op": 9, "d": False, "s": None, "t": None}
            # Another token has its own budget.
            await ws.send_json(identify(r.other_token))
            assert (await recv(ws))["t"] == "READY"
            for s in (*sockets, ws):
                await s.close()

    run(main)


def test_max_concurrency_per_five_seconds(tmp_path: Path) -> None:
    limits = RateLimits(identify_total=100, max_concurrency=1)

    async def main() -> None:
        async with running_gateway(tmp_path, limits=limits) as r, \
                aiohttp.ClientSession() as http:
            first = await connect(http, r)
            await first.send_json(identify(r.seeded.token))
            assert (await recv(first))["t"] == "READY"
            second = await connect(http, r)
            await second.send_json(identify(r.seeded.token))
            assert (await recv(second))["op"] == 9
            await first.close()
            await second.close()

    run(main)


def test_no_spelling_dodges_the_limit(tmp_path: Path) -> None:
    """Issue 10, finding 4: extra spaces in ``Authorization``, a second token of the same
    user or leading zeros in the channel id used to open fresh buckets (30 of 30 posts
    accepted against 5 per 5 s). The bucket is the user's and the canonical channel's."""
    limits = RateLimits(routes={("POST", "/channels/{channel_id}/messages"): Bucket(5, 5.0)},
                        identify_total=1000, max_concurrency=1000)

    async def main() -> None:
        async with running_gateway(tmp_path, limits=limits) as r, \
                aiohttp.ClientSession() as http:
            uid, cid, token = r.seeded.user_id, r.seeded.channel_id, r.seeded.token
            second = new_token(uid)  # the same bot, another token
            await r.gateway.storage.put_token(second, uid)
            headers = [f"Bot {token}", f"Bot {second}", f"Bot  {token}", token,
                       f"bot {token}", f"Bot\t{token}"]
            channels = [str(cid), f"0{cid}", f"00{cid}", f"+{cid}"]
            # every spelling of both, then 6 plain posts alternating the tokens: 30 posts
            attempts = [(h, c) for h in headers for c in channels]
            attempts += [(headers[i % 2], str(cid)) for i in range(6)]
            accepted, statuses = 0, set()
            for i, (header, channel) in enumerate(attempts):
                url = f"{r.gateway.rest_url}/channels/{channel}/messages"
                async with http.post(url, json={"content": f"m{i}"},
                                     headers={"Authorization": header}) as resp:
                    statuses.add(resp.status)
                    accepted += resp.status == 200
                    assert resp.content_type == "application/json"
            assert len(attempts) == 30 and accepted == 5, accepted
            assert statuses <= {200, 401, 404, 429}
            async with http.get(f"{r.gateway.rest_url}/channels/{cid}/messages?limit=100",
                                headers={"Authorization": f"Bot {second}"}) as resp:
                assert len(await resp.json()) == accepted

    run(main)


def test_per_caller_limit_with_a_fake_clock() -> None:
    now = [0.0]
    limits = RateLimits(default=Bucket(2, 1.0), routes={}, per_caller=Bucket(3, 1.0))
    limiter = RestRateLimiter(limits, clock=lambda: now[0])
    route = "/channels/{channel_id}"
    assert limiter.hit("t", "GET", route, "1").allowed
    assert limiter.hit("t", "GET", route, "1").allowed
    refused = limiter.hit("t", "GET", route, "1")  # the route's bucket, not the caller's
    assert not refused.allowed and not refused.global_
    assert limiter.hit("t", "GET", route, "2").allowed  # the third of the caller's 3
    over = limiter.hit("t", "GET", route, "3")  # a fresh id buys nothing more
    assert not over.allowed and over.global_ and over.limit == 3 and over.remaining == 0
    assert limiter.hit("u", "GET", route, "3").allowed  # another caller
    now[0] += 1.0
    assert limiter.hit("t", "GET", route, "3").allowed


def test_fresh_ids_buy_no_extra_requests(tmp_path: Path) -> None:
    """Each unknown channel id has a bucket of its own; the caller's overall limit
    (Discord's global 50/s per bot) still bounds them: 30 requests, 10 answered."""
    limits = RateLimits(per_caller=Bucket(10, 60.0), identify_total=1000,
                        max_concurrency=1000)

    async def main() -> None:
        async with running_gateway(tmp_path, limits=limits) as r, \
                aiohttp.ClientSession() as http:
            statuses = []
            for i in range(30):
                async with http.get(f"{r.gateway.rest_url}/channels/{1000 + i}/messages",
                                    headers={"Authorization": f"Bot {r.seeded.token}"}) as resp:
                    statuses.append(resp.status)
                    body = await resp.json()
                    if resp.status == 429:
                        assert body["global"] is True
                        assert resp.headers["X-RateLimit-Global"] == "true"
                        assert resp.headers["X-RateLimit-Scope"] == "global"
            assert statuses == [404] * 10 + [429] * 20

    run(main)
