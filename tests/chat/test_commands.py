"""Application commands' rules (``chat.commands``): names, descriptions, options and
their nesting, choices, limits, every problem with its field path; and the scope's
storage (upsert, edit, delete, bulk overwrite, versions, limits) on SQLite records."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chat.commands import (
    CHAT_INPUT,
    MAX_COMMANDS,
    MESSAGE,
    USER,
    CommandError,
    Problem,
    check_bulk,
    check_command,
    command_object,
    create_command,
    delete_command,
    edit_command,
    errors_tree,
    get_command,
    list_commands,
    overwrite_commands,
    scope_lease,
    valid_chat_input_name,
)
from storage.schema import migrate
from storage.settings import StorageSettings
from storage.sqlite import SqliteStorage

APP = 1000
GUILD = 2000


def slash(name: str = "blep", **fields: Any) -> dict[str, Any]:
    return {"name": name, "description": "Send a photo", **fields}


def opt(kind: int, name: str, **fields: Any) -> dict[str, Any]:
    return {"type": kind, "name": name, "description": f"the {name}", **fields}


def codes(body: Any) -> dict[tuple[str | int, ...], str]:
    definition, problems = check_command(body)
    assert definition is None and problems
    return {p.path: p.code for p in problems}


# -- names ------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["blep", "a", "x" * 32, "snake_case", "kebab-case", "don't",
                                  "日本語", "ñandú", "٣", "नमस्ते", "สวัสดี", "ß"])
def test_slash_names_discord_accepts(name: str) -> None:
    assert valid_chat_input_name(name)


@pytest.mark.parametrize("name", ["", "x" * 33, "Blep", "with space", "emoji😀", "dot.",
                                  "ΣIGMA", "a\x00", "tab\t", "Ǆ"])
def test_slash_names_discord_refuses(name: str) -> None:
    assert not valid_chat_input_name(name)


def test_context_menu_names_may_have_capitals_and_spaces() -> None:
    definition, problems = check_command({"type": USER, "name": "High Five"})
    assert problems == []
    assert definition is not None
    assert definition["name"] == "High Five" and definition["description"] == ""
    assert "options" not in command_object_of(definition)


def command_object_of(definition: dict[str, Any]) -> dict[str, Any]:
    from chat.commands import build_command
    return command_object(build_command(definition, command_id=1, application_id=APP,
                                        guild_id=None, version=1))


# -- a command's fields -------------------------------------------------------------

def test_a_slash_command_gets_discords_defaults() -> None:
    definition, problems = check_command(slash())
    assert problems == []
    assert definition == {
        "type": CHAT_INPUT, "name": "blep", "name_localizations": None,
        "description": "Send a photo", "description_localizations": None, "options": [],
        "default_member_permissions": None, "dm_permission": True, "contexts": None,
        "integration_types": [0], "nsfw": False}


def test_every_violation_is_named_with_its_path_at_once() -> None:
    found = codes({"name": "Bad Name", "description": "", "nsfw": "yes",
                   "default_member_permissions": "abc", "contexts": [0, 7],
                   "options": [opt(3, "ok"), {"type": 3, "name": "x"}]})
    assert found == {
        ("name",): "APPLICATION_COMMAND_INVALID_NAME",
        ("description",): "BASE_TYPE_BAD_LENGTH",
        ("nsfw",): "BASE_TYPE_BOOLEAN",
        ("default_member_permissions",): "NUMBER_TYPE_COERCE",
        ("contexts", 1): "ENUM_TYPE_COERCE",
        ("options", 1, "description"): "BASE_TYPE_REQUIRED",
    }


def test_errors_tree_nests_paths_as_discord_does() -> None:
    tree = errors_tree([Problem(("options", 1, "name"), "C", "m"), Problem((), "D", "n"),
                        Problem(("options", 1, "name"), "E", "o")])
    assert tree == {"options": {"1": {"name": {"_errors": [
        {"code": "C", "message": "m"}, {"code": "E", "message": "o"}]}}},
        "_errors": [{"code": "D", "message": "n"}]}


def test_name_and_description_are_required_for_slash_commands() -> None:
    assert codes({}) == {("name",): "BASE_TYPE_REQUIRED", ("description",): "BASE_TYPE_REQUIRED"}
    assert codes(slash(description="x" * 101)) == {("description",): "BASE_TYPE_BAD_LENGTH"}
    assert codes(slash(name="x" * 33)) == {("name",): "BASE_TYPE_BAD_LENGTH"}


def test_context_menu_commands_have_no_description_nor_options() -> None:
    assert codes({"type": MESSAGE, "name": "Quote", "description": "no"}) == {
        ("description",): "APPLICATION_COMMAND_CONTEXT_MENU_DESCRIPTION_INVALID"}
    assert codes({"type": USER, "name": "Hug", "options": [opt(3, "a")]}) == {
        ("options",): "BASE_TYPE_MAX_LENGTH"}
    assert codes({"type": USER, "name": ""}) == {("name",): "BASE_TYPE_BAD_LENGTH"}


@pytest.mark.parametrize("kind", [0, 4, 5, "1", True, 1.0])
def test_unknown_command_types_are_refused(kind: object) -> None:
    assert codes(slash(type=kind)) == {("type",): "ENUM_TYPE_COERCE"}


def test_permissions_and_contexts_are_normalised() -> None:
    definition, _ = check_command(slash(default_member_permissions=8, dm_permission=False,
                                        contexts=[0, 0, 1], integration_types=[0, 1],
                                        nsfw=True))
    assert definition is not None
    assert definition["default_member_permissions"] == "8"
    assert (definition["dm_permission"], definition["contexts"],
            definition["integration_types"], definition["nsfw"]) == (False, [0, 1], [0, 1], True)
    definition, _ = check_command(slash(default_member_permissions="0", dm_permission=None))
    assert definition is not None
    assert (definition["default_member_permissions"], definition["dm_permission"]) == ("0", True)
    assert codes(slash(default_member_permissions=-1)) == {
        ("default_member_permissions",): "NUMBER_TYPE_COERCE"}
    assert codes(slash(integration_types=[2])) == {("integration_types", 0): "ENUM_TYPE_COERCE"}


def test_a_list_read_leaves_localizations_out_at_every_level() -> None:
    definition = defined(slash(name_localizations={"fr": "b"}, options=[
        opt(3, "s", name_localizations={"fr": "t"}, description_localizations={"fr": "u"},
            choices=[{"name": "a", "value": "a", "name_localizations": {"fr": "v"}}])]))
    full = command_object_of(definition)
    assert full["name_localizations"] == {"fr": "b"}
    from chat.commands import build_command
    bare = command_object(build_command(definition, command_id=1, application_id=APP,
                                        guild_id=None, version=1), localizations=False)
    assert "localizations" not in str(bare) and bare["options"][0]["choices"] == [
        {"name": "a", "value": "a"}]


def test_localizations_are_kept_and_follow_the_fields_rules() -> None:
    definition, problems = check_command(slash(
        name_localizations={"fr": "blep-fr", "de": "blep"},
        description_localizations={"fr": "Envoyer"}))
    assert problems == []
    assert definition is not None
    assert definition["name_localizations"] == {"fr": "blep-fr", "de": "blep"}
    assert definition["description_localizations"] == {"fr": "Envoyer"}
    assert codes(slash(name_localizations={"en": "x", "fr": "Upper"},
                       description_localizations={"de": ""})) == {
        ("name_localizations", "en"): "ENUM_TYPE_COERCE",
        ("name_localizations", "fr"): "APPLICATION_COMMAND_INVALID_NAME",
        ("description_localizations", "de"): "BASE_TYPE_BAD_LENGTH"}
    assert codes(slash(name_localizations=["fr"])) == {
        ("name_localizations",): "DICT_TYPE_CONVERT"}


def test_unstorable_text_is_refused() -> None:
    assert codes(slash(description="a\ud800b")) == {("description",): "STRING_TYPE_INVALID"}
    assert codes(slash(description="a\x00b")) == {("description",): "STRING_TYPE_INVALID"}


# -- options ------------------------------------------------------------------------

def test_options_of_every_value_type_round_trip() -> None:
    options = [opt(3, "text", required=True, min_length=2, max_length=10),
               opt(4, "count", min_value=-5, max_value=5),
               opt(5, "flag"), opt(6, "who"), opt(7, "where", channel_types=[0, 2]),
               opt(8, "role"), opt(9, "thing"), opt(10, "ratio", min_value=0.5, max_value=2),
               opt(11, "file")]
    definition, problems = check_command(slash(options=options))
    assert problems == []
    assert definition is not None
    assert definition["options"][0] == {"type": 3, "name": "text", "description": "the text",
                                        "required": True, "min_length": 2, "max_length": 10}
    assert definition["options"][1]["min_value"] == -5
    assert definition["options"][4]["channel_types"] == [0, 2]
    assert definition["options"][7]["max_value"] == 2
    assert "required" not in definition["options"][2]


def test_fields_for_other_option_types_are_dropped() -> None:
    definition, problems = check_command(slash(options=[
        opt(5, "flag", min_value=1, choices=[{"name": "a", "value": "a"}],
            channel_types=[0], min_length=1, autocomplete=False)]))
    assert problems == []
    assert definition is not None
    assert definition["options"][0] == {"type": 5, "name": "flag", "description": "the flag"}


def test_at_most_25_options_and_choices() -> None:
    assert codes(slash(options=[opt(3, f"o{i}") for i in range(26)])) == {
        ("options",): "BASE_TYPE_MAX_LENGTH"}
    choices = [{"name": f"c{i}", "value": f"v{i}"} for i in range(26)]
    assert codes(slash(options=[opt(3, "o", choices=choices)])) == {
        ("options", 0, "choices"): "BASE_TYPE_MAX_LENGTH"}
    definition, _ = check_command(slash(options=[opt(3, f"o{i}") for i in range(25)]))
    assert definition is not None


def test_required_options_come_before_optional_ones() -> None:
    assert codes(slash(options=[opt(3, "a"), opt(3, "b", required=True)])) == {
        ("options", 1): "APPLICATION_COMMAND_OPTIONS_REQUIRED_INVALID"}
    definition, _ = check_command(slash(options=[opt(3, "a", required=True),
                                                 opt(3, "b", required=False)]))
    assert definition is not None


def test_option_names_are_unique_and_follow_the_slash_rule() -> None:
    assert codes(slash(options=[opt(3, "a"), opt(4, "a")])) == {
        ("options", 1, "name"): "APPLICATION_COMMAND_OPTIONS_DUPLICATE_NAME"}
    assert codes(slash(options=[opt(3, "Upper")])) == {
        ("options", 0, "name"): "APPLICATION_COMMAND_INVALID_NAME"}
    assert codes(slash(options=[opt(12, "a")])) == {("options", 0, "type"): "ENUM_TYPE_COERCE"}
    assert codes(slash(options=[opt(3.0, "a")])) == {("options", 0, "type"): "ENUM_TYPE_COERCE"}
    assert codes(slash(options=[{"name": "a", "description": "b"}])) == {
        ("options", 0, "type"): "BASE_TYPE_REQUIRED"}


def test_choices_match_their_option_type() -> None:
    definition, problems = check_command(slash(options=[
        opt(3, "s", choices=[{"name": "Dog", "value": "dog",
                              "name_localizations": {"fr": "Chien"}}]),
        opt(4, "i", choices=[{"name": "one", "value": 1}]),
        opt(10, "n", choices=[{"name": "half", "value": 0.5}, {"name": "two", "value": 2}])]))
    assert problems == []
    assert definition is not None
    assert definition["options"][0]["choices"] == [
        {"name": "Dog", "name_localizations": {"fr": "Chien"}, "value": "dog"}]
    assert codes(slash(options=[
        opt(3, "s", choices=[{"name": "a", "value": 1}, {"name": "", "value": "x"},
                             {"name": "b", "value": "x" * 101}, {"value": "y"}]),
        opt(4, "i", choices=[{"name": "a", "value": 1.5}, {"name": "b", "value": 2 ** 53}]),
        opt(10, "n", choices=[{"name": "a", "value": "1"}])])) == {
        ("options", 0, "choices", 0, "value"): "BASE_TYPE_STRING",
        ("options", 0, "choices", 1, "name"): "BASE_TYPE_BAD_LENGTH",
        ("options", 0, "choices", 2, "value"): "BASE_TYPE_BAD_LENGTH",
        ("options", 0, "choices", 3, "name"): "BASE_TYPE_REQUIRED",
        ("options", 1, "choices", 0, "value"): "NUMBER_TYPE_COERCE",
        ("options", 1, "choices", 1, "value"): "NUMBER_TYPE_MAX",
        ("options", 2, "choices", 0, "value"): "NUMBER_TYPE_COERCE"}


def test_autocomplete_is_not_allowed_with_choices() -> None:
    assert codes(slash(options=[opt(3, "s", autocomplete=True,
                                    choices=[{"name": "a", "value": "a"}])])) == {
        ("options", 0, "autocomplete"): "APPLICATION_COMMAND_OPTION_AUTOCOMPLETE_CHOICES"}
    assert codes(slash(options=[opt(8, "r", autocomplete=True)])) == {
        ("options", 0, "autocomplete"): "APPLICATION_COMMAND_AUTOCOMPLETE_INVALID"}
    definition, _ = check_command(slash(options=[opt(4, "i", autocomplete=True)]))
    assert definition is not None
    assert definition["options"][0]["autocomplete"] is True


def test_value_and_length_bounds() -> None:
    assert codes(slash(options=[
        opt(4, "i", min_value=5, max_value=1), opt(4, "j", min_value=0.5),
        opt(10, "n", max_value=2.0 ** 54), opt(3, "s", min_length=-1, max_length=6001),
        opt(3, "t", max_length=0), opt(3, "u", min_length=10, max_length=5)])) == {
        ("options", 0, "max_value"): "NUMBER_TYPE_MIN",
        ("options", 1, "min_value"): "NUMBER_TYPE_COERCE",
        ("options", 2, "max_value"): "NUMBER_TYPE_MAX",
        ("options", 3, "min_length"): "NUMBER_TYPE_MIN",
        ("options", 3, "max_length"): "NUMBER_TYPE_MAX",
        ("options", 4, "max_length"): "NUMBER_TYPE_MIN",
        ("options", 5, "max_length"): "NUMBER_TYPE_MIN"}
    assert codes(slash(options=[opt(7, "c", channel_types=[0, 6])])) == {
        ("options", 0, "channel_types", 1): "ENUM_TYPE_COERCE"}


def test_subcommands_and_groups_nest_as_discord_allows() -> None:
    tree = slash(options=[
        opt(2, "group", options=[opt(1, "sub", options=[opt(3, "text", required=True)])]),
        opt(1, "top", options=[opt(4, "n")])])
    definition, problems = check_command(tree)
    assert problems == []
    assert definition is not None
    assert definition["options"][0]["options"][0]["options"][0]["required"] is True
    assert codes(slash(options=[opt(1, "sub"), opt(3, "text")])) == {
        ("options",): "APPLICATION_COMMAND_OPTIONS_TYPE_INVALID"}
    assert codes(slash(options=[opt(2, "g", options=[opt(3, "text")])])) == {
        ("options", 0, "options", 0, "type"): "APPLICATION_COMMAND_OPTIONS_TYPE_INVALID"}
    assert codes(slash(options=[opt(2, "g", options=[opt(2, "g2", options=[opt(1, "s")])])])) \
        == {("options", 0, "options", 0, "type"): "APPLICATION_COMMAND_OPTIONS_TYPE_INVALID"}
    assert codes(slash(options=[opt(1, "s", options=[opt(1, "s2")])])) == {
        ("options", 0, "options", 0, "type"): "APPLICATION_COMMAND_OPTIONS_TYPE_INVALID"}
    assert codes(slash(options=[opt(2, "g")])) == {("options", 0, "options"): "BASE_TYPE_MIN_LENGTH"}
    assert codes(slash(options=[opt(1, "s", required=True)])) == {
        ("options", 0, "required"): "APPLICATION_COMMAND_REQUIRED_INVALID"}
    definition, _ = check_command(slash(options=[opt(1, "s", required=False)]))
    assert definition is not None and "required" not in definition["options"][0]
    assert codes(slash(options=[opt(3, "v", options=[opt(3, "w")])])) == {
        ("options", 0, "options"): "BASE_TYPE_MAX_LENGTH"}


def test_a_command_larger_than_8000_characters_is_refused() -> None:
    big = [opt(3, f"o{i}", description="d" * 100,
               choices=[{"name": "n" * 100, "value": "v" * 100} for _ in range(25)])
           for i in range(2)]
    assert codes(slash(options=big)) == {(): "APPLICATION_COMMAND_TOO_LARGE"}


# -- bulk -----------------------------------------------------------------------------

def test_bulk_names_each_items_problems_by_index_and_refuses_duplicates() -> None:
    definitions, problems = check_bulk([slash("a"), slash("b", description=""), slash("a"),
                                        {"type": USER, "name": "a"}, slash("c", id="x")])
    assert definitions == []
    assert {p.path: p.code for p in problems} == {
        (1, "description"): "BASE_TYPE_BAD_LENGTH",
        (2,): "APPLICATION_COMMANDS_DUPLICATE_NAME",
        (4, "id"): "NUMBER_TYPE_COERCE"}
    assert check_bulk({"a": 1})[1][0].code == "LIST_TYPE_CONVERT"
    assert check_bulk([{}] * 131)[1] == [Problem((), "BASE_TYPE_MAX_LENGTH",
                                                  "Must be 130 or fewer in length.")]
    definitions, problems = check_bulk([slash("a", id="123"), {"type": USER, "name": "a"}])
    assert problems == [] and definitions[0]["id"] == 123


# -- storage --------------------------------------------------------------------------

@pytest.fixture
def storage(tmp_path: Path) -> Iterator[SqliteStorage]:
    settings = StorageSettings(backend="sqlite", sqlite_path=str(tmp_path / "c.db"),
                               sqlite_synchronous="NORMAL")
    migrate(settings)
    yield SqliteStorage(settings)


def ids() -> Any:
    counter = itertools.count(10_000)
    return lambda: next(counter)


def defined(body: dict[str, Any]) -> dict[str, Any]:
    definition, problems = check_command(body)
    assert definition is not None, problems
    return definition


def run(storage: SqliteStorage, body: Any) -> Any:
    async def go() -> Any:
        await storage.open()
        try:
            return await body()
        finally:
            await storage.close()
    return asyncio.run(go())


def test_create_upserts_by_type_and_name_and_get_finds_by_id(storage: SqliteStorage) -> None:
    next_id = ids()

    async def go() -> None:
        first, created = await create_command(storage, next_id, APP, None, defined(slash()))
        assert created and first["guild_id"] is None and first["version"] == first["id"]
        again, created = await create_command(storage, next_id, APP, None, defined(slash()))
        assert not created and again == first  # nothing changed: same version
        edited, created = await create_command(
            storage, next_id, APP, None, defined(slash(description="New")))
        assert not created and edited["id"] == first["id"]
        assert int(edited["version"]) > int(first["version"])
        user, created = await create_command(storage, next_id, APP, None,
                                             defined({"type": USER, "name": "blep"}))
        assert created and user["id"] != first["id"]
        in_guild, created = await create_command(storage, next_id, APP, GUILD, defined(slash()))
        assert created and in_guild["guild_id"] == str(GUILD)
        assert await get_command(storage, APP, int(in_guild["id"])) == in_guild
        assert await get_command(storage, APP, int(first["id"])) == edited
        assert await get_command(storage, APP + 1, int(first["id"])) is None
        assert [c["id"] for c in await list_commands(storage, APP, None)] == [
            first["id"], user["id"]]
        assert [c["id"] for c in await list_commands(storage, APP, GUILD)] == [in_guild["id"]]
        assert "guild_id" not in command_object(first)
        assert command_object(in_guild)["guild_id"] == str(GUILD)

    run(storage, go)


def test_each_type_has_its_own_limit_per_scope(storage: SqliteStorage) -> None:
    next_id = ids()

    async def go() -> None:
        for i in range(MAX_COMMANDS[USER]):
            await create_command(storage, next_id, APP, GUILD,
                                 defined({"type": USER, "name": f"U {i}"}))
        with pytest.raises(CommandError) as refused:
            await create_command(storage, next_id, APP, GUILD,
                                 defined({"type": USER, "name": "one more"}))
        assert (refused.value.reason, refused.value.limit) == ("limit", MAX_COMMANDS[USER])
        # an upsert of an existing name is not a new command; other types and scopes count apart
        await create_command(storage, next_id, APP, GUILD, defined({"type": USER, "name": "U 0"}))
        await create_command(storage, next_id, APP, GUILD, defined({"type": MESSAGE, "name": "M"}))
        await create_command(storage, next_id, APP, None, defined({"type": USER, "name": "x"}))

    run(storage, go)


def test_edit_replaces_given_fields_and_refuses_a_taken_name(storage: SqliteStorage) -> None:
    next_id = ids()

    async def go() -> None:
        a, _ = await create_command(storage, next_id, APP, None,
                                    defined(slash("a", options=[opt(3, "x")])))
        b, _ = await create_command(storage, next_id, APP, None, defined(slash("b")))
        edited = await edit_command(storage, next_id, APP, None, int(a["id"]),
                                    {"description": "Other", "type": USER})
        assert edited["type"] == CHAT_INPUT and edited["description"] == "Other"
        assert edited["options"] == a["options"] and edited["version"] != a["version"]
        same = await edit_command(storage, next_id, APP, None, int(a["id"]),
                                  {"description": "Other"})
        assert same["version"] == edited["version"]
        with pytest.raises(CommandError) as taken:
            await edit_command(storage, next_id, APP, None, int(a["id"]), {"name": "b"})
        assert taken.value.problems[0].code == "APPLICATION_COMMANDS_DUPLICATE_NAME"
        with pytest.raises(CommandError) as bad:
            await edit_command(storage, next_id, APP, None, int(a["id"]),
                               {"name": "B", "options": [opt(3, "x"), opt(3, "x")]})
        assert {p.path for p in bad.value.problems} == {("name",), ("options", 1, "name")}
        with pytest.raises(CommandError) as unknown:
            await edit_command(storage, next_id, APP, GUILD, int(b["id"]), {"name": "c"})
        assert unknown.value.reason == "unknown"  # a global command is not the guild's

    run(storage, go)


def test_delete_removes_the_command_and_its_pointer(storage: SqliteStorage) -> None:
    next_id = ids()

    async def go() -> None:
        a, _ = await create_command(storage, next_id, APP, GUILD, defined(slash()))
        assert not await delete_command(storage, APP, None, int(a["id"]))
        assert await delete_command(storage, APP, GUILD, int(a["id"]))
        assert await get_command(storage, APP, int(a["id"])) is None
        assert await list_commands(storage, APP, GUILD) == []
        assert not await delete_command(storage, APP, GUILD, int(a["id"]))

    run(storage, go)


def test_bulk_overwrite_keeps_ids_by_id_or_name_and_deletes_the_rest(storage: SqliteStorage
                                                                     ) -> None:
    next_id = ids()

    async def go() -> None:
        a, _ = await create_command(storage, next_id, APP, None, defined(slash("a")))
        b, _ = await create_command(storage, next_id, APP, None, defined(slash("b")))
        c, _ = await create_command(storage, next_id, APP, None, defined(slash("c")))
        definitions, problems = check_bulk([
            slash("renamed", id=b["id"]), slash("a"), slash("new"),
            {"type": MESSAGE, "name": "Quote"}])
        assert problems == []
        out = await overwrite_commands(storage, next_id, APP, None, definitions)
        assert [x["name"] for x in out] == ["renamed", "a", "new", "Quote"]
        assert out[0]["id"] == b["id"] and out[0]["version"] != b["version"]
        assert out[1] == a  # unchanged: same id and version
        assert out[2]["id"] not in (a["id"], b["id"], c["id"])
        assert await get_command(storage, APP, int(c["id"])) is None
        listed = await list_commands(storage, APP, None)
        assert sorted(x["id"] for x in listed) == sorted(x["id"] for x in out)
        assert await overwrite_commands(storage, next_id, APP, None, []) == []
        assert await list_commands(storage, APP, None) == []
        too_many, _ = check_bulk([{"type": MESSAGE, "name": f"M{i}"}
                                  for i in range(MAX_COMMANDS[MESSAGE] + 1)])
        with pytest.raises(CommandError) as refused:
            await overwrite_commands(storage, next_id, APP, None, too_many)
        assert refused.value.limit == MAX_COMMANDS[MESSAGE]

    run(storage, go)


def test_concurrent_posts_of_one_name_make_one_command(storage: SqliteStorage) -> None:
    next_id = ids()

    async def go() -> None:
        results = await asyncio.gather(*(
            create_command(storage, next_id, APP, None, defined(slash(description=f"d{i}")))
            for i in range(8)))
        assert sum(created for _, created in results) == 1
        assert len({c["id"] for c, _ in results}) == 1
        assert len(await list_commands(storage, APP, None)) == 1

    run(storage, go)


def test_the_scope_lease_is_exclusive_and_released(storage: SqliteStorage) -> None:
    async def go() -> None:
        order: list[str] = []

        async def hold(tag: str) -> None:
            async with scope_lease(storage, APP, GUILD):
                order.append(f"{tag}+")
                await asyncio.sleep(0.02)
                order.append(f"{tag}-")

        await asyncio.gather(hold("a"), hold("b"))
        assert order in (["a+", "a-", "b+", "b-"], ["b+", "b-", "a+", "a-"])
        # another node's lease (written elsewhere) is waited for until its holder deletes
        # it; a conditional delete with another token does not free it
        key = f"{GUILD:020d}"
        await storage.insert_record_if_absent("command_lock", APP, key, {"by": "them"},
                                              ttl_s=10)
        assert not await storage.delete_record_if("command_lock", APP, key, {"by": "us"})

        async def release_soon() -> None:
            await asyncio.sleep(0.05)
            assert await storage.delete_record_if("command_lock", APP, key, {"by": "them"})

        releaser = asyncio.create_task(release_soon())
        async with scope_lease(storage, APP, GUILD):
            assert releaser.done()
            assert (await storage.get_record("command_lock", APP, key) or {}).get("by") \
                not in (None, "them")
        assert await storage.get_record("command_lock", APP, key) is None

    run(storage, go)
