"""REST's log lines, as an SRE reads them (structlog JSON from a real gateway): an access
line per request at debug, one structured line per 5xx with its traceback, the trace id
of the message on every line logged while handling it, and never a token."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import structlog
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from observability import configure_logging, configure_tracing
from observability import logging as obs_logging
from tests.gateway.harness import run, running_gateway
from tests.gateway.test_fanout import open_guild
from tests.gateway.test_gateway_socket import identified
from tests.gateway.test_ingress import next_dispatch

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"
MESSAGES = "/api/v10/channels/{channel_id}/messages"


@pytest.fixture
def json_logs(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[], list[dict[str, Any]]]]:
    """This process logs JSON at DEBUG into a buffer (as a node does to its stderr);
    the fixture's value parses what was written. Spans go to memory."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    config = structlog.get_config()
    buf = io.StringIO()
    configure_logging(json=True, level="DEBUG", stream=buf)
    configure_tracing("greenroom-test", exporter=InMemorySpanExporter())

    def lines() -> list[dict[str, Any]]:
        return [json.loads(line) for line in buf.getvalue().splitlines() if line.strip()]

    lines.text = buf.getvalue  # type: ignore[attr-defined]
    yield lines
    obs_logging._reset()
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.configure(**config)
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    configure_tracing("greenroom-test")


def _mine(lines: list[dict[str, Any]], since: int) -> list[dict[str, Any]]:
    return [line for line in lines[since:] if line.get("logger", "").startswith("greenroom")]


def test_every_line_of_a_traced_post_carries_its_trace_id(tmp_path: Path, json_logs) -> None:
    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            bot, _ = await identified(http, r)
            await asyncio.sleep(0.05)
            since = len(json_logs())
            async with http.post(
                    f"{r.gateway.rest_url}/channels/{r.seeded.channel_id}/messages",
                    json={"content": "traced"},
                    headers={"Authorization": f"Bot {r.other_token}",
                             "traceparent": TRACEPARENT}) as resp:
                assert resp.status == 200
            await next_dispatch(bot, "MESSAGE_CREATE")
            await asyncio.sleep(0.02)
            path = _mine(json_logs(), since)
            access = [line for line in path if line["event"] == "rest.request"]
            assert len(access) == 1, path
            assert all(line.get("trace_id") == TRACE_ID for line in path), path
            assert access[0]["route"] == MESSAGES and access[0]["method"] == "POST"
            await bot.close()

    run(main)
    assert "Bot " not in json_logs.text()


def test_a_5xx_logs_one_structured_line_with_route_and_traceback(
        tmp_path: Path, json_logs) -> None:
    """A real storage fault (its table dropped under a running server): one error line
    naming the route template, the status and the exception with its traceback."""
    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            db = sqlite3.connect(tmp_path / "greenroom.db")
            db.execute("DROP TABLE messages")
            db.commit()
            db.close()
            since = len(json_logs())
            async with http.get(
                    f"{r.gateway.rest_url}/channels/{r.seeded.channel_id}/messages/1",
                    headers={"Authorization": f"Bot {r.seeded.token}"}) as resp:
                assert resp.status == 500
            errors = [line for line in _mine(json_logs(), since) if line["level"] == "error"]
            assert len(errors) == 1, errors
            (line,) = errors
            assert line["event"] == "rest.failed"
            assert line["route"] == MESSAGES + "/{message_id}"
            assert line["status"] == 500 and line["method"] == "GET"
            assert line["exc_type"] == "sqlite3.OperationalError"
            assert "no such table: messages" in line["exc_message"]
            assert line["exception"].startswith("Traceback")
            assert line["node"] == r.gateway.base.node and line["duration_ms"] >= 0
            text = json_logs.text()
            assert r.seeded.token not in text and "Authorization" not in text

    run(main)


def test_the_access_log_is_at_debug_and_names_no_header(tmp_path: Path, json_logs) -> None:
    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            headers = {"Authorization": f"Bot {r.seeded.token}"}
            since = len(json_logs())
            async with http.get(f"{r.gateway.rest_url}/users/@me", headers=headers) as resp:
                assert resp.status == 200
            async with http.get(f"{r.gateway.rest_url}/channels/1/nope",
                                headers=headers) as resp:
                assert resp.status == 404
            me, unmatched = [line for line in _mine(json_logs(), since)
                             if line["event"] == "rest.request"]
            assert me["level"] == "debug"
            assert (me["method"], me["route"], me["status"]) == ("GET", "/api/v10/users/@me",
                                                                 200)
            assert me["duration_ms"] >= 0 and me["node"] == r.gateway.base.node
            assert (unmatched["route"], unmatched["status"]) == ("<unmatched>", 404)
            # at info (production's default) there is no access line
            logging.getLogger().setLevel(logging.INFO)
            since = len(json_logs())
            async with http.get(f"{r.gateway.rest_url}/users/@me", headers=headers) as resp:
                assert resp.status == 200
            assert not [line for line in _mine(json_logs(), since)
                        if line["event"] == "rest.request"]

    run(main)
    text = json_logs.text()
    assert "Bot " not in text and "Authorization" not in text


def test_a_failed_delivery_logs_one_line_in_the_message_trace(tmp_path: Path,
                                                              json_logs) -> None:
    """A session that fails to take a dispatch (a fault injected into one session):
    the fan-out point logs it once, structured, with the traceback and the trace of
    the message; the other recipients still get it."""
    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            bot, ready = await identified(http, r)
            alice, _ = await identified(http, r, r.other_token)
            await open_guild(alice, r.seeded.guild_id)  # a user: active once opened
            session = r.gateway.ctx.sessions[ready["d"]["session_id"]]._cell.instance

            def broken(dispatch: Any, trace: Any = None) -> None:
                raise RuntimeError("injected")

            session.deliver_dispatch = broken
            await asyncio.sleep(0.05)
            async with http.post(
                    f"{r.gateway.rest_url}/channels/{r.seeded.channel_id}/messages",
                    json={"content": "traced"},
                    headers={"Authorization": f"Bot {r.seeded.token}",
                             "traceparent": TRACEPARENT}) as resp:
                assert resp.status == 200
            await next_dispatch(alice, "MESSAGE_CREATE")
            await asyncio.sleep(0.02)
            await bot.close()
            await alice.close()

    run(main)
    failed = [line for line in json_logs() if line["event"] == "fanout.delivery_failed"]
    assert len(failed) == 1, failed
    (line,) = failed
    assert line["level"] == "error" and line["trace_id"] == TRACE_ID
    assert line["exc_type"] == "RuntimeError" and "Traceback" in line["exception"]
    assert line["event_name"] == "MESSAGE_CREATE" and "trace" not in line
