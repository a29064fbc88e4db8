"""One trace crossing two actors in two OS processes, through a pipe and msgpack."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import msgpack

from observability import (
    JsonLinesSpanExporter,
    configure_tracing,
    get_tracer,
    inject_current,
    span_from,
)

CHILD = Path(__file__).with_name("trace_child.py")
REPO = Path(__file__).resolve().parents[2]


def test_one_trace_crosses_two_processes(tmp_path) -> None:
    trace_file = tmp_path / "trace.jsonl"
    configure_tracing("greenroom-parent", exporter=JsonLinesSpanExporter(trace_file))

    with get_tracer("greenroom.test").start_as_current_span("actor.a.send") as sender:
        envelope = {"to": "b", "from": "a", "type": "ping", "body": {}, "trace": inject_current()}
        env = {
            **os.environ,
            "GREENROOM_TRACE_FILE": str(trace_file),
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        }
        child = subprocess.run(
            [sys.executable, str(CHILD)],
            input=msgpack.packb(envelope),
            capture_output=True,
            env=env,
            cwd=REPO,
            timeout=60,
            check=False,
        )
    assert child.returncode == 0, child.stderr.decode()
    reply = msgpack.unpackb(child.stdout)
    with span_from(reply["trace"], "actor.a.ack"):
        pass

    spans = {s["name"]: s for s in map(json.loads, trace_file.read_text().splitlines())}
    assert set(spans) == {"actor.a.send", "actor.b.receive", "actor.a.ack"}
    send, receive, ack = spans["actor.a.send"], spans["actor.b.receive"], spans["actor.a.ack"]

    # One trace, three spans, two processes.
    trace_id = f"{sender.get_span_context().trace_id:032x}"
    assert {s["trace_id"] for s in spans.values()} == {trace_id}
    assert send["pid"] == ack["pid"] == os.getpid()
    assert receive["pid"] != os.getpid()
    assert (send["service_name"], receive["service_name"]) == (
        "greenroom-parent",
        "greenroom-child",
    )

    # Parent/child links, each hop marked as coming from another process.
    assert send["parent_span_id"] is None
    assert receive["parent_span_id"] == send["span_id"] and receive["parent_is_remote"]
    assert ack["parent_span_id"] == receive["span_id"] and ack["parent_is_remote"]
    assert receive["attributes"] == {"greenroom.actor": "b"}

    # The child's log line carries the ids of the span it was written in.
    (line,) = [
        json.loads(raw)
        for raw in child.stderr.decode().splitlines()
        if raw.startswith("{") and json.loads(raw).get("event") == "received"
    ]
    assert (line["trace_id"], line["span_id"]) == (trace_id, receive["span_id"])
    assert line["logger"] == "greenroom.child" and line["type"] == "ping"
