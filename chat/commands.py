"""Application commands: Discord's rules for a command's definition, and its storage.

A command belongs to an application (greenroom: the bot's user id) and to a scope:
global (``guild_id`` None) or one guild. Within a scope, ``(type, name)`` is unique, so
creating a command whose name and type exist updates that command (Discord's upsert).

The rules (``check_command``) are pure: they answer the normalised definition that is
stored and every problem found, each with its field path (``("options", 0, "name")``),
because Discord's 50035 names every violation at once (``errors_tree``), not the first.

Storage uses the records table (``storage.records``), all under ``scope`` =
application id:

- ``"command"``, key ``{guild_id or 0:020d}:{command_id:020d}``: the command object
  (Discord's shape, ids as strings, ``guild_id`` None for a global one); a scope's
  commands list in id order with one prefix scan.
- ``"command_at"``, key ``{command_id:020d}``: ``{"guild_id": g or 0}``, so a command
  is found by id alone (an invocation names the command, not its scope). Written before
  the command and deleted after it: a crash in between leaves a pointer to nothing,
  which reads as absent, never a command that cannot be found by id.
- ``"command_lock"``, key ``{guild_id or 0:020d}``: a lease (``ttl_s``) that
  serialises writes to one scope across nodes, since the name rule and the count limits
  are read-then-write (REST lands on any node); see ``scope_lease``.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
import unicodedata
import uuid
import weakref
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable
from dataclasses import dataclass
from typing import Any

# -- Discord's enumerations and limits ----------------------------------------------

CHAT_INPUT, USER, MESSAGE = 1, 2, 3
COMMAND_TYPES = (CHAT_INPUT, USER, MESSAGE)

SUB_COMMAND, SUB_COMMAND_GROUP = 1, 2
STRING, INTEGER, BOOLEAN, OPT_USER, CHANNEL, ROLE, MENTIONABLE, NUMBER, ATTACHMENT = (
    3, 4, 5, 6, 7, 8, 9, 10, 11)
OPTION_TYPES = range(1, 12)
#: option types that carry a value (may be ``required``)
VALUE_TYPES = frozenset(range(3, 12))
CHOICE_TYPES = frozenset({STRING, INTEGER, NUMBER})
#: channel types an option may be restricted to
CHANNEL_TYPES = frozenset({0, 1, 2, 3, 4, 5, 10, 11, 12, 13, 14, 15, 16})
CONTEXT_TYPES = frozenset({0, 1, 2})  # GUILD, BOT_DM, PRIVATE_CHANNEL
INTEGRATION_TYPES = frozenset({0, 1})  # GUILD_INSTALL, USER_INSTALL

#: Discord's locales (``name_localizations`` keys)
LOCALES = frozenset({
    "id", "da", "de", "en-GB", "en-US", "es-ES", "es-419", "fr", "hr", "it", "lt", "hu",
    "nl", "no", "pl", "pt-BR", "ro", "fi", "sv-SE", "vi", "tr", "cs", "el", "bg", "ru",
    "uk", "hi", "th", "zh-CN", "ja", "zh-TW", "ko"})

MAX_NAME = 32
MAX_DESCRIPTION = 100
MAX_OPTIONS = 25
MAX_CHOICES = 25
MAX_CHOICE_TEXT = 100
MAX_STRING_LENGTH = 6000
MAX_FILE_TYPES = 10
#: a slash command's combined name, description and choice value characters
MAX_COMMAND_SIZE = 8000
MAX_INTEGER = (1 << 53) - 1
MAX_NUMBER = float(1 << 53)
#: per application and scope, by type (Discord raised USER and MESSAGE from 5 to 15 in
#: March 2026)
MAX_COMMANDS = {CHAT_INPUT: 100, USER: 15, MESSAGE: 15}

#: the lease that serialises one scope's writes, and how long a writer waits for it
LEASE_S = 10
LEASE_WAIT_S = 12.0

Path = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class Problem:
    """One violation: Discord's errors-tree code and message at ``path``."""

    path: Path
    code: str
    message: str


def errors_tree(problems: Iterable[Problem]) -> dict[str, Any]:
    """Discord's ``errors`` object: each problem under its path's keys (list indexes as
    strings), in ``_errors``; an empty path is the body's own ``_errors``."""
    tree: dict[str, Any] = {}
    for problem in problems:
        node = tree
        for part in problem.path:
            node = node.setdefault(str(part), {})
        node.setdefault("_errors", []).append({"code": problem.code, "message": problem.message})
    return tree


class CommandError(Exception):
    """A command write that cannot be done; the REST layer maps ``reason`` to Discord's
    answer: ``"invalid"`` (50035, ``problems``), ``"unknown"`` (10063), ``"limit"``
    (30032, ``limit``), ``"busy"`` (the scope's lease not obtained in time: retry)."""

    def __init__(self, reason: str, problems: list[Problem] | None = None,
                 limit: int = 0) -> None:
        super().__init__(reason)
        self.reason, self.problems, self.limit = reason, problems or [], limit


# -- names --------------------------------------------------------------------------

def _in_script(ch: str) -> bool:
    """\\p{sc=Deva} or \\p{sc=Thai} (their blocks without the Common-script signs: the
    dandas and the baht sign), for the vowel signs and marks that are not \\p{L}."""
    cp = ord(ch)
    if 0x0900 <= cp <= 0x097F or 0xA8E0 <= cp <= 0xA8FF or 0x11B00 <= cp <= 0x11B5F:
        return cp not in (0x0964, 0x0965) and unicodedata.category(ch) != "Cn"
    if 0x0E00 <= cp <= 0x0E7F:
        return cp != 0x0E3F and unicodedata.category(ch) != "Cn"
    return False


def valid_chat_input_name(name: str) -> bool:
    """Discord's ``^[-_'\\p{L}\\p{N}\\p{sc=Deva}\\p{sc=Thai}]{1,32}$`` with every letter
    in its lowercase form where it has one (the apostrophe is in Discord's current
    regex)."""
    if not 1 <= len(name) <= MAX_NAME:
        return False
    for ch in name:
        if ch in "-_'":
            continue
        category = unicodedata.category(ch)
        if not (category[0] in "LN" or _in_script(ch)):
            return False
        if ch.lower() != ch:
            return False
    return True


# -- checking a definition ----------------------------------------------------------

class _Checker:
    """Collects problems while it normalises one body."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def add(self, path: Path, code: str, message: str) -> None:
        self.problems.append(Problem(path, code, message))

    def required(self, path: Path) -> None:
        self.add(path, "BASE_TYPE_REQUIRED", "This field is required")

    def text(self, path: Path, value: Any, low: int, high: int) -> str | None:
        if not isinstance(value, str):
            self.add(path, "BASE_TYPE_STRING", "Could not interpret the value as string.")
            return None
        if not low <= len(value) <= high:
            self.add(path, "BASE_TYPE_BAD_LENGTH", f"Must be between {low} and {high} in length.")
            return None
        if "\x00" in value:
            self.add(path, "STRING_TYPE_INVALID", "Must not contain NUL.")
            return None
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            self.add(path, "STRING_TYPE_INVALID", "Must be valid Unicode (no lone surrogates).")
            return None
        return value

    def name(self, path: Path, value: Any, slash: bool) -> str | None:
        """A command's or option's name: Discord's regex for slash commands and options,
        any 1-32 characters (spaces and capitals too) for context menu commands."""
        text = self.text(path, value, 1, MAX_NAME)
        if text is not None and slash and not valid_chat_input_name(text):
            self.add(path, "APPLICATION_COMMAND_INVALID_NAME", "Command name is invalid")
            return None
        return text

    def boolean(self, path: Path, value: Any) -> bool | None:
        if not isinstance(value, bool):
            self.add(path, "BASE_TYPE_BOOLEAN", "Must be either true or false.")
            return None
        return value

    def integer(self, path: Path, value: Any, low: int, high: int) -> int | None:
        if isinstance(value, bool) or not isinstance(value, int):
            self.add(path, "NUMBER_TYPE_COERCE", f"Value \"{str(value)[:32]}\" is not int.")
            return None
        if value < low:
            self.add(path, "NUMBER_TYPE_MIN", f"int value should be greater than or equal to {low}.")
            return None
        if value > high:
            self.add(path, "NUMBER_TYPE_MAX", f"int value should be less than or equal to {high}.")
            return None
        return value

    def number(self, path: Path, value: Any) -> float | int | None:
        if isinstance(value, bool) or not isinstance(value, int | float) or (
                isinstance(value, float) and not math.isfinite(value)):
            self.add(path, "NUMBER_TYPE_COERCE", f"Value \"{str(value)[:32]}\" is not a number.")
            return None
        if not -MAX_NUMBER <= value <= MAX_NUMBER:
            self.add(path, "NUMBER_TYPE_MAX" if value > 0 else "NUMBER_TYPE_MIN",
                     f"Value should be between {-MAX_NUMBER:.0f} and {MAX_NUMBER:.0f}.")
            return None
        return value

    def array(self, path: Path, value: Any, most: int) -> list[Any] | None:
        if not isinstance(value, list):
            self.add(path, "LIST_TYPE_CONVERT", "Only iterables may be used in a ListType")
            return None
        if len(value) > most:
            self.add(path, "BASE_TYPE_MAX_LENGTH", f"Must be {most} or fewer in length.")
            return None
        return value

    def enum_list(self, path: Path, value: Any, allowed: frozenset[int]) -> list[int] | None:
        items = self.array(path, value, len(allowed) + 16)
        if items is None:
            return None
        out: list[int] = []
        for i, item in enumerate(items):
            if not _is_int(item) or item not in allowed:
                self.add((*path, i), "ENUM_TYPE_COERCE",
                         f"Value \"{str(item)[:32]}\" is not a valid enum value.")
            elif item not in out:
                out.append(item)
        return out

    def localizations(self, path: Path, value: Any, check: Callable[[Path, Any], Any]
                      ) -> dict[str, str] | None:
        """``name_localizations`` / ``description_localizations``: null, or locale to a
        value that follows the field's own rule."""
        if value is None:
            return None
        if not isinstance(value, dict):
            self.add(path, "DICT_TYPE_CONVERT", "Only dictionaries may be used in a DictType")
            return None
        out = {}
        for locale, text in value.items():
            if locale not in LOCALES:
                self.add((*path, locale), "ENUM_TYPE_COERCE",
                         f"Value \"{str(locale)[:32]}\" is not a valid enum value.")
                continue
            checked = check((*path, locale), text)
            if checked is not None:
                out[locale] = checked
        return out


def _is_int(value: Any) -> bool:
    """A JSON integer (not a bool, not 1.0: an enum is stored as the int it is)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _given(body: dict[str, Any], field: str) -> bool:
    """A field counts as given unless absent or null (discord.js sends some as null)."""
    return body.get(field) is not None


def check_command(body: Any, path: Path = ()) -> tuple[dict[str, Any] | None, list[Problem]]:
    """A command's definition (POST, PUT's items, PATCH merged onto the command):
    ``(definition, [])`` or ``(None, problems)``. The definition holds what is stored
    besides the ids and version, with Discord's defaults filled in."""
    c = _Checker()
    definition = _check_command(c, body, path)
    return (definition, []) if not c.problems else (None, c.problems)


def _check_command(c: _Checker, body: Any, path: Path) -> dict[str, Any] | None:
    if not isinstance(body, dict):
        c.add(path, "DICT_TYPE_CONVERT", "Only dictionaries may be used in a DictType")
        return None
    kind = body.get("type", CHAT_INPUT)
    if kind is None:
        kind = CHAT_INPUT
    if not _is_int(kind) or kind not in COMMAND_TYPES:
        # 4 (PRIMARY_ENTRY_POINT) launches an Activity: greenroom has none
        c.add((*path, "type"), "ENUM_TYPE_COERCE",
              f"Value \"{str(kind)[:32]}\" is not a valid enum value.")
        return None
    slash = kind == CHAT_INPUT
    out: dict[str, Any] = {"type": kind}

    if "name" not in body or body["name"] is None:
        c.required((*path, "name"))
    else:
        out["name"] = c.name((*path, "name"), body["name"], slash)
    out["name_localizations"] = c.localizations(
        (*path, "name_localizations"), body.get("name_localizations"),
        lambda p, v: c.name(p, v, slash))

    description = body.get("description")
    if slash:
        if description is None:
            c.required((*path, "description"))
        else:
            out["description"] = c.text((*path, "description"), description, 1, MAX_DESCRIPTION)
        out["description_localizations"] = c.localizations(
            (*path, "description_localizations"), body.get("description_localizations"),
            lambda p, v: c.text(p, v, 1, MAX_DESCRIPTION))
        options = body.get("options")
        out["options"] = [] if options is None else _check_options(
            c, options, (*path, "options"))
    else:
        if description not in (None, ""):
            c.add((*path, "description"), "APPLICATION_COMMAND_CONTEXT_MENU_DESCRIPTION_INVALID",
                  "Context menu commands cannot have description")
        out["description"] = ""
        out["description_localizations"] = None
        if body.get("options"):
            c.add((*path, "options"), "BASE_TYPE_MAX_LENGTH",
                  "Must be 0 or fewer in length: only slash commands have options.")

    permissions = body.get("default_member_permissions")
    out["default_member_permissions"] = None
    if permissions is not None:
        raw = permissions if isinstance(permissions, str) else None
        if isinstance(permissions, int) and not isinstance(permissions, bool):
            raw = str(permissions)
        if raw is None or not (raw.isascii() and raw.isdigit()) or len(raw) > 20 \
                or int(raw) >= 1 << 64:
            c.add((*path, "default_member_permissions"), "NUMBER_TYPE_COERCE",
                  f"Value \"{str(permissions)[:32]}\" is not a valid permission set.")
        else:
            out["default_member_permissions"] = str(int(raw))
    out["dm_permission"] = True
    if _given(body, "dm_permission"):
        out["dm_permission"] = c.boolean((*path, "dm_permission"), body["dm_permission"])
    out["contexts"] = None
    if _given(body, "contexts"):
        out["contexts"] = c.enum_list((*path, "contexts"), body["contexts"], CONTEXT_TYPES)
    out["integration_types"] = [0]
    if _given(body, "integration_types"):
        out["integration_types"] = c.enum_list(
            (*path, "integration_types"), body["integration_types"], INTEGRATION_TYPES)
    out["nsfw"] = False
    if _given(body, "nsfw"):
        out["nsfw"] = c.boolean((*path, "nsfw"), body["nsfw"])

    if slash and not c.problems and command_size(out) > MAX_COMMAND_SIZE:
        c.add(path, "APPLICATION_COMMAND_TOO_LARGE",
              f"Command exceeds maximum size ({MAX_COMMAND_SIZE})")
    return out


def _check_options(c: _Checker, value: Any, path: Path) -> list[dict[str, Any]]:
    """An options array: names unique, subcommands not mixed with values, required
    before optional. Nesting is checked by the parent option: a group holds only
    subcommands, a subcommand only values, so groups are top-level only and nothing
    nests deeper than group > subcommand > value."""
    options = c.array(path, value, MAX_OPTIONS)
    if options is None:
        return []
    out = [_check_option(c, option, (*path, i)) for i, option in enumerate(options)]
    kinds = [o.get("type") for o in options if isinstance(o, dict) and _is_int(o.get("type"))]
    if any(k in (SUB_COMMAND, SUB_COMMAND_GROUP) for k in kinds) and \
            any(k in VALUE_TYPES for k in kinds):
        c.add(path, "APPLICATION_COMMAND_OPTIONS_TYPE_INVALID",
              "Sub-command and sub-command group option types are mutually exclusive to "
              "all other types")
    seen: set[str] = set()
    optional_seen = False
    for i, option in enumerate(out):
        name = option.get("name")
        if name is not None:
            if name in seen:
                c.add((*path, i, "name"), "APPLICATION_COMMAND_OPTIONS_DUPLICATE_NAME",
                      "Option names must be unique")
            seen.add(name)
        if option.get("type") in VALUE_TYPES:
            if option.get("required"):
                if optional_seen:
                    c.add((*path, i), "APPLICATION_COMMAND_OPTIONS_REQUIRED_INVALID",
                          "Required options must be placed before non-required options")
            else:
                optional_seen = True
    return out


def _check_option(c: _Checker, body: Any, path: Path) -> dict[str, Any]:
    if not isinstance(body, dict):
        c.add(path, "DICT_TYPE_CONVERT", "Only dictionaries may be used in a DictType")
        return {}
    kind = body.get("type")
    if kind is None:
        c.required((*path, "type"))
        return {}
    if not _is_int(kind) or kind not in OPTION_TYPES:
        c.add((*path, "type"), "ENUM_TYPE_COERCE",
              f"Value \"{str(kind)[:32]}\" is not a valid enum value.")
        return {}
    out: dict[str, Any] = {"type": kind}

    if body.get("name") is None:
        c.required((*path, "name"))
    else:
        out["name"] = c.name((*path, "name"), body["name"], True)
    localized = c.localizations((*path, "name_localizations"), body.get("name_localizations"),
                                lambda p, v: c.name(p, v, True))
    if localized is not None:
        out["name_localizations"] = localized
    if body.get("description") is None:
        c.required((*path, "description"))
    else:
        out["description"] = c.text((*path, "description"), body["description"], 1,
                                    MAX_DESCRIPTION)
    localized = c.localizations(
        (*path, "description_localizations"), body.get("description_localizations"),
        lambda p, v: c.text(p, v, 1, MAX_DESCRIPTION))
    if localized is not None:
        out["description_localizations"] = localized

    if kind in (SUB_COMMAND, SUB_COMMAND_GROUP):
        if body.get("required") is True:  # false is accepted (hikari sends it)
            c.add((*path, "required"), "APPLICATION_COMMAND_REQUIRED_INVALID",
                  "Required cannot be configured for this type of option")
        sub = body.get("options")
        if kind == SUB_COMMAND_GROUP:
            if not sub:
                c.add((*path, "options"), "BASE_TYPE_MIN_LENGTH",
                      "Must be 1 or more in length: a group holds sub-commands.")
            else:
                out["options"] = _check_options(c, sub, (*path, "options"))
                for i, child in enumerate(out["options"]):
                    if child.get("type") not in (None, SUB_COMMAND):
                        c.add((*path, "options", i, "type"),
                              "APPLICATION_COMMAND_OPTIONS_TYPE_INVALID",
                              "Sub-command groups may only contain sub-commands")
        else:
            out["options"] = [] if sub is None else _check_options(
                c, sub, (*path, "options"))
            for i, child in enumerate(out["options"]):
                if child.get("type") in (SUB_COMMAND, SUB_COMMAND_GROUP):
                    c.add((*path, "options", i, "type"),
                          "APPLICATION_COMMAND_OPTIONS_TYPE_INVALID",
                          "Sub-commands may not contain sub-commands or groups")
        return out

    # a value option; fields for other option types are dropped, as Discord does
    if _given(body, "required"):
        if c.boolean((*path, "required"), body["required"]):
            out["required"] = True
    if body.get("options"):
        c.add((*path, "options"), "BASE_TYPE_MAX_LENGTH",
              "Must be 0 or fewer in length: only sub-commands and groups have options.")
    choices = body.get("choices") if kind in CHOICE_TYPES else None
    if choices:
        out["choices"] = _check_choices(c, choices, (*path, "choices"), kind)
    autocomplete = body.get("autocomplete")
    if autocomplete is not None and c.boolean((*path, "autocomplete"), autocomplete):
        if kind not in CHOICE_TYPES:  # refused, not dropped (discord-api-docs#4319)
            c.add((*path, "autocomplete"), "APPLICATION_COMMAND_AUTOCOMPLETE_INVALID",
                  "Autocomplete cannot be configured for this type of option")
        elif choices:
            c.add((*path, "autocomplete"), "APPLICATION_COMMAND_OPTION_AUTOCOMPLETE_CHOICES",
                  "Autocomplete cannot be set if choices are present.")
        out["autocomplete"] = True
    if kind == CHANNEL and _given(body, "channel_types"):
        types = c.enum_list((*path, "channel_types"), body["channel_types"], CHANNEL_TYPES)
        if types:
            out["channel_types"] = types
    if kind in (INTEGER, NUMBER):
        for field in ("min_value", "max_value"):
            if _given(body, field):
                value = c.integer((*path, field), body[field], -MAX_INTEGER, MAX_INTEGER) \
                    if kind == INTEGER else c.number((*path, field), body[field])
                if value is not None:
                    out[field] = value
        if "min_value" in out and "max_value" in out and out["min_value"] > out["max_value"]:
            c.add((*path, "max_value"), "NUMBER_TYPE_MIN",
                  "max_value must be greater than or equal to min_value.")
    if kind == STRING:
        if _given(body, "min_length"):
            value = c.integer((*path, "min_length"), body["min_length"], 0, MAX_STRING_LENGTH)
            if value is not None:
                out["min_length"] = value
        if _given(body, "max_length"):
            value = c.integer((*path, "max_length"), body["max_length"], 1, MAX_STRING_LENGTH)
            if value is not None:
                out["max_length"] = value
        if out.get("min_length", 0) > out.get("max_length", MAX_STRING_LENGTH):
            c.add((*path, "max_length"), "NUMBER_TYPE_MIN",
                  "max_length must be greater than or equal to min_length.")
    if kind == ATTACHMENT and _given(body, "file_types"):
        types = c.array((*path, "file_types"), body["file_types"], MAX_FILE_TYPES)
        if types is not None:
            checked = [c.text((*path, "file_types", i), t, 1, 32) for i, t in enumerate(types)]
            out["file_types"] = [t for t in checked if t is not None]
    return out


def _check_choices(c: _Checker, value: Any, path: Path, kind: int) -> list[dict[str, Any]]:
    choices = c.array(path, value, MAX_CHOICES)
    if choices is None:
        return []
    out = []
    for i, choice in enumerate(choices):
        where = (*path, i)
        if not isinstance(choice, dict):
            c.add(where, "DICT_TYPE_CONVERT", "Only dictionaries may be used in a DictType")
            continue
        item: dict[str, Any] = {}
        if choice.get("name") is None:
            c.required((*where, "name"))
        else:
            item["name"] = c.text((*where, "name"), choice["name"], 1, MAX_CHOICE_TEXT)
        localized = c.localizations((*where, "name_localizations"),
                                    choice.get("name_localizations"),
                                    lambda p, v: c.text(p, v, 1, MAX_CHOICE_TEXT))
        if localized is not None:
            item["name_localizations"] = localized
        raw = choice.get("value")
        if raw is None:
            c.required((*where, "value"))
        elif kind == STRING:
            item["value"] = c.text((*where, "value"), raw, 1, MAX_CHOICE_TEXT)
        elif kind == INTEGER:
            item["value"] = c.integer((*where, "value"), raw, -MAX_INTEGER, MAX_INTEGER)
        else:
            item["value"] = c.number((*where, "value"), raw)
        out.append(item)
    return out


def command_size(definition: dict[str, Any]) -> int:
    """Characters counted against Discord's 8000: names, descriptions and choice values
    (with localizations, the longest form of each field)."""

    def longest(obj: dict[str, Any], field: str) -> int:
        value = obj.get(field)
        sizes = [len(value) if isinstance(value, str) else len(str(value or ""))]
        sizes += [len(v) for v in (obj.get(f"{field}_localizations") or {}).values()]
        return max(sizes)

    def option_size(option: dict[str, Any]) -> int:
        total = longest(option, "name") + longest(option, "description")
        for choice in option.get("choices") or ():
            total += longest(choice, "name") + len(str(choice.get("value", "")))
        return total + sum(option_size(o) for o in option.get("options") or ())

    return option_size(definition)


def check_bulk(body: Any) -> tuple[list[dict[str, Any]], list[Problem]]:
    """PUT's list: every item checked (paths start with its index), names unique per
    type (the limits per type are ``overwrite_commands``'s, 30032). Items may name the
    ``id`` of a command to keep. A list longer than every limit together is refused
    before its items are read (it cannot be stored, and checking costs CPU)."""
    if not isinstance(body, list):
        return [], [Problem((), "LIST_TYPE_CONVERT", "Only iterables may be used in a ListType")]
    most = sum(MAX_COMMANDS.values())
    if len(body) > most:
        return [], [Problem((), "BASE_TYPE_MAX_LENGTH", f"Must be {most} or fewer in length.")]
    c = _Checker()
    out: list[dict[str, Any]] = []
    seen: set[tuple[int, str]] = set()
    for i, item in enumerate(body):
        definition = _check_command(c, item, (i,))
        if definition is None:
            continue
        raw_id = item.get("id")
        if raw_id is not None:
            command_id = _snowflake(raw_id)
            if command_id is None:
                c.add((i, "id"), "NUMBER_TYPE_COERCE",
                      f"Value \"{str(raw_id)[:32]}\" is not snowflake.")
            else:
                definition["id"] = command_id
        name = definition.get("name")
        if name is not None:
            if (definition["type"], name) in seen:
                c.add((i,), "APPLICATION_COMMANDS_DUPLICATE_NAME",
                      "Application command names must be unique")
            seen.add((definition["type"], name))
        out.append(definition)
    return (out, []) if not c.problems else ([], c.problems)


def _snowflake(value: Any) -> int | None:
    text = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
    if not isinstance(text, str) or not text.isascii() or not text.isdigit() or \
            len(text) > 20 or (len(text) > 1 and text[0] == "0") or int(text) >= 1 << 64:
        return None
    return int(text)


def limit_problem(definitions: Iterable[dict[str, Any]]) -> int | None:
    """The limit exceeded by a scope's commands, if one is (30032)."""
    counts: dict[int, int] = {}
    for d in definitions:
        counts[d["type"]] = counts.get(d["type"], 0) + 1
    for kind, count in counts.items():
        if count > MAX_COMMANDS[kind]:
            return MAX_COMMANDS[kind]
    return None


# -- objects ------------------------------------------------------------------------

#: the fields of a stored command that are its definition (what an edit compares)
DEFINITION_FIELDS = (
    "type", "name", "name_localizations", "description", "description_localizations",
    "options", "default_member_permissions", "dm_permission", "contexts",
    "integration_types", "nsfw")


def definition_of(command: dict[str, Any]) -> dict[str, Any]:
    """A stored command's definition (what PATCH merges its changes onto)."""
    return {k: command[k] for k in DEFINITION_FIELDS if k in command}


def build_command(definition: dict[str, Any], *, command_id: int, application_id: int,
                  guild_id: int | None, version: int) -> dict[str, Any]:
    """The stored command object: Discord's shape, ids as strings, ``guild_id`` None for
    a global command; ``options`` only on slash commands."""
    command = {
        "id": str(command_id),
        "application_id": str(application_id),
        "version": str(version),
        "guild_id": str(guild_id) if guild_id else None,
    }
    command.update({k: definition[k] for k in DEFINITION_FIELDS if k in definition})
    if command["type"] != CHAT_INPUT:
        command.pop("options", None)
    return command


def command_object(command: dict[str, Any], *, localizations: bool = True) -> dict[str, Any]:
    """A stored command as the REST API answers it: Discord leaves ``guild_id`` out of a
    global command. Without ``localizations`` (a list read without
    ``with_localizations=true``) the ``*_localizations`` dictionaries are left out at
    every level, as Discord does (it answers ``*_localized`` for the caller's locale
    instead, and a bot has none)."""
    out = {k: v for k, v in command.items() if k != "guild_id" or v is not None}
    return out if localizations else _without_localizations(out)


def _without_localizations(obj: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in obj.items()
           if k not in ("name_localizations", "description_localizations")}
    for field in ("options", "choices"):
        if isinstance(out.get(field), list):
            out[field] = [_without_localizations(o) for o in out[field]]
    return out


# -- storage ------------------------------------------------------------------------

KIND = "command"
INDEX_KIND = "command_at"
LOCK_KIND = "command_lock"


def _scope_prefix(guild_id: int | None) -> str:
    return f"{guild_id or 0:020d}:"


def _key(guild_id: int | None, command_id: int) -> str:
    return f"{guild_id or 0:020d}:{command_id:020d}"


async def get_command(storage: Any, application_id: int, command_id: int
                      ) -> dict[str, Any] | None:
    """The stored command object (with ``guild_id``, None when global), or None."""
    where = await storage.get_record(INDEX_KIND, application_id, f"{command_id:020d}")
    if where is None:
        return None
    return await storage.get_record(KIND, application_id,
                                    _key(where.get("guild_id") or None, command_id))


async def list_commands(storage: Any, application_id: int, guild_id: int | None
                        ) -> list[dict[str, Any]]:
    """The scope's commands (global when ``guild_id`` is None), by id."""
    rows = await storage.list_records(KIND, application_id, prefix=_scope_prefix(guild_id),
                                      limit=sum(MAX_COMMANDS.values()) + 10)
    return [value for _, value in rows]


_local_locks: weakref.WeakValueDictionary[tuple[int, int], asyncio.Lock] = (
    weakref.WeakValueDictionary())


@contextlib.asynccontextmanager
async def scope_lease(storage: Any, application_id: int, guild_id: int | None
                      ) -> AsyncIterator[None]:
    """Hold the scope's write lease: key ``{guild_id or 0:020d}`` inserted if absent with
    a TTL (a node that dies holding it frees it in ``LEASE_S``), released by a delete
    conditional on the holder's token. Both are lightweight transactions on Cassandra:
    a plain DELETE of a row an LWT wrote was undone by a later Paxos round in 6 of ~150
    contended releases, each stalling the scope for the TTL. Writers on this node queue
    on a local lock first rather than poll the store. ``CommandError("busy")`` if the
    lease is not obtained within ``LEASE_WAIT_S``."""
    scope = (application_id, guild_id or 0)
    local = _local_locks.get(scope)
    if local is None:
        local = _local_locks[scope] = asyncio.Lock()
    async with local:
        key, held = f"{guild_id or 0:020d}", {"by": uuid.uuid4().hex}
        deadline = time.monotonic() + LEASE_WAIT_S
        pause = 0.005
        while True:
            taken, _ = await storage.insert_record_if_absent(
                LOCK_KIND, application_id, key, held, ttl_s=LEASE_S)
            if taken:
                break
            if time.monotonic() > deadline:
                raise CommandError("busy")
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.1)
        try:
            yield
        finally:
            await storage.delete_record_if(LOCK_KIND, application_id, key, held)


async def _store(storage: Any, command: dict[str, Any], new: bool) -> None:
    application_id, command_id = int(command["application_id"]), int(command["id"])
    guild_id = int(command["guild_id"]) if command.get("guild_id") else None
    if new:  # the pointer first: a crash before the command leaves nothing findable
        await storage.put_record(INDEX_KIND, application_id, f"{command_id:020d}",
                                 {"guild_id": guild_id or 0})
    await storage.put_record(KIND, application_id, _key(guild_id, command_id), command)


async def _remove(storage: Any, command: dict[str, Any]) -> None:
    application_id, command_id = int(command["application_id"]), int(command["id"])
    guild_id = int(command["guild_id"]) if command.get("guild_id") else None
    await storage.delete_record(KIND, application_id, _key(guild_id, command_id))
    await storage.delete_record(INDEX_KIND, application_id, f"{command_id:020d}")


def _changed(command: dict[str, Any], definition: dict[str, Any]) -> bool:
    return definition_of(command) != {k: definition[k] for k in DEFINITION_FIELDS
                                      if k in definition and
                                      (k != "options" or definition["type"] == CHAT_INPUT)}


async def create_command(storage: Any, next_id: Callable[[], int], application_id: int,
                         guild_id: int | None, definition: dict[str, Any]
                         ) -> tuple[dict[str, Any], bool]:
    """POST: ``(command, created)``. A command of the same type and name in the scope is
    updated in place (same id; a new version if anything changed); else a new one,
    within the type's limit (``CommandError("limit")``)."""
    async with scope_lease(storage, application_id, guild_id):
        existing = await list_commands(storage, application_id, guild_id)
        for command in existing:
            if command["type"] == definition["type"] and command["name"] == definition["name"]:
                if not _changed(command, definition):
                    return command, False
                updated = build_command(definition, command_id=int(command["id"]),
                                        application_id=application_id, guild_id=guild_id,
                                        version=next_id())
                await _store(storage, updated, new=False)
                return updated, False
        same_type = sum(1 for c in existing if c["type"] == definition["type"])
        if same_type >= MAX_COMMANDS[definition["type"]]:
            raise CommandError("limit", limit=MAX_COMMANDS[definition["type"]])
        command_id = next_id()
        command = build_command(definition, command_id=command_id,
                                application_id=application_id, guild_id=guild_id,
                                version=command_id)
        await _store(storage, command, new=True)
        return command, True


async def edit_command(storage: Any, next_id: Callable[[], int], application_id: int,
                       guild_id: int | None, command_id: int, changes: Any
                       ) -> dict[str, Any]:
    """PATCH: the fields given replace the command's (its type stays); checked as a
    whole command, so problems name the fields as sent. A new version if anything
    changed. ``CommandError("unknown" | "invalid")``."""
    if not isinstance(changes, dict):
        raise CommandError("invalid", [Problem((), "DICT_TYPE_CONVERT",
                                               "Only dictionaries may be used in a DictType")])
    async with scope_lease(storage, application_id, guild_id):
        command = await storage.get_record(KIND, application_id, _key(guild_id, command_id))
        if command is None:
            raise CommandError("unknown")
        merged = definition_of(command)
        merged.update({k: v for k, v in changes.items() if k in DEFINITION_FIELDS})
        merged["type"] = command["type"]
        definition, problems = check_command(merged)
        if definition is None:
            raise CommandError("invalid", problems)
        if definition["name"] != command["name"]:
            for other in await list_commands(storage, application_id, guild_id):
                if other["id"] != command["id"] and other["type"] == command["type"] \
                        and other["name"] == definition["name"]:
                    raise CommandError("invalid", [Problem(
                        ("name",), "APPLICATION_COMMANDS_DUPLICATE_NAME",
                        "Application command names must be unique")])
        if not _changed(command, definition):
            return command
        updated = build_command(definition, command_id=command_id,
                                application_id=application_id, guild_id=guild_id,
                                version=next_id())
        await _store(storage, updated, new=False)
        return updated


async def delete_command(storage: Any, application_id: int, guild_id: int | None,
                         command_id: int) -> bool:
    """DELETE: True if the scope had the command."""
    async with scope_lease(storage, application_id, guild_id):
        command = await storage.get_record(KIND, application_id, _key(guild_id, command_id))
        if command is None:
            return False
        await _remove(storage, command)
        return True


async def overwrite_commands(storage: Any, next_id: Callable[[], int], application_id: int,
                             guild_id: int | None, definitions: list[dict[str, Any]]
                             ) -> list[dict[str, Any]]:
    """PUT: the scope's commands become ``definitions`` (from ``check_bulk``). An item
    keeps the id of the command it names by ``id`` or, else, by type and name (its
    version too if nothing changed); commands not kept are deleted. Answers the list in
    the order given. ``CommandError("limit")``."""
    limit = limit_problem(definitions)
    if limit is not None:
        raise CommandError("limit", limit=limit)
    async with scope_lease(storage, application_id, guild_id):
        existing = await list_commands(storage, application_id, guild_id)
        by_id = {int(c["id"]): c for c in existing}
        by_name = {(c["type"], c["name"]): c for c in existing}
        kept: set[int] = set()
        plan: list[tuple[dict[str, Any], dict[str, Any] | None]] = []
        for definition in definitions:
            match = by_id.get(definition.get("id", 0))
            if match is not None and match["type"] != definition["type"]:
                match = None
            if match is None:
                match = by_name.get((definition["type"], definition["name"]))
            if match is not None and int(match["id"]) in kept:
                match = None
            if match is not None:
                kept.add(int(match["id"]))
            plan.append((definition, match))
        await _bounded([_remove(storage, c) for c in existing if int(c["id"]) not in kept])
        out, writes = [], []
        for definition, match in plan:
            if match is not None and not _changed(match, definition):
                out.append(match)
                continue
            command_id = int(match["id"]) if match is not None else next_id()
            command = build_command(definition, command_id=command_id,
                                    application_id=application_id, guild_id=guild_id,
                                    version=command_id if match is None else next_id())
            writes.append(_store(storage, command, new=match is None))
            out.append(command)
        await _bounded(writes)
        return out


#: commands written (or removed) at once by a bulk overwrite: 130 one after the other
#: are 260 round trips, which on Cassandra could outlast the lease (``LEASE_S``)
WRITE_CONCURRENCY = 16


async def _bounded(writes: list[Coroutine[Any, Any, None]]) -> None:
    """Run ``writes`` (each a command's own ordered writes) ``WRITE_CONCURRENCY`` at a
    time; the first failure is raised once all have ended."""
    gate = asyncio.Semaphore(WRITE_CONCURRENCY)

    async def one(write: Coroutine[Any, Any, None]) -> None:
        async with gate:
            await write

    results = await asyncio.gather(*(one(w) for w in writes), return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
