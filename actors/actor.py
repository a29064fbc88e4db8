"""``actors.Actor``: Thespian's ``Actor`` plus the extensions greenroom's base provides.

Subclasses are genuine Thespian actors; on greenroom's base they also get ``ask``
with a timeout, cancellable timers, monitors, awaited I/O and an OTP-style exit.
On Thespian's own bases the extensions raise ``NotImplementedError``.
"""

from __future__ import annotations

from typing import Any, ClassVar

from thespian.actors import Actor as ThespianActor

from actors.address import Address
from actors.system_base import DEFAULT_CAPACITY


class Actor(ThespianActor):
    #: OTP's "let it crash": an unhandled error ends the actor with reason
    #: ``("error", repr)`` (its supervisor decides what next) instead of Thespian's
    #: retry-then-PoisonMessage. The sender gets the PoisonMessage either way.
    exit_on_error: ClassVar[bool] = False
    #: Mailbox bound; past it senders get their message back as ``Overloaded``.
    mailbox_capacity: ClassVar[int] = DEFAULT_CAPACITY

    def _extension(self, name: str) -> Any:
        try:
            return getattr(self._myRef, name)
        except AttributeError:
            raise NotImplementedError(
                f"{name} is a greenroom extension; run this actor on UvloopSystemBase"
            ) from None

    def ask(self, target: Address, message: Any, timeout: float) -> int:
        """Send ``message``; the first answer arrives later as ``Reply(ref, answer)``,
        or ``AskTimeout(ref)`` after ``timeout`` seconds — at once, with reason
        ``"noconnection"``, if the node the answer had to come from leaves first.
        Returns the correlation id."""
        return self._extension("ask")(target, message, timeout)

    def start_timer(self, delay: float, payload: Any = None, *, repeat: bool = False) -> int:
        """Deliver ``Timeout(ref, payload)`` after ``delay`` s (every ``delay`` s if repeat)."""
        return self._extension("start_timer")(delay, payload, repeat)

    def cancel_timer(self, ref: int) -> bool:
        """Cancel a timer; True if it had not fired. A cancelled timer never delivers."""
        return self._extension("cancel_timer")(ref)

    def monitor(self, target: Address) -> int:
        """Receive ``Down(ref, target, reason)`` once ``target`` exits (at once if dead).
        ``target`` may be on another node: ``Down`` also comes, reason ``"noconnection"``,
        when that node leaves the live member set or restarts."""
        return self._extension("monitor")(target)

    def demonitor(self, ref: int) -> bool:
        return self._extension("demonitor")(ref)

    def run_io(self, awaitable: Any, tag: Any = None) -> None:
        """Run an awaitable on the event loop; its outcome arrives as ``IODone(tag, ...)``.

        The handler never blocks on I/O: it starts it and goes on with its mailbox.
        """
        self._extension("run_io")(awaitable, tag)

    def exit(self, reason: Any = "normal") -> None:
        """End this actor now with ``reason``; its parent sees it on ``ChildActorExited``."""
        self._extension("exit")(reason)

    def forward(self, target: Address, message: Any, sender: Address) -> None:
        """Send on behalf of ``sender`` (a router's hop that keeps the reply path)."""
        self._extension("forward")(target, message, sender)
