"""Reactions: the emoji a reaction names, one message's reactions, and the Discord
objects and events built from them.

An emoji arrives in a URL path segment (``PUT .../reactions/{emoji}/@me``), already
percent-decoded: a Unicode emoji (one that Unicode lists, ``emoji.EMOJI_DATA``, or a
regional indicator letter) or a custom emoji as ``name:id`` (discord.py also sends
``:name:id`` and ``a:name:id``, discord.js ``a:name:id`` for an animated one).
Anything else is Discord's 10014 Unknown Emoji. Greenroom stores no guild emoji, so a
custom emoji is any well-formed name and snowflake; it is known by its id (its name
is what the first reactor called it).

Storage (the generic records store, ``storage.base.Storage.put_record`` ...):

* ``("reaction", message_id)``: one record per reactor,
  key ``<emoji key>:<type>:<user id, 20 digits>``, so one emoji's reactors list in user
  id order (``GET .../reactions/{emoji}?after=``) and one emoji's or all of a
  message's reactions go with one prefix delete. The partition is the message's, so a
  storm on one message is one partition and touches no other message's.
* ``("reaction_counts", channel_id)``: one record per reacted message, key the
  message id (20 digits), value its emoji and counts in first-reacted order
  (``MessageReactions.counts``): a history page's reactions are one range read.

One message's reactions have one writer (``gateway.reactions``), which holds them
as a ``MessageReactions`` and writes both kinds.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from emoji import EMOJI_DATA

from storage.records import MAX_LIST, key_of
from storage.snowflake import parse_snowflake

#: Distinct emoji on one message (Discord: 30010 "Maximum number of reactions reached").
MAX_DISTINCT_EMOJI = 20
#: ``type`` of a reaction (Discord's "reaction types"): greenroom has no super reactions,
#: so every reaction is NORMAL and ``type=1`` lists nobody.
NORMAL = 0
BURST = 1
REACTION_TYPES = (NORMAL, BURST)

#: Record kinds (``storage.base.Storage`` records store).
REACTION_KIND = "reaction"
COUNTS_KIND = "reaction_counts"

#: ``name:id``, ``:name:id`` (discord.py's ``<:name:id>`` stripped of its brackets) or
#: ``a:name:id`` (animated); Discord's emoji names are ASCII word characters.
_CUSTOM = re.compile(r"(?:(a)?:)?([A-Za-z0-9_]{1,32}):([0-9]{1,20})")
#: Unicode emoji parts Unicode lists only as components (skin tones, hair styles):
#: not an emoji by themselves.
_COMPONENT = 1
_REGIONAL_INDICATORS = frozenset(chr(c) for c in range(0x1F1E6, 0x1F200))
#: the longest emoji sequence Unicode lists is 10 code points (families with skin tones)
_MAX_UNICODE_LEN = 16


@dataclass(frozen=True, slots=True)
class Emoji:
    """A reaction's emoji: a Unicode emoji (``id`` None) or a custom one."""

    name: str
    id: int | None = None
    animated: bool = False

    @property
    def key(self) -> str:
        """What identifies it on a message (a custom emoji by its id, whatever its name)."""
        return self.name if self.id is None else f"{self.id:020d}"

    def partial(self) -> dict[str, Any]:
        """Discord's partial emoji object (reactions and reaction events)."""
        if self.id is None:
            return {"id": None, "name": self.name}
        return {"id": str(self.id), "name": self.name, "animated": self.animated}

    def to_list(self) -> list[Any]:
        return [self.name, self.id, self.animated]

    @classmethod
    def from_list(cls, value: list[Any]) -> Emoji:
        name, emoji_id, animated = value
        return cls(name, emoji_id, bool(animated))


def parse_emoji(segment: str) -> Emoji | None:
    """The emoji a URL path segment names, or None (Discord: 10014 Unknown Emoji)."""
    if not segment or len(segment) > 64:
        return None
    custom = _CUSTOM.fullmatch(segment)
    if custom is not None:
        emoji_id = parse_snowflake(custom.group(3))
        if emoji_id is None:
            return None
        return Emoji(custom.group(2), emoji_id, custom.group(1) == "a")
    if len(segment) > _MAX_UNICODE_LEN:
        return None
    known = EMOJI_DATA.get(segment)
    if known is not None and known.get("status") != _COMPONENT:
        return Emoji(segment)
    if segment in _REGIONAL_INDICATORS:  # the letters people spell words with
        return Emoji(segment)
    return None


def user_key(emoji: Emoji, reaction_type: int, user_id: int) -> str:
    """A reactor's record key in the message's ``REACTION_KIND`` partition."""
    return key_of(emoji.key, str(reaction_type), user_id)


def emoji_prefix(emoji: Emoji, reaction_type: int | None = None) -> str:
    """The key prefix of one emoji's reactors (of one type, or of every type)."""
    return f"{emoji.key}:" if reaction_type is None else f"{emoji.key}:{reaction_type}:"


def reactor_record(emoji: Emoji, at_ms: int) -> dict[str, Any]:
    """A reactor's record value: the emoji (as reacted with) and when."""
    return {"e": emoji.to_list(), "o": at_ms}


def user_of(key: str) -> int:
    """The user id of a reactor's record key."""
    return int(key.rsplit(":", 1)[1])


def message_key(message_id: int) -> str:
    """A message's record key in its channel's ``COUNTS_KIND`` partition."""
    return key_of(message_id)


@dataclass(slots=True)
class _Entry:
    emoji: Emoji
    normal: set[int] = field(default_factory=set)
    burst: set[int] = field(default_factory=set)

    def users(self, reaction_type: int) -> set[int]:
        return self.burst if reaction_type == BURST else self.normal

    def __len__(self) -> int:
        return len(self.normal) + len(self.burst)


class MessageReactions:
    """One message's reactions: who reacted with what, in the order each emoji was
    first used (Discord lists a message's reactions so). Only its one writer holds
    it; readers use what it writes (``counts``)."""

    def __init__(self) -> None:
        self._entries: dict[str, _Entry] = {}

    def __len__(self) -> int:
        """Distinct emoji on the message."""
        return len(self._entries)

    def has_emoji(self, emoji: Emoji) -> bool:
        return emoji.key in self._entries

    def has(self, emoji: Emoji, user_id: int, reaction_type: int = NORMAL) -> bool:
        entry = self._entries.get(emoji.key)
        return entry is not None and user_id in entry.users(reaction_type)

    def emoji_for(self, emoji: Emoji) -> Emoji:
        """The emoji as the message shows it (a custom one under the name it was first
        used with), so every event about it names it the same way."""
        entry = self._entries.get(emoji.key)
        return emoji if entry is None else entry.emoji

    def add(self, emoji: Emoji, user_id: int, reaction_type: int = NORMAL) -> bool:
        """Record a reaction; False if the user had already reacted so (nothing changes).
        The caller checks ``MAX_DISTINCT_EMOJI`` first (``refuses``)."""
        entry = self._entries.get(emoji.key)
        if entry is None:
            entry = self._entries[emoji.key] = _Entry(emoji)
        users = entry.users(reaction_type)
        if user_id in users:
            return False
        users.add(user_id)
        return True

    def refuses(self, emoji: Emoji) -> bool:
        """Whether a reaction with ``emoji`` would be one distinct emoji too many."""
        return emoji.key not in self._entries and len(self._entries) >= MAX_DISTINCT_EMOJI

    def remove(self, emoji: Emoji, user_id: int, reaction_type: int = NORMAL) -> bool:
        """Remove a reaction; False if there was none. An emoji nobody uses any more
        leaves the message."""
        entry = self._entries.get(emoji.key)
        if entry is None:
            return False
        users = entry.users(reaction_type)
        if user_id not in users:
            return False
        users.discard(user_id)
        if not len(entry):
            del self._entries[emoji.key]
        return True

    def remove_emoji(self, emoji: Emoji) -> Emoji | None:
        """Remove every reaction with ``emoji``; the emoji as shown, or None if unused."""
        entry = self._entries.pop(emoji.key, None)
        return None if entry is None else entry.emoji

    def clear(self) -> bool:
        """Remove every reaction; False if there were none."""
        had = bool(self._entries)
        self._entries.clear()
        return had

    def load(self, records: Iterable[tuple[str, Mapping[str, Any]]]) -> None:
        """Fill from the message's ``REACTION_KIND`` records (keys as ``user_key``;
        values ``reactor_record``: the emoji, and when the reaction was made, which
        orders the emoji by their oldest reaction)."""
        firsts: dict[str, int] = {}
        for key, value in records:
            emoji = Emoji.from_list(value["e"])
            reaction_type, user_id = key.rsplit(":", 2)[1:]
            entry = self._entries.get(emoji.key)
            if entry is None:
                entry = self._entries[emoji.key] = _Entry(emoji)
            at = value.get("o", 0)
            if at < firsts.get(emoji.key, at + 1):
                firsts[emoji.key] = at
            entry.users(int(reaction_type)).add(int(user_id))
        order = sorted(self._entries, key=lambda k: firsts.get(k, 0))
        self._entries = {k: self._entries[k] for k in order}

    def counts(self) -> list[list[Any]]:
        """``[[emoji as a list, normal count, burst count], ...]`` in first-used order:
        the message's ``COUNTS_KIND`` record."""
        return [[e.emoji.to_list(), len(e.normal), len(e.burst)]
                for e in self._entries.values()]


def reaction_objects(counts: Iterable[list[Any]], mine: Iterable[str] = (),
                     mine_burst: Iterable[str] = ()) -> list[dict[str, Any]]:
    """A message object's ``reactions`` from its ``COUNTS_KIND`` record's counts;
    ``mine`` (``mine_burst``): keys of the emoji the viewer reacted with."""
    mine = set(mine)
    mine_burst = set(mine_burst)
    out = []
    for raw, normal, burst in counts:
        emoji = Emoji.from_list(raw)
        out.append({
            "emoji": emoji.partial(),
            "count": normal + burst,
            "count_details": {"burst": burst, "normal": normal},
            "me": emoji.key in mine,
            "me_burst": emoji.key in mine_burst,
            "burst_colors": [],
        })
    return out


# -- gateway events ------------------------------------------------------------------


def _where(channel_id: int, message_id: int, guild_id: int | None) -> dict[str, Any]:
    out = {"channel_id": str(channel_id), "message_id": str(message_id)}
    if guild_id is not None:
        out["guild_id"] = str(guild_id)
    return out


def reaction_add_event(channel_id: int, message_id: int, guild_id: int | None,
                       user_id: int, emoji: Emoji, *, member: dict[str, Any] | None = None,
                       message_author_id: int | None = None,
                       reaction_type: int = NORMAL) -> dict[str, Any]:
    """MESSAGE_REACTION_ADD's data; ``member`` (with its ``user``) in a guild."""
    out = {"user_id": str(user_id), **_where(channel_id, message_id, guild_id),
           "emoji": emoji.partial(), "burst": reaction_type == BURST, "burst_colors": [],
           "type": reaction_type}
    if member is not None:
        out["member"] = member
    if message_author_id is not None:
        out["message_author_id"] = str(message_author_id)
    return out


def reaction_remove_event(channel_id: int, message_id: int, guild_id: int | None,
                          user_id: int, emoji: Emoji,
                          reaction_type: int = NORMAL) -> dict[str, Any]:
    """MESSAGE_REACTION_REMOVE's data."""
    return {"user_id": str(user_id), **_where(channel_id, message_id, guild_id),
            "emoji": emoji.partial(), "burst": reaction_type == BURST,
            "type": reaction_type}


def reaction_remove_all_event(channel_id: int, message_id: int,
                              guild_id: int | None) -> dict[str, Any]:
    """MESSAGE_REACTION_REMOVE_ALL's data."""
    return _where(channel_id, message_id, guild_id)


def reaction_remove_emoji_event(channel_id: int, message_id: int, guild_id: int | None,
                                emoji: Emoji) -> dict[str, Any]:
    """MESSAGE_REACTION_REMOVE_EMOJI's data."""
    return {**_where(channel_id, message_id, guild_id), "emoji": emoji.partial()}


# -- reading, for message objects ----------------------------------------------------


async def reactions_of(storage: Any, channel_id: int, message_ids: Iterable[int],
                       viewer_id: int | None = None) -> dict[int, list[dict[str, Any]]]:
    """The ``reactions`` of a channel's messages (message id -> reaction objects; only
    the reacted ones), with ``me`` for ``viewer_id``: one range read of the channel's
    counts records over the messages' ids, and one key read per emoji on a reacted
    message for ``me``."""
    ids = set(message_ids)
    if not ids:
        return {}
    low, high = min(ids), max(ids)
    after: str | None = message_key(low - 1) if low > 0 else None
    counts: dict[int, list[list[Any]]] = {}
    while True:
        page = await storage.list_records(COUNTS_KIND, channel_id, after=after,
                                          limit=MAX_LIST)
        for key, value in page:
            message_id = int(key)
            if message_id > high:
                break
            if message_id in ids:
                counts[message_id] = value.get("r") or []
        else:
            if len(page) == MAX_LIST:
                after = page[-1][0]
                continue
        break
    mine: dict[int, set[str]] = {}
    if viewer_id is not None and counts:
        checks = [(message_id, Emoji.from_list(raw))
                  for message_id, rows in counts.items() for raw, normal, _ in rows if normal]
        found = await asyncio.gather(*(
            storage.get_record(REACTION_KIND, message_id, user_key(emoji, NORMAL, viewer_id))
            for message_id, emoji in checks))
        for (message_id, emoji), record in zip(checks, found, strict=True):
            if record is not None:
                mine.setdefault(message_id, set()).add(emoji.key)
    return {message_id: reaction_objects(rows, mine.get(message_id, ()))
            for message_id, rows in counts.items() if rows}


async def forget_reactions(storage: Any, channel_id: int, message_id: int) -> None:
    """Delete a deleted message's reactions (its reactors' partition and its counts)."""
    await storage.delete_records(REACTION_KIND, message_id)
    await storage.delete_record(COUNTS_KIND, channel_id, message_key(message_id))
