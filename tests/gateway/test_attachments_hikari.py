"""Attachments with a real hikari bot (issue 12 item 4): ``rest.create_message`` with
``attachment=`` bytes, the MESSAGE_CREATE the bot receives lists it with url, size,
filename, media type and the image's size, ``Attachment.read`` downloads the bytes, and
after the delete the url is gone."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import hikari

from tests.chat.images import jpeg
from tests.gateway.harness import run, running_gateway
from tests.gateway.libraries import HikariBot

IMAGE = jpeg(1280, 720)


def test_hikari_sends_and_reads_an_attachment(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            bot = HikariBot(r.seeded.token, r.gateway.rest_url, {
                "guild": hikari.GuildAvailableEvent, "created": hikari.GuildMessageCreateEvent})
            await bot.start(until="guild")
            try:
                sent = await bot.rest.create_message(
                    r.seeded.channel_id, "a photo",
                    attachment=hikari.Bytes(IMAGE, "photo.jpg"))
                event = await bot.expect("created")
                assert event.message_id == sent.id
                for message in (sent, event.message):
                    (photo,) = message.attachments
                    assert (photo.filename, photo.size, photo.media_type, photo.width,
                            photo.height) == ("photo.jpg", len(IMAGE), "image/jpeg", 1280, 720)
                    assert photo.url.startswith("http://") and photo.proxy_url == photo.url
                assert await photo.read() == IMAGE
                await bot.rest.delete_message(r.seeded.channel_id, sent)
                async with http.get(photo.url) as resp:
                    assert resp.status == 404
            finally:
                await bot.close()

    run(main, timeout=30)
