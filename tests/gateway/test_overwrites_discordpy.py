"""Channel permission overwrites with discord.py (from PyPI), unmodified but for its base
URLs: the owner's bot denies @everyone a permission and a second bot VIEW_CHANNEL
(``TextChannel.set_permissions``); both bots see CHANNEL_UPDATE, ``channel.overwrites``
and ``permissions_for`` agree with the server; the second bot stops receiving the
channel's messages (another channel's still reach it) and is refused read, history and
send with 403 50001; a channel created private (``create_text_channel(overwrites=)``)
stays silent for it too; removing its overwrite gives the channel back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gateway.seed import add_member, create_user
from tests.gateway.harness import run, running_gateway
from tests.gateway.libraries import (
    EventQueue,
    discordpy_client,
    discordpy_running,
    on,
    point_discordpy_at,
)

discord = pytest.importorskip("discord")


def _client(events: EventQueue) -> Any:
    """A discord.py client with the member cache (chunked at start-up, for
    ``set_permissions``), its messages and channel updates in ``events``."""
    client = discordpy_client(members=True)
    on(client, "message", events.putter("message"))
    on(client, "guild_channel_update", lambda before, after: events.put("update", after))
    return client


def test_discordpy_overwrites(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async def main() -> None:
        async with running_gateway(tmp_path) as r:
            point_discordpy_at(monkeypatch, r.gateway)
            storage = r.gateway.storage
            helper_id, helper_token = await create_user(
                storage, r.ids, "helper")
            await add_member(storage, r.seeded.guild_id, helper_id)
            owner, helper = EventQueue(), EventQueue()
            owner_client, helper_client = _client(owner), _client(helper)
            async with discordpy_running(owner_client, r.seeded.token), \
                    discordpy_running(helper_client, helper_token):
                channel = owner_client.get_channel(r.seeded.channel_id)
                guild = channel.guild
                member = guild.get_member(helper_id)
                theirs = helper_client.get_channel(r.seeded.channel_id)
                assert channel.overwrites == {}
                assert channel.permissions_for(member).view_channel

                await channel.set_permissions(guild.default_role, add_reactions=False,
                                              embed_links=True)
                updated = await owner.expect("update")
                everyone = updated.overwrites_for(guild.default_role)
                assert everyone.add_reactions is False and everyone.embed_links is True
                assert not updated.permissions_for(member).add_reactions
                await helper.expect("update")

                await channel.set_permissions(member, view_channel=False)
                updated = await owner.expect("update")
                assert updated.overwrites[member].view_channel is False
                assert not updated.permissions_for(member).view_channel
                assert updated.permissions_for(guild.me).view_channel  # the owner's
                mine = (await helper.expect("update")).permissions_for(theirs.guild.me)
                assert not mine.view_channel and not mine.send_messages

                # The fan-out: the hidden channel's messages do not reach the helper,
                # another channel's do.
                other = await guild.create_text_channel("open")
                tickets = await guild.create_text_channel("tickets", overwrites={
                    guild.default_role: discord.PermissionOverwrite(view_channel=False),
                    guild.me: discord.PermissionOverwrite(view_channel=True)})
                assert tickets.overwrites_for(guild.default_role).view_channel is False
                assert not tickets.permissions_for(member).view_channel
                await channel.send("hidden")
                await tickets.send("ticket")
                await other.send("open")
                assert (await owner.expect("message")).content == "hidden"
                seen = await helper.expect("message")
                assert (seen.content, seen.channel.id) == ("open", other.id)

                # Read, history, send: Missing Access.
                for attempt in (lambda: theirs.send("x"),
                                lambda: theirs.fetch_message(other.last_message_id or 1),
                                lambda: anext(theirs.history(limit=5))):
                    with pytest.raises(discord.Forbidden) as refused:
                        await attempt()
                    assert (refused.value.status, refused.value.code) == (403, 50001)

                await channel.set_permissions(member, overwrite=None)
                restored = await owner.expect("update")
                assert member not in restored.overwrites
                assert restored.permissions_for(member).view_channel
                await helper.expect("update")
                await channel.send("back")
                assert (await helper.expect("message")).content == "back"
                assert [m.content async for m in theirs.history(limit=1)] == ["back"]

    run(main, timeout=40)
