"""The reactions actor: one per reacted message, activated on demand by the registry.

Why not the channel actor. A channel actor orders its channel's message writes and
answers each post once it is durable; every message of the channel waits behind what
is ahead of it in that actor's mailbox and in its storage partition. A reaction storm
(hundreds a second on one message) would sit in that line, so every message to the
channel would wait behind the storm. Reactions need no order with the channel's
messages (a reaction names a message that is already durable), only among the
reactions of one message: 20 distinct emoji at most, one reaction per user and emoji,
events in the order the reactions were taken. So each message's reactions get their
own actor (key ``(guild_id, channel_id, message_id)``, placed with its guild like the
channel, so its fan-out stays on the guild's node) and their own storage partition
(``chat.reactions``: records ``("reaction", message_id)``). The channel actor never
sees a reaction.

The storm on that one message: every request is decided at once against the
in-memory ``MessageReactions`` (loaded from storage on activation) in arrival order;
the writes go out in group commits — while one batch is being written, what arrives
gathers in the next — so the actor needs one storage round trip per batch
(``Storage.write_records``), not per reaction. A batch's answers (204) and events
(MESSAGE_REACTION_*, to the guild's fan-out) go out once it is durable, in order:
nobody hears of a reaction storage could lose, and a client that reads after its 204
sees its reaction (the message's counts record is written in the same batch). A failed
batch is answered 503 with everything decided after it, and the actor reloads its
state from storage.

REST checks that the message exists (10008) before it asks the actor, from a per-node
cache of the messages it found within the last second (``gateway.rest.reactions``): a
storm's 500 checks a second cost one read, and an unknown id never activates an actor.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

from thespian.actors import ActorExitRequest

from actors import NORMAL, Activated, Actor, Handoff, IODone, Timeout
from actors.registry import Route
from actors.wire import wire_type
from chat.reactions import (
    COUNTS_KIND,
    REACTION_KIND,
    Emoji,
    MessageReactions,
    emoji_prefix,
    message_key,
    reaction_add_event,
    reaction_remove_all_event,
    reaction_remove_emoji_event,
    reaction_remove_event,
    reactor_record,
    user_key,
)
from gateway.context import GatewayContext
from gateway.messages import Fanout, Posted, PostFailed
from gateway.protocol import PreparedDispatch
from storage.records import MAX_LIST

log = logging.getLogger("greenroom.gateway.reactions")

#: ``React.op`` values
ADD = "add"
REMOVE = "remove"
REMOVE_EMOJI = "remove_emoji"
REMOVE_ALL = "remove_all"

MAX_REACTIONS = 30010
MISSING_PERMISSIONS = 50013
#: After ``Handoff``, seconds to wait for the batch in flight before failing its askers.
HANDOFF_TIMEOUT_S = 10.0
_HANDOFF = "reactions-handoff"
_DONE = Posted({})


@wire_type("gateway.react")
@dataclass(slots=True)
class React:
    """REST -> a message's reactions actor (through the registry): one reaction change,
    checked by REST (the message exists, the caller may read it; MANAGE_MESSAGES for
    another's or everyone's). Answered ``Posted({})`` once durable, or ``PostFailed``."""

    op: str
    #: ``chat.reactions.Emoji.to_list()``; None for ``REMOVE_ALL``
    emoji: list[Any] | None = None
    user_id: int = 0
    #: the caller holds ADD_REACTIONS: needed only for an emoji new on the message
    may_add_new: bool = True
    #: MESSAGE_REACTION_ADD's ``member`` (with ``user``), in a guild
    member: dict[str, Any] | None = None
    message_author_id: int | None = None
    #: a DM's users (its events go to their sessions; a guild's to the guild's fan-out)
    recipients: list[int] | None = None


def reactions_key(guild_id: int | None, channel_id: int, message_id: int
                  ) -> tuple[int | None, int, int]:
    """A reactions actor's registry key: guild first, as ``gateway.channel.channel_key``."""
    return (guild_id, channel_id, message_id)


def reactions_placement(key: Any) -> int:
    """``PlacedRegistry.placed``'s function for kind ``"reactions"``: with the guild (a
    DM's with its channel), so the message's channel and fan-out are on the same node."""
    if not isinstance(key, tuple | list) or len(key) != 3:
        raise ValueError("a reactions actor's key is (guild_id, channel_id, message_id)")
    guild_id, channel_id, _ = key
    return int(channel_id if guild_id is None else guild_id)


def publish(actor: Actor, registry: Any, cluster: Any, guild_id: int | None,
            channel_id: int, dispatch: PreparedDispatch,
            recipients: list[int] | None) -> None:
    """A message's reaction event, from ``actor``, to whoever may see it: a guild's to
    the guild actor's fan-out (sessions with VIEW_CHANNEL that asked by intent:
    GUILD_MESSAGE_REACTIONS), a DM's to its two users' sessions (each keeps it if it
    asked for DIRECT_MESSAGE_REACTIONS: ``gateway.direct``)."""
    if guild_id is not None:
        actor.send(registry, Route("guild", guild_id, Fanout(channel_id, dispatch)))
    elif recipients:
        from gateway.direct import send_to_users  # DMs: gateway/direct.py

        send_to_users(actor, cluster, recipients, dispatch)


@dataclass(slots=True)
class _Batch:
    """What was decided since the last group commit began, to write as one."""

    #: key prefixes to delete first (an emoji's reactions, or "" for all)
    prefixes: list[str] = field(default_factory=list)
    #: record key -> value (None: delete), after the prefix deletes
    writes: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    #: (event, data) in decision order
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    askers: list[Any] = field(default_factory=list)
    #: the message's counts once this batch is applied (None: unchanged)
    counts: list[list[Any]] | None = None

    def __bool__(self) -> bool:
        return bool(self.askers or self.events)


class ReactionsActor(Actor):
    ctx: ClassVar[GatewayContext]
    #: the registry sends ``Handoff``: the batch in flight is finished, then it exits
    finish_before_exit: ClassVar[bool] = True

    def __init__(self) -> None:
        super().__init__()
        self.guild_id: int | None = None
        self.channel_id = 0
        self.message_id = 0
        self.reactions = MessageReactions()
        self.recipients: list[int] | None = None
        #: None once loaded; until then what arrives waits here
        self._stash: list[tuple[React, Any]] | None = []
        self._loading = False
        self._next = _Batch()
        self._writing: _Batch | None = None
        self._handoff: int | None = None

    # -- the mailbox -----------------------------------------------------------------------

    def receiveMessage(self, msg: Any, sender: Any) -> None:
        if isinstance(msg, React):
            if self._stash is not None:
                self._stash.append((msg, sender))
                self._load_once()
            else:
                self._decide(msg, sender)
                self._commit()
        elif isinstance(msg, IODone):
            if msg.tag == "load":
                self._loaded(msg)
            elif msg.tag == "write":
                self._written(msg.error)
        elif isinstance(msg, Activated):
            self.guild_id, self.channel_id, self.message_id = msg.key
            self._load_once()
        elif isinstance(msg, Handoff):
            if self._handoff is None:
                self._handoff = self.start_timer(HANDOFF_TIMEOUT_S, _HANDOFF)
        elif isinstance(msg, Timeout) and msg.payload == _HANDOFF:
            self._fail_all("the reactions actor stopped before storage confirmed")
            self.exit(NORMAL)
            return
        elif isinstance(msg, ActorExitRequest):
            self._fail_all("the reactions actor stopped")
            return
        if self._handoff is not None and self._idle():
            self.cancel_timer(self._handoff)
            self.exit(NORMAL)

    def _idle(self) -> bool:
        return self._writing is None and not self._next and not self._stash

    # -- loading -----------------------------------------------------------------------------

    def _load_once(self) -> None:
        if not self._loading:
            self._loading = True
            self.run_io(self._load(), "load")

    async def _load(self) -> MessageReactions:
        storage = self.ctx.storage
        reactions = MessageReactions()
        records: list[tuple[str, dict[str, Any]]] = []
        after: str | None = None
        while True:
            page = await storage.list_records(REACTION_KIND, self.message_id, after=after,
                                              limit=MAX_LIST)
            records += page
            if len(page) < MAX_LIST:
                break
            after = page[-1][0]
        reactions.load(records)
        return reactions

    def _loaded(self, done: IODone) -> None:
        self._loading = False
        stash, self._stash = self._stash or [], None
        if done.error is not None:
            log.warning("reactions of message %s could not be loaded: %r", self.message_id,
                        done.error)
            failure = PostFailed(503, 0, "storage unavailable; not acknowledged, retry")
            for _, sender in stash:
                self.send(sender, failure)
            self._stash = []  # the next change loads again (an exit would drop the mailbox)
            return
        self.reactions = done.result
        for msg, sender in stash:
            self._decide(msg, sender)
        self._commit()

    # -- deciding ----------------------------------------------------------------------------

    def _decide(self, msg: React, sender: Any) -> None:
        """Apply one change to the in-memory reactions and note its write, event and
        answer in the next batch; or refuse it at once."""
        if msg.recipients is not None:
            self.recipients = msg.recipients
        batch = self._next
        reactions = self.reactions
        where = (self.channel_id, self.message_id, self.guild_id)
        if msg.op == REMOVE_ALL:
            if reactions.clear():
                batch.prefixes.append("")
                batch.writes.clear()
                batch.events.append(("MESSAGE_REACTION_REMOVE_ALL",
                                     reaction_remove_all_event(*where)))
                batch.counts = []
            batch.askers.append(sender)
            return
        if msg.emoji is None:
            self.send(sender, PostFailed(400, 50035, "Invalid Form Body: no emoji"))
            return
        emoji = Emoji.from_list(msg.emoji)
        if msg.op == ADD:
            if reactions.refuses(emoji):
                self.send(sender, PostFailed(400, MAX_REACTIONS,
                                             "Maximum number of reactions reached (20)"))
                return
            if not msg.may_add_new and not reactions.has_emoji(emoji):
                self.send(sender, PostFailed(403, MISSING_PERMISSIONS, "Missing Permissions"))
                return
            shown = reactions.emoji_for(emoji)
            if reactions.add(emoji, msg.user_id):
                batch.writes[user_key(emoji, 0, msg.user_id)] = reactor_record(
                    shown, int(time.time() * 1000))
                batch.events.append(("MESSAGE_REACTION_ADD", reaction_add_event(
                    *where, msg.user_id, shown, member=msg.member,
                    message_author_id=msg.message_author_id)))
                batch.counts = reactions.counts()
        elif msg.op == REMOVE:
            shown = reactions.emoji_for(emoji)
            if reactions.remove(emoji, msg.user_id):
                batch.writes[user_key(emoji, 0, msg.user_id)] = None
                batch.events.append(("MESSAGE_REACTION_REMOVE", reaction_remove_event(
                    *where, msg.user_id, shown)))
                batch.counts = reactions.counts()
        elif msg.op == REMOVE_EMOJI:
            shown_or_none = reactions.remove_emoji(emoji)
            if shown_or_none is not None:
                prefix = emoji_prefix(emoji)
                batch.prefixes.append(prefix)
                for key in [k for k in batch.writes if k.startswith(prefix)]:
                    del batch.writes[key]
                batch.events.append(("MESSAGE_REACTION_REMOVE_EMOJI",
                                     reaction_remove_emoji_event(*where, shown_or_none)))
                batch.counts = reactions.counts()
        else:
            self.send(sender, PostFailed(400, 50035, f"Invalid Form Body: op {msg.op!r}"))
            return
        batch.askers.append(sender)

    # -- group commit ------------------------------------------------------------------------

    def _commit(self) -> None:
        """Start writing the next batch unless one is being written (it follows then)."""
        if self._writing is not None or not self._next:
            return
        batch, self._next = self._next, _Batch()
        if not batch.events:  # nothing changed: nothing to write, answer now
            for sender in batch.askers:
                self.send(sender, _DONE)
            return
        self._writing = batch
        self.run_io(self._write(batch), "write")

    async def _write(self, batch: _Batch) -> None:
        storage = self.ctx.storage
        message_id = self.message_id
        for prefix in batch.prefixes:  # before the writes decided after them
            await storage.delete_records(REACTION_KIND, message_id, prefix)
        writes: list[tuple[str, int, str, dict[str, Any] | None]] = [
            (REACTION_KIND, message_id, key, value) for key, value in batch.writes.items()]
        if batch.counts is not None:
            writes.append((COUNTS_KIND, self.channel_id, message_key(message_id),
                           {"r": batch.counts} if batch.counts else None))
        await storage.write_records(writes)  # one round trip (SQLite: one transaction)

    def _written(self, error: BaseException | None) -> None:
        batch, self._writing = self._writing, None
        if batch is None:
            return
        if error is not None:
            log.warning("reactions of message %s: write failed: %r", self.message_id, error)
            # storage may hold some of it: what was decided since rests on it too, so
            # both batches fail and the state is read again from storage
            failure = PostFailed(503, 0, "storage unavailable; not acknowledged, retry")
            for sender in batch.askers + self._next.askers:
                self.send(sender, failure)
            self._next = _Batch()
            self._stash = []
            self._load_once()
            return
        registry, cluster = self.ctx.registry, self.ctx.cluster
        for event, data in batch.events:
            publish(self, registry, cluster, self.guild_id, self.channel_id,
                    PreparedDispatch(event, data), self.recipients)
        for sender in batch.askers:
            self.send(sender, _DONE)
        self._commit()

    def _fail_all(self, why: str) -> None:
        failure = PostFailed(503, 0, f"{why}; not acknowledged, retry")
        pending = (self._writing.askers if self._writing else []) + self._next.askers
        for sender in pending + [s for _, s in self._stash or []]:
            self.send(sender, failure)
        self._writing, self._next, self._stash = None, _Batch(), None
