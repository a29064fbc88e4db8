"""What a client asked for in its gateway URL: ``/?v=10&encoding=json&compress=zlib-stream``.

Discord accepts the WebSocket upgrade and then closes with a gateway close code, so a bad
URL is not an exception here: it yields ``ConnectionParams`` with ``close_code`` set and
``GatewayConnection.start`` sends that close instead of HELLO.

Where the docs are silent:
- ``v`` missing means 10 (the only version served); any other value closes with 4012.
- ``encoding`` missing means json; a value other than json/msgpack (e.g. Discord's
  ``etf``) cannot be decoded here and closes with 4002.
- ``compress`` is ``zlib-stream`` or ``zstd-stream`` (``compression.py``); any other value
  (e.g. ``lz4``) is served uncompressed rather than refused, as before zstd-stream was
  served: a client that cannot be answered in its compression gets plain frames, which
  discord.py (and hikari without transport compression) read all the same, instead of a
  close it would retry forever.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from .close_codes import CloseCode
from .codec import Encoding
from .compression import TRANSPORT_COMPRESSIONS, ZLIB_STREAM

API_VERSION = 10


@dataclass(frozen=True, slots=True)
class ConnectionParams:
    version: int = API_VERSION
    encoding: Encoding = Encoding.JSON
    #: The transport compression served (``zlib-stream``/``zstd-stream``), None: none.
    compress: str | None = None
    #: Set when the URL cannot be served; the connection closes with it right away.
    close_code: int | None = None

    @property
    def zlib_stream(self) -> bool:
        return self.compress == ZLIB_STREAM


@functools.lru_cache(maxsize=256)  # clients of one library connect with one URL
def parse_connection_url(url: str) -> ConnectionParams:
    """Parse a gateway URL, a path with a query, or a bare query string."""
    query = urlsplit(url).query if ("?" in url or "://" in url) else url
    values = parse_qs(query, keep_blank_values=True)

    def first(name: str) -> str | None:
        found = values.get(name)
        return found[0] if found else None

    version_text = first("v")
    encoding_text = first("encoding")
    compress = first("compress")
    if compress not in TRANSPORT_COMPRESSIONS:
        compress = None

    encoding = Encoding.JSON
    if encoding_text is not None:
        try:
            encoding = Encoding(encoding_text)
        except ValueError:
            return ConnectionParams(API_VERSION, Encoding.JSON, compress, CloseCode.DECODE_ERROR)

    if version_text is None:
        return ConnectionParams(API_VERSION, encoding, compress)
    if version_text != str(API_VERSION):
        version = int(version_text) if version_text.isascii() and version_text.isdigit() else -1
        return ConnectionParams(version, encoding, compress, CloseCode.INVALID_API_VERSION)
    return ConnectionParams(API_VERSION, encoding, compress)
