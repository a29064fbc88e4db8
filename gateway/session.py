"""The session actor: one per gateway session, created when a connection IDENTIFYs.

It authenticates the token against storage, builds READY and the GUILD_CREATEs from
storage data, subscribes to its guilds, and owns the session's ``DispatchLog``: the
connection numbers and records each dispatch in it, and when the socket drops with a
resumable close the session keeps recording for ``resume_window_s``, so a RESUME on a
new connection (``Attach``) replays exactly what was missed. The session lives where its
socket landed, so it drives the socket's ``Link`` directly (same process, same loop).
"""

from __future__ import annotations

import logging
import secrets
from typing import Any, ClassVar

from thespian.actors import ActorExitRequest, ChildActorExited

from actors import Actor, Down, IODone, Timeout
from actors.registry import Route
from gateway.context import GatewayContext
from gateway.messages import (
    Attach,
    CloseSession,
    Deliver,
    Detached,
    Identify,
    JoinedGuild,
    LeftGuild,
    Presence,
    SessionClosed,
    SetPresence,
    Subscribe,
    Subscribed,
    Unsubscribe,
)
from gateway.objects import guild_object, user_object
from gateway.protocol import (
    DispatchLog,
    IdentifyRequested,
    PreparedDispatch,
    build_guild_create,
    event_allowed,
)
from gateway.protocol.close_codes import RESUMABLE
from gateway.tracing import start

log = logging.getLogger("greenroom.gateway.session")


async def load_identity(ctx: GatewayContext, token: str) -> tuple[dict, list[dict]] | None:
    """The user and full guilds for ``token`` (None: the token is not valid)."""
    storage = ctx.storage
    user_id = await storage.user_id_for_token(token)
    if user_id is None:
        return None
    user = await storage.get_user(user_id)
    if user is None:
        return None
    guilds = []
    for guild_id in await storage.guild_ids_for_user(user_id):
        guild = await load_guild(ctx, guild_id, user_id)
        if guild is not None:
            guilds.append(guild)
    return user_object(user), guilds


async def load_guild(ctx: GatewayContext, guild_id: int, user_id: int) -> dict | None:
    """The full guild (for GUILD_CREATE) as ``user_id`` sees it; None if it is gone."""
    storage = ctx.storage
    guild = await storage.get_guild(guild_id)
    if guild is None:
        return None
    channels = await storage.channels_for_guild(guild_id)
    roles = await storage.roles_for_guild(guild_id)
    members = await storage.members_for_guild(guild_id)
    users = await storage.get_users(m.user_id for m in members)
    me = next((m for m in members if m.user_id == user_id), None)
    return guild_object(
        guild, channels, roles, [(m, users.get(m.user_id)) for m in members],
        joined_at_ms=me.joined_at_ms if me else None,
    )


class SessionActor(Actor):
    ctx: ClassVar[GatewayContext]

    def __init__(self) -> None:
        super().__init__()
        self.link: Any = None
        self.session_id: str | None = None
        self.token = ""
        self.user_id = 0
        self.intents = 0
        self.log: DispatchLog | None = None
        self.guild_ids: list[int] = []
        self._expiry: int | None = None
        self._guilds: dict[Any, int] = {}  # guild actor address -> guild id (monitored)
        self._ended = False
        self._identify_span: Any = None
        self._monitors: dict[Any, int] = {}  # guild actor address -> monitor ref
        self.status = "online"
        self.activities: list[Any] = []
        self._large_threshold = 50

    def receiveMessage(self, msg: Any, sender: Any) -> None:
        if isinstance(msg, Deliver):
            self._deliver(msg)
        elif isinstance(msg, CloseSession):
            self._close_session(msg, sender)
        elif isinstance(msg, Identify):
            # session.identify: from the IDENTIFY to its answer (READY or a close)
            self._identify_span = start(msg.trace, "session.identify")
            self.link = msg.link
            self.token = msg.event.token
            self.run_io(load_identity(self.ctx, msg.event.token), msg.event)
        elif isinstance(msg, IODone):
            if isinstance(msg.tag, tuple) and msg.tag[0] == "join":
                self._joined(msg)
            else:
                self._identified(msg)
        elif isinstance(msg, SetPresence):
            self._set_presence(msg)
        elif isinstance(msg, (JoinedGuild, LeftGuild)):
            # Only sessions past READY are in ``ctx.user_sessions``, so only they get these.
            self._membership(msg)
        elif isinstance(msg, Subscribed):
            if msg.member and not self._ended and sender not in self._guilds \
                    and msg.guild_id in self.guild_ids:
                self._guilds[sender] = msg.guild_id
                self._monitors[sender] = self.monitor(sender)
        elif isinstance(msg, Down):
            # A guild crashed or its registry stopped: subscribe to its next incarnation.
            guild_id = self._guilds.pop(msg.address, None)
            self._monitors.pop(msg.address, None)
            if guild_id is not None and not self._ended:
                self._subscribe(guild_id)
        elif isinstance(msg, Detached):
            self._detached(msg)
        elif isinstance(msg, Attach):
            self._attach(msg)
        elif isinstance(msg, Timeout):
            if self.link is None:
                self._end()
        elif isinstance(msg, ActorExitRequest):
            self._end(exiting=True)

    # -- identify ------------------------------------------------------------------------

    def _identified(self, msg: IODone) -> None:
        span, self._identify_span = self._identify_span, None
        if span is not None:
            span.end()
        link = self.link
        event: IdentifyRequested = msg.tag
        if link is None:  # the socket closed while we were loading
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
        user, guilds = msg.result
        budget = self.ctx.identify_budget
        if budget is not None and not budget.take(event.token):
            # Over session_start_limit (total or max_concurrency): op 9 d=false.
            link.execute(link.conn.identify_rate_limited())
            self._end()
            return
        self.user_id = int(user["id"])
        presence = event.presence or {}
        if isinstance(presence.get("status"), str):
            self.status = presence["status"]
        if isinstance(presence.get("activities"), list):
            self.activities = presence["activities"]
        self._large_threshold = event.large_threshold
        self.intents = event.intents
        self.session_id = secrets.token_hex(16)
        self.guild_ids = [int(g["id"]) for g in guilds]
        effects = link.conn.identified(
            session_id=self.session_id,
            user=user,
            guilds=guilds,
            application={"id": user["id"], "flags": 0},
            resume_gateway_url=self.ctx.gateway_url,
        )
        self.log = link.conn.log
        self.ctx.sessions[self.session_id] = self.myAddress
        self.ctx.user_sessions.setdefault(self.user_id, set()).add(self.myAddress)
        link.session = self.myAddress
        link.execute(effects)
        self._subscribe_all()

    def _subscribe_all(self) -> None:
        for guild_id in self.guild_ids:
            self._subscribe(guild_id)

    def _subscribe(self, guild_id: int) -> None:
        subscribe = Subscribe(self.myAddress, self.user_id, self.intents, self._presence())
        self.send(self.ctx.registry, Route("guild", guild_id, subscribe))

    def _presence(self) -> Presence:
        return Presence(self.myAddress, self.user_id, self.status, list(self.activities),
                        {"web": self.status} if self.status not in ("offline", "invisible")
                        else {})

    # -- presence, guilds joined and left --------------------------------------------------

    def _set_presence(self, msg: SetPresence) -> None:
        if self._ended or self.session_id is None:
            return
        self.status, self.activities = msg.status, list(msg.activities)
        presence = self._presence()
        for guild_id in self.guild_ids:
            self.send(self.ctx.registry, Route("guild", guild_id, presence))

    def _membership(self, msg: JoinedGuild | LeftGuild) -> None:
        if isinstance(msg, LeftGuild):
            self._left(msg.guild_id)
        elif not self._ended and msg.guild_id not in self.guild_ids:
            self.run_io(load_guild(self.ctx, msg.guild_id, self.user_id),
                        ("join", msg.guild_id))

    def _joined(self, msg: IODone) -> None:
        guild_id = msg.tag[1]
        guild = msg.result if msg.error is None else None
        if guild is None or self._ended or guild_id in self.guild_ids:
            return
        self.guild_ids.append(guild_id)
        self._subscribe(guild_id)
        if event_allowed(self.intents, "GUILD_CREATE"):
            data = build_guild_create(guild, intents=self.intents, user_id=self.user_id,
                                      large_threshold=self._large_threshold)
            self._deliver(Deliver(PreparedDispatch("GUILD_CREATE", data)))

    def _left(self, guild_id: int) -> None:
        if self._ended or guild_id not in self.guild_ids:
            return
        self.guild_ids.remove(guild_id)
        self.send(self.ctx.registry, Route("guild", guild_id, Unsubscribe(self.myAddress)))
        for address, gid in list(self._guilds.items()):
            if gid == guild_id:
                del self._guilds[address]
                ref = self._monitors.pop(address, None)
                if ref is not None:
                    self.demonitor(ref)
        if event_allowed(self.intents, "GUILD_DELETE"):
            self._deliver(Deliver(PreparedDispatch("GUILD_DELETE", {"id": str(guild_id)})))

    # -- dispatch ------------------------------------------------------------------------

    def _deliver(self, msg: Deliver) -> None:
        link = self.link
        if link is not None and self.log is not None and link.conn.log is self.log:
            if msg.trace is None:
                link.execute(link.conn.dispatch(msg.dispatch))
            else:  # traced: the session's hop and its socket write, one span per recipient
                span = start(msg.trace, "socket.out", {"greenroom.session_id": self.session_id,
                                                       "greenroom.event": msg.dispatch.event})
                link.execute(link.conn.dispatch(msg.dispatch))
                span.set_attribute("greenroom.seq", self.log.seq)
                span.end()
        elif self.log is not None and not self._ended:
            self.log.append(msg.dispatch)  # detached: recorded for the RESUME

    def _close_session(self, msg: CloseSession, sender: Any) -> None:
        """An internal service disconnects this session: close its socket with
        ``msg.code``. A code in ``RESUMABLE`` (4000 by default) keeps the session for a
        RESUME, as after any resumable close; any other code ends it."""
        span = start(msg.trace, "session.close", {"greenroom.session_id": self.session_id,
                                                  "greenroom.close_code": msg.code})
        resumable = msg.code in RESUMABLE and not self._ended
        link = self.link
        if link is not None:
            # The socket's Detached follows and keeps or ends the session by this close.
            link.execute(link.conn.close(msg.code, msg.reason or "closed by a service"))
        elif not resumable:
            self._end()
        if span is not None:
            span.end()
        self.send(sender, SessionClosed(self.session_id or "", msg.code, resumable))

    # -- connections come and go -----------------------------------------------------------

    def _detached(self, msg: Detached) -> None:
        if msg.link is not self.link:
            return
        self.link = None
        if msg.resumable and self.log is not None:
            self._expiry = self.start_timer(self.ctx.resume_window_s, "resume-window")
        else:
            self._end()

    def _attach(self, msg: Attach) -> None:
        link = msg.link
        if self._ended or self.log is None or msg.event.token != self.token:
            link.execute(link.conn.resume_failed())
            return
        old = self.link
        if old is not None:  # a RESUME on a new socket replaces the old one
            self.link = None
            old.execute(old.conn.close(4000, "session resumed elsewhere"))
        if self._expiry is not None:
            self.cancel_timer(self._expiry)
            self._expiry = None
        self.link = link
        link.session = self.myAddress
        link.execute(link.conn.resume_ok(self.log, intents=self.intents))

    def _end(self, exiting: bool = False) -> None:
        if self._ended:
            return
        self._ended = True
        if self.session_id is not None:
            self.ctx.sessions.pop(self.session_id, None)
            mine = self.ctx.user_sessions.get(self.user_id)
            if mine is not None:
                mine.discard(self.myAddress)
                if not mine:
                    del self.ctx.user_sessions[self.user_id]
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
    and a top-level actor in ``primaries``; both would grow with every connection)."""

    def receiveMessage(self, msg: Any, sender: Any) -> None:
        if isinstance(msg, ChildActorExited):
            children = self._myRef.children
            if children:
                try:
                    children.remove(msg.childAddress)
                except ValueError:
                    pass
