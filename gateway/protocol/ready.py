"""READY and GUILD_CREATE payloads with every field real client libraries read.

discord.py indexes ``user[id|username|discriminator|avatar]``, ``application[id|flags]``
and ``resume_gateway_url`` without defaults (a missing key is a crash at login); other
libraries read ``private_channels`` and ``relationships``, which Discord sends to bots as
empty lists. Snowflakes are strings in every payload built here. Callers pass dicts in
Discord's shape (ids may be ints); keys they add are kept.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .codec import json_bytes, json_strict_utf8
from .intents import GUILD_PRESENCES
from .params import API_VERSION


def snowflake_str(value: int | str) -> str:
    """A snowflake as JSON carries it: a decimal string."""
    return str(int(value))


def build_user(user: Mapping[str, Any]) -> dict[str, Any]:
    """A user object: ``id`` and ``username`` required, the rest defaulted as Discord does
    for a bot without a legacy discriminator."""
    out = dict(user)
    out["id"] = snowflake_str(user["id"])
    out["username"] = user["username"]
    out.setdefault("discriminator", "0")
    out.setdefault("global_name", None)
    out.setdefault("avatar", None)
    out.setdefault("bot", False)
    out.setdefault("mfa_enabled", False)
    out.setdefault("flags", 0)
    return out


def build_ready(
    *,
    session_id: str,
    user: Mapping[str, Any],
    guild_ids: Iterable[int | str],
    application: Mapping[str, Any],
    resume_gateway_url: str,
    shard: tuple[int, int] | None = None,
) -> dict[str, Any]:
    """The READY ``d``: guilds start unavailable; a GUILD_CREATE follows for each."""
    ready: dict[str, Any] = {
        "v": API_VERSION,
        "user": build_user(user),
        "guilds": [{"id": snowflake_str(g), "unavailable": True} for g in guild_ids],
        "session_id": session_id,
        "resume_gateway_url": resume_gateway_url,
        "application": {
            "id": snowflake_str(application["id"]),
            "flags": application.get("flags", 0),
        },
        "private_channels": [],
        "relationships": [],
    }
    if shard is not None:
        ready["shard"] = [shard[0], shard[1]]
    return ready


#: Guild object fields a client may read, with the value a plain new guild has.
GUILD_DEFAULTS: dict[str, Any] = {
    "icon": None,
    "splash": None,
    "discovery_splash": None,
    "banner": None,
    "description": None,
    "afk_channel_id": None,
    "afk_timeout": 300,
    "verification_level": 0,
    "default_message_notifications": 0,
    "explicit_content_filter": 0,
    "mfa_level": 0,
    "nsfw_level": 0,
    "application_id": None,
    "system_channel_id": None,
    "system_channel_flags": 0,
    "rules_channel_id": None,
    "public_updates_channel_id": None,
    "safety_alerts_channel_id": None,
    "vanity_url_code": None,
    "premium_tier": 0,
    "premium_subscription_count": 0,
    "premium_progress_bar_enabled": False,
    "preferred_locale": "en-US",
    "joined_at": None,
}

#: List fields of GUILD_CREATE (guild object plus its gateway-only extras).
GUILD_LISTS = (
    "features",
    "roles",
    "emojis",
    "stickers",
    "members",
    "channels",
    "threads",
    "presences",
    "voice_states",
    "stage_instances",
    "guild_scheduled_events",
    "soundboard_sounds",
)

_OPTIONAL_ID_FIELDS = (
    "application_id",
    "afk_channel_id",
    "system_channel_id",
    "rules_channel_id",
    "public_updates_channel_id",
    "safety_alerts_channel_id",
)


def _user_id_of(entry: Mapping[str, Any]) -> str | None:
    user = entry.get("user")
    if isinstance(user, Mapping) and user.get("id") is not None:
        return str(user["id"])
    return None


def build_guild_create(
    guild: Mapping[str, Any], *, intents: int, user_id: int | str, large_threshold: int = 50
) -> dict[str, Any]:
    """The GUILD_CREATE ``d`` for one session.

    ``guild`` needs ``id``, ``name`` and ``owner_id``, and should carry this user's
    ``joined_at``. Without GUILD_PRESENCES, members and presences are cut to the session's
    own user and users in voice channels, as Discord does. ``large`` defaults to
    member_count > large_threshold.
    """
    out = {**GUILD_DEFAULTS, **guild}
    out["id"] = snowflake_str(guild["id"])
    out["name"] = guild["name"]
    out["owner_id"] = snowflake_str(guild["owner_id"])
    for key in _OPTIONAL_ID_FIELDS:
        if out.get(key) is not None:
            out[key] = snowflake_str(out[key])
    for key in GUILD_LISTS:
        out[key] = list(out.get(key) or ())
    member_count = out.setdefault("member_count", len(out["members"]))
    out.setdefault("large", member_count > large_threshold)
    out["unavailable"] = False
    if not intents & GUILD_PRESENCES:
        visible = _visible(out, user_id)
        out["members"] = [m for m in out["members"] if _user_id_of(m) in visible]
        out["presences"] = [p for p in out["presences"] if _user_id_of(p) in visible]
    return out


def _visible(guild: Mapping[str, Any], user_id: int | str) -> set[str]:
    """Without GUILD_PRESENCES: whose members and presences a session sees."""
    visible = {str(user_id)}
    visible.update(str(v["user_id"]) for v in guild.get("voice_states") or ()
                   if "user_id" in v)
    return visible


class SharedGuild(dict):  # type: ignore[type-arg]
    """A guild dict (``build_guild_create`` input) whose fields but ``PER_SESSION`` are
    the same for every member of the guild, and who all hold the same ``shared`` dict:
    their GUILD_CREATE JSON is encoded once per guild (``guild_create_json``) instead
    of once per IDENTIFY. It must hold every ``PER_SESSION`` key."""

    __slots__ = ("shared",)

    def __init__(self, fields: Mapping[str, Any], shared: dict[Any, Any]) -> None:
        super().__init__(fields)
        self.shared = shared


_CONSTANTS = {True: b"true", False: b"false"}
#: The fields of a ``SharedGuild`` that differ per session.
PER_SESSION = ("joined_at", "member_count", "large", "members")
#: What stands for them in a template; not a value any guild field holds.
_HOLES = {key: f"\0greenroom-hole:{key}\0" for key in PER_SESSION}


def guild_create_json(guild: Mapping[str, Any], *, intents: int, user_id: int | str,
                      large_threshold: int = 50) -> bytes:
    """The JSON of ``build_guild_create(guild, ...)``, byte for byte (as ``json_bytes``
    encodes it). For a ``SharedGuild`` the shared fields are encoded once: the template
    is the guild's JSON with holes for ``PER_SESSION`` (kept in ``guild.shared``),
    filled with each session's values."""
    shared = getattr(guild, "shared", None)
    presences = bool(intents & GUILD_PRESENCES)
    if shared is not None:
        key = ("guild_create_json", presences, tuple(guild))
        template = shared.get(key)
        if template is None:
            template = shared[key] = _template(guild, intents, large_threshold)
        if template:
            order, parts = template
            pieces = [parts[0]]
            for name, after in zip(order, parts[1:], strict=True):
                value = guild[name]
                if name == "members":  # as build_guild_create lists and cuts them
                    value = list(value or ())
                    if not presences:
                        visible = _visible(guild, user_id)
                        value = [m for m in value if _user_id_of(m) in visible]
                if value.__class__ is int:  # member_count (large: below); as json writes it
                    encoded = b"%d" % value
                else:
                    encoded = _CONSTANTS.get(value) if value.__class__ is bool \
                        else json_strict_utf8(value)
                if encoded is None:  # a lone surrogate: the whole payload in ASCII
                    break
                pieces.append(encoded)
                pieces.append(after)
            else:
                return b"".join(pieces)
    return json_bytes(build_guild_create(guild, intents=intents, user_id=user_id,
                                         large_threshold=large_threshold))


def _template(guild: Mapping[str, Any], intents: int, large_threshold: int
              ) -> tuple[tuple[str, ...], tuple[bytes, ...]] | tuple[()]:
    """``guild``'s GUILD_CREATE JSON split at its ``PER_SESSION`` values: their keys in
    the order they appear, and the bytes before the first, between each two and after
    the last. Empty when a session's GUILD_CREATE differs elsewhere too (presences cut
    per user) or cannot be made byte for byte (a lone surrogate: the payload goes ASCII)."""
    if not intents & GUILD_PRESENCES and guild.get("presences"):
        return ()
    holed = dict(guild)
    holed.update(_HOLES)
    holed["members"] = []  # what build_guild_create reads as such; the holes go in after
    holed["member_count"] = 0
    out = build_guild_create(holed, intents=intents, user_id=0,
                             large_threshold=large_threshold)
    for name in PER_SESSION:  # in place: the keys keep their order
        out[name] = _HOLES[name]
    encoded = json_strict_utf8(out)
    if encoded is None:
        return ()
    holes = {name: json_strict_utf8(_HOLES[name]) or b"" for name in PER_SESSION}
    order = tuple(sorted(PER_SESSION, key=lambda name: encoded.find(holes[name])))
    parts: list[bytes] = []
    rest = encoded
    for name in order:
        before, found, rest = rest.partition(holes[name])
        if not found or holes[name] in rest:
            return ()
        parts.append(before)
    parts.append(rest)
    return order, tuple(parts)
