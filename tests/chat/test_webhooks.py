"""chat.webhooks: names, avatars, tokens and the objects a webhook shows."""

from __future__ import annotations

import base64

import pytest

from chat.webhooks import (
    MAX_NAME,
    Webhook,
    avatar_hash,
    check_avatar_url,
    check_name,
    new_token,
    webhook_author,
    webhook_message_extra,
    webhook_object,
)
from storage.codec import token_hash

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n fake but non-empty").decode()


def hook(**kw: object) -> Webhook:
    token, digest = new_token()
    values = dict(id=1 << 40, guild_id=7, channel_id=8, name="ci", token_hash=digest,
                  user_id=9, application_id=9)
    values.update(kw)
    return Webhook(**values)  # type: ignore[arg-type]


def test_tokens_are_68_url_safe_chars_stored_only_as_their_hash() -> None:
    token, digest = new_token()
    assert len(token) == 68 and token.replace("-", "a").replace("_", "a").isalnum()
    assert digest == token_hash(token).hex() and token not in digest
    assert new_token()[0] != token
    webhook = hook(token_hash=digest)
    assert webhook.token_matches(token)
    assert not webhook.token_matches(token[:-1] + ("A" if token[-1] != "A" else "B"))
    assert not webhook.token_matches("")
    assert not webhook.token_matches("a/b")  # not a token's shape: no hash computed
    assert token not in repr(webhook.record())


@pytest.mark.parametrize("name", ["ci", "x" * MAX_NAME, "  padded  ", "Build bot ✓"])
def test_names_discord_accepts(name: str) -> None:
    assert check_name("name", name) is None


@pytest.mark.parametrize("name,code", [
    ("", "BASE_TYPE_BAD_LENGTH"),
    ("   ", "BASE_TYPE_BAD_LENGTH"),
    ("x" * (MAX_NAME + 1), "BASE_TYPE_BAD_LENGTH"),
    (None, "BASE_TYPE_STRING"),
    (12, "BASE_TYPE_STRING"),
    ("my Clyde", "USERNAME_INVALID_CONTAINS"),
    ("DISCORDbot", "USERNAME_INVALID_CONTAINS"),
    ("a\x00b", "STRING_TYPE_INVALID"),
    ("a\ud800b", "STRING_TYPE_INVALID"),
])
def test_names_discord_refuses(name: object, code: str) -> None:
    problem = check_name("name", name)
    assert problem is not None and problem.code == code
    assert problem.tree()["name"]["_errors"][0]["code"] == code


def test_username_override_is_optional_but_checked_when_given() -> None:
    assert check_name("username", None, required=False) is None
    problem = check_name("username", "clyde", required=False)
    assert problem is not None and problem.field == "username"


def test_avatar_image_data_is_named_by_its_hash() -> None:
    digest, problem = avatar_hash(f"data:image/png;base64,{PNG}")
    assert problem is None and digest is not None and len(digest) == 32
    assert avatar_hash(f"data:image/png;base64,{PNG}")[0] == digest
    assert avatar_hash(None) == (None, None)
    for bad in ("http://example.com/a.png", "data:text/plain;base64,aGk=",
                "data:image/png;base64,!!!", "data:image/png;base64,", 5):
        digest, problem = avatar_hash(bad)
        assert digest is None and problem is not None and problem.field == "avatar"


def test_avatar_url() -> None:
    assert check_avatar_url(None) is None
    assert check_avatar_url("https://example.com/ci.png") is None
    for bad in ("ftp://x", "not a url", "https://a b", "https://" + "a" * 2048, 3):
        problem = check_avatar_url(bad)
        assert problem is not None and problem.field == "avatar_url"


def test_webhook_object_shows_the_token_only_when_given_and_the_creator_to_managers() -> None:
    webhook = hook(avatar="a" * 32)
    obj = webhook_object(webhook)
    assert obj == {"id": str(webhook.id), "type": 1, "guild_id": "7", "channel_id": "8",
                   "name": "ci", "avatar": "a" * 32, "application_id": "9"}
    creator = {"id": "9", "username": "bot"}
    full = webhook_object(webhook, creator=creator, token="t" * 68)
    assert full["user"] == creator and full["token"] == "t" * 68
    assert webhook_object(hook(application_id=None))["application_id"] is None


def test_record_round_trip() -> None:
    webhook = hook(avatar="b" * 32)
    assert Webhook.from_record(webhook.record()) == webhook


def test_message_author_is_the_webhook_under_the_name_asked_for() -> None:
    webhook = hook()
    author = webhook_author(webhook)
    assert author["id"] == str(webhook.id) and author["username"] == "ci"
    assert author["bot"] is True and author["discriminator"] == "0000"
    assert "avatar_url" not in author
    named = webhook_author(webhook, " deploy ", "https://example.com/x.png")
    assert named["username"] == "deploy"
    assert named["avatar_url"] == "https://example.com/x.png"
    extra = webhook_message_extra(webhook, named)
    assert extra == {"webhook_id": str(webhook.id), "author": named, "application_id": "9"}
    assert "application_id" not in webhook_message_extra(hook(application_id=None), author)
