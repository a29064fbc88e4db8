"""Guild invites: a member's standing offer, which a user accepts with their own token
(Discord's ``POST /channels/{id}/invites``, ``GET`` / ``POST /invites/{code}``).

An invite expires ``max_age_s`` after its creation (0: never) and admits at most
``max_uses`` users (0: any number). ``Storage.use_invite`` counts a use atomically (a
conditional UPDATE on SQLite, a lightweight transaction on CQL), so an invite for one
use admits one user even when two accept it at once on two nodes.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Invite:
    code: str
    guild_id: int
    channel_id: int
    inviter_id: int
    created_at_ms: int
    max_age_s: int = 86_400
    max_uses: int = 0
    uses: int = 0

    @property
    def expires_at_ms(self) -> int | None:
        return self.created_at_ms + self.max_age_s * 1000 if self.max_age_s else None

    def usable(self, now_ms: int) -> bool:
        """Not expired at ``now_ms`` and not used up."""
        expires = self.expires_at_ms
        return (expires is None or now_ms < expires) \
            and (self.max_uses == 0 or self.uses < self.max_uses)
