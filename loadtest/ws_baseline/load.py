"""Bounded loopback load for a broadcast server: many receiving clients, one paced sender.

Receivers are picows clients on uvloop, split over worker processes so the clients cost
less CPU than the server they measure. The sender stamps each message with
``time.monotonic_ns()`` (CLOCK_MONOTONIC, shared by all processes on the host) and the
step number; each receiver computes send-to-deliver latency into a 0.1 ms histogram per
step. A step is good when every message reached every client and p99 is within bound.
Only 127.0.0.1 is ever targeted; every wait has a timeout and every loop a bound.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection

BUCKET_US = 100
BUCKETS = 20_001  # 0 .. 2 s; the last bucket holds everything slower
MAX_STEPS = 128

_HEAD = b'{"ts":%019d,"k":%03d,"n":%09d,"pad":"'
TS = slice(6, 25)
STEP = slice(30, 33)


#: transport compressions the load clients speak, as greenroom's gateway serves them
COMPRESSIONS = ("zlib-stream", "zstd-stream")


def make_inflater(compress: str | None) -> Callable[[bytes], bytes] | None:
    """One connection's decoder for ``compress``, as client libraries keep one: a zlib
    ``decompressobj`` (discord.py, hikari; discord.js's zlib-sync is zlib too) or a
    zstandard ``decompressobj`` (discord.py's zstd-stream); None without compression.
    Every frame is inflated, as a client must, whatever it then reads of it."""
    if compress is None:
        return None
    if compress == "zlib-stream":
        import zlib

        return zlib.decompressobj().decompress
    if compress == "zstd-stream":
        import zstandard

        return zstandard.ZstdDecompressor().decompressobj().decompress
    raise ValueError(f"unknown transport compression {compress!r}")


def make_message(sent_ns: int, step: int, n: int, size: int) -> bytes:
    """A text message of ``size`` bytes carrying its send time and step at fixed offsets."""
    head = _HEAD % (sent_ns, step, n)
    return head + b"x" * max(0, size - len(head) - 2) + b'"}'


def percentile_ms(histogram: dict[int, int], fraction: float) -> float | None:
    """Upper edge (ms) of the bucket holding the ``fraction`` quantile."""
    total = sum(histogram.values())
    if not total:
        return None
    rank = fraction * total
    seen = 0
    for bucket in sorted(histogram):
        seen += histogram[bucket]
        if seen >= rank:
            return (bucket + 1) * BUCKET_US / 1000
    return None


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """CPU time all processes on the machine have used (every core), from /proc/stat."""
    with open("/proc/stat") as stat:
        ticks = [int(t) for t in stat.readline().split()[1:]]
    idle = ticks[3] + ticks[4]  # idle + iowait
    return (sum(ticks[:8]) - idle) / os.sysconf("SC_CLK_TCK")


#: Every load client's picows connections run on uvloop's own transport, not aiofastnet's
#: (picows's default): measured with 10,000 IDENTIFYs, the clients' CPU per connection
#: fell from 0.78-0.87 to 0.59-0.66 ms, CPU the node's cores share on a small host
#: (the gateway and baseline receivers alike, so a ratio stays like for like)
CLIENT_USE_AIOFASTNET = False


async def wait_for_quiet_host(max_wait_s: float, busy_below: float = 0.15) -> float:
    """Wait (at most ``max_wait_s``) until the host's CPUs are mostly idle for 2 s, so a
    measurement is not another job's; returns the busy fraction last seen."""
    cores = os.cpu_count() or 1
    deadline = time.monotonic() + max_wait_s
    while True:
        before = machine_busy_seconds()
        await asyncio.sleep(2.0)
        busy = (machine_busy_seconds() - before) / (2.0 * cores)
        if busy < busy_below or time.monotonic() >= deadline:
            return busy


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


async def recv(conn: Connection, timeout: float | None) -> object:
    """Await one message on a multiprocessing pipe without blocking the event loop.

    Only the wait for the first byte is asynchronous: the event loop turns the pipe
    non-blocking while it watches it, and a message larger than the pipe buffer must
    then be read (and written, see ``send``) in blocking mode.
    """
    loop = asyncio.get_running_loop()
    readable = loop.create_future()

    def wake() -> None:
        if not readable.done():
            readable.set_result(None)

    loop.add_reader(conn.fileno(), wake)
    try:
        await asyncio.wait_for(readable, timeout)
    finally:
        loop.remove_reader(conn.fileno())
        os.set_blocking(conn.fileno(), True)
    return conn.recv()


def send(conn: Connection, message: object) -> None:
    os.set_blocking(conn.fileno(), True)
    conn.send(message)


async def call(conn: Connection, message: tuple, timeout: float = 30.0) -> object:
    send(conn, message)
    return await recv(conn, timeout)


# ------------------------------------------------------------------- receiving workers


def receiver_worker(url: str, count: int, conn: Connection, compress: str | None = None
                    ) -> None:
    """Process entry point: hold ``count`` connections to ``url`` and answer the pipe;
    ``compress``: the server compresses each connection's stream (binary frames)."""
    import uvloop

    uvloop.run(_receiver_main(url, count, conn, compress))


async def _receiver_main(url: str, count: int, conn: Connection,
                         compress: str | None = None) -> None:
    from picows import WSListener, WSMsgType, ws_connect

    counts = [0] * MAX_STEPS
    # One histogram per step, made by "begin" and dropped by "report"; frames arriving
    # for a dropped or never-begun step land in a shared scratch histogram.
    scratch = [0] * BUCKETS
    histograms = [scratch] * MAX_STEPS
    text = WSMsgType.TEXT
    clock = time.monotonic_ns
    last_bucket = BUCKETS - 1

    binary = WSMsgType.BINARY

    class Receiver(WSListener):
        def __init__(self) -> None:
            self.inflate = make_inflater(compress)

        def on_ws_frame(self, transport, frame) -> None:
            now = clock()
            if frame.msg_type is text:
                payload = frame.get_payload_as_bytes()
            elif frame.msg_type is binary and self.inflate is not None:
                payload = self.inflate(frame.get_payload_as_bytes())
            else:
                return
            step = int(payload[STEP])
            bucket = (now - int(payload[TS])) // (BUCKET_US * 1000)
            histograms[step][bucket if bucket < last_bucket else last_bucket] += 1
            counts[step] += 1

    transports = []
    for start in range(0, count, 50):
        batch = min(50, count - start)
        results = await asyncio.gather(
            *(ws_connect(Receiver, url, websocket_handshake_timeout=30,
                       use_aiofastnet=CLIENT_USE_AIOFASTNET) for _ in range(batch)),
            return_exceptions=True,
        )
        transports.extend(r[0] for r in results if not isinstance(r, BaseException))
    send(conn, ("ready", len(transports)))

    while True:
        try:
            command = await recv(conn, None)
        except (EOFError, OSError):
            break
        match command:
            case ("begin", step):
                histograms[step] = [0] * BUCKETS
                send(conn, "ok")
            case ("count", step):
                send(conn, counts[step])
            case ("report", step):
                histogram = {b: c for b, c in enumerate(histograms[step]) if c}
                histograms[step] = scratch
                send(conn, (counts[step], histogram))
            case ("stop",):
                break
    for transport in transports:
        transport.send_close()
        transport.disconnect()
    send(conn, ("stopped",))


# ------------------------------------------------------------------- the sender


async def connect_sender(url: str):
    from picows import WSListener, ws_connect

    transport, _ = await ws_connect(WSListener, url, websocket_handshake_timeout=30,
                                   use_aiofastnet=CLIENT_USE_AIOFASTNET)
    return transport


async def pace(rate: float, duration: float,
               start_one: Callable[[int], asyncio.Future | None], *,
               max_in_flight: int | None = None,
               wait_s: float | None = None) -> tuple[int, float]:
    """Start ``rate`` sends/s for ``duration`` s on the grid start + n / rate (late
    sends go out at once, in order): ``start_one(n)`` sends the n-th and answers its
    task, or None when the send is done on return. ``max_in_flight``: with that many
    tasks unanswered, wait for one. Answers (sends started, seconds from the first to the
    last start); before answering, waits up to ``wait_s`` for the tasks still open.
    The one pacer of the load tools: the bare broadcast's, the REST sender's and the
    reaction storm's sends keep the same schedule."""
    cap = max_in_flight or float("inf")
    total = max(1, round(rate * duration))
    interval_ns = int(1e9 / rate)
    tasks: set[asyncio.Future] = set()
    start = time.monotonic_ns()
    n = 0
    while n < total:
        now = time.monotonic_ns()
        due = start + n * interval_ns
        if now < due:
            await asyncio.sleep((due - now) / 1e9)
            now = time.monotonic_ns()
        while n < total and start + n * interval_ns <= now and len(tasks) < cap:
            task = start_one(n)
            if task is not None:
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            n += 1
        if len(tasks) >= cap:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    seconds = (time.monotonic_ns() - start) / 1e9
    if tasks:
        await asyncio.wait(tasks, timeout=wait_s)
    return n, seconds


async def send_step(
    transport, step: int, rate: float, duration: float, size: int
) -> tuple[int, float]:
    """Send ``rate`` messages/s for ``duration`` s (``pace``); returns (messages sent,
    seconds it took)."""
    from picows import WSMsgType

    text = WSMsgType.TEXT

    def one(n: int) -> None:
        transport.send(text, make_message(time.monotonic_ns(), step, n, size))

    return await pace(rate, duration, one)


@dataclass
class StepResult:
    rate: float
    sent: int
    expected: int
    delivered: int
    #: From the first send to the last delivery (send time + the slowest latency).
    seconds: float
    p50_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    server_cpu: float
    clients_cpu: float
    #: CPU that processes outside the benchmark used meanwhile (other work on the host).
    other_cpu: float
    max_p99_ms: float
    #: MESSAGE_CREATEs that reached sessions that must get none (passive user sessions)
    undue: int = 0

    @property
    def all_delivered(self) -> bool:
        """Every due delivery made and none undue."""
        return self.delivered == self.expected and self.undue == 0

    @property
    def ok(self) -> bool:
        """Nothing lost and p99 within bound: the gateway's criterion."""
        return self.all_delivered and self.p99_ms is not None and self.p99_ms <= self.max_p99_ms

    @property
    def deliveries_per_s(self) -> float:
        return self.delivered / self.seconds if self.seconds else 0.0


@dataclass
class Workers:
    """The receiving worker processes and their pipes."""

    processes: list = field(default_factory=list)
    pipes: list[Connection] = field(default_factory=list)
    connected: int = 0
    #: of ``connected``, the sessions that must receive no message (passive user
    #: sessions): left out of the expected deliveries, and any they get is counted undue
    passive: int = 0


async def stop_workers(workers: Workers, stop_timeout: float = 10.0) -> None:
    """Ask each worker to stop (``stop_timeout`` s each), then reap or kill it."""
    for pipe in workers.pipes:
        try:
            await call(pipe, ("stop",), timeout=stop_timeout)
        except (EOFError, OSError, TimeoutError):
            pass
    for process in workers.processes:
        process.join(timeout=10)
        if process.is_alive():
            process.kill()


async def run_step(
    sender,
    workers: Workers,
    server_pid: int,
    step: int,
    rate: float,
    duration: float,
    size: int,
    drain_s: float,
    max_p99_ms: float,
) -> StepResult:
    return await measure_step(send_step(sender, step, rate, duration, size), workers,
                              server_pid, step, rate, drain_s, max_p99_ms)


async def measure_step(
    sending: Awaitable[tuple[int, float]],
    workers: Workers,
    server_pid: int,
    step: int,
    rate: float,
    drain_s: float,
    max_p99_ms: float,
) -> StepResult:
    """One rate step: start counting, await ``sending`` (its ``(sent, seconds)``), wait
    for the deliveries, and gather latencies and CPU shares. Any sender fits: the bare
    server's WebSocket sender and the gateway's REST sender both use this."""
    pids = [p.pid for p in workers.processes]
    server_cpu0 = cpu_seconds(server_pid)
    clients_cpu0 = sum(cpu_seconds(pid) for pid in pids)
    for pipe in workers.pipes:
        await call(pipe, ("begin", step))
    own_cpu0 = cpu_seconds(os.getpid())
    machine0 = machine_busy_seconds()
    sent, seconds = await sending
    expected = sent * (workers.connected - workers.passive)
    deadline = time.monotonic() + drain_s
    while True:
        delivered = 0
        for pipe in workers.pipes:
            delivered += await call(pipe, ("count", step))
        if delivered >= expected or time.monotonic() >= deadline:
            break
        await asyncio.sleep(0.05)
    wall = seconds + max(0.0, drain_s - (deadline - time.monotonic()))
    server_s = cpu_seconds(server_pid) - server_cpu0
    clients_s = sum(cpu_seconds(pid) for pid in pids) - clients_cpu0
    own_s = cpu_seconds(os.getpid()) - own_cpu0
    other_s = machine_busy_seconds() - machine0 - server_s - clients_s - own_s
    histogram: dict[int, int] = {}
    delivered = undue = 0
    for pipe in workers.pipes:
        count, part = await call(pipe, ("report", step))
        delivered += count
        if workers.passive:  # their workers count what reached them: ("undue", step)
            undue += await call(pipe, ("undue", step))
        for bucket, n in part.items():
            histogram[bucket] = histogram.get(bucket, 0) + n
    p50, p99 = percentile_ms(histogram, 0.50), percentile_ms(histogram, 0.99)
    slowest = percentile_ms(histogram, 1.0)
    return StepResult(
        rate=rate,
        sent=sent,
        expected=expected,
        delivered=delivered,
        seconds=seconds + (slowest or 0.0) / 1000,
        p50_ms=p50,
        p99_ms=p99,
        max_ms=slowest,
        server_cpu=server_s / wall,
        clients_cpu=clients_s / wall,
        other_cpu=max(0.0, other_s) / wall,
        max_p99_ms=max_p99_ms,
        undue=undue,
    )
