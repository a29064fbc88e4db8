"""Webhooks with discord.py (from PyPI), unmodified but for its base URLs: a bot creates
a channel webhook (``TextChannel.create_webhook``) and lists it; a CI job posts through
``Webhook.from_url(...).send(wait=True)`` with no bot token; the bot receives the
message (``webhook_id``, the webhook as author) and WEBHOOKS_UPDATE; the job edits and
deletes its message and sends without waiting; the bot renames and deletes the webhook,
after which its URL is refused as Discord refuses it."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from tests.gateway.harness import run, running_gateway
from tests.gateway.libraries import (
    EventQueue,
    discordpy_client,
    discordpy_running,
    on,
    point_discordpy_at,
)

discord = pytest.importorskip("discord")

#: the smallest PNG discord.py takes for an avatar (it checks the magic number only)
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16


def test_discordpy_webhooks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            point_discordpy_at(monkeypatch, r.gateway)
            client = discordpy_client()  # GUILD_WEBHOOKS among the default intents
            events = EventQueue()
            for event, kind in (("message", "message"), ("raw_message_edit", "edit"),
                                ("raw_message_delete", "delete"),
                                ("webhooks_update", "webhooks_update")):
                on(client, event, events.putter(kind))

            async with discordpy_running(client, r.seeded.token):
                channel = client.get_channel(r.seeded.channel_id)

                webhook = await channel.create_webhook(name="ci", avatar=PNG)
                assert webhook.name == "ci" and webhook.token and webhook.avatar is not None
                assert webhook.channel_id == channel.id and webhook.user.id == client.user.id
                assert (await events.expect("webhooks_update")).id == channel.id
                assert [w.id for w in await channel.webhooks()] == [webhook.id]
                assert [w.id for w in await channel.guild.webhooks()] == [webhook.id]
                fetched = await client.fetch_webhook(webhook.id)
                assert fetched.name == "ci" and fetched.token is None  # shown once

                # the CI job: the URL alone, no bot token
                job = discord.Webhook.from_url(webhook.url, session=http)
                again = await job.fetch()  # by token: still usable (its token in the answer)
                assert again.name == "ci" and again.token == webhook.token
                sent = await job.send("build 7 passed", username="deploy", wait=True,
                                      embed=discord.Embed(title="Build 7", color=0x2ECC71))
                assert isinstance(sent, discord.WebhookMessage)
                assert sent.webhook_id == webhook.id and sent.content == "build 7 passed"
                assert sent.author.name == "deploy" and sent.author.bot
                assert sent.embeds[0].title == "Build 7"
                got = await events.expect("message")
                assert got.id == sent.id and got.webhook_id == webhook.id
                assert got.author.id == webhook.id and got.author.name == "deploy"
                assert got.content == "build 7 passed" and got.embeds[0].title == "Build 7"

                edited = await sent.edit(content="build 7 fixed")
                assert edited.content == "build 7 fixed" and edited.edited_at is not None
                assert (await events.expect("edit")).data["content"] == "build 7 fixed"
                assert (await job.fetch_message(sent.id)).content == "build 7 fixed"
                await sent.delete()
                assert (await events.expect("delete")).message_id == sent.id
                assert await job.send("no wait") is None
                assert (await events.expect("message")).content == "no wait"

                with pytest.raises(discord.HTTPException) as refused:
                    await job.send("thread", thread=discord.Object(1))
                assert refused.value.status == 400 and refused.value.code == 50035

                wrong = discord.Webhook.partial(webhook.id, "x" * 68, session=http)
                with pytest.raises(discord.HTTPException) as invalid:
                    await wrong.send("x")
                assert (invalid.value.status, invalid.value.code) == (401, 50027)

                renamed = await webhook.edit(name="ci-2")
                assert renamed.name == "ci-2"
                await events.expect("webhooks_update")
                await webhook.delete()
                await events.expect("webhooks_update")
                with pytest.raises(discord.NotFound) as gone:
                    await job.send("after", wait=True)
                assert gone.value.code == 10015

    run(main, timeout=30)
