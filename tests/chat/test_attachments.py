"""chat.attachments: header sniffing, the ``attachments`` metadata, the object."""

from __future__ import annotations

import time

import pytest

from chat.attachments import (
    MAX_FILES,
    AttachmentSpec,
    Sniffed,
    attachment_object,
    parse_attachment_specs,
    safe_filename,
    sniff,
)
from chat.validation import FieldError
from tests.chat import images


@pytest.mark.parametrize(("data", "expected"), [
    (images.png(640, 480), Sniffed("image/png", 640, 480)),
    (images.gif(3, 70000 % 65536), Sniffed("image/gif", 3, 70000 % 65536)),
    (images.jpeg(1920, 1080), Sniffed("image/jpeg", 1920, 1080)),
    (images.webp_vp8x(4000, 3000), Sniffed("image/webp", 4000, 3000)),
    (images.webp_vp8l(17, 9), Sniffed("image/webp", 17, 9)),
    (images.webp_vp8(320, 200), Sniffed("image/webp", 320, 200)),
])
def test_images_are_sized_from_their_headers(data: bytes, expected: Sniffed) -> None:
    # the name says nothing: the bytes decide
    assert sniff(data, "upload.bin") == expected


def test_a_jpeg_cut_before_its_frame_header_has_a_type_but_no_size() -> None:
    assert sniff(images.jpeg(10, 10)[:100], "x.jpg") == Sniffed("image/jpeg")


def test_other_files_are_typed_by_name_then_by_the_declared_type() -> None:
    assert sniff(b"hello", "notes.txt") == Sniffed("text/plain; charset=utf-8")
    assert sniff(b"{}", "data.json") == Sniffed("application/json")
    assert sniff(b"\x00\x01", "blob", "application/x-thing") == Sniffed("application/x-thing")
    # every library declares octet-stream: that says nothing
    assert sniff(b"\x00\x01", "blob", "application/octet-stream") == Sniffed(None)
    # a PNG named .txt is a PNG
    assert sniff(images.png(1, 1), "a.txt").content_type == "image/png"


def test_filenames_are_made_url_safe() -> None:
    assert safe_filename("hello world.png") == "hello_world.png"
    assert safe_filename("../../etc/passwd") == "passwd"
    assert safe_filename("C:\\x\\résumé.pdf") == "r_sum_.pdf"
    assert safe_filename("...") == "unknown"
    assert safe_filename("SPOILER_cat.gif") == "SPOILER_cat.gif"


def test_specs_follow_the_metadata_then_undescribed_files() -> None:
    specs = parse_attachment_specs(
        [{"id": 1, "filename": "b.txt", "description": "alt"}, {"id": "0"}], {0, 1, 2})
    assert specs == [AttachmentSpec(1, None, "b.txt", "alt"), AttachmentSpec(0),
                     AttachmentSpec(2)]
    assert parse_attachment_specs(None, set()) == []


@pytest.mark.parametrize(("raw", "field", "code"), [
    ({"id": 0}, "attachments", "BASE_TYPE_ARRAY"),
    (["x"], "attachments.0", "DICT_TYPE_CONVERT"),
    ([{"id": -1}], "attachments.0.id", "NUMBER_TYPE_COERCE"),
    ([{"id": True}], "attachments.0.id", "NUMBER_TYPE_COERCE"),
    ([{"id": 5}], "attachments.0.id", "ATTACHMENT_NOT_FOUND"),
    ([{"id": 0}, {"id": 0}], "attachments.1.id", "ATTACHMENT_ID_DUPLICATE"),
    ([{"id": 0, "description": "d" * 1025}], "attachments.0.description",
     "BASE_TYPE_BAD_LENGTH"),
    ([{"id": 0, "filename": 7}], "attachments.0.filename", "BASE_TYPE_STRING"),
])
def test_bad_metadata_names_its_field(raw: object, field: str, code: str) -> None:
    problem = parse_attachment_specs(raw, {0})
    assert isinstance(problem, FieldError)
    assert (problem.field, problem.code) == (field, code)


def test_an_edit_keeps_existing_attachments_by_id() -> None:
    specs = parse_attachment_specs([{"id": "123456789012345678"}, {"id": 0}], {0},
                                   editing=True, existing={123456789012345678})
    assert specs == [AttachmentSpec(None, 123456789012345678), AttachmentSpec(0)]
    # a send cannot name an existing attachment
    assert isinstance(parse_attachment_specs([{"id": "123456789012345678"}], set(),
                                             existing={123456789012345678}), FieldError)


def test_at_most_ten_files() -> None:
    problem = parse_attachment_specs([], set(range(MAX_FILES + 1)))
    assert isinstance(problem, FieldError) and problem.code == "BASE_TYPE_MAX_LENGTH"
    assert len(parse_attachment_specs([], set(range(MAX_FILES)))) == MAX_FILES  # type: ignore[arg-type]


def test_the_object_has_what_the_libraries_read() -> None:
    obj = attachment_object(attachment_id=42, channel_id=7, filename="a.png", size=10,
                            sniffed=Sniffed("image/png", 2, 3), origin="http://h:1/",
                            description="alt")
    assert obj == {"id": "42", "filename": "a.png", "size": 10,
                   "url": "http://h:1/attachments/7/42/a.png",
                   "proxy_url": "http://h:1/attachments/7/42/a.png",
                   "content_type": "image/png", "width": 2, "height": 3,
                   "description": "alt"}
    plain = attachment_object(attachment_id=1, channel_id=2, filename="f", size=0,
                              sniffed=Sniffed(None), origin="http://h")
    assert "content_type" not in plain and "width" not in plain


def test_a_crafted_jpeg_costs_a_bounded_scan() -> None:
    # ten million fill bytes, then a frame header: not followed (the scan stops early)
    crafted = b"\xff\xd8" + b"\xff" * 10_000_000 + images.jpeg(5, 5)[2:]
    started = time.perf_counter()
    assert sniff(crafted, "x.jpg") == Sniffed("image/jpeg")
    assert time.perf_counter() - started < 0.05
