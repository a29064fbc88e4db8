"""Embeds, mentions and replies over REST and the gateway (issue 12, items 1-3): what a
post stores is in its answer, its MESSAGE_CREATE, history and edits; every limit and
refusal is Discord's status, JSON code and errors tree; a bot without MESSAGE_CONTENT
reads the messages that mention it, and only those."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp

from chat.permissions import SEND_MESSAGES, VIEW_CHANNEL
from gateway.protocol import Intents
from storage.model import Role
from storage.snowflake import SnowflakeGenerator
from tests.gateway.harness import member, run, running_gateway
from tests.gateway.test_events import next_event, session
from tests.gateway.test_gateway_socket import INTENTS
from tests.gateway.test_rest import call

NO_CONTENT = int(Intents.GUILDS | Intents.GUILD_MESSAGES)  # no MESSAGE_CONTENT




def errors_at(body: dict[str, Any], path: str) -> list[dict[str, str]]:
    """The ``_errors`` at dotted ``path`` of a 50035 answer's tree."""
    assert body["code"] == 50035 and body["message"] == "Invalid Form Body", body
    node = body["errors"]
    for part in path.split(".") if path else ():
        node = node[part]
    return node["_errors"]


def test_embed_mention_reply_end_to_end(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            owner, alice = r.seeded.token, r.other_token
            path = f"/channels/{r.seeded.channel_id}/messages"
            reader_id, reader = await member(r, "reader")  # no MESSAGE_CONTENT
            _, bystander = await member(r, "bystander")  # no MESSAGE_CONTENT either
            ws_reader = await session(http, r, reader, NO_CONTENT)
            ws_bystander = await session(http, r, bystander, NO_CONTENT)
            ws_owner = await session(http, r, owner, INTENTS)

            status, question, _ = await call(http, r, "POST", path, owner,
                                             json={"content": "question?"})
            assert status == 200 and question["type"] == 0
            assert "message_reference" not in question
            # the reader is not mentioned: it sees no content
            created = await next_event(ws_reader, "MESSAGE_CREATE",
                                       lambda d: d["id"] == question["id"])
            assert created["content"] == "" and created["mentions"] == []

            embed = {"title": "Build 42", "description": "passed",
                     "fields": [{"name": "tests", "value": "1200", "inline": True}],
                     "footer": {"text": "ci"}, "color": 0x00FF00}
            status, reply, _ = await call(http, r, "POST", path, alice, json={
                "content": f"<@{reader_id}> look", "embeds": [embed],
                "message_reference": {"message_id": question["id"]}})
            assert status == 200, reply
            assert reply["type"] == 19
            assert reply["embeds"] == [{"type": "rich", **embed}]
            assert reply["message_reference"] == {
                "type": 0, "message_id": question["id"],
                "channel_id": str(r.seeded.channel_id), "guild_id": str(r.seeded.guild_id)}
            assert reply["referenced_message"]["id"] == question["id"]
            assert reply["referenced_message"]["content"] == "question?"
            # the reader (written) and the replied-to author (pinged by default)
            assert [m["id"] for m in reply["mentions"]] == [str(reader_id),
                                                           str(r.seeded.user_id)]
            assert reply["mentions"][0]["username"] == "reader"
            assert reply["mention_roles"] == [] and reply["mention_everyone"] is False

            # MESSAGE_CREATE: the mentioned bot reads the content without the intent,
            # the other one sees it redacted; mentions carry their member
            # (and the message replied to only to whom may read that one: the owner)
            for ws, content, embeds, replied in (
                    (ws_reader, f"<@{reader_id}> look", 1, ""), (ws_bystander, "", 0, ""),
                    (ws_owner, reply["content"], 1, "question?")):
                event = await next_event(ws, "MESSAGE_CREATE", lambda d: d["id"] == reply["id"])
                assert (event["content"], len(event["embeds"])) == (content, embeds)
                assert event["type"] == 19 and event["message_reference"]["message_id"] == \
                    question["id"]
                assert event["referenced_message"]["id"] == question["id"]
                assert event["referenced_message"]["content"] == replied
                assert [m["id"] for m in event["mentions"]] == [str(reader_id),
                                                               str(r.seeded.user_id)]
                assert "joined_at" in event["mentions"][0]["member"]

            # a reply to the reader's own message: it reads both
            _, own, _ = await call(http, r, "POST", path, reader, json={"content": "mine"})
            status, answer, _ = await call(http, r, "POST", path, alice, json={
                "content": "about yours", "message_reference": {"message_id": own["id"]}})
            assert status == 200 and [m["id"] for m in answer["mentions"]] == [str(reader_id)]
            event = await next_event(ws_reader, "MESSAGE_CREATE",
                                     lambda d: d["id"] == answer["id"])
            assert (event["content"], event["referenced_message"]["content"]) == (
                "about yours", "mine")

            # history and a single read show the same
            status, one, _ = await call(http, r, "GET", f"{path}/{reply['id']}", owner)
            assert status == 200
            for key in ("embeds", "type", "message_reference", "referenced_message"):
                assert one[key] == reply[key], key
            assert [m["id"] for m in one["mentions"]] == [str(reader_id),
                                                         str(r.seeded.user_id)]
            status, history, _ = await call(http, r, "GET", path, owner)
            [listed] = [m for m in history if m["id"] == reply["id"]]
            assert listed["embeds"] == reply["embeds"] and listed["type"] == 19

            # an edit replaces the embeds and parses the mentions again
            status, edited, _ = await call(http, r, "PATCH", f"{path}/{reply['id']}", alice,
                                           json={"content": "nobody now",
                                                 "embeds": [{"title": "Build 43"}]})
            assert status == 200, edited
            assert edited["embeds"] == [{"type": "rich", "title": "Build 43"}]
            assert [m["id"] for m in edited["mentions"]] == [str(r.seeded.user_id)]
            assert edited["message_reference"] == reply["message_reference"]
            update = await next_event(ws_owner, "MESSAGE_UPDATE",
                                      lambda d: d["id"] == reply["id"])
            assert update["embeds"] == edited["embeds"] and update["content"] == "nobody now"
            # the reader is no longer mentioned: its MESSAGE_UPDATE has no content
            update = await next_event(ws_reader, "MESSAGE_UPDATE",
                                      lambda d: d["id"] == reply["id"])
            assert update["content"] == "" and update["embeds"] == []
            # embeds: null clears them, content stays
            status, cleared, _ = await call(http, r, "PATCH", f"{path}/{reply['id']}", alice,
                                            json={"embeds": None})
            assert status == 200 and cleared["embeds"] == [] and cleared["content"] == \
                "nobody now"
            for ws in (ws_reader, ws_bystander, ws_owner):
                await ws.close()

    run(main, timeout=30)


def test_mentions_and_allowed_mentions(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            owner, alice = r.seeded.token, r.other_token
            gid = r.seeded.guild_id
            path = f"/channels/{r.seeded.channel_id}/messages"
            storage = r.gateway.storage
            ids = SnowflakeGenerator(worker=5)
            open_role, closed_role = ids.next_id(), ids.next_id()
            await storage.put_role(Role(gid, open_role, "open", mentionable=True))
            await storage.put_role(Role(gid, closed_role, "closed"))
            text = f"<@!{r.other_id}> <@&{open_role}> <@&{closed_role}> @everyone <@{ids.next_id()}>"

            # alice has no MENTION_EVERYONE: @everyone and the closed role do not ping
            status, sent, _ = await call(http, r, "POST", path, alice, json={"content": text})
            assert status == 200, sent
            assert [m["id"] for m in sent["mentions"]] == [str(r.other_id)]  # unknown user gone
            assert sent["mention_roles"] == [str(open_role)]
            assert sent["mention_everyone"] is False
            # the owner may ping everything
            status, sent, _ = await call(http, r, "POST", path, owner, json={"content": text})
            assert sent["mention_roles"] == [str(open_role), str(closed_role)]
            assert sent["mention_everyone"] is True
            # allowed_mentions narrows
            for allowed, users, roles, everyone in (
                    ({"parse": []}, [], [], False),
                    ({"parse": ["users"]}, [str(r.other_id)], [], False),
                    ({"parse": ["everyone"], "roles": [str(closed_role)]}, [],
                     [str(closed_role)], True),
                    ({"users": [str(r.seeded.user_id)]}, [], [], False)):
                status, sent, _ = await call(http, r, "POST", path, owner,
                                             json={"content": text, "allowed_mentions": allowed})
                assert status == 200, sent
                assert ([m["id"] for m in sent["mentions"]], sent["mention_roles"],
                        sent["mention_everyone"]) == (users, roles, everyone), allowed
            # a reply pings its author unless allowed_mentions says otherwise
            _, question, _ = await call(http, r, "POST", path, alice, json={"content": "q"})
            ref = {"message_id": question["id"]}
            for allowed, pinged in ((None, [str(r.other_id)]), ({"parse": []}, []),
                                    ({"replied_user": True}, [str(r.other_id)])):
                body: dict[str, Any] = {"content": "a", "message_reference": ref}
                if allowed is not None:
                    body["allowed_mentions"] = allowed
                status, sent, _ = await call(http, r, "POST", path, owner, json=body)
                assert [m["id"] for m in sent["mentions"]] == pinged, allowed

    run(main, timeout=30)


def test_limits_and_error_codes(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            owner, alice = r.seeded.token, r.other_token
            path = f"/channels/{r.seeded.channel_id}/messages"

            async def post(body: dict[str, Any], token: str = owner) -> tuple[int, Any]:
                status, answer, _ = await call(http, r, "POST", path, token, json=body)
                return status, answer

            # embed-only is a message; nothing at all is 50006
            status, sent = await post({"embeds": [{"description": "only"}]})
            assert status == 200 and sent["content"] == "" and len(sent["embeds"]) == 1
            for empty in ({}, {"content": ""}, {"content": "", "embeds": []},
                          {"embeds": None}):
                assert await post(empty) == (400, {"code": 50006,
                                                   "message": "Cannot send an empty message"})
            # every limit at its edge passes, one past it is 50035 at the field's path
            at_limit = [{"title": "t" * 256, "description": "d" * 4096,
                         "footer": {"text": "f" * 1000}, "author": {"name": "a" * 256},
                         "fields": [{"name": "n" * 10, "value": "v" * 20}] * 10}]
            assert (await post({"embeds": at_limit}))[0] == 200
            assert (await post({"embeds": [{"title": "t"}] * 10}))[0] == 200
            assert (await post({"embeds": [{"fields": [{"name": "n", "value": "v"}] * 25}]}
                               ))[0] == 200
            for embeds, where, code in (
                    ([{"title": "t"}] * 11, "embeds", "BASE_TYPE_MAX_LENGTH"),
                    ([{}, {"title": "t" * 257}], "embeds.1.title", "BASE_TYPE_MAX_LENGTH"),
                    ([{"description": "d" * 4097}], "embeds.0.description",
                     "BASE_TYPE_MAX_LENGTH"),
                    ([{"fields": [{"name": "n", "value": "v"}] * 26}], "embeds.0.fields",
                     "BASE_TYPE_MAX_LENGTH"),
                    ([{"fields": [{"name": "n" * 257, "value": "v"}]}],
                     "embeds.0.fields.0.name", "BASE_TYPE_MAX_LENGTH"),
                    ([{"fields": [{"name": "n", "value": "v" * 1025}]}],
                     "embeds.0.fields.0.value", "BASE_TYPE_MAX_LENGTH"),
                    ([{"footer": {"text": "f" * 2049}}], "embeds.0.footer.text",
                     "BASE_TYPE_MAX_LENGTH"),
                    ([{"author": {"name": "a" * 257}}], "embeds.0.author.name",
                     "BASE_TYPE_MAX_LENGTH"),
                    ([{"description": "d" * 4000}, {"description": "d" * 2001}], "embeds",
                     "MAX_EMBED_SIZE_EXCEEDED"),
                    ([{"image": {"url": "javascript:alert(1)"}}], "embeds.0.image.url",
                     "URL_TYPE_INVALID_SCHEME"),
                    ("x", "embeds", "LIST_TYPE_CONVERT")):
                status, answer = await post({"content": "x", "embeds": embeds})
                assert status == 400 and errors_at(answer, where)[0]["code"] == code, answer
            # allowed_mentions and message_reference
            for body, where, code in (
                    ({"allowed_mentions": {"parse": ["users"], "users": ["1"]}},
                     "allowed_mentions", "MESSAGE_ALLOWED_MENTIONS_PARSE_EXCLUSIVE"),
                    ({"allowed_mentions": {"users": ["1"] * 101}}, "allowed_mentions.users",
                     "BASE_TYPE_MAX_LENGTH"),
                    ({"allowed_mentions": {"parse": ["channels"]}}, "allowed_mentions.parse.0",
                     "BASE_TYPE_CHOICES"),
                    ({"message_reference": {"message_id": "123"}}, "message_reference",
                     "MESSAGE_REFERENCE_UNKNOWN_MESSAGE"),
                    ({"message_reference": {}}, "message_reference.message_id",
                     "BASE_TYPE_REQUIRED"),
                    ({"message_reference": {"message_id": sent["id"], "type": 1}},
                     "message_reference.type", "BASE_TYPE_CHOICES"),
                    ({"tts": "yes"}, "tts", "BASE_TYPE_BOOLEAN")):
                status, answer = await post({"content": "x", **body})
                assert status == 400 and errors_at(answer, where)[0]["code"] == code, answer
            # fail_if_not_exists false: an ordinary message
            status, plain = await post({"content": "x", "message_reference": {
                "message_id": "123", "fail_if_not_exists": False}})
            assert status == 200 and plain["type"] == 0 and "message_reference" not in plain
            # an edit is checked the same way, and may not leave the message empty
            edit = f"{path}/{sent['id']}"
            status, answer, _ = await call(http, r, "PATCH", edit, owner,
                                           json={"embeds": [{"title": "t" * 257}]})
            assert status == 400 and errors_at(answer, "embeds.0.title")
            status, answer, _ = await call(http, r, "PATCH", edit, owner, json={"embeds": []})
            assert (status, answer["code"]) == (400, 50006)
            # a reply needs READ_MESSAGE_HISTORY: 160002
            await r.gateway.storage.put_role(Role(r.seeded.guild_id, r.seeded.guild_id,
                                                  "@everyone",
                                                  permissions=VIEW_CHANNEL | SEND_MESSAGES))
            status, answer = await post({"content": "x", "message_reference": {
                "message_id": sent["id"]}}, alice)
            assert (status, answer["code"]) == (403, 160002), answer
            assert (await post({"content": "still may send"}, alice))[0] == 200
            # embeds need EMBED_LINKS: embed-only is 403 50013, beside content dropped
            assert await post({"embeds": [{"title": "t"}]}, alice) == (
                403, {"code": 50013, "message": "Missing Permissions"})
            status, sent = await post({"content": "c", "embeds": [{"title": "t"}]}, alice)
            assert status == 200 and sent["embeds"] == []

    run(main, timeout=30)
