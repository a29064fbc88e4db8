"""Acked-but-lost audit: no message the server acknowledged may be missing after a crash.

Starts ``greenroom run`` as ``make run`` does (one node, on SQLite or Cassandra), posts
messages over REST from several concurrent posters, records the id of every message
answered 200, injects one fault in the middle of the stream, and reads the channel's
history back through REST:

  node  kill -9 of the node process; its supervisor restarts it; posting goes on
  tree  kill -9 of every process of the tree at once; a new ``greenroom run`` on the
        same database reads back
  db    (Cassandra only) kill -9 of the Cassandra node, restarted on its data; the
        greenroom node keeps running and must serve writes again without a restart

``lost`` is the number of acknowledged ids missing from the history read back; it must
be 0. Bounded: at most ``messages`` posts and ``duration_s`` seconds of posting per
trial; loopback only.

    python -m loadtest.abuse_loss [--backend sqlite|scylla] [--fault node|tree|db ...]
        [--posters 8] [--messages 3000] [--duration 60] [--cassandra-port P]

prints progress on stderr and ONE JSON line on stdout. Without ``--cassandra-port`` a
Cassandra node of its own is started (jars cached in .cache/cassandra) and stopped at
the end; with it, the node on that port is used (and, for ``db``, killed and restarted:
it must be one that ``python -m tests.services.cassandra start`` started).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from cluster.launcher import free_port
from loadtest.process_tree import alive, tagged

REPO = Path(__file__).resolve().parents[1]
TAG_VAR = "GREENROOM_ABUSE_TAG"
FAULTS = ("node", "tree", "db")


def log(text: str) -> None:
    print(f"[abuse-loss {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


@dataclass
class Tree:
    """One ``greenroom run`` process tree on loopback, driven through its JSON log.

    ``storage_args`` are ``greenroom run``'s storage flags; the ports are fixed at
    construction so that a restarted tree serves the same URLs.
    """

    workdir: Path
    storage_args: list[str]
    nodes: int = 1
    extra_args: list[str] = field(default_factory=list)
    #: as ``make run`` ships it (True) or ``--no-rate-limits`` (False: many posts a second
    #: from one bot, which the default's 5 per 5 s per channel would refuse)
    rate_limits: bool = False
    port: int = field(default_factory=free_port)
    rest_port: int = field(default_factory=free_port)
    tag: str = field(default_factory=lambda: uuid.uuid4().hex)
    proc: subprocess.Popen | None = None
    events: list[dict[str, Any]] = field(default_factory=list)

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.rest_port}/api/v10"

    def start(self, timeout: float = 60.0) -> dict[str, Any]:
        """Start the tree and wait for its "gateway serving" event; returns the seed
        (token, guild and channel ids), read from the file kept beside the database."""
        self.events = []
        # the operator port on a free port: a `make run` may hold the default one
        env = dict(os.environ, GREENROOM_LOG_FORMAT="json", PYTHONUNBUFFERED="1",
                   GREENROOM_OPERATOR_PORT="0", **{TAG_VAR: self.tag})
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "greenroom.cli", "run", "--nodes", str(self.nodes),
             "--port", str(self.port), "--rest-port", str(self.rest_port),
             *([] if self.rate_limits else ["--no-rate-limits"]),
             *self.storage_args, *self.extra_args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
            cwd=self.workdir, start_new_session=True)
        served = threading.Event()
        log_file = (self.workdir / "run.log").open("a")

        def drain(proc: subprocess.Popen = self.proc) -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                log_file.write(line)
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                if isinstance(event, dict):
                    self.events.append(event)
                    if event.get("event") == "gateway serving":
                        served.set()
            log_file.close()
            served.set()  # the output ended: start() stops waiting

        threading.Thread(target=drain, daemon=True).start()
        if not served.wait(timeout) or self.proc.poll() is not None:
            self.kill()
            raise RuntimeError(f"greenroom run did not serve; see {self.workdir / 'run.log'}")
        return self.seed()

    def seed(self) -> dict[str, Any]:
        files = sorted(self.workdir.rglob("*.seed.json"))
        if not files:
            raise RuntimeError(f"no seed file under {self.workdir}")
        return json.loads(files[0].read_text())

    def node_pids(self) -> dict[str, int]:
        """Node name -> pid, as first served (a restarted node has a new pid)."""
        return {e["node"]: e["pid"] for e in self.events if e.get("event") == "node serving"}

    def kill(self) -> set[int]:
        """kill -9 every process of the tree at once; waits until they are gone."""
        pids = tagged(TAG_VAR, self.tag)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if self.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(10)
        deadline = time.monotonic() + 10
        while any(alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        return pids

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM (Ctrl-C's path), then kill -9 whatever is left of the tree."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout)
        deadline = time.monotonic() + 10
        while any(alive(p) for p in tagged(TAG_VAR, self.tag)) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.kill()


class Posters:
    """``count`` concurrent REST posters: every message answered 200 is recorded.

    A refusal must tell the client to come back: 503 (or 429) with an integer
    ``Retry-After`` and Discord's JSON body; any other answer is kept in ``improper``.
    ``honour_retry_after=False`` makes a hostile client that retries at once.
    """

    def __init__(self, rest_url: str, seed: dict[str, Any], count: int,
                 honour_retry_after: bool = True) -> None:
        self.url = f"{rest_url}/channels/{seed['channel_id']}/messages"
        self.headers = {"Authorization": f"Bot {seed['token']}"}
        self.count = count
        self.honour = honour_retry_after
        self.acked: dict[int, float] = {}  # message id -> when acknowledged
        self.answers: Counter[str] = Counter()
        self.improper: list[tuple[int, str | None, str]] = []
        self.refusals: Counter[str] = Counter()  # proper refusals, by their message
        self.posted = 0
        self.stop = False

    async def run(self, limit: int, deadline: float) -> None:
        timeout = aiohttp.ClientTimeout(total=30)
        connector = aiohttp.TCPConnector(limit=self.count)
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
            await asyncio.gather(*(self._poster(session, i, limit, deadline)
                                   for i in range(self.count)))

    async def _poster(self, session: aiohttp.ClientSession, who: int, limit: int,
                      deadline: float) -> None:
        n = 0
        while not self.stop and self.posted < limit and time.monotonic() < deadline:
            self.posted += 1
            n += 1
            pause = 0.0
            try:
                async with session.post(self.url, json={"content": f"audit {who}-{n}"},
                                        headers=self.headers) as response:
                    status, text = response.status, await response.text()
                    retry_after = response.headers.get("Retry-After")
            except (TimeoutError, aiohttp.ClientError) as exc:
                self.answers[type(exc).__name__] += 1
                await asyncio.sleep(0.05)
                continue
            self.answers[str(status)] += 1
            try:
                body = json.loads(text)
            except ValueError:
                body = None
            if status == 200 and isinstance(body, dict) and "id" in body:
                self.acked[int(body["id"])] = time.monotonic()
                continue
            # Discord's bodies: a 503 {code, message}; a 429 {message, retry_after, global}
            needs = {"message", "retry_after"} if status == 429 else {"code", "message"}
            if (status in (429, 503) and retry_after is not None and retry_after.isdigit()
                    and isinstance(body, dict) and needs <= body.keys()):
                self.refusals[str(body["message"])[:80]] += 1
                pause = float(retry_after) if self.honour else 0.0
            else:
                self.improper.append((status, retry_after, text[:200]))
                pause = 0.05
            if pause:
                await asyncio.sleep(min(pause, 1.0))


async def read_history(rest_url: str, seed: dict[str, Any], timeout: float = 60.0) -> set[int]:
    """Every message id of the seeded channel, newest first, 100 per page (retrying a
    page that fails while the server recovers)."""
    url = f"{rest_url}/channels/{seed['channel_id']}/messages"
    headers = {"Authorization": f"Bot {seed['token']}"}
    found: set[int] = set()
    before: int | None = None
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as session:
        while True:
            params = {"limit": "100", **({"before": str(before)} if before else {})}
            try:
                async with session.get(url, params=params, headers=headers) as response:
                    if response.status != 200:
                        raise aiohttp.ClientResponseError(
                            response.request_info, (), status=response.status)
                    page = await response.json()
            except (TimeoutError, aiohttp.ClientError):
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)
                continue
            if not page:
                return found
            ids = [int(m["id"]) for m in page]
            found.update(ids)
            before = min(ids)


async def wait_serving(rest_url: str, seed: dict[str, Any], timeout: float) -> float:
    """Seconds until ``GET /users/@me`` answers 200 again."""
    t0 = time.monotonic()
    headers = {"Authorization": f"Bot {seed['token']}"}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        while time.monotonic() - t0 < timeout:
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with session.get(f"{rest_url}/users/@me", headers=headers) as r:
                    if r.status == 200:
                        return time.monotonic() - t0
            await asyncio.sleep(0.1)
    raise TimeoutError(f"{rest_url} did not serve again within {timeout:.0f}s")


def _storage_args(backend: str, workdir: Path, cassandra_port: int | None,
                  keyspace: str) -> list[str]:
    if backend == "sqlite":
        return ["--storage", "sqlite", "--sqlite-path", str(workdir / "greenroom.db")]
    return ["--storage", "scylla", "--scylla-hosts", "127.0.0.1",
            "--scylla-port", str(cassandra_port), "--scylla-keyspace", keyspace]


def trial(backend: str, fault: str, workdir: Path, *, nodes: int = 1, posters: int = 8,
          messages: int = 3000, duration_s: float = 60.0, kill_after: int = 300,
          acks_after: int = 100, cassandra: Any = None,
          rate_limits: bool = False) -> dict[str, Any]:
    """One fault injected into one stream of posts; the loss figures (see module doc).
    With several nodes, ``node`` kills the one that owns the seeded guild (the one
    whose channel actor acknowledges the posts)."""
    if fault not in FAULTS or (fault == "db" and backend != "scylla"):
        raise ValueError(f"fault {fault!r} does not apply to {backend}")
    kill_after = max(1, min(kill_after, messages // 3))
    keyspace = f"greenroom_abuse_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    port = cassandra.port if cassandra is not None else None
    tree = Tree(workdir, _storage_args(backend, workdir, port, keyspace), nodes=nodes,
                rate_limits=rate_limits)
    t0 = time.monotonic()
    seed = tree.start()
    result: dict[str, Any] = {"backend": backend, "fault": fault, "nodes": nodes,
                              "rate_limits": "on" if rate_limits else "off"}
    try:
        feed = Posters(tree.rest_url, seed, posters)
        deadline = time.monotonic() + duration_s
        injected: dict[str, float] = {}

        async def inject() -> None:
            while len(feed.acked) < kill_after and not feed.stop:
                await asyncio.sleep(0.01)
            injected["at"] = time.monotonic()
            if fault == "node":
                from cluster.placement import Placement

                pids = tree.node_pids()
                pid = pids[Placement(tuple(sorted(pids))).owner(int(seed["guild_id"]))]
                os.kill(pid, signal.SIGKILL)
                log(f"{backend}: kill -9 node pid {pid} after {len(feed.acked)} acks")
                injected["back"] = injected["at"] + await wait_serving(
                    tree.rest_url, seed, 60)
            elif fault == "tree":
                pids = await asyncio.to_thread(tree.kill)
                log(f"{backend}: kill -9 the whole tree ({len(pids)} processes) "
                    f"after {len(feed.acked)} acks")
                feed.stop = True
                return
            else:
                log(f"{backend}: kill -9 Cassandra after {len(feed.acked)} acks")
                await asyncio.to_thread(cassandra.stop, keep_data=True, sig=signal.SIGKILL)
                await asyncio.sleep(1.0)
                await asyncio.to_thread(cassandra.spawn, keep_data=True)
                await asyncio.to_thread(cassandra.wait_ready, 180)
                injected["back"] = time.monotonic()
                log(f"{backend}: Cassandra back after {injected['back'] - injected['at']:.1f}s")
            # keep posting until the recovered server has acknowledged acks_after more
            while not feed.stop and sum(
                    t > injected["back"] for t in feed.acked.values()) < acks_after:
                await asyncio.sleep(0.05)
            feed.stop = True

        async def stream() -> None:
            injector = asyncio.ensure_future(inject())
            # the fault's recovery may stretch the stream by up to a minute
            await feed.run(messages, deadline + 60)
            feed.stop = True  # the limits were reached: inject no later than now
            await asyncio.wait_for(injector, 240)

        asyncio.run(stream())
        if fault == "tree":
            tree.stop()
            seed = tree.start()  # same database, same ports
        found = asyncio.run(read_history(tree.rest_url, seed))
        acked = set(feed.acked)
        after = sum(t > injected.get("back", float("inf")) for t in feed.acked.values())
        result.update(
            posted=feed.posted, acked=len(acked), found=len(found & acked),
            lost=len(acked - found), stored_unacked=len(found - acked),
            acked_after_recovery=after if fault != "tree" else None,
            answers=dict(feed.answers), improper=len(feed.improper),
            improper_first=feed.improper[:3], seconds=round(time.monotonic() - t0, 1))
        if fault != "tree":
            result["node_restarted"] = fault == "node"
        return result
    finally:
        tree.stop()
        if backend == "scylla":
            drop_keyspace(port, keyspace)


def drop_keyspace(port: int | None, keyspace: str) -> None:
    """Drop a keyspace a trial made (best effort: the node may be gone)."""
    from storage.scylla import connect_cluster
    from storage.settings import StorageSettings

    with contextlib.suppress(Exception):
        cluster, session = connect_cluster(StorageSettings(
            backend="scylla", hosts=("127.0.0.1",), port=port or 9042, keyspace=keyspace))
        try:
            session.execute(f"DROP KEYSPACE IF EXISTS {keyspace}", timeout=60)
        finally:
            cluster.shutdown()


@contextlib.contextmanager
def cassandra_node(port: int | None = None):
    """The Cassandra node to use: the one on ``port`` (left running), or one of our own
    (own run dir, free ports), stopped afterwards."""
    from tests.services.cassandra import CassandraNode, port_open

    if port is not None:
        node = CassandraNode(port=port)
        if not (port_open(port) and node.ready()):
            raise RuntimeError(f"no Cassandra answers CQL on 127.0.0.1:{port}")
        yield node
        return
    node = CassandraNode.isolated(f"abuse-{os.getpid()}")
    log("starting a Cassandra node of our own")
    node.start()
    try:
        yield node
    finally:
        node.stop()


def audit(backend: str, faults: tuple[str, ...] | None = None, *, nodes: int = 1,
          repeat: int = 1, posters: int = 8, messages: int = 3000, duration_s: float = 60.0,
          kill_after: int = 300, acks_after: int = 100, cassandra_port: int | None = None,
          cassandra: Any = None, rate_limits: bool = False) -> dict[str, Any]:
    """Run each fault ``repeat`` times against ``backend`` on a tree of ``nodes`` node
    processes; the totals and each trial's figures. ``rate_limits``: the tree as
    ``make run`` ships it, else ``--no-rate-limits`` (the ``rate_limits`` key says which).

    ``cassandra``: a started ``tests.services.cassandra.CassandraNode`` to use (else the
    one on ``cassandra_port``, else one started and stopped here).
    """
    if backend not in ("sqlite", "scylla"):
        raise ValueError(f"backend must be sqlite or scylla, not {backend!r}")
    if faults is None:
        faults = ("node", "tree", "db") if backend == "scylla" else ("node", "tree")
    trials = []
    with contextlib.ExitStack() as stack:
        if backend == "scylla" and cassandra is None:
            cassandra = stack.enter_context(cassandra_node(cassandra_port))
        if "db" in faults and backend == "scylla" and cassandra.pid() is None:
            raise RuntimeError("the db fault kills and restarts Cassandra: use a node that "
                               "tests.services.cassandra started (or none: one is started)")
        for fault in [f for f in faults for _ in range(repeat)]:
            with tempfile.TemporaryDirectory(prefix=f"abuse-{backend}-{fault}-") as tmp:
                trials.append(trial(backend, fault, Path(tmp), nodes=nodes, posters=posters,
                                    messages=messages, duration_s=duration_s,
                                    kill_after=kill_after, acks_after=acks_after,
                                    cassandra=cassandra, rate_limits=rate_limits))
            log(json.dumps(trials[-1]))
    return {"backend": backend, "acked": sum(t["acked"] for t in trials),
            "found": sum(t["found"] for t in trials), "lost": sum(t["lost"] for t in trials),
            "rate_limits": "on" if rate_limits else "off", "trials": trials}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.abuse_loss",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=("sqlite", "scylla"), default="sqlite")
    parser.add_argument("--fault", choices=FAULTS, action="append",
                        help="repeatable; default: node and tree (and db on scylla)")
    parser.add_argument("--nodes", type=int, default=1, help="node processes (1 or 2)")
    parser.add_argument("--repeat", type=int, default=1, help="trials per fault")
    parser.add_argument("--posters", type=int, default=8)
    parser.add_argument("--messages", type=int, default=3000, help="posts per trial, at most")
    parser.add_argument("--duration", type=float, default=60.0,
                        help="seconds of posting per trial, at most")
    parser.add_argument("--kill-after", type=int, default=300,
                        help="acknowledged posts before the fault")
    parser.add_argument("--cassandra-port", type=int, default=None)
    args = parser.parse_args(argv)
    if not 1 <= args.posters <= 64 or not 1 <= args.messages <= 100_000 \
            or not 0 < args.duration <= 600 or not 1 <= args.nodes <= 4 \
            or not 1 <= args.repeat <= 10:
        parser.error("--posters 1..64, --messages 1..100000, --duration (0, 600], "
                     "--nodes 1..4, --repeat 1..10")
    try:
        result = audit(args.backend, tuple(args.fault) if args.fault else None,
                       nodes=args.nodes, repeat=args.repeat,
                       posters=args.posters, messages=args.messages,
                       duration_s=args.duration, kill_after=args.kill_after,
                       cassandra_port=args.cassandra_port)
    finally:
        from tests.services.cassandra import skip_driver_exit_wait

        skip_driver_exit_wait()
    print(json.dumps(result), flush=True)
    return 0 if result["lost"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
