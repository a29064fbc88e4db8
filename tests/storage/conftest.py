"""Fixtures for the storage tests: a real Cassandra node, both backends, one event loop.

Cassandra takes 10-25 s to boot (plus a one-off Maven download on a fresh machine), so
its start is kicked off in a background thread as soon as collection shows that some
test needs it, and the tests that need it are moved to the end of the run: the boot
overlaps every other test. The first test that waits for it gets an explicit, larger
timeout (``BOOT_ALLOWANCE_S``) since the per-test default is 120 s. If the node cannot
start, every test that needs it fails with the reason - never a skip.

Async tests run on one session-wide uvloop (``aio.run(coro)``) so the backends' driver
sessions are opened once, not once per test.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # so `tests.services` imports however pytest is invoked
    sys.path.insert(0, str(REPO))

import uvloop  # noqa: E402

from storage.schema import migrate  # noqa: E402
from storage.settings import StorageSettings  # noqa: E402
from storage.snowflake import snowflake_at  # noqa: E402
from tests.services.cassandra import CassandraNode, skip_driver_exit_wait  # noqa: E402
from tests.services.process import Boot  # noqa: E402

BOOT_ALLOWANCE_S = 900  # first-ever run: Maven resolves ~100 jars, then the JVM boots
CASSANDRA_FIXTURE = "cassandra_node"


# Its own node (own run dir, free ports): concurrent runs on one machine, and the fault
# test's kill, never touch another run's node.
_boot = Boot(CassandraNode, f"pytest-{os.getpid()}", timeout=BOOT_ALLOWANCE_S - 60)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "cassandra_fault: stops/starts the shared Cassandra node; runs last"
    )


def _needs_cassandra(item: pytest.Item) -> bool:
    callspec = getattr(item, "callspec", None)
    if callspec is not None and callspec.params.get("storage") == "scylla":
        return True
    return CASSANDRA_FIXTURE in getattr(item, "fixturenames", ())


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    # Stable sort: other tests first, then Cassandra ones, then the fault tests.
    def rank(item: pytest.Item) -> int:
        if item.get_closest_marker("cassandra_fault"):
            return 2
        return 1 if _needs_cassandra(item) else 0

    items.sort(key=rank)
    first = next((i for i in items if _needs_cassandra(i)), None)
    if first is not None and not config.getoption("collectonly"):
        first.add_marker(pytest.mark.timeout(BOOT_ALLOWANCE_S + 120), append=False)
        _boot.kick()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _boot.stop()
    skip_driver_exit_wait()


@pytest.fixture(scope="session")
def cassandra_node() -> CassandraNode:
    """The shared node (started once per run; stopped at the end if this run started it)."""
    return _boot.fixture("Cassandra test node")


class Aio:
    """One uvloop event loop for the whole session; ``run`` drives a coroutine on it."""

    def __init__(self) -> None:
        self.runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)

    def run(self, coro, timeout: float = 60.0):  # type: ignore[no-untyped-def]
        return self.runner.run(asyncio.wait_for(coro, timeout))

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self.runner.get_loop()

    def close(self) -> None:
        self.runner.close()


@pytest.fixture(scope="session")
def aio() -> Iterator[Aio]:
    runner = Aio()
    yield runner
    runner.close()


@pytest.fixture(scope="session")
def scylla_settings(cassandra_node: CassandraNode) -> Iterator[StorageSettings]:
    """A fresh keyspace for this run, migrated with the production code; dropped after."""
    settings = StorageSettings(
        backend="scylla",
        hosts=("127.0.0.1",),
        port=cassandra_node.port,
        keyspace=f"greenroom_test_{os.getpid()}",
        consistency="LOCAL_QUORUM",
        replication="SimpleStrategy:1",
        request_timeout_s=10.0,
    )
    migrate(settings)
    yield settings
    from storage.scylla import connect_cluster

    try:
        cluster, session = connect_cluster(settings)
        try:
            session.execute(f"DROP KEYSPACE IF EXISTS {settings.keyspace}", timeout=60)
        finally:
            cluster.shutdown()
    except Exception:
        pass  # the node may already be gone (the fault test); its data dir is removed anyway


@pytest.fixture(scope="session")
def sqlite_settings(tmp_path_factory: pytest.TempPathFactory) -> StorageSettings:
    path = tmp_path_factory.mktemp("sqlite") / "greenroom.db"
    settings = StorageSettings(backend="sqlite", sqlite_path=str(path), sqlite_synchronous="NORMAL")
    migrate(settings)
    return settings


@pytest.fixture(scope="session")
def scylla_storage(aio: Aio, scylla_settings: StorageSettings):  # type: ignore[no-untyped-def]
    from storage.scylla import ScyllaStorage

    backend = ScyllaStorage(scylla_settings)
    aio.run(backend.open())
    yield backend
    aio.run(backend.close())


@pytest.fixture(scope="session")
def sqlite_storage(aio: Aio, sqlite_settings: StorageSettings):  # type: ignore[no-untyped-def]
    from storage.sqlite import SqliteStorage

    backend = SqliteStorage(sqlite_settings)
    aio.run(backend.open())
    yield backend
    aio.run(backend.close())


@pytest.fixture(params=["sqlite", "scylla"])
def storage(request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    """Each backend in turn: the contract suite runs against both."""
    return request.getfixturevalue(f"{request.param}_storage")


class Ids:
    """Unique snowflakes at chosen times (tests share one database, so ids never repeat)."""

    def __init__(self) -> None:
        self._n = 0
        self._lock = threading.Lock()

    def at(self, unix_ms: int) -> int:
        with self._lock:
            self._n += 1
            n = self._n
        # 10 worker+process bits and 12 increment bits: 4M distinct ids per ms per run.
        return snowflake_at(unix_ms, (n >> 17) & 31, (n >> 12) & 31, n & 4095)

    def now(self, offset_ms: int = 0) -> int:
        return self.at(int(time.time() * 1000) + offset_ms)


@pytest.fixture(scope="session")
def ids() -> Ids:
    return Ids()
