"""Interop: a discord.js 14 bot (``tests/js/interactions.mjs``) answers a slash command a
user invokes through ``POST /interactions`` with a message and a button
(``interaction.reply``), and the button's click by updating the message
(``interaction.update``); the invoking user's session gets both."""

from __future__ import annotations

from pathlib import Path

import aiohttp

from tests.gateway.harness import run, running_gateway
from tests.gateway.libraries import discordjs_script
from tests.gateway.test_interactions import INTENTS, identified, next_event


def test_discordjs_command_and_button(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http, \
                discordjs_script(r, "interactions.mjs", str(r.seeded.guild_id)) as bot:
            rest_url = r.gateway.rest_url
            alice = await identified(http, r, r.other_token, INTENTS)
            await alice.send_json({"op": 14, "d": {"guild_id": str(r.seeded.guild_id)}})

            async def invoke(body: dict) -> None:
                body = {"application_id": str(r.seeded.user_id),
                        "guild_id": str(r.seeded.guild_id),
                        "channel_id": str(r.seeded.channel_id), "nonce": "n", **body}
                async with http.post(f"{rest_url}/interactions", json=body,
                                     headers={"Authorization": f"Bot {r.other_token}"}) as resp:
                    assert resp.status == 204, await resp.text()

            try:
                registered = await bot.expect("registered")
                await invoke({"type": 2, "data": {
                    "id": registered["id"], "name": "roll", "type": 1,
                    "options": [{"type": 4, "name": "sides", "value": 8}]}})
                command = await bot.expect("command")
                assert command == {
                    "event": "command", "name": "roll", "sides": 8, "user": str(r.other_id),
                    "member": str(r.other_id), "channel": str(r.seeded.channel_id),
                    "guild": str(r.seeded.guild_id)}
                answer = await next_event(alice, "MESSAGE_CREATE")
                assert answer["content"] == "a d8" and answer["type"] == 20
                replied = await bot.expect("replied")
                assert replied["message"] == answer["id"] and replied["replied"] is True
                await next_event(alice, "INTERACTION_SUCCESS")

                await invoke({"type": 3, "message_id": answer["id"],
                              "data": {"component_type": 2, "custom_id": "again"}})
                click = await bot.expect("click")
                assert click == {"event": "click", "customId": "again",
                                 "message": answer["id"], "user": str(r.other_id)}
                await bot.expect("updated")
                update = await next_event(alice, "MESSAGE_UPDATE")
                assert update["content"] == "clicked" and update["components"] == []
            finally:
                await alice.close()
                assert await bot.stop() == 0

    run(main, timeout=40)
