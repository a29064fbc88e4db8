"""picows's records about a client's broken frames are the client's errors, not ours.

picows logs every RFC 6455 violation its frame parser finds (a reserved opcode, an
unmasked frame, a bad close code) at ERROR before it closes the connection with 1002.
Those are bad input from a peer, like an undecodable payload (4002), which the gateway
does not log as an error: one hostile client must not page the on-call or flood the
log. ``PeerProtocolErrors`` turns them into INFO records, which the ``picows`` logger
drops at its usual level (WARNING, set in ``Gateway.start``). Records of a failure in
the server itself (an exception from a listener callback) keep their level.
"""

from __future__ import annotations

import logging

#: The format string of picows's record for a ``WSProtocolError`` from its parser.
_PARSER_ERROR = "WS parser error"


class PeerProtocolErrors(logging.Filter):
    """Lower picows's parser-error records to INFO (and drop them if INFO is off)."""

    def __init__(self, logger: logging.Logger) -> None:
        super().__init__()
        self.logger = logger

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR and isinstance(record.msg, str) \
                and record.msg.startswith(_PARSER_ERROR):
            record.levelno, record.levelname = logging.INFO, "INFO"
            return self.logger.isEnabledFor(logging.INFO)
        return True


def quiet_peer_protocol_errors(logger: logging.Logger | None = None) -> None:
    """Install ``PeerProtocolErrors`` on the ``picows`` logger (once)."""
    logger = logger or logging.getLogger("picows")
    if not any(isinstance(f, PeerProtocolErrors) for f in logger.filters):
        logger.addFilter(PeerProtocolErrors(logger))
