"""What only the cyclic GC could free: a hot path that leaves reference cycles makes the
collector walk them, in pauses of tens of ms on a busy node (loadtest/GATEWAY_BENCH.md,
"Ninth session")."""

from __future__ import annotations

import gc
import types


def cyclic_garbage_of(package: str) -> int:
    """Collect now; how many of the objects that only the cyclic GC could free are
    ``package``'s (their class's or function's module, a frame of its code). Other
    threads of the test process may leave garbage of their own meanwhile: not counted."""

    def ours(obj) -> bool:
        if isinstance(obj, types.FunctionType):
            return obj.__module__.startswith(package)
        if isinstance(obj, types.FrameType):
            return f"/{package}/" in obj.f_code.co_filename
        return type(obj).__module__.startswith(package)

    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        gc.collect()
        return sum(1 for obj in gc.garbage if ours(obj))
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
