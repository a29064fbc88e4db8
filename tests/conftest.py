"""Shared fixtures: an actor system on greenroom's base, torn down after each test;
a Jaeger server for the end-to-end tracing test, once per run."""

from __future__ import annotations

import os

import pytest
from thespian.actors import ActorSystem

from actors import UvloopSystemBase
from tests.services.jaeger import BOOT_ALLOWANCE_S, JaegerServer
from tests.services.process import Boot

# `greenroom run` and `greenroom gateway` serve an operator port (9464 by default): tests
# that start them get a free one each, so that runs side by side never collide.
os.environ.setdefault("GREENROOM_OPERATOR_PORT", "0")
# `greenroom run` without --nodes starts a node per usable CPU (`--nodes auto`): the tests
# that start it get the one node they were written for (tests/cluster/test_nodes_auto.py
# unsets this to test the default itself).
os.environ.setdefault("GREENROOM_NODES", "1")


@pytest.fixture
def base():
    b = UvloopSystemBase()
    yield b
    b.shutdown()


@pytest.fixture
def asys(base):
    return ActorSystem(systemBase=base, transientUnique=True)


# -- a real Jaeger for the end-to-end tracing test (tests/services/jaeger.py) -----------
JAEGER_FIXTURE = "jaeger"
_jaeger = Boot(JaegerServer, f"pytest-{os.getpid()}")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests that need Jaeger go last (stable), and its build or start begins now, so
    that a first build (minutes) overlaps the rest of the suite; the first of them may
    wait for it beyond the default timeout."""
    needs = [item for item in items if JAEGER_FIXTURE in getattr(item, "fixturenames", ())]
    if not needs or config.getoption("collectonly"):
        return
    items[:] = [item for item in items if item not in needs] + needs
    needs[0].add_marker(pytest.mark.timeout(BOOT_ALLOWANCE_S), append=False)
    _jaeger.kick()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _jaeger.stop()


@pytest.fixture(scope="session")
def jaeger() -> JaegerServer:
    """A Jaeger all-in-one on free loopback ports, started once per run (built first if
    this machine has no binary yet). If it cannot be built or started, the tests that
    need it fail with the reason; they are never skipped."""
    return _jaeger.fixture("Jaeger test server")
