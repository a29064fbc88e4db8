"""The internal ingress under ``greenroom run`` (secret from the environment or a file,
one loopback port for the host's nodes, off without a secret), and ``greenroom
gateway`` configured like it (JSON logs, tracing, the operator port); the secret is in
no log line."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import uvloop

from cluster.launcher import free_port
from gateway.ingress import secret_from_environment
from gateway.ingress_client import IngressClient
from tests.cluster.run_log import ROOT, read_until, run_env, start_run

SECRET = "ingress-secret-4f1d2c9b7e"


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return run_env(tmp_path, without=("GREENROOM_INGRESS", "OTEL_"),
                   GREENROOM_OPERATOR_PORT="0", **extra)


def _get(url: str) -> tuple[int, Any]:
    """``url``'s status and body (parsed when it is JSON)."""
    with urllib.request.urlopen(url, timeout=10) as response:
        body = response.read().decode()
        if response.headers.get_content_type() == "application/json":
            return response.status, json.loads(body)
        return response.status, body


def _rest_of_output(proc: subprocess.Popen) -> str:
    out, _ = proc.communicate(timeout=30)
    return out or ""


def test_run_serves_the_ingress_from_a_secret_file_on_one_port_for_its_nodes(
        tmp_path: Path) -> None:
    secret_file = tmp_path / "ingress.secret"
    secret_file.write_text(SECRET + "\n")
    run = start_run(_env(tmp_path, GREENROOM_INGRESS_SECRET_FILE=str(secret_file)),
                    "--port", "0", "--rest-port", "0", "--nodes", "2", "--ingress-port", "0")
    served = run.served
    try:
        url = served["ingress_url"]
        assert url.startswith("http://127.0.0.1:") and url.endswith("/ingress/v1")
        assert {n["ingress"] for n in run.nodes.values()} == {url}  # both nodes, one port

        async def post() -> None:
            async with IngressClient(url, SECRET) as client:
                for i in range(4):  # the kernel spreads connections; each must work
                    answer = await client.post_system_message(served["channel_id"],
                                                              f"from a service {i}")
                    assert answer["content"] == f"from a service {i}"

        uvloop.run(post())
    finally:
        code = run.stop()
    assert code == 0
    assert SECRET not in run.output


def test_run_without_a_secret_does_not_listen(tmp_path: Path) -> None:
    port = free_port()
    run = start_run(_env(tmp_path), "--port", "0", "--rest-port", "0", "--ingress-port",
                    str(port))
    try:
        assert run.served["ingress_url"] is None
        assert not [line for line in run.lines if '"ingress"' in line]
        with socket.socket() as probe, pytest.raises(ConnectionRefusedError):
            probe.connect(("127.0.0.1", port))
    finally:
        assert run.stop() == 0


def test_run_refuses_an_unreadable_secret_file_naming_the_variable(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    done = subprocess.run([sys.executable, "-m", "greenroom.cli", "run"],
                          env=_env(tmp_path, GREENROOM_INGRESS_SECRET_FILE=str(missing)),
                          capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 2
    assert "GREENROOM_INGRESS_SECRET_FILE" in done.stderr and str(missing) in done.stderr


def test_secret_from_environment(tmp_path: Path) -> None:
    assert secret_from_environment({}) is None
    assert secret_from_environment({"GREENROOM_INGRESS_SECRET": "  s3  "}) == "s3"
    path = tmp_path / "s"
    path.write_text("from-file\n")
    assert secret_from_environment({"GREENROOM_INGRESS_SECRET_FILE": str(path)}) == "from-file"
    path.write_text("  \n")
    with pytest.raises(ValueError, match="is empty"):
        secret_from_environment({"GREENROOM_INGRESS_SECRET_FILE": str(path)})
    with pytest.raises(ValueError, match="not both"):
        secret_from_environment({"GREENROOM_INGRESS_SECRET": "a",
                                 "GREENROOM_INGRESS_SECRET_FILE": str(path)})


def test_gateway_command_logs_json_like_run_and_serves_the_ingress(tmp_path: Path) -> None:
    env = _env(tmp_path, GREENROOM_INGRESS_SECRET=SECRET)
    proc = subprocess.Popen([sys.executable, "-m", "greenroom.cli", "gateway", "--port", "0",
                             "--rest-port", "0", "--ingress-port", "0", "--seed"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env, cwd=ROOT)
    try:
        event, events, lines = read_until(proc, "gateway serving")
        assert event is not None, "".join(lines)
        assert event["logger"] == "greenroom.gateway" and event["level"] == "info"
        assert event["timestamp"].endswith("Z")
        assert event["ingress_url"].startswith("http://127.0.0.1:")
        # tracing was configured too (its record, in the same JSON format)
        assert any(e["event"] == "tracing configured" for e in events), lines
        # and the operator port, as each node of greenroom run has (loopback, JSON bodies)
        operator = event["operator"]
        assert operator.startswith("http://127.0.0.1:"), event
        assert _get(f"{operator}/healthz") == (200, {"status": "ok"})
        assert _get(f"{operator}/readyz") == (200, {"status": "ready", "checks": {
            "storage": {"ok": True}, "gateway": {"ok": True}}})
        status, metrics = _get(f"{operator}/metrics")
        assert status == 200 and "\ngateway_connections{" in metrics, metrics[:500]
    finally:
        proc.send_signal(signal.SIGTERM)
        rest = _rest_of_output(proc)
    assert SECRET not in "".join(lines) + rest
