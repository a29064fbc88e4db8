"""The channel actor: one per channel, activated on demand by the registry.

It orders the channel's writes: it assigns each message its snowflake (once, at
ingress, so a retried write keeps its key), hands the write to the storage actor, and
only when the storage actor answers ``Written`` (durable) does it answer the poster
and ask the guild actor to fan MESSAGE_CREATE out — encoded once, here. A DM's channel
(no guild: keyed ``(None, id)``, placed by its own id) tells its two users' sessions
itself, on every gateway node (gateway/direct.py), in the same order.

``enforce_nonce`` sends (Discord: the same author and nonce within a few minutes get the
first message back) hold across restarts, passivation and moves: the create claims the
nonce in storage with the message's own write (``MessageCreate.claim_nonce``, for
``storage.model.NONCE_WINDOW_S``), and a send whose nonce this incarnation does not
know asks storage before it takes a snowflake. A claim whose message is missing (the
write was cut short) is re-sent under the claimed id, so there is still one message.
``_nonces`` is only a cache of what storage holds.

It also keeps the channel's recent messages (``gateway.recent_messages``): history reads
(``ReadHistory``) are answered from them when that is exact, otherwise from storage.

Stopping with writes in flight. When the registry hands the channel over (its guild
moved to another node, or passivation) it sends ``Handoff``: the channel finishes what
it has sent to storage — answers the posters and fans the messages out — and only then
exits. It does not answer "retry" instead: a write already queued at the storage actor
becomes durable anyway, so a retry would store the message twice and the first copy
would never be fanned out (a stored message no session saw). Only when it must stop at
once (``ActorExitRequest``: the node shuts down) or storage stays silent for
``HANDOFF_TIMEOUT_S`` does it answer its pending askers with a retryable 503.

The storage actor dying. Its queued writes die with it unanswered (some may have
reached the database). When its supervisor has started the next one
(gateway/services.py), the channel hears ``StorageRestarted`` and sends that one
everything it still waits for: each write again under its own snowflake (storage
applies a create, edit, delete or nonce claim idempotently), each read and nonce
lookup again. So a post is acknowledged once, when durable, and soon, not after
REST's ask timeout; a second ``Written`` for the same write finds nothing pending.
A create sent since, to the new incarnation, may be durable before an older one sent
again: it is answered and fanned out after that one (``_durable``), in the channel's
order; the same holds when a partition's batches complete out of order (storage keeps
up to ``max_partition_in_flight`` of them out at once).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Any, ClassVar

from thespian.actors import ActorExitRequest

from actors import NORMAL, Activated, Actor, Handoff, Timeout
from actors.registry import Route
from chat.objects import iso, message_object
from gateway.context import GatewayContext
from gateway.direct import DirectEvent, send_to_users
from gateway.messages import (
    ChangeMessage,
    Fanout,
    HistoryPage,
    Posted,
    PostFailed,
    PostMessage,
    ReadHistory,
    Typing,
)
from gateway.protocol import PreparedDispatch
from gateway.recent_messages import RecentMessages
from gateway.stages import record_stage
from gateway.tracing import child, context_of, fail, start
from storage.history import HistoryQuery
from storage.messages import (
    Busy,
    FindNonce,
    History,
    HistoryFailed,
    HistoryResult,
    NonceFound,
    Write,
    WriteFailed,
    Written,
)
from storage.model import Message, MessageCreate, MessageDelete, MessageEdit

#: (author, nonce) pairs cached per channel for ``enforce_nonce`` sends (storage has all).
NONCE_MEMORY = 256
#: After ``Handoff``, seconds to wait for storage's answers before failing the askers.
HANDOFF_TIMEOUT_S = 10.0
_HANDOFF = "channel-handoff"


#: the ``Message`` fields a ``PostMessage`` may set beyond its own (``PostMessage.fields``)
POST_FIELDS = frozenset({"embeds", "attachments", "flags", "mentions", "mention_roles",
                         "mention_everyone", "extra"})


class StorageRestarted:
    """The node's storage actor died and its next incarnation runs: send it again what
    this channel still waits for (gateway/services.py sends this; never leaves a node)."""


class ChannelActor(Actor):
    ctx: ClassVar[GatewayContext]
    #: the registry sends ``Handoff`` (not ``ActorExitRequest``): see the module docstring
    finish_before_exit: ClassVar[bool] = True

    def __init__(self) -> None:
        super().__init__()
        self.channel_id = 0
        self._pending: dict[int, tuple[Any, PostMessage, dict[str, Any]]] = {}
        #: (author, nonce) -> the message id while its write is in flight, then its payload
        self._nonces: OrderedDict[tuple[str, str], Any] = OrderedDict()
        #: message id -> later senders of the same enforced nonce, answered with it
        self._waiters: dict[int, list[Any]] = {}
        #: (author, nonce) -> the sends waiting for storage's answer about that nonce
        self._nonce_lookups: dict[tuple[str, str], list[tuple[Any, PostMessage]]] = {}
        #: ("nonce", n) -> the (author, nonce) asked about
        self._lookup_keys: dict[tuple[str, int], tuple[str, str]] = {}
        self._lookup_refs = 0
        #: message id -> (channel.post span, storage.write span), only for traced posts
        self._spans: dict[int, tuple[Any, Any]] = {}
        #: creates in flight: when each was created (perf_counter), for gateway.stages
        self._created_at: dict[int, float] = {}
        #: ("change", n) -> (sender, the edit or delete) while its write is in flight
        self._changes: dict[tuple[str, int], tuple[Any, ChangeMessage]] = {}
        self._change_refs = 0
        # -- the cache of recent messages (gateway/recent_messages.py)
        self._recent = RecentMessages()
        #: write ref -> what the cache applies once it is durable (a create's Message,
        #: a MessageEdit, a MessageDelete)
        self._cache_writes: dict[Any, Message | MessageEdit | MessageDelete] = {}
        #: write ref -> the Write sent, until answered (sent again if storage restarts)
        self._sent: dict[Any, Write] = {}
        #: creates durable while an older one in ``_pending`` is not: answered after it
        #: (None: none, the usual case)
        self._durable: set[int] | None = None
        #: ("history", n) -> (sender, query): reads sent to storage
        self._reads: dict[tuple[str, int], tuple[Any, HistoryQuery]] = {}
        self._read_refs = 0
        #: the cache's fill in flight (("fill", n); an older one's answer is ignored) and
        #: the reads waiting for it
        self._fill_ref: tuple[str, int] | None = None
        self._fill_waiters: list[tuple[Any, HistoryQuery]] = []
        #: the timer started by ``Handoff``: the channel exits once nothing is in flight
        self._handoff: int | None = None

    def receiveMessage(self, msg: Any, sender: Any) -> None:
        self._receive(msg, sender)
        if self._handoff is not None and not self._in_flight():
            self.cancel_timer(self._handoff)
            self.exit(NORMAL)

    def _receive(self, msg: Any, sender: Any) -> None:
        if isinstance(msg, PostMessage):
            self._post(msg, sender)
        elif isinstance(msg, Written) and msg.ref in self._changes:
            self._changed(msg.ref)
        elif isinstance(msg, Written):
            self._written(msg.ref)
        elif isinstance(msg, ChangeMessage):
            self._change(msg, sender)
        elif isinstance(msg, Typing):
            self._typing(msg)
        elif isinstance(msg, DirectEvent):  # a DM's event for its users, in order
            send_to_users(self, self.ctx.cluster, msg.users,
                          PreparedDispatch(msg.event, msg.data))
        elif isinstance(msg, ReadHistory):
            self._read_history(msg, sender)
        elif isinstance(msg, NonceFound):
            self._nonce_found(msg)
        elif isinstance(msg, HistoryFailed) and msg.ref in self._lookup_keys:
            self._nonce_lookup_failed(msg.ref, None if msg.transient else
                                      PostFailed(500, 0, f"write failed: {msg.error}"))
        elif isinstance(msg, HistoryResult | HistoryFailed):
            self._history_answered(msg)
        elif isinstance(msg, Busy):
            # the storage actor's backpressure: not queued, so retryable (REST: 503 with
            # Retry-After; 429 is Discord's answer to a client over its rate limit)
            self._failed(msg.ref, PostFailed(503, 0, "storage is busy; not acknowledged",
                                             msg.retry_after_s))
        elif isinstance(msg, WriteFailed):
            self._failed(msg.ref, _write_failure(msg))
        elif isinstance(msg, Activated):
            self.channel_id = int(msg.key[1])  # channel_key: (guild id, channel id)
        elif isinstance(msg, Handoff):
            if self._handoff is None:
                self._handoff = self.start_timer(HANDOFF_TIMEOUT_S, _HANDOFF)
        elif isinstance(msg, Timeout) and msg.payload == _HANDOFF:
            self._abandon("storage did not confirm the write in time")
        elif isinstance(msg, ActorExitRequest):
            self._abandon("the channel stopped")
        elif isinstance(msg, StorageRestarted):
            self._send_again()

    def _write(self, write: Write) -> None:
        self._sent[write.ref] = write
        self.send(self.ctx.storage_actor, write)

    def _send_again(self) -> None:
        """The storage actor restarted: what the one before took and never answered
        is sent to this one (see the module docstring)."""
        storage = self.ctx.storage_actor
        durable = self._durable or ()
        for ref, write in list(self._sent.items()):
            if ref not in durable:
                self.send(storage, write)
        for ref, key in self._lookup_keys.items():
            sender, msg = self._nonce_lookups[key][0]
            self.send(storage, FindNonce(ref, self.channel_id, int(msg.author["id"]),
                                         msg.nonce))
        for ref, (_, query) in self._reads.items():
            self.send(storage, History(ref, query))
        if self._fill_ref is not None:  # the fill's query is the cache's: start again
            self._fill_ref = None
            self._recent.abort_fill()
            waiters, self._fill_waiters = self._fill_waiters, []
            for sender, query in waiters:
                self._answer_history(sender, query)

    def _in_flight(self) -> bool:
        return bool(self._pending or self._changes or self._reads or self._fill_waiters
                    or self._nonce_lookups)

    def _abandon(self, why: str) -> None:
        """Answer every pending asker with a retryable 503 (the channel must stop now);
        the exit follows (``receiveMessage``, or the base after ``ActorExitRequest``)."""
        failure = PostFailed(503, 0, f"{why}; not acknowledged, retry")
        for ref in [*self._pending, *self._changes]:
            self._failed(ref, failure)
        for ref in list(self._lookup_keys):
            self._nonce_lookup_failed(ref, failure)
        for sender, _ in [*self._reads.values(), *self._fill_waiters]:
            self.send(sender, failure)
        self._reads.clear()
        self._fill_waiters = []
        self._fill_ref = None

    def _post(self, msg: PostMessage, sender: Any) -> None:
        if not (msg.enforce_nonce and msg.nonce):
            self._create(msg, sender, None, None)
            return
        key = (str(msg.author["id"]), msg.nonce)
        earlier = self._nonces.get(key)
        if isinstance(earlier, dict):
            self.send(sender, Posted(_rest_view(earlier)))
            return
        if earlier in self._pending:  # the same send is still being written
            self._waiters.setdefault(earlier, []).append(sender)
            return
        waiting = self._nonce_lookups.get(key)
        if waiting is not None:  # storage is being asked about this nonce already
            waiting.append((sender, msg))
            return
        # Not known to this incarnation: storage knows if it was sent before a restart,
        # a passivation or a move.
        self._lookup_refs += 1
        ref = ("nonce", self._lookup_refs)
        self._nonce_lookups[key] = [(sender, msg)]
        self._lookup_keys[ref] = key
        self.send(self.ctx.storage_actor,
                  FindNonce(ref, self.channel_id, int(msg.author["id"]), msg.nonce))

    def _nonce_found(self, found: NonceFound) -> None:
        key = self._lookup_keys.pop(found.ref, None)
        if key is None:
            return
        posts = self._nonce_lookups.pop(key)
        first_sender, first = posts[0]
        if found.message is not None:  # sent before: answer with that message
            payload = message_object(found.message, first.author, first.member)
            self._remember_nonce(key, payload)
            for sender, _ in posts:
                self.send(sender, Posted(_rest_view(payload)))
            return
        # Unclaimed (a new id), or claimed by a write that never completed (its id again)
        self._create(first, first_sender, key, found.message_id)
        for sender, msg in posts[1:]:
            self._post(msg, sender)  # waits for the write just sent (or asks again)

    def _nonce_lookup_failed(self, ref: tuple[str, int],
                             failure: PostFailed | None = None) -> None:
        key = self._lookup_keys.pop(ref)
        failure = failure or PostFailed(503, 0, "storage unavailable; not acknowledged, retry")
        for sender, _ in self._nonce_lookups.pop(key):
            self.send(sender, failure)

    def _remember_nonce(self, key: tuple[str, str], value: Any) -> None:
        self._nonces[key] = value
        self._nonces.move_to_end(key)
        while len(self._nonces) > NONCE_MEMORY:
            self._nonces.popitem(last=False)

    def _create(self, msg: PostMessage, sender: Any, key: tuple[str, str] | None,
                message_id: int | None) -> None:
        """Write a new message (under ``message_id`` if given: a claimed nonce's id);
        ``key``: the (author, nonce) it claims for ``enforce_nonce``."""
        if message_id is None:
            message_id = self.ctx.snowflakes.next_id()
        message = Message(
            channel_id=self.channel_id,
            id=message_id,
            author_id=int(msg.author["id"]),
            content=msg.content,
            guild_id=msg.guild_id,
            tts=msg.tts,
            nonce=msg.nonce,
            type=msg.type,
        )
        try:
            for name, value in msg.fields.items():
                if name not in POST_FIELDS:
                    raise ValueError(f"a post cannot set {name!r}")
                setattr(message, name, value)
            write = MessageCreate(message, claim_nonce=key is not None)
        except (TypeError, ValueError) as exc:
            self.send(sender, PostFailed(400, 50035, f"Invalid Form Body: {exc}"))
            return
        payload = message_object(message, msg.author, msg.member)
        self._pending[message_id] = (sender, msg, payload)
        self._created_at[message_id] = time.perf_counter()
        if msg.received_s is not None:
            record_stage("rest_to_channel", time.time() - msg.received_s)
        self._cache_writes[message_id] = message
        if key is not None:
            self._remember_nonce(key, message_id)
        trace = None
        if msg.trace is not None:  # spans: channel.post, and its storage.write until durable
            span = start(msg.trace, "channel.post", {"greenroom.channel_id": self.channel_id,
                                                     "greenroom.message_id": message_id})
            written = child(span, "storage.write", {
                "greenroom.channel_id": self.channel_id, "greenroom.message_id": message_id})
            self._spans[message_id] = (span, written)
            trace = context_of(written)  # the storage actor's spans go under it
        self._write(Write(message_id, (write,), trace))

    def _written(self, ref: int) -> None:
        pending = self._pending
        if ref in pending and next(iter(pending)) != ref:
            # an older create is unanswered (sent again to a restarted storage actor)
            if self._durable is None:
                self._durable = set()
            self._durable.add(ref)
            return
        self._complete(ref)
        if self._durable:
            self._release_durable()

    def _release_durable(self) -> None:
        """Answer the durable creates whose older ones are answered now."""
        durable = self._durable
        while durable:
            first = next(iter(self._pending), None)
            if first not in durable:
                break
            durable.discard(first)
            self._complete(first)
        if not durable:
            self._durable = None

    def _complete(self, ref: int) -> None:
        """A create is durable and every older one answered: answer its poster and
        fan it out."""
        self._sent.pop(ref, None)
        self._cache_durable(ref)
        pending = self._pending.pop(ref, None)
        if pending is None:
            return
        sender, msg, payload = pending
        now = time.perf_counter()
        created = self._created_at.pop(ref, None)
        if created is not None:
            record_stage("durable", now - created)
        if msg.enforce_nonce and msg.nonce:
            self._nonces[(str(msg.author["id"]), msg.nonce)] = payload
        spans = self._spans.pop(ref, None) if self._spans else None
        if spans is not None:
            spans[1].end()  # storage.write: durable now
        if msg.guild_id is not None:
            dispatch = PreparedDispatch("MESSAGE_CREATE", payload)
            fanout = Fanout(self.channel_id, dispatch, payload, sent_at=time.time())
            if spans is not None:
                fanout.trace = context_of(spans[0])  # guild.fanout is channel.post's child
            self.send(self.ctx.registry, Route("guild", msg.guild_id, fanout))
        elif msg.recipients:  # a DM: its two users' sessions (gateway/direct.py)
            send_to_users(self, self.ctx.cluster, msg.recipients,
                          PreparedDispatch("MESSAGE_CREATE", payload))
        if spans is not None:
            spans[0].end()
        reply = _rest_view(payload)
        self.send(sender, Posted(reply))
        for waiter in self._waiters.pop(ref, ()):
            self.send(waiter, Posted(reply))

    def _failed(self, ref: Any, failure: PostFailed) -> None:
        if self._durable and ref in self._durable:
            return  # durable already (a copy sent again failed): answered in its turn
        self._sent.pop(ref, None)
        self._cache_writes.pop(ref, None)
        change = self._changes.pop(ref, None)
        if change is not None:
            self.send(change[0], failure)
            return
        pending = self._pending.pop(ref, None)
        if pending is None:
            return
        self._created_at.pop(ref, None)
        sender, msg, _ = pending
        spans = self._spans.pop(ref, None) if self._spans else None
        if spans is not None:
            fail(spans[1], failure.message)
            fail(spans[0], failure.message)
        if msg.enforce_nonce and msg.nonce:
            self._nonces.pop((str(msg.author["id"]), msg.nonce), None)
        self.send(sender, failure)
        for waiter in self._waiters.pop(ref, ()):
            self.send(waiter, failure)
        if self._durable:
            self._release_durable()


    # -- edits, deletes, typing -------------------------------------------------------------

    def _change(self, msg: ChangeMessage, sender: Any) -> None:
        """An edit or delete, ordered behind this channel's earlier writes; answered and
        fanned out (MESSAGE_UPDATE / MESSAGE_DELETE) once durable."""
        try:
            if msg.changes is None:
                write: MessageEdit | MessageDelete = MessageDelete.now(self.channel_id,
                                                                       msg.message_id)
            else:
                write = MessageEdit.now(self.channel_id, msg.message_id, **msg.changes)
                edited = write.changes.get("edited_at_ms")
                msg.message = {**(msg.message or {}), "edited_timestamp": iso(edited)}
        except (TypeError, ValueError) as exc:
            self.send(sender, PostFailed(400, 50035, f"Invalid Form Body: {exc}"))
            return
        self._change_refs += 1
        ref = ("change", self._change_refs)
        self._changes[ref] = (sender, msg)
        self._cache_writes[ref] = write
        self._write(Write(ref, (write,)))

    def _changed(self, ref: tuple[str, int]) -> None:
        self._sent.pop(ref, None)
        self._cache_durable(ref)
        sender, msg = self._changes.pop(ref)
        if msg.changes is None:
            payload: dict[str, Any] = {"id": str(msg.message_id),
                                       "channel_id": str(self.channel_id)}
            if msg.guild_id is not None:
                payload["guild_id"] = str(msg.guild_id)
            dispatch = PreparedDispatch("MESSAGE_DELETE", payload)
            content = None
            reply: dict[str, Any] = {}
        else:
            content = msg.message or {}
            dispatch = PreparedDispatch("MESSAGE_UPDATE", content)
            reply = _rest_view(content)
        if msg.guild_id is not None:
            self.send(self.ctx.registry,
                      Route("guild", msg.guild_id, Fanout(self.channel_id, dispatch, content)))
        elif msg.recipients:  # a DM
            send_to_users(self, self.ctx.cluster, msg.recipients, dispatch)
        self.send(sender, Posted(reply))

    # -- the cache of recent messages, and history reads --------------------------------

    def _cache_durable(self, ref: Any) -> None:
        write = self._cache_writes.pop(ref, None)
        if isinstance(write, Message):
            self._recent.created(write)
        elif isinstance(write, MessageEdit):
            self._recent.edited(write)
        elif write is not None:
            self._recent.deleted(write.message_id)

    def _read_history(self, msg: ReadHistory, sender: Any) -> None:
        """Answer from the cache when it can answer exactly; fill it on the first read;
        else ask storage."""
        try:
            query = HistoryQuery(self.channel_id, before=msg.before, after=msg.after,
                                 around=msg.around, limit=msg.limit)
        except (TypeError, ValueError) as exc:
            self.send(sender, PostFailed(400, 50035, f"Invalid Form Body: {exc}"))
            return
        recent = self._recent
        if not recent.loaded:
            self._fill_waiters.append((sender, query))
            fill = recent.start_fill(self.channel_id, time.monotonic())
            if fill is not None:
                self._read_refs += 1
                self._fill_ref = ("fill", self._read_refs)
                self.send(self.ctx.storage_actor, History(self._fill_ref, fill))
            return
        self._answer_history(sender, query)

    def _answer_history(self, sender: Any, query: HistoryQuery) -> None:
        page = self._recent.answer(query)
        if page is not None:
            self.send(sender, HistoryPage(page))
            return
        self._read_refs += 1
        ref = ("history", self._read_refs)
        self._reads[ref] = (sender, query)
        self.send(self.ctx.storage_actor, History(ref, query))

    def _history_answered(self, msg: HistoryResult | HistoryFailed) -> None:
        read = self._reads.pop(msg.ref, None)
        if read is not None:
            self.send(read[0], HistoryPage(msg.messages) if isinstance(msg, HistoryResult)
                      else PostFailed(503 if msg.transient else 500, 0,
                                      f"history failed: {msg.error}"))
            return
        if msg.ref != self._fill_ref:
            return  # a fill given up on (start_fill), or not ours
        self._fill_ref = None
        if isinstance(msg, HistoryResult):
            self._recent.load(msg.messages)
        else:
            self._recent.abort_fill()
        waiters, self._fill_waiters = self._fill_waiters, []
        for sender, query in waiters:  # from the cache now, or storage (also if it failed)
            self._answer_history(sender, query)

    def _typing(self, msg: Typing) -> None:
        if msg.guild_id is None:  # a DM: no guild, no member
            if msg.recipients:
                send_to_users(self, self.ctx.cluster, msg.recipients, PreparedDispatch(
                    "TYPING_START", {"channel_id": str(self.channel_id),
                                     "user_id": str(msg.user_id),
                                     "timestamp": int(time.time())}))
            return
        data: dict[str, Any] = {"channel_id": str(self.channel_id),
                                "guild_id": str(msg.guild_id),
                                "user_id": str(msg.user_id),
                                "timestamp": int(time.time())}
        if msg.member is not None:
            data["member"] = msg.member
        self.send(self.ctx.registry, Route(
            "guild", msg.guild_id,
            Fanout(self.channel_id, PreparedDispatch("TYPING_START", data))))


def channel_key(guild_id: int | None, channel_id: int) -> tuple[int | None, int]:
    """A channel actor's registry key: its guild comes first, so that placement puts the
    channel on its guild's node (``placement_key``) without a lookup."""
    return (guild_id, channel_id)


def placement_key(kind: str, key: Any) -> int:
    """The int that places entity ``(kind, key)``: a guild by its id, a channel by its
    guild's (by its own id when it has no guild)."""
    if kind == "guild":
        if isinstance(key, bool) or not isinstance(key, int):
            raise ValueError("a guild's key is its id (an int)")
        return key
    if kind == "channel":
        if not isinstance(key, tuple | list) or len(key) != 2:
            raise ValueError("a channel's key is (guild_id, channel_id): see channel_key")
        guild_id, channel_id = key
        return int(channel_id if guild_id is None else guild_id)
    raise ValueError(f"{kind!r} is not a placed kind")


def _write_failure(failed: WriteFailed) -> PostFailed:
    """What the poster hears when storage could not write its message: a rejected value
    is the client's (400), an outage is retryable (503), anything else a server error.
    ``failed.error`` is storage's client-safe reason (never the database's own text)."""
    if failed.rejected:
        return PostFailed(400, 50035, f"Invalid Form Body: {failed.error}")
    if failed.transient:
        return PostFailed(503, 0, f"{failed.error}; not acknowledged")
    return PostFailed(500, 0, f"write failed: {failed.error}")


def _rest_view(payload: dict[str, Any]) -> dict[str, Any]:
    """The REST answer: the MESSAGE_CREATE payload without the gateway-only ``member``."""
    reply = dict(payload)
    reply.pop("member", None)
    return reply
