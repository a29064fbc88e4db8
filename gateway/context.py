"""What the gateway's actors share in one process: the open storage, the storage actor,
the entity registry, the snowflake source and the live sessions by id.

Thespian actors take no constructor arguments, so ``bind`` makes a subclass per
gateway instance carrying its context as a class attribute (no module-level state: two
gateways in one process, as in tests, do not see each other).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypeVar

from gateway.protocol import GatewayConfig
from storage.base import Storage
from storage.snowflake import SnowflakeGenerator


@dataclass
class GatewayContext:
    storage: Storage
    snowflakes: SnowflakeGenerator
    config: GatewayConfig
    storage_actor: Any = None  # Address
    registry: Any = None  # Address
    #: session_id -> session actor address, for RESUME (sessions live on this node).
    sessions: dict[str, Any] = field(default_factory=dict)
    gateway_url: str = ""
    #: session_id -> the node it moved to, for this node's sessions that a RESUME moved
    #: elsewhere (``gateway.sessions.SessionMoved``).
    moved: dict[str, str] = field(default_factory=dict)
    #: How long a session waits for a RESUME after a resumable close.
    resume_window_s: float = 120.0
    #: user id -> that user's live session actors (GUILD_CREATE/GUILD_DELETE on join/leave).
    user_sessions: dict[int, tuple[Any, ...]] = field(default_factory=dict)
    #: ``gateway.limits.IdentifyBudget``: session starts per token.
    identify_budget: Any = None
    #: ``gateway.identity.IdentityCache``: verified tokens and guild shells for IDENTIFY.
    identity: Any = None
    #: This node's ``cluster.view.ClusterView`` (None: a gateway on its own).
    cluster: Any = None
    #: ``gateway.replica.ReplicaFeed``: sends local sessions' logs to their standby
    #: (None: not replicated, a gateway on its own).
    replica_feed: Any = None
    #: session id -> ``gateway.replica.Replica``: the standby copies this node keeps.
    replicas: dict[str, Any] = field(default_factory=dict)
    #: node -> when its last ``Replicate`` arrived (wall clock): a promoted session
    #: reads back from storage from shortly before it.
    replicas_heard: dict[str, float] = field(default_factory=dict)
    #: Make a session actor on this node and tell it a first message (promotion).
    spawn_session: Any = None
    #: Storage reads shared by the sessions a promotion catches up (gateway/replica.py).
    catch_up_reads: dict[Any, Any] = field(default_factory=dict)
    #: old actor id -> ``gateway.session.Orphan``: the sessions that died with their
    #: host, until its next incarnation rebuilds them (``Gateway._session_host_started``).
    orphans: dict[int, Any] = field(default_factory=dict)
    #: session actor id -> ``(cell, transport, log, conn)``: the sessions whose next
    #: dispatch the fan-out point may number and write itself (gateway/fanout.py,
    #: "Lanes"), kept true by ``SessionActor.sync_lane``.
    lanes: dict[int, tuple[Any, Any, Any, Any]] = field(default_factory=dict)


T = TypeVar("T", bound=type)


def bind(cls: T, ctx: GatewayContext) -> T:
    """A subclass of actor class ``cls`` whose ``ctx`` is ``ctx``."""
    return type(cls.__name__, (cls,), {"ctx": ctx})  # type: ignore[return-value]
