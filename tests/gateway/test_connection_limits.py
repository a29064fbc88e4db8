"""``gateway.limits.ConnectionRateLimiter`` and ``connection_key``: new connections per
client address, a token bucket; IPv6 counted per /64; the table forgets idle addresses."""

from __future__ import annotations

from gateway.limits import UNLIMITED, ConnectionRateLimiter, RateLimits, connection_key


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_then_the_sustained_rate() -> None:
    clock = Clock()
    limiter = ConnectionRateLimiter(per_s=2.0, burst=3, clock=clock)
    assert [limiter.allow("a") for _ in range(4)] == [True, True, True, False]
    assert limiter.allow("b")  # another address has its own bucket
    clock.now += 0.25
    assert not limiter.allow("a")  # half a token
    clock.now += 0.25
    assert limiter.allow("a") and not limiter.allow("a")
    clock.now += 60
    assert [limiter.allow("a") for _ in range(4)] == [True, True, True, False]  # capped


def test_refused_attempts_do_not_count() -> None:
    clock = Clock()
    limiter = ConnectionRateLimiter(per_s=1.0, burst=1, clock=clock)
    assert limiter.allow("a")
    for _ in range(100):
        assert not limiter.allow("a")
    clock.now += 1.0
    assert limiter.allow("a")


def test_keys_ipv4_ipv6_per_64_and_mapped() -> None:
    assert connection_key(("127.0.0.1", 5555)) == "127.0.0.1"
    assert connection_key(("2001:db8:1:2:aaaa::1", 1, 0, 0)) == \
        connection_key(("2001:db8:1:2:ffff::9", 2, 0, 0)) == "2001:db8:1:2::/64"
    assert connection_key(("2001:db8:1:3::1", 1, 0, 0)) != "2001:db8:1:2::/64"
    assert connection_key(("::ffff:10.1.2.3", 1, 0, 0)) == "10.1.2.3"
    assert connection_key(("fe80::1%eth0", 1, 0, 2)) == "fe80::/64"
    assert connection_key(None) == "?" and connection_key("/tmp/sock") == "/tmp/sock"


def test_the_table_forgets_full_buckets() -> None:
    clock = Clock()
    limiter = ConnectionRateLimiter(per_s=10.0, burst=5, clock=clock)
    limiter.PRUNE_AT = 100
    for i in range(100):
        limiter.allow(f"10.0.0.{i}")
    clock.now += 1.0  # every bucket is full again
    limiter.allow("192.0.2.1")
    assert len(limiter) == 1


def test_defaults_and_unlimited() -> None:
    assert (RateLimits().connections_per_ip_per_s, RateLimits().connections_per_ip_burst) \
        == (60.0, 120)
    assert UNLIMITED.connections_per_ip_burst >= 1_000_000
