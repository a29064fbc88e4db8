"""Slow consumers (issue 10, finding 3): what clients that heartbeat but never read cost a
node during a burst of messages.

The node runs in its own process (``start_node``: a gateway on SQLite in a temp dir, so
its RSS is the gateway's alone); the clients are raw WebSocket connections in this
process on non-blocking sockets with a small receive buffer, read only when the caller
asks (``RawClient``), the way a stuck client behaves. ``measure_slow_consumers`` returns
the figures; ``python -m loadtest.abuse_slow`` prints them and one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from multiprocessing.connection import Connection
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from gateway.outbound import WriteLimits
from gateway.protocol import GatewayConfig
from loadtest.raw_client import RawClient


def _status_kib(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(key):
                return int(line.split()[1])
    raise KeyError(key)


# -- the node process -------------------------------------------------------------------


def _node_main(pipe: Connection, workdir: str, config: GatewayConfig,
               limits: WriteLimits, ingress_secret: str | None) -> None:
    """A gateway on SQLite until the parent says stop (a ``spawn`` process's target)."""
    import uvloop

    uvloop.run(_serve(pipe, workdir, config, limits, ingress_secret))


async def _serve(pipe: Connection, workdir: str, config: GatewayConfig,
                 limits: WriteLimits, ingress_secret: str | None) -> None:
    from gateway.limits import UNLIMITED
    from gateway.seed import seed
    from gateway.server import Gateway
    from storage.schema import migrate
    from storage.settings import StorageSettings
    from storage.sqlite import SqliteStorage

    settings = StorageSettings(sqlite_path=os.path.join(workdir, "greenroom.db"),
                               sqlite_synchronous="OFF", flush_window_ms=0.5)
    migrate(settings)
    storage = SqliteStorage(settings)
    await storage.open()
    seeded = await seed(storage)
    gateway = Gateway(storage, config=config, limits=UNLIMITED, write_limits=limits,
                      ingress_secret=ingress_secret)
    await gateway.start()
    from observability.metrics import snapshot

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def asked() -> None:  # "metrics": the node's counters; anything else: stop
        if pipe.recv() == "metrics":
            pipe.send(snapshot())
        else:
            stop.set()

    loop.add_reader(pipe.fileno(), asked)
    pipe.send({"ws": gateway.gateway_url, "rest": gateway.rest_url, "token": seeded.token,
               "channel_id": seeded.channel_id, "ingress": gateway.ingress_url})
    try:
        await stop.wait()
    finally:
        loop.remove_reader(pipe.fileno())
        await gateway.stop()
        await storage.close()


@dataclass
class Node:
    """A running node process and what a client needs to reach it."""

    pipe: Connection
    pid: int
    ws: str
    rest: str
    token: str
    channel_id: int
    ingress: str

    def rss(self) -> int:
        """Resident set size now, bytes."""
        return _status_kib(self.pid, "VmRSS:") * 1024

    def peak(self) -> int:
        """Peak resident set size since the last ``reset_peak``, bytes."""
        return _status_kib(self.pid, "VmHWM:") * 1024

    async def metrics(self) -> dict[str, int]:
        """The node's counters (``observability.metrics.snapshot``)."""
        self.pipe.send("metrics")
        return await asyncio.get_running_loop().run_in_executor(None, self.pipe.recv)

    def reset_peak(self) -> None:
        with open(f"/proc/{self.pid}/clear_refs", "w") as refs:
            refs.write("5")  # 5: reset the peak RSS (VmHWM) to the current RSS


@contextlib.asynccontextmanager
async def start_node(config: GatewayConfig | None = None, limits: WriteLimits | None = None,
                     ingress_secret: str | None = None) -> AsyncIterator[Node]:
    """A gateway node in a process of its own, stopped (and its files removed) after;
    with an ingress when ``ingress_secret`` is given."""
    with tempfile.TemporaryDirectory(prefix="greenroom-slow-") as workdir:
        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe()
        process = ctx.Process(target=_node_main, daemon=True,
                              args=(child, workdir, config or GatewayConfig(),
                                    limits or WriteLimits(), ingress_secret))
        process.start()
        loop = asyncio.get_running_loop()
        try:
            deadline = time.monotonic() + 60
            while not await loop.run_in_executor(None, parent.poll, 0.2):
                if not process.is_alive() or time.monotonic() > deadline:
                    raise RuntimeError(f"the node did not start (exit {process.exitcode})")
            info = parent.recv()
            yield Node(parent, process.pid, info["ws"], info["rest"], info["token"],
                       info["channel_id"], info["ingress"])
        finally:
            with contextlib.suppress(OSError):
                parent.send("stop")
            await loop.run_in_executor(None, process.join, 10)
            if process.is_alive():
                process.kill()
                process.join()


# -- posting and reading --------------------------------------------------------------------


async def post_burst(node: Node, count: int, content_bytes: int, *, first: int = 0,
                     concurrency: int = 16) -> None:
    """Post ``count`` messages of ``content_bytes`` characters, numbered from ``first``
    ("<n>:" leads the content). Concurrent posts may be numbered out of order; the
    order every session must see is the order of the dispatches, not of the numbers."""
    url = f"{node.rest}/channels/{node.channel_id}/messages"
    headers = {"Authorization": f"Bot {node.token}"}
    numbers = iter(range(first, first + count))

    async def worker(http: aiohttp.ClientSession) -> None:
        for n in numbers:
            prefix = f"{n}:"
            body = {"content": prefix + "x" * (content_bytes - len(prefix))}
            async with http.post(url, json=body, headers=headers) as answer:
                if answer.status != 200:
                    raise RuntimeError(f"post {n}: {answer.status} {await answer.text()}")
                await answer.read()

    async with aiohttp.ClientSession() as http:
        await asyncio.gather(*(worker(http) for _ in range(concurrency)))


async def read_messages(client: RawClient, count: int) -> list[str]:
    """Read until ``count`` MESSAGE_CREATEs came; their contents' numbers, in order."""
    numbers: list[str] = []
    while len(numbers) < count:
        message = await client.recv()
        if message.get("t") == "MESSAGE_CREATE":
            numbers.append(message["d"]["content"].split(":", 1)[0])
    return numbers


async def wait_until(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"not within {timeout:g} s: {what}")
        await asyncio.sleep(0.05)


# -- the measurement ----------------------------------------------------------------------


def kernel_send_queues(port: int) -> dict[int, int]:
    """Bytes queued in the kernel (sent and not acknowledged, or not sent yet) by each
    TCP socket whose local port is ``port``, by remote port (``/proc/net/tcp``)."""
    queues: dict[int, int] = {}
    with open("/proc/net/tcp") as table:
        next(table)
        for line in table:
            fields = line.split()
            local, remote, queue = fields[1], fields[2], fields[4]
            if int(local.split(":")[1], 16) == port:
                queues[int(remote.split(":")[1], 16)] = int(queue.split(":")[0], 16)
    return queues


class QueueSampler:
    """The largest kernel send queue of the node's sockets to ``clients`` (on the
    WebSocket port, or ``url``'s), sampled every 20 ms while running (the node drains
    and resets them later)."""

    def __init__(self, node: Node, clients: list[RawClient], url: str | None = None) -> None:
        self.port = int(urlsplit(url or node.ws).port or 0)
        self.remotes = {c.sock.getsockname()[1] for c in clients}
        self.peak: dict[int, int] = dict.fromkeys(self.remotes, 0)
        self._task: asyncio.Task[None] | None = None

    def _sample(self) -> None:
        for remote, queued in kernel_send_queues(self.port).items():
            if remote in self.remotes:
                self.peak[remote] = max(self.peak[remote], queued)

    async def _run(self) -> None:
        while True:
            self._sample()
            await asyncio.sleep(0.02)

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    def stop(self) -> int:
        """The largest peak of one socket, bytes."""
        if self._task is not None:
            self._task.cancel()
        self._sample()
        return max(self.peak.values(), default=0)


@dataclass
class SlowConsumerFigures:
    sessions: int
    messages: int
    content_bytes: int
    high_water: int
    #: peak RSS growth during the burst with only the reading client (the burst's own
    #: cost: requests, storage, the dispatches every session's replay log shares)
    control_growth: int
    #: the same with ``sessions`` stuck clients as well
    burst_growth: int
    #: (burst_growth - control_growth) / sessions: what one stuck client costs
    growth_per_session: int
    #: the largest kernel send queue of one stuck client's socket during the burst
    kernel_queue_peak: int
    #: the stuck clients the node disconnected (RST once the close could not be read)
    disconnected: int
    #: the reading client got every message of every burst
    reader_complete: bool
    burst_s: float


async def measure_slow_consumers(sessions: int = 20, messages: int = 1000,
                                 content_bytes: int = 1900, *,
                                 limits: WriteLimits | None = None,
                                 config: GatewayConfig | None = None,
                                 disconnect_timeout_s: float = 60.0) -> SlowConsumerFigures:
    """RSS growth per non-reading session while ``messages`` messages of
    ``content_bytes`` are posted to a channel that ``sessions`` stuck clients
    (heartbeating, never reading) and one reading client follow.

    Identical bursts on one node: a warm-up, three controls with the reading client
    only (their median counts), and the measured one with the stuck clients too.
    Before each, the reader acknowledges what it read (so the previous burst's
    dispatches are freed, and each burst starts alike); each burst's peak RSS growth is
    measured from /proc (``VmHWM`` reset before it). The figure per session is the difference over the
    control, divided by ``sessions``. Waits until the node has disconnected every stuck
    client (``limits.stall_timeout_s + close_grace_s``)."""
    limits = limits or WriteLimits(stall_timeout_s=1.0, close_grace_s=1.0)
    async with start_node(config, limits) as node:
        reader = await RawClient.connect_lazy(node.ws, rcvbuf=None)
        await reader.identify(node.token)
        complete = True

        async def burst(first: int) -> int:
            nonlocal complete
            await reader.heartbeat()  # frees what the reader's replay log held
            while (await reader.recv()).get("op") != 11:
                pass
            before = node.rss()
            node.reset_peak()
            got = asyncio.ensure_future(read_messages(reader, messages))
            await post_burst(node, messages, content_bytes, first=first)
            numbers = await got
            complete &= sorted(numbers, key=int) == [str(first + n) for n in range(messages)]
            return node.peak() - before

        await burst(-4 * messages)  # warm-up: caches, allocator pools, storage
        # the control's peak swings by ~300 KB from one burst to the next (the
        # allocator): the median of three, so that one swing is not ~30 KB per session
        control = sorted([await burst(-n * messages) for n in (3, 2, 1)])[1]
        stuck = [await RawClient.connect_lazy(node.ws) for _ in range(sessions)]
        for client in stuck:
            await client.identify(node.token)
            await client.heartbeat()  # alive, acknowledging what it read; reads no more
        sampler = QueueSampler(node, stuck)
        sampler.start()
        started = time.perf_counter()
        measured = await burst(0)
        burst_s = time.perf_counter() - started
        kernel_peak = sampler.stop()
        with contextlib.suppress(TimeoutError):  # counted below
            await wait_until(lambda: all(c.reset_by_peer() for c in stuck),
                             disconnect_timeout_s, "every stuck client disconnected")
        disconnected = sum(c.reset_by_peer() for c in stuck)
        for client in (reader, *stuck):
            client.close()
    return SlowConsumerFigures(
        sessions, messages, content_bytes, limits.high_water, control, measured,
        (measured - control) // max(1, sessions), kernel_peak, disconnected, complete,
        round(burst_s, 2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--content-bytes", type=int, default=1900)
    args = parser.parse_args()
    figures = asyncio.run(measure_slow_consumers(args.sessions, args.messages,
                                                 args.content_bytes))
    print(f"RSS growth per non-reading session under a {figures.messages:,}-message burst: "
          f"{figures.growth_per_session / 1024:.0f} KiB (bound {figures.high_water >> 10} "
          f"KiB + 64 KiB), {figures.kernel_queue_peak >> 10} KiB at most in one socket's "
          f"kernel send queue; {figures.disconnected}/{figures.sessions} disconnected")
    print(json.dumps(asdict(figures)))


if __name__ == "__main__":
    main()
