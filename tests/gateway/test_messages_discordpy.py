"""Interop: embeds, mentions and replies with a real discord.py bot (issue 12, items 1-3).

The bot runs WITHOUT the MESSAGE_CONTENT intent: a message that mentions it arrives with
its content and embeds, one that does not arrives empty. It replies with an embed and a
mention (``Message.reply``) and reads it back three ways — the REST answer, its own
MESSAGE_CREATE and ``fetch_message`` — as discord.py's ``Embed``, ``mentions`` and
``reference`` (with the resolved message); then an edit replaces the embed.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.gateway.harness import run, running_gateway
from tests.gateway.libraries import (
    discordpy_client,
    discordpy_running,
    point_discordpy_at,
    post_as_alice,
)

discord = pytest.importorskip("discord")


def test_discordpy_embed_reply_mention(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            point_discordpy_at(monkeypatch, r.gateway)
            client = discordpy_client(message_content=False)
            assert not client.intents.message_content
            received: asyncio.Queue[Any] = asyncio.Queue()

            @client.event
            async def on_message(message: Any) -> None:
                await received.put(message)

            async def next_message(message_id: int) -> Any:
                while True:
                    got = await asyncio.wait_for(received.get(), 10)
                    if got.id == message_id:
                        return got

            async def alice_posts(body: dict[str, Any]) -> int:
                return int((await post_as_alice(http, r, body))["id"])

            async with discordpy_running(client, r.seeded.token):
                me = r.seeded.user_id
                # mentioned: content and embeds without the intent
                asked = await alice_posts({"content": f"<@{me}> status?",
                                           "embeds": [{"title": "Question", "color": 0xFF0000}]})
                question = await next_message(asked)
                assert question.content == f"<@{me}> status?"
                assert [m.id for m in question.mentions] == [me]
                assert question.embeds[0].title == "Question"
                assert question.embeds[0].colour == discord.Colour(0xFF0000)
                # not mentioned: empty
                other = await next_message(await alice_posts({
                    "content": "not for the bot", "embeds": [{"title": "hidden"}]}))
                assert other.content == "" and other.embeds == [] and other.mentions == []

                embed = discord.Embed(title="Build 42", description="all green",
                                      colour=discord.Colour(0x00FF00),
                                      url="https://ci.example/42")
                embed.add_field(name="tests", value="1200", inline=True)
                embed.set_footer(text="ci")
                embed.set_author(name="builder")
                sent = await question.reply(f"done, <@{r.other_id}>", embed=embed)
                created = await next_message(sent.id)  # the bot's own MESSAGE_CREATE
                fetched = await question.channel.fetch_message(sent.id)
                for message in (sent, created, fetched):
                    assert message.type is discord.MessageType.reply
                    got = message.embeds[0]
                    assert (got.title, got.description, got.url, got.colour) == (
                        "Build 42", "all green", "https://ci.example/42",
                        discord.Colour(0x00FF00))
                    assert [(f.name, f.value, f.inline) for f in got.fields] == [
                        ("tests", "1200", True)]
                    assert (got.footer.text, got.author.name) == ("ci", "builder")
                    assert message.mentions and message.mentions[0].id == r.other_id
                    assert message.reference is not None
                    assert message.reference.message_id == question.id
                    assert message.reference.channel_id == r.seeded.channel_id
                    resolved = message.reference.resolved
                    assert isinstance(resolved, discord.Message) and resolved.id == question.id
                assert created.content == f"done, <@{r.other_id}>"

                edited = await sent.edit(embed=discord.Embed(title="Build 43"))
                assert [e.title for e in edited.embeds] == ["Build 43"]
                assert edited.reference is not None
                assert edited.reference.message_id == question.id

    run(main, timeout=30)
