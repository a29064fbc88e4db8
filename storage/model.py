"""The stored entities - what the gateway needs for READY and GUILD_CREATE - and message writes.

Plain dataclasses shared by both backends. Ids are snowflakes (ints). Times are Unix
milliseconds (``*_ms``) or, for write timestamps, microseconds (``*_us``, CQL's unit).

Entity ``put_*`` calls merge: a field left ``None`` keeps the stored value (nothing null
is ever written, since a null is a tombstone in CQL).

Message writes are values (``MessageCreate``, ``MessageEdit``, ``MessageDelete``) that
carry their own write timestamp, so a retried or redelivered write is the same write:

* a create is stamped with the message's creation time (from its snowflake);
* an edit and a delete with the time they happened, assigned once by whoever accepted
  them, so a redelivered create can never undo an edit or a delete (last write wins per
  column, and a delete shadows every older write).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from storage.buckets import bucket_of
from storage.snowflake import snowflake_ms, snowflake_us

# Columns an edit may change; the rest are fixed at creation.
EDITABLE_FIELDS = (
    "content",
    "embeds",
    "attachments",
    "flags",
    "pinned",
    "mentions",
    "mention_roles",
    "mention_everyone",
    "edited_at_ms",
    "extra",
)
MAX_CONTENT_LENGTH = 4000  # Discord's limit for messages (2000, or 4000 with Nitro)
MAX_SNOWFLAKE = (1 << 63) - 1
#: How long an ``enforce_nonce`` send is remembered (durably, with the message): Discord
#: says "a few minutes"; 10 minutes covers a node's restart plus a client's backoff.
NONCE_WINDOW_S = 600


def check_id(name: str, value: Any) -> int:
    """Validate a snowflake argument: a non-negative int that fits CQL's bigint."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int snowflake, got {type(value).__name__}")
    if not 0 <= value <= MAX_SNOWFLAKE:
        raise ValueError(f"{name} must be in 0..2**63-1, got {value}")
    return value


@dataclass(slots=True)
class User:
    id: int
    username: str
    discriminator: str = "0"
    global_name: str | None = None
    avatar: str | None = None
    bot: bool = False
    flags: int = 0


@dataclass(slots=True)
class Guild:
    id: int
    name: str
    owner_id: int
    icon: str | None = None
    description: str | None = None
    features: list[str] = field(default_factory=list)


@dataclass(slots=True)
class Channel:
    id: int
    guild_id: int
    name: str
    type: int = 0  # GUILD_TEXT
    position: int = 0
    topic: str | None = None
    parent_id: int | None = None
    nsfw: bool = False


@dataclass(slots=True)
class Role:
    guild_id: int
    id: int
    name: str
    color: int = 0
    hoist: bool = False
    position: int = 0
    permissions: int = 0
    managed: bool = False
    mentionable: bool = False


@dataclass(slots=True)
class Member:
    guild_id: int
    user_id: int
    joined_at_ms: int
    nick: str | None = None
    roles: list[int] = field(default_factory=list)
    deaf: bool = False
    mute: bool = False


@dataclass(slots=True)
class Message:
    channel_id: int
    id: int
    author_id: int
    content: str = ""
    guild_id: int | None = None
    type: int = 0
    flags: int = 0
    tts: bool = False
    mention_everyone: bool = False
    mentions: list[int] = field(default_factory=list)
    mention_roles: list[int] = field(default_factory=list)
    embeds: list[dict[str, Any]] = field(default_factory=list)
    attachments: list[dict[str, Any]] = field(default_factory=list)
    nonce: str | None = None
    pinned: bool = False
    edited_at_ms: int | None = None
    #: message fields without a column of their own (``message_reference``,
    #: ``webhook_id``, ``components``, ``interaction_metadata``...), one JSON cell:
    #: merged into the message object as they are (``chat.objects.message_object``)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def timestamp_ms(self) -> int:
        """Creation time, as Discord derives it from the id."""
        return snowflake_ms(self.id)

    @property
    def bucket(self) -> int:
        return bucket_of(self.id)


def now_us() -> int:
    return time.time_ns() // 1000


@dataclass(frozen=True, slots=True)
class MessageCreate:
    """Insert a message, stamped with its creation time (idempotent by id).

    ``claim_nonce``: also record (channel, author, nonce) -> this message's id for
    ``NONCE_WINDOW_S`` after its creation, durable once the create is acknowledged, so
    an ``enforce_nonce`` retry finds it after a restart (``Storage.find_nonce``).
    """

    message: Message
    claim_nonce: bool = False

    def __post_init__(self) -> None:
        m = self.message
        if not isinstance(m, Message):
            raise TypeError(f"MessageCreate needs a Message, got {type(m).__name__}")
        check_id("channel_id", m.channel_id)
        check_id("message id", m.id)
        check_id("author_id", m.author_id)
        if m.id < m.channel_id:
            raise ValueError(
                f"message {m.id} is older than its channel {m.channel_id} (ids are snowflakes)"
            )
        if not isinstance(m.content, str):
            raise TypeError("content must be a str")
        if len(m.content) > MAX_CONTENT_LENGTH:
            raise ValueError(f"content is longer than {MAX_CONTENT_LENGTH} characters")
        if self.claim_nonce and not m.nonce:
            raise ValueError("claim_nonce needs a message with a nonce")

    @property
    def channel_id(self) -> int:
        return self.message.channel_id

    @property
    def nonce_expires_ms(self) -> int:
        """When the claimed nonce is forgotten: ``NONCE_WINDOW_S`` after the creation."""
        return snowflake_ms(self.message.id) + NONCE_WINDOW_S * 1000

    @property
    def message_id(self) -> int:
        return self.message.id

    @property
    def timestamp_us(self) -> int:
        return snowflake_us(self.message.id)

    @property
    def partition(self) -> tuple[int, int]:
        return (self.message.channel_id, bucket_of(self.message.id))


@dataclass(frozen=True, slots=True)
class MessageEdit:
    """Change some editable fields, stamped with the edit time (set once, at acceptance)."""

    channel_id: int
    message_id: int
    changes: dict[str, Any]
    at_us: int

    def __post_init__(self) -> None:
        check_id("channel_id", self.channel_id)
        check_id("message_id", self.message_id)
        if not self.changes:
            raise ValueError("an edit must change at least one field")
        unknown = set(self.changes) - set(EDITABLE_FIELDS)
        if unknown:
            raise ValueError(
                f"not editable: {sorted(unknown)}; editable fields are {list(EDITABLE_FIELDS)}"
            )
        for key, value in self.changes.items():
            if value is None and key != "edited_at_ms":
                raise ValueError(f"{key} cannot be set to None (use an empty value)")
        content = self.changes.get("content")
        if content is not None and len(content) > MAX_CONTENT_LENGTH:
            raise ValueError(f"content is longer than {MAX_CONTENT_LENGTH} characters")
        if self.at_us <= snowflake_us(self.message_id):
            raise ValueError(
                f"edit time {self.at_us} us is not after the message's creation "
                f"({snowflake_us(self.message_id)} us)"
            )

    @classmethod
    def now(cls, channel_id: int, message_id: int, **changes: Any) -> MessageEdit:
        """An edit stamped now; content edits also set ``edited_at_ms`` like Discord."""
        at = max(now_us(), snowflake_us(message_id) + 1)
        if "content" in changes and "edited_at_ms" not in changes:
            changes["edited_at_ms"] = at // 1000
        return cls(channel_id, message_id, changes, at)

    @property
    def timestamp_us(self) -> int:
        return self.at_us

    @property
    def partition(self) -> tuple[int, int]:
        return (self.channel_id, bucket_of(self.message_id))


@dataclass(frozen=True, slots=True)
class MessageDelete:
    """Delete a message, stamped with the delete time: it shadows every older write."""

    channel_id: int
    message_id: int
    at_us: int

    def __post_init__(self) -> None:
        check_id("channel_id", self.channel_id)
        check_id("message_id", self.message_id)
        if self.at_us <= snowflake_us(self.message_id):
            raise ValueError(
                f"delete time {self.at_us} us is not after the message's creation "
                f"({snowflake_us(self.message_id)} us)"
            )

    @classmethod
    def now(cls, channel_id: int, message_id: int) -> MessageDelete:
        return cls(channel_id, message_id, max(now_us(), snowflake_us(message_id) + 1))

    @property
    def timestamp_us(self) -> int:
        return self.at_us

    @property
    def partition(self) -> tuple[int, int]:
        return (self.channel_id, bucket_of(self.message_id))


MessageWrite = MessageCreate | MessageEdit | MessageDelete
