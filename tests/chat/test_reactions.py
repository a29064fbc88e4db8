"""chat.reactions: emoji in URLs, one message's reactions, the objects and events."""

from __future__ import annotations

import pytest

from chat.reactions import (
    BURST,
    MAX_DISTINCT_EMOJI,
    NORMAL,
    Emoji,
    MessageReactions,
    emoji_prefix,
    parse_emoji,
    reaction_add_event,
    reaction_objects,
    reaction_remove_all_event,
    reaction_remove_emoji_event,
    reaction_remove_event,
    reactor_record,
    user_key,
    user_of,
)


@pytest.mark.parametrize("segment", [
    "👍", "❤️", "❤", "👍🏽", "🇺🇸", "1️⃣", "👨\u200d👩\u200d👧", "🏳️\u200d🌈", "🫠", "🇦", "©️",
])
def test_unicode_emoji_known_to_unicode_are_accepted(segment: str) -> None:
    assert parse_emoji(segment) == Emoji(segment)


@pytest.mark.parametrize("segment", [
    "", "a", "thumbsup", ":thumbsup:", "👍👍", "🏽", "\u200d", "👍 ", "x" * 65,
    "<:name:123>", "name:", ":123", "name:12a", "na-me:123", "name:0123",
    "n" * 33 + ":123", "name:" + "9" * 21,
])
def test_anything_else_is_unknown(segment: str) -> None:
    assert parse_emoji(segment) is None


def test_custom_emoji_forms_of_the_three_libraries() -> None:
    # hikari and discord.py's Emoji: name:id; discord.py's "<:name:id>" stripped of
    # brackets: ":name:id"; discord.js and discord.py for an animated one: "a:name:id"
    assert parse_emoji("party:112233445566778899") == Emoji("party", 112233445566778899)
    assert parse_emoji(":party:112233445566778899") == Emoji("party", 112233445566778899)
    assert parse_emoji("a:party:112233445566778899") == Emoji("party", 112233445566778899, True)
    # an emoji called "a" is not the animated marker
    assert parse_emoji("a:5") == Emoji("a", 5)


def test_a_custom_emoji_is_known_by_its_id_whatever_its_name() -> None:
    assert Emoji("one", 5).key == Emoji("other", 5, True).key
    assert Emoji("👍").key != Emoji("👍", 5).key
    assert Emoji("👍").partial() == {"id": None, "name": "👍"}
    assert Emoji("x", 5, True).partial() == {"id": "5", "name": "x", "animated": True}


def test_record_keys_sort_an_emojis_reactors_by_user_id_and_share_its_prefix() -> None:
    thumbs, custom = Emoji("👍"), Emoji("x", 1)
    keys = sorted(user_key(thumbs, NORMAL, u) for u in (10, 9, 1000, 2))
    assert [user_of(k) for k in keys] == [2, 9, 10, 1000]
    assert all(k.startswith(emoji_prefix(thumbs, NORMAL)) for k in keys)
    assert not user_key(Emoji("x", 12), NORMAL, 1).startswith(emoji_prefix(custom))
    # a family starts with its first person's code point: its prefix is not his
    family = Emoji("👨\u200d👩\u200d👧")
    assert not user_key(family, NORMAL, 1).startswith(emoji_prefix(Emoji("👨")))


def test_add_remove_and_what_each_changed() -> None:
    r = MessageReactions()
    thumbs = Emoji("👍")
    assert r.add(thumbs, 1) is True
    assert r.add(thumbs, 1) is False
    assert r.add(thumbs, 2) is True
    assert r.has(thumbs, 1) and not r.has(thumbs, 3) and not r.has(thumbs, 1, BURST)
    assert r.counts() == [[["👍", None, False], 2, 0]]
    assert r.remove(thumbs, 3) is False
    assert r.remove(thumbs, 1) is True and r.remove(thumbs, 2) is True
    assert len(r) == 0 and r.counts() == []  # an emoji nobody uses leaves the message


def test_twenty_distinct_emoji_and_no_more() -> None:
    r = MessageReactions()
    emoji = [Emoji("x", i) for i in range(1, MAX_DISTINCT_EMOJI + 2)]
    for e in emoji[:MAX_DISTINCT_EMOJI]:
        assert not r.refuses(e)
        r.add(e, 1)
    assert r.refuses(emoji[-1])
    assert not r.refuses(emoji[0])  # one already there is no new one
    r.remove(emoji[0], 1)
    assert not r.refuses(emoji[-1])


def test_remove_emoji_and_clear() -> None:
    r = MessageReactions()
    r.add(Emoji("first", 7), 1)
    r.add(Emoji("👍"), 1)
    # the emoji as the message shows it: the name it was first used with
    assert r.emoji_for(Emoji("renamed", 7)) == Emoji("first", 7)
    assert r.remove_emoji(Emoji("renamed", 7)) == Emoji("first", 7)
    assert r.remove_emoji(Emoji("renamed", 7)) is None
    assert r.clear() is True and r.clear() is False


def test_load_rebuilds_sets_and_first_used_order_from_records() -> None:
    thumbs, fire = Emoji("👍"), Emoji("🔥")
    records = sorted([
        (user_key(thumbs, NORMAL, 5), reactor_record(thumbs, 300)),
        (user_key(fire, NORMAL, 5), reactor_record(fire, 100)),
        (user_key(thumbs, NORMAL, 6), reactor_record(thumbs, 200)),
        (user_key(fire, BURST, 7), reactor_record(fire, 400)),
    ])
    r = MessageReactions()
    r.load(records)
    assert r.counts() == [[["🔥", None, False], 1, 1], [["👍", None, False], 2, 0]]
    assert r.has(fire, 7, BURST) and r.has(thumbs, 6)


def test_reaction_objects_have_what_the_libraries_read() -> None:
    counts = [[["🔥", None, False], 2, 1], [["x", 9, True], 1, 0]]
    fire, custom = reaction_objects(counts, mine={Emoji("🔥").key})
    assert fire == {"emoji": {"id": None, "name": "🔥"}, "count": 3,
                    "count_details": {"burst": 1, "normal": 2}, "me": True,
                    "me_burst": False, "burst_colors": []}
    assert custom["emoji"] == {"id": "9", "name": "x", "animated": True}
    assert custom["me"] is False and custom["count"] == 1


def test_events_carry_discords_fields() -> None:
    member = {"user": {"id": "3"}, "roles": []}
    add = reaction_add_event(1, 2, 4, 3, Emoji("👍"), member=member, message_author_id=8)
    assert add == {"user_id": "3", "channel_id": "1", "message_id": "2", "guild_id": "4",
                   "emoji": {"id": None, "name": "👍"}, "burst": False, "burst_colors": [],
                   "type": 0, "member": member, "message_author_id": "8"}
    dm = reaction_add_event(1, 2, None, 3, Emoji("👍"))
    assert "guild_id" not in dm and "member" not in dm
    assert reaction_remove_event(1, 2, 4, 3, Emoji("x", 5)) == {
        "user_id": "3", "channel_id": "1", "message_id": "2", "guild_id": "4",
        "emoji": {"id": "5", "name": "x", "animated": False}, "burst": False, "type": 0}
    assert reaction_remove_all_event(1, 2, None) == {"channel_id": "1", "message_id": "2"}
    assert reaction_remove_emoji_event(1, 2, 4, Emoji("👍"))["emoji"] == {
        "id": None, "name": "👍"}
