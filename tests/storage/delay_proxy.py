"""A TCP proxy on loopback that makes a database answer slowly: every chunk a client
sends is held for ``delay_s`` before it goes on to the server (order kept), answers
pass at once. Lowering the delay releases what is held right away; ``delay_s = 0`` is
a plain proxy. It runs on its own thread and event loop, so synchronous tests (and
the processes they start) can use it.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import deque

#: how often a held chunk looks at the delay again (so that lowering it takes effect)
_RECHECK_S = 0.02


class DelayProxy:
    """``127.0.0.1:port`` -> ``127.0.0.1:target_port``, requests delayed by ``delay_s``."""

    def __init__(self, target_port: int, host: str = "127.0.0.1") -> None:
        self.host = host
        self.target_port = target_port
        self.delay_s = 0.0
        self.port = 0
        self.connections = 0  # accepted so far
        self.held_bytes = 0  # client bytes waiting for their delay right now
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="delay-proxy",
                                        daemon=True)
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task] = set()

    def start(self) -> DelayProxy:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._accept, self.host, 0), self._loop).result(10)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def close(self) -> None:
        async def shut() -> None:
            assert self._server is not None
            self._server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(shut(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        self._loop.close()

    def __enter__(self) -> DelayProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- on the proxy's loop -----------------------------------------------------------
    def _spawn(self, coro) -> asyncio.Task:  # type: ignore[no-untyped-def]
        task = self._loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            up_reader, up_writer = await asyncio.open_connection(self.host, self.target_port)
        except OSError:
            writer.close()
            return
        down = self._spawn(self._copy(up_reader, writer))
        up = self._spawn(self._delayed(reader, up_writer))
        await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
        for task, w in ((up, up_writer), (down, writer)):
            task.cancel()
            with contextlib.suppress(Exception):
                w.close()

    async def _copy(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()

    async def _delayed(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held: deque[tuple[float, bytes]] = deque()
        arrived = asyncio.Event()
        closed = False

        async def read() -> None:
            nonlocal closed
            while data := await reader.read(65536):
                held.append((time.monotonic(), data))
                self.held_bytes += len(data)
                arrived.set()
            closed = True
            arrived.set()

        reading = self._spawn(read())
        try:
            while True:
                if not held:
                    if closed:
                        return
                    arrived.clear()
                    await arrived.wait()
                    continue
                when, data = held[0]
                wait = when + self.delay_s - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(min(wait, _RECHECK_S))
                    continue
                held.popleft()
                self.held_bytes -= len(data)
                writer.write(data)
                await writer.drain()
        finally:
            reading.cancel()
            self.held_bytes -= sum(len(d) for _, d in held)
