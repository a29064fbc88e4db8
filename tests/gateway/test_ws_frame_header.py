"""``gateway.outbound.ws_frame_header``: READY and its GUILD_CREATEs go out in one write,
framed by the gateway itself rather than by picows's send. An independent WebSocket
parser (the websockets library's, as a client reads them) must read each frame back."""

from __future__ import annotations

import pytest
from picows import WSMsgType
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from gateway.outbound import ws_frame_header


def parse_all(data: bytes) -> list[Frame]:
    reader = StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    frames = []
    while reader.buffer:
        parser = Frame.parse(reader.read_exact, mask=False)
        try:
            next(parser)
        except StopIteration as done:
            frames.append(done.value)
        else:
            raise AssertionError("a frame was cut short")
    return frames


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 70000])
def test_frames_written_back_to_back_parse_as_sent(size: int) -> None:
    text, binary = b"x" * size, bytes(range(256)) * (size // 256) + b"\x01" * (size % 256)
    data = (ws_frame_header(WSMsgType.TEXT, len(text)) + text
            + ws_frame_header(WSMsgType.BINARY, len(binary)) + binary)
    frames = parse_all(data)
    assert [(f.opcode, f.fin, f.rsv1, f.rsv2, f.rsv3, f.data) for f in frames] == [
        (Opcode.TEXT, True, False, False, False, text),
        (Opcode.BINARY, True, False, False, False, binary)]
