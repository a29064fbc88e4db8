"""The guild actor: one per guild, activated on demand by the registry.

It loads the guild's channels, roles and members from storage when activated, keeps
the sessions subscribed to the guild, and fans dispatches out: the payload arrives
encoded once (``PreparedDispatch``) and the same object goes to every session that may
see the channel (VIEW_CHANNEL) and asked for the event by intent; sessions that may not
see the content (MESSAGE_CONTENT rule) share one redacted copy, also encoded once.

Sessions monitor the guild (a lease: the registry does not passivate it while they
live); the guild monitors its sessions to forget the ones that end.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, ClassVar

from thespian.actors import ActorExitRequest

from actors import Activated, Actor, Down, IODone
from gateway.context import GatewayContext
from gateway.messages import (
    Broadcasted,
    Deliver,
    Fanout,
    GuildBroadcast,
    Presence,
    ServiceBroadcast,
    Subscribe,
    Subscribed,
    Unsubscribe,
)
from gateway.objects import VIEW_CHANNEL, base_permissions
from gateway.protocol import (
    PreparedDispatch,
    event_allowed,
    message_content_visible,
    redact_message_content,
)
from gateway.tracing import context_of, start
from storage.model import Channel, Guild, Member, Role

log = logging.getLogger("greenroom.gateway.guild")


@dataclass(slots=True)
class _Sub:
    user_id: int
    intents: int
    permissions: int
    monitor: int


@dataclass(slots=True)
class _State:
    guild: Guild
    channels: dict[int, Channel]
    roles: dict[int, Role]


class GuildActor(Actor):
    ctx: ClassVar[GatewayContext]

    def __init__(self) -> None:
        super().__init__()
        self.guild_id = 0
        self.state: _State | None = None
        self._stash: list[tuple[Any, Any]] | None = []
        self.subs: dict[Any, _Sub] = {}
        #: user id -> session -> (order set, its presence); a user shows its latest
        #: session's.
        self.presences: dict[int, dict[Any, tuple[int, Presence]]] = {}
        #: The subscribed sessions that asked for PRESENCE_UPDATE (GUILD_PRESENCES), so a
        #: presence change costs nothing when nobody listens.
        self._watchers: set[Any] = set()
        #: Presences that arrived while their session's Subscribe was in flight.
        self._early: dict[Any, Presence] = {}
        #: user id -> the (status, activities, client_status) last dispatched.
        self._shown: dict[int, tuple[str, list[Any], dict[str, str]]] = {}
        self._presence_order = 0

    def receiveMessage(self, msg: Any, sender: Any) -> None:
        if isinstance(msg, Activated):
            self.guild_id = int(msg.key)
            self.run_io(self._load(), "load")
        elif isinstance(msg, IODone):
            self._on_io(msg)
        elif isinstance(msg, Down):
            sub = self.subs.pop(msg.address, None)
            if sub is not None:
                self._clear_presence(msg.address, sub.user_id)
        elif isinstance(msg, ActorExitRequest):
            self.subs.clear()
        elif self._stash is not None:
            self._stash.append((msg, sender))  # not loaded yet
        else:
            self._handle(msg, sender)

    def _handle(self, msg: Any, sender: Any) -> None:
        if isinstance(msg, Fanout):
            self._fanout(msg)
        elif isinstance(msg, Subscribe):
            self._subscribe(msg, sender)
        elif isinstance(msg, Unsubscribe):
            sub = self.subs.pop(msg.session, None)
            if sub is not None:
                self.demonitor(sub.monitor)
                self._clear_presence(msg.session, sub.user_id)
        elif isinstance(msg, Presence):
            if msg.session in self.subs:
                self._set_presence(msg)
            else:  # its Subscribe is still loading the member: applied once subscribed
                self._early[msg.session] = msg
        elif isinstance(msg, GuildBroadcast):
            self._broadcast(msg)
        elif isinstance(msg, ServiceBroadcast):
            self._service_broadcast(msg, sender)

    async def _load(self) -> tuple[Guild | None, list[Channel], list[Role]]:
        storage = self.ctx.storage
        guild = await storage.get_guild(self.guild_id)
        if guild is None:
            return None, [], []
        return guild, await storage.channels_for_guild(self.guild_id), \
            await storage.roles_for_guild(self.guild_id)

    def _on_io(self, msg: IODone) -> None:
        tag = msg.tag
        if tag == "load":
            if msg.error is not None or msg.result[0] is None:
                log.warning("guild %s could not be loaded: %r", self.guild_id, msg.error)
                stash, self._stash = self._stash or [], None
                for m, s in stash:
                    if isinstance(m, Subscribe):
                        self.send(s, Subscribed(self.guild_id, False))
                self.exit("normal")
                return
            guild, channels, roles = msg.result
            self.state = _State(guild, {c.id: c for c in channels}, {r.id: r for r in roles})
            stash, self._stash = self._stash or [], None
            for m, s in stash:
                self._handle(m, s)
        elif isinstance(tag, tuple) and tag[0] == "member":
            _, sub_msg, sender = tag
            member = msg.result if msg.error is None else None
            self._subscribed(sub_msg, sender, member)

    def _subscribe(self, msg: Subscribe, sender: Any) -> None:
        self.run_io(self.ctx.storage.get_member(self.guild_id, msg.user_id),
                    ("member", msg, sender))

    def _subscribed(self, msg: Subscribe, sender: Any, member: Member | None) -> None:
        early = self._early.pop(msg.session, None)
        if early is not None:
            msg.presence = early
        if member is None or self.state is None:
            self.send(sender, Subscribed(self.guild_id, False))
            return
        old = self.subs.pop(msg.session, None)
        if old is not None:
            self.demonitor(old.monitor)
        perms = base_permissions(self.state.guild, self.state.roles, member)
        self.subs[msg.session] = _Sub(msg.user_id, msg.intents, perms, self.monitor(msg.session))
        self.send(sender, Subscribed(self.guild_id, True))
        if event_allowed(msg.intents, "PRESENCE_UPDATE"):
            self._watchers.add(msg.session)
        if msg.presence is not None:
            self._set_presence(msg.presence)

    def _fanout(self, msg: Fanout) -> None:
        dispatch = msg.dispatch
        event = dispatch.event
        redacted: PreparedDispatch | None = None
        span = trace = None
        if msg.trace is not None:  # traced: guild.fanout, and each Deliver carries it
            span = start(msg.trace, "guild.fanout", {"greenroom.guild_id": self.guild_id,
                                                     "greenroom.channel_id": msg.channel_id,
                                                     "greenroom.event": event})
            trace = context_of(span)
        sent = 0
        for session, sub in self.subs.items():
            if not sub.permissions & VIEW_CHANNEL or not event_allowed(sub.intents, event):
                continue
            out = dispatch
            if msg.message is not None and not message_content_visible(
                sub.intents, msg.message, user_id=sub.user_id, direct_message=False
            ):
                if redacted is None:
                    redacted = PreparedDispatch(event, redact_message_content(msg.message))
                out = redacted
            if trace is None:
                self.send(session, Deliver(out))
            else:
                self.send(session, Deliver(out, trace))
                sent += 1
        if span is not None:
            span.set_attribute("greenroom.recipients", sent)
            span.end()

    def _service_broadcast(self, msg: ServiceBroadcast, sender: Any) -> None:
        """An internal service's event to every subscribed session (encoded once)."""
        span = start(msg.trace, "guild.fanout", {"greenroom.guild_id": self.guild_id,
                                                 "greenroom.event": msg.dispatch.event})
        trace = context_of(span)
        for session in self.subs:
            self.send(session, Deliver(msg.dispatch, trace))
        if span is not None:
            span.set_attribute("greenroom.recipients", len(self.subs))
            span.end()
        self.send(sender, Broadcasted(self.guild_id, len(self.subs)))

    def _broadcast(self, msg: GuildBroadcast) -> None:
        """A guild event: update the state, then send it to every session allowed by
        intent (and, for a channel event, with VIEW_CHANNEL)."""
        state = self.state
        if state is None:
            return
        if msg.channel is not None:
            state.channels[msg.channel.id] = msg.channel
        if msg.member_removed is not None:
            # The removed user's sessions stop getting the guild's events at once (they
            # are told GUILD_DELETE by the REST handler, and unsubscribe).
            for session, sub in list(self.subs.items()):
                if sub.user_id == msg.member_removed:
                    del self.subs[session]
                    self.demonitor(sub.monitor)
                    self._watchers.discard(session)
            self.presences.pop(msg.member_removed, None)
            self._shown.pop(msg.member_removed, None)
        dispatch = msg.dispatch
        event = dispatch.event
        need_view = msg.channel is not None
        for session, sub in self.subs.items():
            if need_view and not sub.permissions & VIEW_CHANNEL:
                continue
            if event_allowed(sub.intents, event):
                self.send(session, Deliver(dispatch))

    # -- presence -------------------------------------------------------------------------

    def _set_presence(self, presence: Presence) -> None:
        mine = self.presences.setdefault(presence.user_id, {})
        if presence.status == "offline":
            mine.pop(presence.session, None)
        else:
            self._presence_order += 1
            mine[presence.session] = (self._presence_order, presence)
        self._presence_changed(presence.user_id)

    def _clear_presence(self, session: Any, user_id: int) -> None:
        self._watchers.discard(session)
        mine = self.presences.get(user_id)
        if mine is not None and mine.pop(session, None) is not None:
            self._presence_changed(user_id)

    def _presence_changed(self, user_id: int) -> None:
        """Dispatch PRESENCE_UPDATE if what ``user_id`` shows changed: its latest live
        session's presence, or offline once it has none ("invisible" shows offline)."""
        mine = self.presences.get(user_id)
        latest = max(mine.values(), key=lambda entry: entry[0]) if mine else None
        if not mine:
            self.presences.pop(user_id, None)
        if latest is None or latest[1].status == "invisible":
            shown: tuple[str, list[Any], dict[str, str]] = ("offline", [], {})
        else:
            p = latest[1]
            shown = (p.status, list(p.activities), dict(p.client_status))
        before = self._shown.get(user_id, ("offline", [], {}))
        if shown == before:
            return
        if shown[0] == "offline":
            self._shown.pop(user_id, None)
        else:
            self._shown[user_id] = shown
        if not self._watchers:
            return
        dispatch = PreparedDispatch("PRESENCE_UPDATE", {
            "user": {"id": str(user_id)},
            "guild_id": str(self.guild_id),
            "status": shown[0],
            "activities": shown[1],
            "client_status": shown[2],
        })
        for session in self._watchers:
            if session in self.subs:
                self.send(session, Deliver(dispatch))
