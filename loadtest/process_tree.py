"""The processes of one ``greenroom run`` tree, found by a tag in their environment.

Thespian's admin detaches from ``greenroom run``, so the node tree is not a process
subtree of it; every process of the tree does inherit its environment. A run started
with ``VARIABLE=tag`` in its environment is therefore found whole by ``tagged``, to be
killed or checked for leftovers (the abuse benchmarks and the tests both do).
"""

from __future__ import annotations

from pathlib import Path


def tagged(variable: str, tag: str) -> set[int]:
    """Pids whose environment carries ``variable=tag``."""
    needle = f"{variable}={tag}".encode()
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if needle in (entry / "environ").read_bytes().split(b"\0"):
                    found.add(int(entry.name))
            except OSError:
                continue
    return found


def alive(pid: int) -> bool:
    """The process exists and is not a zombie (an exited child not yet reaped)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
