"""OAuth2 grants (migration 4) on both backends: stored under the token's digest,
answered whole, replaced by a second put, unknown tokens answered None."""

from __future__ import annotations

import time

from storage.base import Storage
from storage.grants import OAuth2Grant


def test_grants_round_trip(aio, storage: Storage, ids) -> None:  # type: ignore[no-untyped-def]
    user, app = ids.now(), ids.now()
    soon = int(time.time() * 1000) + 60_000
    grant = OAuth2Grant(user, app, ("guilds.join",), soon)

    async def go() -> None:
        token = f"grant.{user}"
        assert await storage.oauth2_grant(token) is None
        await storage.put_oauth2_grant(token, grant)
        assert await storage.oauth2_grant(token) == grant
        assert await storage.oauth2_grant(token + "x") is None
        assert grant.allows(user, app, "guilds.join", soon - 1)
        assert not grant.allows(user, app, "guilds.join", soon)  # expired
        assert not grant.allows(app, app, "guilds.join", 0)  # another user
        assert not grant.allows(user, user, "guilds.join", 0)  # another application
        assert not grant.allows(user, app, "identify", 0)  # another scope
        wider = OAuth2Grant(user, app, ("guilds.join", "identify"), soon + 1)
        await storage.put_oauth2_grant(token, wider)
        assert await storage.oauth2_grant(token) == wider

    aio.run(go())
