"""The node's own services, supervised the OTP way: one ``one_for_one`` supervisor.

A gateway node runs six long-lived actors: the storage actor, the fan-out point, the
entity registry (parent of the node's guild and channel actors), the session host
(parent of its session actors), the replica store and the session directory. They
start in that order under one ``supervision.Supervisor`` and stop in reverse (the
sessions before the guilds and channels, those before the storage actor, which handles
what they queued before its own exit request).

**Why one_for_one, not rest_for_one with storage first.** Every service lives at a
well-known actor id (``ChildSpec.fixed_id``) and each incarnation comes back at that
id. Every holder of a service's address — other services, channels holding the storage
actor, other nodes naming ``Address(node, FANOUT_ID)`` — reaches the new incarnation
without being told (the base resolves a stale address by id). So no service needs to
restart because a sibling did; and restarting the registry or the session host with
the storage actor (what rest_for_one would do) would end every guild, channel and
session of the node for nothing. A session survives the crash of any sibling.

**Which crash exits (``exit_on_error``), which is retried (Thespian's rule).** OTP's
"let it crash" fits an actor whose state a restart rebuilds. Here:

* session directory, replica store — ``exit_on_error``: they keep nothing of their
  own (their tables are the node's, in ``GatewayContext``), so a restart is free, and
  a retried message (Thespian's rule) could forward twice or apply a half-applied
  replication batch again. A crash: logged with its traceback, its message returned to
  the sender as ``PoisonMessage``, restarted at the same id.
* storage actor — not: its queues hold writes not yet durable whose senders wait for
  ``Written``; a restart would drop them unanswered. Retry-then-``PoisonMessage`` costs
  one message, not every queued write. (Killed anyway, each later incarnation has
  every channel of the node send again what it still waits for — the same write
  under the same snowflake, which storage applies idempotently — so a post is
  acknowledged once, and at once, rather than failing after REST's ask timeout.)
* registry, session host — not: their children are every guild and channel actor, and
  every session, of the node; a restart would end them all. (Killed anyway, the
  registry's entities come back on the next message and sessions subscribe to their
  guilds again, reading back from storage what the dead guild did not fan out; the
  host's sessions die with it, each leaving its state (``SessionActor._orphan``: its
  log itself, on its socket's connection), and the next incarnation has the edge make
  each again in place, same session id and sequence numbers, caught up from storage:
  its client sees no op 9 and no close. Only a session not past READY, or moving
  between nodes, is lost: its client is told as before.)
* fan-out point — not: its only state is what waits (the mailbox, and the backlog
  behind a big fan-out delivered in turns, gateway/fanout.py), but a restart loses
  every dispatch queued behind the crash, for every local session, with nobody to send
  them again; its retry is safe (a bad payload fails before any delivery; one session's
  failure is caught). (Killed anyway, each later incarnation has every local session
  catch up from storage.)

All six are still ``permanent`` children: one that exits for any reason (killed, its
exit handler failed) is restarted at its id, logged (``supervisor`` line with reason)
and counted (``supervisor_restarts_total{child=...}``). Past ``INTENSITY`` restarts in
``PERIOD`` seconds the supervisor gives up (OTP): it stops the services and exits, and
the gateway escalates (``Gateway.on_services_down``: a node process ends and is
started again by its own supervisor).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, ClassVar

from actors import Actor, Down
from actors.registry import Configure
from cluster.routing import ENTITY_REGISTRY_ID
from gateway.channel import ChannelActor, StorageRestarted
from gateway.context import GatewayContext
from gateway.fanout import FANOUT_ID, FanoutPoint
from gateway.replica import REPLICAS_ID, ReplicaStore
from gateway.session import SessionActor, SessionHost
from gateway.sessions import SESSIONS_ID, SessionDirectory
from storage.actor import StorageActor
from storage.base import Storage
from storage.messages import StorageStart
from supervision import ONE_FOR_ONE, ChildSpec, SupervisorFlags, SupervisorSpec

#: The storage actor's well-known id on every gateway node (negative: never handed out
#: by the runtime; -1..-4 are the fan-out point, registry, directory and replicas).
STORAGE_ID = -5
#: The session host's well-known id (the parent of the node's session actors).
SESSION_HOST_ID = -6

#: More than this many restarts of the services within ``PERIOD`` s: the supervisor
#: gives up. A crash loop stops within seconds; a service that crashes now and then
#: (a bug hit by one kind of request) is restarted each time.
INTENSITY = 10
PERIOD = 10.0


class _ServicesWatch(Actor):
    """Monitors the services' supervisor; its ``Down`` calls ``gave_up(reason)``."""

    gave_up: ClassVar[Callable[[Any], None]]

    def receiveMessage(self, msg: Any, sender: Any) -> None:
        if isinstance(msg, Down):
            type(self).gave_up(msg.reason)
            self.exit("normal")


def services_watch(gave_up: Callable[[Any], None]) -> type:
    """An actor class to monitor the services' supervisor with: when it exits (it gave
    up, or was stopped: the callee tells which), ``gave_up`` is called with its reason."""
    return type("ServicesWatch", (_ServicesWatch,), {"gave_up": staticmethod(gave_up)})


class _SessionHost(SessionHost):
    """The session host, telling the edge each time an incarnation starts."""

    started: ClassVar[Callable[[], None] | None] = None

    def __init__(self) -> None:
        super().__init__()
        if self.started is not None:  # created in its supervisor's turn, on the loop
            asyncio.get_running_loop().call_soon(self.started)


def _with(cls: type, ctx: GatewayContext | None, exit_on_error: bool) -> type:
    """``cls`` bound to ``ctx`` (``gateway.context.bind``) with its crash rule set here,
    where the reason for it is written down."""
    attrs: dict[str, Any] = {"exit_on_error": exit_on_error}
    if ctx is not None:
        attrs["ctx"] = ctx
    return type(cls.__name__, (cls,), attrs)


def _on_restart(cls: type, restarted: Callable[[Any], None]) -> type:
    """``cls`` whose incarnations after the first call ``restarted(instance)`` as they
    are created (in the supervisor's turn, on the loop): a restart, not a first start,
    is when what died with the one before must be made good."""
    incarnations = 0

    def __init__(self: Any) -> None:
        nonlocal incarnations
        cls.__init__(self)
        incarnations += 1
        if incarnations > 1:
            restarted(self)

    return type(cls.__name__, (cls,), {"__init__": __init__})


def _fanout_restarted(fanout: FanoutPoint) -> None:
    fanout.replaces_crashed()


def _storage_restarted(storage: StorageActor) -> None:
    """The storage actor before this one died with writes and reads it had not answered:
    once this one exists (the next loop turn), every channel of the node sends again
    what it still waits for."""
    def tell_channels() -> None:
        cell = storage._myRef
        if not cell.alive:
            return
        base = cell.base
        for other in list(base.cells.values()):
            if other.alive and isinstance(other.instance, ChannelActor):
                base.tell_from_loop(other.address, StorageRestarted())

    asyncio.get_running_loop().call_soon(tell_channels)


def _registry_restarted(registry: Any) -> None:
    """The registry before this one died with its guilds: the node's sessions subscribe
    again to them now (their first try may have reached the dead one), so what those
    guilds missed is read back within a turn, not after a retry interval."""
    def tell_sessions() -> None:
        cell = registry._myRef
        if not cell.alive:
            return
        for other in list(cell.base.cells.values()):
            session = other.instance
            if other.alive and isinstance(session, SessionActor):
                session.registry_restarted()

    asyncio.get_running_loop().call_soon(tell_sessions)


def node_services(ctx: GatewayContext, storage: Storage, registry: type,
                  configure: Configure,
                  host_started: Callable[[], None] | None = None) -> SupervisorSpec:
    """The supervisor spec of a gateway node's services. ``registry``: the entity
    registry class (a bound ``PlacedRegistry``), told ``configure`` by each incarnation's
    supervisor right after it starts (as the storage actor is told ``StorageStart``).
    ``host_started``: called on the loop once each session host incarnation exists."""
    start = StorageStart(storage=storage, settings=getattr(storage, "settings", None))
    host = _with(_SessionHost, None, False)
    host.started = staticmethod(host_started) if host_started is not None else None
    return SupervisorSpec(SupervisorFlags(ONE_FOR_ONE, INTENSITY, PERIOD), (
        ChildSpec("storage", _on_restart(_with(StorageActor, None, False),
                                         _storage_restarted),
                  fixed_id=STORAGE_ID, init=start),
        ChildSpec("fanout", _on_restart(_with(FanoutPoint, ctx, False), _fanout_restarted),
                  fixed_id=FANOUT_ID),
        ChildSpec("registry", _on_restart(registry, _registry_restarted),
                  fixed_id=ENTITY_REGISTRY_ID, init=configure),
        ChildSpec("session-host", host, fixed_id=SESSION_HOST_ID),
        ChildSpec("replicas", _with(ReplicaStore, ctx, True), fixed_id=REPLICAS_ID),
        ChildSpec("session-directory", _with(SessionDirectory, ctx, True),
                  fixed_id=SESSIONS_ID),
    ))
