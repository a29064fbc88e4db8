"""Rich embeds a client sends with a message: checked against Discord's limits and
reduced to what a client may set.

Discord's rules (message.mdx, "Embed Limits" and Create Message's "Limitations"): up to
10 embeds a message; title and author name 256 characters, description 4096, footer
text 2048, up to 25 fields with a name of 256 and a value of 1024; and the title,
description, field names and values, footer text and author name of all the embeds
together at most 6000. Leading and trailing white space is trimmed first and not
counted. A client sets every field but ``type`` (always ``"rich"``), ``provider``,
``video`` and an image's ``height``/``width``/``proxy_url``: those are dropped, as
are keys Discord does not know, so what is stored is what Discord would store.

A violation is a ``FieldError`` with Discord's path (``embeds.0.fields.3.value``), which
the REST layer answers 400 50035; the 6000-character total is Discord's
``MAX_EMBED_SIZE_EXCEEDED`` on ``embeds``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from chat.validation import FieldError, unstorable

MAX_EMBEDS = 10
MAX_TITLE = 256
MAX_DESCRIPTION = 4096
MAX_FIELDS = 25
MAX_FIELD_NAME = 256
MAX_FIELD_VALUE = 1024
MAX_FOOTER_TEXT = 2048
MAX_AUTHOR_NAME = 256
MAX_TOTAL = 6000
MAX_URL = 2048
MAX_COLOR = 0xFFFFFF

_WEB = ("http", "https")
_MEDIA = ("http", "https", "attachment")  # images and icons may name an uploaded file


class _Invalid(Exception):
    def __init__(self, problem: FieldError) -> None:
        self.problem = problem


def check_embeds(value: Any, field: str = "embeds") -> tuple[list[dict[str, Any]] | None,
                                                            FieldError | None]:
    """The embeds of a message body, normalised (``[]`` for null), or the first problem
    found with Discord's field path."""
    if value is None:
        return [], None
    if not isinstance(value, list):
        return None, FieldError(field, "LIST_TYPE_CONVERT",
                                "Only iterables may be used in a ListType.")
    if len(value) > MAX_EMBEDS:
        return None, FieldError(field, "BASE_TYPE_MAX_LENGTH",
                                f"Must be {MAX_EMBEDS} or fewer in length.")
    try:
        embeds = [_embed(item, f"{field}.{i}") for i, item in enumerate(value)]
    except _Invalid as exc:
        return None, exc.problem
    if sum(embed_size(e) for e in embeds) > MAX_TOTAL:
        return None, FieldError(field, "MAX_EMBED_SIZE_EXCEEDED",
                                f"Embed size exceeds maximum size of {MAX_TOTAL}")
    return embeds, None


def embed_size(embed: dict[str, Any]) -> int:
    """The characters of ``embed`` that count toward the 6000 (trimmed already)."""
    size = len(embed.get("title", "")) + len(embed.get("description", ""))
    size += len(embed.get("footer", {}).get("text", ""))
    size += len(embed.get("author", {}).get("name", ""))
    for f in embed.get("fields", ()):
        size += len(f["name"]) + len(f["value"])
    return size


def _embed(value: Any, path: str) -> dict[str, Any]:
    item = _dict(value, path)
    out: dict[str, Any] = {"type": "rich"}
    _put(out, "title", _text(item, "title", path, MAX_TITLE))
    _put(out, "description", _text(item, "description", path, MAX_DESCRIPTION))
    _put(out, "url", _url(item, "url", path, _WEB))
    if item.get("timestamp") is not None:
        out["timestamp"] = _timestamp(item["timestamp"], f"{path}.timestamp")
    if item.get("color") is not None:
        out["color"] = _color(item["color"], f"{path}.color")
    if item.get("footer") is not None:
        sub = f"{path}.footer"
        footer = _dict(item["footer"], sub)
        out["footer"] = {"text": _text(footer, "text", sub, MAX_FOOTER_TEXT, required=True)}
        _put(out["footer"], "icon_url", _url(footer, "icon_url", sub, _MEDIA))
    for media in ("image", "thumbnail"):
        if item.get(media) is not None:
            sub = f"{path}.{media}"
            out[media] = {"url": _url(_dict(item[media], sub), "url", sub, _MEDIA,
                                      required=True)}
    if item.get("author") is not None:
        sub = f"{path}.author"
        author = _dict(item["author"], sub)
        out["author"] = {"name": _text(author, "name", sub, MAX_AUTHOR_NAME, required=True)}
        _put(out["author"], "url", _url(author, "url", sub, _WEB))
        _put(out["author"], "icon_url", _url(author, "icon_url", sub, _MEDIA))
    if item.get("fields") is not None:
        out["fields"] = _fields(item["fields"], f"{path}.fields")
    return out


def _fields(value: Any, path: str) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise _Invalid(FieldError(path, "LIST_TYPE_CONVERT",
                                  "Only iterables may be used in a ListType."))
    if len(value) > MAX_FIELDS:
        raise _Invalid(FieldError(path, "BASE_TYPE_MAX_LENGTH",
                                  f"Must be {MAX_FIELDS} or fewer in length."))
    fields = []
    for i, raw in enumerate(value):
        sub = f"{path}.{i}"
        item = _dict(raw, sub)
        field = {"name": _text(item, "name", sub, MAX_FIELD_NAME, required=True),
                 "value": _text(item, "value", sub, MAX_FIELD_VALUE, required=True)}
        inline = item.get("inline")
        if inline is not None:
            if not isinstance(inline, bool):
                raise _Invalid(FieldError(f"{sub}.inline", "BASE_TYPE_BOOLEAN",
                                          "Must be either true or false."))
            field["inline"] = inline
        fields.append(field)
    return fields


def _put(out: dict[str, Any], key: str, value: Any) -> None:
    if value is not None:
        out[key] = value


def _dict(value: Any, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _Invalid(FieldError(path, "DICT_TYPE_CONVERT",
                                  "Only dictionaries may be used in a DictType."))
    return value


def _text(item: dict[str, Any], key: str, path: str, limit: int, *,
          required: bool = False) -> str | None:
    """A trimmed string of at most ``limit`` characters (None if absent and optional)."""
    field = f"{path}.{key}"
    value = item.get(key)
    if value is None:
        if required:
            raise _Invalid(FieldError(field, "BASE_TYPE_REQUIRED", "This field is required"))
        return None
    if not isinstance(value, str):
        raise _Invalid(FieldError(field, "BASE_TYPE_STRING",
                                  "Could not interpret the value as string."))
    value = value.strip()
    if not value:
        if required:
            raise _Invalid(FieldError(field, "BASE_TYPE_REQUIRED", "This field is required"))
        return None
    if len(value) > limit:
        raise _Invalid(FieldError(field, "BASE_TYPE_MAX_LENGTH",
                                  f"Must be {limit} or fewer in length."))
    problem = unstorable(value)
    if problem:
        raise _Invalid(FieldError(field, "STRING_TYPE_INVALID", problem))
    return value


def _url(item: dict[str, Any], key: str, path: str, schemes: tuple[str, ...], *,
         required: bool = False) -> str | None:
    value = _text(item, key, path, MAX_URL, required=required)
    if value is None:
        return None
    scheme, sep, rest = value.partition(":")
    if not sep or not rest.lstrip("/") or any(c.isspace() for c in value):
        raise _Invalid(FieldError(f"{path}.{key}", "URL_TYPE_INVALID_URL",
                                  "Not a well formed URL."))
    if scheme.lower() not in schemes:
        raise _Invalid(FieldError(
            f"{path}.{key}", "URL_TYPE_INVALID_SCHEME",
            f"Scheme \"{scheme[:32]}\" is not supported. Scheme must be one of "
            f"{schemes}."))
    return value


def _timestamp(value: Any, path: str) -> str:
    """An ISO 8601 timestamp, answered in UTC with its offset (as Discord does; a
    timestamp without an offset is taken as UTC)."""
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            parsed = None
        if parsed is not None:
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=UTC)
            return parsed.astimezone(UTC).isoformat()
    raise _Invalid(FieldError(path, "DATE_TIME_TYPE_PARSE",
                              f"Could not parse {str(value)[:32]}. Should be ISO8601."))


def _color(value: Any, path: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Invalid(FieldError(path, "NUMBER_TYPE_COERCE",
                                  f"Value \"{str(value)[:32]}\" is not int."))
    if not 0 <= value <= MAX_COLOR:
        raise _Invalid(FieldError(path, "NUMBER_TYPE_MAX" if value > MAX_COLOR
                                  else "NUMBER_TYPE_MIN",
                                  f"int value should be between 0 and {MAX_COLOR}."))
    return value
