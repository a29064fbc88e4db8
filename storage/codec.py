"""Turning messages into column values and back, shared by both backends.

A message column that holds its default (an empty list, ``False``, ``0``, ``None``) is
not written at creation: reads fill defaults back in, and in CQL an unwritten column
costs nothing while a null would be a tombstone.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from storage.model import EDITABLE_FIELDS, Message

IMMUTABLE_COLUMNS = ("author_id", "guild_id", "type", "tts", "nonce")
EDITABLE_COLUMNS = EDITABLE_FIELDS
JSON_COLUMNS = frozenset({"embeds", "attachments", "extra"})
LIST_COLUMNS = frozenset({"mentions", "mention_roles"})
BOOL_COLUMNS = frozenset({"tts", "pinned", "mention_everyone"})
READ_COLUMNS = ("message_id", *IMMUTABLE_COLUMNS, *EDITABLE_COLUMNS)


def token_hash(token: str) -> bytes:
    """Bot tokens are stored hashed: a leaked table does not leak credentials."""
    if not isinstance(token, str) or not token:
        raise ValueError("a token must be a non-empty string")
    return hashlib.sha256(token.encode()).digest()


def dump_json(value: list[dict[str, Any]] | dict[str, Any]) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def creation_values(message: Message) -> dict[str, Any]:
    """Columns a create writes (defaults omitted, except content and the fixed fields)."""
    values: dict[str, Any] = {
        "author_id": message.author_id,
        "type": message.type,
        "tts": message.tts,
        "content": message.content,
    }
    if message.guild_id is not None:
        values["guild_id"] = message.guild_id
    if message.nonce is not None:
        values["nonce"] = message.nonce
    for name in ("embeds", "attachments", "extra"):
        if getattr(message, name):
            values[name] = dump_json(getattr(message, name))
    for name in ("mentions", "mention_roles"):
        if getattr(message, name):
            values[name] = list(getattr(message, name))
    if message.flags:
        values["flags"] = message.flags
    for name in ("pinned", "mention_everyone"):
        if getattr(message, name):
            values[name] = True
    if message.edited_at_ms is not None:
        values["edited_at_ms"] = message.edited_at_ms
    return values


def edit_values(changes: dict[str, Any]) -> dict[str, Any]:
    """Columns an edit writes: exactly the changed fields (an empty list clears)."""
    values = {}
    for name, value in changes.items():
        if name in JSON_COLUMNS:
            value = dump_json(value)
        elif name in LIST_COLUMNS:
            value = list(value)
        values[name] = value
    return values


def message_from_columns(channel_id: int, row: dict[str, Any] | Any) -> Message:
    """Build a Message from a mapping of READ_COLUMNS (lists already decoded)."""
    get = row.get if isinstance(row, dict) else lambda k: getattr(row, k)
    embeds = get("embeds")
    attachments = get("attachments")
    extra = get("extra")
    return Message(
        channel_id=channel_id,
        id=get("message_id"),
        author_id=get("author_id"),
        content=get("content") or "",
        guild_id=get("guild_id"),
        type=get("type") or 0,
        flags=get("flags") or 0,
        tts=bool(get("tts")),
        mention_everyone=bool(get("mention_everyone")),
        mentions=list(get("mentions") or ()),
        mention_roles=list(get("mention_roles") or ()),
        embeds=json.loads(embeds) if embeds else [],
        attachments=json.loads(attachments) if attachments else [],
        nonce=get("nonce"),
        pinned=bool(get("pinned")),
        edited_at_ms=get("edited_at_ms"),
        extra=json.loads(extra) if extra else {},
    )
