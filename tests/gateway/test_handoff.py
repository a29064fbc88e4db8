"""A channel stopped while a write it received is still on its way to storage: handed
over (its guild moved), it finishes the write, answers the poster and only then exits;
stopped at once, it answers a retryable 503 — an asker is never left hanging."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path
from typing import Any

from thespian.actors import ActorExitRequest

from actors import Actor, Locate, Located
from cluster.messages import Members
from cluster.placement import Placement
from cluster.view import HOSTS_ENTITIES, ClusterView
from gateway.channel import channel_key
from gateway.messages import Posted, PostFailed, PostMessage
from tests.gateway.harness import run, running_gateway

#: far above any step of a write: an answer that does not come fails the test here
ANSWER_WAIT_S = 15.0


class Collector(Actor):
    """Keeps what it is sent: the poster."""

    def __init__(self) -> None:
        super().__init__()
        self.got: list[Any] = []

    def receiveMessage(self, msg: Any, sender: Any) -> None:
        self.got.append(msg)


def post(guild_id: int, user_id: int, content: str) -> PostMessage:
    return PostMessage(guild_id=guild_id, author={"id": str(user_id), "username": "bot"},
                       member=None, content=content)


async def first_answer(collector: Any) -> Any:
    deadline = asyncio.get_running_loop().time() + ANSWER_WAIT_S
    while not collector.got and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.01)
    assert collector.got, f"no answer within {ANSWER_WAIT_S} s: the asker was left hanging"
    return collector.got[0]


async def started(r: Any) -> tuple[Any, Any, Any, tuple[int, int]]:
    """The channel's live incarnation, and a collector to post from."""
    base, ctx, seeded = r.gateway.base, r.gateway.ctx, r.seeded
    key = channel_key(seeded.guild_id, seeded.channel_id)
    located = await base.ask_async(ctx.registry, Locate("channel", key), 5)
    assert isinstance(located, Located)
    collector = base.create_actor(None, Collector, None, None)
    return located.address, collector, collector._cell.instance, key


def test_a_channel_handed_over_mid_write_finishes_it_answers_and_then_exits(tmp_path: Path):
    view = ClusterView("pending", hosts_entities=True)

    async def main() -> None:
        async with running_gateway(tmp_path, cluster=view) as r:
            base, seeded = r.gateway.base, r.seeded
            view.me, view.placement = base.node, Placement([base.node])  # its name now
            channel, poster, collected, _ = await started(r)
            # a node the guild would move to: unbounded, since a fixed list of names
            # all lose to this node's weight with probability 1/(len + 1)
            other = next(n for n in (f"n{i}" for i in itertools.count(2))
                         if Placement([base.node, n]).owner(seeded.guild_id) == n)
            # In one loop turn: the post reaches the channel, then the guild moves to
            # another node, so the registry hands the channel over while its write is
            # still queued at the storage actor.
            base.deliver(channel, post(seeded.guild_id, seeded.user_id, "mid-write"), poster)
            view.update(Members(
                {base.node: (("127.0.0.1", 1), 1), other: (("127.0.0.1", 2), 2)},
                info={base.node: {HOSTS_ENTITIES: "x"}, other: {HOSTS_ENTITIES: "x"}}))
            answer = await first_answer(collected)
            assert isinstance(answer, Posted), answer
            stored = await r.gateway.storage.get_message(seeded.channel_id,
                                                         int(answer.message["id"]))
            assert stored is not None and stored.content == "mid-write"
            for _ in range(200):  # then it exits (handed over)
                if not channel._cell.alive:
                    break
                await asyncio.sleep(0.01)
            assert not channel._cell.alive

    run(main, timeout=60)


def test_a_channel_stopped_at_once_mid_write_answers_a_retryable_503(tmp_path: Path):
    async def main() -> None:
        async with running_gateway(tmp_path) as r:
            base, seeded = r.gateway.base, r.seeded
            channel, poster, collected, _ = await started(r)
            base.deliver(channel, post(seeded.guild_id, seeded.user_id, "cut short"), poster)
            base.deliver(channel, ActorExitRequest(), poster)
            answer = await first_answer(collected)
            assert isinstance(answer, PostFailed) and answer.status == 503, answer
            assert "retry" in answer.message
            assert not channel._cell.alive

    run(main, timeout=60)
