"""Attachments at the protocol level (issue 12 item 4): a multipart send stores its files
and lists them; downloads with ETag (304) and Range (206, 416); Discord's limits (413
40005) and malformed bodies (400 50035) leave nothing behind; an edit keeps, adds and
drops files; deleting the message deletes its blobs; an ``enforce_nonce`` retry's
files are not kept."""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from pathlib import Path
from typing import Any

import aiohttp
from yarl import URL

from chat.attachments import MAX_FILE_BYTES
from gateway.messages import PostFailed, PostMessage
from gateway.rest.attachments import ATTACHMENTS, UploadBudget
from storage.blobs import CHUNK_BYTES, JOURNAL, Blobs
from tests.chat.images import png
from tests.gateway.harness import Running, run, running_gateway

IMAGE = png(33, 21)


def _form(payload: dict[str, Any] | None, *files: tuple[str, bytes]) -> aiohttp.FormData:
    """A send as the libraries build it: ``payload_json``, then ``files[n]``."""
    form = aiohttp.FormData()
    if payload is not None:
        form.add_field("payload_json", json.dumps(payload), content_type="application/json")
    for n, (name, data) in enumerate(files):
        form.add_field(f"files[{n}]", data, filename=name,
                       content_type="application/octet-stream")
    return form


async def _send(http: aiohttp.ClientSession, r: Running, method: str, path: str,
                headers: dict[str, str] | None = None, **kwargs: Any) -> tuple[int, Any]:
    async with http.request(method, f"{r.gateway.rest_url}{path}", headers={
            "Authorization": f"Bot {r.seeded.token}", **(headers or {})}, **kwargs) as resp:
        body = await resp.read()
        return resp.status, json.loads(body) if body else None


async def _leftovers(r: Running) -> tuple[set[int], int, int]:
    """What the node's SQLite holds of blobs: their ids, their chunks, journal entries."""
    rows = r.gateway.storage._rows  # type: ignore[attr-defined]
    heads = {blob_id for (blob_id,) in await rows("SELECT blob_id FROM blobs", ())}
    (chunks,), = await rows("SELECT count(*) FROM blob_chunks", ())
    (journal,), = await rows("SELECT count(*) FROM records WHERE kind = ?", (JOURNAL,))
    return heads, chunks, journal


def test_a_send_with_files_is_listed_and_downloadable(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            cid = r.seeded.channel_id
            status, message = await _send(http, r, "POST", f"/channels/{cid}/messages", data=_form(
                {"content": "two files", "attachments": [
                    {"id": 1, "description": "a tiny image"}, {"id": 0}]},
                ("notes.txt", b"hello, attachments"), ("pic.png", IMAGE)))
            assert status == 200, message
            pic, notes = message["attachments"]  # in the metadata's order
            assert (pic["filename"], pic["size"], pic["content_type"], pic["width"],
                    pic["height"], pic["description"]) == ("pic.png", len(IMAGE), "image/png",
                                                           33, 21, "a tiny image")
            assert notes["content_type"] == "text/plain; charset=utf-8"
            assert "width" not in notes
            assert pic["url"] == pic["proxy_url"] == (
                f"{r.gateway.rest_url.removesuffix('/api/v10')}/attachments/{cid}/"
                f"{pic['id']}/pic.png")
            status, fetched = await _send(http, r, "GET",
                                          f"/channels/{cid}/messages/{message['id']}")
            assert fetched["attachments"] == message["attachments"]
            # downloads need no token (as Discord's CDN)
            async with http.get(pic["url"]) as resp:
                assert resp.status == 200 and await resp.read() == IMAGE
                assert resp.headers["Content-Type"] == "image/png"
                assert resp.headers["Accept-Ranges"] == "bytes"
                assert resp.headers["Cache-Control"] == "public, no-cache"
                etag = resp.headers["ETag"]
            async with http.get(pic["url"], headers={"If-None-Match": etag}) as resp:
                assert resp.status == 304 and await resp.read() == b""
            async with http.get(pic["url"], headers={"If-None-Match": '"other"'}) as resp:
                assert resp.status == 200
            for asked, status, span, content_range in (
                    ("bytes=2-5", 206, IMAGE[2:6], f"bytes 2-5/{len(IMAGE)}"),
                    ("bytes=-4", 206, IMAGE[-4:], f"bytes {len(IMAGE) - 4}-{len(IMAGE) - 1}/"
                                                  f"{len(IMAGE)}"),
                    ("bytes=10-", 206, IMAGE[10:], f"bytes 10-{len(IMAGE) - 1}/{len(IMAGE)}"),
                    (f"bytes={len(IMAGE)}-", 416, None, f"bytes */{len(IMAGE)}")):
                async with http.get(pic["url"], headers={"Range": asked}) as resp:
                    assert resp.status == status, asked
                    assert resp.headers["Content-Range"] == content_range
                    if span is not None:
                        assert await resp.read() == span
            # a stale If-Range: the whole file
            async with http.get(pic["url"], headers={"Range": "bytes=0-1",
                                                     "If-Range": '"stale"'}) as resp:
                assert resp.status == 200 and await resp.read() == IMAGE
            async with http.head(pic["url"]) as resp:
                assert resp.status == 200
                assert int(resp.headers["Content-Length"]) == len(IMAGE)
            # another name, or a non-canonical id, names nothing
            for url in (pic["url"].replace("pic.png", "other.png"),
                        pic["url"].replace(f"/{pic['id']}/", f"/0{pic['id']}/")):
                async with http.get(url) as resp:
                    assert resp.status == 404
            # files alone make a message
            status, alone = await _send(http, r, "POST", f"/channels/{cid}/messages",
                                        data=_form(None, ("blob", b"\x00\x01")))
            assert status == 200 and alone["content"] == ""
            assert alone["attachments"][0]["size"] == 2
            assert "content_type" not in alone["attachments"][0]
            # committed: nothing left in the journal
            assert await _leftovers(r) == ({int(pic["id"]), int(notes["id"]),
                                            int(alone["attachments"][0]["id"])}, 3, 0)

    run(main)


def test_limits_and_malformed_bodies_leave_nothing(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            messages = f"/channels/{r.seeded.channel_id}/messages"
            too_big = b"\x00" * (MAX_FILE_BYTES + 1)
            nine = b"\x00" * (9 * 1024 * 1024)
            for form in (_form({"content": "x"}, ("big.bin", too_big)),
                         _form({"content": "x"}, ("a", nine), ("b", nine), ("c", nine))):
                status, answer = await _send(http, r, "POST", messages, data=form)
                assert (status, answer) == (413, {"code": 40005,
                                                  "message": "Request entity too large"})
            # exactly the limit is fine
            status, ok = await _send(http, r, "POST", messages, data=_form(
                {}, ("max.bin", b"\x01" * MAX_FILE_BYTES)))
            assert status == 200 and ok["attachments"][0]["size"] == MAX_FILE_BYTES
            status, answer = await _send(http, r, "POST", messages, data=_form(
                {"content": "x"}, *[(f"{n}.txt", b"x") for n in range(11)]))
            assert status == 400 and answer["errors"]["attachments"]["_errors"][0]["code"] \
                == "BASE_TYPE_MAX_LENGTH"
            bad_json = aiohttp.FormData()
            bad_json.add_field("payload_json", "{not json")
            bad_json.add_field("files[0]", b"x", filename="x.txt")
            misnamed = aiohttp.FormData()
            misnamed.add_field("payload_json", "{}")
            misnamed.add_field("upload", b"x", filename="x.txt")
            for data, headers, field in (
                    (bad_json, {}, "payload_json"),
                    (misnamed, {}, "upload"),
                    (_form({"attachments": [{"id": 3}]}, ("x.txt", b"x")), {},
                     "attachments.0.id"),
                    (_form({"attachments": [{"id": 0, "description": "\x00"}]},
                           ("x.txt", b"x")), {}, "attachments.0.description"),
                    (b"--nope\r\ngarbage", {"Content-Type": "multipart/form-data; boundary=zz"},
                     "payload_json"),
                    (b"whatever", {"Content-Type": "multipart/form-data"}, "payload_json")):
                status, answer = await _send(http, r, "POST", messages, data=data,
                                             headers=headers or None)
                assert status == 400 and answer["code"] == 50035, (field, answer)
                tree = answer["errors"]
                for step in field.split("."):  # Discord's tree nests a dotted path
                    tree = tree[step]
                assert tree["_errors"], (field, answer)
            history = await r.gateway.storage.messages(r.seeded.channel_id)
            assert [m.id for m in history] == [int(ok["id"])]
            assert await _leftovers(r) == ({int(ok["attachments"][0]["id"])}, 10, 0)

    run(main, timeout=60)


def test_edits_and_deletes_remove_blobs_and_retries_keep_none(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            cid = r.seeded.channel_id
            messages = f"/channels/{cid}/messages"
            blobs = Blobs(r.gateway.storage)
            status, sent = await _send(http, r, "POST", messages, data=_form(
                {"content": "v1"}, ("a.txt", b"a"), ("b.txt", b"b")))
            a, b = sent["attachments"]
            # keep a, drop b, add c
            status, edited = await _send(
                http, r, "PATCH", f"{messages}/{sent['id']}",
                data=_form({"attachments": [{"id": a["id"]}, {"id": 0}]}, ("c.txt", b"c")))
            assert status == 200, edited
            assert edited["content"] == "v1"
            kept, c = edited["attachments"]
            assert kept == a and c["filename"] == "c.txt"
            assert await blobs.head(cid, int(b["id"])) is None
            async with http.get(b["url"]) as resp:
                assert resp.status == 404
            async with http.get(c["url"]) as resp:
                assert await resp.read() == b"c"
            # JSON edit: drop them all
            status, edited = await _send(http, r, "PATCH", f"{messages}/{sent['id']}",
                                         json={"attachments": []})
            assert status == 200 and edited["attachments"] == []
            assert await _leftovers(r) == (set(), 0, 0)

            status, sent = await _send(http, r, "POST", messages, data=_form(
                {"content": "bye", "nonce": "n1", "enforce_nonce": True}, ("d.txt", b"d")))
            (d,) = sent["attachments"]
            # the same send again: the first message comes back; the retry's file is gone
            status, again = await _send(http, r, "POST", messages, data=_form(
                {"content": "bye", "nonce": "n1", "enforce_nonce": True}, ("d.txt", b"d")))
            assert status == 200 and again["id"] == sent["id"]
            assert again["attachments"] == [d]
            assert await _leftovers(r) == ({int(d["id"])}, 1, 0)
            status, _ = await _send(http, r, "DELETE", f"{messages}/{sent['id']}")
            assert status == 204
            assert await _leftovers(r) == (set(), 0, 0)
            async with http.get(d["url"]) as resp:
                assert resp.status == 404

    run(main)


def test_a_download_cut_short_is_not_a_server_error(tmp_path: Path, caplog) -> None:  # type: ignore[no-untyped-def]
    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            status, sent = await _send(http, r, "POST", f"/channels/{r.seeded.channel_id}/messages",
                                       data=_form({}, ("big.bin", b"\x07" * MAX_FILE_BYTES)))
            url = URL(sent["attachments"][0]["url"])
            for _ in range(3):
                reader, writer = await asyncio.open_connection(url.host, url.port)
                writer.write(f"GET {url.raw_path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
                assert (await reader.readline()).startswith(b"HTTP/1.1 200")
                await reader.read(65536)
                writer.transport.abort()  # gone mid-body
                await asyncio.sleep(0.2)
            async with http.get(str(url)) as resp:  # the node still serves it whole
                assert len(await resp.read()) == MAX_FILE_BYTES

    with caplog.at_level(logging.WARNING, logger="greenroom"):
        run(main, timeout=30)
    assert not [rec for rec in caplog.records if rec.getMessage() == "rest.failed"]


def test_failures_leave_no_message_and_nothing_reachable(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            cid = r.seeded.channel_id
            messages = f"/channels/{cid}/messages"
            storage = r.gateway.storage
            put_chunk = storage.put_blob_chunk
            calls = 0

            async def second_chunk_fails(*args: Any) -> None:
                nonlocal calls
                calls += 1
                if calls == 2:
                    raise sqlite3.OperationalError("database is locked")
                await put_chunk(*args)

            # the upload fails half-way: a retryable 503, no message, no blob
            storage.put_blob_chunk = second_chunk_fails
            status, answer = await _send(http, r, "POST", messages, data=_form(
                {"content": "never"}, ("two-chunks.bin", b"\x01" * (CHUNK_BYTES + 1))))
            assert status == 503, answer
            del storage.put_blob_chunk
            assert await storage.messages(cid) == []
            assert await _leftovers(r) == (set(), 0, 0)

            # the post fails where the message may yet be written (an outage): the blob
            # stays journalled and unreachable, and collect deletes it once no message
            # lists it
            base = r.gateway.base
            ask = base.ask_async

            async def channel_unavailable(address: Any, msg: Any, timeout: float) -> Any:
                if isinstance(getattr(msg, "message", None), PostMessage):
                    return PostFailed(503, 0, "the channel stopped; not acknowledged, retry")
                return await ask(address, msg, timeout)

            base.ask_async = channel_unavailable
            status, answer = await _send(http, r, "POST", messages, data=_form(
                {"content": "maybe"}, ("f.txt", b"f")))
            assert status == 503, answer
            del base.ask_async
            assert await storage.messages(cid) == []
            (blob_id,), chunks, journal = await _leftovers(r)
            assert (chunks, journal) == (1, 1)
            blobs = attachments_of_app(r).blobs
            assert await blobs.reachable(cid, blob_id, "f.txt") is None
            assert await blobs.collect(grace_s=0) == (0, 1)
            assert await _leftovers(r) == (set(), 0, 0)

    run(main)


def attachments_of_app(r: Running) -> Any:
    """The node's attachment service, as the routes see it."""
    runner = r.gateway._rest_runner  # type: ignore[attr-defined]
    return runner.app[ATTACHMENTS]


def test_uploads_wait_for_room_in_the_nodes_budget(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            service = attachments_of_app(r)
            service.budget = budget = UploadBudget(capacity=3 * 1024 * 1024, wait_s=0.3)
            url = URL(r.gateway.rest_url)
            path = f"{url.path}/channels/{r.seeded.channel_id}/messages"
            two_mib = ("a.bin", b"\x02" * (2 * 1024 * 1024))
            # a sender that stalls half-way holds its Content-Length of the budget
            reader, writer = await asyncio.open_connection(url.host, url.port)
            writer.write((f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bot "
                          f"{r.seeded.token}\r\nContent-Type: multipart/form-data; "
                          f"boundary=b\r\nContent-Length: {2 * 1024 * 1024}\r\n\r\n"
                          "--b\r\nContent-Disposition: form-data; name=\"files[0]\"; "
                          "filename=\"s.bin\"\r\n\r\n").encode() + b"\x00" * 1000)
            for _ in range(100):
                if budget.held:
                    break
                await asyncio.sleep(0.01)
            assert budget.held == 2 * 1024 * 1024
            status, answer = await _send(http, r, "POST", path.removeprefix(url.path),
                                         data=_form({}, two_mib))
            assert status == 503 and answer["message"] == "too many uploads in progress; retry"
            writer.transport.abort()  # the stalled sender goes: its share comes back
            for _ in range(100):
                if not budget.held:
                    break
                await asyncio.sleep(0.01)
            status, answer = await _send(http, r, "POST", path.removeprefix(url.path),
                                         data=_form({}, two_mib))
            assert status == 200, answer
            assert budget.held == 0
            del reader

    run(main)


def test_every_node_settles_the_journal_periodically(tmp_path: Path,
                                                     monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import gateway.rest.attachments as module

    monkeypatch.setattr(module, "COLLECT_EVERY_S", 0.05)
    runs: list[float] = []
    collect = Blobs.collect

    async def counted(self: Blobs, **kwargs: Any) -> tuple[int, int]:
        runs.append(asyncio.get_running_loop().time())
        return await collect(self, **kwargs)

    monkeypatch.setattr(Blobs, "collect", counted)

    async def main() -> None:
        async with running_gateway(tmp_path):
            await asyncio.sleep(0.4)
        stopped = len(runs)
        assert stopped >= 3
        await asyncio.sleep(0.2)
        assert len(runs) == stopped  # the node stopped: so did its collector

    run(main)
