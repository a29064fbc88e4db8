"""Gateway close codes, the reason text sent with each, and what each means for the session.

Reasons are the "Description" column of Discord's table (opcodes-and-status-codes.mdx),
so a client that logs the reason sees what Discord's docs call it. Clients decide from the
code alone whether to reconnect; ``RESUMABLE`` is this server's side of that contract: the
closes after which the session is kept for a RESUME.
"""

from __future__ import annotations

from enum import IntEnum


class CloseCode(IntEnum):
    UNKNOWN_ERROR = 4000
    UNKNOWN_OPCODE = 4001
    DECODE_ERROR = 4002
    NOT_AUTHENTICATED = 4003
    AUTHENTICATION_FAILED = 4004
    ALREADY_AUTHENTICATED = 4005
    INVALID_SEQ = 4007
    RATE_LIMITED = 4008
    SESSION_TIMED_OUT = 4009
    INVALID_SHARD = 4010
    SHARDING_REQUIRED = 4011
    INVALID_API_VERSION = 4012
    INVALID_INTENTS = 4013
    DISALLOWED_INTENTS = 4014


#: RFC 6455 closes for a client that broke the WebSocket protocol itself (§7.4.1): a
#: frame with a reserved bit set, a continuation without a message in progress or a new
#: message inside a fragmented one (1002); text that is not UTF-8 (1007, §8.1). Not
#: Discord codes, and not 1011: every client library treats 1011 as the server's fault.
WS_PROTOCOL_ERROR = 1002
WS_INVALID_DATA = 1007


REASONS: dict[int, str] = {
    CloseCode.UNKNOWN_ERROR: "Unknown error",
    CloseCode.UNKNOWN_OPCODE: "Unknown opcode",
    CloseCode.DECODE_ERROR: "Decode error",
    CloseCode.NOT_AUTHENTICATED: "Not authenticated",
    CloseCode.AUTHENTICATION_FAILED: "Authentication failed",
    CloseCode.ALREADY_AUTHENTICATED: "Already authenticated",
    CloseCode.INVALID_SEQ: "Invalid seq",
    CloseCode.RATE_LIMITED: "Rate limited",
    CloseCode.SESSION_TIMED_OUT: "Session timed out",
    CloseCode.INVALID_SHARD: "Invalid shard",
    CloseCode.SHARDING_REQUIRED: "Sharding required",
    CloseCode.INVALID_API_VERSION: "Invalid API version",
    CloseCode.INVALID_INTENTS: "Invalid intent(s)",
    CloseCode.DISALLOWED_INTENTS: "Disallowed intent(s)",
    WS_PROTOCOL_ERROR: "Protocol error",
    WS_INVALID_DATA: "Invalid frame payload data",
}

#: Codes after which Discord tells clients not to reconnect at all.
FATAL: frozenset[int] = frozenset(
    {
        CloseCode.AUTHENTICATION_FAILED,
        CloseCode.INVALID_SHARD,
        CloseCode.SHARDING_REQUIRED,
        CloseCode.INVALID_API_VERSION,
        CloseCode.INVALID_INTENTS,
        CloseCode.DISALLOWED_INTENTS,
    }
)

#: Server closes that keep an established session resumable. 4000 is also what a zombie
#: connection gets: every client library treats it as "reconnect and RESUME", whereas
#: 4009 and 4007 say "start a new session" and 4003 "this session has been invalidated".
#: 1002 and 1007 are 4002's kind (bytes the server could not take): the session stays.
RESUMABLE: frozenset[int] = frozenset(
    {
        WS_PROTOCOL_ERROR,
        WS_INVALID_DATA,
        CloseCode.UNKNOWN_ERROR,
        CloseCode.UNKNOWN_OPCODE,
        CloseCode.DECODE_ERROR,
        CloseCode.ALREADY_AUTHENTICATED,
        CloseCode.RATE_LIMITED,
    }
)

#: A client that closes with one of these ends its session (Discord: "your session will be
#: invalidated"); any other client close, or a dropped TCP connection, keeps it resumable.
CLIENT_CLOSES_ENDING_SESSION: frozenset[int] = frozenset({1000, 1001})


def reason_for(code: int) -> str:
    """The reason text for a gateway close code (empty for codes outside the table)."""
    return REASONS.get(code, "")
