"""Interop: a real discord.js 14 bot (from npm, ``tests/js``) against greenroom.

discord.js is pointed at greenroom by its REST base alone (``rest: {api}``; the gateway
URL comes from ``GET /gateway/bot``). ``tests/js/bot.mjs`` runs in its own Node process
and prints what it sees as JSON lines; this test posts as another client and reads them:
login (READY, its guild, ``GET /applications/@me``), a message received, a reply sent,
the history, an edit and a delete with their events, and a RESUME after the server cuts
its socket. ``make test`` installs the Node packages (``npm ci`` in ``tests/js``).
"""

from __future__ import annotations

from pathlib import Path

import aiohttp

from tests.gateway.harness import run, running_gateway
from tests.gateway.libraries import discordjs_script, post_as_alice


def test_discordjs_bot_round_trip_and_resume(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http, \
                discordjs_script(r, "bot.mjs") as bot:
            rest_url = r.gateway.rest_url
            assert rest_url.endswith("/v10")

            async def rest_post(content: str) -> str:
                return (await post_as_alice(http, r, {"content": content}))["id"]

            ready = await bot.expect("ready")
            assert ready["user"] == str(r.seeded.user_id) and ready["bot"] is True
            [guild] = ready["guilds"]
            assert guild["id"] == str(r.seeded.guild_id)
            assert str(r.seeded.channel_id) in guild["channels"]
            application = await bot.expect("application")
            assert application == {"event": "application", "id": str(r.seeded.user_id),
                                   "guilds": 1}

            ping_id = await rest_post("ping")
            got = await bot.expect("message")
            assert got["id"] == ping_id and got["content"] == "ping"
            assert got["author"] == str(r.other_id)
            assert got["channel"] == str(r.seeded.channel_id)

            sent = await bot.expect("sent")
            assert sent["content"] == "pong"
            history = (await bot.expect("history"))["messages"]
            assert [m["content"] for m in history] == ["pong", "ping"]
            assert [m["id"] for m in history] == [sent["id"], ping_id]
            assert history[0]["author"] == str(r.seeded.user_id)
            edited = await bot.expect("edited")
            assert edited == {"event": "edited", "id": sent["id"],
                              "content": "pong, edited", "edited": True}
            update = await bot.expect("update_event")
            assert update == {"event": "update_event", "id": sent["id"],
                              "content": "pong, edited"}
            assert (await bot.expect("delete_event"))["id"] == sent["id"]
            await bot.expect("done")
            stored = await r.gateway.storage.get_message(r.seeded.channel_id,
                                                         int(sent["id"]))
            assert stored is None

            # Cut the bot's socket (no close frame); post while it is away.
            links = [link for link in r.gateway.links if link.session is not None]
            assert len(links) == 1
            links[0].transport.disconnect(graceful=False)
            missed_id = await rest_post("while you were away")
            # Both, in either order (Discord replays missed events before RESUMED).
            got = await bot.expect("message", "resumed")
            other = await bot.expect("resumed" if got["event"] == "message" else "message")
            got = got if got["event"] == "message" else other
            assert got["id"] == missed_id and got["content"] == "while you were away"
            assert await bot.stop() == 0

    run(main, timeout=40)
