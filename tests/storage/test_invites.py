"""Invites (migration 5) on both backends: a use is counted atomically (a conditional
UPDATE on SQLite, a lightweight transaction on CQL), so concurrent acceptances of a
limited invite get exactly its ``max_uses`` places; expired and unknown invites are
not usable."""

from __future__ import annotations

import asyncio
import time

from storage.base import Storage
from storage.invites import Invite


def test_invite_uses_are_counted_atomically(aio, storage: Storage, ids) -> None:  # type: ignore[no-untyped-def]
    now = int(time.time() * 1000)
    guild, channel, inviter = ids.now(), ids.now(), ids.now()
    limited = Invite(f"lim{guild}", guild, channel, inviter, now, 3600, max_uses=3)
    endless = Invite(f"any{guild}", guild, channel, inviter, now, 0)
    expired = Invite(f"old{guild}", guild, channel, inviter, now - 5000, 1)

    async def go() -> None:
        for invite in (limited, endless, expired):
            await storage.put_invite(invite)
        assert await storage.get_invite(limited.code) == limited
        assert await storage.get_invite("nosuchcode") is None
        used = await asyncio.gather(*(storage.use_invite(limited.code, now + 1)
                                      for _ in range(6)))
        assert sorted(u.uses for u in used if u is not None) == [1, 2, 3]
        assert used.count(None) == 3
        assert (await storage.get_invite(limited.code)).uses == 3  # type: ignore[union-attr]
        assert not (await storage.get_invite(limited.code)).usable(now)  # type: ignore[union-attr]
        for _ in range(3):
            assert await storage.use_invite(endless.code, now + 1) is not None
        assert (await storage.get_invite(endless.code)).uses == 3  # type: ignore[union-attr]
        assert await storage.use_invite(expired.code, now) is None
        assert await storage.use_invite("nosuchcode", now) is None

    aio.run(go())
