"""Interop: a hikari bot registers a slash command (``set_application_commands``),
answers it when a user invokes it through ``POST /interactions`` (a message with a
button, as ``create_initial_response``), then answers the button's click by updating
the message. The invoking user's session gets both."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import hikari

from tests.gateway.harness import run, running_gateway
from tests.gateway.test_interactions import INTENTS, identified, next_event


def test_hikari_command_and_button(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            bot = hikari.GatewayBot(
                r.seeded.token, rest_url=r.gateway.rest_url, banner=None, logs=None,
                suppress_optimization_warning=True, intents=hikari.Intents.ALL_UNPRIVILEGED)
            seen: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()
            ready = asyncio.Event()

            async def on_ready(event: hikari.ShardReadyEvent) -> None:
                ready.set()

            async def on_interaction(event: hikari.InteractionCreateEvent) -> None:
                interaction = event.interaction
                if isinstance(interaction, hikari.CommandInteraction):
                    sides = interaction.options[0].value
                    await seen.put(("command", interaction.command_name, sides,
                                    interaction.user.id, interaction.member is not None))
                    row = bot.rest.build_message_action_row().add_interactive_button(
                        hikari.ButtonStyle.PRIMARY, "again", label="Again")
                    await interaction.create_initial_response(
                        hikari.ResponseType.MESSAGE_CREATE, f"a d{sides}", component=row)
                elif isinstance(interaction, hikari.ComponentInteraction):
                    await seen.put(("click", interaction.custom_id, interaction.message.id))
                    await interaction.create_initial_response(
                        hikari.ResponseType.MESSAGE_UPDATE, "clicked", components=[])

            bot.subscribe(hikari.ShardReadyEvent, on_ready)
            bot.subscribe(hikari.InteractionCreateEvent, on_interaction)
            await asyncio.wait_for(bot.start(check_for_updates=False), 10)
            alice = await identified(http, r, r.other_token, INTENTS)
            await alice.send_json({"op": 14, "d": {"guild_id": str(r.seeded.guild_id)}})
            try:
                await asyncio.wait_for(ready.wait(), 10)
                command = bot.rest.slash_command_builder("roll", "roll a die").add_option(
                    hikari.CommandOption(type=hikari.OptionType.INTEGER, name="sides",
                                         description="sides", is_required=True))
                registered = await bot.rest.set_application_commands(
                    r.seeded.user_id, [command], guild=r.seeded.guild_id)
                assert [c.name for c in registered] == ["roll"]

                async def invoke(body: dict[str, Any]) -> None:
                    body = {"application_id": str(r.seeded.user_id),
                            "guild_id": str(r.seeded.guild_id),
                            "channel_id": str(r.seeded.channel_id), "nonce": "n", **body}
                    async with http.post(f"{r.gateway.rest_url}/interactions", json=body,
                                         headers={"Authorization": f"Bot {r.other_token}"}
                                         ) as resp:
                        assert resp.status == 204, await resp.text()

                await invoke({"type": 2, "data": {
                    "id": str(registered[0].id), "name": "roll", "type": 1,
                    "options": [{"type": 4, "name": "sides", "value": 12}]}})
                got = await asyncio.wait_for(seen.get(), 10)
                assert got == ("command", "roll", 12, r.other_id, True)
                answer = await next_event(alice, "MESSAGE_CREATE")
                assert answer["content"] == "a d12" and answer["type"] == 20
                assert answer["components"][0]["components"][0]["custom_id"] == "again"
                await next_event(alice, "INTERACTION_SUCCESS")

                await invoke({"type": 3, "message_id": answer["id"],
                              "data": {"component_type": 2, "custom_id": "again"}})
                got = await asyncio.wait_for(seen.get(), 10)
                assert got == ("click", "again", int(answer["id"]))
                update = await next_event(alice, "MESSAGE_UPDATE")
                assert update["content"] == "clicked" and update["components"] == []
            finally:
                await alice.close()
                await bot.close()

    run(main, timeout=40)
