"""``gateway.memory.trim_heap``: what idle zlib-streams free goes back to the OS."""

from __future__ import annotations

import os
import zlib

from gateway.memory import trim_heap
from gateway.protocol.compression import ZlibStreamCompressor


def rss_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_freed_deflaters_stay_resident_until_the_heap_is_trimmed() -> None:
    streams = []
    for _ in range(2000):  # ~30 KiB of deflate state each, between live objects
        stream = ZlibStreamCompressor()
        stream.compress(os.urandom(100) + b"x" * 400)
        streams.append((stream, bytearray(256)))
    before = rss_bytes()
    for stream, _ in streams:
        stream.rest()
    trim_heap()
    assert before - rss_bytes() > 30 * 2**20  # ~60 MB freed; without the trim ~0


def test_rest_if_idle_says_when_it_rested() -> None:
    stream, client = ZlibStreamCompressor(), zlib.decompressobj()
    assert client.decompress(stream.compress(b"{}")) == b"{}"
    assert stream.rest_if_idle() is False  # it compressed since the last check
    assert stream.rest_if_idle() is True and stream.resting  # a cold stream rests at once
    assert stream.rest_if_idle() is False  # nothing left to drop
    assert client.decompress(stream.compress_control(b"ack")) == b"ack"  # the same stream


def test_every_dropped_deflater_is_counted_for_the_trim_wherever_it_was_dropped() -> None:
    """A fan-out's spliced frame drops a warm deflater as an idle sweep does; the sweep's
    heap trim (``TRIM_AFTER_RESTS``) counts both (a big guild's sessions rest mostly by
    splicing, and those pages stayed resident)."""
    ZlibStreamCompressor.take_dropped()
    idle, spliced, client = ZlibStreamCompressor(), ZlibStreamCompressor(), zlib.decompressobj()
    idle.compress(b"{}")
    assert client.decompress(spliced.compress(b"{}")) == b"{}"
    assert idle.rest_if_idle() is False and idle.rest_if_idle() is True
    tail = spliced.deflate_alone(b'"x"}')
    assert client.decompress(spliced.compress_spliced(b'{"s":1,"d":', tail)) == (
        b'{"s":1,"d":"x"}')
    spliced.rest()  # already resting: nothing more to count
    assert ZlibStreamCompressor.take_dropped() == 2
    assert ZlibStreamCompressor.take_dropped() == 0
