"""structlog configured once, with stdlib logging (and so Thespian) rendered alike.

One processor chain builds every event: ours (``get_logger``) and stdlib records from
Thespian or any library. structlog's events end in ``ProcessorFormatter.wrap_for_formatter``
and are rendered by the one stdlib handler this module owns, so the renderer (JSON or
console) lives in a single place and both kinds of line look the same. The level is
stdlib's root level, also the single source of truth for both kinds of line.

Every record is stamped when it happens (a stdlib record's own ``created``, not the
moment it is written); an exception arrives as ``exc_type``, ``exc_message`` and its
traceback (``exception`` in JSON, printed by the console renderer); values under keys
that name a secret (``token``, ``secret``, ``authorization``, ...) are redacted, a
safety net behind the rule that no call site logs one.

Lines join traces (``trace_id``/``span_id``) three ways, cheapest first: an explicit
``trace`` field (a message's W3C ``trace`` dict or a span, for a call site that has the
message in hand: a dropped envelope, a crash), the span bound for logs by the hop that
handles a message (``log_span``: actor hops start spans without making them current),
and OpenTelemetry's current span (REST and ingress handlers). None of them costs
anything until a line is actually written.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from contextvars import ContextVar, Token
from datetime import UTC, datetime
from typing import Any, TextIO

import structlog
from opentelemetry import trace
from opentelemetry.trace import format_span_id, format_trace_id

__all__ = ["LogThrottle", "add_trace_context", "bind_log_span", "configure_logging",
           "get_logger", "log_span", "reset_log_span"]

_NAME_TO_LEVEL = {
    "critical": logging.CRITICAL,
    "exception": logging.ERROR,
    "error": logging.ERROR,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "info": logging.INFO,
    "debug": logging.DEBUG,
}


#: The span a hop is handling a message in, for log lines only (not OpenTelemetry's
#: current context: making a span current costs an attach/detach per hop, and an
#: actor's span often outlives its handler). A span, or a message's W3C ``trace`` dict.
_LOG_SPAN: ContextVar[Any] = ContextVar("greenroom_log_span", default=None)


def bind_log_span(span: Any) -> Token | None:
    """Make *span* (a span or a W3C ``trace`` dict) the one log lines carry, until
    ``reset_log_span`` with the token. None (untraced) binds nothing and costs nothing:
    ``token = bind_log_span(span)`` ... ``reset_log_span(token)`` in a ``finally``."""
    if span is None:
        return None
    return _LOG_SPAN.set(span)


def reset_log_span(token: Token | None) -> None:
    """Undo ``bind_log_span`` (a None token: nothing was bound)."""
    if token is not None:
        _LOG_SPAN.reset(token)


@contextmanager
def log_span(span: Any) -> Iterator[None]:
    """``with log_span(span):`` every line logged inside carries *span*'s ids."""
    token = bind_log_span(span)
    try:
        yield
    finally:
        reset_log_span(token)


_HEX = frozenset("0123456789abcdef")


def _ids_of(value: Any) -> tuple[str, str] | None:
    """(trace_id, span_id) of a span or of a W3C ``trace`` dict; None if not valid.

    A message's ``trace`` names the span that sent it (the hop's parent): the closest
    span known where no hop span exists. Parsed by slicing, for a log line only (the
    propagator, with its regular expressions, is for making spans)."""
    get_context = getattr(value, "get_span_context", None)
    if get_context is not None:
        ctx = get_context()
        if ctx.is_valid:
            return format_trace_id(ctx.trace_id), format_span_id(ctx.span_id)
        return None
    if isinstance(value, Mapping):
        parent = value.get("traceparent")
        if isinstance(parent, bytes | bytearray):
            parent = bytes(parent).decode("ascii", "replace")
        if isinstance(parent, str) and len(parent) >= 55 and parent[2] == "-" \
                and parent[35] == "-" and parent[52] == "-":
            trace_id, span_id = parent[3:35].lower(), parent[36:52].lower()
            if (_HEX.issuperset(trace_id) and _HEX.issuperset(span_id)
                    and trace_id.strip("0") and span_id.strip("0")):
                return trace_id, span_id
    return None


def add_trace_context(
    logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Add ``trace_id``/``span_id`` (W3C hex) of the span the line was logged in.

    This is what lets an SRE jump from a log line to its trace. First a ``trace`` field
    (a message's ``trace`` dict or a span: the call site names it; the field itself is
    replaced by the ids), then the span a hop bound for logs (``log_span``), then
    OpenTelemetry's current span. Ids given explicitly in the event are kept
    (``setdefault``); with no valid span nothing is added, so a line never carries a
    misleading all-zero id.
    """
    ids = None
    if "trace" in event_dict and not isinstance(event_dict["trace"], str):
        named = event_dict.pop("trace")  # a message's trace (None: untraced) or a span
        if named is not None:
            ids = _ids_of(named)
    if ids is None:
        bound = _LOG_SPAN.get()
        if bound is not None:
            ids = _ids_of(bound)
    if ids is None:
        ctx = trace.get_current_span().get_span_context()
        if not ctx.is_valid:
            return event_dict
        ids = format_trace_id(ctx.trace_id), format_span_id(ctx.span_id)
    event_dict.setdefault("trace_id", ids[0])
    event_dict.setdefault("span_id", ids[1])
    return event_dict


class LogThrottle:
    """At most one line per ``interval`` seconds per key, for events that can flood
    (a refused envelope per message while a peer is down, a 503 per request in an
    outage). ``allow(key)`` answers None (say nothing) or how many lines of that key
    were held back since the last one written, to log as ``suppressed``."""

    def __init__(self, interval: float = 1.0, max_keys: int = 1024) -> None:
        self.interval = interval
        self.max_keys = max_keys
        self._keys: dict[Any, list[float | int]] = {}  # key -> [last written, held back]

    def allow(self, key: Any, now: float | None = None) -> int | None:
        now = time.monotonic() if now is None else now
        entry = self._keys.get(key)
        if entry is None:
            if len(self._keys) >= self.max_keys:  # many keys (peers, routes): start over
                self._keys.clear()
            self._keys[key] = [now, 0]
            return 0
        if now - entry[0] < self.interval:
            entry[1] += 1
            return None
        held = int(entry[1])
        entry[0], entry[1] = now, 0
        return held


# Attributes every LogRecord has, plus those formatters add (``message``, ``asctime``):
# anything else on a record came from ``extra=`` and belongs in the event.
_RECORD_ATTRS = frozenset(
    logging.LogRecord("", 0, "", 0, "", (), None).__dict__.keys() | {"message", "asctime"}
)


def _add_record_extras(
    logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Copy a stdlib record's ``extra=`` fields into the event (foreign records only).

    Like structlog's ``ExtraAdder``, but it also skips ``message``, which another handler
    (pytest's, for one) may already have set on the shared record.
    """
    record = event_dict.get("_record")
    if record is not None:
        for key, value in record.__dict__.items():
            if key not in _RECORD_ATTRS and not key.startswith("_"):
                event_dict.setdefault(key, value)
    return event_dict


def add_timestamp(
    logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """``timestamp``: when the event happened (ISO 8601, UTC).

    A stdlib record carries the time it was made (``created``), which travels with it
    wherever it is formatted (Thespian's logging process formats other processes'
    records, late under load); a structlog event is stamped here, in the process and at
    the moment it is emitted.
    """
    record = event_dict.get("_record")
    created = record.created if record is not None else None
    stamp = datetime.fromtimestamp(created, UTC) if created is not None else datetime.now(UTC)
    event_dict.setdefault("timestamp", stamp.isoformat(timespec="microseconds")
                          .replace("+00:00", "Z"))
    return event_dict


def add_exception_fields(
    logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """``exc_type`` and ``exc_message`` of the event's exception, as fields to query on.

    ``exc_info`` (True, an exception or a ``sys.exc_info()`` tuple) is resolved here, in
    the emitting process while the exception is being handled, into the tuple the
    renderers print the traceback from (``exception`` in JSON). A record that crossed a
    process (Thespian pickles ``exc_text``, not the traceback) keeps its text.
    """
    exc_info = event_dict.get("exc_info")
    if exc_info is True:
        exc_info = sys.exc_info()
    elif isinstance(exc_info, BaseException):
        exc_info = (type(exc_info), exc_info, exc_info.__traceback__)
    if isinstance(exc_info, tuple) and len(exc_info) == 3 and exc_info[0] is not None:
        kind = exc_info[0]
        event_dict["exc_info"] = exc_info
        event_dict.setdefault("exc_type", kind.__qualname__ if kind.__module__ == "builtins"
                              else f"{kind.__module__}.{kind.__qualname__}")
        event_dict.setdefault("exc_message", str(exc_info[1]))
        return event_dict
    if exc_info is not None:
        event_dict.pop("exc_info")  # False, or an exception already gone
    record = event_dict.get("_record")
    text = getattr(record, "exc_text", None) if record is not None else None
    if text:
        event_dict.setdefault("exception", text)
        last = text.rstrip().rsplit("\n", 1)[-1]
        kind, sep, message = last.partition(": ")
        event_dict.setdefault("exc_type", kind.strip())
        event_dict.setdefault("exc_message", message if sep else "")
    return event_dict


#: Substrings of a key whose value is a secret (case-insensitive): ``bot_token``,
#: ``Authorization``, ``cluster_secret``, ``password``...
SECRET_KEY_PARTS = ("token", "secret", "authorization", "password", "passwd", "cookie",
                    "api_key", "apikey", "credential")
REDACTED = "[redacted]"


def _is_secret_key(key: Any) -> bool:
    if not isinstance(key, str):
        return False
    lowered = key.lower()
    return any(part in lowered for part in SECRET_KEY_PARTS)


def _redacted(value: Any, depth: int = 0) -> Any:
    if depth > 3:
        return value
    if isinstance(value, dict):
        return {k: REDACTED if _is_secret_key(k) else _redacted(v, depth + 1)
                for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_redacted(v, depth + 1) for v in value)
    return value


def redact_secrets(
    logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Replace the value of every field whose name names a secret (and such keys in
    dicts and lists under a field) with ``[redacted]``: a safety net, run last before
    rendering, for both kinds of line."""
    for key in list(event_dict):
        if key.startswith("_") or key in ("event", "exc_info"):
            continue
        value = event_dict[key]
        if _is_secret_key(key):
            event_dict[key] = REDACTED
        elif isinstance(value, dict | list | tuple):
            event_dict[key] = _redacted(value)
    return event_dict


def _shared_processors(*, foreign: bool = False) -> list[Any]:
    """Processors every event goes through, structlog's and stdlib's alike (``foreign``:
    a stdlib record's, whose ``extra=`` fields join the event before its trace ids are
    resolved, so ``extra={"trace": msg.trace}`` works on both kinds of line)."""
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.add_log_level,
        add_timestamp,
        *([_add_record_extras] if foreign else []),
        add_trace_context,
        structlog.processors.StackInfoRenderer(),
        add_exception_fields,
    ]


def _level_from_env(level: str | int | None) -> str | int:
    """*level*, else ``GREENROOM_LOG_LEVEL``, else INFO."""
    if level is not None:
        return level
    return os.environ.get("GREENROOM_LOG_LEVEL", "").strip().upper() or "INFO"


class _BoundLogger(structlog.stdlib.BoundLogger):
    """structlog's stdlib ``BoundLogger`` that checks the level *before* processing.

    ``filter_by_level`` as a processor drops a disabled event only after the event dict
    is built and by raising ``DropEvent`` (several µs); asking the stdlib logger first
    costs a cached lookup. The level stays stdlib's, so changing it applies at once.
    """

    def _proxy_to_logger(
        self, method_name: str, event: str | None = None, *event_args: Any, **event_kw: Any
    ) -> Any:
        if not self._logger.isEnabledFor(_NAME_TO_LEVEL.get(method_name, logging.CRITICAL)):
            return None
        return super()._proxy_to_logger(method_name, event, *event_args, **event_kw)


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is *at emit time*.

    A plain ``StreamHandler(sys.stderr)`` keeps the stream of the moment it was made, so
    a later redirect (pytest's capture, a daemon re-opening stderr) would be missed.
    """

    def __init__(self) -> None:
        logging.Handler.__init__(self)

    @property
    def stream(self) -> TextIO:  # type: ignore[override]
        return sys.stderr


class _State:
    lock = threading.Lock()
    handler: logging.Handler | None = None
    applied: tuple[bool, int, int] | None = None  # (json, level, id(stream))


def _default_json() -> bool:
    """``GREENROOM_LOG_FORMAT`` if set, else console on a terminal and JSON elsewhere."""
    fmt = os.environ.get("GREENROOM_LOG_FORMAT", "").strip().lower()
    if fmt in ("json", "console"):
        return fmt == "json"
    try:
        return not sys.stderr.isatty()
    except (AttributeError, ValueError):  # closed or replaced stderr
        return True


def _renderer_chain(json: bool, stream: TextIO | None) -> list[Any]:
    if json:
        return [
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            redact_secrets,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ]
    out = stream if stream is not None else sys.stderr
    try:
        colors = out.isatty() and "NO_COLOR" not in os.environ
    except (AttributeError, ValueError):
        colors = False
    return [
        structlog.stdlib.ProcessorFormatter.remove_processors_meta,
        redact_secrets,
        structlog.dev.ConsoleRenderer(colors=colors),
    ]


def log_defs(*, json: bool | None = None, level: str | None = None) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for Thespian's ``logDefs``.

    In Thespian's actor processes the root logger forwards records to Thespian's
    logging process, which formats them with this configuration (the membership and
    supervisor processes: few records). Node processes call ``configure_logging()``,
    which writes their records to their own stderr instead (``_install``).
    """
    use_json = _default_json() if json is None else json
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"greenroom": {
            "()": structlog.stdlib.ProcessorFormatter,
            "foreign_pre_chain": _shared_processors(foreign=True),
            "processors": _renderer_chain(use_json, None),
        }},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "greenroom"}},
        "root": {"handlers": ["stderr"], "level": str(_level_from_env(level)).upper()},
    }


def configure_logging(
    *, json: bool | None = None, level: str | None = None, stream: TextIO | None = None,
    install_handler: bool = True,
) -> None:
    """Configure structlog and stdlib logging for this process. Safe to call again.

    ``json`` picks the renderer (``None``: see ``GREENROOM_LOG_FORMAT``, else console when
    stderr is a terminal, else JSON); ``level`` (``None``: ``GREENROOM_LOG_LEVEL``, else
    INFO). ``stream`` defaults to the current ``sys.stderr``. A second call with the
    same settings does nothing; with other settings it swaps the renderer/level of the
    one handler this module owns (never stacking a second one), and handlers others put
    on the root logger (pytest's, for instance) are left alone.
    """
    use_json = _default_json() if json is None else json
    level = _level_from_env(level)
    numeric_level = logging.getLevelName(level.upper()) if isinstance(level, str) else level
    if not isinstance(numeric_level, int):
        raise ValueError(f"unknown log level: {level!r}")
    wanted = (use_json, numeric_level, id(stream))

    with _State.lock:
        root = logging.getLogger()
        # (A forked Thespian process inherits ``applied`` but has a new root logger.)
        if _State.applied == wanted and (not install_handler or _State.handler in root.handlers):
            return
        shared = _shared_processors()
        formatter = structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=_shared_processors(foreign=True),
            processors=_renderer_chain(use_json, stream),
        )
        handler: logging.Handler = (
            _StderrHandler() if stream is None else logging.StreamHandler(stream)
        )
        handler.setFormatter(formatter)

        if install_handler:
            _install(root, handler, _State.handler)
            root.setLevel(numeric_level)
            _State.handler = handler

        if _State.applied is None:
            # The structlog side never changes between calls (rendering lives in the
            # handler above), so caching loggers on first use stays correct.
            structlog.configure(
                processors=[
                    *shared,
                    structlog.stdlib.PositionalArgumentsFormatter(),
                    structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
                ],
                logger_factory=structlog.stdlib.LoggerFactory(),
                wrapper_class=_BoundLogger,
                cache_logger_on_first_use=True,
            )
        _State.applied = wanted


def _install(root: logging.Logger, handler: logging.Handler,
             previous: logging.Handler | None) -> None:
    """Put ``handler`` on the root logger in place of ``previous``.

    In a Thespian actor process (a node process) the root logger is Thespian's
    ``ThespianLogForwarder``: it sends every record, pickled, to Thespian's logging
    process (which formats them one at a time: a burst of 1,000 records from a node
    was written seconds to minutes late, and an exception lost its traceback on the
    way) and refuses handlers. There the forwarder's handler is replaced by ours, so a
    node writes its own records to its own stderr (the terminal or journal of
    ``greenroom run``, which the node processes inherit) when they happen (README,
    "Decisions recorded here").
    """
    try:
        if previous is not None:
            root.removeHandler(previous)
        root.addHandler(handler)
    except NotImplementedError:  # Thespian's forwarder
        for old in list(root.handlers):
            logging.Logger.removeHandler(root, old)
        logging.Logger.addHandler(root, handler)


def get_logger(name: str | None = None, **initial_values: Any) -> structlog.stdlib.BoundLogger:
    """A structlog logger backed by the stdlib logger *name* (its ``logger`` field).

    Usable at import time: the configuration is applied on first use. That lazy proxy
    costs a few µs per call; on a hot path keep ``get_logger(...).bind()`` made after
    ``configure_logging`` (a disabled level then costs about 1 µs).
    """
    return structlog.stdlib.get_logger(name, **initial_values)


def _reset() -> None:
    """Forget the configuration (tests only): remove our handler, let the next call apply."""
    with _State.lock:
        if _State.handler is not None:
            logging.getLogger().removeHandler(_State.handler)
        _State.handler = None
        _State.applied = None
