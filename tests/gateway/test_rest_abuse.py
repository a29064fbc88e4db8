"""What a REST client cannot do past its permissions or to other readers: run script
on the API's origin through an upload, read a deleted message through a reply to it,
upload without ATTACH_FILES, grow the rate limiter's memory with made-up paths. Each
test failed before its fix."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp

from chat.permissions import ATTACH_FILES
from gateway.limits import RateLimits
from tests.gateway.harness import Running, run, running_gateway


async def _call(http: aiohttp.ClientSession, r: Running, method: str, path: str,
                token: str | None = None, **kwargs: Any) -> tuple[int, Any]:
    headers = {"Authorization": f"Bot {token or r.seeded.token}"}
    async with http.request(method, f"{r.gateway.rest_url}{path}", headers=headers,
                            **kwargs) as resp:
        body = await resp.read()
        return resp.status, json.loads(body) if body else None


async def _answered_and_reply(http: aiohttp.ClientSession, r: Running
                              ) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """The other user posts a secret; the bot replies to it: (messages path, the
    answered message, the reply)."""
    messages = f"/channels/{r.seeded.channel_id}/messages"
    _, answered = await _call(http, r, "POST", messages, r.other_token,
                              json={"content": "my address is 1 Secret Street"})
    _, reply = await _call(http, r, "POST", messages, json={
        "content": "noted", "message_reference": {"message_id": answered["id"]}})
    return messages, answered, reply


def test_uploaded_html_and_svg_cannot_run_script_on_the_api_origin(tmp_path: Path) -> None:
    """Attachments are served from the REST origin without a token: a file that a
    browser would render as a page (HTML, SVG, or any declared type) must not run its
    script there (a stored XSS against whoever opens the link)."""
    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            form = aiohttp.FormData()
            form.add_field("payload_json", json.dumps({"content": "look"}),
                           content_type="application/json")
            script = b"<script>alert(document.domain)</script>"
            for n, (name, declared) in enumerate((("page.html", "text/html"),
                                                  ("pic.svg", "image/svg+xml"),
                                                  ("noext", "text/html"))):
                form.add_field(f"files[{n}]", script, filename=name, content_type=declared)
            status, message = await _call(http, r, "POST",
                                          f"/channels/{r.seeded.channel_id}/messages",
                                          data=form)
            assert status == 200, message
            for attachment in message["attachments"]:
                async with http.get(attachment["url"]) as resp:
                    assert resp.status == 200 and await resp.read() == script
                    assert resp.headers["X-Content-Type-Options"] == "nosniff"
                    policy = resp.headers["Content-Security-Policy"]
                    assert "sandbox" in policy and "default-src 'none'" in policy
            # the attachment object still says what the file is
            assert message["attachments"][0]["content_type"] == "text/html; charset=utf-8"

    run(main)


def test_a_reply_shows_the_message_it_answers_as_it_is_now(tmp_path: Path) -> None:
    """A reply's ``referenced_message`` on a read is the answered message as it is now:
    edited, its edit; deleted, null (Discord's "deleted" shape: discord.py makes it a
    DeletedReferencedMessage). A stored snapshot kept serving a deleted message's
    content to everyone who reads the channel."""
    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            messages, answered, reply = await _answered_and_reply(http, r)
            assert reply["referenced_message"]["content"] == "my address is 1 Secret Street"
            _, other = await _call(http, r, "POST", messages, json={
                "content": "me too", "message_reference": {"message_id": answered["id"]}})
            status, _ = await _call(http, r, "PATCH", f"{messages}/{answered['id']}",
                                    r.other_token, json={"content": "(removed)"})
            assert status == 200
            _, read = await _call(http, r, "GET", f"{messages}/{reply['id']}")
            assert read["referenced_message"]["content"] == "(removed)"
            assert read["referenced_message"]["edited_timestamp"] is not None
            assert read["message_reference"]["message_id"] == answered["id"]
            status, _ = await _call(http, r, "DELETE", f"{messages}/{answered['id']}",
                                    r.other_token)
            assert status == 204
            _, read = await _call(http, r, "GET", f"{messages}/{reply['id']}")
            assert read["referenced_message"] is None
            assert read["message_reference"]["message_id"] == answered["id"]
            _, page = await _call(http, r, "GET", f"{messages}?limit=10")
            replies = [m for m in page if m["id"] in (reply["id"], other["id"])]
            assert len(replies) == 2
            assert all(m["referenced_message"] is None for m in replies)
            assert "Secret" not in json.dumps(page)

    run(main)


def test_editing_a_reply_does_not_bring_back_what_it_answered(tmp_path: Path) -> None:
    """The edit's answer (and its MESSAGE_UPDATE, built from the same object) shows the
    answered message as it is now: deleted, null — not its content at reply time."""
    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            messages, answered, reply = await _answered_and_reply(http, r)
            await _call(http, r, "DELETE", f"{messages}/{answered['id']}", r.other_token)
            status, edited = await _call(http, r, "PATCH", f"{messages}/{reply['id']}",
                                         json={"content": "noted (edited)"})
            assert status == 200, edited
            assert edited["referenced_message"] is None
            assert edited["message_reference"]["message_id"] == answered["id"]
            assert edited["type"] == 19

    run(main)


def test_unmatched_paths_share_one_rate_limit_route(tmp_path: Path) -> None:
    """Requests to paths no route matches, without a token, count under one route name:
    keyed by their raw path, each new path left an entry (the path itself, any length)
    in the limiter's route hashes for good, so anyone could grow a node's memory at will."""
    async def main() -> None:
        async with running_gateway(tmp_path, limits=RateLimits()) as r, \
                aiohttp.ClientSession() as http:
            limiter = r.gateway.rest_limiter
            before = len(limiter._hashes)
            for n in range(40):
                async with http.get(f"{r.gateway.rest_url}/nothing/{n}/{'x' * 2000}") as resp:
                    assert resp.status in (404, 429)
            assert len(limiter._hashes) - before <= 1
            assert len(limiter._windows) <= 3  # the one route's, the caller's overall

    run(main)


def test_files_need_attach_files(tmp_path: Path) -> None:
    """A send or an edit that uploads files needs ATTACH_FILES in the channel (403 50013
    without it, as Discord answers, and nothing stored); keeping a message's files, or
    a send without files, does not."""
    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            cid, gid = r.seeded.channel_id, r.seeded.guild_id
            messages = f"/channels/{cid}/messages"

            def form(payload: dict[str, Any], with_file: bool = True) -> aiohttp.FormData:
                data = aiohttp.FormData()
                data.add_field("payload_json", json.dumps(payload),
                               content_type="application/json")
                if with_file:
                    data.add_field("files[0]", b"hello", filename="a.txt",
                                   content_type="text/plain")
                return data

            status, first = await _call(http, r, "POST", messages, r.other_token,
                                        data=form({"content": "with a file"}))
            assert status == 200 and len(first["attachments"]) == 1
            status, _ = await _call(http, r, "PUT", f"/channels/{cid}/permissions/{gid}",
                                    json={"type": 0, "deny": str(ATTACH_FILES)})
            assert status == 204
            status, body = await _call(http, r, "POST", messages, r.other_token,
                                       data=form({"content": "another file"}))
            assert (status, body) == (403, {"code": 50013, "message": "Missing Permissions"})
            status, body = await _call(http, r, "PATCH", f"{messages}/{first['id']}",
                                       r.other_token, data=form({"content": "more files"}))
            assert (status, body) == (403, {"code": 50013, "message": "Missing Permissions"})
            # without files, or keeping the ones it has: as before
            status, edited = await _call(http, r, "PATCH", f"{messages}/{first['id']}",
                                         r.other_token, json={
                                             "content": "kept", "attachments": [
                                                 {"id": first["attachments"][0]["id"]}]})
            assert status == 200 and edited["attachments"] == first["attachments"]
            status, _ = await _call(http, r, "POST", messages, r.other_token,
                                    data=form({"content": "no file"}, with_file=False))
            assert status == 200
            blobs = await r.gateway.storage._rows(  # type: ignore[attr-defined]
                "SELECT count(*) FROM blobs", ())
            assert blobs == [(1,)]
            # the guild's owner (every permission) still may
            status, _ = await _call(http, r, "POST", messages, data=form({"content": "ok"}))
            assert status == 200

    run(main)
