"""Bounded loopback load for the greenroom gateway, and the same procedure on the bare
broadcast baseline (``loadtest/ws_baseline``).

- Storage: a fresh SQLite database in a temporary directory, with the ``make run`` bot,
  guild and channel (``greenroom.cli._ensure_seeded``), ``--members`` users in that guild
  and the users beyond them (for the idle-session phase) in a second guild.
- Server: ``greenroom run --nodes 1 --no-rate-limits`` on free loopback ports (the node
  process serves the gateway; its pid is read from the ``node serving`` log event). One
  bot sends hundreds of messages/s into one channel, far past Discord's 5 per 5 s per
  token and channel, so the limits are off (``gateway.limits.UNLIMITED``).
- Clients: picows WebSocket clients on uvloop, split over ``--processes`` worker
  processes; each connection waits for HELLO, IDENTIFYs with its token, waits for
  READY, heartbeats (op 1, ``d`` = the last ``s`` received) once its GUILD_CREATEs are
  in, then every 30 s. Workers print progress while connecting. ``--mix`` picks the
  kinds of session (each share of ``--members`` and of the sessions beyond them):
  ``users`` IDENTIFY with a user token and open their guilds at READY (op 14: a user's
  session is passive in a guild until then, gateway/fanout.py), ``bots`` with a bot
  token and send no op 14 (bots are always active), ``passive`` are user sessions that
  never send op 14 and must receive no MESSAGE_CREATE (each one they get is counted
  ``undue`` and fails the step). The default, ``users=1``, is every session a user
  that opens its guild.
- Sender: the seeded bot POSTs ``/channels/{id}/messages`` at a paced rate; each message's
  content carries its send time (``CLOCK_MONOTONIC`` ns, shared by the processes on the
  host) and step number; receivers bucket MESSAGE_CREATE send-to-deliver latency into
  0.1 ms histograms per step (``loadtest.ws_baseline.load``).
- Figures: identifies/s (first connect to last READY), server RSS per identified idle
  session (RSS delta / sessions), deliveries/s and p50/p99 per rate (of the sessions
  that must receive: bots and users, not passive ones), the highest rate with
  everything delivered and p99 within bound; the baseline with as many receivers as
  the gateway's receiving sessions, the same rates and frames of the gateway's
  MESSAGE_CREATE size.

Only 127.0.0.1 is ever targeted; every wait has a timeout and every loop a bound.

    .venv/bin/python loadtest/gateway_load.py --sessions 2000 --members 1000
    .venv/bin/python loadtest/gateway_load.py --sessions 0   # the fan-out phase only
    .venv/bin/python loadtest/gateway_load.py --mix bots=1,users=1,passive=2
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import multiprocessing
import os
import re
import resource
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from loadtest.placement import cpu_plan, run_on  # noqa: E402
from loadtest.ws_baseline.load import (  # noqa: E402
    BUCKET_US,
    BUCKETS,
    CLIENT_USE_AIOFASTNET,
    COMPRESSIONS,
    MAX_STEPS,
    StepResult,
    Workers,
    call,
    cpu_seconds,
    make_inflater,
    measure_step,
    pace,
    recv,
    rss_bytes,
    send,
    stop_workers,
    wait_for_quiet_host,
)

#: intents: GUILDS | GUILD_MESSAGES | MESSAGE_CONTENT
INTENTS = 1 | (1 << 9) | (1 << 15)
MARK = b"@ts="
# content: "@ts=<19 digits> k=<3 digits> n=<9 digits> xxx..."
_TS = slice(4, 23)
_STEP = slice(26, 29)
HEARTBEAT_EVERY_S = 30.0
CONNECT_WINDOW = 64  # handshakes + identifies in flight per worker
CONTAMINATED = 0.25


def content(sent_ns: int, step: int, n: int, size: int) -> str:
    head = f"@ts={sent_ns:019d} k={step:03d} n={n:09d} "
    return head + "x" * max(0, size - len(head))


#: the kinds of session ``--mix`` shares out (see the module docstring)
KINDS = ("bots", "users", "passive")
DEFAULT_MIX = "users=1"


def parse_mix(text: str) -> dict[str, float]:
    """``bots=1,users=3`` -> the kinds' weights (a kind left out weighs 0); raises
    ValueError on an unknown kind, a negative weight or weights that sum to 0."""
    weights = dict.fromkeys(KINDS, 0.0)
    for part in text.split(","):
        name, _, value = part.strip().partition("=")
        if name not in weights:
            raise ValueError(f"unknown kind of session {name!r} (one of {', '.join(KINDS)})")
        weights[name] = float(value)
        if weights[name] < 0:
            raise ValueError(f"negative weight for {name}")
    if sum(weights.values()) <= 0:
        raise ValueError("the mix's weights sum to 0")
    return weights


def mix_name(weights: dict[str, float]) -> str:
    """The mix as the JSON names it: its shares, e.g. ``bots=0.25,users=0.75``."""
    total = sum(weights.values())
    return ",".join(f"{k}={round(w / total, 4):g}" for k, w in weights.items() if w)


def assign_kinds(weights: dict[str, float], count: int) -> list[str]:
    """``count`` sessions' kinds in the mix's proportions, interleaved (each next one
    the kind furthest below its share), so any stretch of them holds the mix."""
    total = sum(weights.values())
    given = dict.fromkeys(weights, 0)
    kinds = []
    for i in range(count):
        kind = max(weights, key=lambda k: weights[k] / total * (i + 1) - given[k])
        given[kind] += 1
        kinds.append(kind)
    return kinds


# ------------------------------------------------------------------ storage and server


@dataclass
class Seeded:
    directory: str
    db: str
    bot_token: str
    guild_id: int
    channel_id: int
    tokens: list[str]  # the first ``members`` are members of the seeded guild
    #: each token's kind of session (``KINDS``), in the order of ``tokens``
    kinds: list[str] = field(default_factory=list)


async def seed_users(directory: str, users: int, members: int,
                     idle_guild_size: int = 100, mix: dict[str, float] | None = None
                     ) -> Seeded:
    """The ``make run`` seed plus ``users`` users: the first ``members`` join its guild,
    the rest guilds of ``idle_guild_size`` members each. ``mix`` (``parse_mix``; None:
    all ``users``): the kinds of the members and of the rest, each shared out by it;
    ``bots`` are bot users (with their application's intents), the others users."""
    from gateway.seed import add_member, create_guild, create_user
    from greenroom.cli import _ensure_seeded
    from storage import make_storage
    from storage.schema import migrate
    from storage.settings import StorageSettings
    from storage.snowflake import SnowflakeGenerator

    db = str(Path(directory) / "greenroom.db")
    settings = StorageSettings(sqlite_path=db, sqlite_synchronous="OFF")
    migrate(settings)
    seeded = await _ensure_seeded(settings)
    storage = make_storage(settings)
    await storage.open()
    ids = SnowflakeGenerator(0, 1)
    weights = mix or parse_mix(DEFAULT_MIX)
    in_guild = min(users, members)
    kinds = assign_kinds(weights, in_guild) + assign_kinds(weights, users - in_guild)
    tokens = []
    try:
        idle_guild = None
        for i in range(users):
            if i >= members and (i - members) % idle_guild_size == 0:
                idle_guild, _ = await create_guild(storage, ids, f"idle{i}", seeded["user_id"])
            user_id, token = await create_user(storage, ids, f"load{i}",
                                               bot=kinds[i] == "bots")
            await add_member(storage, seeded["guild_id"] if i < members else idle_guild,
                             user_id)
            tokens.append(token)
    finally:
        await storage.close()
    return Seeded(directory, db, seeded["token"], seeded["guild_id"], seeded["channel_id"],
                  tokens, kinds)


@dataclass
class Server:
    process: subprocess.Popen
    pid: int  # the node process that serves the gateway (n1)
    gateway_url: str
    rest_url: str
    log_path: Path
    #: every node process by name (``--nodes``), from the ``node serving`` log events
    node_pids: dict[str, int] = field(default_factory=dict)
    #: node n1's Prometheus text (the operator port's ``/metrics``)
    metrics_url: str | None = None
    #: this shell's variables the server runs without (``start_gateway_server``)
    env_removed: list[str] = field(default_factory=list)


def free_port_run(count: int, host: str = "127.0.0.1") -> int:
    """A free port p with p + 1 .. p + count - 1 free too (``--operator-port``: node i
    serves it + i - 1). One free port alone made 2-node runs fail now and then: the next
    port was some other connection's ephemeral port."""
    import socket

    from cluster.launcher import free_port

    for _ in range(100):
        first = free_port(host)
        try:
            with contextlib.ExitStack() as held:
                for port in range(first + 1, first + count):
                    probe = held.enter_context(socket.socket())
                    probe.bind((host, port))
            return first
        except OSError:
            continue
    raise RuntimeError(f"no {count} consecutive free ports on {host}")


def tracing_env(config: str = "default", collector_url: str = "") -> dict[str, str | None]:
    """The node's environment changes for ``config`` (None: remove the variable).

    Every configuration starts from no tracing variable of this shell: ``default`` is
    the server as ``make run`` ships it (``start_gateway_server``'s default);
    ``sdk_disabled`` and ``exporting`` are the tracing-cost bench's others
    (``loadtest/tracing_cost.py``)."""
    env: dict[str, str | None] = {name: None for name in os.environ
                                  if name.startswith("OTEL_")}
    env["GREENROOM_TRACE_FILE"] = None
    env["GREENROOM_TRACES_IDENTIFY_RATIO"] = None
    if config == "sdk_disabled":
        env["OTEL_SDK_DISABLED"] = "true"
    elif config == "exporting":
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = collector_url
    elif config != "default":
        raise ValueError(f"unknown configuration {config!r}")
    return env


def start_gateway_server(db: str, log_path: Path, timeout: float = 60.0, *, nodes: int = 1,
                         port: int = 0, rest_port: int = 0,
                         env_overrides: dict[str, str | None] | None = None,
                         rate_limits: bool = False) -> Server:
    """``greenroom run --nodes N`` on SQLite ``db``; waits for all ``nodes`` node processes
    and the gateway. With several nodes give fixed ports: they share them (SO_REUSEPORT).

    The environment is this process's, as ``make run`` inherits the shell's, without its
    tracing variables (``tracing_env()``: every ``OTEL_*``, ``GREENROOM_TRACE_FILE``,
    ``GREENROOM_TRACES_IDENTIFY_RATIO``): tracing as shipped, nothing recorded, whatever
    the shell exports; the names removed are printed and kept in ``Server.env_removed``.
    ``env_overrides``: variables to set, or to remove where the value is None.
    ``rate_limits``: the shipped limits, as ``make run`` has them (else ``--no-rate-limits``)."""
    # SQLite's durability as shipped (synchronous=FULL: a WAL fsync per commit) unless
    # the shell chose otherwise, which is printed: the bench measures what make run runs
    env = dict(os.environ, GREENROOM_LOG_FORMAT="json", GREENROOM_SQLITE_PATH=db,
               PYTHONUNBUFFERED="1")
    if "GREENROOM_SQLITE_SYNCHRONOUS" in env:
        print(f"server environment: GREENROOM_SQLITE_SYNCHRONOUS="
              f"{env['GREENROOM_SQLITE_SYNCHRONOUS']} (make run ships FULL)", flush=True)
    for name, value in {**tracing_env(), **(env_overrides or {})}.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    removed = sorted(name for name in os.environ if name not in env)
    if removed:
        print(f"server environment: without {', '.join(removed)} (as make run ships it)",
              flush=True)
    log = open(log_path, "w")  # noqa: SIM115 - the server writes it until it stops
    operator_port = free_port_run(nodes)  # node i serves it + i - 1: n1's is read per rate
    process = subprocess.Popen(
        [sys.executable, "-m", "greenroom.cli", "run", "--nodes", str(nodes), "--port",
         str(port), "--rest-port", str(rest_port), "--operator-port", str(operator_port),
         *(() if rate_limits else ("--no-rate-limits",))], stdout=log,
        stderr=subprocess.STDOUT, cwd=ROOT, env=env, start_new_session=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        pids: dict[str, int] = {}
        for line in log_path.read_text().splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("event") == "node serving":
                pids[event["node"]] = event["pid"]
            if event.get("event") == "gateway serving" and len(pids) >= nodes:
                return Server(process, pids["n1"], event["gateway_url"], event["rest_url"],
                              log_path, pids,
                              f"http://127.0.0.1:{operator_port}/metrics", removed)
        time.sleep(0.2)
    process.kill()
    raise RuntimeError("greenroom run did not serve the gateway:\n" + log_path.read_text())


def stop_gateway_server(server: Server) -> None:
    server.process.send_signal(signal.SIGTERM)
    try:
        server.process.wait(30)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait(10)


# ------------------------------------------------------------------ receiving workers


def gateway_worker(index: int, url: str, tokens: list[str], members_share: int,
                   budget_s: float, conn: Connection, resume: bool = False,
                   compress: str | None = None, encoding: str = "json",
                   kinds: list[str] | None = None) -> None:
    """Process entry point: identify ``tokens`` on ``url`` (starting no new connection
    after ``budget_s``), then answer the pipe. ``resume``: a connection that drops
    reconnects to ``url`` and RESUMEs its session, as a Discord client does.
    ``compress``: ask for that transport compression and inflate every frame.
    ``kinds``: each token's kind of session (``KINDS``; None: all ``users``)."""
    import uvloop

    uvloop.run(_gateway_worker(index, url, tokens, members_share, budget_s, conn, resume,
                               compress, encoding, kinds))


async def _gateway_worker(index: int, url: str, tokens: list[str], members_share: int,
                          budget_s: float, conn: Connection, resume: bool = False,
                          compress: str | None = None, encoding: str = "json",
                          kinds: list[str] | None = None) -> None:
    import msgpack
    from picows import WSError, WSListener, WSMsgType, ws_connect

    if encoding != "json" and resume:
        raise ValueError("resume is driven in JSON only")
    if compress is not None or encoding != "json":
        url += ("&" if "?" in url else f"/?v=10&encoding={encoding}") + (
            f"&compress={compress}" if compress else "")
    # picows logs each connection at INFO: ~2.4 % of a worker's CPU, read by no one
    logging.getLogger("picows").setLevel(logging.WARNING)
    binary = WSMsgType.BINARY
    packb, unpackb = msgpack.packb, msgpack.unpackb
    loop = asyncio.get_running_loop()
    counts = [0] * MAX_STEPS
    undue = [0] * MAX_STEPS  # MESSAGE_CREATEs that reached passive sessions, per step
    scratch = [0] * BUCKETS
    histograms = [scratch] * MAX_STEPS
    text = WSMsgType.TEXT
    clock = time.monotonic_ns
    last_bucket = BUCKETS - 1
    head = b'{"t":"MESSAGE_CREATE"'
    state = {"ready": 0, "failed": 0, "closed": 0, "frame_bytes": 0,
             "resumed": 0, "resume_failed": 0, "last_resumed_ns": 0}
    seq_at = len(head) + len(b',"s":')
    resumed_head = b'{"t":"RESUMED"'

    class Client(WSListener):
        def __init__(self, token: str, kind: str = "users") -> None:
            self.token = token
            self.kind = kind
            self.opens = kind == "users"  # sends op 14 for its guilds at READY
            self.receives = kind != "passive"  # must get every MESSAGE_CREATE
            self.ready = loop.create_future()
            self.transport = None
            self.session_id: str | None = None  # kept only with ``resume``
            self.seq = 0  # the last dispatch's s: what a heartbeat acknowledges
            self.guilds_left = -1  # GUILD_CREATEs still due after READY
            self.stopping = False
            self.reconnecting = False  # one reconnect loop at a time
            self.live = False  # a socket is open now
            self.inflate = None

        def on_ws_connected(self, transport) -> None:
            self.transport = transport
            self.live = True
            self.inflate = make_inflater(compress)  # one stream per connection

        def on_ws_frame(self, transport, frame) -> None:
            now = clock()
            if frame.msg_type is text:
                payload = frame.get_payload_as_bytes()
            elif frame.msg_type is binary:
                payload = frame.get_payload_as_bytes()
                if self.inflate is not None:
                    payload = self.inflate(payload)
                if encoding == "msgpack":
                    self.on_msgpack(transport, unpackb(payload, raw=False), now, len(payload))
                    return
            else:
                return
            if payload.startswith(head):
                self.seq = int(payload[seq_at:payload.index(b",", seq_at)])
                i = payload.find(MARK)
                if i < 0:
                    return
                step = int(payload[i + _STEP.start:i + _STEP.stop])
                if not self.receives:
                    undue[step] += 1
                    return
                bucket = (now - int(payload[i + _TS.start:i + _TS.stop])) // (BUCKET_US * 1000)
                histograms[step][bucket if bucket < last_bucket else last_bucket] += 1
                counts[step] += 1
                state["frame_bytes"] = len(payload)
                return
            if not resume and payload.startswith(b'{"t":"'):  # a dispatch
                at = payload.index(b',"s":') + 5
                self.seq = int(payload[at:payload.index(b",", at)])
                if self.guilds_left > 0 and payload.startswith(b'{"t":"GUILD_CREATE"'):
                    self.guilds_left -= 1
                    if self.guilds_left == 0:
                        # the first heartbeat, as a Discord client sends it within one
                        # interval of HELLO (jitter ~0 here): it acknowledges READY and
                        # GUILD_CREATE, which the server then forgets (DispatchLog.ack)
                        transport.send(text, b'{"op":1,"d":%d}' % self.seq)
            if resume and payload.startswith(b'{"t":'):
                event = json.loads(payload)
                if event.get("s") is not None:
                    self.seq = event["s"]
                if payload.startswith(resumed_head):
                    state["resumed"] += 1
                    state["last_resumed_ns"] = now
                elif payload.startswith(b'{"t":"READY"'):
                    self.session_id = event["d"]["session_id"]
            if self.ready.done() and not (resume and self.session_id):
                return
            if payload.startswith(b'{"t":"READY"'):
                if not self.ready.done():
                    # A user client opens its guild (op 14), as Discord's clients do when
                    # the user views it: until then its session is passive there and gets
                    # no message events (gateway/fanout.py). Bots send none.
                    guilds = json.loads(payload)["d"]["guilds"]
                    self.guilds_left = len(guilds)
                    for guild in guilds if self.opens else ():
                        transport.send(text, json.dumps(
                            {"op": 14, "d": {"guild_id": guild["id"]}}).encode())
                    self.ready.set_result(True)
                return
            try:
                op = json.loads(payload).get("op")
            except ValueError:
                return
            if op == 10 and resume and self.session_id:
                transport.send(text, json.dumps({"op": 6, "d": {
                    "token": self.token, "session_id": self.session_id, "seq": self.seq},
                }).encode())
            elif op == 9 and resume and self.session_id:
                state["resume_failed"] += 1
                self.stopping = True
                transport.disconnect()
            elif op == 10:
                transport.send(text, json.dumps({"op": 2, "d": {
                    "token": self.token, "intents": INTENTS,
                    "properties": {"os": "linux", "browser": "load", "device": "load"}}}
                ).encode())
            elif op == 9:
                self.ready.set_exception(RuntimeError("invalid session"))

        def on_msgpack(self, transport, event: dict, now: int, size: int) -> None:
            """``on_ws_frame`` for ``encoding=msgpack``: every payload decoded whole, as
            a msgpack client must (no byte-level shortcut), answered in msgpack."""
            t, d = event.get("t"), event.get("d")
            if event.get("s") is not None:
                self.seq = event["s"]
            if t == "MESSAGE_CREATE":
                text_ = d.get("content") or ""
                i = text_.find("@ts=")
                if i >= 0:
                    step = int(text_[i + _STEP.start:i + _STEP.stop])
                    if not self.receives:
                        undue[step] += 1
                        return
                    sent = int(text_[i + _TS.start:i + _TS.stop])
                    bucket = (now - sent) // (BUCKET_US * 1000)
                    histograms[step][bucket if bucket < last_bucket else last_bucket] += 1
                    counts[step] += 1
                    state["frame_bytes"] = size
                return
            if t == "GUILD_CREATE" and self.guilds_left > 0:
                self.guilds_left -= 1
                if self.guilds_left == 0:  # the first heartbeat (see the JSON path)
                    transport.send(binary, packb({"op": 1, "d": self.seq}))
                return
            if t == "READY" and not self.ready.done():
                guilds = d["guilds"]
                self.guilds_left = len(guilds)
                for guild in guilds if self.opens else ():
                    transport.send(binary, packb({"op": 14, "d": {"guild_id": guild["id"]}}))
                self.ready.set_result(True)
                return
            op = event.get("op")
            if op == 10:
                transport.send(binary, packb({"op": 2, "d": {
                    "token": self.token, "intents": INTENTS,
                    "properties": {"os": "linux", "browser": "load", "device": "load"}}}))
            elif op == 9 and not self.ready.done():
                self.ready.set_exception(RuntimeError("invalid session"))

        def heartbeat(self) -> None:
            """op 1 with the last ``s``, in the connection's encoding."""
            if encoding == "msgpack":
                self.transport.send(binary, packb({"op": 1, "d": self.seq}))
            else:
                self.transport.send(text, b'{"op":1,"d":%d}' % self.seq)

        def on_ws_disconnected(self, transport) -> None:
            state["closed"] += 1
            self.live = False
            if not self.ready.done():
                self.ready.set_exception(ConnectionError("closed before READY"))
            elif resume and self.session_id and not self.stopping \
                    and not self.reconnecting:
                loop.create_task(reconnect(self))

    async def reconnect(client: Client) -> None:
        """Connect again (the port may refuse for a moment while a node dies) and let
        HELLO trigger the RESUME; gives up after 30 s."""
        deadline = time.monotonic() + 30.0
        client.reconnecting = True
        try:
            while not client.stopping and time.monotonic() < deadline:
                try:
                    await ws_connect(lambda: client, url, websocket_handshake_timeout=5,
                                     use_aiofastnet=CLIENT_USE_AIOFASTNET)
                    if client.live:
                        return
                    # closed again before this loop resumed (its on_ws_disconnected saw
                    # the loop still running and left the reconnect to it): go on
                    await asyncio.sleep(0.05)
                except (TimeoutError, OSError, WSError):
                    # WSError: the handshake failed (a node dying or starting up under
                    # the shared port answered it); it is not an OSError, and an
                    # uncaught one ended this loop and the client with it
                    await asyncio.sleep(0.05)
            state["resume_failed"] += 1
        finally:
            client.reconnecting = False

    clients: list[Client] = []
    first_ns = clock()
    last_ns = first_ns

    async def connect(token: str, kind: str) -> None:
        nonlocal last_ns
        try:
            _, client = await ws_connect(lambda: Client(token, kind), url,
                                         websocket_handshake_timeout=30,
                                         use_aiofastnet=CLIENT_USE_AIOFASTNET)
            if client is None:  # seen on a loaded host: counted, not an uncaught error
                raise ConnectionError("the WebSocket handshake gave no listener")
            await asyncio.wait_for(client.ready, 30)
        except (TimeoutError, OSError, RuntimeError, ConnectionError):
            state["failed"] += 1
            return
        clients.append(client)
        state["ready"] += 1
        last_ns = clock()

    async def progress() -> None:
        while True:
            await asyncio.sleep(2.0)
            print(f"  worker {index}: {state['ready']:,}/{len(tokens):,} identified"
                  f" ({state['failed']} failed)", file=sys.stderr, flush=True)

    async def heartbeat() -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_EVERY_S)
            for n, client in enumerate(list(clients)):
                if not client.transport.is_disconnected:  # d: the last s received
                    client.heartbeat()
                if n % 500 == 499:
                    await asyncio.sleep(0)

    beating = asyncio.create_task(heartbeat())

    reporter = asyncio.create_task(progress())
    pending: set[asyncio.Task] = set()
    stop_at = time.monotonic() + budget_s
    members_done_ns = 0
    for i, token in enumerate(tokens):
        if i == members_share and pending:
            await asyncio.wait(pending, timeout=60)
            pending = set()
            members_done_ns = clock()
        if time.monotonic() > stop_at:
            print(f"  worker {index}: identify budget of {budget_s:g} s spent",
                  file=sys.stderr, flush=True)
            break
        if len(pending) >= CONNECT_WINDOW:
            _, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        pending.add(asyncio.create_task(connect(token, kinds[i] if kinds else "users")))
    if pending:
        await asyncio.wait(pending, timeout=60)
    reporter.cancel()
    # keep the order of ``tokens`` so "the first k" are the guild members
    order = {token: i for i, token in enumerate(tokens)}
    clients.sort(key=lambda c: order[c.token])

    def passive() -> int:
        return sum(not c.receives for c in clients)

    send(conn, ("ready", state["ready"], state["failed"], first_ns, last_ns,
                members_done_ns or last_ns, passive()))

    while True:
        try:
            command = await recv(conn, None)
        except (EOFError, OSError):
            break
        match command:
            case ("keep", k):
                for client in clients[k:]:
                    client.stopping = True
                    client.transport.send_close()
                    client.transport.disconnect()
                clients = clients[:k]
                await asyncio.sleep(0.5)
                send(conn, ("kept", len(clients), state["closed"], passive()))
            case ("begin", step):
                histograms[step] = [0] * BUCKETS
                send(conn, "ok")
            case ("count", step):
                send(conn, counts[step])
            case ("report", step):
                histogram = {b: c for b, c in enumerate(histograms[step]) if c}
                histograms[step] = scratch
                send(conn, (counts[step], histogram))
            case ("undue", step):
                send(conn, undue[step])
            case ("frame_bytes",):
                send(conn, state["frame_bytes"])
            case ("resumed",):
                send(conn, (state["resumed"], state["resume_failed"],
                            state["last_resumed_ns"]))
            case ("stop",):
                break
    beating.cancel()
    for client in clients:
        client.stopping = True
        client.transport.send_close()
        client.transport.disconnect()
    send(conn, ("stopped",))


async def start_gateway_workers(url: str, tokens: list[str], members: int,
                                processes: int, budget_s: float = 120.0,
                                resume: bool = False, compress: str | None = None,
                                encoding: str = "json", kinds: list[str] | None = None
                                ) -> tuple[Workers, float, float, int]:
    """Workers holding every token's session; each gets an equal share of the first
    ``members`` tokens first. ``kinds``: each token's kind of session (``Seeded.kinds``;
    None: all ``users``); ``workers.passive`` counts the passive ones identified.
    Answers (workers, identifies/s overall, identifies/s of the guild members alone,
    failures)."""
    context = multiprocessing.get_context("spawn")
    workers = Workers()
    kinds = kinds or ["users"] * len(tokens)
    shares: list[list[str]] = [[] for _ in range(processes)]
    share_kinds: list[list[str]] = [[] for _ in range(processes)]
    for i, (token, kind) in enumerate(zip(tokens[:members], kinds[:members], strict=True)):
        shares[i % processes].append(token)
        share_kinds[i % processes].append(kind)
    shares_members = [len(share) for share in shares]
    for i, (token, kind) in enumerate(zip(tokens[members:], kinds[members:], strict=True)):
        shares[i % processes].append(token)
        share_kinds[i % processes].append(kind)
    for index, share in enumerate(shares):
        parent, child = context.Pipe()
        process = context.Process(target=gateway_worker, daemon=True, args=(
            index, url, share, shares_members[index], budget_s, child, resume, compress,
            encoding, share_kinds[index]))
        process.start()
        workers.processes.append(process)
        workers.pipes.append(parent)
    firsts, lasts, members_done, failed = [], [], [], 0
    for pipe in workers.pipes:
        _, ready, bad, first_ns, last_ns, done_ns, passive = await recv(pipe,
                                                                        budget_s + 120.0)
        workers.connected += ready
        workers.passive += passive
        failed += bad
        firsts.append(first_ns)
        lasts.append(last_ns)
        members_done.append(done_ns)
    seconds = (max(lasts) - min(firsts)) / 1e9
    members_s = (max(members_done) - min(firsts)) / 1e9
    return (workers, workers.connected / seconds if seconds > 0 else 0.0,
            min(members, workers.connected) / members_s if members_s > 0 else 0.0, failed)


async def keep_members(workers: Workers, members: int) -> int:
    share = [members // len(workers.pipes) + (i < members % len(workers.pipes))
             for i in range(len(workers.pipes))]
    kept = passive = 0
    for pipe, k in zip(workers.pipes, share, strict=True):
        _, n, _closed, n_passive = await call(pipe, ("keep", k))
        kept += n
        passive += n_passive
    workers.connected, workers.passive = kept, passive
    return kept


# ------------------------------------------------------------------ the REST sender


class RestSender:
    """The seeded bot posting into the channel over one keep-alive connection pool.

    ``retry_s`` > 0: a post answered 503 (it reached no live owner: not acknowledged)
    or whose connection failed (its node died) is sent again, after the answer's
    ``Retry-After`` (at most ``RETRY_PAUSE_S``), on a new connection if need be, for at
    most ``retry_s`` seconds. Only acknowledged posts (200) count as must-be-delivered:
    ``acknowledged[step]``."""

    #: the longest pause between two tries of one post
    RETRY_PAUSE_S = 0.25
    #: one request's bound: above the REST layer's 15 s ask timeout
    REQUEST_TIMEOUT_S = 20.0

    def __init__(self, rest_url: str, token: str, channel_id: int, size: int,
                 max_in_flight: int = 128, retry_s: float = 0.0) -> None:
        self.url = f"{rest_url}/channels/{channel_id}/messages"
        self.headers = {"Authorization": f"Bot {token}", "Content-Type": "application/json"}
        self.size = size
        self.max_in_flight = max_in_flight
        self.retry_s = retry_s
        self.session = None
        self.errors = 0
        self.retries = 0
        self.acknowledged: dict[int, int] = {}
        self.post_ms: list[float] = []

    async def open(self) -> None:
        import aiohttp

        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self.max_in_flight),
            timeout=aiohttp.ClientTimeout(total=self.REQUEST_TIMEOUT_S))

    async def close(self) -> None:
        await self.session.close()

    async def post(self, step: int, n: int, retry_s: float | None = None) -> bool:
        """Post one message; True if it was acknowledged (200). ``retry_s``: this post's
        retry budget (None: the sender's)."""
        budget = self.retry_s if retry_s is None else retry_s
        give_up = time.monotonic() + budget
        while True:
            started = time.monotonic_ns()
            body = json.dumps({"content": content(started, step, n, self.size)})
            pause = None
            try:
                async with self.session.post(self.url, data=body,
                                             headers=self.headers) as answer:
                    await answer.read()
                    if answer.status == 200:
                        self.post_ms.append((time.monotonic_ns() - started) / 1e6)
                        self.acknowledged[step] = self.acknowledged.get(step, 0) + 1
                        return True
                    if answer.status == 503:  # not acknowledged: a retry is correct
                        try:
                            pause = float(answer.headers.get("Retry-After", "0"))
                        except ValueError:
                            pause = 0.0
            except Exception:  # the connection failed: its node died, try another
                pause = 0.0
            if pause is None or time.monotonic() >= give_up:
                self.errors += 1
                self.post_ms.append((time.monotonic_ns() - started) / 1e6)
                return False
            self.retries += 1
            await asyncio.sleep(min(pause, self.RETRY_PAUSE_S,
                                    max(0.0, give_up - time.monotonic())))

    async def send_step(self, step: int, rate: float, duration: float,
                        drain_s: float) -> tuple[int, float]:
        """Post ``rate`` messages/s for ``duration`` s (at most ``max_in_flight`` at once,
        ``pace``); answers (messages posted, seconds it took)."""
        def one(n: int) -> asyncio.Task:
            return asyncio.create_task(self.post(step, n))

        return await pace(rate, duration, one, max_in_flight=self.max_in_flight,
                          wait_s=drain_s + 10)


async def run_gateway_step(sender: RestSender, workers: Workers, server_pid: int, step: int,
                           rate: float, duration: float, drain_s: float,
                           max_p99_ms: float) -> StepResult:
    """``loadtest.ws_baseline.load.run_step`` with the REST sender."""
    return await measure_step(sender.send_step(step, rate, duration, drain_s), workers,
                              server_pid, step, rate, drain_s, max_p99_ms)


#: ``gateway.stages``' histogram as the operator port renders it, the node's GC pauses
#: and its event loop's lag (observability/actor_metrics.py)
STAGE_BUCKET = re.compile(
    r'^gateway_message_stage_seconds_bucket\{(?P<labels>[^}]*)\} (?P<count>[0-9.e+]+)$')
GC_PAUSE = re.compile(
    r'^python_gc_pause_seconds_(?P<part>bucket|sum)\{(?P<labels>[^}]*)\} (?P<value>[0-9.e+-]+)$')
LOOP_LAG = re.compile(r'^actor_loop_lag_seconds_bucket\{(?P<labels>[^}]*)\} (?P<value>[0-9.e+]+)$')
#: a loop-lag probe later than this counts as a stall in the bench's lines
STALL_S = 0.01


@dataclass
class NodeReading:
    """One reading of a node's ``/metrics``: the stage histogram's buckets, stage ->
    {le: count}; the GC pauses' buckets, all generations together, {le: count}, with
    their sum in seconds; the loop-lag probe's buckets (cumulative, as Prometheus gives
    them); ``ok``: the port answered."""

    ok: bool = False
    stages: dict[str, dict[float, float]] = field(default_factory=dict)
    gc_buckets: dict[float, float] = field(default_factory=dict)
    gc_seconds: float = 0.0
    lag_buckets: dict[float, float] = field(default_factory=dict)


async def read_node(sender: RestSender, metrics_url: str | None) -> NodeReading:
    """The node's stage, GC and loop-lag histograms; empty if the operator port did not
    answer."""
    reading = NodeReading()
    if metrics_url is None or sender.session is None:
        return reading
    import aiohttp

    try:
        async with sender.session.get(metrics_url) as resp:
            text = await resp.text()
    except (OSError, TimeoutError, aiohttp.ClientError):
        return reading
    reading.ok = True
    for line in text.splitlines():
        if (found := STAGE_BUCKET.match(line)) is not None:
            labels = _labels(found["labels"])
            reading.stages.setdefault(labels.get("stage", "?"), {})[_le(labels)] = \
                float(found["count"])
        elif (found := GC_PAUSE.match(line)) is not None:
            if found["part"] == "sum":
                reading.gc_seconds += float(found["value"])
            else:
                le = _le(_labels(found["labels"]))
                reading.gc_buckets[le] = reading.gc_buckets.get(le, 0.0) + float(found["value"])
        elif (found := LOOP_LAG.match(line)) is not None:
            reading.lag_buckets[_le(_labels(found["labels"]))] = float(found["value"])
    return reading


def _labels(text: str) -> dict[str, str]:
    """A sample's labels as the exposition writes them: ``a="x",b="y"``."""
    return dict(re.findall(r'(\w+)="([^"]*)"', text))


def _le(labels: dict[str, str]) -> float:
    return float("inf") if labels.get("le") == "+Inf" else float(labels.get("le", "nan"))


def gc_pauses(before: NodeReading, after: NodeReading) -> dict[str, float | None] | None:
    """The node's GC collections between two readings: how many, their time in all
    (ms), and the upper bound of the bucket the longest fell in (ms; None: above the
    last bound); None when either reading failed or had no such histogram (not known,
    rather than none)."""
    if not (before.ok and after.ok and after.gc_buckets):
        return None
    total, longest = _count_and_longest(before.gc_buckets, after.gc_buckets)
    return {"collections": total,
            "pause_ms": round((after.gc_seconds - before.gc_seconds) * 1000, 1),
            "longest_ms_at_most": longest}


def loop_stalls(before: NodeReading, after: NodeReading) -> dict[str, float | None] | None:
    """The node's loop-lag probes between two readings that ran more than ``STALL_S``
    late: how many, and the upper bound of the bucket the latest fell in (ms; None:
    above the last bound); None when either reading failed or had no such histogram
    (or ``STALL_S`` is not one of its bounds)."""
    if not (before.ok and after.ok) or STALL_S not in after.lag_buckets:
        return None

    def above(reading: NodeReading) -> dict[float, float]:
        # cumulative counts of the probes later than STALL_S (one of the bounds)
        at = reading.lag_buckets.get(STALL_S, 0.0)
        return {b: c - at for b, c in reading.lag_buckets.items() if b > STALL_S}

    total, latest = _count_and_longest(above(before), above(after))
    return {"late_probes": total, "latest_ms_at_most": latest}


def _count_and_longest(before: dict[float, float], after: dict[float, float]
                       ) -> tuple[int, float | None]:
    """Observations between two readings of cumulative buckets {le: count}, and the
    upper bound of the bucket the largest fell in (ms, 0 for none; None: above the last
    bound)."""
    bounds = sorted(after)
    deltas = [after[b] - before.get(b, 0.0) for b in bounds]
    total = deltas[-1] if deltas else 0.0
    if total <= 0:
        return 0, 0.0
    # the largest is in the first bucket that holds them all
    largest = next(b for b, d in zip(bounds, deltas, strict=True) if d >= total)
    return round(total), None if largest == float("inf") else round(largest * 1000, 2)


def at_most(bound_ms: float | None, last_ms: float) -> str:
    """A bucket's upper bound as the bench prints it: "<= 50", or "over 1000"."""
    return f"over {last_ms:g}" if bound_ms is None else f"<= {bound_ms:g}"


def stage_quantiles_ms(before: dict[str, dict[float, float]],
                       after: dict[str, dict[float, float]]) -> dict[str, dict[str, float | None]]:
    """Per stage, the p50 and p99 of what was recorded between two readings (ms),
    interpolated linearly within the bucket each falls in (the buckets are 0.1 ms ... 2 s,
    too coarse at 0.5/1/2 ms to read a p50 off a bound); None above the last bound."""
    out: dict[str, dict[str, float | None]] = {"p50": {}, "p99": {}}
    for stage, buckets in sorted(after.items()):
        old = before.get(stage, {})
        bounds = sorted(buckets)
        deltas = [buckets[b] - old.get(b, 0.0) for b in bounds]
        total = deltas[-1] if deltas else 0.0
        if total <= 0:
            continue
        for name, q in (("p50", 0.5), ("p99", 0.99)):
            want, low, below = total * q, 0.0, 0.0
            for bound, count in zip(bounds, deltas, strict=True):
                if count >= want:
                    if bound == float("inf"):
                        out[name][stage] = None
                    else:
                        share = (want - below) / (count - below) if count > below else 1.0
                        out[name][stage] = round((low + (bound - low) * share) * 1000, 2)
                    break
                low, below = bound, count
    return out


# ------------------------------------------------------------------ rising rates


def fmt_ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def print_step(result: StepResult) -> None:
    lost = result.expected - result.delivered
    verdict = ("ok" if result.ok else "p99 over" if result.all_delivered
               else "UNDUE" if result.undue else "LOST")
    print(
        f"  {result.rate:>6.0f} msg/s  {result.deliveries_per_s:>10,.0f} deliveries/s"
        f"  p50 {fmt_ms(result.p50_ms):>6} ms  p99 {fmt_ms(result.p99_ms):>7} ms"
        f"  lost {lost:>7,}{f'  undue {result.undue:,}' if result.undue else ''}"
        f"  cpu: server {result.server_cpu:>4.0%}"
        f" clients {result.clients_cpu:>4.0%} other {result.other_cpu:>4.0%}"
        f"  {verdict}",
        flush=True,
    )


async def rising_rates(run_step, rates: list[float], wait_quiet: float,
                       deadline: float) -> list[StepResult]:
    """Run ``run_step(step, rate)`` at rising rates until two steps in a row fail (or
    one loses messages), or ``deadline`` (monotonic) passes. A step during which other
    processes used more than a quarter of a core is repeated once."""
    steps: list[StepResult] = []
    step, failures = 0, 0
    for rate in rates:
        if time.monotonic() > deadline:
            print("  (time budget spent: no higher rates)", flush=True)
            break
        result = None
        for attempt in range(2):
            attempt_result = await run_step(step, rate)
            step += 1
            print_step(attempt_result)
            # of two attempts, keep the one other work disturbed less
            if result is None or attempt_result.other_cpu < result.other_cpu:
                result = attempt_result
            if result.other_cpu <= CONTAMINATED or attempt or time.monotonic() > deadline:
                break
            print("    other work shared the host: repeating once it is quiet", flush=True)
            await wait_for_quiet_host(wait_quiet)
        steps.append(result)
        failures = 0 if result.ok else failures + 1
        if not result.all_delivered or failures >= 2 or step >= MAX_STEPS - 2:
            break
        await asyncio.sleep(0.3)
    return steps


def summarize(steps: list[StepResult]) -> dict:
    best = max((s for s in steps if s.ok), key=lambda s: s.deliveries_per_s, default=None)
    return {
        "max_deliveries_per_s": round(best.deliveries_per_s) if best else 0,
        "max_rate_msgs_per_s": best.rate if best else 0,
        "p50_ms": best.p50_ms if best else None,
        "p99_ms": best.p99_ms if best else None,
        "saturation_deliveries_per_s": round(max(
            (s.deliveries_per_s for s in steps if s.all_delivered), default=0.0)),
        "steps": [{"rate": s.rate, "deliveries_per_s": round(s.deliveries_per_s),
                   "lost": s.expected - s.delivered, "undue": s.undue,
                   "p50_ms": s.p50_ms, "p99_ms": s.p99_ms,
                   "max_ms": s.max_ms, "server_cpu": round(s.server_cpu, 2),
                   "clients_cpu": round(s.clients_cpu, 2),
                   "other_cpu": round(s.other_cpu, 2)} for s in steps],
    }


#: the load generator's share of its CPUs (its workers' CPU over them) at which a phase
#: that stopped counts as stopped by the load generator: the rest of those CPUs is the
#: sender's and the bench's own
CLIENT_BOUND_SHARE = 0.8
#: ... unless the server was at this share of its own CPUs too: then it had no room left
#: either, and the maximum is the server's
SERVER_FULL_SHARE = 0.9


def client_bound(summary: dict, client_cpus: int, server_cpus: int) -> bool:
    """Whether the first step past the phase's maximum had the clients at
    ``CLIENT_BOUND_SHARE`` of their ``client_cpus`` while the server still had room
    (below ``SERVER_FULL_SHARE`` of its ``server_cpus``): a figure bound by the load
    generator, not by the server."""
    past = [s for s in summary["steps"] if s["rate"] > summary["max_rate_msgs_per_s"]]
    return (bool(past) and past[0]["clients_cpu"] >= CLIENT_BOUND_SHARE * client_cpus
            and past[0]["server_cpu"] < SERVER_FULL_SHARE * server_cpus)


def plot(results: dict[str, dict], path: Path, max_p99_ms: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for (name, result), color in zip(results.items(), ("tab:blue", "tab:orange"),
                                     strict=False):
        steps = [s for s in result["steps"] if s["p99_ms"] is not None]
        x = [s["deliveries_per_s"] for s in steps]
        ax.plot(x, [s["p50_ms"] for s in steps], "o-", color=color, label=f"{name} p50")
        ax.plot(x, [s["p99_ms"] for s in steps], "s--", color=color, label=f"{name} p99")
    ax.axhline(max_p99_ms, color="grey", linestyle=":", label=f"p99 bound {max_p99_ms:g} ms")
    ax.set_xlabel("deliveries/s (messages/s x online members)")
    ax.set_ylabel("send -> deliver latency (ms)")
    ax.set_yscale("log")
    ax.set_title("greenroom gateway fan-out vs bare picows broadcast (loopback)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)


# ------------------------------------------------------------------ the whole run


async def wait_for_idle_process(pid: int, max_wait_s: float, below: float = 0.1) -> float:
    """Wait (at most ``max_wait_s``) until ``pid`` uses less than ``below`` of a core
    over one second (e.g. after thousands of sessions closed); answers seconds waited."""
    started = time.monotonic()
    while time.monotonic() - started < max_wait_s:
        before = cpu_seconds(pid)
        await asyncio.sleep(1.0)
        if cpu_seconds(pid) - before < below:
            break
    return time.monotonic() - started


def raise_fd_limit(need: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, max(soft, need))
    if want > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


async def run_baseline(args: argparse.Namespace, frame_bytes: int,
                       deadline: float, receivers: int | None = None,
                       server_cpus: set[int] | None = None,
                       client_cpus: set[int] | None = None) -> dict:
    """The bare broadcast server with ``receivers`` clients (None: ``--members``): as
    many as the gateway's sessions that receive the messages; placed as the gateway's
    phase was (``cpu_plan``)."""
    from loadtest.bench_ws_libs import start_server, start_workers, stop_server
    from loadtest.ws_baseline.load import connect_sender, run_step

    run_on(server_cpus)
    server, port = start_server("picows", args.compress)
    run_on(client_cpus)
    url = f"ws://127.0.0.1:{port}/"
    workers = None
    try:
        started = time.monotonic()
        workers = await start_workers(url, args.members if receivers is None else receivers,
                                      args.processes, args.compress)
        print(f"baseline: {workers.connected} clients connected in "
              f"{time.monotonic() - started:.1f} s; {frame_bytes}-byte frames", flush=True)
        sender = await connect_sender(url + "send")

        async def step(n: int, rate: float) -> StepResult:
            return await run_step(sender, workers, server.pid, n, rate, args.duration,
                                  frame_bytes, args.drain, args.max_p99_ms)

        steps = await rising_rates(step, args.rates, args.wait_quiet, deadline)
        rss = rss_bytes(server.pid)
        sender.send_close()
        sender.disconnect()
    finally:
        if workers is not None:
            await stop_workers(workers)
        stop_server(server)
    return {"clients": workers.connected, "server_rss_bytes": rss, **summarize(steps)}


async def run(args: argparse.Namespace) -> dict:
    """The phases (``_run``); this process's CPUs are its own again afterwards, pinned or
    not (``--placement``), whatever happened."""
    usable = os.sched_getaffinity(0)
    try:
        return await _run(args, usable)
    finally:
        run_on(usable)


async def _run(args: argparse.Namespace, usable: set[int]) -> dict:
    started = time.monotonic()
    deadline = started + args.budget
    sessions = max(args.sessions, args.members)
    raise_fd_limit(sessions + 2048)
    directory = tempfile.mkdtemp(prefix="greenroom-load-")
    print(f"seeding {sessions:,} users ({args.members:,} in the guild) in {directory}",
          flush=True)
    seeded = await seed_users(directory, sessions, args.members, args.idle_guild_size,
                              args.mix)
    print(f"  seeded in {time.monotonic() - started:.1f} s", flush=True)
    server_cpus, client_cpus, placement = cpu_plan(args.server_cpus, args.client_cpus,
                                                   placement=args.placement)
    print(f"placement: {placement}", flush=True)
    run_on(server_cpus)
    server = start_gateway_server(seeded.db, Path(directory) / "server.log")
    run_on(client_cpus)
    print(f"gateway {server.gateway_url} REST {server.rest_url} (node pid {server.pid})",
          flush=True)
    workers = None
    sender = None
    result: dict = {"sessions_requested": sessions, "members": args.members,
                    "mix": mix_name(args.mix), "compress": args.compress,
                    "encoding": args.encoding, "server_env_removed": server.env_removed,
                    "placement": placement,
                    "client_cpus": len(client_cpus or usable),
                    "server_cpus": len(server_cpus or usable)}
    try:
        await asyncio.sleep(1.0)
        rss0 = rss_bytes(server.pid)
        t0 = time.monotonic()
        cpu0 = cpu_seconds(server.pid)
        workers, identify_rate, members_rate, failed = await start_gateway_workers(
            server.gateway_url, seeded.tokens, args.members, args.processes,
            args.identify_budget, compress=args.compress, encoding=args.encoding,
            kinds=seeded.kinds)
        # the node's CPU per IDENTIFY: its ceiling is 1000 / this identifies/s on one core,
        # a figure other work on the host disturbs less than identify_per_s
        cpu_ms = (cpu_seconds(server.pid) - cpu0) * 1000 / max(1, workers.connected)
        # and the clients' (their processes' whole CPU, start-up included): on a host where
        # they share the node's cores, identify_per_s is bound by the sum of the two
        client_ms = sum(cpu_seconds(p.pid) for p in workers.processes) * 1000 / max(
            1, workers.connected)
        await asyncio.sleep(2.0)  # let the server settle (guild subscriptions, GC)
        if args.idle_wait:
            print(f"  idling {args.idle_wait:g} s (heartbeats only)", flush=True)
            await asyncio.sleep(args.idle_wait)
        rss1 = rss_bytes(server.pid)
        identified = workers.connected
        per_session = (rss1 - rss0) / identified if identified else None
        print(f"identified {identified:,} sessions ({failed} failed) in "
              f"{time.monotonic() - t0:.1f} s: {identify_rate:,.0f} identifies/s (the"
              f" {args.members:,} members of the big guild: {members_rate:,.0f}/s); server RSS "
              f"{rss0 / 2**20:.1f} -> {rss1 / 2**20:.1f} MiB = "
              f"{(per_session or 0) / 1024:.1f} KiB per session; server CPU "
              f"{cpu_ms:.2f} ms per identify (clients {client_ms:.2f} ms)", flush=True)
        result.update(sessions=identified, identify_failed=failed,
                      identify_per_s=round(identify_rate),
                      server_cpu_ms_per_identify=round(cpu_ms, 3),
                      client_cpu_ms_per_identify=round(client_ms, 3),
                      identify_per_s_big_guild=round(members_rate),
                      server_rss_before_bytes=rss0, server_rss_with_sessions_bytes=rss1,
                      rss_bytes_per_session=round(per_session) if per_session else None)
        if args.identify_only:  # the identify and idle-session phases only
            result["seconds"] = round(time.monotonic() - started, 1)
            return result
        if identified > args.members:
            kept = await keep_members(workers, args.members)
            print(f"closed the idle sessions; {kept:,} guild members stay online", flush=True)
            settled = await wait_for_idle_process(server.pid, 30.0)
            print(f"  server settled in {settled:.1f} s", flush=True)
        sender = RestSender(server.rest_url, seeded.bot_token, seeded.channel_id,
                            args.content_size)
        await sender.open()
        await wait_for_quiet_host(args.wait_quiet)
        receivers = workers.connected - workers.passive
        print(f"gateway fan-out: 1 sender -> {workers.connected:,} online members "
              f"({receivers:,} receive: {mix_name(args.mix)}), {args.duration:g} s per rate",
              flush=True)

        # the node's figures per attempt (a step repeated at the same rate has its own;
        # the kept one's go in the summary)
        node_figures: dict[int, dict] = {}

        async def step(n: int, rate: float) -> StepResult:
            before = await read_node(sender, server.metrics_url)
            result = await run_gateway_step(sender, workers, server.pid, n, rate,
                                            args.duration, args.drain, args.max_p99_ms)
            after = await read_node(sender, server.metrics_url)
            tails = stage_quantiles_ms(
                before.stages, after.stages) if before.ok and after.ok else {}
            for name, by_stage in tails.items():
                if by_stage:
                    print(f"      {name} by stage (ms): " + ", ".join(
                        f"{k} {fmt_ms(v)}" for k, v in by_stage.items()), flush=True)
            pauses = gc_pauses(before, after)
            if pauses and pauses["collections"]:
                print(f"      gc: {pauses['collections']} collections, "
                      f"{pauses['pause_ms']} ms in all, the longest "
                      f"{at_most(pauses['longest_ms_at_most'], 1000)} ms", flush=True)
            stalls = loop_stalls(before, after)
            if stalls and stalls["late_probes"]:
                print(f"      loop: {stalls['late_probes']} probes over "
                      f"{STALL_S * 1000:g} ms late, the latest "
                      f"{at_most(stalls['latest_ms_at_most'], 2500)} ms", flush=True)
            node_figures[id(result)] = {
                "stage_p50_ms": tails.get("p50", {}), "stage_p99_ms": tails.get("p99", {}),
                "gc": pauses, "loop_stalls": stalls}
            return result

        gateway_deadline = started + args.budget * 0.75 if args.baseline else deadline
        steps = await rising_rates(step, args.rates, args.wait_quiet, gateway_deadline)
        frame_bytes = max([await call(p, ("frame_bytes",)) for p in workers.pipes])
        posts = sorted(sender.post_ms)
        result["gateway"] = {
            "clients": workers.connected, "receivers": receivers,
            "passive": workers.passive,
            "sessions_by_kind": dict(zip(KINDS, [
                sum(k == kind for k in seeded.kinds[:args.members]) for kind in KINDS],
                strict=True)),
            "dispatch_frame_bytes": frame_bytes,
            "post_errors": sender.errors,
            "post_p50_ms": round(posts[len(posts) // 2], 2) if posts else None,
            "post_p99_ms": round(posts[int(len(posts) * 0.99)], 2) if posts else None,
            "server_rss_bytes": rss_bytes(server.pid), **summarize(steps)}
        result["gateway"]["client_bound"] = client_bound(
            result["gateway"], result["client_cpus"], result["server_cpus"])
        for entry, kept in zip(result["gateway"]["steps"], steps, strict=True):
            entry.update(node_figures[id(kept)])  # every kept attempt came from step()
    finally:
        if sender is not None:
            await sender.close()
        if workers is not None:
            await stop_workers(workers, stop_timeout=20.0)  # sessions close slowly
        stop_gateway_server(server)
    if args.baseline and not args.identify_only:
        await wait_for_quiet_host(args.wait_quiet)
        receivers = result["gateway"]["receivers"]
        print(f"baseline: bare picows broadcast server, {receivers:,} clients", flush=True)
        result["baseline"] = await run_baseline(
            args, result["gateway"]["dispatch_frame_bytes"] or 800, deadline, receivers,
            server_cpus, client_cpus)
        result["baseline"]["client_bound"] = client_bound(
            result["baseline"], result["client_cpus"], result["server_cpus"])
    result["seconds"] = round(time.monotonic() - started, 1)
    return result


def mix_argument(text: str) -> dict[str, float]:
    """``parse_mix`` for argparse: its error message, not argparse's generic one."""
    try:
        return parse_mix(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sessions", type=int, default=2000,
                        help="identified sessions for the idle/identify phase")
    parser.add_argument("--identify-budget", type=float, default=120.0,
                        help="start no new session after this many seconds")
    parser.add_argument("--idle-guild-size", type=int, default=100,
                        help="members per guild of the sessions beyond --members")
    parser.add_argument("--members", type=int, default=1000,
                        help="online guild members for the fan-out phase")
    parser.add_argument("--processes", type=int, default=2, help="client worker processes")
    parser.add_argument("--rates", type=float, nargs="+",
                        default=[10, 20, 30, 40, 50, 60, 80, 100, 125, 150, 200, 250, 300],
                        help="messages/s, rising")
    parser.add_argument("--duration", type=float, default=2.0, help="seconds per rate")
    parser.add_argument("--drain", type=float, default=2.0, help="max seconds for stragglers")
    parser.add_argument("--content-size", type=int, default=100, help="message content chars")
    parser.add_argument("--max-p99-ms", type=float, default=50.0)
    parser.add_argument("--budget", type=float, default=300.0,
                        help="seconds after which no new rate is started")
    parser.add_argument("--wait-quiet", type=float, default=5.0,
                        help="max seconds to wait for an idle host before a phase")
    parser.add_argument("--no-baseline", dest="baseline", action="store_false",
                        help="skip the bare broadcast server")
    parser.add_argument("--identify-only", action="store_true",
                        help="only the identify and idle-session phases (no fan-out, "
                             "no baseline)")
    parser.add_argument("--compress", choices=COMPRESSIONS, default=None,
                        help="every client asks for this transport compression and "
                             "inflates every frame; the baseline compresses each "
                             "receiver's stream with the gateway's compressor")
    parser.add_argument("--encoding", choices=("json", "msgpack"), default="json",
                        help="the clients' gateway encoding (msgpack: every payload "
                             "decoded whole, commands sent in msgpack)")
    parser.add_argument("--mix", type=mix_argument, default=parse_mix(DEFAULT_MIX),
                        metavar="KIND=WEIGHT,...",
                        help="the kinds of session, as weights shared out over --members "
                             "and over the sessions beyond them: bots (bot token, no op "
                             "14), users (user token, op 14 at READY), passive (user "
                             "token, no op 14: must receive no MESSAGE_CREATE); e.g. "
                             "bots=1,users=1 (default: users=1, every session a user "
                             "that opens its guild)")
    parser.add_argument("--idle-wait", type=float, default=0.0,
                        help="seconds the identified sessions idle before the server's "
                             "RSS is read (an idle zlib-stream rests within two "
                             "GatewayConfig.compression_rest_s sweeps)")
    parser.add_argument("--placement", choices=("split", "shared"), default="split",
                        help="split (default): the server and the load generator on CPUs "
                             "of their own where the machine allows (cpu_plan), as real "
                             "clients are on other machines; shared: neither pinned")
    parser.add_argument("--server-cpus", type=int, nargs="+", default=None,
                        help="pin the server's processes to these CPUs")
    parser.add_argument("--client-cpus", type=int, nargs="+", default=None,
                        help="pin the load generator to these CPUs")
    parser.add_argument("--out", default=str(ROOT / "loadtest" / "results" / "gateway_load"),
                        help="write OUT.json and OUT.png")


def check_bounds(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if not 1 <= args.members <= 5000 or not 0 <= args.sessions <= 12000:
        parser.error("keep the load bounded: members 1..5000, sessions 0..12000")
    if not 1 <= args.processes <= 4 or len(args.rates) > 40 or args.duration > 10:
        parser.error("keep the load bounded: 1..4 processes, <= 40 rates of <= 10 s")
    if args.budget > 600:
        parser.error("keep the load bounded: budget <= 600 s")


def write_outputs(result: dict, out: str, max_p99_ms: float) -> None:
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.with_suffix(".json").write_text(json.dumps(result, indent=2))
    if "gateway" not in result:  # --identify-only: nothing to plot
        print(f"wrote {path.with_suffix('.json')}", flush=True)
        return
    series = {"gateway": result["gateway"]}
    if "baseline" in result:
        series["baseline (bare picows)"] = result["baseline"]
    plot(series, path.with_suffix(".png"), max_p99_ms)
    print(f"wrote {path.with_suffix('.json')} and {path.with_suffix('.png')}", flush=True)


def print_summary(result: dict) -> None:
    print(f"\nidentified sessions {result['sessions']:,}: {result['identify_per_s']:,}"
          f" identifies/s, {(result['rss_bytes_per_session'] or 0) / 1024:.1f} KiB server"
          " RSS per idle session")
    if "gateway" not in result:
        return
    g = result["gateway"]
    bound = (f"; stopped by the load generator: its clients at >= {CLIENT_BOUND_SHARE:.0%}"
             f" of their {result['client_cpus']} CPU(s), the server below "
             f"{SERVER_FULL_SHARE:.0%} of its {result['server_cpus']}")
    print(f"placement: {result['placement']}")
    print(f"gateway : {g['max_deliveries_per_s']:,} deliveries/s at {g['max_rate_msgs_per_s']:g}"
          f" msg/s, p50 {fmt_ms(g['p50_ms'])} ms p99 {fmt_ms(g['p99_ms'])} ms"
          f" (saturation {g['saturation_deliveries_per_s']:,}/s; REST post p50"
          f" {g['post_p50_ms']} ms p99 {g['post_p99_ms']} ms"
          f"{bound if g.get('client_bound') else ''})")
    if "baseline" in result:
        b = result["baseline"]
        print(f"baseline: {b['max_deliveries_per_s']:,} deliveries/s at "
              f"{b['max_rate_msgs_per_s']:g} msg/s, p50 {fmt_ms(b['p50_ms'])} ms p99 "
              f"{fmt_ms(b['p99_ms'])} ms (saturation {b['saturation_deliveries_per_s']:,}/s"
              f"{bound if b.get('client_bound') else ''})")


def main() -> None:
    import uvloop

    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    args = parser.parse_args()
    check_bounds(parser, args)
    result = uvloop.run(run(args))
    print_summary(result)
    write_outputs(result, args.out, args.max_p99_ms)


if __name__ == "__main__":
    main()
