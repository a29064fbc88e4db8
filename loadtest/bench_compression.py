"""What one connection's transport compression costs: the figures in
``gateway/protocol/compression.py``'s docstring.

For each stream (zlib-stream and zstd-stream at the defaults served, and the
alternatives weighed): the compressed size of ~800-byte MESSAGE_CREATE payloads (as a
share of the JSON), the time to compress one, and the RSS a connection holds: 1,000
compressors, each fed until its window is full and then one 64 KB payload (a
GUILD_CREATE-sized one), measured as the process's RSS growth. Every frame is checked
to decompress to its payload with one streaming decompressor, as a client does.

    .venv/bin/python -m loadtest.bench_compression          # ~10 s; one JSON line each

Run it alone on a quiet machine: RSS and timings are the process's own.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import subprocess
import sys
import time
import zlib
from collections.abc import Callable

import zstandard

from gateway.protocol.compression import ZlibStreamCompressor, ZstdStreamCompressor

CONNECTIONS = 1000
PAYLOADS = 2000
LARGE = 64 * 1024


def _rss_kib() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


def message_creates(count: int, seed: int = 1) -> list[bytes]:
    """MESSAGE_CREATE frames shaped like ``chat.objects.message_object``'s, with
    varied content from a 3,000-word made-up vocabulary and increasing snowflakes."""
    rng = random.Random(seed)
    letters = "etaoinshrdlucmfwypvbgkqjxz"
    words = ["".join(rng.choice(letters[: rng.randrange(8, 26)])
                     for _ in range(rng.randrange(1, 10))) for _ in range(3000)]
    authors = [1200000000000000001 + rng.randrange(1 << 40) for _ in range(5)]
    out = []
    snowflake = 1300000000000000000
    for seq in range(count):
        snowflake += rng.randrange(1 << 22, 1 << 30)
        author = rng.choice(authors)
        d = {
            "id": str(snowflake), "channel_id": "1250000000000000010",
            "author": {"id": str(author), "username": f"user{author % 1000}",
                       "discriminator": "0", "global_name": None, "avatar": None,
                       "bot": False, "public_flags": 0},
            "content": " ".join(rng.choice(words) for _ in range(rng.randrange(3, 30))),
            "timestamp": f"2026-12-07T00:{seq // 60 % 60:02d}:{seq % 60:02d}."
                         f"{rng.randrange(1000):03d}000+00:00",
            "edited_timestamp": None, "tts": False, "mention_everyone": False,
            "mentions": [], "mention_roles": [], "attachments": [], "embeds": [],
            "pinned": False, "type": 0, "flags": 0, "components": [],
            "guild_id": "1250000000000000001", "nonce": str(snowflake + 5),
            "member": {"roles": [], "nick": None, "avatar": None, "deaf": False,
                       "mute": False, "joined_at": "2026-11-01T10:00:00.000000+00:00",
                       "flags": 0, "pending": False, "premium_since": None},
        }
        frame = {"t": "MESSAGE_CREATE", "s": seq + 2, "op": 0, "d": d}
        out.append(json.dumps(frame, separators=(",", ":")).encode())
    return out


class _ZstdCompressobj:
    """zstd through ``compressobj()`` (its 128 KiB output buffer): the rejected option."""

    def __init__(self, level: int, window_log: int, hash_log: int) -> None:
        params = zstandard.ZstdCompressionParameters.from_level(
            level, window_log=window_log, hash_log=hash_log, chain_log=hash_log)
        self._obj = zstandard.ZstdCompressor(compression_params=params).compressobj()

    def compress(self, payload: bytes) -> bytes:
        return self._obj.compress(payload) + self._obj.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)


#: name -> (new compressor, new client decompress function, window in bytes)
STREAMS: dict[str, tuple[Callable[[], object], Callable[[], Callable[[bytes], bytes]], int]] = {
    "zlib wbits 15 memLevel 8": (lambda: ZlibStreamCompressor(1, 15, 8),
                                 lambda: zlib.decompressobj().decompress, 1 << 15),
    "zlib wbits 12 memLevel 5 (default)": (ZlibStreamCompressor,
                                           lambda: zlib.decompressobj().decompress, 1 << 12),
    "zstd level 1 window 2^17 hash 2^15": (lambda: ZstdStreamCompressor(1, 17, 15), None, 1 << 17),
    "zstd level 1 window 2^15 hash 2^12": (lambda: ZstdStreamCompressor(1, 15, 12), None, 1 << 15),
    "zstd level 3 window 2^15 hash 2^12": (lambda: ZstdStreamCompressor(3, 15, 12), None, 1 << 15),
    "zstd level 1 window 2^12 hash 2^10 (default)": (ZstdStreamCompressor, None, 1 << 12),
    "zstd level 1 window 2^12 hash 2^8": (lambda: ZstdStreamCompressor(1, 12, 8), None, 1 << 12),
    "zstd compressobj window 2^12 hash 2^10": (lambda: _ZstdCompressobj(1, 12, 10), None, 1 << 12),
}


def measure(name: str, payloads: list[bytes]) -> dict[str, object]:
    new, new_decompress, window = STREAMS[name]
    if new_decompress is None:
        new_decompress = lambda: zstandard.ZstdDecompressor().decompressobj().decompress  # noqa: E731
    compressor = new()
    decompress = new_decompress()
    warm = PAYLOADS // 10
    for payload in payloads[:warm]:
        assert decompress(compressor.compress(payload)) == payload, name
    size_in = size_out = 0
    batches = []  # the fastest of 6 batches: the machine is shared, the minimum is ours
    timed = payloads[warm:]
    step = len(timed) // 6
    for start in range(0, step * 6, step):
        started = time.perf_counter()
        for payload in timed[start:start + step]:
            frame = compressor.compress(payload)
            size_in += len(payload)
            size_out += len(frame)
        batches.append((time.perf_counter() - started) * 1e6 / step)
    per_message_us = min(batches)

    large = b"".join(payloads[:100])[:LARGE]
    gc.collect()
    before = _rss_kib()
    kept = []
    for i in range(CONNECTIONS):
        compressor = new()
        fill, j = 3 * max(window, 1 << 15), i
        while fill > 0:  # zlib's hash chains are sized by memLevel: feed 3 windows or 96 KB
            payload = payloads[j % len(payloads)]
            compressor.compress(payload)
            fill -= len(payload)
            j += 1
        compressor.compress(large)
        kept.append(compressor)
    gc.collect()
    rss_per_connection = (_rss_kib() - before) / CONNECTIONS
    del kept
    return {"stream": name, "rss_kib_per_connection": round(rss_per_connection, 1),
            "compressed_percent": round(100 * size_out / size_in, 1),
            "us_per_message": round(per_message_us, 1),
            "payload_bytes": round(size_in / (step * 6))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stream", choices=list(STREAMS), help="measure this one only")
    args = parser.parse_args()
    if args.stream:
        print(json.dumps(measure(args.stream, message_creates(PAYLOADS))), flush=True)
        return
    for name in STREAMS:  # each in a fresh process: the allocator's state is not shared
        subprocess.run([sys.executable, "-m", "loadtest.bench_compression", "--stream", name],
                       check=True)


if __name__ == "__main__":
    main()
