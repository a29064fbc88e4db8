"""Shared fixtures: an actor system on greenroom's base, torn down after each test."""

from __future__ import annotations

import pytest
from thespian.actors import ActorSystem

from actors import UvloopSystemBase


@pytest.fixture
def base():
    b = UvloopSystemBase()
    yield b
    b.shutdown()


@pytest.fixture
def asys(base):
    return ActorSystem(systemBase=base, transientUnique=True)
