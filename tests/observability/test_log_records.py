"""What every record carries: its own time, its exception as fields, no secret."""

from __future__ import annotations

import io
import json
import logging
import time
from datetime import datetime

import pytest

from observability import configure_logging, get_logger


def _stamp(line: dict) -> float:
    return datetime.fromisoformat(line["timestamp"].replace("Z", "+00:00")).timestamp()


def test_a_stdlib_record_is_stamped_when_it_was_made_not_when_written(log_lines) -> None:
    # a record formatted late (as Thespian's logging process formats other processes')
    record = logging.LogRecord("Thespian.test", logging.INFO, __file__, 1, "made earlier",
                               (), None)
    record.created -= 100.0
    logging.getLogger().handle(record)
    get_logger("greenroom.test").info("made now")
    earlier, now = log_lines()
    assert abs(_stamp(earlier) - record.created) < 0.001
    assert abs(_stamp(now) - time.time()) < 5


def test_exceptions_arrive_as_type_message_and_traceback(log_lines) -> None:
    try:
        {}["missing"]
    except KeyError as err:
        get_logger("greenroom.test").exception("ours failed")
        logging.getLogger("Thespian.test").error("theirs failed", exc_info=True)
        get_logger("greenroom.test").warning("given the error", exc_info=err)
    for line in log_lines():
        assert line["exc_type"] == "KeyError" and line["exc_message"] == "'missing'"
        assert line["exception"].startswith("Traceback (most recent call last):")
        assert "{}[\"missing\"]" in line["exception"]


def test_an_exception_that_crossed_a_process_keeps_its_text(log_lines) -> None:
    """Thespian pickles ``exc_text`` (a traceback cannot be pickled) and drops ``exc_info``."""
    record = logging.LogRecord("greenroom.node", logging.ERROR, __file__, 1, "remote failure",
                               (), None)
    record.exc_text = ('Traceback (most recent call last):\n  File "x.py", line 1, in f\n'
                       "ValueError: bad value")
    logging.getLogger().handle(record)
    (line,) = log_lines()
    assert line["exc_type"] == "ValueError" and line["exc_message"] == "bad value"
    assert line["exception"] == record.exc_text


def test_exception_fields_in_the_console_format(restore_logging) -> None:
    buf = io.StringIO()
    configure_logging(json=False, stream=buf)
    try:
        raise OSError("disk on fire")
    except OSError:
        logging.getLogger("greenroom.storage").exception("write failed")
    out = buf.getvalue()
    assert "exc_type=OSError" in out and "Traceback (most recent call last)" in out
    assert "OSError: disk on fire" in out


@pytest.mark.parametrize("key", ["token", "bot_token", "Authorization", "cluster_secret",
                                 "password"])
def test_values_under_secret_keys_are_redacted(log_lines, key: str) -> None:
    get_logger("greenroom.test").info("ours", **{key: "s3cr3t"}, guild=3)
    logging.getLogger("aiohttp.test").info("theirs", extra={key: "s3cr3t"})
    get_logger("greenroom.test").info("nested", headers={key: "s3cr3t", "Accept": "x"},
                                      items=[{key: "s3cr3t"}])
    ours, theirs, nested = log_lines()
    assert ours[key] == theirs[key] == "[redacted]" and ours["guild"] == 3
    assert nested["headers"] == {key: "[redacted]", "Accept": "x"}
    assert nested["items"] == [{key: "[redacted]"}]
    assert "s3cr3t" not in json.dumps([ours, theirs, nested])


def test_redaction_in_the_console_format(restore_logging) -> None:
    buf = io.StringIO()
    configure_logging(json=False, stream=buf)
    get_logger("greenroom.test").info("login", token="s3cr3t")
    assert "s3cr3t" not in buf.getvalue() and "[redacted]" in buf.getvalue()
