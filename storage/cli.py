"""``python -m storage migrate|status`` (wired later as ``greenroom storage ...``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from storage.schema import LATEST_VERSION, applied_versions, migrate
from storage.settings import add_arguments, load_settings


def build_parser(prog: str = "python -m storage") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="greenroom storage administration")
    add_arguments(parser)
    sub = parser.add_subparsers(dest="command", required=True)
    # The flags are accepted before or after the subcommand.
    add_arguments(sub.add_parser(
        "migrate", help="create the keyspace/database and apply pending migrations"),
        suppress=True)
    add_arguments(sub.add_parser(
        "status", help="show the backend and the applied schema versions"), suppress=True)
    return parser


def _where(settings: object) -> str:
    if settings.backend == "sqlite":  # type: ignore[attr-defined]
        return f"sqlite:{settings.sqlite_path}"  # type: ignore[attr-defined]
    hosts = ",".join(settings.hosts)  # type: ignore[attr-defined]
    return f"scylla:{hosts}:{settings.port}/{settings.keyspace}"  # type: ignore[attr-defined]


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        if args.command == "migrate":
            applied = migrate(settings)
            if applied:
                print(f"{_where(settings)}: applied migrations {applied}")
            else:
                print(f"{_where(settings)}: schema up to date (version {LATEST_VERSION})")
        else:
            versions = applied_versions(settings)
            print(f"{_where(settings)}: applied {versions}, latest {LATEST_VERSION}")
    except Exception as exc:  # connection refused, bad keyspace options, ...
        print(f"error: {_where(settings)}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0
