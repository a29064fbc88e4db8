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
import operator
from collections.abc import Callable
from typing import Any

import msgpack

from actors.address import Address

_ADDRESS_EXT = 1
_by_name: dict[str, tuple[type, tuple[str, ...]]] = {}
_by_class: dict[type, tuple[str, tuple[str, ...]]] = {}
# A top-level message's ``trace`` field travels as the envelope's ``trace``, once.
_top_fields: dict[type, tuple[tuple[str, ...], bool]] = {}
# The same, by wire name, for the decoder's hot path: key -> (cls, top fields, has trace).
_top_by_name: dict[str, tuple[type, tuple[str, ...], bool]] = {}
# The encoder's hot path: class -> (key, body getter, has trace), filled on first use.
_encoders: dict[type, Any] = {}
# Values that are not dataclasses (``wire_value``): class -> (key, to fields), and back.
_value_encoders: dict[type, tuple[str, Callable[[Any], list]]] = {}
_value_decoders: dict[str, Callable[..., Any]] = {}
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
        _top_by_name[key] = (cls, *_top_fields[cls])
        _encoders.pop(cls, None)
        return cls

    return register


def wire_value(name: str, version: int = 1, *, to_wire: Callable[[Any], list],
               from_wire: Callable[..., Any]) -> Callable[[type], type]:
    """Register a class that is not a dataclass as a value that may cross processes
    inside a message: ``to_wire(obj)`` gives its fields (msgpack values), and
    ``from_wire(*fields)`` makes it again on the receiver, which must check them (a
    failure is a ``MalformedEnvelope``)."""

    def register(cls: type) -> type:
        key = f"{name}@{version}"
        if key in _by_name or key in _value_decoders:
            raise ValueError(f"wire type {key} is already registered")
        _value_encoders[cls] = (key, to_wire)
        _value_decoders[key] = from_wire
        return cls

    return register


def _default(obj: Any) -> Any:
    if obj.__class__ is Address:
        return msgpack.ExtType(_ADDRESS_EXT, msgpack.packb((obj.node, obj.id)))
    if obj.__class__ in _by_class:
        key, fields = _by_class[obj.__class__]
        return {"$t": key, "b": [getattr(obj, f) for f in fields]}
    value = _value_encoders.get(obj.__class__)
    if value is not None:
        return {"$t": value[0], "b": value[1](obj)}
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
        decode = _value_decoders.get(key) if not top else None
        if decode is None:
            raise MalformedEnvelope(f"unknown message type {key!r}")
        if not isinstance(body, list):
            raise MalformedEnvelope(f"{key}: body must be a list")
        try:
            return decode(*body)
        except Exception as err:
            raise MalformedEnvelope(f"{key}: {err}") from err
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


def _body_getter(fields: tuple[str, ...]) -> Callable[[Any], list]:
    """A message's top-level fields as the envelope's body list, without a comprehension."""
    if not fields:
        return lambda message: []
    get = operator.attrgetter(*fields)
    if len(fields) == 1:
        return lambda message: [get(message)]
    return lambda message: list(get(message))


def envelope(to: Address, sender: Address | None, message: Any,
             trace: dict | None = None) -> dict:
    """Build the envelope for ``message`` (not yet packed)."""
    entry = _encoders.get(message.__class__)
    if entry is None:
        entry = _encoder(message.__class__)
    if entry is False:
        key, body = RAW, message
    else:
        key, body_of, has_trace = entry
        body = body_of(message)
        if has_trace and trace is None:
            trace = message.trace
    env = {"to": [to.node, to.id], "from": None if sender is None else [sender.node, sender.id],
           "type": key, "body": body}
    if trace:
        env["trace"] = trace
    return env


def _encoder(cls: type) -> Any:
    entry = _by_class.get(cls)
    if entry is None:
        return False  # not cached: the class may be registered later
    fields, has_trace = _top_fields[cls]
    _encoders[cls] = found = (entry[0], _body_getter(fields), has_trace)
    return found


def open_envelope(env: Any) -> tuple[Address, Address | None, Any, dict | None]:
    """Validate an unpacked envelope: ``(to, sender, message, trace)``."""
    if env.__class__ is not dict and not isinstance(env, dict):
        raise MalformedEnvelope(f"an envelope is a map, not {type(env).__name__}")
    try:
        to, sender, key, body = env["to"], env["from"], env["type"], env["body"]
    except KeyError as missing:
        raise MalformedEnvelope(f"envelope lacks {missing}") from None
    trace = env.get("trace")
    if trace is not None and not isinstance(trace, dict):
        raise MalformedEnvelope("envelope 'trace' must be a map")
    if key == RAW:
        message = body
    else:
        # _build(key, body, trace, top=True), inlined: this runs once per envelope
        try:
            entry = _top_by_name.get(key)
        except TypeError:  # an unhashable "type"
            entry = None
        if entry is None:
            raise MalformedEnvelope(f"unknown message type {key!r}")
        cls, fields, has_trace = entry
        if not isinstance(body, list) or len(body) != len(fields):
            raise MalformedEnvelope(f"{key}: body must be a list of {len(fields)} fields")
        try:
            if has_trace:
                message = cls(**dict(zip(fields, body, strict=True)), trace=trace)
            else:
                message = cls(*body)
        except Exception as err:
            raise MalformedEnvelope(f"{key}: {err}") from err
    # _address(to, "to") and _address(sender, "from"), with the common case inlined
    if to.__class__ is list and len(to) == 2 and to[0].__class__ is str \
            and to[1].__class__ is int:
        to = Address(to[0], to[1])
    else:
        to = _address(to, "to")
    if sender is not None:
        if sender.__class__ is list and len(sender) == 2 and sender[0].__class__ is str \
                and sender[1].__class__ is int:
            sender = Address(sender[0], sender[1])
        else:
            sender = _address(sender, "from")
    return to, sender, message, trace


def pack(obj: Any) -> bytes:
    return msgpack.packb(obj, default=_default, use_bin_type=True)


def packer() -> msgpack.Packer:
    """A reusable packer giving the same bytes as ``pack``: faster per call, but not
    thread-safe — one per thread (the data plane keeps one per event loop)."""
    return msgpack.Packer(default=_default, use_bin_type=True)


_unpackb = msgpack.unpackb


def unpack(data: bytes) -> Any:
    try:
        return _unpackb(data, ext_hook=_ext_hook, object_hook=_object_hook, raw=False,
                        strict_map_key=False)
    except MalformedEnvelope:
        raise
    except Exception as err:
        raise MalformedEnvelope(f"not valid msgpack: {err}") from err


def unpack_envelope(data: bytes) -> tuple[Address, Address | None, Any, dict | None]:
    """``open_envelope(unpack(data))``: one packed envelope, decoded and validated."""
    try:
        env = _unpackb(data, ext_hook=_ext_hook, object_hook=_object_hook, raw=False,
                       strict_map_key=False)
    except MalformedEnvelope:
        raise
    except Exception as err:
        raise MalformedEnvelope(f"not valid msgpack: {err}") from err
    return open_envelope(env)
