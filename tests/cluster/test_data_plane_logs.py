"""What the data plane drops or refuses is logged: one structured line per reason and
peer a second at most (a peer gone drops every envelope sent to it), with the trace of
the message when it has one."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest
import uvloop

from actors import UvloopSystemBase
from actors.address import Address
from actors.wire import wire_type
from cluster import data_plane
from cluster.data_plane import DataPlane
from cluster.launcher import free_port
from tests.log_capture import json_logs

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
TRACE = {"traceparent": f"00-{TRACE_ID}-b7ad6b7169203331-01"}


@wire_type("test.logged")
@dataclass
class Logged:
    n: int
    trace: dict | None = None


def test_dropped_and_refused_envelopes_log_one_line_per_reason_and_peer(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(data_plane, "MAX_PENDING", 5)

    async def main() -> None:
        base = UvloopSystemBase(loop=asyncio.get_running_loop(), node="pa")
        plane = DataPlane(base, b"secret")
        await plane.start()
        try:
            plane.set_peers({"pb": ("127.0.0.1", free_port())})  # known, not listening
            for n in range(20):
                plane.route(Address("gone", 7), Logged(n, TRACE), None)  # not a peer
                plane.route(Address("pb", 7), Logged(n, TRACE), None)  # 5 fit, 15 bounce
        finally:
            base.shutdown_in_loop()
            await plane.close()

    with json_logs() as logs:
        uvloop.run(main())
    (dropped,) = logs.events("dataplane.dropped")
    assert dropped["level"] == "warning" and dropped["peer"] == "gone"
    assert dropped["msg_type"] == "Logged" and dropped["reason"] == "not a live peer"
    assert dropped["trace_id"] == TRACE_ID and dropped["suppressed"] == 0
    (refused,) = logs.events("dataplane.refused")
    assert refused["peer"] == "pb" and refused["reason"] == "link full"
    assert refused["trace_id"] == TRACE_ID
