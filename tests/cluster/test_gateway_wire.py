"""Every gateway message that may cross nodes round-trips through the data plane's
envelope; the ones that hold a socket or stay with their session are refused loudly."""

from __future__ import annotations

import pytest

from actors.address import Address
from actors.registry import Located, RegistryError, Route
from actors.wire import envelope, open_envelope, pack, unpack
from cluster.routing import Placed
from gateway import ingress_messages as im
from gateway import messages as m
from gateway.fanout import NodeFanout
from gateway.protocol import PreparedDispatch
from gateway.sessions import NoSuchSession, ToSession, ToUserSessions
from storage.model import Channel, Member

SESSION = Address("n2", 41)
GUILD = Address("n1", 7)
MEMBER = Member(10, 20, 1_700_000_000_000, "nick", [1, 2])
PRESENCE = m.Presence(SESSION, 20, "idle", [{"name": "x", "type": 0}], {"web": "idle"})
TRACE = {"traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01"}

CROSSING = [
    m.Subscribe(SESSION, 20, 513, PRESENCE, MEMBER, False),
    m.Unsubscribe(SESSION),
    m.Activate(SESSION),
    m.Subscribed(10, True),
    PRESENCE,
    m.PostMessage(10, {"id": "20"}, {"nick": None}, "hello", "n1", True, False, {"a": 1}, 0,
                  TRACE),
    m.Posted({"id": "30", "content": "hello"}),
    m.PostFailed(429, 0, "busy", 1.5),
    m.ChangeMessage(10, 30, {"content": "edited"}, {"id": "30"}),
    m.ChangeMessage(10, 30, None),
    m.Typing(10, 20, {"user": {"id": "20"}}),
    m.GuildBroadcast("CHANNEL_CREATE", {"id": "5"}, channel=Channel(5, 10, "general")),
    m.GuildBroadcast("GUILD_MEMBER_ADD", {"user": {"id": "20"}}, member_added=MEMBER),
    m.GuildBroadcast("GUILD_MEMBER_REMOVE", {"user": {"id": "20"}}, member_removed=20),
    m.ServiceBroadcast("SERVICE_EVENT", {"k": [1, 2]}, TRACE),
    m.Broadcasted(10, 3),
    m.JoinedGuild(10),
    m.LeftGuild(10),
    m.CloseSession(4000, "bye", TRACE),
    m.SessionClosed("n2.abc", 4000, True),
    im.PostSystemMessage("r1", 5, "notice", TRACE),
    im.DisconnectSession("r2", "n2.abc", 4000, "", None),
    im.BroadcastToGuild("r3", 10, "EVENT", {"a": 1}, None),
    im.IngressOk("r1", {"x": 1}),
    im.IngressError("r1", "failed", "no"),
    Route("channel", (10, 5), m.PostMessage(10, {"id": "20"}, None, "hi")),
    Placed(Route("guild", 10, m.Unsubscribe(SESSION))),
    Located("guild", 10, GUILD),
    RegistryError("channel", 5, "cannot place", None),
    ToSession("n2.abc", m.CloseSession(4000, "bye")),
    ToUserSessions(20, m.JoinedGuild(10)),
    NoSuchSession("n2.abc"),
    NodeFanout(["MESSAGE_CREATE", b'{"id":"1"}'], [41, 42]),
]


def _fields(message):
    return {k: getattr(message, k) for k in message.__dataclass_fields__}


@pytest.mark.parametrize("message", CROSSING, ids=lambda x: type(x).__name__)
def test_crossing_messages_round_trip_through_the_envelope(message):
    to, sender, back, _trace = open_envelope(unpack(pack(envelope(GUILD, SESSION, message))))
    assert (to, sender) == (GUILD, SESSION)
    assert type(back) is type(message)
    # msgpack carries tuples as lists; everything else comes back equal
    assert repr(_fields(back)).replace("(", "[").replace(")", "]") == \
        repr(_fields(message)).replace("(", "[").replace(")", "]")


def test_a_broadcast_is_encoded_where_the_guild_lives_once():
    broadcast = m.GuildBroadcast("CHANNEL_CREATE", {"id": "5"})
    _, _, back, _ = open_envelope(unpack(pack(envelope(GUILD, None, broadcast))))
    assert back.dispatch is back.dispatch  # made once, on first use
    assert back.dispatch.event == "CHANNEL_CREATE" and back.dispatch.data == {"id": "5"}


@pytest.mark.parametrize("message", [
    m.Deliver(PreparedDispatch("MESSAGE_CREATE", {})),
    m.Identify(object(), None),
    m.Detached(object(), True),
    m.SetPresence("idle"),
], ids=lambda x: type(x).__name__)
def test_what_holds_a_socket_or_a_session_local_dispatch_cannot_cross(message):
    # (a channel's Fanout crosses to a guild that is moving: test_fanout_crosses)
    with pytest.raises(TypeError):
        pack(envelope(SESSION, GUILD, message))
