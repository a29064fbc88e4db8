"""A message body, as a client sends it, made into the message to store: the one place
that checks ``content``, ``embeds``, ``allowed_mentions``, ``message_reference``,
``flags`` and ``tts`` together, for every path that creates or edits a message (REST
posts and edits, webhook executes, interaction responses and follow-ups).

Use::

    composed = await compose(body, ctx=ComposeContext(channel_id, guild_id, author_id,
                                                      permissions), storage=storage)
    PostMessage(..., content=composed.content, tts=composed.tts, type=composed.type,
                fields=composed.fields)

    changes = await compose_edit(body, ctx=ctx, storage=storage, message=stored)
    MessageEdit.now(channel_id, message_id, **changes)   # via ChangeMessage

Both raise ``ComposeError``: ``InvalidBody`` (its ``problem``, a ``FieldError``, is
answered by ``gateway.rest.errors.invalid_form``: 400 50035 with Discord's field path,
or 50006 for an empty message) or ``ComposeRefused`` (Discord's status and JSON code,
e.g. 403 160002: a reply without READ_MESSAGE_HISTORY);
``gateway.rest.errors.compose_failure`` turns either into the REST answer. ``nonce`` and
``enforce_nonce`` are the REST post's own, files the attachments' (``files=True``).

``fields`` holds ``PostMessage.fields``: ``embeds``, ``flags``, ``mentions`` (user
ids), ``mention_roles``, ``mention_everyone`` and ``extra``: the rendered ``mentions``
(user objects, each with its ``member`` in a guild, which the message object shows in
place of the ids), and for a reply ``message_reference`` and ``referenced_message``.
A caller adds its own keys to ``fields["extra"]`` (``webhook_id``,
``interaction_metadata``...) and ``fields["attachments"]``. The mentioned users are
stored as they were when the message was sent, as is the message replied to: a read
needs no lookup per message, and the MESSAGE_CONTENT rule finds who is mentioned in
the payload itself. REST reads and edits show the replied-to message as it is now
instead (``gateway.rest.api.Api.referenced_now``: edited, or null once deleted).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from chat.embeds import check_embeds
from chat.mentions import PARSE_ALL, AllowedMentions, check_allowed_mentions, pinged, written
from chat.objects import member_object, message_object, user_object
from chat.permissions import EMBED_LINKS, READ_MESSAGE_HISTORY, SEND_TTS_MESSAGES
from chat.replies import (
    CANNOT_REPLY_WITHOUT_HISTORY,
    REPLY,
    ReplyTo,
    check_reference,
    check_replyable,
    reference_object,
    referenced_snapshot,
    unknown_message,
)
from chat.validation import MAX_CONTENT, FieldError, check_content
from storage.model import Message, User

if TYPE_CHECKING:
    from storage.base import Storage

# Message flags (message.mdx, "Message Flags")
SUPPRESS_EMBEDS = 1 << 2
EPHEMERAL = 1 << 6
SUPPRESS_NOTIFICATIONS = 1 << 12
#: what a client may set when it sends (IS_VOICE_MESSAGE and IS_COMPONENTS_V2 are
#: Discord's too, but nothing here builds voice messages or components v2)
CREATE_FLAGS = SUPPRESS_EMBEDS | SUPPRESS_NOTIFICATIONS
#: what an edit may change (the rest of a message's flags stay as they are)
EDIT_FLAGS = SUPPRESS_EMBEDS
MISSING_PERMISSIONS = 50013  # Discord's JSON error code
MAX_FLAGS = (1 << 53) - 1


@dataclass(frozen=True, slots=True)
class ComposeContext:
    """Where a message is written and by whom.

    ``permissions``: the author's in the channel (MENTION_EVERYONE for @everyone,
    @here and roles that are not mentionable; READ_MESSAGE_HISTORY to reply;
    SEND_TTS_MESSAGES for ``tts``); ``default_parse``: what is pinged without
    ``allowed_mentions`` (``chat.mentions.PARSE_USERS`` for webhooks and
    interactions); ``allowed_flags``: the flags this path lets a client set (an
    interaction adds EPHEMERAL); ``needs_embed_links``: embeds need EMBED_LINKS, as a
    user's or bot's own message does on Discord (webhooks and interaction responses do
    not): without it an embed-only message is 403 50013 and embeds beside content or
    files are dropped.
    """

    channel_id: int
    guild_id: int | None
    author_id: int
    permissions: int
    default_parse: frozenset[str] = PARSE_ALL
    allowed_flags: int = CREATE_FLAGS
    needs_embed_links: bool = False


class ComposeError(Exception):
    """Why a body was not made into a message (``InvalidBody`` or ``ComposeRefused``)."""


class InvalidBody(ComposeError):
    """The body's form: ``problem`` is the field and Discord's errors-tree code (400
    50035, or 50006 for an empty message: ``gateway.rest.errors.invalid_form``)."""

    def __init__(self, problem: FieldError) -> None:
        super().__init__(f"{problem.field}: {problem.message}")
        self.problem = problem


class ComposeRefused(ComposeError):
    """Refused for a reason that is not the body's form: Discord's HTTP ``status`` and
    JSON ``code``."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass(slots=True)
class Composed:
    """A message ready for ``PostMessage`` (see the module docstring)."""

    content: str
    tts: bool
    type: int
    fields: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Draft:
    """A body whose form is checked (``check_body``); nothing looked up yet."""

    content: str
    tts: bool
    flags: int
    embeds: list[dict[str, Any]]
    allowed: AllowedMentions | None
    reply: ReplyTo | None


def check_body(body: dict[str, Any], *, ctx: ComposeContext, files: bool = False) -> Draft:
    """The form of a message body to create (pure); ``files``: files come with it, so
    it may have no content nor embeds. Raises ``InvalidBody``."""
    embeds, problem = check_embeds(body.get("embeds"))
    if problem is not None:
        raise InvalidBody(problem)
    assert embeds is not None
    content = _content(body.get("content"), required=not (embeds or files))
    tts = _bool(body, "tts")
    flags = _flags(body.get("flags")) & ctx.allowed_flags
    allowed, problem = check_allowed_mentions(body.get("allowed_mentions"))
    if problem is not None:
        raise InvalidBody(problem)
    reply, problem = check_reference(body.get("message_reference"),
                                     channel_id=ctx.channel_id, guild_id=ctx.guild_id)
    if problem is not None:
        raise InvalidBody(problem)
    return Draft(content, tts, flags, embeds, allowed, reply)


async def compose(body: dict[str, Any], *, ctx: ComposeContext, storage: Storage,
                  files: bool = False) -> Composed:
    """The message ``body`` asks for, checked and resolved: ``(body, ctx, storage) ->
    Composed``; raises ``InvalidBody`` or ``ComposeRefused``. ``files``: files come with
    the body (then it needs no content nor embeds; the caller sets
    ``fields["attachments"]``)."""
    draft = check_body(body, ctx=ctx, files=files)
    embeds = draft.embeds
    if embeds and not _may_embed(ctx):
        if not draft.content and not files:
            raise ComposeRefused(403, MISSING_PERMISSIONS, "Missing Permissions")
        embeds = []
    replied: Message | None = None
    if draft.reply is not None:
        if not ctx.permissions & READ_MESSAGE_HISTORY:
            raise ComposeRefused(403, CANNOT_REPLY_WITHOUT_HISTORY,
                                 "Cannot reply without permission to read message history")
        replied = await storage.get_message(ctx.channel_id, draft.reply.message_id)
        if replied is None and draft.reply.fail_if_not_exists:
            raise InvalidBody(unknown_message())
        if replied is not None:
            problem = check_replyable(replied)
            if problem is not None:
                raise InvalidBody(problem)
    mentions = await _mentions(draft.content, draft.allowed, ctx, storage, replied)
    extra: dict[str, Any] = {}
    if mentions.objects:
        extra["mentions"] = mentions.objects
    if replied is not None:
        author = mentions.users.get(replied.author_id)
        extra["message_reference"] = reference_object(replied)
        extra["referenced_message"] = referenced_snapshot(
            message_object(replied, _author_object(author, replied.author_id)))
    fields: dict[str, Any] = {
        "embeds": embeds,
        "flags": draft.flags,
        "mentions": mentions.ids,
        "mention_roles": list(mentions.roles),
        "mention_everyone": mentions.everyone,
    }
    if extra:
        fields["extra"] = extra
    tts = draft.tts and bool(ctx.permissions & SEND_TTS_MESSAGES)
    return Composed(draft.content, tts, REPLY if replied is not None else 0, fields)


async def compose_edit(body: dict[str, Any], *, ctx: ComposeContext, storage: Storage,
                       message: Message, attachments: bool | None = None) -> dict[str, Any]:
    """The changes an edit ``body`` makes to the stored ``message``, as
    ``MessageEdit.now`` keywords: ``content`` (its mentions parsed again, with the
    edit's ``allowed_mentions`` or the defaults), ``embeds`` (replaced; null clears
    them), ``flags`` (only SUPPRESS_EMBEDS changes) and ``extra`` (the rendered
    mentions). A field absent from the body is unchanged; a message left with no
    content, embeds nor attachments is 50006 (``attachments``: whether it has some after
    the edit, when the edit changes them; None: it keeps its own). Raises
    ``InvalidBody``."""
    changes: dict[str, Any] = {}
    if "embeds" in body:
        embeds, problem = check_embeds(body["embeds"])
        if problem is not None:
            raise InvalidBody(problem)
        changes["embeds"] = embeds if _may_embed(ctx) else []  # Discord ignores them
    if "content" in body:
        changes["content"] = _content(body["content"], required=False)
    if body.get("flags") is not None:
        flags = _flags(body["flags"])
        changes["flags"] = (message.flags & ~EDIT_FLAGS) | (flags & EDIT_FLAGS)
    allowed, problem = check_allowed_mentions(body.get("allowed_mentions"))
    if problem is not None:
        raise InvalidBody(problem)
    content = changes.get("content", message.content)
    embeds_after = changes.get("embeds", message.embeds)
    has_files = bool(message.attachments) if attachments is None else attachments
    if not content and not embeds_after and not has_files:
        raise InvalidBody(FieldError("content", "BASE_TYPE_REQUIRED",
                                     "Cannot send an empty message", empty=True))
    if "content" in changes:
        # the reply's ping, once made, stays (the edit re-parses the content only)
        reference = message.extra.get("message_reference") or {}
        replied_author = None
        referenced = message.extra.get("referenced_message")
        if reference and isinstance(referenced, dict):
            try:
                author_id = int(referenced["author"]["id"])
            except (KeyError, TypeError, ValueError):
                author_id = None
            if author_id in message.mentions:
                replied_author = author_id
        mentions = await _mentions(content, allowed, ctx, storage, None,
                                   replied_author=replied_author)
        extra = {k: v for k, v in message.extra.items() if k != "mentions"}
        if mentions.objects:
            extra["mentions"] = mentions.objects
        changes.update(mentions=mentions.ids, mention_roles=list(mentions.roles),
                       mention_everyone=mentions.everyone, extra=extra)
    return changes


@dataclass(slots=True)
class _Mentions:
    ids: list[int]
    objects: list[dict[str, Any]]
    roles: tuple[int, ...]
    everyone: bool
    users: dict[int, User]  # every user read (the replied message's author too)


async def _mentions(content: str, allowed: AllowedMentions | None, ctx: ComposeContext,
                    storage: Storage, replied: Message | None, *,
                    replied_author: int | None = None) -> _Mentions:
    """Who ``content`` pings, resolved: users that exist, with their members."""
    found = written(content)
    if replied is not None and replied.author_id != ctx.author_id:
        replied_author = replied.author_id
    mentionable: dict[int, bool] = {}
    if found.roles and ctx.guild_id is not None:
        mentionable = {r.id: r.mentionable for r in await storage.roles_for_guild(ctx.guild_id)
                       if r.id != ctx.guild_id}
    ping = pinged(found, allowed, default_parse=ctx.default_parse,
                  permissions=ctx.permissions, mentionable=mentionable,
                  replied_author=replied_author)
    wanted = list(ping.users)
    if replied is not None:
        wanted.append(replied.author_id)
    users = await storage.get_users(wanted) if wanted else {}
    ids = [u for u in ping.users if u in users]
    members: list[Any] = [None] * len(ids)
    if ids and ctx.guild_id is not None:
        guild_id = ctx.guild_id
        members = list(await asyncio.gather(*(storage.get_member(guild_id, u) for u in ids)))
    objects = []
    for user_id, member in zip(ids, members, strict=True):
        obj = user_object(users[user_id])
        if member is not None:
            obj["member"] = member_object(member)
        objects.append(obj)
    return _Mentions(ids, objects, ping.roles, ping.everyone, users)


def _may_embed(ctx: ComposeContext) -> bool:
    return not ctx.needs_embed_links or bool(ctx.permissions & EMBED_LINKS)


def _author_object(user: User | None, user_id: int) -> dict[str, Any]:
    if user is not None:
        return user_object(user)
    return {"id": str(user_id), "username": "Deleted User", "discriminator": "0",
            "global_name": None, "avatar": None}


def _content(value: Any, *, required: bool) -> str:
    """``content``: 1-2000 storable characters, or (not ``required``: embeds or files
    come with it) absent, null, empty or white space only, which is ``""``."""
    if not required and (value is None or (isinstance(value, str)
                                           and (value == "" or value.isspace()))):
        return ""
    problem = check_content(value)
    if problem is not None:
        raise InvalidBody(problem)
    assert isinstance(value, str) and len(value) <= MAX_CONTENT
    return value


def _bool(body: dict[str, Any], key: str) -> bool:
    value = body.get(key)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise InvalidBody(FieldError(key, "BASE_TYPE_BOOLEAN", "Must be either true or false."))
    return value


def _flags(value: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_FLAGS:
        raise InvalidBody(FieldError("flags", "NUMBER_TYPE_COERCE",
                                     f"Value \"{str(value)[:32]}\" is not int."))
    return value
