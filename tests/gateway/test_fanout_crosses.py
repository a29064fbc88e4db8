"""A channel's ``Fanout`` reaches its guild on another node: placement keeps the two
together, but while a guild moves the registry may route a channel's event to the
guild's new node, and an event that could not cross was lost (logged "Fanout is not a
wire type": an acknowledged message nobody received). The dispatch crosses as its
event and the JSON of its ``d``; a malformed one is refused at decoding."""

from __future__ import annotations

import pytest

from actors import Address, wire
from actors.registry import Route
from gateway.messages import Fanout
from gateway.protocol import Encoding, PreparedDispatch


def _across(message: object) -> object:
    """What the data plane does with a message for another node: pack, unpack."""
    packed = wire.pack(wire.envelope(Address("n2", -2), Address("n1", 7), message))
    return wire.open_envelope(wire.unpack(packed))[2]


def test_a_fanout_routed_to_another_node_arrives_whole() -> None:
    payload = {"id": "5", "channel_id": "9", "content": "héllo <@1>", "mentions": [],
               "embeds": [{"title": "t"}], "nonce": None}
    dispatch = PreparedDispatch("MESSAGE_CREATE", payload)
    sent = Fanout(9, dispatch, payload, sent_at=1.5)
    route = _across(Route("guild", 42, sent))
    assert isinstance(route, Route) and route.key == 42
    got = route.message
    assert isinstance(got, Fanout) and got.channel_id == 9 and got.sent_at == 1.5
    assert got.message == payload
    assert got.dispatch.event == "MESSAGE_CREATE" and got.dispatch.data == payload
    # the frame every recipient gets is the same bytes on either node
    assert got.dispatch.frame(3, Encoding.JSON) == dispatch.frame(3, Encoding.JSON)
    assert got.dispatch.frame(3, Encoding.MSGPACK) == dispatch.frame(3, Encoding.MSGPACK)


@pytest.mark.parametrize("body", [[1, b"{}"], ["MESSAGE_CREATE", "not bytes"], ["x"]])
def test_a_malformed_dispatch_is_refused(body: list) -> None:
    envelope = wire.envelope(Address("n2", -2), None, Fanout(9, PreparedDispatch("X", {})))
    envelope["body"][1] = {"$t": "gateway.dispatch@1", "b": body}
    with pytest.raises(wire.MalformedEnvelope):
        wire.open_envelope(wire.unpack(wire.pack(envelope)))
