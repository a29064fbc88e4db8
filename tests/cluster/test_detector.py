"""The heartbeat failure detector, on a clock stepped by hand."""

from __future__ import annotations

import pytest

from cluster.detector import FailureDetector


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_silent_peer_is_suspected_after_the_timeout_and_trusted_when_heard_again():
    clock = Clock()
    d = FailureDetector(1.0, clock)
    d.watch(["a", "b"])
    clock.now += 0.9
    assert d.heard("a") is False
    assert d.check() == set()
    clock.now += 0.2  # b: 1.1 s of silence; a: 0.2 s
    assert d.check() == {"b"}
    assert d.check() == set()  # reported once
    assert d.alive() == {"a"} and d.suspected == {"b"}
    assert d.heard("b") is True  # back
    assert d.alive() == {"a", "b"} and not d.suspected


def test_a_new_peer_gets_a_grace_period_and_a_removed_one_is_forgotten():
    clock = Clock()
    d = FailureDetector(1.0, clock)
    d.watch(["a"])
    clock.now += 5
    assert d.check() == {"a"}
    d.watch(["a", "c"])  # c is announced now: a full timeout before it can be suspected
    clock.now += 0.5
    assert d.check() == set()
    d.watch(["c"])
    assert d.watched == {"c"} and not d.suspected
    assert d.heard("a") is False  # not watched: heard means nothing


def test_a_restarted_peer_is_trusted_afresh():
    clock = Clock()
    d = FailureDetector(1.0, clock)
    d.watch(["a"])
    clock.now += 2
    assert d.check() == {"a"}
    d.restart("a")
    assert d.alive() == {"a"}
    clock.now += 0.5
    assert d.check() == set()


def test_bad_timeout_is_refused():
    with pytest.raises(ValueError, match="timeout must be > 0"):
        FailureDetector(0)
