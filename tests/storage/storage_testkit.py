"""Helpers shared by the storage actor tests: a runtime on its own loop, write senders."""

from __future__ import annotations

import asyncio
from typing import Any

from thespian.actors import ActorSystem

from actors import Overloaded, UvloopSystemBase
from storage.actor import StorageActor
from storage.messages import Busy, GetStorageStats, StorageReady, StorageStart, StorageStats, Write
from storage.model import Message, MessageCreate
from storage.settings import StorageSettings


class Runtime:
    """An actor system on its own uvloop thread, plus a way to run coroutines on it."""

    def __init__(self) -> None:
        self.base = UvloopSystemBase()
        self.asys = ActorSystem(systemBase=self.base, transientUnique=True)

    def run(self, coro: Any, timeout: float = 60.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.base.loop).result(timeout)

    def storage_actor(self, storage: Any, settings: StorageSettings | None = None) -> Any:
        addr = self.asys.createActor(StorageActor)
        ready = self.asys.ask(addr, StorageStart(settings=settings, storage=storage), 10)
        assert isinstance(ready, StorageReady), ready
        return addr

    def ask(self, addr: Any, msg: Any, timeout: float = 30.0) -> Any:
        return self.run(self.base.ask_async(addr, msg, timeout), timeout + 5)

    def stats(self, addr: Any) -> StorageStats:
        stats = self.ask(addr, GetStorageStats())
        assert isinstance(stats, StorageStats)
        return stats


def create(channel: int, mid: int, text: str = "x") -> MessageCreate:
    return MessageCreate(Message(channel_id=channel, id=mid, author_id=1, content=text))


async def send_until_accepted(
    base: UvloopSystemBase, addr: Any, write: Write, timeout: float = 60.0
) -> tuple[Any, int]:
    """Send a Write, honouring Busy; returns the final answer and how many Busy came back."""
    busy = 0
    while True:
        answer = await base.ask_async(addr, write, timeout)
        if isinstance(answer, Busy):
            busy += 1
            await asyncio.sleep(answer.retry_after_s)
            continue
        if isinstance(answer, Overloaded):  # the runtime's own mailbox bound
            busy += 1
            await asyncio.sleep(0.01)
            continue
        return answer, busy
