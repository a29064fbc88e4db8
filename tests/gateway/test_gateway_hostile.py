"""A hostile client over a real socket (issue 10, points 6 and 8): hand-built frames
that break RFC 6455, sockets that never IDENTIFY, too many connections, and ids or
tokens that must not leave a client hanging. The raw client is the fuzzer's
(``loadtest.raw_client.RawClient``): it sends frames exactly as told."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from gateway.limits import RateLimits
from gateway.protocol import GatewayConfig
from loadtest.raw_client import Closed, RawClient
from tests.gateway.harness import Running, run, running_gateway
from tests.log_capture import json_logs

TEXT, BINARY, CONT = 0x1, 0x2, 0x0
IDENTIFY_D = {"intents": 513, "properties": {"os": "linux", "browser": "t", "device": "t"}}


async def connect(r: Running, **kwargs) -> RawClient:
    client = await RawClient.connect(r.gateway.host, r.gateway.port, **kwargs)
    hello = await client.receive_op(10, 5.0)
    assert hello["d"]["heartbeat_interval"] > 0
    return client


async def close_code(client: RawClient, timeout: float = 5.0) -> int | None:
    """Read until the server's close frame; its code."""
    with pytest.raises(Closed) as closed:
        await client.receive_op(-1, timeout)
    return closed.value.code


def errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [f"{r.name}: {r.getMessage()}" for r in caplog.records if r.levelno >= logging.ERROR]


# -- RFC 6455 --------------------------------------------------------------------------------


@pytest.mark.parametrize("fragmented", [False, True])
def test_invalid_utf8_in_a_text_message_closes_1007_not_1011(tmp_path: Path, caplog,
                                                             fragmented: bool) -> None:
    async def main() -> None:
        async with running_gateway(tmp_path) as r:
            client = await connect(r)
            data = b'{"op":1,"d":"\xff\xfe"}'
            if fragmented:  # the bad byte is split from its message's first frame
                client.frame(TEXT, data[:14], fin=False)
                client.frame(CONT, data[14:])
            else:
                client.frame(TEXT, data)
            assert await close_code(client) == 1007
            client.close()

    run(main)
    assert errors(caplog) == []


@pytest.mark.parametrize("rsv", [4, 2, 1])  # RSV1, RSV2, RSV3
def test_a_reserved_bit_fails_the_connection_1002(tmp_path: Path, rsv: int) -> None:
    async def main() -> None:
        async with running_gateway(tmp_path) as r:
            client = await connect(r)
            _, data = client.encode({"op": 2, "d": {**IDENTIFY_D, "token": r.seeded.token}})
            client.frame(TEXT, data, rsv=rsv)  # no extension was negotiated
            assert await close_code(client) == 1002
            client.close()

    run(main)


def test_a_ping_is_answered_and_a_ping_with_a_reserved_bit_fails_1002(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_gateway(tmp_path) as r:
            client = await connect(r)
            client.frame(0x9, b"are you there")
            opcode, _, payload = await client._read_frame()
            assert (opcode, payload) == (0xA, b"are you there")
            client.frame(0x9, b"x", rsv=4)  # picows would have answered it
            assert await close_code(client) == 1002
            client.close()

    run(main)


def test_an_orphan_continuation_frame_closes_1002(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_gateway(tmp_path) as r:
            client = await connect(r)
            client.frame(CONT, b'{"op":1,"d":null}')
            assert await close_code(client) == 1002
            client.close()

    run(main)


def test_a_new_message_inside_a_fragmented_one_closes_1002(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_gateway(tmp_path) as r:
            client = await connect(r, encoding="msgpack")
            _, data = client.encode({"op": 1, "d": None})
            client.frame(BINARY, data[:2], fin=False)
            client.frame(BINARY, data)
            assert await close_code(client) == 1002
            client.close()

    run(main)


def test_fragments_with_a_ping_between_them_still_work(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_gateway(tmp_path) as r:
            client = await connect(r)
            data = b'{"op":1,"d":null}'
            client.frame(TEXT, data[:5], fin=False)
            client.frame(0x9, b"ping")  # control frames may come between fragments
            client.frame(CONT, data[5:])
            assert (await client.receive_op(11, 5.0))["op"] == 11
            client.close()

    run(main)


def test_a_reserved_opcode_closes_1002_and_is_not_logged_as_an_error(tmp_path: Path,
                                                                     caplog) -> None:
    async def main() -> None:
        async with running_gateway(tmp_path) as r:
            client = await connect(r)
            client.frame(0x3, b"x")  # picows's parser refuses it
            assert await close_code(client) == 1002
            client.close()

    run(main)
    assert errors(caplog) == []


# -- IDENTIFY ----------------------------------------------------------------------------------


def test_a_socket_that_only_heartbeats_is_closed_4003(tmp_path: Path) -> None:
    async def main() -> None:
        config = GatewayConfig(identify_timeout_s=0.3)
        async with running_gateway(tmp_path, config) as r:
            client = await connect(r)
            client.send({"op": 1, "d": None})
            await client.receive_op(11, 5.0)
            assert await close_code(client) == 4003
            client.close()

    run(main)


def test_a_close_the_server_decides_logs_why_at_debug(tmp_path: Path, caplog) -> None:
    """The client reads only the code's generic reason; the node's debug log says why
    (``gateway.closed``: code, detail, session, resumable)."""
    async def main() -> None:
        config = GatewayConfig(identify_timeout_s=0.3)
        async with running_gateway(tmp_path, config) as r:
            client = await connect(r)
            assert await close_code(client) == 4003
            client.close()

    with caplog.at_level(logging.DEBUG, logger="greenroom.gateway"):
        run(main)
    closed = [rec for rec in caplog.records if rec.getMessage() == "gateway.closed"]
    assert [(rec.code, rec.resumable) for rec in closed] == [(4003, False)]
    assert "no IDENTIFY or RESUME within 0.3 s" in closed[0].detail


def test_an_empty_token_closes_4004(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_gateway(tmp_path) as r:
            client = await connect(r)
            client.send({"op": 2, "d": {**IDENTIFY_D, "token": ""}})
            assert await close_code(client) == 4004
            client.close()

    run(main)


@pytest.mark.parametrize("user_id", [1 << 63, str(1 << 63), "0123"])
def test_op_8_with_an_id_past_the_snowflake_range_is_answered_not_left_hanging(
        tmp_path: Path, user_id) -> None:
    async def main() -> None:
        async with running_gateway(tmp_path) as r:
            client = await connect(r)
            client.send({"op": 2, "d": {**IDENTIFY_D, "token": r.seeded.token}})
            await client.receive_op(0, 5.0)  # READY
            client.send({"op": 8, "d": {"guild_id": str(r.seeded.guild_id),
                                        "user_ids": [user_id], "nonce": "n"}})
            assert await close_code(client) == 4001
            client.close()

    run(main)


def test_a_client_gone_before_ready_leaves_no_session(tmp_path: Path) -> None:
    """Found by the fuzzer: IDENTIFY then a bad frame in one write closed the socket
    while the session loaded; the session then registered itself with a closed link
    and was never ended (no Detached comes before READY)."""
    async def main() -> None:
        async with running_gateway(tmp_path) as r:
            gone = await connect(r)
            gone.send({"op": 2, "d": {**IDENTIFY_D, "token": r.seeded.token}})
            gone.send({"op": 99, "d": None})  # closes 4001 before the identity loads
            assert await close_code(gone) == 4001
            gone.close()
            # storage answers in order: once this READY came, the first load had too
            live = await connect(r)
            live.send({"op": 2, "d": {**IDENTIFY_D, "token": r.seeded.token}})
            await live.receive_op(0, 5.0)
            assert len(r.gateway.ctx.sessions) == 1
            live.close()

    run(main)


# -- connection limits ---------------------------------------------------------------------------


def test_new_connections_over_the_per_address_rate_are_closed_4008(tmp_path: Path) -> None:
    async def main() -> None:
        limits = RateLimits(connections_per_ip_per_s=0.001, connections_per_ip_burst=2)
        async with running_gateway(tmp_path, limits=limits) as r:
            first, second = await connect(r), await connect(r)
            third = await RawClient.connect(r.gateway.host, r.gateway.port)
            assert await close_code(third) == 4008  # before HELLO
            third.close()
            first.send({"op": 1, "d": None})  # the admitted ones are untouched
            await first.receive_op(11, 5.0)
            first.close()
            second.close()

    run(main)


def test_past_the_node_cap_the_handshake_is_answered_503(tmp_path: Path) -> None:
    """... and logged: one structured line a second (a 5xx an SRE must see)."""
    async def main() -> None:
        async with running_gateway(tmp_path, max_connections=2) as r:
            first, second = await connect(r), await connect(r)
            with json_logs() as logs:
                for _ in range(3):
                    with pytest.raises(Closed) as refused:
                        await RawClient.connect(r.gateway.host, r.gateway.port)
                    assert refused.value.code == 503
            (line,) = logs.events("gateway.connection_refused")
            assert (line["level"], line["status"], line["limit"], line["connections"]) == (
                "warning", 503, 2, 2)
            first.close()
            while len(r.gateway.links) >= 2:  # the server sees the close
                await asyncio.sleep(0.01)
            third = await connect(r)
            third.close()
            second.close()

    run(main)
