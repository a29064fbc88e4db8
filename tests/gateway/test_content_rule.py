"""The MESSAGE_CONTENT rule in the guild's fan-out, for mentions and replies: a session
without the intent reads a message that mentions its user, and the message it replies
to only if it may read that one too (its author, or mentioned in it) — whether the
event reaches it live or replayed after its Subscribe read its member."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from actors import Route
from gateway.messages import Fanout, Subscribe
from gateway.protocol import PreparedDispatch
from tests.gateway.harness import run, running_gateway
from tests.gateway.test_guild_activation import new_catcher, until

NO_CONTENT = 1 | 512  # GUILDS, GUILD_MESSAGES


def payloads(me: int, other: int) -> list[dict[str, Any]]:
    """Three MESSAGE_CREATEs by ``other``: not mentioning ``me``; mentioning ``me`` in a
    reply to another's message; mentioning ``me`` in a reply to ``me``'s message."""
    def user(uid: int) -> dict[str, Any]:
        return {"id": str(uid), "username": f"u{uid}"}

    theirs = {"id": "1", "content": "their secret", "author": user(other), "mentions": []}
    mine = {"id": "2", "content": "my words", "author": user(me), "mentions": []}
    return [
        {"id": "10", "content": "not for you", "author": user(other), "mentions": []},
        {"id": "11", "content": f"<@{me}> see above", "author": user(other),
         "mentions": [user(me)], "type": 19, "referenced_message": theirs},
        {"id": "12", "content": f"<@{me}> answered", "author": user(other),
         "mentions": [user(me)], "type": 19, "referenced_message": mine},
    ]


def test_mentions_and_replies_without_message_content(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_gateway(tmp_path) as r:
            seeded, base = r.seeded, r.gateway.base
            address, catcher = new_catcher(base)

            def fan_out(payload: dict[str, Any]) -> None:
                base.deliver(r.gateway.ctx.registry, Route("guild", seeded.guild_id, Fanout(
                    seeded.channel_id, PreparedDispatch("MESSAGE_CREATE", payload), payload)),
                    address)

            messages = payloads(seeded.user_id, r.other_id)
            # the guild reads the member while these are fanned out: they are replayed
            base.deliver(r.gateway.ctx.registry, Route("guild", seeded.guild_id, Subscribe(
                address, seeded.user_id, NO_CONTENT)), address)
            for payload in messages:
                fan_out(payload)
            await until(lambda: len(catcher.dispatches) >= 3)
            for payload in messages:  # and live
                fan_out(payload)
            await until(lambda: len(catcher.dispatches) >= 6)
            seen = [(d.data["content"], d.data.get("referenced_message", {}).get("content"))
                    for d in catcher.dispatches]
            expected = [("", None),
                        (f"<@{seeded.user_id}> see above", ""),
                        (f"<@{seeded.user_id}> answered", "my words")]
            assert seen == expected * 2

    run(main, timeout=60)
