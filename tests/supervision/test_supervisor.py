"""OTP supervision on greenroom's base, with real crashes (exceptions in handlers)."""

from __future__ import annotations

import time

import pytest
from thespian.actors import ActorExitRequest, ChildActorExited

from actors import Actor
from supervision import (
    ONE_FOR_ALL,
    ONE_FOR_ONE,
    REST_FOR_ONE,
    TEMPORARY,
    TRANSIENT,
    Children,
    ChildSpec,
    ChildStarted,
    ChildTerminated,
    Start,
    StartChild,
    Started,
    Stop,
    Stopped,
    Supervisor,
    SupervisorError,
    SupervisorFlags,
    SupervisorSpec,
    TerminateChild,
    WhichChildren,
)
from tests.log_capture import json_logs

EVENTS: list[tuple[str, str]] = []


class Worker(Actor):
    exit_on_error = True

    def receiveMessage(self, msg, sender):
        if isinstance(msg, tuple) and msg[0] == "name":
            self.name = msg[1]
            EVENTS.append(("start", self.name))
        elif msg == "crash":
            raise RuntimeError("crash requested")
        elif msg == "quit":
            self.exit("normal")
        elif msg == "ping":
            self.send(sender, "pong")
        elif isinstance(msg, ActorExitRequest):
            EVENTS.append(("stop", getattr(self, "name", "?")))


class Stubborn(Actor):
    """A 'supervisor' child that ignores Stop: its parent must kill it after the timeout."""

    def receiveMessage(self, msg, sender):
        pass


class EchoEverything(Actor):
    """Sends every message back, its supervisor's ActorExitRequest included."""

    def receiveMessage(self, msg, sender):
        self.send(sender, msg)


class Observer(Actor):
    """Creates a supervisor as its child and reports the child's exit reason."""

    def receiveMessage(self, msg, sender):
        if isinstance(msg, tuple) and msg[0] == "start":
            self.reply_to = sender
            self.sup = self.createActor(Supervisor)
            self.send(self.sup, Start(msg[1]))
        elif isinstance(msg, Started):
            self.send(self.reply_to, (self.sup, msg))
        elif isinstance(msg, ChildActorExited):
            self.exit_reason = msg.reason
        elif msg == "reason":
            self.send(sender, getattr(self, "exit_reason", None))


def spec(strategy, *children, intensity=5, period=5.0):
    return SupervisorSpec(SupervisorFlags(strategy, intensity, period), tuple(children))


def worker(name, **kw):
    return ChildSpec(name, Worker, init=("name", name), **kw)


def addresses(asys, sup):
    reply = asys.ask(sup, WhichChildren(), 2)
    assert isinstance(reply, Children)
    return {cid: addr for cid, addr, _type in reply.children}


def wait_changed(asys, sup, before, ids, timeout=2.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = addresses(asys, sup)
        if all(now[i] is not None and now[i] != before[i] for i in ids):
            return now
        time.sleep(0.01)
    raise AssertionError(f"children {ids} were not restarted: {before} -> {now}")


@pytest.fixture(autouse=True)
def _clear():
    EVENTS.clear()


def start(asys, s):
    sup = asys.createActor(Supervisor)
    reply = asys.ask(sup, Start(s), 2)
    assert isinstance(reply, Started)
    return sup, dict(reply.children)


def test_children_start_in_order(asys):
    sup, _ = start(asys, spec(ONE_FOR_ONE, worker("a"), worker("b"), worker("c")))
    asys.ask(sup, WhichChildren(), 2)
    time.sleep(0.05)
    assert EVENTS == [("start", "a"), ("start", "b"), ("start", "c")]


def test_one_for_one_restarts_only_the_crashed_child(asys):
    sup, before = start(asys, spec(ONE_FOR_ONE, worker("a"), worker("b")))
    asys.tell(before["a"], "crash")
    after = wait_changed(asys, sup, before, ["a"])
    assert after["b"] == before["b"]
    assert asys.ask(after["a"], "ping", 2) == "pong"


def test_one_for_all_restarts_every_child(asys):
    sup, before = start(asys, spec(ONE_FOR_ALL, worker("a"), worker("b"), worker("c")))
    EVENTS.clear()
    asys.tell(before["b"], "crash")
    wait_changed(asys, sup, before, ["a", "b", "c"])
    time.sleep(0.05)
    # the survivors are stopped newest first, then all start again in order
    assert EVENTS == [("stop", "c"), ("stop", "a"),
                      ("start", "a"), ("start", "b"), ("start", "c")]


def test_rest_for_one_restarts_the_child_and_those_after_it(asys):
    sup, before = start(asys, spec(REST_FOR_ONE, worker("a"), worker("b"), worker("c")))
    asys.tell(before["b"], "crash")
    after = wait_changed(asys, sup, before, ["b", "c"])
    assert after["a"] == before["a"]


def test_permanent_child_is_restarted_after_a_normal_exit(asys):
    sup, before = start(asys, spec(ONE_FOR_ONE, worker("a")))
    asys.tell(before["a"], "quit")
    wait_changed(asys, sup, before, ["a"])


def test_transient_child_restarted_only_after_abnormal_exit(asys):
    sup, before = start(asys, spec(ONE_FOR_ONE, worker("t", restart=TRANSIENT)))
    asys.tell(before["t"], "crash")
    after = wait_changed(asys, sup, before, ["t"])
    asys.tell(after["t"], "quit")
    time.sleep(0.1)
    assert addresses(asys, sup)["t"] is None


def test_temporary_child_is_never_restarted_and_is_forgotten(asys):
    sup, before = start(asys, spec(ONE_FOR_ONE, worker("tmp", restart=TEMPORARY), worker("p")))
    asys.tell(before["tmp"], "crash")
    time.sleep(0.1)
    assert list(addresses(asys, sup)) == ["p"]


def test_restart_intensity_exceeded_shuts_down_and_escalates(asys):
    observer = asys.createActor(Observer)
    sup, started = asys.ask(
        observer, ("start", spec(ONE_FOR_ONE, worker("a"), worker("b"), intensity=2)), 2)
    current = dict(started.children)
    with json_logs() as logs:
        for _ in range(2):  # two restarts are within the intensity
            asys.tell(current["a"], "crash")
            current = wait_changed(asys, sup, current, ["a"])
        EVENTS.clear()
        asys.tell(current["a"], "crash")  # the third within the period is one too many
        deadline = time.monotonic() + 2
        while asys.ask(observer, "reason", 1) is None and time.monotonic() < deadline:
            time.sleep(0.01)
    assert asys.ask(observer, "reason", 1) == "shutdown"
    # each restart and the escalation: one structured line each (fields, not prose)
    restarts = logs.events("supervisor.restarting")
    assert [(r["level"], r["child"], r["strategy"]) for r in restarts] == [
        ("warning", "a", ONE_FOR_ONE)] * 2
    (gave_up,) = logs.events("supervisor.gave_up")
    assert (gave_up["level"], gave_up["child"], gave_up["intensity"]) == ("error", "a", 2)
    assert gave_up["reason"] and gave_up["supervisor"]
    assert ("stop", "b") in EVENTS  # the surviving child was stopped before the exit
    assert asys.ask(sup, WhichChildren(), 0.3) is None  # the supervisor is gone


def test_nested_supervisor_is_restarted_by_its_parent(asys):
    inner = SupervisorSpec(SupervisorFlags(ONE_FOR_ONE, 0, 5), (worker("w"),))
    top, before = start(asys, spec(ONE_FOR_ONE, ChildSpec("inner", Supervisor, type="supervisor",
                                                         init=Start(inner))))
    inner_children = addresses(asys, before["inner"])
    asys.tell(inner_children["w"], "crash")  # intensity 0: the inner one gives up at once
    after = wait_changed(asys, top, before, ["inner"])
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        restarted = asys.ask(after["inner"], WhichChildren(), 1)
        if restarted and restarted.children and restarted.children[0][1] is not None:
            break
        time.sleep(0.01)
    assert asys.ask(restarted.children[0][1], "ping", 1) == "pong"


def test_stop_terminates_children_in_reverse_order(asys):
    sup, _ = start(asys, spec(ONE_FOR_ONE, worker("a"), worker("b"), worker("c")))
    EVENTS.clear()
    assert asys.ask(sup, Stop(), 2) == Stopped()
    assert EVENTS == [("stop", "c"), ("stop", "b"), ("stop", "a")]
    assert asys.ask(sup, WhichChildren(), 0.3) is None


def test_stop_is_answered_when_the_supervisor_is_ended_while_stopping(asys):
    # The child answers its ActorExitRequest with one to the supervisor, which the base
    # honours (Thespian's rule) in the middle of Stop: the asker still gets Stopped.
    sup, _ = start(asys, spec(ONE_FOR_ONE, worker("a"), ChildSpec("e", EchoEverything)))
    EVENTS.clear()
    assert asys.ask(sup, Stop(), 10) == Stopped()
    assert EVENTS == [("stop", "a")]
    assert asys.ask(sup, WhichChildren(), 0.3) is None


def test_shutdown_timeout_then_brutal_kill(asys):
    stubborn = ChildSpec("s", Stubborn, type="supervisor", shutdown=0.3)
    sup, started = start(asys, spec(ONE_FOR_ONE, worker("a"), stubborn))
    t0 = time.monotonic()
    assert asys.ask(sup, Stop(), 5) == Stopped()
    waited = time.monotonic() - t0
    assert 0.3 <= waited < 2.0
    assert asys.ask(started["s"], "anything", 0.2) is None


def test_dynamic_children_start_and_terminate(asys):
    sup, _ = start(asys, spec(ONE_FOR_ONE))
    reply = asys.ask(sup, StartChild(worker("d")), 2)
    assert isinstance(reply, ChildStarted) and reply.id == "d"
    assert asys.ask(reply.address, "ping", 2) == "pong"
    dup = asys.ask(sup, StartChild(worker("d")), 2)
    assert isinstance(dup, SupervisorError) and "exists" in dup.reason
    assert asys.ask(sup, TerminateChild("d"), 2) == ChildTerminated("d")
    assert addresses(asys, sup) == {}
    missing = asys.ask(sup, TerminateChild("nope"), 2)
    assert isinstance(missing, SupervisorError)


def test_bad_specs_are_rejected_with_a_message():
    with pytest.raises(ValueError, match="restart"):
        ChildSpec("x", Worker, restart="sometimes")
    with pytest.raises(ValueError, match="strategy"):
        SupervisorFlags("one_for_some")
    with pytest.raises(ValueError, match="duplicate"):
        SupervisorSpec(children=(worker("a"), worker("a")))


def test_unknown_request_gets_an_error_not_a_crash(asys):
    sup, _ = start(asys, spec(ONE_FOR_ONE, worker("a")))
    reply = asys.ask(sup, "what?", 2)
    assert isinstance(reply, SupervisorError) and "unexpected" in reply.reason


MISSING = "tests.supervision.test_supervisor.NoSuchWorker"  # cannot be imported


def test_a_child_that_fails_to_start_fails_the_start_and_stops_its_elder_siblings(asys):
    # OTP: {error, {shutdown, {failed_to_start_child, Id, Reason}}} to the asker, the
    # children started before it stopped in reverse order, none after it started.
    sup = asys.createActor(Supervisor)
    reply = asys.ask(sup, Start(spec(ONE_FOR_ONE, worker("a"), ChildSpec("bad", MISSING),
                                     worker("c"))), 30)
    assert isinstance(reply, SupervisorError), reply
    assert "failed_to_start_child 'bad'" in reply.reason and "NoSuchWorker" in reply.reason
    assert EVENTS == [("start", "a"), ("stop", "a")]


def test_a_dynamic_child_that_fails_to_start_is_answered_with_the_error_and_forgotten(asys):
    sup, _ = start(asys, spec(ONE_FOR_ONE, worker("a")))
    reply = asys.ask(sup, StartChild(ChildSpec("bad", MISSING)), 30)
    assert isinstance(reply, SupervisorError) and "NoSuchWorker" in reply.reason
    assert list(addresses(asys, sup)) == ["a"]
