"""greenroom's Thespian system base: actors scheduled on a uvloop event loop.

Passed to ``thespian.actors.ActorSystem(systemBase=UvloopSystemBase(...))`` as an
object. Thespian's actor classes run unchanged; messages are delivered in-process by
one run queue drained from the event loop:

* a mailbox (a list) is created on an actor's first message and dropped once drained;
* an actor handles at most ``messages_per_turn`` messages before the next actor runs,
  and one drain handles at most ``drain_budget`` messages before the loop serves I/O;
* a mailbox holds at most ``capacity`` messages; past that the message comes back to
  its sender as ``Overloaded`` (an external ``tell`` raises ``MailboxFull``);
* a failing handler is retried once, then its message returns to the sender as a
  ``PoisonMessage`` (Thespian's rule); an actor whose class sets
  ``exit_on_error = True`` instead exits with the error as its reason (OTP's rule) so
  that its supervisor restarts it — the sender still gets the ``PoisonMessage``.

Messages between a given sender and receiver are delivered in the order sent.

An ask whose request left for another node (sent there, or forwarded there by a
registry: the router sees the ask's reply address as the sender) waits on that node:
when it is gone (``node_down``, or the data plane gives up on it) the ask fails at once
instead of at its timeout (``fail_asks_awaiting``). A request forwarded on again by the
other node is tracked only on its first hop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import inspect
import itertools
import logging
import os
import threading
import traceback
from collections.abc import Awaitable, Callable
from typing import Any

from thespian.actors import Actor as ThespianActor
from thespian.actors import (
    ActorExitRequest,
    ActorSystemException,
    ActorSystemMessage,
    ChildActorExited,
    DeadEnvelope,
    InvalidActorAddress,
    PoisonMessage,
    WakeupMessage,
)
from thespian.system.timing import timePeriodSeconds
from thespian.system.utilis import actualActorClass

from actors.address import Address
from actors.cell import Cell
from actors.messages import (
    KILLED,
    NOCONNECTION,
    NORMAL,
    SHUTDOWN,
    AskTimeout,
    DemonitorRemote,
    Down,
    IODone,
    MailboxFull,
    MonitorRemote,
    NodeDownError,
    Overloaded,
    Reply,
    Timeout,
)

log = logging.getLogger("greenroom.actors")

DEFAULT_CAPACITY = 10_000
#: Every node's monitor agent has this well-known id (remote monitors go through it).
#: Negative ids are never handed out by the runtime; -1 (the gateway's fan-out point)
#: and -2 (the entity registry) are taken by the layers above.
MONITOR_AGENT_ID = -1000
_thespian_send = ThespianActor.send
_SPECIAL = frozenset({ActorExitRequest, ChildActorExited, Timeout})
_init_args_cache: dict[type, tuple[bool, bool]] = {}


def _new_event_loop() -> asyncio.AbstractEventLoop:
    import uvloop

    return uvloop.new_event_loop()


def tune_gc(threshold: int = 50_000) -> None:
    """Tune CPython's cyclic GC for a process that hosts many long-lived actors.

    Measured (loadtest/bench_runtime.py): with default thresholds about 27% of a
    fan-out's time went to generation-0 collections that re-walk every young actor
    and message. Freezing what start-up created moves it out of the collector's way;
    a higher gen-0 threshold makes collections rarer. Call once, after start-up.
    """
    import gc

    gc.collect()
    gc.freeze()
    gc.set_threshold(threshold, 20, 20)


def _fast_send(self: Any, targetAddr: Any, msg: Any) -> None:
    """``Actor.send`` on this base: ``Cell.actor_send`` inlined (the hot path)."""
    ref = self._myRef
    if ref.__class__ is not Cell:  # the same class running on one of Thespian's bases
        return _thespian_send(self, targetAddr, msg)
    try:
        cell = targetAddr._cell
    except AttributeError:
        raise InvalidActorAddress(targetAddr, "is not an address of this actor system") from None
    if cell is not None and cell.alive:
        mb = cell.mailbox
        if mb is None:
            cell.mailbox = [(msg, ref.address)]
        elif len(mb) < cell.capacity:
            mb.append((msg, ref.address))
        else:
            return ref.base.deliver(targetAddr, msg, ref.address)
        if not cell.scheduled:
            cell.scheduled = True
            base = ref.base
            base.runq.append(cell)
            if not base.drain_pending:
                base.schedule_drain()
    else:
        ref.base.send_slow(targetAddr, msg, ref.address)


def _install_fast_send(actorClass: type) -> None:
    """Give ``actorClass`` a ``send`` that skips Thespian's wrapper on this base.

    Thespian's ``Actor.send`` checks the address, then calls ``_myRef.actor_send``,
    which checks it again. Patched on the class (not per instance: 72 bytes an actor),
    and only where the class did not define its own ``send``.
    """
    if getattr(actorClass, "send", None) is _thespian_send:
        actorClass.send = _fast_send


def _plain(reason: Any) -> Any:
    """An exit reason that msgpack can carry to another node (else its repr)."""
    if reason is None or isinstance(reason, str | int | float | bool):
        return reason
    if isinstance(reason, tuple | list):
        return [_plain(r) for r in reason]
    return repr(reason)


class _External:
    """The instance behind the external requester's address: queues what it is sent."""

    def __init__(self) -> None:
        self.inbox: list[Any] = []
        self.ready = threading.Condition()

    def receiveMessage(self, msg: Any, sender: Address) -> None:
        with self.ready:
            self.inbox.append(msg)
            self.ready.notify_all()


def _settling(future: asyncio.Future, target: Address, timeout: float,
              message: Any) -> tuple[Callable[[Any, Address], None],
                                     Callable[[str | None], None]]:
    """``ask_async``'s ``resolve`` and ``fail`` for ``future``: the first answer, or
    the error that the ask timed out or that the node that had to answer is gone."""

    def resolve(msg: Any, sender: Address) -> None:
        if not future.done():
            future.set_result(msg)

    def fail(node: str | None) -> None:
        if future.done():
            return
        if node is None:
            future.set_exception(TimeoutError(
                f"no reply from {target} within {timeout} s to {type(message).__name__}"))
        else:
            future.set_exception(NodeDownError(
                node, f"node {node} is gone: no reply from {target} to "
                      f"{type(message).__name__}"))

    return resolve, fail


class _ReplyCatcher:
    """The instance behind a one-shot reply address created by ``ask``.

    ``resolve`` is called with the first message sent to that address; later ones
    are dead letters. Unmodified Thespian actors answer an ask by sending to their
    ``sender``, so they need no knowledge of correlation ids.
    """

    __slots__ = ("cell", "resolve", "fail", "timer", "nodes")

    def __init__(self, resolve: Callable[[Any, Address], None],
                 fail: Callable[[str | None], None]) -> None:
        self.cell: Cell | None = None
        self.resolve = resolve
        #: called with None when the ask times out, with a node's name when that node,
        #: which had to answer, is gone
        self.fail = fail
        self.timer: asyncio.TimerHandle | None = None
        #: the other nodes its request went to (``UvloopSystemBase._awaiting``)
        self.nodes: list[str] | None = None

    def receiveMessage(self, msg: Any, sender: Address) -> None:
        self.cell.base.settle(self)
        self.resolve(msg, sender)


class _MonitorAgent:
    """The instance behind a node's monitor agent (``MONITOR_AGENT_ID``).

    A monitor on an actor of another node goes agent to agent: the watcher's agent
    sends ``MonitorRemote(ref, target)``; the target's agent registers a local monitor
    on the target's cell whose watcher is the remote agent, and when the target ends
    its ``Down`` goes back to that agent carrying the watcher's ``ref``, and from there
    to the watcher. Going through the agents keeps each side's books (a watcher's refs,
    its node's live monitors) so that a node leaving the membership fires every
    monitor on it (``UvloopSystemBase.node_down``), and none fires twice.
    """

    def __init__(self, base: UvloopSystemBase) -> None:
        self.base = base

    def receiveMessage(self, msg: Any, sender: Address) -> None:
        cls = msg.__class__
        if cls is MonitorRemote:
            self.base._proxy_monitor(msg, sender)
        elif cls is DemonitorRemote:
            self.base._proxy_demonitor(sender.node, msg.ref)
        elif cls is Down:
            self.base._remote_down(msg.ref, msg.reason)


class UvloopSystemBase:
    """A Thespian system base running in-process actors on a uvloop event loop.

    ``loop=None`` starts a private loop in a daemon thread (for synchronous callers:
    tests, scripts, Thespian's external ``ask``); pass the running loop of an asyncio
    program to share it (then use ``await ask_async(...)``: a blocking ``ask`` from the
    loop's own thread would deadlock and raises instead).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None, *, node: str | None = None,
                 messages_per_turn: int = 64, drain_budget: int = 20_000,
                 capacity: int = DEFAULT_CAPACITY) -> None:
        self.node = node or f"{os.uname().nodename}:{os.getpid()}"
        self.messages_per_turn = messages_per_turn
        self.drain_budget = drain_budget
        self.default_capacity = capacity
        self.runq: list[Cell] = []
        self.drain_pending = False
        self.cells: dict[int, Cell] = {}
        self.global_names: dict[str, Address] = {}
        self.primaries: dict[int, Address] = {}  # top-level actors, in creation order
        self.dead_letter_handler: Address | None = None
        self.registration_watchers: dict[Address, bool] = {}
        self.router: Callable[[Address, Any, Address | None], None] | None = None
        self.capabilities: dict[str, Any] = {"Thespian ActorSystem Name": "greenroom.uvloop"}
        self.stats = {"dead_letters": 0, "overloaded": 0, "poison": 0, "delivered_remote": 0}
        #: the longest mailbox at the start of a turn so far (read by /metrics)
        self.mailbox_high_water = 0
        self._ids = itertools.count(1)
        self._monitor_refs: dict[int, Cell] = {}  # ref -> the monitored cell
        # watcher id -> its refs: an exiting watcher's monitors go with it. Kept here,
        # not in a Cell slot, so actors that never monitor pay nothing.
        self._watching: dict[int, set[int]] = {}
        # Remote monitors (see _MonitorAgent). Watcher side: ref -> (watcher, target).
        self._remote_monitors: dict[int, tuple[Address, Address]] = {}
        # Target side: local ref -> (watcher node, its ref), and the reverse.
        self._proxied: dict[int, tuple[str, int]] = {}
        self._proxy_refs: dict[tuple[str, int], int] = {}
        #: Set by the data plane: whether a node is a live peer (None: any node is).
        self.reachable: Callable[[str], bool] | None = None
        # node -> the reply cells of asks whose request went to that node (directly, or
        # forwarded there by a registry): failed at once when the node is gone
        self._awaiting: dict[str, set[Cell]] = {}
        self._refs = itertools.count(1)
        self._running: Cell | None = None  # the cell whose turn _drain is running
        # Drains run in the runtime's own context, never in a copy of whatever task or
        # callback woke the run queue (call_soon's default): else a REST request's span
        # would be "current" for every actor that drain runs, and its log lines and
        # envelopes would name a trace that is not theirs. Actors carry their trace in
        # their messages.
        self._drain_context = contextvars.Context()
        self._overload_logged = [float("-inf"), 0]  # [last written, held back since]
        self._thread: threading.Thread | None = None
        if loop is None:
            self.loop = _new_event_loop()
            started = threading.Event()
            self._thread = threading.Thread(target=self._run_loop, args=(started,),
                                            name="greenroom-actors", daemon=True)
            self._thread.start()
            started.wait()
        else:
            self.loop = loop
        self._loop_thread_id = self._thread.ident if self._thread else threading.get_ident()
        self.external_address = self._new_cell(None, DEFAULT_CAPACITY * 10)
        self.external_address._cell.instance = _External()
        self.monitor_agent = self._new_cell(None, DEFAULT_CAPACITY * 10, MONITOR_AGENT_ID)
        self.monitor_agent._cell.instance = _MonitorAgent(self)

    def _run_loop(self, started: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(started.set)
        self.loop.run_forever()

    # -- scheduling ------------------------------------------------------------------

    def schedule_drain(self) -> None:
        self.drain_pending = True
        self.loop.call_soon(self._drain, context=self._drain_context)

    def _drain(self) -> None:
        runq = self.runq
        per_turn = self.messages_per_turn
        budget = self.drain_budget
        now = self.loop.time()
        special = _SPECIAL
        i = 0
        # runq is consumed by index and trimmed once: list.pop(0) would be O(n).
        while i < len(runq):
            cell = runq[i]
            i += 1
            mb = cell.mailbox
            if not cell.alive or mb is None:
                cell.scheduled = False
                continue
            if len(mb) == 1:
                # one message (a broadcast's receivers, a reply): no turn machinery
                cell.mailbox = None
                msg, sender = mb[0]
                self._running = cell
                if msg.__class__ in special:
                    self._special(cell, msg, sender)
                else:
                    try:
                        cell.instance.receiveMessage(msg, sender)
                    except Exception as err:
                        self._failed(cell, msg, sender, err)
                self._running = None
                cell.last_turn = now
                budget -= 1
                if cell.alive:
                    if cell.mailbox:
                        runq.append(cell)
                    else:
                        cell.scheduled = False
                else:
                    if cell.mailbox:
                        rest, cell.mailbox = cell.mailbox, None
                        self._bury(cell, rest)
                    cell.scheduled = False
                if budget <= 0:
                    break
                continue
            if len(mb) > self.mailbox_high_water:  # one compare a turn of 2+ messages
                self.mailbox_high_water = len(mb)
            if len(mb) > per_turn:
                cell.mailbox = mb[per_turn:]
                mb = mb[:per_turn]
            else:
                cell.mailbox = None
            receive = cell.instance.receiveMessage
            self._running = cell
            turn = iter(mb)
            for msg, sender in turn:
                if msg.__class__ in special:
                    self._special(cell, msg, sender)
                else:
                    try:
                        receive(msg, sender)
                    except Exception as err:
                        self._failed(cell, msg, sender, err)
                if not cell.alive:
                    # it exited mid-turn: the rest of this turn, then what was
                    # queued behind it (kill left that for us), become dead letters
                    rest = list(turn)
                    if cell.mailbox:
                        rest += cell.mailbox
                        cell.mailbox = None
                    self._bury(cell, rest)
                    break
            self._running = None
            cell.last_turn = now
            budget -= len(mb)
            if cell.alive and cell.mailbox:
                runq.append(cell)
            else:
                cell.scheduled = False
            if budget <= 0:
                break
        del runq[:i]
        if runq:
            self.loop.call_soon(self._drain, context=self._drain_context)
        else:
            self.drain_pending = False

    def _enqueue(self, cell: Cell, msg: Any, sender: Address | None) -> bool:
        mb = cell.mailbox
        if mb is None:
            cell.mailbox = [(msg, sender)]
        elif len(mb) < cell.capacity or isinstance(msg, ActorSystemMessage):
            mb.append((msg, sender))  # system messages (Down, Reply, ...) never bounce
        else:
            return False
        if not cell.scheduled:
            cell.scheduled = True
            self.runq.append(cell)
            if not self.drain_pending:
                self.schedule_drain()
        return True

    def deliver(self, target: Address, msg: Any, sender: Address | None) -> None:
        """Deliver ``msg`` to ``target`` as if sent by ``sender`` (loop thread only)."""
        cell = target._cell
        if cell is not None and cell.alive:
            if not self._enqueue(cell, msg, sender):
                self.overloaded(cell, msg, sender)
        else:
            self.send_slow(target, msg, sender)

    def send_slow(self, target: Address, msg: Any, sender: Address | None) -> None:
        """A send to an address that is not a live local cell: resolve, route, or bounce."""
        if not isinstance(target, Address):
            raise InvalidActorAddress(target, "is not an address of this actor system")
        if target.node == self.node:
            cell = self.cells.get(target.id)
            if cell is not None and cell.alive:
                target._cell = cell
                self.deliver(target, msg, sender)
                return
        elif self.router is not None:
            self.stats["delivered_remote"] += 1
            if sender is not None and sender.__class__ is Address:
                scell = sender._cell
                if scell is not None and scell.instance.__class__ is _ReplyCatcher:
                    # an ask's request (or a registry forwarding one) leaves this node:
                    # its answer now depends on target's node being alive
                    self._await_node(scell.instance, target.node)
            self.router(target, msg, sender)
            return
        self.dead_letter(target, msg)

    def dead_letter(self, target: Address, msg: Any) -> None:
        self.stats["dead_letters"] += 1
        handler = self.dead_letter_handler
        if handler is not None and handler != target and not isinstance(msg, DeadEnvelope):
            self.deliver(handler, DeadEnvelope(target, msg), target)
        elif log.isEnabledFor(logging.DEBUG):
            # the type, not the message (it may carry a token or content); the cluster's
            # data plane reports a dead node's letters itself, at warning, rate-limited
            log.debug("actor.dead_letter", extra={
                "target": str(target), "msg_type": type(msg).__name__,
                "trace": getattr(msg, "trace", None)})

    def overloaded(self, cell: Cell, msg: Any, sender: Address | None) -> None:
        self.stats["overloaded"] += 1
        if sender is None or sender == self.external_address:
            raise MailboxFull(f"mailbox of {cell.address} is full ({cell.capacity} messages)")
        # one line a second at most (an overload bounces thousands), with the count
        now = self.loop.time()
        logged = self._overload_logged
        if now - logged[0] >= 1.0:
            log.warning("actor.overloaded", extra={
                "target": str(cell.address), "sender": str(sender),
                "msg_type": type(msg).__name__, "capacity": cell.capacity,
                "suppressed": logged[1], "trace": getattr(msg, "trace", None)})
            logged[0], logged[1] = now, 0
        else:
            logged[1] += 1
        # Overloaded is a system message: it never bounces off the sender's own bound.
        self.deliver(sender, Overloaded(cell.address, msg, cell.capacity), cell.address)

    # -- failure and exit ------------------------------------------------------------

    def _failed(self, cell: Cell, msg: Any, sender: Address, err: Exception) -> None:
        inst = cell.instance
        if getattr(inst, "exit_on_error", False):
            details = traceback.format_exc()
            # A server fault: one record with the error's type and traceback. The
            # message's type only, not its repr (it may carry a token or content).
            log.error("actor.crashed", exc_info=err, extra={
                "actor": type(inst).__name__, "address": str(cell.address),
                "msg_type": type(msg).__name__, "reason": repr(err),
                "trace": getattr(msg, "trace", None)})
            self._poison(cell, msg, sender, details)
            self.kill(cell, ("error", repr(err)))
            return
        try:
            inst.receiveMessage(msg, sender)  # Thespian retries a failed message once
        except Exception:
            details = traceback.format_exc()
            log.error("actor.poisoned", exc_info=True, extra={  # failed twice
                "actor": type(inst).__name__, "address": str(cell.address),
                "msg_type": type(msg).__name__, "trace": getattr(msg, "trace", None)})
            self._poison(cell, msg, sender, details)

    def _poison(self, cell: Cell, msg: Any, sender: Address | None, details: str) -> None:
        self.stats["poison"] += 1
        if sender is not None and not isinstance(msg, PoisonMessage):
            self.deliver(sender, PoisonMessage(msg, details), cell.address)

    def _special(self, cell: Cell, msg: Any, sender: Address) -> None:
        if msg.__class__ is Timeout:
            timers = cell.timers
            if not timers or msg.ref not in timers:
                return  # cancelled after it fell due: a cancelled timer never delivers
            if timers[msg.ref] is None:
                del timers[msg.ref]  # a one-shot timer is done
            try:
                cell.instance.receiveMessage(msg, sender)
            except Exception as err:
                self._failed(cell, msg, sender, err)
            return
        if msg.__class__ is ActorExitRequest:
            self.stop(cell, msg, sender, SHUTDOWN if sender != cell.address else NORMAL)
            return
        # ChildActorExited (the child was already forgotten when it was killed)
        try:
            cell.instance.receiveMessage(msg, sender)
        except Exception as err:
            self._failed(cell, msg, sender, err)

    def stop(self, cell: Cell, request: ActorExitRequest, sender: Address | None, reason: Any,
             notify_parent: bool = True) -> None:
        """Thespian's exit: the actor handles its ``ActorExitRequest`` (a failure there
        is logged, not retried), then it is killed."""
        try:
            cell.instance.receiveMessage(request, sender)
        except Exception:
            log.warning("actor.exit_failed", exc_info=True, extra={
                "actor": type(cell.instance).__name__, "address": str(cell.address)})
        self.kill(cell, reason, notify_parent)

    def kill(self, cell: Cell, reason: Any, notify_parent: bool = True) -> None:
        """End an actor: children first (newest first), then timers, monitors, parent."""
        if not cell.alive:
            return
        cell.alive = False
        if cell.children:
            for child in reversed(list(cell.children.values())):
                ccell = child._cell
                if ccell is not None and ccell.alive:
                    self.stop(ccell, ActorExitRequest(), cell.address, SHUTDOWN,
                              notify_parent=False)
            cell.children = None
        if cell.timers:
            for handle in cell.timers.values():
                if handle is not None:
                    handle.cancel()
            cell.timers = None
        pending, cell.mailbox = cell.mailbox, None
        self.cells.pop(cell.address.id, None)
        if cell.globalName and self.global_names.get(cell.globalName) == cell.address:
            del self.global_names[cell.globalName]
        if cell.monitors:
            for ref, watcher in cell.monitors.items():
                self._monitor_refs.pop(ref, None)
                refs = self._watching.get(watcher.id)
                if refs is not None:
                    refs.discard(ref)
                    if not refs:
                        del self._watching[watcher.id]
                proxied = self._proxied.pop(ref, None) if self._proxied else None
                if proxied is not None:  # a remote watcher: its agent gets its own ref
                    self._proxy_refs.pop(proxied, None)
                    self.deliver(watcher, Down(proxied[1], cell.address, _plain(reason)),
                                 cell.address)
                else:
                    self.deliver(watcher, Down(ref, cell.address, reason), cell.address)
            cell.monitors = None
        for ref in self._watching.pop(cell.address.id, ()):
            target = self._monitor_refs.pop(ref, None)
            if target is not None and target.monitors:
                target.monitors.pop(ref, None)
            elif ref in self._remote_monitors:
                self._remote_demonitor(ref)
        if cell.parent is None:
            self.primaries.pop(cell.address.id, None)
        else:
            pcell = cell.parent._cell
            if pcell is not None and pcell.children:
                pcell.children.pop(cell.address.id, None)
        if notify_parent and cell.parent is not None:
            exited = ChildActorExited(cell.address)
            exited.reason = reason
            self.deliver(cell.parent, exited, cell.address)
        cell.instance = None
        if pending:
            if self._running is cell:
                cell.mailbox = pending  # _drain buries them after the rest of this turn
            else:
                self._bury(cell, pending)

    def _bury(self, cell: Cell, pending: list) -> None:
        """What was sent to ``cell`` and never handled: dead letters, in order."""
        for msg, _sender in pending:
            if not isinstance(msg, ActorExitRequest):
                self.dead_letter(cell.address, msg)

    def retire(self, cell: Cell) -> None:
        """Quietly end an internal cell (a one-shot reply address).

        Later messages to it are dead letters (a second answer to an ask, or an
        answer that came after the ask timed out).
        """
        cell.alive = False
        self.cells.pop(cell.address.id, None)
        if self._running is not cell:
            pending, cell.mailbox = cell.mailbox, None
            if pending:
                self._bury(cell, pending)

    # -- creation --------------------------------------------------------------------

    def _new_cell(self, parent: Address | None, capacity: int,
                  fixed_id: int | None = None) -> Address:
        address = Address(self.node, next(self._ids) if fixed_id is None else fixed_id)
        if address.id in self.cells:
            raise ValueError(f"actor id {address.id} is taken on {self.node}")
        cell = Cell(self, address, parent, capacity)
        address._cell = cell
        self.cells[address.id] = cell
        return address

    def create_actor(self, parent: Cell | None, actorClass: Any, requirements: Any,
                     globalName: str | None, fixed_id: int | None = None) -> Address:
        """Create an actor (loop thread). ``fixed_id`` gives a well-known address, such
        as a node's directory at id 0 that other processes can name without asking."""
        if globalName and globalName in self.global_names:
            return self.global_names[globalName]
        actorClass = actualActorClass(actorClass)
        capacity = getattr(actorClass, "mailbox_capacity", self.default_capacity)
        address = self._new_cell(parent.address if parent else None, capacity, fixed_id)
        cell = address._cell
        if parent is not None:
            if parent.children is None:
                parent.children = {address.id: address}
            else:
                parent.children[address.id] = address
        try:
            check = getattr(actorClass, "actorSystemCapabilityCheck", None)
            if check is not None and not check(self.capabilities, requirements or {}):
                raise ActorSystemException(
                    f"{actorClass.__name__} needs capabilities this system lacks")
            instance = self._instantiate(actorClass, requirements)
        except Exception as err:
            log.warning("actor.create_failed", exc_info=True, extra={
                "actor": getattr(actorClass, "__name__", str(actorClass))})
            if parent is None:
                self.retire(cell)
                raise
            self.kill(cell, ("error", repr(err)))
            return address
        instance._myRef = cell
        cell.instance = instance
        if globalName:
            cell.globalName = globalName
            self.global_names[globalName] = address
        if parent is None:
            self.primaries[address.id] = address
        return address

    def _instantiate(self, actorClass: type, requirements: Any) -> Any:
        wants = _init_args_cache.get(actorClass)
        if wants is None:
            try:
                params = inspect.signature(actorClass.__init__).parameters
            except (TypeError, ValueError):
                params = {}
            wants = _init_args_cache[actorClass] = ("capabilities" in params,
                                                    "requirements" in params)
            _install_fast_send(actorClass)
        kwargs = {}
        if wants[0]:
            kwargs["capabilities"] = self.capabilities
        if wants[1]:
            kwargs["requirements"] = requirements
        return actorClass(**kwargs)

    # -- timers, monitors, asks, I/O ---------------------------------------------------

    def wakeup_after(self, cell: Cell, period: Any, payload: Any) -> None:
        ref = -next(self._refs)
        delay = timePeriodSeconds(period)

        def fire() -> None:
            if cell.timers:
                cell.timers.pop(ref, None)
            if cell.alive:
                self.deliver(cell.address, WakeupMessage(period, payload), cell.address)

        self._add_timer(cell, ref, self.loop.call_later(delay, fire))

    def _add_timer(self, cell: Cell, ref: int, handle: asyncio.TimerHandle) -> None:
        if cell.timers is None:
            cell.timers = {ref: handle}
        else:
            cell.timers[ref] = handle

    def start_timer(self, cell: Cell, delay: float, payload: Any, repeat: bool) -> int:
        ref = next(self._refs)
        self._add_timer(cell, ref, self.loop.call_later(
            delay, self._fire_timer, cell, ref, delay, payload, repeat))
        return ref

    def _fire_timer(self, cell: Cell, ref: int, delay: float, payload: Any,
                     repeat: bool) -> None:
        # A bound method and its arguments, not a closure: a repeating closure had to
        # name itself, and each timer left a cycle (the function, its cells) that only
        # the cyclic GC could free. A fan-out point's turns start ~8 timers a message,
        # and those cycles made most of the young generation: collections of 20-60 ms
        # in the middle of fan-outs (loadtest/GATEWAY_BENCH.md, "Ninth session").
        timers = cell.timers
        if not cell.alive or not timers or ref not in timers:
            return
        if repeat:
            timers[ref] = self.loop.call_later(
                delay, self._fire_timer, cell, ref, delay, payload, repeat)
        else:
            timers[ref] = None  # fired; delivered unless cancelled before handled
        self.deliver(cell.address, Timeout(ref, payload), cell.address)

    def cancel_timer(self, cell: Cell, ref: int) -> bool:
        """True if the timer will not deliver again (a Timeout already queued for it is
        dropped when its turn comes); False if it had already delivered or is unknown."""
        timers = cell.timers
        if not timers or ref not in timers:
            return False
        handle = timers.pop(ref)
        if handle is not None:
            handle.cancel()
        return True

    def monitor(self, watcher: Cell, target: Address) -> int:
        if (target.__class__ is Address and target.node != self.node
                and self.router is not None):
            return self._monitor_remote(watcher, target)
        ref = next(self._refs)
        tcell = target._cell if isinstance(target, Address) else None
        if tcell is None and isinstance(target, Address) and target.node == self.node:
            tcell = self.cells.get(target.id)
        if tcell is None or not tcell.alive:
            self.deliver(watcher.address, Down(ref, target, "noproc"), target)
            return ref
        if tcell.monitors is None:
            tcell.monitors = {}
        tcell.monitors[ref] = watcher.address
        self._monitor_refs[ref] = tcell
        self._watching.setdefault(watcher.address.id, set()).add(ref)
        return ref

    def demonitor(self, ref: int) -> bool:
        if ref in self._remote_monitors:
            self._remote_demonitor(ref)
            return True
        tcell = self._monitor_refs.pop(ref, None)
        if tcell is None or not tcell.monitors:
            return False
        watcher = tcell.monitors.pop(ref, None)
        if watcher is None:
            return False
        refs = self._watching.get(watcher.id)
        if refs is not None:
            refs.discard(ref)
            if not refs:
                del self._watching[watcher.id]
        return True

    # -- monitors across nodes (see _MonitorAgent) ------------------------------------------

    def _monitor_remote(self, watcher: Cell, target: Address) -> int:
        ref = next(self._refs)
        if self.reachable is not None and not self.reachable(target.node):
            self.deliver(watcher.address, Down(ref, target, NOCONNECTION), target)
            return ref
        self._remote_monitors[ref] = (watcher.address, target)
        self._watching.setdefault(watcher.address.id, set()).add(ref)
        self.router(Address(target.node, MONITOR_AGENT_ID), MonitorRemote(ref, target),
                    self.monitor_agent)
        return ref

    def _forget_remote(self, ref: int) -> tuple[Address, Address] | None:
        entry = self._remote_monitors.pop(ref, None)
        if entry is not None:
            refs = self._watching.get(entry[0].id)
            if refs is not None:
                refs.discard(ref)
                if not refs:
                    del self._watching[entry[0].id]
        return entry

    def _remote_demonitor(self, ref: int) -> None:
        entry = self._forget_remote(ref)
        if entry is not None and self.router is not None:
            self.router(Address(entry[1].node, MONITOR_AGENT_ID), DemonitorRemote(ref),
                        self.monitor_agent)

    def _remote_down(self, ref: int, reason: Any) -> None:
        entry = self._forget_remote(ref)
        if entry is not None:  # else demonitored meanwhile: a Down it must not see
            self.deliver(entry[0], Down(ref, entry[1], reason), entry[1])

    def _proxy_monitor(self, msg: MonitorRemote, agent: Address) -> None:
        target = msg.target
        tcell = self.cells.get(target.id) if target.node == self.node else None
        if tcell is None or not tcell.alive or tcell.instance is None \
                or target.id == MONITOR_AGENT_ID:
            self.deliver(agent, Down(msg.ref, target, "noproc"), target)
            return
        ref = next(self._refs)
        if tcell.monitors is None:
            tcell.monitors = {}
        tcell.monitors[ref] = agent
        self._monitor_refs[ref] = tcell
        self._proxied[ref] = (agent.node, msg.ref)
        self._proxy_refs[(agent.node, msg.ref)] = ref

    def _proxy_demonitor(self, node: str, their_ref: int) -> None:
        ref = self._proxy_refs.pop((node, their_ref), None)
        if ref is not None:
            self._proxied.pop(ref, None)
            self.demonitor(ref)

    def node_down(self, node: str) -> None:
        """``node`` left the membership (or came back as a new incarnation): every
        monitor on its actors fires ``Down(..., "noconnection")``, and the monitors its
        actors held here are dropped (they would otherwise lease entities forever)."""
        for ref, (_watcher, target) in list(self._remote_monitors.items()):
            if target.node == node:
                self._remote_down(ref, NOCONNECTION)
        for key in [k for k in self._proxy_refs if k[0] == node]:
            self._proxy_demonitor(*key)
        self.fail_asks_awaiting(node)

    # -- asks whose answer depends on another node -------------------------------------------

    def _await_node(self, catcher: _ReplyCatcher, node: str) -> None:
        if not catcher.cell.alive:
            return
        nodes = catcher.nodes
        if nodes is None:
            catcher.nodes = [node]
        elif node in nodes:
            return
        else:
            nodes.append(node)
        waiting = self._awaiting.get(node)
        if waiting is None:
            self._awaiting[node] = {catcher.cell}
        else:
            waiting.add(catcher.cell)

    def settle(self, catcher: _ReplyCatcher) -> None:
        """An ask is over (answered, timed out or failed): retire its reply cell and
        stop waiting on the nodes its request went to.

        It also undoes the ask's reference cycles (cell and address, cell and catcher,
        catcher and its timer's callback), so that an ask's objects are freed when the
        last reference goes, not by the cyclic GC: one ask per REST post left ~30
        objects for it (see ``_fire_timer``)."""
        if catcher.timer is not None:
            catcher.timer.cancel()
            catcher.timer = None
        cell = catcher.cell
        self.retire(cell)
        cell.instance = None
        cell.address._cell = None  # a later answer is a dead letter all the same
        if catcher.nodes is not None:
            for node in catcher.nodes:
                waiting = self._awaiting.get(node)
                if waiting is not None:
                    waiting.discard(catcher.cell)
                    if not waiting:
                        del self._awaiting[node]
            catcher.nodes = None

    def fail_asks_awaiting(self, node: str) -> int:
        """Fail, now, every pending ask whose request went to ``node``: it left the
        cluster (or the data plane gave up on it), so its answer will never come. An
        actor's ask gets ``AskTimeout(..., reason=NOCONNECTION)``, ``ask_async`` raises
        ``NodeDownError``. Returns how many asks failed."""
        waiting = self._awaiting.pop(node, None)
        if not waiting:
            return 0
        failed = 0
        for cell in list(waiting):
            if self._fail_catcher(cell, node):
                failed += 1
        if failed:
            log.info("%d asks failed at once: node %s is gone", failed, node)
        return failed

    def fail_ask(self, sender: Address | None, node: str) -> None:
        """The router could not send an ask's request to ``node`` at all (not a peer):
        fail that one ask now rather than at its timeout."""
        if sender.__class__ is Address and sender._cell is not None:
            self._fail_catcher(sender._cell, node)

    def _fail_catcher(self, cell: Cell, node: str) -> bool:
        """If ``cell`` is a pending ask's reply address, fail that ask now: ``node``
        will not answer. Returns whether it was."""
        catcher = cell.instance
        if not cell.alive or catcher.__class__ is not _ReplyCatcher:
            return False
        self.settle(catcher)
        catcher.fail(node)
        return True

    def _reply_address(self, resolve: Callable[[Any, Address], None], timeout: float,
                       fail: Callable[[str | None], None]) -> Address:
        address = self._new_cell(None, DEFAULT_CAPACITY)
        catcher = _ReplyCatcher(resolve, fail)
        catcher.cell = address._cell
        address._cell.instance = catcher

        def expire() -> None:
            if catcher.cell.alive:
                catcher.timer = None
                self.settle(catcher)
                fail(None)

        catcher.timer = self.loop.call_later(timeout, expire)
        return address

    def ask_from_actor(self, cell: Cell, target: Address, message: Any, timeout: float) -> int:
        ref = next(self._refs)
        asker = cell.address

        def resolve(msg: Any, sender: Address) -> None:
            self.deliver(asker, Reply(ref, msg, sender), sender)

        def fail(node: str | None) -> None:
            self.deliver(asker, AskTimeout(ref, target, timeout,
                                           "timeout" if node is None else NOCONNECTION), asker)

        self.deliver(target, message, self._reply_address(resolve, timeout, fail))
        return ref

    async def ask_async(self, target: Address, message: Any, timeout: float) -> Any:
        """Send ``message`` and await the first answer; ``TimeoutError`` after ``timeout``
        s, or ``NodeDownError`` (a ``TimeoutError``) as soon as the node that had to
        answer is gone (``fail_asks_awaiting``)."""
        future = self.loop.create_future()
        resolve, fail = _settling(future, target, timeout, message)
        self.deliver(target, message, self._reply_address(resolve, timeout, fail))
        try:
            return await future
        finally:
            # A failed ask's error holds this frame (its traceback), the frame the
            # future, the future the error: a cycle for the GC (see ``settle``). Only
            # the frame lets go: ``resolve`` and ``fail`` hold the future themselves,
            # so a cancelled ask's late answer or timeout still finds it done.
            future = resolve = fail = None

    def tell_from_loop(self, target: Address, message: Any) -> None:
        """A ``tell`` from asyncio code on the loop thread (sender: the external address)."""
        self.deliver(target, message, self.external_address)

    def run_io(self, cell: Cell, awaitable: Awaitable[Any], tag: Any) -> None:
        task = asyncio.ensure_future(awaitable, loop=self.loop)

        def done(t: asyncio.Future) -> None:
            if not cell.alive:
                return
            if t.cancelled():
                result, error = None, asyncio.CancelledError()
            else:
                error = t.exception()
                result = None if error else t.result()
            self.deliver(cell.address, IODone(tag, result, error), cell.address)

        task.add_done_callback(done)

    # -- Thespian's system-base interface ------------------------------------------------

    def _on_loop_thread(self) -> bool:
        return threading.get_ident() == self._loop_thread_id

    def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn`` on the loop thread and return its result (from any thread)."""
        if self._on_loop_thread():
            return fn(*args)
        result: concurrent.futures.Future = concurrent.futures.Future()

        def run() -> None:
            try:
                result.set_result(fn(*args))
            except BaseException as err:  # handed to the caller's thread
                result.set_exception(err)

        self.loop.call_soon_threadsafe(run)
        return result.result()

    def newPrimaryActor(self, actorClass: Any, targetActorRequirements: Any,
                        globalName: str | None, sourceHash: Any = None) -> Address:
        return self._call(self.create_actor, None, actorClass, targetActorRequirements,
                          globalName)

    def tell(self, anActor: Address, msg: Any) -> None:
        if not isinstance(anActor, Address):
            raise InvalidActorAddress(anActor, "is not an address of this actor system")
        self._call(self.deliver, anActor, msg, self.external_address)

    def ask(self, anActor: Address, msg: Any, timeout: Any = None) -> Any:
        if self._on_loop_thread():
            raise RuntimeError("a blocking ask from the event loop's thread would deadlock; "
                               "use `await base.ask_async(...)`")
        seconds = 3600.0 if timeout is None else timePeriodSeconds(timeout)
        future = asyncio.run_coroutine_threadsafe(self.ask_async(anActor, msg, seconds),
                                                  self.loop)
        try:
            return future.result()
        except TimeoutError:
            return None  # Thespian's ask answers None on timeout
        finally:
            future = None  # the error it holds holds this frame: no cycle for the GC

    def listen(self, timeout: Any = None) -> Any:
        external = self.external_address._cell.instance
        seconds = None if timeout is None else timePeriodSeconds(timeout)
        with external.ready:
            if not external.inbox:
                external.ready.wait(seconds)
            return external.inbox.pop(0) if external.inbox else None

    def _handleDeadLetters(self, address: Address, enable: bool) -> None:
        if enable:
            self.dead_letter_handler = address
        elif self.dead_letter_handler == address:
            self.dead_letter_handler = None

    def updateCapability(self, name: str, value: Any = None) -> None:
        if value is None:
            self.capabilities.pop(name, None)
        else:
            self.capabilities[name] = value

    def loadActorSource(self, fname: Any) -> Any:
        raise NotImplementedError("greenroom's base does not load actor sources at run time")

    unloadActorSource = loadActorSource

    def shutdown_in_loop(self) -> None:
        for address in reversed(list(self.primaries.values())):
            cell = address._cell
            if cell is not None and cell.alive:
                self.stop(cell, ActorExitRequest(), self.external_address, SHUTDOWN,
                          notify_parent=False)
        self.primaries.clear()

    def shutdown(self) -> None:
        if self.loop.is_closed():
            return
        self._call(self.shutdown_in_loop)
        if self._thread is not None:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(5)
            self.loop.close()

    def kill_brutally(self, address: Address) -> None:
        """OTP's ``exit(Pid, kill)``: end an actor without running its handler."""
        cell = address._cell or self.cells.get(address.id)
        if cell is not None:
            self._call(self.kill, cell, KILLED)  # on the loop thread, from any thread
