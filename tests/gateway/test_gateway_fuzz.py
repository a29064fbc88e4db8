"""The seeded gateway fuzzer (``loadtest.abuse_fuzz``) against a real gateway over real
sockets: 20,000+ mutated frames over every wire format the gateway serves (json and
msgpack, each plain, zlib-stream and zstd-stream; etf among the refused URLs).

Asserts only what must hold whatever the frames: every close is a Discord or RFC 6455
code a client may get for bad input (never 1011 or 4000, never a drop without a close
frame, never silence), no ERROR record or traceback in the server's log, RSS flat once
warm (sessions leave with a short resume window) and a well-behaved client still gets
READY afterwards.
"""

from __future__ import annotations

from pathlib import Path

import uvloop

from loadtest.abuse_fuzz import FORMATS, format_name, serve_and_fuzz

FRAMES = 20_000
SEED = 10
#: RSS growth allowed from the warm-up sample to the end (measured: < 1 MiB).
RSS_GROWTH_MIB = 8.0


def test_twenty_thousand_fuzzed_frames_get_only_allowed_closes(tmp_path: Path) -> None:
    report = uvloop.run(serve_and_fuzz(seed=SEED, frames=FRAMES, directory=tmp_path,
                                       resume_window_s=1.0))
    assert report.frames >= FRAMES
    assert report.connections > 1000
    # each wire format got its share of the frames (a sixth each, give or take)
    for encoding, compress in FORMATS:
        assert report.formats[format_name(encoding, compress)] > FRAMES // 10, report.formats
    assert report.unexpected == []
    assert report.error_records == []
    # every kind of answer came up: the fuzz reached each refusal path
    assert {1002, 1007, 4001, 4002, 4003, 4004}.issubset(report.closes)
    assert report.rss_growth_mib < RSS_GROWTH_MIB, report.rss_mib
    assert report.well_behaved_ok
