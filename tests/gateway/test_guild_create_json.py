"""``guild_create_json``: a ``SharedGuild``'s GUILD_CREATE, encoded from a template
made once per guild, is byte for byte what encoding ``build_guild_create`` gives, for
every session that shares the template."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.protocol.codec import json_bytes
from gateway.protocol.intents import GUILD_PRESENCES, GUILDS
from gateway.protocol.ready import SharedGuild, build_guild_create, guild_create_json


def member(user_id: int, nick: str | None = None) -> dict[str, Any]:
    return {"user": {"id": str(user_id), "username": f"u{user_id}"}, "nick": nick,
            "roles": [], "joined_at": "2026-01-01T00:00:00+00:00"}


SHARED = {"id": 7, "name": "guild é", "owner_id": 1, "features": ["COMMUNITY"],
          "channels": [{"id": "8", "name": "général", "type": 0}],
          "roles": [{"id": "7", "name": "@everyone", "permissions": "0"}],
          "system_channel_id": 8}


def session_guild(shared: dict[str, Any], user_id: int, members: list[dict[str, Any]],
                  **extra: Any) -> dict[str, Any]:
    """What IdentityCache._guild adds to the shared fields for one session."""
    return {**SHARED, **extra, "joined_at": f"2026-01-0{user_id % 9 + 1}T00:00:00+00:00",
            "member_count": 1000 + user_id, "large": user_id % 2 == 0, "members": members}


@pytest.mark.parametrize("intents", [GUILDS, GUILDS | GUILD_PRESENCES])
@pytest.mark.parametrize("extra", [
    {},
    {"voice_states": [{"user_id": "3", "channel_id": "8"}]},  # 3 stays visible
    {"presences": [{"user": {"id": "2"}, "status": "online"}]},  # cut per user: no template
    {"description": "lone \ud800 surrogate"},  # the payload goes ASCII: no template
])
def test_shared_guilds_encode_as_the_built_guild_create(intents: int,
                                                        extra: dict[str, Any]) -> None:
    cache: dict[Any, Any] = {}
    sessions = [
        (2, [member(2), member(3), member(4)]),
        (3, [member(3, nick="ñ")]),
        (4, [member(4, nick="lone \udc00")]),  # this one session's GUILD_CREATE is ASCII
        (5, []),
    ]
    for user_id, members in sessions:
        guild = session_guild(SHARED, user_id, members, **extra)
        expected = json_bytes(build_guild_create(guild, intents=intents, user_id=user_id))
        got = guild_create_json(SharedGuild(guild, cache), intents=intents, user_id=user_id)
        assert got == expected
        assert guild_create_json(guild, intents=intents, user_id=user_id) == expected
    made = [t for t in cache.values() if t]
    cut_per_user = "presences" in extra and not intents & GUILD_PRESENCES
    assert len(made) == (0 if cut_per_user or "description" in extra else 1)
