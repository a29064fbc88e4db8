"""chat.embeds: Discord's embed limits, each answered with its field path."""

from __future__ import annotations

import pytest

from chat.embeds import MAX_TOTAL, check_embeds, embed_size
from chat.validation import FieldError


def problem_of(value: object) -> FieldError:
    embeds, problem = check_embeds(value)
    assert embeds is None and problem is not None
    return problem


def test_null_is_no_embeds_and_a_full_embed_is_kept_trimmed_as_rich() -> None:
    assert check_embeds(None) == ([], None)
    embed = {
        "type": "article", "title": "  T  ", "description": "D", "url": "https://e.x/a",
        "timestamp": "2026-12-07T02:00:00Z", "color": 0xFF00AA,
        "footer": {"text": "F", "icon_url": "https://e.x/f.png", "proxy_icon_url": "x"},
        "image": {"url": "attachment://a.png", "height": 5, "width": 7},
        "thumbnail": {"url": "https://e.x/t.png"},
        "author": {"name": "A", "url": "https://e.x", "icon_url": "https://e.x/i.png"},
        "fields": [{"name": "n", "value": "v", "inline": True}, {"name": "m", "value": "w"}],
        "provider": {"name": "p"}, "video": {"url": "https://e.x/v"}, "unknown": 1,
    }
    embeds, problem = check_embeds([embed])
    assert problem is None
    assert embeds == [{
        "type": "rich", "title": "T", "description": "D", "url": "https://e.x/a",
        "timestamp": "2026-12-07T02:00:00+00:00", "color": 0xFF00AA,
        "footer": {"text": "F", "icon_url": "https://e.x/f.png"},
        "image": {"url": "attachment://a.png"},
        "thumbnail": {"url": "https://e.x/t.png"},
        "author": {"name": "A", "url": "https://e.x", "icon_url": "https://e.x/i.png"},
        "fields": [{"name": "n", "value": "v", "inline": True}, {"name": "m", "value": "w"}],
    }]


@pytest.mark.parametrize(("key", "limit"), [("title", 256), ("description", 4096)])
def test_text_limits_are_inclusive_and_count_trimmed(key: str, limit: int) -> None:
    embeds, problem = check_embeds([{key: " " + "x" * limit + " "}])
    assert problem is None and embeds is not None and len(embeds[0][key]) == limit
    problem = problem_of([{}, {key: "x" * (limit + 1)}])
    assert (problem.field, problem.code) == (f"embeds.1.{key}", "BASE_TYPE_MAX_LENGTH")
    assert problem.message == f"Must be {limit} or fewer in length."


@pytest.mark.parametrize(("embed", "path"), [
    ({"footer": {"text": "x" * 2049}}, "embeds.0.footer.text"),
    ({"author": {"name": "x" * 257}}, "embeds.0.author.name"),
    ({"fields": [{"name": "a", "value": "b"}, {"name": "x" * 257, "value": "v"}]},
     "embeds.0.fields.1.name"),
    ({"fields": [{"name": "a", "value": "x" * 1025}]}, "embeds.0.fields.0.value"),
])
def test_nested_limits_name_their_path(embed: dict, path: str) -> None:
    problem = problem_of([embed])
    assert (problem.field, problem.code) == (path, "BASE_TYPE_MAX_LENGTH")
    assert problem.tree() == _nest(path, problem)


def _nest(path: str, problem: FieldError) -> dict:
    tree: dict = {"_errors": [{"code": problem.code, "message": problem.message}]}
    for part in reversed(path.split(".")):
        tree = {part: tree}
    return tree


def test_ten_embeds_and_twenty_five_fields_at_most() -> None:
    assert check_embeds([{"title": "t"}] * 10)[1] is None
    problem = problem_of([{"title": "t"}] * 11)
    assert (problem.field, problem.code) == ("embeds", "BASE_TYPE_MAX_LENGTH")
    fields = [{"name": "n", "value": "v"}] * 25
    assert check_embeds([{"fields": fields}])[1] is None
    problem = problem_of([{"fields": [*fields, {"name": "n", "value": "v"}]}])
    assert (problem.field, problem.code) == ("embeds.0.fields", "BASE_TYPE_MAX_LENGTH")


def test_six_thousand_characters_across_all_embeds() -> None:
    # 4 x 1500 = 6000 exactly, then one character more
    exact = [{"description": "x" * 1500} for _ in range(4)]
    embeds, problem = check_embeds(exact)
    assert problem is None and embeds is not None
    assert sum(embed_size(e) for e in embeds) == MAX_TOTAL
    over = [*exact[:3], {"description": "x" * 1500, "title": "y"}]
    problem = problem_of(over)
    assert (problem.field, problem.code) == ("embeds", "MAX_EMBED_SIZE_EXCEEDED")
    assert problem.message == "Embed size exceeds maximum size of 6000"
    # every counted field counts: title, description, field names and values, footer, author
    counted = {"title": "a" * 256, "description": "b" * 4096,
               "fields": [{"name": "c" * 256, "value": "d" * 1024}],
               "footer": {"text": "e" * 300}, "author": {"name": "f" * 69}}
    assert embed_size(counted) == 6001
    assert problem_of([counted]).code == "MAX_EMBED_SIZE_EXCEEDED"


@pytest.mark.parametrize(("value", "path", "code"), [
    ("nope", "embeds", "LIST_TYPE_CONVERT"),
    ([1], "embeds.0", "DICT_TYPE_CONVERT"),
    ([{"title": 5}], "embeds.0.title", "BASE_TYPE_STRING"),
    ([{"title": "a\x00b"}], "embeds.0.title", "STRING_TYPE_INVALID"),
    ([{"color": "red"}], "embeds.0.color", "NUMBER_TYPE_COERCE"),
    ([{"color": True}], "embeds.0.color", "NUMBER_TYPE_COERCE"),
    ([{"color": 0x1000000}], "embeds.0.color", "NUMBER_TYPE_MAX"),
    ([{"color": -1}], "embeds.0.color", "NUMBER_TYPE_MIN"),
    ([{"timestamp": "yesterday"}], "embeds.0.timestamp", "DATE_TIME_TYPE_PARSE"),
    ([{"url": "ftp://x/y"}], "embeds.0.url", "URL_TYPE_INVALID_SCHEME"),
    ([{"url": "attachment://a.png"}], "embeds.0.url", "URL_TYPE_INVALID_SCHEME"),
    ([{"url": "not a url"}], "embeds.0.url", "URL_TYPE_INVALID_URL"),
    ([{"image": {}}], "embeds.0.image.url", "BASE_TYPE_REQUIRED"),
    ([{"footer": {"text": "   "}}], "embeds.0.footer.text", "BASE_TYPE_REQUIRED"),
    ([{"author": {"url": "https://x"}}], "embeds.0.author.name", "BASE_TYPE_REQUIRED"),
    ([{"fields": [{"name": "n"}]}], "embeds.0.fields.0.value", "BASE_TYPE_REQUIRED"),
    ([{"fields": [{"name": "n", "value": "v", "inline": "yes"}]}],
     "embeds.0.fields.0.inline", "BASE_TYPE_BOOLEAN"),
    ([{"fields": {"name": "n"}}], "embeds.0.fields", "LIST_TYPE_CONVERT"),
])
def test_bad_values_name_their_field(value: object, path: str, code: str) -> None:
    problem = problem_of(value)
    assert (problem.field, problem.code) == (path, code)


def test_a_timestamp_without_offset_is_utc_and_offsets_become_utc() -> None:
    embeds, _ = check_embeds([{"timestamp": "2026-12-07T03:00:00"},
                              {"timestamp": "2026-12-07T03:00:00+01:00"}])
    assert embeds is not None
    assert [e["timestamp"] for e in embeds] == ["2026-12-07T03:00:00+00:00",
                                                "2026-12-07T02:00:00+00:00"]
