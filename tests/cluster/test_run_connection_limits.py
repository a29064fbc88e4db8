"""``greenroom run``'s connection limits reach the node process: the cap from
``$GREENROOM_MAX_CONNECTIONS`` (a 503 at the handshake) and the per-address rate from
``--connections-per-ip`` (4008 before HELLO)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import uvloop

from loadtest.raw_client import Closed, RawClient
from tests.cluster.run_log import read_until

ROOT = Path(__file__).parents[2]


def test_run_applies_the_connection_cap_and_the_per_address_rate(tmp_path: Path) -> None:
    env = dict(os.environ, GREENROOM_LOG_FORMAT="json", PYTHONUNBUFFERED="1",
               GREENROOM_SQLITE_PATH=str(tmp_path / "greenroom.db"),
               GREENROOM_MAX_CONNECTIONS="1")
    # 0.01/s: a burst of one, and no second token within the test
    proc = subprocess.Popen([sys.executable, "-m", "greenroom.cli", "run", "--nodes", "1",
                             "--port", "0", "--rest-port", "0", "--connections-per-ip",
                             "0.01"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=env, cwd=ROOT)
    try:
        served, _, lines = read_until(proc, "gateway serving")
        assert served is not None, "".join(lines)
        url = urlsplit(served["gateway_url"])

        async def main() -> None:
            first = await RawClient.connect(url.hostname, url.port)
            assert (await first.receive_op(10, 10.0))["op"] == 10
            try:
                await RawClient.connect(url.hostname, url.port)
                raise AssertionError("a second connection got past the cap of 1")
            except Closed as refused:
                assert refused.code == 503
            first.close()
            while True:  # once the node saw the close: the cap admits it, the rate not
                try:
                    third = await RawClient.connect(url.hostname, url.port)
                    break
                except Closed as refused:
                    assert refused.code == 503
                    await asyncio.sleep(0.05)
            try:
                await third.receive_op(10, 10.0)
                raise AssertionError("a connection over the per-address rate got HELLO")
            except Closed as closed:
                assert closed.code == 4008
            finally:
                third.close()

        uvloop.run(asyncio.wait_for(main(), 60))
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        finally:
            if proc.poll() is None:
                proc.kill()
