"""Who a message pings: the mentions written in its content, ``allowed_mentions``, and
the author's right to ping roles and everyone.

Discord (message.mdx, "Allowed Mentions Object"): ``<@id>`` and ``<@!id>`` mention a
user, ``<@&id>`` a role, ``@everyone`` and ``@here`` everyone. ``allowed_mentions``
narrows what is parsed: ``parse`` lists the kinds parsed from the content
(``users``, ``roles``, ``everyone``), ``users``/``roles`` (at most 100 ids each) name
the only users/roles that may be pinged — a kind may not be both in ``parse`` and
listed (``MESSAGE_ALLOWED_MENTIONS_PARSE_EXCLUSIVE``) — and ``replied_user`` says
whether a reply pings the author of the message it answers. Without
``allowed_mentions`` a regular message parses everything and a reply pings; webhooks
and interactions parse users only (their ``default_parse``). A mention the content
does not contain is never a ping (no "phantom" pings).

Then the author's permissions: ``@everyone``/``@here`` need MENTION_EVERYONE, and so
does a role that is not ``mentionable``. What is left is who was pinged, which is what
the message's ``mentions``, ``mention_roles`` and ``mention_everyone`` say (and what
lets a mentioned bot without MESSAGE_CONTENT read the message).

Everything here is pure; resolving ids to users and members is the caller's
(``chat.compose``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from chat.permissions import MENTION_EVERYONE
from chat.validation import FieldError
from storage.snowflake import parse_snowflake

PARSE_TYPES = ("users", "roles", "everyone")
PARSE_ALL: frozenset[str] = frozenset(PARSE_TYPES)
#: webhooks' and interactions' default (message.mdx, "Default Settings")
PARSE_USERS: frozenset[str] = frozenset({"users"})
MAX_ALLOWED_IDS = 100

_USER = re.compile(r"<@!?([0-9]{1,20})>")
_ROLE = re.compile(r"<@&([0-9]{1,20})>")
_EVERYONE = re.compile(r"@(?:everyone|here)")


@dataclass(frozen=True, slots=True)
class Written:
    """The mentions written in a message's content, in order, without repeats."""

    users: tuple[int, ...] = ()
    roles: tuple[int, ...] = ()
    everyone: bool = False


@dataclass(frozen=True, slots=True)
class AllowedMentions:
    """A checked ``allowed_mentions`` object."""

    parse: frozenset[str] = PARSE_ALL
    users: frozenset[int] = frozenset()
    roles: frozenset[int] = frozenset()
    replied_user: bool = False


def written(content: str) -> Written:
    """The mentions in ``content`` (cheap when there are none: no ``<@`` and no ``@``)."""
    if "@" not in content:
        return Written()
    return Written(_ids(_USER.findall(content)) if "<@" in content else (),
                   _ids(_ROLE.findall(content)) if "<@&" in content else (),
                   _EVERYONE.search(content) is not None)


def _ids(found: Iterable[str]) -> tuple[int, ...]:
    out: dict[int, None] = {}
    for raw in found:
        value = parse_snowflake(raw)
        if value is not None:
            out[value] = None
    return tuple(out)


def check_allowed_mentions(value: Any, field: str = "allowed_mentions"
                           ) -> tuple[AllowedMentions | None, FieldError | None]:
    """``allowed_mentions`` of a message body (None if absent or null), or its problem."""
    if value is None:
        return None, None
    if not isinstance(value, dict):
        return None, FieldError(field, "DICT_TYPE_CONVERT",
                                "Only dictionaries may be used in a DictType.")
    parse: set[str] = set()
    raw_parse = value.get("parse")
    if raw_parse is not None:
        if not isinstance(raw_parse, list):
            return None, FieldError(f"{field}.parse", "LIST_TYPE_CONVERT",
                                    "Only iterables may be used in a ListType.")
        for i, kind in enumerate(raw_parse):
            if kind not in PARSE_TYPES:
                return None, FieldError(f"{field}.parse.{i}", "BASE_TYPE_CHOICES",
                                        f"Value must be one of {PARSE_TYPES}.")
            parse.add(kind)
    lists: dict[str, frozenset[int]] = {}
    for kind in ("users", "roles"):
        ids, problem = _id_list(value.get(kind), f"{field}.{kind}")
        if problem is not None:
            return None, problem
        if ids and kind in parse:
            return None, FieldError(
                field, "MESSAGE_ALLOWED_MENTIONS_PARSE_EXCLUSIVE",
                f'parse:["{kind}"] and {kind}: [ids...] are mutually exclusive.')
        lists[kind] = ids
    replied = value.get("replied_user")
    if replied is not None and not isinstance(replied, bool):
        return None, FieldError(f"{field}.replied_user", "BASE_TYPE_BOOLEAN",
                                "Must be either true or false.")
    return AllowedMentions(frozenset(parse), lists["users"], lists["roles"],
                           bool(replied)), None


def _id_list(value: Any, field: str) -> tuple[frozenset[int], FieldError | None]:
    if value is None:
        return frozenset(), None
    if not isinstance(value, list):
        return frozenset(), FieldError(field, "LIST_TYPE_CONVERT",
                                       "Only iterables may be used in a ListType.")
    if len(value) > MAX_ALLOWED_IDS:
        return frozenset(), FieldError(field, "BASE_TYPE_MAX_LENGTH",
                                       f"Must be {MAX_ALLOWED_IDS} or fewer in length.")
    ids = set()
    for i, raw in enumerate(value):
        parsed = parse_snowflake(raw) if isinstance(raw, str | int) else None
        if parsed is None:
            return frozenset(), FieldError(f"{field}.{i}", "NUMBER_TYPE_COERCE",
                                           f"Value \"{str(raw)[:32]}\" is not snowflake.")
        ids.add(parsed)
    return frozenset(ids), None


@dataclass(frozen=True, slots=True)
class Pinged:
    """Who a message pings: its ``mentions`` (user ids, in order), ``mention_roles``
    and ``mention_everyone``."""

    users: tuple[int, ...] = ()
    roles: tuple[int, ...] = ()
    everyone: bool = False


def pinged(found: Written, allowed: AllowedMentions | None, *,
           default_parse: frozenset[str] = PARSE_ALL, permissions: int = 0,
           mentionable: Mapping[int, bool] | None = None,
           replied_author: int | None = None) -> Pinged:
    """Who is pinged by a message whose content holds ``found``.

    ``permissions``: the author's in the channel (MENTION_EVERYONE); ``mentionable``:
    the guild's roles (id -> its ``mentionable``; a role not in it does not exist);
    ``replied_author``: the author of the message replied to, pinged unless
    ``allowed_mentions`` is given without ``replied_user``.
    """
    parse = default_parse if allowed is None else allowed.parse
    if "users" in parse:
        users = list(found.users)
    elif allowed is not None and allowed.users:
        users = [u for u in found.users if u in allowed.users]
    else:
        users = []
    if replied_author is not None and (allowed is None or allowed.replied_user) \
            and replied_author not in users:
        users.append(replied_author)
    roles: tuple[int, ...] = ()
    if found.roles and mentionable:
        may_any = bool(permissions & MENTION_EVERYONE)
        listed = allowed.roles if allowed is not None else frozenset()
        roles = tuple(r for r in found.roles if r in mentionable
                      and ("roles" in parse or r in listed)
                      and (may_any or mentionable[r]))
    everyone = found.everyone and "everyone" in parse \
        and bool(permissions & MENTION_EVERYONE)
    return Pinged(tuple(users), roles, everyone)
