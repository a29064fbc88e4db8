"""``Link.send_dispatch``, the fan-out's per-recipient write: the frame goes out as the
connection made it and its bytes count in ``gateway_out_bytes_total``."""

from __future__ import annotations

from typing import Any

from gateway.outbound import bytes_out
from gateway.protocol import PreparedDispatch
from gateway.protocol.events import SendFrame
from gateway.server import Link
from tests.gateway.scripted_client import ScriptedClient


class _Transport:
    """A picows ``WSTransport`` that keeps what is sent."""

    def __init__(self, disconnected: bool = False) -> None:
        self.is_disconnected = disconnected
        self.sent: list[bytes] = []

    def send(self, msg_type: Any, data: bytes) -> None:
        self.sent.append(data)


def _link(transport: _Transport, url: str = "/?v=10&encoding=json") -> tuple[Link, ScriptedClient]:
    client = ScriptedClient(url)
    client.ready()
    link = Link.__new__(Link)  # the socket side without a Gateway: only the write is used
    link.conn = client.conn
    link.transport = transport  # type: ignore[assignment]
    return link, client


def test_dispatch_bytes_count_in_out_bytes() -> None:
    transport = _Transport()
    link, client = _link(transport, "/?v=10&encoding=json&compress=zlib-stream")
    before = bytes_out.value()
    for n in range(3):
        link.send_dispatch(PreparedDispatch("MESSAGE_CREATE", {"id": str(n), "content": "hi"}))
    assert len(transport.sent) == 3
    assert bytes_out.value() - before == sum(len(frame) for frame in transport.sent)
    decoded = [client.decode_frame(SendFrame(data, False)) for data in transport.sent]
    assert [(p["s"], p["d"]["id"]) for p in decoded] == [(3, "0"), (4, "1"), (5, "2")]


def test_nothing_counts_on_a_disconnected_transport() -> None:
    transport = _Transport(disconnected=True)
    link, _ = _link(transport)
    before = bytes_out.value()
    link.send_dispatch(PreparedDispatch("MESSAGE_CREATE", {"id": "1"}))
    assert transport.sent == []
    assert bytes_out.value() == before
    assert link.conn.log is not None and link.conn.log.seq == 3  # numbered for a RESUME

