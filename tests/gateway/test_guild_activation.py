"""A guild freshly activated (its state loading from storage, as on a survivor after a
failover) while a session subscribes and messages are fanned out: nothing is dropped.
The session's Subscribe, which reads its member, gets the message events fanned out
while it read; a Subscribe that replaces a session of a node that is gone works."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from thespian.actors import ActorExitRequest

from actors import Address, Locate, Route
from gateway.messages import Fanout, Subscribe, Subscribed
from gateway.protocol import PreparedDispatch
from gateway.session import SessionActor
from tests.gateway.harness import run, running_gateway

INTENTS = 1 | 512 | 1 << 15  # GUILDS, GUILD_MESSAGES, MESSAGE_CONTENT
WAIT_S = 15.0


class Catcher(SessionActor):
    """A session actor that only records what the guild and the fan-out point give it."""

    def __init__(self) -> None:
        super().__init__()
        self.got: list[Any] = []
        self.dispatches: list[PreparedDispatch] = []

    def receiveMessage(self, msg: Any, sender: Any) -> None:
        self.got.append(msg)

    def deliver_dispatch(self, dispatch: PreparedDispatch, trace: dict | None = None) -> None:
        self.dispatches.append(dispatch)


def new_catcher(base: Any) -> tuple[Address, Catcher]:
    address = base.create_actor(None, Catcher, None, None)
    return address, address._cell.instance


def subscribe(r: Any, catcher: Address, replaces: Address | None = None) -> None:
    """``catcher`` subscribes to the seeded guild (no member given: the guild reads it)."""
    r.gateway.base.deliver(r.gateway.ctx.registry, Route("guild", r.seeded.guild_id, Subscribe(
        catcher, r.seeded.user_id, INTENTS, replaces=replaces)), catcher)


def fan_out(r: Any, message_id: int, content: str, sender: Address) -> None:
    """The seeded channel's MESSAGE_CREATE ``content``, fanned out through the guild."""
    seeded = r.seeded
    payload = {"id": str(message_id), "channel_id": str(seeded.channel_id),
               "content": content, "author": {"id": str(seeded.user_id)}}
    r.gateway.base.deliver(r.gateway.ctx.registry, Route("guild", seeded.guild_id, Fanout(
        seeded.channel_id, PreparedDispatch("MESSAGE_CREATE", payload), payload)), sender)


async def until(check: Any) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_S
    while not check() and loop.time() < deadline:
        await asyncio.sleep(0.01)


def test_a_loading_guild_holds_subscribes_and_fanouts_and_replays_what_a_joiner_missed(
        tmp_path: Path):
    async def main() -> None:
        async with running_gateway(tmp_path) as r:
            catcher_address, catcher = new_catcher(r.gateway.base)
            gone = Address("a-node-that-is-gone", 7)  # the session it continues
            # One loop turn: the guild is activated by the Subscribe (no member given:
            # the guild reads it), and messages are fanned out behind it.
            subscribe(r, catcher_address, replaces=gone)
            for i in range(3):
                fan_out(r, i, f"m{i}", catcher_address)
            await until(lambda: len(catcher.dispatches) >= 3)
            assert [type(m) for m in catcher.got] == [Subscribed]
            assert catcher.got[0].member is True
            assert [d.data["content"] for d in catcher.dispatches] == ["m0", "m1", "m2"]
            # and later ones, fanned out normally, follow in order
            fan_out(r, 9, "m9", catcher_address)
            await until(lambda: len(catcher.dispatches) >= 4)
            assert [d.data["content"] for d in catcher.dispatches] == ["m0", "m1", "m2",
                                                                       "m9"]

    run(main, timeout=60)


def test_a_guild_whose_load_fails_once_retries_and_serves_what_it_held(tmp_path: Path):
    async def main() -> None:
        async with running_gateway(tmp_path) as r:
            seeded, storage = r.seeded, r.gateway.ctx.storage
            real_get_guild = storage.get_guild
            failures = []

            async def flaky_get_guild(guild_id: int) -> Any:
                if not failures:  # a storage hiccup, once
                    failures.append(guild_id)
                    raise ConnectionError("storage unavailable for a moment")
                return await real_get_guild(guild_id)

            storage.get_guild = flaky_get_guild
            catcher_address, catcher = new_catcher(r.gateway.base)
            subscribe(r, catcher_address)
            fan_out(r, 1, "held", catcher_address)
            await until(lambda: catcher.dispatches)
            assert failures == [seeded.guild_id]
            assert [type(m) for m in catcher.got] == [Subscribed]
            assert catcher.got[0].member is True
            assert [d.data["content"] for d in catcher.dispatches] == ["held"]

    run(main, timeout=60)


def test_a_guild_stopped_while_loading_passes_what_it_held_to_its_next_incarnation(
        tmp_path: Path):
    async def main() -> None:
        async with running_gateway(tmp_path) as r:
            base, ctx, seeded = r.gateway.base, r.gateway.ctx, r.seeded
            storage = ctx.storage
            real_get_guild = storage.get_guild
            gate = asyncio.Event()

            async def slow_get_guild(guild_id: int) -> Any:
                await gate.wait()  # the first incarnation is still loading when stopped
                return await real_get_guild(guild_id)

            storage.get_guild = slow_get_guild
            catcher_address, catcher = new_catcher(base)
            subscribe(r, catcher_address)
            fan_out(r, 1, "held", catcher_address)
            first = await base.ask_async(ctx.registry, Locate("guild", seeded.guild_id), 5)
            base.deliver(first.address, ActorExitRequest(), catcher_address)
            while first.address._cell.alive:
                await asyncio.sleep(0.01)
            gate.set()
            await until(lambda: catcher.dispatches)
            assert [type(m) for m in catcher.got] == [Subscribed]
            assert catcher.got[0].member is True
            assert [d.data["content"] for d in catcher.dispatches] == ["held"]
            second = await base.ask_async(ctx.registry, Locate("guild", seeded.guild_id), 5)
            assert second.address != first.address  # served by the next incarnation

    run(main, timeout=60)
