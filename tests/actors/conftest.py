"""Fixtures for the runtime's tests (``base``/``asys`` come from tests/conftest.py)."""

from __future__ import annotations

import pytest
from thespian.actors import ActorSystem

from actors import UvloopSystemBase


@pytest.fixture
def make_system():
    """``make_system(**base_kwargs) -> (base, asys)``; every system is shut down after."""
    bases: list[UvloopSystemBase] = []

    def make(**kwargs):
        b = UvloopSystemBase(**kwargs)
        bases.append(b)
        return b, ActorSystem(systemBase=b, transientUnique=True)

    yield make
    for b in bases:
        b.shutdown()
