"""A fan-out point whose backlog is full sheds what comes (gateway/fanout.py, "Turns"),
over real sockets: each session it was for gets everything before it, then a 4009 close,
and starts anew; a real client library reconnects and goes on receiving.

The backlog is made small (2) and each fan-out goes one frame a turn (two recipients);
the fan-out point is held while six acknowledged posts queue in its mailbox, then let
go: the first two fit, the other four are shed together.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import aiohttp
import pytest

import gateway.fanout
import gateway.guild
from gateway.fanout import FANOUT_ID
from observability.logging import LogThrottle
from tests.gateway.harness import Running, run, running_gateway
from tests.gateway.libraries import (
    HikariBot,
    discordjs_script,
    discordpy_client,
    discordpy_running,
    on,
    point_discordpy_at,
    post_as_alice,
)
from tests.gateway.test_gateway_socket import connect, identified, recv
from tests.gateway.test_node_services_supervised import Reader
from tests.gateway.test_services_crash_delivery import backlog
from tests.gateway.test_session_host_restart import noting

QUEUED = 6


@pytest.fixture(autouse=True)
def small_backlog(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gateway.fanout, "TURN_RECIPIENTS", 1)
    monkeypatch.setattr(gateway.fanout.FanoutPoint, "backlog_capacity", 2)
    # the log lines' throttles, afresh: a shed logged by an earlier test holds none back
    monkeypatch.setattr(gateway.fanout, "_shed_lines", LogThrottle(interval=1.0))
    monkeypatch.setattr(gateway.guild, "_bounced_lines", LogThrottle(interval=1.0))


async def post_while_held(http: aiohttp.ClientSession, r: Running) -> list[str]:
    """Hold the fan-out point, post ``QUEUED`` messages (each acknowledged, its fan-out
    queued), let it go; the ids."""
    cell = r.gateway.base.cells[FANOUT_ID]
    held = asyncio.ensure_future(backlog(cell, QUEUED))
    await asyncio.sleep(0)
    acked = [(await post_as_alice(http, r, {"content": f"post {i}"}))["id"]
             for i in range(QUEUED)]
    await held
    release(r, cell)
    return acked


def test_its_sessions_get_what_came_before_then_4009_and_cannot_resume(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            clients = [await identified(http, r) for _ in range(2)]
            readers = [Reader(ws) for ws, _ in clients]
            acked = await post_while_held(http, r)
            for reader in readers:
                await asyncio.wait_for(reader.task, 10)
                assert reader.closed == (aiohttp.WSMsgType.CLOSE, 4009)
                assert reader.order == acked[:2]  # the two that fitted, in order
            for (_, ready), reader in zip(clients, readers, strict=True):
                ws = await connect(http, r)  # the RESUME every library tries first
                await ws.send_json({"op": 6, "d": {
                    "token": r.seeded.token, "session_id": ready["d"]["session_id"],
                    "seq": 2 + len(reader.order)}})
                invalid = await recv(ws)
                assert (invalid["op"], invalid["d"]) == (9, False)
                await ws.close()

    with caplog.at_level(logging.WARNING, logger="greenroom.gateway.fanout"):
        run(main, timeout=60)
    [shed] = [rec for rec in caplog.records if rec.getMessage() == "fanout.shed"]
    assert (shed.fanouts, shed.sessions_closed) == (QUEUED - 2, 2)


def test_a_discordpy_bot_identifies_anew_and_receives_on(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """discord.py, unmodified: closed 4009, it reconnects, is refused the RESUME (op 9),
    identifies, and receives what is posted after; what it got before is in order."""
    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            point_discordpy_at(monkeypatch, r.gateway)
            client = discordpy_client()
            received: list[str] = []
            lifecycle: list[str] = []

            async def on_message(message: Any) -> None:
                received.append(str(message.id))

            on(client, "message", on_message)
            for event in ("ready", "resumed"):
                on(client, event, noting(lifecycle, event))
            async with discordpy_running(client, r.seeded.token, reconnect=True):
                session_id = client.ws.session_id
                other = Reader((await identified(http, r))[0])  # the fan-outs' second
                acked = await post_while_held(http, r)
                await asyncio.wait_for(other.task, 10)
                for _ in range(500):
                    if lifecycle == ["ready", "ready"] and client.ws.session_id != session_id:
                        break
                    await asyncio.sleep(0.02)
                assert lifecycle == ["ready", "ready"]  # a new session: no RESUMED
                assert received == acked[:2]
                after = (await post_as_alice(http, r, {"content": "after"}))["id"]
                for _ in range(250):
                    if after in received:
                        break
                    await asyncio.sleep(0.02)
                assert received == acked[:2] + [after]

    run(main, timeout=60)


def test_a_hikari_bot_identifies_anew_and_receives_on(tmp_path: Path) -> None:
    """hikari, unmodified: closed 4009, its shard reconnects, is refused the RESUME
    (op 9), identifies (a second ShardReadyEvent) and receives what is posted after."""
    import hikari

    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            bot = HikariBot(r.seeded.token, r.gateway.rest_url, {
                "ready": hikari.ShardReadyEvent, "message": hikari.GuildMessageCreateEvent})
            await bot.start()
            first = await bot.expect("ready")
            try:
                other = Reader((await identified(http, r))[0])  # the fan-outs' second
                acked = await post_while_held(http, r)
                await asyncio.wait_for(other.task, 10)
                got = [str((await bot.expect("message")).message_id) for _ in range(2)]
                assert got == acked[:2]
                again = await bot.expect("ready")  # a new session, after the op 9
                assert again.session_id != first.session_id
                after = (await post_as_alice(http, r, {"content": "after"}))["id"]
                assert str((await bot.expect("message")).message_id) == after
            finally:
                await bot.close()

    run(main, timeout=60)


def test_a_discordjs_bot_identifies_anew_and_receives_on(tmp_path: Path) -> None:
    """discord.js, unmodified (``tests/js/bot.mjs``): closed 4009, it reconnects, is
    refused the RESUME (op 9; no ShardResume), identifies and receives what is posted
    after."""
    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http, \
                discordjs_script(r, "bot.mjs") as bot:
            await bot.expect("ready")
            other = Reader((await identified(http, r))[0])  # the fan-outs' second
            acked = await post_while_held(http, r)
            await asyncio.wait_for(other.task, 10)
            assert [(await bot.expect("message"))["id"] for _ in range(2)] == acked[:2]
            ready = await bot.expect("shard_ready", "resumed")
            while ready["event"] == "shard_ready" and ready["count"] < 2:  # the first's
                ready = await bot.expect("shard_ready", "resumed")
            assert ready == {"event": "shard_ready", "shard": 0, "count": 2}  # not resumed
            after = (await post_as_alice(http, r, {"content": "after"}))["id"]
            assert (await bot.expect("message", "resumed"))["id"] == after
            assert await bot.stop() == 0

    run(main, timeout=60)


def test_a_session_whose_socket_closed_resumably_just_before_ends_all_the_same(
        tmp_path: Path) -> None:
    """The shed's close may find the socket closed already with a resumable code, its
    Detached on its way to the session (a slow consumer's 4000, a dropped connection),
    and the client's RESUME queued behind it: the session ends all the same, and that
    RESUME gets op 9 (not a connection left waiting for an ended session)."""
    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            ws, ready = await identified(http, r)
            session_id = ready["d"]["session_id"]
            cell = r.gateway.base.cells[r.gateway.ctx.sessions[session_id].id]
            session, link = cell.instance, cell.instance.link
            await backlog(cell, 0)  # held: what comes waits in its mailbox
            link.execute(link.conn.close(4000, "too slow"))  # resumable, as _slow does
            ws2 = await connect(http, r)
            await ws2.send_json({"op": 6, "d": {"token": r.seeded.token,
                                                "session_id": session_id, "seq": 2}})
            for _ in range(500):  # its Detached, then the RESUME's Attach
                if len(cell.mailbox or ()) >= 2:
                    break
                await asyncio.sleep(0.01)
            assert len(cell.mailbox or ()) >= 2
            assert session.close(4009, "Session timed out") is False  # the shed's call
            assert session._ended and session_id not in r.gateway.ctx.sessions
            release(r, cell)
            invalid = await recv(ws2)
            assert (invalid["op"], invalid["d"]) == (9, False)
            for _ in range(100):
                if not cell.alive:
                    break
                await asyncio.sleep(0.01)
            assert not cell.alive
            await ws2.close()
            await ws.close()

    run(main)


def test_a_fan_out_bounced_by_a_full_mailbox_closes_its_sessions_too(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
        ) -> None:
    """A NodeFanout that finds the fan-out point's mailbox itself full comes back to its
    guild as ``Overloaded``; the guild closes its sessions 4009 (it could only drop it)."""
    monkeypatch.setattr(gateway.fanout.FanoutPoint, "mailbox_capacity", 2)
    monkeypatch.setattr(gateway.fanout.FanoutPoint, "backlog_capacity", 100)

    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            clients = [await identified(http, r) for _ in range(2)]
            readers = [Reader(ws) for ws, _ in clients]
            cell = r.gateway.base.cells[FANOUT_ID]
            held = asyncio.ensure_future(backlog(cell, 2))
            await asyncio.sleep(0)
            for i in range(4):  # the last two do not fit
                await post_as_alice(http, r, {"content": f"post {i}"})
            await held
            for reader in readers:
                await asyncio.wait_for(reader.task, 10)
                assert reader.closed == (aiohttp.WSMsgType.CLOSE, 4009)
            release(r, cell)
            for _, ready in clients:
                ws = await connect(http, r)
                await ws.send_json({"op": 6, "d": {
                    "token": r.seeded.token, "session_id": ready["d"]["session_id"],
                    "seq": 2}})
                invalid = await recv(ws)
                assert (invalid["op"], invalid["d"]) == (9, False)
                await ws.close()

    with caplog.at_level(logging.WARNING, logger="greenroom.gateway.guild"):
        run(main, timeout=60)
    # the first bounce closes both; a second (each line, if a second apart) none again
    closed = [rec.sessions_closed for rec in caplog.records
              if rec.getMessage() == "guild.fanout_bounced"]
    assert closed[0] == 2 and all(n == 0 for n in closed[1:])


def release(r: Running, cell: Any) -> None:
    """Let a cell held by ``backlog`` go (still marked scheduled: queued once)."""
    base = r.gateway.base
    base.runq.append(cell)
    if not base.drain_pending:
        base.schedule_drain()
