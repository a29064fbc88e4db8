"""Message components and modals (Discord's "legacy" layout: action rows of buttons or
one select; text inputs in modals), checked with Discord's limits before they are
stored with a message (``Message.extra["components"]``) or shown as a modal, and a
modal's submission checked against the modal that was shown.

Each ``check_*`` answers the cleaned value (only the fields Discord defines, so what a
bot sends cannot grow a stored message with keys of its own) or raises
``InvalidComponents`` naming the field, which the REST layer answers with 50035.
Components V2 (``IS_COMPONENTS_V2``: sections, containers, ...) are not served.
"""

from __future__ import annotations

from typing import Any

from chat.validation import FieldError, check_text
from storage.snowflake import parse_snowflake

ACTION_ROW = 1
BUTTON = 2
STRING_SELECT = 3
TEXT_INPUT = 4
USER_SELECT = 5
ROLE_SELECT = 6
MENTIONABLE_SELECT = 7
CHANNEL_SELECT = 8
TEXT_DISPLAY = 10
LABEL = 18

SELECTS = (STRING_SELECT, USER_SELECT, ROLE_SELECT, MENTIONABLE_SELECT, CHANNEL_SELECT)
#: What a click on each interactive component sends as ``data.values`` items' kind.
SELECT_VALUE_KINDS = {USER_SELECT: ("user",), ROLE_SELECT: ("role",),
                      MENTIONABLE_SELECT: ("user", "role"), CHANNEL_SELECT: ("channel",)}

LINK = 5
PREMIUM = 6
MAX_ROWS = 5
MAX_BUTTONS_PER_ROW = 5
MAX_SELECT_OPTIONS = 25
MAX_SELECT_VALUES = 25
MAX_CUSTOM_ID = 100
MAX_MODAL_COMPONENTS = 5
MAX_TEXT_INPUT = 4000


class InvalidComponents(Exception):
    def __init__(self, problem: FieldError) -> None:
        super().__init__(problem.message)
        self.problem = problem


def _fail(path: str, code: str, message: str) -> InvalidComponents:
    return InvalidComponents(FieldError(path, code, message))


def _text(path: str, value: Any, *, min_len: int = 0, max_len: int,
          required: bool = True) -> str | None:
    problem = check_text(path, value, min_len=min_len, max_len=max_len, required=required)
    if problem is not None:
        raise InvalidComponents(problem)
    return value


def _int(path: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(path, "NUMBER_TYPE_COERCE", "Value is not int.")
    if not low <= value <= high:
        raise _fail(path, "NUMBER_TYPE_MAX" if value > high else "NUMBER_TYPE_MIN",
                    f"int value should be between {low} and {high}.")
    return value


def _bool(path: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise _fail(path, "BOOLEAN_TYPE_COERCE", "Value is not bool.")
    return value


def _list(path: str, value: Any, low: int, high: int) -> list[Any]:
    if not isinstance(value, list):
        raise _fail(path, "BASE_TYPE_ARRAY", "Could not interpret the value as a list.")
    if not low <= len(value) <= high:
        raise _fail(path, "BASE_TYPE_BAD_LENGTH", f"Must be between {low} and {high} in length.")
    return value


def _dict(path: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _fail(path, "MODEL_TYPE_CONVERT", "Only dictionaries may be used.")
    return value


def _emoji(path: str, value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    emoji = _dict(path, value)
    out: dict[str, Any] = {}
    if emoji.get("id") is not None:
        if parse_snowflake(str(emoji["id"])) is None:
            raise _fail(f"{path}.id", "NUMBER_TYPE_COERCE", "Value is not snowflake.")
        out["id"] = str(emoji["id"])
    if emoji.get("name") is not None:
        out["name"] = _text(f"{path}.name", emoji["name"], min_len=1, max_len=32)
    if not out:
        raise _fail(path, "BASE_TYPE_REQUIRED", "An emoji needs an id or a name.")
    if "animated" in emoji:
        out["animated"] = _bool(f"{path}.animated", emoji["animated"])
    return out


class _Ids:
    """The custom ids of one message or modal: unique within it."""

    def __init__(self) -> None:
        self.seen: set[str] = set()

    def take(self, path: str, value: Any) -> str:
        custom_id = _text(path, value, min_len=1, max_len=MAX_CUSTOM_ID)
        assert custom_id is not None
        if custom_id in self.seen:
            raise _fail(path, "COMPONENT_CUSTOM_ID_DUPLICATED",
                        "Component custom id cannot be duplicated")
        self.seen.add(custom_id)
        return custom_id


def _button(path: str, raw: dict[str, Any], ids: _Ids) -> dict[str, Any]:
    style = _int(f"{path}.style", raw.get("style"), 1, PREMIUM)
    out: dict[str, Any] = {"type": BUTTON, "style": style}
    if style == PREMIUM:
        sku = parse_snowflake(str(raw.get("sku_id", "")))
        if sku is None:
            raise _fail(f"{path}.sku_id", "BASE_TYPE_REQUIRED", "This field is required")
        if any(raw.get(k) is not None for k in ("custom_id", "label", "url", "emoji")):
            raise _fail(path, "BUTTON_PREMIUM_FIELDS",
                        "A premium button has only a sku_id.")
        out["sku_id"] = str(sku)
    elif style == LINK:
        if raw.get("custom_id") is not None:
            raise _fail(f"{path}.custom_id", "BUTTON_LINK_CUSTOM_ID",
                        "A link button cannot have a custom_id.")
        url = _text(f"{path}.url", raw.get("url"), min_len=1, max_len=512)
        assert url is not None
        if not url.startswith(("http://", "https://", "discord://")):
            raise _fail(f"{path}.url", "URL_TYPE_INVALID_URL", "Not a well formed URL.")
        out["url"] = url
    else:
        if raw.get("url") is not None:
            raise _fail(f"{path}.url", "BUTTON_URL_NOT_LINK",
                        "Only a link button can have a url.")
        out["custom_id"] = ids.take(f"{path}.custom_id", raw.get("custom_id"))
    if style != PREMIUM:
        label = raw.get("label")
        emoji = _emoji(f"{path}.emoji", raw.get("emoji"))
        if label is not None:
            out["label"] = _text(f"{path}.label", label, max_len=80)
        if emoji is not None:
            out["emoji"] = emoji
        if label is None and emoji is None:
            raise _fail(path, "BUTTON_LABEL_OR_EMOJI_REQUIRED",
                        "A button needs a label or an emoji.")
    if raw.get("disabled") is not None:
        out["disabled"] = _bool(f"{path}.disabled", raw["disabled"])
    return out


def _select(path: str, raw: dict[str, Any], ids: _Ids, kind: int) -> dict[str, Any]:
    out: dict[str, Any] = {"type": kind,
                           "custom_id": ids.take(f"{path}.custom_id", raw.get("custom_id"))}
    if raw.get("placeholder") is not None:
        out["placeholder"] = _text(f"{path}.placeholder", raw["placeholder"], max_len=150)
    low = _int(f"{path}.min_values", raw.get("min_values", 1), 0, MAX_SELECT_VALUES)
    high = _int(f"{path}.max_values", raw.get("max_values", 1), 1, MAX_SELECT_VALUES)
    if low > high:
        raise _fail(f"{path}.min_values", "SELECT_COMPONENT_MIN_MAX",
                    "min_values cannot be more than max_values.")
    out["min_values"], out["max_values"] = low, high
    if kind == STRING_SELECT:
        options = _list(f"{path}.options", raw.get("options"), 1, MAX_SELECT_OPTIONS)
        values: set[str] = set()
        cleaned = []
        for i, option in enumerate(options):
            here = f"{path}.options.{i}"
            option = _dict(here, option)
            entry: dict[str, Any] = {
                "label": _text(f"{here}.label", option.get("label"), min_len=1, max_len=100),
                "value": _text(f"{here}.value", option.get("value"), min_len=1, max_len=100),
            }
            if entry["value"] in values:
                raise _fail(f"{here}.value", "SELECT_COMPONENT_OPTION_VALUE_DUPLICATED",
                            "Select option values must be unique.")
            values.add(entry["value"])
            if option.get("description") is not None:
                entry["description"] = _text(f"{here}.description", option["description"],
                                             max_len=100)
            emoji = _emoji(f"{here}.emoji", option.get("emoji"))
            if emoji is not None:
                entry["emoji"] = emoji
            if option.get("default") is not None:
                entry["default"] = _bool(f"{here}.default", option["default"])
            cleaned.append(entry)
        if high > len(cleaned):
            raise _fail(f"{path}.max_values", "SELECT_COMPONENT_TOO_MANY_VALUES",
                        "max_values cannot be more than the number of options.")
        out["options"] = cleaned
    else:
        if kind == CHANNEL_SELECT and raw.get("channel_types") is not None:
            types = _list(f"{path}.channel_types", raw["channel_types"], 0, 20)
            out["channel_types"] = [_int(f"{path}.channel_types.{i}", t, 0, 20)
                                    for i, t in enumerate(types)]
        if raw.get("default_values") is not None:
            defaults = _list(f"{path}.default_values", raw["default_values"], 0, high)
            allowed = SELECT_VALUE_KINDS[kind]
            cleaned = []
            for i, value in enumerate(defaults):
                here = f"{path}.default_values.{i}"
                value = _dict(here, value)
                if value.get("type") not in allowed:
                    raise _fail(f"{here}.type", "BASE_TYPE_CHOICES",
                                f"Value must be one of {list(allowed)}.")
                if parse_snowflake(str(value.get("id", ""))) is None:
                    raise _fail(f"{here}.id", "NUMBER_TYPE_COERCE", "Value is not snowflake.")
                cleaned.append({"id": str(value["id"]), "type": value["type"]})
            out["default_values"] = cleaned
    if raw.get("disabled") is not None:
        out["disabled"] = _bool(f"{path}.disabled", raw["disabled"])
    if raw.get("required") is not None:
        out["required"] = _bool(f"{path}.required", raw["required"])
    return out


MAX_COMPONENT_ID = (1 << 31) - 1


def _children(item: dict[str, Any]) -> list[dict[str, Any]]:
    return [*item.get("components", ()), *([item["component"]] if "component" in item else ())]


def _number(items: list[dict[str, Any]], raw: list[Any], field: str) -> None:
    """Give every component its ``id``, as Discord does (libraries read it: hikari
    requires it): the one the bot gave (unique in the message or modal), else the next
    unused number counting from 1 in reading order."""
    used: set[int] = set()

    def given(item: dict[str, Any], source: Any, path: str) -> None:
        if isinstance(source, dict) and source.get("id") is not None:
            number = _int(f"{path}.id", source["id"], 1, MAX_COMPONENT_ID)
            if number in used:
                raise _fail(f"{path}.id", "COMPONENT_ID_DUPLICATED",
                            "Component ids must be unique.")
            used.add(number)
            item["id"] = number
        sources = source.get("components") if isinstance(source, dict) else None
        if isinstance(source, dict) and isinstance(source.get("component"), dict):
            given(item["component"], source["component"], f"{path}.component")
        for i, child in enumerate(item.get("components", ())):
            if isinstance(sources, list) and i < len(sources):
                given(child, sources[i], f"{path}.components.{i}")

    for i, item in enumerate(items):
        given(item, raw[i] if i < len(raw) else None, f"{field}.{i}")
    counter = 0

    def assign(item: dict[str, Any]) -> None:
        nonlocal counter
        if "id" not in item:
            counter += 1
            while counter in used:
                counter += 1
            item["id"] = counter
        for child in _children(item):
            assign(child)

    for item in items:
        assign(item)


def check_message_components(value: Any, *, field: str = "components") -> list[dict[str, Any]]:
    """A message's ``components``: up to 5 action rows, each of up to 5 buttons or one
    select menu; custom ids 1-100 characters and unique in the message."""
    if value is None:
        return []
    rows = _list(field, value, 0, MAX_ROWS)
    ids = _Ids()
    out = []
    for r, row in enumerate(rows):
        here = f"{field}.{r}"
        row = _dict(here, row)
        if row.get("type") != ACTION_ROW:
            raise _fail(f"{here}.type", "COMPONENT_LAYOUT_INVALID",
                        "A message's top-level components must be action rows.")
        children = _list(f"{here}.components", row.get("components"), 1, MAX_BUTTONS_PER_ROW)
        kinds = [c.get("type") if isinstance(c, dict) else None for c in children]
        if any(k in SELECTS for k in kinds) and len(children) > 1:
            raise _fail(f"{here}.components", "COMPONENT_LAYOUT_WIDTH_EXCEEDED",
                        "The specified component exceeds the maximum width")
        cleaned = []
        for c, child in enumerate(children):
            path = f"{here}.components.{c}"
            child = _dict(path, child)
            kind = child.get("type")
            if kind == BUTTON:
                cleaned.append(_button(path, child, ids))
            elif kind in SELECTS:
                cleaned.append(_select(path, child, ids, kind))
            else:
                raise _fail(f"{path}.type", "COMPONENT_TYPE_INVALID",
                            f"Component type {kind!r} is not allowed in a message's action row.")
        out.append({"type": ACTION_ROW, "components": cleaned})
    _number(out, rows, field)
    return out


def _text_input(path: str, raw: dict[str, Any], ids: _Ids, *, in_label: bool
                ) -> dict[str, Any]:
    out: dict[str, Any] = {"type": TEXT_INPUT,
                           "custom_id": ids.take(f"{path}.custom_id", raw.get("custom_id")),
                           "style": _int(f"{path}.style", raw.get("style"), 1, 2)}
    if not in_label:  # the deprecated form: the label on the input itself
        out["label"] = _text(f"{path}.label", raw.get("label"), min_len=1, max_len=45)
    elif raw.get("label") is not None:
        raise _fail(f"{path}.label", "TEXT_INPUT_LABEL_IN_LABEL",
                    "A text input inside a label has no label of its own.")
    low = _int(f"{path}.min_length", raw.get("min_length", 0), 0, MAX_TEXT_INPUT)
    high = _int(f"{path}.max_length", raw.get("max_length", MAX_TEXT_INPUT), 1, MAX_TEXT_INPUT)
    if low > high:
        raise _fail(f"{path}.min_length", "TEXT_INPUT_MIN_MAX",
                    "min_length cannot be more than max_length.")
    out["min_length"], out["max_length"] = low, high
    out["required"] = _bool(f"{path}.required", raw.get("required", True))
    if raw.get("value") is not None:
        out["value"] = _text(f"{path}.value", raw["value"], max_len=high)
    if raw.get("placeholder") is not None:
        out["placeholder"] = _text(f"{path}.placeholder", raw["placeholder"], max_len=100)
    return out


def check_modal(value: Any, *, field: str = "data") -> dict[str, Any]:
    """A MODAL callback's ``data``: ``custom_id`` 1-100, ``title`` 1-45, and 1-5
    components, each an action row holding one text input, a label around a text input
    or a select, or a text display."""
    modal = _dict(field, value)
    ids = _Ids()
    out: dict[str, Any] = {
        "custom_id": ids.take(f"{field}.custom_id", modal.get("custom_id")),
        "title": _text(f"{field}.title", modal.get("title"), min_len=1, max_len=45),
    }
    items = _list(f"{field}.components", modal.get("components"), 1, MAX_MODAL_COMPONENTS)
    cleaned = []
    for i, item in enumerate(items):
        here = f"{field}.components.{i}"
        item = _dict(here, item)
        kind = item.get("type")
        if kind == ACTION_ROW:
            children = _list(f"{here}.components", item.get("components"), 1, 1)
            child = _dict(f"{here}.components.0", children[0])
            if child.get("type") != TEXT_INPUT:
                raise _fail(f"{here}.components.0.type", "COMPONENT_TYPE_INVALID",
                            "A modal's action row holds one text input.")
            cleaned.append({"type": ACTION_ROW, "components": [
                _text_input(f"{here}.components.0", child, ids, in_label=False)]})
        elif kind == LABEL:
            entry: dict[str, Any] = {
                "type": LABEL,
                "label": _text(f"{here}.label", item.get("label"), min_len=1, max_len=45)}
            if item.get("description") is not None:
                entry["description"] = _text(f"{here}.description", item["description"],
                                             max_len=100)
            child = _dict(f"{here}.component", item.get("component"))
            if child.get("type") == TEXT_INPUT:
                entry["component"] = _text_input(f"{here}.component", child, ids,
                                                 in_label=True)
            elif child.get("type") in SELECTS:
                entry["component"] = _select(f"{here}.component", child, ids, child["type"])
            else:
                raise _fail(f"{here}.component.type", "COMPONENT_TYPE_INVALID",
                            "A label holds a text input or a select.")
            cleaned.append(entry)
        elif kind == TEXT_DISPLAY:
            cleaned.append({"type": TEXT_DISPLAY, "content": _text(
                f"{here}.content", item.get("content"), min_len=1, max_len=4000)})
        else:
            raise _fail(f"{here}.type", "COMPONENT_TYPE_INVALID",
                        f"Component type {kind!r} is not allowed in a modal.")
    _number(cleaned, items, f"{field}.components")
    out["components"] = cleaned
    return out


# -- what a user's client sends ----------------------------------------------------------


def find_component(components: list[dict[str, Any]], custom_id: str) -> dict[str, Any] | None:
    """The interactive component with ``custom_id`` in a message's or modal's rows."""
    for item in components:
        for child in [*item.get("components", ()), item.get("component")]:
            if isinstance(child, dict) and child.get("custom_id") == custom_id:
                return child
    return None


def check_click(components: list[dict[str, Any]], data: Any) -> tuple[dict[str, Any], list[str]]:
    """A click (``MESSAGE_COMPONENT``'s ``data``) on a message's ``components``: its
    ``custom_id`` names an enabled button or select of the message, of the
    ``component_type`` given; a select's ``values`` are between its ``min_values`` and
    ``max_values``, a string select's among its options (the ids of the others are
    resolved by the caller). Answers the component and the values."""
    data = _dict("data", data)
    custom_id = _text("data.custom_id", data.get("custom_id"), min_len=1, max_len=MAX_CUSTOM_ID)
    assert custom_id is not None
    component = find_component(components, custom_id)
    if component is None or component.get("type") not in (BUTTON, *SELECTS):
        raise _fail("data.custom_id", "COMPONENT_NOT_FOUND",
                    "The message has no such component.")
    if data.get("component_type") != component["type"]:
        raise _fail("data.component_type", "COMPONENT_TYPE_MISMATCH",
                    f"The component is of type {component['type']}.")
    if component.get("disabled"):
        raise _fail("data.custom_id", "COMPONENT_DISABLED", "The component is disabled.")
    if component["type"] == BUTTON:
        if data.get("values"):
            raise _fail("data.values", "BASE_TYPE_MAX_LENGTH", "A button has no values.")
        return component, []
    values = _list("data.values", data.get("values", []), component.get("min_values", 1),
                   component.get("max_values", 1))
    checked: list[str] = []
    for i, value in enumerate(values):
        text = _text(f"data.values.{i}", value, min_len=1, max_len=100)
        assert text is not None
        if text in checked:
            raise _fail(f"data.values.{i}", "SELECT_COMPONENT_VALUE_DUPLICATED",
                        "A value can be chosen once.")
        checked.append(text)
    if component["type"] == STRING_SELECT:
        allowed = {o["value"] for o in component.get("options", ())}
        for i, value in enumerate(checked):
            if value not in allowed:
                raise _fail(f"data.values.{i}", "BASE_TYPE_CHOICES",
                            "Value is not one of the options.")
    else:
        for i, value in enumerate(checked):
            if parse_snowflake(value) is None:
                raise _fail(f"data.values.{i}", "NUMBER_TYPE_COERCE", "Value is not snowflake.")
    return component, checked


def check_submission(modal: dict[str, Any], data: Any) -> list[dict[str, Any]]:
    """A modal's submission (``MODAL_SUBMIT``'s ``data.components``) against the modal
    shown: each text input's value within its lengths, the required ones given; answers
    the components as the bot gets them (the modal's layout, each input with its
    ``value``)."""
    data = _dict("data", data)
    if data.get("custom_id") != modal["custom_id"]:
        raise _fail("data.custom_id", "MODAL_CUSTOM_ID_MISMATCH",
                    "The modal's custom_id does not match.")
    given: dict[str, Any] = {}
    submitted = _list("data.components", data.get("components", []), 0, MAX_MODAL_COMPONENTS)
    for i, item in enumerate(submitted):
        item = _dict(f"data.components.{i}", item)
        children = item.get("components") if item.get("type") == ACTION_ROW \
            else [item.get("component")] if item.get("type") == LABEL else []
        for child in children or ():
            if isinstance(child, dict) and isinstance(child.get("custom_id"), str):
                given[child["custom_id"]] = (f"data.components.{i}", child)
    out = []
    for item in modal["components"]:
        if item["type"] == TEXT_DISPLAY:
            continue
        spec = item["components"][0] if item["type"] == ACTION_ROW else item["component"]
        path, child = given.get(spec["custom_id"], (None, None))
        if spec["type"] == TEXT_INPUT:
            value = child.get("value") if child is not None else None
            if value in (None, ""):
                if spec.get("required", True):
                    raise _fail(path or "data.components", "BASE_TYPE_REQUIRED",
                                f"{spec['custom_id']!r} is required.")
                value = ""
            else:
                _text(f"{path}.value", value, min_len=spec.get("min_length", 0),
                      max_len=spec.get("max_length", MAX_TEXT_INPUT))
            answer: dict[str, Any] = {"type": TEXT_INPUT, "id": spec.get("id"),
                                      "custom_id": spec["custom_id"], "value": value}
        else:  # a select in a label
            values = child.get("values", []) if child is not None else []
            fake = {"custom_id": spec["custom_id"], "component_type": spec["type"],
                    "values": values}
            _, values = check_click([{"components": [spec]}], fake)
            answer = {"type": spec["type"], "id": spec.get("id"), "custom_id": spec["custom_id"],
                      "values": values}
        if item["type"] == ACTION_ROW:
            out.append({"type": ACTION_ROW, "id": item.get("id"), "components": [answer]})
        else:
            out.append({"type": LABEL, "id": item.get("id"), "component": answer})
    return out
