"""chat.dms: who may DM whom, the pair's one name, the records and the DM object."""

from __future__ import annotations

import pytest

from chat.dms import (
    CHANNEL_KIND,
    DM,
    DM_PERMISSIONS,
    PAIR_KIND,
    DMChannel,
    Refusal,
    beyond_dm,
    channel_from_value,
    channel_record,
    channel_value,
    claimed_channel_id,
    dm_channel_object,
    pair,
    pair_record,
    parse_recipient_id,
    refusal,
    shares_guild,
)
from chat.permissions import MANAGE_MESSAGES, READ_MESSAGE_HISTORY, SEND_MESSAGES, VIEW_CHANNEL
from chat.validation import FieldError
from storage.model import User

BOT = User(10, "bot", bot=True)
OTHER_BOT = User(11, "bot2", bot=True)
ALICE = User(20, "alice", global_name="Alice")


def test_a_pair_has_one_name_whoever_opens_it() -> None:
    assert pair(20, 10) == pair(10, 20) == (10, 20)
    assert pair_record(20, 10) == pair_record(10, 20) == (PAIR_KIND, 10, f"{20:020d}")
    with pytest.raises(ValueError):
        pair(5, 5)


def test_pair_keys_sort_numerically_as_text() -> None:
    # the records store orders keys as bytes: zero-padding keeps numeric order
    keys = [pair_record(1, high)[2] for high in (9, 10, 2**63 - 1, 100)]
    assert sorted(keys) == [pair_record(1, h)[2] for h in (9, 10, 100, 2**63 - 1)]


def test_channel_record_round_trips_and_refuses_what_it_did_not_write() -> None:
    channel = DMChannel(99, (10, 20))
    assert channel_record(99) == (CHANNEL_KIND, 99, "")
    assert channel_from_value(99, channel_value(channel)) == channel
    assert channel_from_value(99, {"recipients": [20, 10]}) == channel  # order-free
    for bad in (None, {}, {"recipients": [10]}, {"recipients": [10, 10]},
                {"recipients": ["10", 20]}, {"recipients": [True, 20]}):
        assert channel_from_value(99, bad) is None
    assert claimed_channel_id({"channel_id": 99}) == 99
    assert claimed_channel_id({"channel_id": "99"}) is None
    assert claimed_channel_id(None) is None


def test_a_dm_channel_routes_like_a_channel_without_guild() -> None:
    channel = DMChannel(99, (10, 20))
    assert channel.guild_id is None and channel.type == DM
    assert channel.has(10) and channel.has(20) and not channel.has(30)
    assert channel.other(10) == 20 and channel.other(20) == 10


@pytest.mark.parametrize("value, expected", [
    ("123", 123), (123, 123), ("0", 0), (str(2**63 - 1), 2**63 - 1),
])
def test_recipient_id_accepts_snowflakes(value: object, expected: int) -> None:
    assert parse_recipient_id({"recipient_id": value}) == expected


@pytest.mark.parametrize("value, code", [
    (None, "BASE_TYPE_REQUIRED"), ("abc", "NUMBER_TYPE_COERCE"), ("-1", "NUMBER_TYPE_COERCE"),
    (-1, "NUMBER_TYPE_COERCE"), (2**63, "NUMBER_TYPE_COERCE"), (True, "NUMBER_TYPE_COERCE"),
    ("0123", "NUMBER_TYPE_COERCE"), ("١٢", "NUMBER_TYPE_COERCE"), ([1], "NUMBER_TYPE_COERCE"),
    (1.5, "NUMBER_TYPE_COERCE"),
])
def test_recipient_id_refuses_the_rest_with_the_field_named(value: object, code: str) -> None:
    body = {} if value is None else {"recipient_id": value}
    problem = parse_recipient_id(body)
    assert isinstance(problem, FieldError)
    assert problem.field == "recipient_id" and problem.code == code


def test_who_may_dm_whom() -> None:
    assert refusal(BOT, ALICE, share_guild=True) is None
    assert refusal(ALICE, BOT, share_guild=True) is None
    assert refusal(BOT, None, share_guild=False) is Refusal.UNKNOWN_USER
    assert refusal(BOT, BOT, share_guild=True) is Refusal.SELF
    assert refusal(BOT, OTHER_BOT, share_guild=True) is Refusal.BOTH_BOTS
    assert refusal(BOT, ALICE, share_guild=False) is Refusal.NO_SHARED_GUILD
    assert shares_guild([1, 2], [3, 2]) and not shares_guild([1], [2]) \
        and not shares_guild([], [])


def test_dm_permissions_are_the_text_ones_without_moderation() -> None:
    for bit in (VIEW_CHANNEL, SEND_MESSAGES, READ_MESSAGE_HISTORY):
        assert DM_PERMISSIONS & bit and not beyond_dm(bit)
    assert beyond_dm(MANAGE_MESSAGES) and beyond_dm(SEND_MESSAGES | MANAGE_MESSAGES)
    assert not beyond_dm(0)


def test_dm_object_names_the_other_user_and_no_guild() -> None:
    channel = DMChannel(99, (10, 20))
    users = {10: BOT, 20: ALICE}
    seen_by_bot = dm_channel_object(channel, 10, users, last_message_id=123)
    assert seen_by_bot["id"] == "99" and seen_by_bot["type"] == 1
    assert seen_by_bot["last_message_id"] == "123"
    assert [r["id"] for r in seen_by_bot["recipients"]] == ["20"]
    assert seen_by_bot["recipients"][0]["global_name"] == "Alice"
    assert "guild_id" not in seen_by_bot
    seen_by_alice = dm_channel_object(channel, 20, users)
    assert seen_by_alice["last_message_id"] is None
    assert seen_by_alice["recipients"][0]["id"] == "10" and seen_by_alice["recipients"][0]["bot"]
    gone = dm_channel_object(channel, 10, {})  # a deleted user still has an object
    assert gone["recipients"][0]["id"] == "20" and gone["recipients"][0]["username"]
