"""What a client asked for in its gateway URL: ``/?v=10&encoding=json&compress=zlib-stream``.

Discord accepts the WebSocket upgrade and then closes with a gateway close code, so a bad
URL is not an exception here: it yields ``ConnectionParams`` with ``close_code`` set and
``GatewayConnection.start`` sends that close instead of HELLO.

Where the docs are silent:
- ``v`` missing means 10 (the only version served); any other value closes with 4012.
- ``encoding`` missing means json; a value other than json/msgpack (e.g. Discord's
  ``etf``) cannot be decoded here and closes with 4002.
- ``compress`` other than ``zlib-stream`` (e.g. ``zstd-stream``) is served uncompressed
  rather than refused: discord.py asks for zstd-stream whenever ``zstandard`` is
  importable and reads uncompressed text frames all the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from .close_codes import CloseCode
from .codec import Encoding

API_VERSION = 10
ZLIB_STREAM = "zlib-stream"


@dataclass(frozen=True, slots=True)
class ConnectionParams:
    version: int = API_VERSION
    encoding: Encoding = Encoding.JSON
    zlib_stream: bool = False
    #: Set when the URL cannot be served; the connection closes with it right away.
    close_code: int | None = None


def parse_connection_url(url: str) -> ConnectionParams:
    """Parse a gateway URL, a path with a query, or a bare query string."""
    query = urlsplit(url).query if ("?" in url or "://" in url) else url
    values = parse_qs(query, keep_blank_values=True)

    def first(name: str) -> str | None:
        found = values.get(name)
        return found[0] if found else None

    version_text = first("v")
    encoding_text = first("encoding")
    zlib_stream = first("compress") == ZLIB_STREAM

    encoding = Encoding.JSON
    if encoding_text is not None:
        try:
            encoding = Encoding(encoding_text)
        except ValueError:
            return ConnectionParams(API_VERSION, Encoding.JSON, zlib_stream, CloseCode.DECODE_ERROR)

    if version_text is None:
        return ConnectionParams(API_VERSION, encoding, zlib_stream)
    if version_text != str(API_VERSION):
        version = int(version_text) if version_text.isascii() and version_text.isdigit() else -1
        return ConnectionParams(version, encoding, zlib_stream, CloseCode.INVALID_API_VERSION)
    return ConnectionParams(API_VERSION, encoding, zlib_stream)
