"""gateway/direct.py: a DM's dispatch to its users' sessions on every gateway node, the
dispatch itself within the node and its JSON bytes (encoded once) across nodes, and
what a session does with it by intent."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from actors.address import Address
from actors.wire import pack, unpack
from gateway.direct import DirectDispatch, DirectEvent, send_to_users
from gateway.messages import ChangeMessage, PostMessage, Typing
from gateway.protocol import PreparedDispatch, event_allowed
from gateway.protocol.intents import Intents
from gateway.sessions import SESSIONS_ID, ToUserSessions


class _Actor:
    def __init__(self, node: str) -> None:
        self.myAddress = Address(node, 7)
        self.sent: list[tuple[Address, Any]] = []

    def send(self, to: Address, message: Any) -> None:
        self.sent.append((to, message))


def _view(*nodes: str) -> Any:
    return SimpleNamespace(placement=SimpleNamespace(nodes=set(nodes)))


def test_each_user_on_each_gateway_node_once_the_payload_encoded_once() -> None:
    actor = _Actor("n1")
    dispatch = PreparedDispatch("MESSAGE_CREATE", {"id": "5", "content": "hi"})
    send_to_users(actor, _view("n1", "n2", "n3"), [10, 20, 10], dispatch)
    assert [(to.node, to.id, m.user_id) for to, m in actor.sent] == [
        (node, SESSIONS_ID, user) for node in ("n1", "n2", "n3") for user in (10, 20)]
    assert all(isinstance(m, ToUserSessions) and isinstance(m.message, DirectDispatch)
               for _, m in actor.sent)
    local = [m.message.payload for to, m in actor.sent if to.node == "n1"]
    assert all(p is dispatch for p in local)  # no copy within the node
    remote = [m.message.payload for to, m in actor.sent if to.node != "n1"]
    assert all(p is remote[0] for p in remote)  # one encoding for every other node
    assert remote[0] == ["MESSAGE_CREATE", dispatch.json_d()]


def test_a_gateway_on_its_own_sends_to_its_own_directory() -> None:
    actor = _Actor("solo")
    send_to_users(actor, None, [1, 2], PreparedDispatch("TYPING_START", {}))
    assert [(to, m.user_id) for to, m in actor.sent] == [
        (Address("solo", SESSIONS_ID), 1), (Address("solo", SESSIONS_ID), 2)]


def test_the_wire_form_round_trips_to_the_same_frame() -> None:
    dispatch = PreparedDispatch("MESSAGE_CREATE", {"id": "5", "content": "é"})
    across = unpack(pack(ToUserSessions(3, DirectDispatch([dispatch.event,
                                                           dispatch.json_d()]))))
    got = across.message.dispatch()
    assert got.event == "MESSAGE_CREATE" and got.data == {"id": "5", "content": "é"}
    assert DirectDispatch(dispatch).dispatch() is dispatch
    with pytest.raises(ValueError):
        DirectDispatch(["MESSAGE_CREATE", "not bytes"]).dispatch()


def test_sessions_keep_a_dm_event_by_the_dm_intents() -> None:
    dms, typing = int(Intents.DIRECT_MESSAGES), int(Intents.DIRECT_MESSAGE_TYPING)
    guild = int(Intents.GUILDS | Intents.GUILD_MESSAGES | Intents.GUILD_MESSAGE_TYPING)
    for event in ("MESSAGE_CREATE", "MESSAGE_UPDATE", "MESSAGE_DELETE", "CHANNEL_CREATE"):
        assert event_allowed(dms, event, direct_message=True)
        assert not event_allowed(guild, event, direct_message=True)
    assert event_allowed(typing, "TYPING_START", direct_message=True)
    assert not event_allowed(dms | guild, "TYPING_START", direct_message=True)
    assert event_allowed(guild, "CHANNEL_CREATE")  # a guild's channel: GUILDS


def test_what_rest_sends_a_dm_channel_crosses_nodes() -> None:
    for message in (
        DirectEvent([1], "CHANNEL_CREATE", {"id": "9", "type": 1, "recipients": []}),
        PostMessage(None, {"id": "1"}, None, "hi", recipients=[1, 2]),
        ChangeMessage(None, 5, {"content": "x"}, {"id": "5"}, recipients=[1, 2]),
        ChangeMessage(None, 5, None, recipients=[1, 2]),
        Typing(None, 1, None, recipients=[1, 2]),
    ):
        assert unpack(pack(message)) == message
