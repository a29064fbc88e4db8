"""Interop: a hikari bot manages its application commands: ``set_application_commands``
with builders (global and for its guild), ``create_slash_command`` (an upsert by name),
``create_context_menu_command``, fetch, edit and delete; the models hikari builds from
greenroom's answers carry what was sent (hikari indexes ``guild_id``, ``version`` and
``default_member_permissions`` without defaults)."""

from __future__ import annotations

from pathlib import Path

import hikari

from tests.gateway.harness import run, running_gateway
from tests.gateway.libraries import HikariBot, hikari_intents


def test_hikari_sets_creates_fetches_edits_deletes_commands(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_gateway(tmp_path) as r:
            bot = HikariBot(r.seeded.token, r.gateway.rest_url,
                            {"ready": hikari.ShardReadyEvent},
                            intents=hikari_intents(message_content=False))
            await bot.start(until="ready")
            try:
                rest, app, gid = bot.rest, r.seeded.user_id, r.seeded.guild_id
                ping = (rest.slash_command_builder("ping", "Answer pong")
                        .add_option(hikari.CommandOption(
                            type=hikari.OptionType.STRING, name="text", description="what",
                            is_required=True, min_length=1, max_length=20))
                        .add_option(hikari.CommandOption(
                            type=hikari.OptionType.INTEGER, name="times", description="n",
                            choices=[hikari.CommandChoice(name="once", value=1),
                                     hikari.CommandChoice(name="twice", value=2)]))
                        .set_default_member_permissions(hikari.Permissions.MANAGE_MESSAGES))
                admin = rest.slash_command_builder("admin", "Administration").add_option(
                    hikari.CommandOption(
                        type=hikari.OptionType.SUB_COMMAND_GROUP, name="roles",
                        description="Roles", options=[hikari.CommandOption(
                            type=hikari.OptionType.SUB_COMMAND, name="give",
                            description="Give a role", options=[hikari.CommandOption(
                                type=hikari.OptionType.ROLE, name="role",
                                description="which", is_required=True)])]))
                inspect = rest.context_menu_command_builder(hikari.CommandType.USER, "Inspect")
                made = await rest.set_application_commands(app, [ping, admin, inspect])
                assert [c.name for c in made] == ["ping", "admin", "Inspect"]
                assert isinstance(made[0], hikari.SlashCommand)
                assert isinstance(made[2], hikari.ContextMenuCommand)
                assert made[0].guild_id is None and made[0].application_id == app
                assert made[0].default_member_permissions == hikari.Permissions.MANAGE_MESSAGES
                text, times = made[0].options or []
                assert (text.is_required, text.min_length, text.max_length) == (True, 1, 20)
                assert [(c.name, c.value) for c in times.choices or []] == [("once", 1), ("twice", 2)]
                (group,) = made[1].options or []
                assert group.type is hikari.OptionType.SUB_COMMAND_GROUP
                assert (group.options or [])[0].name == "give"

                local = await rest.set_application_commands(
                    app, [rest.slash_command_builder("here", "Guild only")], guild=gid)
                assert local[0].guild_id == gid

                created = await rest.create_slash_command(app, "echo", "Say it back", guild=gid)
                assert created.guild_id == gid and created.name == "echo"
                upserted = await rest.create_slash_command(app, "echo", "Say it again", guild=gid)
                assert upserted.id == created.id and upserted.description == "Say it again"
                assert upserted.version != created.version
                menu = await rest.create_context_menu_command(
                    app, hikari.CommandType.MESSAGE, "Bookmark", guild=gid)
                assert menu.type is hikari.CommandType.MESSAGE

                fetched = await rest.fetch_application_commands(app)
                assert sorted(c.name for c in fetched) == ["Inspect", "admin", "ping"]
                in_guild = await rest.fetch_application_commands(app, gid)
                assert sorted(c.name for c in in_guild) == ["Bookmark", "echo", "here"]
                one = await rest.fetch_application_command(app, made[0].id)
                assert one.id == made[0].id and one.name == "ping"

                edited = await rest.edit_application_command(app, created.id, gid,
                                                             name="echo2", description="Renamed")
                assert (edited.id, edited.name, edited.description) == (
                    created.id, "echo2", "Renamed")
                await rest.delete_application_command(app, created.id, gid)
                try:
                    await rest.fetch_application_command(app, created.id, gid)
                    raise AssertionError("a deleted command was found")
                except hikari.NotFoundError as exc:
                    assert exc.code == 10063
                try:
                    await rest.fetch_application_command_permissions(app, gid, made[0].id)
                    raise AssertionError("permissions of a command without any were found")
                except hikari.NotFoundError as exc:
                    assert exc.code == 10066
                assert await rest.fetch_application_guild_commands_permissions(app, gid) == []
                try:  # Discord takes a user's Bearer token here, never a bot's
                    await rest.set_application_command_permissions(app, gid, made[0].id, [
                        hikari.CommandPermission(id=gid, type=hikari.CommandPermissionType.ROLE,
                                                 has_access=False)])
                    raise AssertionError("a bot edited command permissions")
                except hikari.ForbiddenError as exc:
                    assert exc.code == 20001
                try:  # a bad name: 50035 naming the field, as hikari reports it
                    await rest.create_slash_command(app, "Bad Name", "x")
                    raise AssertionError("an invalid name was accepted")
                except hikari.BadRequestError as exc:
                    assert exc.code == 50035 and "name" in exc.errors
                assert await rest.set_application_commands(app, []) == []
                assert await rest.fetch_application_commands(app) == []
            finally:
                await bot.close()

    run(main, timeout=40)
