"""Children at well-known ids (``ChildSpec.fixed_id``), and children that answer their
init message: what the node's services need from their supervisor."""

from __future__ import annotations

import time

from actors import Actor
from actors.address import Address
from observability import snapshot
from supervision import (
    ONE_FOR_ONE,
    ChildSpec,
    Start,
    Started,
    Supervisor,
    SupervisorFlags,
    SupervisorSpec,
)

FIXED = -77
HEARD: list[object] = []


class Crashy(Actor):
    exit_on_error = True

    def receiveMessage(self, msg, sender):
        if msg == "crash":
            raise RuntimeError("crash requested")
        if msg == "ping":
            self.send(sender, ("pong", id(self)))


class AnswersEverything(Actor):
    """Answers whatever it is sent (its init included), as a service answers its
    ``StorageStart``/``Configure``; notes what it heard."""

    def receiveMessage(self, msg, sender):
        HEARD.append(msg)
        self.send(sender, ("answer", msg))


def start(asys, *children):
    sup = asys.createActor(Supervisor)
    reply = asys.ask(sup, Start(SupervisorSpec(SupervisorFlags(ONE_FOR_ONE, 5, 5.0),
                                               tuple(children))), 2)
    assert isinstance(reply, Started), reply
    return sup, dict(reply.children)


def test_a_child_with_a_fixed_id_comes_back_at_the_same_address(asys, base):
    _, children = start(asys, ChildSpec("svc", Crashy, fixed_id=FIXED))
    held = children["svc"]  # an address someone holds across the restart
    assert held == Address(base.node, FIXED)
    first = asys.ask(held, "ping", 2)
    counted = snapshot().get('supervisor_restarts_total{child="svc"}', 0)
    asys.tell(held, "crash")
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        if snapshot().get('supervisor_restarts_total{child="svc"}', 0) == counted + 1:
            break
        time.sleep(0.01)
    again = asys.ask(held, "ping", 2)  # the same address reaches the new incarnation
    assert again[0] == "pong" and again[1] != first[1]
    assert snapshot()['supervisor_restarts_total{child="svc"}'] == counted + 1


def test_a_child_answering_its_init_gets_no_error_back(asys):
    HEARD.clear()
    start(asys, ChildSpec("chatty", AnswersEverything, init="hello"))
    time.sleep(0.1)  # a ping-pong of errors would fill HEARD in this time
    assert HEARD == ["hello"]
