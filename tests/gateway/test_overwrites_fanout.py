"""The guild actor's side of channel overwrites, without storage or sockets: a channel's
message events go to the sessions whose member may view it (overwrites applied; the
guild-wide plan for channels without any), an ``OverwriteChanged`` changes who gets them
at once and dispatches CHANNEL_UPDATE to the sessions that could view the channel
before or can after, and a session that joins late is replayed only what it may see."""

from __future__ import annotations

import asyncio
from typing import Any

from actors import UvloopSystemBase
from actors.address import Address
from chat.permissions import READ_MESSAGE_HISTORY, SEND_MESSAGES, VIEW_CHANNEL, Overwrite
from gateway.context import GatewayContext, bind
from gateway.fanout import FANOUT_ID, NodeFanout
from gateway.guild import GuildActor, _State, _Sub
from gateway.messages import Fanout, OverwriteChanged
from gateway.protocol import GatewayConfig, Intents, PreparedDispatch
from storage.model import Channel, Guild
from storage.snowflake import SnowflakeGenerator
from tests.gateway.harness import run

INTENTS = int(Intents.GUILDS | Intents.GUILD_MESSAGES | Intents.MESSAGE_CONTENT)
GUILD, HIDDEN, OPEN, MODS = 1, 7, 8, 50
BASE = VIEW_CHANNEL | SEND_MESSAGES | READ_MESSAGE_HISTORY


class _Guild(GuildActor):
    def receiveMessage(self, msg: Any, sender: Any) -> None:
        if isinstance(msg, dict) and "subs" in msg:  # the test's set-up, no storage
            self._stash = None
            self.guild_id = GUILD
            self.subs = msg["subs"]
            self.state = _State(Guild(GUILD, "g", 0), {}, {}, msg["overwrites"])
        else:
            super().receiveMessage(msg, sender)


def test_a_channels_events_follow_its_overwrites() -> None:
    async def main() -> None:
        base = UvloopSystemBase(loop=asyncio.get_running_loop(), node="here")
        seen: list[NodeFanout] = []

        class Point:  # this node's fan-out point, recording instead of delivering
            def receiveMessage(self, msg: Any, sender: Any) -> None:
                seen.append(msg)

        base.create_actor(None, Point, None, None, fixed_id=FANOUT_ID)
        ctx = GatewayContext(None, SnowflakeGenerator(), GatewayConfig())  # type: ignore[arg-type]
        guild = base.create_actor(None, bind(_Guild, ctx), None, None)
        # @everyone may not view HIDDEN; the MODS role may; user 4 is denied by name
        # although a mod; user 5 lacks VIEW_CHANNEL guild-wide but is let in by name.
        subs = {
            Address("here", 101): _Sub(1, INTENTS, BASE, 0),
            Address("here", 102): _Sub(2, INTENTS, BASE, 0, roles=(MODS,)),
            Address("here", 103): _Sub(3, INTENTS, BASE, 0, roles=(MODS,)),
            Address("here", 104): _Sub(4, INTENTS, BASE, 0, roles=(MODS,)),
            Address("here", 105): _Sub(5, INTENTS, SEND_MESSAGES, 0),
        }
        hidden = {GUILD: Overwrite(GUILD, 0, 0, VIEW_CHANNEL),
                  MODS: Overwrite(MODS, 0, VIEW_CHANNEL, 0),
                  4: Overwrite(4, 1, 0, VIEW_CHANNEL),
                  5: Overwrite(5, 1, VIEW_CHANNEL, 0)}
        base.tell_from_loop(guild, {"subs": subs, "overwrites": {HIDDEN: hidden}})

        async def fan(channel_id: int, content: str) -> set[int]:
            seen.clear()
            message = {"id": "1", "content": content, "author": {"id": "9"}, "mentions": []}
            base.tell_from_loop(guild, Fanout(channel_id, PreparedDispatch(
                "MESSAGE_CREATE", message), message))
            await asyncio.sleep(0.02)
            return {sid for m in seen for sid in (*m.to, *m.redacted_to)}

        for _ in range(2):  # the second time from the cached plans
            assert await fan(HIDDEN, "h") == {102, 103, 105}
            assert await fan(OPEN, "o") == {101, 102, 103, 104}

        # Mods lose the channel: CHANNEL_UPDATE to whoever saw it before or sees it now.
        seen.clear()
        channel = Channel(HIDDEN, GUILD, "hidden")
        base.tell_from_loop(guild, OverwriteChanged(channel, MODS, None))
        await asyncio.sleep(0.02)
        [update] = seen
        assert update.payload.event == "CHANNEL_UPDATE"
        assert set(update.to) == {102, 103, 105}
        assert sorted(o["id"] for o in update.payload.data["permission_overwrites"]) \
            == ["1", "4", "5"]
        assert await fan(HIDDEN, "h") == {105}
        # @everyone's deny goes: everyone but user 4 sees it again.
        base.tell_from_loop(guild, OverwriteChanged(channel, GUILD, None))
        await asyncio.sleep(0.02)
        assert set(seen[-1].to) == {101, 102, 103, 105}
        assert await fan(HIDDEN, "h") == {101, 102, 103, 105}
        base.tell_from_loop(guild, OverwriteChanged(channel, 4, None))
        base.tell_from_loop(guild, OverwriteChanged(
            channel, 5, Overwrite(5, 1, 0, 0).to_json()))
        await asyncio.sleep(0.02)
        assert await fan(HIDDEN, "h") == {101, 102, 103, 104}  # 5 back to its guild rights
        base.shutdown_in_loop()

    run(main)
