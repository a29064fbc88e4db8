"""``greenroom run`` serves the gateway from every node on shared ports: the printed
token identifies."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

from tests.cluster.run_log import read_until

ROOT = Path(__file__).parents[2]


def start_run(tmp_path: Path) -> tuple[subprocess.Popen, dict, list[str]]:
    env = dict(os.environ, GREENROOM_LOG_FORMAT="json", PYTHONUNBUFFERED="1",
               GREENROOM_SQLITE_PATH=str(tmp_path / "greenroom.db"),
               GREENROOM_SQLITE_SYNCHRONOUS="NORMAL")
    proc = subprocess.Popen([sys.executable, "-m", "greenroom.cli", "run", "--nodes", "2",
                             "--port", "0", "--rest-port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env, cwd=ROOT)
    event, _, lines = read_until(proc, "gateway serving")
    if event is not None:
        return proc, event, lines
    proc.kill()
    raise AssertionError("greenroom run did not report the gateway:\n" + "".join(lines))


def stop_run(proc: subprocess.Popen) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()


def identify(url: str, token: str) -> tuple[dict, dict, dict]:
    from websockets.sync.client import connect

    with connect(f"{url}/?v=10&encoding=json", open_timeout=10, close_timeout=2) as ws:
        hello = json.loads(ws.recv(timeout=10))
        ws.send(json.dumps({"op": 2, "d": {
            "token": token, "intents": 513,
            "properties": {"os": "linux", "browser": "test", "device": "test"}}}))
        ready = json.loads(ws.recv(timeout=10))
        guild = json.loads(ws.recv(timeout=10))
    return hello, ready, guild


def test_run_serves_the_gateway_with_the_printed_token_and_reseeds_nothing(tmp_path):
    proc, served, lines = start_run(tmp_path)
    try:
        assert served["gateway_url"].startswith("ws://127.0.0.1:")
        assert served["rest_url"].startswith("http://127.0.0.1:")
        # every node serves the same ports (SO_REUSEPORT): one set of URLs
        nodes = [json.loads(line) for line in lines if '"node serving"' in line]
        assert sorted(n["node"] for n in nodes) == ["n1", "n2"]
        assert {(n["gateway"], n["rest"]) for n in nodes} == {
            (served["gateway_url"], served["rest_url"])}
        hello, ready, guild = identify(served["gateway_url"], served["bot_token"])
        assert hello["op"] == 10 and "heartbeat_interval" in hello["d"]
        assert ready["op"] == 0 and ready["t"] == "READY", ready
        assert ready["d"]["user"]["bot"] is True
        assert [g["id"] for g in ready["d"]["guilds"]] == [str(served["guild_id"])]
        assert guild["t"] == "GUILD_CREATE"
        assert str(served["channel_id"]) in {c["id"] for c in guild["d"]["channels"]}
        request = urllib.request.Request(f"{served['rest_url']}/users/@me",
                                         headers={"Authorization": f"Bot {served['bot_token']}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            assert json.loads(response.read())["id"] == ready["d"]["user"]["id"]
    finally:
        assert stop_run(proc) == 0
    # A second run on the same database hands out the same bot, guild and channel.
    proc, again, _ = start_run(tmp_path)
    try:
        assert (again["bot_token"], again["guild_id"], again["channel_id"]) == (
            served["bot_token"], served["guild_id"], served["channel_id"])
        _, ready, _ = identify(again["gateway_url"], again["bot_token"])
        assert ready["t"] == "READY"
    finally:
        assert stop_run(proc) == 0
