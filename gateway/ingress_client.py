"""A small client for the internal ingress (``gateway.ingress``)::

    async with IngressClient("http://127.0.0.1:8082/ingress/v1", secret) as c:
        message = await c.post_system_message(channel_id, "maintenance at 02:00")
        await c.disconnect_session(session_id, code=4000)
        sessions = await c.broadcast(guild_id, "SERVICE_NOTICE", {"text": "hi"})

Every call sends one typed request (``gateway.ingress_messages``) and returns the
``result`` of its ``IngressOk``, or raises ``IngressRequestError`` (subclasses
``Unauthenticated``, ``BadMessage``, ``UnknownTarget``) with the server's code and
message. The current span's trace context goes along, so the gateway's spans join the
caller's trace.
"""

from __future__ import annotations

import uuid
from types import TracebackType
from typing import Any

import aiohttp

from actors.wire import MalformedEnvelope, pack, unpack
from gateway.ingress_messages import (
    BAD_MESSAGE,
    DEFAULT_CLOSE_CODE,
    UNAUTHENTICATED,
    UNKNOWN_CHANNEL,
    UNKNOWN_GUILD,
    UNKNOWN_SESSION,
    BroadcastToGuild,
    DisconnectSession,
    IngressError,
    IngressOk,
    PostSystemMessage,
)
from observability import inject_current
from storage.snowflake import parse_snowflake


class IngressRequestError(Exception):
    """The ingress answered with an error (``code`` is one of ``ingress_messages``')."""

    def __init__(self, code: str, message: str, status: int, request_id: str = "") -> None:
        super().__init__(f"{code}: {message}")
        self.code, self.message, self.status, self.request_id = code, message, status, request_id


class Unauthenticated(IngressRequestError):
    pass


class BadMessage(IngressRequestError):
    pass


class UnknownTarget(IngressRequestError):
    """Unknown channel, guild or session."""


_ERRORS = {UNAUTHENTICATED: Unauthenticated, BAD_MESSAGE: BadMessage,
           UNKNOWN_CHANNEL: UnknownTarget, UNKNOWN_GUILD: UnknownTarget,
           UNKNOWN_SESSION: UnknownTarget}


class IngressClient:
    def __init__(self, url: str, secret: str, *, timeout_s: float = 20.0) -> None:
        self.url = url
        self.secret = secret
        self.timeout_s = timeout_s
        self._http: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> IngressClient:
        self._http = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.timeout_s),
            headers={"Authorization": f"Bearer {self.secret}"})
        return self

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None

    # -- operations -------------------------------------------------------------------------

    async def post_system_message(self, channel_id: int, content: str) -> dict[str, Any]:
        """Store ``content`` in the channel as a system message; returns the message
        (as MESSAGE_CREATE carried it) once durable."""
        result = await self.request(PostSystemMessage(_rid(), _snowflake(channel_id),
                                                      content, inject_current()))
        return result["message"]

    async def disconnect_session(self, session_id: str, code: int = DEFAULT_CLOSE_CODE,
                                 reason: str = "") -> dict[str, Any]:
        """Close the session's socket with ``code``; returns ``{session_id, code,
        resumable}`` (4000, the default, leaves the session resumable)."""
        return await self.request(DisconnectSession(_rid(), session_id, int(code), reason,
                                                    inject_current()))

    async def broadcast(self, guild_id: int, event_name: str, data: Any) -> int:
        """Dispatch ``event_name`` with ``data`` to the guild's sessions; returns how many."""
        result = await self.request(BroadcastToGuild(_rid(), _snowflake(guild_id), event_name,
                                                     data, inject_current()))
        return int(result["sessions"])

    # -- the wire -------------------------------------------------------------------------

    async def request(self, message: Any) -> dict[str, Any]:
        """Send any request message; the ``result`` of its ``IngressOk``."""
        answer = await self.send_raw(pack(message))
        sent_id = getattr(message, "request_id", "")
        if answer.request_id != sent_id:
            raise IngressRequestError("bad_answer", f"answer for request {answer.request_id!r}"
                                      f", expected {sent_id!r}", 200, sent_id)
        return answer.result

    async def send_raw(self, body: bytes) -> IngressOk:
        """POST ``body`` as is (tests send malformed ones); ``IngressOk`` or raises."""
        if self._http is None:
            raise RuntimeError("use 'async with IngressClient(...)'")
        async with self._http.post(self.url, data=body,
                                   headers={"Content-Type": "application/msgpack"}) as resp:
            data = await resp.read()
            status = resp.status
        try:
            answer = unpack(data)
        except MalformedEnvelope as err:
            raise IngressRequestError("bad_answer", f"HTTP {status}: {err}", status) from None
        if isinstance(answer, IngressOk):
            return answer
        if isinstance(answer, IngressError):
            cls = _ERRORS.get(answer.code, IngressRequestError)
            raise cls(answer.code, answer.message, status, answer.request_id)
        raise IngressRequestError("bad_answer", f"HTTP {status}: {answer!r}", status)


def _rid() -> str:
    return uuid.uuid4().hex


def _snowflake(value: int | str) -> int:
    """A canonical id (``parse_snowflake``): ``int()`` would also take ``" 0012"``."""
    parsed = parse_snowflake(value)
    if parsed is None:
        raise ValueError(f"not a snowflake: {value!r}")
    return parsed
