"""Actor addresses that are cheap in-process and can cross processes.

A Thespian ``ActorAddress`` is opaque; ours carries ``(node, id)`` so it can be
encoded to msgpack and routed by another process, plus a direct reference to the
local cell so an in-process send is a pointer chase, not a dictionary lookup.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from thespian.actors import ActorAddress

if TYPE_CHECKING:
    from actors.cell import Cell


class Address(ActorAddress):
    """A Thespian ``ActorAddress`` naming actor ``id`` on node ``node``.

    ``_cell`` is the live local cell when the actor is in this process (``None``
    for an address decoded from another process until it is resolved).
    Unlike Thespian's base class, addresses are hashable: they key dictionaries
    of members, monitors and sessions.
    """

    __slots__ = ("node", "id", "_cell")

    def __init__(self, node: str, id: int, cell: Cell | None = None) -> None:  # noqa: A002
        self.node = node
        self.id = id
        self._cell = cell

    @property
    def addressDetails(self) -> tuple[str, int]:
        return (self.node, self.id)

    @property
    def actorAddressString(self) -> str:
        return f"{self.node}/{self.id}"

    def __str__(self) -> str:
        return f"ActorAddr-{self.node}/{self.id}"

    __repr__ = __str__

    def __eq__(self, other: Any) -> bool:
        if other.__class__ is Address:
            return self.id == other.id and self.node == other.node
        return False

    def __ne__(self, other: Any) -> bool:
        return not self.__eq__(other)

    def __hash__(self) -> int:
        return hash((self.node, self.id))

    def __reduce__(self):
        # Pickled (Thespian's own transports) without the process-local cell.
        return (Address, (self.node, self.id))
