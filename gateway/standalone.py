"""Run the gateway and REST API in this process, and the operator's admin commands.

``greenroom gateway`` serves one process (uvloop, storage from the usual settings,
schema migrated first), with logging, tracing and metrics configured as ``greenroom
run`` configures its nodes (``GREENROOM_LOG_*``, ``OTEL_*``); with ``--seed`` it creates a bot, a guild and a channel and
prints the bot token and the URLs, ready for a client library. ``greenroom admin ...``
creates bots, users, guilds and channels in the configured storage.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import signal
import sys
from collections.abc import Sequence

from gateway.serve import GatewaySettings
from gateway.serve import add_arguments as add_serving_arguments
from observability import configure_logging, configure_tracing, get_logger
from storage import make_storage
from storage.schema import migrate
from storage.settings import StorageSettings, add_arguments, load_settings
from storage.snowflake import SnowflakeGenerator


def _ids(settings: StorageSettings) -> SnowflakeGenerator:
    return SnowflakeGenerator(settings.snowflake_worker, settings.snowflake_process)


async def serve(serving: GatewaySettings, seed_bot: bool, operator_port: int = 9464,
                operator_host: str = "127.0.0.1") -> None:
    """Serve until SIGINT/SIGTERM. The internal ingress runs (on loopback) when
    ``GREENROOM_INGRESS_SECRET`` is set; the operator port (``/metrics``, ``/healthz``,
    ``/readyz``) on ``operator_host:operator_port`` (a negative port: not at all)."""
    from gateway.ingress import secret_from_environment
    from gateway.observe import watch_gateway
    from gateway.seed import seed
    from gateway.serve import start_gateway
    from observability.operator import OperatorServer

    settings = serving.storage
    migrate(settings)
    ingress_secret = secret_from_environment()  # GREENROOM_INGRESS_SECRET(_FILE)
    # the composition root greenroom run's nodes use too (gateway/serve.py)
    served = await start_gateway(dataclasses.replace(serving,
                                                     ingress=ingress_secret is not None))
    gateway, storage = served.gateway, served.storage
    operator = OperatorServer(operator_host, operator_port) if operator_port >= 0 else None
    unwatch: list = []
    try:
        if operator is not None:
            unwatch = watch_gateway(gateway, operator)
            await operator.start()
        print(f"gateway   {gateway.gateway_url}/?v=10&encoding=json", flush=True)
        print(f"REST      {gateway.rest_url}", flush=True)
        if ingress_secret:
            print(f"ingress   {gateway.ingress_url}", flush=True)
        if operator is not None:
            print(f"operator  {operator.url}/metrics /healthz /readyz", flush=True)
        # never the token or a secret in a record (the token is printed above, to a
        # terminal, with --seed only)
        get_logger("greenroom.gateway").info(
            "gateway serving", gateway_url=gateway.gateway_url, rest_url=gateway.rest_url,
            ingress_url=gateway.ingress_url if ingress_secret else None,
            operator=operator.url if operator is not None else None,
            storage=settings.backend)
        if seed_bot:
            seeded = await seed(storage, _ids(settings))
            print(f"bot token {seeded.token}", flush=True)
            print(f"guild {seeded.guild_id}  channel {seeded.channel_id}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
    finally:
        if operator is not None:
            await operator.stop()
        for stop_watching in unwatch:
            stop_watching()
        await served.stop()


async def _admin(args: argparse.Namespace, settings: StorageSettings) -> None:
    from gateway.seed import add_member, create_guild, create_user

    migrate(settings)
    storage = make_storage(settings)
    await storage.open()
    try:
        ids = _ids(settings)
        if args.admin == "create-bot":
            user_id, token = await create_user(storage, ids, args.name, bot=True,
                                               privileged_intents=args.privileged_intents)
            print(f"user {user_id}\ntoken {token}")
            if args.guild:
                guild_id, channel_id = await create_guild(storage, ids, args.guild, user_id)
                print(f"guild {guild_id}\nchannel {channel_id}")
        elif args.admin == "create-user":
            user_id, token = await create_user(storage, ids, args.name, bot=False)
            print(f"user {user_id}\ntoken {token}")
        elif args.admin == "create-guild":
            guild_id, channel_id = await create_guild(storage, ids, args.name, args.owner,
                                                      args.channel)
            print(f"guild {guild_id}\nchannel {channel_id}")
        elif args.admin == "add-member":
            await add_member(storage, args.guild, args.user)
            print("ok")
    finally:
        await storage.close()


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Add ``gateway`` and ``admin`` to the ``greenroom`` command."""
    from observability.operator import HELP as OPERATOR_HELP

    gw = sub.add_parser("gateway", help="serve the gateway and REST API in this process",
                        epilog=OPERATOR_HELP,
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    # as greenroom run's, but --host, --port and --rest-port read no environment
    add_serving_arguments(gw, ("host", "port", "rest_port"), environment=False)
    add_serving_arguments(gw, ("ingress_port", "operator_port", "operator_host"),
                          notes={"ingress_port": "on 127.0.0.1", "operator_port": "-1: none"})
    gw.add_argument("--seed", action="store_true",
                    help="create a bot, guild and channel and print the token")
    add_arguments(gw)
    admin = sub.add_parser("admin", help="create bots, users, guilds, members")
    cmds = admin.add_subparsers(dest="admin", required=True)
    bot = cmds.add_parser("create-bot", help="a bot user and its token")
    bot.add_argument("name")
    bot.add_argument("--guild", help="also create a guild of this name (with #general)")
    bot.add_argument("--no-privileged-intents", dest="privileged_intents",
                     action="store_false",
                     help="its application may not ask for GUILD_PRESENCES, GUILD_MEMBERS "
                          "or MESSAGE_CONTENT (IDENTIFY with them is closed 4014); by "
                          "default it may: the operator owns its bots")
    user = cmds.add_parser("create-user", help="a (non-bot) user and its token")
    user.add_argument("name")
    guild = cmds.add_parser("create-guild", help="a guild with one text channel")
    guild.add_argument("name")
    guild.add_argument("--owner", type=int, required=True)
    guild.add_argument("--channel", default="general")
    member = cmds.add_parser("add-member", help="add a user to a guild")
    member.add_argument("--guild", type=int, required=True)
    member.add_argument("--user", type=int, required=True)
    for p in (bot, user, guild, member):
        add_arguments(p)


def run_command(args: argparse.Namespace) -> int:
    try:
        settings = load_settings(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    import uvloop

    if args.command == "gateway":
        from gateway.ingress import secret_from_environment

        # as greenroom run's node processes: structlog (GREENROOM_LOG_FORMAT/_LEVEL),
        # OpenTelemetry from OTEL_* (traces and metrics)
        configure_logging()
        configure_tracing("greenroom-gateway")
        try:
            secret_from_environment()  # fail fast, with the variable named
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        with contextlib.suppress(KeyboardInterrupt):
            uvloop.run(serve(GatewaySettings.from_args(args, settings), args.seed,
                             args.operator_port, args.operator_host))
        return 0
    uvloop.run(_admin(args, settings))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="greenroom")
    add_parsers(parser.add_subparsers(dest="command", required=True))
    return run_command(parser.parse_args(argv))
