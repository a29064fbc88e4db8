"""``greenroom``: run a node tree, manage storage.

    greenroom run [--nodes N] [--host 127.0.0.1]
    greenroom storage migrate [...]
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import sys
import threading

from observability import configure_logging, configure_tracing, get_logger


def _run(args: argparse.Namespace) -> int:
    from cluster.launcher import Cluster

    configure_logging()
    configure_tracing("greenroom")
    log = get_logger("greenroom.run")
    secret = os.environ.get("GREENROOM_CLUSTER_SECRET", "").encode() or secrets.token_bytes(32)
    cluster = Cluster(args.nodes, secret, host=args.host,
                      admin_port=args.admin_port or None)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    members = cluster.start()
    for name, (address, pid) in sorted(members.nodes.items()):
        log.info("node serving", node=name, pid=pid, data_plane=f"{address[0]}:{address[1]}")
    log.info("greenroom is running", nodes=len(members.nodes), supervisor_pid=os.getpid(),
             admin_port=cluster.admin_port, stop="Ctrl-C")
    try:
        stop.wait()
    finally:
        log.info("stopping")
        cluster.stop()
        log.info("stopped")
    return 0


def _storage(args: argparse.Namespace, rest: list[str]) -> int:
    from storage.cli import main as storage_main

    return storage_main(rest)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="greenroom", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="start a supervised tree of node processes")
    run.add_argument("--nodes", type=int, default=int(os.environ.get("GREENROOM_NODES", "1")),
                     help="node processes on this host (default 1)")
    run.add_argument("--host", default=os.environ.get("GREENROOM_HOST", "127.0.0.1"),
                     help="interface that every listener binds (default loopback)")
    run.add_argument("--admin-port", type=int, default=0,
                     help="Thespian's admin port (default: a free one)")
    sub.add_parser("storage", help="storage commands (greenroom storage migrate --help)",
                   add_help=False)
    args, rest = parser.parse_known_args(argv)
    if args.command == "run":
        if rest:
            parser.error(f"unrecognized arguments: {' '.join(rest)}")
        if args.nodes < 1:
            parser.error("--nodes must be at least 1")
        return _run(args)
    return _storage(args, rest)


if __name__ == "__main__":
    sys.exit(main())
