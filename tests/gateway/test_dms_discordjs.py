"""Interop: DMs with a real discord.js 14 bot (``tests/js/dms.mjs``, its REST base
only): ``users.fetch``, ``createDM`` (the same channel when forced again), ``user.send``,
and ``messageCreate`` in a DM with ``Partials.Channel`` for what another user posts into
it over REST; the reply in the same channel, the DM's history, ``typingStart``."""

from __future__ import annotations

from pathlib import Path

import aiohttp

from tests.gateway.harness import run, running_gateway
from tests.gateway.libraries import as_alice, discordjs_script


def test_discordjs_dms(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http, \
                discordjs_script(r, "dms.mjs", str(r.other_id)) as bot:

            dm = await bot.expect("dm")
            assert dm["type"] == 1 and dm["recipient"] == str(r.other_id)
            assert dm["username"] == "alice"
            # the REST answer and its own DM as an event, in either order
            first = await bot.expect("sent", "message")
            second = await bot.expect("message" if first["event"] == "sent" else "sent")
            sent, own = (first, second) if first["event"] == "sent" else (second, first)
            assert sent["channel"] == dm["id"] and sent["again"] == dm["id"]
            assert sent["dm"] is True and sent["content"] == "hello from discord.js"
            assert own["id"] == sent["id"] and own["guild"] is None and own["dm"] is True

            opened = await as_alice(http, r, "POST", "/users/@me/channels",
                                    {"recipient_id": str(r.seeded.user_id)})
            assert opened["id"] == dm["id"]
            await as_alice(http, r, "POST", f"/channels/{dm['id']}/typing")
            typing = await bot.expect("typing")
            assert typing == {"event": "typing", "user": str(r.other_id),
                              "channel": dm["id"], "dm": True}
            ping = await as_alice(http, r, "POST", f"/channels/{dm['id']}/messages",
                                  {"content": "ping"})
            got = await bot.expect("message")
            assert got["id"] == ping["id"] and got["content"] == "ping"
            assert got["author"] == str(r.other_id) and got["channel"] == dm["id"]
            assert got["dm"] is True and got["guild"] is None
            assert got["recipient"] == str(r.other_id)
            pong = await bot.expect("pong")
            assert pong["channel"] == dm["id"]
            history = (await bot.expect("history"))["messages"]
            assert history == ["pong", "ping", "hello from discord.js"]
            assert await bot.stop() == 0

    run(main, timeout=40)
