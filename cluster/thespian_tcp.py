"""Keep Thespian's TCP transport on one interface.

Thespian's ``multiprocTCPBase`` binds every actor process's socket to all interfaces
(``''``) and unpickles whatever arrives on it, so an exposed port would run a
stranger's code. ``bind_thespian_to(host)`` makes it bind to ``host`` only — loopback
by default, a cluster-private address when nodes span hosts. It must run before the
ActorSystem starts; Thespian's actor processes are forked and inherit it.
"""

from __future__ import annotations

import os

from thespian.system.transport import IPBase

_original_init = IPBase.IPActorAddress.__init__


def bind_thespian_to(host: str = "127.0.0.1") -> None:
    """Bind (and advertise) Thespian's TCP sockets on ``host`` instead of every interface."""
    os.environ["THESPIAN_BASE_IPADDR"] = host

    def __init__(self, af, socktype, proto, baseaddr, port, external=False):  # noqa: N807
        _original_init(self, af, socktype, proto, baseaddr, port, external)
        if self.bindname[0] in ("", "0.0.0.0"):
            self.bindname = (host, self.bindname[1])

    IPBase.IPActorAddress.__init__ = __init__
