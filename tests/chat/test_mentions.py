"""chat.mentions: what content mentions, allowed_mentions' form and rules, who is pinged."""

from __future__ import annotations

import pytest

from chat.mentions import (
    PARSE_USERS,
    AllowedMentions,
    Written,
    check_allowed_mentions,
    pinged,
    written,
)
from chat.permissions import MENTION_EVERYONE


def test_written_mentions_in_order_without_repeats() -> None:
    found = written("hi <@12> and <@!34>, <@12> again; <@&56> @here <@&56> <@x> <@0012>")
    assert found == Written(users=(12, 34), roles=(56,), everyone=True)
    assert written("plain text") == Written()
    assert written("mail me at a@b.c") == Written()
    assert written("@everyone").everyone and written("x@herex").everyone
    assert written("<@99999999999999999999>") == Written()  # past 2**63: not an id


def test_allowed_mentions_absent_and_valid() -> None:
    assert check_allowed_mentions(None) == (None, None)
    allowed, problem = check_allowed_mentions(
        {"parse": ["everyone"], "users": ["12", 34], "roles": [], "replied_user": True})
    assert problem is None
    assert allowed == AllowedMentions(frozenset({"everyone"}), frozenset({12, 34}),
                                      frozenset(), True)
    # empty lists do not conflict with parse (Discord: falsy values are not a conflict)
    assert check_allowed_mentions({"parse": ["users"], "users": []})[1] is None


@pytest.mark.parametrize(("value", "path", "code"), [
    ("all", "allowed_mentions", "DICT_TYPE_CONVERT"),
    ({"parse": "users"}, "allowed_mentions.parse", "LIST_TYPE_CONVERT"),
    ({"parse": ["users", "channels"]}, "allowed_mentions.parse.1", "BASE_TYPE_CHOICES"),
    ({"users": ["1"] * 101}, "allowed_mentions.users", "BASE_TYPE_MAX_LENGTH"),
    ({"roles": [str(i + 1) for i in range(101)]}, "allowed_mentions.roles",
     "BASE_TYPE_MAX_LENGTH"),
    ({"users": ["12", "01"]}, "allowed_mentions.users.1", "NUMBER_TYPE_COERCE"),
    ({"roles": [True]}, "allowed_mentions.roles.0", "NUMBER_TYPE_COERCE"),
    ({"parse": ["users"], "users": ["12"]}, "allowed_mentions",
     "MESSAGE_ALLOWED_MENTIONS_PARSE_EXCLUSIVE"),
    ({"parse": ["roles"], "roles": ["12"]}, "allowed_mentions",
     "MESSAGE_ALLOWED_MENTIONS_PARSE_EXCLUSIVE"),
    ({"replied_user": "yes"}, "allowed_mentions.replied_user", "BASE_TYPE_BOOLEAN"),
])
def test_allowed_mentions_problems(value: object, path: str, code: str) -> None:
    allowed, problem = check_allowed_mentions(value)
    assert allowed is None and problem is not None
    assert (problem.field, problem.code) == (path, code)


def test_hundred_ids_are_allowed() -> None:
    assert check_allowed_mentions({"users": [str(i + 1) for i in range(100)]})[1] is None


FOUND = Written(users=(1, 2, 3), roles=(10, 11), everyone=True)
ROLES = {10: True, 11: False}  # 11 is not mentionable


def test_default_parses_everything_the_author_may_ping() -> None:
    ping = pinged(FOUND, None, mentionable=ROLES)
    assert (ping.users, ping.roles, ping.everyone) == ((1, 2, 3), (10,), False)
    ping = pinged(FOUND, None, mentionable=ROLES, permissions=MENTION_EVERYONE)
    assert (ping.users, ping.roles, ping.everyone) == ((1, 2, 3), (10, 11), True)


def test_webhook_and_interaction_default_parses_users_only() -> None:
    ping = pinged(FOUND, None, default_parse=PARSE_USERS, mentionable=ROLES,
                  permissions=MENTION_EVERYONE)
    assert (ping.users, ping.roles, ping.everyone) == ((1, 2, 3), (), False)


def test_allowed_lists_narrow_and_never_add() -> None:
    allowed = AllowedMentions(frozenset(), frozenset({2, 99}), frozenset({11, 12}))
    ping = pinged(FOUND, allowed, mentionable={**ROLES, 12: True},
                  permissions=MENTION_EVERYONE)
    assert (ping.users, ping.roles, ping.everyone) == ((2,), (11,), False)
    nothing = pinged(FOUND, AllowedMentions(frozenset()), mentionable=ROLES,
                     permissions=MENTION_EVERYONE)
    assert (nothing.users, nothing.roles, nothing.everyone) == ((), (), False)


def test_unknown_roles_and_everyone_without_the_text_are_no_pings() -> None:
    ping = pinged(Written(roles=(77,)), None, mentionable=ROLES, permissions=MENTION_EVERYONE)
    assert ping.roles == ()
    ping = pinged(Written(users=(1,)), None, permissions=MENTION_EVERYONE)
    assert not ping.everyone


def test_replied_author_is_pinged_by_default_and_by_replied_user_only() -> None:
    assert pinged(Written(), None, replied_author=5).users == (5,)
    assert pinged(Written(users=(5,)), None, replied_author=5).users == (5,)
    assert pinged(Written(), AllowedMentions(), replied_author=5).users == ()
    assert pinged(Written(), AllowedMentions(frozenset(), replied_user=True),
                  replied_author=5).users == (5,)
