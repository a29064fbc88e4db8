"""End to end with a real trace backend: ``greenroom run --nodes 2`` exporting over
OTLP/HTTP to a real Jaeger (``tests/services/jaeger.py``), and what an SRE then reads
back from Jaeger's query API and the nodes' ``/metrics``.

The message's path is arranged to cross processes: the seeded guild (with its channel)
lives on the node rendezvous hashing picks (``owner``); the REST post and the WebSocket
client are on the other node (``edge``). So one message goes edge (REST) -> owner
(channel, storage, guild fan-out) -> edge (socket out), and its trace must hold both
processes' spans with the right parents.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import os
import secrets
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from cluster.placement import Placement
from tests.cluster.run_log import run_env, serving
from tests.cluster.test_scale_out import Client, client_on
from tests.services.jaeger import JaegerServer

ROOT = Path(__file__).resolve().parents[2]
NODES = ("n1", "n2")
#: spans reach Jaeger within the batch processor's delay (set to 100 ms below) plus an
#: export; this bounds the wait for a trace to be complete, it is not a sleep
TRACE_DEADLINE_S = 20.0


@dataclass
class Run:
    """A running ``greenroom run --nodes 2`` and what its log said."""

    proc: subprocess.Popen
    served: dict[str, Any]
    nodes: dict[str, dict[str, Any]]
    service: str
    ingress_secret: str
    cluster_secret: str
    lines: list[str] = field(default_factory=list)

    @property
    def owner(self) -> str:
        """The node of the seeded guild and its channel."""
        return Placement(NODES).owner(int(self.served["guild_id"]))

    @property
    def edge(self) -> str:
        return next(n for n in NODES if n != self.owner)

    def node_url(self, *keys: str) -> str:
        """The first URL a "node serving" or "gateway serving" event names under one
        of ``keys`` (the ingress, the operator port)."""
        for event in (self.served, *self.nodes.values()):
            for key in keys:
                if event.get(key):
                    return str(event[key])
        raise AssertionError(
            f"greenroom run's log names none of {keys}: gateway serving={self.served}, "
            f"node serving={self.nodes}")

    def node_urls(self, *keys: str) -> dict[str, str]:
        found = {}
        for name, event in self.nodes.items():
            for key in keys:
                if event.get(key):
                    found[name] = str(event[key])
                    break
        return found


def preseed(db: Path, members: int) -> dict[str, Any]:
    """What ``greenroom run`` seeds (a bot in a one-member guild), plus a second guild
    of ``members`` members (the bot and ``members - 1`` offline users), written to the
    database and the seed file before the run starts (the run reuses a seed it finds)."""
    from gateway.seed import add_member, create_guild, create_user, seed
    from storage import make_storage
    from storage.schema import migrate
    from storage.settings import StorageSettings
    from storage.snowflake import SnowflakeGenerator

    settings = StorageSettings(backend="sqlite", sqlite_path=str(db),
                               sqlite_synchronous="NORMAL")
    migrate(settings)

    async def write() -> dict[str, Any]:
        storage = make_storage(settings)
        await storage.open()
        try:
            ids = SnowflakeGenerator()
            seeded = await seed(storage, ids)
            big_guild, big_channel = await create_guild(storage, ids, "big", seeded.user_id)
            for i in range(members - 1):
                user_id, _ = await create_user(storage, ids, f"member-{i}", bot=False)
                await add_member(storage, big_guild, user_id)
        finally:
            await storage.close()
        return {"user_id": seeded.user_id, "token": seeded.token,
                "guild_id": seeded.guild_id, "channel_id": seeded.channel_id,
                "big_guild_id": big_guild, "big_channel_id": big_channel}

    known = asyncio.run(write())
    seed_file = db.with_suffix(".seed.json")
    seed_file.write_text(json.dumps(known))
    seed_file.chmod(0o600)
    return known


@contextlib.contextmanager
def greenroom_run(tmp: Path, jaeger: JaegerServer, env: dict[str, str]) -> Iterator[Run]:
    """``greenroom run --nodes 2`` exporting spans to ``jaeger``; stopped after, with
    no process left behind."""
    tag = f"jaeger-e2e-{os.getpid()}-{time.monotonic_ns()}"
    service = f"greenroom-e2e-{os.getpid()}-{secrets.token_hex(3)}"
    ingress_secret = secrets.token_urlsafe(24)
    cluster_secret = secrets.token_hex(32)
    environment = run_env(
        tmp, tag, without=("OTEL_",),
        GREENROOM_INGRESS_SECRET=ingress_secret,
        GREENROOM_CLUSTER_SECRET=cluster_secret,
        OTEL_EXPORTER_OTLP_ENDPOINT=jaeger.otlp_http_url,
        OTEL_SERVICE_NAME=service,
        OTEL_BSP_SCHEDULE_DELAY="100",
        # were metrics pushed to the (traces-only) OTLP endpoint, their 404s would show
        # within the test, not a minute later
        OTEL_METRIC_EXPORT_INTERVAL="200",
        **env,
    )
    with serving(environment, "--nodes", "2", "--port", "0", "--rest-port", "0", "--ingress-port",
                 "0", "--operator-port", "0", "--no-rate-limits") as tree:
        # the same list of lines: the run's output goes on into it
        yield Run(tree.proc, tree.served, tree.nodes, service, ingress_secret, cluster_secret,
                  tree.lines)


# -- Jaeger's JSON model ----------------------------------------------------------------
def tags(span: dict) -> dict[str, Any]:
    return {t["key"]: t["value"] for t in span.get("tags", ())}


def parent_of(span: dict) -> str | None:
    for ref in span.get("references", ()):
        if ref["refType"] == "CHILD_OF" and ref["traceID"] == span["traceID"]:
            return ref["spanID"]
    return None


def process_of(trace: dict, span: dict) -> tuple[str, tuple]:
    """A span's process: its service and its resource attributes (Jaeger's process tags)."""
    process = trace["processes"][span["processID"]]
    return process["serviceName"], tuple(sorted(
        (t["key"], str(t["value"])) for t in process.get("tags", ())))


def named(trace: dict, name: str) -> list[dict]:
    return [s for s in trace["spans"] if s["operationName"] == name]


def one(trace: dict, name: str) -> dict:
    found = named(trace, name)
    assert len(found) == 1, f"{len(found)} spans {name!r} in the trace: {outline(trace)}"
    return found[0]


def outline(trace: dict) -> str:
    """The trace as an indented tree (for failure messages)."""
    spans = {s["spanID"]: s for s in trace["spans"]}
    children: dict[str | None, list[dict]] = {}
    for s in trace["spans"]:
        parent = parent_of(s)
        children.setdefault(parent if parent in spans else None, []).append(s)
    out: list[str] = []

    def walk(parent: str | None, depth: int) -> None:
        for s in sorted(children.get(parent, ()), key=lambda s: s["startTime"]):
            out.append(f"{'  ' * depth}{s['operationName']} [{s['processID']}] "
                       f"{ {k: v for k, v in tags(s).items() if k.startswith('greenroom.')} }")
            walk(s["spanID"], depth + 1)

    walk(None, 0)
    return "\n" + "\n".join(out)


def ancestors(trace: dict, span: dict) -> list[str]:
    """The names of a span's ancestors in the trace, nearest first."""
    spans = {s["spanID"]: s for s in trace["spans"]}
    names = []
    parent = parent_of(span)
    while parent in spans:
        names.append(spans[parent]["operationName"])
        parent = parent_of(spans[parent])
    return names


def wait_for(jaeger: JaegerServer, what: str, found: Callable[[list[dict]], Any],
             service: str, timeout: float = TRACE_DEADLINE_S) -> Any:
    """Poll the query API until ``found(traces)`` is truthy; its value."""
    deadline = time.monotonic() + timeout
    traces: list[dict] = []
    while time.monotonic() < deadline:
        traces = jaeger.traces(service)
        result = found(traces)
        if result:
            return result
        time.sleep(0.1)
    raise AssertionError(f"Jaeger had no {what} after {timeout:.0f}s; it holds "
                         f"{len(traces)} traces of {service}: "
                         + "".join(outline(t) for t in traces[-5:]))


def traces_with(traces: list[dict], message_id: str) -> list[dict]:
    return [t for t in traces
            if any(str(tags(s).get("greenroom.message_id")) == message_id for s in t["spans"])]


def complete_trace(message_id: str, session_id: str, entry: str = "rest.post_message"
                   ) -> Callable[[list[dict]], dict | None]:
    """The trace of ``message_id`` once its entry span (it ends last: after the answer),
    its socket write to ``session_id`` and its ``storage.write`` are in it (that one
    ends on the storage actor's node, whose exporter may send it a batch after the
    other nodes' spans are in)."""

    def found(traces: list[dict]) -> dict | None:
        for trace in traces_with(traces, message_id):
            if any(tags(s).get("greenroom.session_id") == session_id
                   for s in named(trace, "socket.out")) and named(trace, entry) \
                    and named(trace, "storage.write"):
                return trace
        return None

    return found


def wait_for_line(run: Run, match: Callable[[dict], bool], timeout: float = 10.0) -> dict:
    """The first JSON line of the run's output that ``match``es (waiting for it to be
    read: a line is written after the answer that the test has already seen)."""
    deadline = time.monotonic() + timeout
    seen = 0
    while True:
        lines = run.lines[seen:]
        seen += len(lines)
        for line in lines:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict) and match(event):
                return event
        if time.monotonic() > deadline:
            raise AssertionError("no such line in the run's output:\n" + "".join(run.lines[-30:]))
        time.sleep(0.05)


# -- the run ----------------------------------------------------------------------------
#: members of the second guild: the fan-out sampler keeps p = B / 50 = 0.2 of its
#: messages at the default budget B = 10 (observability/sampling.py)
BIG_GUILD_MEMBERS = 50


@pytest.fixture(scope="module")
def run(jaeger: JaegerServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    tmp = tmp_path_factory.mktemp("jaeger-e2e")
    seeded = preseed(tmp / "greenroom.db", BIG_GUILD_MEMBERS)
    # at debug: the REST access log, whose lines must carry the trace
    with greenroom_run(tmp, jaeger, {"GREENROOM_LOG_LEVEL": "debug"}) as running:
        assert running.served["guild_id"] == seeded["guild_id"]  # the run took our seed
        running.served.update(big_guild_id=seeded["big_guild_id"],
                              big_channel_id=seeded["big_channel_id"])
        yield running


@pytest.fixture(scope="module")
def client(run: Run) -> Iterator[Client]:
    """The only session of the guild (so each message has one recipient), on the edge."""
    c = client_on(run.edge, run.served)
    yield c
    c.close()


def received(client: Client, *ids: str) -> None:
    """``client`` gets MESSAGE_CREATE for ``ids`` in that order (others are skipped:
    a failed test before may have left some unread)."""
    want = list(ids)
    while want:
        got = client.next_dispatch("MESSAGE_CREATE")["id"]
        if got == want[0]:
            want.pop(0)
        else:
            assert got not in want, f"{got} arrived before {want[0]}"


def rest_on(run: Run, node: str, tries: int = 60) -> http.client.HTTPConnection:
    """A keep-alive REST connection that the kernel gave to ``node``'s process."""
    url = urllib.parse.urlsplit(run.served["rest_url"])
    for _ in range(tries):
        conn = http.client.HTTPConnection(url.hostname, url.port, timeout=15)
        status, headers, _ = request(conn, run, "GET", "/users/@me")
        assert status == 200
        if headers["X-Greenroom-Node"] == node:
            return conn
        conn.close()
    raise AssertionError(f"{tries} REST connections and none landed on {node}")


def request(conn: http.client.HTTPConnection, run: Run, method: str, path: str,
            body: dict | None = None, traceparent: str | None = None
            ) -> tuple[int, http.client.HTTPMessage, Any]:
    headers = {"Authorization": f"Bot {run.served['bot_token']}",
               "Content-Type": "application/json"}
    if traceparent is not None:
        headers["traceparent"] = traceparent
    prefix = urllib.parse.urlsplit(run.served["rest_url"]).path.rstrip("/")  # /api/v10
    conn.request(method, prefix + path, body=None if body is None else json.dumps(body),
                 headers=headers)
    response = conn.getresponse()
    raw = response.read()
    return response.status, response.headers, json.loads(raw) if raw else None


def post(conn: http.client.HTTPConnection, run: Run, content: str,
         channel_id: int | None = None, traceparent: str | None = None) -> tuple[str, str]:
    """A REST post on ``conn`` (to the seeded channel by default): the message id and
    the node that served it."""
    channel_id = channel_id or run.served["channel_id"]
    status, headers, body = request(conn, run, "POST", f"/channels/{channel_id}/messages",
                                    {"content": content}, traceparent)
    assert status == 200, (status, body)
    return body["id"], headers["X-Greenroom-Node"]


def test_a_rest_post_is_one_trace_across_both_node_processes(run: Run, client: Client,
                                                            jaeger: JaegerServer) -> None:
    assert client.node == run.edge
    conn = rest_on(run, run.edge)
    try:
        message_id, served_by = post(conn, run, "traced through two nodes")
    finally:
        conn.close()
    assert served_by == run.edge != run.owner
    received(client, message_id)
    found = complete_trace(message_id, client.session_id)

    def with_the_nodes_hop(traces: list[dict]) -> dict | None:
        # each process exports its spans in its own batches: the owner's NodeFanout
        # send (and the edge's receive) may arrive after the spans found above
        trace = found(traces)
        hop = trace and {s["operationName"] for s in trace["spans"]
                         if tags(s).get("greenroom.message_type") == "NodeFanout"}
        return trace if hop and {"dataplane.send", "dataplane.receive"} <= hop else None

    trace = wait_for(jaeger, f"complete trace of message {message_id}", with_the_nodes_hop,
                     run.service)

    # One trace per message: no span about it anywhere else.
    assert [t["traceID"] for t in traces_with(jaeger.traces(run.service), message_id)] == [
        trace["traceID"]]
    rest = one(trace, "rest.post_message")
    post_span = one(trace, "channel.post")
    write = one(trace, "storage.write")
    fanout = one(trace, "guild.fanout")
    (out,) = [s for s in named(trace, "socket.out")
              if tags(s).get("greenroom.session_id") == client.session_id]
    # Parents: rest.post_message -> channel.post -> storage.write and guild.fanout;
    # socket.out under guild.fanout (through the node's fan-out point, if it has a span).
    assert parent_of(rest) is None, outline(trace)
    assert parent_of(post_span) == rest["spanID"], outline(trace)
    assert parent_of(write) == post_span["spanID"], outline(trace)
    assert parent_of(fanout) == post_span["spanID"], outline(trace)
    assert "guild.fanout" in ancestors(trace, out), outline(trace)
    assert str(tags(post_span)["greenroom.message_id"]) == message_id
    # Two processes: REST and the socket on the edge node, channel and fan-out on the
    # guild's node; each process is told apart by its resource (Jaeger's process tags).
    edge, owner = process_of(trace, rest), process_of(trace, post_span)
    assert edge != owner, f"one process for both nodes' spans: {edge}"
    assert process_of(trace, out) == edge
    assert process_of(trace, write) == process_of(trace, fanout) == owner
    assert edge[0] == owner[0] == run.service  # OTEL_SERVICE_NAME names the service
    # Which process is which node: the fan-out point's and the data plane's spans name
    # the node they run on. The hop between the nodes has a span on each side.
    node_of: dict[tuple, set[str]] = {}
    for span in trace["spans"]:
        if "greenroom.node" in tags(span) and span["operationName"] in (
                "fanout.deliver", "dataplane.send", "dataplane.receive"):
            node_of.setdefault(process_of(trace, span), set()).add(tags(span)["greenroom.node"])
    assert node_of == {edge: {run.edge}, owner: {run.owner}}, outline(trace)
    (send,) = [s for s in named(trace, "dataplane.send")
               if tags(s).get("greenroom.message_type") == "NodeFanout"]
    (receive,) = [s for s in named(trace, "dataplane.receive")
                  if tags(s).get("greenroom.message_type") == "NodeFanout"]
    assert (process_of(trace, send), process_of(trace, receive)) == (owner, edge)
    assert "guild.fanout" in ancestors(trace, send) and "guild.fanout" in ancestors(
        trace, receive), outline(trace)
    # Logs join traces: the REST access line of this post names its span.
    access = wait_for_line(run, lambda e: e.get("event") == "rest.request"
                           and e.get("method") == "POST" and e.get("span_id") == rest["spanID"])
    assert access["trace_id"] == trace["traceID"] and access["node"] == run.edge


def test_the_storage_batch_span_is_linked_to_the_write(run: Run, client: Client,
                                                       jaeger: JaegerServer) -> None:
    """The storage actor's span for the batch that made the write durable links to the
    write's span (a batch serves writes of many traces: links, not one parent)."""
    conn = rest_on(run, run.edge)
    try:
        message_id, _ = post(conn, run, "batched")
    finally:
        conn.close()
    received(client, message_id)
    trace = wait_for(jaeger, f"complete trace of message {message_id}",
                     complete_trace(message_id, client.session_id), run.service)
    write = one(trace, "storage.write")

    def linked_batch(traces: list[dict]) -> tuple[dict, dict] | None:
        for t in traces:
            for s in named(t, "storage.batch"):
                if any(r["spanID"] == write["spanID"] and r["traceID"] == write["traceID"]
                       for r in s.get("references", ())):
                    return t, s
        return None

    batch_trace, batch = wait_for(jaeger, "storage.batch span linked to the write",
                                  linked_batch, run.service)
    attributes = tags(batch)

    def attribute(suffix: str) -> Any:
        keys = [k for k in attributes if k.split(".")[-1] == suffix]
        assert keys, f"storage.batch has no *.{suffix} attribute: {attributes}"
        return attributes[keys[0]]

    assert int(attribute("writes")) >= 1
    assert int(attribute("partitions")) >= 1
    assert int(attribute("attempt")) >= 1
    assert attribute("backend") == "sqlite"
    # the storage actor is on the guild's node, as the write's channel is
    assert process_of(batch_trace, batch) == process_of(trace, write)


def test_a_message_to_one_recipient_is_always_traced(run: Run, client: Client,
                                                     jaeger: JaegerServer) -> None:
    """Fan-out-aware sampling keeps every message that reaches a single session."""
    conn = rest_on(run, run.edge)
    try:
        ids = [post(conn, run, f"one recipient {i}")[0] for i in range(20)]
    finally:
        conn.close()
    received(client, *ids)

    def all_traced(traces: list[dict]) -> bool:
        return all(complete_trace(i, client.session_id)(traces) for i in ids)

    wait_for(jaeger, "trace for each of 20 one-recipient messages", all_traced, run.service)


def traceparent(low64: int) -> tuple[str, str]:
    """A sampled W3C ``traceparent`` whose trace id ends in ``low64``, and that id: the
    fan-out sampler keeps a trace when its id's low 64 bits are under ``p * 2**64`` (as
    ``TraceIdRatioBased``), so the caller's trace id makes its decision predictable."""
    trace_id = f"{secrets.randbits(64) | 1:016x}{low64:016x}"
    return f"00-{trace_id}-{secrets.token_hex(8)}-01", trace_id


def test_sampling_follows_the_fan_out_size(run: Run, client: Client,
                                           jaeger: JaegerServer) -> None:
    """One trace id near the top of the range: dropped for the 50-member guild
    (p = 0.2), kept for the 1-member guild (p = 1); one near the bottom: kept for the
    big guild too. The decision is made once, at the REST entry, and holds on the
    other node: the dropped message leaves no span anywhere."""
    big_channel = int(run.served["big_channel_id"])
    high = (1 << 64) - 2  # above 0.2 * 2**64, below 1.0 * 2**64
    conn = rest_on(run, run.edge)
    try:
        header, dropped_trace = traceparent(high)
        dropped, _ = post(conn, run, "big guild, high id", big_channel, header)
        header, small_trace = traceparent(high)
        small, _ = post(conn, run, "small guild, same high id", None, header)
        header, kept_trace = traceparent(1)
        kept, _ = post(conn, run, "big guild, low id", big_channel, header)
    finally:
        conn.close()
    # all three are delivered: sampling decides what is traced, never what is sent
    received(client, dropped, small, kept)

    def both(traces: list[dict]) -> tuple[dict, dict] | None:
        small_found = complete_trace(small, client.session_id)(traces)
        kept_found = complete_trace(kept, client.session_id)(traces)
        return (small_found, kept_found) if small_found and kept_found else None

    small_t, kept_t = wait_for(jaeger, "traces of the two sampled messages", both,
                               run.service)
    assert (small_t["traceID"], kept_t["traceID"]) == (small_trace, kept_trace)
    entry = one(kept_t, "rest.post_message")
    assert tags(entry)["greenroom.fanout.recipients"] == BIG_GUILD_MEMBERS
    assert tags(one(small_t, "rest.post_message"))["greenroom.fanout.recipients"] == 1
    # The dropped one was posted first, on the same path as the kept one, whose spans
    # have all arrived (each process exports in the order its spans end): none of its.
    traces = jaeger.traces(run.service)
    assert traces_with(traces, dropped) == []
    assert jaeger.trace(dropped_trace) is None


def test_an_ingress_post_is_one_trace(run: Run, client: Client, jaeger: JaegerServer) -> None:
    from gateway.ingress_client import IngressClient

    url = run.node_url("ingress_url", "ingress")

    async def send() -> dict:
        async with IngressClient(url, run.ingress_secret) as ingress:
            return await ingress.post_system_message(int(run.served["channel_id"]),
                                                     "maintenance at 02:00")

    message = asyncio.run(send())
    message_id = str(message["id"])
    received(client, message_id)
    trace = wait_for(jaeger, f"complete trace of ingress message {message_id}",
                     complete_trace(message_id, client.session_id,
                                    "ingress.PostSystemMessage"), run.service)
    root = one(trace, "ingress.PostSystemMessage")
    post_span = one(trace, "channel.post")
    assert parent_of(root) is None, outline(trace)
    assert parent_of(post_span) == root["spanID"], outline(trace)
    assert parent_of(one(trace, "storage.write")) == post_span["spanID"], outline(trace)
    assert parent_of(one(trace, "guild.fanout")) == post_span["spanID"], outline(trace)
    (out,) = [s for s in named(trace, "socket.out")
              if tags(s).get("greenroom.session_id") == client.session_id]
    assert "guild.fanout" in ancestors(trace, out), outline(trace)
    # the socket is on the edge node, the channel on the guild's
    assert process_of(trace, out) != process_of(trace, post_span)
    assert len(traces_with(jaeger.traces(run.service), message_id)) == 1


# -- metrics and health on the operator ports -------------------------------------------
Samples = list[tuple[str, dict[str, str], float]]


def scrape(url: str) -> Samples:
    """``url``/metrics, parsed as Prometheus' text format (as a Prometheus server would)."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
        assert response.status == 200
        text = response.read().decode()
    return [(s.name, s.labels, s.value)
            for family in text_string_to_metric_families(text) for s in family.samples]


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels`` (a label given as
    ``"*suffix"`` matches values ending in ``suffix``)."""

    def match(have: dict[str, str]) -> bool:
        for key, want in labels.items():
            value = have.get(key)
            if value is None:
                return False
            if want.startswith("*") and not value.endswith(want[1:]):
                return False
            if not want.startswith("*") and value != want:
                return False
        return True

    return sum(v for n, have, v in samples if n == name and match(have))


def test_metrics_and_health_on_each_nodes_operator_port(run: Run, client: Client) -> None:
    """What the posts did, read where Prometheus would: REST requests by route and
    status (``http.server.request.duration``), deliveries and their latency on the
    session's node, durable writes and batch sizes on the channel's node, ingress
    requests; ``/healthz`` and ``/readyz`` answer on every node."""
    from gateway.ingress_client import IngressClient

    operators = run.node_urls("operator")
    assert set(operators) == set(NODES), run.nodes
    for url in operators.values():
        for path, status in (("/healthz", "ok"), ("/readyz", "ready")):
            with urllib.request.urlopen(url + path, timeout=10) as response:
                assert response.status == 200
                assert json.loads(response.read())["status"] == status, (url, path)
    before = {node: scrape(url) for node, url in operators.items()}
    conn = rest_on(run, run.edge)
    try:
        ids = [post(conn, run, f"counted {i}")[0] for i in range(3)]
    finally:
        conn.close()

    async def send() -> dict:
        async with IngressClient(run.node_url("ingress_url", "ingress"),
                                 run.ingress_secret) as ingress:
            return await ingress.post_system_message(int(run.served["channel_id"]), "counted")

    ids.append(str(asyncio.run(send())["id"]))
    received(client, *ids)
    after = {node: scrape(url) for node, url in operators.items()}

    def delta(node: str, name: str, **labels: str) -> float:
        return total(after[node], name, **labels) - total(before[node], name, **labels)

    edge, owner = run.edge, run.owner
    route = "*/channels/{channel_id}/messages"
    assert delta(edge, "http_server_request_duration_seconds_count", http_route=route,
                 http_request_method="POST", http_response_status_code="200") == 3
    assert delta(edge, "http_server_request_duration_seconds_bucket", http_route=route,
                 http_request_method="POST", http_response_status_code="200", le="+Inf") == 3
    assert delta(owner, "http_server_request_duration_seconds_count", http_route=route) == 0
    assert delta(edge, "gateway_deliveries_total") >= 4
    assert delta(edge, "gateway_delivery_latency_seconds_count") >= 4
    assert delta(edge, "gateway_out_bytes_total") > 0
    assert delta(owner, "storage_writes_total", outcome="acked") == 4
    assert delta(owner, "storage_batch_writes_sum") == 4
    assert delta(owner, "storage_batch_writes_count") >= 1
    assert delta(owner, "storage_batch_duration_seconds_count") >= 1
    assert sum(delta(n, "ingress_requests_total") for n in NODES) == 1


def test_the_run_logged_no_error_and_no_secret(run: Run) -> None:
    """After everything above (at debug): no metrics pushed to the traces-only OTLP
    endpoint (its 404s), no error line, and neither the bot token, the ingress secret
    nor the cluster secret in any line."""
    errors = [line for line in run.lines if '"level": "error"' in line
              or '"level": "critical"' in line or "Failed to export" in line]
    assert errors == [], "".join(errors)
    secrets_seen = [line for line in run.lines
                    if any(secret in line for secret in (
                        run.served["bot_token"], run.ingress_secret, run.cluster_secret))]
    assert secrets_seen == [], "".join(secrets_seen)
