"""The internal ingress: authenticated, typed msgpack requests from internal services
to the gateway's channel, guild and session actors.

Transport: HTTP/1.1 ``POST /ingress/v1`` with ``Content-Type: application/msgpack`` on
its own aiohttp listener (loopback by default, never the public REST port), with
``Authorization: Bearer <GREENROOM_INGRESS_SECRET>``. Why HTTP rather than a raw framed
TCP link like the data plane: the operations are rare control actions, not a stream;
HTTP gives request/response pairing (and keep-alive) for free, any language's HTTP
client can call it, and it reuses aiohttp, already serving REST on this loop. Every
request is answered: ``IngressOk`` (200) or ``IngressError`` (its ``code``: 401
``unauthenticated``, 400 ``bad_message``, 404 ``unknown_channel`` / ``unknown_guild``
/ ``unknown_session``, 503 ``failed``), both wire types echoing the ``request_id``.

Requests (``gateway.ingress_messages``, packed with ``actors.wire.pack``):

* ``PostSystemMessage`` -> the channel actor, as a ``PostMessage`` from the system user:
  stored, then MESSAGE_CREATE to the guild's sessions like any message; answered with
  the message once durable.
* ``DisconnectSession`` -> the session actor (``CloseSession``): its socket is closed
  with the code (default 4000, which keeps the session resumable; 1000/1001 and the
  non-resumable 4xxx codes end it).
* ``BroadcastToGuild`` -> the guild actor (``ServiceBroadcast``): one dispatch, encoded
  once, to every subscribed session; answered with the number of sessions.

Each request is one trace: ``ingress.<op>`` continues the caller's ``trace`` (or starts
one) and its context rides in the actor message to the next hop.
"""

from __future__ import annotations

import hmac
import logging
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from aiohttp import web

from actors.messages import NodeDownError
from actors.registry import Route
from actors.wire import MalformedEnvelope, pack, unpack
from chat.validation import check_content
from gateway.channel import channel_key
from gateway.ingress_messages import (
    BAD_MESSAGE,
    FAILED,
    REQUEST_TYPES,
    SYSTEM_MESSAGE_TYPE,
    SYSTEM_USER,
    UNAUTHENTICATED,
    UNKNOWN_CHANNEL,
    UNKNOWN_GUILD,
    UNKNOWN_SESSION,
    BroadcastToGuild,
    DisconnectSession,
    IngressError,
    IngressOk,
    PostSystemMessage,
    check_request,
)
from gateway.messages import (
    Broadcasted,
    CloseSession,
    Posted,
    PostFailed,
    PostMessage,
    ServiceBroadcast,
    SessionClosed,
)
from gateway.outbound import bounded_responses
from gateway.sessions import (
    NoSuchSession,
    ToSession,
    gateway_nodes,
    node_of_session,
    sessions_address,
)
from gateway.tracing import fanout_attributes
from observability import counter, inject_current, span_from
from observability.http_metrics import server_metrics
from observability.logging import LogThrottle
from observability.tracing import tracing_active

if TYPE_CHECKING:
    from gateway.server import Gateway

log = logging.getLogger("greenroom.gateway.ingress")

PATH = "/ingress/v1"
CONTENT_TYPE = "application/msgpack"
MAX_REQUEST_BYTES = 64 * 1024
ASK_TIMEOUT_S = 15.0
#: Seconds the server waits for in-flight requests when it stops (as the REST API).
SHUTDOWN_TIMEOUT_S = 1.0
_STATUS = {UNAUTHENTICATED: 401, BAD_MESSAGE: 400, UNKNOWN_CHANNEL: 404, UNKNOWN_GUILD: 404,
           UNKNOWN_SESSION: 404, FAILED: 503}
_requests = counter("ingress_requests_total", "internal ingress requests, by op and outcome",
                    labels={"op": None, "outcome": None})


#: 503s come in floods (a node gone, storage down): one line a second per op and reason
_failure_lines = LogThrottle(interval=1.0)
_unauthenticated_lines = LogThrottle(interval=1.0)


def secret_from_environment(environ: Mapping[str, str] | None = None) -> str | None:
    """The ingress secret: ``GREENROOM_INGRESS_SECRET``, or the contents of the file
    ``GREENROOM_INGRESS_SECRET_FILE`` names (a mounted secret; surrounding whitespace
    dropped); None when neither is set (the ingress is then not served). ValueError,
    naming the variable and never the secret, when both are set or the file cannot be
    read or is empty."""
    env = os.environ if environ is None else environ
    value = env.get("GREENROOM_INGRESS_SECRET", "").strip()
    path = env.get("GREENROOM_INGRESS_SECRET_FILE", "").strip()
    if value and path:
        raise ValueError("set GREENROOM_INGRESS_SECRET or GREENROOM_INGRESS_SECRET_FILE, "
                         "not both")
    if not path:
        return value or None
    try:
        with open(path, encoding="utf-8") as f:
            value = f.read().strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ValueError(f"GREENROOM_INGRESS_SECRET_FILE: cannot read {path}: {reason}"
                         ) from None
    if not value:
        raise ValueError(f"GREENROOM_INGRESS_SECRET_FILE: {path} is empty")
    return value


class _Refused(Exception):
    """An answer other than ok. ``detail``: what the log says beyond ``message`` (which
    the caller gets); ``fault``: a server fault (error level), not an outage (503s)."""

    def __init__(self, code: str, message: str, detail: str | None = None,
                 fault: bool = False) -> None:
        super().__init__(message)
        self.code, self.message, self.detail, self.fault = code, message, detail, fault


def _log_failure(op: str, request_id: str, error: str, exc: BaseException | None = None,
                 fault: bool = False) -> None:
    """One ``ingress.failed`` line for an answer 503: at error with the traceback for a
    fault of ours, else at warning, at most one a second per op and error."""
    fields: dict[str, Any] = {"op": op, "status": 503, "code": FAILED, "error": error,
                              "request_id": request_id}
    if fault:
        log.error("ingress.failed", extra=fields, exc_info=exc)
        return
    held = _failure_lines.allow((op, error))
    if held is None:
        return
    fields["suppressed"] = held
    if exc is not None:
        fields["exc_type"] = type(exc).__name__
        fields["exc_message"] = str(exc)
    log.warning("ingress.failed", extra=fields)


def _answer(answer: IngressOk | IngressError, status: int = 200) -> web.Response:
    return web.Response(body=pack(answer), status=status, content_type=CONTENT_TYPE)


def _refuse(request_id: str, code: str, message: str) -> web.Response:
    return _answer(IngressError(request_id, code, message), _STATUS[code])


class Ingress:
    def __init__(self, gateway: Gateway, secret: str) -> None:
        if not secret:
            raise ValueError("the ingress needs a secret")
        self.gateway = gateway
        self.ctx = gateway.ctx
        self.secret = secret.encode()

    async def handle(self, request: web.Request) -> web.Response:
        header = request.headers.get("Authorization", "")
        token = header[7:].strip().encode() if header.startswith("Bearer ") else b""
        if not hmac.compare_digest(token, self.secret):
            _requests.add(op="none", outcome=UNAUTHENTICATED)
            held = _unauthenticated_lines.allow(request.remote)
            if held is not None:  # a scanner, a misconfigured client: not every request
                log.warning("ingress.unauthenticated",
                            extra={"remote": request.remote, "suppressed": held})
            return _refuse("", UNAUTHENTICATED, "missing or wrong Authorization: Bearer secret")
        if request.content_type != CONTENT_TYPE:
            return _refuse("", BAD_MESSAGE, f"Content-Type must be {CONTENT_TYPE}")
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return _refuse("", BAD_MESSAGE, f"request over {MAX_REQUEST_BYTES} bytes")
        try:
            msg = unpack(body)
        except MalformedEnvelope as err:
            _requests.add(op="none", outcome=BAD_MESSAGE)
            return _refuse("", BAD_MESSAGE, str(err))
        request_id = getattr(msg, "request_id", "")
        if not isinstance(request_id, str):
            request_id = ""
        if not isinstance(msg, REQUEST_TYPES):
            _requests.add(op="none", outcome=BAD_MESSAGE)
            kind = type(msg).__name__ if not isinstance(msg, dict) else "a plain map"
            return _refuse(request_id, BAD_MESSAGE,
                           f"not an ingress request ({kind}); expected one of "
                           + ", ".join(t.__name__ for t in REQUEST_TYPES))
        op = type(msg).__name__
        problem = check_request(msg)
        if problem is None and isinstance(msg, PostSystemMessage):
            # what storage cannot hold, or blank content: refused here, as on REST
            refused = check_content(msg.content)
            problem = None if refused is None else f"content: {refused.message}"
        if problem is not None:
            _requests.add(op=op, outcome=BAD_MESSAGE)
            return _refuse(request_id, BAD_MESSAGE, f"{op}: {problem}")
        attributes: dict[str, Any] = {"greenroom.request_id": request_id}
        if tracing_active() and isinstance(msg, PostSystemMessage | BroadcastToGuild):
            # the sampler decides here, once, by the guild's size (observability.sampling)
            attributes = await fanout_attributes(self.ctx.identity,
                                                 await self._guild_of(msg), attributes)
        with span_from(msg.trace, f"ingress.{op}", **attributes) as span:
            try:
                result = await self._serve(msg)
            except _Refused as refused:
                _requests.add(op=op, outcome=refused.code)
                span.set_attribute("greenroom.ingress.error", refused.code)
                if refused.code == FAILED:
                    _log_failure(op, request_id, refused.detail or refused.message,
                                 fault=refused.fault)
                else:
                    log.info("ingress %s refused: %s", op, refused.message)
                return _refuse(request_id, refused.code, refused.message)
            except NodeDownError as exc:
                _requests.add(op=op, outcome=FAILED)
                _log_failure(op, request_id, "node down", exc)
                return _refuse(request_id, FAILED, f"{op}: not delivered, retry: {exc}")
            except TimeoutError as exc:
                _requests.add(op=op, outcome=FAILED)
                _log_failure(op, request_id, "the target did not answer in time", exc)
                return _refuse(request_id, FAILED, f"{op}: the target did not answer in time")
            except Exception as exc:
                # a fault of ours (storage, a bug): logged with its traceback; the caller
                # gets our error format, not the exception's text
                _requests.add(op=op, outcome=FAILED)
                _log_failure(op, request_id, f"{type(exc).__name__} in a handler", exc,
                             fault=True)
                return _refuse(request_id, FAILED, f"{op}: internal error")
            log.info("ingress %s done", op)  # inside the span: the line carries trace_id
        _requests.add(op=op, outcome="ok")
        return _answer(IngressOk(request_id, result))

    async def _guild_of(self, msg: PostSystemMessage | BroadcastToGuild) -> int | None:
        """The guild a fan-out request reaches (None if unknown: checked again by
        ``_serve``, which answers the error)."""
        if isinstance(msg, BroadcastToGuild):
            return msg.guild_id
        try:
            channel = await self.ctx.storage.get_channel(msg.channel_id)
        except Exception:  # _serve meets the same trouble and reports it
            return None
        return channel.guild_id if channel is not None else None

    async def _ask(self, to: Any, message: Any) -> Any:
        return await self.gateway.base.ask_async(to, message, ASK_TIMEOUT_S)

    async def _serve(self, msg: Any) -> dict[str, Any]:
        if isinstance(msg, PostSystemMessage):
            channel = await self.ctx.storage.get_channel(msg.channel_id)
            if channel is None:
                raise _Refused(UNKNOWN_CHANNEL, f"unknown channel {msg.channel_id}")
            post = PostMessage(guild_id=channel.guild_id, author=dict(SYSTEM_USER),
                               member=None, content=msg.content, type=SYSTEM_MESSAGE_TYPE,
                               trace=inject_current())
            key = channel_key(channel.guild_id, channel.id)
            answer = await self._ask(self.ctx.registry, Route("channel", key, post))
            if isinstance(answer, Posted):
                return {"message": answer.message}
            if isinstance(answer, PostFailed):
                if answer.status >= 500 and answer.status != 503:
                    raise _Refused(FAILED, f"post failed ({answer.status})",
                                   detail=f"post failed ({answer.status}): {answer.message}",
                                   fault=True)
                raise _Refused(FAILED, f"post failed ({answer.status}): {answer.message}")
            raise _Refused(FAILED, f"unexpected answer {type(answer).__name__}")
        if isinstance(msg, DisconnectSession):
            close = CloseSession(msg.code, msg.reason, inject_current())
            session = self.ctx.sessions.get(msg.session_id)
            node = node_of_session(msg.session_id)
            if session is not None:
                answer = await self._ask(session, close)
            elif node is not None and node != self.gateway.base.node \
                    and node in gateway_nodes(self.gateway.cluster, self.gateway.base.node):
                # the session lives on another node: its directory forwards the close
                answer = await self._ask(sessions_address(node),
                                         ToSession(msg.session_id, close))
            else:
                raise _Refused(UNKNOWN_SESSION, f"unknown session {msg.session_id!r}")
            if isinstance(answer, NoSuchSession):
                raise _Refused(UNKNOWN_SESSION, f"unknown session {msg.session_id!r}")
            if isinstance(answer, SessionClosed):
                return {"session_id": msg.session_id, "code": answer.code,
                        "resumable": answer.resumable}
            raise _Refused(UNKNOWN_SESSION, f"session {msg.session_id!r} has ended")
        if isinstance(msg, BroadcastToGuild):
            guild = await self.ctx.storage.get_guild(msg.guild_id)
            if guild is None:
                raise _Refused(UNKNOWN_GUILD, f"unknown guild {msg.guild_id}")
            broadcast = ServiceBroadcast(msg.event, msg.data, inject_current())
            answer = await self._ask(self.ctx.registry, Route("guild", guild.id, broadcast))
            if isinstance(answer, Broadcasted):
                return {"guild_id": str(answer.guild_id), "sessions": answer.sessions}
            raise _Refused(FAILED, f"unexpected answer {type(answer).__name__}")
        raise _Refused(BAD_MESSAGE, f"unhandled request {type(msg).__name__}")


async def start_ingress(gateway: Gateway, secret: str, host: str, port: int
                        ) -> tuple[web.AppRunner, int]:
    """Serve the ingress; answers the runner (to clean up) and the bound port."""
    app = web.Application(client_max_size=MAX_REQUEST_BYTES,
                          middlewares=[server_metrics(),
                                       bounded_responses(gateway.write_limits)])
    app.router.add_post(PATH, Ingress(gateway, secret).handle)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT_S)
    await runner.setup()
    # several nodes of a host serve one ingress port, as they do the gateway's
    site = web.TCPSite(runner, host, port, reuse_port=gateway.reuse_port or None)
    await site.start()
    bound = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, bound
