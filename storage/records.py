"""Records: small keyed tables for the chat features, in one storage table.

Reactions, webhooks, DM pairs, permission overwrites, application commands and
interactions each need a table of a few columns, read by a key or listed in key order
under one owner. Rather than a migration and two backends' worth of statements per
feature, they share ``records``: a partition per ``(kind, scope)`` (e.g. ``("webhook",
channel_id)``), clustered by a text ``key`` in byte order, holding one msgpack value.

- ``kind`` names the feature's table (``"reaction"``, ``"webhook"``...), ``scope`` the
  owner that lists them (a channel, a guild, an application; 0 for none).
- Keys sort as UTF-8 bytes (CQL's and SQLite's order alike): zero-pad numbers
  (``key_of``) so byte order is numeric order, and join parts with ``:``.
- A value is a dict of msgpack types. ``ttl_s`` makes a record expire (interaction
  tokens); an expired record reads as absent.
- ``insert_record_if_absent`` is the atomic insert (a conditional insert on SQLite, a
  lightweight transaction on CQL): a DM pair's channel, an interaction's single
  response. Mix it with plain ``put_record`` on the same key only where last write
  wins is right, and remove what it wrote with ``delete_record_if`` (also an LWT): on
  CQL a later Paxos round can re-commit the insert over a plain ``delete_record``
  (seen with contended inserts: the command lease's releases were lost ~4 % of the
  time).
"""

from __future__ import annotations

from typing import Any

import msgpack

#: above every key a feature writes: the upper bound of a prefix scan
KEY_END = chr(0x10FFFF)
#: most records one ``list_records`` answers
MAX_LIST = 1000


def key_of(*parts: int | str) -> str:
    """A record key from its parts: ints zero-padded to 20 digits (so ``"…:00…9"`` sorts
    before ``"…:00…10"``), joined with ``:``."""
    return ":".join(f"{p:020d}" if isinstance(p, int) else p for p in parts)


def check_record(kind: str, scope: int, key: str) -> None:
    """Refuse what no table should hold: an empty kind, a scope outside CQL's bigint,
    a key that is not text."""
    if not kind or not isinstance(kind, str):
        raise ValueError("a record needs a kind")
    if isinstance(scope, bool) or not isinstance(scope, int) or not -(1 << 63) <= scope < 1 << 63:
        raise ValueError(f"record scope must be a 64-bit int, got {scope!r}")
    if not isinstance(key, str) or KEY_END in key:
        raise ValueError(f"record key must be text, got {key!r}")


def pack(value: dict[str, Any]) -> bytes:
    if not isinstance(value, dict):
        raise TypeError(f"a record value is a dict, got {type(value).__name__}")
    return msgpack.packb(value, use_bin_type=True)


def unpack(raw: bytes) -> dict[str, Any]:
    return msgpack.unpackb(raw, raw=False, strict_map_key=False)


def key_range(prefix: str, after: str | None) -> tuple[str, bool, str | None]:
    """``(low, low_inclusive, high)`` of a listing: keys starting with ``prefix``,
    strictly after ``after`` when given; ``high`` None means unbounded."""
    high = prefix + KEY_END if prefix else None
    if after is not None and after >= prefix:
        return after, False, high
    return prefix, True, high
