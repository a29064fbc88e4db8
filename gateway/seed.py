"""Create a bot, its token, a guild and a channel: for tests, ``make run`` and operators.

Everything goes through the ``Storage`` interface, so it works on SQLite and ScyllaDB.
A bot's application gets the privileged-intent flags (``storage.applications``) unless
``privileged_intents=False``: the operator of a self-hosted server owns its bots.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass

from chat.permissions import DEFAULT_EVERYONE
from storage.applications import DEFAULT_BOT_FLAGS
from storage.base import Storage
from storage.model import Channel, Guild, Member, Role, User
from storage.snowflake import SnowflakeGenerator


@dataclass(frozen=True, slots=True)
class Seeded:
    user_id: int
    token: str
    guild_id: int
    channel_id: int


def new_token(user_id: int) -> str:
    """A Discord-shaped bot token (three dot-separated parts; random, not signed)."""
    import base64

    head = base64.urlsafe_b64encode(str(user_id).encode()).decode().rstrip("=")
    return f"{head}.{secrets.token_urlsafe(6)}.{secrets.token_urlsafe(27)}"


async def create_user(storage: Storage, ids: SnowflakeGenerator, name: str, *,
                      bot: bool = True, privileged_intents: bool = True) -> tuple[int, str]:
    """A user (a bot by default) and a fresh token for it. A bot's application may ask
    for the privileged intents unless ``privileged_intents`` is False (then IDENTIFY
    with GUILD_PRESENCES, GUILD_MEMBERS or MESSAGE_CONTENT is closed with 4014)."""
    user_id = ids.next_id()
    await storage.put_user(User(user_id, name, bot=bot))
    if bot:  # the application's id is the bot's
        await storage.put_application_flags(user_id,
                                            DEFAULT_BOT_FLAGS if privileged_intents else 0)
    token = new_token(user_id)
    await storage.put_token(token, user_id)
    return user_id, token


async def create_guild(storage: Storage, ids: SnowflakeGenerator, name: str, owner_id: int,
                       channel_name: str = "general") -> tuple[int, int]:
    """A guild owned by ``owner_id`` (a member), its @everyone role and one text channel."""
    guild_id = ids.next_id()
    await storage.put_guild(Guild(guild_id, name, owner_id))
    await storage.put_role(Role(guild_id, guild_id, "@everyone", permissions=DEFAULT_EVERYONE))
    channel_id = ids.next_id()
    await storage.put_channel(Channel(channel_id, guild_id, channel_name))
    await add_member(storage, guild_id, owner_id)
    return guild_id, channel_id


async def add_member(storage: Storage, guild_id: int, user_id: int) -> None:
    await storage.put_member(Member(guild_id, user_id, int(time.time() * 1000)))


async def seed(storage: Storage, ids: SnowflakeGenerator | None = None, *,
               bot_name: str = "greenroom-bot", guild_name: str = "greenroom",
               privileged_intents: bool = True) -> Seeded:
    """One bot with a token in one guild with one channel."""
    ids = ids or SnowflakeGenerator()
    user_id, token = await create_user(storage, ids, bot_name,
                                       privileged_intents=privileged_intents)
    guild_id, channel_id = await create_guild(storage, ids, guild_name, user_id)
    return Seeded(user_id, token, guild_id, channel_id)
