"""Storage settings: one place, from the environment and the command line (CLI wins).

See storage/README.md for the table of variables and flags. ``backend`` defaults to
``scylla`` when hosts are configured and to the embedded SQLite otherwise.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace

BACKENDS = ("sqlite", "scylla")
CONSISTENCY_LEVELS = (
    "ONE",
    "TWO",
    "THREE",
    "QUORUM",
    "ALL",
    "LOCAL_QUORUM",
    "EACH_QUORUM",
    "LOCAL_ONE",
)
SQLITE_SYNC = ("OFF", "NORMAL", "FULL", "EXTRA")
_KEYSPACE_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,47}$")


@dataclass(frozen=True)
class StorageSettings:
    backend: str = "sqlite"
    hosts: tuple[str, ...] = ()
    port: int = 9042
    keyspace: str = "greenroom"
    consistency: str = "LOCAL_QUORUM"
    # "SimpleStrategy:3" or "NetworkTopologyStrategy:dc1=3,dc2=3"
    replication: str = "SimpleStrategy:1"
    request_timeout_s: float = 10.0
    sqlite_path: str = "data/greenroom.db"
    sqlite_synchronous: str = "FULL"
    snowflake_worker: int = 0
    snowflake_process: int = 0
    # storage actor
    flush_window_ms: float = 2.0
    max_batch: int = 512
    max_pending: int = 20000
    max_in_flight: int = 64
    # batches one partition may have in flight (1: each waits for the last to complete);
    # the next leaves once the last has been out for half the batch latency
    max_partition_in_flight: int = 4
    retry_budget_s: float = 30.0

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"storage backend must be one of {BACKENDS}, got {self.backend!r}")
        if self.backend == "scylla" and not self.hosts:
            raise ValueError("the scylla backend needs at least one host (GREENROOM_SCYLLA_HOSTS)")
        if not 0 < self.port < 65536:
            raise ValueError(f"port must be 1..65535, got {self.port}")
        if not _KEYSPACE_RE.match(self.keyspace):
            raise ValueError(
                f"keyspace must be a letter then letters/digits/_ (max 48), got {self.keyspace!r}"
            )
        if self.consistency not in CONSISTENCY_LEVELS:
            raise ValueError(
                f"consistency must be one of {CONSISTENCY_LEVELS}, got {self.consistency!r}"
            )
        replication_options(self.replication)  # validates
        if self.sqlite_synchronous not in SQLITE_SYNC:
            raise ValueError(f"sqlite synchronous must be one of {SQLITE_SYNC}")
        for name, top in (("snowflake_worker", 31), ("snowflake_process", 31)):
            value = getattr(self, name)
            if not 0 <= value <= top:
                raise ValueError(f"{name} must be in 0..{top}, got {value}")
        if self.flush_window_ms < 0 or self.retry_budget_s < 0:
            raise ValueError("flush_window_ms and retry_budget_s must not be negative")
        if min(self.max_batch, self.max_pending, self.max_in_flight,
               self.max_partition_in_flight) < 1:
            raise ValueError("max_batch, max_pending, max_in_flight and "
                             "max_partition_in_flight must be at least 1")
        if self.request_timeout_s <= 0:
            raise ValueError("request_timeout_s must be positive")

    def with_(self, **changes: object) -> StorageSettings:
        return replace(self, **changes)


def replication_options(spec: str) -> dict[str, str]:
    """Parse ``SimpleStrategy:N`` / ``NetworkTopologyStrategy:dc=N,...`` into CQL options."""
    strategy, _, rest = spec.partition(":")
    if strategy == "SimpleStrategy":
        if not rest.isdigit() or int(rest) < 1:
            raise ValueError(f"replication {spec!r}: want SimpleStrategy:<factor >= 1>")
        return {"class": "SimpleStrategy", "replication_factor": rest}
    if strategy == "NetworkTopologyStrategy":
        options = {"class": "NetworkTopologyStrategy"}
        for part in filter(None, rest.split(",")):
            dc, eq, factor = part.partition("=")
            if not eq or not dc or not factor.isdigit():
                raise ValueError(f"replication {spec!r}: want NetworkTopologyStrategy:dc1=3,dc2=3")
            options[dc.strip()] = factor
        if len(options) == 1:
            raise ValueError(f"replication {spec!r}: name at least one datacenter")
        return options
    raise ValueError(
        f"replication {spec!r}: want SimpleStrategy:N or NetworkTopologyStrategy:dc=N,..."
    )


# name -> (environment variable, CLI flag, help)
_OPTIONS = {
    "backend": ("GREENROOM_STORAGE", "--storage", "sqlite or scylla"),
    "hosts": ("GREENROOM_SCYLLA_HOSTS", "--scylla-hosts", "comma-separated contact points"),
    "port": ("GREENROOM_SCYLLA_PORT", "--scylla-port", "CQL port"),
    "keyspace": ("GREENROOM_SCYLLA_KEYSPACE", "--scylla-keyspace", "keyspace"),
    "consistency": ("GREENROOM_SCYLLA_CONSISTENCY", "--scylla-consistency", "consistency level"),
    "replication": (
        "GREENROOM_SCYLLA_REPLICATION",
        "--scylla-replication",
        "SimpleStrategy:N or NetworkTopologyStrategy:dc=N,...",
    ),
    "request_timeout_s": ("GREENROOM_SCYLLA_TIMEOUT", "--scylla-timeout", "request timeout (s)"),
    "sqlite_path": ("GREENROOM_SQLITE_PATH", "--sqlite-path", "SQLite database file"),
    "sqlite_synchronous": (
        "GREENROOM_SQLITE_SYNCHRONOUS",
        "--sqlite-synchronous",
        "PRAGMA synchronous (FULL = durable on power loss)",
    ),
    "snowflake_worker": ("GREENROOM_WORKER_ID", "--worker-id", "snowflake worker bits (0-31)"),
    "snowflake_process": ("GREENROOM_PROCESS_ID", "--process-id", "snowflake process bits (0-31)"),
    "flush_window_ms": ("GREENROOM_STORAGE_FLUSH_MS", "--storage-flush-ms", "batch window (ms)"),
    "max_batch": ("GREENROOM_STORAGE_MAX_BATCH", "--storage-max-batch", "writes per flush"),
    "max_pending": ("GREENROOM_STORAGE_MAX_PENDING", "--storage-max-pending", "queue bound"),
    "max_in_flight": (
        "GREENROOM_STORAGE_MAX_IN_FLIGHT",
        "--storage-max-in-flight",
        "batches in flight at once",
    ),
    "max_partition_in_flight": (
        "GREENROOM_STORAGE_PARTITION_IN_FLIGHT",
        "--storage-partition-in-flight",
        "batches one partition may have in flight (1: each waits for the last)",
    ),
    "retry_budget_s": (
        "GREENROOM_STORAGE_RETRY_BUDGET",
        "--storage-retry-budget",
        "seconds a write is retried before it is reported failed",
    ),
}


def _convert(name: str, raw: str) -> object:
    kind = {f.name: f.type for f in fields(StorageSettings)}[name]
    try:
        if name == "hosts":
            return tuple(h.strip() for h in raw.split(",") if h.strip())
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
    except ValueError:
        raise ValueError(f"{_OPTIONS[name][0]}: {raw!r} is not a valid {kind}") from None
    if name in ("consistency", "sqlite_synchronous"):
        return raw.upper()
    return raw


def add_arguments(parser: argparse.ArgumentParser, *, suppress: bool = False) -> None:
    """Add the storage flags to a parser (defaults None, so the environment shows through).

    ``suppress`` leaves a flag out of the namespace when it is not given: for a
    subcommand's parser, so it does not overwrite what its parent parser read.
    """
    group = parser.add_argument_group("storage")
    default = argparse.SUPPRESS if suppress else None
    for name, (env, flag, text) in _OPTIONS.items():
        group.add_argument(flag, dest=f"storage_{name}", default=default,
                           help=f"{text} [${env}]")


def load_settings(
    args: argparse.Namespace | None = None, environ: Mapping[str, str] | None = None
) -> StorageSettings:
    """Settings from the environment, overridden by any flags given on the command line."""
    env = os.environ if environ is None else environ
    values: dict[str, object] = {}
    for name, (var, _flag, _text) in _OPTIONS.items():
        raw = env.get(var)
        cli = getattr(args, f"storage_{name}", None) if args is not None else None
        if cli is not None:
            raw = cli
        if raw is not None and raw != "":
            values[name] = _convert(name, raw)
    if "backend" not in values:
        values["backend"] = "scylla" if values.get("hosts") else "sqlite"
    return StorageSettings(**values)  # type: ignore[arg-type]


def parse_settings(
    argv: Sequence[str], environ: Mapping[str, str] | None = None
) -> StorageSettings:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return load_settings(parser.parse_args(list(argv)), environ)
