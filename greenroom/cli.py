"""``greenroom``: run a node tree, manage storage.

    greenroom run [--nodes N|auto] [--host 127.0.0.1] [--port 8080 --rest-port 8081]
                  [--join LEADER_HOST:ADMIN_PORT] [--name NAME] [--admin-port P]
                  [--ingress-port 8082] [--operator-port 9464 --operator-host 127.0.0.1]
                  (every node serves the gateway on the same ports, and the internal
                   ingress when GREENROOM_INGRESS_SECRET(_FILE) is set; node i serves
                   /metrics, /healthz and /readyz on the operator port + i - 1; prints
                   the URLs and a seeded bot token)
    greenroom storage migrate [...]
    greenroom gateway [--port 8080 --rest-port 8081 --seed]   (one process)
    greenroom admin create-bot NAME [--guild NAME] | create-user | create-guild | add-member
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import socket
import sys
from pathlib import Path

from greenroom.stop_signals import StopSignals
from observability import configure_logging, configure_tracing, get_logger


def _seed_file(settings) -> Path:
    if settings.backend == "sqlite":
        return Path(settings.sqlite_path).with_suffix(".seed.json")
    return Path("data") / f"greenroom-{settings.keyspace}.seed.json"


async def _ensure_seeded(settings) -> dict:
    """A bot, its token, a guild and a channel: the ones recorded in the seed file when
    storage still knows them, new ones (recorded) otherwise. Idempotent across runs."""
    from gateway.seed import seed
    from storage import make_storage
    from storage.snowflake import SnowflakeGenerator

    path = _seed_file(settings)
    storage = make_storage(settings)
    await storage.open()
    try:
        try:
            known = json.loads(path.read_text())
            if (await storage.user_id_for_token(known["token"]) == known["user_id"]
                    and await storage.get_guild(known["guild_id"]) is not None
                    and await storage.get_channel(known["channel_id"]) is not None):
                return known
        except (OSError, ValueError, KeyError, TypeError):
            pass
        seeded = await seed(storage, SnowflakeGenerator(settings.snowflake_worker,
                                                        settings.snowflake_process))
        known = {"user_id": seeded.user_id, "token": seeded.token,
                 "guild_id": seeded.guild_id, "channel_id": seeded.channel_id}
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(known))
        path.chmod(0o600)
        return known
    finally:
        await storage.close()


#: ``--nodes auto`` starts at most this many node processes on one host: the data plane
#: is a full mesh (N x (N - 1) links) and each node holds its own interpreter, actor
#: system and storage connection; more than this is a choice to make with ``--nodes N``.
AUTO_NODES_MAX = 8


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity: a container's or ``taskset``'s
    limit, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # no affinity on this platform
        return os.cpu_count() or 1


def parse_nodes(text: str) -> int | str:
    """``--nodes``: a count, or ``auto``."""
    if text.strip().lower() == "auto":
        return "auto"
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'auto', got {text!r}") from None


def auto_nodes(cpus: int, backend: str) -> tuple[int, str]:
    """How many node processes ``--nodes auto`` starts on ``backend``, and why (printed
    at start-up). Measured with ``make bench-cluster`` (README, *Every core*):

    - SQLite: 1. The file has one write lock: on a quiet host 2 writer processes
      committed 0.78-0.82x the messages/s of 1 with 32 messages per commit (about 1x
      with one), and a commit's p99 rose 5-10x (a waiting writer polls for the lock).
      ``--nodes N`` still runs N on it.
    - Cassandra/ScyllaDB: one per usable CPU but one, which stays for the rest of the
      host (clients, the OS), 1 to ``AUTO_NODES_MAX``: a node pays off with a core of
      its own (CPU accounting projects 1.6-1.8x for 2), while 2 nodes sharing their
      cores with other work delivered less than 1 and fell into heartbeat-suspicion
      churn."""
    if backend == "sqlite":
        return 1, ("auto on SQLite: its one write lock makes 2 writers slower than 1; "
                   "--nodes N to use N cores")
    nodes = max(1, min(cpus - 1, AUTO_NODES_MAX))
    why = f"auto: {cpus} usable CPU{'s' if cpus != 1 else ''}"
    if cpus > 1:
        why += ", one left for the rest of the host"
    if cpus - 1 > AUTO_NODES_MAX:
        why += f", at most {AUTO_NODES_MAX}"
    return nodes, why


def _run(args: argparse.Namespace) -> int:
    import uvloop

    from cluster.launcher import Cluster
    from gateway.ingress import secret_from_environment
    from gateway.serve import GatewaySettings
    from storage.schema import migrate
    from storage.settings import load_settings

    configure_logging()
    configure_tracing("greenroom")
    log = get_logger("greenroom.run")
    try:
        settings = load_settings(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:  # read here to fail fast; each node reads it again from its environment
        ingress_secret = secret_from_environment()
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.nodes == "auto":
        args.nodes, nodes_why = auto_nodes(usable_cpus(), settings.backend)
    else:
        nodes_why = "set by --nodes" if args.nodes_given else "set by GREENROOM_NODES"
    if settings.backend == "sqlite":  # node processes must open the same file
        Path(settings.sqlite_path).parent.mkdir(parents=True, exist_ok=True)
        settings = settings.with_(sqlite_path=str(Path(settings.sqlite_path).resolve()))
    operator_ports = [(args.operator_host, args.operator_port + i, "--operator-port")
                      for i in range(args.nodes)] if args.operator_port > 0 else []
    for host, port, flag in [(args.host, args.port, "--port"),
                             (args.host, args.rest_port, "--rest-port"), *operator_ports]:
        if port and not _can_listen(host, port, flag):
            return 2
    ingress: dict = {}  # GatewaySettings' ingress fields
    if ingress_secret:
        # one port for the host's nodes (SO_REUSEPORT, as the gateway's; 0 is chosen
        # once, and held, by the launcher)
        port = args.ingress_port
        if port and not _can_listen(args.ingress_host, port, "--ingress-port"):
            return 2
        ingress = {"ingress": True, "ingress_host": args.ingress_host, "ingress_port": port}
    migrate(settings)  # before any node opens storage
    seeded = uvloop.run(_ensure_seeded(settings))
    # what every node serves: one typed settings object (gateway/serve.py, the
    # composition root greenroom gateway uses too), as plain options for the nodes
    gateway = GatewaySettings.from_args(args, settings, rate_limits=not args.no_rate_limits,
                                        **ingress).options()
    if args.no_rate_limits:
        log.warning("REST and IDENTIFY rate limits are off (--no-rate-limits: load tests)")
    if not os.environ.get("GREENROOM_CLUSTER_SECRET"):
        # one per run; in the environment, so every process of the tree has it
        os.environ["GREENROOM_CLUSTER_SECRET"] = secrets.token_hex(32)
    secret = os.environ["GREENROOM_CLUSTER_SECRET"].encode()
    # node i serves /metrics, /healthz, /readyz on operator_port + i - 1 (0: any free)
    operator = ({"host": args.operator_host, "port": args.operator_port}
                if args.operator_port >= 0 else None)  # -1: no operator port
    cluster = Cluster(args.nodes, secret, host=args.host,
                      admin_port=args.admin_port or None, gateway=gateway,
                      settings={"operator": operator},
                      name=args.name, join=args.join or None, services=args.service)
    stop = StopSignals()  # from here a Ctrl-C or SIGTERM stops the tree (below)
    try:
        members = cluster.start()
    except Exception as exc:
        # e.g. a node's NodeStartError (an unimportable --service): one clear line
        log.error("the node tree did not start; stopping it", error=str(exc))
        cluster.stop()
        print(f"error: the nodes did not start: {_first_line(exc)}", file=sys.stderr)
        return 1
    except BaseException:
        log.error("the node tree did not start; stopping it")
        cluster.stop()
        raise
    for name, (address, pid) in sorted(members.nodes.items()):
        log.info("node serving", node=name, pid=pid, data_plane=f"{address[0]}:{address[1]}",
                 **members.info.get(name, {}))
    # Every node serves the same ports (SO_REUSEPORT), so any node's URLs are the URLs.
    served = next((members.info[n] for n in cluster.node_names if n in members.info), {})
    # Never the bot token in a log record (logs are shipped and kept): the banner below
    # shows it to the operator on a terminal, and the seed file (mode 0600) holds it.
    log.info("gateway serving", gateway_url=served.get("gateway"),
             rest_url=served.get("rest"), ingress_url=served.get("ingress"),
             seed_file=str(_seed_file(settings)),
             guild_id=seeded["guild_id"], channel_id=seeded["channel_id"],
             storage=settings.backend)
    if os.environ.get("GREENROOM_LOG_FORMAT", "").lower() != "json":
        print(f"\n  gateway    {served.get('gateway')}/?v=10&encoding=json"
              f"\n  REST       {served.get('rest')}"
              + (f"\n  ingress    {served['ingress']}" if served.get("ingress") else "")
              + f"\n  bot token  {seeded['token']}"
              f"\n  guild {seeded['guild_id']}  channel {seeded['channel_id']}"
              f"  (storage: {settings.backend})"
              f"\n  nodes      {len(members.nodes)}  ({nodes_why})", flush=True)
        for name in cluster.node_names:
            url = members.info.get(name, {}).get("operator")
            if url:
                print(f"  operator   {url}/metrics /healthz /readyz  ({name})", flush=True)
        print(flush=True)
    log.info("greenroom is running", nodes=len(members.nodes), nodes_why=nodes_why,
             supervisor_pid=os.getpid(),
             admin_port=cluster.admin_port, stop="Ctrl-C")
    try:
        stop.wait()
    finally:
        log.info("stopping")
        cluster.stop()
        log.info("stopped")
    return 0


def _can_listen(host: str, port: int, flag: str) -> bool:
    """Whether ``host:port`` can be bound, asked before any process starts (so a taken
    port is one clear line naming ``flag``, printed here, not a node's failure)."""
    try:
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
    except OSError as exc:
        print(f"error: cannot listen on {host}:{port}: {exc.strerror}"
              f" (choose another with {flag})", file=sys.stderr)
        return False
    return True


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def _storage(args: argparse.Namespace, rest: list[str]) -> int:
    from storage.cli import main as storage_main

    return storage_main(rest)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="greenroom", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    from observability.operator import HELP as OPERATOR_HELP

    run = sub.add_parser("run", help="start a supervised tree of node processes",
                         epilog=OPERATOR_HELP,
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    run.add_argument("--nodes", type=parse_nodes, default=None,
                     help="node processes on this host, or 'auto': 1 on SQLite, else one "
                          f"per usable CPU but one, 1 to {AUTO_NODES_MAX} (default: "
                          "GREENROOM_NODES, else auto)")
    run.add_argument("--admin-port", type=int, default=0,
                     help="Thespian's admin port (default: a free one)")
    run.add_argument("--join", default=os.environ.get("GREENROOM_JOIN", ""),
                     metavar="LEADER_HOST:ADMIN_PORT",
                     help="join the cluster whose leader host's admin listens there "
                          "(its Thespian convention); default: lead a cluster of one host")
    run.add_argument("--name", default=os.environ.get("GREENROOM_NAME"),
                     help="this host's name in the cluster, prefixed to its node names "
                          "(NAME-n1, ...); unique per host. Default: the --host address "
                          "when it is not loopback or --join is given, else none (n1, ...)")
    from gateway.serve import add_arguments as add_serving_arguments

    shared = "shared by every node"
    add_serving_arguments(run, ("host", "port", "rest_port", "max_connections",
                                "connections_per_ip", "operator_port", "operator_host",
                                "ingress_port", "ingress_host"),
                          notes={"port": shared, "rest_port": shared, "ingress_port": shared,
                                 "operator_port": "node i serves this + i - 1"})
    run.add_argument("--no-rate-limits", action="store_true",
                     help="turn the REST, IDENTIFY and per-address connection rate limits "
                          "off (load tests only)")
    run.add_argument("--service", action="append", default=[], metavar="NAME=MODULE.CLASS",
                     help="an actor every node starts under its root supervisor, at global "
                          "name NAME (repeatable)")
    from storage.settings import add_arguments as add_storage_arguments

    add_storage_arguments(run)
    from gateway.standalone import add_parsers as add_gateway_parsers

    add_gateway_parsers(sub)
    sub.add_parser("storage", help="storage commands (greenroom storage migrate --help)",
                   add_help=False)
    args, rest = parser.parse_known_args(argv)
    if args.command == "run":
        if rest:
            parser.error(f"unrecognized arguments: {' '.join(rest)}")
        args.nodes_given = args.nodes is not None
        if args.nodes is None:
            try:
                args.nodes = parse_nodes(os.environ.get("GREENROOM_NODES", "auto"))
            except argparse.ArgumentTypeError as exc:
                parser.error(f"GREENROOM_NODES: {exc}")
        if args.nodes != "auto" and args.nodes < 1:
            parser.error("--nodes must be at least 1")
        if args.max_connections < 1 or not args.connections_per_ip > 0:
            parser.error("--max-connections and --connections-per-ip must be positive")
        services = []
        for spec in args.service:
            name, _, path = spec.partition("=")
            if not name or "." not in path:
                parser.error(f"--service {spec!r}: expected NAME=MODULE.CLASS")
            services.append((name, path))
        args.service = tuple(services)
        if args.join:
            from cluster.launcher import parse_join

            try:
                parse_join(args.join)
            except ValueError as exc:
                parser.error(f"--join: {exc}")
            if not os.environ.get("GREENROOM_CLUSTER_SECRET"):
                # a random one would not be the leader's: its frames would be refused
                parser.error("--join needs GREENROOM_CLUSTER_SECRET: set the same secret "
                             "on every host of the cluster")
        if args.name is None:
            loopback = args.host.startswith("127.") or args.host in ("::1", "localhost")
            args.name = args.host if args.join or not loopback else ""
        elif not args.name or not all(c.isalnum() or c in "-_." for c in args.name):
            parser.error(f"--name {args.name!r}: use letters, digits, '-', '_' and '.'")
        return _run(args)
    if args.command in ("gateway", "admin"):
        from gateway.standalone import run_command

        if rest:
            parser.error(f"unrecognized arguments: {' '.join(rest)}")
        return run_command(args)
    return _storage(args, rest)


if __name__ == "__main__":
    sys.exit(main())
