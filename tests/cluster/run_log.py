"""Reading a ``greenroom run`` subprocess's JSON log (GREENROOM_LOG_FORMAT=json)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any


def read_until(proc: subprocess.Popen, event: str
               ) -> tuple[dict[str, Any] | None, list[dict[str, Any]], list[str]]:
    """Read ``proc``'s stdout up to the first log event named ``event``.

    Returns that event (None if the output ended first), every JSON event read (in
    order) and every line read (for the failure message). Non-JSON lines are kept in
    the lines only. Bound the wait with the caller's own timeout (e.g. pytest's)."""
    lines: list[str] = []
    events: list[dict[str, Any]] = []
    for line in iter(proc.stdout.readline, ""):
        lines.append(line)
        try:
            parsed = json.loads(line)
        except ValueError:
            continue
        if not isinstance(parsed, dict):
            continue
        events.append(parsed)
        if parsed.get("event") == event:
            if "seed_file" in parsed and "bot_token" not in parsed:
                # no record carries the token: read it where an operator would
                parsed["bot_token"] = json.loads(Path(parsed["seed_file"]).read_text())["token"]
            return parsed, events, lines
    return None, events, lines
