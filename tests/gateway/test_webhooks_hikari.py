"""Webhooks with hikari (from PyPI), unmodified but for ``rest_url``: the bot creates a
channel webhook (``rest.create_webhook``), lists and fetches it; the webhook posts with
``rest.execute_webhook`` (no bot token) and the bot receives the message with
``webhook_id`` and WEBHOOKS_UPDATE; the webhook's message is fetched, edited and deleted
by token; the webhook is renamed and deleted, and then refused with Discord's errors."""

from __future__ import annotations

from pathlib import Path

import hikari
import pytest

from tests.gateway.harness import run, running_gateway
from tests.gateway.libraries import HikariBot


def test_hikari_webhooks(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_gateway(tmp_path) as r:
            bot = HikariBot(r.seeded.token, r.gateway.rest_url, {
                "ready": hikari.ShardReadyEvent, "message": hikari.GuildMessageCreateEvent,
                "edit": hikari.GuildMessageUpdateEvent, "delete": hikari.GuildMessageDeleteEvent,
                "webhooks_update": hikari.WebhookUpdateEvent})
            await bot.start(until="ready")
            try:
                rest = bot.rest
                webhook = await rest.create_webhook(r.seeded.channel_id, "ci")
                assert isinstance(webhook, hikari.IncomingWebhook)
                assert webhook.name == "ci" and webhook.token is not None
                assert webhook.channel_id == r.seeded.channel_id
                assert webhook.author is not None and webhook.author.id == r.seeded.user_id
                update = await bot.expect("webhooks_update")
                assert update.channel_id == r.seeded.channel_id
                assert [w.id for w in await rest.fetch_channel_webhooks(r.seeded.channel_id)] \
                    == [webhook.id]
                assert [w.id for w in await rest.fetch_guild_webhooks(r.seeded.guild_id)] \
                    == [webhook.id]
                by_token = await rest.fetch_webhook(webhook.id, token=webhook.token)
                assert by_token.name == "ci" and by_token.author is None

                message = await rest.execute_webhook(webhook.id, webhook.token, "build 9 passed",
                                                     username="deploy",
                                                     embed=hikari.Embed(title="Build 9"))
                assert message.webhook_id == webhook.id and message.content == "build 9 passed"
                assert message.author.username == "deploy" and message.author.is_bot
                assert message.embeds[0].title == "Build 9"
                got = await bot.expect("message")
                assert got.message_id == message.id and got.message.webhook_id == webhook.id
                assert got.author_id == webhook.id and got.content == "build 9 passed"
                assert got.is_webhook and got.embeds[0].title == "Build 9"

                fetched = await rest.fetch_webhook_message(webhook.id, webhook.token, message.id)
                assert fetched.content == "build 9 passed"
                edited = await rest.edit_webhook_message(webhook.id, webhook.token, message.id,
                                                         "build 9 fixed")
                assert edited.content == "build 9 fixed" and edited.edited_timestamp is not None
                assert (await bot.expect("edit")).content == "build 9 fixed"
                await rest.delete_webhook_message(webhook.id, webhook.token, message.id)
                assert (await bot.expect("delete")).message_id == message.id

                with pytest.raises(hikari.UnauthorizedError) as invalid:
                    await rest.execute_webhook(webhook.id, "x" * 68, "x")
                assert invalid.value.code == 50027
                with pytest.raises(hikari.BadRequestError) as thread:
                    await rest.execute_webhook(webhook.id, webhook.token, "x", thread=1)
                assert thread.value.code == 50035 and "thread_id" in thread.value.errors

                renamed = await rest.edit_webhook(webhook.id, name="ci-2")
                assert renamed.name == "ci-2"
                await bot.expect("webhooks_update")
                await rest.delete_webhook(webhook.id)
                await bot.expect("webhooks_update")
                with pytest.raises(hikari.NotFoundError) as gone:
                    await rest.execute_webhook(webhook.id, webhook.token, "after")
                assert gone.value.code == 10015
            finally:
                await bot.close()

    run(main, timeout=30)
