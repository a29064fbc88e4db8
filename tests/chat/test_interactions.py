"""chat.interactions: tokens, the 3 s / 15 min windows and the one answer, and an
invocation's options checked against its command (sans I/O, time passed in)."""

from __future__ import annotations

import base64

import pytest

from chat import interactions as ix
from storage.snowflake import SnowflakeGenerator, snowflake_ms

IDS = SnowflakeGenerator(worker=3)

COMMAND = {
    "id": "1", "name": "roll", "type": 1, "description": "roll dice",
    "options": [
        {"type": 4, "name": "sides", "description": "d", "required": True,
         "min_value": 2, "max_value": 100},
        {"type": 3, "name": "label", "description": "d", "min_length": 2, "max_length": 5},
        {"type": 3, "name": "colour", "description": "d",
         "choices": [{"name": "Red", "value": "red"}, {"name": "Blue", "value": "blue"}]},
        {"type": 5, "name": "loud", "description": "d"},
        {"type": 10, "name": "weight", "description": "d", "min_value": 0.5},
        {"type": 6, "name": "who", "description": "d"},
        {"type": 7, "name": "where", "description": "d", "channel_types": [0]},
        {"type": 8, "name": "role", "description": "d"},
        {"type": 9, "name": "any", "description": "d"},
        {"type": 3, "name": "search", "description": "d", "autocomplete": True},
    ],
}
GROUPED = {
    "id": "2", "name": "admin", "type": 1, "description": "d",
    "options": [
        {"type": 2, "name": "user", "description": "d", "options": [
            {"type": 1, "name": "ban", "description": "d", "options": [
                {"type": 6, "name": "target", "description": "d", "required": True}]}]},
        {"type": 1, "name": "ping", "description": "d"},
    ],
}


def data(*options: dict, command: dict = COMMAND, **extra) -> dict:
    return {"id": command["id"], "name": command["name"], "type": 1,
            "options": list(options), **extra}


def opt(name: str, type_: int, value) -> dict:
    return {"name": name, "type": type_, "value": value}


def invalid_field(command: dict, d: dict, **kw) -> str:
    with pytest.raises(ix.InvalidInvocation) as caught:
        ix.check_command_data(command, d, **kw)
    return caught.value.problem.field


# -- tokens ------------------------------------------------------------------------------


def test_token_names_its_interaction_and_is_unguessable() -> None:
    interaction_id = IDS.next_id()
    token = ix.new_token(interaction_id)
    assert ix.token_interaction_id(token) == interaction_id
    assert ix.new_token(interaction_id) != token
    decoded = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    assert decoded.startswith(f"interaction:{interaction_id}:".encode())
    assert ix.token_matches(token, ix.token_digest(token))
    assert not ix.token_matches(token + "x", ix.token_digest(token))


@pytest.mark.parametrize("token", [
    "", "abc", "x" * 68,  # a channel webhook's token is 68 characters
    base64.urlsafe_b64encode(b"interaction:notanid:" + b"a" * 40).decode(),
    base64.urlsafe_b64encode(b"webhook:123:" + b"a" * 40).decode(),
    "é" * 50,
])
def test_tokens_that_are_not_an_interactions(token: str) -> None:
    assert ix.token_interaction_id(token) is None


# -- the windows and the one answer -------------------------------------------------------


def test_callback_within_three_seconds_once() -> None:
    created = 1_000_000
    assert ix.callback_refusal(created, created + 2_999, None) is None
    assert ix.callback_refusal(created, created + 3_000, None) is None
    late = ix.callback_refusal(created, created + 3_001, None)
    assert late == ix.Refusal(404, 10062, "Unknown interaction")
    twice = ix.callback_refusal(created, created + 10, {"type": 4})
    assert twice is not None and (twice.status, twice.code) == (400, 40060)
    expired = ix.callback_refusal(created, created + 10, {"expired": True})
    assert expired is not None and expired.code == 10062


def test_token_serves_follow_ups_for_fifteen_minutes() -> None:
    created = 5_000
    assert ix.token_refusal(created, created + 15 * 60 * 1000) is None
    gone = ix.token_refusal(created, created + 15 * 60 * 1000 + 1)
    assert gone is not None and (gone.status, gone.code) == (404, 10015)
    interaction_id = IDS.next_id()
    assert ix.expires_at_ms(interaction_id) == snowflake_ms(interaction_id) + 900_000


@pytest.mark.parametrize(("interaction_type", "has_message", "allowed"), [
    (ix.APPLICATION_COMMAND, False, {4, 5, 9}),
    (ix.MESSAGE_COMPONENT, True, {4, 5, 6, 7, 9}),
    (ix.AUTOCOMPLETE, False, {8}),
    (ix.MODAL_SUBMIT, False, {4, 5}),  # a modal opened by a command: no message to update
    (ix.MODAL_SUBMIT, True, {4, 5, 6, 7}),
])
def test_callback_types_per_interaction_type(interaction_type: int, has_message: bool,
                                             allowed: set[int]) -> None:
    for callback_type in range(0, 13):
        problem = ix.callback_type_problem(interaction_type, callback_type, has_message)
        assert (problem is None) == (callback_type in allowed), callback_type
    assert ix.callback_type_problem(interaction_type, True, has_message) is not None
    assert ix.callback_type_problem(interaction_type, "4", has_message) is not None


def test_flags_a_response_may_set() -> None:
    assert ix.check_flags(None) is None
    assert ix.check_flags(64) is None
    assert ix.check_flags(64 | 4 | 4096) is None
    assert ix.check_flags(128) is not None  # LOADING is the server's
    assert ix.check_flags(1 << 15) is not None  # components V2: not served
    assert ix.check_flags(-1) is not None
    assert ix.check_flags(True) is not None


def test_autocomplete_choices() -> None:
    assert ix.check_autocomplete_choices({"choices": []}, ix.STRING) is None
    choices = [{"name": f"n{i}", "value": f"v{i}"} for i in range(25)]
    assert ix.check_autocomplete_choices({"choices": choices}, ix.STRING) is None
    too_many = ix.check_autocomplete_choices({"choices": [*choices, choices[0]]}, ix.STRING)
    assert too_many is not None and too_many.field == "data.choices"
    wrong = ix.check_autocomplete_choices({"choices": [{"name": "a", "value": "1"}]},
                                          ix.INTEGER)
    assert wrong is not None and wrong.field == "data.choices.0.value"
    assert ix.check_autocomplete_choices({"choices": [{"name": "a", "value": 1}]},
                                         ix.INTEGER) is None
    assert ix.check_autocomplete_choices({"choices": [{"name": "", "value": "x"}]},
                                         ix.STRING) is not None
    assert ix.check_autocomplete_choices(None, ix.STRING) is not None


# -- options ----------------------------------------------------------------------------


def test_a_valid_invocation_keeps_values_and_lists_references() -> None:
    who, where, role, anything = (IDS.next_id() for _ in range(4))
    checked = ix.check_command_data(COMMAND, data(
        opt("sides", 4, 20), opt("label", 3, "abc"), opt("colour", 3, "red"),
        opt("loud", 5, True), opt("weight", 10, 1.5), opt("who", 6, str(who)),
        opt("where", 7, str(where)), opt("role", 8, str(role)), opt("any", 9, str(anything))))
    assert [o["value"] for o in checked.options] == [
        20, "abc", "red", True, 1.5, str(who), str(where), str(role), str(anything)]
    assert [(r.kind, r.id) for r in checked.references] == [
        ("user", who), ("channel", where), ("role", role), ("mentionable", anything)]
    assert checked.references[1].channel_types == (0,)
    assert checked.full_name == "roll"


@pytest.mark.parametrize(("options", "field"), [
    ([], "data.options"),  # sides is required
    ([opt("sides", 4, 1)], "data.options.0.value"),  # below min_value
    ([opt("sides", 4, 101)], "data.options.0.value"),  # above max_value
    ([opt("sides", 4, 2.5)], "data.options.0.value"),  # not an integer
    ([opt("sides", 4, True)], "data.options.0.value"),  # bool is not an integer
    ([opt("sides", 4, 2**53)], "data.options.0.value"),  # past Discord's safe range
    ([opt("sides", 4, "6")], "data.options.0.value"),
    ([opt("sides", 3, 6)], "data.options.0.type"),  # declared an INTEGER
    ([opt("sides", 4, 6), opt("sides", 4, 7)], "data.options.1.name"),  # twice
    ([opt("sides", 4, 6), opt("nope", 3, "x")], "data.options.1.name"),
    ([opt("sides", 4, 6), opt("label", 3, "a")], "data.options.1.value"),  # min_length 2
    ([opt("sides", 4, 6), opt("label", 3, "abcdef")], "data.options.1.value"),
    ([opt("sides", 4, 6), opt("label", 3, "a\x00")], "data.options.1.value"),
    ([opt("sides", 4, 6), opt("colour", 3, "green")], "data.options.1.value"),  # choices
    ([opt("sides", 4, 6), opt("loud", 5, "yes")], "data.options.1.value"),
    ([opt("sides", 4, 6), opt("weight", 10, 0.1)], "data.options.1.value"),
    ([opt("sides", 4, 6), opt("weight", 10, float("nan"))], "data.options.1.value"),
    ([opt("sides", 4, 6), opt("who", 6, "abc")], "data.options.1.value"),
    ([opt("sides", 4, 6), opt("who", 6, 123)], "data.options.1.value"),  # ids are strings
    ([opt("sides", 4, 6), {"name": "search", "type": 3, "value": "x", "focused": True}],
     "data.options.1.focused"),  # focused outside an autocomplete
    (["sides"], "data.options.0"),
])
def test_invalid_options_name_their_field(options: list, field: str) -> None:
    assert invalid_field(COMMAND, data(*options)) == field


def test_name_type_and_shape_must_match_the_command() -> None:
    assert invalid_field(COMMAND, {**data(opt("sides", 4, 6)), "name": "rol"}) == "data.name"
    assert invalid_field(COMMAND, {**data(opt("sides", 4, 6)), "type": 2}) == "data.type"
    assert invalid_field(COMMAND, {**data(), "options": {"sides": 6}}) == "data.options"


def test_subcommands_and_groups() -> None:
    target = IDS.next_id()
    checked = ix.check_command_data(GROUPED, data(
        {"type": 2, "name": "user", "options": [
            {"type": 1, "name": "ban", "options": [opt("target", 6, str(target))]}]},
        command=GROUPED))
    assert checked.full_name == "admin user ban"
    assert checked.options == [{"type": 2, "name": "user", "options": [
        {"type": 1, "name": "ban", "options": [
            {"type": 6, "name": "target", "value": str(target)}]}]}]
    assert [(r.kind, r.id) for r in checked.references] == [("user", target)]
    assert ix.check_command_data(GROUPED, data({"type": 1, "name": "ping"},
                                               command=GROUPED)).full_name == "admin ping"
    # no subcommand, two, an unknown one, a required option of the subcommand missing
    assert invalid_field(GROUPED, data(command=GROUPED)) == "data.options"
    assert invalid_field(GROUPED, data({"type": 1, "name": "ping"}, {"type": 1, "name": "ping"},
                                       command=GROUPED)) == "data.options"
    assert invalid_field(GROUPED, data({"type": 1, "name": "pong"},
                                       command=GROUPED)) == "data.options.0.name"
    assert invalid_field(GROUPED, data({"type": 1, "name": "user"},
                                       command=GROUPED)) == "data.options.0.name"
    assert invalid_field(GROUPED, data(
        {"type": 2, "name": "user", "options": [{"type": 1, "name": "ban", "options": []}]},
        command=GROUPED)) == "data.options.0.options.0.options"


def test_autocomplete_needs_one_focused_option_and_allows_partial_input() -> None:
    checked = ix.check_command_data(COMMAND, data(
        {"name": "search", "type": 3, "value": "ab", "focused": True}), autocomplete=True)
    assert checked.focused_type == ix.STRING  # required "sides" may be missing
    assert checked.options == [{"type": 3, "name": "search", "value": "ab", "focused": True}]
    assert invalid_field(COMMAND, data(opt("search", 3, "ab")), autocomplete=True) \
        == "data.options"
    assert invalid_field(COMMAND, data(
        {"name": "label", "type": 3, "value": "ab", "focused": True}),
        autocomplete=True) == "data.options.0.focused"  # not an autocomplete option


def test_context_menu_commands_name_a_target() -> None:
    user_command = {"id": "3", "name": "High Five", "type": 2, "description": ""}
    target = IDS.next_id()
    checked = ix.check_command_data(user_command, {"id": "3", "name": "High Five", "type": 2,
                                                   "target_id": str(target)})
    assert [(r.kind, r.id) for r in checked.references] == [("user", target)]
    message_command = {**user_command, "type": 3}
    checked = ix.check_command_data(message_command, {"name": "High Five", "type": 3,
                                                      "target_id": str(target)})
    assert checked.references[0].kind == "message"
    assert invalid_field(user_command, {"name": "High Five", "type": 2}) == "data.target_id"


def test_default_member_permissions() -> None:
    everyone = {"name": "x"}
    manage = {"name": "x", "default_member_permissions": str(1 << 13)}
    admins = {"name": "x", "default_member_permissions": "0"}
    assert ix.command_permission_refusal(everyone, 0, False) is None
    assert ix.command_permission_refusal(manage, 1 << 13 | 1, False) is None
    refused = ix.command_permission_refusal(manage, 1, False)
    assert refused is not None and (refused.status, refused.code) == (403, 50013)
    assert ix.command_permission_refusal(admins, (1 << 40) - 1, False) is not None
    assert ix.command_permission_refusal(admins, 0, True) is None


def test_interaction_object_has_what_the_libraries_read() -> None:
    interaction_id, app, guild, channel = (IDS.next_id() for _ in range(4))
    member = {"user": {"id": "9", "username": "alice"}, "roles": [], "permissions": "1024",
              "joined_at": "2026-01-01T00:00:00+00:00"}
    obj = ix.interaction_object(
        interaction_id=interaction_id, application_id=app, interaction_type=2,
        token="t", data={"id": "1", "name": "roll", "type": 1}, guild_id=guild,
        channel={"id": str(channel), "type": 0}, member=member, app_permissions=2048)
    for key in ("id", "application_id", "type", "data", "guild_id", "channel", "channel_id",
                "member", "token", "version", "app_permissions", "locale", "guild_locale",
                "entitlements", "authorizing_integration_owners", "context",
                "attachment_size_limit"):
        assert key in obj, key
    assert obj["version"] == 1 and obj["app_permissions"] == "2048"
    assert obj["channel_id"] == str(channel) and "message" not in obj
    dm = ix.interaction_object(
        interaction_id=interaction_id, application_id=app, interaction_type=2,
        token="t", data={}, guild_id=None, channel={"id": str(channel), "type": 1},
        user=member["user"], app_permissions=0)
    assert dm["context"] == ix.BOT_DM and dm["user"]["id"] == "9"
    assert dm["authorizing_integration_owners"] == {"0": "0"}
    for key in ("guild_id", "member", "guild", "guild_locale"):
        assert key not in dm
    assert ix.response_message_type(ix.APPLICATION_COMMAND, ix.CHAT_INPUT) == 20
    assert ix.response_message_type(ix.APPLICATION_COMMAND, ix.USER_COMMAND) == 23
    assert ix.response_message_type(ix.MESSAGE_COMPONENT, None) == 0
    meta = ix.interaction_metadata(interaction_id=interaction_id, interaction_type=3,
                                   user={"id": "9"}, name=None, command_type=None,
                                   guild_id=guild, message_id=5)
    assert meta["interacted_message_id"] == "5" and "name" not in meta
