"""Text storage cannot hold is refused at the edge (issue 10, finding 2 and point 8):
a lone surrogate (valid JSON ``"a\\ud800b"``) or NUL in any stored text field is 400
50035 naming the field; whitespace-only content is 400 50006; and a 500 never shows an
exception's type or text (a generic Discord 500, the details in the server's log)."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import aiohttp
import pytest

from tests.gateway.harness import run, running_gateway
from tests.gateway.test_rest import call

UNSTORABLE = ["a\ud800b", "\udfff", "a\x00b"]
BLANK = [" ", "   \n\t ", "\u3000\u2003"]


def field_error(body: dict, field: str) -> str:
    assert body["code"] == 50035 and body["message"] == "Invalid Form Body", body
    return body["errors"][field]["_errors"][0]["code"]


def test_unstorable_and_blank_text_is_refused_at_the_edge(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            token, cid = r.seeded.token, r.seeded.channel_id
            messages = f"/channels/{cid}/messages"
            status, kept, _ = await call(http, r, "POST", messages, token,
                                         json={"content": "kept"})
            assert status == 200
            edit = f"{messages}/{kept['id']}"
            for text in UNSTORABLE:
                for method, path, body, field in (
                        ("POST", messages, {"content": text}, "content"),
                        ("POST", messages, {"content": "ok", "nonce": text}, "nonce"),
                        ("PATCH", edit, {"content": text}, "content"),
                        ("POST", "/guilds", {"name": f"g{text}g"}, "name"),
                        ("POST", f"/guilds/{r.seeded.guild_id}/channels",
                         {"name": f"c{text}"}, "name"),
                        ("POST", f"/guilds/{r.seeded.guild_id}/channels",
                         {"name": "c", "topic": text}, "topic")):
                    status, answer, ctype = await call(http, r, method, path, token, json=body)
                    assert status == 400 and ctype == "application/json", (path, body, answer)
                    assert field_error(answer, field), answer
            for text in BLANK:
                for method, path in (("POST", messages), ("PATCH", edit)):
                    status, answer, _ = await call(http, r, method, path, token,
                                                   json={"content": text})
                    assert (status, answer) == (400, {
                        "code": 50006, "message": "Cannot send an empty message"}), text
            # a position CQL's int cannot hold
            for position in (1 << 31, -(1 << 31) - 1, 1 << 70):
                status, answer, _ = await call(
                    http, r, "POST", f"/guilds/{r.seeded.guild_id}/channels", token,
                    json={"name": "c", "position": position})
                assert status == 400 and answer["code"] == 50035, (position, answer)
            # other writes are unharmed; nothing unstorable was stored or edited
            status, sent, _ = await call(http, r, "POST", messages, r.other_token,
                                         json={"content": "victim's post", "nonce": 7})
            assert status == 200 and sent["nonce"] == "7"
            status, history, _ = await call(http, r, "GET", messages, token)
            assert [m["content"] for m in history] == ["victim's post", "kept"]

    run(main)


def test_a_500_shows_no_exception(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A real storage fault (its tables dropped under a running server) is answered
    with Discord's generic 500 JSON; the exception is logged, not sent."""
    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            token, cid = r.seeded.token, r.seeded.channel_id
            db = sqlite3.connect(tmp_path / "greenroom.db")
            db.execute("DROP TABLE messages")
            db.commit()
            db.close()
            with caplog.at_level(logging.ERROR, logger="greenroom.gateway.rest"):
                status, body, ctype = await call(http, r, "GET",
                                                 f"/channels/{cid}/messages/1", token)
            assert (status, ctype) == (500, "application/json")
            assert body == {"code": 0, "message": "500: Internal Server Error"}
            assert "no such table: messages" in caplog.text  # for the operator

    run(main)


def test_a_body_nested_past_the_stack_is_a_bad_request(tmp_path: Path) -> None:
    """JSON nested deeper than Python's parser recurses is the client's fault (it used
    to escape as aiohttp's plain-text 500)."""
    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            for path in (f"/channels/{r.seeded.channel_id}/messages", "/guilds"):
                async with http.post(f"{r.gateway.rest_url}{path}", data=b"[" * 100_000,
                                     headers={"Authorization": f"Bot {r.seeded.token}",
                                              "Content-Type": "application/json"}) as resp:
                    assert (resp.status, resp.content_type) == (400, "application/json")
                    assert await resp.json() == {"code": 50035, "message": "Invalid Form Body"}

    run(main)
