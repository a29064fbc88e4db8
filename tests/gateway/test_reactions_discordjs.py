"""Interop: reactions with a real discord.js 14 bot (``tests/js/reactions.mjs``), pointed
at greenroom by its REST base alone: ``message.react`` (Unicode and ``<:name:id>``),
``MessageReactionAdd`` for its own and another user's reaction, the counts after a
fetch, ``reaction.users.fetch``, ``users.remove`` (another's and its own),
``reaction.remove`` (one emoji), ``reactions.removeAll`` and their events."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import aiohttp

from tests.gateway.harness import run, running_gateway
from tests.gateway.libraries import discordjs_script

PARTY_ID = "112233445566778899"


def test_discordjs_reactions(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http, \
                discordjs_script(r, "reactions.mjs",
                                 env={"GREENROOM_OTHER": str(r.other_id)}) as bot:
            me, other = str(r.seeded.user_id), str(r.other_id)
            alice = {"Authorization": f"Bot {r.other_token}"}
            url = f"{r.gateway.rest_url}/channels/{r.seeded.channel_id}/messages"
            await bot.expect("ready")
            async with http.post(url, json={"content": "react"}, headers=alice) as resp:
                assert resp.status == 200
                mid = (await resp.json())["id"]
            add = await bot.expect("add")
            assert add == {"event": "add", "user": me, "emoji": "👍", "emojiId": None,
                           "count": 1, "me": True}
            add = await bot.expect("add")
            assert (add["emoji"], add["emojiId"]) == ("party", PARTY_ID)
            await bot.expect("reacted")
            async with http.put(f"{url}/{mid}/reactions/{quote('👍')}/@me",
                                headers=alice) as resp:
                assert resp.status == 204
            add = await bot.expect("add")
            assert (add["user"], add["count"]) == (other, 2)

            counts = await bot.expect("counts")
            assert counts["reactions"] == [{"emoji": "👍", "count": 2, "me": True},
                                           {"emoji": "party", "count": 1, "me": True}]
            assert sorted((await bot.expect("users"))["ids"], key=int) == \
                sorted([me, other], key=int)
            remove = await bot.expect("remove")
            assert (remove["user"], remove["emoji"], remove["count"]) == (other, "👍", 1)
            remove = await bot.expect("remove")
            assert (remove["user"], remove["emoji"]) == (me, "👍")
            gone = await bot.expect("remove_emoji")
            assert (gone["emoji"], gone["emojiId"]) == ("party", PARTY_ID)
            await bot.expect("add")
            assert (await bot.expect("remove_all"))["message"] == mid
            assert (await bot.expect("done"))["left"] == 0
            assert await bot.stop() == 0

    run(main, timeout=40)
