"""Who a REST request is: the ``Authorization`` header's one accepted spelling, and the
user behind a token (the principal the rate limiter counts against).

Only ``Authorization: Bot <token>`` is accepted, as Discord documents for bots: one
space, a token of printable ASCII without spaces. A bare token (Discord's user-account
form), extra spaces or another scheme are 401. ``Bearer`` is refused too: Discord takes
it for OAuth2 access tokens on the endpoints of their scopes (``identify``, ...), and
greenroom serves none of those; its OAuth2 access tokens only carry a user's consent to
``guilds.join``, presented as ``access_token`` in ``PUT /guilds/{g}/members/{u}``.

Rate limits count per user, not per spelling of a credential: a user with two tokens,
or a client that varies the header, still has one bucket. The limiter runs before the
handler's own authentication, so the token -> user answer is cached for ``TTL_S`` under
a keyed digest of the token (a heap dump shows no token).
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from gateway.ttl_map import TtlMap

if TYPE_CHECKING:
    from storage.base import Storage

_BOT = re.compile(r"Bot ([\x21-\x7e]+)")


def bot_token(header: str | None) -> str | None:
    """The token of an exact ``Bot <token>`` header; None for anything else."""
    match = _BOT.fullmatch(header) if header else None
    return match.group(1) if match else None


class Principals:
    """token -> user id, cached for ``TTL_S`` (unknown tokens are not cached)."""

    TTL_S = 30.0
    MAX = 10_000

    def __init__(self, storage: Storage, clock: Callable[[], float] = time.monotonic) -> None:
        self.storage = storage
        self._secret = secrets.token_bytes(32)
        self._known: TtlMap[bytes, int] = TtlMap(self.TTL_S, self.MAX, clock)

    async def user_id(self, token: str) -> int | None:
        key = hashlib.blake2b(token.encode(), key=self._secret, digest_size=16).digest()
        user_id = self._known.get(key)
        if user_id is not None:
            return user_id
        user_id = await self.storage.user_id_for_token(token)
        if user_id is None:
            self._known.pop(key)
            return None
        self._known.put(key, user_id)
        return user_id
