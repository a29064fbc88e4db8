"""Webhooks with discord.js 14 (from npm, ``tests/js/webhooks.mjs``), unmodified but for
its REST base: ``channel.createWebhook``, ``fetchWebhooks`` (channel and guild), a
``WebhookClient({url})`` sending, editing, fetching and deleting its message without the
bot's token, the bot's MESSAGE_CREATE/UPDATE/DELETE and WEBHOOKS_UPDATE, Discord's
refusals (wrong token 401 50027, ``thread_id`` 400, a deleted webhook 404 10015)."""

from __future__ import annotations

from pathlib import Path

from tests.gateway.harness import run, running_gateway
from tests.gateway.libraries import discordjs_script


def test_discordjs_webhooks(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_gateway(tmp_path) as r, \
                discordjs_script(r, "webhooks.mjs", str(r.seeded.channel_id)) as bot:
            channel = str(r.seeded.channel_id)
            created = await bot.expect("created")
            hook = created["id"]
            assert created == {"event": "created", "id": hook, "name": "ci",
                               "tokenLength": 68, "channelId": channel,
                               "owner": str(r.seeded.user_id), "incoming": True}
            assert (await bot.expect("webhooks_update"))["channel"] == channel
            listed = await bot.expect("listed")
            assert listed["channel"] == [hook] and listed["guild"] == [hook]

            sent = await bot.expect("sent")
            assert sent["webhookId"] == hook and sent["author"] == "deploy"
            assert sent["content"] == "build 3 passed" and sent["embed"] == "Build 3"
            message = await bot.expect("message")
            assert message == {"event": "message", "id": sent["id"], "webhookId": hook,
                               "content": "build 3 passed", "embeds": ["Build 3"],
                               "author": {"id": hook, "username": "deploy", "bot": True}}
            assert (await bot.expect("edited")) == {"event": "edited",
                                                    "content": "build 3 fixed",
                                                    "edited": True}
            update = await bot.expect("update")
            assert update["id"] == sent["id"] and update["content"] == "build 3 fixed"
            assert update["webhookId"] == hook
            assert (await bot.expect("fetched"))["content"] == "build 3 fixed"
            assert (await bot.expect("delete"))["id"] == sent["id"]

            wrong = await bot.expect("wrong_token")
            assert (wrong["status"], wrong["code"]) == (401, 50027)
            thread = await bot.expect("thread")
            assert (thread["status"], thread["code"]) == (400, 50035)
            assert (await bot.expect("renamed"))["name"] == "ci-2"
            gone = await bot.expect("after_delete")
            assert (gone["status"], gone["code"]) == (404, 10015)
            await bot.expect("done")
            assert await bot.exited() == 0

    run(main, timeout=40)
