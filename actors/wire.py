"""The msgpack envelope: how a message leaves a process.

An envelope is ``{to, from, type, body, trace}``: the target and sender addresses as
``[node, id]``, the message type as ``"name@version"``, the body as the message's
fields in declared order, and the W3C trace context (``observability.inject_current``).
Every type that may cross a process is declared here with ``@wire_type`` — one place,
versioned — so a receiver rejects what it does not know instead of guessing.
A malformed envelope raises ``MalformedEnvelope`` with the reason; the data plane
logs and counts it and goes on with the next one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import msgpack

from actors.address import Address

_ADDRESS_EXT = 1
_by_name: dict[str, tuple[type, tuple[str, ...]]] = {}
_by_class: dict[type, tuple[str, tuple[str, ...]]] = {}
# A top-level message's ``trace`` field travels as the envelope's ``trace``, once.
_top_fields: dict[type, tuple[tuple[str, ...], bool]] = {}
RAW = "raw@1"  # a plain msgpack value (str, int, list, dict, ...) as the message itself


class MalformedEnvelope(ValueError):
    """An envelope (or a frame of them) that cannot be decoded; the reason says why."""


def wire_type(name: str, version: int = 1) -> Callable[[type], type]:
    """Register a dataclass as a message type that may cross processes."""

    def register(cls: type) -> type:
        if not dataclasses.is_dataclass(cls):
            raise TypeError(f"{cls.__name__}: wire types must be dataclasses")
        key = f"{name}@{version}"
        if key in _by_name and _by_name[key][0] is not cls:
            raise ValueError(f"wire type {key} is already registered to {_by_name[key][0]}")
        fields = tuple(f.name for f in dataclasses.fields(cls))
        _by_name[key] = (cls, fields)
        _by_class[cls] = (key, fields)
        _top_fields[cls] = (tuple(f for f in fields if f != "trace"), "trace" in fields)
        return cls

    return register


def _default(obj: Any) -> Any:
    if obj.__class__ is Address:
        return msgpack.ExtType(_ADDRESS_EXT, msgpack.packb((obj.node, obj.id)))
    if obj.__class__ in _by_class:
        key, fields = _by_class[obj.__class__]
        return {"$t": key, "b": [getattr(obj, f) for f in fields]}
    raise TypeError(f"{type(obj).__name__} is not a wire type (declare it with @wire_type)")


def _ext_hook(code: int, data: bytes) -> Any:
    if code == _ADDRESS_EXT:
        node, id_ = msgpack.unpackb(data)
        return Address(node, id_)
    raise MalformedEnvelope(f"unknown msgpack extension type {code}")


def _object_hook(obj: dict) -> Any:
    key = obj.get("$t")
    if key is None:
        return obj
    return _build(key, obj.get("b"))


def _build(key: Any, body: Any, trace: Any = None, top: bool = False) -> Any:
    entry = _by_name.get(key)
    if entry is None:
        raise MalformedEnvelope(f"unknown message type {key!r}")
    cls, fields = entry
    if top:
        fields, has_trace = _top_fields[cls]
    if not isinstance(body, list) or len(body) != len(fields):
        raise MalformedEnvelope(f"{key}: body must be a list of {len(fields)} fields")
    try:
        if top and has_trace:
            return cls(**dict(zip(fields, body, strict=True)), trace=trace)
        return cls(*body)
    except Exception as err:
        raise MalformedEnvelope(f"{key}: {err}") from err


def _address(value: Any, what: str) -> Address | None:
    if value is None and what == "from":
        return None
    if (isinstance(value, list) and len(value) == 2 and isinstance(value[0], str)
            and isinstance(value[1], int)):
        return Address(value[0], value[1])
    raise MalformedEnvelope(f"envelope '{what}' must be [node, id], not {value!r}")


def envelope(to: Address, sender: Address | None, message: Any,
             trace: dict | None = None) -> dict:
    """Build the envelope for ``message`` (not yet packed)."""
    entry = _by_class.get(message.__class__)
    if entry is None:
        key, body = RAW, message
    else:
        key = entry[0]
        fields, has_trace = _top_fields[message.__class__]
        body = [getattr(message, f) for f in fields]
        if has_trace and trace is None:
            trace = message.trace
    env = {"to": [to.node, to.id], "from": None if sender is None else [sender.node, sender.id],
           "type": key, "body": body}
    if trace:
        env["trace"] = trace
    return env


def open_envelope(env: Any) -> tuple[Address, Address | None, Any, dict | None]:
    """Validate an unpacked envelope: ``(to, sender, message, trace)``."""
    if not isinstance(env, dict):
        raise MalformedEnvelope(f"an envelope is a map, not {type(env).__name__}")
    try:
        to, sender, key, body = env["to"], env["from"], env["type"], env["body"]
    except KeyError as missing:
        raise MalformedEnvelope(f"envelope lacks {missing}") from None
    trace = env.get("trace")
    if trace is not None and not isinstance(trace, dict):
        raise MalformedEnvelope("envelope 'trace' must be a map")
    message = body if key == RAW else _build(key, body, trace, top=True)
    return _address(to, "to"), _address(sender, "from"), message, trace


def pack(obj: Any) -> bytes:
    return msgpack.packb(obj, default=_default, use_bin_type=True)


def unpack(data: bytes) -> Any:
    try:
        return msgpack.unpackb(data, ext_hook=_ext_hook, object_hook=_object_hook, raw=False,
                               strict_map_key=False)
    except MalformedEnvelope:
        raise
    except Exception as err:
        raise MalformedEnvelope(f"not valid msgpack: {err}") from err
