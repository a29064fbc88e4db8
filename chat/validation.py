"""Text a client may store: checked at the edge (REST, the ingress), before it reaches
an actor or a storage batch.

A JSON string may hold a lone surrogate (``"a\\ud800b"`` is valid JSON) that has no
UTF-8 form: SQLite and CQL cannot store it, and a write that fails in a batch used to
fail the batch's other writes too. NUL is refused as well: both backends would store
it, but it truncates text in C-string consumers (exports, log pipelines, terminals) and
no Discord client sends it. Whitespace-only content is Discord's 50006 (Cannot send an
empty message), not a message.

The answers are Discord's ``errors`` tree entries (``{"code", "message"}`` under the
field's ``_errors``); the REST layer wraps them in 400 50035 Invalid Form Body, the
ingress in its own ``bad_message``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

MAX_CONTENT = 2000


@dataclass(frozen=True, slots=True)
class FieldError:
    field: str
    code: str  # Discord's errors-tree code
    message: str
    #: True for empty content: Discord answers 50006, not 50035.
    empty: bool = False

    def tree(self) -> dict[str, Any]:
        """Discord's ``errors`` object for this field. A dotted path nests, as Discord's
        trees do: ``embeds.0.title`` -> ``{"embeds": {"0": {"title": {"_errors": …}}}}``."""
        tree: dict[str, Any] = {"_errors": [{"code": self.code, "message": self.message}]}
        for part in reversed(self.field.split(".")):
            tree = {part: tree}
        return tree


def unstorable(value: str) -> str | None:
    """Why ``value`` cannot be stored as text, or None."""
    if value.isascii():
        return "Must not contain NUL." if "\x00" in value else None
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "Must be valid Unicode (no lone surrogates)."
    return "Must not contain NUL." if "\x00" in value else None


def check_text(field: str, value: Any, *, min_len: int = 0, max_len: int,
               required: bool = True) -> FieldError | None:
    """A string field of ``min_len``..``max_len`` characters that storage can hold."""
    if value is None and not required:
        return None
    if not isinstance(value, str):
        return FieldError(field, "BASE_TYPE_STRING", "Could not interpret the value as string.")
    if not min_len <= len(value) <= max_len:
        return FieldError(field, "BASE_TYPE_BAD_LENGTH",
                          f"Must be between {min_len} and {max_len} in length.")
    problem = unstorable(value)
    return FieldError(field, "STRING_TYPE_INVALID", problem) if problem else None


def check_content(content: Any) -> FieldError | None:
    """A message's ``content``: 1-2000 characters, not only white space, storable."""
    if content is None or content == "":
        return FieldError("content", "BASE_TYPE_REQUIRED", "Cannot send an empty message",
                          empty=True)
    if isinstance(content, str) and len(content) > MAX_CONTENT:
        return FieldError("content", "BASE_TYPE_MAX_LENGTH",
                          f"Must be {MAX_CONTENT} or fewer in length.")
    problem = check_text("content", content, max_len=MAX_CONTENT)
    if problem is not None:
        return problem
    if content.isspace():
        return FieldError("content", "BASE_TYPE_REQUIRED", "Cannot send an empty message",
                          empty=True)
    return None
