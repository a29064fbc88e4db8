"""Direct messages: who may open one with whom, how a pair of users names its one DM
channel, and the DM channel object.

A DM channel belongs to no guild. Two users have at most one: ``POST /users/@me/channels``
answers the same channel every time, also when both users (or two nodes) open it at
once. Storage holds two records (``Storage``'s records store):

* the pair's claim, ``(PAIR_KIND, low user id, f"{high:020d}") -> {"channel_id"}``,
  taken with ``insert_record_if_absent`` (a lightweight transaction on Cassandra), so of
  two concurrent opens exactly one id wins;
* the channel itself, ``(CHANNEL_KIND, channel id, "") -> {"recipients": [low, high]}``,
  written *before* the claim: whoever reads the claim finds its channel. An open that
  loses the race deletes the channel record it wrote (nobody was told its id).

Who may DM whom is Discord's rule for bots: the two share a guild, neither is the
other, and not both are bots; otherwise 50007 "Cannot send messages to this user"
(400 when opening, 403 when sending — membership can change in between, so both check).
In a DM each recipient holds ``DM_PERMISSIONS``; anything beyond (deleting the other's
message, webhooks, permission overwrites) is 50003 "Cannot execute action on a DM
channel".
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from chat.objects import user_object
from chat.validation import FieldError
from gateway.protocol import build_user
from storage.model import MAX_SNOWFLAKE, User

if TYPE_CHECKING:
    from storage.base import Storage

#: Discord's channel type of a DM between two users.
DM = 1
#: Records-store kinds (``Storage.put_record`` and friends).
PAIR_KIND = "dm"
CHANNEL_KIND = "dm_channel"

#: What a recipient may do in a DM (as discord.py's ``_dm_permissions``): the text
#: permissions without SEND_TTS_MESSAGES, MANAGE_MESSAGES and the thread ones; and
#: without MENTION_EVERYONE, so that "@everyone" in a DM pings no one
#: (``mention_everyone`` false, as on Discord).
DM_PERMISSIONS = (
    (1 << 6)     # ADD_REACTIONS
    | (1 << 10)  # VIEW_CHANNEL
    | (1 << 11)  # SEND_MESSAGES
    | (1 << 14)  # EMBED_LINKS
    | (1 << 15)  # ATTACH_FILES
    | (1 << 16)  # READ_MESSAGE_HISTORY
    | (1 << 18)  # USE_EXTERNAL_EMOJIS
    | (1 << 31)  # USE_APPLICATION_COMMANDS
    | (1 << 37)  # USE_EXTERNAL_STICKERS
    | (1 << 46)  # SEND_VOICE_MESSAGES
    | (1 << 49)  # SEND_POLLS
    | (1 << 50)  # USE_EXTERNAL_APPS
    | (1 << 51)  # PIN_MESSAGES
)


class Refusal(enum.Enum):
    """Why a user may not open (or send into) a DM with another."""

    UNKNOWN_USER = "unknown user"  # 404 10013
    SELF = "self"  # 50007: Discord refuses a DM with oneself
    BOTH_BOTS = "both bots"  # 50007: bots cannot DM bots
    NO_SHARED_GUILD = "no shared guild"  # 50007


@dataclass(frozen=True, slots=True)
class DMChannel:
    """A DM channel: its id and its two recipients (ascending).

    ``guild_id`` is None, so code written for a guild channel routes it unchanged: the
    channel actor's key ``(None, id)`` places it by its own id, and a ``PostMessage``
    without a guild takes the DM fan-out."""

    id: int
    recipients: tuple[int, int]
    guild_id: None = None
    type: int = DM

    def has(self, user_id: int) -> bool:
        return user_id in self.recipients

    def other(self, user_id: int) -> int:
        """The recipient who is not ``user_id``."""
        low, high = self.recipients
        return high if user_id == low else low


def pair(a: int, b: int) -> tuple[int, int]:
    """Two distinct user ids, ascending: the pair's one name whoever opens the DM."""
    if a == b:
        raise ValueError("a DM needs two different users")
    return (a, b) if a < b else (b, a)


def pair_record(a: int, b: int) -> tuple[str, int, str]:
    """``(kind, scope, key)`` of the pair's claim on its channel id."""
    low, high = pair(a, b)
    return PAIR_KIND, low, f"{high:020d}"


def channel_record(channel_id: int) -> tuple[str, int, str]:
    """``(kind, scope, key)`` of a DM channel's record."""
    return CHANNEL_KIND, channel_id, ""


def channel_value(channel: DMChannel) -> dict[str, Any]:
    return {"recipients": list(channel.recipients)}


def channel_from_value(channel_id: int, value: Mapping[str, Any] | None) -> DMChannel | None:
    """The DM channel a record holds (None: no record, or not one this module wrote)."""
    if value is None:
        return None
    recipients = value.get("recipients")
    if not isinstance(recipients, list | tuple) or len(recipients) != 2 \
            or not all(type(r) is int for r in recipients) or recipients[0] == recipients[1]:
        return None
    return DMChannel(channel_id, pair(recipients[0], recipients[1]))


def claimed_channel_id(value: Mapping[str, Any] | None) -> int | None:
    """The channel id a pair's claim names."""
    channel_id = None if value is None else value.get("channel_id")
    return channel_id if type(channel_id) is int else None


def parse_recipient_id(body: Mapping[str, Any]) -> int | FieldError:
    """``recipient_id`` of ``POST /users/@me/channels``: a snowflake, as a string (what
    libraries send) or an integer; else Discord's 50035 entry for the field."""
    value = body.get("recipient_id")
    if value is None:
        return FieldError("recipient_id", "BASE_TYPE_REQUIRED", "This field is required")
    if isinstance(value, int) and not isinstance(value, bool):
        if 0 <= value <= MAX_SNOWFLAKE:
            return value
    elif isinstance(value, str) and value.isascii() and value.isdigit() \
            and len(value) <= 20 and int(value) <= MAX_SNOWFLAKE \
            and (value == "0" or not value.startswith("0")):
        return int(value)
    return FieldError("recipient_id", "NUMBER_TYPE_COERCE",
                      f"Value \"{str(value)[:40]}\" is not snowflake.")


def refusal(sender: User, recipient: User | None, share_guild: bool) -> Refusal | None:
    """Whether ``sender`` may open (or send into) a DM with ``recipient`` (None: no such
    user); ``share_guild``: the two are members of one guild at least."""
    if recipient is None:
        return Refusal.UNKNOWN_USER
    if recipient.id == sender.id:
        return Refusal.SELF
    if sender.bot and recipient.bot:
        return Refusal.BOTH_BOTS
    if not share_guild:
        return Refusal.NO_SHARED_GUILD
    return None


def shares_guild(guilds_a: Iterable[int], guilds_b: Iterable[int]) -> bool:
    """Whether two users' guild id lists meet."""
    return not set(guilds_a).isdisjoint(guilds_b)


def beyond_dm(need: int) -> bool:
    """Whether permission bits ``need`` ask for something no one may do in a DM
    (answered 403 50003 "Cannot execute action on a DM channel")."""
    return bool(need & ~DM_PERMISSIONS)


def dm_channel_object(channel: DMChannel, viewer_id: int, users: Mapping[int, User],
                      last_message_id: int | None = None) -> dict[str, Any]:
    """The DM channel object as ``viewer_id`` sees it: ``recipients`` names the other
    user (Discord's; hikari reads ``recipients[0]`` as the one it talks to), no
    ``guild_id``."""
    other_id = channel.other(viewer_id)
    other = users.get(other_id)
    recipient = user_object(other) if other is not None else \
        build_user({"id": other_id, "username": "Deleted User"})
    return {
        "id": str(channel.id),
        "type": DM,
        "last_message_id": None if last_message_id is None else str(last_message_id),
        "recipients": [recipient],
        "flags": 0,
    }


async def load_channel(storage: Storage, channel_id: int) -> DMChannel | None:
    """The DM channel ``channel_id`` (None: no such DM)."""
    return channel_from_value(channel_id, await storage.get_record(*channel_record(channel_id)))


async def open_channel(storage: Storage, next_id: Callable[[], int], a: int, b: int
                       ) -> tuple[DMChannel, bool]:
    """The one DM channel of users ``a`` and ``b``, made if they have none; and whether
    this call made it. The channel's record is written before the pair's claim, so a
    claim read anywhere names a channel that exists; an open that loses the claim to a
    concurrent one deletes the record it wrote (its id was never told)."""
    kind, scope, key = pair_record(a, b)
    channel_id = claimed_channel_id(await storage.get_record(kind, scope, key))
    if channel_id is None:
        mine = DMChannel(next_id(), pair(a, b))
        await storage.put_record(*channel_record(mine.id), channel_value(mine))
        inserted, claim = await storage.insert_record_if_absent(
            kind, scope, key, {"channel_id": mine.id})
        if inserted:
            return mine, True
        await storage.delete_record(*channel_record(mine.id))
        channel_id = claimed_channel_id(claim)
        if channel_id is None:
            raise ValueError(f"DM claim {scope}/{key} holds no channel id")
    channel = await load_channel(storage, channel_id)
    if channel is None:  # the record was lost: the claim says all it held
        channel = DMChannel(channel_id, pair(a, b))
        await storage.put_record(*channel_record(channel_id), channel_value(channel))
    return channel, False
