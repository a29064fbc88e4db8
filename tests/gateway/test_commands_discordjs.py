"""Application commands with discord.js 14 (from npm, ``tests/js/commands.mjs``),
unmodified but for its REST base: ``client.application.commands.set([...])`` (a
SlashCommandBuilder and raw context menu commands), ``guild.commands.create``, fetching
both scopes, an upsert by name, edit, delete, and Discord's 50035 for a bad name."""

from __future__ import annotations

from pathlib import Path

from tests.gateway.harness import run, running_gateway
from tests.gateway.libraries import discordjs_script


def test_discordjs_sets_creates_fetches_edits_deletes_commands(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_gateway(tmp_path) as r, \
                discordjs_script(r, "commands.mjs", str(r.seeded.guild_id)) as bot:
            app, gid = str(r.seeded.user_id), str(r.seeded.guild_id)
            roll, search, wave, pin = (await bot.expect("set"))["commands"]
            assert (roll["name"], roll["type"], roll["applicationId"], roll["guildId"]) == (
                "roll", 1, app, None)
            assert roll["defaultMemberPermissions"] == str(1 << 11)
            sides, style, where = roll["options"]
            assert (sides["type"], sides["required"], sides["minValue"], sides["maxValue"]) \
                == (4, True, 2, 100)
            assert style["choices"] == [["Plain", "plain"], ["Fancy", "fancy"]]
            assert where["channelTypes"] == [0]
            (users,) = search["options"]
            assert (users["type"], users["options"]) == (1, ["query"])
            assert (wave["type"], wave["description"], wave["options"]) == (2, "", [])
            assert (pin["name"], pin["type"]) == ("Pin it", 3)

            local = await bot.expect("guild_created")
            assert (local["name"], local["guildId"]) == ("local", gid)
            assert (await bot.expect("fetched_global"))["names"] == [
                "Pin it", "Wave", "roll", "search"]
            assert (await bot.expect("fetched_guild"))["names"] == ["local"]
            again = await bot.expect("upserted")
            assert again["id"] == local["id"] and again["version"] != local["version"]
            assert again["description"] == "Guild only, again"
            edited = await bot.expect("edited")
            assert (edited["id"], edited["description"]) == (local["id"], "Edited")
            assert (await bot.expect("deleted"))["names"] == []
            refused = await bot.expect("refused")
            assert (refused["status"], refused["code"]) == (400, 50035)
            assert refused["errors"]["name"]["_errors"][0]["code"] == \
                "APPLICATION_COMMAND_INVALID_NAME"
            await bot.expect("done")
            assert await bot.exited() == 0

    run(main, timeout=40)
