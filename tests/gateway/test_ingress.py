"""The internal ingress over real sockets: each operation's effect seen by real
WebSocket clients, each error answer, and authentication."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from pathlib import Path
from typing import Any

import aiohttp
import msgpack
import pytest

from actors.wire import pack
from gateway.ingress_client import (
    BadMessage,
    IngressClient,
    IngressRequestError,
    Unauthenticated,
    UnknownTarget,
)
from gateway.ingress_messages import (
    SYSTEM_USER,
    BroadcastToGuild,
    DisconnectSession,
    PostSystemMessage,
)
from tests.gateway.harness import Running, run, running_gateway
from tests.gateway.test_fanout import open_guild
from tests.gateway.test_gateway_socket import identified, recv, recv_close

SECRET = "test-ingress-secret"


async def next_dispatch(ws: aiohttp.ClientWebSocketResponse, event: str) -> dict[str, Any]:
    while True:
        payload = await recv(ws)
        if payload.get("t") == event:
            return payload


def client(r: Running, secret: str = SECRET) -> IngressClient:
    return IngressClient(r.gateway.ingress_url, secret)


def test_post_system_message_is_stored_and_reaches_every_session(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_gateway(tmp_path, ingress_secret=SECRET) as r, \
                aiohttp.ClientSession() as http, client(r) as c:
            bot, _ = await identified(http, r)
            alice, _ = await identified(http, r, r.other_token)
            await open_guild(alice, r.seeded.guild_id)  # a user: active once opened
            message = await c.post_system_message(r.seeded.channel_id, "maintenance at 2")
            assert message["content"] == "maintenance at 2"
            assert message["author"]["id"] == SYSTEM_USER["id"]
            assert message["author"]["system"] is True and message["type"] == 0
            for ws in (bot, alice):
                event = await next_dispatch(ws, "MESSAGE_CREATE")
                assert event["d"]["id"] == message["id"]
                assert event["d"]["content"] == "maintenance at 2"
                assert event["d"]["author"]["system"] is True
            stored = await r.gateway.storage.get_message(r.seeded.channel_id,
                                                         int(message["id"]))
            assert stored is not None and stored.content == "maintenance at 2"
            assert stored.author_id == int(SYSTEM_USER["id"]) and stored.type == 0
            await bot.close()
            await alice.close()

    run(main)


def test_broadcast_reaches_the_guilds_sessions(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_gateway(tmp_path, ingress_secret=SECRET) as r, \
                aiohttp.ClientSession() as http, client(r) as c:
            bot, _ = await identified(http, r)
            alice, _ = await identified(http, r, r.other_token)
            await asyncio.sleep(0.05)  # both subscribed to the guild
            n = await c.broadcast(r.seeded.guild_id, "SERVICE_NOTICE",
                                  {"text": "hello", "level": 2})
            assert n == 2
            for ws in (bot, alice):
                event = await next_dispatch(ws, "SERVICE_NOTICE")
                assert event["op"] == 0 and event["d"] == {"text": "hello", "level": 2}
                assert event["s"] == 3  # numbered in each session after READY, GUILD_CREATE
            await bot.close()
            await alice.close()

    run(main)


@pytest.mark.parametrize("code, resumable", [(4000, True), (1000, False), (4009, False)])
def test_disconnect_session_closes_with_the_code(tmp_path: Path, code: int,
                                                 resumable: bool) -> None:
    async def main() -> None:
        async with running_gateway(tmp_path, ingress_secret=SECRET) as r, \
                aiohttp.ClientSession() as http, client(r) as c:
            ws, ready = await identified(http, r)
            session_id = ready["d"]["session_id"]
            answer = await c.disconnect_session(session_id, code, "ops")
            assert answer == {"session_id": session_id, "code": code, "resumable": resumable}
            assert await recv_close(ws) == code
            await asyncio.sleep(0.05)
            # a resumable close keeps the session (RESUME works); others end it
            assert (session_id in r.gateway.ctx.sessions) is resumable
            if not resumable:
                with pytest.raises(UnknownTarget) as err:
                    await c.disconnect_session(session_id)
                assert err.value.code == "unknown_session" and err.value.status == 404

    run(main)


def test_unknown_targets(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_gateway(tmp_path, ingress_secret=SECRET) as r, client(r) as c:
            with pytest.raises(UnknownTarget) as err:
                await c.post_system_message(12345, "x")
            assert err.value.code == "unknown_channel" and err.value.status == 404
            with pytest.raises(UnknownTarget) as err:
                await c.broadcast(12345, "SERVICE_NOTICE", {})
            assert err.value.code == "unknown_guild"
            with pytest.raises(UnknownTarget) as err:
                await c.disconnect_session("no-such-session")
            assert err.value.code == "unknown_session"

    run(main)


def test_bad_messages_get_a_clear_answer(tmp_path: Path) -> None:
    bad: list[tuple[bytes, str]] = [
        (b"\xc1not msgpack", "not valid msgpack"),
        (msgpack.packb({"$t": "ingress.nope@1", "b": []}), "unknown message type"),
        (msgpack.packb({"$t": "ingress.post_system_message@9", "b": []}),
         "unknown message type"),
        (msgpack.packb({"$t": "ingress.post_system_message@1", "b": ["r", 1]}),
         "body must be a list of 4 fields"),
        (msgpack.packb({"channel_id": 1}), "not an ingress request"),
        (pack(PostSystemMessage("r1", "123", "x")), "channel_id must be int, not str"),
        (pack(PostSystemMessage("r1", 123, "")), "content must be 1-2000"),
        (pack(PostSystemMessage("r1", True, "x")), "channel_id must be int, not bool"),
        (pack(DisconnectSession("r1", "s", 3000)), "code must be 1000, 1001 or 4000-4999"),
        (pack(BroadcastToGuild("r1", 1, "READY", {})), "event must match"),
        (pack(BroadcastToGuild("r1", 1, "lower", {})), "event must match"),
        (pack(BroadcastToGuild("r1", 1, "X", {1: 2})), "data must be JSON-shaped"),
        (pack(PostSystemMessage("r1", 1, "x", trace="nope")), "trace must be a map"),  # type: ignore[arg-type]
    ]

    async def main() -> None:
        async with running_gateway(tmp_path, ingress_secret=SECRET) as r, client(r) as c:
            for body, expected in bad:
                with pytest.raises(BadMessage) as err:
                    await c.send_raw(body)
                assert err.value.status == 400 and err.value.code == "bad_message"
                assert expected in err.value.message, (expected, err.value.message)
            # the request id comes back even when the message is refused
            with pytest.raises(BadMessage) as err:
                await c.send_raw(pack(DisconnectSession("rid-7", "s", 1)))
            assert err.value.request_id == "rid-7"

    run(main)


def test_authentication(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_gateway(tmp_path, ingress_secret=SECRET) as r:
            async with client(r, "wrong") as c:
                with pytest.raises(Unauthenticated) as err:
                    await c.post_system_message(r.seeded.channel_id, "x")
                assert err.value.status == 401 and err.value.code == "unauthenticated"
            async with aiohttp.ClientSession() as http:
                body = pack(PostSystemMessage("r", r.seeded.channel_id, "x"))
                for headers in ({}, {"Authorization": SECRET},
                                {"Authorization": f"Bot {r.seeded.token}"}):
                    async with http.post(r.gateway.ingress_url, data=body, headers={
                            "Content-Type": "application/msgpack", **headers}) as resp:
                        assert resp.status == 401
            # nothing was posted
            assert await r.gateway.storage.get_channel(r.seeded.channel_id) is not None
            # the public REST port does not serve the ingress
            async with aiohttp.ClientSession() as http:
                url = f"http://{r.gateway.host}:{r.gateway.rest_port}/ingress/v1"
                async with http.post(url, data=body) as resp:
                    assert resp.status in (404, 405)

    run(main)


def test_no_secret_no_ingress(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_gateway(tmp_path) as r:
            assert r.gateway._ingress_runner is None

    run(main)


def test_system_messages_are_checked_as_rest_posts_are(tmp_path: Path) -> None:
    """Issue 10 (findings 2 and 4): blank or unstorable content and ids out of range are
    ``bad_message`` before anything is routed; the client sends canonical ids only."""
    cid = 1579278503206060032
    bad: list[tuple[bytes, str]] = [
        (pack(PostSystemMessage("r1", cid, "   \n\t")), "content: Cannot send an empty"),
        (pack(PostSystemMessage("r1", cid, "a\x00b")), "content: Must not contain NUL"),
        # a lone surrogate has no UTF-8 form, so no msgpack str: refused while decoding
        (b"\x82\xa2$t\xbdingress.post_system_message@1\xa1b\x93\xa2r1\x01\xa4a\xed\xa0\x80",
         "not valid msgpack"),
        (pack(PostSystemMessage("r1", 1 << 63, "x")), "channel_id must be a snowflake"),
        (pack(PostSystemMessage("r1", -cid, "x")), "channel_id must be a snowflake"),
        (pack(BroadcastToGuild("r1", (1 << 64) - 1, "X", {})), "guild_id must be a snowflake"),
    ]

    async def main() -> None:
        async with running_gateway(tmp_path, ingress_secret=SECRET) as r, client(r) as c:
            for body, expected in bad:
                with pytest.raises(BadMessage) as err:
                    await c.send_raw(body)
                assert err.value.status == 400 and expected in err.value.message, (
                    expected, err.value.message)
            for spelled in (f"0{r.seeded.channel_id}", f"+{r.seeded.channel_id}", "1_2"):
                with pytest.raises(ValueError, match="not a snowflake"):
                    await c.post_system_message(spelled, "x")  # type: ignore[arg-type]
            message = await c.post_system_message(str(r.seeded.channel_id), "fine")
            assert message["content"] == "fine"

    run(main)


def test_a_fault_is_answered_without_its_exception(tmp_path: Path,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    """A storage fault (tables dropped under a running server) is an ``IngressError``
    ``failed``, not aiohttp's text 500; the exception goes to the log."""
    async def main() -> None:
        async with running_gateway(tmp_path, ingress_secret=SECRET) as r, client(r) as c:
            db = sqlite3.connect(tmp_path / "greenroom.db")
            db.execute("DROP TABLE channels")
            db.commit()
            db.close()
            with caplog.at_level(logging.ERROR, logger="greenroom.gateway.ingress"), \
                    pytest.raises(IngressRequestError) as err:
                await c.post_system_message(r.seeded.channel_id, "x")
            assert err.value.code == "failed" and err.value.status == 503
            assert "no such table" not in err.value.message
            assert "no such table: channels" in caplog.text
            # one structured line for the 5xx, with its traceback
            (line,) = [rec for rec in caplog.records if rec.getMessage() == "ingress.failed"]
            assert (line.levelname, line.status, line.op) == ("ERROR", 503, "PostSystemMessage")
            assert line.exc_info is not None and line.request_id

    run(main)
