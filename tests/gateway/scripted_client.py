"""A scripted gateway client for the protocol tests: no sockets, time passed explicitly.

It decodes what the connection sends the way a client library does (one
``zlib.decompressobj`` per connection, inflating once a frame ends in 00 00 ff ff), so
every test reads real wire bytes rather than internal objects.
"""

from __future__ import annotations

import json
import zlib
from typing import Any

import msgpack

from gateway.protocol import (
    Close,
    Effect,
    GatewayConfig,
    GatewayConnection,
    IdentifyRequested,
    SendFrame,
    SetTimer,
    parse_connection_url,
)

ZLIB_SUFFIX = b"\x00\x00\xff\xff"
BOT_USER = {"id": 111, "username": "greenbot", "bot": True}
APPLICATION = {"id": 222, "flags": 0}
GUILD = {
    "id": "333",
    "name": "the greenroom",
    "owner_id": 444,
    "joined_at": "2024-01-01T00:00:00+00:00",
    "channels": [{"id": "555", "type": 0, "name": "general", "guild_id": "333"}],
    "roles": [{"id": "333", "name": "@everyone", "permissions": "0", "position": 0}],
    "members": [
        {"user": {"id": "111", "username": "greenbot"}, "roles": []},
        {"user": {"id": "666", "username": "alice"}, "roles": []},
    ],
    "presences": [{"user": {"id": "666"}, "status": "online"}],
}
IDENTIFY_D = {
    "token": "Bot.token",
    "intents": 513,
    "properties": {"os": "linux", "browser": "test", "device": "test"},
}


class ScriptedClient:
    def __init__(self, url: str = "/?v=10&encoding=json", config: GatewayConfig | None = None):
        self.params = parse_connection_url(url)
        self.conn = GatewayConnection(self.params, config or GatewayConfig())
        self._inflate = zlib.decompressobj()
        self._buffer = bytearray()
        self.text_frames: list[bool] = []
        self.start_effects = self.conn.start(0.0)
        #: HELLO, decoded at once: a zlib-stream must be read from its first frame.
        self.start_payloads = self.payloads(self.start_effects)

    # -- wire helpers -------------------------------------------------------------

    def encode(self, payload: Any) -> bytes | str:
        if self.params.encoding == "msgpack":
            return msgpack.packb(payload, use_bin_type=True)
        return json.dumps(payload)

    def decode_frame(self, frame: SendFrame) -> dict[str, Any] | None:
        self.text_frames.append(frame.text)
        data = frame.data
        if self.params.zlib_stream:
            self._buffer.extend(data)
            if not data.endswith(ZLIB_SUFFIX):
                return None
            data = self._inflate.decompress(bytes(self._buffer))
            self._buffer.clear()
        if self.params.encoding == "msgpack":
            return msgpack.unpackb(data, raw=False)
        return json.loads(data)

    def payloads(self, effects: list[Effect]) -> list[dict[str, Any]]:
        out = []
        for effect in effects:
            if isinstance(effect, SendFrame):
                decoded = self.decode_frame(effect)
                if decoded is not None:
                    out.append(decoded)
        return out

    # -- driving the connection ---------------------------------------------------

    def send(self, payload: Any, at: float = 1.0) -> list[Effect]:
        raw = payload if isinstance(payload, bytes | str) else self.encode(payload)
        return self.conn.receive(raw, at)

    def identify(self, at: float = 1.0, **overrides: Any) -> IdentifyRequested:
        effects = self.send({"op": 2, "d": {**IDENTIFY_D, **overrides}}, at)
        assert len(effects) == 1 and isinstance(effects[0], IdentifyRequested), effects
        return effects[0]

    def ready(self, guilds: list[dict] | None = None, at: float = 1.0, **identify: Any):
        """IDENTIFY and accept it; returns the decoded READY + GUILD_CREATE payloads."""
        self.identify(at, **identify)
        effects = self.conn.identified(
            session_id="session-1",
            user=BOT_USER,
            guilds=[GUILD] if guilds is None else guilds,
            application=APPLICATION,
            resume_gateway_url="ws://127.0.0.1:9999",
        )
        return self.payloads(effects)


def close_of(effects: list[Effect]) -> Close:
    """The single Close among ``effects`` (asserting it is the last effect)."""
    closes = [e for e in effects if isinstance(e, Close)]
    assert len(closes) == 1, effects
    assert effects[-1] is closes[0]
    return closes[0]


def timers_of(effects: list[Effect]) -> list[float]:
    return [e.at for e in effects if isinstance(e, SetTimer)]
