"""chat.dms.open_channel on both backends: a pair of users gets one DM channel, also
when it is opened many times at once through two storage clients (two nodes; the
pair's claim is a lightweight transaction on Cassandra); an open that loses the claim
leaves no channel record behind; a claim whose channel record is gone is repaired."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from chat.dms import CHANNEL_KIND, DMChannel, channel_record, load_channel, open_channel
from storage.base import Storage


def second_client(request: pytest.FixtureRequest, storage: Storage) -> Storage:
    """Another client of the same database, as another node holds."""
    backend = request.node.callspec.params["storage"]
    settings = request.getfixturevalue(f"{backend}_settings")
    return type(storage)(settings)


def test_one_channel_per_pair_under_concurrent_opens(aio, storage: Storage, ids,  # type: ignore[no-untyped-def]
                                                     request: pytest.FixtureRequest) -> None:
    other = second_client(request, storage)
    a, b = ids.now(), ids.now()
    made: list[int] = []

    def next_id() -> int:
        made.append(ids.now())
        return made[-1]

    async def go() -> None:
        await other.open()
        try:
            opens = await asyncio.gather(*(
                open_channel(client, next_id, *pair)
                for client, pair in zip(itertools.cycle((storage, other)),
                                        [(a, b), (b, a)] * 8, strict=False)))
        finally:
            await other.close()
        [channel] = {channel for channel, _ in opens}
        assert channel == DMChannel(channel.id, (min(a, b), max(a, b)))
        assert len(made) > 1, "the opens did not race"
        [winner] = [channel.id for channel, created in opens if created]
        assert sum(created for _, created in opens) == 1
        assert await load_channel(storage, winner) == opens[0][0]
        # every losing open's channel record is gone (only the winner's id was told)
        for channel_id in made:
            kept = await storage.get_record(*channel_record(channel_id))
            assert (kept is not None) == (channel_id == winner), channel_id
        again, created = await open_channel(storage, next_id, b, a)
        assert again.id == winner and not created

    aio.run(go())


def test_a_claim_whose_channel_record_is_lost_is_repaired(aio, storage: Storage, ids) -> None:  # type: ignore[no-untyped-def]
    a, b = ids.now(), ids.now()

    async def go() -> None:
        channel, created = await open_channel(storage, ids.now, a, b)
        assert created
        await storage.delete_record(CHANNEL_KIND, channel.id, "")
        assert await load_channel(storage, channel.id) is None
        again, created = await open_channel(storage, ids.now, a, b)
        assert again == channel and not created
        assert await load_channel(storage, channel.id) == channel

    aio.run(go())
