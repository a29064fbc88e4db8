"""FIFO per sender–receiver pair, as a property (hypothesis).

Several senders — actors sending through ``self.send`` (the inlined fast path) or
through Thespian's own ``Actor.send`` wrapper (``Cell.actor_send``), and the external
``tell`` — send numbered sequences to several receivers, in arbitrary interleavings,
with bursts larger than ``messages_per_turn`` and mailboxes small enough to overflow.
A message that does not fit comes back to an actor sender as ``Overloaded`` (and an
external ``tell`` raises ``MailboxFull``); such a message is not counted as sent.

Each receiver must see, from each sender, exactly the messages that were not bounced,
in the order they were sent: nothing reordered, duplicated or silently lost.
"""

from __future__ import annotations

import threading

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from thespian.actors import Actor as ThespianActor
from thespian.actors import ActorExitRequest, ActorSystem

from actors import Actor, MailboxFull, Overloaded, UvloopSystemBase

WAIT = 10.0


class Sender(Actor):
    def __init__(self):
        super().__init__()
        self.next: list[int] = []
        self.bounced: set[tuple[int, int]] = set()

    def receiveMessage(self, msg, sender):
        if isinstance(msg, ActorExitRequest):
            return
        if isinstance(msg, Overloaded):
            name, seq = msg.message
            assert name == self.name
            self.bounced.add((self.index[msg.target], seq))
        elif msg[0] == "setup":
            _, self.name, self.receivers, self.via_thespian = msg
            self.index = {address: i for i, address in enumerate(self.receivers)}
            self.next = [0] * len(self.receivers)
            self.send(sender, "ready")
        elif msg[0] == "burst":
            _, r, n = msg
            send = ThespianActor.send if self.via_thespian else type(self).send
            target = self.receivers[r]
            for _ in range(n):
                seq = self.next[r]
                self.next[r] = seq + 1
                send(self, target, (self.name, seq))
        elif msg[0] == "report":
            self.send(sender, (list(self.next), set(self.bounced)))


class Receiver(ThespianActor):
    """A plain Thespian actor: its mailbox bound is the base's default capacity."""

    def __init__(self):
        self.log: dict[str, list[int]] = {}

    def receiveMessage(self, msg, sender):
        if msg == "log?":
            self.send(sender, {k: list(v) for k, v in self.log.items()})
        elif not isinstance(msg, ActorExitRequest):
            name, seq = msg
            self.log.setdefault(name, []).append(seq)


def ask_through_bounces(asys, address, msg):
    """Ask, retrying while the answer is the bounce of a full mailbox."""
    for _ in range(10_000):
        answer = asys.ask(address, msg, WAIT)
        assert answer is not None, f"{address} did not answer {msg!r}"
        if not isinstance(answer, Overloaded):
            return answer
    raise AssertionError(f"{address} stayed full")


def run_and_check(*, messages_per_turn, capacity, drain_budget, n_receivers, via_thespian,
                  ops, external_threads=1):
    base = UvloopSystemBase(messages_per_turn=messages_per_turn, capacity=capacity,
                            drain_budget=drain_budget)
    asys = ActorSystem(systemBase=base, transientUnique=True)
    try:
        receivers = [asys.createActor(Receiver) for _ in range(n_receivers)]
        senders = []
        for i, thespian_path in enumerate(via_thespian):
            s = asys.createActor(Sender)
            assert asys.ask(s, ("setup", f"s{i}", receivers, thespian_path), WAIT) == "ready"
            senders.append(s)

        # external senders: their own sequence numbers; MailboxFull means "not sent"
        ext_next = {f"ext{t}": [0] * n_receivers for t in range(external_threads)}
        ext_bounced: dict[str, set[tuple[int, int]]] = {name: set() for name in ext_next}

        def external_tell(name, r, n):
            for _ in range(n):
                seq = ext_next[name][r]
                ext_next[name][r] = seq + 1
                try:
                    asys.tell(receivers[r], (name, seq))
                except MailboxFull:
                    ext_bounced[name].add((r, seq))

        def play(thread_no):
            for who, r, n in ops:
                if who < len(senders):
                    if thread_no == 0:
                        asys.tell(senders[who], ("burst", r, n))
                else:
                    external_tell(f"ext{thread_no}", r, n)

        threads = [threading.Thread(target=play, args=(t,)) for t in range(1, external_threads)]
        for t in threads:
            t.start()
        play(0)
        for t in threads:
            t.join(WAIT)

        # The first report is answered after every burst command has been handled; by
        # then every bounce is queued to its sender, so the second report includes all.
        sent, bounced = {}, {}
        for i, s in enumerate(senders):
            asys.ask(s, ("report",), WAIT)
            sent[f"s{i}"], bounced[f"s{i}"] = asys.ask(s, ("report",), WAIT)
        sent.update(ext_next)
        bounced.update(ext_bounced)

        for r, receiver in enumerate(receivers):
            log = ask_through_bounces(asys, receiver, "log?")
            for name in sent:
                expected = [seq for seq in range(sent[name][r]) if (r, seq) not in bounced[name]]
                assert log.get(name, []) == expected, (
                    f"receiver {r} saw {name}'s messages out of order, lost or duplicated")
        return sent, bounced
    finally:
        base.shutdown()


senders_paths = st.lists(st.booleans(), min_size=1, max_size=4)


@st.composite
def scenarios(draw):
    via_thespian = draw(senders_paths)
    n_receivers = draw(st.integers(1, 3))
    ops = draw(st.lists(
        st.tuples(st.integers(0, len(via_thespian)),  # == len(...): the external sender
                  st.integers(0, n_receivers - 1),
                  st.integers(1, 40)),
        min_size=1, max_size=25))
    return dict(
        messages_per_turn=draw(st.sampled_from([1, 2, 3, 8, 64])),
        capacity=draw(st.sampled_from([1, 2, 5, 16, 10_000])),
        drain_budget=draw(st.sampled_from([1, 7, 20_000])),
        n_receivers=n_receivers,
        via_thespian=via_thespian,
        ops=ops,
    )


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(scenarios())
def test_fifo_per_sender_receiver_pair(scenario):
    sent, bounced = run_and_check(**scenario)
    event("some actor sends bounced" if any(bounced[n] for n in bounced if n.startswith("s"))
          else "no actor send bounced")
    event("some external tells bounced" if bounced["ext0"] else "no external tell bounced")


def test_fifo_under_overload_with_concurrent_external_threads():
    """A bigger fixed case: bounces certainly happen, from actors and from outside."""
    ops = [(i % 5, i % 3, 60) for i in range(30)]  # 4 actor senders + the external one
    sent, bounced = run_and_check(messages_per_turn=4, capacity=8, drain_budget=50,
                                  n_receivers=3, via_thespian=[False, True, False, True],
                                  ops=ops, external_threads=2)
    assert sum(len(b) for name, b in bounced.items() if name.startswith("s")) > 0
    assert sum(sum(n) for n in sent.values()) > sum(len(b) for b in bounced.values())
