"""The storage contract: every test runs against SQLite and against a real Cassandra 5.0 node.

Both backends must agree on idempotency, timestamp ordering of edits and deletes,
Discord's history semantics across 10-day buckets, limits, and entity round-trips.
"""

from __future__ import annotations

import time

import pytest

from storage.base import Storage
from storage.buckets import BUCKET_MS, bucket_of
from storage.history import HistoryQuery
from storage.model import (
    Channel,
    Guild,
    Member,
    Message,
    MessageCreate,
    MessageDelete,
    MessageEdit,
    Role,
    User,
)
from storage.snowflake import snowflake_us

DAY_MS = 24 * 3600 * 1000


def now_ms() -> int:
    return int(time.time() * 1000)


def msg(channel_id: int, message_id: int, content: str = "", **kw) -> Message:  # type: ignore[no-untyped-def]
    return Message(
        channel_id=channel_id,
        id=message_id,
        author_id=kw.pop("author_id", 7),
        content=content or f"m{message_id}",
        **kw,
    )


def ids_of(messages: list[Message]) -> list[int]:
    return [m.id for m in messages]


# -- create, edit, delete -------------------------------------------------------------------
def test_create_is_idempotent(aio, storage: Storage, ids) -> None:  # type: ignore[no-untyped-def]
    channel = ids.now(-1000)
    m = msg(channel, ids.now(), "hello")

    async def go() -> None:
        await storage.create_message(m)
        await storage.create_message(m)  # a redelivery
        outcomes = await storage.apply([MessageCreate(m), MessageCreate(m)])  # twice in a batch
        assert outcomes == [None, None]
        assert await storage.get_message(channel, m.id) == m
        assert ids_of(await storage.messages(channel)) == [m.id]

    aio.run(go())


def test_all_fields_round_trip(aio, storage: Storage, ids) -> None:  # type: ignore[no-untyped-def]
    channel = ids.now(-1000)
    m = Message(
        channel_id=channel,
        id=ids.now(),
        author_id=ids.now(-5000),
        content="with everything ✓",
        guild_id=ids.now(-9000),
        type=19,
        flags=4,
        tts=True,
        mention_everyone=True,
        mentions=[1, 2, 3],
        mention_roles=[9],
        embeds=[{"title": "t", "fields": [{"name": "a", "value": "b"}]}],
        attachments=[{"id": "5", "filename": "x.png", "size": 10}],
        nonce="abc",
        pinned=True,
        edited_at_ms=None,
        extra={"message_reference": {"message_id": "7"}, "webhook_id": "8"},
    )
    bare = msg(channel, ids.now(), "")

    async def go() -> None:
        await storage.apply([MessageCreate(m), MessageCreate(bare)])
        assert await storage.get_message(channel, m.id) == m
        got = await storage.get_message(channel, bare.id)
        assert got == bare and got.mentions == [] and got.embeds == [] and not got.pinned
        assert got.extra == {}
        await storage.apply([MessageEdit.now(channel, m.id, extra={"components": []})])
        edited = await storage.get_message(channel, m.id)
        assert edited is not None and edited.extra == {"components": []}
        assert await storage.get_message(channel, ids.now()) is None
        assert await storage.get_message(ids.now(), m.id) is None

    aio.run(go())


def test_redelivered_create_does_not_undo_an_edit(aio, storage: Storage, ids) -> None:  # type: ignore[no-untyped-def]
    channel = ids.now(-1000)
    m = msg(channel, ids.now(), "original", mentions=[4])
    t0 = snowflake_us(m.id)

    async def go() -> None:
        await storage.create_message(m)
        await storage.edit_message(
            MessageEdit(
                channel,
                m.id,
                {"content": "edited", "edited_at_ms": t0 // 1000 + 5, "mentions": []},
                t0 + 5000,
            )
        )
        await storage.create_message(m)  # redelivered insert, stamped with creation time
        got = await storage.get_message(channel, m.id)
        assert got is not None
        assert (got.content, got.edited_at_ms, got.mentions) == ("edited", t0 // 1000 + 5, [])
        # An older edit arriving late loses to the newer one, column by column.
        await storage.edit_message(MessageEdit(channel, m.id, {"content": "stale"}, t0 + 2000))
        got = await storage.get_message(channel, m.id)
        assert got is not None and got.content == "edited"
        # ... but a late edit of a column the newer edit did not touch still lands.
        await storage.edit_message(MessageEdit(channel, m.id, {"pinned": True}, t0 + 3000))
        got = await storage.get_message(channel, m.id)
        assert got is not None and got.pinned and got.content == "edited"

    aio.run(go())


def test_edit_before_create_is_kept(aio, storage: Storage, ids) -> None:  # type: ignore[no-untyped-def]
    channel = ids.now(-1000)
    m = msg(channel, ids.now(), "original")

    async def go() -> None:
        edit = MessageEdit(channel, m.id, {"content": "edited"}, snowflake_us(m.id) + 10)
        await storage.edit_message(edit)
        # Only the edit landed: that is not a message yet.
        assert await storage.get_message(channel, m.id) is None
        assert await storage.messages(channel) == []
        await storage.create_message(m)
        got = await storage.get_message(channel, m.id)
        assert got is not None and got.content == "edited" and got.author_id == m.author_id

    aio.run(go())


def test_delete_shadows_redelivered_writes(aio, storage: Storage, ids) -> None:  # type: ignore[no-untyped-def]
    channel = ids.now(-1000)
    keep = msg(channel, ids.now(), "keep")
    gone = msg(channel, ids.now(), "gone")
    t0 = snowflake_us(gone.id)

    async def go() -> None:
        await storage.apply([MessageCreate(keep), MessageCreate(gone)])
        await storage.delete_message(MessageDelete(channel, gone.id, t0 + 10_000))
        assert await storage.get_message(channel, gone.id) is None
        await storage.create_message(gone)  # redelivered create
        await storage.edit_message(MessageEdit(channel, gone.id, {"content": "x"}, t0 + 5_000))
        assert await storage.get_message(channel, gone.id) is None
        assert ids_of(await storage.messages(channel)) == [keep.id]
        # Delete that overtook its create (reordered): the create must not resurrect it.
        late = msg(channel, ids.now(), "late")
        await storage.delete_message(MessageDelete.now(channel, late.id))
        await storage.create_message(late)
        assert await storage.get_message(channel, late.id) is None
        assert ids_of(await storage.messages(channel)) == [keep.id]

    aio.run(go())


def test_edit_and_delete_reject_timestamps_before_creation(ids) -> None:  # type: ignore[no-untyped-def]
    channel, mid = ids.now(-1000), ids.now()
    with pytest.raises(ValueError, match="not after the message's creation"):
        MessageEdit(channel, mid, {"content": "x"}, snowflake_us(mid))
    with pytest.raises(ValueError, match="not after the message's creation"):
        MessageDelete(channel, mid, snowflake_us(mid) - 1)
    with pytest.raises(ValueError, match="not editable"):
        MessageEdit(channel, mid, {"author_id": 3}, snowflake_us(mid) + 1)
    with pytest.raises(ValueError, match="at least one field"):
        MessageEdit(channel, mid, {}, snowflake_us(mid) + 1)
    with pytest.raises(ValueError, match="older than its channel"):
        MessageCreate(msg(mid, channel))


# -- history ------------------------------------------------------------------------------
@pytest.fixture
def spread_channel(aio, storage: Storage, ids):  # type: ignore[no-untyped-def]
    """A channel created 95 days ago with messages spread over ~10 buckets (some empty)."""
    start = now_ms() - 95 * DAY_MS
    channel = ids.at(start)
    offsets_days = [
        0.01,
        0.5,
        1,
        3,
        9.9,
        10.1,
        11,
        25,
        26,
        27,
        28,
        29,
        47,
        48,
        49.5,
        70,
        71,
        72,
        73,
        74,
        75,
        76,
        77,
        78,
        79,
        80,
        94,
        94.5,
        94.9,
    ]
    messages = [msg(channel, ids.at(start + int(d * DAY_MS)), f"d{d}") for d in offsets_days]
    outcomes = aio.run(storage.apply([MessageCreate(m) for m in reversed(messages)]))
    assert outcomes == [None] * len(messages)
    expected = sorted((m.id for m in messages), reverse=True)  # newest first
    assert len({bucket_of(i) for i in expected}) >= 8
    return channel, expected


def _model(expected: list[int], q: HistoryQuery) -> list[int]:
    """Discord's semantics over a newest-first list of ids."""
    if q.before is not None:
        return [i for i in expected if i < q.before][: q.limit]
    if q.after is not None:
        return [i for i in expected if i > q.after][-q.limit :]
    if q.around is not None:
        newer_n = q.limit // 2
        newer = [i for i in expected if i > q.around][-newer_n:] if newer_n else []
        older = [i for i in expected if i <= q.around][: q.limit - newer_n]
        return newer + older
    return expected[: q.limit]


def test_history_across_buckets(aio, storage: Storage, spread_channel) -> None:  # type: ignore[no-untyped-def]
    channel, expected = spread_channel

    async def go() -> None:
        cursors = [
            expected[0],
            expected[3],
            expected[10],
            expected[-1],
            expected[-1] - 1,
            expected[0] + 1,
            (expected[5] + expected[6]) // 2,
        ]
        queries = [HistoryQuery(channel, limit=n) for n in (1, 5, 50, 100)]
        for c in cursors:
            for n in (1, 2, 3, 7, 100):
                queries += [
                    HistoryQuery(channel, before=c, limit=n),
                    HistoryQuery(channel, after=c, limit=n),
                    HistoryQuery(channel, around=c, limit=n),
                ]
        for q in queries:
            got = ids_of(await storage.history(q))
            assert got == _model(expected, q), q
            assert got == sorted(got, reverse=True), "newest first, always"

    aio.run(go())


def test_paging_back_and_forth_visits_every_message(aio, storage: Storage, spread_channel) -> None:  # type: ignore[no-untyped-def]
    channel, expected = spread_channel

    async def go() -> None:
        seen: list[int] = []
        page = await storage.messages(channel, limit=4)
        while page:
            seen += ids_of(page)
            page = await storage.messages(channel, before=page[-1].id, limit=4)
        assert seen == expected
        forward: list[int] = []
        page = await storage.messages(channel, after=channel, limit=3)
        while page:
            forward = ids_of(page) + forward
            page = await storage.messages(channel, after=page[0].id, limit=3)
        assert forward == expected

    aio.run(go())


def test_around_includes_the_message(aio, storage: Storage, spread_channel) -> None:  # type: ignore[no-untyped-def]
    channel, expected = spread_channel
    middle = expected[12]

    async def go() -> None:
        got = ids_of(await storage.messages(channel, around=middle, limit=5))
        assert got == expected[10:15] and middle in got
        assert ids_of(await storage.messages(channel, around=middle, limit=1)) == [middle]
        assert ids_of(await storage.messages(channel, around=expected[0], limit=4)) == expected[:2]

    aio.run(go())


@pytest.mark.parametrize(
    ("kwargs", "error", "text"),
    [
        ({"limit": 0}, ValueError, "between 1 and 100"),
        ({"limit": 101}, ValueError, "between 1 and 100"),
        ({"limit": -5}, ValueError, "between 1 and 100"),
        ({"limit": "10"}, TypeError, "limit must be an int"),
        ({"limit": True}, TypeError, "limit must be an int"),
        ({"before": 5, "after": 3}, ValueError, "at most one of"),
        ({"around": 5, "after": 3}, ValueError, "at most one of"),
        ({"before": -1}, ValueError, "before must be in"),
        ({"after": 1 << 63}, ValueError, "after must be in"),
    ],
)
def test_history_rejects_bad_arguments(aio, storage: Storage, ids, kwargs, error, text) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(error, match=text):
        aio.run(storage.messages(ids.now(), **kwargs))


def test_limits_at_the_bounds(aio, storage: Storage, ids) -> None:  # type: ignore[no-untyped-def]
    channel = ids.now(-60_000)
    messages = [msg(channel, ids.now(-50_000 + i)) for i in range(120)]

    async def go() -> None:
        assert await storage.apply([MessageCreate(m) for m in messages]) == [None] * 120
        newest = sorted((m.id for m in messages), reverse=True)
        assert ids_of(await storage.messages(channel, limit=100)) == newest[:100]
        assert ids_of(await storage.messages(channel, limit=1)) == newest[:1]
        assert len(await storage.messages(channel)) == 50  # Discord's default

    aio.run(go())


def _bound(storage: Storage, n_buckets: int) -> int:
    """Queries allowed to walk ``n_buckets`` with the doubling window (SQLite: one)."""
    if storage.name == "sqlite":
        return 1
    covered, size, queries = 0, 1, 0
    while covered < n_buckets:
        covered, size, queries = covered + size, min(size * 2, 32), queries + 1
    return queries


def test_empty_buckets_cost_a_bounded_number_of_queries(aio, storage: Storage, ids) -> None:  # type: ignore[no-untyped-def]
    year_ago = now_ms() - 365 * DAY_MS
    channel = ids.at(year_ago)
    first = msg(channel, ids.at(year_ago + 1))
    last = msg(channel, ids.now(-10))
    span = bucket_of(last.id) - bucket_of(channel) + 2  # +1 future bucket of clock slack

    async def count(coro) -> tuple[list[int], int]:  # type: ignore[no-untyped-def]
        before = storage.queries
        result = await coro
        return ids_of(result), storage.queries - before

    async def go() -> None:
        await storage.apply([MessageCreate(first), MessageCreate(last)])
        got, n = await count(storage.messages(channel, limit=10))
        assert got == [last.id, first.id]
        assert n <= _bound(storage, span + 1), n  # 5 on CQL for 38 buckets, not 38
        got, n = await count(storage.messages(channel, before=last.id, limit=10))
        assert got == [first.id] and n <= _bound(storage, span)
        got, n = await count(storage.messages(channel, after=first.id, limit=10))
        # Going forward, CQL also reads each bucket that holds rows on its own.
        assert got == [last.id] and n <= _bound(storage, span) + (storage.name != "sqlite")
        # A decade-old channel with one message: every bucket since 2016 is empty.
        old = ids.at(now_ms() - 3650 * DAY_MS)
        only = msg(old, ids.at(now_ms() - 3650 * DAY_MS + 1))
        await storage.create_message(only)
        got, n = await count(storage.messages(old, limit=50))
        assert got == [only.id]
        assert n <= _bound(storage, 3650 * DAY_MS // BUCKET_MS + 3), n
        # It stops at the channel's creation bucket: nothing older is ever read.
        got, n = await count(storage.messages(old, before=only.id, limit=50))
        assert got == [] and n <= 1

    aio.run(go())


def test_batches_across_many_partitions(aio, storage: Storage, ids) -> None:  # type: ignore[no-untyped-def]
    channels = [ids.at(now_ms() - 200 * DAY_MS) for _ in range(5)]
    writes = []
    for c in channels:
        for d in range(0, 200, 7):
            writes.append(MessageCreate(msg(c, ids.at(now_ms() - d * DAY_MS))))

    async def go() -> None:
        assert await storage.apply(writes) == [None] * len(writes)
        for c in channels:
            got = await storage.messages(c, limit=100)
            assert len(got) == len(range(0, 200, 7))

    aio.run(go())


def test_unbatched_apply_matches(aio, storage: Storage, ids) -> None:  # type: ignore[no-untyped-def]
    channel = ids.now(-1000)
    writes = [MessageCreate(msg(channel, ids.now())) for _ in range(20)]

    async def go() -> None:
        before = storage.queries
        assert await storage.apply(writes, batched=False) == [None] * 20
        assert storage.queries - before == 20  # one statement per message
        assert len(await storage.messages(channel)) == 20

    aio.run(go())


# -- users, guilds, channels, members, roles --------------------------------------------------
def test_users_and_bot_tokens(aio, storage: Storage, ids) -> None:  # type: ignore[no-untyped-def]
    human = User(ids.now(), "alice", "0", "Alice", "a1b2", False, 64)
    bot = User(ids.now(), "robot", "1234", None, None, True, 0)

    async def go() -> None:
        await storage.put_user(human)
        await storage.put_user(bot)
        assert await storage.get_user(human.id) == human
        assert await storage.get_user(bot.id) == bot
        assert await storage.get_user(ids.now()) is None
        assert await storage.get_users([bot.id, human.id, ids.now()]) == {
            human.id: human,
            bot.id: bot,
        }
        # Merge: None leaves the stored value alone.
        await storage.put_user(User(human.id, "alice2", "0", None, None, False, 64))
        assert await storage.get_user(human.id) == User(
            human.id, "alice2", "0", "Alice", "a1b2", False, 64
        )
        token = f"Bot.{bot.id}.secret"
        await storage.put_token(token, bot.id)
        assert await storage.user_id_for_token(token) == bot.id
        assert await storage.user_id_for_token(token + "x") is None
        assert await storage.account_for_token(token) == (bot, [])
        assert await storage.account_for_token(token + "x") is None
        with pytest.raises(ValueError, match="non-empty"):
            await storage.put_token("", bot.id)

    aio.run(go())


def test_guild_channels_roles_members(aio, storage: Storage, ids) -> None:  # type: ignore[no-untyped-def]
    owner, other = ids.now(), ids.now()
    guild = Guild(ids.now(), "greenroom", owner, None, "a test guild", ["COMMUNITY"])
    cat = Channel(ids.now(), guild.id, "text", type=4, position=0)
    general = Channel(ids.now(), guild.id, "general", 0, 1, "say hi", cat.id, False)
    nsfw = Channel(ids.now(), guild.id, "late", 0, 2, None, cat.id, True)
    everyone = Role(guild.id, guild.id, "@everyone", permissions=(1 << 40) | 1024)
    mods = Role(guild.id, ids.now(), "mods", 0x00FF00, True, 1, 8, False, True)
    m1 = Member(guild.id, owner, now_ms(), None, [mods.id])
    m2 = Member(guild.id, other, now_ms(), "bob", [], True, False)

    async def go() -> None:
        await storage.put_guild(guild)
        for c in (nsfw, general, cat):
            await storage.put_channel(c)
        for r in (mods, everyone):
            await storage.put_role(r)
        for m in (m2, m1):
            await storage.put_member(m)
        assert await storage.get_guild(guild.id) == guild
        assert await storage.get_guild(ids.now()) is None
        assert await storage.channels_for_guild(guild.id) == [cat, general, nsfw]
        assert await storage.get_channel(general.id) == general
        assert await storage.roles_for_guild(guild.id) == sorted(
            [everyone, mods], key=lambda r: r.id
        )
        assert await storage.members_for_guild(guild.id) == sorted(
            [m1, m2], key=lambda m: m.user_id
        )
        assert await storage.members_for_guild(guild.id, limit=1) == [
            min([m1, m2], key=lambda m: m.user_id)
        ]
        first, second = sorted([m1, m2], key=lambda m: m.user_id)
        assert await storage.members_for_guild(guild.id, after=first.user_id) == [second]
        assert await storage.members_for_guild(guild.id, after=second.user_id) == []
        assert await storage.member_count(guild.id) == 2
        assert await storage.member_count(ids.now()) == 0
        assert await storage.get_member(guild.id, other) == m2
        assert await storage.guild_ids_for_user(other) == [guild.id]
        assert await storage.members_of_user(other) == [m2]
        await storage.put_token(f"t.{other}", other)
        await storage.put_user(User(other, "bob"))
        assert await storage.account_for_token(f"t.{other}") == (User(other, "bob"), [m2])
        # What a REST call on a channel reads to authorise it, misses included; the
        # backend's one-round-trip answer and the base class's composed one agree.
        roles = sorted([everyone, mods], key=lambda r: r.id)
        bob, boss = User(other, "bob"), User(owner, "owner")
        await storage.put_token(f"t.{owner}", owner)
        await storage.put_user(boss)
        await storage.remove_member(guild.id, owner)
        # a channel whose guild has no row (SQLite joins the guild and the member in)
        orphan = Channel(ids.now(), ids.now(), "orphan")
        await storage.put_channel(orphan)
        for access in (storage.channel_access, lambda *a: Storage.channel_access(storage, *a)):
            assert await access(f"t.{other}", general.id) == (bob, general, guild, m2, roles, [])
            assert await access(f"t.{other}x", general.id) == (None, None, None, None, [], [])
            assert await access(f"t.{other}", ids.now()) == (bob, None, None, None, [], [])
            assert await access(f"t.{owner}", general.id) == (boss, general, guild, None, roles, [])
            assert await access(f"t.{other}", orphan.id) == (bob, orphan, None, None, [], [])
        await storage.put_member(m1)
        assert await storage.members_of_user(ids.now()) == []
        # Updates and removals.
        await storage.put_member(Member(guild.id, other, m2.joined_at_ms, "robert", [mods.id]))
        got = await storage.get_member(guild.id, other)
        assert got is not None and (got.nick, got.roles) == ("robert", [mods.id])
        await storage.remove_member(guild.id, other)
        assert await storage.get_member(guild.id, other) is None
        assert await storage.member_count(guild.id) == 1
        assert await storage.guild_ids_for_user(other) == []
        assert await storage.members_of_user(other) == []
        await storage.delete_channel(guild.id, nsfw.id)
        assert await storage.get_channel(nsfw.id) is None
        assert await storage.channels_for_guild(guild.id) == [cat, general]
        await storage.delete_role(guild.id, mods.id)
        assert await storage.roles_for_guild(guild.id) == [everyone]

    aio.run(go())
