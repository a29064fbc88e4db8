"""Settings from env and CLI, migrations (both backends), and ``python -m storage``."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from storage.cli import main
from storage.schema import LATEST_VERSION, MIGRATIONS, applied_versions, migrate, migrate_sqlite
from storage.settings import StorageSettings, load_settings, parse_settings, replication_options

REPO = Path(__file__).resolve().parents[2]

#: versions need only increase (parallel branches reserve theirs): not range(1, latest)
VERSIONS = [m.version for m in MIGRATIONS]


def test_defaults_to_sqlite_without_hosts() -> None:
    s = load_settings(None, {})
    assert s.backend == "sqlite" and s.sqlite_path == "data/greenroom.db"


def test_env_then_cli() -> None:
    env = {
        "GREENROOM_SCYLLA_HOSTS": "10.0.0.1, 10.0.0.2",
        "GREENROOM_SCYLLA_KEYSPACE": "chat",
        "GREENROOM_SCYLLA_CONSISTENCY": "quorum",
        "GREENROOM_SCYLLA_REPLICATION": "NetworkTopologyStrategy:dc1=3,dc2=2",
        "GREENROOM_WORKER_ID": "7",
    }
    s = load_settings(None, env)
    assert s.backend == "scylla" and s.hosts == ("10.0.0.1", "10.0.0.2")
    assert (s.keyspace, s.consistency, s.snowflake_worker) == ("chat", "QUORUM", 7)
    s = parse_settings(["--scylla-keyspace", "other", "--scylla-port", "19042"], env)
    assert (s.keyspace, s.port, s.hosts) == ("other", 19042, ("10.0.0.1", "10.0.0.2"))
    s = parse_settings(["--storage", "sqlite", "--sqlite-path", "/tmp/x.db"], env)
    assert s.backend == "sqlite" and s.sqlite_path == "/tmp/x.db"
    assert replication_options("NetworkTopologyStrategy:dc1=3,dc2=2") == {
        "class": "NetworkTopologyStrategy",
        "dc1": "3",
        "dc2": "2",
    }


@pytest.mark.parametrize(
    ("env", "text"),
    [
        ({"GREENROOM_STORAGE": "mongo"}, "backend must be one of"),
        ({"GREENROOM_STORAGE": "scylla"}, "needs at least one host"),
        ({"GREENROOM_SCYLLA_HOSTS": "h", "GREENROOM_SCYLLA_PORT": "x"}, "not a valid int"),
        ({"GREENROOM_SCYLLA_HOSTS": "h", "GREENROOM_SCYLLA_KEYSPACE": "a-b"}, "keyspace must"),
        ({"GREENROOM_SCYLLA_HOSTS": "h", "GREENROOM_SCYLLA_CONSISTENCY": "MOST"}, "consistency"),
        ({"GREENROOM_SCYLLA_REPLICATION": "SimpleStrategy:0"}, "replication"),
        ({"GREENROOM_SCYLLA_REPLICATION": "NetworkTopologyStrategy:"}, "replication"),
        ({"GREENROOM_WORKER_ID": "32"}, "snowflake_worker must be in 0..31"),
    ],
)
def test_bad_settings_say_what_is_wrong(env: dict[str, str], text: str) -> None:
    with pytest.raises(ValueError, match=text):
        load_settings(None, env)


def test_sqlite_migrate_is_idempotent(tmp_path: Path) -> None:
    settings = StorageSettings(sqlite_path=str(tmp_path / "db" / "g.db"))
    assert applied_versions(settings) == []
    assert migrate(settings) == VERSIONS
    assert migrate(settings) == []
    assert applied_versions(settings) == VERSIONS
    conn = sqlite3.connect(settings.sqlite_path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert migrate_sqlite(conn) == []


def test_cql_migrate_is_idempotent(cassandra_node, scylla_settings) -> None:  # type: ignore[no-untyped-def]
    # The session fixture already migrated this keyspace with the same function.
    assert applied_versions(scylla_settings) == VERSIONS
    assert migrate(scylla_settings) == []


def test_cli_migrate_and_status(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = str(tmp_path / "cli.db")
    assert main(["--sqlite-path", db, "migrate"]) == 0
    assert f"applied migrations {VERSIONS}" in capsys.readouterr().out
    assert main(["--sqlite-path", db, "migrate"]) == 0
    assert "up to date" in capsys.readouterr().out
    assert main(["--sqlite-path", db, "status"]) == 0
    assert f"applied {VERSIONS}, latest {LATEST_VERSION}" in capsys.readouterr().out
    assert main(["--storage", "scylla", "migrate"]) == 2
    assert "needs at least one host" in capsys.readouterr().err


def test_python_dash_m_storage(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "storage", "--sqlite-path", str(tmp_path / "m.db"), "migrate"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "applied migrations" in proc.stdout


def test_greenroom_storage_takes_flags_before_or_after_the_subcommand(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from greenroom.cli import main as greenroom_main

    after, before = tmp_path / "after.db", tmp_path / "before.db"
    assert greenroom_main(["storage", "migrate", "--sqlite-path", str(after)]) == 0
    assert greenroom_main(["storage", "--sqlite-path", str(before), "migrate"]) == 0
    assert applied_versions(StorageSettings(sqlite_path=str(after)))[-1] == LATEST_VERSION
    assert applied_versions(StorageSettings(sqlite_path=str(before)))[-1] == LATEST_VERSION
    assert str(after) in capsys.readouterr().out
