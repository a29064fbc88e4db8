"""A seeded REST fuzzer: every route, ids in many spellings, bodies of wrong types and
unstorable text, headers in many spellings. Every answer is Discord's JSON (or 204),
never a 500, whatever arrives (issue 10: bad input gets a clear error)."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import aiohttp

from tests.gateway.harness import run, running_gateway

ROUTES = [
    ("GET", "/gateway"), ("GET", "/gateway/bot"), ("GET", "/users/@me"),
    ("GET", "/oauth2/applications/@me"), ("GET", "/applications/{user}/commands"),
    ("GET", "/applications/{user}/guilds/{guild}/commands"),
    ("GET", "/channels/{channel}"), ("POST", "/channels/{channel}/messages"),
    ("GET", "/channels/{channel}/messages"), ("GET", "/channels/{channel}/messages/{id}"),
    ("PATCH", "/channels/{channel}/messages/{id}"),
    ("DELETE", "/channels/{channel}/messages/{id}"), ("POST", "/channels/{channel}/typing"),
    ("POST", "/guilds"), ("GET", "/guilds/{guild}"), ("GET", "/guilds/{guild}/channels"),
    ("POST", "/guilds/{guild}/channels"), ("GET", "/guilds/{guild}/members"),
    ("PUT", "/guilds/{guild}/members/{user}"), ("DELETE", "/guilds/{guild}/members/{user}"),
    ("POST", "/oauth2/authorize"), ("POST", "/channels/{channel}/invites"),
    ("GET", "/invites/{code}"), ("POST", "/invites/{code}"),
]
TEXTS = ["", " ", "x", "a\ud800b", "\x00", "\u3000", "x" * 2001, "\U0001f600" * 3, "0",
         "guilds.join", "-1"]


def _value(rng: random.Random, ids: list[int], depth: int = 0) -> Any:
    kind = rng.randrange(9 if depth < 3 else 6)
    if kind == 0:
        return rng.choice(TEXTS)
    if kind == 1:
        return rng.choice([0, -1, 1 << 31, 1 << 63, 1 << 70, 2.5, float("1e308")])
    if kind == 2:
        return rng.choice([True, False, None])
    if kind in (3, 4, 5):
        return _id(rng, ids)
    if kind == 6:
        return [_value(rng, ids, depth + 1) for _ in range(rng.randrange(3))]
    return {k: _value(rng, ids, depth + 1) for k in rng.sample(FIELDS, rng.randrange(4))}


FIELDS = ["content", "nonce", "enforce_nonce", "tts", "name", "topic", "type", "position",
          "access_token", "client_id", "scope", "max_age", "max_uses"]


def _id(rng: random.Random, ids: list[int]) -> str:
    s = str(rng.choice(ids))
    return rng.choice([s, s, f"0{s}", f"+{s}", f"{s[:2]}_{s[2:]}", str(1 << 63), f"-{s}",
                       "x", "%20" + s, s + "%00", "\uff11"])


def _body(rng: random.Random, ids: list[int]) -> tuple[bytes | None, str | None]:
    kind = rng.randrange(6)
    if kind == 0:
        return None, None
    if kind == 1:
        return rng.choice([b"{", b"[" * 5000, b"\xff\xfe", b"null", b"\"s\""]), None
    data = {k: _value(rng, ids) for k in rng.sample(FIELDS, rng.randrange(1, 5))}
    return json.dumps(data).encode(), "application/json"


def test_rest_answers_are_always_discord_json(tmp_path: Path) -> None:
    rng = random.Random(20261206)

    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            ids = [r.seeded.channel_id, r.seeded.guild_id, r.seeded.user_id, r.other_id]
            tokens = [r.seeded.token, r.other_token]
            seen: dict[int, int] = {}
            for _ in range(800):
                method, template = rng.choice(ROUTES)
                path = template.format(channel=_id(rng, ids), guild=_id(rng, ids),
                                       user=_id(rng, ids), id=_id(rng, ids),
                                       code=rng.choice(["abcdefgh", "x", "%2F..", "a" * 40]))
                token = rng.choice(tokens)
                header = rng.choice([f"Bot {token}", f"Bot {token}", token, f"Bot  {token}",
                                     "", "Bot x"])
                query = rng.choice(["", "?limit=5", f"?before={_id(rng, ids)}",
                                    f"?after={_id(rng, ids)}&limit=1", "?limit=%2B5",
                                    "?client_id=1&scope=guilds.join"])
                data, ctype = _body(rng, ids)
                headers = {"Authorization": header} if header else {}
                if ctype:
                    headers["Content-Type"] = ctype
                async with http.request(method, f"{r.gateway.rest_url}{path}{query}",
                                        data=data, headers=headers) as resp:
                    seen[resp.status] = seen.get(resp.status, 0) + 1
                    assert resp.status < 500, (method, path, query, data, await resp.text())
                    if resp.status != 204:
                        assert resp.content_type == "application/json", (method, path)
                        body = await resp.json()
                        if resp.status >= 400:
                            assert isinstance(body["code"], int) and body["message"]
            assert seen.get(200, 0) + seen.get(201, 0) > 20, seen  # not all refused

    run(main, timeout=60)
