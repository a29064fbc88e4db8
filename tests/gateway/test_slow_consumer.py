"""Slow consumers (issue 10, finding 3): a client that stops reading costs the node a
bounded amount, is disconnected with a resumable close, and RESUMEs without a gap.

Real sockets, a real gateway in a process of its own (``loadtest.abuse_slow.start_node``,
so /proc of that process measures the gateway alone), clients on plain sockets that read
only when told.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable
from typing import Any
from urllib.parse import urlsplit

from gateway.outbound import WriteLimits
from gateway.protocol import GatewayConfig
from loadtest.abuse_slow import (
    Node,
    QueueSampler,
    kernel_send_queues,
    measure_slow_consumers,
    post_burst,
    read_messages,
    start_node,
    wait_until,
)
from loadtest.raw_client import Closed, RawClient

MESSAGES = 1000
CONTENT = 1900  # ~2.3 KB a MESSAGE_CREATE frame


def run(main: Awaitable[Any], timeout: float = 90.0) -> Any:
    async def bounded() -> Any:
        return await asyncio.wait_for(main, timeout)

    return asyncio.run(bounded())


async def stuck_clients(ws: str, token: str, count: int) -> list[RawClient]:
    """Clients that IDENTIFY, read READY and the GUILD_CREATE, heartbeat, and stop reading."""
    clients = [await RawClient.connect_lazy(ws) for _ in range(count)]
    for client in clients:
        await client.identify(token)
        await client.heartbeat()
    return clients


async def read_until_closed(client: RawClient) -> tuple[list[str], int | None]:
    """What a client that wakes up reads: the messages queued for it, then the close."""
    numbers: list[str] = []
    while True:
        try:
            message = await client.recv()
        except Closed as closed:
            return numbers, closed.code
        if message.get("t") == "MESSAGE_CREATE":
            numbers.append(message["d"]["content"].split(":", 1)[0])


async def resume(ws: str, token: str, client: RawClient) -> tuple[list[str], dict[str, Any]]:
    """RESUME ``client``'s session on a new connection at the last seq it read: the
    replayed message numbers, and the payload that ended the replay (RESUMED or op 9)."""
    again = await RawClient.connect_lazy(ws, rcvbuf=None)
    assert client.session_id is not None
    await again.resume(token, client.session_id, client.seq)
    numbers: list[str] = []
    try:
        while True:
            message = await again.recv()
            if message.get("t") == "MESSAGE_CREATE":
                numbers.append(message["d"]["content"].split(":", 1)[0])
            elif message.get("t") == "RESUMED" or message.get("op") == 9:
                return numbers, message
    finally:
        again.close()


async def slow_closes(node: Node, reason: str, at_least: int, timeout: float = 20.0) -> int:
    """Wait until the node has closed ``at_least`` slow consumers for ``reason`` (its
    ``gateway_slow_consumer_closes_total`` counter); the count."""
    key = f'gateway_slow_consumer_closes_total{{reason="{reason}"}}'
    deadline = asyncio.get_running_loop().time() + timeout
    while (count := (await node.metrics()).get(key, 0)) < at_least:
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"{count} closes for {reason} within {timeout:g} s")
        await asyncio.sleep(0.05)
    return count


def test_stuck_clients_cost_at_most_the_bound_and_are_disconnected() -> None:
    """The figure of ``make bench-abuse``: 10 clients that heartbeat and never read
    during a burst of 1,000 messages of ~2 KB. Before the bound each held the whole
    burst (~2.5 MB, kernel and user space) and none was disconnected."""
    limits = WriteLimits(stall_timeout_s=0.5, close_grace_s=0.5)
    figures = run(measure_slow_consumers(10, MESSAGES, CONTENT, limits=limits,
                                         disconnect_timeout_s=15))
    assert figures.reader_complete
    assert figures.disconnected == figures.sessions
    assert figures.growth_per_session <= limits.high_water + (64 << 10), figures
    # Linux doubles SO_SNDBUF for its bookkeeping; the payload queued stays below that
    assert figures.kernel_queue_peak <= 2 * limits.send_buffer, figures


def test_a_client_that_stops_reading_gets_4000_and_resumes_without_a_gap() -> None:
    """Closed with 4000 once it made no progress above the high-water mark; reading
    again, the client gets what was queued, the close, and after RESUME every later
    message in the order the reading client saw (the replay paced like any backlog);
    the reading client is never disconnected."""
    limits = WriteLimits(stall_timeout_s=0.3, close_grace_s=60.0)

    async def main() -> None:
        async with start_node(limits=limits) as node:
            reader = await RawClient.connect_lazy(node.ws, rcvbuf=None)
            await reader.identify(node.token)
            stuck = await stuck_clients(node.ws, node.token, 3)
            got = asyncio.ensure_future(read_messages(reader, MESSAGES))
            await post_burst(node, MESSAGES, CONTENT)
            order = await got  # the dispatch order every session sees
            assert await slow_closes(node, "stalled", len(stuck)) == len(stuck)
            for client in stuck:
                before, code = await read_until_closed(client)
                assert code == 4000
                assert 0 < len(before) < MESSAGES  # closed once over the bound
                replayed, last = await resume(node.ws, node.token, client)
                assert last.get("t") == "RESUMED", last
                assert before + replayed == order
                client.close()
            await reader.heartbeat()  # still connected: answered
            while (await reader.recv()).get("op") != 11:
                pass
            reader.close()

    run(main())


def test_a_client_that_never_reads_is_reset_and_resumes_every_missed_dispatch() -> None:
    """With the default stall allowance shortened: the node aborts (RST) a client that
    never reads; its session keeps the burst (1,000 < replay_max_entries = 2,048) and
    a RESUME replays all of it, in order."""
    limits = WriteLimits(stall_timeout_s=0.3, close_grace_s=0.3)

    async def main() -> None:
        async with start_node(limits=limits) as node:
            reader = await RawClient.connect_lazy(node.ws, rcvbuf=None)
            await reader.identify(node.token)
            (stuck,) = await stuck_clients(node.ws, node.token, 1)
            got = asyncio.ensure_future(read_messages(reader, MESSAGES))
            await post_burst(node, MESSAGES, CONTENT)
            order = await got
            await wait_until(stuck.reset_by_peer, 15, "the stuck client reset")
            replayed, last = await resume(node.ws, node.token, stuck)
            assert last.get("t") == "RESUMED", last
            assert replayed == order
            stuck.close()
            reader.close()

    run(main())


def test_a_resume_replays_at_the_pace_the_client_reads() -> None:
    """A RESUME that does not read its replay costs the node the high-water mark, not
    the replay (before: 1,000 frames of ~2.3 KB made at once, ~2 MB beyond the kernel's
    share); once read, the replay is complete, in order, RESUMED last."""
    limits = WriteLimits(stall_timeout_s=30.0, close_grace_s=1.0)

    async def main() -> None:
        async with start_node(limits=limits) as node:
            reader = await RawClient.connect_lazy(node.ws, rcvbuf=None)
            await reader.identify(node.token)
            (gone,) = await stuck_clients(node.ws, node.token, 1)
            gone.close()  # no close frame: the session stays resumable
            got = asyncio.ensure_future(read_messages(reader, MESSAGES))
            await post_burst(node, MESSAGES, CONTENT)
            order = await got
            again = await RawClient.connect_lazy(node.ws)
            await again.recv()  # HELLO
            before = node.rss()
            node.reset_peak()
            assert gone.session_id is not None
            again.send({"op": 6, "d": {"token": node.token, "seq": gone.seq,
                                       "session_id": gone.session_id}})
            await again.drain()
            port, mine = urlsplit(node.ws).port, again.sock.getsockname()[1]
            await wait_until(lambda: kernel_send_queues(port or 0).get(mine, 0) > 0, 10,
                             "the replay started")
            await reader.heartbeat()  # answered after the node's turn that wrote it
            while (await reader.recv()).get("op") != 11:
                pass
            assert node.peak() - before <= limits.high_water + (64 << 10)
            replayed: list[str] = []
            while (message := await again.recv()).get("t") != "RESUMED":
                if message.get("t") == "MESSAGE_CREATE":
                    replayed.append(message["d"]["content"].split(":", 1)[0])
            assert replayed == order
            again.close()
            reader.close()

    run(main())


def test_beyond_the_replay_limit_resume_gets_invalid_session() -> None:
    """A stuck client whose backlog outgrew the replay log (64 entries here) is closed
    at once, and its RESUME is refused with op 9 d=false rather than replayed with a gap."""
    limits = WriteLimits(stall_timeout_s=30.0, close_grace_s=0.3)

    async def main() -> None:
        async with start_node(GatewayConfig(replay_max_entries=64), limits) as node:
            reader = await RawClient.connect_lazy(node.ws, rcvbuf=None)
            await reader.identify(node.token)
            (stuck,) = await stuck_clients(node.ws, node.token, 1)
            got = asyncio.ensure_future(read_messages(reader, MESSAGES))
            await post_burst(node, MESSAGES, CONTENT)
            await got
            # long before the 30 s stall allowance: the full log closed it
            assert await slow_closes(node, "replay_limit", 1) == 1
            await wait_until(stuck.reset_by_peer, 10, "the stuck client reset")
            replayed, last = await resume(node.ws, node.token, stuck)
            assert (last.get("op"), last.get("d")) == (9, False), last
            assert replayed == []
            stuck.close()
            reader.close()

    run(main())


def test_a_slow_reader_gets_everything_in_order_through_zlib_stream() -> None:
    """A client that pauses reading (shorter than the stall allowance) and then reads:
    the node held most of the burst in the replay log, not as bytes (32 KiB high-water
    mark, 8 KiB socket buffers, ~2.3 MB burst), and writes it on resume_writing, in
    order, through the connection's zlib stream; no disconnect."""
    limits = WriteLimits(high_water=32 << 10, low_water=8 << 10, send_buffer=8 << 10,
                         stall_timeout_s=30.0, close_grace_s=1.0)

    async def main() -> None:
        async with start_node(limits=limits) as node:
            reader = await RawClient.connect_lazy(node.ws, rcvbuf=None)
            await reader.identify(node.token)
            slow = await RawClient.connect_lazy(node.ws, compress="zlib-stream")
            await slow.identify(node.token)
            await slow.heartbeat()
            got = asyncio.ensure_future(read_messages(reader, MESSAGES))
            await post_burst(node, MESSAGES, CONTENT)
            order = await got
            assert await read_messages(slow, MESSAGES) == order
            await slow.heartbeat()
            while (await slow.recv()).get("op") != 11:
                pass
            slow.close()
            reader.close()

    run(main())


def test_a_pause_does_not_close_a_client_whose_log_is_full_of_what_it_received() -> None:
    """A busy client acknowledges only every heartbeat, so its replay log may be full of
    dispatches it has received (64 here). A pause of fewer held dispatches than that is
    a pause, not a slow consumer: the client gets everything, in order, and stays."""
    limits = WriteLimits(high_water=16 << 10, low_water=4 << 10, send_buffer=8 << 10,
                         stall_timeout_s=30.0, close_grace_s=1.0)

    async def main() -> None:
        async with start_node(GatewayConfig(replay_max_entries=64), limits) as node:
            client = await RawClient.connect_lazy(node.ws)
            await client.identify(node.token)
            got = asyncio.ensure_future(read_messages(client, 200))
            await post_burst(node, 200, CONTENT)  # read, never acknowledged: a full log
            first = await got
            # not reading: ~40 KB over 16 KiB + the kernel's buffers pauses the socket
            await post_burst(node, 30, CONTENT, first=200)
            second = await read_messages(client, 30)
            assert sorted(first, key=int) == [str(n) for n in range(200)]
            assert sorted(second, key=int) == [str(n) for n in range(200, 230)]
            await client.heartbeat()
            while (await client.recv()).get("op") != 11:
                pass
            client.close()

    run(main())


async def pipelining(url: str, request: bytes, count: int, connections: int
                     ) -> tuple[list[RawClient], list[asyncio.Task[None]]]:
    """``connections`` HTTP clients that each send ``request`` ``count`` times without
    waiting (HTTP/1.1 pipelining) and never read an answer (8 KiB receive buffers)."""
    parts = urlsplit(url)
    loop = asyncio.get_running_loop()
    clients, senders = [], []
    for _ in range(connections):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
        sock.setblocking(False)
        await loop.sock_connect(sock, (parts.hostname, parts.port))
        clients.append(RawClient(sock))
        # the server stops reading once 32 requests wait: sending may never finish
        senders.append(asyncio.ensure_future(loop.sock_sendall(sock, request * count)))
    return clients, senders


async def held_then_reset(node: Node, url: str, request: bytes, count: int,
                          limits: WriteLimits, connections: int = 10) -> None:
    """Clients that never read: the node's kernel send queue per connection stays within
    ``send_buffer`` (doubled by Linux), and the connections are reset once an answer
    waits longer than ``response_timeout_s``. (User space is aiohttp's to bound: 32
    parsed requests and the answer in ``drain``; the reset gives that back. Its RSS after
    the reset is allocator noise here, so it is not asserted.)"""
    clients, senders = await pipelining(url, request, count, connections)
    sampler = QueueSampler(node, clients, url)
    sampler.start()
    try:
        await wait_until(lambda: all(c.reset_by_peer() for c in clients), 30,
                         "every non-reading connection reset")
    finally:
        kernel_peak = sampler.stop()
        for sender in senders:
            sender.cancel()
        for client in clients:
            client.close()
    assert 0 < kernel_peak <= 2 * limits.send_buffer


def test_rest_clients_that_never_read_history_are_bounded_and_reset() -> None:
    """Before: ~0.8 MiB of RSS and 3.2 MiB of kernel send queue per connection that
    pipelines history reads (32 answers of ~240 KB) without reading, for as long as it
    stays connected (aiohttp waits in drain with no deadline)."""
    limits = WriteLimits(response_timeout_s=1.0)

    async def main() -> None:
        async with start_node(limits=limits) as node:
            await post_burst(node, 100, CONTENT)
            parts = urlsplit(node.rest)
            request = (f"GET {parts.path}/channels/{node.channel_id}/messages?limit=100 "
                       f"HTTP/1.1\r\nHost: {parts.netloc}\r\n"
                       f"Authorization: Bot {node.token}\r\n\r\n").encode()
            await held_then_reset(node, node.rest, request, 32, limits)
            # the node still serves a client that reads
            await post_burst(node, 1, 10)

    run(main())


def test_ingress_clients_that_never_read_are_bounded_and_reset() -> None:
    """The ingress answers even an unauthenticated request (401, ~0.2 KB): a client that
    pipelines thousands and reads none filled the kernel's autotuned send queue (up to
    4 MiB) and was never disconnected."""
    limits = WriteLimits(response_timeout_s=1.0)

    async def main() -> None:
        async with start_node(limits=limits, ingress_secret="s" * 32) as node:
            parts = urlsplit(node.ingress)
            request = (f"POST {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
                       "Content-Type: application/msgpack\r\nContent-Length: 1\r\n\r\n"
                       ).encode() + b"\x80"  # an empty msgpack map
            await held_then_reset(node, node.ingress, request, 2_000, limits, 5)

    run(main())
