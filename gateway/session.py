"""The session actor: one per gateway session, created when a connection IDENTIFYs.

It authenticates the token against storage, builds READY and the GUILD_CREATEs from
storage data, subscribes to its guilds, and owns the session's ``DispatchLog``: the
connection numbers and records each dispatch in it, and when the socket drops with a
resumable close the session keeps recording for ``resume_window_s``, so a RESUME on a
new connection (``Attach``) replays exactly what was missed. The session lives where its
socket landed, so it drives the socket's ``Link`` directly (same process, same loop).
"""

from __future__ import annotations

import hmac
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from thespian.actors import ActorExitRequest, ChildActorExited

from actors import NORMAL, Actor, Down, IODone, Timeout
from actors.registry import Route
from gateway.context import GatewayContext
from gateway.direct import DirectDispatch
from gateway.identity import member_chunks
from gateway.messages import (
    Activate,
    Attach,
    CloseSession,
    Cutover,
    Deliver,
    Detached,
    HandedDispatch,
    HandOver,
    Identify,
    JoinedGuild,
    LeftGuild,
    Migrate,
    OpenGuild,
    Presence,
    Promote,
    SessionClosed,
    SessionState,
    SetPresence,
    Subscribe,
    Subscribed,
    Unsubscribe,
)
from gateway.protocol import (
    DispatchLog,
    Encoding,
    GuildMembersRequested,
    IdentifyRequested,
    PreparedDispatch,
    build_guild_create,
    event_allowed,
)
from gateway.protocol.close_codes import RESUMABLE, CloseCode
from gateway.protocol.intents import GUILD_MEMBERS, GUILD_PRESENCES, disallowed_intents
from gateway.replica import (
    CATCH_UP_MARGIN_S,
    Superseded,
    live_gateway_nodes,
    newest_message_ids,
    read_missed_messages,
    standby_of,
    standby_token_key,
)
from gateway.sessions import (
    NoSuchSession,
    SessionMoved,
    ToSession,
    UserDispatch,
    node_of_session,
    sessions_address,
)
from gateway.tracing import start

log = logging.getLogger("greenroom.gateway.session")

#: After a guild's Down, a session subscribes again every this many seconds until the
#: guild's next incarnation answers ``Subscribed``.
RESUBSCRIBE_S = 2.0

#: A session moving to another node (a RESUME there) waits this long for the old node's
#: answer, then for each guild's ``Cutover``; the old one forwards for twice as long.
MOVE_TIMEOUT_S = 5.0

#: A promoted copy asked to hand itself over (a RESUME on another node) while its
#: catch-up from storage is under way waits this long at most for it (what the catch-up
#: finds must be in the state it sends), within the new side's ``MOVE_TIMEOUT_S``.
HANDOVER_WAIT_S = MOVE_TIMEOUT_S / 2

#: A RESUME whose standby node is not known yet (this node just started) looks again
#: this often, until ``MOVE_TIMEOUT_S``.
STANDBY_RETRY_S = 0.2

#: After a catch-up from storage, a session keeps skipping live message creations it
#: already delivered for this long (a read and the live fan-out may overlap).
CATCH_UP_DEDUP_S = 10.0

#: A message a catch-up read that is newer than anything delivered live in its channel
#: may be durable and not fanned out yet (an older one's write still in flight): it
#: waits for the channel's next live message (which tells: a channel fans out in order),
#: or this long, so that it is not delivered ahead of that older one. The cost: a quiet
#: channel's missed messages come this much later; an older write slower than this to
#: complete is still passed.
CATCH_UP_TAIL_S = 0.5


#: the timer a session ended by ``close`` starts, to exit once what was queued is handled
_GONE = "gone"


def catch_up_since() -> float:
    """Where a catch-up reads from in a channel the log holds nothing of (Unix
    seconds): a margin before now, in whole seconds, so that the sessions catching up
    after one crash ask storage the same reads (``replica._shared`` makes them one)."""
    return float(int(time.time())) - CATCH_UP_MARGIN_S


class _Move:
    """A session moving between nodes (``Migrate``/``HandOver``), on either side: the
    other side's session, the guilds that have not cut over yet, and (new side) the
    dispatches the guilds sent straight here meanwhile, recorded after the old side's."""

    __slots__ = ("peer", "guilds", "held", "timer", "event", "target", "watch")

    def __init__(self, peer: Any, event: Any = None) -> None:
        self.peer = peer
        self.guilds: set[int] = set()
        self.held: list[PreparedDispatch] = []
        self.timer: int | None = None
        self.event = event  # new side: the ResumeRequested
        #: new side: the node whose directory was asked for the session, and the
        #: monitor on that directory (its node's death re-aims at the standby)
        self.target: str | None = None
        self.watch: int | None = None


_NOTHING_OPENED: frozenset[int] = frozenset()  # shared: a user's session before op 14


@dataclass(slots=True, eq=False)
class Orphan:
    """A session that died with its host (killed: its sessions were its children), as
    the host's next incarnation rebuilds it in place (``SessionActor._restore_orphan``):
    kept in ``ctx.orphans`` by its old actor id until then. Local only, never sent."""

    #: the dead session's address (the guilds swap it for the new one)
    address: Any
    #: its socket's ``Link`` (None: detached, waiting for a RESUME)
    link: Any
    #: its ``DispatchLog`` itself (attached: the link's ``conn.log``), so the numbering
    #: goes on
    log: DispatchLog
    #: everything else it is (``entries`` empty: the log is kept whole)
    state: SessionState
    standby_key: bytes
    promoted: bool
    #: a catch-up planned and not started, and the message ids delivered since
    catch_up: tuple[dict[int, int], float, frozenset[int] | None] | None
    delivered_ids: set[str] | None
    #: where its catch-up reads from in a channel its log has nothing of (the kill)
    since_s: float


class SessionActor(Actor):
    ctx: ClassVar[GatewayContext]

    # Failover state (gateway/replica.py), as class defaults: an instance sets them only
    # when replicated or promoted, so an idle session costs no more memory.
    #: the node keeping this session's standby copy (None: none)
    _standby: str | None = None
    #: ``replica.standby_token_key`` of the token (when replicated: any node can check
    #: it, unlike ``token_key``)
    _standby_key = b""
    #: made from a standby copy after its home died: a RESUME may be ahead of it
    _promoted = False
    # The catch-up from storage (``_plan_catch_up``): after a promotion, a guild's crash
    # or the fan-out point's, as class defaults too (most sessions never need one).
    #: a catch-up waiting for its guilds to answer: (newest message id by channel in the
    #: log, the time to read back from where none, the guilds to read (None: all))
    _catch_up: tuple[dict[int, int], float, frozenset[int] | None] | None = None
    #: the MESSAGE_CREATE ids delivered since a catch-up was planned (None: none is)
    _delivered_ids: set[str] | None = None
    #: a catch-up's read is in flight: the live dispatches meanwhile, delivered after
    #: what it finds (None: no read in flight, or too many held: delivered live again)
    _held: list[tuple[PreparedDispatch, dict | None]] | None = None
    _reading = False
    #: the timer that ends the dedup after a catch-up
    _dedup_timer: int | None = None
    #: what a catch-up read past the live deliveries: channel id -> payloads, oldest
    #: first, until that channel's next live message or ``CATCH_UP_TAIL_S``
    _tail: dict[str, list[dict[str, Any]]] | None = None
    #: the other session of this id that ``Superseded`` last named (None: none)
    _rival: Any = None
    #: a ``HandOver`` put off until the catch-up is done, and the timer that ends the
    #: wait (``HANDOVER_WAIT_S``)
    _handover: tuple[HandOver, int] | None = None

    def __init__(self) -> None:
        super().__init__()
        self.link: Any = None
        self.session_id: str | None = None
        #: The IDENTIFY token's keyed digest (``IdentityCache.token_key``), for RESUME.
        self.token_key = b""
        self.user_id = 0
        self.intents = 0
        self.log: DispatchLog | None = None
        self.guild_ids: list[int] = []
        self._expiry: int | None = None
        #: guild actor address -> (guild id, monitor ref): one dict, not two (memory)
        self._guilds: dict[Any, tuple[int, int]] = {}
        self._ended = False
        self._identify_span: Any = None
        self.status = "online"
        self.activities: list[Any] = []
        self._large_threshold = 50
        #: Guilds whose message events this session gets (gateway/fanout.py, passive
        #: sessions): None for a bot (all of them); a user's opened with op 14.
        self._opened: frozenset[int] | None = _NOTHING_OPENED
        #: guilds re-subscribed to after a Down that have not answered yet (None: none)
        self._unanswered: set[int] | None = None
        #: a move to or from another node in progress (None: none, the usual case)
        self._move: _Move | None = None

    def receiveMessage(self, msg: Any, sender: Any) -> None:
        try:
            self._receive(msg, sender)
        finally:  # whatever the message changed, the fan-out point sees it next
            self.sync_lane()

    def _receive(self, msg: Any, sender: Any) -> None:
        if isinstance(msg, Deliver):
            self._deliver(msg)
        elif isinstance(msg, CloseSession):
            self._close_session(msg, sender)
        elif isinstance(msg, Identify):
            # session.identify: from the IDENTIFY to its answer (READY or a close)
            self._identify_span = start(msg.trace, "session.identify")
            self.link = msg.link
            event = msg.event
            identity = self.ctx.identity
            self._set_token(event.token)
            self.run_io(identity.load_identity(
                event.token, large_threshold=event.large_threshold,
                all_members=bool(event.intents & GUILD_PRESENCES)), event)
        elif isinstance(msg, IODone):
            if isinstance(msg.tag, tuple) and msg.tag[0] == "join":
                self._joined(msg)
            elif msg.tag == "members":
                self._members_loaded(msg)
            elif msg.tag == "catch-up":
                self._caught_up(msg)
            else:
                self._identified(msg)
        elif isinstance(msg, SetPresence):
            self._set_presence(msg)
        elif isinstance(msg, OpenGuild):
            self._open_guild(msg.guild_id)
        elif isinstance(msg, GuildMembersRequested):
            self._request_members(msg)
        elif isinstance(msg, (JoinedGuild, LeftGuild)):
            # Only sessions past READY are in ``ctx.user_sessions``, so only they get these.
            self._membership(msg)
        elif isinstance(msg, DirectDispatch):
            # a DM channel's event (gateway/direct.py), kept if asked for by a DM intent
            dispatch = msg.dispatch()
            if event_allowed(self.intents, dispatch.event, direct_message=True):
                self.deliver_dispatch(dispatch)
        elif isinstance(msg, UserDispatch):
            # meant for this user alone (an interaction's events: gateway/sessions.py)
            if self.log is not None and msg.user_id in (None, self.user_id) \
                    and event_allowed(self.intents, msg.event, direct_message=msg.direct):
                self.deliver_dispatch(PreparedDispatch(msg.event, msg.data))
        elif isinstance(msg, Subscribed):
            # ``member`` False while the guild is still ours (a LeftGuild removes it):
            # the guild could not load (storage), so the retries go on
            if msg.member and self._unanswered is not None:
                self._unanswered.discard(msg.guild_id)
                if not self._unanswered:
                    self._unanswered = None
                    if self._catch_up is not None:
                        self._start_catch_up()
            if msg.member and not self._ended and sender not in self._guilds \
                    and msg.guild_id in self.guild_ids:
                self._guilds[sender] = (msg.guild_id, self.monitor(sender))
        elif isinstance(msg, Down):
            # A guild crashed, its registry stopped, it moved to another node or its
            # node is gone: subscribe to its next incarnation (wherever placement now
            # puts it), and again until it answers: a Subscribe routed to a node that
            # is stopping at that moment is a dead letter, and nobody says so.
            move = self._move
            if move is not None and move.watch == msg.ref:
                move.watch = None
                self._reaim()
                return
            watched = self._guilds.pop(msg.address, None)
            if watched is not None and not self._ended:
                if msg.reason != NORMAL:
                    # It died (its registry, its node): what it was told to fan out
                    # went with it. A guild handed over or passivated exits normally
                    # after its last fan-out, and costs no read.
                    self._plan_catch_up(frozenset((watched[0],)), catch_up_since())
                if self._unanswered is None:
                    self._unanswered = set()
                self._unanswered.add(watched[0])
                self._resubscribe(watched[0])
        elif isinstance(msg, Detached):
            self._detached(msg)
        elif isinstance(msg, Attach):
            self._attach(msg)
        elif isinstance(msg, Migrate):
            self._migrate(msg)
        elif isinstance(msg, HandOver):
            self._hand_over(msg)
        elif isinstance(msg, SessionState):
            self._restore(msg, sender)
        elif isinstance(msg, HandedDispatch):
            move, log = self._move, self.log
            if move is not None and log is not None:
                log.append(PreparedDispatch.from_encoded(msg.entry[0], log.encoding,
                                                         msg.entry[1]))
        elif isinstance(msg, Cutover):  # from the old side: that guild sends here now
            move = self._move
            if move is not None and self.log is not None:
                move.guilds.discard(msg.guild_id)
                if not move.guilds:
                    self._moved_in()
        elif isinstance(msg, NoSuchSession):
            move = self._move
            if move is not None and self.log is None \
                    and getattr(sender, "node", None) == move.target:
                self._reaim()
        elif isinstance(msg, Promote):
            self._promote(msg)
        elif isinstance(msg, Superseded):
            self._superseded(msg)
        elif isinstance(msg, Timeout):
            if msg.payload == _GONE:
                self.exit("normal")
            elif msg.payload == "move":
                self._move_timed_out()
            elif msg.payload == "tail":
                self._flush_tail()
            elif msg.payload == "handover":
                self._hand_over_now(timed_out=True)
            elif msg.payload == "caught-up":
                self._dedup_timer = None
                if self._catch_up is None and not self._reading:
                    self._delivered_ids = None
                    self.__dict__.pop("deliver_dispatch", None)  # the class's, again
            elif msg.payload == "ask-standby":
                if self._move is not None and self._move.target is None \
                        and self.log is None:
                    self._ask_standby()
            elif msg.payload.__class__ is tuple:  # ("resubscribe", guild id)
                self._resubscribe(msg.payload[1])
            elif self.link is None:
                self._end()
        elif isinstance(msg, Orphan):
            self._restore_orphan(msg)
        elif isinstance(msg, ActorExitRequest):
            if self._host_died(sender):
                self._orphan()
            else:
                self._end(exiting=True)

    # -- identify ------------------------------------------------------------------------

    def _identified(self, msg: IODone) -> None:
        span, self._identify_span = self._identify_span, None
        if span is not None:
            span.end()
        link = self.link
        event: IdentifyRequested = msg.tag
        if link is None or link.closed:
            # the socket closed while we were loading (before READY the link has no
            # session, so no Detached comes: a session kept here would never expire)
            self._end()
            return
        if msg.error is not None:
            log.warning("identify failed", exc_info=msg.error)
            link.execute(link.conn.close(4000, "identify failed"))
            self._end()
            return
        if msg.result is None:
            link.execute(link.conn.auth_failed())
            self._end()
            return
        identity = msg.result
        user, guilds = identity.user, identity.guilds
        refused = disallowed_intents(event.intents, identity.application_flags) \
            if user.get("bot") else 0
        if refused:  # privileged intents the bot's application may not ask for
            link.execute(link.conn.reject_identify(
                CloseCode.DISALLOWED_INTENTS, f"intents {refused} are not enabled"))
            self._end()
            return
        budget = self.ctx.identify_budget
        if budget is not None and not budget.take(event.token):
            # Over session_start_limit (total or max_concurrency): op 9 d=false.
            link.execute(link.conn.identify_rate_limited())
            self._end()
            return
        self.user_id = int(user["id"])
        if user.get("bot"):
            self._opened = None  # bots are active in every guild
        presence = event.presence or {}
        if isinstance(presence.get("status"), str):
            self.status = presence["status"]
        if isinstance(presence.get("activities"), list):
            self.activities = presence["activities"]
        self._large_threshold = event.large_threshold
        self.intents = event.intents
        # Globally unique and names its node: a RESUME that lands on another node (the
        # ports are shared) can tell whose session it is.
        self.session_id = f"{self.myAddress.node}.{secrets.token_hex(16)}"
        self.guild_ids = [int(g["id"]) for g in guilds]
        effects = link.conn.identified(
            session_id=self.session_id,
            user=user,
            guilds=guilds,
            application={"id": user["id"], "flags": identity.application_flags},
            resume_gateway_url=self.ctx.gateway_url,
        )
        self.log = link.conn.log
        self._remember()
        link.session = self.myAddress
        link.execute(effects)
        self.replicate_open()
        for guild_id in self.guild_ids:
            self._subscribe(guild_id, identity.members.get(guild_id))

    def _set_token(self, token: str) -> None:
        """Keep what checks a RESUME's token: the keyed digest (this process), and the
        unkeyed one a standby copy checks (gateway/replica.py) when there are copies."""
        self.token_key = self.ctx.identity.token_key(token)
        if self.ctx.replica_feed is not None:
            self._standby_key = standby_token_key(token)

    def _subscribe(self, guild_id: int, member: Any = None, replaces: Any = None) -> None:
        """``member``: the user's member just read for GUILD_CREATE (the guild then
        needs no read of its own); ``replaces``: the session's address before a move or
        a failover, which the guild swaps for this one."""
        opened = self._opened
        subscribe = Subscribe(self.myAddress, self.user_id, self.intents, self._presence(),
                              member, active=opened is None or guild_id in opened,
                              replaces=replaces)
        self.send(self.ctx.registry, Route("guild", guild_id, subscribe))

    def _resubscribe(self, guild_id: int) -> None:
        unanswered = self._unanswered
        if unanswered is None or guild_id not in unanswered:
            return  # the guild answered
        if self._ended or guild_id not in self.guild_ids or self._move is not None:
            unanswered.discard(guild_id)
            if not unanswered:  # none left to wait for
                self._unanswered = None
                if self._catch_up is not None:
                    self._start_catch_up()
            return
        self._subscribe(guild_id)
        self.start_timer(RESUBSCRIBE_S, ("resubscribe", guild_id))

    def registry_restarted(self) -> None:
        """The node's registry restarted: subscribe again now to the guilds that have
        not answered (the Subscribe sent at their Down may have reached the dead one),
        not at the next retry. Called on this loop thread (gateway/services.py)."""
        for guild_id in list(self._unanswered or ()):
            if not self._ended and self._move is None:
                self._subscribe(guild_id)

    def _presence(self) -> Presence:
        return Presence(self.myAddress, self.user_id, self.status, list(self.activities),
                        {"web": self.status} if self.status not in ("offline", "invisible")
                        else {})

    def _open_guild(self, guild_id: int) -> None:
        """Op 14: the client opened ``guild_id``; from now on it gets its message events.
        Ignored for a guild the user is not in, a bot, or a guild already open."""
        opened = self._opened
        if self._ended or self.session_id is None or opened is None \
                or guild_id in opened or guild_id not in self.guild_ids:
            return
        self._opened = opened | {guild_id}
        self.replicate_open(with_log=False)
        self.send(self.ctx.registry, Route("guild", guild_id, Activate(self.myAddress)))

    # -- presence, guilds joined and left --------------------------------------------------

    def _set_presence(self, msg: SetPresence) -> None:
        if self._ended or self.session_id is None:
            return
        self.status, self.activities = msg.status, list(msg.activities)
        self.replicate_open(with_log=False)
        presence = self._presence()
        for guild_id in self.guild_ids:
            self.send(self.ctx.registry, Route("guild", guild_id, presence))

    def _membership(self, msg: JoinedGuild | LeftGuild) -> None:
        if isinstance(msg, LeftGuild):
            self._left(msg.guild_id)
        elif not self._ended and msg.guild_id not in self.guild_ids:
            self.run_io(self.ctx.identity.load_guild(
                msg.guild_id, self.user_id, large_threshold=self._large_threshold,
                all_members=bool(self.intents & GUILD_PRESENCES)), ("join", msg.guild_id))

    def _request_members(self, request: GuildMembersRequested) -> None:
        """Op 8: answer with GUILD_MEMBERS_CHUNK dispatches (a guild the user is not in
        gets one empty chunk, so a client waiting on its nonce hears back)."""
        if self._ended or self.session_id is None:
            return
        if request.guild_id in self.guild_ids:
            everyone = bool(self.intents & GUILD_MEMBERS)
            self.run_io(member_chunks(self.ctx.storage, request, everyone=everyone), "members")
        else:
            chunk = {"guild_id": str(request.guild_id), "members": [], "chunk_index": 0,
                     "chunk_count": 1}
            if request.nonce is not None:
                chunk["nonce"] = request.nonce
            self.deliver_dispatch(PreparedDispatch("GUILD_MEMBERS_CHUNK", chunk))

    def _members_loaded(self, msg: IODone) -> None:
        if msg.error is not None:
            log.warning("request guild members failed", exc_info=msg.error)
            return
        if self._ended:
            return
        for chunk in msg.result:
            self.deliver_dispatch(PreparedDispatch("GUILD_MEMBERS_CHUNK", chunk))

    def _joined(self, msg: IODone) -> None:
        guild_id = msg.tag[1]
        found = msg.result if msg.error is None else None
        if found is None or self._ended or guild_id in self.guild_ids:
            return
        guild, member = found
        self.guild_ids.append(guild_id)
        self.replicate_open(with_log=False)
        self._subscribe(guild_id, member)
        if event_allowed(self.intents, "GUILD_CREATE"):
            data = build_guild_create(guild, intents=self.intents, user_id=self.user_id,
                                      large_threshold=self._large_threshold)
            self._deliver(Deliver(PreparedDispatch("GUILD_CREATE", data)))

    def _left(self, guild_id: int) -> None:
        if self._ended or guild_id not in self.guild_ids:
            return
        self.guild_ids.remove(guild_id)
        self.replicate_open(with_log=False)
        self.send(self.ctx.registry, Route("guild", guild_id, Unsubscribe(self.myAddress)))
        for address, (gid, ref) in list(self._guilds.items()):
            if gid == guild_id:
                del self._guilds[address]
                self.demonitor(ref)
        if event_allowed(self.intents, "GUILD_DELETE"):
            self._deliver(Deliver(PreparedDispatch("GUILD_DELETE", {"id": str(guild_id)})))

    # -- dispatch ------------------------------------------------------------------------

    def _deliver(self, msg: Deliver) -> None:
        self.deliver_dispatch(msg.dispatch, msg.trace)

    def deliver_dispatch(self, dispatch: PreparedDispatch, trace: dict | None = None) -> None:
        """Number ``dispatch`` in this session, record it for RESUME and write its frame.

        Called on this actor's loop thread only: by its own handlers, and by the node's
        fan-out point (``gateway.fanout``) directly, one call per recipient instead of
        one actor message. ``trace``: the guild.fanout span's context (None: untraced).
        """
        link = self.link
        log = self.log
        if link is not None and log is not None and link.conn.log is log:
            if trace is None:
                link.send_dispatch(dispatch)
            else:  # traced: the session's hop and its socket write, one span per recipient
                span = start(trace, "socket.out", {"greenroom.session_id": self.session_id,
                                                   "greenroom.event": dispatch.event})
                link.send_dispatch(dispatch)
                span.set_attribute("greenroom.seq", log.seq)
                span.end()
            standby = self._standby
            if standby is not None:  # the standby copy (gateway/replica.py)
                self.ctx.replica_feed.record(standby, self.session_id, dispatch,
                                             log.encoding, log.seq)
        elif log is not None and not self._ended:
            if self._move is None:
                log.append(dispatch)  # detached: recorded for the RESUME
                standby = self._standby
                if standby is not None:
                    self.ctx.replica_feed.record(standby, self.session_id, dispatch,
                                                 log.encoding, log.seq)
            else:
                self._moving_dispatch(dispatch)

    def deliver_together(self, dispatches: list[PreparedDispatch],
                         failed: Callable[[Exception, PreparedDispatch], None]) -> bool:
        """``deliver_dispatch`` of each of ``dispatches`` (untraced), their frames in one
        write, in ``deliver_dispatch``'s common case (``_writes_directly``); False, having
        done nothing, otherwise (the caller then delivers them one by one). The fan-out
        point calls it for what rides on a fan-out (gateway/fanout.py, "Riding");
        ``failed`` hears of each dispatch that raised, and the others go on."""
        if not self._writes_directly():
            return False
        self.link.send_dispatches(dispatches, failed)
        return True

    def _writes_directly(self) -> bool:
        """``deliver_dispatch``'s common case, with nothing to do but write: attached to
        a link whose connection's log is this session's, no standby copy to feed, not
        ended, no catch-up in progress (``deliver_dispatch`` is the class's: a catch-up
        holds or notes what comes meanwhile through its own)."""
        link, log = self.link, self.log
        return (link is not None and log is not None and link.conn.log is log
                and self._standby is None and not self._ended
                and "deliver_dispatch" not in self.__dict__
                and type(self).deliver_dispatch is SessionActor.deliver_dispatch)

    def sync_lane(self) -> None:
        """Keep this session's entry in ``ctx.lanes`` true: there exactly while the
        fan-out point may write its dispatches itself, which is ``deliver_dispatch``'s
        common case with nothing else to do: attached to a link whose connection writes
        each dispatch now (``Link.lane_transport``), its log the link's, no standby copy
        to feed, no catch-up in progress (``deliver_dispatch`` is the class's). The entry
        is ``(cell, transport, log, conn)``: ``conn`` None for plain JSON text, which the
        fan-out point frames itself, else the connection that frames each dispatch
        (compressed, msgpack). Run after every message this actor handles, every change
        on its link's side (the link calls it) and the fan-out point's direct calls."""
        cell = self._myRef
        key = cell.address.id
        transport = None
        if cell.alive and self._writes_directly():
            transport = self.link.lane_transport()
        lanes = self.ctx.lanes
        if transport is None:
            lanes.pop(key, None)
        else:
            conn = self.link.conn
            lanes[key] = (cell, transport, self.log, None if conn.text_frames else conn)

    def _close_session(self, msg: CloseSession, sender: Any) -> None:
        """An internal service disconnects this session: close its socket with
        ``msg.code``. A code in ``RESUMABLE`` (4000 by default) keeps the session for a
        RESUME, as after any resumable close; any other code ends it."""
        span = start(msg.trace, "session.close", {"greenroom.session_id": self.session_id,
                                                  "greenroom.close_code": msg.code})
        resumable = self.close(msg.code, msg.reason or "closed by a service")
        if span is not None:
            span.end()
        self.send(sender, SessionClosed(self.session_id or "", msg.code, resumable))

    def close(self, code: int, reason: str) -> bool:
        """Close this session's socket with ``code`` and ``reason``: a code in
        ``RESUMABLE`` keeps the session for a RESUME, as after any resumable close (the
        socket's Detached follows); any other code ends it now, whatever its socket
        was doing (closed already with a resumable code, or in the middle of a RESUME
        that moves it here), and a move under way ends on its other side too, so no
        RESUME can continue it. Whether it stays resumable."""
        resumable = code in RESUMABLE and not self._ended
        link = self.link
        if link is not None:
            link.execute(link.conn.close(code, reason))
        if resumable or self._ended:
            return resumable
        move = self._move
        if move is not None and move.event is None:  # old side: the new one has it now
            self.send(move.peer, CloseSession(code, reason))
        self._drop_handover()  # a RESUME on another node waiting for it: op 9 now
        # ended now, and gone once what is queued here has been answered as an ended
        # session answers it (a RESUME's Attach: op 9, not a client left waiting); a
        # timer's message, which no full mailbox bounces
        self._end(exiting=True)
        self.start_timer(0, _GONE)
        return False

    # -- connections come and go -----------------------------------------------------------

    def _detached(self, msg: Detached) -> None:
        if msg.link is not self.link:
            return
        self.link = None
        if self._move is not None and self._move.event is not None:
            return  # moving in: kept, and detached once the move is done
        if msg.resumable and self.log is not None:
            self._expiry = self.start_timer(self.ctx.resume_window_s, "resume-window")
        else:
            self._end()

    def _take_over(self, seq: int) -> None:
        """A RESUME (here or on another node) takes this session over at the client's
        ``seq``: close the socket it had (4000) and stop its resume window."""
        old = self.link
        if old is not None:
            self.link = None
            old.execute(old.conn.close(4000, "session resumed elsewhere"))
        if self._expiry is not None:
            self.cancel_timer(self._expiry)
            self._expiry = None
        self._catch_up_seq(seq)

    def _attach(self, msg: Attach) -> None:
        link = msg.link
        if link.closed:  # the resuming socket is gone already: keep the session as it is
            return
        if self._ended or self.log is None or not self._same_token(msg.event.token):
            link.execute(link.conn.resume_failed())
            return
        self._drop_handover()
        self._take_over(msg.event.seq)
        self.link = link
        link.session = self.myAddress
        link.resume_ok(self.log, intents=self.intents, seq=msg.event.seq)

    # -- moving to another node (a RESUME that landed there) -------------------------------

    def _migrate(self, msg: Migrate) -> None:
        """New side: ask the session's node to hand it over (``HandOver``)."""
        event = msg.event
        self.link = msg.link
        self.session_id = event.session_id
        self._set_token(event.token)
        move = self._move = _Move(None, event)
        move.timer = self.start_timer(MOVE_TIMEOUT_S, "move")
        home = node_of_session(event.session_id)
        assert home is not None  # the edge checked
        me = self.myAddress.node
        # A home that is gone left a standby copy (gateway/replica.py); so did this
        # node's previous incarnation, if the session is not here (nor moved on).
        if home in live_gateway_nodes(self.ctx.cluster, me) \
                and (home != me or event.session_id in self.ctx.moved):
            self._ask_for_session(home)
        else:
            self._ask_standby()

    def _ask_standby(self) -> None:
        """New side: ask the node keeping the session's standby copy. A node that just
        (re)started may not know the members yet: it asks again shortly (until the move
        times out)."""
        move = self._move
        assert move is not None and move.event is not None
        session_id = move.event.session_id
        standby = standby_of(session_id, live_gateway_nodes(
            self.ctx.cluster, self.myAddress.node), node_of_session(session_id) or "")
        if standby is None:
            view = self.ctx.cluster
            if view is None or self.myAddress.node in view.members.nodes:
                self._move_failed()  # the members are known: no other node
                return
            move.target = None
            self.start_timer(STANDBY_RETRY_S, "ask-standby")
        else:
            self._ask_for_session(standby)

    def _ask_for_session(self, node: str) -> None:
        """New side: ask ``node``'s directory for the session (a ``HandOver``), watching
        that directory: its node's death re-aims at the standby (``_reaim``)."""
        move = self._move
        assert move is not None and move.event is not None
        if move.watch is not None:
            self.demonitor(move.watch)
        event = move.event
        move.target = node
        directory = sessions_address(node)
        move.watch = self.monitor(directory)
        self.send(directory, ToSession(
            event.session_id, HandOver(event.session_id, event.token, event.seq,
                                       self.myAddress)))

    def _reaim(self) -> None:
        """New side: the session's home did not have it (it restarted) or died while we
        asked: ask the node keeping its standby copy instead, once; else INVALID_SESSION."""
        move = self._move
        if move is None or self.log is not None or move.event is None:
            return
        if move.target == node_of_session(move.event.session_id):
            self._ask_standby()
        else:
            self._move_failed()

    def _hand_over(self, msg: HandOver, waited: bool = False) -> None:
        """Old side: the client RESUMEd on another node. Send it this session (its log
        after the client's seq), close the old socket, and from now on forward what the
        guilds send here until each has cut over to the new session (``Cutover``).
        During a catch-up from storage (a copy promoted a moment ago: the RESUME came
        at once), not before it is done: what it finds goes in the log sent, whereas
        once the guilds cut over nothing more is forwarded."""
        log = self.log
        if self._ended or log is None or self._move is not None \
                or not self._same_token(msg.token):
            self.send(msg.to, NoSuchSession(msg.session_id))
            return
        if not waited and self._catching_up():
            self._drop_handover()  # a later RESUME wins
            self._handover = (msg, self.start_timer(HANDOVER_WAIT_S, "handover"))
            return
        self._take_over(msg.seq)
        self.send(msg.to, self._state(msg.seq, self.token_key))
        feed = self.ctx.replica_feed
        if feed is not None:  # the new home replicates it to its own standby
            feed.close(self, msg.session_id)
        # No longer reachable here: the new node has it (a second RESUME goes there).
        self.ctx.sessions.pop(msg.session_id, None)
        self._forget_user()
        move = self._move = _Move(msg.to)
        move.guilds.update(self.guild_ids)
        if not move.guilds:
            self._end()
            return
        move.timer = self.start_timer(2 * MOVE_TIMEOUT_S, "move")

    def _catching_up(self) -> bool:
        """A catch-up from storage is planned, reading, or holds what it read."""
        return self._catch_up is not None or self._reading or self._tail is not None

    def _hand_over_if_caught_up(self) -> None:
        """A ``HandOver`` put off for the catch-up goes once nothing is left of it."""
        if self._handover is not None and not self._catching_up():
            self._hand_over_now()

    def _hand_over_now(self, timed_out: bool = False) -> None:
        """The catch-up is done (or ``HANDOVER_WAIT_S`` ran out): hand over now."""
        pending, self._handover = self._handover, None
        if pending is not None:
            if not timed_out:
                self.cancel_timer(pending[1])
            self._hand_over(pending[0], waited=True)

    def _drop_handover(self) -> None:
        """Another RESUME took this session: the new side of the one put off fails."""
        pending, self._handover = self._handover, None
        if pending is not None:
            self.cancel_timer(pending[1])
            self.send(pending[0].to, NoSuchSession(pending[0].session_id))

    def cutover(self, guild_id: int) -> None:
        """Old side: ``guild_id`` now sends to the new session (called by the fan-out
        point, behind every dispatch that guild sent here). Tell the new side; done once
        every guild has."""
        move = self._move
        if move is None or move.event is not None or self._ended:
            return
        self.send(move.peer, Cutover(guild_id, 0))
        move.guilds.discard(guild_id)
        if not move.guilds:
            self._end()

    def _moving_dispatch(self, dispatch: PreparedDispatch) -> None:
        move = self._move
        assert move is not None and self.log is not None
        if move.event is None:  # old side: the new one records it, in this order
            self.send(move.peer, HandedDispatch([dispatch.event,
                                                 dispatch.encoded(self.log.encoding)]))
        else:  # new side: straight from a guild that cut over; after the old side's
            move.held.append(dispatch)

    def _restore(self, state: SessionState, old: Any) -> None:
        """New side: the old session (``old``) answered. Become the session and subscribe to its
        guilds in place of the old one; the RESUME is answered once every guild cut
        over (``_moved_in``)."""
        move = self._move
        if move is None or self._ended or self.log is not None \
                or state.session_id != self.session_id:
            return
        if not self._adopt(state):
            self._move_failed()
            return
        if move.watch is not None:
            self.demonitor(move.watch)
            move.watch = None
        move.guilds.update(self.guild_ids)
        for guild_id in self.guild_ids:
            self._subscribe(guild_id, replaces=old)
        if not move.guilds:
            self._moved_in()
            return
        if move.timer is not None:
            self.cancel_timer(move.timer)
        move.timer = self.start_timer(MOVE_TIMEOUT_S, "move")

    def _adopt(self, state: SessionState, kept: DispatchLog | None = None) -> bool:
        """Become the session ``state`` describes (a move, a promotion, or ``kept``: its
        own log, after its host died); False when it does not make a log (a bad answer
        from another node)."""
        if kept is not None:
            self.log = kept
        else:
            try:
                encoding = Encoding(state.encoding)
                entries = [PreparedDispatch.from_encoded(event, encoding, data)
                           for event, data in state.entries]
                self.log = DispatchLog.restored(encoding, state.seq, entries,
                                                self.ctx.config.replay_max_entries)
            except (ValueError, TypeError):
                log.warning("bad session state for %s", state.session_id, exc_info=True)
                return False
        self.user_id = state.user_id
        self.intents = state.intents
        self.guild_ids = list(state.guild_ids)
        self._opened = None if state.opened is None else frozenset(state.opened)
        self.status, self.activities = state.status, list(state.activities)
        self._large_threshold = state.large_threshold
        return True

    def _same_token(self, token: str) -> bool:
        """Whether a RESUME's ``token`` is this session's."""
        if self._promoted:  # made on another node: only the standby digest is known
            return hmac.compare_digest(self._standby_key, standby_token_key(token))
        return self.ctx.identity.same_token(self.token_key, token)

    def _state(self, after: int, token_key: bytes) -> SessionState:
        """This session as another node takes it: its log after ``after``."""
        log = self.log
        assert log is not None and self.session_id is not None
        encoding = log.encoding
        entries = [[d.event, d.encoded(encoding)] for _, d in log.after(after)]
        opened = None if self._opened is None else sorted(self._opened)
        return SessionState(
            self.session_id, token_key, self.user_id, self.intents, list(self.guild_ids),
            opened, self.status, list(self.activities), self._large_threshold,
            encoding.value, log.seq, entries)

    # -- the standby copy (gateway/replica.py) ---------------------------------------------

    def replicate_open(self, with_log: bool = True) -> None:
        """Send this session's standby copy its state (and whole log unless
        ``with_log`` is False: a guild or presence change). No-op on a lone node."""
        feed = self.ctx.replica_feed
        log = self.log
        if feed is None or log is None or self.session_id is None or self._ended \
                or self._move is not None:
            return
        if feed.standby_for(self, self.session_id) is None:
            return  # a lone node: no state to build (twice an IDENTIFY, ~10-30 us)
        feed.open(self, self._state(log.seq - len(log) if with_log else log.seq,
                                    self._standby_key), with_log)

    def _catch_up_seq(self, client_seq: int | None) -> None:
        """A promoted copy may lag the client by its home's last loop turn (sent to the
        socket, never replicated): continue numbering after the client's seq."""
        replay_log = self.log
        if self._promoted and replay_log is not None and client_seq is not None \
                and client_seq > replay_log.seq:
            log.info("session %s resumed %d ahead of its standby copy", self.session_id,
                     client_seq - replay_log.seq)
            replay_log.skip_to(client_seq)

    def _promote(self, msg: Promote) -> None:
        """Become the session whose home node died, from its standby copy: detached,
        subscribed to its guilds in place of the dead session, waiting for a RESUME."""
        state = msg.state
        if self.log is not None or self._ended:
            return
        self.session_id = state.session_id
        self._standby_key = state.token_key  # replica.standby_token_key
        if not self._adopt(state):
            self._end()
            return
        self._promoted = True
        self._expiry = self.start_timer(self.ctx.resume_window_s, "resume-window")
        # what its home got and did not replicate in its last moments
        self._rejoin(msg.address, msg.heard_at - CATCH_UP_MARGIN_S)

    def _rejoin(self, replaces: Any, since_s: float) -> None:
        """A session made again from its state (a promotion, its host's restart):
        reachable, subscribed to its guilds in place of its dead address ``replaces``
        (again until each answers), replicated, and caught up from storage on what
        went with the dead one (``since_s``: see ``_plan_catch_up``)."""
        self._remember()
        self._subscribe_all(replaces)
        self.replicate_open()
        self._plan_catch_up(None, since_s)
        if self._unanswered is None:
            self._start_catch_up()
        else:  # what a guild sends before the read starts is held too: it is newer
            self._hold_deliveries()

    def _subscribe_all(self, replaces: Any) -> None:
        """Subscribe to every guild of the session (in place of ``replaces``, if not
        None), again every ``RESUBSCRIBE_S`` until each answers."""
        self._unanswered = set(self.guild_ids) or None
        for guild_id in self.guild_ids:
            self._subscribe(guild_id, replaces=replaces)
            self.start_timer(RESUBSCRIBE_S, ("resubscribe", guild_id))

    def _superseded(self, msg: Superseded) -> None:
        """Another node promoted its copy of this session (gateway/replica.py) while
        it took this node for gone, and the guilds dropped this one or swapped it for
        that copy: subscribe again (beside it) and catch up from storage on what came
        meanwhile, so this session's client misses nothing. The copy, detached,
        expires after its resume window. Once per other copy: its re-opens repeat."""
        if self._ended or self.log is None or self.session_id is None \
                or self._move is not None or msg.other == self._rival:
            return
        self._rival = msg.other
        log.info("session %s also lives at %s (promoted while this node was taken for "
                 "gone): subscribing again", self.session_id, msg.other)
        self._plan_catch_up(None, catch_up_since())
        self._subscribe_all(None)
        # its standby dropped its copy when it promoted it: send it again (the other
        # session gets a Superseded in turn, once)
        self.replicate_open()
        if self._unanswered is None:
            self._start_catch_up()
        else:  # held until the read, as after a promotion
            self._hold_deliveries()

    # -- its host died (gateway/services.py) ------------------------------------------------

    def _host_died(self, sender: Any) -> bool:
        """Whether this ``ActorExitRequest`` comes from the session host dying (killed,
        any cause) rather than being stopped (the node stopping): a stopped host was
        told so first (``SessionHost.stopping``); a killed one never is."""
        host = self._myRef.parent
        cell = getattr(host, "_cell", None)
        return sender == host and cell is not None and not cell.alive \
            and isinstance(cell.instance, SessionHost) and not cell.instance.stopping

    def _orphan(self) -> None:
        """This session dies with its host: keep what rebuilds it in ``ctx.orphans``
        for the host's next incarnation (``Gateway._session_host_started``), and let go
        of only what names this address; its guilds, its standby's node and its home's
        directory keep it (the guilds drop this address at its Down or the new
        session's Subscribe). A session not past READY, or moving between nodes, ends
        as before (its client is told by the edge)."""
        log_, link = self.log, self.link
        if self._ended or log_ is None or self.session_id is None or self._move is not None:
            if link is not None and link.session is None and not link.closed:
                # an IDENTIFY in flight: its READY never comes; the client reconnects
                link.execute(link.conn.close(CloseCode.UNKNOWN_ERROR, "session lost"))
            self._end(exiting=True)
            return
        self._ended = True
        pending = self._catch_up
        self.ctx.orphans[self.myAddress.id] = Orphan(
            self.myAddress, link, log_, self._state(log_.seq, self.token_key),
            self._standby_key, self._promoted, pending, self._delivered_ids,
            catch_up_since())
        feed = self.ctx.replica_feed
        if feed is not None:  # the copy is sent again (whole) by the new session
            feed.close(self, self.session_id)
        if self.ctx.sessions.get(self.session_id) == self.myAddress:
            del self.ctx.sessions[self.session_id]
        self._forget_user()
        self.log = None

    def _restore_orphan(self, orphan: Orphan) -> None:
        """Become the session that died with the host before this one: the same id,
        log (so the same sequence numbers), socket, user, intents, guilds and presence;
        subscribed to its guilds in place of the dead address and caught up from
        storage on what was posted meanwhile. Its client sees nothing of it."""
        state = orphan.state
        if self.log is not None or self._ended:
            return
        self.session_id = state.session_id
        self._adopt(state, kept=orphan.log)
        self.token_key, self._standby_key = state.token_key, orphan.standby_key
        self._promoted = orphan.promoted
        self.link = orphan.link
        if self.link is None:  # detached: a new window for its RESUME
            self._expiry = self.start_timer(self.ctx.resume_window_s, "resume-window")
        # a catch-up the dead one had planned reads from further back: kept, and so
        # are the ids delivered since it was planned (``_plan_catch_up`` merges this one)
        self._catch_up, self._delivered_ids = orphan.catch_up, orphan.delivered_ids
        if orphan.delivered_ids is not None:
            self.deliver_dispatch = self._deliver_noting  # type: ignore[method-assign]
        self._rejoin(orphan.address, orphan.since_s)

    # -- the catch-up from storage -----------------------------------------------------------

    def dispatches_lost(self, since_s: float) -> None:
        """Dispatches bound for this session were lost (the node's fan-out point died
        with them queued): deliver from storage the messages of all its guilds it may
        have missed (``since_s``: ``catch_up_since()``, where the log has none). Called
        by the fan-out point's next incarnation on this loop thread before its first
        delivery, so the log still ends where the loss began."""
        if self.log is None or self._ended:
            return
        self._plan_catch_up(None, since_s)
        if not self._unanswered:
            self._start_catch_up()

    def _plan_catch_up(self, guilds: frozenset[int] | None, since_s: float) -> None:
        """Note where a catch-up of ``guilds`` (None: all) reads from: in each channel,
        after the newest message the log holds (what came before was delivered), else
        after ``since_s``. From now on, deliveries note their message ids, so the
        catch-up skips what arrives live meanwhile; it starts once every guild it waits
        for has answered (``_start_catch_up``)."""
        log = self.log
        if log is None or self._ended:
            return
        pending = self._catch_up
        if pending is None:
            self._catch_up = (newest_message_ids(d for _, d in log.after(0)), since_s, guilds)
        else:  # the earlier one's cursor is older: it covers this loss too
            newest, earlier, planned = pending
            self._catch_up = (newest, min(earlier, since_s),
                              None if guilds is None or planned is None else planned | guilds)
        if self._delivered_ids is None:
            self._delivered_ids = set()
            # only this session's deliveries note message ids (the class's stay as cheap)
            self.deliver_dispatch = self._deliver_noting  # type: ignore[method-assign]

    def _deliver_noting(self, dispatch: PreparedDispatch, trace: dict | None = None) -> None:
        """``deliver_dispatch`` around a catch-up: a MESSAGE_CREATE delivered already
        (from the catch-up, or live) is not delivered twice."""
        delivered = self._delivered_ids
        if delivered is not None and dispatch.event == "MESSAGE_CREATE":
            try:
                message_id = dispatch.data["id"]
            except (RuntimeError, KeyError, TypeError):
                message_id = None
            if message_id is not None:
                if self._tail is not None:
                    self._settle_tail(dispatch.data.get("channel_id"), int(message_id))
                if message_id in delivered:
                    return
                delivered.add(message_id)
        SessionActor.deliver_dispatch(self, dispatch, trace)

    def _deliver_holding(self, dispatch: PreparedDispatch, trace: dict | None = None) -> None:
        """``deliver_dispatch`` while a catch-up reads: held, so that the older messages
        it finds come first (the channel's order). Past the log's size (a slow read)
        they go live again, noted."""
        held = self._held
        if held is not None:
            held.append((dispatch, trace))
            log = self.log
            if log is None or len(held) <= log.max_entries:
                return
            self._release()
            self.deliver_dispatch = self._deliver_noting  # type: ignore[method-assign]
            return
        self._deliver_noting(dispatch, trace)

    def _hold_deliveries(self) -> None:
        """From now on hold what the guilds send (``_deliver_holding``) until the
        catch-up's read is in; what is held already (since the catch-up was planned)
        stays held."""
        if self._held is None:
            self._held = []
        self.deliver_dispatch = self._deliver_holding  # type: ignore[method-assign]

    def _release(self) -> None:
        held, self._held = self._held, None
        for dispatch, trace in held or ():
            self._deliver_noting(dispatch, trace)

    def _start_catch_up(self) -> None:
        """Every guild answered: read back from storage the messages this session may
        have missed (a promoted copy: what its home got and did not replicate; after a
        crash: what went with the guild or the fan-out point) and deliver those not
        delivered, in order, before what arrives live meanwhile."""
        if self._reading or self._ended:
            return  # the read in flight starts this one when it is done
        catch_up, self._catch_up = self._catch_up, None
        if catch_up is None:
            return
        newest, since_s, guilds = catch_up
        if self._dedup_timer is not None:
            self.cancel_timer(self._dedup_timer)
            self._dedup_timer = None
        self._reading = True
        self._hold_deliveries()
        self.run_io(read_missed_messages(
            self.ctx, user_id=self.user_id, intents=self.intents,
            guild_ids=[g for g in self.guild_ids
                       if (guilds is None or g in guilds)
                       and (self._opened is None or g in self._opened)],
            newest=newest, since_s=since_s), "catch-up")

    def _caught_up(self, msg: IODone) -> None:
        self._reading = False
        self.deliver_dispatch = self._deliver_noting  # type: ignore[method-assign]
        if msg.error is not None:
            log.warning("catch-up of %s from storage failed", self.session_id,
                        exc_info=msg.error)
        elif not self._ended:
            self._deliver_read(msg.result)
        self._release()
        if self._catch_up is not None and not self._unanswered:
            self._start_catch_up()  # planned while this one read
        elif self._dedup_timer is None:
            self._dedup_timer = self.start_timer(CATCH_UP_DEDUP_S, "caught-up")
        self._hand_over_if_caught_up()

    def _deliver_read(self, payloads: list[dict[str, Any]]) -> None:
        """Of what a catch-up read (oldest first): deliver what comes before the first
        live message held in its channel; drop what comes after it (a channel fans out
        in order: that comes live too); keep the rest for the channel's next live
        message (``_tail``)."""
        first_live: dict[str, int] = {}
        for dispatch, _ in self._held or ():
            if dispatch.event == "MESSAGE_CREATE":
                try:
                    first_live.setdefault(dispatch.data["channel_id"], int(dispatch.data["id"]))
                except (RuntimeError, KeyError, TypeError, ValueError):
                    pass
        for payload in payloads:
            live = first_live.get(payload["channel_id"])
            if live is None:
                if self._tail is None:
                    self._tail = {}
                    self.start_timer(CATCH_UP_TAIL_S, "tail")
                self._tail.setdefault(payload["channel_id"], []).append(payload)
            elif int(payload["id"]) < live:
                self._deliver_noting(PreparedDispatch("MESSAGE_CREATE", payload))

    def _settle_tail(self, channel_id: Any, message_id: int) -> None:
        """A live message in ``channel_id``: what the catch-up read there before it is
        delivered first; what it read after it comes live."""
        tail = self._tail
        assert tail is not None
        read = tail.pop(channel_id, None)
        if not tail:
            self._tail = None
        for payload in read or ():
            if int(payload["id"]) < message_id:
                self._deliver_noting(PreparedDispatch("MESSAGE_CREATE", payload))

    def _flush_tail(self) -> None:
        """No live message came in their channels: what the catch-up read there was
        fanned out before this session subscribed."""
        tail, self._tail = self._tail, None
        if not self._ended:
            for read in (tail or {}).values():
                for payload in read:
                    self._deliver_noting(PreparedDispatch("MESSAGE_CREATE", payload))
        self._hand_over_if_caught_up()

    def _moved_in(self) -> None:
        """New side: every guild cut over (or the wait ran out). Record what the guilds
        sent straight here, become reachable, and answer the RESUME (replay, RESUMED)."""
        move, self._move = self._move, None
        log = self.log
        assert move is not None and log is not None and self.session_id is not None
        if move.timer is not None:
            self.cancel_timer(move.timer)
        for dispatch in move.held:
            log.append(dispatch)
        self._remember()
        self._tell_home(self.myAddress.node)
        link = self.link
        if link is not None:
            link.resume_ok(log, intents=self.intents, seq=move.event.seq)
            if link.conn.log is not log:  # refused (seq out of range): kept for a RESUME
                self.link = None
        if self.link is None:
            self._expiry = self.start_timer(self.ctx.resume_window_s, "resume-window")
        self.replicate_open()

    def _move_failed(self) -> None:
        """New side: no such session there (or a bad answer): INVALID_SESSION."""
        move, self._move = self._move, None
        if move is not None and move.watch is not None:
            self.demonitor(move.watch)
        log.info("RESUME of %s failed (asked %s)", self.session_id,
                 None if move is None else move.target)
        link, self.link = self.link, None
        if link is not None:
            link.execute(link.conn.resume_failed())
            link.session = None
        self.session_id = None  # never registered: nothing to forget
        self._end()

    def _move_timed_out(self) -> None:
        move = self._move
        if move is None:
            return
        move.timer = None
        if move.event is None:
            self._end()  # old side: the guilds that did not cut over get an Unsubscribe
        elif self.log is None:
            self._move_failed()  # the old node never answered
        else:
            self._moved_in()  # a guild did not answer: its dispatches may be missing

    def _tell_home(self, node: str | None) -> None:
        """Tell the directory of the node this session's id names where it lives now
        (None: it ended)."""
        home = node_of_session(self.session_id or "")
        if home is not None:
            self.send(sessions_address(home), SessionMoved(self.session_id or "", node))

    def _remember(self) -> None:
        """Make this session reachable on its node: by session id and by user."""
        self.ctx.sessions[self.session_id] = self.myAddress
        # a tuple, not a set: most users have one session (48 bytes, not 216)
        users = self.ctx.user_sessions
        users[self.user_id] = (*users.get(self.user_id, ()), self.myAddress)

    def _forget_user(self) -> None:
        users = self.ctx.user_sessions
        others = tuple(s for s in users.get(self.user_id, ()) if s != self.myAddress)
        if others:
            users[self.user_id] = others
        else:
            users.pop(self.user_id, None)

    def _end(self, exiting: bool = False) -> None:
        if self._ended:
            return
        self._ended = True
        feed = self.ctx.replica_feed
        if feed is not None and self.session_id is not None:
            feed.close(self, self.session_id)
        if self.session_id is not None:
            if self.ctx.sessions.get(self.session_id) == self.myAddress:
                del self.ctx.sessions[self.session_id]
            self._forget_user()
            if self._move is None and (node_of_session(self.session_id) != self.myAddress.node
                                       or self.session_id in self.ctx.moved):
                self._tell_home(None)  # it had moved: its home forgets where
            for guild_id in self.guild_ids:
                self.send(self.ctx.registry,
                          Route("guild", guild_id, Unsubscribe(self.myAddress)))
        self.log = None
        if not exiting:
            self.exit("normal")


class SessionHost(Actor):
    """The parent of this node's session actors: the edge creates each session as its
    child, so stopping the gateway ends every session, and no ended session stays
    referenced (the runtime keeps a child in its parent's ``children`` after it exits,
    and a top-level actor in ``primaries``; both would grow with every connection).
    Killed instead, its sessions are rebuilt under its next incarnation
    (``SessionActor._orphan``)."""

    #: told to stop (``ActorExitRequest``): its sessions end rather than wait for a
    #: next incarnation
    stopping = False

    def receiveMessage(self, msg: Any, sender: Any) -> None:
        if isinstance(msg, ActorExitRequest):
            self.stopping = True
            return
        if isinstance(msg, ChildActorExited):
            children = self._myRef.children
            if isinstance(children, dict):  # the runtime may have dropped it already
                children.pop(msg.childAddress.id, None)
            elif children:
                try:
                    children.remove(msg.childAddress)
                except ValueError:
                    pass
