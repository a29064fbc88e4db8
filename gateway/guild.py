"""The guild actor: one per guild, activated on demand by the registry.

It loads the guild's channels, roles and members from storage when activated, keeps
the sessions subscribed to the guild, and fans dispatches out: the payload arrives
encoded once (``PreparedDispatch``) and goes, as one ``NodeFanout`` per node that hosts
recipients (gateway/fanout.py), to every session that may see the channel
(VIEW_CHANNEL, the channel's permission overwrites applied) and asked for the event by
intent; sessions that may not see the content
(MESSAGE_CONTENT rule) share one redacted copy, also encoded once. Who gets a message
event is computed once per event name and cached until the subscriptions change;
passive sessions (gateway/fanout.py) get no message events.

Sessions monitor the guild (a lease: the registry does not passivate it while they
live); the guild monitors its sessions to forget the ones that end (a node that is
gone ends its sessions: their monitors fire ``noconnection``).

Nothing routed to a guild is dropped while it changes hands. A new incarnation holds
what arrives while its state loads and handles it in order once loaded. A session whose
``Subscribe`` waits for its member's read gets, once subscribed, the message events
fanned out meanwhile (``_joining``). An incarnation that is stopped (its guild moved to
another node) routes what it still holds — not yet loaded, or subscriptions waiting for
their member — back through the registry, to the guild's new home.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

from thespian.actors import ActorExitRequest

from actors import Activated, Actor, Down, IODone, Overloaded, Timeout
from actors.address import Address
from actors.registry import Route
from chat.objects import channel_object
from chat.overwrites import GuildOverwrites, guild_overwrites
from chat.permissions import VIEW_CHANNEL, Overwrite, base_permissions, in_channel
from gateway.context import GatewayContext
from gateway.fanout import NodeFanout, fanout_address, payload_for
from gateway.messages import (
    Activate,
    Broadcasted,
    CloseSession,
    Cutover,
    Fanout,
    GuildBroadcast,
    OverwriteChanged,
    Presence,
    ServiceBroadcast,
    Subscribe,
    Subscribed,
    Unsubscribe,
)
from gateway.protocol import (
    PreparedDispatch,
    event_allowed,
    redact_message_content,
)
from gateway.protocol.close_codes import REASONS, CloseCode
from gateway.protocol.intents import MESSAGE_CONTENT
from gateway.stages import record_stage
from gateway.tracing import context_of, start
from observability.logging import LogThrottle
from storage.model import Channel, Guild, Member, Role

log = logging.getLogger("greenroom.gateway.guild")
#: an overloaded fan-out point bounces in bursts: one line a second per node
_bounced_lines = LogThrottle(interval=1.0)

#: Tries to load a guild's state again after a storage error, LOAD_RETRY_S x n apart,
#: before its held Subscribes are refused and it stops.
LOAD_RETRIES = 3
LOAD_RETRY_S = 0.2
_RELOAD = "guild-reload"

#: Message events kept for sessions whose Subscribe is reading their member (bounded:
#: past it the oldest are not replayed).
JOINING_BACKLOG = 10_000


@dataclass(slots=True)
class _Sub:
    user_id: int
    intents: int
    permissions: int
    monitor: int
    #: False: a passive session (gateway/fanout.py): no message events.
    active: bool = True
    #: the member's roles (whose overwrites apply to it in a channel)
    roles: tuple[int, ...] = ()


@dataclass(slots=True)
class _NodePlan:
    """A message event's recipients on one node, as actor ids (the wire's form)."""

    node: str
    point: Any  # the node's fan-out point
    #: sessions that see the content whatever the message (MESSAGE_CONTENT intent)
    always: tuple[int, ...]
    #: (session id, user id) of the others: the content only if they wrote the message
    #: or are mentioned in it
    check: tuple[tuple[int, int], ...]
    #: ``always`` and the ``check`` sessions: everyone, for a payload without content
    everyone: tuple[int, ...]


@dataclass(slots=True)
class _State:
    guild: Guild
    channels: dict[int, Channel]
    roles: dict[int, Role]
    #: the channels' permission overwrites (channels without any absent)
    overwrites: GuildOverwrites = field(default_factory=dict)


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
        #: event name -> its recipients by node (``_plan``), for every channel without
        #: permission overwrites; (channel id, event name) -> those of a channel with
        #: some. Cleared whenever ``subs`` or an overwrite changes.
        self._plans: dict[Any, list[_NodePlan]] = {}
        #: sessions whose op 14 came while their Subscribe was in flight
        self._early_active: set[Any] = set()
        #: session -> (its Subscribe, sender, position in ``_missed``) while the
        #: Subscribe reads its member: the message events after that position reach it
        #: once it is subscribed
        self._joining: dict[Any, tuple[Subscribe, Any, int]] = {}
        #: the message events fanned out while some session is joining (``_joining``)
        self._missed: list[Fanout] = []
        self._missed_base = 0  # events dropped off the front of ``_missed``
        self._load_failures = 0

    def receiveMessage(self, msg: Any, sender: Any) -> None:
        if isinstance(msg, Activated):
            self.guild_id = int(msg.key)
            self.run_io(self._load(), "load")
        elif isinstance(msg, Timeout) and msg.payload == _RELOAD:
            self.run_io(self._load(), "load")
        elif isinstance(msg, IODone):
            self._on_io(msg)
        elif isinstance(msg, Down):
            self._early_active.discard(msg.address)
            sub = self.subs.pop(msg.address, None)
            if sub is not None:
                self._plans.clear()
                self._clear_presence(msg.address, sub.user_id)
        elif isinstance(msg, ActorExitRequest):
            self._pass_on()
            self.subs.clear()
            self._plans.clear()
        elif self._stash is not None:
            self._stash.append((msg, sender))  # not loaded yet
        else:
            self._handle(msg, sender)

    def _handle(self, msg: Any, sender: Any) -> None:
        if isinstance(msg, Fanout):
            if msg.sent_at is None:  # an edit, a delete...: not a timed create
                self._fanout(msg)
                return
            record_stage("channel_to_guild", time.time() - msg.sent_at)
            started = time.perf_counter()
            self._fanout(msg)
            record_stage("guild_fanout", time.perf_counter() - started)
        elif isinstance(msg, Subscribe):
            self._subscribe(msg, sender)
        elif isinstance(msg, Unsubscribe):
            self._early_active.discard(msg.session)
            self._joining.pop(msg.session, None)
            self._drop_sub(msg.session)
        elif isinstance(msg, Activate):
            sub = self.subs.get(msg.session)
            if sub is None:
                self._early_active.add(msg.session)
            elif not sub.active:
                sub.active = True
                self._plans.clear()
        elif isinstance(msg, Presence):
            if msg.session in self.subs:
                self._set_presence(msg)
            else:  # its Subscribe is still loading the member: applied once subscribed
                self._early[msg.session] = msg
        elif isinstance(msg, GuildBroadcast):
            self._broadcast(msg)
        elif isinstance(msg, OverwriteChanged):
            self._overwrite_changed(msg)
        elif isinstance(msg, ServiceBroadcast):
            self._service_broadcast(msg, sender)
        elif isinstance(msg, Overloaded) and isinstance(msg.message, NodeFanout):
            self._bounced(msg)

    def _bounced(self, msg: Overloaded) -> None:
        """A NodeFanout came back: its node's fan-out point had no room for it (or the
        data plane's link to that node none). Its sessions cannot have every dispatch in
        order, so each leaves this guild's plans and is closed 4009 to start anew, as
        when the fan-out point sheds one (gateway/fanout.py, "Turns"). Unlike a shed,
        the close may reach a session after a later fan-out did; and over a link that is
        full, the close may be refused too."""
        fanout, node = msg.message, msg.target.node
        closing = CloseSession(CloseCode.SESSION_TIMED_OUT, REASONS[CloseCode.SESSION_TIMED_OUT])
        closed = 0
        for actor_id in (*fanout.to, *(fanout.redacted_to or ())):
            session = Address(node, actor_id)
            # out of the plans at once: no later fan-out goes to it, nor another close
            if self._drop_sub(session):  # (not closed for an earlier bounce, nor gone)
                self.send(session, closing)
                closed += 1
        held = _bounced_lines.allow(node)
        if held is not None:
            log.warning("guild.fanout_bounced", extra={
                "guild_id": self.guild_id, "node": node, "suppressed": held,
                "sessions_closed": closed})

    def _drop_sub(self, session: Any) -> bool:
        """Forget ``session``'s subscription, if it has one (whether it had): out of the
        plans, no longer monitored, its presence cleared."""
        sub = self.subs.pop(session, None)
        if sub is None:
            return False
        self._plans.clear()
        self.demonitor(sub.monitor)
        self._clear_presence(session, sub.user_id)
        return True

    def _pass_on(self) -> None:
        """Stopping (handed over, passivated or shut down): route what this incarnation
        still holds back through the registry, with its original senders, so the next
        incarnation (on the guild's new node) handles it in the same order."""
        held = [(m, s) for m, s, _ in self._joining.values()]
        held += self._stash or []
        self._stash, self._joining = None, {}
        registry = self.ctx.registry
        for msg, sender in held:
            self.forward(registry, Route("guild", self.guild_id, msg), sender)

    async def _load(self) -> tuple[Guild | None, list[Channel], list[Role], GuildOverwrites]:
        storage = self.ctx.storage
        guild = await storage.get_guild(self.guild_id)
        if guild is None:
            return None, [], [], {}
        return guild, await storage.channels_for_guild(self.guild_id), \
            await storage.roles_for_guild(self.guild_id), \
            await guild_overwrites(storage, self.guild_id)

    def _on_io(self, msg: IODone) -> None:
        tag = msg.tag
        if tag == "load":
            if msg.error is not None and self._load_failures < LOAD_RETRIES:
                # storage hiccup (a failover's moment): what is stashed waits for a retry
                self._load_failures += 1
                log.info("guild %s: loading failed (%r); retry %d of %d", self.guild_id,
                         msg.error, self._load_failures, LOAD_RETRIES)
                self.start_timer(LOAD_RETRY_S * self._load_failures, _RELOAD)
                return
            if msg.error is not None or msg.result[0] is None:
                log.warning("guild %s could not be loaded: %r", self.guild_id, msg.error)
                stash, self._stash = self._stash or [], None
                for m, s in stash:
                    if isinstance(m, Subscribe):
                        self.send(s, Subscribed(self.guild_id, False))
                self.exit("normal")
                return
            guild, channels, roles, overwrites = msg.result
            self.state = _State(guild, {c.id: c for c in channels}, {r.id: r for r in roles},
                                overwrites)
            stash, self._stash = self._stash or [], None
            for m, s in stash:
                self._handle(m, s)
        elif isinstance(tag, tuple) and tag[0] == "member":
            _, sub_msg, sender = tag
            member = msg.result if msg.error is None else None
            self._subscribed(sub_msg, sender, member)

    def _subscribe(self, msg: Subscribe, sender: Any) -> None:
        if msg.member is not None:  # read by the session's IDENTIFY a moment ago
            self._subscribed(msg, sender, msg.member)
            return
        self._joining[msg.session] = (msg, sender, self._missed_base + len(self._missed))
        self.run_io(self.ctx.storage.get_member(self.guild_id, msg.user_id),
                    ("member", msg, sender))

    def _subscribed(self, msg: Subscribe, sender: Any, member: Member | None) -> None:
        joining = self._joining.get(msg.session)
        missed: list[Fanout] | None = None
        if joining is not None and joining[0] is msg:
            del self._joining[msg.session]
            missed = self._missed_since(joining[2])
            if not self._joining:
                self._missed = []
                self._missed_base = 0
        early = self._early.pop(msg.session, None)
        if early is not None:
            msg.presence = early
        if member is None or self.state is None:
            self.send(sender, Subscribed(self.guild_id, False))
            return
        # it saw what was fanned out meanwhile if it was subscribed already, or if the
        # session it replaces (a RESUME elsewhere) still is and forwards it
        saw = msg.session in self.subs or (msg.replaces is not None
                                           and msg.replaces in self.subs)
        old = self.subs.pop(msg.session, None)
        if old is not None:
            self.demonitor(old.monitor)
        perms = base_permissions(self.state.guild, self.state.roles, member)
        active = msg.active or msg.session in self._early_active
        self._early_active.discard(msg.session)
        self.subs[msg.session] = _Sub(msg.user_id, msg.intents, perms, self.monitor(msg.session),
                                      active, tuple(member.roles))
        self._plans.clear()
        self.send(sender, Subscribed(self.guild_id, True))
        if event_allowed(msg.intents, "PRESENCE_UPDATE"):
            self._watchers.add(msg.session)
        if msg.presence is not None:
            self._set_presence(msg.presence)
        if missed and not saw:
            self._replay(msg.session, missed)
        if msg.replaces is not None:
            self._cut_over(msg.replaces)

    def _cut_over(self, old: Any) -> None:
        """A session moved to another node (a RESUME there): drop its old address once
        the new one is subscribed (so no dispatch falls between), and tell the old one,
        through its node's fan-out point and so behind every dispatch sent to it, that
        nothing more comes (it forwards what it got until then, then the ``Cutover``)."""
        self._early_active.discard(old)
        self._drop_sub(old)
        view = self.ctx.cluster
        if view is None or old.node == self.myAddress.node or old.node in view.members.nodes:
            # (a session promoted from its standby copy replaces one whose node died:
            # nobody there to tell, gateway/replica.py)
            self.send(fanout_address(old.node), Cutover(self.guild_id, old.id))

    def _missed_since(self, since: int) -> list[Fanout]:
        """The message events fanned out since position ``since`` of ``_missed``."""
        if since < self._missed_base:
            log.warning("guild %s: %d events fanned out while a session joined were not "
                        "kept (JOINING_BACKLOG)", self.guild_id, self._missed_base - since)
        return self._missed[max(0, since - self._missed_base):]

    def _replay(self, session: Any, missed: list[Fanout]) -> None:
        """The message events fanned out while ``session``'s Subscribe read its member,
        to it alone, as ``_fanout`` would have sent them (intents, VIEW_CHANNEL,
        MESSAGE_CONTENT)."""
        sub = self.subs[session]
        here = self.myAddress.node
        point = fanout_address(session.node)
        remote: dict[PreparedDispatch, Any] = {}
        for fanout in missed:
            dispatch = fanout.dispatch
            if not _receives(sub, dispatch.event) \
                    or not self._sees(sub, self._overwrites(fanout.channel_id)):
                continue
            message = fanout.message
            if message is not None and not sub.intents & MESSAGE_CONTENT \
                    and sub.user_id not in _content_readers(message):
                redacted = PreparedDispatch(dispatch.event, redact_message_content(message))
                self._send_node(session.node, point, here, dispatch, (), redacted,
                                (session.id,), None, remote)
            elif message is not None and not sub.intents & MESSAGE_CONTENT \
                    and _replied_hidden_from(message, sub.user_id):
                partial = PreparedDispatch(dispatch.event, _replied_redacted(message))
                self._send_node(session.node, point, here, partial, (session.id,), None,
                                (), None, remote)
            else:
                self._send_node(session.node, point, here, dispatch, (session.id,), None,
                                (), None, remote)

    def _overwrites(self, channel_id: int) -> dict[int, Overwrite]:
        """``channel_id``'s permission overwrites (empty: none, or not loaded)."""
        state = self.state
        return state.overwrites.get(channel_id, _NONE) if state is not None else _NONE

    def _sees(self, sub: _Sub, overwrites: dict[int, Overwrite]) -> bool:
        """Whether ``sub``'s member may view a channel with ``overwrites``."""
        if not overwrites:
            return bool(sub.permissions & VIEW_CHANNEL)
        return bool(in_channel(sub.permissions, self.guild_id, sub.user_id, sub.roles,
                               overwrites) & VIEW_CHANNEL)

    def _plan(self, event: str, channel_id: int) -> list[_NodePlan]:
        """The recipients of message event ``event`` in ``channel_id``, by node: active
        sessions that may view the channel (its overwrites applied) and asked for the
        event by intent. Kept per event for the channels without overwrites (the
        guild-wide VIEW_CHANNEL decides), per channel and event for the others."""
        overwrites = self._overwrites(channel_id)
        # members without an overwrite of their own see the channel alike when their
        # guild permissions and roles are alike: one computation per such group
        seen: dict[tuple[int, tuple[int, ...]], bool] = {}
        by_node: dict[str, tuple[list[int], list[tuple[int, int]]]] = {}
        for session, sub in self.subs.items():
            if not _receives(sub, event):
                continue
            if not overwrites or sub.user_id in overwrites:
                if not self._sees(sub, overwrites):
                    continue
            else:
                group = (sub.permissions, sub.roles)
                sees = seen.get(group)
                if sees is None:
                    sees = seen[group] = self._sees(sub, overwrites)
                if not sees:
                    continue
            always, check = by_node.get(session.node) or by_node.setdefault(session.node,
                                                                             ([], []))
            if sub.intents & MESSAGE_CONTENT:
                always.append(session.id)
            else:
                check.append((session.id, sub.user_id))
        plan = [_NodePlan(node, fanout_address(node), tuple(always), tuple(check),
                          (*always, *(sid for sid, _ in check)))
                for node, (always, check) in by_node.items()]
        self._plans[(channel_id, event) if overwrites else event] = plan
        return plan

    def _fanout(self, msg: Fanout) -> None:
        """A message event from a channel: one ``NodeFanout`` per node with recipients."""
        if self._joining:
            missed = self._missed
            missed.append(msg)
            if len(missed) > JOINING_BACKLOG:
                del missed[0]
                self._missed_base += 1
        dispatch = msg.dispatch
        event = dispatch.event
        plan = self._plans.get((msg.channel_id, event) if self._overwrites(msg.channel_id)
                               else event)
        if plan is None:
            plan = self._plan(event, msg.channel_id)
        span = trace = None
        if msg.trace is not None:  # traced: guild.fanout, and each NodeFanout carries it
            span = start(msg.trace, "guild.fanout", {"greenroom.guild_id": self.guild_id,
                                                     "greenroom.channel_id": msg.channel_id,
                                                     "greenroom.event": event})
            trace = context_of(span)
        message = msg.message
        here = self.myAddress.node
        redacted: PreparedDispatch | None = None
        readers: set[int] | None = None  # users who see the content without the intent
        #: of those, the ones who also see a replied-to message's (None: not a reply)
        replied_readers: set[int] | None = None
        partial: PreparedDispatch | None = None  # the content, the replied-to's hidden
        remote: dict[PreparedDispatch, Any] = {}  # each payload encoded once for the wire
        recipients = 0
        for node in plan:
            if message is None or not node.check:
                to: Any = node.everyone
                hidden: Any = ()
            else:
                if readers is None:
                    readers = _content_readers(message)
                    replied_readers = _replied_readers(message)
                to = list(node.always)
                hidden = []
                half: list[int] = []  # mentioned in a reply to a message it may not read
                for sid, user_id in node.check:
                    if user_id not in readers:
                        hidden.append(sid)
                    elif replied_readers is None or user_id in replied_readers:
                        to.append(sid)
                    else:
                        half.append(sid)
                if hidden and redacted is None:
                    redacted = PreparedDispatch(event, redact_message_content(message))
                if half:
                    if partial is None:
                        partial = PreparedDispatch(event, _replied_redacted(message))
                    recipients += len(half)
                    self._send_node(node.node, node.point, here, partial, half, None, (),
                                    trace, remote)
            recipients += len(to) + len(hidden)
            self._send_node(node.node, node.point, here, dispatch, to,
                            redacted if hidden else None, hidden, trace, remote)
        if span is not None:
            span.set_attribute("greenroom.recipients", recipients)
            span.set_attribute("greenroom.nodes", len(plan))  # one fanout.deliver each
            span.end()

    def _send_node(self, node: str, point: Any, here: str, dispatch: PreparedDispatch,
                   to: Any, redacted: PreparedDispatch | None, redacted_to: Any,
                   trace: dict | None, remote: dict[PreparedDispatch, Any]) -> None:
        if node == here:  # the same process: the objects themselves, no copy
            self.send(point, NodeFanout(dispatch, to, redacted, redacted_to, trace))
            return
        wire = remote.get(dispatch)
        if wire is None:
            wire = remote[dispatch] = payload_for(dispatch, False)
        wire_redacted = None
        if redacted is not None:
            wire_redacted = remote.get(redacted)
            if wire_redacted is None:
                wire_redacted = remote[redacted] = payload_for(redacted, False)
        self.send(point, NodeFanout(wire, to, wire_redacted, redacted_to, trace))

    def _send_to(self, dispatch: PreparedDispatch, sessions: Any,
                 trace: dict | None = None) -> int:
        """``dispatch`` to ``sessions`` (addresses), one ``NodeFanout`` per node; the
        path of every guild event, so a session sees the guild's dispatches in order."""
        by_node: dict[str, list[int]] = {}
        count = 0
        for session in sessions:
            ids = by_node.get(session.node)
            if ids is None:
                ids = by_node[session.node] = []
            ids.append(session.id)
            count += 1
        here = self.myAddress.node
        remote: dict[PreparedDispatch, Any] = {}
        for node, ids in by_node.items():
            self._send_node(node, fanout_address(node), here, dispatch, ids, None, (), trace,
                            remote)
        return count

    def _service_broadcast(self, msg: ServiceBroadcast, sender: Any) -> None:
        """An internal service's event to every subscribed session (encoded once)."""
        span = start(msg.trace, "guild.fanout", {"greenroom.guild_id": self.guild_id,
                                                 "greenroom.event": msg.dispatch.event})
        self._send_to(msg.dispatch, self.subs, context_of(span))
        if span is not None:
            span.set_attribute("greenroom.recipients", len(self.subs))
            span.end()
        self.send(sender, Broadcasted(self.guild_id, len(self.subs)))

    def _broadcast(self, msg: GuildBroadcast) -> None:
        """A guild event: update the state, then send it to every session allowed by
        intent (and, for a channel event, with VIEW_CHANNEL); passive ones included."""
        state = self.state
        if state is None:
            return
        if msg.channel is not None:
            state.channels[msg.channel.id] = msg.channel
            if msg.event == "CHANNEL_CREATE" and isinstance(msg.data, dict):
                # a new channel's object carries the overwrites it was created with
                # (later changes come as ``OverwriteChanged``)
                listed = msg.data.get("permission_overwrites")
                if listed:
                    state.overwrites[msg.channel.id] = {int(o["id"]): Overwrite.from_json(o)
                                                        for o in listed}
                else:
                    state.overwrites.pop(msg.channel.id, None)
                self._plans.clear()
        if msg.member_removed is not None:
            # The removed user's sessions stop getting the guild's events at once (they
            # are told GUILD_DELETE by the REST handler, and unsubscribe).
            for session, sub in list(self.subs.items()):
                if sub.user_id == msg.member_removed:
                    del self.subs[session]
                    self._plans.clear()
                    self.demonitor(sub.monitor)
                    self._watchers.discard(session)
            self.presences.pop(msg.member_removed, None)
            self._shown.pop(msg.member_removed, None)
        dispatch = msg.dispatch
        event = dispatch.event
        need_view = msg.channel is not None
        overwrites = self._overwrites(msg.channel.id) if msg.channel is not None else _NONE
        self._send_to(dispatch, [
            session for session, sub in self.subs.items()
            if (not need_view or self._sees(sub, overwrites))
            and event_allowed(sub.intents, event)])

    def _overwrite_changed(self, msg: OverwriteChanged) -> None:
        """A channel's overwrite was stored: apply it (who gets the channel's events
        from now), then CHANNEL_UPDATE with the overwrites this guild now holds to the
        sessions that may view the channel, and to those that could until now (so a
        bot learns why the channel went quiet, as its library computes permissions
        from the overwrites)."""
        state = self.state
        if state is None:
            return
        channel = msg.channel
        state.channels[channel.id] = channel
        before = state.overwrites.get(channel.id, _NONE)
        after = dict(before)
        if msg.overwrite is None:
            after.pop(msg.target_id, None)
        else:
            after[msg.target_id] = Overwrite.from_json(msg.overwrite)
        if after:
            state.overwrites[channel.id] = after
        else:
            state.overwrites.pop(channel.id, None)
        self._plans.clear()
        dispatch = PreparedDispatch("CHANNEL_UPDATE", channel_object(channel, after.values()))
        self._send_to(dispatch, [
            session for session, sub in self.subs.items()
            if event_allowed(sub.intents, "CHANNEL_UPDATE")
            and (self._sees(sub, before) or self._sees(sub, after))])

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
        self._send_to(dispatch, [session for session in self._watchers
                                 if session in self.subs])


#: a channel without permission overwrites (shared: never written to)
_NONE: dict[int, Overwrite] = {}


def _receives(sub: _Sub, event: str) -> bool:
    """Whether a subscriber gets message event ``event`` in a channel it may view
    (``GuildActor._sees``): an active session that asked for it by intent (live
    fan-out and replay alike)."""
    return bool(sub.active and event_allowed(sub.intents, event))


def _replied_readers(message: dict[str, Any]) -> set[int] | None:
    """Who may read the content of the message ``message`` replies to (its
    ``referenced_message``) without MESSAGE_CONTENT; None if it is not a reply."""
    replied = message.get("referenced_message")
    return _content_readers(replied) if isinstance(replied, dict) else None


def _replied_hidden_from(message: dict[str, Any], user_id: int) -> bool:
    """Whether ``message`` replies to a message whose content ``user_id`` may not read."""
    readers = _replied_readers(message)
    return readers is not None and user_id not in readers


def _replied_redacted(message: dict[str, Any]) -> dict[str, Any]:
    """``message`` with the content of the message it replies to emptied (for a session
    mentioned in the reply but not in what it replies to)."""
    return {**message,
            "referenced_message": redact_message_content(message["referenced_message"])}


def _content_readers(message: dict[str, Any]) -> set[int]:
    """Users who see ``message``'s content without MESSAGE_CONTENT: its author and the
    users it mentions (``intents.message_content_visible``, for a whole node at once)."""
    readers: set[int] = set()
    author = message.get("author")
    for user in (author, *(message.get("mentions") or ())):
        if isinstance(user, dict):
            try:
                readers.add(int(user.get("id")))
            except (TypeError, ValueError):
                pass
    return readers
