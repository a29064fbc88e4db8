"""Channel webhooks (Discord's "incoming" webhooks): what one is, the rules its name,
avatar and token follow, and the author a message it posts carries.

A webhook posts into one channel with a secret token instead of a bot's credentials:
anyone holding ``/webhooks/{id}/{token}`` may post, so the token is the whole secret.
It is shown once, in the answer that creates the webhook, and stored only as its
SHA-256 (``storage.codec.token_hash``, as bot tokens are): a leaked records table does
not let anyone post. Discord shows the token again on every read by a manager; a hash
cannot, so greenroom's reads by bot auth leave ``token`` out (the three libraries
treat it as optional).

A message a webhook posts has the webhook as its author: the webhook's id, the
``username`` the execute asked for (else the webhook's name), ``bot: true`` and
discriminator ``"0000"``, as Discord sends it; and ``webhook_id``. Both ride in the
message's ``extra`` (``storage.model.Message.extra``), so history, edits and every
event show the same author without a user record behind it.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import re
import secrets
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from chat.validation import FieldError, check_text
from storage.codec import token_hash
from storage.records import MAX_LIST, key_of

if TYPE_CHECKING:
    from storage.base import Storage

#: Discord's webhook type for channel webhooks that post with a token.
INCOMING = 1
#: Discord's limits: a name of 1-80 characters; 15 webhooks a channel (30007).
MAX_NAME = 80
MAX_PER_CHANNEL = 15
#: Discord's webhook tokens are 68 characters of the URL-safe alphabet (51 random bytes).
TOKEN_BYTES = 51
#: What a token in a URL may look like before it is worth hashing (anything else is
#: refused as an invalid token without a storage read).
TOKEN_SHAPE = re.compile(r"[A-Za-z0-9_-]{1,128}")
#: Substrings Discord refuses in a webhook's name, and in an execute's ``username``.
FORBIDDEN_IN_NAMES = ("clyde", "discord")
#: An ``avatar_url`` longer than this is refused (Discord's URL fields allow 2048).
MAX_URL = 2048
#: Image data (``data:image/png;base64,...``) as Discord accepts it for avatars.
_IMAGE_DATA = re.compile(r"data:image/(png|jpeg|jpg|gif|webp);base64,([A-Za-z0-9+/=\s]+)")
#: An avatar's decoded bytes at most (Discord: 10 MiB for avatar uploads).
MAX_AVATAR_BYTES = 10 * 1024 * 1024


@dataclass(slots=True)
class Webhook:
    """A channel webhook as stored (the records store's value, ``record()``)."""

    id: int
    guild_id: int
    channel_id: int
    name: str
    #: SHA-256 of the token, hex (the token itself is never stored)
    token_hash: str
    #: who created it (a user id) and, when that user is a bot, its application's id
    user_id: int
    application_id: int | None = None
    avatar: str | None = None

    def record(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_record(cls, value: dict[str, Any]) -> Webhook:
        return cls(**{k: value[k] for k in cls.__slots__ if k in value})  # type: ignore[attr-defined]

    def token_matches(self, token: str) -> bool:
        """True if ``token`` is this webhook's (compared in constant time)."""
        if not TOKEN_SHAPE.fullmatch(token):
            return False
        return hmac.compare_digest(token_hash(token).hex(), self.token_hash)


def new_token() -> tuple[str, str]:
    """A fresh webhook token and its stored hash (hex)."""
    token = secrets.token_urlsafe(TOKEN_BYTES)
    return token, token_hash(token).hex()


def check_name(field: str, value: Any, *, required: bool = True) -> FieldError | None:
    """A webhook's name or an execute's ``username``: 1-80 characters once trimmed,
    storable, and not containing "clyde" or "discord" (Discord's rule)."""
    if value is None and not required:
        return None
    if isinstance(value, str):
        value = value.strip()
    problem = check_text(field, value, min_len=1, max_len=MAX_NAME)
    if problem is not None:
        return problem
    lowered = value.lower()
    for word in FORBIDDEN_IN_NAMES:
        if word in lowered:
            return FieldError(field, "USERNAME_INVALID_CONTAINS",
                              f'Username cannot contain "{word}"')
    return None


def avatar_hash(value: Any) -> tuple[str | None, FieldError | None]:
    """The avatar hash for Discord's image data (``data:image/...;base64,...``), or
    None for null. Greenroom serves no image CDN: the image is checked and named by
    the MD5 of its bytes (Discord's hash shape), not kept."""
    if value is None:
        return None, None
    if not isinstance(value, str):
        return None, FieldError("avatar", "IMAGE_INVALID", "Invalid image data")
    match = _IMAGE_DATA.fullmatch(value)
    if match is None:
        return None, FieldError("avatar", "IMAGE_INVALID", "Invalid image data")
    try:
        data = base64.b64decode("".join(match.group(2).split()), validate=True)
    except (binascii.Error, ValueError):
        return None, FieldError("avatar", "IMAGE_INVALID", "Invalid image data")
    if not data or len(data) > MAX_AVATAR_BYTES:
        return None, FieldError("avatar", "BINARY_TYPE_MAX_SIZE",
                                f"File cannot be larger than {MAX_AVATAR_BYTES // 1024} kb.")
    return hashlib.md5(data, usedforsecurity=False).hexdigest(), None


def check_avatar_url(value: Any) -> FieldError | None:
    """An execute's ``avatar_url``: an http(s) URL of at most 2048 characters."""
    if value is None:
        return None
    problem = check_text("avatar_url", value, min_len=1, max_len=MAX_URL)
    if problem is not None:
        return problem
    if not value.startswith(("http://", "https://")) or any(c.isspace() for c in value):
        return FieldError("avatar_url", "URL_TYPE_INVALID_URL", "Not a well formed URL.")
    return None


def webhook_object(webhook: Webhook, *, creator: dict[str, Any] | None = None,
                   token: str | None = None) -> dict[str, Any]:
    """Discord's webhook object. ``creator`` (a user object) is shown to bot-authorised
    readers, not to callers by token; ``token`` only in the answer that created it."""
    out: dict[str, Any] = {
        "id": str(webhook.id),
        "type": INCOMING,
        "guild_id": str(webhook.guild_id),
        "channel_id": str(webhook.channel_id),
        "name": webhook.name,
        "avatar": webhook.avatar,
        "application_id": None if webhook.application_id is None
        else str(webhook.application_id),
    }
    if creator is not None:
        out["user"] = creator
    if token is not None:
        out["token"] = token
    return out


def webhook_author(webhook: Webhook, username: str | None = None,
                   avatar_url: str | None = None) -> dict[str, Any]:
    """The author of a message ``webhook`` posts: the execute's ``username`` (else the
    webhook's name). ``avatar`` stays the webhook's hash; an ``avatar_url`` asked for is
    kept as ``avatar_url`` (greenroom fetches no remote images to hash)."""
    author: dict[str, Any] = {
        "id": str(webhook.id),
        "username": username.strip() if username else webhook.name,
        "discriminator": "0000",
        "global_name": None,
        "avatar": webhook.avatar,
        "bot": True,
        "public_flags": 0,
        "flags": 0,
    }
    if avatar_url is not None:
        author["avatar_url"] = avatar_url
    return author


def webhook_message_extra(webhook: Webhook, author: dict[str, Any]) -> dict[str, Any]:
    """What a webhook's message keeps in ``Message.extra``: ``webhook_id`` and its
    author (``chat.objects.message_object`` lets extra's keys win)."""
    out: dict[str, Any] = {"webhook_id": str(webhook.id), "author": author}
    if webhook.application_id is not None:
        out["application_id"] = str(webhook.application_id)
    return out



# -- storage: the records store (``storage.records``) ------------------------------------
#: a webhook by id (scope 0); and its id listed under its channel and under its guild
KIND = "webhook"
BY_CHANNEL = "webhook_by_channel"
BY_GUILD = "webhook_by_guild"


async def load_webhook(storage: Storage, webhook_id: int) -> Webhook | None:
    value = await storage.get_record(KIND, 0, key_of(webhook_id))
    return None if value is None else Webhook.from_record(value)


async def save_webhook(storage: Storage, webhook: Webhook,
                       moved_from: int | None = None) -> None:
    """Write ``webhook`` and its listings (``moved_from``: the channel it left). The
    listings go first: a listing without its webhook is skipped by readers, while a
    webhook no listing names could never be found by its channel or guild."""
    await storage.put_record(BY_CHANNEL, webhook.channel_id, key_of(webhook.id), {})
    await storage.put_record(BY_GUILD, webhook.guild_id, key_of(webhook.id), {})
    await storage.put_record(KIND, 0, key_of(webhook.id), webhook.record())
    if moved_from is not None and moved_from != webhook.channel_id:
        await storage.delete_record(BY_CHANNEL, moved_from, key_of(webhook.id))


async def delete_webhook(storage: Storage, webhook: Webhook) -> None:
    """The webhook first (its token stops working at once), then its listings."""
    await storage.delete_record(KIND, 0, key_of(webhook.id))
    await storage.delete_record(BY_CHANNEL, webhook.channel_id, key_of(webhook.id))
    await storage.delete_record(BY_GUILD, webhook.guild_id, key_of(webhook.id))


async def listed_webhooks(storage: Storage, kind: str, scope: int) -> list[Webhook]:
    """The webhooks listed under a channel (``BY_CHANNEL``) or a guild (``BY_GUILD``),
    oldest first; listings whose webhook is gone or elsewhere are skipped."""
    out: list[Webhook] = []
    after: str | None = None
    while True:
        page = await storage.list_records(kind, scope, after=after, limit=MAX_LIST)
        for webhook in await asyncio.gather(*(load_webhook(storage, int(key))
                                              for key, _ in page)):
            if webhook is not None and scope == (
                    webhook.channel_id if kind == BY_CHANNEL else webhook.guild_id):
                out.append(webhook)
        if len(page) < MAX_LIST:
            return out
        after = page[-1][0]
