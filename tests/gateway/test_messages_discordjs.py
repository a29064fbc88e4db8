"""Interop: embeds, mentions and replies with a real discord.js 14 bot (issue 12, items
1-3; ``tests/js/messages.mjs``).

The bot runs WITHOUT the MessageContent intent: a message that mentions it arrives with
its content and embeds, one that does not arrives empty. It replies with an embed and a
mention (``message.reply``) and reads it back from the REST answer, its own
MESSAGE_CREATE, ``messages.fetch`` and ``fetchReference`` — discord.js's ``Embed``,
``mentions`` and ``reference`` (``referenced_message`` cached); then an edit replaces
the embed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp

from tests.gateway.harness import run, running_gateway
from tests.gateway.libraries import discordjs_script, post_as_alice

REPLY = 19


def test_discordjs_embed_reply_mention(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http, \
                discordjs_script(r, "messages.mjs") as bot:

            async def alice_posts(body: dict[str, Any]) -> str:
                return (await post_as_alice(http, r, body))["id"]

            async def message(message_id: str) -> dict[str, Any]:
                while True:
                    got = await bot.expect("message")
                    if got["id"] == message_id:
                        return got

            me, alice = str(r.seeded.user_id), str(r.other_id)
            assert (await bot.expect("ready"))["user"] == me
            hidden = await alice_posts({"content": "not for the bot",
                                        "embeds": [{"title": "hidden"}]})
            got = await message(hidden)
            assert (got["content"], got["embeds"], got["mentions"]) == ("", [], [])
            asked = await alice_posts({"content": f"<@{me}> status?",
                                       "embeds": [{"title": "Question"}]})
            got = await message(asked)
            assert got["content"] == f"<@{me}> status?" and got["mentions"] == [me]
            assert [e["title"] for e in got["embeds"]] == ["Question"]

            sent = await bot.expect("sent")
            fetched = await bot.expect("fetched")
            answered = await bot.expect("reference")
            edited = await bot.expect("edited")
            # its own MESSAGE_CREATE, before or after the REST answer
            [created] = [m for m in bot.seen if m["event"] == "message"
                         and m["id"] == sent["id"]] or [await message(sent["id"])]
            for seen in (sent, created, fetched):
                assert seen["type"] == REPLY
                assert seen["content"] == f"done, <@{alice}>"
                assert seen["embeds"] == [{
                    "title": "Build 42", "description": "all green",
                    "url": "https://ci.example/42", "color": 0x00FF00,
                    "fields": [{"name": "tests", "value": "1200", "inline": True}],
                    "footer": "ci", "author": "builder"}]
                assert seen["mentions"] == [alice]
                assert seen["reference"] == {"message": asked,
                                             "channel": str(r.seeded.channel_id),
                                             "guild": str(r.seeded.guild_id)}
                assert seen["referenced_cached"] is True
            assert created["member_mentions"] == [alice]
            assert answered == {"event": "reference", "id": asked,
                                "content": f"<@{me}> status?"}
            assert [e["title"] for e in edited["embeds"]] == ["Build 43"]
            assert edited["reference"]["message"] == asked
            assert await bot.stop() == 0

    run(main, timeout=40)
