"""The operator port: ``/metrics`` after real traffic, ``/healthz``, ``/readyz``.

An in-process gateway (real sockets, real SQLite) with its operator server, and a real
``greenroom run`` tree scraped over HTTP as Prometheus would.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.observe import watch_gateway
from observability.operator import OperatorServer
from tests.cluster.run_log import ROOT, run_env, serving
from tests.gateway.harness import run, running_gateway

POST_ROUTE = "/api/v10/channels/{channel_id}/messages"


def parse_prometheus(text: str) -> dict[str, float]:
    """``name{labels}`` (labels sorted as the exposition has them) -> value."""
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            samples[key] = float(value)
    return samples


def total(samples: dict[str, float], name: str) -> float:
    """The sum of every series of *name* (0 when there is none yet)."""
    return sum(v for k, v in samples.items() if k.partition("{")[0] == name)


def sample(samples: dict[str, float], name: str, **labels: str) -> float:
    """The value of the one series of *name* whose labels include *labels* (the sum if
    several match)."""
    found = 0.0
    hit = False
    for key, value in samples.items():
        metric, _, rest = key.partition("{")
        if metric != name:
            continue
        have = dict(re.findall(r'(\w+)="([^"]*)"', rest))
        if all(have.get(k) == v for k, v in labels.items()):
            found += value
            hit = True
    assert hit, f"no {name} {labels} in {sorted(k for k in samples if k.startswith(name))}"
    return found


async def identify_and_post(http: aiohttp.ClientSession, gateway_url: str, rest_url: str,
                            token: str, channel_id: int) -> aiohttp.ClientWebSocketResponse:
    """IDENTIFY on a WebSocket, post one message over REST, read its MESSAGE_CREATE.
    Returns the socket, still open (a connected session)."""
    ws = await http.ws_connect(f"{gateway_url}/?v=10&encoding=json")
    assert (await ws.receive_json(timeout=10))["op"] == 10
    await ws.send_json({"op": 2, "d": {"token": token, "intents": 513 | 32768,
                                       "properties": {"os": "linux", "browser": "t",
                                                      "device": "t"}}})
    events = []
    while "GUILD_CREATE" not in events:
        events.append((await ws.receive_json(timeout=10)).get("t"))
    async with http.post(f"{rest_url}/channels/{channel_id}/messages",
                         json={"content": "hello operator"},
                         headers={"Authorization": f"Bot {token}"}) as response:
        assert response.status == 200, await response.text()
    while (await ws.receive_json(timeout=10)).get("t") != "MESSAGE_CREATE":
        pass
    return ws


async def get(http: aiohttp.ClientSession, url: str) -> tuple[int, Any]:
    async with http.get(url) as response:
        body = await response.text()
        if response.content_type == "application/json":
            return response.status, json.loads(body)
        return response.status, body


def test_in_process_metrics_health_and_readiness(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            operator = OperatorServer("127.0.0.1", 0)
            unwatch = watch_gateway(r.gateway, operator)
            await operator.start()
            try:
                assert operator.url.startswith("http://127.0.0.1:")
                status, body = await get(http, f"{operator.url}/healthz")
                assert (status, body) == (200, {"status": "ok"})
                status, body = await get(http, f"{operator.url}/readyz")
                assert status == 200, body
                assert body == {"status": "ready", "checks": {"storage": {"ok": True},
                                                              "gateway": {"ok": True}}}

                # the registry is the process's: earlier tests in this process counted too
                _, before = await get(http, f"{operator.url}/metrics")
                before_m = parse_prometheus(before)
                ws = await identify_and_post(http, r.gateway.gateway_url, r.gateway.rest_url,
                                             r.seeded.token, r.seeded.channel_id)
                status, text = await get(http, f"{operator.url}/metrics")
                assert status == 200
                m = parse_prometheus(text)
                node = r.gateway.base.node
                assert sample(m, "http_server_request_duration_seconds_count",
                              http_route=POST_ROUTE, http_request_method="POST",
                              http_response_status_code="200") >= 1
                assert sample(m, "http_server_request_duration_seconds_bucket",
                              http_route=POST_ROUTE, http_response_status_code="200",
                              le="+Inf") >= 1
                assert sample(m, "gateway_identifies_total") >= 1
                assert sample(m, "gateway_deliveries_total") >= 1
                assert sample(m, "gateway_out_bytes_total") > 100  # READY, GUILD_CREATE...
                latency = [total(m, f"gateway_delivery_latency_seconds_{k}")
                           - total(before_m, f"gateway_delivery_latency_seconds_{k}")
                           for k in ("count", "sum")]
                assert latency[0] >= 1
                assert 0 <= latency[1] / latency[0] < 10  # this post's, in seconds
                assert sample(m, "gateway_sessions", node=node, state="connected") == 1
                assert sample(m, "gateway_connections", node=node) == 1
                assert sample(m, "gateway_guild_subscriptions", node=node, state="active") == 1
                assert sample(m, "storage_batch_writes_count") >= 1
                assert sample(m, "storage_batch_duration_seconds_count", outcome="ok") >= 1
                assert sample(m, "storage_writes_total", node=node, outcome="acked") >= 1
                assert sample(m, "storage_write_queue", node=node, state="queued") == 0
                assert sample(m, "actor_run_queue_length", node=node) >= 0
                assert sample(m, "actor_overloaded_total", node=node) == 0
                await ws.close()

                # Storage unreachable: /readyz says so, names the check, and still answers.
                await r.gateway.storage.close()
                status, body = await get(http, f"{operator.url}/readyz")
                assert status == 503, body
                assert body["status"] == "not ready"
                assert body["checks"]["storage"]["ok"] is False
                assert body["checks"]["storage"]["error"]
                assert body["checks"]["gateway"] == {"ok": True}
                status, body = await get(http, f"{operator.url}/healthz")
                assert status == 200
                status, _ = await get(http, f"{operator.url}/nothing")
                assert status == 404
            finally:
                await operator.stop()
                for stop in unwatch:
                    stop()
                await r.gateway.storage.open()  # running_gateway closes it again

    run(main, timeout=60)


def test_greenroom_run_serves_an_operator_port_per_node(tmp_path: Path) -> None:
    """A real tree of two node processes: each node's operator URL is in its record;
    after an IDENTIFY and a REST post their /metrics show them (on whichever node the
    kernel gave the connections); the nodes see each other on the data plane; /readyz
    is 200 on both once they are members."""
    tag = f"operator-{os.getpid()}-{time.monotonic_ns()}"
    env = run_env(tmp_path, tag, without=("OTEL_",))
    with serving(env, "--nodes", "2", "--port", "0", "--rest-port", "0",
                 "--operator-port", "0") as tree:
        served = tree.served
        nodes = {name: event["operator"] for name, event in tree.nodes.items()}
        assert sorted(nodes) == ["n1", "n2"]
        assert all(url.startswith("http://127.0.0.1:") for url in nodes.values())
        assert len(set(nodes.values())) == 2  # one port each

        async def scrape(http: aiohttp.ClientSession, url: str) -> dict[str, float]:
            status, text = await get(http, f"{url}/metrics")
            assert status == 200
            return parse_prometheus(text)

        async def main() -> tuple[dict[str, float], dict[str, float]]:
            async with aiohttp.ClientSession() as http:
                ws = await identify_and_post(http, served["gateway_url"], served["rest_url"],
                                             served["bot_token"], served["channel_id"])
                for url in nodes.values():
                    status, body = await get(http, f"{url}/readyz")
                    for _ in range(50):  # membership is announced just after the banner
                        if status == 200:
                            break
                        await asyncio.sleep(0.1)
                        status, body = await get(http, f"{url}/readyz")
                    assert status == 200, body
                    assert set(body["checks"]) == {"storage", "gateway", "cluster"}
                    assert (await get(http, f"{url}/healthz")) == (200, {"status": "ok"})
                n1, n2 = await scrape(http, nodes["n1"]), await scrape(http, nodes["n2"])
                for _ in range(50):  # members are live once announced, heard a beat later
                    # both sides: n1's scrape may predate the beat n2's has heard
                    if (any(k.startswith("dataplane_heartbeat_delay_seconds_count") for k in n2)
                            and any(k.startswith("envelopes_sent_total") for k in n1)):
                        break
                    await asyncio.sleep(0.1)
                    n1, n2 = await scrape(http, nodes["n1"]), await scrape(http, nodes["n2"])
                await ws.close()
                return n1, n2

        n1, n2 = run(main, timeout=60)
        both = {k: n1.get(k, 0) + n2.get(k, 0) for k in {*n1, *n2}}
        assert sample(both, "gateway_identifies_total") >= 1
        assert sample(both, "gateway_deliveries_total") >= 1
        assert sample(both, "http_server_request_duration_seconds_count",
                      http_route=POST_ROUTE, http_response_status_code="200") >= 1
        assert sample(both, "gateway_sessions", state="connected") == 1
        assert sample(both, "storage_writes_total", outcome="acked") >= 1
        assert sample(n1, "cluster_members", node="n1") == 2
        assert sample(n2, "cluster_members", node="n2") == 2
        # the data plane, per peer: heartbeats at least, every 0.2 s
        assert sample(n1, "envelopes_sent_total", peer="n2") >= 1
        assert sample(n1, "dataplane_sent_bytes_total", peer="n2") > 0
        assert sample(n2, "envelopes_received_total", peer="n1") >= 1
        assert sample(n2, "dataplane_heartbeat_delay_seconds_count", peer="n1") >= 1
        assert sample(n2, "dataplane_heartbeat_delay_seconds_bucket", peer="n1",
                      le="+Inf") >= 1


def test_readyz_names_a_check_that_hangs_or_raises() -> None:
    async def main() -> None:
        operator = OperatorServer("127.0.0.1", 0)

        async def hangs() -> None:
            await asyncio.sleep(60)

        def raises() -> None:
            raise ConnectionError("no route to the database")

        operator.add_check("slow", hangs)
        operator.add_check("broken", raises)
        operator.add_check("fine", lambda: None)
        await operator.start()
        try:
            async with aiohttp.ClientSession() as http:
                status, body = await get(http, f"{operator.url}/readyz")
        finally:
            await operator.stop()
        assert status == 503
        assert body["checks"]["fine"] == {"ok": True}
        assert body["checks"]["slow"] == {"ok": False, "error": "no answer within 2 s"}
        assert body["checks"]["broken"] == {
            "ok": False, "error": "ConnectionError: no route to the database"}

    run(main, timeout=20)


def test_operator_port_in_use_fails_fast(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
        done = subprocess.run(
            [sys.executable, "-m", "greenroom.cli", "run", "--port", "0", "--rest-port", "0",
             "--operator-port", str(port), "--sqlite-path", str(tmp_path / "g.db")],
            capture_output=True, text=True, env=env, cwd=ROOT, timeout=60)
    assert done.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr
    assert "--operator-port" in done.stderr



@pytest.mark.parametrize("command", ["run", "gateway"])
def test_help_documents_the_operator_endpoints_and_telemetry_variables(
        command: str, capsys: pytest.CaptureFixture[str]) -> None:
    """``greenroom run --help`` (and ``gateway``'s) says what /healthz and /readyz answer
    (JSON bodies, 200/503, the readiness checks) and which variables turn telemetry on."""
    from greenroom.cli import main

    with pytest.raises(SystemExit) as exited:
        main([command, "--help"])
    assert exited.value.code == 0
    text = capsys.readouterr().out
    assert 'GET /healthz  200 {"status": "ok"}' in text
    assert 'GET /readyz   200 {"status": "ready", "checks": {' in text
    assert '503 {"status": "not ready", "checks":' in text
    for check in ("storage", "gateway", "cluster"):
        assert f"{check} (" in text, check
    assert "GET /metrics" in text
    for variable in ("GREENROOM_LOG_LEVEL", "OTEL_EXPORTER_OTLP_ENDPOINT",
                     "OTEL_TRACES_SAMPLER/_ARG", "GREENROOM_TRACES_IDENTIFY_RATIO",
                     "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "GREENROOM_INGRESS_SECRET_FILE"):
        assert variable in text, variable
