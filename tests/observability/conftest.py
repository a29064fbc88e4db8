"""Fixtures for the observability tests: a clean environment, captured JSON logs, spans."""

from __future__ import annotations

import io
import json
import logging
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import structlog
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from observability import configure_logging, configure_tracing
from observability import logging as obs_logging


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No OTEL_*/GREENROOM_* variable from the developer's shell may steer a test."""
    for name in list(os.environ):
        if name.startswith("OTEL_") or name in ("GREENROOM_TRACE_FILE", "GREENROOM_LOG_FORMAT"):
            monkeypatch.delenv(name)


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """Put the root logger and structlog back as they were after the test."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    config = structlog.get_config()
    yield
    obs_logging._reset()
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.configure(**config)


@pytest.fixture
def log_lines(restore_logging: None) -> Callable[[], list[dict[str, Any]]]:
    """JSON logging at DEBUG into a buffer; call the fixture's value to parse what was logged."""
    buf = io.StringIO()
    configure_logging(json=True, level="DEBUG", stream=buf)

    def lines() -> list[dict[str, Any]]:
        return [json.loads(line) for line in buf.getvalue().splitlines() if line.strip()]

    return lines


@pytest.fixture
def spans() -> InMemorySpanExporter:
    """Tracing configured with an in-memory exporter (and nothing from the environment)."""
    exporter = InMemorySpanExporter()
    configure_tracing("greenroom-test", exporter=exporter)
    return exporter
