"""Gateway v10 opcodes, and which of them a client may send.

Discord's table marks each opcode Send, Receive or both; a client that sends an
opcode it may only receive (DISPATCH, HELLO, ...) gets the same 4001 as an unknown one.
"""

from __future__ import annotations

from enum import IntEnum


class Opcode(IntEnum):
    DISPATCH = 0
    HEARTBEAT = 1
    IDENTIFY = 2
    PRESENCE_UPDATE = 3
    VOICE_STATE_UPDATE = 4
    RESUME = 6
    RECONNECT = 7
    REQUEST_GUILD_MEMBERS = 8
    INVALID_SESSION = 9
    HELLO = 10
    HEARTBEAT_ACK = 11
    #: Discord's user clients send it when the user opens a guild ("lazy request",
    #: guild subscriptions; not in the bot docs). Here it makes the session active for
    #: that guild: gateway/fanout.py, "passive sessions".
    GUILD_SUBSCRIBE = 14
    REQUEST_SOUNDBOARD_SOUNDS = 31


#: Opcodes a client may send; anything else closes the connection with 4001.
CLIENT_OPCODES: frozenset[int] = frozenset(
    {
        Opcode.HEARTBEAT,
        Opcode.IDENTIFY,
        Opcode.PRESENCE_UPDATE,
        Opcode.VOICE_STATE_UPDATE,
        Opcode.RESUME,
        Opcode.REQUEST_GUILD_MEMBERS,
        Opcode.GUILD_SUBSCRIBE,
        Opcode.REQUEST_SOUNDBOARD_SOUNDS,
    }
)

#: Opcodes accepted before the session is authenticated; the rest close with 4003.
PRE_AUTH_OPCODES: frozenset[int] = frozenset({Opcode.HEARTBEAT, Opcode.IDENTIFY, Opcode.RESUME})
