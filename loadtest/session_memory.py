"""Where an idle gateway session's memory goes: tracemalloc over N identified sessions.

The gateway runs in this process (SQLite in a temp dir, limits off, tracemalloc on);
the load generator's picows clients (``loadtest/gateway_load.py`` workers) identify N
sessions from other processes and stay idle. Prints the RSS delta per session and the
top allocation sites (by file and line) per session, then one JSON line.

    .venv/bin/python loadtest/session_memory.py --sessions 2000
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import sys
import tempfile
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from loadtest.gateway_load import seed_users, start_gateway_workers  # noqa: E402
from loadtest.ws_baseline.load import rss_bytes, stop_workers  # noqa: E402


async def measure(sessions: int, top: int, frames: int, profile: bool) -> dict:
    import os

    from gateway.limits import UNLIMITED
    from gateway.server import Gateway
    from storage.settings import StorageSettings
    from storage.sqlite import SqliteStorage

    directory = tempfile.mkdtemp(prefix="greenroom-memory-")
    seeded = await seed_users(directory, sessions, min(sessions, 100))
    storage = SqliteStorage(StorageSettings(sqlite_path=seeded.db, sqlite_synchronous="OFF"))
    await storage.open()
    if not profile:
        tracemalloc.start(frames)
    gateway = Gateway(storage, limits=UNLIMITED)
    await gateway.start()
    workers = None
    try:
        await asyncio.sleep(0.5)
        gc.collect()
        rss0 = rss_bytes(os.getpid())
        before = None if profile else tracemalloc.take_snapshot()
        traced0 = tracemalloc.get_traced_memory()[0]
        profiler = None
        if profile:  # where the event loop's time goes during the identifies instead
            import cProfile

            profiler = cProfile.Profile()
            profiler.enable()
        workers, rate, _, failed = await start_gateway_workers(
            gateway.gateway_url, seeded.tokens, min(sessions, 100), 2, 120.0)
        if profiler is not None:
            import pstats

            profiler.disable()
            print(f"{workers.connected:,} sessions: {rate:,.0f} identifies/s under cProfile")
            pstats.Stats(profiler).sort_stats("tottime").print_stats(top)
            pstats.Stats(profiler).sort_stats("cumulative").print_stats(top)
            pstats.Stats(profiler).print_callers("sqlite.py.*\\(_rows\\)")
            return {"sessions": workers.connected, "identify_per_s": round(rate)}
        await asyncio.sleep(2.0)
        gc.collect()
        rss1, after = rss_bytes(os.getpid()), tracemalloc.take_snapshot()
        traced1 = tracemalloc.get_traced_memory()[0]
        n = workers.connected
        print(f"{n:,} sessions ({failed} failed), {rate:,.0f} identifies/s under tracemalloc")
        print(f"RSS delta {(rss1 - rss0) / n / 1024:.2f} KiB/session, traced by Python "
              f"{(traced1 - traced0) / n / 1024:.2f} KiB/session")
        key = "traceback" if frames > 1 else "lineno"
        stats = after.compare_to(before, key)
        for stat in stats[:top]:
            if stat.size_diff <= 0:
                continue
            where = " <- ".join(f"{Path(f.filename).name}:{f.lineno}"
                                for f in stat.traceback[:frames])
            print(f"{stat.size_diff / n:>8.0f} B/session {stat.count_diff / n:>6.2f} blocks"
                  f"  {where}")
        return {"sessions": n, "rss_bytes_per_session": round((rss1 - rss0) / n),
                "traced_bytes_per_session": round((traced1 - traced0) / n)}
    finally:
        if workers is not None:
            await stop_workers(workers)
        await gateway.stop()
        await storage.close()
        tracemalloc.stop()


def main() -> None:
    import uvloop

    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=2000)
    parser.add_argument("--top", type=int, default=30, help="allocation sites to list")
    parser.add_argument("--frames", type=int, default=1, help="traceback depth per site")
    parser.add_argument("--profile", action="store_true",
                        help="cProfile the identifies instead of tracing memory")
    args = parser.parse_args()
    if not 1 <= args.sessions <= 10_000 or not 1 <= args.frames <= 10:
        parser.error("keep it bounded: 1..10,000 sessions, 1..10 frames")
    print(json.dumps(uvloop.run(measure(args.sessions, args.top, args.frames,
                                              args.profile))))


if __name__ == "__main__":
    main()
