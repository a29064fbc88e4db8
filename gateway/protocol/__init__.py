"""Discord Gateway v10 protocol, sans I/O: bytes and events in, bytes and effects out.

``GatewayConnection`` is the state machine of one connection; the socket layer feeds it
messages and time and carries out its ``SendFrame`` / ``Close`` / ``SetTimer`` effects,
the session layer answers its ``IdentifyRequested`` / ``ResumeRequested`` events. Fan-out
prepares each dispatch once (``PreparedDispatch``) and filters recipients with
``event_allowed`` and the MESSAGE_CONTENT rule.
"""

from .close_codes import WS_INVALID_DATA, WS_PROTOCOL_ERROR, CloseCode, reason_for
from .codec import DecodeError, Encoding, decode_payload, encode_payload
from .compression import ZlibStreamCompressor, ZstdStreamCompressor
from .connection import (
    DEFAULT_CONFIG,
    ConnectionState,
    GatewayConfig,
    GatewayConnection,
    ProtocolUsageError,
)
from .dispatch import PreparedDispatch
from .events import (
    ClientEvent,
    Close,
    Disconnected,
    Effect,
    GuildMembersRequested,
    GuildSubscribeRequested,
    IdentifyRequested,
    PresenceUpdateRequested,
    ResumeRequested,
    SendFrame,
    SetTimer,
    SoundboardSoundsRequested,
    VoiceStateUpdateRequested,
)
from .intents import (
    Intents,
    event_allowed,
    intents_valid,
    message_content_visible,
    redact_message_content,
)
from .opcodes import Opcode
from .params import ConnectionParams, parse_connection_url
from .ready import build_guild_create, build_ready, build_user, snowflake_str
from .replay import DispatchLog

__all__ = [
    "DEFAULT_CONFIG",
    "WS_INVALID_DATA",
    "WS_PROTOCOL_ERROR",
    "ClientEvent",
    "Close",
    "CloseCode",
    "ConnectionParams",
    "ConnectionState",
    "DecodeError",
    "Disconnected",
    "DispatchLog",
    "Effect",
    "Encoding",
    "GatewayConfig",
    "GatewayConnection",
    "GuildMembersRequested",
    "GuildSubscribeRequested",
    "IdentifyRequested",
    "Intents",
    "Opcode",
    "PreparedDispatch",
    "PresenceUpdateRequested",
    "ProtocolUsageError",
    "ResumeRequested",
    "SendFrame",
    "SetTimer",
    "SoundboardSoundsRequested",
    "VoiceStateUpdateRequested",
    "ZlibStreamCompressor",
    "ZstdStreamCompressor",
    "build_guild_create",
    "build_ready",
    "build_user",
    "decode_payload",
    "encode_payload",
    "event_allowed",
    "intents_valid",
    "message_content_visible",
    "parse_connection_url",
    "reason_for",
    "redact_message_content",
    "snowflake_str",
]
