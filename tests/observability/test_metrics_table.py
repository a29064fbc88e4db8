"""README "Operating greenroom > Metrics" against a real node's ``/metrics``.

The table is parsed here, so that it and the exposition cannot drift apart: every metric
it names is on ``/metrics`` right after ``greenroom run`` serves (with a series for each
label value it lists, at 0 before any event), every metric served is in the table, and
a REST post and a RESUME show up in the metrics that count them.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from tests.cluster.run_log import ROOT, run_env, serving
from tests.gateway.harness import run
from tests.observability.test_operator_endpoints import POST_ROUTE, get, parse_prometheus, sample

#: what marks an open label set in the table's labels column
FIRST_SEEN = "(each when first seen)"
KINDS = ("counter", "gauge", "histogram")


@dataclass
class Documented:
    name: str
    kind: str  # counter, gauge, histogram
    fixed: dict[str, list[str]]  # label -> the values the table lists
    first_seen: bool  # its series appear when first seen


def metrics_table(readme: str) -> list[Documented]:
    """The rows of the README's metrics table (a row may name several metrics)."""
    section = readme.split("## Operating greenroom", 1)[1].split("### Metrics", 1)[1]
    table = section.split("\n\n| metric |", 1)[1].split("\n\n", 1)[0]
    rows = table.splitlines()[2:]  # below the header and its rule
    out = []
    for row in rows:
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", row)[1:-1]]
        names, kind, labels = re.findall(r"`([a-z_]+)`", cells[0]), cells[1].split()[0], cells[2]
        assert names and kind in KINDS, row
        fixed = {key: re.findall(r"`([^`]+)`", values)
                 for key, values in re.findall(r"(\w+)=((?:`[^`]+`(?:\\\|)?)+)", labels)}
        out.extend(Documented(n, kind, fixed, FIRST_SEEN in labels) for n in names)
    return out


def declared(text: str) -> dict[str, str]:
    """Metric family -> its type, from the exposition's ``# TYPE`` lines."""
    return dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.MULTILINE))


def series(samples: dict[str, float], metric: Documented) -> dict[str, float]:
    """*metric*'s series (a histogram's by its ``_count``)."""
    name = f"{metric.name}_count" if metric.kind == "histogram" else metric.name
    return {k: v for k, v in samples.items() if k.partition("{")[0] == name}


def test_the_readme_table_parses() -> None:
    table = {m.name: m for m in metrics_table((ROOT / "README.md").read_text())}
    assert table["storage_writes_total"].fixed == {"outcome": ["acked", "failed"]}
    assert table["gateway_message_stage_seconds"].kind == "histogram"
    assert table["dataplane_received_bytes_total"].first_seen  # second name of a row
    assert not table["gateway_resumes_total"].first_seen
    assert len(table) >= 35


async def _identify(http: aiohttp.ClientSession, served: dict[str, Any]
                    ) -> tuple[aiohttp.ClientWebSocketResponse, str, int]:
    """IDENTIFY; returns the socket once its GUILD_CREATE is in, the session id, the
    last sequence number."""
    ws = await http.ws_connect(f"{served['gateway_url']}/?v=10&encoding=json")
    assert (await ws.receive_json(timeout=10))["op"] == 10
    await ws.send_json({"op": 2, "d": {"token": served["bot_token"], "intents": 513 | 32768,
                                       "properties": {"os": "linux", "browser": "t",
                                                      "device": "t"}}})
    session_id, seq = "", 0
    while True:
        event = await ws.receive_json(timeout=10)
        seq = event.get("s") or seq
        if event.get("t") == "READY":
            session_id = event["d"]["session_id"]
        if event.get("t") == "GUILD_CREATE":
            return ws, session_id, seq


def test_every_documented_metric_is_on_a_fresh_nodes_metrics(tmp_path: Path) -> None:
    table = metrics_table((ROOT / "README.md").read_text())
    tag = f"metrics-table-{os.getpid()}-{time.monotonic_ns()}"
    env = run_env(tmp_path, tag, without=("OTEL_",))
    with serving(env, "--port", "0", "--rest-port", "0", "--operator-port", "0") as tree:
        served = tree.served
        [operator] = [node["operator"] for node in tree.nodes.values()]

        async def main() -> tuple[str, dict[str, float]]:
            async with aiohttp.ClientSession() as http:
                status, fresh = await get(http, f"{operator}/metrics")
                assert status == 200
                ws, session_id, seq = await _identify(http, served)
                async with http.post(f"{served['rest_url']}/channels/"
                                     f"{served['channel_id']}/messages",
                                     json={"content": "counted"},
                                     headers={"Authorization": f"Bot {served['bot_token']}"}
                                     ) as response:
                    assert response.status == 200, await response.text()
                while (event := await ws.receive_json(timeout=10)).get("t") != "MESSAGE_CREATE":
                    pass
                seq = event["s"]
                await ws.close(code=4000)  # resumable
                ws = await http.ws_connect(f"{served['gateway_url']}/?v=10&encoding=json")
                assert (await ws.receive_json(timeout=10))["op"] == 10
                await ws.send_json({"op": 6, "d": {"token": served["bot_token"],
                                                   "session_id": session_id, "seq": seq}})
                while (event := await ws.receive_json(timeout=10)).get("t") != "RESUMED":
                    pass
                for _ in range(50):  # the last stage ends after the socket write
                    _, text = await get(http, f"{operator}/metrics")
                    after = parse_prometheus(text)
                    if sample(after, "gateway_message_stage_seconds_count",
                              stage="fanout_loop") >= 1:
                        break
                    await asyncio.sleep(0.1)
                await ws.close()
                return fresh, after

        fresh, after = run(main, timeout=60)

    samples, types = parse_prometheus(fresh), declared(fresh)
    # every metric of the table, from the start; open label sets at least declared
    for metric in table:
        assert types.get(metric.name) == metric.kind, (metric.name, types.get(metric.name))
        have = series(samples, metric)
        if metric.first_seen:
            continue
        assert have, f"{metric.name}: no series on a fresh node"
        for label, values in metric.fixed.items():
            for value in values:
                assert any(f'{label}="{value}"' in key for key in have), (
                    f"{metric.name}{{{label}={value!r}}} missing: {sorted(have)}")
    # and nothing served that the table does not name
    assert set(types) - {m.name for m in table} == {"target_info"}

    # at 0 before their first event, counted after it
    assert sample(samples, "gateway_resumes_total") == 0
    assert sample(samples, "gateway_identifies_total") == 0
    assert sample(after, "gateway_resumes_total") == 1
    assert sample(after, "gateway_identifies_total") == 1
    assert sample(after, "http_server_request_duration_seconds_count", http_route=POST_ROUTE,
                  http_request_method="POST", http_response_status_code="200") == 1
    for stage in table_values(table, "gateway_message_stage_seconds", "stage"):
        assert sample(samples, "gateway_message_stage_seconds_count", stage=stage) == 0
        assert sample(after, "gateway_message_stage_seconds_count", stage=stage) == 1, stage
    assert sample(after, "storage_batch_duration_seconds_count", outcome="ok") >= 1
    assert sample(after, "storage_batch_duration_seconds_count", outcome="error") == 0
    assert sample(after, "gateway_delivery_latency_seconds_count") >= 1


def table_values(table: list[Documented], name: str, label: str) -> list[str]:
    [metric] = [m for m in table if m.name == name]
    return metric.fixed[label]
