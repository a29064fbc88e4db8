"""Helpers shared by the runtime's tests."""

from __future__ import annotations

import asyncio
import contextlib

from thespian.actors import ActorSystem

from actors import UvloopSystemBase


@contextlib.contextmanager
def loop_system(**kwargs):
    """A base sharing the *running* loop (call from a coroutine on that loop)."""
    b = UvloopSystemBase(loop=asyncio.get_running_loop(), **kwargs)
    try:
        yield b, ActorSystem(systemBase=b, transientUnique=True)
    finally:
        b.shutdown()
