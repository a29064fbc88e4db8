"""Channel permission overwrites with hikari (from PyPI), pointed at greenroom by
``rest_url=`` alone: the owner's bot denies a second bot VIEW_CHANNEL with
``rest.edit_permission_overwrite`` (and @everyone ADD_REACTIONS); the channel's
``permission_overwrites`` read back (REST and the cache after GuildChannelUpdateEvent)
as sent; the second bot gets no more of the channel's messages (another channel's
still) and ForbiddenError 50001 on read, history and send; deleting the overwrite
(``rest.delete_permission_overwrite``) gives the channel back."""

from __future__ import annotations

import asyncio
from pathlib import Path

import hikari
import pytest

from gateway.seed import add_member, create_user
from tests.gateway.harness import run, running_gateway
from tests.gateway.libraries import HikariBot

P = hikari.Permissions
MEMBER = hikari.PermissionOverwriteType.MEMBER
ROLE = hikari.PermissionOverwriteType.ROLE


#: the events each bot's steps wait for
EVENTS = {"guild": hikari.GuildAvailableEvent, "message": hikari.GuildMessageCreateEvent,
          "update": hikari.GuildChannelUpdateEvent}


def test_hikari_overwrites(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_gateway(tmp_path) as r:
            storage = r.gateway.storage
            helper_id, helper_token = await create_user(
                storage, r.ids, "helper")
            await add_member(storage, r.seeded.guild_id, helper_id)
            owner = HikariBot(r.seeded.token, r.gateway.rest_url, EVENTS)
            helper = HikariBot(helper_token, r.gateway.rest_url, EVENTS)
            await owner.start(until="guild")
            await helper.start(until="guild")
            rest, theirs = owner.bot.rest, helper.bot.rest
            gid, cid = r.seeded.guild_id, r.seeded.channel_id
            try:
                await rest.edit_permission_overwrite(cid, gid, target_type=ROLE,
                                                     deny=P.ADD_REACTIONS)
                await rest.edit_permission_overwrite(cid, helper_id, target_type=MEMBER,
                                                     deny=P.VIEW_CHANNEL)
                channel = await rest.fetch_channel(cid)
                assert isinstance(channel, hikari.GuildTextChannel)
                overwrites = channel.permission_overwrites
                assert set(overwrites) == {gid, helper_id}
                assert overwrites[helper_id].type == MEMBER
                assert overwrites[helper_id].deny == P.VIEW_CHANNEL
                assert overwrites[helper_id].allow == P.NONE
                assert overwrites[gid].type == ROLE and overwrites[gid].deny == P.ADD_REACTIONS
                while True:  # the cache follows CHANNEL_UPDATE
                    update = await owner.expect("update")
                    if len(update.channel.permission_overwrites) == 2:
                        break
                cached = owner.bot.cache.get_guild_channel(cid)
                assert cached is not None and set(cached.permission_overwrites) == {gid, helper_id}
                while helper_id not in (await helper.expect("update")).channel \
                        .permission_overwrites:  # the helper learns why it goes quiet
                    pass

                other = await rest.create_guild_text_channel(gid, "open")
                await rest.create_message(cid, "hidden")
                await rest.create_message(other.id, "open")
                seen = await helper.expect("message")
                assert (seen.content, seen.channel_id) == ("open", other.id)

                for attempt in (lambda: theirs.create_message(cid, "x"),
                                lambda: theirs.fetch_channel(cid),
                                lambda: theirs.fetch_messages(cid).limit(5)):
                    with pytest.raises(hikari.ForbiddenError) as refused:
                        result = attempt()
                        await (result if asyncio.iscoroutine(result) else result.collect(list))
                    assert refused.value.code == 50001

                await rest.delete_permission_overwrite(cid, helper_id)
                assert set((await rest.fetch_channel(cid)).permission_overwrites) == {gid}
                await rest.create_message(cid, "back")
                while (seen := await helper.expect("message")).channel_id != cid:
                    pass
                assert seen.content == "back"
                assert [m.content async for m in theirs.fetch_messages(cid).limit(1)] == ["back"]
            finally:
                await owner.bot.close()
                await helper.bot.close()

    run(main, timeout=40)
