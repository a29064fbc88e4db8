"""A client's mistakes are not the server's faults: bad frames, undecodable payloads and
bad tokens, on the gateway and on REST, are answered (close code, HTTP status) and log
nothing at WARNING or above; server faults keep their ERROR records."""

from __future__ import annotations

import gc
import logging
from pathlib import Path

import aiohttp
import pytest

from tests.gateway.harness import run, running_gateway
from tests.gateway.test_gateway_socket import connect, identify, recv_close


def test_client_protocol_errors_log_no_warning_or_error(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> dict[str, int]:
        closes: dict[str, int] = {}
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            cases = {
                "bad token": identify("Bot bm8.bm8.bm8"),
                "empty token": identify(""),
                "bad json": "{not json",
                "unknown opcode": {"op": 99, "d": None},
                "payload before identify": {"op": 3, "d": {"status": "online"}},
                "oversized payload": "x" * 5000,
            }
            for name, payload in cases.items():
                ws = await connect(http, r)
                if isinstance(payload, str):
                    await ws.send_str(payload)
                else:
                    await ws.send_json(payload)
                closes[name] = await recv_close(ws)
            ws = await connect(http, r)
            await ws._writer.send_frame(b"\xff\xfe{}", aiohttp.WSMsgType.TEXT)  # not UTF-8
            closes["invalid utf-8"] = await recv_close(ws)
            url = f"{r.gateway.rest_url}/channels/{r.seeded.channel_id}/messages"
            for name, headers, body in (
                    ("rest bad token", {"Authorization": "Bot bm8.bm8.bm8"}, b"{}"),
                    ("rest no token", {}, b"{}"),
                    ("rest bad json", {"Authorization": f"Bot {r.seeded.token}",
                                       "Content-Type": "application/json"}, b"{bad")):
                async with http.post(url, data=body, headers=headers) as resp:
                    closes[name] = resp.status
        return closes

    gc.collect()  # what earlier tests left for the collector says its piece now, not below
    with caplog.at_level(logging.DEBUG):
        closes = run(main, timeout=60)
    assert all(code >= 400 for code in closes.values()), closes  # each was refused
    loud = [(rec.name, rec.levelname, rec.getMessage()[:120]) for rec in caplog.records
            if rec.levelno >= logging.WARNING]
    assert loud == []
