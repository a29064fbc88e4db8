"""Interop: embeds, mentions and replies with a real hikari bot (issue 12, items 1-3).

The bot runs WITHOUT the MESSAGE_CONTENT intent: a message that mentions it arrives with
its content and embeds, one that does not arrives empty. It replies with an embed and a
mention (``rest.create_message(reply=...)``) and reads it back from the REST answer, its
own MESSAGE_CREATE and ``fetch_message`` — hikari's ``Embed``, ``user_mentions``,
``message_reference`` and ``referenced_message``; then an edit replaces the embed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import hikari

from tests.gateway.harness import run, running_gateway
from tests.gateway.libraries import HikariBot, hikari_intents, post_as_alice


def test_hikari_embed_reply_mention(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            bot = HikariBot(r.seeded.token, r.gateway.rest_url, {
                "guild": hikari.GuildAvailableEvent, "message": hikari.GuildMessageCreateEvent},
                intents=hikari_intents(message_content=False))
            assert not bot.bot.intents & hikari.Intents.MESSAGE_CONTENT

            async def next_message(message_id: int) -> hikari.Message:
                while True:
                    got = (await bot.expect("message")).message
                    if got.id == message_id:
                        return got

            async def alice_posts(body: dict[str, Any]) -> int:
                return int((await post_as_alice(http, r, body))["id"])

            await bot.start(until="guild")
            try:
                me, channel = r.seeded.user_id, r.seeded.channel_id
                asked = await alice_posts({"content": f"<@{me}> status?",
                                           "embeds": [{"title": "Question"}]})
                question = await next_message(asked)
                assert question.content == f"<@{me}> status?"
                assert list(question.user_mentions_ids) == [me]
                assert [e.title for e in question.embeds] == ["Question"]
                other = await next_message(await alice_posts({
                    "content": "not for the bot", "embeds": [{"title": "hidden"}]}))
                assert not other.content and not other.embeds
                assert not other.user_mentions_ids

                embed = (hikari.Embed(title="Build 42", description="all green",
                                      url="https://ci.example/42", color=0x00FF00)
                         .add_field("tests", "1200", inline=True)
                         .set_footer("ci").set_author(name="builder"))
                sent = await bot.rest.create_message(
                    channel, f"done, <@{r.other_id}>", embed=embed, reply=question,
                    user_mentions=True)
                created = await next_message(sent.id)
                fetched = await bot.rest.fetch_message(channel, sent.id)
                for message in (sent, created, fetched):
                    assert message.type is hikari.MessageType.REPLY
                    got = message.embeds[0]
                    assert (got.title, got.description, got.url, got.color) == (
                        "Build 42", "all green", "https://ci.example/42",
                        hikari.Color(0x00FF00))
                    assert [(f.name, f.value, f.is_inline) for f in got.fields] == [
                        ("tests", "1200", True)]
                    assert got.footer is not None and got.footer.text == "ci"
                    assert got.author is not None and got.author.name == "builder"
                    assert r.other_id in message.user_mentions_ids
                    assert message.user_mentions[r.other_id].username == "alice"
                    reference = message.message_reference
                    assert reference is not None and reference.id == question.id
                    assert reference.channel_id == channel
                    referenced = message.referenced_message
                    assert referenced is not None and referenced.id == question.id
                assert created.content == f"done, <@{r.other_id}>"
                assert created.get_member_mentions()[r.other_id].id == r.other_id

                edited = await bot.rest.edit_message(channel, sent,
                                                     embed=hikari.Embed(title="Build 43"))
                assert [e.title for e in edited.embeds] == ["Build 43"]
                assert edited.message_reference is not None
            finally:
                await bot.close()

    run(main, timeout=30)
