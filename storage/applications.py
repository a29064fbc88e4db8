"""Bot applications' flags: Discord's application flags, of which the gateway reads the
privileged-intent ones (an application may ask for GUILD_PRESENCES, GUILD_MEMBERS or
MESSAGE_CONTENT only with the matching flag; else IDENTIFY is closed with 4014).

A bot's application id is its user id (one application per bot, as on Discord). A
self-hosted operator owns its bots, so ``greenroom admin create-bot`` and the seed grant
all three unless told otherwise (``--no-privileged-intents``); a bot created before the
flags were stored (no row) counts as such a bot: ``DEFAULT_BOT_FLAGS``.
"""

from __future__ import annotations

GATEWAY_PRESENCE = 1 << 12
GATEWAY_PRESENCE_LIMITED = 1 << 13
GATEWAY_GUILD_MEMBERS = 1 << 14
GATEWAY_GUILD_MEMBERS_LIMITED = 1 << 15
GATEWAY_MESSAGE_CONTENT = 1 << 18
GATEWAY_MESSAGE_CONTENT_LIMITED = 1 << 19

#: All three privileged intents (the unlimited flags).
PRIVILEGED_INTENT_FLAGS = GATEWAY_PRESENCE | GATEWAY_GUILD_MEMBERS | GATEWAY_MESSAGE_CONTENT
#: What a bot of this server has unless its operator said otherwise.
DEFAULT_BOT_FLAGS = PRIVILEGED_INTENT_FLAGS


def effective_flags(stored: int | None) -> int:
    """A bot application's flags: the stored ones, or ``DEFAULT_BOT_FLAGS`` if none."""
    return DEFAULT_BOT_FLAGS if stored is None else stored
