"""Attachments with a real discord.js 14 bot (issue 12 item 4; ``tests/js/attachments.mjs``):
``channel.send({files})`` with a WebP image (alt text) and a CSV file; the send's
answer and the MESSAGE_CREATE list both with url, size, name, content type (and the
image's size); fetching each url returns the bytes; after the delete the url is gone."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from tests.chat.images import webp_vp8x
from tests.gateway.harness import run, running_gateway
from tests.gateway.libraries import discordjs_script

IMAGE = webp_vp8x(800, 600)
NOTES = b"library,file\ndiscord.js,notes.csv\n"


def test_discordjs_sends_and_reads_attachments(tmp_path: Path) -> None:
    files = [{"name": "diagram.webp", "description": "a diagram",
              "base64": base64.b64encode(IMAGE).decode()},
             {"name": "notes.csv", "base64": base64.b64encode(NOTES).decode()}]

    async def main() -> None:
        async with running_gateway(tmp_path) as r, discordjs_script(
                r, "attachments.mjs", str(r.seeded.channel_id),
                env={"GREENROOM_FILES": json.dumps(files)}) as bot:
            sent = await bot.expect("sent")
            received = await bot.expect("received")
            assert received["id"] == sent["id"]
            assert received["attachments"] == sent["attachments"]
            image, notes = received["attachments"]
            assert {k: image[k] for k in ("name", "size", "contentType", "width", "height",
                                          "description")} == {
                "name": "diagram.webp", "size": len(IMAGE), "contentType": "image/webp",
                "width": 800, "height": 600, "description": "a diagram"}
            assert (notes["name"], notes["size"], notes["contentType"], notes["width"]) == (
                "notes.csv", len(NOTES), "text/csv; charset=utf-8", None)
            for attachment, data in ((image, IMAGE), (notes, NOTES)):
                assert attachment["url"] == attachment["proxyURL"]
                assert attachment["url"].endswith(
                    f"/attachments/{r.seeded.channel_id}/{attachment['id']}/"
                    f"{attachment['name']}")
                downloaded = await bot.expect("downloaded")
                assert downloaded["id"] == attachment["id"] and downloaded["status"] == 200
                assert base64.b64decode(downloaded["base64"]) == data
            assert (await bot.expect("deleted"))["status"] == 404
            assert await bot.exited() == 0

    run(main, timeout=40)
