"""OAuth2 grants: a user's consent, given to an application, for some scopes.

Stored like bot tokens: only the SHA-256 of the access token (``storage.codec.
token_hash``), so a leaked table grants nothing. ``guilds.join`` is the one scope the
gateway reads: an application may add the user to a guild only with such a grant
(Discord's ``PUT /guilds/{guild.id}/members/{user.id}`` with ``access_token``).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class OAuth2Grant:
    user_id: int
    application_id: int
    scopes: tuple[str, ...]
    expires_at_ms: int

    def allows(self, user_id: int, application_id: int, scope: str, now_ms: int) -> bool:
        """Whether this grant is ``user_id``'s consent to ``application_id`` for ``scope``
        at ``now_ms``."""
        return (self.user_id == user_id and self.application_id == application_id
                and scope in self.scopes and now_ms < self.expires_at_ms)
