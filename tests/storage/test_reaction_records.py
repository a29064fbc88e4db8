"""Reactions in the records store (``chat.reactions``) on both backends: a group commit
through ``write_records`` (puts and deletes, two kinds, one call), one emoji's reactors
in user id order with ``after``, a prefix delete that leaves a longer emoji alone, the
counts of a history range, and a deleted message forgotten."""

from __future__ import annotations

from chat.reactions import (
    COUNTS_KIND,
    NORMAL,
    REACTION_KIND,
    Emoji,
    MessageReactions,
    emoji_prefix,
    forget_reactions,
    message_key,
    reaction_objects,
    reactions_of,
    reactor_record,
    user_key,
    user_of,
)
from storage.base import Storage


def test_reactions_written_as_one_listed_and_forgotten(aio, storage: Storage, ids) -> None:  # type: ignore[no-untyped-def]
    channel, message, other_message = ids.now(), ids.now(), ids.now()
    man, family = Emoji("👨"), Emoji("👨\u200d👩\u200d👧")  # one's key prefixes the other's
    users = [ids.now() for _ in range(5)]

    async def go() -> None:
        reactions = MessageReactions()
        writes = []
        for user in users:
            for emoji in (man, family):
                reactions.add(emoji, user)
                writes.append((REACTION_KIND, message, user_key(emoji, NORMAL, user),
                               reactor_record(emoji, 1)))
        writes.append((COUNTS_KIND, channel, message_key(message), {"r": reactions.counts()}))
        writes.append((COUNTS_KIND, channel, message_key(other_message),
                       {"r": [[man.to_list(), 1, 0]]}))
        await storage.write_records(writes)
        listed = await storage.list_records(REACTION_KIND, message,
                                            prefix=emoji_prefix(man, NORMAL))
        assert [user_of(k) for k, _ in listed] == sorted(users)
        page = await storage.list_records(REACTION_KIND, message,
                                          prefix=emoji_prefix(man, NORMAL),
                                          after=user_key(man, NORMAL, sorted(users)[1]), limit=2)
        assert [user_of(k) for k, _ in page] == sorted(users)[2:4]
        loaded = MessageReactions()
        loaded.load(await storage.list_records(REACTION_KIND, message))
        assert loaded.counts() == reactions.counts()

        # the counts of a range of messages, "me" for a viewer
        shown = await reactions_of(storage, channel, [message, other_message], users[1])
        assert shown[message] == reaction_objects(reactions.counts(), [man.key, family.key])
        assert shown[other_message][0]["count"] == 1 and not shown[other_message][0]["me"]
        assert await reactions_of(storage, channel, [ids.now()]) == {}

        # a delete and a put in one call; a prefix delete spares the longer emoji
        await storage.write_records([
            (REACTION_KIND, message, user_key(man, NORMAL, users[0]), None),
            (COUNTS_KIND, channel, message_key(other_message), None),
        ])
        assert await storage.get_record(COUNTS_KIND, channel,
                                        message_key(other_message)) is None
        assert len(await storage.list_records(REACTION_KIND, message,
                                              prefix=emoji_prefix(man))) == 4
        await storage.delete_records(REACTION_KIND, message, emoji_prefix(man))
        left = await storage.list_records(REACTION_KIND, message)
        assert {k.split(":")[0] for k, _ in left} == {family.key}

        await forget_reactions(storage, channel, message)
        assert await storage.list_records(REACTION_KIND, message) == []
        assert await storage.get_record(COUNTS_KIND, channel, message_key(message)) is None
        await storage.write_records([])  # nothing: no call

    aio.run(go())
