"""Channel permission overwrites with discord.js 14 (from npm, ``tests/js/overwrites.mjs``),
unmodified but for its REST base: ``permissionOverwrites.edit`` (@everyone) and
``.create`` (a second bot), ``permissionsFor`` on both bots after ChannelUpdate, the
second bot's MESSAGE_CREATE stopping in the hidden channel only, 403 50001 on its
send, history and read, and ``permissionOverwrites.delete`` giving the channel back."""

from __future__ import annotations

from pathlib import Path

from chat.permissions import ADD_REACTIONS, VIEW_CHANNEL
from gateway.seed import add_member, create_user
from tests.gateway.harness import run, running_gateway
from tests.gateway.libraries import discordjs_script


def test_discordjs_overwrites(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_gateway(tmp_path) as r:
            storage = r.gateway.storage
            helper_id, helper_token = await create_user(
                storage, r.ids, "helper")
            await add_member(storage, r.seeded.guild_id, helper_id)
            gid, cid, helper = str(r.seeded.guild_id), str(r.seeded.channel_id), str(helper_id)
            everyone = {"id": gid, "type": 0, "allow": "0", "deny": str(ADD_REACTIONS)}
            async with discordjs_script(r, "overwrites.mjs", cid, helper,
                                        env={"GREENROOM_HELPER_TOKEN": helper_token}) as bot:
                assert (await bot.expect("before"))["view"] is True
                assert await bot.expect("everyone") == {
                    "event": "everyone", "overwrites": [everyone], "react": False}
                hidden = await bot.expect("hidden")
                assert sorted(hidden["overwrites"], key=lambda o: o["id"]) == sorted(
                    [everyone, {"id": helper, "type": 1, "allow": "0",
                                "deny": str(VIEW_CHANNEL)}], key=lambda o: o["id"])
                assert (hidden["view"], hidden["ownerView"], hidden["helperView"]) \
                    == (False, True, False)
                assert (await bot.expect("owner_saw"))["content"] == "hidden"
                seen = await bot.expect("helper_saw")
                assert seen["content"] == "open" and seen["channel"] != cid
                refused = await bot.expect("refused")
                assert refused == {"event": "refused",
                                   **{k: {"status": 403, "code": 50001}
                                      for k in ("send", "history", "read")}}
                assert await bot.expect("back") == {"event": "back", "content": "back",
                                                    "channel": cid}
                assert (await bot.expect("history"))["contents"] == ["back"]
                await bot.expect("done")
                assert await bot.exited() == 0

    run(main, timeout=40)
