"""Rate limits: REST buckets per token and route, and the IDENTIFY budget per token.

REST (Discord's model, simplified): every request counts against one bucket, keyed by
the caller (the user its token authenticates, or its IP without a valid token: see
``gateway.rest.auth``), the route template and the route's canonical major parameter
(``channel_id`` or ``guild_id``, a webhook's id on its routes); the middleware in
``gateway.rest.ratelimit`` builds the key, so no spelling of a header or of an id opens a
fresh bucket. A bucket allows
``limit`` requests per fixed window of ``per_s`` seconds that starts with its first
request; an exhausted bucket answers 429 until the window ends. Every answer carries ``X-RateLimit-*`` headers.

IDENTIFY (``session_start_limit``): ``total`` session starts per token per ``reset_s``,
and at most ``max_concurrency`` IDENTIFYs per token per 5 s. Over either, the IDENTIFY
is answered with op 9 ``d:false`` (the client may IDENTIFY again later on the same
connection), as Discord does for IDENTIFYs sent too fast.

Connections (``ConnectionRateLimiter``): new gateway connections per client address
(IPv6 by /64), a token bucket; over it the connection is closed with 4008 before HELLO.
The node's cap on open connections (``DEFAULT_MAX_CONNECTIONS``) is answered 503 at the
WebSocket handshake (``gateway.server``).

Everything here runs on the one event-loop thread: no locks.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import math
import time
from bisect import bisect_left
from collections.abc import Callable
from dataclasses import dataclass, field

#: Discord's window for ``max_concurrency``.
CONCURRENCY_WINDOW_S = 5.0


@dataclass(frozen=True, slots=True)
class Bucket:
    limit: int
    per_s: float


_OWN_REACTION = "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}/@me"


def _default_routes() -> dict[tuple[str, str], Bucket]:
    # Discord: 5 messages per 5 s per channel; typing shares a similar budget.
    return {
        ("POST", "/channels/{channel_id}/messages"): Bucket(5, 5.0),
        ("POST", "/channels/{channel_id}/typing"): Bucket(5, 5.0),
        ("DELETE", "/channels/{channel_id}/messages/{message_id}"): Bucket(5, 1.0),
        ("PATCH", "/channels/{channel_id}/messages/{message_id}"): Bucket(5, 5.0),
        # Discord: a webhook executes 5 times per 2 s (its bucket's major is its id)
        ("POST", "/webhooks/{webhook_id}/{token}"): Bucket(5, 2.0),
        # Discord: one reaction of one's own per 0.25 s per channel (add or remove)
        ("PUT", _OWN_REACTION): Bucket(1, 0.25),
        ("DELETE", _OWN_REACTION): Bucket(1, 0.25),
    }


@dataclass(frozen=True, slots=True)
class RateLimits:
    """The gateway's limits; ``Gateway(limits=...)``. Routes are templates relative to
    ``/api/v10`` as registered (``{channel_id}``, ``{guild_id}``, ...)."""

    default: Bucket = Bucket(50, 1.0)
    routes: dict[tuple[str, str], Bucket] = field(default_factory=_default_routes)
    #: Every request of one caller, whatever its route and ids (Discord's global limit,
    #: 50 per second per bot): fresh ids (each its own bucket) buy no extra requests.
    per_caller: Bucket = Bucket(50, 1.0)
    #: Session starts per token per ``identify_reset_s`` (``session_start_limit.total``).
    identify_total: int = 1000
    identify_reset_s: float = 86_400.0
    #: IDENTIFYs per token per 5 s (``session_start_limit.max_concurrency``).
    max_concurrency: int = 1
    #: New gateway connections per client address (``ConnectionRateLimiter``): a
    #: sustained rate and a burst. Loopback is not exempt (a local process is a client).
    connections_per_ip_per_s: float = 60.0
    connections_per_ip_burst: int = 120

    def bucket_for(self, method: str, route: str) -> Bucket:
        return self.routes.get((method, route), self.default)


#: Generous limits (tests that are not about limits; the load generator).
UNLIMITED = RateLimits(default=Bucket(1_000_000, 1.0), routes={},
                       per_caller=Bucket(1_000_000, 1.0),
                       identify_total=1_000_000, max_concurrency=1_000_000,
                       connections_per_ip_per_s=1_000_000.0,
                       connections_per_ip_burst=1_000_000)


@dataclass(slots=True)
class _Window:
    limit: int
    per_s: float
    reset_at: float
    used: int = 0


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    limit: int
    remaining: int
    reset_after: float  # seconds
    reset_at: float  # Unix seconds
    bucket: str
    #: The caller's ``per_caller`` limit refused it (Discord's ``global: true``).
    global_: bool = False


class RestRateLimiter:
    """Fixed-window buckets keyed by (caller, method, route, major parameter)."""

    #: Forget expired windows once the table grows past this.
    PRUNE_AT = 10_000

    def __init__(self, limits: RateLimits,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits
        self.clock = clock
        self._windows: dict[tuple[str, str, str, str], _Window] = {}
        self._hashes: dict[tuple[str, str], str] = {}

    def hit(self, caller: str, method: str, route: str, major: str) -> Verdict:
        """Count one request against its route's bucket and the caller's overall one
        (each counted only if both allow it)."""
        now = self.clock()
        window = self._window((caller, method, route, major),
                              self.limits.bucket_for(method, route), now)
        overall = self._window((caller, "", "", ""), self.limits.per_caller, now)
        refused_by = window if window.used >= window.limit else \
            overall if overall.used >= overall.limit else None
        if refused_by is None:
            window.used += 1
            overall.used += 1
        shown = refused_by or window
        reset_after = max(0.0, shown.reset_at - now)
        return Verdict(refused_by is None, shown.limit, shown.limit - shown.used, reset_after,
                       time.time() + reset_after, self._hash(method, route),
                       global_=refused_by is overall)

    def _window(self, key: tuple[str, str, str, str], spec: Bucket, now: float) -> _Window:
        window = self._windows.get(key)
        if window is None or now >= window.reset_at:
            if len(self._windows) >= self.PRUNE_AT:
                self._prune(now)
            window = _Window(spec.limit, spec.per_s, now + spec.per_s)
            self._windows[key] = window
        return window

    def _hash(self, method: str, route: str) -> str:
        h = self._hashes.get((method, route))
        if h is None:
            h = hashlib.sha1(f"{method} {route}".encode()).hexdigest()[:16]
            self._hashes[(method, route)] = h
        return h

    def _prune(self, now: float) -> None:
        for key in [k for k, w in self._windows.items() if now >= w.reset_at]:
            del self._windows[key]


def headers_for(verdict: Verdict) -> dict[str, str]:
    return {
        "X-RateLimit-Limit": str(verdict.limit),
        "X-RateLimit-Remaining": str(verdict.remaining),
        "X-RateLimit-Reset": f"{verdict.reset_at:.3f}",
        "X-RateLimit-Reset-After": f"{verdict.reset_after:.3f}",
        "X-RateLimit-Bucket": verdict.bucket,
    }


@dataclass(slots=True)
class _Budget:
    reset_at: float
    used: int = 0
    #: start times in the concurrency window, oldest first: a list, not a deque (an
    #: empty deque holds a 64-slot block, ~0.6 KiB for every token seen)
    recent: list[float] = field(default_factory=list)


class IdentifyBudget:
    """``session_start_limit`` per token."""

    def __init__(self, limits: RateLimits,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits
        self.clock = clock
        self._budgets: dict[str, _Budget] = {}

    def _budget(self, token: str, now: float) -> _Budget:
        budget = self._budgets.get(token)
        if budget is None or now >= budget.reset_at:
            if len(self._budgets) >= RestRateLimiter.PRUNE_AT:
                for key in [k for k, b in self._budgets.items() if now >= b.reset_at]:
                    del self._budgets[key]
            budget = _Budget(now + self.limits.identify_reset_s)
            self._budgets[token] = budget
        return budget

    def take(self, token: str) -> bool:
        """Count one session start for ``token``; False if over the budget (not counted)."""
        now = self.clock()
        budget = self._budget(token, now)
        recent = budget.recent
        if recent and now - recent[0] >= CONCURRENCY_WINDOW_S:
            # drop the starts at least a window old (the list is in time order)
            del recent[:bisect_left(recent, True, key=lambda t: now - t < CONCURRENCY_WINDOW_S)]
        if budget.used >= self.limits.identify_total \
                or len(recent) >= self.limits.max_concurrency:
            return False
        budget.used += 1
        recent.append(now)
        return True

    def session_start_limit(self, token: str) -> dict[str, int]:
        now = self.clock()
        budget = self._budget(token, now)
        return {
            "total": self.limits.identify_total,
            "remaining": max(0, self.limits.identify_total - budget.used),
            "reset_after": max(0, math.ceil((budget.reset_at - now) * 1000)),
            "max_concurrency": self.limits.max_concurrency,
        }


#: Most gateway connections one node serves at once (``Gateway(max_connections=...)``).
DEFAULT_MAX_CONNECTIONS = 50_000


def connection_key(peer: object) -> str:
    """The rate-limit key of a peer address (``get_extra_info("peername")``): the IPv4
    address, or the /64 of an IPv6 one (a host is given a /64, not one address); an
    IPv4-mapped IPv6 address counts as its IPv4 address."""
    host = peer[0] if isinstance(peer, tuple) and peer else peer
    if not isinstance(host, str):
        return "?"  # a Unix socket or a transport without a peer: one shared bucket
    return _host_key(host)


@functools.lru_cache(maxsize=4096)
def _host_key(host: str) -> str:
    """``connection_key`` of a host string; cached: parsing an address costs ~10 us a
    connection, and a client that connects often comes from the same few addresses."""
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


class ConnectionRateLimiter:
    """New gateway connections per client address: a token bucket per key (``per_s``
    tokens a second, ``burst`` at most). A key whose bucket is full again is forgotten,
    so the table holds only the addresses seen in the last ``burst / per_s`` seconds."""

    #: Forget full buckets once the table grows past this.
    PRUNE_AT = 10_000

    def __init__(self, per_s: float, burst: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.per_s = per_s
        self.burst = float(max(1, burst))
        self.clock = clock
        #: key -> (tokens left, when they were counted)
        self._buckets: dict[str, tuple[float, float]] = {}

    def allow(self, key: str) -> bool:
        """Count one new connection from ``key``; False (not counted) if over the rate."""
        now = self.clock()
        tokens, at = self._buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.per_s)
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            return False
        if len(self._buckets) >= self.PRUNE_AT and key not in self._buckets:
            self._prune(now)
        self._buckets[key] = (tokens - 1.0, now)
        return True

    def __len__(self) -> int:
        return len(self._buckets)

    def _prune(self, now: float) -> None:
        full = [k for k, (tokens, at) in self._buckets.items()
                if tokens + (now - at) * self.per_s >= self.burst]
        for key in full:
            del self._buckets[key]
