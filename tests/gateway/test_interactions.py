"""Interactions at the protocol level (aiohttp): a user invokes a command, clicks a
component, submits a modal (``POST /interactions``); the bot gets INTERACTION_CREATE
and answers once (callback), then edits ``@original`` and sends follow-ups; the invoker
gets what Discord's client gets; every limit and refusal with Discord's status and code.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from chat import interactions as ix
from gateway.protocol.intents import Intents
from gateway.rest.interactions import interactions_of
from gateway.seed import add_member, create_user
from storage.model import Channel, Role
from tests.gateway.harness import Running, run, running_gateway

GUILDS, GUILD_MESSAGES = int(Intents.GUILDS), int(Intents.GUILD_MESSAGES)
MESSAGE_CONTENT = int(Intents.MESSAGE_CONTENT)

ROLL = {"name": "roll", "type": 1, "description": "roll a die", "options": [
    {"type": 4, "name": "sides", "description": "sides", "required": True,
     "min_value": 2, "max_value": 100},
    {"type": 6, "name": "who", "description": "who"},
    {"type": 7, "name": "where", "description": "where", "channel_types": [0]},
    {"type": 8, "name": "role", "description": "role"},
    {"type": 3, "name": "colour", "description": "colour",
     "choices": [{"name": "Red", "value": "red"}, {"name": "Blue", "value": "blue"}]},
    {"type": 3, "name": "search", "description": "search", "autocomplete": True},
]}
WAVE = {"name": "Wave", "type": 2}
QUOTE = {"name": "Quote", "type": 3}
ADMIN = {"name": "purge", "type": 1, "description": "mods only",
         "default_member_permissions": str(1 << 13)}
BUTTONS = [{"type": 1, "components": [
    {"type": 2, "style": 1, "label": "Again", "custom_id": "again"},
    {"type": 2, "style": 5, "label": "Docs", "url": "https://example.com"}]}]


class Client:
    """REST as the bot, as alice (the invoking user) and without auth (callbacks and
    follow-ups: the interaction's token is the credential)."""

    def __init__(self, http: aiohttp.ClientSession, r: Running) -> None:
        self.http, self.r, self.base = http, r, r.gateway.rest_url
        self.app = r.seeded.user_id
        self.bot = {"Authorization": f"Bot {r.seeded.token}"}
        self.alice = {"Authorization": f"Bot {r.other_token}"}
        self.commands: dict[str, dict[str, Any]] = {}

    async def call(self, method: str, path: str, headers: dict[str, str] | None = None,
                   **kw: Any) -> tuple[int, Any]:
        async with self.http.request(method, self.base + path, headers=headers, **kw) as resp:
            text = await resp.text()
            return resp.status, json.loads(text) if text else None

    async def register(self, *definitions: dict[str, Any]) -> None:
        status, body = await self.call(
            "PUT", f"/applications/{self.app}/guilds/{self.r.seeded.guild_id}/commands",
            self.bot, json=list(definitions))
        assert status == 200, body
        self.commands = {c["name"]: c for c in body}

    def invocation(self, name: str, options: list[dict[str, Any]] | None = None,
                   kind: int = 2, **extra: Any) -> dict[str, Any]:
        command = self.commands[name]
        data: dict[str, Any] = {"id": command["id"], "name": name, "type": 1}
        if options is not None:
            data["options"] = options
        return {"type": kind, "application_id": str(self.app),
                "guild_id": str(self.r.seeded.guild_id),
                "channel_id": str(self.r.seeded.channel_id), "session_id": "s",
                "nonce": "n1", "data": data, **extra}

    async def invoke(self, body: dict[str, Any], headers: dict[str, str] | None = None
                     ) -> tuple[int, Any]:
        return await self.call("POST", "/interactions", self.alice if headers is None else headers,
                               json=body)

    async def answer(self, interaction: dict[str, Any], body: dict[str, Any],
                     query: str = "") -> tuple[int, Any]:
        return await self.call(
            "POST", f"/interactions/{interaction['id']}/{interaction['token']}/callback{query}",
            json=body)

    def hook(self, interaction: dict[str, Any], tail: str = "") -> str:
        return f"/webhooks/{self.app}/{interaction['token']}{tail}"


def refused(answer: tuple[int, Any], status: int, code: int, field: str | None = None) -> None:
    got_status, body = answer
    assert (got_status, body["code"]) == (status, code), answer
    if field is not None:
        tree = body["errors"]
        for part in field.split("."):
            assert part in tree, (field, body)
            tree = tree[part]
        assert "_errors" in tree, body


async def identified(http: aiohttp.ClientSession, r: Running, token: str, intents: int
                     ) -> aiohttp.ClientWebSocketResponse:
    ws = await http.ws_connect(f"{r.gateway.gateway_url}/?v=10&encoding=json")
    await ws.receive(5)
    await ws.send_json({"op": 2, "d": {"token": token, "intents": intents,
                                       "properties": {"os": "l", "browser": "t", "device": "t"}}})
    SESSION_IDS[id(ws)] = (await next_event(ws, "READY"))["session_id"]
    await next_event(ws, "GUILD_CREATE")
    return ws


#: a socket's session id (from its READY), by ``id(ws)``
SESSION_IDS: dict[int, str] = {}


async def next_event(ws: aiohttp.ClientWebSocketResponse, *names: str,
                     timeout: float = 5) -> dict[str, Any]:
    """The next dispatch named one of ``names`` (others skipped)."""
    while True:
        payload = json.loads((await ws.receive(timeout)).data)
        if payload.get("t") in names:
            return {"t": payload["t"], **payload["d"]}


async def nothing_more(ws: aiohttp.ClientWebSocketResponse, *names: str,
                       wait: float = 0.3) -> None:
    with pytest.raises(asyncio.TimeoutError):
        got = await next_event(ws, *names, timeout=wait)
        pytest.fail(f"unexpected {got}")


INTENTS = GUILDS | GUILD_MESSAGES | MESSAGE_CONTENT


async def setup(http: aiohttp.ClientSession, r: Running
                ) -> tuple[Client, aiohttp.ClientWebSocketResponse, aiohttp.ClientWebSocketResponse]:
    c = Client(http, r)
    await c.register(ROLL, ADMIN, WAVE, QUOTE)
    bot = await identified(http, r, r.seeded.token, INTENTS)
    alice = await identified(http, r, r.other_token, INTENTS)
    await alice.send_json({"op": 14, "d": {"guild_id": str(r.seeded.guild_id)}})
    return c, bot, alice


def test_command_answered_edited_followed_up_and_clicked(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            storage, ids = r.gateway.storage, r.gateway.ctx.snowflakes
            role_id = ids.next_id()
            await storage.put_role(Role(r.seeded.guild_id, role_id, "dice", position=1))
            c, bot, alice = await setup(http, r)
            await asyncio.sleep(0.1)  # alice's op 14 reached her guild

            status, body = await c.invoke(c.invocation("roll", [
                {"type": 4, "name": "sides", "value": 20},
                {"type": 6, "name": "who", "value": str(r.other_id)},
                {"type": 7, "name": "where", "value": str(r.seeded.channel_id)},
                {"type": 8, "name": "role", "value": str(role_id)},
                {"type": 3, "name": "colour", "value": "blue"}]))
            assert status == 204, body
            got = await next_event(bot, "INTERACTION_CREATE")
            assert got["type"] == 2 and got["version"] == 1
            assert got["application_id"] == str(c.app)
            assert got["guild_id"] == str(r.seeded.guild_id)
            assert got["channel_id"] == str(r.seeded.channel_id)
            assert got["channel"]["id"] == str(r.seeded.channel_id) and got["channel"]["type"] == 0
            assert got["member"]["user"]["id"] == str(r.other_id)
            assert int(got["member"]["permissions"]) & (1 << 10)
            assert int(got["app_permissions"]) & (1 << 11)  # the bot owns the guild
            for key in ("locale", "guild_locale", "entitlements", "context",
                        "authorizing_integration_owners", "attachment_size_limit", "token"):
                assert key in got, key
            data = got["data"]
            assert (data["id"], data["name"], data["type"]) == (
                c.commands["roll"]["id"], "roll", 1)
            assert [o["value"] for o in data["options"]] == [
                20, str(r.other_id), str(r.seeded.channel_id), str(role_id), "blue"]
            resolved = data["resolved"]
            assert resolved["users"][str(r.other_id)]["username"] == "alice"
            assert "permissions" in resolved["members"][str(r.other_id)]
            assert "user" not in resolved["members"][str(r.other_id)]
            assert resolved["channels"][str(r.seeded.channel_id)]["name"] == "general"
            assert resolved["roles"][str(role_id)]["name"] == "dice"
            mine = await next_event(alice, "INTERACTION_CREATE")
            assert mine == {"t": "INTERACTION_CREATE", "id": got["id"], "nonce": "n1"}

            # type 4, with a button; with_response answers the created message
            status, answer = await c.answer(got, {"type": 4, "data": {
                "content": "rolled 7", "components": BUTTONS}}, "?with_response=true")
            assert status == 200, answer
            assert answer["interaction"]["id"] == got["id"]
            assert answer["interaction"]["type"] == 2
            message = answer["resource"]["message"]
            assert answer["interaction"]["response_message_id"] == message["id"]
            assert message["type"] == 20 and message["content"] == "rolled 7"
            assert message["author"]["id"] == str(c.app)
            assert message["webhook_id"] == str(c.app) == message["application_id"]
            assert message["interaction_metadata"]["id"] == got["id"]
            assert message["interaction_metadata"]["user"]["id"] == str(r.other_id)
            assert message["interaction_metadata"]["name"] == "roll"
            assert message["components"][0]["components"][0]["custom_id"] == "again"
            for ws in (alice, bot):
                created = await next_event(ws, "MESSAGE_CREATE")
                assert created["id"] == message["id"] and created["components"] == \
                    message["components"]
            success = await next_event(alice, "INTERACTION_SUCCESS")
            assert success["id"] == got["id"] and success["nonce"] == "n1"

            # one answer only
            refused(await c.answer(got, {"type": 4, "data": {"content": "again"}}), 400, 40060)
            refused(await c.answer(got, {"type": 5}), 400, 40060)

            # @original: get, edit (MESSAGE_UPDATE to the channel)
            status, original = await c.call("GET", c.hook(got, "/messages/@original"))
            assert status == 200 and original["id"] == message["id"]
            status, edited = await c.call("PATCH", c.hook(got, "/messages/@original"),
                                          json={"content": "rolled 8"})
            assert status == 200 and edited["content"] == "rolled 8", edited
            assert edited["components"] == message["components"]  # kept
            update = await next_event(alice, "MESSAGE_UPDATE")
            assert update["id"] == message["id"] and update["content"] == "rolled 8"

            # a follow-up, read, edited and deleted with the token
            status, follow = await c.call("POST", c.hook(got), json={"content": "and more"})
            assert status == 200, follow
            assert follow["type"] == 0 and follow["webhook_id"] == str(c.app)
            assert (await next_event(alice, "MESSAGE_CREATE"))["id"] == follow["id"]
            status, read = await c.call("GET", c.hook(got, f"/messages/{follow['id']}"))
            assert status == 200 and read["content"] == "and more"
            status, _ = await c.call("PATCH", c.hook(got, f"/messages/{follow['id']}"),
                                     json={"content": "and less"})
            assert status == 200
            assert (await next_event(alice, "MESSAGE_UPDATE"))["content"] == "and less"
            status, _ = await c.call("DELETE", c.hook(got, f"/messages/{follow['id']}"))
            assert status == 204
            assert (await next_event(alice, "MESSAGE_DELETE"))["id"] == follow["id"]
            # another message of the channel is not the token's
            status, posted = await c.call("POST", f"/channels/{r.seeded.channel_id}/messages",
                                          c.bot, json={"content": "plain"})
            refused(await c.call("GET", c.hook(got, f"/messages/{posted['id']}")), 404, 10008)
            refused(await c.call("PATCH", c.hook(got, f"/messages/{follow['id']}"),
                                 json={"content": "x"}), 404, 10008)  # deleted

            # the response is in the channel's history
            status, history = await c.call(
                "GET", f"/channels/{r.seeded.channel_id}/messages", c.alice)
            assert message["id"] in [m["id"] for m in history]
            stored = next(m for m in history if m["id"] == message["id"])
            assert stored["interaction_metadata"]["id"] == got["id"]
            assert stored["components"] == message["components"]

            # alice clicks the button: a type-3 interaction with the message
            click = {"type": 3, "application_id": str(c.app), "nonce": "n2",
                     "guild_id": str(r.seeded.guild_id), "channel_id": str(r.seeded.channel_id),
                     "message_id": message["id"], "session_id": "s",
                     "data": {"component_type": 2, "custom_id": "again"}}
            status, body = await c.invoke(click)
            assert status == 204, body
            clicked = await next_event(bot, "INTERACTION_CREATE")
            assert clicked["type"] == 3
            assert clicked["data"] == {"custom_id": "again", "component_type": 2}
            assert clicked["message"]["id"] == message["id"]
            assert clicked["message"]["components"] == message["components"]
            # update the message: new content, no components
            status, _ = await c.answer(clicked, {"type": 7, "data": {
                "content": "rolled 9", "components": []}})
            assert status == 204
            update = await next_event(alice, "MESSAGE_UPDATE")
            assert update["id"] == message["id"] and update["content"] == "rolled 9"
            assert update["components"] == []
            # a link button sends nothing; a button no longer there cannot be clicked
            refused(await c.invoke({**click, "data": {"component_type": 2,
                                                      "custom_id": "again"}}),
                    400, 50035, "data.custom_id")
            # deleting @original
            status, _ = await c.call("DELETE", c.hook(got, "/messages/@original"))
            assert status == 204
            assert (await next_event(alice, "MESSAGE_DELETE"))["id"] == message["id"]

    run(main, timeout=40)


def test_deferred_ephemeral_modal_and_autocomplete(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            c, bot, alice = await setup(http, r)
            await asyncio.sleep(0.1)
            sides = [{"type": 4, "name": "sides", "value": 6}]

            # deferred: a loading message, then the first follow-up fills it
            assert (await c.invoke(c.invocation("roll", sides)))[0] == 204
            got = await next_event(bot, "INTERACTION_CREATE")
            status, answer = await c.answer(got, {"type": 5}, "?with_response=true")
            assert status == 200 and answer["interaction"]["response_message_loading"] is True
            loading = await next_event(alice, "MESSAGE_CREATE")
            assert loading["flags"] & ix.LOADING and loading["content"] == ""
            status, filled = await c.call("POST", c.hook(got), json={"content": "done"})
            assert status == 200 and filled["id"] == loading["id"], filled
            assert not filled["flags"] & ix.LOADING
            update = await next_event(alice, "MESSAGE_UPDATE")
            assert update["id"] == loading["id"] and update["content"] == "done"
            status, second = await c.call("POST", c.hook(got), json={"content": "more"})
            assert status == 200 and second["id"] != loading["id"]
            assert (await next_event(alice, "MESSAGE_CREATE"))["id"] == second["id"]

            # ephemeral: only the invoker's sessions; not in history; its @original works
            assert (await c.invoke(c.invocation("roll", sides)))[0] == 204
            got = await next_event(bot, "INTERACTION_CREATE")
            status, _ = await c.answer(got, {"type": 4, "data": {
                "content": "for you", "flags": 64, "components": BUTTONS}})
            assert status == 204
            secret = await next_event(alice, "MESSAGE_CREATE")
            assert secret["content"] == "for you" and secret["flags"] & ix.EPHEMERAL
            await nothing_more(bot, "MESSAGE_CREATE")
            status, history = await c.call(
                "GET", f"/channels/{r.seeded.channel_id}/messages", c.alice)
            assert secret["id"] not in [m["id"] for m in history]
            status, original = await c.call("GET", c.hook(got, "/messages/@original"))
            assert status == 200 and original["id"] == secret["id"]
            status, _ = await c.call("PATCH", c.hook(got, "/messages/@original"),
                                     json={"content": "for you only"})
            assert status == 200
            assert (await next_event(alice, "MESSAGE_UPDATE"))["content"] == "for you only"
            # its button works for alice
            click = {"type": 3, "application_id": str(c.app), "message_id": secret["id"],
                     "guild_id": str(r.seeded.guild_id), "channel_id": str(r.seeded.channel_id),
                     "message_flags": 64, "data": {"component_type": 2, "custom_id": "again"}}
            assert (await c.invoke(click))[0] == 204
            clicked = await next_event(bot, "INTERACTION_CREATE")
            assert clicked["message"]["id"] == secret["id"]
            assert clicked["message"]["flags"] & ix.EPHEMERAL
            assert (await c.answer(clicked, {"type": 6}))[0] == 204  # deferred update
            status, edited = await c.call("PATCH", c.hook(clicked, "/messages/@original"),
                                          json={"content": "clicked"})
            assert status == 200 and edited["id"] == secret["id"], edited
            assert (await next_event(alice, "MESSAGE_UPDATE"))["content"] == "clicked"
            # an ephemeral follow-up
            status, follow = await c.call("POST", c.hook(got), json={"content": "psst",
                                                                      "flags": 64})
            assert status == 200 and follow["flags"] & ix.EPHEMERAL
            assert (await next_event(alice, "MESSAGE_CREATE"))["content"] == "psst"
            await nothing_more(bot, "MESSAGE_CREATE")

            # a modal: shown to alice's session that invoked (named by session_id), not to
            # her other one; a session id that is not hers names nothing
            alice2 = await identified(http, r, r.other_token, INTENTS)
            stolen = c.invocation("roll", sides, session_id=SESSION_IDS[id(bot)])
            assert (await c.invoke(stolen))[0] == 204
            got = await next_event(bot, "INTERACTION_CREATE")
            assert (await c.answer(got, {"type": 4, "data": {"content": "hers",
                                                              "flags": 64}}))[0] == 204
            for ws in (alice, alice2):  # an ephemeral message: every session of hers
                assert (await next_event(ws, "MESSAGE_CREATE"))["content"] == "hers"
            await nothing_more(bot, "INTERACTION_SUCCESS", "INTERACTION_CREATE")
            await nothing_more(alice2, "INTERACTION_SUCCESS")
            assert (await c.invoke(c.invocation("roll", sides,
                                                session_id=SESSION_IDS[id(alice)])))[0] == 204
            got = await next_event(bot, "INTERACTION_CREATE")
            modal = {"custom_id": "form", "title": "Tell me", "components": [
                {"type": 1, "components": [{"type": 4, "custom_id": "name", "style": 1,
                                            "label": "Name", "max_length": 10}]},
                {"type": 18, "label": "Who", "component": {"type": 5, "custom_id": "who"}}]}
            assert (await c.answer(got, {"type": 9, "data": modal}))[0] == 204
            shown = await next_event(alice, "INTERACTION_MODAL_CREATE")
            await nothing_more(alice2, "INTERACTION_MODAL_CREATE", "INTERACTION_CREATE")
            assert shown["custom_id"] == "form" and shown["title"] == "Tell me"
            assert shown["components"][0]["components"][0]["custom_id"] == "name"
            submit = {"type": 5, "application_id": str(c.app), "nonce": "n3",
                      "guild_id": str(r.seeded.guild_id), "channel_id": str(r.seeded.channel_id),
                      "data": {"id": shown["id"], "custom_id": "form", "components": [
                          {"type": 1, "components": [
                              {"type": 4, "custom_id": "name", "value": "alice"}]},
                          {"type": 18, "component": {"type": 5, "custom_id": "who",
                                                     "values": [str(r.seeded.user_id)]}}]}}
            too_long = json.loads(json.dumps(submit))
            too_long["data"]["components"][0]["components"][0]["value"] = "x" * 11
            refused(await c.invoke(too_long), 400, 50035, "data.components.0.value")
            assert (await c.invoke(submit))[0] == 204
            submitted = await next_event(bot, "INTERACTION_CREATE")
            assert submitted["type"] == 5 and submitted["data"]["custom_id"] == "form"
            assert submitted["data"]["components"] == [
                {"type": 1, "id": 1, "components": [
                    {"type": 4, "id": 2, "custom_id": "name", "value": "alice"}]},
                {"type": 18, "id": 3, "component": {
                    "type": 5, "id": 4, "custom_id": "who", "values": [str(r.seeded.user_id)]}}]
            assert submitted["data"]["resolved"]["users"][str(r.seeded.user_id)]["bot"]
            refused(await c.invoke(submit), 400, 40060)  # submitted already
            refused(await c.answer(submitted, {"type": 9, "data": modal}), 400, 50035, "type")
            refused(await c.answer(submitted, {"type": 7, "data": {"content": "x"}}),
                    400, 50035, "type")  # opened by a command: no message to update
            assert (await c.answer(submitted, {"type": 4, "data": {"content": "hi alice"}})
                    )[0] == 204
            assert (await next_event(alice, "MESSAGE_CREATE"))["content"] == "hi alice"

            # context menu commands: the target resolved
            wave = {**c.invocation("Wave"), "data": {
                "id": c.commands["Wave"]["id"], "name": "Wave", "type": 2,
                "target_id": str(r.seeded.user_id)}}
            assert (await c.invoke(wave))[0] == 204
            got = await next_event(bot, "INTERACTION_CREATE")
            assert got["data"]["target_id"] == str(r.seeded.user_id)
            assert got["data"]["resolved"]["users"][str(r.seeded.user_id)]["bot"] is True
            assert (await c.answer(got, {"type": 4, "data": {"content": "o/"}}))[0] == 204
            waved = await next_event(alice, "MESSAGE_CREATE")
            assert waved["type"] == 23 and waved["interaction_metadata"]["command_type"] == 2
            quote = {**c.invocation("Quote"), "data": {
                "id": c.commands["Quote"]["id"], "name": "Quote", "type": 3,
                "target_id": waved["id"]}}
            assert (await c.invoke(quote))[0] == 204
            got = await next_event(bot, "INTERACTION_CREATE")
            assert got["data"]["resolved"]["messages"][waved["id"]]["content"] == "o/"
            refused(await c.invoke({**quote, "data": {**quote["data"], "target_id": "1"}}),
                    400, 50035, "data.target_id")
            refused(await c.invoke({**wave, "data": {**wave["data"], "target_id": None}}),
                    400, 50035, "data.target_id")

            # autocomplete: partial input, the focused option; choices to the invoker
            auto = c.invocation("roll", [{"type": 3, "name": "search", "value": "ab",
                                          "focused": True}], kind=4)
            assert (await c.invoke(auto))[0] == 204
            got = await next_event(bot, "INTERACTION_CREATE")
            assert got["type"] == 4 and got["data"]["options"][0]["focused"] is True
            refused(await c.answer(got, {"type": 4, "data": {"content": "x"}}), 400, 50035)
            refused(await c.answer(got, {"type": 8, "data": {"choices": [
                {"name": "a", "value": "b"}] * 26}}), 400, 50035, "data.choices")
            choices = [{"name": "abc", "value": "abc"}]
            assert (await c.answer(got, {"type": 8, "data": {"choices": choices}}))[0] == 204
            result = await next_event(alice, "APPLICATION_COMMAND_AUTOCOMPLETE_RESPONSE")
            assert result["choices"] == choices and result["nonce"] == "n1"

    run(main, timeout=40)


def test_three_seconds_fifteen_minutes_and_one_answer_under_a_race(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ix, "RESPONSE_WINDOW_MS", 300)

    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            c, bot, alice = await setup(http, r)
            sides = [{"type": 4, "name": "sides", "value": 6}]
            # too late: the invoker is told it failed, the bot gets 10062
            assert (await c.invoke(c.invocation("roll", sides)))[0] == 204
            late = await next_event(bot, "INTERACTION_CREATE")
            failure = await next_event(alice, "INTERACTION_FAILURE")
            assert failure == {"t": "INTERACTION_FAILURE", "id": late["id"], "nonce": "n1"}
            refused(await c.answer(late, {"type": 4, "data": {"content": "late"}}), 404, 10062)
            refused(await c.call("POST", c.hook(late), json={"content": "x"}), 404, 10015)

            # twenty answers at once: one is taken, the rest are 40060
            assert (await c.invoke(c.invocation("roll", sides)))[0] == 204
            got = await next_event(bot, "INTERACTION_CREATE")
            answers = await asyncio.gather(*(
                c.answer(got, {"type": 4, "data": {"content": f"answer {i}"}})
                for i in range(20)))
            assert sorted(a[0] for a in answers) == [204] + [400] * 19, answers
            assert all(a[1]["code"] == 40060 for a in answers if a[0] == 400)
            assert (await next_event(alice, "MESSAGE_CREATE"))["content"].startswith("answer")
            await nothing_more(alice, "MESSAGE_CREATE", "INTERACTION_FAILURE", wait=0.6)

            # the node that took an invocation dies before the window closes (its expiry
            # never runs): the clock still closes it, and nothing was answered
            assert (await c.invoke(c.invocation("roll", sides)))[0] == 204
            orphan = await next_event(bot, "INTERACTION_CREATE")
            await interactions_of(r.gateway._rest_runner.app).close()  # its timers: gone
            await asyncio.sleep(ix.RESPONSE_WINDOW_MS / 1000 + 0.05)
            refused(await c.answer(orphan, {"type": 4, "data": {"content": "x"}}), 404, 10062)
            refused(await c.call("POST", c.hook(orphan), json={"content": "x"}), 404, 10015)
            await nothing_more(alice, "MESSAGE_CREATE", "INTERACTION_SUCCESS")

            # the token serves follow-ups for 15 minutes, then 10015
            monkeypatch.setattr(ix, "TOKEN_WINDOW_MS", 0)
            refused(await c.call("POST", c.hook(got), json={"content": "x"}), 404, 10015)
            refused(await c.call("GET", c.hook(got, "/messages/@original")), 404, 10015)

    run(main, timeout=30)


def test_invocation_refusals(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            c = Client(http, r)
            await c.register(ROLL, ADMIN)
            storage, ids = r.gateway.storage, r.gateway.ctx.snowflakes
            good = c.invocation("roll", [{"type": 4, "name": "sides", "value": 6}])

            refused(await c.invoke(good, {}), 401, 0)
            refused(await c.invoke(good, c.bot), 403, 20001)  # bots cannot invoke
            for field, value in (("type", 1), ("type", 6), ("application_id", "x"),
                                 ("channel_id", None), ("nonce", "n" * 26),
                                 ("data", "roll")):
                refused(await c.invoke({**good, field: value}), 400, 50035, field)
            refused(await c.invoke({**good, "channel_id": str(ids.next_id())}), 404, 10003)
            refused(await c.invoke({**good, "guild_id": str(ids.next_id())}), 404, 10003)
            refused(await c.invoke({**good, "application_id": str(r.other_id)}), 404, 10002)
            refused(await c.invoke({**good, "data": {**good["data"], "id": str(ids.next_id())}}),
                    404, 10063)
            refused(await c.invoke({**good, "data": {**good["data"], "name": "rol"}}),
                    400, 50035, "data.name")
            for options, field in (
                    ([], "data.options"),
                    ([{"type": 4, "name": "sides", "value": 1}], "data.options.0.value"),
                    ([{"type": 4, "name": "sides", "value": "6"}], "data.options.0.value"),
                    ([{"type": 4, "name": "sides", "value": 6},
                      {"type": 3, "name": "colour", "value": "green"}], "data.options.1.value"),
                    ([{"type": 4, "name": "sides", "value": 6},
                      {"type": 6, "name": "who", "value": str(ids.next_id())}],
                     "data.options.1.value"),  # nobody
                    ([{"type": 4, "name": "sides", "value": 6},
                      {"type": 8, "name": "role", "value": str(ids.next_id())}],
                     "data.options.1.value"),
                    ([{"type": 4, "name": "sides", "value": 6},
                      {"type": 7, "name": "where", "value": str(ids.next_id())}],
                     "data.options.1.value")):
                refused(await c.invoke(c.invocation("roll", options)), 400, 50035, field)
            voice = ids.next_id()
            await storage.put_channel(Channel(voice, r.seeded.guild_id, "voice", type=2))
            refused(await c.invoke(c.invocation("roll", [
                {"type": 4, "name": "sides", "value": 6},
                {"type": 7, "name": "where", "value": str(voice)}])),
                400, 50035, "data.options.1.value")  # channel_types [0]
            # default_member_permissions: MANAGE_MESSAGES
            refused(await c.invoke(c.invocation("purge")), 403, 50013)
            moderator = ids.next_id()
            await storage.put_role(Role(r.seeded.guild_id, moderator, "mods", position=1,
                                        permissions=1 << 13))
            member = await storage.get_member(r.seeded.guild_id, r.other_id)
            member.roles = [moderator]
            await storage.put_member(member)
            assert (await c.invoke(c.invocation("purge")))[0] == 204
            # a channel alice may not view (a member overwrite): not hers to invoke in
            overwrite = f"/channels/{r.seeded.channel_id}/permissions/{r.other_id}"
            status, _ = await c.call("PUT", overwrite, c.bot,
                                     json={"type": 1, "allow": "0", "deny": str(1 << 10)})
            assert status == 204
            refused(await c.invoke(c.invocation("purge")), 403, 50001)
            # ... nor one that takes USE_APPLICATION_COMMANDS away from her
            status, _ = await c.call("PUT", overwrite, c.bot,
                                     json={"type": 1, "allow": "0", "deny": str(1 << 31)})
            assert status == 204
            refused(await c.invoke(good), 403, 50013)
            assert (await c.call("DELETE", overwrite, c.bot))[0] == 204
            # a user outside the guild
            bob_id, bob_token = await create_user(storage, ids, "bob", bot=False)
            refused(await c.invoke(good, {"Authorization": f"Bot {bob_token}"}), 403, 50001)
            await add_member(storage, r.seeded.guild_id, bob_id)
            assert (await c.invoke(good, {"Authorization": f"Bot {bob_token}"}))[0] == 204
            # clicks: a message that is not the application's, one that is not there
            status, plain = await c.call("POST", f"/channels/{r.seeded.channel_id}/messages",
                                         c.alice, json={"content": "mine"})
            click = {"type": 3, "application_id": str(c.app),
                     "channel_id": str(r.seeded.channel_id),
                     "data": {"component_type": 2, "custom_id": "again"}}
            refused(await c.invoke({**click, "message_id": plain["id"]}), 404, 10008)
            refused(await c.invoke({**click, "message_id": str(ids.next_id())}), 404, 10008)
            refused(await c.invoke(click), 400, 50035, "message_id")
            # a modal submission of no modal
            refused(await c.invoke({**click, "type": 5, "data": {
                "id": str(ids.next_id()), "custom_id": "x", "components": []}}), 404, 10062)

    run(main, timeout=30)


def test_callback_and_follow_up_refusals(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            c, bot, alice = await setup(http, r)
            sides = [{"type": 4, "name": "sides", "value": 6}]
            assert (await c.invoke(c.invocation("roll", sides)))[0] == 204
            got = await next_event(bot, "INTERACTION_CREATE")
            forged = ix.new_token(int(got["id"]))
            refused(await c.answer({**got, "token": forged}, {"type": 4}), 404, 10062)
            refused(await c.answer({**got, "id": "1" + got["id"]}, {"type": 4}), 404, 10062)
            refused(await c.answer({**got, "id": "x"}, {"type": 4}), 404, 10062)
            # a follow-up before the answer: no webhook yet
            refused(await c.call("POST", c.hook(got), json={"content": "x"}), 404, 10015)
            row = BUTTONS[0]
            for body, field in (
                    ({"type": 6}, "type"),  # no message to update
                    ({"type": 8, "data": {"choices": []}}, "type"),
                    ({"type": "4"}, "type"),
                    ({"type": 4, "data": "hi"}, "data"),
                    ({"type": 4, "data": {"content": "x" * 2001}}, "data.content"),
                    ({"type": 4, "data": {"content": "x", "flags": 128}}, "data.flags"),
                    ({"type": 4, "data": {"content": "x", "components": [row] * 6}},
                     "data.components"),
                    ({"type": 4, "data": {"content": "x", "components": [{
                        "type": 1, "components": [
                            {"type": 2, "style": 1, "label": "b", "custom_id": str(i)}
                            for i in range(6)]}]}}, "data.components.0.components"),
                    ({"type": 4, "data": {"content": "x", "components": [{
                        "type": 1, "components": [{"type": 2, "style": 1, "label": "b",
                                                   "custom_id": "c" * 101}]}]}},
                     "data.components.0.components.0.custom_id"),
                    ({"type": 4, "data": {"content": "x", "embeds": [{"title": "t" * 257}]}},
                     "data.embeds.0.title"),
                    ({"type": 9, "data": {"custom_id": "m", "title": "t" * 46,
                                          "components": []}}, "data.title")):
                refused(await c.answer(got, body), 400, 50035, field)
            refused(await c.answer(got, {"type": 4, "data": {}}), 400, 50006)
            # none of those spent the answer
            assert (await c.answer(got, {"type": 4, "data": {"content": "ok"}}))[0] == 204
            # follow-ups: another application's id in the path, a forged token
            refused(await c.call("POST", f"/webhooks/{r.other_id}/{got['token']}",
                                 json={"content": "x"}), 404, 10015)
            refused(await c.call("POST", c.hook({"token": forged}), json={"content": "x"}),
                    401, 50027)
            refused(await c.call("POST", c.hook(got), json={"content": ""}), 400, 50006)
            refused(await c.call("POST", c.hook(got), json={"content": "x", "flags": 128}),
                    400, 50035, "flags")
            refused(await c.call("POST", c.hook(got) + "?thread_id=1",
                                 json={"content": "x"}), 400, 50035)
            refused(await c.call("GET", c.hook(got, "/messages/abc")), 404, 10008)
            # not an interaction's token: the channel webhooks' answer (no such webhook)
            refused(await c.call("POST", f"/webhooks/{c.app}/{'x' * 68}",
                                 json={"content": "x"}), 404, 10015)

    run(main, timeout=30)


def test_components_on_channel_messages(tmp_path: Path) -> None:
    """A bot's POST/PATCH /channels/{id}/messages carry components (stored with the
    message, edited with it); a click on them is an interaction like any other."""

    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            c, bot, alice = await setup(http, r)
            channel = f"/channels/{r.seeded.channel_id}/messages"
            pick = {"type": 1, "components": [{
                "type": 3, "custom_id": "pick", "max_values": 2,
                "options": [{"label": "A", "value": "a"}, {"label": "B", "value": "b"}]}]}
            members = {"type": 1, "components": [{"type": 5, "custom_id": "who"}]}
            status, posted = await c.call("POST", channel, c.bot, json={
                "components": [pick, members]})  # components alone make a message
            assert status == 200, posted
            assert posted["components"][0]["components"][0]["options"][1]["value"] == "b"
            status, read = await c.call("GET", f"{channel}/{posted['id']}", c.alice)
            assert read["components"] == posted["components"]
            refused(await c.call("POST", channel, c.alice, json={
                "content": "x", "components": [pick]}), 400, 50035, "components")
            refused(await c.call("POST", channel, c.bot, json={
                "content": "x", "components": [pick] * 6}), 400, 50035, "components")

            click = {"type": 3, "application_id": str(c.app), "message_id": posted["id"],
                     "channel_id": str(r.seeded.channel_id),
                     "data": {"component_type": 3, "custom_id": "pick", "values": ["b", "a"]}}
            assert (await c.invoke(click))[0] == 204
            got = await next_event(bot, "INTERACTION_CREATE")
            assert got["data"] == {"custom_id": "pick", "component_type": 3,
                                   "values": ["b", "a"]}
            assert (await c.answer(got, {"type": 6}))[0] == 204
            refused(await c.invoke({**click, "data": {**click["data"], "values": ["c"]}}),
                    400, 50035, "data.values.0")
            user_click = {**click, "data": {"component_type": 5, "custom_id": "who",
                                            "values": [str(r.other_id)]}}
            assert (await c.invoke(user_click))[0] == 204
            got = await next_event(bot, "INTERACTION_CREATE")
            assert got["data"]["resolved"]["users"][str(r.other_id)]["username"] == "alice"
            assert str(r.other_id) in got["data"]["resolved"]["members"]

            status, edited = await c.call("PATCH", f"{channel}/{posted['id']}", c.bot,
                                          json={"content": "gone", "components": []})
            assert status == 200 and edited["components"] == [], edited
            assert (await next_event(alice, "MESSAGE_UPDATE"))["components"] == []
            refused(await c.invoke(click), 400, 50035, "data.custom_id")

    run(main, timeout=30)


def test_interactions_in_a_dm_with_the_bot(tmp_path: Path) -> None:
    """A global command invoked in the user's DM with the bot (context BOT_DM): the
    interaction names the ``user``, its answer and follow-ups are messages of the DM."""

    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            c = Client(http, r)
            dms = INTENTS | int(Intents.DIRECT_MESSAGES)
            bot = await identified(http, r, r.seeded.token, dms)
            alice = await identified(http, r, r.other_token, dms)
            status, scoped = await c.call("PUT", f"/applications/{c.app}/commands", c.bot, json=[
                {"name": "ping", "description": "anywhere"},
                {"name": "guildonly", "description": "not in DMs", "contexts": [0]},
                {"name": "nodm", "description": "not in DMs", "dm_permission": False}])
            assert status == 200, scoped
            commands = {cmd["name"]: cmd for cmd in scoped}
            await c.register(ROLL)  # a guild's command: not in a DM either
            status, dm = await c.call("POST", "/users/@me/channels", c.alice,
                                      json={"recipient_id": str(c.app)})
            assert status == 200, dm

            def invocation(name: str) -> dict[str, Any]:
                command = commands.get(name) or c.commands[name]
                return {"type": 2, "application_id": str(c.app), "channel_id": dm["id"],
                        "nonce": "d", "data": {"id": command["id"], "name": name, "type": 1,
                                               **({"options": [{"type": 4, "name": "sides",
                                                                "value": 6}]}
                                                  if name == "roll" else {})}}

            assert (await c.invoke(invocation("ping")))[0] == 204
            got = await next_event(bot, "INTERACTION_CREATE")
            assert got["context"] == ix.BOT_DM and got["user"]["id"] == str(r.other_id)
            assert "guild_id" not in got and "member" not in got
            assert got["channel"] == {**got["channel"], "id": dm["id"], "type": 1}
            assert got["authorizing_integration_owners"] == {"0": "0"}
            status, answer = await c.answer(got, {"type": 4, "data": {
                "content": "pong", "components": BUTTONS}}, "?with_response=true")
            assert status == 200, answer
            message = answer["resource"]["message"]
            assert message["channel_id"] == dm["id"] and "guild_id" not in message
            assert "member" not in message["interaction"]
            for ws in (alice, bot):
                assert (await next_event(ws, "MESSAGE_CREATE"))["id"] == message["id"]
            status, edited = await c.call("PATCH", c.hook(got, "/messages/@original"),
                                          json={"content": "pong!"})
            assert status == 200, edited
            assert (await next_event(alice, "MESSAGE_UPDATE"))["content"] == "pong!"
            status, history = await c.call("GET", f"/channels/{dm['id']}/messages", c.alice)
            assert [m["content"] for m in history] == ["pong!"]
            # its button, clicked in the DM
            assert (await c.invoke({"type": 3, "application_id": str(c.app),
                                    "channel_id": dm["id"], "message_id": message["id"],
                                    "data": {"component_type": 2, "custom_id": "again"}}))[0] \
                == 204
            clicked = await next_event(bot, "INTERACTION_CREATE")
            assert clicked["type"] == 3 and clicked["message"]["id"] == message["id"]
            assert (await c.answer(clicked, {"type": 7, "data": {"components": []}}))[0] == 204
            assert (await next_event(alice, "MESSAGE_UPDATE"))["components"] == []

            # an ephemeral follow-up in the DM: the DM intents decide who gets it
            dm_only = await identified(http, r, r.other_token,
                                       GUILDS | int(Intents.DIRECT_MESSAGES))
            status, secret = await c.call("POST", c.hook(got), json={"content": "psst",
                                                                      "flags": 64})
            assert status == 200 and secret["flags"] & ix.EPHEMERAL, secret
            for ws in (alice, dm_only):
                assert (await next_event(ws, "MESSAGE_CREATE"))["id"] == secret["id"]
            await nothing_more(bot, "MESSAGE_CREATE")

            for name in ("guildonly", "nodm", "roll"):
                refused(await c.invoke(invocation(name)), 404, 10063)
            refused(await c.invoke({**invocation("ping"), "guild_id": str(r.seeded.guild_id)}),
                    404, 10003)
            # a DM without the bot: no application there
            bob_id, bob_token = await create_user(r.gateway.storage, r.gateway.ctx.snowflakes,
                                                  "bob", bot=False)
            await add_member(r.gateway.storage, r.seeded.guild_id, bob_id)
            status, other = await c.call("POST", "/users/@me/channels", c.alice,
                                         json={"recipient_id": str(bob_id)})
            assert status == 200, other
            refused(await c.invoke({**invocation("ping"), "channel_id": other["id"]}),
                    404, 10002)
            refused(await c.invoke(invocation("ping"), {"Authorization": f"Bot {bob_token}"}),
                    403, 50001)  # not bob's DM

    run(main, timeout=30)


def test_an_answer_that_fails_is_taken_only_once_it_may_show(tmp_path: Path) -> None:
    """An answer that fails before anything could be shown leaves the interaction to
    answer again; one whose message write was asked for stays taken, whatever became
    of the write (a second answer could show a second message)."""

    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            c, bot, alice = await setup(http, r)
            interactions = interactions_of(r.gateway._rest_runner.app)
            storage = r.gateway.storage
            sides = [{"type": 4, "name": "sides", "value": 6}]
            assert (await c.invoke(c.invocation("roll", sides)))[0] == 204
            got = await next_event(bot, "INTERACTION_CREATE")

            put_record = storage.put_record

            async def storage_down(*args: Any, **kw: Any) -> None:
                raise ConnectionError("storage down")

            storage.put_record = storage_down  # the ephemeral message cannot be kept
            try:
                status, _ = await c.answer(got, {"type": 4, "data": {"content": "x",
                                                                      "flags": 64}})
            finally:
                storage.put_record = put_record
            assert status >= 500
            assert (await c.answer(got, {"type": 4, "data": {"content": "ok"}}))[0] == 204
            assert (await next_event(alice, "MESSAGE_CREATE"))["content"] == "ok"

            assert (await c.invoke(c.invocation("roll", sides)))[0] == 204
            got = await next_event(bot, "INTERACTION_CREATE")
            ask_channel = interactions.ask_channel

            async def lost(*args: Any) -> Any:  # the write was asked for: outcome unknown
                raise TimeoutError

            interactions.ask_channel = lost
            try:
                status, _ = await c.answer(got, {"type": 4, "data": {"content": "lost"}})
            finally:
                interactions.ask_channel = ask_channel
            assert status == 503
            refused(await c.answer(got, {"type": 4, "data": {"content": "again"}}), 400, 40060)

    run(main, timeout=30)


def form(payload: dict[str, Any], *files: tuple[str, bytes]) -> aiohttp.FormData:
    """A body with files as the libraries send it: ``payload_json``, then ``files[n]``."""
    body = aiohttp.FormData()
    body.add_field("payload_json", json.dumps(payload), content_type="application/json")
    for i, (name, data) in enumerate(files):
        body.add_field(f"files[{i}]", data, filename=name, content_type="text/plain")
    return body


def test_answers_and_follow_ups_with_files(tmp_path: Path) -> None:
    """A callback, a follow-up and an edit of ``@original`` may carry files
    (``multipart/form-data``, as discord.py's ``send_message(file=...)`` sends them):
    stored with the message and served from its attachment url."""

    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            c, bot, alice = await setup(http, r)
            sides = [{"type": 4, "name": "sides", "value": 6}]
            assert (await c.invoke(c.invocation("roll", sides)))[0] == 204
            got = await next_event(bot, "INTERACTION_CREATE")
            callback = f"/interactions/{got['id']}/{got['token']}/callback"
            # an ephemeral message cannot carry files (kept off the channel); the answer
            # is not spent by the refusal
            refused(await c.call("POST", callback, data=form(
                {"type": 4, "data": {"content": "x", "flags": 64}}, ("a.txt", b"a"))),
                400, 50035, "data.attachments")
            status, answer = await c.call("POST", callback + "?with_response=true", data=form(
                {"type": 4, "data": {"content": "your roll"}}, ("roll.txt", b"six")))
            assert status == 200, answer
            message = answer["resource"]["message"]
            [attachment] = message["attachments"]
            assert attachment["filename"] == "roll.txt" and attachment["size"] == 3
            assert (await next_event(alice, "MESSAGE_CREATE"))["attachments"] == [attachment]
            async with http.get(attachment["url"]) as resp:
                assert resp.status == 200 and await resp.read() == b"six"

            status, follow = await c.call("POST", c.hook(got), data=form(
                {"content": "and a log"}, ("log.txt", b"line")))
            assert status == 200, follow
            async with http.get(follow["attachments"][0]["url"]) as resp:
                assert await resp.read() == b"line"
            # @original edited: one file kept, one added
            status, edited = await c.call("PATCH", c.hook(got, "/messages/@original"), data=form(
                {"content": "your rolls", "attachments": [{"id": attachment["id"]},
                                                          {"id": 0}]},
                ("second.txt", b"four")))
            assert status == 200, edited
            assert [a["filename"] for a in edited["attachments"]] == ["roll.txt", "second.txt"]
            update = await next_event(alice, "MESSAGE_UPDATE")
            assert len(update["attachments"]) == 2
            # a deferred answer filled by a follow-up with a file
            assert (await c.invoke(c.invocation("roll", sides)))[0] == 204
            got = await next_event(bot, "INTERACTION_CREATE")
            assert (await c.answer(got, {"type": 5}))[0] == 204
            status, filled = await c.call("POST", c.hook(got), data=form(
                {"content": "done"}, ("done.txt", b"ok")))
            assert status == 200, filled
            assert [a["filename"] for a in filled["attachments"]] == ["done.txt"]
            assert not filled["flags"] & ix.LOADING

    run(main, timeout=30)
