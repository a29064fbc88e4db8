"""The far side of the cross-process test: an "actor" in another OS process.

Reads one msgpack envelope from stdin (a pipe), handles it inside a span whose parent is
the envelope's trace context, logs a JSON line to stderr, and answers with an envelope
carrying its own span's context on stdout. Spans go to ``GREENROOM_TRACE_FILE``.
"""

from __future__ import annotations

import sys

import msgpack

from observability import (
    configure_logging,
    configure_tracing,
    get_logger,
    inject_current,
    span_from,
)


def main() -> None:
    configure_logging(json=True)
    configure_tracing("greenroom-child")
    envelope = msgpack.unpackb(sys.stdin.buffer.read())
    with span_from(envelope["trace"], "actor.b.receive", **{"greenroom.actor": envelope["to"]}):
        get_logger("greenroom.child").info("received", type=envelope["type"])
        reply = {
            "to": envelope["from"],
            "from": envelope["to"],
            "type": "ack",
            "body": {},
            "trace": inject_current(),
        }
    sys.stdout.buffer.write(msgpack.packb(reply))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
