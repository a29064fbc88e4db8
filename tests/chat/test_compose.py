"""chat.compose: a body made into the message to store, against a real (SQLite) storage."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chat.compose import (
    EPHEMERAL,
    SUPPRESS_EMBEDS,
    SUPPRESS_NOTIFICATIONS,
    ComposeContext,
    ComposeRefused,
    InvalidBody,
    check_body,
    compose,
    compose_edit,
)
from chat.mentions import PARSE_USERS
from chat.permissions import (
    ALL_PERMISSIONS,
    DEFAULT_EVERYONE,
    MENTION_EVERYONE,
    READ_MESSAGE_HISTORY,
    SEND_MESSAGES,
    VIEW_CHANNEL,
)
from storage.model import Member, Message, MessageCreate, Role, User
from storage.schema import migrate
from storage.settings import StorageSettings
from storage.snowflake import SnowflakeGenerator
from storage.sqlite import SqliteStorage

GUILD = 100
CHANNEL = 200
AUTHOR, BOB, OUTSIDER, GONE = 301, 302, 303, 304
MENTIONABLE, PRIVATE = 401, 402


def run_with_storage(tmp_path: Path,
                     main: Callable[[SqliteStorage, Any], Awaitable[None]]) -> None:
    async def go() -> None:
        settings = StorageSettings(sqlite_path=str(tmp_path / "db.sqlite"))
        migrate(settings)
        storage = SqliteStorage(settings)
        await storage.open()
        try:
            for uid, name in ((AUTHOR, "author"), (BOB, "bob"), (OUTSIDER, "outsider")):
                await storage.put_user(User(uid, name))
            for uid in (AUTHOR, BOB):
                await storage.put_member(Member(GUILD, uid, 1, nick=f"n{uid}"))
            await storage.put_role(Role(GUILD, GUILD, "@everyone"))
            await storage.put_role(Role(GUILD, MENTIONABLE, "m", mentionable=True))
            await storage.put_role(Role(GUILD, PRIVATE, "p"))
            await main(storage, SnowflakeGenerator(worker=3))
        finally:
            await storage.close()

    asyncio.run(go())


def ctx(permissions: int = DEFAULT_EVERYONE, **kw: Any) -> ComposeContext:
    return ComposeContext(CHANNEL, GUILD, AUTHOR, permissions, **kw)


async def stored(storage: SqliteStorage, ids: SnowflakeGenerator, author: int,
                 content: str = "earlier", **kw: Any) -> Message:
    message = Message(CHANNEL, ids.next_id(), author, content, GUILD, **kw)
    assert (await storage.apply([MessageCreate(message)])) == [None]
    return message


def test_check_body_form() -> None:
    draft = check_body({"content": "hi", "tts": True,
                        "flags": SUPPRESS_EMBEDS | EPHEMERAL | SUPPRESS_NOTIFICATIONS},
                       ctx=ctx())
    assert (draft.content, draft.tts, draft.flags) == ("hi", True,
                                                       SUPPRESS_EMBEDS | SUPPRESS_NOTIFICATIONS)
    ephemeral = check_body({"content": "x", "flags": EPHEMERAL},
                           ctx=ctx(allowed_flags=EPHEMERAL))
    assert ephemeral.flags == EPHEMERAL
    # embed-only (and white space only content beside an embed) is a message
    assert check_body({"embeds": [{"title": "t"}]}, ctx=ctx()).content == ""
    assert check_body({"content": "  ", "embeds": [{"title": "t"}]}, ctx=ctx()).content == ""
    assert check_body({}, ctx=ctx(), files=True).content == ""


@pytest.mark.parametrize(("body", "field", "code"), [
    ({}, "content", "BASE_TYPE_REQUIRED"),
    ({"content": "", "embeds": []}, "content", "BASE_TYPE_REQUIRED"),
    ({"content": "x" * 2001}, "content", "BASE_TYPE_MAX_LENGTH"),
    ({"content": "x", "tts": "yes"}, "tts", "BASE_TYPE_BOOLEAN"),
    ({"content": "x", "flags": "4"}, "flags", "NUMBER_TYPE_COERCE"),
    ({"content": "x", "embeds": [{"title": "x" * 257}]}, "embeds.0.title",
     "BASE_TYPE_MAX_LENGTH"),
    ({"content": "x", "allowed_mentions": {"parse": ["nobody"]}},
     "allowed_mentions.parse.0", "BASE_TYPE_CHOICES"),
    ({"content": "x", "message_reference": {"message_id": "x"}},
     "message_reference.message_id", "NUMBER_TYPE_COERCE"),
])
def test_check_body_problems(body: dict, field: str, code: str) -> None:
    with pytest.raises(InvalidBody) as caught:
        check_body(body, ctx=ctx())
    assert (caught.value.problem.field, caught.value.problem.code) == (field, code)
    assert caught.value.problem.empty == (code == "BASE_TYPE_REQUIRED")


def test_mentions_resolved_to_users_with_members(tmp_path: Path) -> None:
    async def main(storage: SqliteStorage, ids: SnowflakeGenerator) -> None:
        body = {"content": f"<@{BOB}> <@!{OUTSIDER}> <@{GONE}> <@&{MENTIONABLE}> "
                           f"<@&{PRIVATE}> @everyone", "embeds": [{"title": "t"}]}
        composed = await compose(body, ctx=ctx(), storage=storage)
        fields = composed.fields
        assert composed.type == 0 and composed.tts is False
        assert fields["embeds"] == [{"type": "rich", "title": "t"}]
        assert fields["mentions"] == [BOB, OUTSIDER]  # GONE does not exist
        assert fields["mention_roles"] == [MENTIONABLE]  # PRIVATE needs MENTION_EVERYONE
        assert fields["mention_everyone"] is False  # needs MENTION_EVERYONE
        bob, outsider = fields["extra"]["mentions"]
        assert (bob["id"], bob["username"], bob["member"]["nick"]) == (str(BOB), "bob",
                                                                       f"n{BOB}")
        assert "user" not in bob["member"]
        assert outsider["id"] == str(OUTSIDER) and "member" not in outsider

        admin = await compose(body, ctx=ctx(ALL_PERMISSIONS), storage=storage)
        assert admin.fields["mention_roles"] == [MENTIONABLE, PRIVATE]
        assert admin.fields["mention_everyone"] is True

        hook = await compose(body, ctx=ctx(ALL_PERMISSIONS, default_parse=PARSE_USERS),
                             storage=storage)
        assert (hook.fields["mention_roles"], hook.fields["mention_everyone"]) == ([], False)

        quiet = await compose({**body, "allowed_mentions": {"parse": []}},
                              ctx=ctx(ALL_PERMISSIONS), storage=storage)
        assert quiet.fields["mentions"] == [] and "extra" not in quiet.fields

    run_with_storage(tmp_path, main)


def test_embeds_need_embed_links_where_the_path_says_so(tmp_path: Path) -> None:
    async def main(storage: SqliteStorage, ids: SnowflakeGenerator) -> None:
        without = VIEW_CHANNEL | SEND_MESSAGES
        embed_only = {"embeds": [{"title": "t"}]}
        with pytest.raises(ComposeRefused) as refused:
            await compose(embed_only, ctx=ctx(without, needs_embed_links=True),
                          storage=storage)
        assert (refused.value.status, refused.value.code) == (403, 50013)
        dropped = await compose({**embed_only, "content": "text"},
                                ctx=ctx(without, needs_embed_links=True), storage=storage)
        assert dropped.fields["embeds"] == [] and dropped.content == "text"
        files = await compose(embed_only, ctx=ctx(without, needs_embed_links=True),
                              storage=storage, files=True)
        assert files.fields["embeds"] == []
        # webhooks and interaction responses need no EMBED_LINKS (the default)
        kept = await compose(embed_only, ctx=ctx(without), storage=storage)
        assert kept.fields["embeds"] == [{"type": "rich", "title": "t"}]
        message = await stored(storage, ids, AUTHOR, "text")
        with pytest.raises(InvalidBody) as caught:  # ignored: the message would be empty
            await compose_edit({"content": None, **embed_only},
                               ctx=ctx(without, needs_embed_links=True), storage=storage,
                               message=message)
        assert caught.value.problem.empty
        assert (await compose_edit(embed_only, ctx=ctx(without, needs_embed_links=True),
                                   storage=storage, message=message))["embeds"] == []

    run_with_storage(tmp_path, main)


def test_tts_needs_its_permission(tmp_path: Path) -> None:
    async def main(storage: SqliteStorage, ids: SnowflakeGenerator) -> None:
        body = {"content": "say it", "tts": True}
        assert (await compose(body, ctx=ctx(), storage=storage)).tts is False
        assert (await compose(body, ctx=ctx(ALL_PERMISSIONS), storage=storage)).tts is True

    run_with_storage(tmp_path, main)


def test_reply(tmp_path: Path) -> None:
    async def main(storage: SqliteStorage, ids: SnowflakeGenerator) -> None:
        answered = await stored(storage, ids, BOB, "question?")
        body = {"content": "answer", "message_reference": {"message_id": str(answered.id)}}
        composed = await compose(body, ctx=ctx(), storage=storage)
        assert composed.type == 19
        extra = composed.fields["extra"]
        assert extra["message_reference"] == {"type": 0, "message_id": str(answered.id),
                                              "channel_id": str(CHANNEL),
                                              "guild_id": str(GUILD)}
        ref = extra["referenced_message"]
        assert (ref["id"], ref["content"], ref["author"]["username"]) == (
            str(answered.id), "question?", "bob")
        assert composed.fields["mentions"] == [BOB]  # a reply pings its author by default
        no_ping = await compose({**body, "allowed_mentions": {"parse": ["users"]}},
                                ctx=ctx(), storage=storage)
        assert no_ping.fields["mentions"] == [] and no_ping.type == 19
        ping = await compose({**body, "allowed_mentions": {"replied_user": True}},
                             ctx=ctx(), storage=storage)
        assert ping.fields["mentions"] == [BOB]
        own = await stored(storage, ids, AUTHOR)
        mine = await compose({"content": "me again",
                              "message_reference": {"message_id": own.id}},
                             ctx=ctx(), storage=storage)
        assert mine.fields["mentions"] == [] and mine.type == 19

    run_with_storage(tmp_path, main)


def test_reply_refusals(tmp_path: Path) -> None:
    async def main(storage: SqliteStorage, ids: SnowflakeGenerator) -> None:
        answered = await stored(storage, ids, BOB)
        missing = {"content": "x", "message_reference": {"message_id": str(ids.next_id())}}
        with pytest.raises(InvalidBody) as caught:
            await compose(missing, ctx=ctx(), storage=storage)
        assert caught.value.problem.code == "MESSAGE_REFERENCE_UNKNOWN_MESSAGE"
        assert caught.value.problem.tree() == {"message_reference": {"_errors": [
            {"code": "MESSAGE_REFERENCE_UNKNOWN_MESSAGE", "message": "Unknown message"}]}}
        missing["message_reference"]["fail_if_not_exists"] = False  # type: ignore[index]
        plain = await compose(missing, ctx=ctx(), storage=storage)
        assert plain.type == 0 and "extra" not in plain.fields

        system = await stored(storage, ids, BOB, "", type=7)
        with pytest.raises(InvalidBody) as caught:
            await compose({"content": "x", "message_reference": {"message_id": system.id}},
                          ctx=ctx(), storage=storage)
        assert caught.value.problem.code == "REPLIES_CANNOT_REPLY_TO_SYSTEM_MESSAGE"

        blind = ctx(VIEW_CHANNEL | SEND_MESSAGES)
        assert not blind.permissions & READ_MESSAGE_HISTORY
        with pytest.raises(ComposeRefused) as refused:
            await compose({"content": "x", "message_reference": {"message_id": answered.id}},
                          ctx=blind, storage=storage)
        assert (refused.value.status, refused.value.code) == (403, 160002)

    run_with_storage(tmp_path, main)


def test_edit(tmp_path: Path) -> None:
    async def main(storage: SqliteStorage, ids: SnowflakeGenerator) -> None:
        answered = await stored(storage, ids, BOB, "q")
        reply = await compose({"content": f"a <@{OUTSIDER}>",
                               "message_reference": {"message_id": answered.id}},
                              ctx=ctx(), storage=storage)
        message = await stored(storage, ids, AUTHOR, reply.content, type=reply.type,
                               **reply.fields)
        assert message.mentions == [OUTSIDER, BOB]

        changes = await compose_edit({"content": "no one now"}, ctx=ctx(),
                                     storage=storage, message=message)
        assert changes["content"] == "no one now"
        assert changes["mentions"] == [BOB]  # the reply's ping stays
        assert changes["extra"]["message_reference"] == reply.fields["extra"][
            "message_reference"]
        assert [m["id"] for m in changes["extra"]["mentions"]] == [str(BOB)]
        assert "embeds" not in changes and "flags" not in changes

        changes = await compose_edit({"embeds": [{"description": "d"}], "flags": 0xFFFF},
                                     ctx=ctx(), storage=storage, message=message)
        assert changes == {"embeds": [{"type": "rich", "description": "d"}],
                           "flags": SUPPRESS_EMBEDS}
        assert await compose_edit({"embeds": None}, ctx=ctx(), storage=storage,
                                  message=message) == {"embeds": []}
        with pytest.raises(InvalidBody) as caught:
            await compose_edit({"content": ""}, ctx=ctx(), storage=storage, message=message)
        assert caught.value.problem.empty
        assert (await compose_edit({"content": ""}, ctx=ctx(), storage=storage,
                                   message=message, attachments=True))["content"] == ""
        with pytest.raises(InvalidBody) as caught:
            await compose_edit({"embeds": [{"title": "x" * 300}]}, ctx=ctx(),
                               storage=storage, message=message)
        assert caught.value.problem.field == "embeds.0.title"
        quiet = await compose_edit({"content": f"<@{OUTSIDER}>",
                                    "allowed_mentions": {"parse": []}},
                                   ctx=ctx(), storage=storage, message=message)
        assert quiet["mentions"] == [] and "mentions" not in quiet["extra"]
        kept = await compose_edit({"content": f"<@{OUTSIDER}>",
                                   "allowed_mentions": {"parse": [], "replied_user": True}},
                                  ctx=ctx(), storage=storage, message=message)
        assert kept["mentions"] == [BOB]

    run_with_storage(tmp_path, main)


def test_a_message_with_everyone_mentions_for_the_permitted(tmp_path: Path) -> None:
    async def main(storage: SqliteStorage, ids: SnowflakeGenerator) -> None:
        body = {"content": "@here look"}
        assert (await compose(body, ctx=ctx(MENTION_EVERYONE | READ_MESSAGE_HISTORY),
                              storage=storage)).fields["mention_everyone"] is True
        blocked = {**body, "allowed_mentions": {"parse": ["users", "roles"]}}
        assert (await compose(blocked, ctx=ctx(ALL_PERMISSIONS),
                              storage=storage)).fields["mention_everyone"] is False

    run_with_storage(tmp_path, main)


# -- whatever arrives: an answer in Discord's form, never an exception of another kind ---

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(1 << 70), 1 << 70) | st.floats(allow_nan=False)
    | st.text(max_size=30) | st.sampled_from(["https://x.y/z", "attachment://a.png",
                                              "2026-12-07T02:00:00Z", "12345", "users"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["title", "description", "url", "timestamp", "color", "footer",
                         "text", "image", "author", "name", "value", "inline", "fields",
                         "parse", "users", "roles", "replied_user", "message_id",
                         "channel_id", "fail_if_not_exists", "type", "icon_url"]),
        inner, max_size=5),
    max_leaves=12)
_BODIES = st.dictionaries(
    st.sampled_from(["content", "embeds", "allowed_mentions", "message_reference", "flags",
                     "tts"]), _JSON, max_size=6)


@settings(max_examples=100, deadline=None)
@given(_BODIES)
def test_any_body_is_a_draft_or_a_field_error(body: dict[str, Any]) -> None:
    try:
        draft = check_body(body, ctx=ctx())
    except InvalidBody as exc:
        tree = exc.problem.tree()  # Discord's errors tree for the named field
        assert exc.problem.code and exc.problem.field.split(".")[0] in tree
        return
    assert isinstance(draft.content, str) and draft.embeds is not None
    assert draft.content or draft.embeds
