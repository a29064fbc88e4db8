"""Channel permission overwrites with discord.py (from PyPI), unmodified but for its base
URLs: the owner's bot denies @everyone a permission and a second bot VIEW_CHANNEL
(``TextChannel.set_permissions``); both bots see CHANNEL_UPDATE, ``channel.overwrites``
and ``permissions_for`` agree with the server; the second bot stops receiving the
channel's messages (another channel's still reach it) and is refused read, history and
send with 403 50001; a channel created private (``create_text_channel(overwrites=)``)
stays silent for it too; removing its overwrite gives the channel back."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from gateway.seed import add_member, create_user
from storage.snowflake import SnowflakeGenerator
from tests.gateway.harness import run, running_gateway

discord = pytest.importorskip("discord")
yarl = pytest.importorskip("yarl")


class _Bot:
    """A discord.py client whose events land in one queue."""

    def __init__(self) -> None:
        intents = discord.Intents.default()
        intents.message_content = True
        intents.members = True  # the member cache (chunked at start-up) for set_permissions
        self.client = discord.Client(intents=intents)
        self.runner: asyncio.Task | None = None
        self.ready = asyncio.Event()
        self.events: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        client = self.client

        @client.event
        async def on_ready() -> None:
            self.ready.set()

        @client.event
        async def on_message(message: Any) -> None:
            await self.events.put(("message", message))

        @client.event
        async def on_guild_channel_update(before: Any, after: Any) -> None:
            await self.events.put(("update", after))

    async def expect(self, kind: str) -> Any:
        while True:
            got, value = await asyncio.wait_for(self.events.get(), 10)
            if got == kind:
                return value

    async def start(self, token: str) -> None:
        await self.client.login(token)
        self.runner = asyncio.create_task(self.client.connect(reconnect=False))
        await asyncio.wait_for(self.ready.wait(), 10)

    async def stop(self) -> None:
        await self.client.close()
        if self.runner is not None:
            self.runner.cancel()
            await asyncio.gather(self.runner, return_exceptions=True)


def test_discordpy_overwrites(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from discord.gateway import DiscordWebSocket
    from discord.http import Route

    async def main() -> None:
        async with running_gateway(tmp_path) as r:
            monkeypatch.setattr(Route, "BASE", r.gateway.rest_url)
            monkeypatch.setattr(DiscordWebSocket, "DEFAULT_GATEWAY",
                                yarl.URL(r.gateway.gateway_url))
            storage = r.gateway.storage
            helper_id, helper_token = await create_user(
                storage, SnowflakeGenerator(worker=5), "helper")
            await add_member(storage, r.seeded.guild_id, helper_id)
            owner, helper = _Bot(), _Bot()
            try:
                await asyncio.gather(owner.start(r.seeded.token), helper.start(helper_token))
                channel = owner.client.get_channel(r.seeded.channel_id)
                guild = channel.guild
                member = guild.get_member(helper_id)
                theirs = helper.client.get_channel(r.seeded.channel_id)
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
            finally:
                await owner.stop()
                await helper.stop()

    run(main, timeout=40)
