"""Message attachments, the pure part: Discord's limits, the ``attachments`` metadata a
multipart send carries in ``payload_json``, what a file's first bytes say about it
(content type, image size) and the attachment object clients read.

Limits are Discord's defaults for a bot in an unboosted guild: 10 files a message,
10 MiB a file, 25 MiB a request; over them Discord answers 413 with JSON code 40005
(Request entity too large), so does greenroom.

An image's size is read from its header only (PNG's IHDR, GIF's logical screen, JPEG's
first SOFn frame, WebP's VP8/VP8L/VP8X chunk): decoding the image would cost its whole
size in CPU and memory on every upload for two integers.
"""

from __future__ import annotations

import mimetypes
import re
import struct
from dataclasses import dataclass
from typing import Any

from chat.validation import FieldError, check_text

#: Discord's limits (an unboosted guild's): files a message, bytes a file and a request.
MAX_FILES = 10
MAX_FILE_BYTES = 10 * 1024 * 1024
MAX_REQUEST_BYTES = 25 * 1024 * 1024
#: Discord's ``description`` (alt text) and ``title`` limits.
MAX_DESCRIPTION = 1024
MAX_FILENAME = 1024
#: Discord's JSON code for a request or a file over the limits (status 413).
REQUEST_TOO_LARGE = 40005

_UNSAFE_FILENAME = re.compile(r"[^A-Za-z0-9._-]+")
#: Python's own extension table, not the host's mime.types: every node answers alike
_TYPES = mimetypes.MimeTypes()


@dataclass(frozen=True, slots=True)
class Sniffed:
    """What a file's first bytes say: its content type (None if unknown) and, for an
    image, its size in pixels."""

    content_type: str | None
    width: int | None = None
    height: int | None = None


@dataclass(frozen=True, slots=True)
class AttachmentSpec:
    """One entry of a send's ``attachments`` metadata: ``index`` names the ``files[n]``
    part it describes (None: an existing attachment kept by an edit, named by
    ``keep_id``)."""

    index: int | None
    keep_id: int | None = None
    filename: str | None = None
    description: str | None = None
    title: str | None = None


def safe_filename(name: str) -> str:
    """The name a file is served under: runs of characters other than ASCII letters,
    digits, ``.``, ``_`` and ``-`` become ``_`` (Discord does the same with spaces and
    the like), so the URL needs no quoting and names no other path."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    cleaned = _UNSAFE_FILENAME.sub("_", base).strip(".") or "unknown"
    return cleaned[:MAX_FILENAME]


def _png(head: bytes) -> Sniffed | None:
    if head[:8] != b"\x89PNG\r\n\x1a\n" or len(head) < 24 or head[12:16] != b"IHDR":
        return None
    width, height = struct.unpack(">II", head[16:24])
    return Sniffed("image/png", width, height)


def _gif(head: bytes) -> Sniffed | None:
    if head[:6] not in (b"GIF87a", b"GIF89a") or len(head) < 10:
        return None
    width, height = struct.unpack("<HH", head[6:10])
    return Sniffed("image/gif", width, height)


#: JPEG frame markers that carry the image's size (SOF0-15 but DHT, JPG and DAC)
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


#: How far (bytes, steps) a JPEG's segments are followed to its frame header: past any
#: real file's metadata, and a bound on the work a crafted one can ask for
_JPEG_SCAN_BYTES = 1024 * 1024
_JPEG_SCAN_STEPS = 1024


def _jpeg(data: bytes) -> Sniffed | None:
    if data[:3] != b"\xff\xd8\xff":
        return None
    at = 2
    end = min(len(data), _JPEG_SCAN_BYTES)
    for _ in range(_JPEG_SCAN_STEPS):
        if at + 4 > end:
            break
        if data[at] != 0xFF:
            return Sniffed("image/jpeg")  # not a marker where one must be: size unknown
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # no length field
            at += 2
            continue
        (length,) = struct.unpack(">H", data[at + 2:at + 4])
        if marker in _SOF and at + 9 <= len(data):
            height, width = struct.unpack(">HH", data[at + 5:at + 9])
            return Sniffed("image/jpeg", width, height)
        if marker == 0xDA or length < 2:  # image data starts: no frame header before it
            break
        at += 2 + length
    return Sniffed("image/jpeg")


def _webp(head: bytes) -> Sniffed | None:
    if head[:4] != b"RIFF" or head[8:12] != b"WEBP":
        return None
    chunk = head[12:16]
    if chunk == b"VP8 " and head[23:26] == b"\x9d\x01\x2a" and len(head) >= 30:
        width, height = struct.unpack("<HH", head[26:30])
        return Sniffed("image/webp", width & 0x3FFF, height & 0x3FFF)
    if chunk == b"VP8L" and len(head) >= 25 and head[20] == 0x2F:
        bits = int.from_bytes(head[21:25], "little")
        return Sniffed("image/webp", (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1)
    if chunk == b"VP8X" and len(head) >= 30:
        width = int.from_bytes(head[24:27], "little") + 1
        height = int.from_bytes(head[27:30], "little") + 1
        return Sniffed("image/webp", width, height)
    return Sniffed("image/webp")


def sniff(data: bytes, filename: str, declared: str | None = None) -> Sniffed:
    """The file's content type and, for PNG, JPEG, GIF and WebP, its width and height,
    from its header; otherwise the type its extension names, else the part's declared
    type (unless it is the generic ``application/octet-stream`` every library sends)."""
    for probe in (_png, _gif, _webp):
        found = probe(data[:64])
        if found is not None:
            return found
    found = _jpeg(data)  # segment to segment: EXIF/ICC may fill 100s of KiB before it
    if found is not None:
        return found
    guessed, _ = _TYPES.guess_type(filename, strict=False)
    if guessed is None and declared and declared.split(";")[0].strip() not in (
            "", "application/octet-stream"):
        guessed = declared.split(";")[0].strip().lower()
    if guessed is not None and guessed.startswith("text/"):
        guessed += "; charset=utf-8"
    return Sniffed(guessed)


def _index(raw: Any) -> int | None:
    """An ``attachments[n].id`` as an int (libraries send ints, or digit strings)."""
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        return raw if raw >= 0 else None
    if isinstance(raw, str) and raw.isascii() and raw.isdigit() and len(raw) <= 20:
        return int(raw)
    return None


def parse_attachment_specs(raw: Any, file_indexes: set[int], *, editing: bool = False,
                           existing: set[int] | None = None
                           ) -> list[AttachmentSpec] | FieldError:
    """The send's ``attachments`` metadata, checked: each entry's ``id`` names one of the
    request's ``files[n]`` parts (``file_indexes``), or, in an edit, an attachment the
    message has (``existing``: the ones kept). Files no entry describes are appended in
    index order, as Discord does. Answers the first problem as Discord's field error."""
    existing = existing or set()
    specs: list[AttachmentSpec] = []
    seen: set[int] = set()
    if raw is None:
        raw = []
    if not isinstance(raw, list):
        return FieldError("attachments", "BASE_TYPE_ARRAY", "Must be an array.")
    for n, entry in enumerate(raw):
        field = f"attachments.{n}"
        if not isinstance(entry, dict):
            return FieldError(field, "DICT_TYPE_CONVERT", "Only dictionaries may be used "
                              "in a DictType")
        ident = _index(entry.get("id"))
        if ident is None:
            return FieldError(f"{field}.id", "NUMBER_TYPE_COERCE",
                              "Value is not a valid attachment id.")
        for name, limit in (("filename", MAX_FILENAME), ("description", MAX_DESCRIPTION),
                            ("title", MAX_FILENAME)):
            problem = check_text(f"{field}.{name}", entry.get(name), max_len=limit,
                                 required=False)
            if problem is not None:
                return problem
        if ident in seen:
            return FieldError(f"{field}.id", "ATTACHMENT_ID_DUPLICATE",
                              "Duplicate attachment id.")
        seen.add(ident)
        if ident in file_indexes:
            specs.append(AttachmentSpec(ident, None, entry.get("filename"),
                                        entry.get("description"), entry.get("title")))
        elif editing and ident in existing:
            specs.append(AttachmentSpec(None, ident))
        else:
            return FieldError(f"{field}.id", "ATTACHMENT_NOT_FOUND",
                              f"Attachment {ident} not found in the request's files.")
    described = {s.index for s in specs if s.index is not None}
    specs += [AttachmentSpec(i) for i in sorted(file_indexes - described)]
    if len(specs) > MAX_FILES:
        return FieldError("attachments", "BASE_TYPE_MAX_LENGTH",
                          f"Must be {MAX_FILES} or fewer in length.")
    return specs


def attachment_path(channel_id: int, attachment_id: int, filename: str) -> str:
    """Where an attachment is served (Discord's CDN path): stable for its lifetime."""
    return f"/attachments/{channel_id}/{attachment_id}/{filename}"


def attachment_object(*, attachment_id: int, channel_id: int, filename: str, size: int,
                      sniffed: Sniffed, origin: str, description: str | None = None,
                      title: str | None = None) -> dict[str, Any]:
    """Discord's attachment object; ``origin`` is the REST server's advertised scheme
    and host (``url`` and ``proxy_url`` must be absolute: libraries download them as
    they are)."""
    url = origin.rstrip("/") + attachment_path(channel_id, attachment_id, filename)
    out: dict[str, Any] = {"id": str(attachment_id), "filename": filename, "size": size,
                           "url": url, "proxy_url": url}
    if sniffed.content_type is not None:
        out["content_type"] = sniffed.content_type
    if sniffed.width is not None and sniffed.height is not None:
        out["width"], out["height"] = sniffed.width, sniffed.height
    if description is not None:
        out["description"] = description
    if title is not None:
        out["title"] = title
    return out
