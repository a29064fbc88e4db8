"""An OTP supervisor written as a Thespian actor, on Thespian's primitives only.

It uses ``createActor``, ``send``, ``wakeupAfter``, ``ChildActorExited`` and
``ActorExitRequest`` and nothing else, so the same class supervises in-process
actors on greenroom's base and OS processes on Thespian's ``multiprocTCPBase``.

Like OTP's, it is sequential: while it terminates or restarts children it handles
nothing else (other requests and exits wait, stashed, in arrival order), so a
restart is never interleaved with another. Exit reasons come from greenroom's base
(``ChildActorExited.reason``); Thespian's own bases give none, which counts as
abnormal unless this supervisor itself asked the child to stop.
"""

from __future__ import annotations

import collections
import itertools
import logging
import time
from dataclasses import dataclass
from typing import Any

from thespian.actors import Actor, ActorExitRequest, ChildActorExited, WakeupMessage

from actors.messages import KILLED, SHUTDOWN, is_normal_exit
from observability.metrics import counter
from supervision.messages import (
    Children,
    ChildStarted,
    ChildTerminated,
    Start,
    StartChild,
    Started,
    Stop,
    Stopped,
    SupervisorError,
    TerminateChild,
    WhichChildren,
)
from supervision.spec import (
    BRUTAL_KILL,
    ONE_FOR_ALL,
    ONE_FOR_ONE,
    TEMPORARY,
    TRANSIENT,
    ChildSpec,
    SupervisorFlags,
    SupervisorSpec,
)

log = logging.getLogger("greenroom.supervision")
_tokens = itertools.count(1)
#: Every restart a supervisor decided, by child id (a small set: the children's spec ids).
RESTARTS = counter("supervisor_restarts_total",
                   "children restarted by their supervisor, by child id",
                   labels={"child": None})
#: Supervisors that gave up (restart intensity exceeded) and shut their children down.
GAVE_UP = counter("supervisor_shutdowns_total",
                  "supervisors that exceeded their restart intensity, by first child id",
                  labels={"child": None})


@dataclass(eq=False)
class _Child:
    spec: ChildSpec
    address: Any = None


@dataclass(frozen=True)
class _ShutdownTimeout:
    token: int


class Supervisor(Actor):
    """Override ``init()`` (OTP's ``init/1``) or send ``Start(spec)``."""

    def __init__(self) -> None:
        self._flags = SupervisorFlags()
        self._children: list[_Child] = []
        self._restarts: collections.deque[float] = collections.deque()
        self._ops: collections.deque[tuple] = collections.deque()
        self._stash: list[tuple[Any, Any]] = []
        self._awaiting: _Child | None = None
        self._awaiting_token = 0

    def init(self) -> SupervisorSpec:
        raise NotImplementedError(f"{type(self).__name__} has no init(); send Start(spec)")

    # -- the mailbox -----------------------------------------------------------------

    def receiveMessage(self, msg: Any, sender: Any) -> None:
        if isinstance(msg, ChildActorExited):
            self._on_child_exit(msg, sender)
        elif isinstance(msg, WakeupMessage) and isinstance(msg.payload, _ShutdownTimeout):
            self._on_shutdown_timeout(msg.payload.token)
        elif isinstance(msg, ActorExitRequest):
            # The base ends the children (newest first) and then this actor. A Stop
            # that was under way (or waiting) gets that outcome: answer it now rather
            # than leave its asker to time out.
            self._answer_stops()
        elif self._busy():
            self._stash.append((msg, sender))
        else:
            self._handle_request(msg, sender)

    def _busy(self) -> bool:
        return self._awaiting is not None or bool(self._ops)

    def _handle_request(self, msg: Any, sender: Any) -> None:
        if isinstance(msg, Start):
            spec = msg.spec if msg.spec is not None else self.init()
            self._flags = spec.flags
            self._children = [_Child(c) for c in spec.children]
            self._ops.extend(("start", c) for c in self._children)
            self._ops.append(("reply", sender, None))
        elif isinstance(msg, Stop):
            self._ops.extend(("terminate", c) for c in reversed(self._children))
            self._ops.append(("reply", sender, Stopped()))
            self._ops.append(("exit", SHUTDOWN))
        elif isinstance(msg, StartChild):
            if any(c.spec.id == msg.spec.id for c in self._children):
                self.send(sender, SupervisorError(msg, f"child id {msg.spec.id!r} exists"))
                return
            child = _Child(msg.spec)
            self._children.append(child)
            self._ops.append(("start", child))
            self._ops.append(("reply", sender, child))
        elif isinstance(msg, TerminateChild):
            child = self._find_id(msg.id)
            if child is None:
                self.send(sender, SupervisorError(msg, f"no child {msg.id!r}"))
                return
            self._ops.append(("terminate", child))
            self._ops.append(("forget", child))
            self._ops.append(("reply", sender, ChildTerminated(msg.id)))
        elif isinstance(msg, WhichChildren):
            self.send(sender, Children(tuple((c.spec.id, c.address, c.spec.type)
                                             for c in self._children)))
            return
        elif self._find_address(sender) is not None:
            # A child answering its ``init`` message (``StorageReady``, ``Configured``,
            # a child supervisor's ``Started``): nothing asked the supervisor anything,
            # and an error sent back could bounce between the two for ever.
            log.debug("supervisor %s: %s from child %s ignored", self.myAddress,
                      type(msg).__name__, sender)
            return
        else:
            self.send(sender, SupervisorError(msg, f"unexpected message {type(msg).__name__}"))
            return
        self._run()

    # -- the sequential work queue ---------------------------------------------------

    def _run(self) -> None:
        while self._awaiting is None:
            if not self._ops:
                if not self._stash:
                    return
                msg, sender = self._stash.pop(0)
                self.receiveMessage(msg, sender)
                continue
            op = self._ops.popleft()
            kind = op[0]
            if kind == "start":
                self._start(op[1])
            elif kind == "terminate":
                self._terminate(op[1])
            elif kind == "forget":
                if op[1] in self._children:
                    self._children.remove(op[1])
            elif kind == "reply":
                _, to, what = op
                if what is None:
                    what = Started(tuple((c.spec.id, c.address) for c in self._children))
                elif isinstance(what, _Child):
                    what = ChildStarted(what.spec.id, what.address)
                self.send(to, what)
            elif kind == "exit":
                self._exit(op[1])
                return

    def _start(self, child: _Child) -> None:
        spec = child.spec
        try:
            if spec.fixed_id is None:
                child.address = self.createActor(spec.start,
                                                 targetActorRequirements=spec.requirements,
                                                 globalName=spec.global_name)
            else:
                child.address = self._create_at(spec)
        except Exception as err:  # e.g. an unimportable class: the base raises here
            # no traceback: this is a configuration error (an unimportable class), and
            # the reason names it
            log.error("supervisor.child_start_failed", extra={
                "supervisor": str(self.myAddress), "child": spec.id, "reason": repr(err)})
            self._start_failed(child, repr(err))
            return
        if spec.init is not None:
            self.send(child.address, spec.init)
        log.debug("started child %s at %s", spec.id, child.address)

    def _create_at(self, spec: ChildSpec) -> Any:
        """A child at its well-known id: greenroom's base only (Thespian's own bases
        choose every address themselves). The previous incarnation's id is free again:
        the base forgets a cell before telling its parent it exited."""
        base = getattr(self._myRef, "base", None)
        if base is None or not hasattr(base, "create_actor"):
            raise RuntimeError(f"child {spec.id!r}: fixed_id needs greenroom's base")
        return base.create_actor(self._myRef, spec.start, spec.requirements,
                                 spec.global_name, fixed_id=spec.fixed_id)

    def _start_failed(self, child: _Child, reason: str) -> None:
        """OTP: a child that fails to start fails the request that started it. During
        ``Start`` (OTP's ``init``) the started children stop in reverse order, the asker
        gets ``{error, Reason}`` and the supervisor exits with that reason; a failed
        ``StartChild`` is answered with the error and forgotten; a failed restart counts
        as another exit of the child (restart intensity bounds the retries)."""
        reply = next((op for op in self._ops if op[0] == "reply"), None)
        error = ("failed_to_start_child", child.spec.id, reason)
        if reply is not None and reply[2] is None:  # the Start reply
            self._ops.clear()
            self._ops.extend(("terminate", c) for c in reversed(self._children)
                             if c.address is not None)
            self._ops.append(("reply", reply[1],
                              SupervisorError(Start(), f"{error[0]} {error[1]!r}: {reason}")))
            self._ops.append(("exit", ("shutdown", error)))
        elif reply is not None and reply[2] is child:  # StartChild
            self._ops.remove(reply)
            self._children.remove(child)
            self.send(reply[1], SupervisorError(StartChild(child.spec), reason))
        else:
            self._child_exited(child, ("error", reason))

    def _terminate(self, child: _Child) -> None:
        if child.address is None:
            return
        timeout = child.spec.shutdown_timeout
        self._awaiting = child
        self._awaiting_token = token = next(_tokens)
        if timeout == BRUTAL_KILL:
            self._kill_brutally(child)
            return
        self.send(child.address, Stop() if child.spec.type == "supervisor" else ActorExitRequest())
        if timeout != float("inf"):
            self.wakeupAfter(timeout, _ShutdownTimeout(token))

    def _on_shutdown_timeout(self, token: int) -> None:
        if self._awaiting is not None and token == self._awaiting_token:
            log.warning("supervisor.child_killed", extra={
                "supervisor": str(self.myAddress), "child": self._awaiting.spec.id,
                "shutdown_timeout_s": self._awaiting.spec.shutdown_timeout})
            self._kill_brutally(self._awaiting)

    def _kill_brutally(self, child: _Child) -> None:
        kill = getattr(getattr(self._myRef, "base", None), "kill_brutally", None)
        if kill is not None:
            kill(child.address)  # its ChildActorExited follows
            return
        # Thespian's own bases have no "kill": stop waiting and go on without it.
        log.error("no brutal kill on this base; giving up on child %s", child.spec.id)
        child.address = None
        self._awaiting = None
        self._run()

    def _answer_stops(self) -> None:
        for op in self._ops:
            if op[0] == "reply" and isinstance(op[2], Stopped):
                self.send(op[1], op[2])
        for msg, sender in self._stash:
            if isinstance(msg, Stop):
                self.send(sender, Stopped())

    def _exit(self, reason: Any) -> None:
        exit_with = getattr(self._myRef, "exit", None)
        if exit_with is not None:
            exit_with(reason)
        else:
            self.send(self.myAddress, ActorExitRequest())

    # -- exits and restarts ----------------------------------------------------------

    def _on_child_exit(self, msg: ChildActorExited, sender: Any) -> None:
        awaiting = self._awaiting
        if awaiting is not None and awaiting.address == msg.childAddress:
            awaiting.address = None
            self._awaiting = None
            self._run()
            return
        child = self._find_address(msg.childAddress)
        if child is None:
            return  # a child already forgotten, or an older incarnation
        if self._busy():
            self._stash.append((msg, sender))
            return
        reason = getattr(msg, "reason", None)
        if reason is None:
            reason = KILLED
        child.address = None
        self._child_exited(child, reason)
        self._run()

    def _child_exited(self, child: _Child, reason: Any) -> None:
        spec = child.spec
        if spec.restart == TEMPORARY or (spec.restart == TRANSIENT and is_normal_exit(reason)):
            log.info("supervisor.child_exited", extra={
                "supervisor": str(self.myAddress), "child": spec.id, "reason": repr(reason),
                "restart": spec.restart, "restarted": False})
            if spec.restart == TEMPORARY:
                self._children.remove(child)
            return
        if not self._restart_allowed():
            GAVE_UP.add(child=spec.id)
            log.error("supervisor.gave_up", extra={
                "supervisor": str(self.myAddress), "child": spec.id, "reason": repr(reason),
                "intensity": self._flags.intensity, "period_s": self._flags.period})
            self._ops.extend(("terminate", c) for c in reversed(self._children))
            self._ops.append(("exit", SHUTDOWN))
            return
        RESTARTS.add(child=spec.id)
        # The crash itself (type, traceback) was logged where it happened (the base's
        # ``_failed``); this line says what the supervisor did about it.
        log.warning("supervisor.restarting", extra={
            "supervisor": str(self.myAddress), "child": spec.id, "reason": repr(reason),
            "strategy": self._flags.strategy})
        if self._flags.strategy == ONE_FOR_ONE:
            self._ops.append(("start", child))
            return
        index = self._children.index(child)
        affected = self._children if self._flags.strategy == ONE_FOR_ALL \
            else self._children[index:]
        self._ops.extend(("terminate", c) for c in reversed(affected) if c is not child)
        for c in affected:
            if c.spec.restart == TEMPORARY and c is not child:
                self._ops.append(("forget", c))
            else:
                self._ops.append(("start", c))

    def _restart_allowed(self) -> bool:
        now = time.monotonic()
        restarts = self._restarts
        restarts.append(now)
        while restarts and now - restarts[0] > self._flags.period:
            restarts.popleft()
        return len(restarts) <= self._flags.intensity

    def _find_id(self, child_id: str) -> _Child | None:
        return next((c for c in self._children if c.spec.id == child_id), None)

    def _find_address(self, address: Any) -> _Child | None:
        return next((c for c in self._children if c.address == address), None)
