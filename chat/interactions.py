"""Interactions, sans I/O: a user's invocation checked against the registered command,
the interaction's token, and the rules of its lifetime, with time passed in.

An interaction is born when a user invokes a command, clicks a component or submits a
modal (``POST /interactions``). The bot must answer it once (``callback``) within
``RESPONSE_WINDOW_MS`` of its creation; after that the interaction is gone for the bot
(10062 Unknown interaction) and the user's client is told it failed. Its token then
serves ``@original`` and follow-ups (``/webhooks/{application_id}/{token}``) until
``TOKEN_WINDOW_MS`` after its creation (10015 Unknown Webhook after that). The one
answer is claimed in storage (an insert-if-absent, a lightweight transaction on
Cassandra), so the rule holds whichever node each request lands on; this module only
says what a request may do given what storage holds and the time.

Option values are checked the way Discord's API checks what its clients send: names,
types, ``required``, ``choices``, lengths and bounds; the ids they name (users, roles,
channels) are returned as ``Reference`` s for the caller to resolve against storage
(``data.resolved``), since that needs I/O.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import math
import secrets
from dataclasses import dataclass
from typing import Any

from chat.validation import FieldError, check_text, unstorable
from storage.snowflake import parse_snowflake, snowflake_ms

# Interaction types
PING = 1
APPLICATION_COMMAND = 2
MESSAGE_COMPONENT = 3
AUTOCOMPLETE = 4
MODAL_SUBMIT = 5

# Callback (response) types
PONG = 1
CHANNEL_MESSAGE_WITH_SOURCE = 4
DEFERRED_CHANNEL_MESSAGE_WITH_SOURCE = 5
DEFERRED_UPDATE_MESSAGE = 6
UPDATE_MESSAGE = 7
AUTOCOMPLETE_RESULT = 8
MODAL = 9

#: The callback types each interaction type may be answered with (Discord's table:
#: 6 and 7 are for component-based interactions, 9 not for a modal's submit).
CALLBACKS_FOR: dict[int, frozenset[int]] = {
    PING: frozenset({PONG}),
    APPLICATION_COMMAND: frozenset({CHANNEL_MESSAGE_WITH_SOURCE,
                                    DEFERRED_CHANNEL_MESSAGE_WITH_SOURCE, MODAL}),
    MESSAGE_COMPONENT: frozenset({CHANNEL_MESSAGE_WITH_SOURCE,
                                  DEFERRED_CHANNEL_MESSAGE_WITH_SOURCE,
                                  DEFERRED_UPDATE_MESSAGE, UPDATE_MESSAGE, MODAL}),
    AUTOCOMPLETE: frozenset({AUTOCOMPLETE_RESULT}),
    MODAL_SUBMIT: frozenset({CHANNEL_MESSAGE_WITH_SOURCE,
                             DEFERRED_CHANNEL_MESSAGE_WITH_SOURCE,
                             DEFERRED_UPDATE_MESSAGE, UPDATE_MESSAGE}),
}

# Command types and option types
CHAT_INPUT = 1
USER_COMMAND = 2
MESSAGE_COMMAND = 3
SUB_COMMAND = 1
SUB_COMMAND_GROUP = 2
STRING = 3
INTEGER = 4
BOOLEAN = 5
USER = 6
CHANNEL = 7
ROLE = 8
MENTIONABLE = 9
NUMBER = 10
ATTACHMENT = 11

# Interaction contexts
GUILD = 0
BOT_DM = 1

# Message types and flags of interaction responses
CHAT_INPUT_COMMAND_MESSAGE = 20
CONTEXT_MENU_COMMAND_MESSAGE = 23
EPHEMERAL = 1 << 6
LOADING = 1 << 7
SUPPRESS_EMBEDS = 1 << 2
SUPPRESS_NOTIFICATIONS = 1 << 12
#: The flags a response or follow-up may set (IS_COMPONENTS_V2 is not served here).
SETTABLE_FLAGS = SUPPRESS_EMBEDS | EPHEMERAL | SUPPRESS_NOTIFICATIONS

RESPONSE_WINDOW_MS = 3_000
TOKEN_WINDOW_MS = 15 * 60 * 1000
#: Discord's (non-Nitro) upload limit, which discord.py and hikari read as
#: ``attachment_size_limit`` (required by both).
ATTACHMENT_SIZE_LIMIT = 10 * 1024 * 1024
MAX_AUTOCOMPLETE_CHOICES = 25
SAFE_INTEGER = 2**53 - 1
MAX_STRING_OPTION = 6000

_TOKEN_PREFIX = b"interaction:"

# Discord's JSON error codes of this module's answers
UNKNOWN_WEBHOOK = 10015
UNKNOWN_INTERACTION = 10062
UNKNOWN_COMMAND = 10063
ALREADY_ACKNOWLEDGED = 40060


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a request on an interaction is refused: Discord's status and JSON code."""

    status: int
    code: int
    message: str


# -- the token ----------------------------------------------------------------------------


def new_token(interaction_id: int) -> str:
    """A token that names its interaction, as Discord's do (``base64("interaction:<id>:
    <random>")``): a node that never saw the interaction finds its record by the token
    alone. Unguessable: 32 random bytes."""
    raw = _TOKEN_PREFIX + f"{interaction_id}:".encode() + \
        base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=")
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def token_interaction_id(token: str) -> int | None:
    """The interaction id a token names, or None for anything not shaped like one (a
    channel webhook's token, say). Says nothing about whether the token is valid:
    compare ``token_digest`` with the interaction's."""
    if not 40 <= len(token) <= 200 or not token.isascii():
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        return None
    if not raw.startswith(_TOKEN_PREFIX):
        return None
    head, sep, _ = raw[len(_TOKEN_PREFIX):].partition(b":")
    if not sep:
        return None
    return parse_snowflake(head.decode("ascii", "replace"))


def token_digest(token: str) -> str:
    """What storage keeps of a token (never the token itself)."""
    return hashlib.sha256(token.encode()).hexdigest()


def token_matches(token: str, digest: str) -> bool:
    return hmac.compare_digest(token_digest(token), digest)


# -- the lifetime ---------------------------------------------------------------------------


def callback_refusal(created_ms: int, now_ms: int,
                     answered: dict[str, Any] | None) -> Refusal | None:
    """Whether a callback may answer an interaction created at ``created_ms`` now
    (``answered``: the answer claimed in storage, if any; ``{"expired": True}`` when the
    window closed unanswered). The body is checked first: a 50035 does not spend the one
    answer."""
    if answered is not None:
        if answered.get("expired"):
            return Refusal(404, UNKNOWN_INTERACTION, "Unknown interaction")
        return Refusal(400, ALREADY_ACKNOWLEDGED, "Interaction has already been acknowledged.")
    if now_ms - created_ms > RESPONSE_WINDOW_MS:
        return Refusal(404, UNKNOWN_INTERACTION, "Unknown interaction")
    return None


def callback_type_problem(interaction_type: int, callback_type: Any,
                          has_message: bool) -> FieldError | None:
    """``type`` of a callback body: one this interaction may be answered with (6 and 7
    need a message: a component's, or the one a submitted modal was opened from)."""
    if isinstance(callback_type, bool) or not isinstance(callback_type, int):
        return FieldError("type", "NUMBER_TYPE_COERCE", "Value is not int.")
    allowed = set(CALLBACKS_FOR.get(interaction_type, ()))
    if not has_message:
        allowed -= {DEFERRED_UPDATE_MESSAGE, UPDATE_MESSAGE}
    if callback_type not in allowed:
        return FieldError("type", "INTERACTION_RESPONSE_TYPE_INVALID",
                          f"Value must be one of {sorted(allowed)}.")
    return None


def token_refusal(created_ms: int, now_ms: int) -> Refusal | None:
    """Whether the token still serves ``@original`` and follow-ups."""
    if now_ms - created_ms > TOKEN_WINDOW_MS:
        return Refusal(404, UNKNOWN_WEBHOOK, "Unknown Webhook")
    return None


def expires_at_ms(interaction_id: int) -> int:
    """When an interaction's token stops serving (its records may go then)."""
    return snowflake_ms(interaction_id) + TOKEN_WINDOW_MS


def check_flags(flags: Any, *, field: str = "flags") -> FieldError | None:
    """A response's or follow-up's ``flags``: only the ones Discord lets it set."""
    if flags is None:
        return None
    if isinstance(flags, bool) or not isinstance(flags, int) or flags < 0:
        return FieldError(field, "NUMBER_TYPE_COERCE", "Value is not int.")
    if flags & ~SETTABLE_FLAGS:
        return FieldError(field, "MESSAGE_FLAGS_INVALID",
                          "Only SUPPRESS_EMBEDS, EPHEMERAL and SUPPRESS_NOTIFICATIONS "
                          "can be set.")
    return None


def check_autocomplete_choices(data: Any, option_type: int) -> FieldError | None:
    """The ``data`` of an AUTOCOMPLETE_RESULT: up to 25 ``{name, value}`` choices whose
    values have the focused option's type."""
    if not isinstance(data, dict):
        return FieldError("data", "MODEL_TYPE_CONVERT", "Only dictionaries may be used.")
    choices = data.get("choices")
    if not isinstance(choices, list):
        return FieldError("data.choices", "BASE_TYPE_REQUIRED", "This field is required")
    if len(choices) > MAX_AUTOCOMPLETE_CHOICES:
        return FieldError("data.choices", "BASE_TYPE_MAX_LENGTH",
                          f"Must be {MAX_AUTOCOMPLETE_CHOICES} or fewer in length.")
    for i, choice in enumerate(choices):
        path = f"data.choices.{i}"
        if not isinstance(choice, dict):
            return FieldError(path, "MODEL_TYPE_CONVERT", "Only dictionaries may be used.")
        problem = check_text(f"{path}.name", choice.get("name"), min_len=1, max_len=100)
        if problem is not None:
            return problem
        value = choice.get("value")
        if option_type == STRING:
            problem = check_text(f"{path}.value", value, max_len=100)
        elif not _is_number(value, integer=option_type == INTEGER):
            problem = FieldError(f"{path}.value", "NUMBER_TYPE_COERCE",
                                 "Value is not a number.")
        if problem is not None:
            return problem
    return None


# -- invocations ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reference:
    """An id an option (or a target) names, for the caller to resolve: ``kind`` is
    "user", "role", "channel", "mentionable" or "message"; ``channel_types`` the
    option's restriction (None: any)."""

    kind: str
    id: int
    path: str
    channel_types: tuple[int, ...] | None = None


@dataclass(frozen=True, slots=True)
class CheckedCommand:
    """An invocation that matches its command: its options as the bot will get them
    (only the fields Discord sends), the ids to resolve, the full name
    (``"group sub"`` included, for ``interaction_metadata``) and the focused option's
    type for an autocomplete."""

    options: list[dict[str, Any]]
    references: list[Reference]
    full_name: str
    focused_type: int | None = None


class InvalidInvocation(Exception):
    """The invocation does not match its command: ``problem`` names the field."""

    def __init__(self, problem: FieldError) -> None:
        super().__init__(problem.message)
        self.problem = problem


def _is_number(value: Any, *, integer: bool) -> bool:
    if isinstance(value, bool):
        return False
    if integer:
        return isinstance(value, int) and -SAFE_INTEGER <= value <= SAFE_INTEGER
    return isinstance(value, int | float) and math.isfinite(value) \
        and -(2**53) <= value <= 2**53


def _invalid(path: str, code: str, message: str) -> InvalidInvocation:
    return InvalidInvocation(FieldError(path, code, message))


def check_command_data(command: dict[str, Any], data: dict[str, Any], *,
                       autocomplete: bool = False) -> CheckedCommand:
    """Check an invocation's ``data`` against its registered ``command`` (Discord's
    application command object, as stored): name and type, then the options, or the
    target of a USER or MESSAGE command. Raises ``InvalidInvocation``."""
    if data.get("name") != command.get("name"):
        raise _invalid("data.name", "APPLICATION_COMMAND_NAME_MISMATCH",
                       "The command's name does not match its id (outdated command).")
    command_type = command.get("type", CHAT_INPUT) or CHAT_INPUT
    given_type = data.get("type", command_type)
    if given_type != command_type:
        raise _invalid("data.type", "APPLICATION_COMMAND_TYPE_MISMATCH",
                       "The command's type does not match its id.")
    if command_type in (USER_COMMAND, MESSAGE_COMMAND):
        if autocomplete:
            raise _invalid("type", "INTERACTION_TYPE_INVALID",
                           "Only chat input commands have autocomplete.")
        target = parse_snowflake(str(data.get("target_id", "")))
        if target is None:
            raise _invalid("data.target_id", "BASE_TYPE_REQUIRED", "This field is required")
        if data.get("options"):
            raise _invalid("data.options", "BASE_TYPE_MAX_LENGTH",
                           "Context menu commands take no options.")
        kind = "user" if command_type == USER_COMMAND else "message"
        return CheckedCommand([], [Reference(kind, target, "data.target_id")],
                              str(command["name"]))
    walker = _OptionWalker(autocomplete)
    options = walker.walk(command.get("options") or [], data.get("options"),
                          "data.options")
    if autocomplete and walker.focused_type is None:
        raise _invalid("data.options", "AUTOCOMPLETE_FOCUS_REQUIRED",
                       "An autocomplete needs exactly one focused option.")
    return CheckedCommand(options, walker.references,
                          " ".join([str(command["name"]), *walker.path_names]),
                          walker.focused_type)


class _OptionWalker:
    def __init__(self, autocomplete: bool) -> None:
        self.autocomplete = autocomplete
        self.references: list[Reference] = []
        self.path_names: list[str] = []
        self.focused_type: int | None = None

    def walk(self, declared: list[dict[str, Any]], given: Any, path: str
             ) -> list[dict[str, Any]]:
        if given is None:
            given = []
        if not isinstance(given, list):
            raise _invalid(path, "BASE_TYPE_ARRAY", "Could not interpret the value as a list.")
        by_name = {o.get("name"): o for o in declared if isinstance(o, dict)}
        nested = [o for o in declared if o.get("type") in (SUB_COMMAND, SUB_COMMAND_GROUP)]
        if nested:  # exactly one subcommand (or group) is chosen
            if len(given) != 1 or not isinstance(given[0], dict):
                raise _invalid(path, "APPLICATION_COMMAND_SUBCOMMAND_REQUIRED",
                               "Exactly one subcommand or group must be chosen.")
            chosen = given[0]
            spec = by_name.get(chosen.get("name"))
            if spec is None or spec.get("type") != chosen.get("type"):
                raise _invalid(f"{path}.0.name", "APPLICATION_COMMAND_OPTION_UNKNOWN",
                               "Unknown subcommand or group.")
            self.path_names.append(str(spec["name"]))
            inner = self.walk(spec.get("options") or [], chosen.get("options"),
                              f"{path}.0.options")
            return [{"type": spec["type"], "name": spec["name"], "options": inner}]
        out: list[dict[str, Any]] = []
        seen: set[str] = set()
        for i, option in enumerate(given):
            here = f"{path}.{i}"
            if not isinstance(option, dict):
                raise _invalid(here, "MODEL_TYPE_CONVERT", "Only dictionaries may be used.")
            name = option.get("name")
            spec = by_name.get(name)
            if spec is None:
                raise _invalid(f"{here}.name", "APPLICATION_COMMAND_OPTION_UNKNOWN",
                               "Unknown option.")
            if name in seen:
                raise _invalid(f"{here}.name", "APPLICATION_COMMAND_OPTION_DUPLICATE",
                               "An option may be given once.")
            seen.add(str(name))
            option_type = spec.get("type")
            if option.get("type", option_type) != option_type:
                raise _invalid(f"{here}.type", "APPLICATION_COMMAND_OPTION_TYPE_MISMATCH",
                               f"Option {name!r} is of type {option_type}.")
            out.append(self._value(spec, option, here))
        if not self.autocomplete:
            for spec in declared:
                if spec.get("required") and spec.get("name") not in seen:
                    raise _invalid(path, "APPLICATION_COMMAND_OPTION_REQUIRED",
                                   f"Option {spec.get('name')!r} is required.")
        return out

    def _value(self, spec: dict[str, Any], option: dict[str, Any], path: str
               ) -> dict[str, Any]:
        option_type = spec["type"]
        value = option.get("value")
        out: dict[str, Any] = {"type": option_type, "name": spec["name"]}
        if option.get("focused"):
            if not self.autocomplete or not spec.get("autocomplete"):
                raise _invalid(f"{path}.focused", "APPLICATION_COMMAND_OPTION_NOT_AUTOCOMPLETE",
                               "Only an autocomplete option can be focused.")
            if self.focused_type is not None:
                raise _invalid(f"{path}.focused", "AUTOCOMPLETE_FOCUS_REQUIRED",
                               "Only one option can be focused.")
            self.focused_type = option_type
            # partial input: what the user has typed so far, as text
            problem = _text_problem(f"{path}.value", value, 0, MAX_STRING_OPTION)
            if problem is not None:
                raise InvalidInvocation(problem)
            out["value"] = value
            out["focused"] = True
            return out
        path_value = f"{path}.value"
        if option_type == STRING:
            low = spec.get("min_length", 0) or 0
            high = spec.get("max_length", MAX_STRING_OPTION) or MAX_STRING_OPTION
            problem = _text_problem(path_value, value, max(low, 1 if low else 0), high)
            if problem is not None:
                raise InvalidInvocation(problem)
            self._choice(spec, value, path_value)
        elif option_type in (INTEGER, NUMBER):
            if not _is_number(value, integer=option_type == INTEGER):
                raise _invalid(path_value, "NUMBER_TYPE_COERCE",
                               "Value is not int." if option_type == INTEGER
                               else "Value is not a number.")
            low, high = spec.get("min_value"), spec.get("max_value")
            if low is not None and value < low:
                raise _invalid(path_value, "NUMBER_TYPE_MIN",
                               f"Value should be greater than or equal to {low}.")
            if high is not None and value > high:
                raise _invalid(path_value, "NUMBER_TYPE_MAX",
                               f"Value should be less than or equal to {high}.")
            self._choice(spec, value, path_value)
        elif option_type == BOOLEAN:
            if not isinstance(value, bool):
                raise _invalid(path_value, "BOOLEAN_TYPE_COERCE", "Value is not bool.")
        elif option_type in (USER, CHANNEL, ROLE, MENTIONABLE):
            target = parse_snowflake(value) if isinstance(value, str) else None
            if target is None:
                raise _invalid(path_value, "NUMBER_TYPE_COERCE", "Value is not snowflake.")
            kind = {USER: "user", CHANNEL: "channel", ROLE: "role",
                    MENTIONABLE: "mentionable"}[option_type]
            types = spec.get("channel_types") if option_type == CHANNEL else None
            self.references.append(Reference(kind, target, path_value,
                                             tuple(types) if types else None))
            value = str(target)
        else:  # ATTACHMENT (no uploads through interactions here), or unknown types
            raise _invalid(path_value, "APPLICATION_COMMAND_OPTION_TYPE_UNSUPPORTED",
                           f"Option type {option_type} is not supported.")
        out["value"] = value
        return out

    @staticmethod
    def _choice(spec: dict[str, Any], value: Any, path: str) -> None:
        choices = spec.get("choices")
        if choices and value not in [c.get("value") for c in choices]:
            raise _invalid(path, "BASE_TYPE_CHOICES", "Value is not one of the choices.")


def _text_problem(path: str, value: Any, low: int, high: int) -> FieldError | None:
    if not isinstance(value, str):
        return FieldError(path, "BASE_TYPE_STRING", "Could not interpret the value as string.")
    if not low <= len(value) <= high:
        return FieldError(path, "BASE_TYPE_BAD_LENGTH",
                          f"Must be between {low} and {high} in length.")
    problem = unstorable(value)
    return FieldError(path, "STRING_TYPE_INVALID", problem) if problem else None


def command_usable_in(command: dict[str, Any], guild_id: int | None) -> bool:
    """Whether ``command`` can be invoked in that guild (None: in a DM with the bot): a
    guild's command only there, a global one anywhere its ``contexts`` allow (without
    them: in guilds, and in DMs unless ``dm_permission`` is false)."""
    scope = command.get("guild_id")
    if guild_id is None:
        if scope is not None:
            return False
        contexts = command.get("contexts")
        if contexts is not None:
            return BOT_DM in contexts
        return command.get("dm_permission") is not False
    if scope not in (None, str(guild_id)):
        return False
    contexts = command.get("contexts")
    return contexts is None or GUILD in contexts


def command_permission_refusal(command: dict[str, Any], member_permissions: int,
                               administrator: bool) -> Refusal | None:
    """``default_member_permissions``: the member needs every bit of it (``"0"``: only
    administrators); None or absent: everyone may."""
    required = command.get("default_member_permissions")
    if required is None or administrator:
        return None
    try:
        bits = int(required)
    except (TypeError, ValueError):
        return None
    if bits and member_permissions & bits == bits:
        return None
    return Refusal(403, 50013, "Missing Permissions")


# -- objects --------------------------------------------------------------------------------


def interaction_object(*, interaction_id: int, application_id: int, interaction_type: int,
                       token: str, data: dict[str, Any], guild_id: int | None,
                       channel: dict[str, Any], member: dict[str, Any] | None = None,
                       user: dict[str, Any] | None = None, app_permissions: int,
                       message: dict[str, Any] | None = None, locale: str = "en-US",
                       guild_locale: str = "en-US") -> dict[str, Any]:
    """INTERACTION_CREATE's payload: in a guild with the invoker's ``member`` (its
    ``user`` and ``permissions`` inside), in a DM with the bot (context BOT_DM) with
    the invoker's ``user``; ``channel`` partial. Every field discord.py, hikari and
    discord.js read is there (``attachment_size_limit``, ``context``,
    ``authorizing_integration_owners``, ``entitlements``...)."""
    out: dict[str, Any] = {
        "id": str(interaction_id),
        "application_id": str(application_id),
        "type": interaction_type,
        "data": data,
        "channel": channel,
        "channel_id": channel["id"],
        "token": token,
        "version": 1,
        "app_permissions": str(app_permissions),
        "locale": locale,
        "entitlements": [],
        "entitlement_sku_ids": [],
        # the application's install in the guild; "0" in a DM with its bot
        "authorizing_integration_owners": {"0": str(guild_id or 0)},
        "context": GUILD if guild_id is not None else BOT_DM,
        "attachment_size_limit": ATTACHMENT_SIZE_LIMIT,
    }
    if guild_id is not None:
        out.update(guild_id=str(guild_id), guild_locale=guild_locale, member=member,
                   guild={"id": str(guild_id), "locale": guild_locale, "features": []})
    else:
        out["user"] = user
    if message is not None:
        out["message"] = message
    return out


def interaction_metadata(*, interaction_id: int, interaction_type: int, user: dict[str, Any],
                         name: str | None, command_type: int | None,
                         guild_id: int | None, message_id: int | None = None,
                         ) -> dict[str, Any]:
    """A response message's ``interaction_metadata`` (and the same facts in the legacy
    ``interaction`` field, which libraries still read)."""
    meta: dict[str, Any] = {
        "id": str(interaction_id),
        "type": interaction_type,
        "user": user,
        "authorizing_integration_owners": {"0": str(guild_id or 0)},
    }
    if interaction_type == APPLICATION_COMMAND and name is not None:
        meta["name"] = name
        meta["command_type"] = command_type or CHAT_INPUT
    if interaction_type == MESSAGE_COMPONENT and message_id is not None:
        meta["interacted_message_id"] = str(message_id)
    return meta


def response_message_type(interaction_type: int, command_type: int | None) -> int:
    """The type of a response message: 20 for a chat input command's, 23 for a context
    menu command's, 0 (DEFAULT) for a component's or a modal's."""
    if interaction_type == APPLICATION_COMMAND:
        return CHAT_INPUT_COMMAND_MESSAGE if (command_type or CHAT_INPUT) == CHAT_INPUT \
            else CONTEXT_MENU_COMMAND_MESSAGE
    return 0
