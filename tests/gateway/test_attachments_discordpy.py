"""Attachments with a real discord.py bot (issue 12 item 4): ``channel.send`` with
``discord.File`` (an image with alt text, a text file), the MESSAGE_CREATE the bot
receives lists both with url, size, filename, content type (and the image's size),
``Attachment.read`` downloads the bytes, an edit drops one, and after the delete the
url is gone."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import aiohttp
import pytest

from tests.chat.images import png
from tests.gateway.harness import run, running_gateway
from tests.gateway.libraries import discordpy_client, discordpy_running, on, point_discordpy_at

discord = pytest.importorskip("discord")

IMAGE = png(48, 30)
TEXT = b"a file from discord.py\n" * 50


def test_discordpy_sends_and_reads_attachments(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            point_discordpy_at(monkeypatch, r.gateway)
            client = discordpy_client()
            received: asyncio.Queue = asyncio.Queue()
            on(client, "message", received.put)
            async with discordpy_running(client, r.seeded.token):
                channel = client.get_channel(r.seeded.channel_id)
                sent = await channel.send("with files", files=[
                    discord.File(io.BytesIO(IMAGE), "chart.png", description="a chart"),
                    discord.File(io.BytesIO(TEXT), "log.txt")])
                got = await asyncio.wait_for(received.get(), 10)  # the MESSAGE_CREATE
                assert got.id == sent.id
                for message in (sent, got):
                    image, text = message.attachments
                    assert (image.filename, image.size, image.content_type, image.width,
                            image.height, image.description) == (
                        "chart.png", len(IMAGE), "image/png", 48, 30, "a chart")
                    assert (text.filename, text.size, text.content_type, text.width) == (
                        "log.txt", len(TEXT), "text/plain; charset=utf-8", None)
                    assert image.url.startswith("http://") and image.proxy_url == image.url
                assert await image.read() == IMAGE
                assert await text.read() == TEXT

                edited = await sent.edit(attachments=[sent.attachments[0]])
                assert [a.id for a in edited.attachments] == [sent.attachments[0].id]
                async with http.get(sent.attachments[1].url) as resp:
                    assert resp.status == 404
                await sent.delete()
                async with http.get(sent.attachments[0].url) as resp:
                    assert resp.status == 404

    run(main, timeout=30)

