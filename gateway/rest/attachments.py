"""Attachments over REST: reading a message request's body (JSON, or multipart with
``payload_json`` and ``files[n]``), storing its files as blobs around the post, and
serving them at ``/attachments/{channel}/{attachment}/{filename}``.

A send with files: the body is read under Discord's limits (413 40005 past 10 MiB a
file or 25 MiB a request, before the rest is read) and the node's memory budget for
bodies being read (``UploadBudget``: 503 when full), the ``attachments`` metadata
checked (50035), each file stored as a pending blob (``storage.blobs``), then the
message posted through its channel actor with the attachment objects in it. The
post's answer settles the blobs: the message that lists them is durable, so they are
committed to it; a refusal (4xx: nothing was written) deletes them; anything else (an
outage, a timeout: the message may yet be written) leaves them journalled, and
``Blobs.collect`` (run by every node every ``COLLECT_EVERY_S``) commits or deletes them
once the grace is over. A blob is served only while its message exists
and lists it, so nothing half-written is ever downloadable.

``url`` (and ``proxy_url``, the same) is absolute, on the node's advertised REST
address (``Gateway.rest_url``, as ``GET /gateway`` advertises its own), never on the
request's ``Host``: that would let a poster point every reader's download anywhere (a
server-side request forgery against bots that fetch attachments).

Downloads need no token, as on Discord's CDN: every library fetches ``url`` with a
plain GET (discord.py's ``Attachment.read``, discord.js and hikari alike). The URL is
unguessable only as far as a snowflake is; signing it (Discord's ``ex``/``is``/``hm``
and its refresh endpoint) is left for later. Answers carry a strong ``ETag`` (the
SHA-256 of the bytes: 304 on ``If-None-Match``), ``Cache-Control: public, no-cache``
(caches keep the bytes but ask each time, so a deletion takes effect at once, at the
cost of a 304) and honour one byte ``Range`` (206, or 416 past the end).
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
from collections.abc import Awaitable, Collection
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from aiohttp import BodyPartReader, web
from yarl import URL

from chat.attachments import (
    MAX_FILE_BYTES,
    MAX_REQUEST_BYTES,
    REQUEST_TOO_LARGE,
    attachment_object,
    parse_attachment_specs,
    safe_filename,
    sniff,
)
from chat.permissions import ATTACH_FILES
from chat.validation import FieldError
from gateway.messages import Posted, PostFailed
from gateway.outbound import abort
from gateway.rest.errors import (
    MISSING_PERMISSIONS,
    HTTPDiscordError,
    error,
    invalid_form,
    json_body,
)
from storage.blobs import BlobHead, Blobs
from storage.model import Message
from storage.snowflake import parse_snowflake

if TYPE_CHECKING:
    from gateway.rest.api import Api

log = logging.getLogger("greenroom.gateway.rest.attachments")
T = TypeVar("T")

#: How often each node settles the blob journal (``Blobs.collect``).
COLLECT_EVERY_S = 300.0
#: Largest ``payload_json`` (or other text part) read; the rest of the request is files.
MAX_JSON_BYTES = 1024 * 1024
#: Multipart framing allowed beyond the files' bytes (boundaries, part headers, JSON).
REQUEST_OVERHEAD = MAX_JSON_BYTES
#: The most a multipart body may hold in memory (the files and a request's slack).
MAX_BUFFERED = MAX_REQUEST_BYTES + 2 * REQUEST_OVERHEAD
#: Bytes of multipart bodies a node holds at once (about nine of the largest sends); a
#: send that finds no room waits ``UPLOAD_WAIT_S`` (its socket unread: TCP backpressure
#: on the sender), then is answered 503 with Retry-After.
UPLOAD_BUFFER_BYTES = 256 * 1024 * 1024
UPLOAD_WAIT_S = 10.0
#: On every download: the bytes are served from the API's own origin, as the poster
#: named them (an HTML page, an SVG): a browser opening the link must not sniff another
#: type nor run the file's script there (a stored XSS on the origin), so it is a
#: sandboxed document that may load nothing.
SERVED_INERT = {"X-Content-Type-Options": "nosniff",
                "Content-Security-Policy": "default-src 'none'; sandbox"}
_FILE_PART = re.compile(r"files\[(\d{1,2})\]")
_READ_CHUNK = 64 * 1024


def too_large() -> HTTPDiscordError:
    return HTTPDiscordError(413, REQUEST_TOO_LARGE, "Request entity too large")


def _bad_form(field_name: str, message: str) -> HTTPDiscordError:
    return invalid_form(FieldError(field_name, "BASE_TYPE_INVALID", message))


@dataclass(slots=True)
class UploadedFile:
    """One ``files[n]`` part, read whole (at most ``MAX_FILE_BYTES``)."""

    index: int
    filename: str
    declared_type: str | None
    data: bytes


class UploadBudget:
    """The bytes of multipart bodies a node may hold in memory at once. A request
    reserves what it may hold before it reads (its Content-Length, else the most a body
    may be), so no reader ever waits holding part of the budget (no deadlock), and gives
    it back when its handler ends (``release_uploads``, a middleware)."""

    def __init__(self, capacity: int = UPLOAD_BUFFER_BYTES,
                 wait_s: float = UPLOAD_WAIT_S) -> None:
        self.capacity = capacity
        self.wait_s = wait_s
        self.held = 0
        self._freed = asyncio.Condition()

    async def reserve(self, request: web.Request, size: int) -> None:
        """Hold ``size`` bytes for ``request`` (503 if there is no room in ``wait_s``)."""
        size = min(size, self.capacity)
        async with self._freed:
            try:
                async with asyncio.timeout(self.wait_s):
                    await self._freed.wait_for(lambda: self.held + size <= self.capacity)
            except TimeoutError:
                raise HTTPDiscordError(503, 0, "too many uploads in progress; retry") from None
            self.held += size
            request[_RESERVED] = request.get(_RESERVED, 0) + size

    async def release(self, request: web.Request) -> None:
        size = request.pop(_RESERVED, 0)
        if size:
            async with self._freed:
                self.held -= size
                self._freed.notify_all()


_RESERVED = web.RequestKey("greenroom.upload_reserved", int)


@web.middleware
async def release_uploads(request: web.Request, handler: Any) -> web.StreamResponse:
    """Give back a request's ``UploadBudget`` reservation when its handler ends (however
    it ends: an answer, an error, a cancelled handler)."""
    try:
        return await handler(request)
    finally:
        if _RESERVED in request:
            await request.app[ATTACHMENTS].budget.release(request)


async def read_message_body(request: web.Request) -> tuple[dict[str, Any], list[UploadedFile]]:
    """A message request's body: JSON (no files), or ``multipart/form-data`` with its
    JSON in ``payload_json`` (plain text parts are read as string fields) and its files
    in ``files[n]`` parts. 413 40005 past the limits, 400 50035 for a malformed body,
    503 when the node holds too many uploads already (``UploadBudget``)."""
    if request.content_type != "multipart/form-data":
        return await json_body(request), []
    if (request.content_length or 0) > MAX_REQUEST_BYTES + REQUEST_OVERHEAD:
        raise too_large()
    service = request.app.get(ATTACHMENTS)
    if service is not None:
        await service.budget.reserve(request, request.content_length or MAX_BUFFERED)
    try:
        reader = await request.multipart()
    except (ValueError, AssertionError, KeyError) as exc:
        raise _bad_form("payload_json", f"Malformed multipart body: {exc}") from None
    body: dict[str, Any] = {}
    files: dict[int, UploadedFile] = {}
    total = 0
    oversized = False
    while True:
        try:
            part = await reader.next()
        except (ValueError, AssertionError, RuntimeError) as exc:
            raise _bad_form("payload_json", f"Malformed multipart body: {exc}") from None
        if part is None:
            break
        if not isinstance(part, BodyPartReader):  # a nested multipart: not Discord's
            raise _bad_form("payload_json", "Nested multipart bodies are not supported.")
        name = part.name or ""
        is_file = part.filename is not None
        limit = MAX_FILE_BYTES if is_file else MAX_JSON_BYTES
        data, size = await _read_part(part, limit, oversized)
        total += size
        if size > limit or total > MAX_REQUEST_BYTES + REQUEST_OVERHEAD:
            # keep reading (bounded) so the client, still sending, reads the answer
            oversized = True
            if total > MAX_BUFFERED:
                raise too_large()
            continue
        if oversized:
            continue
        if is_file:
            match = _FILE_PART.fullmatch(name)
            if match is None:
                raise _bad_form(name or "files", "File parts are named files[n].")
            index = int(match.group(1))
            if index in files:
                raise _bad_form(name, "Duplicate file part.")
            files[index] = UploadedFile(index, part.filename or "unknown",
                                        part.headers.get("Content-Type"), data)
            continue
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise _bad_form(name, "Must be UTF-8 text.") from None
        if name == "payload_json":
            try:
                payload = json.loads(text)
            except (ValueError, RecursionError):
                raise _bad_form("payload_json", "Must be a JSON object.") from None
            if not isinstance(payload, dict):
                raise _bad_form("payload_json", "Must be a JSON object.")
            body.update(payload)
        elif name:
            body.setdefault(name, text)
    if oversized:
        raise too_large()
    if sum(len(f.data) for f in files.values()) > MAX_REQUEST_BYTES:
        raise too_large()
    return body, [files[i] for i in sorted(files)]


def check_may_attach(files: list[UploadedFile], permissions: int) -> None:
    """Uploading files needs ATTACH_FILES in the channel (a send's, or an edit's new
    ones; keeping a message's files needs nothing): Discord's 403 50013 otherwise."""
    if files and not permissions & ATTACH_FILES:
        raise HTTPDiscordError(403, MISSING_PERMISSIONS, "Missing Permissions")


async def _read_part(part: BodyPartReader, limit: int, discard: bool) -> tuple[bytes, int]:
    """The part's bytes (none kept past ``limit``, or when ``discard``) and its size."""
    chunks: list[bytes] = []
    size = 0
    try:
        while True:
            chunk = await part.read_chunk(_READ_CHUNK)
            if not chunk:
                break
            size += len(chunk)
            if not discard and size <= limit:
                chunks.append(chunk)
            elif size > MAX_BUFFERED:
                break
    except (ValueError, AssertionError) as exc:
        raise _bad_form(part.name or "files", f"Malformed part: {exc}") from None
    return b"".join(chunks), size


@dataclass(slots=True)
class Staged:
    """A request's attachments: the objects the message will list, and the blobs this
    request wrote for it (pending until ``settle``)."""

    attachments: Attachments
    channel_id: int
    objects: list[dict[str, Any]] = field(default_factory=list)
    written: list[int] = field(default_factory=list)
    #: whether the request said anything about attachments (an edit then replaces them)
    given: bool = False

    async def posting(self, answer: Awaitable[T]) -> T:
        """Await the post's ``answer`` and settle the blobs by it (see the module
        docstring); an exception leaves them to ``collect``."""
        result = await answer
        if not self.written:
            return result
        if isinstance(result, Posted):
            await self.settle(result.message)
        elif isinstance(result, PostFailed) and 400 <= result.status < 500:
            await self.discard()
        return result

    async def settle(self, message: dict[str, Any]) -> None:
        """The message is durable: commit the blobs it lists, delete the others (an
        ``enforce_nonce`` retry answered with the first send's message lists none)."""
        listed = {str(a.get("id")) for a in message.get("attachments") or ()}
        message_id = int(message["id"])
        blobs = self.attachments.blobs
        try:
            await asyncio.gather(*(
                blobs.commit(self.channel_id, b, message_id) if str(b) in listed
                else blobs.discard(self.channel_id, b) for b in self.written))
        except Exception:  # journalled: collect commits them (the message lists them)
            log.warning("attachments.commit_failed", exc_info=True,
                        extra={"channel_id": self.channel_id, "message_id": message_id})

    async def discard(self) -> None:
        try:
            await asyncio.gather(*(self.attachments.blobs.discard(self.channel_id, b)
                                   for b in self.written))
        except Exception:  # journalled and unreachable: collect deletes them
            log.warning("attachments.discard_failed", exc_info=True,
                        extra={"channel_id": self.channel_id})


class Attachments:
    """The node's attachment service: stores uploads, settles them, serves them."""

    def __init__(self, api: Api) -> None:
        self.api = api
        self.blobs = Blobs(api.storage)
        self.budget = UploadBudget()
        self._collector: asyncio.Task[None] | None = None

    async def stage(self, request: web.Request, channel_id: int, body: dict[str, Any],
                    files: list[UploadedFile], existing: Message | None = None) -> Staged:
        """Check the ``attachments`` metadata against the files (and, for an edit,
        the message's ``existing`` attachments), then store each file as a pending
        blob. Nothing is written when the metadata is refused."""
        staged = Staged(self, channel_id, given="attachments" in body or bool(files))
        if not staged.given:
            return staged
        by_index = {f.index: f for f in files}
        kept = {int(a["id"]): a for a in (existing.attachments if existing else ())}
        specs = parse_attachment_specs(body.get("attachments"), set(by_index),
                                       editing=existing is not None, existing=set(kept))
        if isinstance(specs, FieldError):
            raise invalid_form(specs)
        origin = str(URL(self.api.gateway.rest_url).origin())
        uploads = []
        for spec in specs:
            if spec.index is None:
                assert spec.keep_id is not None
                staged.objects.append(kept[spec.keep_id])
                continue
            upload = by_index[spec.index]
            blob_id = self.api.ctx.snowflakes.next_id()
            filename = safe_filename(spec.filename or upload.filename)
            sniffed = sniff(upload.data, filename, upload.declared_type)
            staged.objects.append(attachment_object(
                attachment_id=blob_id, channel_id=channel_id, filename=filename,
                size=len(upload.data), sniffed=sniffed, origin=origin,
                description=spec.description, title=spec.title))
            uploads.append((blob_id, upload.data, sniffed.content_type))
        staged.written = [blob_id for blob_id, _, _ in uploads]
        try:
            await asyncio.gather(*(self.blobs.put(channel_id, blob_id, data, content_type)
                                   for blob_id, data, content_type in uploads))
        except BaseException:
            await staged.discard()
            raise
        return staged

    async def retire(self, message: Message, keep: Collection[str] = ()
                     ) -> list[tuple[int, int]]:
        """Journal the message's blobs (but ``keep``) before it is deleted or edited
        without them: ``(blob_id, journal bucket)`` for ``forget``."""
        ids = [int(a["id"]) for a in message.attachments if str(a.get("id")) not in keep]
        buckets = await asyncio.gather(*(
            self.blobs.retire(message.channel_id, b, message.id) for b in ids))
        return list(zip(ids, buckets, strict=True))

    async def forget(self, channel_id: int, retired: list[tuple[int, int]]) -> None:
        """Delete retired blobs once their message no longer lists them (failures are
        left to ``collect``; the blobs are unreachable already)."""
        try:
            await asyncio.gather(*(self.blobs.discard(channel_id, b, bucket)
                                   for b, bucket in retired))
        except Exception:
            log.warning("attachments.delete_failed", exc_info=True,
                        extra={"channel_id": channel_id})

    async def start_collector(self, app: web.Application) -> None:
        """``on_startup``: settle the blob journal every ``COLLECT_EVERY_S`` (the first
        after a random part of it, so the nodes of a cluster do not run in step)."""
        self._collector = asyncio.get_running_loop().create_task(self._collect_forever())

    async def stop_collector(self, app: web.Application) -> None:
        task, self._collector = self._collector, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _collect_forever(self) -> None:
        await asyncio.sleep(COLLECT_EVERY_S * random.uniform(0.5, 1.0))
        while True:
            try:
                committed, deleted = await self.blobs.collect()
                if committed or deleted:
                    log.info("attachments.collected",
                             extra={"committed": committed, "deleted": deleted})
            except Exception:
                log.warning("attachments.collect_failed", exc_info=True)
            await asyncio.sleep(COLLECT_EVERY_S)

    # -- downloads ----------------------------------------------------------------------
    async def get_attachment(self, request: web.Request) -> web.StreamResponse:
        info = request.match_info
        channel_id = parse_snowflake(info["channel_id"])
        blob_id = parse_snowflake(info["attachment_id"])
        head = None
        if channel_id is not None and blob_id is not None:
            head = await self.blobs.reachable(channel_id, blob_id, info["filename"])
        if head is None or channel_id is None or blob_id is None:
            return error(404, 0, "404: Not Found")
        etag = f'"{head.etag}"'
        headers = {"ETag": etag, "Accept-Ranges": "bytes",
                   # stored, but asked again each time (a 304, no bytes): a deleted
                   # message's files are gone from caches too
                   "Cache-Control": "public, no-cache",
                   "Content-Type": head.content_type or "application/octet-stream",
                   **SERVED_INERT}
        if _matches(request.headers.get("If-None-Match"), etag):
            return web.Response(status=304, headers=headers)
        span = _range(request, etag, head.size)
        if span == "unsatisfiable":
            return web.Response(status=416, headers={
                **headers, "Content-Range": f"bytes */{head.size}"})
        status, (start, end) = (200, (0, head.size - 1)) if span is None else (206, span)
        if status == 206:
            headers["Content-Range"] = f"bytes {start}-{end}/{head.size}"
        response = web.StreamResponse(status=status, headers=headers)
        response.content_length = max(0, end - start + 1)
        try:
            await response.prepare(request)
            if request.method != "HEAD" and head.size:
                await self._send(request, response, channel_id, blob_id, head, start, end)
            await response.write_eof()
        except ConnectionError:
            pass  # the client went away (or was reset for not reading): nothing to answer
        return response

    async def _send(self, request: web.Request, response: web.StreamResponse,
                    channel_id: int, blob_id: int, head: BlobHead, start: int,
                    end: int) -> None:
        """Write the bytes a chunk at a time; a client that stops reading for the
        node's response timeout is reset (as ``bounded_responses`` does)."""
        timeout = self.api.gateway.write_limits.response_timeout_s
        async for part in self.blobs.read(channel_id, blob_id, head, start, end):
            try:
                async with asyncio.timeout(timeout):
                    await response.write(part)
            except TimeoutError:
                if request.transport is not None:
                    abort(request.transport)
                raise ConnectionResetError("the client stopped reading") from None


#: the node's ``Attachments``, on the REST application
ATTACHMENTS = web.AppKey("attachments", Attachments)


def _matches(if_none_match: str | None, etag: str) -> bool:
    if not if_none_match:
        return False
    tags = [t.strip().removeprefix("W/") for t in if_none_match.split(",")]
    return "*" in tags or etag in tags


def _range(request: web.Request, etag: str, size: int
           ) -> tuple[int, int] | str | None:
    """The one byte range asked for (inclusive), None for the whole (no Range, a stale
    ``If-Range``, several ranges or a unit not bytes: RFC 9110 lets a server ignore
    those), or "unsatisfiable"."""
    raw = request.headers.get("Range")
    if not raw or not raw.startswith("bytes=") or "," in raw:
        return None
    if_range = request.headers.get("If-Range")
    if if_range is not None and if_range.strip() != etag:
        return None
    first, _, last = raw[len("bytes="):].strip().partition("-")
    if not (first.isdigit() or last.isdigit()) or (first and not first.isdigit()) or (
            last and not last.isdigit()):
        return None
    if not first:  # the last N bytes
        suffix = int(last)
        if suffix == 0 or size == 0:
            return "unsatisfiable"
        return max(0, size - suffix), size - 1
    start = int(first)
    end = size - 1 if not last else min(int(last), size - 1)
    if last and int(last) < start:
        return None  # invalid: ignored
    if start >= size:
        return "unsatisfiable"
    return start, end


def attachments_of(request: web.Request) -> Attachments:
    """The node's attachment service (``add_routes`` registers it on the app)."""
    return request.app[ATTACHMENTS]


def add_routes(app: web.Application, api: Api) -> None:
    """Register this module's routes."""
    service = Attachments(api)
    app[ATTACHMENTS] = service
    app.middlewares.append(release_uploads)  # innermost: released before the answer goes
    app.on_startup.append(service.start_collector)
    app.on_cleanup.append(service.stop_collector)
    app.router.add_get("/attachments/{channel_id}/{attachment_id}/{filename}",
                       service.get_attachment)
