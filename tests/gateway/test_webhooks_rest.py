"""Webhooks at the protocol level (aiohttp): managing them with a bot's token and
MANAGE_WEBHOOKS, using them with their own token, their messages and events, and every
refusal with Discord's status and JSON code."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from chat.interactions import new_token as new_interaction_token
from gateway.limits import RateLimits
from gateway.protocol.intents import Intents
from gateway.seed import add_member, create_user
from storage.codec import token_hash
from tests.gateway.harness import Running, run, running_gateway

GUILDS, GUILD_MESSAGES = int(Intents.GUILDS), int(Intents.GUILD_MESSAGES)
GUILD_WEBHOOKS, MESSAGE_CONTENT = int(Intents.GUILD_WEBHOOKS), int(Intents.MESSAGE_CONTENT)


class Client:
    """REST calls as the bot (the guild's owner), as alice (a plain member) or with no
    ``Authorization`` (a webhook's token is its own credential)."""

    def __init__(self, http: aiohttp.ClientSession, r: Running) -> None:
        self.http, self.r, self.base = http, r, r.gateway.rest_url
        self.bot = {"Authorization": f"Bot {r.seeded.token}"}
        self.alice = {"Authorization": f"Bot {r.other_token}"}

    async def call(self, method: str, path: str, headers: dict[str, str] | None = None,
                   **kw: Any) -> tuple[int, Any]:
        async with self.http.request(method, self.base + path, headers=headers, **kw) as resp:
            text = await resp.text()
            return resp.status, json.loads(text) if text else None

    async def create(self, name: str = "ci", channel_id: int | None = None) -> dict[str, Any]:
        status, hook = await self.call(
            "POST", f"/channels/{channel_id or self.r.seeded.channel_id}/webhooks", self.bot,
            json={"name": name})
        assert status == 200, hook
        return hook

    async def execute(self, hook: dict[str, Any], body: dict[str, Any], query: str = "?wait=true",
                      token: str | None = None) -> tuple[int, Any]:
        return await self.call("POST", f"/webhooks/{hook['id']}/{token or hook['token']}{query}",
                               json=body)


def refused(answer: tuple[int, Any], status: int, code: int, field: str | None = None) -> None:
    got_status, body = answer
    assert (got_status, body["code"]) == (status, code), answer
    if field is not None:
        assert field in body["errors"], body


async def identified(http: aiohttp.ClientSession, r: Running, intents: int
                     ) -> aiohttp.ClientWebSocketResponse:
    ws = await http.ws_connect(f"{r.gateway.gateway_url}/?v=10&encoding=json")
    await ws.receive(5)
    await ws.send_json({"op": 2, "d": {"token": r.seeded.token, "intents": intents,
                                       "properties": {"os": "l", "browser": "t", "device": "t"}}})
    for name in ("READY", "GUILD_CREATE"):
        await next_event(ws, name)
    return ws


async def next_event(ws: aiohttp.ClientWebSocketResponse, *names: str) -> tuple[str, Any]:
    while True:
        payload = json.loads((await ws.receive(5)).data)
        if payload.get("t") in names:
            return payload["t"], payload["d"]


def test_manage_webhooks_with_a_bots_token(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            c = Client(http, r)
            ws = await identified(http, r, GUILDS | GUILD_WEBHOOKS)
            channel = f"/channels/{r.seeded.channel_id}/webhooks"

            hook = await c.create("  ci  ")
            assert hook["name"] == "ci" and hook["type"] == 1
            assert hook["channel_id"] == str(r.seeded.channel_id)
            assert hook["guild_id"] == str(r.seeded.guild_id)
            assert hook["user"]["id"] == str(r.seeded.user_id)
            assert hook["application_id"] == str(r.seeded.user_id)  # a bot: its application
            token = hook["token"]
            assert len(token) == 68
            assert await next_event(ws, "WEBHOOKS_UPDATE") == ("WEBHOOKS_UPDATE", {
                "guild_id": str(r.seeded.guild_id), "channel_id": str(r.seeded.channel_id)})

            # the token is shown once: stored as its hash only (the database and its WAL)
            stored = b"".join(f.read_bytes() for f in tmp_path.glob("greenroom.db*"))
            assert token_hash(token).hex().encode() in stored
            assert token.encode() not in stored
            for status_body in (await c.call("GET", channel, c.bot),
                                await c.call("GET", f"/guilds/{r.seeded.guild_id}/webhooks",
                                             c.bot)):
                assert status_body[0] == 200
                assert [h["id"] for h in status_body[1]] == [hook["id"]]
                assert "token" not in status_body[1][0]
            status, got = await c.call("GET", f"/webhooks/{hook['id']}", c.bot)
            assert status == 200 and got["user"]["id"] == str(r.seeded.user_id)
            assert "token" not in got

            # names and avatars
            for name in ("", "x" * 81, "Clyde's", "my discord hook", None):
                refused(await c.call("POST", channel, c.bot, json={"name": name}),
                        400, 50035, "name")
            refused(await c.call("POST", channel, c.bot,
                                 json={"name": "ok", "avatar": "http://x/y.png"}),
                    400, 50035, "avatar")
            refused(await c.call("POST", channel, c.bot, data=b"{"), 400, 50035)
            png = "data:image/png;base64,iVBORw0KGgo="
            status, with_avatar = await c.call("POST", channel, c.bot,
                                               json={"name": "pic", "avatar": png})
            assert status == 200 and len(with_avatar["avatar"]) == 32

            # permissions: alice has no MANAGE_WEBHOOKS; no token is 401
            refused(await c.call("POST", channel, c.alice, json={"name": "x"}), 403, 50013)
            refused(await c.call("GET", channel, c.alice), 403, 50013)
            refused(await c.call("GET", f"/guilds/{r.seeded.guild_id}/webhooks", c.alice),
                    403, 50013)
            for method in ("GET", "PATCH", "DELETE"):
                refused(await c.call(method, f"/webhooks/{hook['id']}", c.alice, json={}),
                        403, 50013)
                refused(await c.call(method, f"/webhooks/{hook['id']}", None, json={}),
                        401, 0)
                for unknown in ("1", f"0{hook['id']}"):
                    refused(await c.call(method, f"/webhooks/{unknown}", c.bot, json={}),
                            404, 10015)
            refused(await c.call("GET", "/channels/1/webhooks", c.bot), 404, 10003)
            refused(await c.call("GET", "/guilds/1/webhooks", c.bot), 404, 10004)

            # modify: rename, move to another channel of the guild
            status, other = await c.call("POST", f"/guilds/{r.seeded.guild_id}/channels",
                                         c.bot, json={"name": "builds"})
            assert status == 201
            refused(await c.call("PATCH", f"/webhooks/{hook['id']}", c.bot,
                                 json={"name": "clyde"}), 400, 50035, "name")
            refused(await c.call("PATCH", f"/webhooks/{hook['id']}", c.bot,
                                 json={"channel_id": "1"}), 404, 10003)
            await next_event(ws, "WEBHOOKS_UPDATE")  # the avatar one's
            status, moved = await c.call("PATCH", f"/webhooks/{hook['id']}", c.bot,
                                         json={"name": "deploys", "channel_id": other["id"]})
            assert status == 200 and moved["name"] == "deploys"
            assert moved["channel_id"] == other["id"]
            updates = {(await next_event(ws, "WEBHOOKS_UPDATE"))[1]["channel_id"]
                       for _ in range(2)}
            assert updates == {other["id"], str(r.seeded.channel_id)}
            status, listed = await c.call("GET", channel, c.bot)
            assert [h["id"] for h in listed] == [with_avatar["id"]]
            status, listed = await c.call("GET", f"/channels/{other['id']}/webhooks", c.bot)
            assert [h["id"] for h in listed] == [hook["id"]]
            # the token still works, and posts where the webhook is now
            status, message = await c.execute(hook, {"content": "moved"})
            assert status == 200 and message["channel_id"] == other["id"]

            # delete: gone for its token too
            status, _ = await c.call("DELETE", f"/webhooks/{hook['id']}", c.bot)
            assert status == 204
            assert (await next_event(ws, "WEBHOOKS_UPDATE"))[1]["channel_id"] == other["id"]
            refused(await c.call("GET", f"/webhooks/{hook['id']}", c.bot), 404, 10015)
            refused(await c.execute(hook, {"content": "x"}), 404, 10015)
            status, listed = await c.call("GET", f"/guilds/{r.seeded.guild_id}/webhooks",
                                          c.bot)
            assert [h["id"] for h in listed] == [with_avatar["id"]]
            await ws.close()

    run(main)


def test_fifteen_webhooks_a_channel(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            c = Client(http, r)
            hooks = [await c.create(f"hook {n}") for n in range(15)]
            refused(await c.call("POST", f"/channels/{r.seeded.channel_id}/webhooks", c.bot,
                                 json={"name": "one too many"}), 400, 30007)
            await c.call("DELETE", f"/webhooks/{hooks[0]['id']}", c.bot)
            await c.create("room again")

    run(main)


def test_use_a_webhook_with_its_token(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            c = Client(http, r)
            hook = await c.create("ci")
            other = await c.create("other")
            by_token = f"/webhooks/{hook['id']}/{hook['token']}"
            ws = await identified(http, r, GUILDS | GUILD_MESSAGES | MESSAGE_CONTENT)

            # read, without a user (with the token the caller gave, as Discord answers)
            status, got = await c.call("GET", by_token)
            assert status == 200 and got["id"] == hook["id"] and "user" not in got
            assert got["token"] == hook["token"]

            # execute: ?wait=true answers the message; the bot gets MESSAGE_CREATE
            status, message = await c.execute(hook, {"content": "build 12 passed",
                                                     "username": "deploy",
                                                     "avatar_url": "https://ci.example/a.png"})
            assert status == 200, message
            assert message["webhook_id"] == hook["id"] and message["content"] == "build 12 passed"
            author = message["author"]
            assert author["id"] == hook["id"] and author["username"] == "deploy"
            assert author["bot"] is True and author["discriminator"] == "0000"
            assert author["avatar_url"] == "https://ci.example/a.png"
            _, created = await next_event(ws, "MESSAGE_CREATE")
            assert created["id"] == message["id"] and created["webhook_id"] == hook["id"]
            assert created["author"] == author and "member" not in created

            # without wait: 204, and the message exists (it was durable before the answer)
            for query in ("", "?wait=false", "?wait=0"):
                status, body = await c.execute(hook, {"content": f"quiet {query}"}, query)
                assert (status, body) == (204, None)
                _, created = await next_event(ws, "MESSAGE_CREATE")
                assert created["author"]["username"] == "ci"  # the webhook's name
            status, history = await c.call("GET", f"/channels/{r.seeded.channel_id}/messages",
                                           c.bot)
            assert [m["content"] for m in history][:4] == [
                "quiet ?wait=0", "quiet ?wait=false", "quiet ", "build 12 passed"]
            assert history[3]["author"] == author and history[3]["webhook_id"] == hook["id"]

            # the webhook's messages: read, edit, delete
            mine = f"{by_token}/messages/{message['id']}"
            status, got = await c.call("GET", mine)
            assert status == 200 and got["author"] == author and got["content"] == "build 12 passed"
            status, edited = await c.call("PATCH", mine, json={"content": "build 12 fixed"})
            assert status == 200 and edited["content"] == "build 12 fixed"
            assert edited["edited_timestamp"] is not None and edited["author"] == author
            _, update = await next_event(ws, "MESSAGE_UPDATE")
            assert update["id"] == message["id"] and update["content"] == "build 12 fixed"
            assert update["webhook_id"] == hook["id"]
            refused(await c.call("PATCH", mine, json={"content": ""}), 400, 50006)
            # another webhook's token, or a message this one did not post: Unknown Message
            refused(await c.call("GET", f"/webhooks/{other['id']}/{other['token']}/messages/"
                                 f"{message['id']}"), 404, 10008)
            status, alices = await c.call("POST", f"/channels/{r.seeded.channel_id}/messages",
                                          c.alice, json={"content": "mine"})
            refused(await c.call("DELETE", f"{by_token}/messages/{alices['id']}"), 404, 10008)
            refused(await c.call("GET", f"{by_token}/messages/0{message['id']}"), 404, 10008)
            refused(await c.call("GET", f"{mine}?thread_id=5"), 400, 50035, "thread_id")
            status, _ = await c.call("DELETE", mine)
            assert status == 204
            _, deleted = await next_event(ws, "MESSAGE_DELETE")
            assert deleted["id"] == message["id"]
            refused(await c.call("GET", mine), 404, 10008)

            # modify by token: rename (a WEBHOOKS_UPDATE), never move
            status, renamed = await c.call("PATCH", by_token, json={"name": "ci-2"})
            assert status == 200 and renamed["name"] == "ci-2" and "user" not in renamed
            assert renamed["token"] == hook["token"]
            refused(await c.call("PATCH", by_token, json={"channel_id": str(r.seeded.channel_id)}),
                    400, 50035, "channel_id")
            status, message = await c.execute(hook, {"content": "named"})
            assert message["author"]["username"] == "ci-2"
            # delete by token
            status, _ = await c.call("DELETE", by_token)
            assert status == 204
            refused(await c.call("GET", by_token), 404, 10015)
            await ws.close()

    run(main)


def test_execute_refusals(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            c = Client(http, r)
            hook = await c.create()
            wrong = hook["token"][:-1] + ("a" if hook["token"][-1] != "a" else "b")
            for method in ("GET", "PATCH", "DELETE", "POST"):
                refused(await c.call(method, f"/webhooks/{hook['id']}/{wrong}", json={}),
                        401, 50027)
                refused(await c.call(method, f"/webhooks/{hook['id']}/x.y", json={}),
                        401, 50027)
                refused(await c.call(method, f"/webhooks/1/{hook['token']}", json={}),
                        404, 10015)
                refused(await c.call(method, f"/webhooks/0{hook['id']}/{hook['token']}",
                                     json={}), 404, 10015)
            # a bot's token is no webhook's
            refused(await c.call("POST", f"/webhooks/{hook['id']}/{r.seeded.token}",
                                 c.bot, json={"content": "x"}), 401, 50027)
            refused(await c.execute(hook, {"content": ""}), 400, 50006)
            refused(await c.execute(hook, {}), 400, 50006)
            refused(await c.execute(hook, {"content": "x" * 2001}), 400, 50035, "content")
            refused(await c.execute(hook, {"content": "hi", "username": "clyde"}),
                    400, 50035, "username")
            refused(await c.execute(hook, {"content": "hi", "username": "x" * 81}),
                    400, 50035, "username")
            refused(await c.execute(hook, {"content": "hi", "avatar_url": "javascript:1"}),
                    400, 50035, "avatar_url")
            refused(await c.execute(hook, {"content": "hi"}, "?wait=maybe"), 400, 50035, "wait")
            refused(await c.execute(hook, {"content": "hi"}, "?thread_id=123"),
                    400, 50035, "thread_id")
            refused(await c.execute(hook, {"content": "hi", "thread_name": "t"}), 400, 220003)
            refused(await c.call("POST", f"/webhooks/{hook['id']}/{hook['token']}",
                                 data=b"[1]"), 400, 50035)
            status, history = await c.call("GET", f"/channels/{r.seeded.channel_id}/messages",
                                           c.bot)
            assert history == []  # nothing refused was half-written

    run(main)


def test_execute_has_a_bucket_per_webhook(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_gateway(tmp_path, limits=RateLimits()) as r, \
                aiohttp.ClientSession() as http:
            c = Client(http, r)
            first, second = await c.create("one"), await c.create("two")
            answers = [await c.execute(first, {"content": f"{n}"}, "") for n in range(5)]
            assert [status for status, _ in answers] == [204] * 5
            async with http.post(f"{c.base}/webhooks/{first['id']}/{first['token']}",
                                 json={"content": "sixth"}) as resp:
                assert resp.status == 429
                assert resp.headers["Via"] == "1.1 google"
                body = await resp.json()
                assert 0 < body["retry_after"] <= 2 and body["global"] is False
            assert (await c.execute(second, {"content": "other"}, ""))[0] == 204
            # interaction follow-ups share the path (the application's id in the
            # webhook's place): each interaction has its own bucket, not the application
            app = r.seeded.user_id
            for n in range(7):
                token = new_interaction_token(1000 + n)
                status, body = await c.call("POST", f"/webhooks/{app}/{token}",
                                            json={"content": "x"})
                assert status != 429, body
            token = new_interaction_token(999)
            statuses = [(await c.call("POST", f"/webhooks/{app}/{token}", json={}))[0]
                        for _ in range(6)]
            assert statuses[-1] == 429 and 429 not in statuses[:5]

    run(main)


def test_interaction_tokens_are_answered_by_interactions_first(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``/webhooks/{application}/{interaction token}...`` is interactions': every route
    there asks ``answer_as_interaction`` before treating the token as a webhook's."""
    import gateway.rest.webhooks as webhooks

    asked: list[str] = []

    async def interaction(api: Any, request: web.Request) -> web.StreamResponse | None:
        asked.append(request.method)
        if request.match_info["token"] == "interaction-token":
            return web.json_response({"interaction": True}, status=202)
        return None

    monkeypatch.setattr(webhooks, "answer_as_interaction", interaction)

    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            c = Client(http, r)
            paths = ["/webhooks/5/interaction-token",
                     "/webhooks/5/interaction-token/messages/@original"]
            for path in paths:
                for method in ("GET", "PATCH", "DELETE", "POST"):
                    if method == "POST" and "messages" in path:
                        continue
                    assert await c.call(method, path, json={}) == (202, {"interaction": True})
            assert len(asked) == 7
            hook = await c.create()
            status, _ = await c.execute(hook, {"content": "a webhook's"})
            assert status == 200 and len(asked) == 8

    run(main)


def test_concurrent_executes(tmp_path: Path) -> None:
    """Twenty executes at once: each is answered with its own stored message."""
    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            c = Client(http, r)
            hook = await c.create()
            answers = await asyncio.gather(*(c.execute(hook, {"content": f"{n}"})
                                             for n in range(20)))
            ids = sorted(int(m["id"]) for _, m in answers)
            status, history = await c.call("GET", f"/channels/{r.seeded.channel_id}/messages",
                                           c.bot)
            assert sorted(int(m["id"]) for m in history) == ids
            assert {m["webhook_id"] for m in history} == {hook["id"]}

    run(main)


def test_execute_composes_a_message_like_a_post(tmp_path: Path) -> None:
    """Embeds, mentions (users pinged by default; @everyone only when allowed), files,
    and edits that replace embeds and parse mentions again: ``chat.compose``'s rules."""
    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            c = Client(http, r)
            hook = await c.create()
            embed = {"title": "Build 12", "description": "passed", "color": 0x2ECC71,
                     "fields": [{"name": "branch", "value": "main", "inline": True}]}
            status, message = await c.execute(hook, {"embeds": [embed]})
            assert status == 200, message
            assert message["content"] == "" and message["embeds"][0]["title"] == "Build 12"
            assert message["embeds"][0]["fields"] == embed["fields"]
            refused(await c.execute(hook, {"embeds": [{"title": "x" * 257}]}),
                    400, 50035, "embeds")
            refused(await c.execute(hook, {"embeds": [{}] * 11}), 400, 50035, "embeds")

            alice = f"<@{r.other_id}>"
            status, message = await c.execute(hook, {"content": f"{alice} @everyone"})
            assert [u["id"] for u in message["mentions"]] == [str(r.other_id)]
            assert message["mention_everyone"] is False  # users only, by default
            status, message = await c.execute(hook, {"content": f"{alice} @everyone",
                                                     "allowed_mentions": {"parse": ["everyone"]}})
            assert message["mentions"] == [] and message["mention_everyone"] is True
            # a webhook cannot reply: Discord ignores the reference
            status, plain = await c.execute(hook, {"content": "re", "message_reference": {
                "message_id": message["id"]}})
            assert status == 200 and plain["type"] == 0 and "message_reference" not in plain

            # files, as multipart (payload_json + files[0])
            form = aiohttp.FormData()
            form.add_field("payload_json", json.dumps({"content": "log attached"}))
            form.add_field("files[0]", b"line 1\nline 2\n", filename="build.log",
                           content_type="text/plain")
            async with http.post(f"{c.base}/webhooks/{hook['id']}/{hook['token']}?wait=true",
                                 data=form) as resp:
                assert resp.status == 200, await resp.text()
                with_file = await resp.json()
            [attachment] = with_file["attachments"]
            assert attachment["filename"] == "build.log" and attachment["size"] == 14
            async with http.get(attachment["url"]) as resp:
                assert resp.status == 200 and await resp.read() == b"line 1\nline 2\n"

            # edits: embeds replaced, mentions parsed again, files dropped
            mine = f"/webhooks/{hook['id']}/{hook['token']}/messages/{with_file['id']}"
            status, edited = await c.call("PATCH", mine, json={
                "content": f"{alice} log replaced", "embeds": [{"title": "Build 13"}],
                "attachments": []})
            assert status == 200, edited
            assert edited["embeds"][0]["title"] == "Build 13" and edited["attachments"] == []
            assert [u["id"] for u in edited["mentions"]] == [str(r.other_id)]
            assert edited["webhook_id"] == hook["id"] and edited["author"]["id"] == hook["id"]
            refused(await c.call("PATCH", mine, json={"embeds": [{"title": "x" * 257}]}),
                    400, 50035, "embeds")
            status, got = await c.call("GET", mine)
            assert got["embeds"][0]["title"] == "Build 13"

    run(main)


def test_tokens_never_reach_the_logs(tmp_path: Path) -> None:
    """Every webhook route, answered and refused, with the log at debug: the access log
    names the route's template, never the URL, so no token is written."""
    from tests.log_capture import json_logs

    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            c = Client(http, r)
            hook = await c.create()
            by_token = f"/webhooks/{hook['id']}/{hook['token']}"
            _, message = await c.execute(hook, {"content": "x"})
            await c.execute(hook, {"content": ""})
            await c.call("GET", by_token)
            await c.call("PATCH", f"{by_token}/messages/{message['id']}", json={"content": "y"})
            await c.call("GET", f"/webhooks/{hook['id']}/{hook['token']}x")
            await c.call("DELETE", by_token)
            await c.execute(hook, {"content": "gone"})
            return hook["token"]

    with json_logs("DEBUG") as logs:
        token = run(main)
    routes = {line.get("route") for line in logs.events("rest.request")}
    assert "/api/v10/webhooks/{webhook_id}/{token}" in routes
    assert token not in logs.text()


def test_the_creating_application_reads_its_webhook_without_the_permission(
        tmp_path: Path) -> None:
    """Discord's rule: reading a webhook needs MANAGE_WEBHOOKS unless the caller's
    application created it; changing or deleting it always does. No webhooks in DMs."""
    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            c = Client(http, r)
            storage = r.gateway.storage
            helper_id, helper_token = await create_user(storage, r.ids,
                                                        "helper")
            await add_member(storage, r.seeded.guild_id, helper_id)
            helper = {"Authorization": f"Bot {helper_token}"}
            grant = f"/channels/{r.seeded.channel_id}/permissions/{helper_id}"
            status, _ = await c.call("PUT", grant, c.bot,
                                     json={"type": 1, "allow": str(1 << 29), "deny": "0"})
            assert status == 204
            status, hook = await c.call("POST", f"/channels/{r.seeded.channel_id}/webhooks",
                                        helper, json={"name": "helper's"})
            assert status == 200 and hook["application_id"] == str(helper_id)
            status, _ = await c.call("DELETE", grant, c.bot)
            assert status == 204
            status, got = await c.call("GET", f"/webhooks/{hook['id']}", helper)
            assert status == 200 and got["id"] == hook["id"]
            refused(await c.call("PATCH", f"/webhooks/{hook['id']}", helper,
                                 json={"name": "x"}), 403, 50013)
            refused(await c.call("DELETE", f"/webhooks/{hook['id']}", helper), 403, 50013)
            refused(await c.call("GET", f"/webhooks/{hook['id']}", c.alice), 403, 50013)

            status, dm = await c.call("POST", "/users/@me/channels", c.bot,
                                      json={"recipient_id": str(r.other_id)})
            assert status == 200
            refused(await c.call("POST", f"/channels/{dm['id']}/webhooks", c.bot,
                                 json={"name": "x"}), 403, 50003)

    run(main)
