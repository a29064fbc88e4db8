"""The links' shared deadline timer (gateway/timers.py) on a real uvloop loop, and zombie
detection through it over a real socket."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp

from gateway.protocol import GatewayConfig
from gateway.timers import TimerWheel
from tests.gateway.harness import run, running_gateway
from tests.gateway.test_gateway_socket import connect, identify, recv, recv_close


class Owner:
    def __init__(self, name: str, fired: list[tuple[str, float]], loop: Any) -> None:
        self.name, self.fired, self.loop = name, fired, loop
        self.at = 0.0

    def on_deadline(self) -> None:
        self.fired.append((self.name, self.loop.time() - self.at))


def test_deadlines_fire_in_order_never_early_and_replace_or_cancel() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        wheel = TimerWheel(loop, tick_s=0.02)
        fired: list[tuple[str, float]] = []
        a, b, c, d = (Owner(n, fired, loop) for n in "abcd")
        now = loop.time()
        for owner, delay in ((c, 0.15), (a, 0.05), (b, 0.10), (d, 0.08)):
            owner.at = now + delay
            wheel.schedule(owner, owner.at)
        b.at = now + 0.2  # a later deadline replaces b's earlier one
        wheel.schedule(b, b.at)
        wheel.cancel(d)
        assert len(wheel) == 3
        while len(fired) < 3:
            await asyncio.sleep(0.01)
        assert [name for name, _ in fired] == ["a", "c", "b"]
        # never before its deadline: uvloop's clock counts whole milliseconds, and a
        # deadline that falls on one (now + delay) and the clock reading that reaches it
        # are two roundings of one value, which may differ in the last bit (CI: once)
        assert all(late >= -1e-9 for _, late in fired), fired
        assert len(wheel) == 0
        # an owner may schedule again from its own call
        again = Owner("again", fired, loop)
        again.on_deadline = lambda: (fired.append(("again", 0.0)),  # type: ignore[method-assign]
                                     wheel.schedule(b, loop.time()) if len(fired) < 5 else None)
        wheel.schedule(again, loop.time())
        while len(fired) < 5:
            await asyncio.sleep(0.01)
        assert [name for name, _ in fired[3:]] == ["again", "b"]
        wheel.close()

    run(main)


def test_a_silent_client_is_closed_as_a_zombie_and_may_resume(tmp_path: Path) -> None:
    async def main() -> None:
        config = GatewayConfig(heartbeat_interval_ms=200, heartbeat_grace_s=0.2)
        async with running_gateway(tmp_path, config) as r, aiohttp.ClientSession() as http:
            ws = await connect(http, r)
            await ws.send_json(identify(r.seeded.token))
            ready = await recv(ws)
            assert ready["t"] == "READY"
            assert (await recv(ws))["t"] == "GUILD_CREATE"
            assert await recv_close(ws) == 4000  # no heartbeat: zombie, session kept
            ws = await connect(http, r)
            await ws.send_json({"op": 6, "d": {"token": r.seeded.token, "seq": 2,
                                               "session_id": ready["d"]["session_id"]}})
            assert (await recv(ws))["t"] == "RESUMED"
            await ws.close()

    run(main)
