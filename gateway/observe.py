"""What the operator port reads of a running gateway: readiness checks and gauges.

Everything here is read when ``/readyz`` is asked or ``/metrics`` scraped, never on a
hot path: the gauges count what the gateway already holds (its links, its guilds'
subscribers, the actor system's run queue) instead of keeping counts of their own that
a crash could leave wrong. ``cluster/node.py`` and ``gateway/standalone.py`` call
``watch_gateway`` once the gateway serves.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from observability.actor_metrics import watch_base
from observability.metrics import counter, gauge

if TYPE_CHECKING:
    from gateway.server import Gateway
    from observability.operator import OperatorServer

__all__ = ["watch_gateway"]

_sessions = gauge("gateway_sessions", "sessions on this node: connected (a socket is "
                  "attached) or detached (kept for a RESUME)", "{session}")
_connections = gauge("gateway_connections", "open WebSocket connections", "{connection}")
_subscriptions = gauge("gateway_guild_subscriptions",
                       "guild subscriptions of the guilds placed here: active (gets message "
                       "events) or passive (a user's, before its op 14)", "{subscription}")
_storage_queue = gauge("storage_write_queue", "writes in the storage actor: queued for a "
                       "batch, in flight to the database, waiting to be retried", "{write}")
_storage_writes = counter("storage_writes_total", "writes answered by the storage actor, by "
                          "outcome (acked: durable; failed: refused or out of retry budget)")
_storage_retries = counter("storage_retries_total", "write attempts retried after a "
                           "transient database error")
_storage_busy = counter("storage_busy_total", "Write requests answered Busy (the queue was "
                        "full: the writer retries after retry_after_s)")
def _watch_storage_actor(base: Any) -> list[Callable[[], None]]:
    """The storage actor's queue and counts, read from whichever incarnation is live (a
    restart starts its counts again: Prometheus' ``rate`` takes that as a reset)."""
    from gateway.services import STORAGE_ID

    node = {"node": base.node}

    def actor() -> Any:
        cell = base.cells.get(STORAGE_ID)
        return cell.instance if cell is not None and cell.alive else None

    def queue() -> Iterable[tuple[dict[str, Any], float]]:
        a = actor()
        if a is not None:
            yield {**node, "state": "queued"}, a.waiting
            yield {**node, "state": "in_flight"}, a.in_flight_writes - sum(
                map(len, list(a.retrying.values())))
            yield {**node, "state": "retrying"}, sum(map(len, list(a.retrying.values())))

    def stat(field: str, **labels: str) -> Callable[[], Iterable[tuple[dict[str, Any], float]]]:
        def read() -> Iterable[tuple[dict[str, Any], float]]:
            a = actor()
            if a is not None:
                yield {**node, **labels}, getattr(a.stats, field)
        return read

    return [_storage_queue.observe(queue),
            _storage_writes.observe(stat("writes_acked", outcome="acked")),
            _storage_writes.observe(stat("writes_failed", outcome="failed")),
            _storage_retries.observe(stat("retries")), _storage_busy.observe(stat("busy"))]


def watch_gateway(gateway: Gateway,
                  operator: OperatorServer | None = None) -> list[Callable[[], None]]:
    """Register *gateway*'s gauges (its sessions, its guilds' subscriptions, its storage
    actor, its actor system) and, on *operator*, its readiness checks: ``storage``
    (reachable) and ``gateway`` (accepting). Returns the functions that stop the gauges
    (call them when it stops)."""
    from gateway.guild import GuildActor

    node = {"node": gateway.base.node}

    def sessions() -> Iterable[tuple[dict[str, Any], float]]:
        connected = sum(1 for link in list(gateway.links) if link.session is not None)
        yield {**node, "state": "connected"}, connected
        yield {**node, "state": "detached"}, max(0, len(gateway.ctx.sessions) - connected)

    def connections() -> Iterable[tuple[dict[str, Any], float]]:
        yield node, len(gateway.links)

    def subscriptions() -> Iterable[tuple[dict[str, Any], float]]:
        active = passive = 0
        for cell in list(gateway.base.cells.values()):
            guild = cell.instance
            if cell.alive and isinstance(guild, GuildActor):
                for sub in list(guild.subs.values()):
                    if sub.active:
                        active += 1
                    else:
                        passive += 1
        yield {**node, "state": "active"}, active
        yield {**node, "state": "passive"}, passive

    stops = [_sessions.observe(sessions), _connections.observe(connections),
             _subscriptions.observe(subscriptions), *watch_base(gateway.base),
             *_watch_storage_actor(gateway.base)]
    if operator is not None:
        storage = gateway.storage

        async def storage_reachable() -> None:
            await storage.get_user(0)  # one key read: answers None when it is up

        def accepting() -> str | None:
            server = gateway._ws_server
            if server is None or not server.is_serving():
                return "the gateway's listener is closed"
            if gateway._services is None:
                return "the node's services gave up"
            if len(gateway.links) >= gateway.max_connections:
                return f"at its connection limit ({gateway.max_connections})"
            return None

        operator.add_check("storage", storage_reachable)
        operator.add_check("gateway", accepting)
    return stops
