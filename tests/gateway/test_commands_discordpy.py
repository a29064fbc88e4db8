"""Interop: a discord.py bot registers its application commands the documented way
(``await bot.tree.sync()`` in ``setup_hook``, global and for its guild), starts, and
reads them back with ``tree.fetch_commands()`` as discord.py's own models."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.gateway.harness import run, running_gateway
from tests.gateway.libraries import (
    discordpy_client,
    discordpy_running,
    import_discord,
    point_discordpy_at,
)

discord = import_discord()
#: module level: the command callbacks' annotations are resolved in this module's globals
app_commands = discord.app_commands


def test_discordpy_tree_sync_in_setup_hook_then_fetch(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from discord.ext import commands

    async def main() -> None:
        async with running_gateway(tmp_path) as r:
            point_discordpy_at(monkeypatch, r.gateway)
            guild = discord.Object(id=r.seeded.guild_id)
            synced: dict[str, list] = {}

            class Bot(commands.Bot):
                async def setup_hook(self) -> None:
                    synced["global"] = await self.tree.sync()
                    synced["guild"] = await self.tree.sync(guild=guild)

            bot = discordpy_client(message_content=False, client_class=Bot,
                                   command_prefix="!")

            @bot.tree.command(description="Send an animal", nsfw=False)
            @app_commands.describe(animal="which one", count="how many")
            @app_commands.choices(animal=[app_commands.Choice(name="Dog", value="dog"),
                                          app_commands.Choice(name="Cat", value="cat")])
            @app_commands.default_permissions(manage_guild=True)
            async def blep(interaction: discord.Interaction, animal: str,
                           count: app_commands.Range[int, 1, 10] = 1,
                           where: discord.TextChannel | None = None,
                           who: discord.Member | None = None) -> None: ...

            async def find_tag(interaction: discord.Interaction, current: str
                               ) -> list[app_commands.Choice[str]]:
                return []

            @bot.tree.command(description="Find a tag")
            @app_commands.autocomplete(tag=find_tag)
            async def tag(interaction: discord.Interaction,
                          tag: app_commands.Range[str, 2, 50]) -> None: ...

            config = app_commands.Group(name="config", description="Settings")
            audio = app_commands.Group(name="audio", description="Sound", parent=config)

            @audio.command(description="Set the volume")
            async def volume(interaction: discord.Interaction, level: float) -> None: ...

            @config.command(description="Reset everything")
            async def reset(interaction: discord.Interaction) -> None: ...

            bot.tree.add_command(config)

            @bot.tree.context_menu(name="High Five")
            async def high_five(interaction: discord.Interaction, member: discord.Member) -> None: ...

            @bot.tree.context_menu(name="Quote")
            async def quote(interaction: discord.Interaction, message: discord.Message) -> None: ...

            @bot.tree.command(description="Only here", guild=guild)
            async def local(interaction: discord.Interaction) -> None: ...

            # login runs setup_hook: the sync must succeed for the bot to start
            async with discordpy_running(bot, r.seeded.token):
                assert sorted(c.name for c in synced["global"]) == [
                    "High Five", "Quote", "blep", "config", "tag"]
                assert [c.name for c in synced["guild"]] == ["local"]

                fetched = {c.name: c for c in await bot.tree.fetch_commands()}
                assert set(fetched) == {"blep", "tag", "config", "High Five", "Quote"}
                assert {c.id for c in fetched.values()} == {c.id for c in synced["global"]}
                blep_cmd = fetched["blep"]
                assert blep_cmd.application_id == r.seeded.user_id and blep_cmd.guild_id is None
                assert blep_cmd.type is discord.AppCommandType.chat_input
                assert blep_cmd.default_member_permissions == discord.Permissions(manage_guild=True)
                assert blep_cmd.dm_permission and not blep_cmd.nsfw
                animal, count, where, who = blep_cmd.options
                assert (animal.name, animal.required, animal.description) == ("animal", True, "which one")
                assert [(c.name, c.value) for c in animal.choices] == [("Dog", "dog"), ("Cat", "cat")]
                assert (count.type, count.min_value, count.max_value, count.required) == (
                    discord.AppCommandOptionType.integer, 1, 10, False)
                assert where.type is discord.AppCommandOptionType.channel
                assert set(where.channel_types) == {discord.ChannelType.text, discord.ChannelType.news}
                assert who.type is discord.AppCommandOptionType.user
                (tag_option,) = fetched["tag"].options
                assert tag_option.autocomplete and (tag_option.min_length, tag_option.max_length) == (2, 50)
                audio_group = next(o for o in fetched["config"].options if o.name == "audio")
                assert isinstance(audio_group, app_commands.AppCommandGroup)
                (volume_cmd,) = audio_group.options
                assert volume_cmd.name == "volume"
                assert volume_cmd.options[0].type is discord.AppCommandOptionType.number
                assert fetched["High Five"].type is discord.AppCommandType.user
                assert fetched["High Five"].description == ""
                assert fetched["Quote"].type is discord.AppCommandType.message

                (local_cmd,) = await bot.tree.fetch_commands(guild=guild)
                assert local_cmd.name == "local" and local_cmd.guild_id == r.seeded.guild_id
                one = await bot.tree.fetch_command(blep_cmd.id)
                assert one.name == "blep" and one.id == blep_cmd.id

                # syncing again changes nothing: same ids (an unchanged PUT keeps them)
                again = await bot.tree.sync()
                assert {c.id for c in again} == {c.id for c in synced["global"]}
                edited = await one.edit(description="Send an animal, edited")
                assert edited.id == one.id and edited.description == "Send an animal, edited"
                await local_cmd.delete()
                assert await bot.tree.fetch_commands(guild=guild) == []
                with pytest.raises(discord.NotFound):
                    await bot.tree.fetch_command(local_cmd.id, guild=guild)

    run(main, timeout=40)
