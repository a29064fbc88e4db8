"""Interop: a discord.py bot with ``app_commands`` answers commands a user invokes
through ``POST /interactions``: a command with options answered with a message and a
``View``, a deferred answer then a follow-up, an ephemeral reply, the View's button
clicked, a modal shown and submitted. The invoking user's session gets every answer as
Discord delivers it."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from chat import interactions as ix
from tests.gateway.harness import run, running_gateway
from tests.gateway.libraries import import_discord, point_discordpy_at
from tests.gateway.test_interactions import INTENTS, identified, next_event, nothing_more

discord = import_discord()
#: module level: the command callbacks' annotations are resolved in this module's globals
app_commands = discord.app_commands
Member = discord.Member


def test_discordpy_app_commands_answered(tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from discord.ext import commands

    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            point_discordpy_at(monkeypatch, r.gateway)
            guild = discord.Object(id=r.seeded.guild_id)
            ready = asyncio.Event()
            seen: asyncio.Queue = asyncio.Queue()

            class Bot(commands.Bot):
                async def setup_hook(self) -> None:
                    await self.tree.sync(guild=guild)
                    await self.tree.sync()  # the global one: usable in DMs

                async def on_ready(self) -> None:
                    ready.set()

            bot = Bot(command_prefix="!", intents=discord.Intents.default(),
                      guild_ready_timeout=0.2)

            class Again(discord.ui.View):
                @discord.ui.button(label="Again", custom_id="again",
                                   style=discord.ButtonStyle.primary)
                async def again(self, interaction: discord.Interaction,
                                button: discord.ui.Button) -> None:
                    await seen.put(("clicked", interaction.user.id, interaction.message.id))
                    await interaction.response.edit_message(content="rolled again", view=None)

            class Feedback(discord.ui.Modal, title="Feedback"):
                name = discord.ui.TextInput(label="Name", max_length=20)

                async def on_submit(self, interaction: discord.Interaction) -> None:
                    await seen.put(("submitted", str(self.name)))
                    await interaction.response.send_message(f"thanks {self.name}")

            @bot.tree.command(description="Roll a die", guild=guild)
            @app_commands.describe(sides="how many sides", who="for whom")
            async def roll(interaction: discord.Interaction,
                           sides: app_commands.Range[int, 2, 100], who: Member) -> None:
                await seen.put(("roll", sides, who.id, who.name))
                await interaction.response.send_message(f"{who.name} rolled a d{sides}",
                                                        view=Again())

            @bot.tree.command(description="Slow", guild=guild)
            async def slow(interaction: discord.Interaction) -> None:
                await interaction.response.defer()
                await asyncio.sleep(0.05)
                await interaction.followup.send("slow and done")
                extra = await interaction.followup.send("one more", wait=True)
                await seen.put(("followed", extra.id))

            @bot.tree.command(description="Secret", guild=guild)
            async def secret(interaction: discord.Interaction) -> None:
                await interaction.response.send_message("only you", ephemeral=True)
                original = await interaction.original_response()
                await seen.put(("secret", original.id, original.flags.ephemeral))

            @bot.tree.command(description="Ping, in DMs too")
            @app_commands.allowed_contexts(guilds=True, dms=True)
            async def ping(interaction: discord.Interaction) -> None:
                await seen.put(("ping", interaction.guild_id, interaction.user.id,
                                type(interaction.channel).__name__))
                await interaction.response.send_message("pong")

            @bot.tree.command(description="Form", guild=guild)
            async def form(interaction: discord.Interaction) -> None:
                await interaction.response.send_modal(Feedback())

            await bot.login(r.seeded.token)
            runner = asyncio.create_task(bot.connect(reconnect=True))
            alice = await identified(http, r, r.other_token, INTENTS | 1 << 12)  # + DMs
            await alice.send_json({"op": 14, "d": {"guild_id": str(r.seeded.guild_id)}})
            try:
                await asyncio.wait_for(ready.wait(), 10)
                base = r.gateway.rest_url
                headers = {"Authorization": f"Bot {r.other_token}"}
                async with http.get(f"{base}/applications/{r.seeded.user_id}/guilds/"
                                    f"{r.seeded.guild_id}/commands",  # as the bot sees them
                                    headers={"Authorization": f"Bot {r.seeded.token}"}) as resp:
                    assert resp.status == 200, await resp.text()
                    registered = {c["name"]: c for c in await resp.json()}
                assert set(registered) == {"roll", "slow", "secret", "form"}

                async def invoke(body: dict[str, Any]) -> None:
                    body = {"application_id": str(r.seeded.user_id),
                            "guild_id": str(r.seeded.guild_id),
                            "channel_id": str(r.seeded.channel_id),
                            "session_id": "s", "nonce": "n", **body}
                    async with http.post(f"{base}/interactions", json=body,
                                         headers=headers) as resp:
                        assert resp.status == 204, await resp.text()

                def command(name: str, options: list[dict[str, Any]] | None = None
                            ) -> dict[str, Any]:
                    data: dict[str, Any] = {"id": registered[name]["id"], "name": name,
                                            "type": 1}
                    if options:
                        data["options"] = options
                    return {"type": 2, "data": data}

                async def expect(kind: str) -> tuple:
                    while True:
                        got = await asyncio.wait_for(seen.get(), 10)
                        if got[0] == kind:
                            return got

                # a command with options, answered with a message and a View
                await invoke(command("roll", [{"type": 4, "name": "sides", "value": 20},
                                              {"type": 6, "name": "who",
                                               "value": str(r.other_id)}]))
                assert await expect("roll") == ("roll", 20, r.other_id, "alice")
                answer = await next_event(alice, "MESSAGE_CREATE")
                assert answer["content"] == "alice rolled a d20" and answer["type"] == 20
                assert answer["interaction_metadata"]["user"]["id"] == str(r.other_id)
                assert answer["components"][0]["components"][0]["custom_id"] == "again"
                await next_event(alice, "INTERACTION_SUCCESS")

                # the View's button, clicked by alice
                await invoke({"type": 3, "message_id": answer["id"],
                              "data": {"component_type": 2, "custom_id": "again"}})
                assert await expect("clicked") == ("clicked", r.other_id, int(answer["id"]))
                update = await next_event(alice, "MESSAGE_UPDATE")
                assert update["id"] == answer["id"] and update["content"] == "rolled again"
                assert update["components"] == []

                # a View sent with channel.send (not an interaction's answer), clicked
                channel = bot.get_channel(r.seeded.channel_id)
                sent = await channel.send("roll again?", view=Again())
                assert (await next_event(alice, "MESSAGE_CREATE"))["components"][0][
                    "components"][0]["custom_id"] == "again"
                await invoke({"type": 3, "message_id": str(sent.id),
                              "data": {"component_type": 2, "custom_id": "again"}})
                assert await expect("clicked") == ("clicked", r.other_id, sent.id)
                assert (await next_event(alice, "MESSAGE_UPDATE"))["id"] == str(sent.id)

                # deferred, then follow-ups: the first fills the loading message
                await invoke(command("slow"))
                loading = await next_event(alice, "MESSAGE_CREATE")
                assert loading["flags"] & ix.LOADING
                filled = await next_event(alice, "MESSAGE_UPDATE")
                assert filled["id"] == loading["id"] and filled["content"] == "slow and done"
                more = await next_event(alice, "MESSAGE_CREATE")
                assert more["content"] == "one more"
                assert await expect("followed") == ("followed", int(more["id"]))

                # ephemeral: alice's sessions only, and the bot can read it back
                await invoke(command("secret"))
                hidden = await next_event(alice, "MESSAGE_CREATE")
                assert hidden["content"] == "only you" and hidden["flags"] & ix.EPHEMERAL
                assert await expect("secret") == ("secret", int(hidden["id"]), True)
                history = [m.id async for m in channel.history(limit=20)]
                assert int(hidden["id"]) not in history and int(more["id"]) in history

                # a modal, shown to alice and submitted
                await invoke(command("form"))
                modal = await next_event(alice, "INTERACTION_MODAL_CREATE")
                assert modal["title"] == "Feedback"
                text_input = modal["components"][0]["components"][0]
                await invoke({"type": 5, "data": {
                    "id": modal["id"], "custom_id": modal["custom_id"], "components": [
                        {"type": 1, "components": [{"type": 4, "value": "alice",
                                                    "custom_id": text_input["custom_id"]}]}]}})
                assert await expect("submitted") == ("submitted", "alice")
                thanks = await next_event(alice, "MESSAGE_CREATE")
                assert thanks["content"] == "thanks alice"

                # a global command in alice's DM with the bot
                async with http.get(f"{base}/applications/{r.seeded.user_id}/commands",
                                    headers={"Authorization": f"Bot {r.seeded.token}"}) as resp:
                    [global_ping] = await resp.json()
                async with http.post(f"{base}/users/@me/channels", headers=headers,
                                     json={"recipient_id": str(r.seeded.user_id)}) as resp:
                    dm = await resp.json()
                await invoke({"type": 2, "guild_id": None, "channel_id": dm["id"], "data": {
                    "id": global_ping["id"], "name": "ping", "type": 1}})
                assert await expect("ping") == ("ping", None, r.other_id, "DMChannel")
                pong = await next_event(alice, "MESSAGE_CREATE")
                assert pong["content"] == "pong" and pong["channel_id"] == dm["id"]
                await nothing_more(alice, "INTERACTION_FAILURE")
            finally:
                await alice.close()
                await bot.close()
                runner.cancel()
                await asyncio.gather(runner, return_exceptions=True)

    run(main, timeout=40)
