"""Capture this process's log lines as a node writes them (structlog JSON), for tests
that assert on what an SRE would read."""

from __future__ import annotations

import contextlib
import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import structlog

from observability import configure_logging
from observability import logging as obs_logging


class Captured:
    def __init__(self, buf: io.StringIO) -> None:
        self._buf = buf

    def text(self) -> str:
        return self._buf.getvalue()

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.text().splitlines() if line.strip()]

    def events(self, event: str) -> list[dict[str, Any]]:
        return [line for line in self.lines() if line.get("event") == event]


@contextlib.contextmanager
def json_logs(level: str = "DEBUG") -> Iterator[Captured]:
    """JSON lines at ``level`` into a buffer; logging is put back as it was after."""
    root = logging.getLogger()
    handlers, old_level = list(root.handlers), root.level
    config = structlog.get_config()
    buf = io.StringIO()
    configure_logging(json=True, level=level, stream=buf)
    try:
        yield Captured(buf)
    finally:
        obs_logging._reset()
        root.handlers[:] = handlers
        root.setLevel(old_level)
        structlog.configure(**config)
