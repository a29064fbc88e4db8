"""The registry: find or activate an actor by (kind, key); passivate it when idle.

Real runtime, real timers: idle timeouts of a few tens of milliseconds keep it fast.
"""

from __future__ import annotations

import random
import time

from thespian.actors import ActorExitRequest, PoisonMessage

from actors import (
    Activated,
    Actor,
    Address,
    Configure,
    Configured,
    Down,
    GetRegistryStats,
    Locate,
    Located,
    Overloaded,
    Registry,
    RegistryError,
    RegistryStats,
    Reply,
    Route,
    Timeout,
    wire,
)

WAIT = 5.0
LOG = "registry-test-log"


class Boom(Exception):
    pass


# -- test actors ------------------------------------------------------------------------


class Log(Actor):
    """Collects events from entities (one mailbox, so its order is the order sent)."""

    def __init__(self):
        super().__init__()
        self.events = []

    def receiveMessage(self, msg, sender):
        if msg == "get":
            self.send(sender, list(self.events))
        elif not isinstance(msg, ActorExitRequest):
            self.events.append(msg)


class Counter(Actor):
    """Records its life in the log: activated, each int it gets, its exit."""

    exit_on_error = True

    def __init__(self):
        super().__init__()
        self.log = None
        self.ident = None
        self.first = None

    def note(self, *event):
        if self.log is None:
            self.log = self.createActor(Log, globalName=LOG)  # the test made it: found
        self.send(self.log, (event[0], self.myAddress, *event[1:]))

    def receiveMessage(self, msg, sender):
        if self.first is None:
            self.first = type(msg).__name__
        if isinstance(msg, Activated):
            self.ident = (msg.kind, msg.key)
            self.note("activated", msg.kind, msg.key)
        elif isinstance(msg, ActorExitRequest):
            self.note("exit")
        elif isinstance(msg, int):
            self.note("msg", msg)
        elif msg == "whoami":
            self.send(sender, (self.myAddress, self.ident, self.first))
        elif msg == "sender?":
            self.send(sender, ("you are", sender))
        elif msg == "boom":
            raise Boom("entity crashed")
        elif isinstance(msg, Timeout):
            self.note("tick")
        elif isinstance(msg, tuple) and msg[0] == "timer":
            self.start_timer(msg[1], "t")
            self.send(sender, "timer set")


class Tiny(Counter):
    mailbox_capacity = 2  # Activated + one message


class InitFails(Actor):
    def __init__(self):
        super().__init__()
        raise Boom("constructor failed")


class Entities(Registry):
    kinds = {"counter": Counter, "other": Counter, "tiny": Tiny, "broken": InitFails}
    idle_timeout = 0.05
    sweep_interval = 0.01


class Sticky(Entities):
    idle_timeout = None  # never passivates


class Probe(Actor):
    """Routes through the registry from inside an actor and keeps what comes back."""

    def __init__(self):
        super().__init__()
        self.client = None
        self.got = []

    def receiveMessage(self, msg, sender):
        if isinstance(msg, tuple) and msg[0] == "route-all":
            for m in msg[2]:
                self.send(msg[1], m)
        elif isinstance(msg, tuple) and msg[0] == "route":
            self.client = sender
            self.send(msg[1], Route("counter", msg[2], "sender?"))
        elif isinstance(msg, tuple) and msg[0] == "ask":
            self.client = sender
            self.ask(msg[1], Route("counter", msg[2], "whoami"), WAIT)
        elif isinstance(msg, Overloaded):
            self.got.append(msg)
        elif msg == "got":
            self.send(sender, list(self.got))
        elif isinstance(msg, tuple | Reply):
            self.send(self.client, (msg, sender))


class Holder(Actor):
    """Takes a lease: Locate, then monitor the address; release with demonitor."""

    def __init__(self):
        super().__init__()
        self.client = None
        self.ref = None
        self.downs = []

    def receiveMessage(self, msg, sender):
        if isinstance(msg, Located):
            self.ref = self.monitor(msg.address)
            self.send(self.client, msg.address)
        elif isinstance(msg, Down):
            self.downs.append(msg.reason)
        elif isinstance(msg, tuple) and msg[0] == "hold":
            self.client = sender
            self.send(msg[1], Locate("counter", msg[2]))
        elif msg == "release":
            self.demonitor(self.ref)
            self.send(sender, "released")


# -- helpers ----------------------------------------------------------------------------


def setup(asys, registry_class=Entities):
    log = asys.createActor(Log, globalName=LOG)
    return log, asys.createActor(registry_class)


def events(asys, log):
    got = asys.ask(log, "get", WAIT)
    assert got is not None
    return got


def wait_until(asys, log, predicate, timeout=2.0):
    deadline = time.monotonic() + timeout
    while True:
        got = events(asys, log)
        if predicate(got):
            return got
        assert time.monotonic() < deadline, f"timed out; events so far: {got}"
        time.sleep(0.005)


def exited(address):
    return lambda evs: ("exit", address) in evs


def whoami(asys, registry, key, kind="counter"):
    answer = asys.ask(registry, Route(kind, key, "whoami"), WAIT)
    assert isinstance(answer, tuple), answer
    return answer


def stats(asys, registry):
    answer = asys.ask(registry, GetRegistryStats(), WAIT)
    assert isinstance(answer, RegistryStats)
    return answer


# -- activation and routing --------------------------------------------------------------


def test_first_message_activates_and_activated_comes_first(asys):
    log, registry = setup(asys, Sticky)
    address, ident, first = whoami(asys, registry, "a")
    assert isinstance(address, Address)
    assert ident == ("counter", "a")
    assert first == "Activated"
    assert events(asys, log) == [("activated", address, "counter", "a")]


def test_same_key_same_actor_distinct_keys_and_kinds_distinct_actors(asys):
    _, registry = setup(asys, Sticky)
    a1 = whoami(asys, registry, "a")[0]
    assert whoami(asys, registry, "a")[0] == a1
    b = whoami(asys, registry, "b")[0]
    other = whoami(asys, registry, "a", kind="other")[0]
    n = whoami(asys, registry, 7)[0]
    assert len({a1, b, other, n}) == 4
    assert stats(asys, registry).activations == 4


def test_the_entity_sees_and_answers_the_original_sender(asys):
    _, registry = setup(asys, Sticky)
    probe = asys.createActor(Probe)
    (tag, seen), replier = asys.ask(probe, ("route", registry, "k"), WAIT)
    assert (tag, seen) == ("you are", probe)  # not the registry
    entity = whoami(asys, registry, "k")[0]
    assert replier == entity  # the answer came straight from the entity

    reply, _ = asys.ask(probe, ("ask", registry, "k"), WAIT)  # an actor's ask through Route
    assert isinstance(reply, Reply) and reply.message[0] == entity and reply.sender == entity


def test_locate_activates_and_agrees_with_route(asys):
    log, registry = setup(asys, Sticky)
    located = asys.ask(registry, Locate("counter", "x"), WAIT)
    assert isinstance(located, Located)
    assert (located.kind, located.key) == ("counter", "x")
    assert events(asys, log) == [("activated", located.address, "counter", "x")]
    assert whoami(asys, registry, "x")[0] == located.address
    assert asys.ask(registry, Locate("counter", "x"), WAIT).address == located.address
    assert stats(asys, registry).activations == 1


def test_unknown_kind_unhashable_key_and_failed_start_are_error_replies(asys):
    _, registry = setup(asys, Sticky)
    err = asys.ask(registry, Route("nope", 1, "hello"), WAIT)
    assert isinstance(err, RegistryError)
    assert (err.kind, err.key, err.message) == ("nope", 1, "hello")
    assert "unknown kind 'nope'" in err.reason and "counter" in err.reason

    err = asys.ask(registry, Locate("counter", {"not": "hashable"}), WAIT)
    assert isinstance(err, RegistryError) and "unhashable" in err.reason

    err = asys.ask(registry, Route("broken", 1, "hello"), WAIT)
    assert isinstance(err, RegistryError) and "failed to start" in err.reason

    assert whoami(asys, registry, "still-serving")[1] == ("counter", "still-serving")


def test_a_crashed_entity_is_reactivated_by_the_next_message(asys):
    log, registry = setup(asys, Sticky)
    first = whoami(asys, registry, "f")[0]
    poison = asys.ask(registry, Route("counter", "f", "boom"), WAIT)
    assert isinstance(poison, PoisonMessage) and poison.poisonMessage == "boom"
    second, ident, initial = whoami(asys, registry, "f")
    assert second != first and ident == ("counter", "f") and initial == "Activated"
    assert [e for e in events(asys, log) if e[0] == "activated"] == [
        ("activated", first, "counter", "f"), ("activated", second, "counter", "f")]
    s = stats(asys, registry)
    assert (s.activations, s.crashes, s.entries) == (2, 1, 1)


def test_an_overloaded_entity_bounces_the_routed_message_to_its_original_sender(asys, base):
    log, registry = setup(asys, Sticky)
    probe = asys.createActor(Probe)  # both Routes in one registry turn: the second bounces
    asys.tell(probe, ("route-all", registry, [Route("tiny", 1, n) for n in (1, 2)]))
    got = wait_until(asys, log, lambda evs: any(e[0] == "msg" for e in evs))
    entity = got[0][1]
    bounced = asys.ask(probe, "got", WAIT)
    assert bounced == [Overloaded(entity, 2, 2)]
    wait_until(asys, log, lambda evs: [e[2] for e in evs if e[0] == "msg"] == [1])

    # An external sender gets the bounce as a message too (its tell had returned).
    def two_tells():
        for n in (3, 4):
            base.tell_from_loop(registry, Route("tiny", 2, n))

    base._call(two_tells)
    assert asys.listen(WAIT) == Overloaded(whoami(asys, registry, 2, kind="tiny")[0], 4, 2)


# -- passivation ------------------------------------------------------------------------


def test_idle_entity_is_passivated_and_the_next_message_reactivates_it(asys, base):
    log, registry = setup(asys)
    started = time.monotonic()
    first = whoami(asys, registry, "p")[0]
    wait_until(asys, log, exited(first))
    assert time.monotonic() - started >= Entities.idle_timeout
    second, ident, initial = whoami(asys, registry, "p")
    assert second != first and ident == ("counter", "p") and initial == "Activated"
    evs = events(asys, log)
    assert evs[:3] == [("activated", first, "counter", "p"), ("exit", first),
                       ("activated", second, "counter", "p")]
    wait_until(asys, log, exited(second))
    s = stats(asys, registry)
    assert (s.activations, s.passivations, s.crashes, s.entries) == (2, 2, 0, 0)
    # no entities, no sweeping: the registry's timer is stopped until the next activation
    time.sleep(0.03)
    assert not registry._cell.timers


def test_no_message_is_lost_to_passivation_under_a_stream_with_random_gaps(asys):
    """N numbered messages, gaps on both sides of the idle timeout, sweeps in between:
    the incarnations together get all N exactly once, in order, and never overlap."""

    class Fast(Entities):
        idle_timeout = 0.02
        sweep_interval = 0.005

    rng = random.Random(20240611)
    log, registry = setup(asys, Fast)
    n = 80
    gaps = [0.0, 0.0, 0.004, 0.015, 0.019, 0.021, 0.025, 0.03, 0.04]
    for i in range(n):
        asys.tell(registry, Route("counter", "stream", i))
        time.sleep(rng.choice(gaps))
    got = wait_until(asys, log, lambda evs: sum(e[0] == "msg" for e in evs) == n)
    last = [e for e in got if e[0] == "activated"][-1][1]
    got = wait_until(asys, log, exited(last))

    assert [e[2] for e in got if e[0] == "msg"] == list(range(n))
    # Blocks: activated(a), msg(a)..., exit(a), activated(b), ... — the old incarnation
    # has finished (flushed) before the new one starts, and none is fed after its exit.
    incarnations = []
    current = None
    for event in got:
        kind, address = event[0], event[1]
        if kind == "activated":
            assert current is None, f"{address} activated while {current} was live"
            current = address
            incarnations.append(address)
        else:
            assert address == current, f"{event} outside its incarnation"
            if kind == "exit":
                current = None
    assert current is None
    assert len(set(incarnations)) == len(incarnations) >= 3, incarnations
    s = stats(asys, registry)
    assert s.activations == s.passivations == len(incarnations)


def test_a_locate_counts_as_activity(asys):
    class Slower(Entities):
        idle_timeout = 0.1

    log, registry = setup(asys, Slower)
    first = whoami(asys, registry, "l")[0]
    time.sleep(0.07)
    assert asys.ask(registry, Locate("counter", "l"), WAIT).address == first
    time.sleep(0.06)  # 130 ms since its last turn (it would be gone by 110), 60 since Locate
    assert ("exit", first) not in events(asys, log)
    wait_until(asys, log, exited(first))


def test_a_pending_timer_keeps_an_entity_live(asys):
    log, registry = setup(asys)
    entity = whoami(asys, registry, "t")[0]
    assert asys.ask(registry, Route("counter", "t", ("timer", 0.12)), WAIT) == "timer set"
    time.sleep(0.09)  # idle for longer than the timeout, but waiting for its timer
    assert ("exit", entity) not in events(asys, log)
    got = wait_until(asys, log, exited(entity))
    assert got.index(("tick", entity)) < got.index(("exit", entity))


def test_a_monitor_is_a_lease_for_direct_senders(asys, base):
    log, registry = setup(asys)
    holder = asys.createActor(Holder)
    entity = asys.ask(holder, ("hold", registry, "h"), WAIT)
    assert isinstance(entity, Address)
    time.sleep(0.12)  # > 2 idle timeouts: leased, so still live
    asys.tell(entity, 41)  # a direct send to the cached address
    wait_until(asys, log, lambda evs: ("msg", entity, 41) in evs)
    assert ("exit", entity) not in events(asys, log)
    assert asys.ask(holder, "release", WAIT) == "released"
    wait_until(asys, log, exited(entity))

    # A dead watcher holds no lease (the base leaves its monitors behind).
    holder2 = asys.createActor(Holder)
    entity2 = asys.ask(holder2, ("hold", registry, "h2"), WAIT)
    asys.tell(holder2, ActorExitRequest())
    wait_until(asys, log, exited(entity2))


def test_a_direct_send_after_passivation_is_a_dead_letter_route_is_not(asys, base):
    log, registry = setup(asys)
    entity = whoami(asys, registry, "d")[0]
    wait_until(asys, log, exited(entity))
    before = base.stats["dead_letters"]
    asys.tell(entity, 5)  # documented: cached addresses need a lease (monitor)
    assert base.stats["dead_letters"] == before + 1
    asys.tell(registry, Route("counter", "d", 6))
    got = wait_until(asys, log, lambda evs: any(e[0] == "msg" for e in evs))
    assert [e[2] for e in got if e[0] == "msg"] == [6]


def test_a_sweep_over_many_entities_goes_in_batches(asys):
    class Batched(Entities):
        sweep_batch = 2

    log, registry = setup(asys, Batched)
    addresses = [whoami(asys, registry, k)[0] for k in range(7)]
    wait_until(asys, log, lambda evs: all(("exit", a) in evs for a in addresses))
    assert stats(asys, registry).passivations == 7


def test_stopping_the_registry_stops_its_entities_with_an_exit_request(asys):
    log, registry = setup(asys, Sticky)
    a = whoami(asys, registry, 1)[0]
    b = whoami(asys, registry, 2)[0]
    asys.tell(registry, ActorExitRequest())
    wait_until(asys, log, lambda evs: ("exit", a) in evs and ("exit", b) in evs)


# -- configuration and the wire -----------------------------------------------------------


def test_configure_a_plain_registry_at_run_time(asys):
    log = asys.createActor(Log, globalName=LOG)
    registry = asys.createActor(Registry)
    assert isinstance(asys.ask(registry, Route("counter", 1, "whoami"), WAIT), RegistryError)
    done = asys.ask(registry, Configure(kinds={"counter": Counter}, idle_timeout=0.04,
                                        sweep_interval=0.01), WAIT)
    assert done == Configured(("counter",), 0.04, 0.01)
    entity = whoami(asys, registry, 1)[0]
    wait_until(asys, log, exited(entity))
    done = asys.ask(registry, Configure(never_passivate=True), WAIT)
    assert done == Configured(("counter",), None, None)
    again = whoami(asys, registry, 1)[0]
    time.sleep(0.1)
    assert ("exit", again) not in events(asys, log)


def test_route_and_locate_cross_the_wire_and_list_keys_mean_tuples(asys):
    _, registry = setup(asys, Sticky)
    sender = Address("node-b", 9)
    for message in (Route("counter", ("guild", 1), {"op": 0}), Locate("counter", 5),
                    Located("counter", ("guild", 1), registry),
                    RegistryError("nope", 1, "unknown kind 'nope'", "hello")):
        to, frm, decoded, _ = wire.open_envelope(
            wire.unpack(wire.pack(wire.envelope(registry, sender, message))))
        assert (to, frm) == (registry, sender)
        assert type(decoded) is type(message)
    # msgpack turns the tuple key into a list; it must still name the same entity
    decoded = wire.open_envelope(wire.unpack(wire.pack(
        wire.envelope(registry, sender, Route("counter", ("guild", 1), "whoami")))))[2]
    assert decoded.key == ["guild", 1]
    assert asys.ask(registry, decoded, WAIT)[0] == whoami(asys, registry, ("guild", 1))[0]
    located = asys.ask(registry, Locate("counter", ["guild", 1]), WAIT)
    assert located.key == ("guild", 1)
