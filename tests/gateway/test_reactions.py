"""Reactions over real sockets: the six routes, Discord's errors for each, ``reactions``
in message objects, the four events under their intents, and a reaction that storage
is slow to take holding up no message of the channel."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest

from chat.permissions import ADD_REACTIONS, READ_MESSAGE_HISTORY, VIEW_CHANNEL
from chat.reactions import COUNTS_KIND, REACTION_KIND, message_key
from gateway.protocol import Intents
from gateway.rest import reactions as rest_reactions
from gateway.rest.reactions import KNOWN_TTL_S
from gateway.seed import add_member, create_user
from storage.model import MessageDelete, Role
from storage.snowflake import SnowflakeGenerator
from tests.gateway.harness import Running, run, running_gateway
from tests.gateway.test_events import next_event, quiet, session
from tests.gateway.test_gateway_socket import INTENTS

REACTIONS = INTENTS | int(Intents.GUILD_MESSAGE_REACTIONS)
EVENTS = ("MESSAGE_REACTION_ADD", "MESSAGE_REACTION_REMOVE", "MESSAGE_REACTION_REMOVE_ALL",
          "MESSAGE_REACTION_REMOVE_EMOJI")
THUMBS = quote("👍")
PARTY = quote("party:112233445566778899")


async def call(http: aiohttp.ClientSession, r: Running, method: str, path: str,
               token: str | None = None, **kwargs: Any) -> tuple[int, Any, str]:
    """``tests.gateway.test_rest.call`` that also takes a 204 (no body, no type)."""
    headers = {"Authorization": f"Bot {token}"} if token else {}
    async with http.request(method, f"{r.gateway.rest_url}{path}", headers=headers,
                            **kwargs) as resp:
        return (resp.status, await resp.json(content_type=None),
                resp.headers.get("Content-Type", ""))


def react_path(r: Running, message_id: str, emoji: str = "", who: str = "") -> str:
    path = f"/channels/{r.seeded.channel_id}/messages/{message_id}/reactions"
    return path + (f"/{emoji}" if emoji else "") + (f"/{who}" if who else "")


async def posted(http: aiohttp.ClientSession, r: Running, token: str, content: str) -> str:
    status, body, _ = await call(http, r, "POST", f"/channels/{r.seeded.channel_id}/messages",
                                 token, json={"content": content})
    assert status == 200, body
    return body["id"]


def test_add_list_remove_and_the_events(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            bot, alice = r.seeded.token, r.other_token
            listening = await session(http, r, bot, REACTIONS)
            deaf = await session(http, r, alice, INTENTS)  # no GUILD_MESSAGE_REACTIONS
            mid = await posted(http, r, bot, "react to me")

            status, body, _ = await call(http, r, "PUT", react_path(r, mid, THUMBS, "@me"), alice)
            assert status == 204 and body is None
            add = await next_event(listening, "MESSAGE_REACTION_ADD")
            assert {k: v for k, v in add.items() if k != "member"} == {
                "user_id": str(r.other_id), "channel_id": str(r.seeded.channel_id),
                "message_id": mid, "guild_id": str(r.seeded.guild_id),
                "emoji": {"id": None, "name": "👍"}, "burst": False, "burst_colors": [],
                "type": 0, "message_author_id": str(r.seeded.user_id)}
            assert add["member"]["user"]["id"] == str(r.other_id)
            assert "roles" in add["member"] and "joined_at" in add["member"]
            # the same reaction again changes nothing and says nothing
            status, _, _ = await call(http, r, "PUT", react_path(r, mid, THUMBS, "@me"), alice)
            assert status == 204
            status, _, _ = await call(http, r, "PUT", react_path(r, mid, PARTY, "@me"), bot)
            assert status == 204
            add = await next_event(listening, "MESSAGE_REACTION_ADD")
            assert add["emoji"] == {"id": "112233445566778899", "name": "party",
                                    "animated": False}
            # the animated spelling names the same emoji (by its id)
            status, _, _ = await call(http, r, "PUT",
                                      react_path(r, mid, quote("a:party:112233445566778899"),
                                                 "@me"), bot)
            assert status == 204

            # in the message objects, in first-used order, "me" for the reader
            status, message, _ = await call(http, r, "GET",
                                            f"/channels/{r.seeded.channel_id}/messages/{mid}",
                                            alice)
            assert status == 200
            assert message["reactions"] == [
                {"emoji": {"id": None, "name": "👍"}, "count": 1,
                 "count_details": {"burst": 0, "normal": 1}, "me": True, "me_burst": False,
                 "burst_colors": []},
                {"emoji": {"id": "112233445566778899", "name": "party", "animated": False},
                 "count": 1, "count_details": {"burst": 0, "normal": 1}, "me": False,
                 "me_burst": False, "burst_colors": []}]
            status, history, _ = await call(http, r, "GET",
                                            f"/channels/{r.seeded.channel_id}/messages", bot)
            assert [x["me"] for x in history[0]["reactions"]] == [False, True]

            # who reacted, by user id, paged with after/limit
            status, _, _ = await call(http, r, "PUT", react_path(r, mid, THUMBS, "@me"), bot)
            assert status == 204
            status, users, _ = await call(http, r, "GET", react_path(r, mid, THUMBS), alice)
            ids = sorted([str(r.seeded.user_id), str(r.other_id)], key=int)
            assert status == 200 and [u["id"] for u in users] == ids
            assert {"username", "discriminator", "avatar"} <= set(users[0])
            status, users, _ = await call(http, r, "GET",
                                          react_path(r, mid, THUMBS) + f"?after={ids[0]}",
                                          alice)
            assert [u["id"] for u in users] == ids[1:]
            status, users, _ = await call(http, r, "GET", react_path(r, mid, THUMBS) + "?limit=1",
                                          alice)
            assert [u["id"] for u in users] == ids[:1]
            status, users, _ = await call(http, r, "GET", react_path(r, mid, THUMBS) + "?type=1",
                                          alice)
            assert status == 200 and users == []  # no super reactions here
            status, users, _ = await call(http, r, "GET", react_path(r, mid, quote("🔥")), alice)
            assert status == 200 and users == []
            for bad in ("limit=0", "limit=101", "after=x", "type=2"):
                status, body, _ = await call(http, r, "GET", react_path(r, mid, THUMBS) + "?" + bad,
                                             alice)
                assert status == 400 and body["code"] == 50035, bad

            # remove one's own; another's (MANAGE_MESSAGES: the owner has it, alice not)
            await next_event(listening, "MESSAGE_REACTION_ADD")  # the bot's 👍
            status, _, _ = await call(http, r, "DELETE", react_path(r, mid, THUMBS, "@me"), alice)
            assert status == 204
            remove = await next_event(listening, "MESSAGE_REACTION_REMOVE")
            assert remove == {"user_id": str(r.other_id), "channel_id": str(r.seeded.channel_id),
                              "message_id": mid, "guild_id": str(r.seeded.guild_id),
                              "emoji": {"id": None, "name": "👍"}, "burst": False, "type": 0}
            status, _, _ = await call(http, r, "DELETE", react_path(r, mid, THUMBS, "@me"), alice)
            assert status == 204  # nothing to remove: no event either
            status, body, _ = await call(http, r, "DELETE",
                                         react_path(r, mid, THUMBS, str(r.seeded.user_id)), alice)
            assert status == 403 and body["code"] == 50013
            status, _, _ = await call(http, r, "PUT", react_path(r, mid, THUMBS, "@me"), alice)
            await next_event(listening, "MESSAGE_REACTION_ADD")
            status, _, _ = await call(http, r, "DELETE",
                                      react_path(r, mid, THUMBS, str(r.other_id)), bot)
            assert status == 204
            remove = await next_event(listening, "MESSAGE_REACTION_REMOVE")
            assert remove["user_id"] == str(r.other_id)

            # all of one emoji, then all
            for path in (react_path(r, mid, PARTY), react_path(r, mid)):
                status, body, _ = await call(http, r, "DELETE", path, alice)
                assert status == 403 and body["code"] == 50013
            status, _, _ = await call(http, r, "DELETE", react_path(r, mid, PARTY), bot)
            assert status == 204
            gone = await next_event(listening, "MESSAGE_REACTION_REMOVE_EMOJI")
            assert gone == {"channel_id": str(r.seeded.channel_id), "message_id": mid,
                            "guild_id": str(r.seeded.guild_id),
                            "emoji": {"id": "112233445566778899", "name": "party",
                                      "animated": False}}
            status, _, _ = await call(http, r, "DELETE", react_path(r, mid), bot)
            assert status == 204
            gone = await next_event(listening, "MESSAGE_REACTION_REMOVE_ALL")
            assert gone == {"channel_id": str(r.seeded.channel_id), "message_id": mid,
                            "guild_id": str(r.seeded.guild_id)}
            status, message, _ = await call(http, r, "GET",
                                            f"/channels/{r.seeded.channel_id}/messages/{mid}", bot)
            assert "reactions" not in message
            assert await r.gateway.storage.list_records(REACTION_KIND, int(mid)) == []
            await quiet(deaf, *EVENTS)  # a session without the intent heard none of it
            await quiet(listening, *EVENTS)

    run(main, timeout=40)


def test_errors(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            bot, alice = r.seeded.token, r.other_token
            storage, gid = r.gateway.storage, r.seeded.guild_id
            mid = await posted(http, r, bot, "m")
            routes: list[tuple[str, str]] = [
                ("PUT", react_path(r, mid, "{e}", "@me")),
                ("DELETE", react_path(r, mid, "{e}", "@me")),
                ("DELETE", react_path(r, mid, "{e}", str(r.other_id))),
                ("GET", react_path(r, mid, "{e}")),
                ("DELETE", react_path(r, mid, "{e}")),
            ]
            for method, path in routes:
                for bad in ("thumbsup", quote(":123"), quote("<:x:1>"), "x" * 70,
                            quote("name:0123"), quote("👍👍")):
                    status, body, _ = await call(http, r, method, path.format(e=bad), bot)
                    assert (status, body) == (400, {"code": 10014,
                                                    "message": "Unknown Emoji"}), (method, bad)
                status, body, _ = await call(http, r, method, path.format(e=THUMBS), None)
                assert status == 401
                unknown = path.format(e=THUMBS).replace(f"/messages/{mid}/", "/messages/42/")
                status, body, _ = await call(http, r, method, unknown, bot)
                assert (status, body["code"]) == (404, 10008), (method, unknown)
            status, body, _ = await call(http, r, "DELETE", react_path(r, "42"), bot)
            assert (status, body["code"]) == (404, 10008)
            status, body, _ = await call(http, r, "DELETE", react_path(r, mid, THUMBS, "x"), bot)
            assert (status, body["code"]) == (404, 10013)

            # 20 distinct emoji, no more (30010); one already there is still welcome
            for i in range(1, 21):
                status, body, _ = await call(http, r, "PUT",
                                             react_path(r, mid, f"e{i}%3A{i}", "@me"), bot)
                assert status == 204, body
            status, body, _ = await call(http, r, "PUT", react_path(r, mid, THUMBS, "@me"), bot)
            assert (status, body) == (400, {"code": 30010, "message":
                                            "Maximum number of reactions reached (20)"})
            status, _, _ = await call(http, r, "PUT", react_path(r, mid, "e1%3A1", "@me"), alice)
            assert status == 204

            # permissions: READ_MESSAGE_HISTORY to react at all, ADD_REACTIONS for a new
            # emoji only; VIEW_CHANNEL or Missing Access
            await storage.put_role(Role(gid, gid, "@everyone",
                                        permissions=VIEW_CHANNEL | ADD_REACTIONS))
            status, body, _ = await call(http, r, "PUT", react_path(r, mid, "e2%3A2", "@me"),
                                         alice)
            assert (status, body["code"]) == (403, 50013)
            status, body, _ = await call(http, r, "GET", react_path(r, mid, "e2%3A2"), alice)
            assert (status, body["code"]) == (403, 50013)
            await storage.put_role(Role(gid, gid, "@everyone",
                                        permissions=VIEW_CHANNEL | READ_MESSAGE_HISTORY))
            other = await posted(http, r, bot, "fresh")
            status, body, _ = await call(http, r, "PUT", react_path(r, other, THUMBS, "@me"),
                                         alice)
            assert (status, body["code"]) == (403, 50013)  # nobody used it there yet
            status, _, _ = await call(http, r, "PUT", react_path(r, other, THUMBS, "@me"), bot)
            assert status == 204
            status, _, _ = await call(http, r, "PUT", react_path(r, other, THUMBS, "@me"), alice)
            assert status == 204  # one already there needs no ADD_REACTIONS
            await storage.put_role(Role(gid, gid, "@everyone", permissions=0))
            for method, path in routes:
                status, body, _ = await call(http, r, method, path.format(e=THUMBS), alice)
                assert (status, body["code"]) == (403, 50001), method

            # a deleted message takes its reactions with it
            status, _, _ = await call(http, r, "DELETE",
                                      f"/channels/{r.seeded.channel_id}/messages/{other}", bot)
            assert status == 204
            assert await storage.list_records(REACTION_KIND, int(other)) == []
            assert await storage.get_record(COUNTS_KIND, r.seeded.channel_id,
                                            message_key(int(other))) is None
            status, body, _ = await call(http, r, "PUT", react_path(r, other, THUMBS, "@me"), bot)
            assert (status, body["code"]) == (404, 10008)

    run(main, timeout=40)


def test_a_message_deleted_elsewhere_is_refused_within_a_second(tmp_path: Path) -> None:
    """REST knows a message it found for KNOWN_TTL_S (a storm's checks cost one read a
    second); a delete on a path that does not tell it is refused (10008) after that."""
    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            storage = r.gateway.storage
            mid = await posted(http, r, r.seeded.token, "doomed")
            status, _, _ = await call(http, r, "PUT", react_path(r, mid, THUMBS, "@me"),
                                      r.other_token)
            assert status == 204
            await storage.delete_message(MessageDelete.now(r.seeded.channel_id, int(mid)))
            await asyncio.sleep(KNOWN_TTL_S + 0.1)
            for method in ("PUT", "DELETE"):
                status, body, _ = await call(http, r, method,
                                             react_path(r, mid, THUMBS, "@me"), r.other_token)
                assert (status, body["code"]) == (404, 10008), method

    run(main, timeout=30)


def test_reactions_in_a_dm(tmp_path: Path) -> None:
    """A DM's reaction events reach both users' sessions that asked for
    DIRECT_MESSAGE_REACTIONS (without guild_id or member); removing another's is
    beyond what a DM allows (50003)."""
    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            bot, alice = r.seeded.token, r.other_token
            dm_reactions = int(Intents.DIRECT_MESSAGES | Intents.DIRECT_MESSAGE_REACTIONS)
            ws_bot = await session(http, r, bot, dm_reactions)
            ws_alice = await session(http, r, alice, int(Intents.DIRECT_MESSAGES))
            ws_guild = await session(http, r, bot, REACTIONS)
            status, dm, _ = await call(http, r, "POST", "/users/@me/channels", alice,
                                       json={"recipient_id": str(r.seeded.user_id)})
            assert status == 200, dm
            _, sent, _ = await call(http, r, "POST", f"/channels/{dm['id']}/messages", bot,
                                    json={"content": "hi"})
            path = f"/channels/{dm['id']}/messages/{sent['id']}/reactions"
            status, _, _ = await call(http, r, "PUT", f"{path}/{THUMBS}/@me", alice)
            assert status == 204
            add = await next_event(ws_bot, "MESSAGE_REACTION_ADD")
            assert add == {"user_id": str(r.other_id), "channel_id": dm["id"],
                           "message_id": sent["id"], "emoji": {"id": None, "name": "👍"},
                           "burst": False, "burst_colors": [], "type": 0,
                           "message_author_id": str(r.seeded.user_id)}
            status, body, _ = await call(http, r, "DELETE", f"{path}/{THUMBS}/{r.other_id}",
                                         bot)
            assert (status, body["code"]) == (403, 50003)
            status, message, _ = await call(http, r, "GET",
                                            f"/channels/{dm['id']}/messages/{sent['id']}",
                                            alice)
            assert message["reactions"][0]["me"] is True
            status, _, _ = await call(http, r, "DELETE", f"{path}/{THUMBS}/@me", alice)
            assert status == 204
            remove = await next_event(ws_bot, "MESSAGE_REACTION_REMOVE")
            assert "guild_id" not in remove and remove["user_id"] == str(r.other_id)
            await quiet(ws_alice, *EVENTS)  # DIRECT_MESSAGES alone: no reaction events
            await quiet(ws_guild, *EVENTS)  # guild intents: nothing of a DM

    run(main, timeout=30)


def test_concurrent_reactors_are_all_counted_and_heard(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # 90 at once on one message: none shed here (that is the next test's)
    monkeypatch.setattr(rest_reactions, "MAX_IN_FLIGHT_PER_MESSAGE", 1000)

    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            listening = await session(http, r, r.seeded.token, REACTIONS)
            mid = await posted(http, r, r.seeded.token, "storm")
            ids = SnowflakeGenerator(worker=3)
            tokens = [r.other_token]
            for i in range(29):
                user_id, token = await create_user(r.gateway.storage, ids, f"u{i}", bot=False)
                await add_member(r.gateway.storage, r.seeded.guild_id, user_id)
                tokens.append(token)
            emoji = [THUMBS, quote("🔥"), PARTY]

            async def react(token: str, e: str) -> int:
                status, _, _ = await call(http, r, "PUT", react_path(r, mid, e, "@me"), token)
                return status

            statuses = await asyncio.gather(*(react(t, e) for t in tokens for e in emoji))
            assert set(statuses) == {204}
            heard: list[dict[str, Any]] = [
                await next_event(listening, "MESSAGE_REACTION_ADD")
                for _ in range(len(tokens) * len(emoji))]
            assert len({(d["user_id"], d["emoji"]["name"]) for d in heard}) == 90
            status, message, _ = await call(
                http, r, "GET", f"/channels/{r.seeded.channel_id}/messages/{mid}",
                r.seeded.token)
            assert [x["count"] for x in message["reactions"]] == [30, 30, 30]
            await quiet(listening, *EVENTS)

    run(main, timeout=40)


def test_a_slow_reaction_write_holds_up_no_message(tmp_path: Path) -> None:
    """The design claim: a message's reactions are written on their own path, so
    messages to the channel do not queue behind them (nor they behind messages)."""
    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            storage = r.gateway.storage
            mid = await posted(http, r, r.seeded.token, "slow")
            release = asyncio.Event()
            write_records = storage.write_records

            async def slow_write(writes: Any) -> None:
                if any(kind == REACTION_KIND for kind, *_ in writes):
                    await release.wait()
                await write_records(writes)

            storage.write_records = slow_write  # type: ignore[method-assign]
            reacting = asyncio.ensure_future(
                call(http, r, "PUT", react_path(r, mid, THUMBS, "@me"), r.other_token))
            await asyncio.sleep(0.2)
            assert not reacting.done()  # its write is stuck
            for i in range(3):  # the channel's messages go on meanwhile
                await asyncio.wait_for(posted(http, r, r.seeded.token, f"meanwhile {i}"), 2)
            release.set()
            status, _, _ = await reacting
            assert status == 204

    run(main, timeout=30)


def test_a_failed_write_is_answered_503_and_forgotten(tmp_path: Path) -> None:
    """Storage refusing a batch: its askers get a retryable 503, no event goes out, and
    the actor takes its state from storage again (the next add is a fresh one)."""
    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            storage = r.gateway.storage
            listening = await session(http, r, r.seeded.token, REACTIONS)
            mid = await posted(http, r, r.seeded.token, "flaky")
            write_records = storage.write_records
            failures = [OSError("disk on fire")]

            async def flaky_write(writes: Any) -> None:
                if failures:
                    raise failures.pop()
                await write_records(writes)

            storage.write_records = flaky_write  # type: ignore[method-assign]
            path = react_path(r, mid, THUMBS, "@me")
            status, body, _ = await call(http, r, "PUT", path, r.other_token)
            assert status == 503, body
            await quiet(listening, *EVENTS)
            status, _, _ = await call(http, r, "PUT", path, r.other_token)
            assert status == 204
            add = await next_event(listening, "MESSAGE_REACTION_ADD")
            assert add["user_id"] == str(r.other_id)
            status, message, _ = await call(
                http, r, "GET", f"/channels/{r.seeded.channel_id}/messages/{mid}",
                r.other_token)
            assert [(x["count"], x["me"]) for x in message["reactions"]] == [(1, True)]

    run(main, timeout=30)


def test_a_node_that_cannot_keep_up_sheds_changes_with_a_shared_429(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Past MAX_IN_FLIGHT_PER_MESSAGE changes to one message at once a node answers
    Discord's 429 with the shared scope (the client waits and retries) instead of
    queueing them without bound; another message's reactions go on."""
    monkeypatch.setattr(rest_reactions, "MAX_IN_FLIGHT_PER_MESSAGE", 2)

    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            storage = r.gateway.storage
            mid = await posted(http, r, r.seeded.token, "hot")
            calm = await posted(http, r, r.seeded.token, "calm")
            release = asyncio.Event()
            write_records = storage.write_records

            async def stuck(writes: Any) -> None:
                if any(scope == int(mid) for _, scope, *_ in writes):
                    await release.wait()
                await write_records(writes)

            storage.write_records = stuck  # type: ignore[method-assign]
            path = f"{r.gateway.rest_url}{react_path(r, mid, THUMBS, '@me')}"
            first = [asyncio.ensure_future(call(http, r, "PUT", react_path(r, mid, THUMBS, "@me"),
                                                token)) for token in (r.seeded.token,
                                                                      r.other_token)]
            await asyncio.sleep(0.2)
            async with http.put(path, headers={"Authorization": f"Bot {r.seeded.token}"}) as resp:
                assert resp.status == 429
                assert resp.headers["X-RateLimit-Scope"] == "shared"
                assert resp.headers["Retry-After"] == "1" and resp.headers["Via"]
                body = await resp.json()
                assert body["global"] is False and body["retry_after"] > 0
            status, _, _ = await call(http, r, "PUT", react_path(r, calm, THUMBS, "@me"),
                                      r.seeded.token)
            assert status == 204  # another message is not held up
            release.set()
            assert [status for status, _, _ in await asyncio.gather(*first)] == [204, 204]
            status, _, _ = await call(http, r, "DELETE", react_path(r, mid, THUMBS, "@me"),
                                      r.other_token)
            assert status == 204  # below the bound again

    run(main, timeout=30)
