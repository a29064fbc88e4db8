"""Interop: a real discord.js 14 bot (from npm, ``tests/js``) against greenroom.

discord.js is pointed at greenroom by its REST base alone (``rest: {api}``; the gateway
URL comes from ``GET /gateway/bot``). ``tests/js/bot.mjs`` runs in its own Node process
and prints what it sees as JSON lines; this test posts as another client and reads them:
login (READY, its guild, ``GET /applications/@me``), a message received, a reply sent,
the history, an edit and a delete with their events, and a RESUME after the server cuts
its socket. ``make test`` installs the Node packages (``npm ci`` in ``tests/js``).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.gateway.harness import run, running_gateway

JS_DIR = Path(__file__).resolve().parent.parent / "js"
STEP_TIMEOUT_S = 10.0


def node_or_fail() -> str:
    """The ``node`` executable, with its packages installed; a clear failure otherwise
    (a missing Node is a broken test machine, not a reason to skip)."""
    node = shutil.which("node")
    if node is None:
        pytest.fail("node (>= 18) is not on PATH: the discord.js interop test needs Node and npm")
    if not (JS_DIR / "node_modules" / "discord.js" / "package.json").exists():
        pytest.fail(f"discord.js is not installed in {JS_DIR}: run `make test` "
                    f"(or `npm ci --prefix {JS_DIR}`)")
    return node


class Bot:
    """The Node process and its JSON lines."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.seen: list[dict[str, Any]] = []

    async def expect(self, *events: str) -> dict[str, Any]:
        """The next line whose ``event`` is one of ``events`` (an ``error`` line fails at
        once)."""
        assert self.proc.stdout is not None
        while True:
            try:
                raw = await asyncio.wait_for(self.proc.stdout.readline(), STEP_TIMEOUT_S)
            except TimeoutError:
                raise AssertionError(f"no {events} from the bot in {STEP_TIMEOUT_S} s; "
                                     f"it said {self.seen}") from None
            if not raw:
                raise AssertionError(f"the bot exited ({await self.proc.wait()}) before "
                                     f"{events}; it said {self.seen}; stderr: "
                                     f"{await self.stderr()}")
            line = json.loads(raw)
            self.seen.append(line)
            assert line["event"] != "error", line["message"]
            if line["event"] in events:
                return line

    async def stderr(self) -> str:
        assert self.proc.stderr is not None
        try:
            return (await asyncio.wait_for(self.proc.stderr.read(), 2)).decode()[-2000:]
        except TimeoutError:
            return "<still open>"

    async def stop(self) -> int:
        """Close its stdin (it destroys the client and exits 0); kill it if it hangs."""
        if self.proc.returncode is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                return await asyncio.wait_for(self.proc.wait(), 5)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
                raise AssertionError("the bot did not exit when its stdin closed") from None
        return self.proc.returncode


def test_discordjs_bot_round_trip_and_resume(tmp_path: Path) -> None:
    node = node_or_fail()

    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            rest_url = r.gateway.rest_url
            assert rest_url.endswith("/v10")
            env = {**os.environ, "GREENROOM_TOKEN": r.seeded.token}
            proc = await asyncio.create_subprocess_exec(
                node, str(JS_DIR / "bot.mjs"), rest_url.removesuffix("/v10"), cwd=JS_DIR,
                env=env, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE)
            bot = Bot(proc)

            async def rest_post(content: str) -> str:
                url = f"{rest_url}/channels/{r.seeded.channel_id}/messages"
                async with http.post(url, json={"content": content},
                                     headers={"Authorization": f"Bot {r.other_token}"}) as resp:
                    assert resp.status == 200, await resp.text()
                    return (await resp.json())["id"]

            try:
                ready = await bot.expect("ready")
                assert ready["user"] == str(r.seeded.user_id) and ready["bot"] is True
                [guild] = ready["guilds"]
                assert guild["id"] == str(r.seeded.guild_id)
                assert str(r.seeded.channel_id) in guild["channels"]
                application = await bot.expect("application")
                assert application == {"event": "application", "id": str(r.seeded.user_id),
                                       "guilds": 1}

                ping_id = await rest_post("ping")
                got = await bot.expect("message")
                assert got["id"] == ping_id and got["content"] == "ping"
                assert got["author"] == str(r.other_id)
                assert got["channel"] == str(r.seeded.channel_id)

                sent = await bot.expect("sent")
                assert sent["content"] == "pong"
                history = (await bot.expect("history"))["messages"]
                assert [m["content"] for m in history] == ["pong", "ping"]
                assert [m["id"] for m in history] == [sent["id"], ping_id]
                assert history[0]["author"] == str(r.seeded.user_id)
                edited = await bot.expect("edited")
                assert edited == {"event": "edited", "id": sent["id"],
                                  "content": "pong, edited", "edited": True}
                update = await bot.expect("update_event")
                assert update == {"event": "update_event", "id": sent["id"],
                                  "content": "pong, edited"}
                assert (await bot.expect("delete_event"))["id"] == sent["id"]
                await bot.expect("done")
                stored = await r.gateway.storage.get_message(r.seeded.channel_id,
                                                             int(sent["id"]))
                assert stored is None

                # Cut the bot's socket (no close frame); post while it is away.
                links = [link for link in r.gateway.links if link.session is not None]
                assert len(links) == 1
                links[0].transport.disconnect(graceful=False)
                missed_id = await rest_post("while you were away")
                # Both, in either order (Discord replays missed events before RESUMED).
                got = await bot.expect("message", "resumed")
                other = await bot.expect("resumed" if got["event"] == "message" else "message")
                got = got if got["event"] == "message" else other
                assert got["id"] == missed_id and got["content"] == "while you were away"
                assert await bot.stop() == 0
            finally:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()

    run(main, timeout=40)
