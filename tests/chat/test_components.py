"""chat.components: Discord's limits on action rows, buttons, selects and modals, and
what a user's click or modal submission may carry."""

from __future__ import annotations

import copy

import pytest

from chat import components as c


def button(custom_id: str = "ok", **extra) -> dict:
    return {"type": 2, "style": 1, "label": "OK", "custom_id": custom_id, **extra}


def row(*children: dict) -> dict:
    return {"type": 1, "components": list(children)}


def select(custom_id: str = "pick", n: int = 3, **extra) -> dict:
    return {"type": 3, "custom_id": custom_id,
            "options": [{"label": f"L{i}", "value": f"v{i}"} for i in range(n)], **extra}


def field_of(components) -> str:
    with pytest.raises(c.InvalidComponents) as caught:
        c.check_message_components(components)
    return caught.value.problem.field


def test_valid_message_components_are_cleaned() -> None:
    rows = [row(button("a", bogus=1), button("b", style=4, disabled=True),
                {"type": 2, "style": 5, "label": "docs", "url": "https://example.com"}),
            row(select(min_values=1, max_values=2)),
            row({"type": 5, "custom_id": "who", "default_values": [{"id": "1", "type": "user"}]}),
            row({"type": 8, "custom_id": "where", "channel_types": [0, 2]})]
    out = c.check_message_components(rows)
    assert out[0]["components"][0] == {"type": 2, "style": 1, "custom_id": "a", "label": "OK",
                                       "id": 2}  # numbered: the row is 1
    assert out[0]["components"][2]["url"] == "https://example.com"
    assert out[1]["components"][0]["max_values"] == 2
    assert out[3]["components"][0]["channel_types"] == [0, 2]
    assert c.check_message_components(None) == []
    assert c.check_message_components([]) == []


@pytest.mark.parametrize(("components", "field"), [
    ([row(button(str(i))) for i in range(6)], "components"),  # 6 rows
    ([row(*[button(str(i)) for i in range(6)])], "components.0.components"),  # 6 buttons
    ([row()], "components.0.components"),
    ([button()], "components.0.type"),  # a button at the top level
    ([row(button(), select())], "components.0.components"),  # a select takes the row
    ([row(button("x" * 101))], "components.0.components.0.custom_id"),
    ([row(button(""))], "components.0.components.0.custom_id"),
    ([row(button("a"), button("a"))], "components.0.components.1.custom_id"),
    ([row(button("a")), row(select("a"))], "components.1.components.0.custom_id"),
    ([row(button(style=0))], "components.0.components.0.style"),
    ([row(button(style=7))], "components.0.components.0.style"),
    ([row(button(label="x" * 81))], "components.0.components.0.label"),
    ([row({"type": 2, "style": 1, "custom_id": "a"})], "components.0.components.0"),
    ([row({"type": 2, "style": 5, "label": "l"})], "components.0.components.0.url"),
    ([row({"type": 2, "style": 5, "label": "l", "url": "ftp://x"})],
     "components.0.components.0.url"),
    ([row({"type": 2, "style": 5, "label": "l", "url": "https://x", "custom_id": "a"})],
     "components.0.components.0.custom_id"),
    ([row(button(url="https://x"))], "components.0.components.0.url"),
    ([row(select(n=26))], "components.0.components.0.options"),
    ([row(select(n=0))], "components.0.components.0.options"),
    ([row(select(max_values=4))], "components.0.components.0.max_values"),  # 3 options
    ([row(select(min_values=3, max_values=2))], "components.0.components.0.min_values"),
    ([row(select(max_values=26, n=25))], "components.0.components.0.max_values"),
    ([row({**select(), "options": [{"label": "a", "value": "v"}, {"label": "b", "value": "v"}]})],
     "components.0.components.0.options.1.value"),
    ([row({**select(), "options": [{"label": "a" * 101, "value": "v"}]})],
     "components.0.components.0.options.0.label"),
    ([row({"type": 4, "custom_id": "t", "style": 1, "label": "l"})],
     "components.0.components.0.type"),  # text inputs are for modals
    ([row({"type": 6, "custom_id": "r", "default_values": [{"id": "1", "type": "user"}]})],
     "components.0.components.0.default_values.0.type"),
    ("rows", "components"),
])
def test_limits_name_their_field(components, field: str) -> None:
    assert field_of(components) == field


MODAL = {"custom_id": "feedback", "title": "Feedback", "components": [
    row({"type": 4, "custom_id": "name", "style": 1, "label": "Name", "max_length": 10}),
    {"type": 18, "label": "Why", "component": {"type": 4, "custom_id": "why", "style": 2,
                                               "required": False}},
    {"type": 18, "label": "Colour", "component": select("colour")},
]}


def test_modal_checked_and_submission_answered_in_its_layout() -> None:
    modal = c.check_modal(copy.deepcopy(MODAL))
    assert modal["components"][0]["components"][0]["required"] is True
    submitted = {"custom_id": "feedback", "components": [
        row({"type": 4, "custom_id": "name", "value": "alice"}),
        {"type": 18, "component": {"type": 3, "custom_id": "colour", "values": ["v1"]}}]}
    out = c.check_submission(modal, submitted)
    assert out == [
        {"type": 1, "id": 1, "components": [
            {"type": 4, "id": 2, "custom_id": "name", "value": "alice"}]},
        {"type": 18, "id": 3, "component": {"type": 4, "id": 4, "custom_id": "why", "value": ""}},
        {"type": 18, "id": 5, "component": {"type": 3, "id": 6, "custom_id": "colour",
                                            "values": ["v1"]}},
    ]


@pytest.mark.parametrize(("change", "field"), [
    (lambda m: m.update(title="t" * 46), "data.title"),
    (lambda m: m.update(custom_id=""), "data.custom_id"),
    (lambda m: m.update(components=[]), "data.components"),
    (lambda m: m.update(components=[row(button())] * 6), "data.components"),
    (lambda m: m.update(components=[row(button())]), "data.components.0.components.0.type"),
    (lambda m: m["components"][0]["components"][0].update(style=3),
     "data.components.0.components.0.style"),
    (lambda m: m["components"][0]["components"][0].update(max_length=4001),
     "data.components.0.components.0.max_length"),
    (lambda m: m["components"][0]["components"][0].update(min_length=11),
     "data.components.0.components.0.min_length"),
    (lambda m: m["components"][0]["components"][0].pop("label"),
     "data.components.0.components.0.label"),
    (lambda m: m["components"][1].update(label="l" * 46), "data.components.1.label"),
    (lambda m: m["components"][1]["component"].update(custom_id="name"),
     "data.components.1.component.custom_id"),
])
def test_modal_limits(change, field: str) -> None:
    modal = copy.deepcopy(MODAL)
    change(modal)
    with pytest.raises(c.InvalidComponents) as caught:
        c.check_modal(modal)
    assert caught.value.problem.field == field


@pytest.mark.parametrize(("submitted", "field"), [
    ({"custom_id": "other", "components": []}, "data.custom_id"),
    ({"custom_id": "feedback", "components": []}, "data.components"),  # name is required
    ({"custom_id": "feedback", "components": [
        row({"type": 4, "custom_id": "name", "value": "x" * 11})]},
     "data.components.0.value"),
    ({"custom_id": "feedback", "components": [
        row({"type": 4, "custom_id": "name", "value": "ok"}),
        {"type": 18, "component": {"type": 3, "custom_id": "colour", "values": ["zz"]}}]},
     "data.values.0"),
])
def test_submission_checked_against_the_modal(submitted: dict, field: str) -> None:
    modal = c.check_modal(copy.deepcopy(MODAL))
    with pytest.raises(c.InvalidComponents) as caught:
        c.check_submission(modal, submitted)
    assert caught.value.problem.field == field


def test_clicks() -> None:
    rows = c.check_message_components([
        row(button("go"), button("off", disabled=True)),
        row(select("pick", max_values=2)),
        row({"type": 5, "custom_id": "who", "max_values": 2})])
    component, values = c.check_click(rows, {"custom_id": "go", "component_type": 2})
    assert component["custom_id"] == "go" and values == []
    _, values = c.check_click(rows, {"custom_id": "pick", "component_type": 3,
                                     "values": ["v0", "v2"]})
    assert values == ["v0", "v2"]
    _, values = c.check_click(rows, {"custom_id": "who", "component_type": 5, "values": ["42"]})
    assert values == ["42"]

    def refused(data: dict) -> str:
        with pytest.raises(c.InvalidComponents) as caught:
            c.check_click(rows, data)
        return caught.value.problem.field

    assert refused({"custom_id": "nope", "component_type": 2}) == "data.custom_id"
    assert refused({"custom_id": "off", "component_type": 2}) == "data.custom_id"
    assert refused({"custom_id": "go", "component_type": 3}) == "data.component_type"
    assert refused({"custom_id": "pick", "component_type": 3, "values": []}) == "data.values"
    assert refused({"custom_id": "pick", "component_type": 3,
                    "values": ["v0", "v1", "v2"]}) == "data.values"
    assert refused({"custom_id": "pick", "component_type": 3, "values": ["v9"]}) \
        == "data.values.0"
    assert refused({"custom_id": "pick", "component_type": 3, "values": ["v0", "v0"]}) \
        == "data.values.1"
    assert refused({"custom_id": "who", "component_type": 5, "values": ["bob"]}) \
        == "data.values.0"


def test_components_are_numbered_as_discord_does() -> None:
    """Every component gets an ``id`` (hikari requires it): the bot's own, unique, else
    the next unused number in reading order."""
    out = c.check_message_components([row(button("a"), button("b", id=2)), row(select())])
    assert [out[0]["id"], *(b["id"] for b in out[0]["components"])] == [1, 3, 2]
    assert [out[1]["id"], out[1]["components"][0]["id"]] == [4, 5]
    assert field_of([row(button("a", id=7), button("b", id=7))]) == "components.0.components.1.id"
    assert field_of([row(button("a", id=0))]) == "components.0.components.0.id"
    assert field_of([row(button("a", id="1"))]) == "components.0.components.0.id"
