"""discord.py waits out greenroom's 429s instead of raising: with the limits as shipped,
a burst over the caller's global limit (50 requests a second) gets 429s with ``global:
true``, and every request of the burst still succeeds. discord.py only waits when the
429 carries ``Via`` (without it, it takes the answer for a Cloudflare ban and raises
``HTTPException``), so this is the acceptance test of that header."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gateway.limits import RateLimits
from observability.http_metrics import DURATION
from tests.gateway.harness import run, running_gateway
from tests.gateway.libraries import discordpy_client, discordpy_running, point_discordpy_at

BURST = 70


def _refused() -> int:
    return sum(sum(counts) for labels, counts, *_ in DURATION.items()
               if labels.get("http.response.status_code") == 429)


def test_discordpy_waits_out_a_global_429(tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    async def main() -> None:
        async with running_gateway(tmp_path, limits=RateLimits()) as r:
            point_discordpy_at(monkeypatch, r.gateway)
            async with discordpy_running(discordpy_client(), r.seeded.token) as client:
                refused = _refused()
                users = await asyncio.wait_for(asyncio.gather(
                    *(client.fetch_user(r.other_id) for _ in range(BURST))), 30)
                assert [u.id for u in users] == [r.other_id] * BURST
                assert _refused() > refused, "the burst was never refused: nothing tested"

    run(main, timeout=60)
