"""The three client libraries' set-up against a greenroom gateway, in one place.

The interop tests run real, unmodified libraries (discord.py and hikari in this
process, discord.js in a Node process). What it takes to point each one at greenroom,
to know it is ready and to stop it is here, so that a fix or a speed-up reaches every
test at once. Each library is imported only by the functions that use it: a test of
one library does not pay for importing the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest

from tests.gateway.harness import Running

if TYPE_CHECKING:
    import discord
    import hikari

    from gateway.server import Gateway

#: how long a test waits for one step of a bot (an event, a line) before it fails
STEP_TIMEOUT_S = 10.0

#: tests/js: the discord.js scripts and their node_modules
JS_DIR = Path(__file__).resolve().parent.parent / "js"


class EventQueue:
    """What a bot's event callbacks saw, by kind, in arrival order.

    A step awaits the next event of the kind it caused and passes over the others: a
    library delivers events the step does not care about (presences, its own messages)
    in between, in an order the server does not promise across kinds.
    """

    def __init__(self) -> None:
        self._queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()

    def putter(self, kind: str) -> Callable[..., Awaitable[None]]:
        """A callback that queues what it is called with as ``kind``: its one argument,
        or the tuple of them (discord.py's ``before, after`` events)."""
        async def put(*args: Any) -> None:
            await self.put(kind, args[0] if len(args) == 1 else args)
        return put

    async def put(self, kind: str, value: Any) -> None:
        await self._queue.put((kind, value))

    async def expect(self, kind: str, timeout: float = STEP_TIMEOUT_S) -> Any:
        """The next event of ``kind``, skipping the others."""
        return (await self.expect_any(kind, timeout=timeout))[1]

    async def expect_any(self, *kinds: str, timeout: float = STEP_TIMEOUT_S) -> tuple[str, Any]:
        """The next event of one of ``kinds``, with its kind, skipping the others."""
        while True:
            got, value = await asyncio.wait_for(self._queue.get(), timeout)
            if got in kinds:
                return got, value


async def as_alice(http: aiohttp.ClientSession, r: Running, method: str, path: str,
                   body: dict[str, Any] | None = None) -> dict[str, Any]:
    """A REST call as alice (``r.other_token``, a user in the seeded guild): the other
    client whose actions the bot under test sees. It must succeed; its JSON answer, or
    ``{}`` for a 204."""
    async with http.request(method, f"{r.gateway.rest_url}{path}", json=body,
                            headers={"Authorization": f"Bot {r.other_token}"}) as resp:
        assert resp.status in (200, 204), await resp.text()
        return await resp.json() if resp.status == 200 else {}


async def post_as_alice(http: aiohttp.ClientSession, r: Running,
                        body: dict[str, Any]) -> dict[str, Any]:
    """alice posts ``body`` in the seeded channel; the message object."""
    return await as_alice(http, r, "POST", f"/channels/{r.seeded.channel_id}/messages", body)


# -- discord.py -------------------------------------------------------------------------

#: on_ready 0.1 s after the last GUILD_CREATE instead of discord.py's 2 s: it cannot know
#: how many guilds follow READY, so it waits for a quiet interval; greenroom sends the
#: guilds right after READY (~1 ms in a test's log), and ``discordpy_running`` still
#: waits for a late one.
DISCORDPY_GUILD_READY_TIMEOUT_S = 0.1


def import_discord() -> Any:
    """discord.py, imported without its DeprecationWarning for ``audioop`` (its voice
    support, which no test uses; removed in Python 3.13)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "'audioop' is deprecated", DeprecationWarning)
        import discord
    return discord


def point_discordpy_at(monkeypatch: pytest.MonkeyPatch, gateway: Gateway) -> None:
    """Point discord.py at ``gateway`` until the test ends.

    discord.py has no option for its server: every REST request is built on
    ``Route.BASE``, and a ``Client`` (not sharded) does not ask ``GET /gateway``: it
    connects to ``DiscordWebSocket.DEFAULT_GATEWAY`` (again after an INVALID_SESSION)
    and resumes at READY's ``resume_gateway_url``. So both class attributes are patched.
    """
    import yarl

    import_discord()
    from discord.gateway import DiscordWebSocket
    from discord.http import Route

    monkeypatch.setattr(Route, "BASE", gateway.rest_url)
    monkeypatch.setattr(DiscordWebSocket, "DEFAULT_GATEWAY", yarl.URL(gateway.gateway_url))


def discordpy_client(*, message_content: bool = True, members: bool = False,
                     presences: bool = False, client_class: type | None = None,
                     **options: Any) -> discord.Client:
    """A ``discord.Client`` (or ``client_class``, e.g. a ``commands.Bot`` subclass, with
    ``options`` such as ``command_prefix``) with the default intents and the privileged
    ones asked for (MESSAGE_CONTENT unless a test checks what a bot sees without it), and
    an ``on_ready`` that does not wait 2 s for guilds that will not come."""
    discord = import_discord()
    intents = discord.Intents.default()
    intents.message_content = message_content
    intents.members = members
    intents.presences = presences
    options.setdefault("guild_ready_timeout", DISCORDPY_GUILD_READY_TIMEOUT_S)
    return (client_class or discord.Client)(intents=intents, **options)


def on(client: discord.Client, event: str, callback: Callable[..., Awaitable[None]]) -> None:
    """Make ``callback`` the client's ``on_<event>`` (``Client.event`` takes the name
    from the function, so a shared callback such as ``EventQueue.putter`` cannot use it)."""
    setattr(client, f"on_{event}", callback)


@contextlib.asynccontextmanager
async def discordpy_running(client: discord.Client, token: str, *,
                            reconnect: bool = False) -> AsyncIterator[discord.Client]:
    """Log ``client`` in and connect it, yield it once ready with its guilds, close it.

    Ready means ``on_ready`` (``Client.wait_until_ready``, so a test's own ``on_ready``
    stays its own) and every guild available and, if discord.py chunks it, chunked: a
    GUILD_CREATE later than ``guild_ready_timeout`` after READY comes after ``on_ready``.
    ``reconnect=True`` for tests that cut the socket and expect a RESUME.
    """
    await client.login(token)
    runner = asyncio.create_task(client.connect(reconnect=reconnect))
    try:
        await asyncio.wait_for(_discordpy_ready(client, runner), STEP_TIMEOUT_S)
        yield client
    finally:
        await client.close()
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)


async def _discordpy_ready(client: discord.Client, runner: asyncio.Task[None]) -> None:
    ready = asyncio.ensure_future(client.wait_until_ready())
    try:
        await asyncio.wait([ready, runner], return_when=asyncio.FIRST_COMPLETED)
    finally:
        ready.cancel()
    if not ready.done() or ready.cancelled():  # the connection ended first: its error
        runner.result()
        raise AssertionError("discord.py's connection ended before on_ready")
    state = client._connection  # discord.py's own test of "needs chunking"
    while any(guild.unavailable or state._guild_needs_chunking(guild)
              for guild in client.guilds):
        await asyncio.sleep(0.02)


# -- hikari -----------------------------------------------------------------------------

def hikari_intents(*, message_content: bool = True) -> hikari.Intents:
    """The unprivileged intents, with MESSAGE_CONTENT unless a test checks what a bot
    sees without it."""
    import hikari

    intents = hikari.Intents.ALL_UNPRIVILEGED
    return intents | hikari.Intents.MESSAGE_CONTENT if message_content else intents


class HikariBot:
    """A hikari ``GatewayBot`` pointed at greenroom by ``rest_url=`` alone (the gateway
    URL comes from ``GET /gateway/bot``, as on Discord), with the events a test names
    (``{kind: event type}``) queued by kind.

    No banner, no logging set-up (hikari would configure the root logger), no warning
    about missing speedups; ``start`` does not ask PyPI for a newer hikari.
    """

    def __init__(self, token: str, rest_url: str, events: Mapping[str, Any] | None = None, *,
                 intents: hikari.Intents | None = None) -> None:
        import hikari

        self.bot = hikari.GatewayBot(token, rest_url=rest_url, banner=None, logs=None,
                                     suppress_optimization_warning=True,
                                     intents=hikari_intents() if intents is None else intents)
        self.events = EventQueue()
        for kind, event_type in (events or {}).items():
            self.bot.subscribe(event_type, self.events.putter(kind))

    @property
    def rest(self) -> hikari.api.RESTClient:
        return self.bot.rest

    async def expect(self, kind: str, timeout: float = STEP_TIMEOUT_S) -> Any:
        """The next event of ``kind``, skipping the others."""
        return await self.events.expect(kind, timeout)

    async def start(self, until: str | None = None) -> None:
        """Start the bot (hikari returns once its shard is READY), then wait for the
        event kind ``until`` (e.g. the guild's GuildAvailableEvent, which follows READY)."""
        await asyncio.wait_for(self.bot.start(check_for_updates=False), STEP_TIMEOUT_S)
        if until is not None:
            await self.expect(until)

    async def close(self) -> None:
        await self.bot.close()


# -- discord.js -------------------------------------------------------------------------

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



#: inflates frames as discord.js does (zlib-sync is zlib's own inflate; so is Node's
#: zlib): one inflater for the stream, each frame flushed, its output ended by "|"
_NODE_INFLATE = (
    "const zlib = require('node:zlib');\n"
    "const frames = JSON.parse(process.argv[2]).map(h => Buffer.from(h, 'hex'));\n"
    "const inflate = zlib.createInflate({finishFlush: zlib.constants.Z_SYNC_FLUSH});\n"
    "const out = []; inflate.on('data', d => out.push(d.toString('hex')));\n"
    "(async () => { for (const f of frames) { await new Promise(r => inflate.write(f, () =>"
    " inflate.flush(zlib.constants.Z_SYNC_FLUSH, r))); out.push('|'); }\n"
    "  console.log(out.join('')); })();\n")


def node_inflate(frames: list[bytes], workdir: Path) -> list[bytes]:
    """What Node's zlib inflates from each of ``frames``, one zlib-stream in order."""
    import subprocess

    script = workdir / "inflate.cjs"
    script.write_text(_NODE_INFLATE)
    done = subprocess.run([node_or_fail(), str(script), json.dumps([f.hex() for f in frames])],
                          capture_output=True, text=True, timeout=30, check=True)
    return [bytes.fromhex(part) for part in done.stdout.strip().split("|")[:-1]]

class NodeBot:
    """A ``tests/js`` script's Node process and the JSON lines it prints, one a step."""

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

    async def exited(self) -> int:
        """The exit status of a script that ends by itself after its last step."""
        return await asyncio.wait_for(self.proc.wait(), STEP_TIMEOUT_S)

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


@contextlib.asynccontextmanager
async def discordjs_script(r: Running, script: str, *args: str,
                           env: Mapping[str, str] | None = None) -> AsyncIterator[NodeBot]:
    """Run ``tests/js/<script>`` against ``r``'s gateway; kill it if it is still running
    at the end.

    Its arguments are greenroom's REST base without ``/v10`` (discord.js takes the base
    as ``rest.api`` and appends the version itself; the gateway URL comes from
    ``GET /gateway/bot``), then ``args``. The seeded bot's token goes in
    ``GREENROOM_TOKEN`` (the environment, never argv, which every process on the machine
    can read), with ``env``'s variables beside it.
    """
    node = node_or_fail()
    proc = await asyncio.create_subprocess_exec(
        node, str(JS_DIR / script), r.gateway.rest_url.removesuffix("/v10"), *args,
        cwd=JS_DIR, env={**os.environ, "GREENROOM_TOKEN": r.seeded.token, **(env or {})},
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    try:
        yield NodeBot(proc)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
